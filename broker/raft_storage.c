/*
 * raft_storage.c - the Raft core's storage, read through the store (the
 * core asks for hard state, log bounds, terms and entries through these
 * callbacks; it writes nothing itself), the core's start, and damaged
 * logs: every entry's CRC is checked before the core starts and again
 * whenever a read meets a bad one; the log is cut at the first bad entry
 * and, when that entry was durable, a repair record keeps the replica
 * from voting until its peers refilled it (docs/raft.md "Damaged logs").
 */
#include <sodium.h>

#include "broker/group_internal.h"

static pl_status rs_load(void *ctx, raft_hard_state *hs, uint64_t *snap_index,
    uint64_t *snap_term, raft_conf *conf)
{
	brk_group *g = ctx;
	uint64_t applied;
	brk_store_raft(g->store, hs, &applied);
	brk_store_snap(g->store, snap_index, snap_term);
	return brk_conf_base(g, conf);
}

/* The replicas of the node's config (static, or the map's when the
 * replica started) as a configuration: what a group that never changed
 * its membership starts from. */
static void conf_bootstrap(const brk_group *g, raft_conf *c)
{
	memset(c, 0, sizeof(*c));
	for (int i = 0; i < g->cfg.nreplicas; i++) {
		const brk_replica *r = &g->cfg.replicas[i];
		if (r->learner)
			c->learners[c->n_learners++] = r->id;
		else
			c->voters[c->n_voters++] = r->id;
	}
}

pl_status brk_conf_base(brk_group *g, raft_conf *c)
{
	pl_status st = brk_store_conf(g->store, c);
	if (st == PL_E_NOT_FOUND) {
		conf_bootstrap(g, c);
		return PL_OK;
	}
	return st;
}

static uint64_t rs_first(void *ctx)
{
	brk_group *g = ctx;
	return brk_store_first_index(g->store);
}

static uint64_t rs_last(void *ctx)
{
	brk_group *g = ctx;
	return brk_store_last_index(g->store);
}

static pl_status rs_term(void *ctx, uint64_t index, uint64_t *term)
{
	brk_group *g = ctx;
	return brk_log_term(g->store, index, term);
}

static pl_status rs_entries(void *ctx, uint64_t lo, uint64_t hi,
    size_t max_bytes, raft_entry *out, size_t cap, size_t *n)
{
	brk_group *g = ctx;
	return brk_log_entries(g->store, lo, hi, max_bytes, out, cap, n);
}

/* Truncates the log at its first bad entry in one durable write, storing
 * the repair record rep when given (docs/raft.md "Damaged logs"). */
static pl_status log_cut(brk_group *g, uint64_t bad, const raft_repair *rep)
{
	brk_wtxn *w;
	pl_status st = brk_wtxn_begin(g->store, true, &w);
	if (st != PL_OK)
		return st;
	st = brk_log_truncate(w, bad);
	if (st == PL_OK && rep != NULL)
		brk_repair_put(w, rep);
	if (st == PL_OK)
		return brk_wtxn_commit(w);
	brk_wtxn_abort(w);
	return st;
}

/* Before the core starts: every entry's CRC is checked. A bad entry at
 * or below the sync mark is damage (the replica held it durably): the log
 * is cut there and a repair record keeps the replica from voting until
 * its peers have refilled it. A bad entry above the mark would be a torn
 * tail never reported durable: cut, nothing to repair (LMDB does not
 * tear; the rule is kept explicit). */
static pl_status log_check(brk_group *g)
{
	uint64_t bad = 0;
	if (brk_log_verify(g->store, &bad) != PL_E_CORRUPT)
		return PL_OK;
	uint64_t mark, mark_term;
	raft_repair rep;
	brk_store_mark(g->store, &mark, &mark_term);
	brk_store_repair(g->store, &rep);
	bool damage = bad <= mark;
	if (damage)
		raft_repair_note(&rep, mark, mark_term);
	PL_ERROR("group",
	    "event=log_damaged first_bad=%llu last=%llu repair_to=%llu "
	    "repair_term=%llu",
	    (unsigned long long)bad,
	    (unsigned long long)brk_store_last_index(g->store),
	    (unsigned long long)rep.to, (unsigned long long)rep.term);
	return log_cut(g, bad, damage ? &rep : NULL);
}

/* While running: a storage callback met a bad CRC (the core records it).
 * The core is told, then the log is cut in one durable write. Checked
 * between rounds; the whole log is scanned once per such report. */
void brk_damage_check(brk_group *g)
{
	raft_status st;
	raft_status_get(g->raft, &st);
	if (st.storage_err != PL_E_CORRUPT || g->damage_handled)
		return;
	g->damage_handled = true; /* the core's error stays set */
	uint64_t bad = 0;
	if (brk_log_verify(g->store, &bad) != PL_E_CORRUPT)
		return;
	raft_repair rep;
	if (raft_log_damaged(g->raft, bad, &rep) != PL_OK)
		return;
	PL_ERROR("group", "event=log_damaged first_bad=%llu repair_to=%llu",
	    (unsigned long long)bad, (unsigned long long)rep.to);
	pl_status s = log_cut(g, bad, &rep);
	if (s != PL_OK)
		PL_ERROR(
		    "group", "event=log_cut_failed err=\"%s\"", pl_strerror(s));
}

pl_status brk_raft_init(brk_group *g)
{
	pl_status cst = log_check(g);
	if (cst != PL_OK)
		return cst;
	g->rs = (raft_storage){.load = rs_load,
	    .first_index = rs_first,
	    .last_index = rs_last,
	    .term_at = rs_term,
	    .entries = rs_entries};
	uint8_t seed[8];
	randombytes_buf(seed, sizeof(seed));
	raft_config rc = {.id = g->cfg.node,
	    .election_ticks = g->cfg.election_ms / RAFT_TICK_MS,
	    .heartbeat_ticks = g->cfg.heartbeat_ms / RAFT_TICK_MS,
	    .pre_vote = true,
	    .check_quorum = true,
	    .msg_bytes_max = APPEND_BYTES_MAX,
	    .applied = brk_store_applied(g->store),
	    .storage = &g->rs,
	    .storage_ctx = g};
	memcpy(&rc.seed, seed, sizeof(seed));
	brk_store_repair(g->store, &rc.repair);
	if (rc.heartbeat_ticks == 0)
		rc.heartbeat_ticks = 1;
	if (rc.election_ticks <= rc.heartbeat_ticks)
		rc.election_ticks = rc.heartbeat_ticks + 1;
	pl_status st = raft_new(&rc, &g->raft);
	if (st == PL_OK) {
		/* A repairing replica asks every configured replica for what
		 * it lost, not only the members of the configuration it
		 * reverted to (docs/raft.md "Damaged logs"). */
		uint64_t ids[RAFT_PEERS_MAX];
		for (int i = 0; i < g->cfg.nreplicas; i++)
			ids[i] = g->cfg.replicas[i].id;
		st = raft_repair_peers(g->raft, ids, (size_t)g->cfg.nreplicas);
	}
	brk_log_release(g->store);
	if (st != PL_OK)
		PL_ERROR("group", "event=raft_start_failed err=\"%s\"",
		    pl_strerror(st));
	return st;
}
