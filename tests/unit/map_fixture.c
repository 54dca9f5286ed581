/*
 * map_fixture.c - the definitions of map_fixture.h: Change builders, the
 * independent invariants, app() and the seeded generator that the
 * cluster map's tests share.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/map_fixture.h"

char why[256];

chg pack(Parley__Cluster__Change *c)
{
	chg out;
	out.n = parley__cluster__change__get_packed_size(c);
	PL_ASSERT(out.n <= sizeof(out.b));
	parley__cluster__change__pack(c, out.b);
	return out;
}

chg c_broker_add(
    uint64_t node, const char *name, const char *listen, const char *peer)
{
	Parley__Cluster__Broker b = PARLEY__CLUSTER__BROKER__INIT;
	b.node = node, b.name = (char *)name, b.listen = (char *)listen;
	b.peer = (char *)peer;
	Parley__Cluster__BrokerAdd a = PARLEY__CLUSTER__BROKER_ADD__INIT;
	a.broker = &b;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_BROKER_ADD, c.broker_add = &a;
	return pack(&c);
}

/* broker n with addresses derived from n */
chg c_broker(uint64_t n)
{
	char name[32], l[64], p[64];
	snprintf(name, sizeof(name), "broker-%llu", (unsigned long long)n);
	snprintf(l, sizeof(l), "tcp://10.0.0.%llu:7000", (unsigned long long)n);
	snprintf(p, sizeof(p), "tcp://10.0.0.%llu:7100", (unsigned long long)n);
	return c_broker_add(n, name, l, p);
}

chg c_broker_state(uint64_t node, int state)
{
	Parley__Cluster__BrokerSetState s =
	    PARLEY__CLUSTER__BROKER_SET_STATE__INIT;
	s.node = node, s.state = (Parley__Cluster__BrokerState)state;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_BROKER_STATE;
	c.broker_state = &s;
	return pack(&c);
}

chg c_group_add(uint32_t id, uint32_t replicas, uint32_t weight)
{
	Parley__Cluster__GroupAdd g = PARLEY__CLUSTER__GROUP_ADD__INIT;
	g.id = id, g.replicas = replicas, g.weight = weight;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_GROUP_ADD, c.group_add = &g;
	return pack(&c);
}

chg c_group_set(uint32_t id, bool draining, uint32_t weight)
{
	Parley__Cluster__GroupSet g = PARLEY__CLUSTER__GROUP_SET__INIT;
	g.id = id, g.draining = draining, g.weight = weight;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_GROUP_SET, c.group_set = &g;
	return pack(&c);
}

chg c_group_remove(uint32_t id)
{
	Parley__Cluster__GroupRemove g = PARLEY__CLUSTER__GROUP_REMOVE__INIT;
	g.id = id;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_GROUP_REMOVE;
	c.group_remove = &g;
	return pack(&c);
}

chg c_replica(int op, uint32_t group, uint64_t node)
{
	/* The three messages have the same fields. */
	Parley__Cluster__ReplicaAdd ra = PARLEY__CLUSTER__REPLICA_ADD__INIT;
	Parley__Cluster__ReplicaPromote rp =
	    PARLEY__CLUSTER__REPLICA_PROMOTE__INIT;
	Parley__Cluster__ReplicaRemove rr =
	    PARLEY__CLUSTER__REPLICA_REMOVE__INIT;
	ra.group = rp.group = rr.group = group;
	ra.node = rp.node = rr.node = node;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	if (op == R_ADD)
		c.op_case = PARLEY__CLUSTER__CHANGE__OP_REPLICA_ADD,
		c.replica_add = &ra;
	else if (op == R_PROMOTE)
		c.op_case = PARLEY__CLUSTER__CHANGE__OP_REPLICA_PROMOTE,
		c.replica_promote = &rp;
	else
		c.op_case = PARLEY__CLUSTER__CHANGE__OP_REPLICA_REMOVE,
		c.replica_remove = &rr;
	return pack(&c);
}

chg c_tenant_set(const char *name, uint32_t conns, uint32_t days)
{
	Parley__Cluster__Limits l = PARLEY__CLUSTER__LIMITS__INIT;
	l.connections_max = conns;
	Parley__Cluster__TenantSet t = PARLEY__CLUSTER__TENANT_SET__INIT;
	t.name = (char *)name, t.limits = &l, t.retention_days = days;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_TENANT_SET, c.tenant_set = &t;
	return pack(&c);
}

chg c_key_add(const char *tenant, const char *id, uint8_t fill, size_t pklen)
{
	uint8_t pk[64];
	memset(pk, fill, sizeof(pk));
	Parley__Cluster__Key k = PARLEY__CLUSTER__KEY__INIT;
	k.id = (char *)id, k.public_key.data = pk, k.public_key.len = pklen;
	Parley__Cluster__KeyAdd a = PARLEY__CLUSTER__KEY_ADD__INIT;
	a.tenant = (char *)tenant, a.key = &k;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_KEY_ADD, c.key_add = &a;
	return pack(&c);
}

chg c_key_revoke(const char *tenant, const char *id)
{
	Parley__Cluster__KeyRevoke r = PARLEY__CLUSTER__KEY_REVOKE__INIT;
	r.tenant = (char *)tenant, r.key_id = (char *)id;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_KEY_REVOKE, c.key_revoke = &r;
	return pack(&c);
}

chg c_defaults(uint32_t conns, uint32_t days)
{
	Parley__Cluster__Limits l = PARLEY__CLUSTER__LIMITS__INIT;
	l.connections_max = conns;
	Parley__Cluster__DefaultsSet d = PARLEY__CLUSTER__DEFAULTS_SET__INIT;
	d.limits = &l, d.retention_days = days;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_DEFAULTS, c.defaults = &d;
	return pack(&c);
}

chg c_rebalance(const uint64_t *avoid, size_t n)
{
	Parley__Cluster__LeaderRebalance r =
	    PARLEY__CLUSTER__LEADER_REBALANCE__INIT;
	r.avoid = (uint64_t *)avoid, r.n_avoid = n;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_LEADER_REBALANCE;
	c.leader_rebalance = &r;
	return pack(&c);
}

/* ---- the invariants, written again here (not proto/map*.c's) ---- */

static bool voter(const pl_map_replica *r)
{
	return !r->learner && !r->leaving;
}

static const char *inv_brokers(const pl_map *m)
{
	for (size_t i = 0; i < m->nbrokers; i++) {
		const pl_map_broker *b = &m->brokers[i];
		if (b->node == 0 ||
		    (i > 0 && m->brokers[i - 1].node >= b->node))
			return "brokers sorted by node > 0, unique";
		if (!b->name[0] || !b->listen[0] || !b->peer[0])
			return "broker names and addresses set";
		if (b->state == PL_BROKER_REMOVED)
			continue;
		if (strcmp(b->listen, b->peer) == 0)
			return "listen != peer";
		for (size_t j = 0; j < i; j++) {
			const pl_map_broker *o = &m->brokers[j];
			if (o->state == PL_BROKER_REMOVED)
				continue;
			if (!strcmp(o->listen, b->listen) ||
			    !strcmp(o->listen, b->peer) ||
			    !strcmp(o->peer, b->listen) ||
			    !strcmp(o->peer, b->peer))
				return "addresses unique";
		}
	}
	return NULL;
}

static const char *inv_group(const pl_map *m, const pl_map_group *g)
{
	if (g->removed)
		return g->nreplicas == 0 && g->leader == 0 && g->draining
		           ? NULL
		           : "removed group: drained, no replica, no leader";
	if (g->nreplicas < 1 || g->nreplicas > PL_MAP_REPLICAS_MAX)
		return "1..7 replicas";
	int steps = 0, voters = 0;
	bool leader_ok = false;
	for (int r = 0; r < g->nreplicas; r++) {
		const pl_map_replica *rp = &g->replicas[r];
		const pl_map_broker *b = pl_map_broker_find(m, rp->node);
		if (b == NULL || b->state == PL_BROKER_REMOVED)
			return "replica on a present broker";
		if (r > 0 && g->replicas[r - 1].node >= rp->node)
			return "replicas sorted, one per broker";
		steps += !voter(rp);
		voters += voter(rp);
		leader_ok |= voter(rp) && rp->node == g->leader;
	}
	if (steps > 1)
		return "one step at a time";
	if (voters < 1 || voters != pl_map_group_voters(g))
		return "a voter at least";
	return leader_ok ? NULL : "preferred leader is a voter";
}

static const char *inv_tenants(const pl_map *m)
{
	for (size_t i = 0; i < m->ntenants; i++) {
		const pl_map_tenant *t = &m->tenants[i];
		if (!pl_slug_ok(t->name, PL_TENANT_CHARS_MAX) ||
		    (i > 0 && strcmp(m->tenants[i - 1].name, t->name) >= 0))
			return "tenants sorted slugs";
		if (t->nkeys > PL_KEYS_PER_TENANT_MAX)
			return "keys bounded";
		for (int k = 0; k < t->nkeys; k++) {
			if (!pl_slug_ok(t->keys[k].id, PL_KEY_ID_CHARS_MAX))
				return "key ids slugs";
			for (int j = 0; j < k; j++)
				if (!strcmp(t->keys[j].id, t->keys[k].id))
					return "key ids unique";
		}
	}
	return NULL;
}

bool same_bytes(const pl_map *a, const pl_map *b)
{
	uint8_t *x, *y;
	size_t nx, ny;
	PL_ASSERT(pl_map_encode(a, &x, &nx) == PL_OK);
	PL_ASSERT(pl_map_encode(b, &y, &ny) == PL_OK);
	bool same = nx == ny && memcmp(x, y, nx) == 0;
	free(x);
	free(y);
	return same;
}

/* NULL, or the invariant m breaks; a map that holds them round-trips. */
const char *invariants(const pl_map *m)
{
	const char *e = inv_brokers(m);
	for (size_t i = 0; e == NULL && i < m->ngroups; i++) {
		if (m->groups[i].id == 0 ||
		    (i > 0 && m->groups[i - 1].id >= m->groups[i].id))
			return "groups sorted by id > 0";
		e = inv_group(m, &m->groups[i]);
	}
	if (e == NULL)
		e = inv_tenants(m);
	if (e != NULL)
		return e;
	uint8_t *b;
	size_t n;
	pl_map d;
	PL_ASSERT(pl_map_encode(m, &b, &n) == PL_OK);
	pl_status st = pl_map_decode(&d, b, n);
	free(b);
	if (st != PL_OK)
		return "decode accepts what encode wrote";
	bool same = same_bytes(m, &d) && d.version == m->version;
	pl_map_fini(&d);
	return same ? NULL : "round trip";
}

/* pl_map_apply, checking what every apply must do: a refusal or a
 * no-op leaves the map byte-identical, a change adds 1 to version, and
 * the invariants hold after it. */
pl_status app(pl_map *m, chg c, bool *changed_out)
{
	pl_map before;
	PL_ASSERT(pl_map_copy(&before, m) == PL_OK);
	bool changed = false;
	pl_status st = pl_map_apply(m, c.b, c.n, &changed, why, sizeof(why));
	const char *broken = invariants(m);
	if (broken == NULL && (st != PL_OK || !changed) &&
	    (!same_bytes(&before, m) || before.version != m->version))
		broken = "a refusal or no-op changed the map";
	if (broken == NULL && st == PL_OK && changed &&
	    m->version != before.version + 1)
		broken = "version + 1";
	if (broken == NULL && st != PL_OK && why[0] == '\0')
		broken = "a refusal says why";
	pl_map_fini(&before);
	if (broken != NULL) {
		fprintf(stderr, "  property broken: %s (st %d why %s)\n",
		    broken, st, why);
		return BROKEN;
	}
	if (changed_out != NULL)
		*changed_out = st == PL_OK && changed;
	return st;
}

bool add_brokers(pl_map *m, int n)
{
	for (int i = 1; i <= n; i++) {
		bool ch;
		if (app(m, c_broker((uint64_t)i), &ch) != PL_OK || !ch)
			return false;
	}
	return true;
}

uint64_t rng_state = 0x9e3779b97f4a7c15ull;
uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13, x ^= x >> 7, x ^= x << 17;
	return rng_state = x;
}
uint32_t rnd_n(uint32_t n)
{
	return (uint32_t)(rnd() % n);
}
