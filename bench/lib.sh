# bench/lib.sh - what the bench scripts share (source it after BUILD is
# set): a scratch directory whose *.pid files name every process a script
# starts, all stopped by PID when the script exits, and the cluster
# secret and a tenant key (acme, key k1) in it.
#
#   bench_init NAME     DIR=/tmp/parley-NAME-XXXXXX, secret, acme.key/.pub
#   stop_all            SIGTERM to every process, SIGKILL to any still
#                       there after 5 s (a broker with many groups hands
#                       its leaderships over and stops them in turn)

stop_all() {
	for f in "$DIR"/*.pid; do
		[ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
	done
	for f in "$DIR"/*.pid; do
		[ -f "$f" ] || continue
		local pid
		pid=$(cat "$f")
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
		rm -f "$f"
	done
}

bench_init() {
	DIR=$(mktemp -d "/tmp/parley-$1-XXXXXX")
	trap 'stop_all; rm -rf "$DIR"' EXIT
	head -c 32 /dev/urandom | base64 > "$DIR/secret"
	"$BUILD/client/parleyctl" keygen --tenant acme --key-id k1 \
		--out "$DIR/acme.key" > "$DIR/acme.pub"
}
