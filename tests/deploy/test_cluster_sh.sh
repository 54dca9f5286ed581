#!/usr/bin/env bash
# test_cluster_sh.sh - deploy/local/cluster.sh tells a zombie from a live
# process. A killed child that nobody reaped (where PID 1 does not reap)
# still answers kill -0; cluster.sh must call it dead, and `restart`
# must start the replica again instead of saying it is running.
#   fault: a .pid file naming a zombie;
#   invariant: status says dead, restart launches the broker.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
pass=0 fail=0
zpid=""
cleanup() {
	[ -n "$zpid" ] && kill -9 "$zpid" 2>/dev/null
	for f in "$TMP"/home/*.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
check() { # name, command...
	local name=$1
	shift
	if "$@"; then
		pass=$((pass + 1)); echo "ok   $name"
	else
		fail=$((fail + 1)); echo "FAIL $name"
	fi
}

mkdir -p "$TMP/home" "$TMP/build/broker"
# A stand-in broker: records that it started, then waits to be stopped.
cat > "$TMP/build/broker/parley-broker" <<'SH'
#!/bin/sh
echo started >> "$PARLEY_MARK"
exec sleep 30
SH
chmod +x "$TMP/build/broker/parley-broker"
echo "[broker]" > "$TMP/home/broker-1-1.ini"

# A zombie: the child exits at once, its parent (exec'd sleep) never
# waits for it.
bash -c 'sleep 0 & echo $! > "$0"; exec sleep 30' "$TMP/zpid" &
zparent=$!
zpid=$zparent
for _ in $(seq 1 50); do
	[ -s "$TMP/zpid" ] && [ "$(awk '{print $3}' "/proc/$(cat "$TMP/zpid")/stat" 2>/dev/null)" = Z ] && break
	sleep 0.1
done
zombie=$(cat "$TMP/zpid")
is_zombie() { [ "$(awk '{print $3}' "/proc/$zombie/stat" 2>/dev/null)" = Z ] && kill -0 "$zombie"; }
check "test_cluster_sh_zombie_made" is_zombie
echo "$zombie" > "$TMP/home/broker-1-1.pid"

export PARLEY_HOME="$TMP/home" PARLEY_BUILD="$TMP/build" PARLEY_MARK="$TMP/mark"
status_dead() { "$ROOT/deploy/local/cluster.sh" status | grep -q "broker-1-1: pid $zombie dead"; }
check "test_cluster_sh_status_calls_zombie_dead" status_dead
restart_starts() {
	"$ROOT/deploy/local/cluster.sh" restart broker-1-1 > "$TMP/out" 2>&1 || return 1
	for _ in $(seq 1 50); do [ -s "$TMP/mark" ] && break; sleep 0.1; done
	[ -s "$TMP/mark" ] && ! grep -q "already running" "$TMP/out"
}
check "test_cluster_sh_restart_replaces_zombie" restart_starts
live_running() { "$ROOT/deploy/local/cluster.sh" status | grep -q "broker-1-1: pid $(cat "$TMP/home/broker-1-1.pid") running"; }
check "test_cluster_sh_status_calls_live_running" live_running

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
