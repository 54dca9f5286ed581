/*
 * map.c - the cluster map's model itself: its lifecycle (init, fini, deep
 * copy), the lookups its readers use (a broker, group or tenant by key,
 * replicas on a broker, a group's voters), and the small helpers
 * map_codec.c and map_apply.c share (map_internal.h). The codec and the
 * invariants are in map_codec.c, the changes in map_apply.c;
 * docs/cluster.md tells the rules.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/map.h"
#include "proto/map_internal.h"

/* ---- lookups ---- */

const pl_map_broker *pl_map_broker_find(const pl_map *m, uint64_t node)
{
	bool found;
	size_t i = mi_broker_at(m, node, &found);
	return found ? &m->brokers[i] : NULL;
}

const pl_map_group *pl_map_group_find(const pl_map *m, uint32_t id)
{
	bool found;
	size_t i = mi_group_at(m, id, &found);
	return found ? &m->groups[i] : NULL;
}

const pl_map_tenant *pl_map_tenant_find(const pl_map *m, const char *name)
{
	bool found;
	size_t i = mi_tenant_at(m, name, &found);
	return found ? &m->tenants[i] : NULL;
}

const pl_map_replica *pl_map_group_replica(
    const pl_map_group *g, uint64_t node)
{
	int r = mi_replica_at(g, node);
	return r >= 0 ? &g->replicas[r] : NULL;
}

const char *pl_map_broker_state_name(pl_map_broker_state s)
{
	return s == PL_BROKER_ACTIVE     ? "active"
	       : s == PL_BROKER_DRAINING ? "draining"
	                                 : "removed";
}

int pl_map_replicas_on(const pl_map *m, uint64_t node)
{
	int n = 0;
	for (size_t i = 0; i < m->ngroups; i++)
		n += mi_replica_at(&m->groups[i], node) >= 0;
	return n;
}

int pl_map_group_voters(const pl_map_group *g)
{
	int n = 0;
	for (int i = 0; i < g->nreplicas; i++)
		n += mi_is_voter(&g->replicas[i]);
	return n;
}

/* An address of a broker that is not removed, used by another such
 * broker (either address), or NULL. Two sockets cannot bind one address,
 * and a gateway or peer dialing it would reach the wrong broker. A
 * removed broker's addresses are free again: its machine may come back
 * as a new broker. */
const pl_map_broker *mi_addr_owner(
    const pl_map *m, const char *addr, uint64_t except)
{
	for (size_t i = 0; i < m->nbrokers; i++) {
		const pl_map_broker *b = &m->brokers[i];
		if (b->node == except || b->state == PL_BROKER_REMOVED)
			continue;
		if (strcmp(b->listen, addr) == 0 || strcmp(b->peer, addr) == 0)
			return b;
	}
	return NULL;
}

/* ---- init, fini, copy ---- */

void pl_map_init(pl_map *m)
{
	memset(m, 0, sizeof(*m));
}

void pl_map_fini(pl_map *m)
{
	if (m == NULL)
		return;
	free(m->brokers);
	free(m->groups);
	free(m->tenants);
	pl_map_init(m);
}

/* malloc'd copy of n elements of size sz; NULL for none (ok stays
 * true) or on out-of-memory (ok false). */
static void *dup_array(const void *src, size_t n, size_t sz, bool *ok)
{
	if (n == 0)
		return NULL;
	void *p = malloc(n * sz);
	if (p == NULL)
		*ok = false;
	else
		memcpy(p, src, n * sz);
	return p;
}

pl_status pl_map_copy(pl_map *dst, const pl_map *src)
{
	pl_map c = *src;
	bool ok = true;
	c.brokers =
	    dup_array(src->brokers, src->nbrokers, sizeof(*src->brokers), &ok);
	c.groups =
	    dup_array(src->groups, src->ngroups, sizeof(*src->groups), &ok);
	c.tenants =
	    dup_array(src->tenants, src->ntenants, sizeof(*src->tenants), &ok);
	if (!ok) {
		pl_map_fini(&c);
		pl_map_init(dst);
		return PL_E_NOMEM;
	}
	*dst = c;
	return PL_OK;
}

/* ---- strings ---- */

/* Copies s (NUL-terminated by protobuf-c; its bytes were checked on
 * the wire) into dst of cap bytes; false when it does not fit. */
bool mi_str_copy(char *dst, size_t cap, const char *s)
{
	size_t n = s != NULL ? strnlen(s, cap) : 0;
	if (n >= cap)
		return false;
	if (n > 0)
		memcpy(dst, s, n);
	dst[n] = '\0';
	return true;
}
