/*
 * env.c - a shard group replica's LMDB environment: opening it (the DBIs
 * and the counters kept in `meta`), closing, usage, sync, the commit
 * rounds (brk_wtxn) every write goes through, and the two snapshot
 * operations that work on the whole environment (copying it out,
 * adopting a received copy).
 *
 * Invariants:
 *  - at open the log's last key equals the recorded last_index, and
 *    applied <= last_index unless a repair is refilling lost entries;
 *    anything else is PL_E_CORRUPT, never repaired silently;
 *  - one round at a time (brk_store.round); its counters reach brk_store
 *    only after mdb_txn_commit succeeded, and meta records only the
 *    counters that moved, in the round's own transaction;
 *  - an environment LMDB marks broken (MDB_PANIC) is closed and opened
 *    again before the next round: what is on disk is the last commit.
 *
 * Entry points: brk_store_open/close/last_index/usage/sync/copy/
 * snapshot_adopt and brk_wtxn_begin/commit/abort (store.h);
 * brk_mdb_status, brk_wtxn_put/get/del (store_internal.h).
 */
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#include "broker/store/store_internal.h"

/* ---- LMDB calls ---- */

pl_status brk_mdb_status(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return PL_OK;
	case MDB_NOTFOUND:
		return PL_E_NOT_FOUND;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
		return PL_E_MAP_FULL;
	case ENOSPC:
	case EDQUOT:
		return PL_E_DISK_FULL;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
		return PL_E_CORRUPT;
	case ENOMEM:
		return PL_E_NOMEM;
	default:
		return PL_E_IO;
	}
}

pl_status brk_wtxn_put(brk_wtxn *w, MDB_dbi db, const void *k, size_t klen,
    const void *v, size_t vlen)
{
	MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};
	if (!w->write)
		return PL_E_MAP_FULL;
	int rc = mdb_put(w->txn, db, &key, &val, 0);
	if (rc != MDB_SUCCESS)
		PL_WARN("store", "event=put_failed rc=%d err=\"%s\"", rc,
		    mdb_strerror(rc));
	return brk_mdb_status(rc);
}

pl_status brk_wtxn_get(
    brk_wtxn *w, MDB_dbi db, const void *k, size_t klen, MDB_val *val)
{
	MDB_val key = {klen, (void *)k};
	return brk_mdb_status(mdb_get(w->txn, db, &key, val));
}

pl_status brk_wtxn_del(brk_wtxn *w, MDB_dbi db, const void *k, size_t klen)
{
	MDB_val key = {klen, (void *)k};
	if (!w->write)
		return PL_E_MAP_FULL;
	int rc = mdb_del(w->txn, db, &key, NULL);
	return rc == MDB_NOTFOUND ? PL_OK : brk_mdb_status(rc);
}

/* ---- open / close ---- */

static pl_status open_dbs(brk_store *s)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != MDB_SUCCESS)
		return brk_mdb_status(rc);
	struct {
		const char *name;
		MDB_dbi *dbi;
	} dbs[] = {{"log", &s->log}, {"seq", &s->seq}, {"rooms", &s->rooms},
	    {"dedup", &s->dedup}, {"idem", &s->idem},
	    {"tenant_rooms", &s->tenant_rooms}, {"user_rooms", &s->user_rooms},
	    {"days", &s->days}, {"meta", &s->meta}};
	for (size_t i = 0; i < PL_ARRAY_LEN(dbs) && rc == 0; i++)
		rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, dbs[i].dbi);
	if (rc != MDB_SUCCESS) {
		mdb_txn_abort(txn);
		return brk_mdb_status(rc);
	}
	return brk_mdb_status(mdb_txn_commit(txn));
}

static uint64_t meta_u64(MDB_txn *txn, MDB_dbi db, const char *name)
{
	MDB_val k = {strlen(name), (void *)name}, v;
	if (mdb_get(txn, db, &k, &v) != MDB_SUCCESS || v.mv_size != 8)
		return 0;
	return get_be64(v.mv_data);
}

static pl_status load_meta(brk_store *s)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != MDB_SUCCESS)
		return brk_mdb_status(rc);
	s->last_index = meta_u64(txn, s->meta, "last_index");
	s->room_counter = meta_u64(txn, s->meta, "room_counter");
	s->applied = meta_u64(txn, s->meta, "applied");
	s->hs.term = meta_u64(txn, s->meta, "term");
	s->hs.vote = meta_u64(txn, s->meta, "vote");
	s->hs.commit = meta_u64(txn, s->meta, "commit");
	s->mark_index = meta_u64(txn, s->meta, "mark_index");
	s->mark_term = meta_u64(txn, s->meta, "mark_term");
	s->repair.to = meta_u64(txn, s->meta, "repair_to");
	s->repair.term = meta_u64(txn, s->meta, "repair_term");
	s->snap_index = meta_u64(txn, s->meta, "snap_index");
	s->snap_term = meta_u64(txn, s->meta, "snap_term");
	MDB_stat st;
	if (mdb_stat(txn, s->rooms, &st) == MDB_SUCCESS)
		s->nrooms = st.ms_entries;
	/* The log's last key must agree with the recorded last index: both
	 * are written in the same transaction. */
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t tail = 0;
	if (mdb_cursor_open(txn, s->log, &cur) == MDB_SUCCESS) {
		if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == MDB_SUCCESS &&
		    k.mv_size == 8)
			tail = get_be64(k.mv_data);
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);
	/* applied passes the log only while a repair refills lost entries */
	if (tail != s->last_index ||
	    (s->applied > s->last_index && s->repair.to == 0)) {
		PL_ERROR("store",
		    "event=open_inconsistent last_index=%llu "
		    "log_tail=%llu",
		    (unsigned long long)s->last_index,
		    (unsigned long long)tail);
		return PL_E_CORRUPT;
	}
	return PL_OK;
}

static pl_status alloc_buffers(brk_store *s)
{
	s->zc = ZSTD_createCCtx();
	s->zd = ZSTD_createDCtx();
	s->buf = malloc(ENTRY_BYTES_MAX);
	s->zbuf_cap = ZSTD_compressBound(ENTRY_BYTES_MAX);
	s->zbuf = malloc(s->zbuf_cap);
	s->cache = calloc(ROUND_ROOMS_CACHED_MAX, sizeof(brk_room));
	if (!s->zc || !s->zd || !s->buf || !s->zbuf || !s->cache)
		return PL_E_NOMEM;
	pl_status st = pl_arena_init(
	    &s->scratch, NULL, PL_ARENA_BYTES_FOR(ENTRY_BYTES_MAX));
	if (st == PL_OK)
		st = pl_arena_init(
		    &s->cmd_scratch, NULL, PL_ARENA_BYTES_FOR(ENTRY_BYTES_MAX));
	return st;
}

static pl_status open_env(brk_store *s)
{
	if (mkdir(s->cfg.dir, 0700) != 0 && errno != EEXIST)
		return PL_E_IO;
	int rc = mdb_env_create(&s->env);
	if (rc == MDB_SUCCESS)
		rc = mdb_env_set_maxdbs(s->env, 16);
	if (rc == MDB_SUCCESS)
		rc = mdb_env_set_mapsize(s->env, s->cfg.map_bytes);
	/* NOTLS: transactions belong to the group thread, not to OS threads
	 * in LMDB's reader table. NOSYNC only for relaxed durability, where
	 * the group syncs periodically. */
	unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
	if (!s->cfg.sync)
		flags |= MDB_NOSYNC;
	if (rc == MDB_SUCCESS)
		rc = mdb_env_open(s->env, s->cfg.dir, flags, 0600);
	if (rc != MDB_SUCCESS) {
		PL_ERROR("store", "event=open_failed dir=%s err=\"%s\"",
		    s->cfg.dir, mdb_strerror(rc));
		return brk_mdb_status(rc);
	}
	return PL_OK;
}

pl_status brk_store_open(const brk_store_config *cfg, brk_store **out)
{
	brk_store *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return PL_E_NOMEM;
	s->cfg = *cfg;
	pl_status st = alloc_buffers(s);
	if (st == PL_OK)
		st = open_env(s);
	if (st == PL_OK)
		st = open_dbs(s);
	if (st == PL_OK)
		st = load_meta(s);
	if (st != PL_OK) {
		brk_store_close(s);
		return st;
	}
	PL_INFO("store", "event=open dir=%s last_index=%llu rooms=%llu sync=%d",
	    cfg->dir, (unsigned long long)s->last_index,
	    (unsigned long long)s->nrooms, cfg->sync);
	*out = s;
	return PL_OK;
}

void brk_store_close(brk_store *s)
{
	if (s == NULL)
		return;
	if (s->rtxn != NULL)
		mdb_txn_abort(s->rtxn);
	if (s->env != NULL)
		mdb_env_close(s->env);
	ZSTD_freeCCtx(s->zc);
	ZSTD_freeDCtx(s->zd);
	free(s->buf);
	free(s->zbuf);
	free(s->cache);
	pl_arena_fini(&s->scratch);
	pl_arena_fini(&s->cmd_scratch);
	free(s);
}

uint64_t brk_store_last_index(const brk_store *s)
{
	return s->last_index;
}

void brk_store_usage(
    brk_store *s, uint64_t *used_bytes, uint64_t *map_bytes, uint64_t *rooms)
{
	MDB_envinfo info;
	MDB_stat st;
	mdb_env_info(s->env, &info);
	mdb_env_stat(s->env, &st);
	*used_bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
	*map_bytes = info.me_mapsize;
	*rooms = s->nrooms;
}

pl_status brk_store_sync(brk_store *s)
{
	return brk_mdb_status(mdb_env_sync(s->env, 1));
}

/* ---- rounds ---- */

/* LMDB marks its environment fatally broken when writing a meta page
 * fails (ENOSPC at the wrong moment); only closing and opening it again
 * clears that. What is on disk is the last good commit. */
static pl_status reopen(brk_store *s)
{
	PL_WARN("store", "event=env_reopen dir=%s", s->cfg.dir);
	if (s->rtxn != NULL)
		mdb_txn_abort(s->rtxn);
	s->rtxn = NULL;
	s->rtxn_live = false;
	mdb_env_close(s->env);
	s->env = NULL;
	pl_status st = open_env(s);
	if (st == PL_OK)
		st = open_dbs(s);
	if (st == PL_OK)
		st = load_meta(s);
	return st;
}

pl_status brk_wtxn_begin(brk_store *s, bool write, brk_wtxn **out)
{
	brk_wtxn *w = &s->round;
	PL_ASSERT(w->txn == NULL); /* one round at a time */
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &txn);
	if (rc == MDB_PANIC && reopen(s) == PL_OK)
		rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &txn);
	if (rc != MDB_SUCCESS)
		return brk_mdb_status(rc);
	memset(w, 0, sizeof(*w));
	w->s = s;
	w->txn = txn;
	w->write = write;
	w->last_index = s->last_index;
	w->room_counter = s->room_counter;
	w->applied = s->applied;
	w->hs = s->hs;
	w->mark_index = s->mark_index;
	w->mark_term = s->mark_term;
	w->repair = s->repair;
	w->snap_index = s->snap_index;
	w->snap_term = s->snap_term;
	*out = w;
	return PL_OK;
}

static pl_status meta_put(brk_wtxn *w, const char *name, uint64_t v)
{
	uint8_t b[8];
	put_be64(b, v);
	return brk_wtxn_put(w, w->s->meta, name, strlen(name), b, 8);
}

/* Counters and the hard state, only those that moved. The term and vote
 * are written in the same transaction as the entries of the round, so
 * they are durable before any message of the round is sent. */
static pl_status write_meta(brk_wtxn *w)
{
	brk_store *s = w->s;
	struct {
		const char *name;
		uint64_t now, was;
	} m[] = {{"last_index", w->last_index, s->last_index},
	    {"room_counter", w->room_counter, s->room_counter},
	    {"applied", w->applied, s->applied},
	    {"term", w->hs.term, s->hs.term}, {"vote", w->hs.vote, s->hs.vote},
	    {"commit", w->hs.commit, s->hs.commit},
	    {"mark_index", w->mark_index, s->mark_index},
	    {"mark_term", w->mark_term, s->mark_term},
	    {"repair_to", w->repair.to, s->repair.to},
	    {"repair_term", w->repair.term, s->repair.term},
	    {"snap_index", w->snap_index, s->snap_index},
	    {"snap_term", w->snap_term, s->snap_term}};
	pl_status st = PL_OK;
	for (size_t i = 0; i < PL_ARRAY_LEN(m) && st == PL_OK; i++)
		if (m[i].now != m[i].was)
			st = meta_put(w, m[i].name, m[i].now);
	return st;
}

pl_status brk_wtxn_commit(brk_wtxn *w)
{
	brk_store *s = w->s;
	if (!w->write) {
		brk_wtxn_abort(w);
		return PL_OK;
	}
	pl_status st = brk_room_cache_flush(w);
	if (st == PL_OK)
		st = brk_days_flush(w);
	if (st == PL_OK)
		st = write_meta(w);
	if (st != PL_OK) {
		PL_ERROR("store",
		    "event=flush_failed err=\"%s\" rooms=%d days=%d",
		    pl_strerror(st), w->nrooms, w->ndays);
		brk_wtxn_abort(w);
		return st;
	}
	int rc = mdb_txn_commit(w->txn); /* fsyncs unless MDB_NOSYNC */
	w->txn = NULL;
	if (rc != MDB_SUCCESS) {
		PL_ERROR("store", "event=commit_failed err=\"%s\"",
		    mdb_strerror(rc));
		return brk_mdb_status(rc);
	}
	s->nrooms += w->room_counter - s->room_counter;
	s->last_index = w->last_index;
	s->room_counter = w->room_counter;
	s->applied = w->applied;
	s->hs = w->hs;
	s->mark_index = w->mark_index;
	s->mark_term = w->mark_term;
	s->repair = w->repair;
	s->snap_index = w->snap_index;
	s->snap_term = w->snap_term;
	return PL_OK;
}

void brk_wtxn_abort(brk_wtxn *w)
{
	if (w == NULL || w->txn == NULL)
		return;
	mdb_txn_abort(w->txn);
	w->txn = NULL;
}

/* ---- snapshots ---- */

pl_status brk_store_copy(brk_store *s, const char *dir)
{
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return PL_E_IO;
	int rc = mdb_env_copy2(s->env, dir, MDB_CP_COMPACT);
	if (rc != MDB_SUCCESS)
		PL_ERROR("store", "event=copy_failed dir=%s err=\"%s\"", dir,
		    mdb_strerror(rc));
	return brk_mdb_status(rc);
}

/* After a snapshot was swapped in: the log ends at the copy's applied
 * index A (anything after it was not known committed), the Raft log
 * starts after A, and the hard state is this replica's own. */
pl_status brk_store_snapshot_adopt(
    brk_store *s, const raft_hard_state *hs, uint64_t *index, uint64_t *term)
{
	uint64_t a = s->applied, t = 0;
	pl_status st = PL_OK;
	if (a == s->snap_index) {
		t = s->snap_term;
	} else {
		st = brk_log_term(s, a, &t);
		brk_log_release(s);
	}
	if (st != PL_OK)
		return st;
	brk_wtxn *w;
	if ((st = brk_wtxn_begin(s, true, &w)) != PL_OK)
		return st;
	st = brk_log_truncate(w, a + 1);
	raft_hard_state own = *hs;
	own.commit = a;
	brk_hs_put(w, &own);
	raft_repair none = {0, 0};
	brk_repair_put(w, &none);
	w->snap_index = a;
	w->snap_term = t;
	if (st != PL_OK) {
		brk_wtxn_abort(w);
		return st;
	}
	if ((st = brk_wtxn_commit(w)) == PL_OK) {
		/* The log ends where the snapshot point is: nothing after the
		 * copy's applied index survives, nothing before it is sent. */
		PL_ASSERT(s->last_index == a && s->snap_index == a &&
		          s->hs.commit == a);
		*index = a;
		*term = t;
	}
	return st;
}
