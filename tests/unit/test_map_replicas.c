/*
 * test_map_replicas.c - the cluster map's membership steps and
 * leaders (proto/map_apply.c): a replica added as a learner, promoted and
 * removed one step at a time, the preferred leader moved off a removed
 * replica, a replica move, and leader rebalance for a rolling restart.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "tests/unit/map_fixture.h"

/* ---- membership steps ---- */

/* brokers 1..5, group 1 on 1, 2, 3 with preferred leader 1 */
static bool group_fixture(pl_map *m)
{
	pl_map_init(m);
	return add_brokers(m, 5) &&
	       app(m, c_group_add(1, 3, 1), NULL) == PL_OK &&
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

/* ---- leaders ---- */

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
