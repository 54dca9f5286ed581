/*
 * map_client.h - how a node or parleyctl reaches the cluster map
 * (map_client.c): a watcher that long-polls the meta group's replicas
 * (any replica answers a watch from its applied map) and reports every
 * newer map, and a one-shot change sent to the meta group's leader.
 * Over nng req0 to the replicas' gateway-facing (rep0) addresses, as a
 * GwBatch { group = 0, map = MapRequest } (proto/internal.proto).
 *
 * Without a meta quorum a watch still answers (with the last applied
 * map) and a change fails with PL_E_UNAVAILABLE: nodes keep their map.
 */
#ifndef PARLEY_PROTO_MAP_CLIENT_H
#define PARLEY_PROTO_MAP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "proto/map.h"

/* Meta replicas a client is given (a meta group has 1, 3 or 5). */
#define PL_META_ADDRS_MAX 7
/* A watch is parked by a replica up to this long. */
#define PL_MAP_WATCH_WAIT_MS 1000

typedef struct pl_map_watch pl_map_watch;

/* Called on the watcher's thread with each map newer than the last one
 * reported (borrowed for the call; copy what is kept). Never two calls
 * at once. */
typedef void (*pl_map_watch_fn)(void *ctx, const pl_map *m);

/* Starts watching; addrs (copied) are the meta replicas' rep0
 * addresses. since: the version the caller already holds (0: none). The
 * watcher moves to the next replica when one does not answer within
 * twice the wait. */
pl_status pl_map_watch_start(const char *const *addrs, int naddrs,
    uint64_t since, pl_map_watch_fn fn, void *ctx, pl_map_watch **out);
/* Highest version reported so far. */
uint64_t pl_map_watch_version(const pl_map_watch *w);
/* Stops and frees; no call of fn runs after it returns. NULL ok. */
void pl_map_watch_stop(pl_map_watch *w);

/* One change (an encoded parley.cluster.Change), MAC'd with the 32-byte
 * cluster secret, sent to the meta group's leader (found through
 * not_leader hints, retried on another replica until timeout_ms):
 * *changed, and the map after it in *after (initialised by the caller;
 * may be NULL). Refusals come back as map.h's pl_map_apply codes with
 * the reason in why. PL_E_UNAVAILABLE or PL_E_TIMEOUT without a meta
 * leader. Safe to retry: changes are idempotent. */
pl_status pl_map_change(const char *const *addrs, int naddrs,
    const uint8_t secret[32], const uint8_t *change, size_t len,
    uint32_t timeout_ms, bool *changed, pl_map *after, char *why,
    size_t why_len);
/* One read of the current map from any replica that answers, into
 * *out (initialised by the caller; a map it held is freed first). */
pl_status pl_map_fetch(const char *const *addrs, int naddrs,
    uint32_t timeout_ms, pl_map *out);

/* One replica's status, as it answers MapRequest.status for its group
 * (any replica; the map and the group untouched). */
typedef struct pl_replica_info {
	uint32_t group;
	uint64_t node;
	char role[16]; /* leader, follower, candidate, pre-candidate */
	uint64_t term, commit, applied, last_index, leader;
	uint64_t voters[8], learners[8]; /* its Raft configuration */
	int nvoters, nlearners;
	uint64_t rooms, map_used, map_size;
	bool repairing;
} pl_replica_info;

/* Asks the broker at addr (its rep0 address) for its replica of group.
 * PL_E_NOT_FOUND when it hosts none, PL_E_TIMEOUT when it does not
 * answer within timeout_ms, PL_E_PROTO for a malformed answer. */
pl_status pl_replica_status(const char *addr, uint32_t group,
    uint32_t timeout_ms, pl_replica_info *out);

/* The MAC a change carries (crypto_auth, HMAC-SHA-512-256), and its
 * check on the meta replica (constant time). */
void pl_map_change_mac(const uint8_t secret[32], const uint8_t *change,
    size_t len, uint8_t mac[32]);
bool pl_map_change_mac_ok(const uint8_t secret[32], const uint8_t *change,
    size_t len, const uint8_t *mac, size_t mac_len);

#endif /* PARLEY_PROTO_MAP_CLIENT_H */
