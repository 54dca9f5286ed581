/*
 * driver.c - the Raft driver of a group: it takes every ready the core
 * has and handles it as raft/raft.h prescribes, in one LMDB transaction
 * per ready (hard state, new entries and the entries it commits, applied
 * in index order), sends its messages (early when they do not depend on
 * this write), advances, reports what became durable, answers the writes
 * whose entries applied and fans their events out. A ready whose write
 * fails is held and tried again (see the invariants in group.c). Also:
 * the logical clock's ticks and the log's compaction behind applied
 * entries.
 */
#include "broker/group_internal.h"

/* The group's one voter is this replica (learners aside: they do not
 * count towards commit), so what is durable here is committed. */
bool brk_group_solo(const brk_group *g)
{
	raft_status rs;
	raft_status_get(g->raft, &rs);
	return rs.conf.n_voters == 1 && rs.conf.voters[0] == g->cfg.node;
}

static pl_status apply_one(
    brk_group *g, brk_wtxn *w, const raft_entry *e, size_t *n)
{
	brk_applied *res = &g->res[*n];
	pl_status st = brk_apply(w, e, g->leader ? &g->ev_arena : NULL, res);
	if (st != PL_OK) {
		PL_ERROR("group",
		    "event=apply_failed index=%llu applied=%llu err=\"%s\"",
		    (unsigned long long)e->index,
		    (unsigned long long)brk_wtxn_applied(w), pl_strerror(st));
		return st;
	}
	if (g->leader)
		brk_ev_applied(g, res);
	res->cmd = NULL; /* not valid past this entry */
	res->msg = NULL;
	g->res_term[(*n)++] = e->term;
	return PL_OK;
}

/* Writes a ready in one transaction: hard state, entries, and the
 * entries it commits applied in order. *nres results are kept for the
 * replies sent once it committed. */
static pl_status ready_write(brk_group *g, const raft_ready *rd, size_t *nres)
{
	brk_wtxn *w;
	pl_status st = brk_wtxn_begin(g->store, true, &w);
	if (st != PL_OK)
		return st;
	brk_hs_put(w, &rd->hs);
	raft_repair stored;
	brk_store_repair(g->store, &stored);
	if (stored.to != 0) {
		raft_status rs;
		raft_status_get(g->raft, &rs);
		if (!rs.repairing) {
			raft_repair none = {0, 0};
			brk_repair_put(w, &none);
			PL_INFO("group", "event=log_repaired");
		}
	}
	if (rd->n_ents > 0 &&
	    (st = brk_log_append(w, rd->entries, rd->n_ents)) != PL_OK)
		PL_ERROR("group",
		    "event=append_failed first=%llu n=%zu err=\"%s\"",
		    (unsigned long long)rd->entries[0].index, rd->n_ents,
		    pl_strerror(st));
	size_t n = 0;
	for (size_t i = 0; i < rd->n_committed && st == PL_OK; i++) {
		/* Applied already: a group of one applies as it appends. */
		if (rd->committed[i].index <= brk_wtxn_applied(w))
			continue;
		st = apply_one(g, w, &rd->committed[i], &n);
	}
	/* A group of one commits an entry as soon as it is durable on its
	 * only voter, which is this transaction: applying its new entries
	 * here saves a second transaction and fsync per round. Only in
	 * order (everything before them applied) and only while leading. */
	if (st == PL_OK && g->leader && brk_group_solo(g) &&
	    rd->n_ents > 0 && rd->entries[0].index == brk_wtxn_applied(w) + 1) {
		for (size_t i = 0; i < rd->n_ents && st == PL_OK; i++)
			st = apply_one(g, w, &rd->entries[i], &n);
		/* Durable with this transaction, so committed: the stored
		 * commit must not lag what is applied. */
		raft_hard_state hs = rd->hs;
		hs.commit = brk_wtxn_applied(w);
		brk_hs_put(w, &hs);
	}
	if (st != PL_OK) {
		brk_wtxn_abort(w);
		return st;
	}
	/* Every write transaction is synced, applies included: LMDB without
	 * a sync can be damaged by a power loss on a filesystem that reorders
	 * writes. Under load a ready carries both new entries and commits,
	 * so this costs a sync only when idle. */
	st = brk_wtxn_commit(w);
	*nres = n;
	return st;
}

/* Handles one ready as raft.h prescribes; false when its write failed
 * (the ready is then held, see the invariants at the top). */
static bool ready_handle(brk_group *g, const raft_ready *rd)
{
	size_t nres = 0;
	int64_t t0 = pl_mono_us();
	PL_DEBUG("group",
	    "event=ready term=%llu commit=%llu entries=%zu committed=%zu "
	    "msgs=%zu",
	    (unsigned long long)rd->hs.term, (unsigned long long)rd->hs.commit,
	    rd->n_ents, rd->n_committed, rd->n_msgs);
	bool write = rd->hs_sync || rd->n_ents > 0 || rd->n_committed > 0;
	/* Messages may leave before this replica's own write when they do
	 * not depend on it: the term and vote are unchanged, and the core
	 * acknowledges only entries reported durable (raft_persisted). So a
	 * leader's appends reach the followers while it syncs its own copy:
	 * the two fsyncs overlap instead of adding up. A held ready (retried
	 * after a failed write) has sent its messages already. */
	uint64_t snap[RAFT_PEERS_MAX];
	size_t nsnap = 0;
	bool early = !rd->hs_sync && !g->stalled;
	if (early)
		nsnap = brk_send_msgs(g, rd, snap);
	if (write) {
		pl_status st = ready_write(g, rd, &nres);
		if (st != PL_OK) {
			brk_events_flush(g, false);
			if (!g->stalled)
				PL_ERROR("group",
				    "event=ready_write_failed err=\"%s\" "
				    "entries=%zu committed=%zu",
				    pl_strerror(st), rd->n_ents,
				    rd->n_committed);
			pl_metric_inc(g->m.round_fail, 1);
			if (!g->stalled)
				g->stall_sent = early;
			g->stalled = true;
			g->stall_err = st;
			g->stall_rd = *rd;
			g->stall_retry_us = pl_mono_us() + STALL_RETRY_US;
			brk_pend_fail_all(g, st);
			return false;
		}
		pl_hist_record(
		    g->m.commit_s->hist, (uint64_t)(pl_mono_us() - t0));
		if (rd->n_ents > 0 || rd->hs_sync)
			pl_metric_inc(g->m.rounds, 1);
	}
	bool was_stalled = g->stalled && g->stall_sent;
	if (g->stalled)
		PL_INFO("group", "event=ready_write_recovered");
	g->stalled = false;
	if (!early && !was_stalled)
		nsnap = brk_send_msgs(g, rd, snap);
	bool persisted = rd->n_ents > 0;
	uint64_t last = persisted ? rd->entries[rd->n_ents - 1].index : 0;
	uint64_t last_term = persisted ? rd->entries[rd->n_ents - 1].term : 0;
	raft_advance(g->raft);
	brk_log_release(g->store);
	for (size_t i = 0; i < nsnap; i++)
		brk_snap_out_start(g, snap[i]);
	/* In sync durability the commit above fsynced; in relaxed mode it
	 * did not, and that is the documented risk of relaxed. */
	if (persisted)
		raft_persisted(g->raft, last, last_term);
	for (size_t i = 0; i < nres; i++) {
		if (g->res[i].map_version != 0 && g->res[i].changed) {
			brk_map_refresh(g); /* before the changes are answered */
			break;
		}
	}
	brk_results_complete(g, nres);
	brk_events_flush(g, true);
	return true;
}

/* Notices leadership changes: a new leader starts fresh feeds (gateways
 * see a new epoch, re-watch and catch up); a deposed one fails what it
 * had in flight and sends gateways elsewhere. */
static void leader_check(brk_group *g)
{
	brk_damage_check(g);
	raft_status st;
	raft_status_get(g->raft, &st);
	g->lead_id = st.lead;
	if (st.term != g->term) {
		g->term = st.term;
		pl_metric_set(g->m.term, (int64_t)st.term);
	}
	bool leader = st.role == RAFT_LEADER;
	if (leader == g->leader)
		return;
	g->leader = leader;
	pl_metric_set(g->m.is_leader, leader);
	if (leader) {
		g->lead_index = st.last_index;
		pl_metric_inc(g->m.elections, 1);
		PL_INFO("group", "event=leader term=%llu first_index=%llu",
		    (unsigned long long)st.term,
		    (unsigned long long)st.last_index);
	} else {
		PL_INFO("group", "event=follower term=%llu leader=%llu",
		    (unsigned long long)st.term, (unsigned long long)st.lead);
		brk_pend_fail_all(g, PL_E_UNAVAILABLE);
	}
	/* Either way the watch table starts over: watches belong to the
	 * leadership that took them. Not here: batches of the round under
	 * way still point at their gateway's state (see gws_reset). */
	g->gws_reset = true;
}

/* Steps the core through every ready it has. */
void brk_drive(brk_group *g)
{
	if (g->quiet && raft_has_ready(g->raft))
		brk_quiet_wake(g, "ready");
	if (g->stalled) {
		if (pl_mono_us() < g->stall_retry_us ||
		    !ready_handle(g, &g->stall_rd))
			return;
	}
	while (raft_has_ready(g->raft)) {
		raft_ready rd;
		raft_ready_get(g->raft, &rd);
		bool appended = rd.n_ents > 0;
		if (!ready_handle(g, &rd))
			return;
		/* The entries just written commit soon (at once in a group of
		 * one): stop here so that their applying shares the next
		 * ready's transaction with whatever is proposed meanwhile —
		 * one durable commit per round, as in a group of one before
		 * Raft. The thread comes back without waiting. */
		if (appended)
			break;
	}
	/* Every ready written was advanced: the core borrows no payload. */
	PL_ASSERT(raft_unstable_count(g->raft) == 0);
	brk_arena_reset(&g->prop_arena);
	leader_check(g);
}

void brk_raft_ticks(brk_group *g)
{
	int64_t now = pl_mono_us();
	if (g->quiet) {
		g->last_tick_us = now; /* quiet.c: the clock stands still */
		return;
	}
	while (now - g->last_tick_us >= RAFT_TICK_MS * 1000) {
		raft_tick(g->raft);
		g->last_tick_us += RAFT_TICK_MS * 1000;
	}
}

/* Moves the Raft log's start up once it holds twice log_keep_entries
 * applied entries: followers further behind get a snapshot. */
void brk_compact(brk_group *g)
{
	int64_t now = pl_mono_us();
	if (now - g->last_compact_us < 1000000 || g->stalled)
		return;
	g->last_compact_us = now;
	uint64_t applied = brk_store_applied(g->store), si, st;
	brk_store_snap(g->store, &si, &st);
	uint64_t keep = g->cfg.log_keep_entries;
	if (applied > si + 2 * keep &&
	    brk_log_compact(g->store, applied - keep) == PL_OK)
		PL_DEBUG("group", "event=log_compacted first=%llu",
		    (unsigned long long)(applied - keep + 1));
}
