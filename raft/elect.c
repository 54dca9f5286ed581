/*
 * elect.c - the per-peer progress table, role changes (each resets the
 * term's state), randomized election timeouts, campaigns with pre-vote, and
 * vote requests (election safety and leader completeness are among the
 * invariants at the top of raft.c).
 */
#include <string.h>

#include "raft/raft_internal.h"

/* ------------------------------------------------------------------ */
/* Election timeouts. */

static uint64_t prng_next(uint64_t *s)
{
	/* splitmix64: tiny, fast, good enough for timeouts, seedable. */
	uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

void rf_reset_timeout(raft *r)
{
	uint32_t et = r->cfg.election_ticks;
	r->timeout = et + (uint32_t)(prng_next(&r->prng) % et);
}

/* ------------------------------------------------------------------ */
/* Progress. */

bool rf_pr_paused(const progress *pr)
{
	switch (pr->state) {
	case PR_PROBE:
		return pr->probe_sent;
	case PR_REPLICATE:
		return pr->infl_n == RAFT_INFLIGHT_MAX;
	default:
		return true;
	}
}

void rf_pr_reset(progress *pr, uint8_t state, uint64_t next)
{
	pr->state = state;
	pr->next = next;
	pr->probe_sent = false;
	pr->infl_start = 0;
	pr->infl_n = 0;
}

void rf_pr_infl_add(progress *pr, uint64_t last)
{
	PL_ASSERT(pr->infl_n < RAFT_INFLIGHT_MAX);
	pr->infl[(pr->infl_start + pr->infl_n) % RAFT_INFLIGHT_MAX] = last;
	pr->infl_n++;
}

void rf_pr_infl_free_le(progress *pr, uint64_t idx)
{
	while (pr->infl_n > 0 && pr->infl[pr->infl_start] <= idx) {
		pr->infl_start = (pr->infl_start + 1) % RAFT_INFLIGHT_MAX;
		pr->infl_n--;
	}
}

/* Rebuilds the progress table for the current configuration, keeping
 * the state of peers that stay. */
void rf_conf_apply(raft *r)
{
	const raft_conf *c = rf_conf_cur(r);
	progress old[RAFT_PEERS_MAX];
	int n_old = r->n_prs;
	memcpy(old, r->prs, sizeof(old[0]) * (size_t)n_old);
	r->n_prs = 0;
	for (int i = 0; i < c->n_voters + c->n_learners; i++) {
		bool learner = i >= c->n_voters;
		uint64_t id =
		    learner ? c->learners[i - c->n_voters] : c->voters[i];
		progress *pr = &r->prs[r->n_prs++];
		memset(pr, 0, sizeof *pr);
		for (int j = 0; j < n_old; j++)
			if (old[j].id == id)
				*pr = old[j];
		if (pr->id == 0) {
			pr->id = id;
			pr->active = true;
			rf_pr_reset(pr, PR_PROBE, rf_last_index(r) + 1);
		}
		pr->learner = learner;
	}
	if (r->transferee != 0 && !raft_conf_is_voter(c, r->transferee))
		r->transferee = 0;
}

/* ------------------------------------------------------------------ */
/* Role changes. */

static void reset_term(raft *r, uint64_t term)
{
	if (term != r->term) {
		PL_ASSERT(term > r->term);
		r->term = term;
		r->vote = 0;
		r->repair_match = 0; /* it matched the old term's leader */
	}
	r->lead = 0;
	r->election_elapsed = 0;
	r->heartbeat_elapsed = 0;
	r->transferee = 0;
	r->ack_to = r->ack_term = r->ack_index = 0;
	rf_reset_timeout(r);
	for (int i = 0; i < r->n_prs; i++) {
		r->prs[i].vote = 0;
		r->prs[i].active = false;
		r->prs[i].match = 0;
		rf_pr_reset(&r->prs[i], PR_PROBE, rf_last_index(r) + 1);
	}
}

void rf_become_follower(raft *r, uint64_t term, uint64_t lead)
{
	reset_term(r, term);
	r->role = RAFT_FOLLOWER;
	r->lead = lead;
}

static void become_pre_candidate(raft *r)
{
	PL_ASSERT(r->role != RAFT_LEADER);
	reset_term(r, r->term); /* keeps term and vote: a pre-vote is free */
	r->role = RAFT_PRE_CANDIDATE;
}

static void become_candidate(raft *r)
{
	PL_ASSERT(r->role != RAFT_LEADER);
	reset_term(r, r->term + 1);
	r->role = RAFT_CANDIDATE;
	r->vote = r->id;
}

static void become_leader(raft *r)
{
	PL_ASSERT(r->role == RAFT_CANDIDATE);
	reset_term(r, r->term);
	r->role = RAFT_LEADER;
	r->lead = r->id;
	for (int i = 0; i < r->n_prs; i++)
		r->prs[i].active = true;
	/* The no-op of the term: committing it commits every earlier entry
	 * (the commit rule counts only entries of the current term). */
	raft_entry e = {.term = r->term, .index = rf_last_index(r) + 1};
	rf_log_append(r, &e, 1, NULL, 0);
	r->term_start = e.index;
	progress *self = rf_pr_find(r, r->id);
	if (self != NULL)
		self->next = e.index + 1;
}

/* ------------------------------------------------------------------ */
/* Elections. */

/* Counts the votes of the configuration's voters: 1 won, -1 lost, 0. */
static int tally(raft *r)
{
	const raft_conf *c = rf_conf_cur(r);
	int yes = 0, no = 0;
	for (int i = 0; i < c->n_voters; i++) {
		progress *pr = rf_pr_find(r, c->voters[i]);
		if (pr != NULL && pr->vote > 0)
			yes++;
		else if (pr != NULL && pr->vote < 0)
			no++;
	}
	if (yes >= rf_quorum(r))
		return 1;
	if (no > c->n_voters - rf_quorum(r))
		return -1;
	return 0;
}

static void campaign(raft *r, bool pre, bool transfer);

void rf_record_vote(raft *r, uint64_t from, bool granted)
{
	progress *pr = rf_pr_find(r, from);
	if (pr != NULL && pr->vote == 0)
		pr->vote = granted ? 1 : -1;
	int res = tally(r);
	if (res < 0) {
		rf_become_follower(r, r->term, 0);
	} else if (res > 0 && r->role == RAFT_PRE_CANDIDATE) {
		campaign(r, false, false);
	} else if (res > 0) {
		become_leader(r);
		rf_bcast_append(r);
	}
}

static void campaign(raft *r, bool pre, bool transfer)
{
	if (pre)
		become_pre_candidate(r);
	else
		become_candidate(r);
	uint64_t term = pre ? r->term + 1 : r->term;
	const raft_conf *c = rf_conf_cur(r);
	for (int i = 0; i < c->n_voters; i++) {
		if (c->voters[i] == r->id)
			continue;
		raft_msg m = {
		    .type = pre ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE,
		    .to = c->voters[i],
		    .term = term,
		    .index = rf_last_index(r),
		    .log_term = rf_last_term(r),
		    .force = transfer,
		};
		rf_send(r, &m);
	}
	/* A repairing replica may lack committed entries it acknowledged, so
	 * its own vote counts against it: it wins only on the votes of a
	 * quorum of others, none repairing (they grant no vote), each of
	 * which holds every committed entry it acknowledged and finds our
	 * log at least as up to date (docs/raft.md, "Damaged logs"). A
	 * replica that left its configuration has no vote in it to count. */
	rf_record_vote(r, r->id, !rf_repairing(r));
}

/* Campaigns if this replica may (rf_may_campaign), unless it leads; a
 * repairing one only on its own timeout (campaign() does not count its
 * vote), not on TIMEOUT_NOW: a leader that transfers is alive, and
 * following it repairs the replica ((B) in rf_repair_check). */
void rf_hup(raft *r, bool transfer)
{
	if (r->role == RAFT_LEADER || !rf_may_campaign(r) ||
	    (transfer && rf_repairing(r)))
		return;
	campaign(r, r->cfg.pre_vote && !transfer, transfer);
}

/* A vote or pre-vote request at a term >= ours (term rules applied). */
void rf_handle_vote(raft *r, const raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE;
	bool can = r->vote == m->from || (r->vote == 0 && r->lead == 0) ||
	           (pre && m->term > r->term);
	int type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
	/* A repairing replica may lack committed entries it acknowledged:
	 * its vote could elect a leader without them. */
	if (can && !rf_repairing(r) &&
	    rf_up_to_date(r, m->log_term, m->index)) {
		rf_send_simple(r, type, m->from, m->term, false);
		if (!pre) {
			r->election_elapsed = 0;
			r->vote = m->from;
		}
	} else {
		rf_send_simple(r, type, m->from, r->term, true);
	}
}
