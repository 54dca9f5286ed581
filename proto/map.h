/*
 * map.h - the cluster map's model: a plain C copy of the meta group's
 * parley.cluster.Map (proto/cluster.proto) with its lookups (map.c), its
 * codec (map_codec.c), and the one function that changes it
 * (map_apply.c). Pure: no I/O, no clock, no locks; the meta group applies
 * changes on every replica with it, gateways and brokers read the decoded
 * map. docs/cluster.md tells the rules.
 */
#ifndef PARLEY_PROTO_MAP_H
#define PARLEY_PROTO_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* Bounds of one map (a decoded map or a change past them is refused). */
#define PL_MAP_BROKERS_MAX 256
#define PL_MAP_GROUPS_MAX 4096
#define PL_MAP_REPLICAS_MAX 7
#define PL_MAP_TENANTS_MAX 65536
#define PL_MAP_ADDR_CHARS_MAX 255
#define PL_MAP_NAME_CHARS_MAX 63
/* An encoded map stays far below the nng message ceiling. */
#define PL_MAP_BYTES_MAX (8u * 1024 * 1024)

typedef enum pl_map_broker_state {
	PL_BROKER_ACTIVE = 0,
	PL_BROKER_DRAINING = 1,
	PL_BROKER_REMOVED = 2,
} pl_map_broker_state;

typedef struct pl_map_broker {
	uint64_t node;
	char name[PL_MAP_NAME_CHARS_MAX + 1];
	char listen[PL_MAP_ADDR_CHARS_MAX + 1];
	char peer[PL_MAP_ADDR_CHARS_MAX + 1];
	pl_map_broker_state state;
} pl_map_broker;

typedef struct pl_map_replica {
	uint64_t node;
	bool learner;
	bool leaving;
} pl_map_replica;

typedef struct pl_map_group {
	uint32_t id;
	pl_map_replica replicas[PL_MAP_REPLICAS_MAX];
	int nreplicas;
	uint32_t weight;
	bool draining;
	bool removed;
	uint64_t leader; /* preferred leader; 0 none */
} pl_map_group;

typedef struct pl_map_limits {
	uint32_t connections_max;
	uint32_t publish_per_sec;
	uint32_t rooms_open_max;
	uint64_t stored_bytes_max;
} pl_map_limits;

typedef struct pl_map_key {
	char id[PL_KEY_ID_CHARS_MAX + 1];
	uint8_t pk[32];
	bool revoked;
} pl_map_key;

typedef struct pl_map_tenant {
	char name[PL_TENANT_CHARS_MAX + 1];
	pl_map_key keys[PL_KEYS_PER_TENANT_MAX];
	int nkeys;
	pl_map_limits limits;
	uint32_t retention_days;
} pl_map_tenant;

/* Arrays are sorted (brokers by node, groups by id, tenants by name)
 * and sized exactly (malloc'd; NULL when empty). */
typedef struct pl_map {
	uint64_t version;
	pl_map_broker *brokers;
	size_t nbrokers;
	pl_map_group *groups;
	size_t ngroups;
	pl_map_tenant *tenants;
	size_t ntenants;
	uint32_t retention_days;
	pl_map_limits limits;
} pl_map;

/* An empty map, version 0. */
void pl_map_init(pl_map *m);
void pl_map_fini(pl_map *m);
/* *dst = a deep copy of src (dst initialised or finished first). */
pl_status pl_map_copy(pl_map *dst, const pl_map *src);

/* Encodes to a malloc'd parley.cluster.Map; PL_E_NOMEM. */
pl_status pl_map_encode(const pl_map *m, uint8_t **out, size_t *len);
/* Decodes and checks (sorted, unique, bounds, slugs); PL_E_PROTO or
 * PL_E_TOO_LARGE with *m left initialised and empty. */
pl_status pl_map_decode(pl_map *m, const uint8_t *buf, size_t len);

/* Applies one encoded parley.cluster.Change. PL_OK: applied (version +1)
 * or already in effect (*changed false, version unchanged: a retry is
 * safe). Refused: PL_E_BAD_REQUEST (malformed or unknown names),
 * PL_E_NOT_FOUND, PL_E_FORBIDDEN (unsafe: it would leave a group without
 * a quorum, two replicas of a group on one broker, a removed broker
 * holding replicas, ...), PL_E_TOO_LARGE (a bound), with a reason in
 * why (NUL-terminated, at most why_len bytes) and *m unchanged. */
pl_status pl_map_apply(pl_map *m, const uint8_t *change, size_t len,
    bool *changed, char *why, size_t why_len);

/* Lookups: NULL when absent (binary search). */
const pl_map_broker *pl_map_broker_find(const pl_map *m, uint64_t node);
const pl_map_group *pl_map_group_find(const pl_map *m, uint32_t id);
const pl_map_tenant *pl_map_tenant_find(const pl_map *m, const char *name);
/* Broker node's replica of g, or NULL. */
const pl_map_replica *pl_map_group_replica(
    const pl_map_group *g, uint64_t node);
/* "active", "draining" or "removed". */
const char *pl_map_broker_state_name(pl_map_broker_state s);
/* How many replicas (voters and learners) broker node holds. */
int pl_map_replicas_on(const pl_map *m, uint64_t node);
/* Voters of g (replicas neither learner nor leaving count; a leaving
 * one still votes until removed: see docs/cluster.md). */
int pl_map_group_voters(const pl_map_group *g);

#endif /* PARLEY_PROTO_MAP_H */
