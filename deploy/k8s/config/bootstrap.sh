#!/bin/sh
# bootstrap.sh FILE - applies the parleyctl map commands in FILE (one a
# line, `#` comments) to the meta group named by PARLEY_META, signed with
# the secret in PARLEY_SECRET_FILE. The Job parley-bootstrap runs it.
#
# On a fresh cluster the Job starts with the brokers: the meta group has no
# leader yet, and a group of three replicas is refused until three brokers
# have registered. So it first waits for PARLEY_BROKERS_MIN (3) active
# brokers in the map, then retries a command only while the answer is
# `unavailable` (no leader, no replica answering). A refusal (bad_request,
# forbidden, not_found, ...) fails at once with the meta group's reason:
# retrying cannot fix it.
#
# Environment: PARLEY_META, PARLEY_SECRET_FILE (read by parleyctl),
# PARLEY_BROKERS_MIN, PARLEY_BOOTSTRAP_WAIT_S (300), PARLEYCTL.
set -eu

file=${1:?usage: bootstrap.sh FILE}
ctl=${PARLEYCTL:-/usr/bin/parleyctl}
wait_s=${PARLEY_BOOTSTRAP_WAIT_S:-300}
brokers=${PARLEY_BROKERS_MIN:-3}
deadline=$(($(date +%s) + wait_s))

late() {
	[ "$(date +%s)" -ge "$deadline" ]
}

active=0
while :; do
	active=$("$ctl" cluster map 2> /dev/null < /dev/null |
		grep -c '^broker [0-9]* [^ ]* active ' || true)
	[ "${active:-0}" -ge "$brokers" ] && break
	if late; then
		echo "bootstrap: $active of $brokers brokers active in the map after ${wait_s}s" >&2
		exit 1
	fi
	sleep 2
done
echo "bootstrap: $active brokers active"

# Lines are split into words as they are (no quoting, no globbing): every
# argument parleyctl's map commands take is a single word.
set -f
while IFS= read -r line || [ -n "$line" ]; do
	case $line in
	'' | '#'*) continue ;;
	esac
	# shellcheck disable=SC2086
	while ! out=$("$ctl" $line 2>&1 < /dev/null); do
		case $out in
		*"error: unavailable:"*)
			if late; then
				echo "bootstrap: $line: $out (gave up after ${wait_s}s)" >&2
				exit 1
			fi
			sleep 1
			;;
		*)
			echo "bootstrap: $line: $out" >&2
			exit 1
			;;
		esac
	done
	echo "bootstrap: $line: $out"
done < "$file"
echo "bootstrap: done"
