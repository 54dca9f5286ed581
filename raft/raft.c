/*
 * raft.c - the Raft core: leader election with pre-vote and check-quorum,
 * log replication with fast backtracking, the commit rule, leadership
 * transfer, learners and single-server membership changes, as a pure
 * state machine (see raft.h for the calling contract, docs/raft.md for
 * the design and the proofs we lean on).
 *
 * Invariants kept here (asserted where cheap; the simulation in tests/sim/
 * checks them across replicas after every step):
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
 *    grants no vote and never campaigns until it durably holds its last
 *    durable entry of then again (from any peer), or an entry of a later
 *    term matching its leader's log; so every voter holds every committed
 *    entry it acknowledged for its commit.
 *  - boundedness: every array is sized at raft_new; nothing allocates
 *    afterwards; a full output array drops the message (Raft tolerates a
 *    lost message) and counts it.
 */
#include <stdlib.h>
#include <string.h>

#include "raft/raft.h"

/* Progress states of a peer, as seen by the leader. */
enum { PR_PROBE = 0, PR_REPLICATE, PR_SNAPSHOT };

/* Per-peer replication state on the leader (and vote state on candidates). */
typedef struct progress {
	uint64_t id;
	bool learner;
	uint8_t state;
	bool probe_sent; /* PR_PROBE: an append is out, wait for an answer */
	bool active;     /* heard from since the last quorum check */
	int8_t vote;     /* 0 unknown, 1 granted, -1 refused */
	uint64_t match;  /* highest index known durable and matching there */
	uint64_t next;   /* next index to send */
	uint64_t snap_index;
	uint64_t infl[RAFT_INFLIGHT_MAX]; /* last index of each append out */
	uint8_t infl_start;
	uint8_t infl_n;
} progress;

struct raft {
	raft_config cfg;
	uint64_t id;
	raft_role role;
	uint64_t term;
	uint64_t vote;
	uint64_t lead;
	uint64_t commit;
	uint64_t applied;
	uint64_t persisted; /* entries <= persisted are durable and current */
	uint64_t persisted_term; /* term of entry `persisted` (or above it) */

	/* The log: storage holds [first, stable_last]; unstable entries
	 * [u_off, u_off + u_n) replace anything stored from u_off on. */
	uint64_t stable_last;
	uint64_t u_off;
	size_t u_n;
	raft_entry u_ents[RAFT_UNSTABLE_MAX + 1]; /* +1: the leader no-op */

	/* Configuration: the latest configuration entry in the log (or the
	 * snapshot's, at its index), committed or not. */
	raft_conf conf;
	uint64_t conf_index;
	uint8_t conf_buf[RAFT_CONF_BYTES_MAX]; /* leader's last conf entry */

	progress prs[RAFT_PEERS_MAX];
	int n_prs;

	uint32_t election_elapsed;
	uint32_t heartbeat_elapsed;
	uint32_t timeout; /* randomized election timeout */
	uint64_t prng;
	uint64_t transferee;
	uint64_t term_start; /* leader: index of its term's no-op */

	/* Follower: an append ack waiting for raft_persisted. */
	uint64_t ack_to, ack_term, ack_index;

	/* Output of the current round. */
	raft_msg msgs[RAFT_MSGS_MAX];
	size_t n_msgs;
	raft_entry msg_ents[RAFT_MSG_ENTS_POOL];
	size_t n_msg_ents;
	raft_entry apply_ents[RAFT_APPLY_MAX];
	size_t n_apply;
	raft_hard_state prev_hs;
	bool in_ready;

	uint64_t dropped_msgs;
	pl_status storage_err;
	uint64_t storage_errs; /* storage errors seen (NOT_FOUND aside) */

	/* A damaged log under repair (to == 0: none), and the highest index
	 * known to match the log of the leader of this term. */
	raft_repair repair;
	uint64_t repair_match;
	/* Replicas to ask besides the configuration's members. */
	uint64_t repair_peers[RAFT_REPAIR_PEERS_MAX];
	size_t n_repair_peers;
};

/* ------------------------------------------------------------------ */
/* Small utilities. */

static uint64_t prng_next(uint64_t *s)
{
	/* splitmix64: tiny, fast, good enough for timeouts, seedable. */
	uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static void reset_timeout(raft *r)
{
	uint32_t et = r->cfg.election_ticks;
	r->timeout = et + (uint32_t)(prng_next(&r->prng) % et);
}

static void storage_failed(raft *r, pl_status st)
{
	if (st != PL_E_NOT_FOUND) {
		r->storage_err = st;
		r->storage_errs++;
	}
}

static void send(raft *r, const raft_msg *m)
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

static void send_simple(
    raft *r, int type, uint64_t to, uint64_t term, bool reject)
{
	raft_msg m = {
	    .type = (uint8_t)type, .to = to, .term = term, .reject = reject};
	send(r, &m);
}

/* ------------------------------------------------------------------ */
/* Configurations. */

bool raft_conf_is_voter(const raft_conf *c, uint64_t id)
{
	for (int i = 0; i < c->n_voters; i++)
		if (c->voters[i] == id)
			return true;
	return false;
}

bool raft_conf_is_learner(const raft_conf *c, uint64_t id)
{
	for (int i = 0; i < c->n_learners; i++)
		if (c->learners[i] == id)
			return true;
	return false;
}

static bool conf_valid(const raft_conf *c)
{
	if (c->n_voters < 1 || c->n_voters + c->n_learners > RAFT_PEERS_MAX)
		return false;
	uint64_t ids[RAFT_PEERS_MAX];
	int n = 0;
	for (int i = 0; i < c->n_voters; i++)
		ids[n++] = c->voters[i];
	for (int i = 0; i < c->n_learners; i++)
		ids[n++] = c->learners[i];
	for (int i = 0; i < n; i++) {
		if (ids[i] == 0)
			return false;
		for (int j = 0; j < i; j++)
			if (ids[i] == ids[j])
				return false;
	}
	return true;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

size_t raft_conf_encode(const raft_conf *c, uint8_t out[RAFT_CONF_BYTES_MAX])
{
	PL_ASSERT(conf_valid(c));
	size_t n = 0;
	out[n++] = 1; /* version */
	out[n++] = c->n_voters;
	out[n++] = c->n_learners;
	for (int i = 0; i < c->n_voters; i++, n += 8)
		put_u64(out + n, c->voters[i]);
	for (int i = 0; i < c->n_learners; i++, n += 8)
		put_u64(out + n, c->learners[i]);
	return n;
}

pl_status raft_conf_decode(const uint8_t *p, size_t len, raft_conf *c)
{
	if (p == NULL || len < 3 || p[0] != 1)
		return PL_E_PROTO;
	size_t nv = p[1], nl = p[2];
	if (nv + nl > RAFT_PEERS_MAX || len != 3 + 8 * (nv + nl))
		return PL_E_PROTO;
	raft_conf t;
	memset(&t, 0, sizeof t);
	t.n_voters = (uint8_t)nv;
	t.n_learners = (uint8_t)nl;
	for (size_t i = 0; i < nv; i++)
		t.voters[i] = get_u64(p + 3 + 8 * i);
	for (size_t i = 0; i < nl; i++)
		t.learners[i] = get_u64(p + 3 + 8 * (nv + i));
	if (!conf_valid(&t))
		return PL_E_PROTO;
	*c = t;
	return PL_OK;
}

static const raft_conf *conf_cur(const raft *r)
{
	return &r->conf;
}

static int quorum(const raft *r)
{
	return conf_cur(r)->n_voters / 2 + 1;
}

static progress *pr_find(raft *r, uint64_t id)
{
	for (int i = 0; i < r->n_prs; i++)
		if (r->prs[i].id == id)
			return &r->prs[i];
	return NULL;
}

static bool promotable(const raft *r)
{
	return raft_conf_is_voter(conf_cur(r), r->id);
}

static bool repairing(const raft *r)
{
	return r->repair.to > 0;
}

/* ------------------------------------------------------------------ */
/* The log. */

static uint64_t first_index(const raft *r)
{
	return r->cfg.storage->first_index(r->cfg.storage_ctx);
}

static uint64_t last_index(const raft *r)
{
	return r->u_n > 0 ? r->u_off + r->u_n - 1 : r->stable_last;
}

/* Term of entry i, or of the snapshot when i == first - 1. */
static pl_status log_term(raft *r, uint64_t i, uint64_t *t)
{
	if (r->u_n > 0 && i >= r->u_off) {
		if (i >= r->u_off + r->u_n)
			return PL_E_NOT_FOUND;
		*t = r->u_ents[i - r->u_off].term;
		return PL_OK;
	}
	if (i > r->stable_last || i + 1 < first_index(r))
		return PL_E_NOT_FOUND;
	pl_status st = r->cfg.storage->term_at(r->cfg.storage_ctx, i, t);
	if (st != PL_OK)
		storage_failed(r, st);
	return st;
}

static uint64_t last_term(raft *r)
{
	uint64_t t = 0;
	if (log_term(r, last_index(r), &t) != PL_OK)
		return 0;
	return t;
}

/* Term of entry i, or `otherwise` when it cannot be read. */
static uint64_t term_or(raft *r, uint64_t i, uint64_t otherwise)
{
	uint64_t t;
	return log_term(r, i, &t) == PL_OK ? t : otherwise;
}

static bool match_term(raft *r, uint64_t i, uint64_t t)
{
	uint64_t have;
	return log_term(r, i, &have) == PL_OK && have == t;
}

/* A candidate's log (last term lt, last index li) is at least as up to
 * date as ours. False when our last term cannot be read: a vote is never
 * granted on a guess. */
static bool up_to_date(raft *r, uint64_t lt, uint64_t li)
{
	uint64_t my;
	if (log_term(r, last_index(r), &my) != PL_OK)
		return false;
	return lt > my || (lt == my && li >= last_index(r));
}

/* Entries [lo, hi) into out (cap slots), at most max_bytes of payload
 * (at least one entry). Storage first, then the unstable tail. */
static pl_status log_entries(raft *r, uint64_t lo, uint64_t hi,
    size_t max_bytes, raft_entry *out, size_t cap, size_t *n)
{
	PL_ASSERT(lo <= hi && hi <= last_index(r) + 1 && cap > 0);
	size_t k = 0, bytes = 0;
	uint64_t stable_hi = r->u_n > 0 ? r->u_off : r->stable_last + 1;
	if (lo < stable_hi) {
		uint64_t shi = hi < stable_hi ? hi : stable_hi;
		pl_status st = r->cfg.storage->entries(
		    r->cfg.storage_ctx, lo, shi, max_bytes, out, cap, &k);
		if (st != PL_OK) {
			storage_failed(r, st);
			return st;
		}
		if (k == 0 || k > cap || out[0].index != lo) {
			storage_failed(r, PL_E_CORRUPT);
			return PL_E_CORRUPT;
		}
		for (size_t i = 0; i < k; i++)
			bytes += out[i].len;
		if (lo + k < shi) {
			*n = k;
			return PL_OK;
		}
	}
	for (uint64_t i = lo + k; i < hi && k < cap; i++) {
		const raft_entry *e = &r->u_ents[i - r->u_off];
		if (k > 0 && bytes + e->len > max_bytes)
			break;
		bytes += e->len;
		out[k++] = *e;
	}
	*n = k;
	return PL_OK;
}

static void conf_apply(raft *r);

/* The configuration in force at index upto: that of the latest
 * configuration entry <= upto, else the snapshot's. Reads the log
 * backwards; configuration entries are rare, truncations too. */
static pl_status conf_at(raft *r, uint64_t upto, raft_conf *c, uint64_t *ci)
{
	uint64_t lo = first_index(r);
	for (uint64_t i = upto; i >= lo && i > 0; i--) {
		raft_entry e;
		size_t n = 0;
		pl_status st = log_entries(r, i, i + 1, SIZE_MAX, &e, 1, &n);
		if (st != PL_OK)
			return st;
		if (e.type != RAFT_ENTRY_CONF)
			continue;
		if (raft_conf_decode(e.data, e.len, c) != PL_OK)
			return PL_E_CORRUPT;
		*ci = i;
		return PL_OK;
	}
	raft_hard_state hs;
	uint64_t si, sterm;
	pl_status st =
	    r->cfg.storage->load(r->cfg.storage_ctx, &hs, &si, &sterm, c);
	if (st != PL_OK)
		return st;
	if (!conf_valid(c) || si + 1 != lo)
		return PL_E_CORRUPT;
	*ci = si;
	return PL_OK;
}

/* Appends ents (validated, contiguous) to the log, replacing every entry
 * at index >= ents[0].index. Never touches committed entries. When the
 * replaced entries held the configuration in force, *revert is the one
 * in force before them (conf_at) and revert_index its index. */
static void log_append(raft *r, const raft_entry *ents, size_t n,
    const raft_conf *revert, uint64_t revert_index)
{
	uint64_t from = ents[0].index;
	PL_ASSERT(from > r->commit && from <= last_index(r) + 1);
	PL_ASSERT((r->conf_index >= from) == (revert != NULL));
	if (r->u_n == 0 || from <= r->u_off) {
		r->u_off = from;
		r->u_n = 0;
	} else {
		r->u_n = (size_t)(from - r->u_off);
	}
	PL_ASSERT(r->u_n + n <= PL_ARRAY_LEN(r->u_ents));
	if (from <= r->persisted) {
		/* Read before the tail changes; ents[0].term bounds it. */
		r->persisted_term = term_or(r, from - 1, ents[0].term);
		r->persisted = from - 1;
	}
	if (from <= r->repair_match)
		r->repair_match = from - 1;
	if (revert != NULL) {
		r->conf = *revert;
		r->conf_index = revert_index;
	}
	bool conf_changed = revert != NULL;
	for (size_t i = 0; i < n; i++) {
		PL_ASSERT(ents[i].index == from + i);
		r->u_ents[r->u_n++] = ents[i];
		if (ents[i].type != RAFT_ENTRY_CONF)
			continue;
		PL_ASSERT(raft_conf_decode(
		              ents[i].data, ents[i].len, &r->conf) == PL_OK);
		r->conf_index = ents[i].index;
		conf_changed = true;
	}
	if (conf_changed)
		conf_apply(r);
}

static void commit_to(raft *r, uint64_t c)
{
	if (c <= r->commit)
		return;
	PL_ASSERT(c <= last_index(r)); /* commit never passes the log */
	r->commit = c;
}

/* ------------------------------------------------------------------ */
/* Progress. */

static bool pr_paused(const progress *pr)
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

static void pr_reset(progress *pr, uint8_t state, uint64_t next)
{
	pr->state = state;
	pr->next = next;
	pr->probe_sent = false;
	pr->infl_start = 0;
	pr->infl_n = 0;
}

static void pr_infl_add(progress *pr, uint64_t last)
{
	PL_ASSERT(pr->infl_n < RAFT_INFLIGHT_MAX);
	pr->infl[(pr->infl_start + pr->infl_n) % RAFT_INFLIGHT_MAX] = last;
	pr->infl_n++;
}

static void pr_infl_free_le(progress *pr, uint64_t idx)
{
	while (pr->infl_n > 0 && pr->infl[pr->infl_start] <= idx) {
		pr->infl_start = (pr->infl_start + 1) % RAFT_INFLIGHT_MAX;
		pr->infl_n--;
	}
}

/* Rebuilds the progress table for the current configuration, keeping
 * the state of peers that stay. */
static void conf_apply(raft *r)
{
	const raft_conf *c = conf_cur(r);
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
			pr_reset(pr, PR_PROBE, last_index(r) + 1);
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
	reset_timeout(r);
	for (int i = 0; i < r->n_prs; i++) {
		r->prs[i].vote = 0;
		r->prs[i].active = false;
		r->prs[i].match = 0;
		pr_reset(&r->prs[i], PR_PROBE, last_index(r) + 1);
	}
}

static void become_follower(raft *r, uint64_t term, uint64_t lead)
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

static void bcast_append(raft *r);

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
	raft_entry e = {.term = r->term, .index = last_index(r) + 1};
	log_append(r, &e, 1, NULL, 0);
	r->term_start = e.index;
	progress *self = pr_find(r, r->id);
	if (self != NULL)
		self->next = e.index + 1;
}

/* ------------------------------------------------------------------ */
/* Elections. */

/* Counts the votes of the configuration's voters: 1 won, -1 lost, 0. */
static int tally(raft *r)
{
	const raft_conf *c = conf_cur(r);
	int yes = 0, no = 0;
	for (int i = 0; i < c->n_voters; i++) {
		progress *pr = pr_find(r, c->voters[i]);
		if (pr != NULL && pr->vote > 0)
			yes++;
		else if (pr != NULL && pr->vote < 0)
			no++;
	}
	if (yes >= quorum(r))
		return 1;
	if (no > c->n_voters - quorum(r))
		return -1;
	return 0;
}

static void campaign(raft *r, bool pre, bool transfer);

static void record_vote(raft *r, uint64_t from, bool granted)
{
	progress *pr = pr_find(r, from);
	if (pr != NULL && pr->vote == 0)
		pr->vote = granted ? 1 : -1;
	int res = tally(r);
	if (res < 0) {
		become_follower(r, r->term, 0);
	} else if (res > 0 && r->role == RAFT_PRE_CANDIDATE) {
		campaign(r, false, false);
	} else if (res > 0) {
		become_leader(r);
		bcast_append(r);
	}
}

static void campaign(raft *r, bool pre, bool transfer)
{
	if (pre)
		become_pre_candidate(r);
	else
		become_candidate(r);
	uint64_t term = pre ? r->term + 1 : r->term;
	const raft_conf *c = conf_cur(r);
	for (int i = 0; i < c->n_voters; i++) {
		if (c->voters[i] == r->id)
			continue;
		raft_msg m = {
		    .type = pre ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE,
		    .to = c->voters[i],
		    .term = term,
		    .index = last_index(r),
		    .log_term = last_term(r),
		    .force = transfer,
		};
		send(r, &m);
	}
	record_vote(r, r->id, true);
}

static void hup(raft *r, bool transfer)
{
	if (r->role == RAFT_LEADER || !promotable(r) || repairing(r))
		return;
	campaign(r, r->cfg.pre_vote && !transfer, transfer);
}

/* A vote or pre-vote request at a term >= ours (term rules applied). */
static void handle_vote(raft *r, const raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE;
	bool can = r->vote == m->from || (r->vote == 0 && r->lead == 0) ||
	           (pre && m->term > r->term);
	int type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
	/* A repairing replica may lack committed entries it acknowledged:
	 * its vote could elect a leader without them. */
	if (can && !repairing(r) && up_to_date(r, m->log_term, m->index)) {
		send_simple(r, type, m->from, m->term, false);
		if (!pre) {
			r->election_elapsed = 0;
			r->vote = m->from;
		}
	} else {
		send_simple(r, type, m->from, r->term, true);
	}
}

/* ------------------------------------------------------------------ */
/* Leader: replication. */

static void send_snapshot(raft *r, progress *pr)
{
	uint64_t si = first_index(r) - 1, st;
	if (log_term(r, si, &st) != PL_OK)
		return;
	pr_reset(pr, PR_SNAPSHOT, pr->next);
	pr->snap_index = si;
	raft_msg m = {
	    .type = RAFT_MSG_SNAP, .to = pr->id, .index = si, .log_term = st};
	send(r, &m);
}

/* Sends one append to pr if its flow allows; empty ones only when
 * allow_empty (probes and commit updates). True when one was sent. */
static bool send_append(raft *r, progress *pr, bool allow_empty)
{
	if (pr->id == r->id || pr_paused(pr) || r->n_msgs == RAFT_MSGS_MAX)
		return false;
	uint64_t prev = pr->next - 1, prev_term;
	pl_status st = log_term(r, prev, &prev_term);
	if (st == PL_E_NOT_FOUND && prev + 1 < first_index(r)) {
		send_snapshot(r, pr);
		return false;
	}
	if (st != PL_OK)
		return false;
	size_t n = 0, room = RAFT_MSG_ENTS_POOL - r->n_msg_ents;
	raft_entry *ents = &r->msg_ents[r->n_msg_ents];
	if (pr->next <= last_index(r) && room > 0) {
		size_t cap =
		    room < RAFT_MSG_ENTRIES_MAX ? room : RAFT_MSG_ENTRIES_MAX;
		if (log_entries(r, pr->next, last_index(r) + 1,
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
	send(r, &m);
	r->n_msg_ents += n;
	if (pr->state == PR_REPLICATE && n > 0) {
		pr->next = ents[n - 1].index + 1;
		pr_infl_add(pr, ents[n - 1].index);
	} else if (pr->state == PR_PROBE) {
		pr->probe_sent = true;
	}
	return true;
}

static void bcast_append(raft *r)
{
	for (int i = 0; i < r->n_prs; i++)
		send_append(r, &r->prs[i], true);
}

static void bcast_heartbeat(raft *r)
{
	for (int i = 0; i < r->n_prs; i++) {
		progress *pr = &r->prs[i];
		if (pr->id == r->id)
			continue;
		uint64_t c = pr->match < r->commit ? pr->match : r->commit;
		raft_msg m = {
		    .type = RAFT_MSG_HEARTBEAT, .to = pr->id, .commit = c};
		send(r, &m);
	}
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* The commit rule: the highest index a quorum of voters holds durably,
 * if it is of this term. True when commit moved. */
static bool maybe_commit(raft *r)
{
	const raft_conf *c = conf_cur(r);
	uint64_t m[RAFT_PEERS_MAX];
	int n = 0;
	for (int i = 0; i < c->n_voters; i++) {
		progress *pr = pr_find(r, c->voters[i]);
		PL_ASSERT(pr != NULL);
		m[n++] = pr->id == r->id ? r->persisted : pr->match;
	}
	qsort(m, (size_t)n, sizeof m[0], cmp_desc);
	uint64_t q = m[quorum(r) - 1], t;
	if (q <= r->commit || log_term(r, q, &t) != PL_OK || t != r->term)
		return false;
	commit_to(r, q);
	/* A leader that the committed configuration removed steps down. */
	if (r->commit >= r->conf_index && !raft_conf_is_voter(&r->conf, r->id))
		become_follower(r, r->term, 0);
	return true;
}

static void maybe_send_timeout_now(raft *r, progress *pr)
{
	if (r->transferee == pr->id && pr->match == last_index(r))
		send_simple(r, RAFT_MSG_TIMEOUT_NOW, pr->id, 0, false);
}

/* Largest index <= i whose term is <= t (fast backtracking). */
static uint64_t conflict_by_term(raft *r, uint64_t i, uint64_t t)
{
	uint64_t lo = first_index(r) - 1, have;
	while (i > lo) {
		if (log_term(r, i, &have) != PL_OK || have <= t)
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
		pr_reset(pr, PR_PROBE, pr->match + 1);
	} else if (pr->state == PR_PROBE) {
		if (pr->next - 1 != m->index)
			return; /* stale */
		uint64_t nx = m->index < probe + 1 ? m->index : probe + 1;
		pr_reset(pr, PR_PROBE, nx > pr->match + 1 ? nx : pr->match + 1);
	} else {
		return;
	}
	send_append(r, pr, true);
}

static void handle_app_resp(raft *r, progress *pr, const raft_msg *m)
{
	pr->active = true;
	if (m->reject) {
		handle_app_reject(r, pr, m);
		return;
	}
	if (m->index > last_index(r)) {
		r->dropped_msgs++; /* acks what we never sent */
		return;
	}
	if (m->index > pr->match) {
		pr->match = m->index;
		if (pr->next <= m->index)
			pr->next = m->index + 1;
		if (pr->state == PR_PROBE ||
		    (pr->state == PR_SNAPSHOT && pr->match >= pr->snap_index))
			pr_reset(pr, PR_REPLICATE, pr->match + 1);
		pr_infl_free_le(pr, m->index);
		if (maybe_commit(r)) {
			if (r->role != RAFT_LEADER)
				return;
			bcast_append(r); /* carries the new commit index */
		}
	}
	while (send_append(r, pr, false))
		;
	maybe_send_timeout_now(r, pr);
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
			pr_reset(pr, PR_PROBE, m->index + 1);
	}
	/* A lost append leaves its slot taken: free one so the pipe moves
	 * again (the follower rejects the gap and we probe). */
	if (pr->state == PR_REPLICATE && pr->infl_n == RAFT_INFLIGHT_MAX)
		pr_infl_free_le(pr, pr->infl[pr->infl_start]);
	/* A repairing follower needs an append to confirm its log matches
	 * ours, even an empty one when it is up to date. */
	if (pr->match < last_index(r) || m->reject)
		send_append(r, pr, true);
}

static void step_leader(raft *r, const raft_msg *m)
{
	progress *pr = pr_find(r, m->from);
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
		send(r, &m);
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
	uint64_t hint = m->index < last_index(r) ? m->index : last_index(r);
	if (hint < r->commit)
		hint = r->commit;
	hint = conflict_by_term(r, hint, m->log_term);
	uint64_t ht = 0;
	if (log_term(r, hint, &ht) != PL_OK)
		ht = 0;
	raft_msg o = {.type = RAFT_MSG_APP_RESP,
	    .to = m->from,
	    .reject = true,
	    .index = m->index,
	    .hint = hint,
	    .log_term = ht};
	send(r, &o);
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
	if (revert && conf_at(r, from - 1, &c, &ci) != PL_OK)
		return 0;
	log_append(r, m->ents + k, n, revert ? &c : NULL, ci);
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
	if (!match_term(r, m->index, m->log_term)) {
		if (r->storage_errs == errs)
			reject_append(r, m);
		else
			r->dropped_msgs++;
		return;
	}
	size_t k = 0; /* first entry not already in the log */
	while (
	    k < m->n_ents && match_term(r, m->ents[k].index, m->ents[k].term))
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
	commit_to(r, m->commit < lastnew ? m->commit : lastnew);
	if (lastnew > r->repair_match)
		r->repair_match = lastnew;
	ack_append(r, m->from, lastnew);
}

static void step_follower(raft *r, const raft_msg *m)
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
		if (repairing(r)) {
			/* The leader may count entries we lost (its commit
			 * hint can pass our log): say what we hold. Commit
			 * is learnt from appends, which check the log. */
			raft_msg o = {.type = RAFT_MSG_HEARTBEAT_RESP,
			    .to = m->from,
			    .reject = true,
			    .index = r->persisted};
			send(r, &o);
			return;
		}
		if (m->commit > last_index(r)) {
			r->dropped_msgs++;
			return;
		}
		commit_to(r, m->commit);
		send_simple(r, RAFT_MSG_HEARTBEAT_RESP, m->from, 0, false);
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		hup(r, true);
		break;
	default:
		break;
	}
}

static void step_candidate(raft *r, const raft_msg *m)
{
	bool pre = r->role == RAFT_PRE_CANDIDATE;
	switch (m->type) {
	case RAFT_MSG_APP:
	case RAFT_MSG_HEARTBEAT:
		/* A leader of our term exists: follow it. */
		become_follower(r, m->term, m->from);
		step_follower(r, m);
		break;
	case RAFT_MSG_VOTE_RESP:
		if (!pre)
			record_vote(r, m->from, !m->reject);
		break;
	case RAFT_MSG_PREVOTE_RESP:
		/* Granted pre-votes carry the term we would campaign in. */
		if (pre && (m->reject || m->term == r->term + 1))
			record_vote(r, m->from, !m->reject);
		break;
	default:
		break;
	}
}

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
static void repair_check(raft *r)
{
	if (!repairing(r) || r->commit < r->applied)
		return;
	uint64_t t;
	bool done = r->persisted >= r->repair.to &&
	            log_term(r, r->repair.to, &t) == PL_OK &&
	            t == r->repair.term;
	uint64_t x =
	    r->repair_match < r->persisted ? r->repair_match : r->persisted;
	if (!done && r->role == RAFT_FOLLOWER && x > 0 &&
	    r->term > r->repair.term && log_term(r, x, &t) == PL_OK)
		done = t == r->term;
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
static void repair_ask(raft *r, uint64_t to)
{
	raft_msg m = {.type = RAFT_MSG_REPAIR,
	    .index = last_index(r),
	    .hint = r->repair.to,
	    .commit = r->repair.term};
	if (m.index >= m.hint || log_term(r, m.index, &m.log_term) != PL_OK)
		return;
	if (to != 0) {
		m.to = to;
		send(r, &m);
		return;
	}
	for (int i = 0; i < r->n_prs; i++) {
		m.to = r->prs[i].id;
		if (m.to != r->id)
			send(r, &m);
	}
	for (size_t i = 0; i < r->n_repair_peers; i++) {
		m.to = r->repair_peers[i];
		if (pr_find(r, m.to) == NULL)
			send(r, &m);
	}
}

/* Any peer, any role, any term: serves a repair from its log if that
 * holds the repairing replica's entry and matches its last one. */
static void handle_repair(raft *r, const raft_msg *m)
{
	if (m->hint > last_index(r) || !match_term(r, m->hint, m->commit) ||
	    !match_term(r, m->index, m->log_term))
		return;
	size_t n = 0, room = RAFT_MSG_ENTS_POOL - r->n_msg_ents;
	raft_entry *ents = &r->msg_ents[r->n_msg_ents];
	if (room == 0 || r->n_msgs == RAFT_MSGS_MAX)
		return;
	if (log_entries(r, m->index + 1, m->hint + 1, r->cfg.msg_bytes_max,
	        ents, room < RAFT_MSG_ENTRIES_MAX ? room : RAFT_MSG_ENTRIES_MAX,
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
	send(r, &o);
	r->n_msg_ents += n;
}

/* The repairing replica extends its log with a peer's entries: only
 * after its last entry (nothing it holds is replaced), only for the
 * repair under way. */
static void handle_repair_resp(raft *r, const raft_msg *m)
{
	if (!repairing(r) || m->hint != r->repair.to ||
	    m->index != last_index(r))
		return;
	const raft_entry *e = &m->ents[m->n_ents - 1];
	if (e->term > r->repair.term ||
	    (e->index == r->repair.to && e->term != r->repair.term))
		return; /* not a log that leads to our entry */
	uint64_t errs = r->storage_errs;
	if (!match_term(r, m->index, m->log_term) || r->storage_errs != errs)
		return;
	size_t n = m->n_ents;
	if (r->u_n + n > RAFT_UNSTABLE_MAX)
		n = r->u_n < RAFT_UNSTABLE_MAX ? RAFT_UNSTABLE_MAX - r->u_n : 0;
	if (n == 0)
		return;
	log_append(r, m->ents, n, NULL, 0);
	uint64_t lastnew = m->index + n;
	commit_to(r, m->commit < lastnew ? m->commit : lastnew);
	if (lastnew < r->repair.to)
		repair_ask(r, m->from);
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
		become_follower(r, m->term, from_leader ? m->from : 0);
		return true;
	}
	if (m->term < r->term) {
		if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
		    (t == RAFT_MSG_APP || t == RAFT_MSG_HEARTBEAT)) {
			/* Tell a stale leader about our term: without this a
			 * leader cut off by pre-vote would never learn it. */
			send_simple(r, RAFT_MSG_APP_RESP, m->from, 0, false);
		} else if (t == RAFT_MSG_PREVOTE) {
			send_simple(r, RAFT_MSG_PREVOTE_RESP, m->from, 0, true);
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
		handle_repair(r, m);
		return PL_OK;
	}
	if (m->type == RAFT_MSG_REPAIR_RESP) {
		handle_repair_resp(r, m);
		repair_check(r);
		return PL_OK;
	}
	if (!step_term(r, m))
		return PL_OK;
	if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
		handle_vote(r, m);
		return PL_OK;
	}
	switch (r->role) {
	case RAFT_LEADER:
		step_leader(r, m);
		break;
	case RAFT_FOLLOWER:
		step_follower(r, m);
		break;
	default:
		step_candidate(r, m);
		break;
	}
	repair_check(r);
	return PL_OK;
}

static bool quorum_active(raft *r)
{
	const raft_conf *c = conf_cur(r);
	int n = 0;
	for (int i = 0; i < c->n_voters; i++) {
		progress *pr = pr_find(r, c->voters[i]);
		if (pr != NULL && (pr->active || pr->id == r->id))
			n++;
	}
	return n >= quorum(r);
}

static void tick_leader(raft *r)
{
	r->heartbeat_elapsed++;
	r->election_elapsed++;
	if (r->election_elapsed >= r->cfg.election_ticks) {
		r->election_elapsed = 0;
		if (r->cfg.check_quorum && !quorum_active(r)) {
			become_follower(r, r->term, 0);
			return;
		}
		for (int i = 0; i < r->n_prs; i++)
			r->prs[i].active = false;
		r->transferee = 0; /* a transfer that did not finish */
	}
	if (r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
		r->heartbeat_elapsed = 0;
		bcast_heartbeat(r);
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
	/* Only a node that campaigns restarts its timer: one that cannot (a
	 * learner, maybe promoted without knowing it yet; a repairing one)
	 * must see the lease of a silent leader run out, or it would ignore
	 * every vote request while that leader is gone. */
	if (r->election_elapsed >= r->timeout && promotable(r) &&
	    !repairing(r)) {
		r->election_elapsed = 0;
		hup(r, false);
	}
	/* Repairing and no leader heard for a while: ask the peers. */
	if (repairing(r) && r->election_elapsed >= r->cfg.election_ticks &&
	    r->election_elapsed % r->cfg.election_ticks == 0)
		repair_ask(r, 0);
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
	    .index = last_index(r) + 1,
	    .type = RAFT_ENTRY_NORMAL,
	    .data = data,
	    .len = len};
	log_append(r, &e, 1, NULL, 0);
	for (int i = 0; i < r->n_prs; i++)
		send_append(r, &r->prs[i], false);
	*index = e.index;
	*term = e.term;
	return PL_OK;
}

/* The configuration a single-server change leads to, into *out. */
static pl_status conf_change(
    const raft_conf *c, raft_conf_op op, uint64_t node, raft_conf *out)
{
	raft_conf t = *c;
	bool voter = raft_conf_is_voter(c, node);
	bool learner = raft_conf_is_learner(c, node);
	switch (op) {
	case RAFT_CONF_ADD_VOTER:
	case RAFT_CONF_ADD_LEARNER:
		if (node == 0 || voter || learner ||
		    t.n_voters + t.n_learners >= RAFT_PEERS_MAX)
			return PL_E_BAD_REQUEST;
		if (op == RAFT_CONF_ADD_VOTER)
			t.voters[t.n_voters++] = node;
		else
			t.learners[t.n_learners++] = node;
		break;
	case RAFT_CONF_PROMOTE:
	case RAFT_CONF_REMOVE:
		if (!learner && !(voter && op == RAFT_CONF_REMOVE))
			return PL_E_BAD_REQUEST;
		if (voter && t.n_voters == 1)
			return PL_E_BAD_REQUEST; /* the last voter stays */
		t.n_voters = t.n_learners = 0;
		for (int i = 0; i < c->n_voters; i++)
			if (c->voters[i] != node)
				t.voters[t.n_voters++] = c->voters[i];
		for (int i = 0; i < c->n_learners; i++)
			if (c->learners[i] != node)
				t.learners[t.n_learners++] = c->learners[i];
		if (op == RAFT_CONF_PROMOTE)
			t.voters[t.n_voters++] = node;
		break;
	default:
		return PL_E_BAD_REQUEST;
	}
	PL_ASSERT(conf_valid(&t));
	*out = t;
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
	pl_status st = conf_change(conf_cur(r), op, node, &nc);
	if (st != PL_OK)
		return st;
	/* conf_buf outlives the entry's stay in the unstable log: no other
	 * change can be appended before this one is committed, and it is
	 * written to storage by the next raft_advance. */
	size_t len = raft_conf_encode(&nc, r->conf_buf);
	raft_entry e = {.term = r->term,
	    .index = last_index(r) + 1,
	    .type = RAFT_ENTRY_CONF,
	    .data = r->conf_buf,
	    .len = len};
	log_append(r, &e, 1, NULL, 0);
	for (int i = 0; i < r->n_prs; i++)
		send_append(r, &r->prs[i], true);
	*index = e.index;
	*term = e.term;
	return PL_OK;
}

pl_status raft_transfer_leader(raft *r, uint64_t to)
{
	PL_ASSERT(!r->in_ready);
	if (r->role != RAFT_LEADER)
		return PL_E_NOT_LEADER;
	if (to == r->id || !raft_conf_is_voter(conf_cur(r), to))
		return PL_E_BAD_REQUEST;
	progress *pr = pr_find(r, to);
	PL_ASSERT(pr != NULL);
	r->transferee = to;
	r->election_elapsed = 0; /* the transfer has one election timeout */
	if (pr->match == last_index(r))
		maybe_send_timeout_now(r, pr);
	else
		send_append(r, pr, true);
	return PL_OK;
}

void raft_persisted(raft *r, uint64_t index, uint64_t term)
{
	PL_ASSERT(!r->in_ready);
	if (index <= r->persisted || index > r->stable_last)
		return;
	if (r->u_n > 0 && index >= r->u_off)
		return; /* about to be overwritten: the report is stale */
	if (!match_term(r, index, term))
		return;
	r->persisted = index;
	r->persisted_term = term;
	repair_check(r);
	if (r->role == RAFT_LEADER) {
		if (maybe_commit(r) && r->role == RAFT_LEADER)
			bcast_append(r);
		return;
	}
	if (r->ack_index != 0 && r->ack_term == r->term &&
	    r->role == RAFT_FOLLOWER) {
		uint64_t a = r->ack_index < index ? r->ack_index : index;
		raft_msg m = {
		    .type = RAFT_MSG_APP_RESP, .to = r->ack_to, .index = a};
		send(r, &m);
		if (a == r->ack_index)
			r->ack_index = 0;
	}
}

void raft_snapshot_done(raft *r, uint64_t peer, bool ok)
{
	PL_ASSERT(!r->in_ready);
	progress *pr = pr_find(r, peer);
	if (r->role != RAFT_LEADER || pr == NULL || pr->state != PR_SNAPSHOT)
		return;
	uint64_t next = ok ? pr->snap_index + 1 : pr->next;
	pr_reset(pr, PR_PROBE, next > pr->match + 1 ? next : pr->match + 1);
	pr->probe_sent = ok; /* wait for the follower's ack of the snapshot */
}

pl_status raft_snapshot_restore(raft *r, uint64_t from, uint64_t term_from,
    uint64_t index, uint64_t term, const raft_conf *conf)
{
	PL_ASSERT(!r->in_ready);
	if (!conf_valid(conf))
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
	conf_apply(r);
	if (term_from == r->term && r->role == RAFT_FOLLOWER) {
		raft_msg m = {
		    .type = RAFT_MSG_APP_RESP, .to = from, .index = index};
		send(r, &m);
	}
	return PL_OK;
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
	if (bad_index == 0 || bad_index < first_index(r) ||
	    bad_index > r->stable_last)
		return PL_E_BAD_REQUEST;
	uint64_t keep = bad_index - 1;
	/* Read everything needed below the damage before changing state, so
	 * that an error leaves the core as it was. */
	raft_conf c;
	uint64_t ci = 0, keep_term = 0;
	pl_status st = log_term(r, keep, &keep_term);
	if (st == PL_OK && r->conf_index > keep)
		st = conf_at(r, keep, &c, &ci);
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
		conf_apply(r);
	}
	if (r->role != RAFT_FOLLOWER)
		become_follower(r, r->term, 0);
	repair_check(r); /* only unsynced entries lost: nothing to repair */
	*rep = r->repair;
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
		if (log_entries(r, r->applied + 1, hi + 1, max, r->apply_ents,
		        RAFT_APPLY_MAX, &n) == PL_OK)
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
	if (repairing(r) && hs.commit > last)
		hs.commit = last; /* entries lost to damage: relearn commit */
	if (!conf_valid(&r->conf) || first != si + 1 || last < si ||
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
	if (r->applied > r->commit && !repairing(r))
		return PL_E_CORRUPT;
	st = log_term(r, last, &r->persisted_term);
	if (st != PL_OK)
		return st;
	st = conf_at(r, last, &r->conf, &r->conf_index);
	if (st != PL_OK)
		return st;
	conf_apply(r);
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
	reset_timeout(r);
	repair_check(r); /* repaired before the driver cleared its record */
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
	st->last_index = last_index(r);
	st->first_index = r->cfg.storage->first_index(r->cfg.storage_ctx);
	st->conf = *conf_cur(r);
	st->transferee = r->transferee;
	st->dropped_msgs = r->dropped_msgs;
	st->storage_err = r->storage_err;
	st->repairing = repairing(r);
	st->repair = r->repair;
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
