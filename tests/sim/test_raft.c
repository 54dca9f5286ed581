/*
 * test_raft.c - focused tests of the Raft core (broker/raft.c): election,
 * pre-vote, check-quorum, conflict truncation, the commit rule for older
 * terms (Raft paper, Figure 8), leadership transfer, learners, membership
 * changes, snapshot requests, damaged logs and their repair, and the
 * rejection of malformed messages. A
 * small harness runs cores over a lossless, ordered network with
 * storage that persists at once, unless a test says otherwise.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "raft/raft.h"

#define TN_MAX 5
#define TLOG_MAX 256
#define TQUEUE_MAX 4096

typedef struct tnode {
	uint64_t id;
	raft *r;
	raft_entry log[TLOG_MAX]; /* log[i] = entry first + i */
	uint8_t data[TLOG_MAX][64];
	uint64_t first; /* first index (snapshot index + 1) */
	uint64_t last;
	uint64_t snap_term;
	raft_hard_state hs;
	raft_conf conf;
	bool sync_off; /* do not report persistence */
	uint64_t bad;  /* reads of this entry fail their CRC (0: none) */
	uint64_t applied;
	raft_repair rep; /* stored repair record (raft_log_damaged) */
} tnode;

typedef struct tnet {
	tnode n[TN_MAX];
	int count;
	bool cut[TN_MAX + 1][TN_MAX + 1]; /* cut[a][b]: a -> b lost */
	raft_msg q[TQUEUE_MAX];
	raft_entry qe[TQUEUE_MAX][RAFT_MSG_ENTRIES_MAX];
	uint8_t qd[TQUEUE_MAX][RAFT_MSG_ENTRIES_MAX][64];
	size_t head, tail;
	int snap_msgs;
	bool drop_apps;
} tnet;

static pl_status ts_load(
    void *ctx, raft_hard_state *hs, uint64_t *si, uint64_t *st, raft_conf *conf)
{
	tnode *t = ctx;
	*hs = t->hs;
	*si = t->first - 1;
	*st = t->snap_term;
	*conf = t->conf;
	return PL_OK;
}

static uint64_t ts_first(void *ctx)
{
	return ((tnode *)ctx)->first;
}

static uint64_t ts_last(void *ctx)
{
	return ((tnode *)ctx)->last;
}

static pl_status ts_term(void *ctx, uint64_t i, uint64_t *term)
{
	tnode *t = ctx;
	if (i + 1 == t->first) {
		*term = t->snap_term;
		return PL_OK;
	}
	if (i < t->first || i > t->last)
		return PL_E_NOT_FOUND;
	if (i == t->bad)
		return PL_E_CORRUPT;
	*term = t->log[i - t->first].term;
	return PL_OK;
}

static pl_status ts_entries(void *ctx, uint64_t lo, uint64_t hi,
    size_t max_bytes, raft_entry *out, size_t cap, size_t *n)
{
	tnode *t = ctx;
	if (lo < t->first || hi > t->last + 1)
		return PL_E_NOT_FOUND;
	if (t->bad >= lo && t->bad < hi)
		return PL_E_CORRUPT;
	size_t k = 0, bytes = 0;
	for (uint64_t i = lo; i < hi && k < cap; i++) {
		const raft_entry *e = &t->log[i - t->first];
		if (k > 0 && bytes + e->len > max_bytes)
			break;
		bytes += e->len;
		out[k++] = *e;
	}
	*n = k;
	return PL_OK;
}

static const raft_storage tstorage = {
    ts_load, ts_first, ts_last, ts_term, ts_entries};

static void tlog_put(tnode *t, const raft_entry *e)
{
	uint64_t slot = e->index - t->first;
	t->log[slot] = *e;
	if (e->len > 0) {
		memcpy(t->data[slot], e->data, e->len);
		t->log[slot].data = t->data[slot];
	}
	t->last = e->index;
}

/* Seeds node t's log with entries of the given terms (1-based). */
static void tlog_seed(tnode *t, const uint64_t *terms, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		raft_entry e = {.term = terms[i], .index = t->first + i};
		tlog_put(t, &e);
	}
}

static void tnode_start(tnode *t, uint64_t seed)
{
	raft_config c = {.id = t->id,
	    .repair = t->rep,
	    .election_ticks = 10,
	    .heartbeat_ticks = 2,
	    .seed = seed,
	    .pre_vote = true,
	    .check_quorum = true,
	    .msg_bytes_max = 1024,
	    .storage = &tstorage,
	    .storage_ctx = t};
	PL_ASSERT(raft_new(&c, &t->r) == PL_OK);
}

/* A group of `voters` voters and `learners` learners, ids 1.. */
static tnet *tnet_new(int voters, int learners)
{
	tnet *w = calloc(1, sizeof *w);
	w->count = voters + learners;
	raft_conf c = {
	    .n_voters = (uint8_t)voters, .n_learners = (uint8_t)learners};
	for (int i = 0; i < voters; i++)
		c.voters[i] = (uint64_t)i + 1;
	for (int i = 0; i < learners; i++)
		c.learners[i] = (uint64_t)(voters + i) + 1;
	for (int i = 0; i < w->count; i++) {
		w->n[i].id = (uint64_t)i + 1;
		w->n[i].first = 1;
		w->n[i].conf = c;
	}
	return w;
}

static void tnet_start(tnet *w)
{
	for (int i = 0; i < w->count; i++)
		tnode_start(&w->n[i], 42);
}

static void tnet_free(tnet *w)
{
	for (int i = 0; i < w->count; i++)
		raft_free(w->n[i].r);
	free(w);
}

static void enqueue(tnet *w, const raft_msg *m)
{
	if (m->type == RAFT_MSG_SNAP) {
		w->snap_msgs++;
		return;
	}
	PL_ASSERT(w->tail - w->head < TQUEUE_MAX);
	size_t s = w->tail++ % TQUEUE_MAX;
	w->q[s] = *m;
	for (size_t i = 0; i < m->n_ents; i++) {
		w->qe[s][i] = m->ents[i];
		if (m->ents[i].len > 0)
			memcpy(w->qd[s][i], m->ents[i].data, m->ents[i].len);
		w->qe[s][i].data = w->qd[s][i];
	}
	w->q[s].ents = m->n_ents ? w->qe[s] : NULL;
}

/* Handles node t's readies: persist (at once unless sync_off), send. */
static void tdrain(tnet *w, tnode *t)
{
	while (raft_has_ready(t->r)) {
		raft_ready rd;
		raft_ready_get(t->r, &rd);
		t->hs = rd.hs;
		for (size_t i = 0; i < rd.n_ents; i++)
			tlog_put(t, &rd.entries[i]);
		for (size_t i = 0; i < rd.n_msgs; i++)
			enqueue(w, &rd.msgs[i]);
		if (rd.n_committed > 0)
			t->applied = rd.committed[rd.n_committed - 1].index;
		raft_advance(t->r);
		if (!t->sync_off && t->last > 0 && rd.n_ents > 0)
			raft_persisted(
			    t->r, t->last, t->log[t->last - t->first].term);
	}
}

static tnode *N(tnet *w, uint64_t id)
{
	return &w->n[id - 1];
}

/* Delivers queued messages until none are left (bounded). */
static void tdeliver(tnet *w)
{
	for (int rounds = 0; rounds < 100000 && w->head != w->tail; rounds++) {
		raft_msg m = w->q[w->head++ % TQUEUE_MAX];
		if (m.to < 1 || m.to > (uint64_t)w->count ||
		    w->cut[m.from][m.to] ||
		    (w->drop_apps && m.type == RAFT_MSG_APP))
			continue;
		tnode *t = N(w, m.to);
		raft_step(t->r, &m);
		tdrain(w, t);
	}
}

static void ttick(tnet *w, uint64_t id, int ticks)
{
	for (int i = 0; i < ticks; i++) {
		raft_tick(N(w, id)->r);
		tdrain(w, N(w, id));
		tdeliver(w);
	}
}

static void ttick_all(tnet *w, int ticks)
{
	for (int k = 0; k < ticks; k++)
		for (int i = 0; i < w->count; i++)
			ttick(w, (uint64_t)i + 1, 1);
}

static raft_status st(tnet *w, uint64_t id)
{
	raft_status s;
	raft_status_get(N(w, id)->r, &s);
	return s;
}

/* Makes `id` campaign now (a timeout elapses on it alone). */
static void elect(tnet *w, uint64_t id)
{
	for (int i = 0; i < 40 && st(w, id).role != RAFT_LEADER; i++)
		ttick(w, id, 1);
}

static void isolate(tnet *w, uint64_t id, bool cut)
{
	for (int i = 1; i <= w->count; i++) {
		w->cut[id][i] = cut;
		w->cut[i][id] = cut;
	}
}

static pl_status propose_str(tnet *w, uint64_t id, const char *s)
{
	uint64_t index, term;
	pl_status r = raft_propose(N(w, id)->r, s, strlen(s), &index, &term);
	tdrain(w, N(w, id));
	tdeliver(w);
	return r;
}

static int leaders(tnet *w)
{
	int n = 0;
	for (int i = 1; i <= w->count; i++)
		n += st(w, (uint64_t)i).role == RAFT_LEADER;
	return n;
}

/* ------------------------------------------------------------------ */

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

TEST(test_raft_bad_messages_are_dropped)
{
	raft_entry ok = {.term = 1, .index = 1};
	raft_entry gap = {.term = 1, .index = 5};
	raft_entry future = {.term = 9, .index = 1};
	uint8_t junk[3] = {7, 7, 7};
	raft_entry badconf = {.term = 1,
	    .index = 1,
	    .type = RAFT_ENTRY_CONF,
	    .data = junk,
	    .len = 3};
	raft_entry badtype = {.term = 1, .index = 1, .type = 5};
	static const struct {
		const char *name;
		raft_msg m;
	} cases[] = {
	    {"type 0", {.type = 0, .from = 1, .to = 2, .term = 1}},
	    {"type snap",
	        {.type = RAFT_MSG_SNAP, .from = 1, .to = 2, .term = 1}},
	    {"type huge", {.type = 200, .from = 1, .to = 2, .term = 1}},
	    {"from 0", {.type = RAFT_MSG_HEARTBEAT, .to = 2, .term = 1}},
	    {"from self",
	        {.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 2, .term = 1}},
	    {"to other",
	        {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 3, .term = 1}},
	    {"term 0", {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2}},
	};
	const struct {
		const char *name;
		const raft_entry *e;
		size_t n;
	} ents[] = {
	    {"entries not after prev", &gap, 1},
	    {"entry term above message term", &future, 1},
	    {"undecodable conf", &badconf, 1},
	    {"unknown entry type", &badtype, 1},
	    {"entries without pointer", NULL, 1},
	    {"too many entries", &ok, RAFT_MSG_ENTRIES_MAX + 1},
	};
	tnet *w = tnet_new(3, 0);
	tnet_start(w);
	raft *r = N(w, 2)->r;
	for (size_t c = 0; c < PL_ARRAY_LEN(cases); c++)
		if (raft_step(r, &cases[c].m) != PL_E_PROTO)
			CHECK_FAIL_("case \"%s\" accepted", cases[c].name);
	for (size_t c = 0; c < PL_ARRAY_LEN(ents); c++) {
		raft_msg m = {.type = RAFT_MSG_APP,
		    .from = 1,
		    .to = 2,
		    .term = 1,
		    .ents = ents[c].e,
		    .n_ents = ents[c].n};
		if (raft_step(r, &m) != PL_E_PROTO)
			CHECK_FAIL_("case \"%s\" accepted", ents[c].name);
	}
	raft_msg hb = {.type = RAFT_MSG_HEARTBEAT,
	    .from = 1,
	    .to = 2,
	    .term = 1,
	    .commit = 50}; /* commit beyond our log */
	CHECK_EQ(raft_step(r, &hb), PL_OK);
	CHECK_EQ(st(w, 2).commit, 0);
	CHECK_EQ(st(w, 2).last_index, 0);
	CHECK_EQ(raft_step(r, NULL), PL_E_PROTO);
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

TEST(test_raft_new_rejects_bad_config_and_storage)
{
	tnode *t = calloc(1, sizeof *t);
	t->id = 1;
	t->first = 1;
	t->conf.voters[0] = 1;
	t->conf.n_voters = 1;
	raft *r = NULL;
	raft_config c = {.id = 1,
	    .election_ticks = 10,
	    .heartbeat_ticks = 2,
	    .msg_bytes_max = 1024,
	    .storage = &tstorage,
	    .storage_ctx = t};
	raft_config bad = c;
	bad.heartbeat_ticks = 10;
	CHECK_EQ(raft_new(&bad, &r), PL_E_CONFIG);
	bad = c;
	bad.id = 0;
	CHECK_EQ(raft_new(&bad, &r), PL_E_CONFIG);
	t->hs.commit = 3; /* beyond the (empty) log */
	CHECK_EQ(raft_new(&c, &r), PL_E_CORRUPT);
	CHECK(r == NULL);
	t->hs.commit = 0;
	CHECK_EQ(raft_new(&c, &r), PL_OK);
	raft_free(r);
	raft_free(NULL);
	free(t);
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

/* ------------------------------------------------------------------ */
/* Damaged logs: a replica that lost entries to a bad CRC. */

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

TEST(test_raft_damage_never_campaigns)
{
	tnet *w = tnet_with_log(2);
	CHECK_EQ(tdamage(w, 3, 3), PL_OK);
	isolate(w, 3, true);
	uint64_t term = st(w, 3).term;
	size_t before = w->tail;
	ttick(w, 3, 200); /* many election timeouts, alone */
	CHECK_EQ(st(w, 3).term, term);
	CHECK_EQ(st(w, 3).role, RAFT_FOLLOWER);
	for (size_t i = before; i < w->tail; i++) {
		uint8_t t = w->q[i % TQUEUE_MAX].type;
		CHECK(t != RAFT_MSG_VOTE && t != RAFT_MSG_PREVOTE);
	}
	CHECK_GT(w->tail, before); /* it asked its peers for a repair */
	/* A transfer cannot make it campaign either. */
	raft_msg m = {
	    .type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .to = 3, .term = term};
	CHECK_EQ(raft_step(N(w, 3)->r, &m), PL_OK);
	CHECK_EQ(st(w, 3).role, RAFT_FOLLOWER);
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
	CHECK_EQ(st(w, 3).role, RAFT_FOLLOWER);
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
 * be elected with node 3's vote while node 1 is away. */
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

/* A peer whose log lacks the entry does not serve: its log might not
 * hold what the repairing replica acknowledged. */
TEST(test_raft_damage_peer_without_entry_does_not_serve)
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
