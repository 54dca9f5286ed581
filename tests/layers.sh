#!/usr/bin/env bash
# tests/layers.sh - the module layers point one way. A file may include
# headers of its own layer and of the layers below it, never above:
#
#   common/  <-  proto/  <-  raft/  <-  broker/, gateway/  <-  client/  <-  bench/
#
# common/ includes no generated code and no nng; raft/ is the pure core
# (no nng, LMDB, sockets or threads); broker/ and gateway/ never include
# each other. Prints every offending include and exits 1 when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."

rank() {
	case "$1" in
	common) echo 0 ;;
	proto) echo 1 ;;
	raft) echo 2 ;;
	broker | gateway) echo 3 ;;
	client) echo 4 ;;
	bench) echo 5 ;;
	*) echo -1 ;;
	esac
}

bad=0
complain() {
	echo "layers: $1" >&2
	bad=1
}

for dir in common proto raft broker gateway client bench; do
	own=$(rank "$dir")
	while IFS= read -r file; do
		while IFS= read -r line; do
			inc=$(sed -E 's/^#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/' <<<"$line")
			top=${inc%%/*}
			[ "$top" = "$inc" ] && top=$dir # "x.h" next to the file
			case "$inc" in
			*.pb-c.h) top=proto ;;
			esac
			r=$(rank "$top")
			if [ "$r" -lt 0 ]; then
				complain "$file includes \"$inc\", outside every layer"
			elif [ "$r" -gt "$own" ]; then
				complain "$file ($dir) includes \"$inc\" from $top, a layer above it"
			elif [ "$r" -eq "$own" ] && [ "$top" != "$dir" ]; then
				complain "$file ($dir) includes \"$inc\": $dir and $top are siblings"
			fi
		done < <(grep -E '^#[[:space:]]*include[[:space:]]*"' "$file" || true)
		case "$dir" in
		common | raft)
			if grep -nE '^#[[:space:]]*include[[:space:]]*<(nng/|lmdb\.h|protobuf-c/)' "$file"; then
				complain "$file: $dir/ may not include nng, LMDB or protobuf-c"
			fi
			;;
		esac
		if [ "$dir" = raft ] &&
			grep -nE '^#[[:space:]]*include[[:space:]]*<(pthread\.h|sys/socket\.h|stdio\.h)>' "$file"; then
			complain "$file: the Raft core does no I/O and starts no threads"
		fi
	done < <(find "$dir" -name '*.[ch]' | sort)
done

# Inside gateway/ each module has a header and calls point down the list
# written at the top of gateway/gateway.h: a file may include its own
# module's header and those of modules below it, never one above or a
# sibling's (what must go up is a callback it was given).
declare -A GW_RANK=(
	[gateway]=0 [httpd]=0 [ws]=0 [http_parse]=0 [cursor]=0 [failover]=0
	[config]=0 [tenant]=0
	[core]=1 [conn]=2 [req]=3 [lane]=4 [link]=5 [feed]=6 [multi]=6
	[request]=7 [http]=8 [httpd_port]=9 [listen]=10 [main]=12
)
gw_module() { # file name -> module
	local m
	m=$(basename "$1")
	m=${m%.*}
	case "$m" in
	link_*) m=link ;;
	esac
	[ "$1" = gateway/gateway.c ] && m=gateway_c
	[ "$1" = gateway/httpd.c ] && m=httpd_port
	echo "$m"
}
GW_RANK[gateway_c]=11
while IFS= read -r file; do
	own=$(gw_module "$file")
	orank=${GW_RANK[$own]:-}
	if [ -z "$orank" ]; then
		complain "$file: no rank in tests/layers.sh's gateway list (add it where gateway/gateway.h places it)"
		continue
	fi
	while IFS= read -r inc; do
		m=$(gw_module "$inc")
		[ "$m" = gateway_c ] && m=gateway
		r=${GW_RANK[$m]:-}
		if [ -z "$r" ]; then
			complain "$file includes $inc, a gateway header with no rank"
		elif [ "$r" -gt "$orank" ]; then
			complain "$file ($own) includes $inc: $m is above it (gateway/gateway.h)"
		elif [ "$r" -eq "$orank" ] && [ "$r" -gt 0 ] && [ "$m" != "$own" ]; then
			complain "$file ($own) includes $inc: $m is a sibling"
		fi
	done < <(grep -oE '^#[[:space:]]*include[[:space:]]*"gateway/[a-z_]+\.h"' "$file" |
		sed -E 's/.*"(gateway\/[a-z_]+\.h)"/\1/' || true)
done < <(find gateway -name '*.[ch]' | sort)

# proto/map_internal.h is what the map model's own files share: nothing
# but map.c, map_codec.c and map_apply.c include it (the contract is
# proto/map.h).
while IFS= read -r file; do
	case "$file" in
	proto/map.c | proto/map_codec.c | proto/map_apply.c) ;;
	*) complain "$file includes proto/map_internal.h, the map model's own header" ;;
	esac
done < <(grep -rlE '^#[[:space:]]*include[[:space:]]*"proto/map_internal\.h"' \
	common proto raft broker gateway client bench tests 2>/dev/null | sort || true)

if [ "$bad" -ne 0 ]; then
	echo "layers: FAIL" >&2
	exit 1
fi
echo "layers: every include points down (common <- proto <- raft <- broker, gateway <- client <- bench; inside gateway/, its module list)"
