/*
 * raft.c - the Raft core: leader election with pre-vote and check-quorum,
 * log replication with fast backtracking, the commit rule, leadership
 * transfer, learners and single-server membership changes, as a pure
 * state machine (see raft.h for the calling contract, docs/raft.md for
 * the design and the proofs we lean on). This file validates peer messages,
 * applies the term rules and holds the public entry points; the other files
 * of raft/, listed bottom-up in raft_internal.h, do the rest.
 *
 * Invariants kept by the core (asserted where cheap, in the raft/ file that
 * does the work; the simulation in tests/sim/ checks them across
 * replicas after every step):
 *  - election safety: at most one leader per term. A node votes at most
 *    once per term (vote is durable before the grant is sent) and a
 *    candidate needs a quorum of the voters of its configuration;
 *  - log matching: if two logs hold an entry with the same index and term,
 *    they are identical up to it. A follower appends only after checking
 *    the previous entry's term, and truncates only at a real conflict;
 *  - leader completeness: a vote goes only to a candidate whose log is at
 *    least as up to date as the voter's;
 *  - commit rule: a leader advances commit by counting only to an entry of
 *    its own term that a quorum of voters holds *durably* (the leader's
 *    own copy counts once raft_persisted says so). Commit never decreases
 *    and never passes the last index; entries <= commit are never
 *    truncated (a peer message asking for that is dropped, not obeyed);
 *  - state machine safety: only entries <= min(commit, persisted) are
 *    handed out for applying, in index order, each once per core;
 *  - membership rule: a replica uses the latest configuration in its log,
 *    committed or not; a leader appends a change only when no other is
 *    uncommitted and an entry of its own term is committed; truncating a
 *    configuration entry restores the previous configuration.
 *  - damaged logs: a replica that lost entries to damage (raft_log_damaged)
 *    grants no vote, and does not count its own when it campaigns, until
 *    it durably holds its last durable entry of then again (from any
 *    peer), or an entry of a later term matching its leader's log (its
 *    own, as the leader of that term); so every voter holds every
 *    committed entry it acknowledged for its commit, and a leader elected
 *    without its own vote holds every committed entry (docs/raft.md,
 *    "Electing a repairing replica").
 *  - boundedness: every array is sized at raft_new; nothing allocates
 *    afterwards; a full output array drops the message (Raft tolerates a
 *    lost message) and counts it.
 */
#include <stdlib.h>
#include <string.h>

#include "raft/raft_internal.h"

/* ------------------------------------------------------------------ */
/* Small utilities. */

void rf_send(raft *r, const raft_msg *m)
{
	if (r->n_msgs == RAFT_MSGS_MAX) {
		r->dropped_msgs++;
		return;
	}
	raft_msg *o = &r->msgs[r->n_msgs++];
	*o = *m;
	o->from = r->id;
	if (o->term == 0)
		o->term = r->term;
}

void rf_send_simple(raft *r, int type, uint64_t to, uint64_t term, bool reject)
{
	raft_msg m = {
	    .type = (uint8_t)type, .to = to, .term = term, .reject = reject};
	rf_send(r, &m);
}

/* ------------------------------------------------------------------ */
/* Input validation: peer messages are untrusted. */

static bool ents_valid(const raft_msg *m)
{
	if (m->n_ents > RAFT_MSG_ENTRIES_MAX || (m->n_ents > 0 && !m->ents))
		return false;
	if (m->n_ents > UINT64_MAX - m->index)
		return false;
	uint64_t prev_term = m->log_term;
	for (size_t i = 0; i < m->n_ents; i++) {
		const raft_entry *e = &m->ents[i];
		if (e->index != m->index + 1 + i || e->term < prev_term ||
		    e->term > m->term || e->term == 0)
			return false;
		if (e->len > 0 && e->data == NULL)
			return false;
		raft_conf c;
		if (e->type == RAFT_ENTRY_CONF &&
		    raft_conf_decode(e->data, e->len, &c) != PL_OK)
			return false;
		if (e->type != RAFT_ENTRY_CONF && e->type != RAFT_ENTRY_NORMAL)
			return false;
		prev_term = e->term;
	}
	return true;
}

static bool msg_valid(const raft *r, const raft_msg *m)
{
	if (m == NULL || m->type < RAFT_MSG_APP ||
	    m->type >= RAFT_MSG_TYPE_END_ || m->type == RAFT_MSG_SNAP)
		return false;
	if (m->from == 0 || m->from == r->id || m->to != r->id || m->term == 0)
		return false;
	if (m->type == RAFT_MSG_APP)
		return m->log_term <= m->term && ents_valid(m);
	if (m->type == RAFT_MSG_REPAIR_RESP)
		return m->log_term <= m->term && m->n_ents > 0 &&
		       ents_valid(m) && m->index + m->n_ents <= m->hint;
	if (m->n_ents != 0)
		return false;
	if (m->type == RAFT_MSG_REPAIR)
		return m->log_term <= m->term && m->commit <= m->term &&
		       m->index < m->hint;
	if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE)
		return m->log_term <= m->term;
	return true;
}

/* ------------------------------------------------------------------ */
/* Public entry points. */

static bool in_lease(const raft *r)
{
	return r->cfg.check_quorum && r->lead != 0 &&
	       r->election_elapsed < r->cfg.election_ticks;
}

/* The term rules. False when the message is done with. */
static bool step_term(raft *r, const raft_msg *m)
{
	int t = m->type;
	bool vote = t == RAFT_MSG_VOTE || t == RAFT_MSG_PREVOTE;
	if (m->term > r->term) {
		if (vote && !m->force && in_lease(r))
			return false; /* we heard from a live leader lately */
		if (t == RAFT_MSG_PREVOTE ||
		    (t == RAFT_MSG_PREVOTE_RESP && !m->reject))
			return true; /* pre-votes never move terms */
		bool from_leader = t == RAFT_MSG_APP || t == RAFT_MSG_HEARTBEAT;
		rf_become_follower(r, m->term, from_leader ? m->from : 0);
		return true;
	}
	if (m->term < r->term) {
		if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
		    (t == RAFT_MSG_APP || t == RAFT_MSG_HEARTBEAT)) {
			/* Tell a stale leader about our term: without this a
			 * leader cut off by pre-vote would never learn it. */
			rf_send_simple(r, RAFT_MSG_APP_RESP, m->from, 0, false);
		} else if (t == RAFT_MSG_PREVOTE) {
			rf_send_simple(
			    r, RAFT_MSG_PREVOTE_RESP, m->from, 0, true);
		}
		return false;
	}
	return true;
}

pl_status raft_step(raft *r, const raft_msg *m)
{
	PL_ASSERT(!r->in_ready);
	if (!msg_valid(r, m)) {
		r->dropped_msgs++;
		return PL_E_PROTO;
	}
	/* Repairs are about logs, not terms: they never move a term. */
	if (m->type == RAFT_MSG_REPAIR) {
		rf_handle_repair(r, m);
		return PL_OK;
	}
	if (m->type == RAFT_MSG_REPAIR_RESP) {
		rf_handle_repair_resp(r, m);
		rf_repair_check(r);
		return PL_OK;
	}
	if (!step_term(r, m))
		return PL_OK;
	if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
		rf_handle_vote(r, m);
		return PL_OK;
	}
	switch (r->role) {
	case RAFT_LEADER:
		rf_step_leader(r, m);
		break;
	case RAFT_FOLLOWER:
		rf_step_follower(r, m);
		break;
	default:
		rf_step_candidate(r, m);
		break;
	}
	rf_repair_check(r);
	return PL_OK;
}

static bool quorum_active(raft *r)
{
	const raft_conf *c = rf_conf_cur(r);
	int n = 0;
	for (int i = 0; i < c->n_voters; i++) {
		progress *pr = rf_pr_find(r, c->voters[i]);
		if (pr != NULL && (pr->active || pr->id == r->id))
			n++;
	}
	return n >= rf_quorum(r);
}

static void tick_leader(raft *r)
{
	r->heartbeat_elapsed++;
	r->election_elapsed++;
	if (r->election_elapsed >= r->cfg.election_ticks) {
		r->election_elapsed = 0;
		if (r->cfg.check_quorum && !quorum_active(r)) {
			rf_become_follower(r, r->term, 0);
			return;
		}
		for (int i = 0; i < r->n_prs; i++)
			r->prs[i].active = false;
		r->transferee = 0; /* a transfer that did not finish */
	}
	if (r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
		r->heartbeat_elapsed = 0;
		rf_bcast_heartbeat(r);
	}
}

void raft_tick(raft *r)
{
	PL_ASSERT(!r->in_ready);
	if (r->role == RAFT_LEADER) {
		tick_leader(r);
		return;
	}
	if (r->election_elapsed < UINT32_MAX)
		r->election_elapsed++;
	/* Repairing and no leader heard for a while: ask the peers. Before
	 * the campaign below, which restarts the timer: the timeout may be
	 * exactly one election timeout. */
	if (rf_repairing(r) && r->election_elapsed >= r->cfg.election_ticks &&
	    r->election_elapsed % r->cfg.election_ticks == 0)
		rf_repair_ask(r, 0);
	/* Only a node that campaigns restarts its timer: one that cannot (a
	 * learner, maybe promoted without knowing it yet) must see the
	 * lease of a silent leader run out, or it would ignore every vote
	 * request while that leader is gone. A repairing voter, and a voter
	 * removed by a change it does not know committed, campaign without
	 * their own vote (rf_may_campaign, campaign()). */
	if (r->election_elapsed >= r->timeout && rf_may_campaign(r)) {
		r->election_elapsed = 0;
		rf_hup(r, false);
	}
}

pl_status raft_propose(
    raft *r, const void *data, size_t len, uint64_t *index, uint64_t *term)
{
	PL_ASSERT(!r->in_ready && (data != NULL || len == 0));
	if (r->role != RAFT_LEADER)
		return PL_E_NOT_LEADER;
	if (r->transferee != 0)
		return PL_E_AGAIN;
	if (r->u_n >= RAFT_UNSTABLE_MAX)
		return PL_E_BACKPRESSURE;
	raft_entry e = {.term = r->term,
	    .index = rf_last_index(r) + 1,
	    .type = RAFT_ENTRY_NORMAL,
	    .data = data,
	    .len = len};
	rf_log_append(r, &e, 1, NULL, 0);
	for (int i = 0; i < r->n_prs; i++)
		rf_send_append(r, &r->prs[i], false);
	*index = e.index;
	*term = e.term;
	return PL_OK;
}

pl_status raft_propose_conf(
    raft *r, raft_conf_op op, uint64_t node, uint64_t *index, uint64_t *term)
{
	PL_ASSERT(!r->in_ready);
	if (r->role != RAFT_LEADER)
		return PL_E_NOT_LEADER;
	/* One change at a time, and only once this term's no-op committed:
	 * the latter closes the hole in single-server changes found after
	 * Raft's publication (a stale uncommitted change of an older term
	 * could otherwise combine with ours into disjoint majorities). */
	if (r->conf_index > r->commit || r->commit < r->term_start ||
	    r->transferee != 0)
		return PL_E_AGAIN;
	if (r->u_n >= RAFT_UNSTABLE_MAX)
		return PL_E_BACKPRESSURE;
	raft_conf nc;
	pl_status st = rf_conf_change(rf_conf_cur(r), op, node, &nc);
	if (st != PL_OK)
		return st;
	/* conf_buf outlives the entry's stay in the unstable log: no other
	 * change can be appended before this one is committed, and it is
	 * written to storage by the next raft_advance. */
	size_t len = raft_conf_encode(&nc, r->conf_buf);
	raft_entry e = {.term = r->term,
	    .index = rf_last_index(r) + 1,
	    .type = RAFT_ENTRY_CONF,
	    .data = r->conf_buf,
	    .len = len};
	rf_log_append(r, &e, 1, NULL, 0);
	for (int i = 0; i < r->n_prs; i++)
		rf_send_append(r, &r->prs[i], true);
	*index = e.index;
	*term = e.term;
	return PL_OK;
}

pl_status raft_transfer_leader(raft *r, uint64_t to)
{
	PL_ASSERT(!r->in_ready);
	if (r->role != RAFT_LEADER)
		return PL_E_NOT_LEADER;
	if (to == r->id || !raft_conf_is_voter(rf_conf_cur(r), to))
		return PL_E_BAD_REQUEST;
	progress *pr = rf_pr_find(r, to);
	PL_ASSERT(pr != NULL);
	r->transferee = to;
	r->election_elapsed = 0; /* the transfer has one election timeout */
	if (pr->match == rf_last_index(r))
		rf_maybe_send_timeout_now(r, pr);
	else
		rf_send_append(r, pr, true);
	return PL_OK;
}

void raft_persisted(raft *r, uint64_t index, uint64_t term)
{
	PL_ASSERT(!r->in_ready);
	if (index <= r->persisted || index > r->stable_last)
		return;
	if (r->u_n > 0 && index >= r->u_off)
		return; /* about to be overwritten: the report is stale */
	if (!rf_match_term(r, index, term))
		return;
	r->persisted = index;
	r->persisted_term = term;
	rf_repair_check(r);
	if (r->role == RAFT_LEADER) {
		if (rf_maybe_commit(r) && r->role == RAFT_LEADER)
			rf_bcast_append(r);
		return;
	}
	if (r->ack_index != 0 && r->ack_term == r->term &&
	    r->role == RAFT_FOLLOWER) {
		uint64_t a = r->ack_index < index ? r->ack_index : index;
		raft_msg m = {
		    .type = RAFT_MSG_APP_RESP, .to = r->ack_to, .index = a};
		rf_send(r, &m);
		if (a == r->ack_index)
			r->ack_index = 0;
	}
}

void raft_snapshot_done(raft *r, uint64_t peer, bool ok)
{
	PL_ASSERT(!r->in_ready);
	progress *pr = rf_pr_find(r, peer);
	if (r->role != RAFT_LEADER || pr == NULL || pr->state != PR_SNAPSHOT)
		return;
	uint64_t next = ok ? pr->snap_index + 1 : pr->next;
	rf_pr_reset(pr, PR_PROBE, next > pr->match + 1 ? next : pr->match + 1);
	pr->probe_sent = ok; /* wait for the follower's ack of the snapshot */
}

pl_status raft_snapshot_restore(raft *r, uint64_t from, uint64_t term_from,
    uint64_t index, uint64_t term, const raft_conf *conf)
{
	PL_ASSERT(!r->in_ready);
	if (!rf_conf_valid(conf))
		return PL_E_BAD_REQUEST;
	if (index <= r->commit)
		return PL_E_AGAIN;
	uint64_t t = 0;
	if (r->cfg.storage->last_index(r->cfg.storage_ctx) != index ||
	    r->cfg.storage->first_index(r->cfg.storage_ctx) != index + 1 ||
	    r->cfg.storage->term_at(r->cfg.storage_ctx, index, &t) != PL_OK ||
	    t != term)
		return PL_E_CORRUPT; /* storage does not hold the snapshot */
	r->u_n = 0;
	r->u_off = index + 1;
	r->stable_last = index;
	r->commit = r->applied = r->persisted = index;
	r->persisted_term = term;
	r->repair_match = 0;
	r->conf = *conf;
	r->conf_index = index;
	r->left_voter = false; /* the snapshot's configuration is committed */
	rf_conf_apply(r);
	if (term_from == r->term && r->role == RAFT_FOLLOWER) {
		raft_msg m = {
		    .type = RAFT_MSG_APP_RESP, .to = from, .index = index};
		rf_send(r, &m);
	}
	return PL_OK;
}

/* ------------------------------------------------------------------ */
/* Ready / advance. */

static uint64_t apply_hi(const raft *r)
{
	return r->commit < r->persisted ? r->commit : r->persisted;
}

bool raft_has_ready(const raft *r)
{
	return r->n_msgs > 0 || r->u_n > 0 || r->term != r->prev_hs.term ||
	       r->vote != r->prev_hs.vote || r->commit != r->prev_hs.commit ||
	       apply_hi(r) > r->applied;
}

size_t raft_unstable_count(const raft *r)
{
	return r->u_n;
}

void raft_ready_get(raft *r, raft_ready *rd)
{
	PL_ASSERT(!r->in_ready);
	memset(rd, 0, sizeof *rd);
	rd->hs.term = r->term;
	rd->hs.vote = r->vote;
	rd->hs.commit = r->commit;
	rd->hs_sync = r->term != r->prev_hs.term || r->vote != r->prev_hs.vote;
	rd->entries = r->u_n > 0 ? r->u_ents : NULL;
	rd->n_ents = r->u_n;
	rd->msgs = r->n_msgs > 0 ? r->msgs : NULL;
	rd->n_msgs = r->n_msgs;
	r->n_apply = 0;
	PL_ASSERT(r->u_n == 0 || r->persisted < r->u_off);
	uint64_t hi = apply_hi(r);
	if (hi > r->applied) {
		size_t n = 0;
		size_t max = r->cfg.msg_bytes_max * RAFT_INFLIGHT_MAX;
		if (rf_log_entries(r, r->applied + 1, hi + 1, max,
		        r->apply_ents, RAFT_APPLY_MAX, &n) == PL_OK)
			r->n_apply = n;
	}
	rd->committed = r->n_apply > 0 ? r->apply_ents : NULL;
	rd->n_committed = r->n_apply;
	r->in_ready = true;
}

void raft_advance(raft *r)
{
	PL_ASSERT(r->in_ready);
	r->in_ready = false;
	if (r->u_n > 0) {
		r->stable_last = r->u_off + r->u_n - 1;
		r->u_off = r->stable_last + 1;
		r->u_n = 0;
	}
	PL_DEBUG_ASSERT(
	    r->cfg.storage->last_index(r->cfg.storage_ctx) == r->stable_last);
	if (r->n_apply > 0) {
		uint64_t a = r->apply_ents[r->n_apply - 1].index;
		PL_ASSERT(a == r->applied + r->n_apply && a <= r->commit);
		r->applied = a;
	}
	r->n_apply = 0;
	r->n_msgs = 0;
	r->n_msg_ents = 0;
	r->prev_hs.term = r->term;
	r->prev_hs.vote = r->vote;
	r->prev_hs.commit = r->commit;
}

/* ------------------------------------------------------------------ */
/* Life cycle. */

static bool config_valid(const raft_config *c)
{
	return c->id != 0 && c->election_ticks >= 2 &&
	       c->heartbeat_ticks >= 1 &&
	       c->heartbeat_ticks < c->election_ticks && c->msg_bytes_max > 0 &&
	       c->storage != NULL && c->storage->load &&
	       c->storage->first_index && c->storage->last_index &&
	       c->storage->term_at && c->storage->entries;
}

static pl_status load_state(raft *r)
{
	const raft_storage *s = r->cfg.storage;
	raft_hard_state hs;
	uint64_t si, sterm;
	pl_status st = s->load(r->cfg.storage_ctx, &hs, &si, &sterm, &r->conf);
	if (st != PL_OK)
		return st;
	uint64_t first = s->first_index(r->cfg.storage_ctx);
	uint64_t last = s->last_index(r->cfg.storage_ctx);
	uint64_t stored_commit = hs.commit;
	if (rf_repairing(r) && hs.commit > last)
		hs.commit = last; /* entries lost to damage: relearn commit */
	if (!rf_conf_valid(&r->conf) || first != si + 1 || last < si ||
	    hs.commit > last || hs.term < sterm)
		return PL_E_CORRUPT;
	if (hs.commit < si)
		hs.commit = si; /* a snapshot is committed by definition */
	r->term = hs.term;
	r->vote = hs.vote;
	r->commit = hs.commit;
	r->stable_last = last;
	r->persisted = last; /* what storage holds at start is durable */
	r->u_off = last + 1;
	r->prev_hs = hs;
	if (stored_commit > hs.commit)
		r->prev_hs.commit = stored_commit; /* a ready reports it */
	r->applied = r->cfg.applied > si ? r->cfg.applied : si;
	if (r->applied > r->commit && !rf_repairing(r))
		return PL_E_CORRUPT;
	st = rf_log_term(r, last, &r->persisted_term);
	if (st != PL_OK)
		return st;
	st = rf_conf_at(r, last, &r->conf, &r->conf_index);
	if (st != PL_OK)
		return st;
	rf_conf_left_refresh(r);
	rf_conf_apply(r);
	return PL_OK;
}

pl_status raft_new(const raft_config *cfg, raft **out)
{
	if (cfg == NULL || !config_valid(cfg))
		return PL_E_CONFIG;
	raft *r = calloc(1, sizeof *r);
	if (r == NULL)
		return PL_E_NOMEM;
	r->cfg = *cfg;
	r->id = cfg->id;
	r->prng = cfg->seed ^ (cfg->id * UINT64_C(0x2545F4914F6CDD1D));
	if (cfg->repair.to > 0)
		r->repair = cfg->repair;
	pl_status st = load_state(r);
	if (st != PL_OK) {
		free(r);
		return st;
	}
	r->role = RAFT_FOLLOWER;
	rf_reset_timeout(r);
	rf_repair_check(r); /* repaired before the driver cleared its record */
	*out = r;
	return PL_OK;
}

void raft_free(raft *r)
{
	free(r);
}

void raft_status_get(const raft *r, raft_status *st)
{
	memset(st, 0, sizeof *st);
	st->id = r->id;
	st->role = r->role;
	st->term = r->term;
	st->vote = r->vote;
	st->lead = r->lead;
	st->commit = r->commit;
	st->applied = r->applied;
	st->persisted = r->persisted;
	st->last_index = rf_last_index(r);
	st->first_index = r->cfg.storage->first_index(r->cfg.storage_ctx);
	st->conf = *rf_conf_cur(r);
	st->transferee = r->transferee;
	st->dropped_msgs = r->dropped_msgs;
	st->storage_err = r->storage_err;
	st->repairing = rf_repairing(r);
	st->repair = r->repair;
}

pl_status raft_peer_match(
    const raft *r, uint64_t id, uint64_t *match, bool *recent)
{
	if (r->role != RAFT_LEADER)
		return PL_E_NOT_LEADER;
	for (int i = 0; i < r->n_prs; i++) {
		if (r->prs[i].id == id) {
			*match = id == r->id ? r->persisted : r->prs[i].match;
			if (recent != NULL)
				*recent = id == r->id || r->prs[i].active;
			return PL_OK;
		}
	}
	return PL_E_NOT_FOUND;
}

const char *raft_role_name(raft_role role)
{
	static const char *names[] = {
	    "follower", "pre-candidate", "candidate", "leader"};
	return (unsigned)role < PL_ARRAY_LEN(names) ? names[role] : "?";
}

const char *raft_msg_type_name(int type)
{
	static const char *names[] = {"?", "app", "app_resp", "vote",
	    "vote_resp", "prevote", "prevote_resp", "heartbeat",
	    "heartbeat_resp", "timeout_now", "snap", "repair", "repair_resp"};
	return type > 0 && type < RAFT_MSG_TYPE_END_ ? names[type] : "?";
}
