#!/usr/bin/env bash
# bench/failover.sh - failover time of a 3-replica shard group: kill -9 of
# the leader to the first successful ack through the gateway, measured by
# a client publishing one message at a time (parley-failover-probe). Each
# round kills the current leader, waits for the pause to end, restarts the
# killed broker and lets it catch up. Prints every pause, the median, the
# maximum, and the number of errors the client saw (must be 0).
#
#   bench/failover.sh                 # 20 kills
#   KILLS=50 ELECTION_MS=400 bench/failover.sh
#
# Everything runs on 127.0.0.1 in a temporary directory and is stopped by
# PID at the end. Build first (deploy/local/setup.sh or cmake).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${PARLEY_BUILD:-$ROOT/build}
KILLS=${KILLS:-20}
ELECTION_MS=${ELECTION_MS:-400}
HEARTBEAT_MS=${HEARTBEAT_MS:-50}
BASE=${PORT_BASE:-27400}
DIR=$(mktemp -d /tmp/parley-failover-XXXXXX)
PIDS=()

cleanup() {
	for p in "${PIDS[@]}" $(cat "$DIR"/*.pid 2>/dev/null); do
		kill -9 "$p" 2>/dev/null || true
	done
	if [ -n "${KEEP:-}" ]; then echo "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

head -c 32 /dev/urandom | base64 > "$DIR/secret"
"$BUILD/client/parleyctl" keygen --tenant acme --key-id k1 \
	--out "$DIR/acme.key" > "$DIR/acme.pub"

broker_ini() {
	local i=$1
	echo "[broker]"
	echo "id = broker-1-$i"
	echo "group = 1"
	echo "node = $i"
	echo "listen = tcp://127.0.0.1:$((BASE + i))"
	echo "http = 127.0.0.1:$((BASE + 10 + i))"
	echo "data = $DIR/data-$i"
	echo "secret_file = $DIR/secret"
	echo "election_ms = $ELECTION_MS"
	echo "heartbeat_ms = $HEARTBEAT_MS"
	for j in 1 2 3; do
		echo "[replica.$j]"
		echo "listen = tcp://127.0.0.1:$((BASE + j))"
		echo "peer = tcp://127.0.0.1:$((BASE + 20 + j))"
	done
}

start_broker() {
	local i=$1
	"$BUILD/broker/parley-broker" -c "$DIR/broker-$i.ini" \
		>> "$DIR/broker-$i.log" 2>&1 &
	echo $! > "$DIR/broker-$i.pid"
}

for i in 1 2 3; do
	broker_ini "$i" > "$DIR/broker-$i.ini"
	start_broker "$i"
done
{
	echo "[gateway]"
	echo "id = gw-failover"
	echo "publish_per_sec = 100000"
	echo "tcp = tcp://127.0.0.1:$((BASE + 30))"
	echo "http = 127.0.0.1:$((BASE + 31))"
	echo "[group.1]"
	echo "broker = tcp://127.0.0.1:$((BASE + 1)), tcp://127.0.0.1:$((BASE + 2)), tcp://127.0.0.1:$((BASE + 3))"
	echo "[tenant.acme]"
	grep '^key\.' "$DIR/acme.pub"
} > "$DIR/gateway.ini"
"$BUILD/gateway/parley-gateway" -c "$DIR/gateway.ini" > "$DIR/gateway.log" 2>&1 &
PIDS+=($!)

# The replica that leads the highest term (a deposed leader may not know
# yet that it was replaced).
leader() {
	local best="" best_term=-1
	for i in 1 2 3; do
		local m
		m=$(curl -fsS "http://127.0.0.1:$((BASE + 10 + i))/metrics" 2>/dev/null) || continue
		if echo "$m" | grep -q '^parley_broker_raft_leader 1$'; then
			local t
			t=$(echo "$m" | awk '/^parley_broker_raft_term / { print $2 }')
			if [ "${t:-0}" -gt "$best_term" ]; then
				best=$i
				best_term=$t
			fi
		fi
	done
	[ -n "$best" ] && echo "$best"
}

for _ in $(seq 1 100); do
	leader > /dev/null && break
	sleep 0.1
done
TOKEN=$("$BUILD/client/parleyctl" token --key "$DIR/acme.key" --user probe --role service)
SECONDS_TOTAL=$((KILLS * 5 + 10))
"$BUILD/bench/parley-failover-probe" --url "tcp://127.0.0.1:$((BASE + 30))" \
	--token "$TOKEN" --seconds "$SECONDS_TOTAL" > "$DIR/probe.out" &
PROBE=$!
PIDS+=($PROBE)
sleep 2
: > "$DIR/kills"
for k in $(seq 1 "$KILLS"); do
	l=""
	for _ in $(seq 1 50); do
		l=$(leader) && break
		sleep 0.1
	done
	[ -n "$l" ] || { echo "failover: no leader before kill $k" >&2; exit 1; }
	pid=$(cat "$DIR/broker-$l.pid")
	t=$(date +%s%3N)
	kill -9 "$pid"
	echo "$t $l" >> "$DIR/kills"
	sleep 2.5
	start_broker "$l"
	sleep 2
done
kill "$PROBE" 2>/dev/null || true
wait "$PROBE" 2>/dev/null || true

python3 - "$DIR/kills" "$DIR/probe.out" <<'PY'
import sys
kills = [int(l.split()[0]) for l in open(sys.argv[1])]
acks, errs = [], 0
for line in open(sys.argv[2]):
    f = line.split()
    if f[0] == "ack":
        acks.append(int(f[2]))
    elif f[0] == "err":
        errs += 1
# The pause of a kill: the longest silence between two acks that starts
# around the kill (acks already on their way may still arrive just after
# it), measured from the kill to the ack that ends it.
acks.sort()
pauses = []
for t in kills:
    best = None
    for a, b in zip(acks, acks[1:]):
        if a <= t + 20 and b > t and b - t < 10000:
            if best is None or b - a > best[1] - best[0]:
                best = (a, b)
    if best:
        pauses.append(best[1] - t)
pauses.sort()
print("failover pauses (ms):", " ".join(str(p) for p in pauses))
if pauses:
    print("kills %d  p50 %d ms  max %d ms  client errors %d  acks %d" % (
        len(pauses), pauses[len(pauses) // 2], pauses[-1], errs, len(acks)))
PY
