#!/usr/bin/env bash
# Parley's whole test suite, from a fresh Debian machine: installs what it
# needs, builds, runs every test with ctest, then builds with ASan+UBSan
# and runs the unit and real-process tests again (the harness fails a test
# whose servers logged a sanitizer report, died unasked or stopped slower
# than 2 s), then runs the decoders' and the peer envelope's fuzzers for a
# short while. No test is retried: a flaky test is a bug. Exits non-zero
# if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

export PARLEY_EXTRA_PKGS="clang libclang-rt-dev nodejs"
jobs=$(nproc)

echo "== build (RelWithDebInfo) and run all tests"
PARLEY_BUILD=build ./deploy/local/setup.sh
(cd build && ctest --output-on-failure -j"$jobs" --timeout 600)

echo "== ASan+UBSan build: unit and real-process tests"
PARLEY_BUILD=build-asan PARLEY_BUILD_TYPE=Debug \
	PARLEY_CMAKE_ARGS="-DPARLEY_SANITIZE=ON" ./deploy/local/setup.sh
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 \
	LSAN_OPTIONS=suppressions="$ROOT/tests/lsan.supp":print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --output-on-failure -j"$jobs" -L "unit|integration" --timeout 600)

echo "== libFuzzer: frame decoders and the peer envelope, short runs"
PARLEY_BUILD=build-fuzz PARLEY_BUILD_TYPE=Debug PARLEY_BUILD_TARGET="fuzz_frame fuzz_envelope" \
	PARLEY_CMAKE_ARGS="-DPARLEY_FUZZ=ON -DCMAKE_C_COMPILER=clang" \
	./deploy/local/setup.sh
(cd build-fuzz && ctest --output-on-failure -L fuzz --timeout 600)
