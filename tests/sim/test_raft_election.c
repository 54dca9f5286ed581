/*
 * test_raft_election.c - the Raft core's elections: one leader per term,
 * votes refused to stale logs, pre-vote, check-quorum and the leader
 * lease (a learner's too), leadership transfer. The harness is
 * raft_harness.h; the other files of unit_raft are test_raft_log.c,
 * test_raft_membership.c, test_raft_input.c and test_raft_repair.c.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "tests/sim/raft_harness.h"

TEST(test_raft_election_elects_one_leader)
{
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	elect(w, 1);
	CHECK_EQ(st(w, 1).role, RAFT_LEADER);
	CHECK_EQ(st(w, 1).term, 1);
	CHECK_EQ(leaders(w), 1);
	CHECK_EQ(st(w, 2).lead, 1);
	CHECK_EQ(st(w, 3).lead, 1);
	/* The term's no-op commits everywhere. */
	ttick_all(w, 3);
	CHECK_EQ(st(w, 3).commit, 1);
	tnet_free(w);
}

TEST(test_raft_election_single_voter_leads_alone)
{
	tnet *w = tnet_new(1, 0);
	tnet_start(w);
	elect(w, 1);
	CHECK_EQ(st(w, 1).role, RAFT_LEADER);
	CHECK_EQ(propose_str(w, 1, "x"), PL_OK);
	CHECK_EQ(st(w, 1).commit, 2);
	tnet_free(w);
}

TEST(test_raft_election_ticks_elect_someone)
{
	tnet *w = tnet_new(5, 0);
	tnet_start(w);
	ttick_all(w, 40);
	CHECK_EQ(leaders(w), 1);
	tnet_free(w);
}

TEST(test_raft_vote_refused_to_stale_log)
{
	tnet *w = tnet_new(3, 0);
	uint64_t terms[] = {1, 1, 2};
	tlog_seed(N(w, 2), terms, 3);
	tlog_seed(N(w, 3), terms, 3);
	N(w, 2)->hs.term = N(w, 3)->hs.term = 2;
	N(w, 1)->hs.term = 2;
	tlog_seed(N(w, 1), terms, 2); /* behind: lacks (3, 2) */
	tnet_start(w);
	elect(w, 1);
	CHECK_NE(st(w, 1).role, RAFT_LEADER);
	elect(w, 2);
	CHECK_EQ(st(w, 2).role, RAFT_LEADER);
	tnet_free(w);
}

TEST(test_raft_prevote_partitioned_node_does_not_disrupt)
{
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	elect(w, 1);
	uint64_t term = st(w, 1).term;
	isolate(w, 3, true);
	ttick(w, 3, 200);              /* many election timeouts, alone */
	CHECK_EQ(st(w, 3).term, term); /* pre-vote kept the term */
	CHECK_EQ(st(w, 3).role, RAFT_PRE_CANDIDATE);
	isolate(w, 3, false);
	ttick_all(w, 5);
	CHECK_EQ(st(w, 1).role, RAFT_LEADER);
	CHECK_EQ(st(w, 1).term, term);
	CHECK_EQ(st(w, 3).lead, 1);
	tnet_free(w);
}

TEST(test_raft_check_quorum_leader_steps_down)
{
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	elect(w, 1);
	isolate(w, 1, true);
	ttick(w, 1, 25); /* two election timeouts without contact */
	CHECK_EQ(st(w, 1).role, RAFT_FOLLOWER);
	CHECK_EQ(propose_str(w, 1, "x"), PL_E_NOT_LEADER);
	tnet_free(w);
}

TEST(test_raft_check_quorum_lease_ignores_votes)
{
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	elect(w, 1);
	uint64_t term = st(w, 2).term;
	/* A vote request for a higher term, from a node 2 has not heard
	 * of as leader, arrives while 2 follows a live leader. */
	raft_msg m = {.type = RAFT_MSG_VOTE,
	    .from = 3,
	    .to = 2,
	    .term = term + 5,
	    .index = 100,
	    .log_term = term};
	CHECK_EQ(raft_step(N(w, 2)->r, &m), PL_OK);
	CHECK_EQ(st(w, 2).term, term);
	tnet_free(w);
}

TEST(test_raft_transfer_leadership)
{
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	elect(w, 1);
	uint64_t term = st(w, 1).term;
	CHECK_EQ(raft_transfer_leader(N(w, 1)->r, 2), PL_OK);
	tdrain(w, N(w, 1));
	tdeliver(w);
	CHECK_EQ(st(w, 2).role, RAFT_LEADER);
	CHECK_EQ(st(w, 2).term, term + 1);
	CHECK_EQ(st(w, 1).role, RAFT_FOLLOWER);
	CHECK_EQ(raft_transfer_leader(N(w, 2)->r, 2), PL_E_BAD_REQUEST);
	CHECK_EQ(raft_transfer_leader(N(w, 1)->r, 3), PL_E_NOT_LEADER);
	tnet_free(w);
}

TEST(test_raft_transfer_blocks_proposals)
{
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	elect(w, 1);
	isolate(w, 2, true);
	CHECK_EQ(raft_transfer_leader(N(w, 1)->r, 2), PL_OK);
	CHECK_EQ(propose_str(w, 1, "x"), PL_E_AGAIN);
	ttick(w, 1, 12); /* the transfer times out */
	CHECK_EQ(propose_str(w, 1, "x"), PL_OK);
	tnet_free(w);
}

/* Found by the simulation (learner_lease_never_expires): a node that
 * cannot campaign restarted its election timer anyway, so a silent
 * leader's lease never ran out and it ignored every vote request. */
TEST(test_raft_learner_lease_expires_when_leader_is_silent)
{
	tnet *w = tnet_new(3, 1);
	tnet_start(w);
	elect(w, 1);
	ttick_all(w, 2);
	CHECK_EQ(st(w, 4).lead, 1);
	isolate(w, 1, true);
	uint64_t term = st(w, 4).term;
	for (int i = 0; i < 60; i++) {
		ttick(w, 4, 1);
		if (i < 2 * 10)
			continue; /* two election timeouts: the lease is over */
		raft_msg m = {.type = RAFT_MSG_PREVOTE,
		    .from = 2,
		    .to = 4,
		    .term = term + 1,
		    .index = st(w, 2).last_index,
		    .log_term = term};
		size_t before = w->tail;
		CHECK_EQ(raft_step(N(w, 4)->r, &m), PL_OK);
		tdrain(w, N(w, 4));
		if (w->tail == before)
			CHECK_FAIL_(
			    "tick %d: the learner ignored a pre-vote", i);
		w->head = w->tail;
	}
	tnet_free(w);
}
