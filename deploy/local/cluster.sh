#!/usr/bin/env bash
# Starts or stops a local Parley cluster on loopback: N shard groups
# (default 2), each served by PARLEY_REPLICAS broker replicas (default 1:
# one broker per group; 3 or 5 make each group a Raft group), behind one
# gateway. State, configs, keys, the cluster secret, logs and PID files
# live in $PARLEY_HOME (default .parley/ in the repo).
#
#   deploy/local/cluster.sh start     # build first with deploy/local/setup.sh
#   deploy/local/cluster.sh stop
#   deploy/local/cluster.sh status    # processes, and every replica's role
#   PARLEY_REPLICAS=3 deploy/local/cluster.sh start
#   deploy/local/cluster.sh kill-leader 1   # kill -9 group 1's leader
#   deploy/local/cluster.sh restart broker-1-2
#   PARLEY_MAP=1 deploy/local/cluster.sh start   # run by the cluster map
#
# With PARLEY_MAP=1 the topology lives in the cluster map instead of
# configs (docs/cluster.md): three brokers (node 1..3; broker n listens
# on 7500+3n-2, peers on 7500+3n-1, HTTP on 7500+3n), each a replica of
# the meta group, register themselves; parleyctl then adds the tenant
# and its key and PARLEY_GROUPS shard groups of three replicas, placed by
# the map; two gateways (7100/7180 and 7101/7181) know only the meta
# addresses. Later changes: parleyctl group add|drain, tenant add, key
# add|revoke, replica move, broker drain, leader rebalance with --meta and
# --secret (see `cluster.sh meta-env`); `cluster.sh add-broker 4` starts a
# fourth broker (no meta replica), `cluster.sh rolling-restart` restarts
# every broker in turn, moving its leaderships away first.
#
# Ports: the gateway on 7100 (TCP) and 7180 (HTTP, WebSocket). With one
# replica, group g's broker listens on 7400+2g-1 and serves HTTP on
# 7400+2g. With several, replica r of group g uses 7400+20(g-1)+3(r-1)
# + 1 (gateway-facing), + 2 (peer) and + 3 (HTTP). PARLEY_ELECTION_MS and
# PARLEY_HEARTBEAT_MS set the replicas' election_ms and heartbeat_ms.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
HOME_DIR=${PARLEY_HOME:-$ROOT/.parley}
BUILD=${PARLEY_BUILD:-$ROOT/build}
GROUPS_N=${PARLEY_GROUPS:-2}
REPLICAS=${PARLEY_REPLICAS:-1}
TCP_PORT=${PARLEY_TCP_PORT:-7100}
HTTP_PORT=${PARLEY_HTTP_PORT:-7180}
BROKER_BASE=${PARLEY_BROKER_PORT:-7400}
CTL="$BUILD/client/parleyctl"

# Port of replica r of group g: kind 1 listen, 2 peer, 3 http.
rport() { echo $((BROKER_BASE + 20 * ($1 - 1) + 3 * ($2 - 1) + $3)); }

# [group.g] broker: the broker's address, or every replica's.
group_brokers() {
	local g=$1
	if [ "$REPLICAS" -le 1 ]; then
		echo "tcp://127.0.0.1:$((BROKER_BASE + 2 * g - 1))"
		return
	fi
	local list=""
	for r in $(seq 1 "$REPLICAS"); do
		list="$list${list:+, }tcp://127.0.0.1:$(rport "$g" "$r" 1)"
	done
	echo "$list"
}

# The cluster secret replicas prove membership with: base64 of 32
# random bytes, the same file for every replica, kept across restarts.
secret() {
	if [ ! -s "$HOME_DIR/secret" ]; then
		(umask 077 && head -c 32 /dev/urandom | base64 > "$HOME_DIR/secret")
	fi
}

replica_ini() {
	local g=$1 r=$2
	echo "[broker]"
	echo "id = broker-$g-$r"
	echo "group = $g"
	echo "node = $r"
	echo "listen = tcp://127.0.0.1:$(rport "$g" "$r" 1)"
	echo "peer = tcp://127.0.0.1:$(rport "$g" "$r" 2)"
	echo "http = 127.0.0.1:$(rport "$g" "$r" 3)"
	echo "data = $HOME_DIR/data/broker-$g-$r"
	echo "durability = ${PARLEY_DURABILITY:-sync}"
	echo "secret_file = $HOME_DIR/secret"
	[ -n "${PARLEY_ELECTION_MS:-}" ] && echo "election_ms = $PARLEY_ELECTION_MS"
	[ -n "${PARLEY_HEARTBEAT_MS:-}" ] && echo "heartbeat_ms = $PARLEY_HEARTBEAT_MS"
	for j in $(seq 1 "$REPLICAS"); do
		echo
		echo "[replica.$j]"
		echo "listen = tcp://127.0.0.1:$(rport "$g" "$j" 1)"
		echo "peer = tcp://127.0.0.1:$(rport "$g" "$j" 2)"
	done
}

start_replicas() {
	secret
	mkdir -p "$HOME_DIR/data"
	for g in $(seq 1 "$GROUPS_N"); do
		for r in $(seq 1 "$REPLICAS"); do
			replica_ini "$g" "$r" > "$HOME_DIR/broker-$g-$r.ini"
			launch "broker-$g-$r" "$BUILD/broker/parley-broker" \
				-c "$HOME_DIR/broker-$g-$r.ini"
		done
	done
}

start() {
	mkdir -p "$HOME_DIR"
	if [ ! -f "$HOME_DIR/acme.key" ]; then
		"$CTL" keygen --tenant acme --key-id k1 --out "$HOME_DIR/acme.key" \
			> "$HOME_DIR/acme.pub"
	fi
	local gw="$HOME_DIR/gateway.ini"
	{
		echo "[gateway]"
		echo "id = gw-local"
		echo "tcp = tcp://127.0.0.1:$TCP_PORT"
		echo "http = 127.0.0.1:$HTTP_PORT"
		echo "web_root = $ROOT/web"
		# Extra [gateway] lines, e.g. PARLEY_GW_EXTRA="publish_per_sec = 100000"
		# for benchmarks.
		[ -n "${PARLEY_GW_EXTRA:-}" ] && printf '%b\n' "$PARLEY_GW_EXTRA"
		for g in $(seq 1 "$GROUPS_N"); do
			echo
			echo "[group.$g]"
			echo "broker = $(group_brokers "$g")"
			echo "weight = 1"
		done
		echo
		echo "[tenant.acme]"
		grep '^key\.' "$HOME_DIR/acme.pub"
	} > "$gw"
	if [ "$REPLICAS" -gt 1 ]; then
		start_replicas
	else
		start_brokers
	fi
	launch gateway "$BUILD/gateway/parley-gateway" -c "$gw"
	wait_up
}

start_brokers() {
	for g in $(seq 1 "$GROUPS_N"); do
		local ini="$HOME_DIR/broker-$g.ini"
		cat > "$ini" <<INI
[broker]
id = broker-$g
group = $g
listen = tcp://127.0.0.1:$((BROKER_BASE + 2 * g - 1))
http = 127.0.0.1:$((BROKER_BASE + 2 * g))
data = $HOME_DIR/data/broker-$g
durability = ${PARLEY_DURABILITY:-sync}
INI
		mkdir -p "$HOME_DIR/data"
		launch "broker-$g" "$BUILD/broker/parley-broker" -c "$ini"
	done
}

wait_up() {
	for _ in $(seq 1 100); do
		for f in "$HOME_DIR"/*.pid; do
			if ! alive "$(cat "$f")"; then
				echo "cluster: $(basename "$f" .pid) exited; see $HOME_DIR/$(basename "$f" .pid).log" >&2
				tail -n 5 "$HOME_DIR/$(basename "$f" .pid).log" >&2
				return 1
			fi
		done
		if curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1; then
			echo "cluster: up ($GROUPS_N shard groups x $REPLICAS replica(s), gateway on tcp://127.0.0.1:$TCP_PORT and ws://127.0.0.1:$HTTP_PORT/ws)"
			return 0
		fi
		sleep 0.1
	done
	echo "cluster: gateway did not become healthy; see $HOME_DIR/*.log" >&2
	return 1
}

# alive PID: the process exists and is not a zombie. kill -0 succeeds on
# a killed child nobody reaped yet (where PID 1 does not reap), so the
# state letter in /proc decides: Z (zombie) and X (dead) are not alive.
alive() {
	local pid=$1 state
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

launch() {
	local name=$1
	shift
	if [ -f "$HOME_DIR/$name.pid" ] && alive "$(cat "$HOME_DIR/$name.pid")"; then
		echo "cluster: $name already running (pid $(cat "$HOME_DIR/$name.pid"))"
		return 0
	fi
	nohup "$@" >> "$HOME_DIR/$name.log" 2>&1 &
	echo $! > "$HOME_DIR/$name.pid"
}

stop() {
	rm -f "$HOME_DIR/map-mode"
	for f in "$HOME_DIR"/*.pid; do
		[ -f "$f" ] || continue
		local pid
		pid=$(cat "$f")
		if alive "$pid"; then
			kill "$pid"
			for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$f"
	done
	echo "cluster: stopped"
}

status() {
	local up=0
	for f in "$HOME_DIR"/*.pid; do
		[ -f "$f" ] || continue
		local pid
		pid=$(cat "$f")
		if alive "$pid"; then state=running; else state=dead; fi
		[ "$(basename "$f" .pid)" = gateway ] && [ $state = running ] && up=1
		echo "$(basename "$f" .pid): pid $pid $state"
	done
	# Every replica's role, term and lag, as the gateway sees them.
	if [ $up = 1 ] && [ -f "$HOME_DIR/acme.key" ]; then
		local tok
		tok=$("$CTL" token --key "$HOME_DIR/acme.key" --user ops \
			--role service --ttl 60 2>/dev/null) || return 0
		echo
		PARLEY_TOKEN=$tok "$CTL" group status \
			--url "tcp://127.0.0.1:$TCP_PORT" || true
	fi
	if [ -f "$HOME_DIR/map-mode" ]; then
		echo
		map_env
		"$CTL" cluster status || true
	fi
}

ops_token() {
	"$CTL" token --key "$HOME_DIR/acme.key" --user ops --role service --ttl 60
}

# The node id of group $1's leader, as the gateway reports it.
leader_of() {
	PARLEY_TOKEN=$(ops_token) "$CTL" group status \
		--url "tcp://127.0.0.1:$TCP_PORT" |
		awk -v g="$1" '$1 == "*" && $2 == g { print $4 }'
}

# kill-leader G: kill -9 the replica leading group G (a machine dying).
# Run by the map, brokers are named by node only (broker-N).
kill_leader() {
	local g=${1:?group} n name
	n=$(leader_of "$g")
	[ -n "$n" ] || { echo "cluster: group $g has no leader" >&2; return 1; }
	name=broker-$g-$n
	[ -f "$HOME_DIR/map-mode" ] && name=broker-$n
	kill -9 "$(cat "$HOME_DIR/$name.pid")"
	rm -f "$HOME_DIR/$name.pid"
	echo "$name"
}

# restart NAME: starts a stopped broker again on its data (broker-G-N).
restart() {
	local name=${1:?name}
	[ -f "$HOME_DIR/$name.ini" ] || { echo "cluster: no $name" >&2; return 1; }
	launch "$name" "$BUILD/broker/parley-broker" -c "$HOME_DIR/$name.ini"
}

MAP_BASE=${PARLEY_MAP_PORT:-7500}
mport() { echo $((MAP_BASE + 3 * $1 - 3 + $2)); }
meta_list() {
	local l=""
	for n in 1 2 3; do l="$l${l:+,}tcp://127.0.0.1:$(mport "$n" 1)"; done
	echo "$l"
}

# The environment parleyctl's map commands read.
meta_env() {
	echo "export PARLEY_META=$(meta_list)"
	echo "export PARLEY_SECRET_FILE=$HOME_DIR/secret"
}

# Cluster broker n: its own listeners and data, the meta group's three
# replicas (brokers 1..3; a broker above 3 hosts no meta replica).
map_broker() {
	local n=$1
	{
		echo "[broker]"
		echo "id = broker-$n"
		echo "node = $n"
		echo "listen = tcp://127.0.0.1:$(mport "$n" 1)"
		echo "peer = tcp://127.0.0.1:$(mport "$n" 2)"
		echo "http = 127.0.0.1:$(mport "$n" 3)"
		echo "data = $HOME_DIR/data/broker-$n"
		echo "durability = ${PARLEY_DURABILITY:-sync}"
		echo "secret_file = $HOME_DIR/secret"
		for m in 1 2 3; do
			echo "[meta.$m]"
			echo "listen = tcp://127.0.0.1:$(mport "$m" 1)"
			echo "peer = tcp://127.0.0.1:$(mport "$m" 2)"
		done
	} > "$HOME_DIR/broker-$n.ini"
	launch "broker-$n" "$BUILD/broker/parley-broker" -c "$HOME_DIR/broker-$n.ini"
}

map_env() {
	export PARLEY_META PARLEY_SECRET_FILE
	PARLEY_META=$(meta_list)
	PARLEY_SECRET_FILE=$HOME_DIR/secret
}

# add-broker N: one more cluster broker (N > 3); it registers itself and
# the map places new replicas on it from then on.
add_broker() {
	local n=${1:?node}
	[ "$n" -gt 3 ] || { echo "cluster: brokers 1..3 exist" >&2; return 2; }
	map_env
	map_broker "$n"
	for _ in $(seq 1 100); do
		"$CTL" cluster map | grep -q "^broker $n " && {
			echo "broker-$n"
			return 0
		}
		sleep 0.1
	done
	echo "cluster: broker-$n did not register (see $HOME_DIR/broker-$n.log)" >&2
	return 1
}

# rolling-restart: every broker in turn moves its leaderships away, is
# stopped (SIGTERM: it hands the meta group over as it stops), started
# again and caught up; then leaders are rebalanced.
rolling_restart() {
	map_env
	for f in "$HOME_DIR"/broker-[0-9]*.ini; do
		local name n pid
		name=$(basename "$f" .ini)
		n=${name#broker-}
		[ -f "$HOME_DIR/$name.pid" ] || continue
		"$CTL" broker prepare-restart --node "$n"
		pid=$(cat "$HOME_DIR/$name.pid")
		kill "$pid"
		for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
		rm -f "$HOME_DIR/$name.pid"
		launch "$name" "$BUILD/broker/parley-broker" -c "$f"
		# Caught up: every group reports a leader and no replica lags.
		for _ in $(seq 1 100); do
			"$CTL" cluster status > "$HOME_DIR/status.txt" 2>&1 &&
				! grep -Eq 'unreachable|lag=[1-9]' "$HOME_DIR/status.txt" &&
				break
			sleep 0.2
		done
		echo "$name restarted"
	done
	"$CTL" leader rebalance
}

map_start() {
	mkdir -p "$HOME_DIR/data"
	touch "$HOME_DIR/map-mode"
	secret
	if [ ! -f "$HOME_DIR/acme.key" ]; then
		"$CTL" keygen --tenant acme --key-id k1 --out "$HOME_DIR/acme.key" \
			> "$HOME_DIR/acme.pub"
	fi
	for n in 1 2 3; do map_broker "$n"; done
	for f in "$HOME_DIR"/broker-[0-9]*.ini; do
		n=$(basename "$f" .ini)
		n=${n#broker-}
		[ "$n" -gt 3 ] && map_broker "$n"
	done
	map_env
	# Idempotent: on a restart these change nothing.
	local pub
	pub=$(sed -n 's/^key\.k1 *= *//p' "$HOME_DIR/acme.pub")
	for _ in $(seq 1 100); do
		"$CTL" tenant add acme > /dev/null 2>&1 && break
		sleep 0.1
	done
	"$CTL" key add acme --key-id k1 --public "$pub" > /dev/null
	local have
	have=$("$CTL" cluster map | grep -c '^group ' || true)
	for _ in $(seq $((have + 1)) "$GROUPS_N"); do
		"$CTL" group add --replicas 3 > /dev/null
	done
	for i in 0 1; do
		{
			echo "[gateway]"
			echo "id = gw-local-$((i + 1))"
			echo "tcp = tcp://127.0.0.1:$((TCP_PORT + i))"
			echo "http = 127.0.0.1:$((HTTP_PORT + i))"
			echo "web_root = $ROOT/web"
			echo "meta = $(meta_list)"
			[ -n "${PARLEY_GW_EXTRA:-}" ] && printf '%b\n' "$PARLEY_GW_EXTRA"
		} > "$HOME_DIR/gateway-$((i + 1)).ini"
	done
	launch gateway "$BUILD/gateway/parley-gateway" -c "$HOME_DIR/gateway-1.ini"
	launch gateway-2 "$BUILD/gateway/parley-gateway" -c "$HOME_DIR/gateway-2.ini"
	REPLICAS=3 wait_up
}

case "${1:-}" in
start) if [ -n "${PARLEY_MAP:-}" ]; then mkdir -p "$HOME_DIR"; map_start; else start; fi ;;
meta-env) meta_env ;;
stop) stop ;;
status) status ;;
kill-leader) kill_leader "${2:-}" ;;
restart) restart "${2:-}" ;;
add-broker) add_broker "${2:-}" ;;
rolling-restart) rolling_restart ;;
*) echo "usage: $0 start|stop|status|meta-env|kill-leader GROUP|restart NAME|add-broker N|rolling-restart" >&2; exit 2 ;;
esac
