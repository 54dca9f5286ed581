/*
 * map_internal.h - what the three files of the cluster map's model share,
 * and nothing outside proto/map*.c may include: the index lookups over
 * the sorted arrays (inline here) and the small helpers of map.c, and the
 * invariant check and encoded-size bounds of map_codec.c that map_apply.c
 * holds every change to. The public contract is proto/map.h.
 */
#ifndef PARLEY_PROTO_MAP_INTERNAL_H
#define PARLEY_PROTO_MAP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/map.h"

/* Group ids are the 16-bit shard group of a room id (common.h). */
#define GROUP_ID_MAX 65535u

/* Generated in cluster.pb-c.h; declared here so that map.c, which
 * unpacks nothing, does not include the generated code. */
struct Parley__Cluster__Limits;

/* ---- map.c: lookups and helpers ---- */

/* Lower bounds: the index of the first element >= key; *found when it
 * is equal. The arrays are sorted (mi_map_check). Inline, as they were
 * when one file held the model: decode and apply call them in loops, and
 * GCC proves apply's group lookups write their result only when it sees
 * mi_group_at (an out-of-line one is -Wmaybe-uninitialized at -O3). */
static inline size_t mi_broker_at(const pl_map *m, uint64_t node, bool *found)
{
	size_t lo = 0, hi = m->nbrokers;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->brokers[mid].node < node)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < m->nbrokers && m->brokers[lo].node == node;
	return lo;
}

static inline size_t mi_group_at(const pl_map *m, uint32_t id, bool *found)
{
	size_t lo = 0, hi = m->ngroups;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->groups[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < m->ngroups && m->groups[lo].id == id;
	return lo;
}

static inline size_t mi_tenant_at(
    const pl_map *m, const char *name, bool *found)
{
	size_t lo = 0, hi = m->ntenants;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(m->tenants[mid].name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < m->ntenants && strcmp(m->tenants[lo].name, name) == 0;
	return lo;
}

/* The index of node's replica in g, or -1. */
static inline int mi_replica_at(const pl_map_group *g, uint64_t node)
{
	for (int i = 0; i < g->nreplicas; i++) {
		if (g->replicas[i].node == node)
			return i;
	}
	return -1;
}

/* A broker not removed, other than except, that uses addr (either of
 * its addresses), or NULL. */
const pl_map_broker *mi_addr_owner(
    const pl_map *m, const char *addr, uint64_t except);
/* Copies s into dst of cap bytes; false when it does not fit. */
bool mi_str_copy(char *dst, size_t cap, const char *s);

/* A voter: neither a learner nor leaving (pl_map_group_voters). */
static inline bool mi_is_voter(const pl_map_replica *r)
{
	return !r->learner && !r->leaving;
}

/* ---- map_codec.c: invariants, sizes, limits ---- */

/* Every invariant of docs/cluster.md "Invariants". */
bool mi_map_check(const pl_map *m);
/* Upper bounds of the encoded size of one element and of a whole map:
 * apply refuses a change that would take the map past PL_MAP_BYTES_MAX. */
size_t mi_broker_bytes(const pl_map_broker *b);
size_t mi_group_bytes(int nreplicas);
size_t mi_key_bytes(const pl_map_key *k);
size_t mi_tenant_bytes(const pl_map_tenant *t);
size_t mi_map_bytes_bound(const pl_map *m);
/* *l = the limits of p; all zero when p is NULL (not sent). */
void mi_limits_from_pb(
    pl_map_limits *l, const struct Parley__Cluster__Limits *p);

#endif /* PARLEY_PROTO_MAP_INTERNAL_H */
