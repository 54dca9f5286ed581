/*
 * log.c - the replicated log in the `log` DBI: entries by index, each
 * stored as crc32c | term | type | payload with a CRC over the index too,
 * verified on every read; appending (a conflicting suffix replaced),
 * truncating a damaged tail, the Raft core's reads (term, entries) through
 * a read-only view, compaction (moving the snapshot point), verification,
 * and the small records kept beside it in `meta`: the hard state, the sync
 * mark, the repair record and the snapshot point.
 *
 * Invariants (docs/raft.md, docs/internals.md "Storage layout"):
 *  - entries are 1..last_index without holes; an applied entry is never
 *    replaced (committed entries never change);
 *  - the sync mark is the (index, term) of the last entry written;
 *  - snap_index <= applied <= last_index (applied passes last_index only
 *    while a repair refills lost entries); the Raft view of the log starts
 *    at snap_index + 1, entries before it stay stored (history reads them).
 *
 * Entry points: brk_log_* and brk_store_first_index/snap/mark/repair/raft/
 * applied/verify, brk_hs_put, brk_repair_put, brk_wtxn_applied (store.h);
 * brk_log_cmd_read (store_internal.h).
 */
#include <lmdb.h>
#include <string.h>

#include "broker/store/store_internal.h"

/* A log value: crc32c u32 BE | term u64 BE | type u8 | payload. The CRC
 * covers the key (the index) and everything after the CRC, so an entry
 * copied to the wrong index, torn or flipped is caught on read. */
#define ENTRY_CRC_BYTES 4
#define ENTRY_HDR_BYTES (ENTRY_CRC_BYTES + 8 + 1)

static pl_status entry_put(brk_wtxn *w, const raft_entry *e)
{
	brk_store *s = w->s;
	uint8_t key[8];
	MDB_val k = {8, key}, v;
	if (!w->write)
		return PL_E_MAP_FULL;
	if (e->len > ENTRY_BYTES_MAX)
		return PL_E_TOO_LARGE;
	put_be64(key, e->index);
	v.mv_size = ENTRY_HDR_BYTES + e->len;
	/* Reserve the value in the map and build it there: the payload is
	 * copied once, from the proposal (or the received message) into the
	 * page that stores it. */
	int rc = mdb_put(w->txn, s->log, &k, &v, MDB_RESERVE);
	if (rc != MDB_SUCCESS)
		return brk_mdb_status(rc);
	uint8_t *p = v.mv_data;
	put_be64(p + ENTRY_CRC_BYTES, e->term);
	p[ENTRY_CRC_BYTES + 8] = e->type;
	if (e->len > 0)
		memcpy(p + ENTRY_HDR_BYTES, e->data, e->len);
	uint32_t crc = pl_crc32c(pl_crc32c(0, key, 8), p + ENTRY_CRC_BYTES,
	    v.mv_size - ENTRY_CRC_BYTES);
	p[0] = (uint8_t)(crc >> 24);
	p[1] = (uint8_t)(crc >> 16);
	p[2] = (uint8_t)(crc >> 8);
	p[3] = (uint8_t)crc;
	return PL_OK;
}

/* Reads and verifies entry idx in txn; data points into the map (valid
 * while txn lives). PL_E_NOT_FOUND when absent, PL_E_CORRUPT on a CRC
 * mismatch or a short value. */
static pl_status entry_get(
    brk_store *s, MDB_txn *txn, uint64_t idx, raft_entry *out)
{
	uint8_t key[8];
	MDB_val k = {8, key}, v;
	put_be64(key, idx);
	int rc = mdb_get(txn, s->log, &k, &v);
	if (rc != MDB_SUCCESS)
		return brk_mdb_status(rc);
	const uint8_t *p = v.mv_data;
	if (v.mv_size < ENTRY_HDR_BYTES)
		return PL_E_CORRUPT;
	uint32_t want = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	                (uint32_t)p[2] << 8 | p[3];
	if (pl_crc32c(pl_crc32c(0, key, 8), p + ENTRY_CRC_BYTES,
	        v.mv_size - ENTRY_CRC_BYTES) != want) {
		PL_ERROR("store", "event=crc_mismatch index=%llu",
		    (unsigned long long)idx);
		return PL_E_CORRUPT;
	}
	out->index = idx;
	out->term = get_be64(p + ENTRY_CRC_BYTES);
	out->type = p[ENTRY_CRC_BYTES + 8];
	out->data = p + ENTRY_HDR_BYTES;
	out->len = v.mv_size - ENTRY_HDR_BYTES;
	return PL_OK;
}

/* Reads, verifies and decodes the command of entry idx (into the store's
 * command arena, valid until the next call). */
pl_status brk_log_cmd_read(
    brk_wtxn *w, uint64_t idx, Parley__Internal__Command **out)
{
	raft_entry e;
	pl_status st = entry_get(w->s, w->txn, idx, &e);
	if (st != PL_OK)
		return st == PL_E_NOT_FOUND ? PL_E_CORRUPT : st;
	if (e.type != RAFT_ENTRY_NORMAL || e.len == 0)
		return PL_E_CORRUPT;
	pl_arena_reset(&w->s->cmd_scratch);
	if (pl_command_decode(e.data, e.len, &w->s->cmd_scratch, out) != PL_OK)
		return PL_E_CORRUPT;
	return PL_OK;
}

pl_status brk_log_append(brk_wtxn *w, const raft_entry *e, size_t n)
{
	if (n == 0)
		return PL_OK;
	uint64_t from = e[0].index;
	/* Never replacing an applied entry (committed entries never change),
	 * never leaving a hole. Below applied only to refill entries a
	 * repair lost (there is nothing stored there to replace). */
	if ((from <= w->applied && from <= w->last_index) ||
	    from > w->last_index + 1)
		return PL_E_CORRUPT;
	/* from 0 is refused above (0 <= applied, last_index): the deleting
	 * loop below counts down to from and must stop. */
	PL_ASSERT(from >= 1);
	pl_status st = PL_OK;
	for (uint64_t i = w->last_index; i >= from && st == PL_OK; i--) {
		uint8_t key[8];
		put_be64(key, i);
		st = brk_wtxn_del(w, w->s->log, key, 8);
	}
	for (size_t i = 0; i < n && st == PL_OK; i++) {
		if (e[i].index != from + i)
			return PL_E_CORRUPT;
		st = entry_put(w, &e[i]);
	}
	if (st == PL_OK) {
		w->last_index = e[n - 1].index;
		w->mark_index = e[n - 1].index;
		w->mark_term = e[n - 1].term;
		PL_ASSERT(w->last_index == from + n - 1); /* contiguous */
	}
	return st;
}

pl_status brk_log_truncate(brk_wtxn *w, uint64_t from)
{
	if (from == 0 || from > w->last_index + 1)
		return PL_E_BAD_REQUEST;
	pl_status st = PL_OK;
	for (uint64_t i = w->last_index; i >= from && st == PL_OK; i--) {
		uint8_t key[8];
		put_be64(key, i);
		st = brk_wtxn_del(w, w->s->log, key, 8);
	}
	if (st != PL_OK)
		return st;
	w->last_index = from - 1;
	if (w->hs.commit > from - 1)
		w->hs.commit = from - 1;
	/* The mark follows the last entry that is still readable. */
	raft_entry e;
	w->mark_index = from - 1;
	w->mark_term = 0;
	if (from > 1 && entry_get(w->s, w->txn, from - 1, &e) == PL_OK)
		w->mark_term = e.term;
	/* Nothing points past the end any more: commit nor mark. */
	PL_ASSERT(
	    w->hs.commit <= w->last_index && w->mark_index == w->last_index);
	return PL_OK;
}

/* ---- hard state, marks and the snapshot point ---- */

void brk_repair_put(brk_wtxn *w, const raft_repair *rep)
{
	w->repair = *rep;
}

void brk_store_repair(const brk_store *s, raft_repair *rep)
{
	*rep = s->repair;
}

uint64_t brk_store_first_index(const brk_store *s)
{
	return s->snap_index + 1;
}

void brk_store_snap(const brk_store *s, uint64_t *index, uint64_t *term)
{
	*index = s->snap_index;
	*term = s->snap_term;
}

/* Moves the start of the Raft log up to after `index` (applied): the
 * entries stay in LMDB (message bodies live in them and history reads
 * them), but Raft no longer sends them; a follower that needs them gets
 * a snapshot. */
pl_status brk_log_compact(brk_store *s, uint64_t index)
{
	uint64_t term;
	if (index <= s->snap_index || index > s->applied)
		return PL_E_BAD_REQUEST;
	pl_status st = brk_log_term(s, index, &term);
	brk_log_release(s);
	if (st != PL_OK)
		return st;
	brk_wtxn *w;
	if ((st = brk_wtxn_begin(s, true, &w)) != PL_OK)
		return st;
	w->snap_index = index;
	w->snap_term = term;
	return brk_wtxn_commit(w);
}

void brk_store_mark(const brk_store *s, uint64_t *index, uint64_t *term)
{
	*index = s->mark_index;
	*term = s->mark_term;
}

void brk_hs_put(brk_wtxn *w, const raft_hard_state *hs)
{
	w->hs = *hs;
}

void brk_store_raft(const brk_store *s, raft_hard_state *hs, uint64_t *applied)
{
	*hs = s->hs;
	*applied = s->applied;
}

uint64_t brk_wtxn_applied(const brk_wtxn *w)
{
	return w->applied;
}

uint64_t brk_store_applied(const brk_store *s)
{
	return s->applied;
}

/* ---- the Raft core's storage callbacks ---- */

/* The read view the Raft core's storage callbacks use: a read-only
 * transaction opened on first use and ended by brk_log_release, which the
 * driver calls after each raft_advance so the next view sees the round's
 * writes. Entries returned point into it. */
static pl_status rtxn(brk_store *s, MDB_txn **out)
{
	int rc = MDB_SUCCESS;
	if (s->rtxn == NULL)
		rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn);
	else if (!s->rtxn_live)
		rc = mdb_txn_renew(s->rtxn);
	if (rc != MDB_SUCCESS)
		return brk_mdb_status(rc);
	s->rtxn_live = true;
	*out = s->rtxn;
	return PL_OK;
}

void brk_log_release(brk_store *s)
{
	if (s->rtxn != NULL && s->rtxn_live)
		mdb_txn_reset(s->rtxn);
	s->rtxn_live = false;
}

pl_status brk_log_term(brk_store *s, uint64_t index, uint64_t *term)
{
	MDB_txn *t = NULL;
	raft_entry e;
	if (index == s->snap_index) {
		*term = s->snap_term; /* the log starts after this entry */
		return PL_OK;
	}
	if (index < s->snap_index || index > s->last_index)
		return PL_E_NOT_FOUND;
	pl_status st = rtxn(s, &t);
	if (st == PL_OK)
		st = entry_get(s, t, index, &e);
	if (st == PL_E_NOT_FOUND)
		st = PL_E_CORRUPT; /* inside [first, last]: must exist */
	if (st == PL_OK)
		*term = e.term;
	return st;
}

pl_status brk_log_entries(brk_store *s, uint64_t lo, uint64_t hi,
    size_t max_bytes, raft_entry *out, size_t cap, size_t *n)
{
	MDB_txn *t = NULL;
	if (lo <= s->snap_index || hi > s->last_index + 1 || lo >= hi)
		return PL_E_NOT_FOUND;
	pl_status st = rtxn(s, &t);
	size_t k = 0, bytes = 0;
	for (uint64_t i = lo; i < hi && k < cap && st == PL_OK; i++) {
		raft_entry e;
		st = entry_get(s, t, i, &e);
		if (st == PL_E_NOT_FOUND)
			st = PL_E_CORRUPT;
		if (st != PL_OK)
			break;
		if (k > 0 && bytes + e.len > max_bytes)
			break;
		bytes += e.len;
		out[k++] = e;
	}
	if (st == PL_OK)
		*n = k;
	return st;
}

/* ---- verification ---- */

/* Checks the CRC of entries [from, last]; the first bad one in *bad. */
static pl_status verify_range(
    brk_store *s, uint64_t from, uint64_t *entries, uint64_t *bad)
{
	brk_wtxn *w;
	pl_status st = brk_wtxn_begin(s, false, &w);
	if (st != PL_OK)
		return st;
	uint64_t n = 0;
	for (uint64_t i = from; i <= s->last_index; i++, n++) {
		raft_entry e;
		if ((st = entry_get(s, w->txn, i, &e)) != PL_OK) {
			if (st == PL_E_NOT_FOUND)
				st = PL_E_CORRUPT;
			*bad = i;
			break;
		}
	}
	brk_wtxn_abort(w);
	*entries = n;
	return st;
}

pl_status brk_store_verify(brk_store *s, uint64_t *entries, uint64_t *bad_index)
{
	return verify_range(s, 1, entries, bad_index);
}

pl_status brk_log_verify(brk_store *s, uint64_t *bad_index)
{
	uint64_t n;
	return verify_range(s, s->snap_index + 1, &n, bad_index);
}
