/*
 * log.c - the log as the core sees it: entries in storage [first,
 * stable_last] overlaid by the unstable tail not yet handed out in a
 * ready, the terms of entries, the configuration in force at an index,
 * appends and the commit index (log matching and the commit bounds are
 * among the invariants at the top of raft.c).
 */
#include <stdint.h>

#include "raft/raft_internal.h"

/* ------------------------------------------------------------------ */
/* The log. */

static void storage_failed(raft *r, pl_status st)
{
	if (st != PL_E_NOT_FOUND) {
		r->storage_err = st;
		r->storage_errs++;
	}
}

uint64_t rf_first_index(const raft *r)
{
	return r->cfg.storage->first_index(r->cfg.storage_ctx);
}

uint64_t rf_last_index(const raft *r)
{
	return r->u_n > 0 ? r->u_off + r->u_n - 1 : r->stable_last;
}

/* Term of entry i, or of the snapshot when i == first - 1. */
pl_status rf_log_term(raft *r, uint64_t i, uint64_t *t)
{
	if (r->u_n > 0 && i >= r->u_off) {
		if (i >= r->u_off + r->u_n)
			return PL_E_NOT_FOUND;
		*t = r->u_ents[i - r->u_off].term;
		return PL_OK;
	}
	if (i > r->stable_last || i + 1 < rf_first_index(r))
		return PL_E_NOT_FOUND;
	pl_status st = r->cfg.storage->term_at(r->cfg.storage_ctx, i, t);
	if (st != PL_OK)
		storage_failed(r, st);
	return st;
}

uint64_t rf_last_term(raft *r)
{
	uint64_t t = 0;
	if (rf_log_term(r, rf_last_index(r), &t) != PL_OK)
		return 0;
	return t;
}

/* Term of entry i, or `otherwise` when it cannot be read. */
static uint64_t term_or(raft *r, uint64_t i, uint64_t otherwise)
{
	uint64_t t;
	return rf_log_term(r, i, &t) == PL_OK ? t : otherwise;
}

bool rf_match_term(raft *r, uint64_t i, uint64_t t)
{
	uint64_t have;
	return rf_log_term(r, i, &have) == PL_OK && have == t;
}

/* A candidate's log (last term lt, last index li) is at least as up to
 * date as ours. False when our last term cannot be read: a vote is never
 * granted on a guess. */
bool rf_up_to_date(raft *r, uint64_t lt, uint64_t li)
{
	uint64_t my;
	if (rf_log_term(r, rf_last_index(r), &my) != PL_OK)
		return false;
	return lt > my || (lt == my && li >= rf_last_index(r));
}

/* Entries [lo, hi) into out (cap slots), at most max_bytes of payload
 * (at least one entry). Storage first, then the unstable tail. */
pl_status rf_log_entries(raft *r, uint64_t lo, uint64_t hi, size_t max_bytes,
    raft_entry *out, size_t cap, size_t *n)
{
	PL_ASSERT(lo <= hi && hi <= rf_last_index(r) + 1 && cap > 0);
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

/* The configuration in force at index upto: that of the latest
 * configuration entry <= upto, else the snapshot's. Reads the log
 * backwards; configuration entries are rare, truncations too. */
pl_status rf_conf_at(raft *r, uint64_t upto, raft_conf *c, uint64_t *ci)
{
	uint64_t lo = rf_first_index(r);
	for (uint64_t i = upto; i >= lo && i > 0; i--) {
		raft_entry e;
		size_t n = 0;
		pl_status st = rf_log_entries(r, i, i + 1, SIZE_MAX, &e, 1, &n);
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
	if (!rf_conf_valid(c) || si + 1 != lo)
		return PL_E_CORRUPT;
	*ci = si;
	return PL_OK;
}

/* Appends ents (validated, contiguous) to the log, replacing every entry
 * at index >= ents[0].index. Never touches committed entries. When the
 * replaced entries held the configuration in force, *revert is the one
 * in force before them (rf_conf_at) and revert_index its index. */
void rf_log_append(raft *r, const raft_entry *ents, size_t n,
    const raft_conf *revert, uint64_t revert_index)
{
	uint64_t from = ents[0].index;
	PL_ASSERT(from > r->commit && from <= rf_last_index(r) + 1);
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
	bool conf_changed = revert != NULL, reverted = revert != NULL;
	for (size_t i = 0; i < n; i++) {
		PL_ASSERT(ents[i].index == from + i);
		r->u_ents[r->u_n++] = ents[i];
		if (ents[i].type != RAFT_ENTRY_CONF)
			continue;
		bool was = raft_conf_is_voter(&r->conf, r->id);
		PL_ASSERT(raft_conf_decode(
		              ents[i].data, ents[i].len, &r->conf) == PL_OK);
		r->conf_index = ents[i].index;
		r->left_voter = was && !raft_conf_is_voter(&r->conf, r->id);
		conf_changed = true;
		reverted = false;
	}
	if (reverted)
		rf_conf_left_refresh(r);
	if (conf_changed)
		rf_conf_apply(r);
}

/* Recomputes left_voter after the configuration in force changed other
 * than by an append (load, truncation, damage): from the configuration
 * before conf_index, read only when this replica is no voter of its own
 * (rare; a read error leaves it false: then it does not campaign, as
 * before this rule). */
void rf_conf_left_refresh(raft *r)
{
	r->left_voter = false;
	if (raft_conf_is_voter(&r->conf, r->id) ||
	    r->conf_index < rf_first_index(r))
		return;
	raft_conf c;
	uint64_t ci;
	if (rf_conf_at(r, r->conf_index - 1, &c, &ci) == PL_OK)
		r->left_voter = raft_conf_is_voter(&c, r->id);
}

void rf_commit_to(raft *r, uint64_t c)
{
	if (c <= r->commit)
		return;
	PL_ASSERT(c <= rf_last_index(r)); /* commit never passes the log */
	r->commit = c;
}
