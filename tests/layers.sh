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

if [ "$bad" -ne 0 ]; then
	echo "layers: FAIL" >&2
	exit 1
fi
echo "layers: every include points down (common <- proto <- raft <- broker, gateway <- client <- bench)"
