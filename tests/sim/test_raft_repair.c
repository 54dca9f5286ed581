/*
 * test_raft_repair.c - damaged logs and their repair: a replica that lost
 * entries to a bad CRC refuses votes while it repairs and campaigns only
 * without its own vote, is repaired by a leader, a peer or by leading,
 * gets back from peers what of its old log survives, keeps its repair
 * across a restart, and cannot let a stale candidate win.
 */
#include "tests/check.h"

#include "tests/sim/raft_harness.h"

/* Node id finds entry bad unreadable: the driver tells the core, then
 * truncates its log and lowers its commit, storing the repair record. */
static pl_status tdamage(tnet *w, uint64_t id, uint64_t bad)
{
	tnode *t = N(w, id);
	raft_repair rep;
	pl_status s = raft_log_damaged(t->r, bad, &rep);
	if (s != PL_OK)
		return s;
	t->last = bad - 1;
	if (t->hs.commit > bad - 1)
		t->hs.commit = bad - 1;
	t->rep = rep;
	tdrain(w, t);
	return PL_OK;
}

/* Restarts node id from its stored state (log, hard state, repair). */
static void trestart(tnet *w, uint64_t id, uint64_t seed)
{
	tnode *t = N(w, id);
	raft_free(t->r);
	t->applied = 0;
	tnode_start(t, seed);
}

/* The answer node `to` gives a vote request from `from` with an
 * up-to-date log at the next term; force skips the leader lease. */
static raft_msg tvote(tnet *w, uint64_t from, uint64_t to, bool pre)
{
	raft_status s = st(w, from);
	uint64_t lt = 0;
	if (s.last_index > 0)
		lt = N(w, from)->log[s.last_index - N(w, from)->first].term;
	raft_msg m = {.type = pre ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE,
	    .from = from,
	    .to = to,
	    .term = st(w, to).term + 1,
	    .index = s.last_index,
	    .log_term = lt,
	    .force = true};
	size_t before = w->tail;
	PL_ASSERT(raft_step(N(w, to)->r, &m) == PL_OK);
	tdrain(w, N(w, to));
	raft_msg none = {0};
	for (size_t i = before; i < w->tail; i++) {
		raft_msg a = w->q[i % TQUEUE_MAX];
		if (a.type ==
		    (pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP))
			return a;
	}
	return none;
}

/* Leader 1 of three, with `n` entries after its no-op committed on all. */
static tnet *tnet_with_log(int n)
{
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	elect(w, 1);
	for (int i = 0; i < n; i++)
		PL_ASSERT(propose_str(w, 1, "entry") == PL_OK);
	ttick_all(w, 2);
	return w;
}

TEST(test_raft_damage_refuses_votes_while_repairing)
{
	tnet *w = tnet_with_log(3);
	CHECK_EQ(st(w, 3).commit, 4);
	/* Control: an undamaged follower grants this vote. */
	CHECK_EQ(tvote(w, 3, 2, false).reject, false);
	tnet_free(w);

	w = tnet_with_log(3);
	CHECK_EQ(tdamage(w, 3, 2), PL_OK);
	raft_status s = st(w, 3);
	CHECK(s.repairing);
	CHECK_EQ(s.last_index, 1);
	CHECK_EQ(s.commit, 1);  /* lowered with the log */
	CHECK_EQ(s.applied, 4); /* applied entries are not handed out again */
	CHECK_EQ(s.repair.to, 4);
	CHECK_EQ(s.repair.term, 1);
	raft_msg pv = tvote(w, 2, 3, true);
	CHECK_EQ(pv.type, RAFT_MSG_PREVOTE_RESP);
	CHECK(pv.reject);
	raft_msg v = tvote(w, 2, 3, false);
	CHECK_EQ(v.type, RAFT_MSG_VOTE_RESP);
	CHECK(v.reject);
	CHECK_EQ(st(w, 3).vote, 0);
	tnet_free(w);
}

/* Alone, a repairing replica pre-campaigns but never wins: its own vote
 * does not count, so no term moves. A transfer does not make it
 * campaign either: a leader that transfers is alive and repairs it. */
TEST(test_raft_damage_alone_never_wins)
{
	tnet *w = tnet_with_log(2);
	CHECK_EQ(tdamage(w, 3, 3), PL_OK);
	uint64_t term = st(w, 3).term;
	raft_msg m = {
	    .type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .to = 3, .term = term};
	CHECK_EQ(raft_step(N(w, 3)->r, &m), PL_OK);
	CHECK_EQ(st(w, 3).role, RAFT_FOLLOWER);
	isolate(w, 3, true);
	size_t before = w->tail;
	ttick(w, 3, 200); /* many election timeouts, alone */
	CHECK_EQ(st(w, 3).term, term);
	CHECK_NE(st(w, 3).role, RAFT_LEADER);
	CHECK(st(w, 3).repairing);
	bool asked = false;
	for (size_t i = before; i < w->tail; i++) {
		uint8_t t = w->q[i % TQUEUE_MAX].type;
		CHECK(t != RAFT_MSG_VOTE);
		asked = asked || t == RAFT_MSG_REPAIR;
	}
	CHECK(asked); /* it asked its peers for a repair */
	tnet_free(w);
}

/* Nodes 1 and 2 hold entries 1-2 of term 1; node 3 also held 3-5 of
 * term 2 (never committed: no other log has them) and lost entry 5. Its
 * log (4/2) is the most up to date and no peer holds (5, 2). */
static tnet *tnet_lost_tail(
    int learners, const uint64_t *learner_terms, size_t n_learner_terms)
{
	tnet *w = tnet_new(3, learners);
	static const uint64_t old[] = {1, 1}, mine[] = {1, 1, 2, 2, 2};
	tlog_seed(N(w, 1), old, 2);
	tlog_seed(N(w, 2), old, 2);
	tlog_seed(N(w, 3), mine, 5);
	if (learners > 0)
		tlog_seed(N(w, 4), learner_terms, n_learner_terms);
	for (int i = 1; i <= w->count; i++)
		N(w, (uint64_t)i)->hs.term = 2;
	tnet_start(w);
	PL_ASSERT(tdamage(w, 3, 5) == PL_OK);
	return w;
}

/* Its own vote does not count: with node 2 away, node 1's vote would
 * make a majority with its own, and must not. Both others elect it, and
 * leading a later term repairs it (its no-op durable, rule B). */
TEST(test_raft_damage_campaigns_without_own_vote)
{
	tnet *w = tnet_lost_tail(0, NULL, 0);
	CHECK(st(w, 3).repairing);
	CHECK_EQ(st(w, 3).repair.to, 5);
	CHECK_EQ(st(w, 3).repair.term, 2);
	isolate(w, 2, true);
	ttick(w, 3, 100);
	CHECK_NE(st(w, 3).role, RAFT_LEADER);
	CHECK(st(w, 3).repairing);
	isolate(w, 2, false);
	for (int i = 0; i < 40 && st(w, 3).role != RAFT_LEADER; i++)
		ttick(w, 3, 1);
	CHECK_EQ(st(w, 3).role, RAFT_LEADER);
	ttick(w, 3, 4);
	CHECK(!st(w, 3).repairing);
	CHECK_EQ(st(w, 3).commit, st(w, 3).last_index);
	for (uint64_t id = 1; id <= 2; id++) {
		CHECK_EQ(st(w, id).last_index, st(w, 3).last_index);
		CHECK_EQ(N(w, id)->log[3].term, 2); /* its entry 4/2 won */
	}
	tnet_free(w);
}

/* The shape the long simulation found (1449244 and others): the tail a
 * learner holds is the most up-to-date log, the repairing replica lost
 * more than that. The learner serves what it holds of the record's term
 * (a partial restore); with it the repairing replica can win. */
TEST(test_raft_damage_partial_restore_then_wins)
{
	static const uint64_t learner[] = {1, 1, 2, 2};
	tnet *w = tnet_lost_tail(1, learner, 4);
	CHECK_EQ(tdamage(w, 3, 3), PL_OK); /* now it holds 1-2 only */
	CHECK_EQ(st(w, 3).last_index, 2);
	CHECK_EQ(st(w, 3).repair.to, 5);
	isolate(w, 1, true);
	isolate(w, 2, true);
	ttick(w, 3, 30);
	CHECK_EQ(st(w, 3).last_index, 4); /* 3-4 back, not 5 */
	CHECK(st(w, 3).repairing);
	isolate(w, 1, false);
	isolate(w, 2, false);
	for (int i = 0; i < 40 && st(w, 3).role != RAFT_LEADER; i++)
		ttick(w, 3, 1);
	CHECK_EQ(st(w, 3).role, RAFT_LEADER);
	ttick(w, 3, 4);
	CHECK(!st(w, 3).repairing);
	CHECK_EQ(st(w, 4).last_index, st(w, 3).last_index);
	tnet_free(w);
}

TEST(test_raft_damage_repaired_from_leader)
{
	tnet *w = tnet_with_log(3);
	CHECK_EQ(tdamage(w, 3, 2), PL_OK);
	CHECK(st(w, 3).repairing);
	/* The leader still believes node 3 holds everything; the repairing
	 * node's heartbeat answer makes it probe from what node 3 has. */
	ttick(w, 1, 4);
	raft_status s = st(w, 3);
	CHECK(!s.repairing);
	CHECK_EQ(s.repair.to, 0);
	CHECK_EQ(s.last_index, st(w, 1).last_index);
	CHECK_EQ(s.commit, st(w, 1).commit);
	CHECK_EQ(N(w, 3)->log[1].term, N(w, 1)->log[1].term);
	/* Eligible again: it grants an up-to-date candidate's vote. */
	CHECK_EQ(tvote(w, 2, 3, false).reject, false);
	tnet_free(w);
}

TEST(test_raft_damage_survives_restart)
{
	tnet *w = tnet_with_log(3);
	CHECK_EQ(tdamage(w, 3, 2), PL_OK);
	isolate(w, 3, true);
	trestart(w, 3, 7);
	raft_status s = st(w, 3);
	CHECK(s.repairing); /* from raft_config.repair */
	CHECK_EQ(s.repair.to, 4);
	CHECK(tvote(w, 2, 3, false).reject);
	ttick(w, 3, 100);
	CHECK_NE(st(w, 3).role, RAFT_LEADER);
	/* (A restart without the stored record would forget the repair:
	 * that is why the driver stores it with the truncation.) Back in
	 * touch, its higher term unseats the leader; a new one repairs it. */
	isolate(w, 3, false);
	for (int i = 0; i < 20 && (leaders(w) == 0 || st(w, 3).repairing); i++)
		ttick_all(w, 5);
	CHECK_EQ(leaders(w), 1);
	CHECK(!st(w, 3).repairing);
	CHECK_EQ(st(w, 3).last_index, st(w, 1).last_index);
	tnet_free(w);
}

/* The case the rule exists for: entry 2 is committed by nodes 1 and 3
 * only; node 3 loses it to damage. Node 2, which never had it, must not
 * be elected with node 3's vote while node 1 is away; nor node 3 with
 * node 2's and its own (it campaigns without its own vote). */
TEST(test_raft_damage_stale_candidate_cannot_win)
{
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	elect(w, 1);
	ttick_all(w, 2);
	isolate(w, 2, true);
	CHECK_EQ(propose_str(w, 1, "committed"), PL_OK);
	ttick(w, 1, 2);
	CHECK_EQ(st(w, 1).commit, 2);
	CHECK_EQ(st(w, 3).last_index, 2);
	isolate(w, 1, true);
	CHECK_EQ(tdamage(w, 3, 2), PL_OK);
	isolate(w, 2, false);
	w->cut[2][1] = w->cut[1][2] = true;
	w->cut[3][1] = w->cut[1][3] = true;
	for (int i = 0; i < 20; i++)
		ttick_all(w, 10);
	CHECK_NE(st(w, 2).role, RAFT_LEADER);
	CHECK_NE(st(w, 3).role, RAFT_LEADER);
	/* Node 1 returns: a leader with entry 2 is elected, node 3 is
	 * repaired, and entry 2 is everywhere. */
	isolate(w, 1, false);
	for (int i = 0; i < 10 && leaders(w) == 0; i++)
		ttick_all(w, 10);
	ttick_all(w, 4);
	CHECK_EQ(leaders(w), 1);
	for (uint64_t id = 1; id <= 3; id++) {
		CHECK_GE(st(w, id).commit, 2);
		CHECK_EQ(N(w, id)->log[1].len, strlen("committed"));
	}
	CHECK(!st(w, 3).repairing);
	tnet_free(w);
}

TEST(test_raft_damage_leader_steps_down_and_repairs_in_new_term)
{
	tnet *w = tnet_with_log(2);
	uint64_t term = st(w, 1).term;
	/* Its last entry reaches no peer: no peer can give it back. */
	isolate(w, 1, true);
	CHECK_EQ(propose_str(w, 1, "lost"), PL_OK);
	isolate(w, 1, false);
	CHECK_EQ(tdamage(w, 1, 2), PL_OK);
	CHECK_EQ(st(w, 1).repair.to, 4);
	CHECK_EQ(st(w, 1).role, RAFT_FOLLOWER);
	CHECK(st(w, 1).repairing);
	CHECK_EQ(propose_str(w, 1, "x"), PL_E_NOT_LEADER);
	for (int i = 0; i < 20 && leaders(w) == 0; i++)
		ttick_all(w, 5);
	CHECK_EQ(leaders(w), 1);
	CHECK_NE(st(w, 1).role, RAFT_LEADER);
	uint64_t l = st(w, 2).role == RAFT_LEADER ? 2 : 3;
	CHECK_GT(st(w, l).term, term);
	ttick_all(w, 4);
	/* A later term: holding the new leader's no-op is enough. */
	CHECK(!st(w, 1).repairing);
	CHECK_EQ(st(w, 1).last_index, st(w, l).last_index);
	tnet_free(w);
}

TEST(test_raft_damage_bad_index_rejected)
{
	tnet *w = tnet_with_log(2);
	raft_repair rep = {0};
	CHECK_EQ(raft_log_damaged(N(w, 3)->r, 0, &rep), PL_E_BAD_REQUEST);
	CHECK_EQ(raft_log_damaged(N(w, 3)->r, 4, &rep), PL_E_BAD_REQUEST);
	CHECK(!st(w, 3).repairing);
	tnet_free(w);
}

/* Nothing durable, nothing acknowledged: no repair needed. */
TEST(test_raft_damage_of_unacknowledged_log_needs_no_repair)
{
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	N(w, 3)->sync_off = true;
	raft_entry e = {.term = 1, .index = 1};
	raft_msg m = {.type = RAFT_MSG_APP,
	    .from = 1,
	    .to = 3,
	    .term = 1,
	    .ents = &e,
	    .n_ents = 1};
	CHECK_EQ(raft_step(N(w, 3)->r, &m), PL_OK);
	tdrain(w, N(w, 3));
	CHECK_EQ(tdamage(w, 3, 1), PL_OK);
	CHECK(!st(w, 3).repairing);
	tnet_free(w);
}

TEST(test_raft_damage_restart_allows_applied_past_commit)
{
	tnet *w = tnet_with_log(3);
	CHECK_EQ(tdamage(w, 3, 2), PL_OK);
	tnode *t = N(w, 3);
	raft_free(t->r);
	t->r = NULL;
	t->applied = 0;
	raft_config c = {.id = 3,
	    .election_ticks = 10,
	    .heartbeat_ticks = 2,
	    .msg_bytes_max = 1024,
	    .applied = 4, /* the state machine applied entries now lost */
	    .storage = &tstorage,
	    .storage_ctx = t};
	CHECK_EQ(raft_new(&c, &t->r), PL_E_CORRUPT); /* without a repair */
	c.repair = t->rep;
	CHECK_EQ(raft_new(&c, &t->r), PL_OK);
	CHECK_EQ(st(w, 3).applied, 4);
	CHECK(st(w, 3).repairing);
	ttick(w, 1, 4);
	CHECK(!st(w, 3).repairing);
	CHECK_EQ(t->applied, 0); /* 2..4 were not handed out again */
	tnet_free(w);
}

TEST(test_raft_repair_note_merges)
{
	static const struct {
		const char *name;
		raft_repair have;
		uint64_t index, term;
		raft_repair want;
	} cases[] = {
	    {"nothing durable", {0, 0}, 0, 0, {0, 0}},
	    {"first damage", {0, 0}, 9, 3, {9, 3}},
	    {"same term: the larger index", {9, 3}, 12, 3, {12, 3}},
	    {"same term: keeps the larger", {9, 3}, 5, 3, {9, 3}},
	    {"later term replaces", {9, 3}, 4, 5, {4, 5}},
	    {"older term is implied", {9, 5}, 20, 3, {9, 5}},
	    {"index 0 changes nothing", {9, 5}, 0, 7, {9, 5}},
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
		raft_repair r = cases[i].have;
		raft_repair_note(&r, cases[i].index, cases[i].term);
		if (r.to != cases[i].want.to || r.term != cases[i].want.term)
			CHECK_FAIL_("case \"%s\": got (%" PRIu64 ", %" PRIu64
			            ")",
			    cases[i].name, r.to, r.term);
	}
}

/* No leader: the repairing replica asks its peers; one that holds its
 * last durable entry sends what it lost, and it is repaired. */
TEST(test_raft_damage_repaired_from_peer_without_leader)
{
	tnet *w = tnet_with_log(3);
	CHECK_EQ(tdamage(w, 3, 2), PL_OK);
	isolate(w, 1, true); /* the leader is gone */
	ttick(w, 3, 25);
	raft_status s = st(w, 3);
	CHECK(!s.repairing);
	CHECK_EQ(s.last_index, 4);
	CHECK_EQ(N(w, 3)->log[3].len, strlen("entry"));
	/* Now it may vote: node 2 can be elected with it. */
	for (int i = 0; i < 20 && leaders(w) < 2; i++)
		ttick_all(w, 5);
	CHECK(st(w, 2).role == RAFT_LEADER || st(w, 3).role == RAFT_LEADER);
	tnet_free(w);
}

/* A peer whose log lacks the entry serves only what it holds of the
 * record's term (the leader of that term made it: it is the repairing
 * replica's own old log), and the repair does not end on it: the peer's
 * log might not hold what the repairing replica acknowledged. */
TEST(test_raft_damage_peer_without_entry_serves_only_its_part)
{
	tnet *w = tnet_with_log(1);
	isolate(w, 2, true);
	CHECK_EQ(propose_str(w, 1, "only on 1 and 3"), PL_OK);
	ttick(w, 1, 2);
	CHECK_EQ(st(w, 3).last_index, 3);
	CHECK_EQ(tdamage(w, 3, 2), PL_OK);
	isolate(w, 2, false);
	isolate(w, 1, true);
	ttick(w, 3, 40);
	CHECK(st(w, 3).repairing); /* node 2 lacks entry 3 */
	CHECK_EQ(st(w, 3).last_index, 2);
	CHECK_EQ(N(w, 3)->log[1].len, strlen("entry"));
	tnet_free(w);
}

/* A peer with no entry of the record's term past the repairing
 * replica's last serves nothing: its entries there come from another
 * leader, another log. */
TEST(test_raft_damage_peer_of_another_term_does_not_serve)
{
	tnet *w = tnet_new(3, 0);
	static const uint64_t other[] = {1, 2, 2}, mine[] = {1, 1, 1, 1};
	tlog_seed(N(w, 1), other, 3);
	tlog_seed(N(w, 2), other, 3);
	tlog_seed(N(w, 3), mine, 4);
	for (uint64_t id = 1; id <= 3; id++)
		N(w, id)->hs.term = 2;
	tnet_start(w);
	CHECK_EQ(tdamage(w, 3, 2), PL_OK);
	CHECK_EQ(st(w, 3).repair.to, 4);
	ttick(w, 3, 40);
	CHECK(st(w, 3).repairing);
	CHECK_EQ(st(w, 3).last_index, 1);
	tnet_free(w);
}

/* Found by the simulation (guessed_term_record): damage reported at an
 * entry whose predecessor is unreadable too must not guess that entry's
 * term; a guess can name an entry no log holds, and the repair never
 * ends. The core refuses, changes nothing, and the driver reports the
 * lower index. */
TEST(test_raft_damage_below_unreadable_entry_is_refused)
{
	tnet *w = tnet_with_log(3);
	tnode *t = N(w, 3);
	t->bad = 3;
	raft_repair rep = {0};
	CHECK_EQ(raft_log_damaged(t->r, 4, &rep), PL_E_CORRUPT);
	CHECK(!st(w, 3).repairing);
	CHECK_EQ(st(w, 3).last_index, 4);
	CHECK_EQ(tdamage(w, 3, 3), PL_OK); /* the lowest bad index */
	CHECK_EQ(st(w, 3).repair.to, 4);
	CHECK_EQ(st(w, 3).repair.term, 1); /* exact, not a guess */
	tnet_free(w);
}

/* A replica restarted after damage may know only an older configuration;
 * the driver's list of replicas lets it ask the one that holds what it
 * lost. */
TEST(test_raft_damage_repair_asks_known_replicas_outside_conf)
{
	tnet *w = tnet_new(3, 1);
	tnet_start(w);
	elect(w, 1);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(propose_str(w, 1, "entry"), PL_OK);
	ttick_all(w, 2);
	CHECK_EQ(st(w, 4).last_index, 4);
	CHECK_EQ(tdamage(w, 3, 2), PL_OK);
	N(w, 3)->conf.n_learners = 0; /* its log names no learner */
	trestart(w, 3, 9);
	w->cut[1][3] = w->cut[3][1] = w->cut[2][3] = w->cut[3][2] = true;
	ttick(w, 3, 25);
	CHECK(st(w, 3).repairing); /* it asked only 1 and 2 */
	uint64_t ids[] = {1, 2, 3, 4};
	CHECK_EQ(raft_repair_peers(N(w, 3)->r, ids, 4), PL_OK);
	ttick(w, 3, 25);
	CHECK(!st(w, 3).repairing);
	CHECK_EQ(st(w, 3).last_index, 4);
	uint64_t many[RAFT_REPAIR_PEERS_MAX + 2];
	for (size_t i = 0; i < PL_ARRAY_LEN(many); i++)
		many[i] = 10 + i;
	CHECK_EQ(raft_repair_peers(N(w, 3)->r, many, PL_ARRAY_LEN(many)),
	    PL_E_TOO_LARGE);
	tnet_free(w);
}

/* Repair (A) ends on the exact entry (to, term): an entry at `to` of
 * another term is another log, which may lack what was acknowledged. */
TEST(test_raft_damage_repair_needs_the_exact_entry)
{
	tnet *w = tnet_new(3, 0);
	uint64_t terms[] = {1, 1, 1, 1};
	tlog_seed(N(w, 3), terms, 4);
	N(w, 3)->hs.term = 1;
	tnet_start(w);
	CHECK_EQ(tdamage(w, 3, 2), PL_OK);
	CHECK_EQ(st(w, 3).repair.to, 4);
	CHECK_EQ(st(w, 3).repair.term, 1);
	/* A leader of term 3 sends older entries of term 2 up to index 4. */
	raft_entry e[] = {{.term = 2, .index = 2}, {.term = 2, .index = 3},
	    {.term = 2, .index = 4}, {.term = 3, .index = 5}};
	raft_msg m = {.type = RAFT_MSG_APP,
	    .from = 2,
	    .to = 3,
	    .term = 3,
	    .index = 1,
	    .log_term = 1,
	    .ents = e,
	    .n_ents = 3};
	CHECK_EQ(raft_step(N(w, 3)->r, &m), PL_OK);
	tdrain(w, N(w, 3));
	CHECK_EQ(st(w, 3).persisted, 4);
	CHECK(st(w, 3).repairing); /* (4, 2) is not (4, 1) */
	/* An entry of the leader's term ends it (rule B). */
	m.index = 4;
	m.log_term = 2;
	m.ents = &e[3];
	m.n_ents = 1;
	CHECK_EQ(raft_step(N(w, 3)->r, &m), PL_OK);
	tdrain(w, N(w, 3));
	CHECK(!st(w, 3).repairing);
	tnet_free(w);
}
