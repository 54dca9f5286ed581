#!/usr/bin/env bash
# bench/groups.sh - a cluster run by its map, measured on this machine:
# three cluster brokers (each a meta replica), shard groups of three
# replicas placed by the map, one gateway that knows only the meta group.
#
#   scale   for G in $GROUPS_LIST (default "1 2 4 8"), a fresh cluster with
#           G groups: the highest rate (CONNS connections x INFLIGHT in
#           flight over ROOMS rooms, spread over the groups by the map's
#           weights) and a fixed rate (RATE msg/s): rate, p50/p99
#   add     time from `parleyctl group add` to the first room created on
#           the new group (ADD_REPS times)
#   idle    IDLE groups (default 100) and no traffic: each broker's CPU
#           (user+system seconds per second) and RSS over IDLE_S seconds
#
#   bench/groups.sh            # all three
#   bench/groups.sh idle       # one of them
#   GROUPS_LIST="1 4" DURATION=10 bench/groups.sh scale
#   QUIET_MS=0 bench/groups.sh idle   # idle groups keep their Raft clocks
#
# Loopback only; every process is stopped by PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${PARLEY_BUILD:-$ROOT/build}
CTL="$BUILD/client/parleyctl"
GROUPS_LIST=${GROUPS_LIST:-"1 2 4 8"}
ROOMS=${ROOMS:-1000}
RATE=${RATE:-2000}
CONNS=${CONNS:-16}
INFLIGHT=${INFLIGHT:-64}
DURATION=${DURATION:-15}
IDLE=${IDLE:-100}
IDLE_S=${IDLE_S:-10}
ADD_REPS=${ADD_REPS:-5}
BASE=${PORT_BASE:-28600}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init groups
port() { echo $((BASE + 3 * $1 + $2)); } # broker n: +0 listen, +1 peer, +2 http
META="tcp://127.0.0.1:$(port 1 0),tcp://127.0.0.1:$(port 2 0),tcp://127.0.0.1:$(port 3 0)"
export PARLEY_META=$META PARLEY_SECRET_FILE=$DIR/secret
GW_TCP=$((BASE + 30))
GW_HTTP=$((BASE + 31))

# A fresh cluster: three brokers, the tenant and its key, a gateway.
cluster_up() {
	rm -rf "$DIR/data"
	mkdir -p "$DIR/data"
	for n in 1 2 3; do
		{
			echo "[broker]"
			echo "id = broker-$n"
			echo "node = $n"
			echo "listen = tcp://127.0.0.1:$(port "$n" 0)"
			echo "peer = tcp://127.0.0.1:$(port "$n" 1)"
			echo "http = 127.0.0.1:$(port "$n" 2)"
			echo "data = $DIR/data/broker-$n"
			echo "secret_file = $DIR/secret"
			echo "map_size_mb = ${MAP_MB:-256}"
			echo "quiet_after_ms = ${QUIET_MS:-2000}"
			for m in 1 2 3; do
				echo "[meta.$m]"
				echo "listen = tcp://127.0.0.1:$(port "$m" 0)"
				echo "peer = tcp://127.0.0.1:$(port "$m" 1)"
			done
		} > "$DIR/broker-$n.ini"
		"$BUILD/broker/parley-broker" -c "$DIR/broker-$n.ini" \
			> "$DIR/broker-$n.log" 2>&1 &
		echo $! > "$DIR/broker-$n.pid"
	done
	for _ in $(seq 1 100); do
		"$CTL" tenant add acme > /dev/null 2>&1 && break
		sleep 0.1
	done
	"$CTL" key add acme --key-id k1 \
		--public "$(sed -n 's/^key\.k1 *= *//p' "$DIR/acme.pub")" > /dev/null
	{
		echo "[gateway]"
		echo "id = gw-bench"
		echo "tcp = tcp://127.0.0.1:$GW_TCP"
		echo "http = 127.0.0.1:$GW_HTTP"
		echo "publish_per_sec = 1000000"
		echo "meta = $META"
	} > "$DIR/gateway.ini"
	"$BUILD/gateway/parley-gateway" -c "$DIR/gateway.ini" > "$DIR/gateway.log" 2>&1 &
	echo $! > "$DIR/gateway.pid"
}

# Adds groups 1..$1 (ids named: a retry is a no-op) and waits until every
# group reports a leader.
groups_add() {
	for g in $(seq 1 "$1"); do
		"$CTL" group add --id "$g" --replicas 3 > /dev/null
	done
	for _ in $(seq 1 300); do
		"$CTL" cluster status > "$DIR/status.txt" 2>/dev/null && return 0
		sleep 0.2
	done
	echo "groups.sh: not every group has a leader" >&2
	return 1
}

bench_run() {
	"$BUILD/bench/parley-bench" --url "tcp://127.0.0.1:$GW_TCP" \
		--key "$DIR/acme.key" --rooms "$ROOMS" --duration "$DURATION" \
		--warmup 3 --no-subscribers "$@" |
		grep -E "achieved|latency|publish->ack|errors" || true
}

scale() {
	echo "== scale: groups of 3 replicas on 3 brokers, $ROOMS rooms, 200-byte bodies"
	for g in $GROUPS_LIST; do
		cluster_up
		groups_add "$g"
		sleep 1
		echo "-- $g group(s): highest rate, $CONNS connections x $INFLIGHT in flight"
		bench_run --connections "$CONNS" --inflight "$INFLIGHT"
		echo "-- $g group(s): fixed rate $RATE msg/s"
		bench_run --connections 20 --rate "$RATE"
		stop_all
	done
}

# Seconds from `group add` to the first room created on the new group.
add() {
	echo "== add: group add -> first room on it ($ADD_REPS times)"
	cluster_up
	groups_add 1
	local tok
	tok=$("$CTL" token --key "$DIR/acme.key" --user ops --role service --ttl 600)
	for i in $(seq 2 $((ADD_REPS + 1))); do
		# Only the new group takes rooms: the others drain.
		for d in $(seq 1 $((i - 1))); do "$CTL" group drain "$d" > /dev/null; done
		sleep 1.5
		local t0 room n=0
		t0=$(date +%s%N)
		"$CTL" group add --id "$i" --replicas 3 > /dev/null
		while :; do
			room=$(PARLEY_URL=tcp://127.0.0.1:$GW_TCP PARLEY_TOKEN=$tok \
				"$CTL" room create 2>/dev/null || true)
			[ -n "$room" ] && [ $((16#${room:0:4})) -eq "$i" ] && break
			n=$((n + 1))
			[ "$n" -gt 500 ] && { echo "   group $i: no room after 500 tries"; break; }
			sleep 0.01
		done
		echo "   group $i: first room $room after $((($(date +%s%N) - t0) / 1000000)) ms ($n earlier attempts refused or elsewhere)"
	done
	stop_all
}

# user+system CPU seconds of pid so far.
cpu_s() {
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"
}

idle() {
	echo "== idle: $IDLE groups of 3 replicas on 3 brokers, no traffic, ${IDLE_S} s"
	cluster_up
	groups_add "$IDLE"
	sleep 3
	local before=() n
	for n in 1 2 3; do before[$n]=$(cpu_s "$(cat "$DIR/broker-$n.pid")"); done
	sleep "$IDLE_S"
	for n in 1 2 3; do
		local pid after rss threads
		pid=$(cat "$DIR/broker-$n.pid")
		after=$(cpu_s "$pid")
		rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
		threads=$(awk '/^Threads/ { print $2 }' "/proc/$pid/status")
		awk -v b="${before[$n]}" -v a="$after" -v s="$IDLE_S" -v r="$rss" \
			-v t="$threads" -v n="$n" -v g="$IDLE" 'BEGIN {
			printf "   broker %d: %d replicas, CPU %.1f%% of a core, RSS %.0f MiB (%.2f MiB per replica), %d threads\n",
				n, g + 1, 100 * (a - b) / s, r / 1024, r / 1024 / (g + 1), t }'
	done
	stop_all
}

case "${1:-all}" in
scale) scale ;;
add) add ;;
idle) idle ;;
all) scale; add; idle ;;
*) echo "usage: $0 [scale|add|idle|all]" >&2; exit 2 ;;
esac
