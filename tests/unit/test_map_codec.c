/*
 * test_map_codec.c - the cluster map's codec (proto/map_codec.c): empty
 * and full maps round-trip, decode refuses maps that break an invariant
 * (one table of rules, each broken on its own), oversized maps and a NUL
 * inside a string, survives random bytes, accepting only maps that hold
 * the invariants, and apply refuses changes it cannot decode.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "tests/unit/map_fixture.h"

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
	bool ok =
	    add_brokers(m, 4) && app(m, c_group_add(0, 3, 2), NULL) == PL_OK &&
	    app(m, c_group_add(7, 1, 0), NULL) == PL_OK &&
	    app(m, c_replica(R_ADD, 1, 4), NULL) == PL_OK &&
	    app(m, c_broker_state(2, PL_BROKER_DRAINING), NULL) == PL_OK &&
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

/* Each breaks one rule of a valid map, on one line where it fits: the
 * table below names them (clang-format would give each three lines). */
/* clang-format off */
typedef void (*pb_break)(pbmap *p);
static void br_unsorted_brokers(pbmap *p) { p->b[0].node = 5; }
static void br_dup_node(pbmap *p) { p->b[1].node = 1; }
static void br_node0(pbmap *p) { p->b[0].node = 0; }
static void br_no_name(pbmap *p) { p->b[1].name = ""; }
static void br_long_name(pbmap *p)
{
	p->b[1].name = "0123456789012345678901234567890123456789012345678901"
	               "234567890123";
}
static void br_dup_listen(pbmap *p) { p->b[1].listen = p->b[0].listen; }
static void br_listen_is_peer(pbmap *p) { p->b[2].peer = p->b[2].listen; }
static void br_peer_is_other_listen(pbmap *p) { p->b[2].peer = p->b[0].listen; }
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
static void br_key_dup(pbmap *p) { p->t[0].n_keys = 2, p->k[1].id = "k0"; }
static void br_five_keys(pbmap *p) { p->t[0].n_keys = 5; }
/* clang-format on */

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
	static const uint8_t buf[] = {
	    0x12, 0x07, 0x08, 0x01, 0x12, 0x03, 'b', 0x00, 'x'};
	pl_map m;
	CHECK_EQ(pl_map_decode(&m, buf, sizeof(buf)), PL_E_PROTO);
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
				fprintf(stderr,
				    "  accepted a map that breaks: %s\n", e);
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
	CHECK_EQ(
	    pl_map_apply(&m, c.b, c.n, NULL, w4, sizeof(w4)), PL_E_BAD_REQUEST);
	CHECK_EQ(strlen(w4), 3);
	pl_map_fini(&m);
}
