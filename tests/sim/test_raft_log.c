/*
 * test_raft_log.c - the Raft core's log replication: conflict
 * truncation, committed entries never rewritten, fast backtracking, the
 * commit rule for older terms (Raft paper, Figure 8), acks and commits
 * only of durable entries, snapshot requests, unreadable entries.
 */
#include "tests/check.h"

#include "tests/sim/raft_harness.h"

/* Follower appends: a table of (previous entry, entries, expectation). */
TEST(test_raft_append_conflicts_table)
{
	static const struct {
		const char *name;
		uint64_t prev_index, prev_term;
		uint64_t terms[3];
		int n;
		bool reject;
		uint64_t last;      /* follower's last index afterwards */
		uint64_t term_at_3; /* follower's term at index 3 */
	} cases[] = {
	    {"append after match", 4, 2, {3}, 1, false, 5, 2},
	    {"conflict truncates", 2, 1, {3, 3}, 2, false, 4, 3},
	    {"conflict at first new", 3, 2, {3}, 1, false, 4, 2},
	    {"duplicate keeps tail", 1, 1, {1}, 1, false, 4, 2},
	    {"gap rejected", 6, 3, {3}, 1, true, 4, 2},
	    {"prev term mismatch", 3, 3, {3}, 1, true, 4, 2},
	};
	for (size_t c = 0; c < PL_ARRAY_LEN(cases); c++) {
		tnet *w = tnet_new(3, 0);
		uint64_t seed[] = {1, 1, 2, 2};
		tlog_seed(N(w, 2), seed, 4);
		N(w, 2)->hs.term = 3;
		N(w, 2)->hs.commit = 1;
		tnet_start(w);
		raft_entry ents[3];
		for (int i = 0; i < cases[c].n; i++)
			ents[i] = (raft_entry){.term = cases[c].terms[i],
			    .index = cases[c].prev_index + 1 + (uint64_t)i};
		raft_msg m = {.type = RAFT_MSG_APP,
		    .from = 1,
		    .to = 2,
		    .term = 3,
		    .index = cases[c].prev_index,
		    .log_term = cases[c].prev_term,
		    .commit = 1,
		    .ents = ents,
		    .n_ents = (size_t)cases[c].n};
		CHECK_EQ(raft_step(N(w, 2)->r, &m), PL_OK);
		tdrain(w, N(w, 2));
		raft_msg resp = w->q[(w->tail - 1) % TQUEUE_MAX];
		if (resp.type != RAFT_MSG_APP_RESP ||
		    resp.reject != cases[c].reject ||
		    st(w, 2).last_index != cases[c].last ||
		    N(w, 2)->log[2].term != cases[c].term_at_3)
			CHECK_FAIL_("case \"%s\": reject %d last %" PRIu64
			            " term_at_3 %" PRIu64,
			    cases[c].name, resp.reject, st(w, 2).last_index,
			    N(w, 2)->log[2].term);
		tnet_free(w);
	}
}

TEST(test_raft_append_never_rewrites_committed)
{
	tnet *w = tnet_new(3, 0);
	uint64_t seed[] = {1, 1, 2};
	tlog_seed(N(w, 2), seed, 3);
	N(w, 2)->hs.term = 3;
	N(w, 2)->hs.commit = 3;
	tnet_start(w);
	raft_entry e = {.term = 3, .index = 3};
	raft_msg m = {.type = RAFT_MSG_APP,
	    .from = 1,
	    .to = 2,
	    .term = 3,
	    .index = 2,
	    .log_term = 1,
	    .commit = 3,
	    .ents = &e,
	    .n_ents = 1};
	CHECK_EQ(raft_step(N(w, 2)->r, &m), PL_OK);
	tdrain(w, N(w, 2));
	CHECK_EQ(N(w, 2)->log[2].term, 2);
	/* It answers with what it has committed instead. */
	raft_msg a = w->q[(w->tail - 1) % TQUEUE_MAX];
	CHECK_EQ(a.type, RAFT_MSG_APP_RESP);
	CHECK_EQ(a.index, 3);
	tnet_free(w);
}

TEST(test_raft_fast_backtracking_catches_up)
{
	tnet *w = tnet_new(3, 0);
	/* Node 3 holds a long tail of a deposed term-2 leader. */
	uint64_t good[] = {1, 1, 1};
	uint64_t stale[] = {1, 2, 2, 2, 2, 2, 2, 2, 2, 2};
	tlog_seed(N(w, 1), good, 3);
	tlog_seed(N(w, 2), good, 3);
	tlog_seed(N(w, 3), stale, 10);
	for (int i = 1; i <= 3; i++)
		N(w, (uint64_t)i)->hs.term = 3;
	N(w, 3)->hs.commit = 1;
	tnet_start(w);
	isolate(w, 3, true);
	elect(w, 1);
	isolate(w, 3, false);
	ttick(w, 1, 4);
	CHECK_EQ(st(w, 3).last_index, st(w, 1).last_index);
	CHECK_EQ(N(w, 3)->log[1].term, 1);
	CHECK_EQ(st(w, 3).commit, st(w, 1).commit);
	tnet_free(w);
}

/* Figure 8: a leader must not commit an entry of an older term by
 * counting replicas; it commits it only with an entry of its own term. */
TEST(test_raft_commit_rule_old_term_figure8)
{
	tnet *w = tnet_new(5, 0);
	uint64_t terms[] = {1, 2};
	tlog_seed(N(w, 1), terms, 2);
	tlog_seed(N(w, 2), terms, 1);
	tlog_seed(N(w, 3), terms, 1);
	for (int i = 1; i <= 5; i++)
		N(w, (uint64_t)i)->hs.term = 3;
	N(w, 1)->hs.commit = 1;
	tnet_start(w);
	w->drop_apps = true; /* the followers never see the no-op */
	elect(w, 1);         /* term 4, no-op at index 3 */
	CHECK_EQ(st(w, 1).role, RAFT_LEADER);
	raft *l = N(w, 1)->r;
	/* Followers 2 and 3 ack index 2 (term 2) but not the no-op: a
	 * quorum holds index 2, yet it must not commit. */
	w->head = w->tail;
	for (uint64_t f = 2; f <= 3; f++) {
		raft_msg m = {.type = RAFT_MSG_APP_RESP,
		    .from = f,
		    .to = 1,
		    .term = st(w, 1).term,
		    .index = 2};
		CHECK_EQ(raft_step(l, &m), PL_OK);
	}
	tdrain(w, N(w, 1));
	CHECK_EQ(st(w, 1).commit, 1);
	for (uint64_t f = 2; f <= 3; f++) {
		raft_msg m = {.type = RAFT_MSG_APP_RESP,
		    .from = f,
		    .to = 1,
		    .term = st(w, 1).term,
		    .index = 3};
		CHECK_EQ(raft_step(l, &m), PL_OK);
	}
	CHECK_EQ(st(w, 1).commit, 3);
	tnet_free(w);
}

TEST(test_raft_leader_commits_only_what_it_persisted)
{
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	elect(w, 1);
	ttick_all(w, 2);
	uint64_t c = st(w, 1).commit;
	N(w, 1)->sync_off = true;
	N(w, 2)->sync_off = true;
	N(w, 3)->sync_off = true;
	CHECK_EQ(propose_str(w, 1, "x"), PL_OK);
	ttick_all(w, 3);
	CHECK_EQ(st(w, 1).commit, c); /* nobody reported it durable */
	raft_persisted(N(w, 2)->r, N(w, 2)->last, st(w, 1).term);
	tdrain(w, N(w, 2));
	tdeliver(w);
	CHECK_EQ(st(w, 1).commit, c); /* one of three */
	raft_persisted(N(w, 1)->r, N(w, 1)->last, st(w, 1).term);
	tdrain(w, N(w, 1));
	CHECK_EQ(st(w, 1).commit, c + 1);
	tnet_free(w);
}

TEST(test_raft_follower_acks_only_durable_entries)
{
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	N(w, 2)->sync_off = true;
	raft_entry e = {.term = 1, .index = 1};
	raft_msg m = {.type = RAFT_MSG_APP,
	    .from = 1,
	    .to = 2,
	    .term = 1,
	    .ents = &e,
	    .n_ents = 1};
	CHECK_EQ(raft_step(N(w, 2)->r, &m), PL_OK);
	size_t before = w->tail;
	tdrain(w, N(w, 2));
	CHECK_EQ(w->tail, before); /* written, not durable: no ack */
	raft_persisted(N(w, 2)->r, 1, 1);
	tdrain(w, N(w, 2));
	CHECK_EQ(w->tail, before + 1);
	raft_msg a = w->q[before % TQUEUE_MAX];
	CHECK_EQ(a.type, RAFT_MSG_APP_RESP);
	CHECK_EQ(a.index, 1);
	/* A stale report (the entry was overwritten since) is ignored. */
	raft_persisted(N(w, 2)->r, 1, 7);
	CHECK_EQ(st(w, 2).persisted, 1);
	tnet_free(w);
}

TEST(test_raft_snapshot_needed_when_follower_behind_first_index)
{
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	isolate(w, 3, true);
	elect(w, 1);
	for (int i = 0; i < 5; i++)
		CHECK_EQ(propose_str(w, 1, "x"), PL_OK);
	ttick(w, 1, 2);
	CHECK_EQ(st(w, 1).commit, 6);
	/* Node 1 compacts its log past everything node 3 has. */
	tnode *l = N(w, 1);
	uint64_t cut = 4;
	size_t keep = (size_t)(l->last - cut),
	       from = (size_t)(cut + 1 - l->first);
	l->snap_term = l->log[cut - l->first].term;
	memmove(l->log, l->log + from, sizeof(raft_entry) * keep);
	memmove(l->data, l->data + from, sizeof(l->data[0]) * keep);
	for (size_t i = 0; i < keep; i++)
		l->log[i].data = l->data[i];
	l->first = cut + 1;
	isolate(w, 3, false);
	ttick(w, 1, 4);
	CHECK_GE(w->snap_msgs, 1);
	/* The transfer "happens": node 3 installs the snapshot. */
	tnode *f = N(w, 3);
	f->first = cut + 1;
	f->last = cut;
	f->snap_term = l->snap_term;
	CHECK_EQ(raft_snapshot_restore(
	             f->r, 1, st(w, 1).term, cut, l->snap_term, &l->conf),
	    PL_OK);
	tdrain(w, f);
	raft_snapshot_done(l->r, 3, true);
	tdeliver(w);
	ttick(w, 1, 4);
	CHECK_EQ(st(w, 3).last_index, st(w, 1).last_index);
	CHECK_EQ(st(w, 3).commit, st(w, 1).commit);
	tnet_free(w);
}

/* Found by the simulation (corrupt_read_taken_for_conflict): a follower
 * that cannot read an entry while checking an append must not take it
 * for a conflict and truncate (that would lower persisted before the
 * driver reports the damage, and understate what it acknowledged). */
TEST(test_raft_append_over_unreadable_entry_is_dropped)
{
	tnet *w = tnet_new(3, 0);
	uint64_t terms[] = {1, 1, 2, 2};
	tlog_seed(N(w, 2), terms, 4);
	N(w, 2)->hs.term = 3;
	tnet_start(w);
	N(w, 2)->bad = 3;
	raft_entry ents[] = {{.term = 2, .index = 3}, {.term = 2, .index = 4},
	    {.term = 3, .index = 5}};
	raft_msg m = {.type = RAFT_MSG_APP,
	    .from = 1,
	    .to = 2,
	    .term = 3,
	    .index = 2,
	    .log_term = 1,
	    .ents = ents,
	    .n_ents = 3};
	CHECK_EQ(raft_step(N(w, 2)->r, &m), PL_OK);
	raft_status s = st(w, 2);
	CHECK_EQ(s.last_index, 4);
	CHECK_EQ(s.persisted, 4);
	CHECK_EQ(s.storage_err, PL_E_CORRUPT);
	CHECK_EQ(s.dropped_msgs, 1);
	tnet_free(w);
}
