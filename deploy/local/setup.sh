#!/usr/bin/env bash
# Installs Parley's build dependencies (Debian packages) when missing and
# builds the tree into build/ (or $PARLEY_BUILD). Used by the demo and the
# test command; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/../.."

PKGS="build-essential cmake pkg-config libnng-dev liblmdb-dev lmdb-utils \
libprotobuf-c-dev protobuf-c-compiler libsodium-dev libzstd-dev libinih-dev \
curl procps openssl ${PARLEY_EXTRA_PKGS:-}"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "setup: installing$missing"
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO="sudo"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

BUILD=${PARLEY_BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=${PARLEY_BUILD_TYPE:-RelWithDebInfo} \
	${PARLEY_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target ${PARLEY_BUILD_TARGET:-all}
