#!/bin/sh
# broker-entrypoint.sh - the broker container's command: writes this pod's
# INI from the template (config/broker.ini) and runs the broker on it.
#
# The node id comes from the pod's ordinal: a StatefulSet pod is named
# <set>-<ordinal> and keeps that name and its volume across restarts and
# rescheduling, so node = ordinal + 1 (node ids start at 1) stays with the
# data it was registered with. The map never gives a node id to another
# broker, so the id must not depend on anything that can change.
#
#   broker-entrypoint.sh          render, wait for the pod's DNS name, run
#   broker-entrypoint.sh render   render only (tests/deploy/test_manifests.sh)
#
# Environment: POD_NAME (downward API metadata.name, required), POD_IP
# (status.podIP: the name must resolve to it), PARLEY_TEMPLATE, PARLEY_INI.
set -eu

template=${PARLEY_TEMPLATE:-/etc/parley/broker.ini}
ini=${PARLEY_INI:-/run/parley/broker.ini}
pod=${POD_NAME:?POD_NAME must name the pod (downward API metadata.name)}

ordinal=${pod##*-}
case $ordinal in
'' | *[!0-9]*)
	echo "broker-entrypoint: pod name $pod does not end in an ordinal" >&2
	exit 2
	;;
esac
# 255 is the highest node id a broker accepts.
if [ "${#ordinal}" -gt 3 ] || [ "$ordinal" -gt 254 ]; then
	echo "broker-entrypoint: ordinal $ordinal is above 254" >&2
	exit 2
fi
node=$((ordinal + 1))

# Written aside and renamed, so a broker never reads half a file.
sed -e "s/@POD_NAME@/$pod/g" -e "s/@NODE@/$node/g" "$template" > "$ini.tmp"
mv "$ini.tmp" "$ini"
echo "broker-entrypoint: $ini for $pod, node $node"
if [ "${1:-}" = render ]; then
	exit 0
fi

# The broker binds its listen and peer addresses, which name this pod under
# the headless Service. That name appears a moment after the pod has its IP
# (publishNotReadyAddresses: without waiting for readiness); binding before
# it resolves, or while it still resolves to the IP of the pod this one
# replaced, would fail and restart the container with a growing back-off.
host=$(sed -n 's|^listen *= *tcp://\([^:/]*\):.*|\1|p' "$ini" | head -n 1)
resolves() {
	addrs=$(getent hosts "$host") || return 1
	[ -z "${POD_IP:-}" ] && return 0
	for a in $addrs; do
		[ "$a" = "$POD_IP" ] && return 0
	done
	return 1
}
tries=0
until resolves; do
	tries=$((tries + 1))
	if [ "$tries" -ge 120 ]; then
		echo "broker-entrypoint: $host does not resolve to ${POD_IP:-an address} after 120 s" >&2
		exit 1
	fi
	sleep 1
done
echo "broker-entrypoint: $host resolves; starting the broker"

exec /usr/bin/parley-broker -c "$ini"
