#!/usr/bin/env bash
# test_manifests.sh BUILD_DIR - deploy/ says what the binaries accept.
#
# The manifests and example configs are not read by any build step, so
# nothing else notices when they drift from the code: a key the broker no
# longer takes, a ConfigMap that names a file that is gone, a meta address
# the gateways and the bootstrap Job spell differently, an alert whose test
# no longer matches. This test checks:
#   - every YAML and JSON file under deploy/k8s, deploy/prometheus and
#     deploy/grafana parses (and the dashboard's panels have unique ids and
#     do not overlap);
#   - the kustomization lists only files that exist, and every manifest and
#     config file there is listed; `kubectl kustomize` renders it (when
#     kubectl exists);
#   - the k8s objects agree with each other: broker StatefulSet, headless
#     Service, [meta.N] addresses, the gateways' `meta =`, the bootstrap
#     Job's PARLEY_META, ports, the PodDisruptionBudget, the Secret;
#   - the broker INI template rendered by the pods' own entrypoint for pods
#     0-2, the gateway INI and the bootstrap Job's script, moved to loopback
#     ports: three real brokers register in the map, the bootstrap applies
#     bootstrap.txt (with its commented tenant lines filled in), a real
#     gateway turns healthy and creates a room, every node reaches the
#     same map version; then all stop cleanly by PID;
#   - the same for deploy/systemd's map-mode examples (cluster-broker.ini
#     for three hosts, cluster-gateway.ini, the parleyctl steps of its
#     README), and its static examples (broker-1.ini, broker-2.ini,
#     gateway.ini);
#   - promtool check/test of the rules and the scrape config (SKIP without
#     promtool), systemd-analyze verify of the units (SKIP without it);
#   - and that each checker can fail: a broken YAML, a kustomization naming
#     a missing file, a broker and a gateway INI with an unknown key, an
#     alert test expecting the wrong thing.
# Servers listen on free loopback ports below 32768 (outside the ephemeral
# range, so a port cannot be taken by an outgoing connection meanwhile)
# and are stopped by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:?usage: test_manifests.sh BUILD_DIR}" && pwd)
BROKER=$BUILD/broker/parley-broker
GATEWAY=$BUILD/gateway/parley-gateway
CTL=$BUILD/client/parleyctl
K8S=$ROOT/deploy/k8s
SYSD=$ROOT/deploy/systemd
PROM=$ROOT/deploy/prometheus
TMP=$(mktemp -d)
# The interpreter itself, not a version manager's shim: the checks call it
# often, and a shim costs a second or more per call.
PY=("$(python3 -c 'import sys; print(sys.executable)')" "$TMP/check.py")
pids=()
pass=0 fail=0 skip=0

cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill -9 "$pid" 2> /dev/null || true
		wait "$pid" 2> /dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT

check() { # name, command...
	local name=$1
	shift
	if "$@" > "$TMP/out" 2>&1; then
		pass=$((pass + 1))
		echo "ok   $name"
	else
		fail=$((fail + 1))
		echo "FAIL $name"
		sed 's/^/     /' "$TMP/out" | tail -n 30
	fi
}
skipped() { # name, why
	skip=$((skip + 1))
	echo "SKIP $1 ($2)"
}
fails() { # command...: succeeds when the command fails
	! "$@"
}

cat > "$TMP/check.py" << 'PY'
"""Checks of deploy/ that need a parser; one subcommand per check."""
import configparser
import json
import os
import re
import socket
import sys

import yaml


def die(msgs):
    for m in msgs:
        print(m)
    sys.exit(1 if msgs else 0)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def cmd_parse(root):
    """Every YAML and JSON file under the three folders parses."""
    errs, n = [], 0
    for sub in ("deploy/k8s", "deploy/prometheus", "deploy/grafana"):
        for dirpath, _, files in os.walk(os.path.join(root, sub)):
            for name in sorted(files):
                path = os.path.join(dirpath, name)
                try:
                    if name.endswith((".yaml", ".yml")):
                        if not load_all(path):
                            errs.append(f"{path}: empty")
                        n += 1
                    elif name.endswith(".json"):
                        with open(path) as f:
                            dashpcheck(path, json.load(f), errs)
                        n += 1
                except (yaml.YAMLError, ValueError) as e:
                    errs.append(f"{path}: {e}")
    if n == 0:
        errs.append("no YAML or JSON file found")
    print(f"{n} files parsed")
    die(errs)


def dashpcheck(path, d, errs):
    """A Grafana dashboard: unique panel ids, a query on every panel,
    no two panels on one cell of the grid."""
    if "panels" not in d:
        return
    ids, cells = set(), {}
    for p in d["panels"]:
        if p["id"] in ids:
            errs.append(f"{path}: panel id {p['id']} twice")
        ids.add(p["id"])
        if p["type"] != "row" and not all(
                t.get("expr") for t in p.get("targets") or [{}]):
            errs.append(f"{path}: panel {p['title']!r} has no query")
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                other = cells.setdefault((x, y), p["title"])
                if other != p["title"]:
                    errs.append(f"{path}: {p['title']!r} overlaps {other!r}")
                    return


def kustomization(kdir):
    return load_all(os.path.join(kdir, "kustomization.yaml"))[0]


def generated(k):
    """ConfigMap name -> {key: file} of the configMapGenerator."""
    out = {}
    for g in k.get("configMapGenerator", []):
        files = {}
        for f in g.get("files", []):
            key, _, path = f.partition("=")
            files[key if path else os.path.basename(key)] = path or key
        out[g["name"]] = files
    return out


def cmd_kustomize(kdir):
    """Listed files exist; every manifest and config file is listed."""
    k, errs = kustomization(kdir), []
    listed = set()
    for r in k.get("resources", []):
        listed.add(os.path.normpath(r))
        if not os.path.isfile(os.path.join(kdir, r)):
            errs.append(f"resources: {r} does not exist")
    for name, files in generated(k).items():
        for path in files.values():
            listed.add(os.path.normpath(path))
            if not os.path.isfile(os.path.join(kdir, path)):
                errs.append(f"configMapGenerator {name}: {path} does not exist")
    for dirpath, _, files in os.walk(kdir):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), kdir)
            manifest = f.endswith((".yaml", ".yml")) and f != "kustomization.yaml"
            if (manifest or rel.startswith("config" + os.sep)) and rel not in listed:
                errs.append(f"{rel} is not listed in kustomization.yaml")
    die(errs)


def objects(kdir):
    objs = {}
    for r in kustomization(kdir)["resources"]:
        for d in load_all(os.path.join(kdir, r)):
            objs[(d["kind"], d["metadata"]["name"])] = d
    return objs


def ini_read(path):
    c = configparser.ConfigParser(
        delimiters=("=",), comment_prefixes=(";", "#"), strict=True,
        interpolation=None)
    c.optionxform = str
    c.read(path)
    return c


def pod_spec(o):
    return o["spec"]["template"]["spec"]


def env_of(container, name):
    for e in container.get("env", []):
        if e["name"] == name:
            return e.get("value")
    return None


def cmd_consistency(kdir):
    """The k8s objects and the INIs they carry name the same things."""
    objs, errs = objects(kdir), []
    k = kustomization(kdir)
    gen = generated(k)
    sts = [o for (kind, _), o in objs.items() if kind == "StatefulSet"]
    if len(sts) != 1:
        die([f"want one broker StatefulSet, found {len(sts)}"])
    sts = sts[0]
    name, svc_name = sts["metadata"]["name"], sts["spec"]["serviceName"]
    if sts["spec"]["replicas"] != 3:
        errs.append("broker StatefulSet: replicas is not 3")
    if sts["spec"].get("podManagementPolicy") != "Parallel":
        errs.append("broker StatefulSet: pods must start in parallel (meta quorum)")
    if not sts["spec"].get("volumeClaimTemplates"):
        errs.append("broker StatefulSet: no volumeClaimTemplates")
    svc = objs.get(("Service", svc_name))
    if svc is None or svc["spec"].get("clusterIP") != "None":
        errs.append(f"Service {svc_name} is missing or not headless")
    elif not svc["spec"].get("publishNotReadyAddresses"):
        errs.append(f"Service {svc_name} must publish not-ready pods")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    pdbs = [o for (kind, _), o in objs.items() if kind == "PodDisruptionBudget"
            and o["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()]
    if len(pdbs) != 1 or pdbs[0]["spec"].get("maxUnavailable") != 1:
        errs.append("brokers need one PodDisruptionBudget with maxUnavailable 1")
    gws = [o for (kind, _), o in objs.items() if kind == "Deployment"]
    if len(gws) != 1 or gws[0]["spec"]["replicas"] != 2:
        errs.append("want one gateway Deployment of 2 replicas")
    # Volumes name generated ConfigMaps and one Secret.
    secrets = set()
    for o in objs.values():
        if o["kind"] not in ("StatefulSet", "Deployment", "Job"):
            continue
        for v in pod_spec(o).get("volumes", []):
            if "configMap" in v and v["configMap"]["name"] not in gen:
                errs.append(f"{o['metadata']['name']}: ConfigMap {v['configMap']['name']} is not generated")
            if "secret" in v:
                secrets.add(v["secret"]["secretName"])
    if len(secrets) != 1:
        errs.append(f"want one cluster Secret, found {sorted(secrets)}")
    readme = open(os.path.join(kdir, "README.md")).read()
    for s in secrets:
        if f"create secret generic {s}" not in readme:
            errs.append(f"README.md does not say how to create Secret {s}")
    # [meta.N] names pod N-1 under the headless Service.
    bini = ini_read(os.path.join(kdir, gen["parley-broker"]["broker.ini"]))
    metas = sorted((int(s.split(".")[1]), s) for s in bini.sections()
                   if s.startswith("meta."))
    if [n for n, _ in metas] != [1, 2, 3]:
        errs.append(f"broker.ini: want [meta.1..3], found {[s for _, s in metas]}")
    listens = []
    for n, s in metas:
        for key in ("listen", "peer"):
            want = f"tcp://{name}-{n - 1}.{svc_name}:"
            if not bini[s].get(key, "").startswith(want):
                errs.append(f"broker.ini [{s}] {key}: want {want}PORT")
        listens.append(bini[s].get("listen"))
    b = bini["broker"]
    if b.get("listen", "").replace("@POD_NAME@", f"{name}-0") != listens[0] or \
            b.get("peer", "").replace("@POD_NAME@", f"{name}-0") != bini["meta.1"].get("peer"):
        errs.append("broker.ini: [broker] listen/peer of pod 0 differ from [meta.1]")
    ports = {int(p["containerPort"]) for c in pod_spec(sts)["containers"]
             for p in c.get("ports", [])}
    used = {int(b[k].rsplit(":", 1)[1]) for k in ("listen", "peer", "http")}
    if used != ports:
        errs.append(f"broker ports {sorted(used)} in broker.ini, {sorted(ports)} in the pod")
    gini = ini_read(os.path.join(kdir, gen["parley-gateway"]["gateway.ini"]))
    if set(gini.sections()) - {"gateway", "log"}:
        errs.append(f"gateway.ini: topology sections {gini.sections()} (the map has them)")
    if set(gini["gateway"]) - {"tcp", "http", "web_root", "meta"}:
        errs.append(f"gateway.ini: keys beyond listeners and meta: {sorted(gini['gateway'])}")
    if [a.strip() for a in gini["gateway"].get("meta", "").split(",")] != listens:
        errs.append("gateway.ini meta differs from the [meta.N] listen addresses")
    jobs = [o for (kind, _), o in objs.items() if kind == "Job"]
    job_meta = [env_of(c, "PARLEY_META") for j in jobs for c in pod_spec(j)["containers"]]
    if len(job_meta) != 1 or job_meta[0] is None or \
            [a.strip() for a in job_meta[0].split(",")] != listens:
        errs.append("bootstrap Job: PARLEY_META differs from the [meta.N] listen addresses")
    die(errs)


def cmd_job_env(kdir, var):
    for o in objects(kdir).values():
        if o["kind"] == "Job":
            for c in pod_spec(o)["containers"]:
                v = env_of(c, var)
                if v is not None:
                    print(v)
                    return
    die([f"no Job sets {var}"])


def cmd_rewrite(src, dst, *args):
    """Moves an INI to loopback: addr:FROM=TO replaces text wherever it
    occurs, set:SECTION|KEY=VALUE replaces a key that must exist. Then
    every address left must be on 127.0.0.1, so an address the test did
    not know of (a template that grew one) fails instead of dialing out."""
    text = open(src).read()
    sets = []
    for a in args:
        kind, _, rest = a.partition(":")
        frm, _, to = rest.partition("=")
        if kind == "addr":
            text = text.replace(frm, to)
        else:
            sets.append((frm, to))
    section, lines = None, []
    for line in text.splitlines():
        m = re.match(r"\s*\[([^]]+)\]", line)
        if m:
            section = m.group(1)
        kv = re.match(r"\s*([^;#=\s][^=]*?)\s*=", line)
        for i, (sk, v) in enumerate(sets):
            if kv and v is not None and f"{section}|{kv.group(1)}" == sk:
                line = f"{kv.group(1)} = {v}"
                sets[i] = (sk, None)
        lines.append(line)
    missing = [sk for sk, v in sets if v is not None]
    if missing:
        die([f"{src}: no key {m}" for m in missing])
    text = "\n".join(lines) + "\n"
    bad = [h for h in re.findall(r"tcp://([^:/,\s]+)", text) if h != "127.0.0.1"]
    bad += [h for h in re.findall(r"^\s*http\s*=\s*(?:http://)?([^:\s]+)", text, re.M)
            if h != "127.0.0.1"]
    if bad:
        die([f"{src}: addresses left off loopback: {bad}"])
    open(dst, "w").write(text)


def cmd_ports(n):
    """n distinct loopback ports below 32768, each free when bound here
    (all held until every one is chosen, so none repeats)."""
    import random
    held, out = [], []
    rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "little"))
    while len(out) < int(n):
        p = rng.randint(12000, 32767)
        if p in out:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            s.close()
            continue
        held.append(s)
        out.append(p)
    print(" ".join(map(str, out)))


def cmd_map(text_path, *wants):
    """`parleyctl cluster map` output holds every wanted line prefix."""
    lines = open(text_path).read().splitlines()
    die([f"map has no line starting {w!r}:\n" + "\n".join(lines)
         for w in wants if not any(line.startswith(w) for line in lines)])


def cmd_metric(text_path, name):
    """Prints the values of every series of one metric."""
    for line in open(text_path):
        if re.match(re.escape(name) + r"(\{| )", line):
            print(line.split()[-1])


def served_names(path):
    names = set()
    for line in open(path):
        m = re.match(r"# (?:HELP|TYPE) (\S+)", line) or re.match(r"([a-z_][a-z0-9_]*)", line)
        if m:
            names.add(m.group(1))
    return names


def cmd_names(pending, *paths):
    """Every parley_* name the alert rules and the dashboard use is one a
    real broker or gateway serves (the files after --), a histogram's
    _bucket/_count/_sum included. Names in `pending` (comma-separated) are
    being added to the code: reported, not failed."""
    split = paths.index("--")
    used = set()
    for p in paths[:split]:
        used |= set(re.findall(r"parley_[a-z0-9_]+", open(p).read()))
    served = set()
    for p in paths[split + 1:]:
        served |= served_names(p)
    hist = {n + s for n in served for s in ("_bucket", "_count", "_sum")}
    missing = sorted(used - served - hist)
    wait = [n for n in missing if n in pending.split(",")]
    for n in wait:
        print(f"note: {n} is not served yet (being added)")
    die([f"{n} is used but no broker or gateway serves it"
         for n in missing if n not in wait])


if __name__ == "__main__":
    globals()["cmd_" + sys.argv[1].replace("-", "_")](*sys.argv[2:])
PY

# ---- static checks -------------------------------------------------------

check "deploy_yaml_json_parse" "${PY[@]}" parse "$ROOT"
mkdir -p "$TMP/broken/deploy/k8s" "$TMP/broken/deploy/grafana"
printf 'kind: ConfigMap\ndata: [1,\n' > "$TMP/broken/deploy/k8s/bad.yaml"
check "deploy_parse_refuses_broken_yaml" fails "${PY[@]}" parse "$TMP/broken"
printf '{"panels": [{"id": 1, "type": "row", "title": "a", "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}}, {"id": 1, "type": "row", "title": "b", "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}}]}' \
	> "$TMP/broken/deploy/grafana/bad.json"
rm "$TMP/broken/deploy/k8s/bad.yaml"
check "deploy_parse_refuses_overlapping_panels" fails "${PY[@]}" parse "$TMP/broken"

check "k8s_kustomization_lists_existing_files" "${PY[@]}" kustomize "$K8S"
cp -r "$K8S" "$TMP/k8s-missing"
sed -i 's/^  - pdb.yaml$/  - pdb.yaml\n  - broker-group-1.yaml/' "$TMP/k8s-missing/kustomization.yaml"
check "k8s_kustomization_refuses_missing_file" fails "${PY[@]}" kustomize "$TMP/k8s-missing"
cp -r "$K8S" "$TMP/k8s-orphan"
cp "$K8S/broker.yaml" "$TMP/k8s-orphan/broker-old.yaml"
check "k8s_kustomization_refuses_unlisted_manifest" fails "${PY[@]}" kustomize "$TMP/k8s-orphan"
if command -v kubectl > /dev/null; then
	check "k8s_kustomize_renders" kubectl kustomize "$K8S"
else
	skipped "k8s_kustomize_renders" "no kubectl"
fi
check "k8s_objects_agree" "${PY[@]}" consistency "$K8S"

# ---- real processes ------------------------------------------------------

# 9 broker ports and 2 gateway ports per cluster; the map-mode ones from
# k8s and from systemd, then the static systemd pair.
read -r -a P <<< "$("${PY[@]}" ports 28)"
head -c 32 /dev/urandom | base64 > "$TMP/secret"
"$CTL" keygen --tenant acme --key-id k1 --out "$TMP/acme.key" > "$TMP/acme.pub"
PUB=$(sed -n 's/^key\.k1 *= *//p' "$TMP/acme.pub")

start() { # name, command...: runs it in the background, logging to TMP/name.log
	local name=$1
	shift
	"$@" > "$TMP/$name.log" 2>&1 &
	pids+=($!)
	echo $! > "$TMP/$name.pid"
}

alive() {
	kill -0 "$(cat "$TMP/$1.pid")" 2> /dev/null
}

# wait_log NAME PATTERN: the process logged PATTERN within 30 s.
wait_log() {
	local i
	for i in $(seq 1 300); do
		grep -q "$2" "$TMP/$1.log" && return 0
		alive "$1" || { echo "$1 exited:"; tail -n 5 "$TMP/$1.log"; return 1; }
		sleep 0.1
	done
	echo "$1 did not log $2:"
	tail -n 5 "$TMP/$1.log"
	return 1
}

# wait_http URL: 200 within 30 s.
wait_http() {
	local i
	for i in $(seq 1 300); do
		curl -fsS -o /dev/null "$1" 2> /dev/null && return 0
		sleep 0.1
	done
	echo "$1 did not answer 200:"
	curl -sS "$1" || true
	return 1
}

# stop NAME...: SIGTERM by PID; each must exit 0 within 5 s.
stop() {
	local name pid rc ok=0 i
	for name in "$@"; do
		kill -TERM "$(cat "$TMP/$name.pid")" 2> /dev/null || true
	done
	for name in "$@"; do
		pid=$(cat "$TMP/$name.pid")
		for i in $(seq 1 50); do
			kill -0 "$pid" 2> /dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2> /dev/null; then
			echo "$name did not stop within 5 s"
			kill -9 "$pid" 2> /dev/null || true
			ok=1
		fi
		rc=0
		wait "$pid" || rc=$?
		if [ "$rc" -ne 0 ]; then
			echo "$name exited $rc:"
			tail -n 5 "$TMP/$name.log"
			ok=1
		fi
	done
	return $ok
}

# converged URL...: every /metrics shows the same map version (brokers'
# parley_broker_map_version, gateways' parley_gateway_map_version), > 0,
# within 10 s.
converged() {
	local i u v versions
	for i in $(seq 1 100); do
		versions=""
		for u in "$@"; do
			curl -fsS "$u" > "$TMP/metrics" 2> /dev/null || true
			v=$("${PY[@]}" metric "$TMP/metrics" parley_broker_map_version)
			[ -n "$v" ] || v=$("${PY[@]}" metric "$TMP/metrics" parley_gateway_map_version)
			versions="$versions ${v:-none}"
		done
		if [ "$(echo "$versions" | tr ' ' '\n' | sed '/^$/d' | sort -u | wc -l)" -eq 1 ] &&
			[ "${versions# }" != none ] && [ "$(echo "$versions" | awk '{ print $1 }')" != 0 ]; then
			return 0
		fi
		sleep 0.1
	done
	echo "map versions:$versions"
	return 1
}

# groups_hosted URL N: the broker hosts N group replicas (meta included).
groups_hosted() {
	curl -fsS "$1" > "$TMP/metrics" || return 1
	[ "$("${PY[@]}" metric "$TMP/metrics" parley_broker_groups)" = "$2" ] || {
		echo "parley_broker_groups on $1: $("${PY[@]}" metric "$TMP/metrics" parley_broker_groups), want $2"
		return 1
	}
}

room_created() { # gateway TCP port
	local tok
	tok=$("$CTL" token --key "$TMP/acme.key" --user ops --role service --ttl 60) &&
		PARLEY_TOKEN=$tok "$CTL" room create --url "tcp://127.0.0.1:$1"
}

all_registered() { # prefix: brokers PREFIX-1..3 logged event=registered
	local n
	for n in 1 2 3; do
		wait_log "$1-$n" "event=registered" || return 1
	done
}

map_has() { # meta list, wanted line prefixes...
	local meta=$1
	shift
	"$CTL" cluster map --meta "$meta" > "$TMP/map" || return 1
	"${PY[@]}" map "$TMP/map" "$@"
}

# -- Kubernetes: the template rendered by the pods' entrypoint --
K=$TMP/k8s
mkdir -p "$K"
kl=("${P[0]}" "${P[1]}" "${P[2]}") kp=("${P[3]}" "${P[4]}" "${P[5]}")
kh=("${P[6]}" "${P[7]}" "${P[8]}") ktcp=${P[9]} khttp=${P[10]}
kaddr=()
for i in 0 1 2; do
	kaddr+=("addr:tcp://parley-broker-$i.parley-broker:7401=tcp://127.0.0.1:${kl[$i]}"
		"addr:tcp://parley-broker-$i.parley-broker:7403=tcp://127.0.0.1:${kp[$i]}")
done
render_k8s() {
	local i
	for i in 0 1 2; do
		POD_NAME=parley-broker-$i PARLEY_TEMPLATE=$K8S/config/broker.ini \
			PARLEY_INI=$K/pod-$i.ini sh "$K8S/config/broker-entrypoint.sh" render || return 1
		grep -qx "node = $((i + 1))" "$K/pod-$i.ini" || { echo "pod $i: no node = $((i + 1))"; return 1; }
		grep -qx "id = parley-broker-$i" "$K/pod-$i.ini" || { echo "pod $i: no id"; return 1; }
		! grep -n '@[A-Z_]*@' "$K/pod-$i.ini" || { echo "pod $i: placeholder left"; return 1; }
		"${PY[@]}" rewrite "$K/pod-$i.ini" "$K/broker-$((i + 1)).ini" "${kaddr[@]}" \
			"set:broker|http=127.0.0.1:${kh[$i]}" "set:broker|data=$K/data-$i" \
			"set:broker|secret_file=$TMP/secret" || return 1
	done
	"${PY[@]}" rewrite "$K8S/config/gateway.ini" "$K/gateway.ini" "${kaddr[@]}" \
		"set:gateway|tcp=tcp://127.0.0.1:$ktcp" "set:gateway|http=127.0.0.1:$khttp" \
		"set:gateway|web_root=$ROOT/web"
}
check "k8s_broker_ini_rendered_per_pod" render_k8s
check "k8s_entrypoint_refuses_pod_without_ordinal" fails env POD_NAME=parley-broker \
	PARLEY_TEMPLATE="$K8S/config/broker.ini" PARLEY_INI="$K/x.ini" \
	sh "$K8S/config/broker-entrypoint.sh" render

# The checkers that follow must be able to fail: an unknown key is refused
# with exit status 2 (what RestartPreventExitStatus and a CrashLoop show).
bad_ini_refused() { # binary, ini, section line
	[ -s "$2" ] || { echo "no $2"; return 1; }
	sed "s/^\[$3\]$/[$3]\nno_such_key = 1/" "$2" > "$TMP/bad.ini"
	local rc=0
	timeout 10 "$1" -c "$TMP/bad.ini" > "$TMP/bad.log" 2>&1 || rc=$?
	[ "$rc" -eq 2 ] || { echo "exit $rc, want 2"; cat "$TMP/bad.log"; return 1; }
}
check "broker_refuses_unknown_key" bad_ini_refused "$BROKER" "$K/broker-1.ini" broker
check "gateway_refuses_unknown_key" bad_ini_refused "$GATEWAY" "$K/gateway.ini" gateway

kmeta=tcp://127.0.0.1:${kl[0]},tcp://127.0.0.1:${kl[1]},tcp://127.0.0.1:${kl[2]}
job_meta=$("${PY[@]}" job-env "$K8S" PARLEY_META)
for i in 0 1 2; do
	job_meta=${job_meta//tcp:\/\/parley-broker-$i.parley-broker:7401/tcp://127.0.0.1:${kl[$i]}}
done
# The shipped bootstrap.txt, its commented tenant lines filled in as its
# comment says.
sed -e 's/^# \(tenant add .*\)$/\1/' \
	-e "s|^# \(key add .*\)<base64 public key>\$|\1$PUB|" \
	"$K8S/config/bootstrap.txt" > "$K/bootstrap.txt"
k8s_cluster() {
	local n
	for n in 1 2 3; do
		start "k8s-broker-$n" "$BROKER" -c "$K/broker-$n.ini"
	done
	all_registered k8s-broker || return 1
	if ! grep -q '^tenant add acme' "$K/bootstrap.txt" || ! grep -q "^key add acme .*$PUB" "$K/bootstrap.txt"; then
		echo "bootstrap.txt: no tenant lines to fill in"
		return 1
	fi
	PARLEY_META=$job_meta PARLEY_SECRET_FILE=$TMP/secret PARLEYCTL=$CTL \
		PARLEY_BOOTSTRAP_WAIT_S=30 sh "$K8S/config/bootstrap.sh" "$K/bootstrap.txt" || return 1
	map_has "$kmeta" "broker 1 parley-broker-0 active" "broker 2 parley-broker-1 active" \
		"broker 3 parley-broker-2 active" "group 1 " "group 2 " "tenant acme retention_days=30 keys=k1" || return 1
	# Again: every line is idempotent, so the Job may run any time.
	PARLEY_META=$job_meta PARLEY_SECRET_FILE=$TMP/secret PARLEYCTL=$CTL \
		sh "$K8S/config/bootstrap.sh" "$K/bootstrap.txt" > "$K/bootstrap2.log" || return 1
	! grep -q ': changed' "$K/bootstrap2.log" || { echo "second run changed the map:"; cat "$K/bootstrap2.log"; return 1; }
	start k8s-gateway "$GATEWAY" -c "$K/gateway.ini" --id gw-k8s
	wait_http "http://127.0.0.1:$khttp/healthz" || return 1
	room_created "$ktcp" || return 1
	for n in 0 1 2; do
		groups_hosted "http://127.0.0.1:${kh[$n]}/metrics" 3 || return 1
	done
	converged "http://127.0.0.1:${kh[0]}/metrics" "http://127.0.0.1:${kh[1]}/metrics" \
		"http://127.0.0.1:${kh[2]}/metrics" "http://127.0.0.1:$khttp/metrics" || return 1
	# What a cluster broker and a gateway serve, for the name check below.
	curl -fsS "http://127.0.0.1:${kh[0]}/metrics" > "$TMP/served-broker" &&
		curl -fsS "http://127.0.0.1:$khttp/metrics" > "$TMP/served-gateway" || return 1
	stop k8s-gateway k8s-broker-1 k8s-broker-2 k8s-broker-3
}
check "k8s_cluster_bootstraps_and_serves" k8s_cluster

# The gauges of replication the alerts compare are being added to the
# broker under these names; until they are, their alerts cannot fire.
PENDING=parley_broker_raft_voters,parley_broker_map_voters
names_served() {
	if [ ! -s "$TMP/served-broker" ] || [ ! -s "$TMP/served-gateway" ]; then
		echo "no metrics captured (the cluster above failed)"
		return 1
	fi
	"${PY[@]}" names "$PENDING" "$PROM/alerts.yml" "$ROOT/deploy/grafana/parley.json" \
		-- "$TMP/served-broker" "$TMP/served-gateway"
}
check "alert_and_dashboard_metrics_are_served" names_served
printf 'parley_broker_no_such_metric\n' > "$TMP/typo.yml"
check "metric_name_check_can_fail" fails "${PY[@]}" names "" "$TMP/typo.yml" -- "$TMP/served-broker"

# -- systemd, map mode: cluster-broker.ini on three hosts --
S=$TMP/sysd
mkdir -p "$S"
sl=("${P[11]}" "${P[12]}" "${P[13]}") sp=("${P[14]}" "${P[15]}" "${P[16]}")
shp=("${P[17]}" "${P[18]}" "${P[19]}") stcp=${P[20]} shttp=${P[21]}
saddr=()
for i in 0 1 2; do
	saddr+=("addr:tcp://10.0.0.1$((i + 1)):7401=tcp://127.0.0.1:${sl[$i]}"
		"addr:tcp://10.0.0.1$((i + 1)):7403=tcp://127.0.0.1:${sp[$i]}")
done
render_sysd() {
	local i n
	for i in 0 1 2; do
		n=$((i + 1))
		# Host n: node, id, listen and peer are its own (systemd/README.md).
		"${PY[@]}" rewrite "$SYSD/cluster-broker.ini" "$S/broker-$n.ini" "${saddr[@]}" \
			"set:broker|node=$n" "set:broker|id=broker-$n" \
			"set:broker|listen=tcp://127.0.0.1:${sl[$i]}" "set:broker|peer=tcp://127.0.0.1:${sp[$i]}" \
			"set:broker|http=127.0.0.1:${shp[$i]}" "set:broker|secret_file=$TMP/secret" || return 1
	done
	"${PY[@]}" rewrite "$SYSD/cluster-gateway.ini" "$S/gateway.ini" "${saddr[@]}" \
		"set:gateway|tcp=tcp://127.0.0.1:$stcp" "set:gateway|http=127.0.0.1:$shttp" \
		"set:gateway|web_root=$ROOT/web"
}
check "systemd_cluster_inis_rendered" render_sysd
smeta=tcp://127.0.0.1:${sl[0]},tcp://127.0.0.1:${sl[1]},tcp://127.0.0.1:${sl[2]}
sysd_cluster() {
	local n
	for n in 1 2 3; do
		# As parley-cluster-broker.service runs it.
		start "sysd-broker-$n" "$BROKER" -c "$S/broker-$n.ini" --data="$S/data-$n"
	done
	all_registered sysd-broker || return 1
	# The bootstrap of systemd/README.md.
	export PARLEY_META=$smeta PARLEY_SECRET_FILE=$TMP/secret
	"$CTL" tenant add acme &&
		"$CTL" key add acme --key-id k1 --public "$PUB" &&
		"$CTL" group add --id 1 --replicas 3 || return 1
	unset PARLEY_META PARLEY_SECRET_FILE
	map_has "$smeta" "broker 1 broker-1 active" "broker 3 broker-3 active" "group 1 " "tenant acme" || return 1
	start sysd-gateway "$GATEWAY" -c "$S/gateway.ini"
	wait_http "http://127.0.0.1:$shttp/healthz" || return 1
	room_created "$stcp" || return 1
	for n in 0 1 2; do
		groups_hosted "http://127.0.0.1:${shp[$n]}/metrics" 2 || return 1
	done
	converged "http://127.0.0.1:${shp[0]}/metrics" "http://127.0.0.1:${shp[1]}/metrics" \
		"http://127.0.0.1:${shp[2]}/metrics" "http://127.0.0.1:$shttp/metrics" || return 1
	stop sysd-gateway sysd-broker-1 sysd-broker-2 sysd-broker-3
}
check "systemd_cluster_bootstraps_and_serves" sysd_cluster

# -- systemd, static: broker-1.ini, broker-2.ini and gateway.ini --
T=$TMP/static
mkdir -p "$T"
tl=("${P[22]}" "${P[23]}") th=("${P[24]}" "${P[25]}") ttcp=${P[26]} thttp=${P[27]}
static_run() {
	local n
	for n in 1 2; do
		"${PY[@]}" rewrite "$SYSD/broker-$n.ini" "$T/broker-$n.ini" \
			"set:broker|listen=tcp://127.0.0.1:${tl[$((n - 1))]}" \
			"set:broker|http=127.0.0.1:${th[$((n - 1))]}" || return 1
		# As parley-broker@N.service runs it.
		start "static-broker-$n" "$BROKER" -c "$T/broker-$n.ini" --group="$n" --data="$T/data-$n"
	done
	"${PY[@]}" rewrite "$SYSD/gateway.ini" "$T/gateway.ini" \
		"addr:tcp://10.0.0.11:7401=tcp://127.0.0.1:${tl[0]}" \
		"addr:tcp://10.0.0.12:7403=tcp://127.0.0.1:${tl[1]}" \
		"set:gateway|tcp=tcp://127.0.0.1:$ttcp" "set:gateway|http=127.0.0.1:$thttp" \
		"set:gateway|web_root=$ROOT/web" "set:tenant.acme|key.k1=$PUB" || return 1
	start static-gateway "$GATEWAY" -c "$T/gateway.ini"
	wait_http "http://127.0.0.1:$thttp/healthz" || return 1
	wait_http "http://127.0.0.1:${th[0]}/healthz" || return 1
	room_created "$ttcp" || return 1
	stop static-gateway static-broker-1 static-broker-2
}
check "systemd_static_examples_serve" static_run

# ---- promtool, systemd-analyze -------------------------------------------

if command -v promtool > /dev/null; then
	check "prometheus_rules_valid" promtool check rules "$PROM/alerts.yml"
	check "prometheus_config_valid" promtool check config "$PROM/prometheus.yml"
	check "prometheus_rule_tests_pass" promtool test rules "$PROM/alerts_test.yml"
	# A test expecting the wrong thing must fail, or the tests prove nothing.
	mkdir -p "$TMP/prom"
	cp "$PROM/alerts.yml" "$TMP/prom/"
	sed 's/summary: "Shard group 3 has fewer voters than the map wants"/summary: "wrong"/' \
		"$PROM/alerts_test.yml" > "$TMP/prom/alerts_test.yml"
	check "prometheus_rule_tests_can_fail" fails promtool test rules "$TMP/prom/alerts_test.yml"
else
	skipped "prometheus_rules" "no promtool (Debian package prometheus)"
fi

units_verify() {
	# A template is verified through an instance of it.
	mkdir -p "$TMP/units"
	cp "$SYSD"/*.service "$TMP/units/"
	# The binaries are not installed here: that complaint is expected.
	systemd-analyze verify --man=no "$TMP/units/parley-broker@1.service" \
		"$TMP/units/parley-cluster-broker.service" "$TMP/units/parley-gateway.service" 2>&1 |
		grep -v 'is not executable: No such file or directory' | tee "$TMP/verify"
	[ ! -s "$TMP/verify" ]
}
if command -v systemd-analyze > /dev/null; then
	check "systemd_units_verify" units_verify
else
	skipped "systemd_units_verify" "no systemd-analyze"
fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
