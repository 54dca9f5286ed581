#!/usr/bin/env bash
# bench/replicas.sh - durable publish throughput and publish->ack latency of
# one shard group with 1 replica and with 3 replicas, side by side in one
# run on this machine. Each setup gets a fresh data directory, a gateway in
# front of the group's leader, and the same parley-bench load: first a
# fixed rate (RATE msg/s over ROOMS rooms), then the highest rate
# (CONNS connections x INFLIGHT in flight).
#
#   bench/replicas.sh
#   RATE=2000 DURATION=15 bench/replicas.sh
#
# Loopback only; every process is stopped by PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${PARLEY_BUILD:-$ROOT/build}
RATE=${RATE:-2000}
ROOMS=${ROOMS:-1000}
DURATION=${DURATION:-15}
CONNS=${CONNS:-16}
INFLIGHT=${INFLIGHT:-64}
BASE=${PORT_BASE:-28400}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init replicas

# run N: a group of N replicas, a gateway on its leader, the two loads.
run() {
	local n=$1 d="$DIR/r$1"
	mkdir -p "$d"
	for i in $(seq 1 "$n"); do
		{
			echo "[broker]"
			echo "id = broker-$i"
			echo "group = 1"
			echo "node = $i"
			echo "listen = tcp://127.0.0.1:$((BASE + i))"
			echo "http = 127.0.0.1:$((BASE + 10 + i))"
			echo "data = $d/data-$i"
			echo "secret_file = $DIR/secret"
			if [ "$n" -gt 1 ]; then
				for j in $(seq 1 "$n"); do
					echo "[replica.$j]"
					echo "listen = tcp://127.0.0.1:$((BASE + j))"
					echo "peer = tcp://127.0.0.1:$((BASE + 20 + j))"
				done
			fi
		} > "$d/broker-$i.ini"
		"$BUILD/broker/parley-broker" -c "$d/broker-$i.ini" > "$d/broker-$i.log" 2>&1 &
		echo $! > "$DIR/broker-$i.pid"
	done
	local lead=""
	for _ in $(seq 1 100); do
		for i in $(seq 1 "$n"); do
			if curl -fsS "http://127.0.0.1:$((BASE + 10 + i))/metrics" 2>/dev/null |
				grep -q '^parley_broker_raft_leader 1'; then
				lead=$i
			fi
		done
		[ -n "$lead" ] && break
		sleep 0.1
	done
	{
		echo "[gateway]"
		echo "id = gw-bench"
		echo "tcp = tcp://127.0.0.1:$((BASE + 30))"
		echo "http = 127.0.0.1:$((BASE + 31))"
		echo "publish_per_sec = 1000000"
		echo "[group.1]"
		echo "broker = tcp://127.0.0.1:$((BASE + lead))"
		echo "[tenant.acme]"
		grep '^key\.' "$DIR/acme.pub"
	} > "$d/gateway.ini"
	"$BUILD/gateway/parley-gateway" -c "$d/gateway.ini" > "$d/gateway.log" 2>&1 &
	echo $! > "$DIR/gateway.pid"
	for _ in $(seq 1 50); do
		curl -fsS "http://127.0.0.1:$((BASE + 31))/healthz" > /dev/null 2>&1 && break
		sleep 0.1
	done
	echo "== $n replica(s), leader broker-$lead"
	echo "-- fixed rate: $RATE msg/s over $ROOMS rooms"
	"$BUILD/bench/parley-bench" --url "tcp://127.0.0.1:$((BASE + 30))" \
		--key "$DIR/acme.key" --connections 20 --rooms "$ROOMS" \
		--rate "$RATE" --duration "$DURATION" --warmup 3 --no-subscribers |
		grep -E "throughput|publish->ack|sent|acked|errors" || true
	commits "$lead"
	echo "-- highest rate: $CONNS connections x $INFLIGHT in flight"
	"$BUILD/bench/parley-bench" --url "tcp://127.0.0.1:$((BASE + 30))" \
		--key "$DIR/acme.key" --connections "$CONNS" --rooms "$ROOMS" \
		--inflight "$INFLIGHT" --duration "$DURATION" --warmup 3 \
		--no-subscribers | grep -E "throughput|publish->ack|sent|acked|errors" || true
	commits "$lead"
	stop_all
}

# Durable commits on the leader so far and writes per commit.
commits() {
	curl -fsS "http://127.0.0.1:$((BASE + 10 + $1))/metrics" | awk '
		/^parley_broker_commit_rounds_total / { r = $2 }
		/^parley_broker_raft_proposals_total / { p = $2 }
		END { if (r > 0) printf "leader: %d writes in %d durable commits (%.1f per commit)\n", p, r, p / r }'
}

run 1
run 3
