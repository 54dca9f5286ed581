/*
 * test_map_walk.c - every cluster map change applied twice (the
 * second is a no-op), and a seeded random walk of 5,000 changes after each
 * of which the invariants hold (checked independently of proto/map*.c), a
 * refusal left the map byte-identical, and a change applied again does
 * nothing.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "tests/unit/map_fixture.h"

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
		return rnd_n(2)
		           ? c_key_add(tenants[rnd_n(3)], keys[rnd_n(6)],
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
		bool next_id =
		    u->op_case == PARLEY__CLUSTER__CHANGE__OP_GROUP_ADD &&
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
