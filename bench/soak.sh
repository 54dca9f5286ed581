#!/usr/bin/env bash
# bench/soak.sh - the chaos test run long: a 3-replica shard group under
# publishers and subscribers while leaders are killed (SIGKILL), followers
# killed and paused (SIGSTOP), leaders paused and quorum briefly lost, in
# a fixed cycle. The verdict is the chaos test's own: every acknowledged
# message stored once and in order on every replica, no duplicate flag on
# a message the client sent once, no process that died unasked, no stop
# slower than 2 s, and the pause after each leader kill (p50/p99/max).
#
#   bench/soak.sh                          # 500 leader kills or 30 min
#   KILLS=100 MINUTES=10 bench/soak.sh
#   PARLEY_BUILD=build-asan bench/soak.sh  # the same under ASan+UBSan
#
# Everything runs on 127.0.0.1 in a temporary directory (the harness picks
# free ports) and is stopped by PID. Builds first if the binary is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${PARLEY_BUILD:-build}
KILLS=${KILLS:-500}
MINUTES=${MINUTES:-30}
if [ ! -x "$BUILD/tests/integration/it_chaos" ]; then
	PARLEY_BUILD="$BUILD" ./deploy/local/setup.sh
fi
echo "== soak: up to $KILLS leader kills or $MINUTES minutes ($BUILD)"
start=$(date +%s)
set +e
PARLEY_CHAOS_LEADER_KILLS="$KILLS" PARLEY_CHAOS_MINUTES="$MINUTES" \
	ASAN_OPTIONS=detect_leaks=1 \
	LSAN_OPTIONS=suppressions="$(pwd)/tests/lsan.supp":print_suppressions=0 \
	"$BUILD/tests/integration/it_chaos" 2>&1 |
	grep -v "mod=store event=open"
rc=${PIPESTATUS[0]}
set -e
echo "== soak: $(( $(date +%s) - start )) s, verdict: $([ "$rc" -eq 0 ] && echo pass || echo FAIL)"
exit "$rc"
