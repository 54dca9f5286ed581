/*
 * raft_harness.c - the Raft core's test harness (raft_harness.h): storage
 * callbacks over a node's in-memory log, and a network that queues
 * every message and delivers them in order.
 */
#include "tests/sim/raft_harness.h"

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

const raft_storage tstorage = {ts_load, ts_first, ts_last, ts_term, ts_entries};

void tlog_put(tnode *t, const raft_entry *e)
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
void tlog_seed(tnode *t, const uint64_t *terms, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		raft_entry e = {.term = terms[i], .index = t->first + i};
		tlog_put(t, &e);
	}
}

void tnode_start(tnode *t, uint64_t seed)
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
tnet *tnet_new(int voters, int learners)
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

void tnet_start(tnet *w)
{
	for (int i = 0; i < w->count; i++)
		tnode_start(&w->n[i], 42);
}

void tnet_free(tnet *w)
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
void tdrain(tnet *w, tnode *t)
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

tnode *N(tnet *w, uint64_t id)
{
	return &w->n[id - 1];
}

/* Delivers queued messages until none are left (bounded). */
void tdeliver(tnet *w)
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

void ttick(tnet *w, uint64_t id, int ticks)
{
	for (int i = 0; i < ticks; i++) {
		raft_tick(N(w, id)->r);
		tdrain(w, N(w, id));
		tdeliver(w);
	}
}

void ttick_all(tnet *w, int ticks)
{
	for (int k = 0; k < ticks; k++)
		for (int i = 0; i < w->count; i++)
			ttick(w, (uint64_t)i + 1, 1);
}

raft_status st(tnet *w, uint64_t id)
{
	raft_status s;
	raft_status_get(N(w, id)->r, &s);
	return s;
}

/* Makes `id` campaign now (a timeout elapses on it alone). */
void elect(tnet *w, uint64_t id)
{
	for (int i = 0; i < 40 && st(w, id).role != RAFT_LEADER; i++)
		ttick(w, id, 1);
}

void isolate(tnet *w, uint64_t id, bool cut)
{
	for (int i = 1; i <= w->count; i++) {
		w->cut[id][i] = cut;
		w->cut[i][id] = cut;
	}
}

pl_status propose_str(tnet *w, uint64_t id, const char *s)
{
	uint64_t index, term;
	pl_status r = raft_propose(N(w, id)->r, s, strlen(s), &index, &term);
	tdrain(w, N(w, id));
	tdeliver(w);
	return r;
}

int leaders(tnet *w)
{
	int n = 0;
	for (int i = 1; i <= w->count; i++)
		n += st(w, (uint64_t)i).role == RAFT_LEADER;
	return n;
}
