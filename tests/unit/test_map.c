/*
 * test_map.c - the cluster map's model (proto/map.h): each rule of
 * docs/cluster.md, allowed and refused, the codec (round trip, malformed,
 * unsorted and oversized maps, random bytes), placement of 12 groups on
 * 4 brokers, a replica move, and a seeded random walk of changes after
 * each of which the invariants hold (checked here independently of
 * map.c) and a refusal left the map byte-identical.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "cluster.pb-c.h"
#include "proto/map.h"

/* What app() returns when a property of every apply is broken. */
#define BROKEN 999
#define CHG_BYTES 2048

typedef struct chg {
	uint8_t b[CHG_BYTES];
	size_t n;
} chg;

static char why[256];

static chg pack(Parley__Cluster__Change *c)
{
	chg out;
	out.n = parley__cluster__change__get_packed_size(c);
	PL_ASSERT(out.n <= sizeof(out.b));
	parley__cluster__change__pack(c, out.b);
	return out;
}

static chg c_broker_add(uint64_t node, const char *name, const char *listen,
    const char *peer)
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
static chg c_broker(uint64_t n)
{
	char name[32], l[64], p[64];
	snprintf(name, sizeof(name), "broker-%llu", (unsigned long long)n);
	snprintf(l, sizeof(l), "tcp://10.0.0.%llu:7000", (unsigned long long)n);
	snprintf(p, sizeof(p), "tcp://10.0.0.%llu:7100", (unsigned long long)n);
	return c_broker_add(n, name, l, p);
}

static chg c_broker_state(uint64_t node, int state)
{
	Parley__Cluster__BrokerSetState s =
	    PARLEY__CLUSTER__BROKER_SET_STATE__INIT;
	s.node = node, s.state = (Parley__Cluster__BrokerState)state;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_BROKER_STATE;
	c.broker_state = &s;
	return pack(&c);
}

static chg c_group_add(uint32_t id, uint32_t replicas, uint32_t weight)
{
	Parley__Cluster__GroupAdd g = PARLEY__CLUSTER__GROUP_ADD__INIT;
	g.id = id, g.replicas = replicas, g.weight = weight;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_GROUP_ADD, c.group_add = &g;
	return pack(&c);
}

static chg c_group_set(uint32_t id, bool draining, uint32_t weight)
{
	Parley__Cluster__GroupSet g = PARLEY__CLUSTER__GROUP_SET__INIT;
	g.id = id, g.draining = draining, g.weight = weight;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_GROUP_SET, c.group_set = &g;
	return pack(&c);
}

static chg c_group_remove(uint32_t id)
{
	Parley__Cluster__GroupRemove g = PARLEY__CLUSTER__GROUP_REMOVE__INIT;
	g.id = id;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_GROUP_REMOVE;
	c.group_remove = &g;
	return pack(&c);
}

enum { R_ADD, R_PROMOTE, R_REMOVE };

static chg c_replica(int op, uint32_t group, uint64_t node)
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

static chg c_tenant_set(const char *name, uint32_t conns, uint32_t days)
{
	Parley__Cluster__Limits l = PARLEY__CLUSTER__LIMITS__INIT;
	l.connections_max = conns;
	Parley__Cluster__TenantSet t = PARLEY__CLUSTER__TENANT_SET__INIT;
	t.name = (char *)name, t.limits = &l, t.retention_days = days;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_TENANT_SET, c.tenant_set = &t;
	return pack(&c);
}

static chg c_key_add(const char *tenant, const char *id, uint8_t fill,
    size_t pklen)
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

static chg c_key_revoke(const char *tenant, const char *id)
{
	Parley__Cluster__KeyRevoke r = PARLEY__CLUSTER__KEY_REVOKE__INIT;
	r.tenant = (char *)tenant, r.key_id = (char *)id;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_KEY_REVOKE, c.key_revoke = &r;
	return pack(&c);
}

static chg c_defaults(uint32_t conns, uint32_t days)
{
	Parley__Cluster__Limits l = PARLEY__CLUSTER__LIMITS__INIT;
	l.connections_max = conns;
	Parley__Cluster__DefaultsSet d = PARLEY__CLUSTER__DEFAULTS_SET__INIT;
	d.limits = &l, d.retention_days = days;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_DEFAULTS, c.defaults = &d;
	return pack(&c);
}

/* ---- the invariants, written again here (not map.c's) ---- */

static chg c_rebalance(const uint64_t *avoid, size_t n)
{
	Parley__Cluster__LeaderRebalance r =
	    PARLEY__CLUSTER__LEADER_REBALANCE__INIT;
	r.avoid = (uint64_t *)avoid, r.n_avoid = n;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_LEADER_REBALANCE;
	c.leader_rebalance = &r;
	return pack(&c);
}

static bool voter(const pl_map_replica *r)
{
	return !r->learner && !r->leaving;
}

static const char *inv_brokers(const pl_map *m)
{
	for (size_t i = 0; i < m->nbrokers; i++) {
		const pl_map_broker *b = &m->brokers[i];
		if (b->node == 0 || (i > 0 && m->brokers[i - 1].node >= b->node))
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

static bool same_bytes(const pl_map *a, const pl_map *b)
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
static const char *invariants(const pl_map *m)
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
static pl_status app(pl_map *m, chg c, bool *changed_out)
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

/* Applies c, which must change m. */
#define APPLY(m, c)                                                         \
	do {                                                                \
		bool ch_ = false;                                           \
		pl_status st_ = app(m, c, &ch_);                            \
		if (st_ != PL_OK)                                           \
			fprintf(stderr, "  why: %s\n", why);                \
		CHECK_EQ(st_, PL_OK);                                       \
		CHECK(ch_);                                                 \
	} while (0)
/* Applies c, which must be already in effect. */
#define NOOP(m, c)                                                          \
	do {                                                                \
		bool ch_ = true;                                            \
		CHECK_EQ(app(m, c, &ch_), PL_OK);                           \
		CHECK(!ch_);                                                \
	} while (0)
/* Applies c, which must be refused with st. */
#define REFUSE(m, c, st)                                                    \
	do {                                                                \
		CHECK_EQ(app(m, c, NULL), st);                              \
	} while (0)

static bool add_brokers(pl_map *m, int n)
{
	for (int i = 1; i <= n; i++) {
		bool ch;
		if (app(m, c_broker((uint64_t)i), &ch) != PL_OK || !ch)
			return false;
	}
	return true;
}

/* ---- codec ---- */

TEST(test_map_empty_round_trip)
{
	pl_map m, d;
	pl_map_init(&m);
	uint8_t *b;
	size_t n;
	CHECK_EQ(pl_map_encode(&m, &b, &n), PL_OK);
	CHECK_EQ(pl_map_decode(&d, b, n), PL_OK);
	free(b);
	CHECK_EQ(d.version, 0);
	CHECK_EQ(d.nbrokers + d.ngroups + d.ntenants, 0);
	CHECK(d.brokers == NULL && d.groups == NULL && d.tenants == NULL);
	pl_map_fini(&d);
	CHECK_EQ(pl_map_decode(&d, NULL, 0), PL_OK);
	pl_map_fini(&d);
}

static bool build_full(pl_map *m)
{
	pl_map_init(m);
	bool ok = add_brokers(m, 4) &&
	          app(m, c_group_add(0, 3, 2), NULL) == PL_OK &&
	          app(m, c_group_add(7, 1, 0), NULL) == PL_OK &&
	          app(m, c_replica(R_ADD, 1, 4), NULL) == PL_OK &&
	          app(m, c_broker_state(2, PL_BROKER_DRAINING), NULL) ==
	              PL_OK &&
	          app(m, c_tenant_set("globex", 10, 30), NULL) == PL_OK &&
	          app(m, c_tenant_set("acme", 0, 7), NULL) == PL_OK &&
	          app(m, c_key_add("acme", "k1", 1, 32), NULL) == PL_OK &&
	          app(m, c_key_add("acme", "k2", 2, 32), NULL) == PL_OK &&
	          app(m, c_key_revoke("acme", "k1"), NULL) == PL_OK &&
	          app(m, c_defaults(500, 90), NULL) == PL_OK;
	return ok;
}

TEST(test_map_round_trip)
{
	pl_map m, d;
	CHECK(build_full(&m));
	uint8_t *b;
	size_t n;
	CHECK_EQ(pl_map_encode(&m, &b, &n), PL_OK);
	CHECK_EQ(pl_map_decode(&d, b, n), PL_OK);
	free(b);
	CHECK(same_bytes(&m, &d));
	CHECK_EQ(d.version, m.version);
	CHECK_EQ(d.version, 14);
	CHECK_EQ(d.nbrokers, 4);
	CHECK_EQ(d.ngroups, 2);
	CHECK_STR_EQ(d.tenants[0].name, "acme");
	CHECK_STR_EQ(d.tenants[1].name, "globex");
	CHECK_EQ(d.tenants[1].limits.connections_max, 10);
	CHECK(d.tenants[0].keys[0].revoked && !d.tenants[0].keys[1].revoked);
	CHECK_EQ(d.tenants[0].keys[1].pk[31], 2);
	CHECK_EQ(d.brokers[1].state, PL_BROKER_DRAINING);
	CHECK_EQ(d.limits.connections_max, 500);
	CHECK_EQ(d.retention_days, 90);
	const pl_map_group *g = pl_map_group_find(&d, 1);
	CHECK(g != NULL && g->nreplicas == 4 && g->weight == 2);
	CHECK(g->replicas[3].node == 4 && g->replicas[3].learner);
	CHECK_EQ(pl_map_group_find(&d, 7)->weight, 1);
	pl_map c;
	CHECK_EQ(pl_map_copy(&c, &d), PL_OK);
	CHECK(c.brokers != d.brokers && same_bytes(&c, &d));
	pl_map_fini(&c);
	pl_map_fini(&d);
	pl_map_fini(&m);
}

/* A decoded map's pb form, to break one rule at a time. */
typedef struct pbmap {
	Parley__Cluster__Map m;
	Parley__Cluster__Broker b[4], *bp[4];
	Parley__Cluster__Group g[2], *gp[2];
	Parley__Cluster__Replica r[2][4], *rp[2][4];
	Parley__Cluster__Tenant t[2], *tp[2];
	Parley__Cluster__Key k[5], *kp[5];
	uint8_t pk[5][33];
	char names[4][3][32];
} pbmap;

/* 3 brokers, groups 1 {1,2,3} leader 1 and 2 {2} leader 2, tenants a
 * (key k0) and b: valid. */
static void pb_valid(pbmap *p)
{
	memset(p, 0, sizeof(*p));
	parley__cluster__map__init(&p->m);
	for (int i = 0; i < 4; i++) {
		parley__cluster__broker__init(&p->b[i]);
		p->b[i].node = (uint64_t)i + 1;
		snprintf(p->names[i][0], 32, "b%d", i + 1);
		snprintf(p->names[i][1], 32, "tcp://h%d:1", i + 1);
		snprintf(p->names[i][2], 32, "tcp://h%d:2", i + 1);
		p->b[i].name = p->names[i][0];
		p->b[i].listen = p->names[i][1];
		p->b[i].peer = p->names[i][2];
		p->bp[i] = &p->b[i];
	}
	p->m.brokers = p->bp, p->m.n_brokers = 3;
	for (int i = 0; i < 2; i++) {
		parley__cluster__group__init(&p->g[i]);
		p->g[i].id = (uint32_t)i + 1;
		p->g[i].replicas = p->rp[i];
		for (int r = 0; r < 4; r++) {
			parley__cluster__replica__init(&p->r[i][r]);
			p->rp[i][r] = &p->r[i][r];
		}
		p->gp[i] = &p->g[i];
	}
	for (int r = 0; r < 3; r++)
		p->r[0][r].node = (uint64_t)r + 1;
	p->g[0].n_replicas = 3, p->g[0].leader = 1;
	p->r[1][0].node = 2;
	p->g[1].n_replicas = 1, p->g[1].leader = 2;
	p->m.groups = p->gp, p->m.n_groups = 2;
	for (int i = 0; i < 2; i++) {
		parley__cluster__tenant__init(&p->t[i]);
		p->t[i].name = i == 0 ? "a" : "b";
		p->tp[i] = &p->t[i];
	}
	static const char *kid[] = {"k0", "k1", "k2", "k3", "k4"};
	for (int k = 0; k < 5; k++) {
		parley__cluster__key__init(&p->k[k]);
		p->k[k].id = (char *)kid[k];
		p->k[k].public_key.data = p->pk[k];
		p->k[k].public_key.len = 32;
		p->kp[k] = &p->k[k];
	}
	p->t[0].keys = p->kp, p->t[0].n_keys = 1;
	p->m.tenants = p->tp, p->m.n_tenants = 2;
	p->m.version = 9;
}

static pl_status pb_decode(pbmap *p)
{
	static uint8_t buf[16384];
	size_t n = parley__cluster__map__get_packed_size(&p->m);
	PL_ASSERT(n <= sizeof(buf));
	parley__cluster__map__pack(&p->m, buf);
	pl_map m;
	pl_status st = pl_map_decode(&m, buf, n);
	bool empty = st == PL_OK || (m.nbrokers == 0 && m.brokers == NULL &&
	                                m.ngroups == 0 && m.ntenants == 0);
	pl_map_fini(&m);
	return empty ? st : (pl_status)BROKEN;
}

typedef void (*pb_break)(pbmap *p);
static void br_unsorted_brokers(pbmap *p) { p->b[0].node = 5; }
static void br_dup_node(pbmap *p) { p->b[1].node = 1; }
static void br_node0(pbmap *p)
{
	p->b[0].node = 0;
}
static void br_no_name(pbmap *p) { p->b[1].name = ""; }
static void br_long_name(pbmap *p)
{
	p->b[1].name = "0123456789012345678901234567890123456789012345678901"
	               "234567890123";
}
static void br_dup_listen(pbmap *p) { p->b[1].listen = p->b[0].listen; }
static void br_listen_is_peer(pbmap *p) { p->b[2].peer = p->b[2].listen; }
static void br_peer_is_other_listen(pbmap *p)
{
	p->b[2].peer = p->b[0].listen;
}
static void br_bad_state(pbmap *p) { p->b[2].state = 3; }
static void br_unsorted_groups(pbmap *p) { p->g[1].id = 1; }
static void br_group0(pbmap *p) { p->g[0].id = 0; }
static void br_group_big(pbmap *p) { p->g[1].id = 65536; }
static void br_replica_unknown(pbmap *p) { p->r[1][0].node = 9; }
static void br_replica_removed(pbmap *p)
{
	p->b[1].state = PARLEY__CLUSTER__BROKER_STATE__BROKER_REMOVED;
}
static void br_dup_replica(pbmap *p) { p->r[0][2].node = 2; }
static void br_replicas_unsorted(pbmap *p)
{
	p->r[0][0].node = 3, p->r[0][2].node = 1;
}
static void br_two_steps(pbmap *p)
{
	p->r[0][1].learner = true, p->r[0][2].learner = true;
}
static void br_learner_leaving(pbmap *p)
{
	p->r[0][1].learner = true, p->r[0][1].leaving = true;
}
static void br_leader_learner(pbmap *p) { p->r[0][0].learner = true; }
static void br_leader_absent(pbmap *p) { p->g[1].leader = 3; }
static void br_no_leader(pbmap *p) { p->g[1].leader = 0; }
static void br_no_voter(pbmap *p) { p->r[1][0].learner = true; }
static void br_no_replica(pbmap *p) { p->g[1].n_replicas = 0; }
static void br_removed_with_replica(pbmap *p)
{
	p->g[1].removed = true, p->g[1].draining = true;
}
static void br_eight_replicas(pbmap *p)
{
	static Parley__Cluster__Replica r8[8], *r8p[8];
	for (int i = 0; i < 8; i++) {
		parley__cluster__replica__init(&r8[i]);
		r8[i].node = (uint64_t)i + 1;
		r8p[i] = &r8[i];
	}
	p->g[0].replicas = r8p, p->g[0].n_replicas = 8;
}
static void br_tenants_unsorted(pbmap *p)
{
	p->t[0].name = "b", p->t[1].name = "a";
}
static void br_tenant_dup(pbmap *p) { p->t[1].name = "a"; }
static void br_tenant_not_slug(pbmap *p) { p->t[1].name = "a b"; }
static void br_tenant_empty(pbmap *p) { p->t[0].name = ""; }
static void br_key_short(pbmap *p) { p->k[0].public_key.len = 31; }
static void br_key_long(pbmap *p) { p->k[0].public_key.len = 33; }
static void br_key_not_slug(pbmap *p) { p->k[0].id = "k/0"; }
static void br_key_dup(pbmap *p)
{
	p->t[0].n_keys = 2, p->k[1].id = "k0";
}
static void br_five_keys(pbmap *p) { p->t[0].n_keys = 5; }

TEST(test_map_decode_refuses_broken_maps)
{
	static const struct {
		const char *name;
		pb_break fn;
		pl_status st;
	} cases[] = {
	    {"unsorted brokers", br_unsorted_brokers, PL_E_PROTO},
	    {"duplicate node", br_dup_node, PL_E_PROTO},
	    {"node 0", br_node0, PL_E_PROTO},
	    {"empty name", br_no_name, PL_E_PROTO},
	    {"name of 64", br_long_name, PL_E_PROTO},
	    {"listen twice", br_dup_listen, PL_E_PROTO},
	    {"listen is peer", br_listen_is_peer, PL_E_PROTO},
	    {"peer is another's listen", br_peer_is_other_listen, PL_E_PROTO},
	    {"state 3", br_bad_state, PL_E_PROTO},
	    {"unsorted groups", br_unsorted_groups, PL_E_PROTO},
	    {"group 0", br_group0, PL_E_PROTO},
	    {"group 65536", br_group_big, PL_E_PROTO},
	    {"replica on unknown broker", br_replica_unknown, PL_E_PROTO},
	    {"replica on removed broker", br_replica_removed, PL_E_PROTO},
	    {"two replicas on a broker", br_dup_replica, PL_E_PROTO},
	    {"replicas unsorted", br_replicas_unsorted, PL_E_PROTO},
	    {"two steps", br_two_steps, PL_E_PROTO},
	    {"learner and leaving", br_learner_leaving, PL_E_PROTO},
	    {"leader is a learner", br_leader_learner, PL_E_PROTO},
	    {"leader not a replica", br_leader_absent, PL_E_PROTO},
	    {"no preferred leader", br_no_leader, PL_E_PROTO},
	    {"no voter", br_no_voter, PL_E_PROTO},
	    {"no replica", br_no_replica, PL_E_PROTO},
	    {"removed with replicas", br_removed_with_replica, PL_E_PROTO},
	    {"8 replicas", br_eight_replicas, PL_E_PROTO},
	    {"tenants unsorted", br_tenants_unsorted, PL_E_PROTO},
	    {"tenant twice", br_tenant_dup, PL_E_PROTO},
	    {"tenant not a slug", br_tenant_not_slug, PL_E_PROTO},
	    {"tenant empty", br_tenant_empty, PL_E_PROTO},
	    {"key of 31 bytes", br_key_short, PL_E_PROTO},
	    {"key of 33 bytes", br_key_long, PL_E_PROTO},
	    {"key id not a slug", br_key_not_slug, PL_E_PROTO},
	    {"key id twice", br_key_dup, PL_E_PROTO},
	    {"5 keys", br_five_keys, PL_E_PROTO},
	};
	static pbmap p;
	pb_valid(&p);
	CHECK_EQ(pb_decode(&p), PL_OK);
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
		pb_valid(&p);
		cases[i].fn(&p);
		pl_status st = pb_decode(&p);
		if (st != cases[i].st)
			fprintf(stderr, "  case: %s\n", cases[i].name);
		CHECK_EQ(st, cases[i].st);
	}
}

TEST(test_map_decode_refuses_oversized)
{
	pl_map m;
	static uint8_t zero[PL_MAP_BYTES_MAX + 1];
	CHECK_EQ(pl_map_decode(&m, zero, sizeof(zero)), PL_E_TOO_LARGE);
	CHECK(m.brokers == NULL && m.nbrokers == 0);
	/* 257 brokers, each valid on its own */
	static Parley__Cluster__Broker b[PL_MAP_BROKERS_MAX + 1];
	static Parley__Cluster__Broker *bp[PL_MAP_BROKERS_MAX + 1];
	static char s[PL_MAP_BROKERS_MAX + 1][2][24];
	for (int i = 0; i <= PL_MAP_BROKERS_MAX; i++) {
		parley__cluster__broker__init(&b[i]);
		b[i].node = (uint64_t)i + 1;
		snprintf(s[i][0], 24, "tcp://h:%d", 1000 + i);
		snprintf(s[i][1], 24, "tcp://h:%d", 2000 + i);
		b[i].name = "b", b[i].listen = s[i][0], b[i].peer = s[i][1];
		bp[i] = &b[i];
	}
	Parley__Cluster__Map pm = PARLEY__CLUSTER__MAP__INIT;
	pm.brokers = bp, pm.n_brokers = PL_MAP_BROKERS_MAX + 1;
	size_t n = parley__cluster__map__get_packed_size(&pm);
	uint8_t *buf = malloc(n);
	parley__cluster__map__pack(&pm, buf);
	CHECK_EQ(pl_map_decode(&m, buf, n), PL_E_TOO_LARGE);
	pm.n_brokers = PL_MAP_BROKERS_MAX;
	n = parley__cluster__map__pack(&pm, buf);
	CHECK_EQ(pl_map_decode(&m, buf, n), PL_OK);
	CHECK_EQ(m.nbrokers, PL_MAP_BROKERS_MAX);
	pl_map_fini(&m);
	free(buf);
}

TEST(test_map_decode_refuses_nul_in_string)
{
	/* "b\0x" on the wire: protobuf-c would cut it to "b" */
	static const uint8_t buf[] = {0x12, 0x07, 0x08, 0x01, 0x12, 0x03, 'b',
	    0x00, 'x'};
	pl_map m;
	CHECK_EQ(pl_map_decode(&m, buf, sizeof(buf)), PL_E_PROTO);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13, x ^= x >> 7, x ^= x << 17;
	return rng_state = x;
}
static uint32_t rnd_n(uint32_t n)
{
	return (uint32_t)(rnd() % n);
}

TEST(test_map_decode_survives_random_bytes)
{
	pl_map full;
	CHECK(build_full(&full));
	uint8_t *good;
	size_t glen;
	CHECK_EQ(pl_map_encode(&full, &good, &glen), PL_OK);
	pl_map_fini(&full);
	uint8_t buf[1024];
	int accepted = 0;
	for (int i = 0; i < 20000; i++) {
		size_t n;
		if (i % 2 == 0) { /* noise */
			n = rnd_n(sizeof(buf));
			for (size_t j = 0; j < n; j++)
				buf[j] = (uint8_t)rnd();
		} else { /* a valid map with a few bytes changed, or cut */
			n = glen <= sizeof(buf) ? glen : sizeof(buf);
			memcpy(buf, good, n);
			for (int k = 1 + (int)rnd_n(3); k > 0; k--)
				buf[rnd_n((uint32_t)n)] = (uint8_t)rnd();
			if (rnd_n(4) == 0)
				n = rnd_n((uint32_t)n);
		}
		pl_map m;
		pl_status st = pl_map_decode(&m, buf, n);
		CHECK(st == PL_OK || st == PL_E_PROTO || st == PL_E_TOO_LARGE);
		if (st == PL_OK) {
			accepted++;
			const char *e = invariants(&m);
			if (e != NULL)
				fprintf(stderr, "  accepted a map that breaks: %s\n",
				    e);
			CHECK(e == NULL);
		}
		pl_map_fini(&m);
	}
	free(good);
	CHECK_GT(accepted, 0);
}

/* ---- changes that are not ---- */

TEST(test_map_apply_refuses_malformed_changes)
{
	pl_map m;
	pl_map_init(&m);
	chg c = {.n = 0};
	REFUSE(&m, c, PL_E_BAD_REQUEST); /* no op */
	memcpy(c.b, "\xff\xff\xff", 3), c.n = 3;
	REFUSE(&m, c, PL_E_BAD_REQUEST);
	Parley__Cluster__BrokerAdd a = PARLEY__CLUSTER__BROKER_ADD__INIT;
	Parley__Cluster__Change ch = PARLEY__CLUSTER__CHANGE__INIT;
	ch.op_case = PARLEY__CLUSTER__CHANGE__OP_BROKER_ADD;
	ch.broker_add = &a;
	REFUSE(&m, pack(&ch), PL_E_BAD_REQUEST); /* no broker */
	Parley__Cluster__KeyAdd ka = PARLEY__CLUSTER__KEY_ADD__INIT;
	ka.tenant = "acme";
	ch.op_case = PARLEY__CLUSTER__CHANGE__OP_KEY_ADD, ch.key_add = &ka;
	REFUSE(&m, pack(&ch), PL_E_BAD_REQUEST); /* no key */
	c = c_tenant_set("acme", 0, 0);
	c.b[4] = '\0'; /* "\0cme" */
	REFUSE(&m, c, PL_E_BAD_REQUEST);
	static uint8_t big[64 * 1024 + 1];
	CHECK_EQ(pl_map_apply(&m, big, sizeof(big), NULL, why, sizeof(why)),
	    PL_E_TOO_LARGE);
	CHECK_EQ(m.version, 0);
	/* a short why buffer is cut, not overrun */
	char w4[4];
	CHECK_EQ(pl_map_apply(&m, c.b, c.n, NULL, w4, sizeof(w4)),
	    PL_E_BAD_REQUEST);
	CHECK_EQ(strlen(w4), 3);
	pl_map_fini(&m);
}

/* ---- brokers ---- */

TEST(test_map_broker_add)
{
	pl_map m;
	pl_map_init(&m);
	APPLY(&m, c_broker(2));
	APPLY(&m, c_broker(1));
	NOOP(&m, c_broker(1));
	CHECK_EQ(m.nbrokers, 2);
	CHECK_EQ(m.brokers[0].node, 1);
	CHECK_STR_EQ(m.brokers[1].listen, "tcp://10.0.0.2:7000");
	CHECK_EQ(m.brokers[1].state, PL_BROKER_ACTIVE);
	CHECK(pl_map_broker_find(&m, 3) == NULL);
	CHECK_EQ(pl_map_broker_find(&m, 2)->node, 2);
	pl_map_fini(&m);
}

TEST(test_map_broker_add_refusals)
{
	pl_map m;
	pl_map_init(&m);
	APPLY(&m, c_broker(1));
	REFUSE(&m, c_broker_add(0, "b", "tcp://x:1", "tcp://x:2"),
	    PL_E_BAD_REQUEST);
	REFUSE(&m, c_broker_add(5, "", "tcp://x:1", "tcp://x:2"),
	    PL_E_BAD_REQUEST);
	REFUSE(&m, c_broker_add(5, "b", "", "tcp://x:2"), PL_E_BAD_REQUEST);
	REFUSE(&m, c_broker_add(5, "b", "tcp://x:1", ""), PL_E_BAD_REQUEST);
	char longname[PL_MAP_NAME_CHARS_MAX + 2];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	REFUSE(&m, c_broker_add(5, longname, "tcp://x:1", "tcp://x:2"),
	    PL_E_TOO_LARGE);
	longname[PL_MAP_NAME_CHARS_MAX] = '\0';
	REFUSE(&m, c_broker_add(5, "b", "tcp://x:1", "tcp://x:1"),
	    PL_E_FORBIDDEN);
	/* another broker under node 1 */
	REFUSE(&m, c_broker_add(1, "other", "tcp://x:1", "tcp://x:2"),
	    PL_E_FORBIDDEN);
	CHECK(strstr(why, "broker-1") != NULL);
	/* an address of broker 1 */
	REFUSE(&m, c_broker_add(5, "b", "tcp://10.0.0.1:7000", "tcp://x:2"),
	    PL_E_FORBIDDEN);
	REFUSE(&m, c_broker_add(5, "b", "tcp://x:1", "tcp://10.0.0.1:7100"),
	    PL_E_FORBIDDEN);
	REFUSE(&m, c_broker_add(5, "b", "tcp://10.0.0.1:7100", "tcp://x:2"),
	    PL_E_FORBIDDEN);
	/* added draining: refused, states are set afterwards */
	Parley__Cluster__Broker b = PARLEY__CLUSTER__BROKER__INIT;
	b.node = 5, b.name = "b", b.listen = "tcp://x:1", b.peer = "tcp://x:2";
	b.state = PARLEY__CLUSTER__BROKER_STATE__BROKER_DRAINING;
	Parley__Cluster__BrokerAdd a = PARLEY__CLUSTER__BROKER_ADD__INIT;
	a.broker = &b;
	Parley__Cluster__Change ch = PARLEY__CLUSTER__CHANGE__INIT;
	ch.op_case = PARLEY__CLUSTER__CHANGE__OP_BROKER_ADD;
	ch.broker_add = &a;
	REFUSE(&m, pack(&ch), PL_E_BAD_REQUEST);
	CHECK_EQ(m.nbrokers, 1);
	pl_map_fini(&m);
}

TEST(test_map_broker_add_bounded)
{
	pl_map m;
	pl_map_init(&m);
	CHECK(add_brokers(&m, PL_MAP_BROKERS_MAX));
	REFUSE(&m, c_broker(PL_MAP_BROKERS_MAX + 1), PL_E_TOO_LARGE);
	pl_map_fini(&m);
}

TEST(test_map_broker_state)
{
	pl_map m;
	pl_map_init(&m);
	CHECK(add_brokers(&m, 2));
	APPLY(&m, c_broker_state(1, PL_BROKER_DRAINING));
	NOOP(&m, c_broker_state(1, PL_BROKER_DRAINING));
	APPLY(&m, c_broker_state(1, PL_BROKER_ACTIVE));
	REFUSE(&m, c_broker_state(9, PL_BROKER_DRAINING), PL_E_NOT_FOUND);
	REFUSE(&m, c_broker_state(1, 3), PL_E_BAD_REQUEST);
	APPLY(&m, c_broker_state(2, PL_BROKER_REMOVED));
	NOOP(&m, c_broker_state(2, PL_BROKER_REMOVED));
	REFUSE(&m, c_broker_state(2, PL_BROKER_ACTIVE), PL_E_FORBIDDEN);
	REFUSE(&m, c_broker_state(2, PL_BROKER_DRAINING), PL_E_FORBIDDEN);
	/* kept, id never reused, addresses free for a new broker */
	CHECK_EQ(m.nbrokers, 2);
	REFUSE(&m, c_broker(2), PL_E_FORBIDDEN);
	APPLY(&m, c_broker_add(3, "broker-2-again", "tcp://10.0.0.2:7000",
	              "tcp://10.0.0.2:7100"));
	pl_map_fini(&m);
}

TEST(test_map_broker_removed_only_empty)
{
	pl_map m;
	pl_map_init(&m);
	CHECK(add_brokers(&m, 3));
	APPLY(&m, c_group_add(4, 3, 1));
	APPLY(&m, c_group_add(9, 1, 1));
	CHECK_EQ(pl_map_group_find(&m, 9)->replicas[0].node, 1);
	REFUSE(&m, c_broker_state(1, PL_BROKER_REMOVED), PL_E_FORBIDDEN);
	CHECK(strstr(why, "groups 4, 9") != NULL);
	/* draining first is fine, removal still waits for the replicas */
	APPLY(&m, c_broker_state(1, PL_BROKER_DRAINING));
	REFUSE(&m, c_broker_state(1, PL_BROKER_REMOVED), PL_E_FORBIDDEN);
	pl_map_fini(&m);
}

/* ---- groups ---- */

TEST(test_map_group_add)
{
	pl_map m;
	pl_map_init(&m);
	CHECK(add_brokers(&m, 7));
	APPLY(&m, c_group_add(0, 3, 5));
	APPLY(&m, c_group_add(0, 1, 0));
	APPLY(&m, c_group_add(10, 5, 1));
	APPLY(&m, c_group_add(0, 7, 1));
	CHECK_EQ(m.ngroups, 4);
	CHECK_EQ(m.groups[0].id, 1);
	CHECK_EQ(m.groups[0].weight, 5);
	CHECK_EQ(m.groups[1].id, 2);
	CHECK_EQ(m.groups[1].weight, 1); /* 0: the default */
	CHECK_EQ(m.groups[3].id, 11);    /* next after the highest */
	CHECK_EQ(m.groups[3].nreplicas, 7);
	/* a retry with an explicit id */
	NOOP(&m, c_group_add(10, 5, 1));
	NOOP(&m, c_group_add(10, 5, 9));
	REFUSE(&m, c_group_add(10, 3, 1), PL_E_FORBIDDEN);
	CHECK_EQ(pl_map_group_voters(pl_map_group_find(&m, 10)), 5);
	pl_map_fini(&m);
}

TEST(test_map_group_add_refusals)
{
	pl_map m;
	pl_map_init(&m);
	CHECK(add_brokers(&m, 4));
	static const uint32_t bad[] = {0, 2, 4, 6, 8, 9};
	for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++)
		REFUSE(&m, c_group_add(1, bad[i], 1), PL_E_BAD_REQUEST);
	REFUSE(&m, c_group_add(65536, 1, 1), PL_E_BAD_REQUEST);
	REFUSE(&m, c_group_add(1, 5, 1), PL_E_FORBIDDEN); /* 4 brokers */
	APPLY(&m, c_broker_state(4, PL_BROKER_DRAINING));
	APPLY(&m, c_broker_state(3, PL_BROKER_DRAINING));
	REFUSE(&m, c_group_add(1, 3, 1), PL_E_FORBIDDEN); /* 2 active */
	APPLY(&m, c_group_add(65535, 1, 1));
	REFUSE(&m, c_group_add(0, 1, 1), PL_E_TOO_LARGE); /* no id left */
	pl_map_fini(&m);
}

TEST(test_map_placement_spreads_replicas_and_leaders)
{
	pl_map m;
	pl_map_init(&m);
	CHECK(add_brokers(&m, 4));
	for (int i = 0; i < 12; i++)
		APPLY(&m, c_group_add(0, 3, 1));
	for (size_t i = 0; i < m.ngroups; i++) {
		const pl_map_group *g = &m.groups[i];
		CHECK_EQ(g->nreplicas, 3);
		for (int r = 1; r < 3; r++) /* sorted: distinct */
			CHECK_LT(g->replicas[r - 1].node, g->replicas[r].node);
	}
	for (uint64_t b = 1; b <= 4; b++) {
		CHECK_EQ(pl_map_replicas_on(&m, b), 9);
		int leads = 0;
		for (size_t i = 0; i < m.ngroups; i++)
			leads += m.groups[i].leader == b;
		CHECK_EQ(leads, 3);
	}
	pl_map_fini(&m);
}

static int leads_on(const pl_map *m, uint64_t b)
{
	int n = 0;
	for (size_t i = 0; i < m->ngroups; i++)
		n += m->groups[i].leader == b;
	return n;
}

/* A rolling restart moves preference off one broker and back: with 12
 * groups of 3 on 4 brokers, avoiding broker 2 leaves it no group and
 * the others 4 each; rebalancing again gives every broker 3; a second
 * rebalance is a no-op; an unknown broker is refused. */
TEST(test_map_leader_rebalance)
{
	pl_map m;
	pl_map_init(&m);
	CHECK(add_brokers(&m, 4));
	for (int i = 0; i < 12; i++)
		APPLY(&m, c_group_add(0, 3, 1));
	NOOP(&m, c_rebalance(NULL, 0)); /* placement spread them already */
	uint64_t two = 2, nine = 9;
	APPLY(&m, c_rebalance(&two, 1));
	CHECK_EQ(leads_on(&m, 2), 0);
	for (uint64_t b = 1; b <= 4; b += b == 1 ? 2 : 1)
		CHECK_EQ(leads_on(&m, b), 4);
	NOOP(&m, c_rebalance(&two, 1));
	APPLY(&m, c_rebalance(NULL, 0));
	for (uint64_t b = 1; b <= 4; b++)
		CHECK_EQ(leads_on(&m, b), 3);
	NOOP(&m, c_rebalance(NULL, 0));
	REFUSE(&m, c_rebalance(&nine, 1), PL_E_NOT_FOUND);
	/* A draining broker is not preferred either. */
	APPLY(&m, c_broker_state(4, PL_BROKER_DRAINING));
	APPLY(&m, c_rebalance(NULL, 0));
	CHECK_EQ(leads_on(&m, 4), 0);
	pl_map_fini(&m);
}

TEST(test_map_placement_skips_draining_and_loaded)
{
	pl_map m;
	pl_map_init(&m);
	CHECK(add_brokers(&m, 4));
	APPLY(&m, c_group_add(1, 3, 1)); /* on 1, 2, 3 */
	APPLY(&m, c_broker_state(4, PL_BROKER_DRAINING));
	APPLY(&m, c_group_add(2, 1, 1));
	CHECK_EQ(pl_map_group_find(&m, 2)->replicas[0].node, 1);
	APPLY(&m, c_broker_state(4, PL_BROKER_ACTIVE));
	APPLY(&m, c_group_add(3, 1, 1)); /* 4 holds none */
	CHECK_EQ(pl_map_group_find(&m, 3)->replicas[0].node, 4);
	pl_map_fini(&m);
}

TEST(test_map_group_set_and_remove)
{
	pl_map m;
	pl_map_init(&m);
	CHECK(add_brokers(&m, 3));
	APPLY(&m, c_group_add(1, 3, 4));
	APPLY(&m, c_group_set(1, false, 7));
	CHECK_EQ(m.groups[0].weight, 7);
	NOOP(&m, c_group_set(1, false, 7));
	NOOP(&m, c_group_set(1, false, 0)); /* 0 keeps the weight */
	REFUSE(&m, c_group_set(2, true, 1), PL_E_NOT_FOUND);
	REFUSE(&m, c_group_remove(1), PL_E_FORBIDDEN); /* not draining */
	REFUSE(&m, c_group_remove(2), PL_E_NOT_FOUND);
	APPLY(&m, c_group_set(1, true, 0));
	CHECK(m.groups[0].draining && m.groups[0].weight == 7);
	APPLY(&m, c_group_remove(1));
	NOOP(&m, c_group_remove(1));
	const pl_map_group *g = pl_map_group_find(&m, 1);
	CHECK(g != NULL && g->removed && g->nreplicas == 0 && g->leader == 0);
	CHECK_EQ(pl_map_replicas_on(&m, 1), 0);
	/* kept: its id is not reused, and it cannot come back */
	REFUSE(&m, c_group_add(1, 3, 1), PL_E_FORBIDDEN);
	REFUSE(&m, c_group_set(1, false, 0), PL_E_FORBIDDEN);
	NOOP(&m, c_group_set(1, true, 0));
	REFUSE(&m, c_replica(R_ADD, 1, 1), PL_E_FORBIDDEN);
	APPLY(&m, c_group_add(0, 1, 1));
	CHECK_EQ(m.groups[1].id, 2);
	/* its brokers are free to go */
	APPLY(&m, c_broker_state(3, PL_BROKER_REMOVED));
	pl_map_fini(&m);
}

/* ---- membership steps ---- */

/* brokers 1..5, group 1 on 1, 2, 3 with preferred leader 1 */
static bool group_fixture(pl_map *m)
{
	pl_map_init(m);
	return add_brokers(m, 5) && app(m, c_group_add(1, 3, 1), NULL) == PL_OK &&
	       m->groups[0].leader == 1;
}

TEST(test_map_replica_add)
{
	pl_map m;
	CHECK(group_fixture(&m));
	APPLY(&m, c_replica(R_ADD, 1, 4));
	const pl_map_group *g = &m.groups[0];
	CHECK_EQ(g->nreplicas, 4);
	CHECK(g->replicas[3].node == 4 && g->replicas[3].learner);
	CHECK_EQ(pl_map_group_voters(g), 3);
	NOOP(&m, c_replica(R_ADD, 1, 4)); /* the same step, retried */
	REFUSE(&m, c_replica(R_ADD, 1, 5), PL_E_FORBIDDEN); /* one at a time */
	REFUSE(&m, c_replica(R_ADD, 1, 2), PL_E_FORBIDDEN); /* holds one */
	REFUSE(&m, c_replica(R_ADD, 2, 5), PL_E_NOT_FOUND);
	REFUSE(&m, c_replica(R_ADD, 1, 9), PL_E_NOT_FOUND);
	pl_map_fini(&m);
}

TEST(test_map_replica_add_needs_active_broker)
{
	pl_map m;
	CHECK(group_fixture(&m));
	APPLY(&m, c_broker_state(5, PL_BROKER_DRAINING));
	REFUSE(&m, c_replica(R_ADD, 1, 5), PL_E_FORBIDDEN);
	APPLY(&m, c_broker_state(5, PL_BROKER_REMOVED));
	REFUSE(&m, c_replica(R_ADD, 1, 5), PL_E_FORBIDDEN);
	pl_map_fini(&m);
}

TEST(test_map_replica_add_bounded)
{
	pl_map m;
	pl_map_init(&m);
	CHECK(add_brokers(&m, 8));
	APPLY(&m, c_group_add(1, 7, 1));
	REFUSE(&m, c_replica(R_ADD, 1, 8), PL_E_TOO_LARGE);
	pl_map_fini(&m);
}

TEST(test_map_replica_promote)
{
	pl_map m;
	CHECK(group_fixture(&m));
	NOOP(&m, c_replica(R_PROMOTE, 1, 2)); /* already a voter */
	REFUSE(&m, c_replica(R_PROMOTE, 1, 4), PL_E_NOT_FOUND);
	APPLY(&m, c_replica(R_ADD, 1, 4));
	APPLY(&m, c_broker_state(4, PL_BROKER_DRAINING));
	REFUSE(&m, c_replica(R_PROMOTE, 1, 4), PL_E_FORBIDDEN);
	APPLY(&m, c_broker_state(4, PL_BROKER_ACTIVE));
	APPLY(&m, c_replica(R_PROMOTE, 1, 4));
	NOOP(&m, c_replica(R_PROMOTE, 1, 4));
	CHECK_EQ(pl_map_group_voters(&m.groups[0]), 4);
	/* the step is over: the next may start */
	APPLY(&m, c_replica(R_ADD, 1, 5));
	pl_map_fini(&m);
}

TEST(test_map_replica_remove)
{
	pl_map m;
	CHECK(group_fixture(&m));
	NOOP(&m, c_replica(R_REMOVE, 1, 4)); /* holds none */
	REFUSE(&m, c_replica(R_REMOVE, 1, 9), PL_E_NOT_FOUND);
	REFUSE(&m, c_replica(R_REMOVE, 3, 1), PL_E_NOT_FOUND);
	APPLY(&m, c_replica(R_ADD, 1, 4));
	/* no voter leaves while a learner catches up */
	REFUSE(&m, c_replica(R_REMOVE, 1, 3), PL_E_FORBIDDEN);
	/* the learner itself may go: the move is abandoned */
	APPLY(&m, c_replica(R_REMOVE, 1, 4));
	CHECK_EQ(m.groups[0].nreplicas, 3);
	APPLY(&m, c_replica(R_REMOVE, 1, 3));
	APPLY(&m, c_replica(R_REMOVE, 1, 2));
	REFUSE(&m, c_replica(R_REMOVE, 1, 1), PL_E_FORBIDDEN); /* last voter */
	CHECK(strstr(why, "without a voter") != NULL);
	CHECK_EQ(pl_map_group_voters(&m.groups[0]), 1);
	pl_map_fini(&m);
}

TEST(test_map_replica_remove_moves_preferred_leader)
{
	pl_map m;
	CHECK(group_fixture(&m));
	/* group 2 on 4, 5, 1: 1 leads group 1, so 4 leads group 2 */
	APPLY(&m, c_group_add(2, 3, 1));
	CHECK_EQ(m.groups[1].leader, 4);
	APPLY(&m, c_replica(R_REMOVE, 1, 1));
	/* 2 and 3 lead nothing: the lower node takes it */
	CHECK_EQ(m.groups[0].leader, 2);
	APPLY(&m, c_replica(R_REMOVE, 2, 4));
	/* 5 leads nothing, 1 nothing either now: node 1 */
	CHECK_EQ(m.groups[1].leader, 1);
	pl_map_fini(&m);
}

TEST(test_map_replica_move)
{
	/* add(learner) -> promote -> remove(old): broker 3 leaves group 1
	 * for broker 4, and can then be removed */
	pl_map m;
	CHECK(group_fixture(&m));
	APPLY(&m, c_broker_state(3, PL_BROKER_DRAINING));
	APPLY(&m, c_replica(R_ADD, 1, 4));
	APPLY(&m, c_replica(R_PROMOTE, 1, 4));
	APPLY(&m, c_replica(R_REMOVE, 1, 3));
	const pl_map_group *g = &m.groups[0];
	CHECK_EQ(g->nreplicas, 3);
	CHECK_EQ(pl_map_group_voters(g), 3);
	CHECK(g->replicas[0].node == 1 && g->replicas[1].node == 2 &&
	      g->replicas[2].node == 4);
	CHECK_EQ(pl_map_replicas_on(&m, 3), 0);
	APPLY(&m, c_broker_state(3, PL_BROKER_REMOVED));
	/* every step retried: nothing more happens */
	NOOP(&m, c_replica(R_PROMOTE, 1, 4));
	NOOP(&m, c_replica(R_REMOVE, 1, 3));
	pl_map_fini(&m);
}

/* ---- tenants ---- */

TEST(test_map_tenant_set)
{
	pl_map m;
	pl_map_init(&m);
	APPLY(&m, c_tenant_set("zeta", 5, 0));
	APPLY(&m, c_tenant_set("acme", 0, 30));
	NOOP(&m, c_tenant_set("acme", 0, 30));
	APPLY(&m, c_tenant_set("acme", 100, 30));
	CHECK_EQ(m.ntenants, 2);
	CHECK_STR_EQ(m.tenants[0].name, "acme");
	CHECK_EQ(pl_map_tenant_find(&m, "acme")->limits.connections_max, 100);
	CHECK_EQ(pl_map_tenant_find(&m, "zeta")->limits.connections_max, 5);
	CHECK(pl_map_tenant_find(&m, "nope") == NULL);
	REFUSE(&m, c_tenant_set("", 0, 0), PL_E_BAD_REQUEST);
	REFUSE(&m, c_tenant_set("a/b", 0, 0), PL_E_BAD_REQUEST);
	char longname[PL_TENANT_CHARS_MAX + 2];
	memset(longname, 't', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	REFUSE(&m, c_tenant_set(longname, 0, 0), PL_E_TOO_LARGE);
	pl_map_fini(&m);
}

TEST(test_map_key_add)
{
	pl_map m;
	pl_map_init(&m);
	REFUSE(&m, c_key_add("acme", "k1", 1, 32), PL_E_NOT_FOUND);
	APPLY(&m, c_tenant_set("acme", 0, 0));
	APPLY(&m, c_key_add("acme", "k1", 1, 32));
	NOOP(&m, c_key_add("acme", "k1", 1, 32));
	REFUSE(&m, c_key_add("acme", "k1", 2, 32), PL_E_FORBIDDEN);
	REFUSE(&m, c_key_add("acme", "k2", 2, 31), PL_E_BAD_REQUEST);
	REFUSE(&m, c_key_add("acme", "k2", 2, 33), PL_E_BAD_REQUEST);
	REFUSE(&m, c_key_add("acme", "k 2", 2, 32), PL_E_BAD_REQUEST);
	REFUSE(&m, c_key_add("acme", "", 2, 32), PL_E_BAD_REQUEST);
	APPLY(&m, c_key_add("acme", "k2", 2, 32));
	APPLY(&m, c_key_add("acme", "k3", 3, 32));
	APPLY(&m, c_key_add("acme", "k4", 4, 32));
	REFUSE(&m, c_key_add("acme", "k5", 5, 32), PL_E_TOO_LARGE);
	CHECK_EQ(m.tenants[0].nkeys, PL_KEYS_PER_TENANT_MAX);
	pl_map_fini(&m);
}

TEST(test_map_key_revoke)
{
	pl_map m;
	pl_map_init(&m);
	APPLY(&m, c_tenant_set("acme", 0, 0));
	REFUSE(&m, c_key_revoke("acme", "k1"), PL_E_NOT_FOUND);
	REFUSE(&m, c_key_revoke("nope", "k1"), PL_E_NOT_FOUND);
	APPLY(&m, c_key_add("acme", "k1", 1, 32));
	/* the last valid key may go: the tenant then has none */
	APPLY(&m, c_key_revoke("acme", "k1"));
	NOOP(&m, c_key_revoke("acme", "k1"));
	CHECK(m.tenants[0].keys[0].revoked);
	/* revocation is final: re-adding it changes nothing */
	NOOP(&m, c_key_add("acme", "k1", 1, 32));
	CHECK(m.tenants[0].keys[0].revoked);
	pl_map_fini(&m);
}

TEST(test_map_key_rotation_reuses_revoked_slots)
{
	pl_map m;
	pl_map_init(&m);
	APPLY(&m, c_tenant_set("acme", 0, 0));
	char id[8];
	for (int i = 0; i < 4; i++) {
		snprintf(id, sizeof(id), "k%d", i);
		APPLY(&m, c_key_add("acme", id, (uint8_t)i, 32));
	}
	APPLY(&m, c_key_revoke("acme", "k2"));
	APPLY(&m, c_key_revoke("acme", "k0"));
	/* the oldest revoked slot first */
	APPLY(&m, c_key_add("acme", "k4", 4, 32));
	CHECK_STR_EQ(m.tenants[0].keys[0].id, "k4");
	APPLY(&m, c_key_add("acme", "k5", 5, 32));
	CHECK_STR_EQ(m.tenants[0].keys[2].id, "k5");
	REFUSE(&m, c_key_add("acme", "k6", 6, 32), PL_E_TOO_LARGE);
	pl_map_fini(&m);
}

TEST(test_map_defaults_set)
{
	pl_map m;
	pl_map_init(&m);
	APPLY(&m, c_defaults(100, 30));
	NOOP(&m, c_defaults(100, 30));
	CHECK_EQ(m.limits.connections_max, 100);
	CHECK_EQ(m.retention_days, 30);
	APPLY(&m, c_defaults(0, 0));
	CHECK_EQ(m.version, 2);
	pl_map_fini(&m);
}

/* ---- every change, twice, and a random walk ---- */

TEST(test_map_apply_twice_changes_once)
{
	chg cs[] = {c_broker(1), c_broker(2), c_broker(3), c_broker(4),
	    c_group_add(1, 3, 1), c_group_set(1, false, 3),
	    c_replica(R_ADD, 1, 4), c_replica(R_PROMOTE, 1, 4),
	    c_replica(R_REMOVE, 1, 1), c_broker_state(1, PL_BROKER_DRAINING),
	    c_broker_state(1, PL_BROKER_REMOVED), c_tenant_set("acme", 1, 2),
	    c_key_add("acme", "k1", 1, 32), c_key_revoke("acme", "k1"),
	    c_defaults(1, 2), c_group_set(1, true, 0), c_group_remove(1)};
	pl_map m;
	pl_map_init(&m);
	for (size_t i = 0; i < PL_ARRAY_LEN(cs); i++) {
		APPLY(&m, cs[i]);
		NOOP(&m, cs[i]);
	}
	CHECK_EQ(m.version, PL_ARRAY_LEN(cs));
	pl_map_fini(&m);
}

static chg random_change(void)
{
	static const char *tenants[] = {"acme", "globex", "initech"};
	static const char *keys[] = {"k0", "k1", "k2", "k3", "k4", "k5"};
	uint64_t node = 1 + rnd_n(7);
	uint32_t group = rnd_n(7);
	switch (rnd_n(13)) {
	case 0:
		/* brokers 1..7, with some addresses that clash */
		return rnd_n(8) ? c_broker(node)
		                : c_broker_add(node, "x", "tcp://10.0.0.1:7000",
		                      "tcp://y:1");
	case 1:
		/* removal is final: rare, so brokers stay to place on */
		return c_broker_state(node, (int)rnd_n(rnd_n(20) ? 2 : 4));
	case 2:
		return c_group_add(group, 1 + 2 * rnd_n(3), rnd_n(3));
	case 3:
		return c_group_set(group, rnd_n(2), rnd_n(3));
	case 4:
		return c_group_remove(group);
	case 5:
	case 6:
		return c_replica(R_ADD, group, node);
	case 7:
		return c_replica(R_PROMOTE, group, node);
	case 8:
		return c_replica(R_REMOVE, group, node);
	case 9:
		return c_tenant_set(tenants[rnd_n(3)], rnd_n(3), rnd_n(3));
	case 10:
		return rnd_n(2) ? c_key_add(tenants[rnd_n(3)], keys[rnd_n(6)],
		                      (uint8_t)rnd_n(2), 32)
		                : c_key_revoke(tenants[rnd_n(3)], keys[rnd_n(6)]);
	case 11:
		return c_defaults(rnd_n(3), rnd_n(3));
	default:
		return c_rebalance(&node, rnd_n(2));
	}
}

TEST(test_map_random_changes_keep_invariants)
{
	rng_state = 20240601;
	pl_map m;
	pl_map_init(&m);
	int counts[3] = {0}; /* changed, no-op, refused */
	for (int i = 0; i < 5000; i++) {
		chg c = random_change();
		bool changed = false;
		pl_status st = app(&m, c, &changed);
		CHECK_NE(st, BROKEN);
		counts[st != PL_OK ? 2 : changed ? 0 : 1]++;
		if (st != PL_OK || !changed)
			continue;
		/* idempotent: the same change again is a no-op (but for
		 * GroupAdd with id 0, which names no group) */
		Parley__Cluster__Change *u =
		    parley__cluster__change__unpack(NULL, c.n, c.b);
		bool next_id = u->op_case ==
		                   PARLEY__CLUSTER__CHANGE__OP_GROUP_ADD &&
		               u->group_add->id == 0;
		parley__cluster__change__free_unpacked(u, NULL);
		if (!next_id)
			NOOP(&m, c);
	}
	fprintf(stderr, "  changed %d, no-op %d, refused %d, version %llu\n",
	    counts[0], counts[1], counts[2], (unsigned long long)m.version);
	CHECK_GT(counts[0], 500);
	CHECK_GT(counts[1], 200);
	CHECK_GT(counts[2], 500);
	CHECK_EQ(m.version, (uint64_t)counts[0]);
	pl_map_fini(&m);
}
