/*
 * repair.c - damaged logs: the repair record a replica keeps after losing
 * entries it may have acknowledged, asking peers for them, serving such
 * requests, and the rule that ends a repair (docs/raft.md, "Damaged logs";
 * the invariant is at the top of raft.c).
 */
#include <string.h>

#include "raft/raft_internal.h"

/* ------------------------------------------------------------------ */
/* Damaged logs (docs/raft.md, "Damaged logs"). */

void raft_repair_note(raft_repair *rep, uint64_t index, uint64_t term)
{
	if (index == 0)
		return; /* nothing was durable: nothing was acknowledged */
	if (rep->to == 0 || term > rep->term) {
		/* A later term's record implies the older one: holding an
		 * entry of a later leader's term means holding everything
		 * committed before that term. */
		rep->to = index;
		rep->term = term;
	} else if (term == rep->term && index > rep->to) {
		rep->to = index;
	}
}

/* Ends the repair once this replica has learnt a commit covering what it
 * applied (so a stored commit never lags the state machine once the
 * driver forgets the repair) and either
 *  (A) durably holds entry (repair.to, repair.term) again: its log then
 *      equals, up to there, the log of the leader that made that entry,
 *      which holds every entry committed before that term and all of its
 *      own, so every committed entry the replica acknowledged; or
 *  (B) durably holds an entry of the current term T > repair.term that
 *      matches the log of the leader of T, which holds every entry
 *      committed before T (needed when (A)'s entry was never committed
 *      and is gone from every log). */
void rf_repair_check(raft *r)
{
	if (!rf_repairing(r) || r->commit < r->applied)
		return;
	uint64_t t;
	bool done = r->persisted >= r->repair.to &&
	            rf_log_term(r, r->repair.to, &t) == PL_OK &&
	            t == r->repair.term;
	uint64_t x =
	    r->repair_match < r->persisted ? r->repair_match : r->persisted;
	if (!done && r->role == RAFT_FOLLOWER && x > 0 &&
	    r->term > r->repair.term && rf_log_term(r, x, &t) == PL_OK)
		done = t == r->term;
	/* (B) for a replica that leads term T > repair.term itself: it won
	 * on the votes of a quorum of others (campaign()), so its log holds
	 * every entry committed before T; once its no-op is durable, its
	 * log holds them durably. */
	if (!done && r->role == RAFT_LEADER && r->term > r->repair.term &&
	    r->persisted >= r->term_start)
		done = true;
	if (!done)
		return;
	memset(&r->repair, 0, sizeof r->repair);
	r->repair_match = 0;
}

/* Adds id to the replicas a repairing replica asks; false when full. */
static bool repair_peer_add(raft *r, uint64_t id)
{
	if (id == 0 || id == r->id)
		return true;
	for (size_t i = 0; i < r->n_repair_peers; i++)
		if (r->repair_peers[i] == id)
			return true;
	if (r->n_repair_peers == RAFT_REPAIR_PEERS_MAX)
		return false;
	r->repair_peers[r->n_repair_peers++] = id;
	return true;
}

/* Asks peer `to` (0: every member and known replica) for the entries
 * after our last, up to repair.to, from a log that holds (repair.to,
 * repair.term). */
void rf_repair_ask(raft *r, uint64_t to)
{
	raft_msg m = {.type = RAFT_MSG_REPAIR,
	    .index = rf_last_index(r),
	    .hint = r->repair.to,
	    .commit = r->repair.term};
	if (m.index >= m.hint || rf_log_term(r, m.index, &m.log_term) != PL_OK)
		return;
	if (to != 0) {
		m.to = to;
		rf_send(r, &m);
		return;
	}
	for (int i = 0; i < r->n_prs; i++) {
		m.to = r->prs[i].id;
		if (m.to != r->id)
			rf_send(r, &m);
	}
	for (size_t i = 0; i < r->n_repair_peers; i++) {
		m.to = r->repair_peers[i];
		if (rf_pr_find(r, m.to) == NULL)
			rf_send(r, &m);
	}
}

/* The last index up to which this log can serve a repair: the largest
 * x in (m->index, min(hint, last)] whose entry is of the record's term
 * (0: none). An entry of term m->commit comes from the leader of that
 * term, so a log holding (x, m->commit) is, up to x, that leader's log:
 * the very log the repairing replica held up to its record, whether or
 * not it reaches (hint, m->commit). Terms never decrease along a log, so
 * a binary search finds x in a few reads. */
static uint64_t repair_serve_to(raft *r, const raft_msg *m)
{
	uint64_t lo = m->index, hi = rf_last_index(r), t;
	if (m->hint < hi)
		hi = m->hint;
	if (m->log_term > m->commit || hi <= lo ||
	    !rf_match_term(r, m->index, m->log_term))
		return 0;
	while (lo < hi) { /* term(lo) <= m->commit */
		uint64_t mid = lo + (hi - lo + 1) / 2;
		if (rf_log_term(r, mid, &t) != PL_OK)
			return 0;
		if (t <= m->commit)
			lo = mid;
		else
			hi = mid - 1;
	}
	if (lo == m->index || rf_log_term(r, lo, &t) != PL_OK || t != m->commit)
		return 0;
	return lo;
}

/* Any peer, any role, any term: serves a repair from its log if that
 * matches the repairing replica's last entry and holds entries of the
 * record's term after it: up to the record's entry when it holds that,
 * else up to its last entry of that term (a partial restore: the
 * replica gets back what of its old log survives anywhere, which is
 * what lets it campaign again; docs/raft.md, "Damaged logs"). */
void rf_handle_repair(raft *r, const raft_msg *m)
{
	uint64_t to = repair_serve_to(r, m);
	if (to == 0)
		return;
	size_t n = 0, room = RAFT_MSG_ENTS_POOL - r->n_msg_ents;
	raft_entry *ents = &r->msg_ents[r->n_msg_ents];
	if (room == 0 || r->n_msgs == RAFT_MSGS_MAX)
		return;
	if (rf_log_entries(r, m->index + 1, to + 1, r->cfg.msg_bytes_max, ents,
	        room < RAFT_MSG_ENTRIES_MAX ? room : RAFT_MSG_ENTRIES_MAX,
	        &n) != PL_OK)
		return;
	uint64_t last = m->index + n;
	raft_msg o = {.type = RAFT_MSG_REPAIR_RESP,
	    .to = m->from,
	    .index = m->index,
	    .log_term = m->log_term,
	    .hint = m->hint,
	    .commit = r->commit < last ? r->commit : last,
	    .ents = ents,
	    .n_ents = n};
	rf_send(r, &o);
	r->n_msg_ents += n;
}

/* The repairing replica extends its log with a peer's entries: only
 * after its last entry (nothing it holds is replaced), only for the
 * repair under way. */
void rf_handle_repair_resp(raft *r, const raft_msg *m)
{
	if (!rf_repairing(r) || m->hint != r->repair.to ||
	    m->index != rf_last_index(r))
		return;
	const raft_entry *e = &m->ents[m->n_ents - 1];
	if (e->term > r->repair.term ||
	    (e->index == r->repair.to && e->term != r->repair.term))
		return; /* not a log that leads to our entry */
	uint64_t errs = r->storage_errs;
	if (!rf_match_term(r, m->index, m->log_term) || r->storage_errs != errs)
		return;
	size_t n = m->n_ents;
	if (r->u_n + n > RAFT_UNSTABLE_MAX)
		n = r->u_n < RAFT_UNSTABLE_MAX ? RAFT_UNSTABLE_MAX - r->u_n : 0;
	if (n == 0)
		return;
	rf_log_append(r, m->ents, n, NULL, 0);
	uint64_t lastnew = m->index + n;
	rf_commit_to(r, m->commit < lastnew ? m->commit : lastnew);
	if (lastnew < r->repair.to)
		rf_repair_ask(r, m->from);
}

pl_status raft_repair_peers(raft *r, const uint64_t *ids, size_t n)
{
	PL_ASSERT(!r->in_ready && (ids != NULL || n == 0));
	bool fit = true;
	for (size_t i = 0; i < n; i++)
		fit = repair_peer_add(r, ids[i]) && fit;
	return fit ? PL_OK : PL_E_TOO_LARGE;
}

pl_status raft_log_damaged(raft *r, uint64_t bad_index, raft_repair *rep)
{
	PL_ASSERT(!r->in_ready);
	if (bad_index == 0 || bad_index < rf_first_index(r) ||
	    bad_index > r->stable_last)
		return PL_E_BAD_REQUEST;
	uint64_t keep = bad_index - 1;
	/* Read everything needed below the damage before changing state, so
	 * that an error leaves the core as it was. */
	raft_conf c;
	uint64_t ci = 0, keep_term = 0;
	pl_status st = rf_log_term(r, keep, &keep_term);
	if (st == PL_OK && r->conf_index > keep)
		st = rf_conf_at(r, keep, &c, &ci);
	if (st != PL_OK)
		return st; /* a lower entry is bad too: a guessed term would
		            * leave a record no log can satisfy */
	/* Every entry this replica acknowledged is at or below persisted. */
	raft_repair_note(&r->repair, r->persisted, r->persisted_term);
	r->u_n = 0; /* the unstable tail followed the lost entries */
	r->u_off = bad_index;
	r->stable_last = keep;
	if (r->persisted > keep) {
		r->persisted = keep;
		r->persisted_term = keep_term;
	}
	if (r->commit > keep)
		r->commit = keep; /* the group's commit is unchanged */
	if (r->repair_match > keep)
		r->repair_match = keep;
	r->ack_index = 0;
	if (r->conf_index > keep) {
		/* Remember who was a member: one of them may hold what we
		 * lost, though the older configuration no longer names it. */
		for (int i = 0; i < r->n_prs; i++)
			(void)repair_peer_add(r, r->prs[i].id);
		r->conf = c;
		r->conf_index = ci;
		rf_conf_left_refresh(r);
		rf_conf_apply(r);
	}
	if (r->role != RAFT_FOLLOWER)
		rf_become_follower(r, r->term, 0);
	rf_repair_check(r); /* only unsynced entries lost: nothing to repair */
	*rep = r->repair;
	return PL_OK;
}
