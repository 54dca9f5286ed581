/*
 * replicate.c - log replication: the leader's appends with per-peer flow
 * control, heartbeats, fast backtracking and the commit rule; the
 * follower's side, which checks, appends and acknowledges once durable
 * (the invariants it keeps are at the top of raft.c).
 */
#include <stdlib.h>

#include "raft/raft_internal.h"

/* ------------------------------------------------------------------ */
/* Leader: replication. */

static void send_snapshot(raft *r, progress *pr)
{
	uint64_t si = rf_first_index(r) - 1, st;
	if (rf_log_term(r, si, &st) != PL_OK)
		return;
	rf_pr_reset(pr, PR_SNAPSHOT, pr->next);
	pr->snap_index = si;
	raft_msg m = {
	    .type = RAFT_MSG_SNAP, .to = pr->id, .index = si, .log_term = st};
	rf_send(r, &m);
}

/* Sends one append to pr if its flow allows; empty ones only when
 * allow_empty (probes and commit updates). True when one was sent. */
bool rf_send_append(raft *r, progress *pr, bool allow_empty)
{
	if (pr->id == r->id || rf_pr_paused(pr) || r->n_msgs == RAFT_MSGS_MAX)
		return false;
	uint64_t prev = pr->next - 1, prev_term;
	pl_status st = rf_log_term(r, prev, &prev_term);
	if (st == PL_E_NOT_FOUND && prev + 1 < rf_first_index(r)) {
		send_snapshot(r, pr);
		return false;
	}
	if (st != PL_OK)
		return false;
	size_t n = 0, room = RAFT_MSG_ENTS_POOL - r->n_msg_ents;
	raft_entry *ents = &r->msg_ents[r->n_msg_ents];
	if (pr->next <= rf_last_index(r) && room > 0) {
		size_t cap =
		    room < RAFT_MSG_ENTRIES_MAX ? room : RAFT_MSG_ENTRIES_MAX;
		if (rf_log_entries(r, pr->next, rf_last_index(r) + 1,
		        r->cfg.msg_bytes_max, ents, cap, &n) != PL_OK)
			return false;
	}
	if (n == 0 && !allow_empty)
		return false;
	raft_msg m = {.type = RAFT_MSG_APP,
	    .to = pr->id,
	    .index = prev,
	    .log_term = prev_term,
	    .commit = r->commit,
	    .ents = n > 0 ? ents : NULL,
	    .n_ents = n};
	rf_send(r, &m);
	r->n_msg_ents += n;
	if (pr->state == PR_REPLICATE && n > 0) {
		pr->next = ents[n - 1].index + 1;
		rf_pr_infl_add(pr, ents[n - 1].index);
	} else if (pr->state == PR_PROBE) {
		pr->probe_sent = true;
	}
	return true;
}

void rf_bcast_append(raft *r)
{
	for (int i = 0; i < r->n_prs; i++)
		rf_send_append(r, &r->prs[i], true);
}

void rf_bcast_heartbeat(raft *r)
{
	for (int i = 0; i < r->n_prs; i++) {
		progress *pr = &r->prs[i];
		if (pr->id == r->id)
			continue;
		uint64_t c = pr->match < r->commit ? pr->match : r->commit;
		raft_msg m = {
		    .type = RAFT_MSG_HEARTBEAT, .to = pr->id, .commit = c};
		rf_send(r, &m);
	}
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* The commit rule: the highest index a quorum of voters holds durably,
 * if it is of this term. True when commit moved. */
bool rf_maybe_commit(raft *r)
{
	const raft_conf *c = rf_conf_cur(r);
	uint64_t m[RAFT_PEERS_MAX];
	int n = 0;
	for (int i = 0; i < c->n_voters; i++) {
		progress *pr = rf_pr_find(r, c->voters[i]);
		PL_ASSERT(pr != NULL);
		m[n++] = pr->id == r->id ? r->persisted : pr->match;
	}
	qsort(m, (size_t)n, sizeof m[0], cmp_desc);
	uint64_t q = m[rf_quorum(r) - 1], t;
	if (q <= r->commit || rf_log_term(r, q, &t) != PL_OK || t != r->term)
		return false;
	rf_commit_to(r, q);
	/* A leader that the committed configuration removed steps down. */
	if (r->commit >= r->conf_index && !raft_conf_is_voter(&r->conf, r->id))
		rf_become_follower(r, r->term, 0);
	return true;
}

void rf_maybe_send_timeout_now(raft *r, progress *pr)
{
	if (r->transferee == pr->id && pr->match == rf_last_index(r))
		rf_send_simple(r, RAFT_MSG_TIMEOUT_NOW, pr->id, 0, false);
}

/* Largest index <= i whose term is <= t (fast backtracking). */
static uint64_t conflict_by_term(raft *r, uint64_t i, uint64_t t)
{
	uint64_t lo = rf_first_index(r) - 1, have;
	while (i > lo) {
		if (rf_log_term(r, i, &have) != PL_OK || have <= t)
			break;
		i--;
	}
	return i;
}

static void handle_app_reject(raft *r, progress *pr, const raft_msg *m)
{
	uint64_t probe = m->hint;
	if (m->log_term > 0)
		probe = conflict_by_term(r, m->hint, m->log_term);
	if (pr->state == PR_REPLICATE) {
		if (m->index <= pr->match)
			return; /* stale */
		rf_pr_reset(pr, PR_PROBE, pr->match + 1);
	} else if (pr->state == PR_PROBE) {
		if (pr->next - 1 != m->index)
			return; /* stale */
		uint64_t nx = m->index < probe + 1 ? m->index : probe + 1;
		rf_pr_reset(
		    pr, PR_PROBE, nx > pr->match + 1 ? nx : pr->match + 1);
	} else {
		return;
	}
	rf_send_append(r, pr, true);
}

static void handle_app_resp(raft *r, progress *pr, const raft_msg *m)
{
	pr->active = true;
	if (m->reject) {
		handle_app_reject(r, pr, m);
		return;
	}
	if (m->index > rf_last_index(r)) {
		r->dropped_msgs++; /* acks what we never sent */
		return;
	}
	if (m->index > pr->match) {
		pr->match = m->index;
		if (pr->next <= m->index)
			pr->next = m->index + 1;
		if (pr->state == PR_PROBE ||
		    (pr->state == PR_SNAPSHOT && pr->match >= pr->snap_index))
			rf_pr_reset(pr, PR_REPLICATE, pr->match + 1);
		rf_pr_infl_free_le(pr, m->index);
		if (rf_maybe_commit(r)) {
			if (r->role != RAFT_LEADER)
				return;
			rf_bcast_append(r); /* carries the new commit index */
		}
	}
	while (rf_send_append(r, pr, false))
		;
	rf_maybe_send_timeout_now(r, pr);
}

static void handle_heartbeat_resp(raft *r, progress *pr, const raft_msg *m)
{
	pr->active = true;
	pr->probe_sent = false;
	/* A repairing follower lost entries it had acknowledged: lowering
	 * match only counts fewer copies (safe), and lets us probe below
	 * it. Entries up to m->index are still the ones it acknowledged in
	 * this term, or came from us since. */
	if (m->reject && m->index < pr->match) {
		pr->match = m->index;
		if (pr->state != PR_SNAPSHOT)
			rf_pr_reset(pr, PR_PROBE, m->index + 1);
	}
	/* A lost append leaves its slot taken: free one so the pipe moves
	 * again (the follower rejects the gap and we probe). */
	if (pr->state == PR_REPLICATE && pr->infl_n == RAFT_INFLIGHT_MAX)
		rf_pr_infl_free_le(pr, pr->infl[pr->infl_start]);
	/* A repairing follower needs an append to confirm its log matches
	 * ours, even an empty one when it is up to date. */
	if (pr->match < rf_last_index(r) || m->reject)
		rf_send_append(r, pr, true);
}

void rf_step_leader(raft *r, const raft_msg *m)
{
	progress *pr = rf_pr_find(r, m->from);
	if (pr == NULL)
		return; /* not a member: nothing to track */
	switch (m->type) {
	case RAFT_MSG_APP_RESP:
		handle_app_resp(r, pr, m);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		handle_heartbeat_resp(r, pr, m);
		break;
	case RAFT_MSG_APP:
	case RAFT_MSG_HEARTBEAT:
		r->dropped_msgs++; /* two leaders in one term: impossible */
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Follower: appends. */

/* Acks `idx` (a prefix matching the leader's log) once durable. */
static void ack_append(raft *r, uint64_t to, uint64_t idx)
{
	if (idx <= r->persisted) {
		raft_msg m = {
		    .type = RAFT_MSG_APP_RESP, .to = to, .index = idx};
		rf_send(r, &m);
		return;
	}
	if (r->ack_to != to || r->ack_term != r->term)
		r->ack_index = 0;
	r->ack_to = to;
	r->ack_term = r->term;
	if (idx > r->ack_index)
		r->ack_index = idx;
}

static void reject_append(raft *r, const raft_msg *m)
{
	uint64_t hint =
	    m->index < rf_last_index(r) ? m->index : rf_last_index(r);
	if (hint < r->commit)
		hint = r->commit;
	hint = conflict_by_term(r, hint, m->log_term);
	uint64_t ht = 0;
	if (rf_log_term(r, hint, &ht) != PL_OK)
		ht = 0;
	raft_msg o = {.type = RAFT_MSG_APP_RESP,
	    .to = m->from,
	    .reject = true,
	    .index = m->index,
	    .hint = hint,
	    .log_term = ht};
	rf_send(r, &o);
}

/* Appends m->ents[k..) (the first k are in the log already), as many as
 * the unstable log has room for. Returns the last index now matching the
 * leader's log, or 0 when nothing could be taken. */
static uint64_t append_from(raft *r, const raft_msg *m, size_t k)
{
	if (k == m->n_ents)
		return m->index + m->n_ents;
	uint64_t from = m->ents[k].index;
	if (from <= r->commit)
		return 0; /* would rewrite a committed entry: not obeyed */
	size_t keep =
	    (r->u_n > 0 && from > r->u_off) ? (size_t)(from - r->u_off) : 0;
	size_t n = m->n_ents - k;
	if (keep + n > RAFT_UNSTABLE_MAX)
		n = keep < RAFT_UNSTABLE_MAX ? RAFT_UNSTABLE_MAX - keep : 0;
	if (n == 0)
		return 0;
	raft_conf c;
	uint64_t ci = 0;
	bool revert = r->conf_index >= from;
	if (revert && rf_conf_at(r, from - 1, &c, &ci) != PL_OK)
		return 0;
	rf_log_append(r, m->ents + k, n, revert ? &c : NULL, ci);
	return from + n - 1;
}

static void handle_append(raft *r, const raft_msg *m)
{
	if (m->index < r->commit) {
		uint64_t c =
		    r->commit < r->persisted ? r->commit : r->persisted;
		ack_append(r, m->from, c);
		return;
	}
	/* An entry we cannot read is not a conflict: obeying would truncate
	 * it (and lower persisted) before the driver reports the damage. */
	uint64_t errs = r->storage_errs;
	if (!rf_match_term(r, m->index, m->log_term)) {
		if (r->storage_errs == errs)
			reject_append(r, m);
		else
			r->dropped_msgs++;
		return;
	}
	size_t k = 0; /* first entry not already in the log */
	while (k < m->n_ents &&
	       rf_match_term(r, m->ents[k].index, m->ents[k].term))
		k++;
	if (r->storage_errs != errs) {
		r->dropped_msgs++;
		return;
	}
	uint64_t lastnew = append_from(r, m, k);
	if (lastnew == 0) {
		r->dropped_msgs++;
		return;
	}
	rf_commit_to(r, m->commit < lastnew ? m->commit : lastnew);
	if (lastnew > r->repair_match)
		r->repair_match = lastnew;
	ack_append(r, m->from, lastnew);
}

void rf_step_follower(raft *r, const raft_msg *m)
{
	switch (m->type) {
	case RAFT_MSG_APP:
		r->lead = m->from;
		r->election_elapsed = 0;
		handle_append(r, m);
		break;
	case RAFT_MSG_HEARTBEAT:
		r->lead = m->from;
		r->election_elapsed = 0;
		if (rf_repairing(r)) {
			/* The leader may count entries we lost (its commit
			 * hint can pass our log): say what we hold. Commit
			 * is learnt from appends, which check the log. */
			raft_msg o = {.type = RAFT_MSG_HEARTBEAT_RESP,
			    .to = m->from,
			    .reject = true,
			    .index = r->persisted};
			rf_send(r, &o);
			return;
		}
		if (m->commit > rf_last_index(r)) {
			r->dropped_msgs++;
			return;
		}
		rf_commit_to(r, m->commit);
		rf_send_simple(r, RAFT_MSG_HEARTBEAT_RESP, m->from, 0, false);
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		rf_hup(r, true);
		break;
	default:
		break;
	}
}

void rf_step_candidate(raft *r, const raft_msg *m)
{
	bool pre = r->role == RAFT_PRE_CANDIDATE;
	switch (m->type) {
	case RAFT_MSG_APP:
	case RAFT_MSG_HEARTBEAT:
		/* A leader of our term exists: follow it. */
		rf_become_follower(r, m->term, m->from);
		rf_step_follower(r, m);
		break;
	case RAFT_MSG_VOTE_RESP:
		if (!pre)
			rf_record_vote(r, m->from, !m->reject);
		break;
	case RAFT_MSG_PREVOTE_RESP:
		/* Granted pre-votes carry the term we would campaign in. */
		if (pre && (m->reject || m->term == r->term + 1))
			rf_record_vote(r, m->from, !m->reject);
		break;
	default:
		break;
	}
}
