/*
 * test_raft_membership.c - learners and membership changes in the Raft
 * core: adding, promoting and removing nodes, a removed leader needed
 * until its removal commits, invalid changes, a truncated change
 * reverting, and the configuration's encoding.
 */
#include "tests/check.h"

#include "tests/sim/raft_harness.h"

TEST(test_raft_learner_does_not_vote_or_campaign)
{
	tnet *w = tnet_new(3, 1);
	tnet_start(w);
	ttick(w, 4, 100);
	CHECK_EQ(st(w, 4).term, 0);
	CHECK_EQ(st(w, 4).role, RAFT_FOLLOWER);
	elect(w, 1);
	CHECK_EQ(propose_str(w, 1, "x"), PL_OK);
	ttick_all(w, 2);
	CHECK_EQ(st(w, 4).commit, st(w, 1).commit); /* it gets the log */
	/* Leader + learner are not a quorum of three voters. */
	isolate(w, 2, true);
	isolate(w, 3, true);
	uint64_t c = st(w, 1).commit;
	CHECK_EQ(propose_str(w, 1, "y"), PL_OK);
	CHECK_EQ(st(w, 4).last_index, st(w, 1).last_index);
	CHECK_EQ(st(w, 1).commit, c);
	tnet_free(w);
}

/* What a driver following a map reads before it promotes or hands
 * over: the leader knows each member's match and whether it answered
 * lately; a cut-off follower keeps its match but not its recency; only
 * the leader answers. */
TEST(test_raft_peer_match_for_catch_up_and_handoff)
{
	tnet *w = tnet_new(3, 1);
	tnet_start(w);
	elect(w, 1);
	CHECK_EQ(propose_str(w, 1, "x"), PL_OK);
	ttick_all(w, 2);
	raft *l = N(w, 1)->r;
	uint64_t m = 0;
	bool recent = false;
	CHECK_EQ(raft_peer_match(l, 4, &m, &recent), PL_OK); /* learner */
	CHECK_EQ(m, st(w, 1).last_index);
	CHECK(recent);
	CHECK_EQ(raft_peer_match(l, 1, &m, NULL), PL_OK); /* itself */
	CHECK_EQ(m, st(w, 1).last_index);
	CHECK_EQ(raft_peer_match(l, 9, &m, NULL), PL_E_NOT_FOUND);
	CHECK_EQ(raft_peer_match(N(w, 2)->r, 1, &m, NULL), PL_E_NOT_LEADER);
	uint64_t before = 0;
	CHECK_EQ(raft_peer_match(l, 3, &before, NULL), PL_OK);
	isolate(w, 3, true);
	CHECK_EQ(propose_str(w, 1, "y"), PL_OK);
	/* Past an election timeout's quorum check, node 3 is not recent;
	 * its match stays where it was. */
	ttick(w, 1, 25); /* election_ticks is 10 in the harness */
	ttick_all(w, 2);
	CHECK_EQ(raft_peer_match(l, 3, &m, &recent), PL_OK);
	CHECK_EQ(m, before);
	CHECK(!recent);
	CHECK_EQ(raft_peer_match(l, 2, &m, &recent), PL_OK);
	CHECK(recent);
	CHECK_EQ(m, st(w, 1).last_index);
	tnet_free(w);
}

TEST(test_raft_membership_add_promote_remove)
{
	tnet *w = tnet_new(3, 0);
	w->count = 4; /* node 4 exists but is in no configuration yet */
	N(w, 4)->id = 4;
	N(w, 4)->first = 1;
	N(w, 4)->conf = N(w, 1)->conf;
	tnet_start(w);
	elect(w, 1);
	ttick_all(w, 2);
	uint64_t i, t;
	raft *l = N(w, 1)->r;
	CHECK_EQ(raft_propose_conf(l, RAFT_CONF_ADD_LEARNER, 4, &i, &t), PL_OK);
	CHECK_EQ(
	    raft_propose_conf(l, RAFT_CONF_PROMOTE, 4, &i, &t), PL_E_AGAIN);
	tdrain(w, N(w, 1));
	tdeliver(w);
	ttick_all(w, 2);
	raft_status s4 = st(w, 4);
	CHECK(raft_conf_is_learner(&s4.conf, 4));
	CHECK_EQ(raft_propose_conf(l, RAFT_CONF_PROMOTE, 4, &i, &t), PL_OK);
	tdrain(w, N(w, 1));
	tdeliver(w);
	ttick_all(w, 2);
	CHECK_EQ(st(w, 1).conf.n_voters, 4);
	CHECK_EQ(raft_propose_conf(l, RAFT_CONF_REMOVE, 1, &i, &t), PL_OK);
	tdrain(w, N(w, 1));
	tdeliver(w);
	ttick_all(w, 2);
	/* The removed leader stepped down once the change committed. */
	CHECK_NE(st(w, 1).role, RAFT_LEADER);
	ttick_all(w, 40);
	CHECK_EQ(leaders(w), 1);
	CHECK_NE(st(w, 1).role, RAFT_LEADER);
	CHECK_EQ(st(w, 2).conf.n_voters, 3);
	tnet_free(w);
}

/* Ongaro's dissertation, 4.2.2: a replica that its latest configuration
 * entry removed may still be needed until that entry commits. Leader 1
 * of four removes itself; only its own log holds the change, node 4 is
 * away. Nodes 2 and 3 (still four voters, quorum three) cannot win
 * without node 1, whose log is more up to date; node 1 campaigns in the
 * new configuration without its own vote, commits the change and steps
 * down, and 2 or 3 leads the three that remain. */
TEST(test_raft_membership_removed_leader_campaigns_until_committed)
{
	tnet *w = tnet_new(4, 0);
	tnet_start(w);
	elect(w, 1);
	ttick_all(w, 2);
	isolate(w, 1, true);
	isolate(w, 4, true);
	uint64_t i, t;
	CHECK_EQ(
	    raft_propose_conf(N(w, 1)->r, RAFT_CONF_REMOVE, 1, &i, &t), PL_OK);
	tdrain(w, N(w, 1));
	ttick(w, 1, 30); /* check-quorum: it steps down, alone */
	CHECK_NE(st(w, 1).role, RAFT_LEADER);
	CHECK_EQ(st(w, 1).commit, i - 1);
	isolate(w, 1, false);
	for (int k = 0; k < 60 && st(w, 2).commit <= i; k++)
		ttick_all(w, 1);
	ttick_all(w, 20);
	CHECK_EQ(leaders(w), 1);
	CHECK_NE(st(w, 1).role, RAFT_LEADER);
	CHECK_EQ(st(w, 2).conf.n_voters, 3);
	CHECK_GT(st(w, 2).commit, i);
	/* Only node 1 held the change, and only a leader sends its log:
	 * node 1 led (within one delivery round: elected, committed,
	 * stepped down). */
	CHECK_EQ(N(w, 2)->log[i - 1].type, RAFT_ENTRY_CONF);
	CHECK_EQ(N(w, 2)->log[i - 1].term, t);
	ttick_all(w, 40); /* it knows the change committed: no more */
	CHECK_NE(st(w, 1).role, RAFT_LEADER);
	tnet_free(w);
}

TEST(test_raft_membership_invalid_changes)
{
	static const struct {
		raft_conf_op op;
		uint64_t node;
		pl_status want;
	} cases[] = {
	    {RAFT_CONF_ADD_VOTER, 2, PL_E_BAD_REQUEST}, /* member */
	    {RAFT_CONF_ADD_LEARNER, 0, PL_E_BAD_REQUEST},
	    {RAFT_CONF_PROMOTE, 3, PL_E_BAD_REQUEST}, /* not a learner */
	    {RAFT_CONF_REMOVE, 9, PL_E_BAD_REQUEST},  /* unknown */
	    {(raft_conf_op)99, 4, PL_E_BAD_REQUEST},
	    {RAFT_CONF_ADD_VOTER, 4, PL_OK},
	};
	for (size_t c = 0; c < PL_ARRAY_LEN(cases); c++) {
		tnet *w = tnet_new(3, 0);
		tnet_start(w);
		elect(w, 1);
		ttick_all(w, 2);
		uint64_t i, t;
		pl_status s = raft_propose_conf(
		    N(w, 1)->r, cases[c].op, cases[c].node, &i, &t);
		if (s != cases[c].want)
			CHECK_FAIL_("case %zu: %s", c, pl_strerror(s));
		tnet_free(w);
	}
}

TEST(test_raft_membership_truncated_change_reverts)
{
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	raft *f = N(w, 2)->r;
	raft_conf c4 = N(w, 1)->conf;
	c4.learners[c4.n_learners++] = 4;
	uint8_t buf[RAFT_CONF_BYTES_MAX];
	size_t len = raft_conf_encode(&c4, buf);
	raft_entry e = {.term = 1,
	    .index = 1,
	    .type = RAFT_ENTRY_CONF,
	    .data = buf,
	    .len = len};
	raft_msg m = {.type = RAFT_MSG_APP,
	    .from = 1,
	    .to = 2,
	    .term = 1,
	    .ents = &e,
	    .n_ents = 1};
	CHECK_EQ(raft_step(f, &m), PL_OK);
	CHECK_EQ(st(w, 2).conf.n_learners, 1); /* in force once appended */
	tdrain(w, N(w, 2));
	raft_entry e2 = {.term = 2, .index = 1};
	raft_msg m2 = {.type = RAFT_MSG_APP,
	    .from = 3,
	    .to = 2,
	    .term = 2,
	    .ents = &e2,
	    .n_ents = 1};
	CHECK_EQ(raft_step(f, &m2), PL_OK);
	CHECK_EQ(st(w, 2).conf.n_learners, 0); /* truncated: reverted */
	tnet_free(w);
}

TEST(test_raft_conf_codec)
{
	raft_conf c = {.voters = {1, 2, 3},
	    .n_voters = 3,
	    .learners = {9},
	    .n_learners = 1};
	uint8_t buf[RAFT_CONF_BYTES_MAX];
	size_t n = raft_conf_encode(&c, buf);
	raft_conf d;
	CHECK_EQ(raft_conf_decode(buf, n, &d), PL_OK);
	CHECK_EQ(d.n_voters, 3);
	CHECK_EQ(d.learners[0], 9);
	static const struct {
		const char *name;
		uint8_t bytes[24];
		size_t len;
	} bad[] = {
	    {"empty", {0}, 0},
	    {"version", {2, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0}, 11},
	    {"no voters", {1, 0, 0}, 3},
	    {"short", {1, 1, 0, 1, 0}, 5},
	    {"zero id", {1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 11},
	    {"duplicate",
	        {1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}, 19},
	    {"too many", {1, 7, 1}, 3},
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++)
		if (raft_conf_decode(bad[i].bytes, bad[i].len, &d) !=
		    PL_E_PROTO)
			CHECK_FAIL_("case \"%s\" decoded", bad[i].name);
}
