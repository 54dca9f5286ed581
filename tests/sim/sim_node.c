/*
 * sim_node.c - driving one replica of the simulation as the broker drives
 * its core: readies handled as raft.h prescribes (entries written to the
 * log model, commits checked, messages sent, entries applied), damage
 * reported, syncs, crashes with torn tails, restarts after a scan of the
 * log; and the replica's proposal arena.
 */
#include "tests/sim/sim_internal.h"

void *sim_prop_alloc(prop_arena *a, size_t n)
{
	n = (n + 7) & ~(size_t)7;
	if (a->used == NULL || a->used->used + n > sizeof a->used->buf) {
		arena_chunk *c = a->spare;
		if (c != NULL)
			a->spare = c->next;
		else
			c = xrealloc(NULL, sizeof *c);
		c->used = 0;
		c->next = a->used;
		a->used = c;
	}
	void *p = a->used->buf + a->used->used;
	a->used->used += n;
	return p;
}

static void prop_reset(prop_arena *a)
{
	while (a->used != NULL) {
		arena_chunk *c = a->used;
		a->used = c->next;
		memset(c->buf, POISON_BYTE, c->used);
		c->used = 0;
		c->next = a->spare;
		a->spare = c;
	}
}

void sim_prop_fini(prop_arena *a)
{
	prop_reset(a);
	while (a->spare != NULL) {
		arena_chunk *c = a->spare;
		a->spare = c->next;
		free(c);
	}
}

static void write_entries(sim *w, snode *s, const raft_entry *e, size_t n)
{
	uint64_t from = e[0].index;
	if (from > s->st.cur.n + 1 || from <= s->commit_seen) {
		fail(w,
		    "node %" PRIu64 " writes at %" PRIu64
		    " (last %zu, commit %" PRIu64 ")",
		    s->id, from, s->st.cur.n, s->commit_seen);
		return;
	}
	/* Like a real store, the model keeps a copy: the core lends
	 * payloads only until raft_advance. */
	uint64_t pt = from > 1 ? s->st.cur.r[from - 2].term0 : 0;
	srec *r = sstore_write(&s->st, e, n);
	for (size_t i = 0; i < n && !w->failed; i++) {
		sim_check_log_matching(w, s, &r[i].e, pt);
		pt = r[i].e.term;
	}
}

static void apply_entries(sim *w, snode *s, const raft_entry *e, size_t n)
{
	for (size_t i = 0; i < n && !w->failed; i++) {
		uint64_t idx = e[i].index;
		if (idx != s->applied + 1 || idx > w->n_gc ||
		    !ent_equal(&w->gc[idx - 1], &e[i])) {
			fail(w,
			    "node %" PRIu64 " applies %" PRIu64
			    " out of order or not as committed",
			    s->id, idx);
			return;
		}
		s->applied = idx;
		uint64_t v = payload_value(&e[i]);
		if (v != 0 && w->val_state[v] == 1 && w->val_node[v] == s->id &&
		    w->val_index[v] == idx && w->val_term[v] == e[i].term) {
			w->val_state[v] = 2; /* acknowledged to the client */
			w->res->acked++;
			/* Publishes keep their real-time order: one proposed
			 * after another was acknowledged comes after it. */
			if (idx <= w->val_floor[v])
				fail(w,
				    "acked value %" PRIu64 " at %" PRIu64
				    " precedes one acked before it was "
				    "proposed (at %" PRIu64 ")",
				    v, idx, w->val_floor[v]);
			if (idx > w->acked_max)
				w->acked_max = idx;
			if (w->healed && v >= w->first_value_after_heal &&
			    w->live_at == 0)
				w->live_at = w->now;
		}
	}
}

/* A read found a bad CRC: the driver's part of raft_log_damaged. The
 * core is told first (it reads below the damage), then the log is
 * truncated and the repair record stored, in one durable write. */
static void handle_damage(sim *w, snode *s)
{
	while (!w->failed && s->up && s->st.bad_at != 0) {
		uint64_t bad = s->st.bad_at;
		s->st.bad_at = 0;
		raft_repair rep;
		pl_status st = raft_log_damaged(s->r, bad, &rep);
		if (st != PL_OK && s->st.bad_at != 0 && s->st.bad_at < bad)
			continue; /* an earlier entry is bad too */
		if (st != PL_OK) {
			fail(w,
			    "node %" PRIu64 " cannot report damage at %" PRIu64
			    ": %s",
			    s->id, bad, pl_strerror(st));
			return;
		}
		sstore_truncate(&s->st, bad - 1);
		s->st.rep = rep;
		if (s->commit_seen > bad - 1)
			s->commit_seen = bad - 1;
		w->res->repairs++;
		trace(w,
		    "node %" PRIu64 " finds entry %" PRIu64
		    " damaged: repair to %" PRIu64 "/%" PRIu64,
		    s->id, bad, rep.to, rep.term);
	}
}

/* Handles every ready of replica s, as raft.h prescribes. */
void sim_drain(sim *w, snode *s)
{
	handle_damage(w, s);
	while (!w->failed && s->up && raft_has_ready(s->r)) {
		raft_ready rd;
		raft_ready_get(s->r, &rd);
		if (rd.hs_sync) {
			s->st.hsd.term = rd.hs.term;
			s->st.hsd.vote = rd.hs.vote;
		}
		s->st.hs = rd.hs;
		if (rd.n_ents > 0)
			write_entries(w, s, rd.entries, rd.n_ents);
		sim_check_commit(w, s, rd.hs.commit, rd.hs.term);
		for (size_t i = 0; i < rd.n_msgs; i++)
			sim_net_send(w, &rd.msgs[i]);
		apply_entries(w, s, rd.committed, rd.n_committed);
		raft_advance(s->r);
		if (sstore_storage.last_index(&s->st) != s->st.cur.n)
			fail(w, "storage model out of step");
		handle_damage(w, s);
	}
	if (!s->up || w->failed)
		return;
	/* Every ready was advanced: the core borrows no payload. */
	if (raft_unstable_count(s->r) != 0) {
		fail(w, "node %" PRIu64 " holds unstable entries after a drain",
		    s->id);
		return;
	}
	prop_reset(&s->prop);
	raft_status st;
	raft_status_get(s->r, &st);
	sim_check_leader(w, s, &st);
	sim_check_removed_leader(w, s, &st);
	if (st.role == RAFT_LEADER) /* it counts its own copy */
		sim_note_ack(s, st.term, st.persisted);
	if (s->st.rep.to != 0 && !st.repairing) {
		/* Repaired: the driver forgets the record. */
		memset(&s->st.rep, 0, sizeof s->st.rep);
		trace(w, "node %" PRIu64 " repaired", s->id);
	}
}

/* At restart the driver checks its whole log before starting the core:
 * a bad entry above the sync mark is a torn tail (dropped), at or below
 * it damage (dropped, and a repair noted). */
static void store_recover(sim *w, snode *s)
{
	uint64_t bad = 0;
	sstore_found f = sstore_recover(&s->st, &bad);
	if (f == SSTORE_DAMAGED) {
		w->res->repairs++;
		trace(w,
		    "node %" PRIu64 " finds entry %" PRIu64
		    " damaged at restart: repair to %" PRIu64 "/%" PRIu64,
		    s->id, bad, s->st.rep.to, s->st.rep.term);
	} else if (f == SSTORE_TORN) {
		trace(w, "node %" PRIu64 " drops a torn tail from %" PRIu64,
		    s->id, bad);
	}
}

void sim_node_start(sim *w, snode *s)
{
	store_recover(w, s);
	raft_config c = {
	    .id = s->id,
	    .election_ticks = ELECTION_TICKS,
	    .heartbeat_ticks = HEARTBEAT_TICKS,
	    .seed = w->o.seed * 31 + w->now,
	    .pre_vote = true,
	    .check_quorum = true,
	    .msg_bytes_max = w->msg_bytes,
	    .storage = &sstore_storage,
	    .storage_ctx = &s->st,
	    .repair = s->st.rep,
	};
	pl_status st = raft_new(&c, &s->r);
	if (st != PL_OK) {
		fail(w, "node %" PRIu64 " cannot restart: %s", s->id,
		    pl_strerror(st));
		return;
	}
	/* The driver knows its group's replicas (the broker's static
	 * list): a repairing replica asks them all. */
	uint64_t ids[NODES_MAX];
	for (int i = 0; i < w->n_all; i++)
		ids[i] = (uint64_t)i + 1;
	if (raft_repair_peers(s->r, ids, (size_t)w->n_all) != PL_OK)
		fail(w, "node %" PRIu64 " refuses its peer list", s->id);
	s->up = true;
	s->applied = 0;
	s->commit_seen = 0;
	sim_check_commit(w, s, s->st.hsd.commit, s->st.hsd.term);
	trace(w,
	    "node %" PRIu64 " starts: term %" PRIu64 " last %zu commit %" PRIu64
	    "%s",
	    s->id, s->st.hsd.term, s->st.cur.n, s->st.hsd.commit,
	    s->st.rep.to ? " (repairing)" : "");
}

void sim_node_crash(sim *w, snode *s)
{
	raft_free(s->r);
	s->r = NULL;
	s->up = false;
	prop_reset(&s->prop);
	/* Unsynced writes are lost; or a prefix of them reached the disk,
	 * the last one perhaps half written. */
	size_t tear_n = 0;
	uint32_t tear_bit = UINT32_MAX;
	bool cut = false;
	if (rnd2_below(w, 1000) < w->torn_pm) {
		tear_n = 1 + (size_t)rnd2_below(w, 2 * RAFT_MSG_ENTRIES_MAX);
		if (rnd2_below(w, 2) == 0)
			tear_bit = (uint32_t)rnd2(w);
		cut = rnd2_below(w, 2) == 0;
	}
	size_t torn = sstore_crash(&s->st, tear_n, tear_bit, cut);
	w->res->crashes++;
	w->res->torn += torn > 0;
	trace(w, "node %" PRIu64 " crashes (durable last %zu, torn %zu%s)",
	    s->id, s->st.dur.n, torn,
	    torn > 0 && tear_bit != UINT32_MAX ? " damaged" : "");
}

void sim_sync_start(sim *w, snode *s)
{
	sstore_sync_start(&s->st);
	s->sync_at = w->now + 1 + rnd_below(w, w->sync_max);
}

void sim_sync_done(sim *w, snode *s)
{
	uint64_t index, term;
	sstore_sync_done(&s->st, &index, &term);
	raft_persisted(s->r, index, term);
	sim_drain(w, s);
}
