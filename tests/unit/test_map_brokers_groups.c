/*
 * test_map_brokers_groups.c - the cluster map's broker and group changes
 * (proto/map_apply.c): adding brokers and setting their state, a broker
 * removed only once empty, adding, setting and removing groups, and the
 * placement of 12 groups of 3 replicas over 4 brokers.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "tests/unit/map_fixture.h"

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
	REFUSE(
	    &m, c_broker_add(5, "b", "tcp://x:1", "tcp://x:1"), PL_E_FORBIDDEN);
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
