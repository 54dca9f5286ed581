#!/usr/bin/env bash
# Parley's one-command demo: installs what is missing, builds, starts a
# local cluster on loopback run by its cluster map (three brokers that are
# the meta group's replicas, 2 shard groups of 3 replicas placed by the
# map, 2 gateways; data in .parley/) and plays a short support
# conversation with parleyctl: a customer asks, an agent joins, types and
# answers, read positions move, the leader of the room's shard group is
# killed mid-chat (kill -9) and the chat goes on after a pause; then the
# cluster grows while it serves (a fourth broker, a third group, the room's
# group's leader replica moved to the new broker), the room closes, and
# the consultation statistics and the cluster's status are printed.
# PARLEY_MAP=0 runs static configs, PARLEY_REPLICAS=1 one broker per group. The cluster keeps running
# afterwards for the web pages; stop it with deploy/local/cluster.sh stop.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

export PARLEY_REPLICAS=${PARLEY_REPLICAS:-3}
# Run by the cluster map (three brokers that are the meta group, shard
# groups placed by it, two gateways); PARLEY_MAP=0: static configs.
export PARLEY_MAP=${PARLEY_MAP:-1}
[ "$PARLEY_MAP" = 0 ] && unset PARLEY_MAP
[ "$PARLEY_REPLICAS" -le 1 ] && unset PARLEY_MAP
./deploy/local/setup.sh
./deploy/local/cluster.sh start

CTL="$ROOT/build/client/parleyctl"
KEY="$ROOT/.parley/acme.key"
HTTP=${PARLEY_HTTP_PORT:-7180}
export PARLEY_URL=tcp://127.0.0.1:${PARLEY_TCP_PORT:-7100}

CUST=$("$CTL" token --key "$KEY" --user ann --role customer --ttl 86400)
AGENT=$("$CTL" token --key "$KEY" --user bob --role agent --ttl 86400)
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
as() { local tok=$1; shift; PARLEY_TOKEN=$tok "$CTL" "$@"; }

# pub TOKEN NAME ROOM TEXT ID: publishes and shows the acknowledged seq.
pub() {
	printf '  %-5s %s\n' "$2:" "$4"
	local out seq
	out=$(as "$1" publish "$3" "$4" --id "$5" 2>&1)
	seq=$(echo "$out" | grep -E '^[0-9]+$' || true)
	if echo "$out" | grep -q duplicate; then
		printf '        -> acked, seq %s (a retry: the original seq, nothing stored)\n' "$seq"
	else
		printf '        -> acked, seq %s\n' "$seq"
	fi
}

say "customer ann opens a consultation and writes"
ROOM=$(as "$CUST" room create --meta topic=delivery --meta channel=web)
echo "  room $ROOM"
pub "$CUST" ann "$ROOM" "Hi, my parcel 4711 has not arrived yet." ann-1
sleep 0.8

say "agent bob joins and tails the room from seq 0 (history, then live)"
as "$AGENT" room join "$ROOM"
TAIL_N=4
[ "$PARLEY_REPLICAS" -gt 1 ] && TAIL_N=5
[ -n "${PARLEY_MAP:-}" ] && TAIL_N=6
as "$AGENT" subscribe "$ROOM" --count "$TAIL_N" --timeout-ms 60000 > "$ROOT/.parley/demo-tail.txt" 2>&1 &
TAIL=$!
sleep 0.3
as "$AGENT" typing "$ROOM"
sleep 0.6
pub "$AGENT" bob "$ROOM" "Hello Ann, let me check that for you." bob-1
as "$CUST" read "$ROOM" 2
echo "  ann has read up to seq 2"

say "presence while bob's tail is connected"
as "$AGENT" presence "$ROOM"
sleep 0.3
pub "$CUST" ann "$ROOM" "Thanks!" ann-2
sleep 0.5
pub "$AGENT" bob "$ROOM" "It is out for delivery today, before 18:00." bob-2
echo "  a retry of bob-2 (same client_msg_id) is stored once:"
pub "$AGENT" bob "$ROOM" "It is out for delivery today, before 18:00." bob-2

if [ "$PARLEY_REPLICAS" -gt 1 ]; then
	say "a machine dies: the leader of the room's shard group is killed (kill -9)"
	G=$((16#${ROOM:0:4}))
	DEAD=$(./deploy/local/cluster.sh kill-leader "$G")
	echo "  killed $DEAD; ann writes at once:"
	t0=$(date +%s%N)
	pub "$CUST" ann "$ROOM" "Great, I will be home." ann-3
	echo "        (acknowledged after $((($(date +%s%N) - t0) / 1000000)) ms: the other replicas elected a new leader and the gateway followed it)"
	./deploy/local/cluster.sh restart "$DEAD" > /dev/null
	echo "  $DEAD restarted: it catches up from the new leader"
fi

if [ -n "${PARLEY_MAP:-}" ]; then
	eval "$(./deploy/local/cluster.sh meta-env)"
	say "the cluster grows while it serves: a fourth broker, a third shard group"
	./deploy/local/cluster.sh add-broker 4 | sed 's/^/  started /'
	"$CTL" group add --replicas 3 | sed 's/^/  group add: /'
	G=$((16#${ROOM:0:4}))
	FROM=""
	for _ in $(seq 1 50); do
		FROM=$( ("$CTL" cluster status 2>/dev/null || true) |
			awk -v g="$G" '$1 == "group" && $2 == g { for (i = 3; i <= NF; i++) if ($i ~ /^leader=[0-9]/) { sub("leader=", "", $i); print $i } }' | head -1)
		[ -n "$FROM" ] && break
		sleep 0.2
	done
	say "group $G's leader replica moves from broker $FROM to broker 4 (learner, catch up, promote, remove)"
	"$CTL" replica move "$G" --from "$FROM" --to 4 | sed 's/^/  /'
	pub "$AGENT" bob "$ROOM" "Anything else I can help with?" bob-3
fi
wait "$TAIL" || true

say "what bob's tail printed (in seq order, each message once)"
cat "$ROOT/.parley/demo-tail.txt"

say "history, newest first"
as "$AGENT" history "$ROOM" --limit 10

say "agent closes the room; statistics"
as "$AGENT" room close "$ROOM" --reason resolved
as "$AGENT" room info "$ROOM"

say "the tenant's day report (all shard groups, averages in ms)"
as "$AGENT" report --days 1

say "the shard groups' replicas (role, term, commit and applied index, lag)"
sleep 1
as "$AGENT" group status
if [ -n "${PARLEY_MAP:-}" ]; then
	say "the cluster as the map sees it (parleyctl cluster status)"
	"$CTL" cluster status
fi

say "where to connect"
cat <<TXT
  TCP (backends):     $PARLEY_URL
  WebSocket:          ws://127.0.0.1:$HTTP/ws
  Web demo:           http://127.0.0.1:$HTTP/
  Customer widget:    http://127.0.0.1:$HTTP/customer.html#token=$CUST
  Agent console:      http://127.0.0.1:$HTTP/agent.html#token=$AGENT
  Metrics:            http://127.0.0.1:$HTTP/metrics  (brokers: see deploy/local/cluster.sh status)
  Mint more tokens:   build/client/parleyctl token --key .parley/acme.key --user NAME --role customer|agent|bot|observer|service
  Stop the cluster:   deploy/local/cluster.sh stop
TXT
