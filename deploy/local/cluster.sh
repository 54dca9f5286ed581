#!/usr/bin/env bash
# Starts or stops a local Parley cluster on loopback: N brokers (one shard
# group each, default 2) behind one gateway. State, configs, keys, logs and
# PID files live in $PARLEY_HOME (default .parley/ in the repo).
#
#   deploy/local/cluster.sh start     # build first with deploy/local/setup.sh
#   deploy/local/cluster.sh stop
#   deploy/local/cluster.sh status
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
HOME_DIR=${PARLEY_HOME:-$ROOT/.parley}
BUILD=${PARLEY_BUILD:-$ROOT/build}
GROUPS_N=${PARLEY_GROUPS:-2}
TCP_PORT=${PARLEY_TCP_PORT:-7100}
HTTP_PORT=${PARLEY_HTTP_PORT:-7180}
BROKER_BASE=${PARLEY_BROKER_PORT:-7400}
CTL="$BUILD/client/parleyctl"

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
			echo "broker = tcp://127.0.0.1:$((BROKER_BASE + 2 * g - 1))"
			echo "weight = 1"
		done
		echo
		echo "[tenant.acme]"
		grep '^key\.' "$HOME_DIR/acme.pub"
	} > "$gw"
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
	launch gateway "$BUILD/gateway/parley-gateway" -c "$gw"
	for _ in $(seq 1 100); do
		for f in "$HOME_DIR"/*.pid; do
			if ! kill -0 "$(cat "$f")" 2>/dev/null; then
				echo "cluster: $(basename "$f" .pid) exited; see $HOME_DIR/$(basename "$f" .pid).log" >&2
				tail -n 5 "$HOME_DIR/$(basename "$f" .pid).log" >&2
				return 1
			fi
		done
		if curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1; then
			echo "cluster: up ($GROUPS_N shard groups, gateway on tcp://127.0.0.1:$TCP_PORT and ws://127.0.0.1:$HTTP_PORT/ws)"
			return 0
		fi
		sleep 0.1
	done
	echo "cluster: gateway did not become healthy; see $HOME_DIR/*.log" >&2
	return 1
}

launch() {
	local name=$1
	shift
	if [ -f "$HOME_DIR/$name.pid" ] && kill -0 "$(cat "$HOME_DIR/$name.pid")" 2>/dev/null; then
		echo "cluster: $name already running (pid $(cat "$HOME_DIR/$name.pid"))"
		return 0
	fi
	nohup "$@" >> "$HOME_DIR/$name.log" 2>&1 &
	echo $! > "$HOME_DIR/$name.pid"
}

stop() {
	for f in "$HOME_DIR"/*.pid; do
		[ -f "$f" ] || continue
		local pid
		pid=$(cat "$f")
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid"
			for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$f"
	done
	echo "cluster: stopped"
}

status() {
	for f in "$HOME_DIR"/*.pid; do
		[ -f "$f" ] || continue
		local pid
		pid=$(cat "$f")
		if kill -0 "$pid" 2>/dev/null; then state=running; else state=dead; fi
		echo "$(basename "$f" .pid): pid $pid $state"
	done
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
