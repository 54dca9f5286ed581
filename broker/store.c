/*
 * store.c - a shard group's LMDB environment: the append log (entries by
 * log index, each with a CRC32C verified on every read) and the state that
 * applying the log builds (per-room seq index, rooms, de-duplication,
 * idempotency keys, tenant day aggregates). Layout and invariants:
 * docs/internals.md "Storage layout".
 *
 * Invariants kept here:
 *  - a commit round is one LMDB write transaction: the entries it appends
 *    and every state change they cause land together or not at all;
 *  - seqs of a room are 1..last_seq without gaps: seq N exists iff
 *    N <= last_seq;
 *  - a message body is written once, inside its log entry;
 *  - nothing read from the map outlives its transaction: history and
 *    message reads copy into the caller's arena.
 */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zstd.h>

#include "broker/broker.h"

/* A log entry is a command plus its body; bodies are limited by the
 * gateway (16 KiB by default), the store refuses anything near 1 MiB. */
#define ENTRY_BYTES_MAX (1024 * 1024)
#define BODY_BYTES_MAX (ENTRY_BYTES_MAX - 64 * 1024)
#define ENTRY_CRC_BYTES 4
/* Tenant-day aggregates touched by one round that stay in memory. */
#define ROUND_DAYS_CACHED_MAX 16
#define HISTORY_LIMIT_DEFAULT 50
#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000
#define ZSTD_LEVEL 1 /* chat text: speed over ratio */

_Static_assert(ROOM_REC_BYTES_MAX < ENTRY_BYTES_MAX,
    "the entry scratch arena also decodes room records");
_Static_assert(BODY_BYTES_MAX > PL_BODY_BYTES_DEFAULT,
    "the store must accept the gateway's default body size");

typedef struct day_slot {
	char tenant[PL_TENANT_CHARS_MAX + 1];
	uint32_t day;
	Parley__Internal__TenantDayRec rec;
} day_slot;

struct brk_wtxn {
	brk_store *s;
	MDB_txn *txn;
	bool write;
	int nrooms;
	bool dirty[ROUND_ROOMS_CACHED_MAX];
	int ndays;
	uint64_t last_index;
	uint64_t room_counter;
	uint64_t applied;
	raft_hard_state hs;
	uint64_t mark_index, mark_term; /* last entry of the log */
	raft_repair repair;
	uint64_t snap_index, snap_term;
};

struct brk_store {
	MDB_env *env;
	MDB_dbi log, seq, rooms, dedup, idem, tenant_rooms, user_rooms, days,
	    meta;
	brk_store_config cfg;
	uint64_t last_index;
	uint64_t room_counter;
	uint64_t applied;
	raft_hard_state hs;
	uint64_t mark_index, mark_term;
	raft_repair repair;
	uint64_t snap_index, snap_term; /* the Raft log starts after these */
	uint64_t nrooms;
	MDB_txn *rtxn; /* the Raft storage callbacks' read view */
	bool rtxn_live;
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
	uint8_t *buf;  /* record encoding scratch, ENTRY_BYTES_MAX */
	uint8_t *cbuf; /* command encoding scratch (local writes) */
	uint8_t *zbuf; /* compression scratch */
	size_t zbuf_cap;
	pl_arena scratch;     /* decoding of one room record */
	pl_arena cmd_scratch; /* decoding of one command */
	brk_wtxn round;       /* one round at a time (the group thread's) */
	brk_room *cache;      /* ROUND_ROOMS_CACHED_MAX rooms of the round */
	day_slot days_cache[ROUND_DAYS_CACHED_MAX];
};

/* ---- small helpers ---- */

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static pl_status mdb_status(int rc)
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

static pl_status put(brk_wtxn *w, MDB_dbi db, const void *k, size_t klen,
    const void *v, size_t vlen)
{
	MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};
	if (!w->write)
		return PL_E_MAP_FULL;
	int rc = mdb_put(w->txn, db, &key, &val, 0);
	if (rc != MDB_SUCCESS)
		PL_WARN("store", "event=put_failed rc=%d err=\"%s\"", rc,
		    mdb_strerror(rc));
	return mdb_status(rc);
}

static pl_status get(
    brk_wtxn *w, MDB_dbi db, const void *k, size_t klen, MDB_val *val)
{
	MDB_val key = {klen, (void *)k};
	return mdb_status(mdb_get(w->txn, db, &key, val));
}

static pl_status del(brk_wtxn *w, MDB_dbi db, const void *k, size_t klen)
{
	MDB_val key = {klen, (void *)k};
	if (!w->write)
		return PL_E_MAP_FULL;
	int rc = mdb_del(w->txn, db, &key, NULL);
	return rc == MDB_NOTFOUND ? PL_OK : mdb_status(rc);
}

/* key = tenant NUL suffix; returns its length or 0 if it won't fit. */
static size_t tenant_key(uint8_t *out, size_t cap, const char *tenant,
    const void *suffix, size_t slen)
{
	size_t tl = strlen(tenant);
	if (tl + 1 + slen > cap)
		return 0;
	memcpy(out, tenant, tl);
	out[tl] = 0;
	memcpy(out + tl + 1, suffix, slen);
	return tl + 1 + slen;
}

/* ---- open / close ---- */

static pl_status open_dbs(brk_store *s)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != MDB_SUCCESS)
		return mdb_status(rc);
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
		return mdb_status(rc);
	}
	return mdb_status(mdb_txn_commit(txn));
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
		return mdb_status(rc);
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
	s->cbuf = malloc(ENTRY_BYTES_MAX);
	s->zbuf_cap = ZSTD_compressBound(ENTRY_BYTES_MAX);
	s->zbuf = malloc(s->zbuf_cap);
	s->cache = calloc(ROUND_ROOMS_CACHED_MAX, sizeof(brk_room));
	if (!s->zc || !s->zd || !s->buf || !s->cbuf || !s->zbuf || !s->cache)
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
		return mdb_status(rc);
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
	free(s->cbuf);
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
	return mdb_status(mdb_env_sync(s->env, 1));
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
		return mdb_status(rc);
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

static pl_status flush_room(brk_wtxn *w, int i)
{
	brk_store *s = w->s;
	uint8_t key[8];
	size_t n;
	if (!w->dirty[i])
		return PL_OK;
	put_be64(key, s->cache[i].id);
	pl_status st =
	    brk_room_encode(&s->cache[i], s->buf, ENTRY_BYTES_MAX, &n);
	if (st == PL_OK)
		st = put(w, s->rooms, key, 8, s->buf, n);
	w->dirty[i] = false;
	return st;
}

static pl_status flush_rooms(brk_wtxn *w)
{
	pl_status st = PL_OK;
	for (int i = 0; i < w->nrooms && st == PL_OK; i++)
		st = flush_room(w, i);
	return st;
}

static pl_status flush_days(brk_wtxn *w)
{
	brk_store *s = w->s;
	for (int i = 0; i < w->ndays; i++) {
		day_slot *d = &s->days_cache[i];
		uint8_t key[PL_TENANT_CHARS_MAX + 8], day[4];
		size_t n;
		day[0] = (uint8_t)(d->day >> 24);
		day[1] = (uint8_t)(d->day >> 16);
		day[2] = (uint8_t)(d->day >> 8);
		day[3] = (uint8_t)d->day;
		size_t kl = tenant_key(key, sizeof(key), d->tenant, day, 4);
		pl_status st =
		    pl_pb_encode(&d->rec.base, s->buf, ENTRY_BYTES_MAX, &n);
		if (st == PL_OK)
			st = put(w, s->days, key, kl, s->buf, n);
		if (st != PL_OK)
			return st;
	}
	w->ndays = 0;
	return PL_OK;
}

static pl_status meta_put(brk_wtxn *w, const char *name, uint64_t v)
{
	uint8_t b[8];
	put_be64(b, v);
	return put(w, w->s->meta, name, strlen(name), b, 8);
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
	pl_status st = flush_rooms(w);
	if (st == PL_OK)
		st = flush_days(w);
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
		return mdb_status(rc);
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

/* ---- rooms ---- */

static int cache_find(brk_wtxn *w, uint64_t room)
{
	for (int i = 0; i < w->nrooms; i++)
		if (w->s->cache[i].id == room)
			return i;
	return -1;
}

/* A free cache slot; when the cache is full, writes every dirty room back
 * to the transaction and starts over (pointers handed out before are then
 * stale, which brk_room_get's contract allows). */
static pl_status cache_slot(brk_wtxn *w, int *slot)
{
	if (w->nrooms == ROUND_ROOMS_CACHED_MAX) {
		pl_status st = flush_rooms(w);
		if (st != PL_OK)
			return st;
		w->nrooms = 0;
	}
	*slot = w->nrooms++;
	w->dirty[*slot] = false;
	return PL_OK;
}

pl_status brk_room_get(brk_wtxn *w, uint64_t room, brk_room **out)
{
	int i = cache_find(w, room);
	if (i < 0) {
		uint8_t key[8];
		MDB_val v;
		put_be64(key, room);
		/* The slot first: taking it may flush the cache, and a write
		 * in this transaction can move the page a value read before
		 * it points into. */
		pl_status st = cache_slot(w, &i);
		if (st != PL_OK)
			return st;
		st = get(w, w->s->rooms, key, 8, &v);
		if (st == PL_OK)
			st = brk_room_decode(v.mv_data, v.mv_size,
			    &w->s->scratch, &w->s->cache[i]);
		if (st != PL_OK) {
			if (st == PL_E_CORRUPT)
				PL_ERROR("store",
				    "event=room_decode_failed room=%016llx",
				    (unsigned long long)room);
			w->nrooms--;
			return st;
		}
	}
	*out = &w->s->cache[i];
	return PL_OK;
}

static void mark_dirty(brk_wtxn *w, const brk_room *r)
{
	int i = (int)(r - w->s->cache);
	PL_ASSERT(i >= 0 && i < w->nrooms);
	w->dirty[i] = true;
}

/* ---- tenant day aggregates ---- */

static pl_status day_slot_get(
    brk_wtxn *w, const char *tenant, uint32_t day, day_slot **out)
{
	brk_store *s = w->s;
	for (int i = 0; i < w->ndays; i++) {
		day_slot *d = &s->days_cache[i];
		if (d->day == day && strcmp(d->tenant, tenant) == 0) {
			*out = d;
			return PL_OK;
		}
	}
	if (w->ndays == ROUND_DAYS_CACHED_MAX) {
		pl_status st = flush_days(w);
		if (st != PL_OK)
			return st;
	}
	day_slot *d = &s->days_cache[w->ndays];
	memset(d, 0, sizeof(*d));
	snprintf(d->tenant, sizeof(d->tenant), "%s", tenant);
	d->day = day;
	parley__internal__tenant_day_rec__init(&d->rec);
	uint8_t key[PL_TENANT_CHARS_MAX + 8],
	    dk[4] = {(uint8_t)(day >> 24), (uint8_t)(day >> 16),
	        (uint8_t)(day >> 8), (uint8_t)day};
	size_t kl = tenant_key(key, sizeof(key), tenant, dk, 4);
	MDB_val v;
	if (kl != 0 && get(w, s->days, key, kl, &v) == PL_OK) {
		Parley__Internal__TenantDayRec *r =
		    parley__internal__tenant_day_rec__unpack(
		        NULL, v.mv_size, v.mv_data);
		if (r != NULL) {
			d->rec = *r;
			d->rec.tenant = NULL;
			parley__internal__tenant_day_rec__free_unpacked(
			    r, NULL);
		}
	}
	d->rec.tenant = d->tenant;
	d->rec.day = day;
	w->ndays++;
	*out = d;
	return PL_OK;
}

static pl_status apply_day(
    brk_wtxn *w, const char *tenant, const brk_day_delta *dd)
{
	day_slot *d;
	uint32_t day = (uint32_t)(dd->day_ts_us / (86400LL * 1000000));
	pl_status st = day_slot_get(w, tenant, day, &d);
	if (st != PL_OK)
		return st;
	Parley__Internal__TenantDayRec *r = &d->rec;
	r->rooms_created += dd->rooms_created;
	r->rooms_closed += dd->rooms_closed;
	r->messages += dd->messages;
	if (dd->wait_us >= 0) {
		r->wait_us_sum += dd->wait_us;
		r->wait_n++;
	}
	if (dd->first_response_us >= 0) {
		r->first_response_us_sum += dd->first_response_us;
		r->first_response_n++;
	}
	if (dd->handle_us >= 0) {
		r->handle_us_sum += dd->handle_us;
		r->handle_n++;
	}
	return PL_OK;
}

/* ---- the log ---- */

/* A log value: crc32c u32 BE | term u64 BE | type u8 | payload. The CRC
 * covers the key (the index) and everything after the CRC, so an entry
 * copied to the wrong index, torn or flipped is caught on read. */
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
		return mdb_status(rc);
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
		return mdb_status(rc);
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
static pl_status read_cmd(
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
	pl_status st = PL_OK;
	for (uint64_t i = w->last_index; i >= from && st == PL_OK; i--) {
		uint8_t key[8];
		put_be64(key, i);
		st = del(w, w->s->log, key, 8);
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
		st = del(w, w->s->log, key, 8);
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
	return PL_OK;
}

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

pl_status brk_store_copy(brk_store *s, const char *dir)
{
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return PL_E_IO;
	int rc = mdb_env_copy2(s->env, dir, MDB_CP_COMPACT);
	if (rc != MDB_SUCCESS)
		PL_ERROR("store", "event=copy_failed dir=%s err=\"%s\"", dir,
		    mdb_strerror(rc));
	return mdb_status(rc);
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
		*index = a;
		*term = t;
	}
	return st;
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
		return mdb_status(rc);
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

/* ---- applying commands ---- */

/* The user_rooms key: tenant NUL user NUL room u64 BE. 0 when too long. */
static size_t user_room_key(uint8_t *out, size_t cap, const char *tenant,
    const char *user, uint64_t room)
{
	uint8_t sfx[PL_USER_CHARS_MAX + 1 + 8];
	size_t ul = strlen(user);
	if (ul > PL_USER_CHARS_MAX)
		return 0;
	memcpy(sfx, user, ul);
	sfx[ul] = 0;
	put_be64(sfx + ul + 1, room);
	return tenant_key(out, cap, tenant, sfx, ul + 1 + 8);
}

/* Indexes room under its new member (list_rooms of members). */
static pl_status user_room_add(
    brk_wtxn *w, const char *tenant, const char *user, uint64_t room)
{
	uint8_t k[PL_TENANT_CHARS_MAX + PL_USER_CHARS_MAX + 10];
	size_t kl = user_room_key(k, sizeof(k), tenant, user, room);
	if (kl == 0)
		return PL_E_BAD_REQUEST;
	return put(w, w->s->user_rooms, k, kl, "", 0);
}

static pl_status room_insert(brk_wtxn *w, const Parley__Internal__Caller *c,
    Parley__MetaEntry **meta, size_t n_meta, int64_t ts, uint64_t room)
{
	brk_room *r;
	int i;
	pl_status st = cache_slot(w, &i);
	if (st != PL_OK)
		return st;
	r = &w->s->cache[i];
	memset(r, 0, sizeof(*r));
	r->id = room;
	snprintf(r->tenant, sizeof(r->tenant), "%s", c->tenant);
	r->stats.created_us = ts;
	for (size_t m = 0; m < n_meta && m < PL_META_ENTRIES_MAX; m++) {
		snprintf(
		    r->meta[m].key, sizeof(r->meta[m].key), "%s", meta[m]->key);
		snprintf(r->meta[m].value, sizeof(r->meta[m].value), "%s",
		    meta[m]->value);
		r->nmeta++;
	}
	brk_day_delta d;
	brk_day_delta_init(&d, ts);
	d.rooms_created = 1;
	if (c->role != PARLEY__ROLE__SERVICE &&
	    ((st = brk_room_join(r, c->user, c->role, ts, &d)) != PL_OK ||
	        (st = user_room_add(w, c->tenant, c->user, room)) != PL_OK))
		return st;
	w->dirty[i] = true;
	return apply_day(w, c->tenant, &d);
}

static size_t idem_key(
    uint8_t *out, size_t cap, const char *tenant, const char *key)
{
	return tenant_key(out, cap, tenant, key, strlen(key));
}

static pl_status ap_create(
    brk_wtxn *w, const Parley__Internal__Command *cmd, brk_applied *res)
{
	brk_store *s = w->s;
	const Parley__Internal__Caller *c = cmd->caller;
	const Parley__Internal__CreateRoomCmd *op = cmd->create_room;
	uint8_t ik[PL_TENANT_CHARS_MAX + PL_IDEMPOTENCY_KEY_CHARS_MAX + 2];
	size_t ikl = 0;
	MDB_val v;
	pl_status ast =
	    brk_access(NULL, c, PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM);
	if (ast != PL_OK)
		return ast;
	if (op->idempotency_key != NULL && op->idempotency_key[0] != '\0') {
		ikl = idem_key(ik, sizeof(ik), c->tenant, op->idempotency_key);
		if (ikl == 0)
			return PL_E_BAD_REQUEST;
		if (get(w, s->idem, ik, ikl, &v) == PL_OK && v.mv_size == 8) {
			res->room = get_be64(v.mv_data);
			res->existed = true;
			return PL_OK;
		}
	}
	if (w->room_counter >= PL_ROOM_COUNTER_MAX)
		return PL_E_TOO_LARGE;
	uint64_t id = pl_room_make(s->cfg.group, w->room_counter + 1);
	uint8_t rk[8];
	put_be64(rk, id);
	uint8_t tk[PL_TENANT_CHARS_MAX + 10];
	size_t tkl = tenant_key(tk, sizeof(tk), c->tenant, rk, 8);
	pl_status st = put(w, s->tenant_rooms, tk, tkl, "", 0);
	if (st == PL_OK && ikl != 0)
		st = put(w, s->idem, ik, ikl, rk, 8);
	if (st == PL_OK)
		st = room_insert(w, c, op->meta, op->n_meta, cmd->ts_us, id);
	if (st != PL_OK)
		return st;
	w->room_counter++;
	res->room = id;
	return PL_OK;
}

/* Loads a room for a write: tenant and access checked, open required. */
static pl_status room_for_write(brk_wtxn *w, const Parley__Internal__Caller *c,
    uint64_t room, int op, brk_room **out)
{
	brk_room *r;
	pl_status st = brk_room_get(w, room, &r);
	if (st != PL_OK)
		return st;
	if ((st = brk_access(r, c, op)) != PL_OK)
		return st;
	if (r->closed)
		return PL_E_ROOM_CLOSED;
	*out = r;
	return PL_OK;
}

static pl_status ap_join(brk_wtxn *w, const Parley__Internal__Command *cmd,
    uint64_t room, brk_applied *res)
{
	const Parley__Internal__Caller *c = cmd->caller;
	brk_room *r;
	pl_status st =
	    room_for_write(w, c, room, PARLEY__CLIENT_FRAME__BODY_JOIN, &r);
	if (st != PL_OK)
		return st;
	brk_member *m = brk_room_member(r, c->user);
	if (m != NULL && m->joined && m->role == (int)c->role)
		return PL_OK; /* already joined */
	brk_day_delta d;
	brk_day_delta_init(&d, cmd->ts_us);
	brk_room probe = *r; /* capacity first: nothing half-done */
	if ((st = brk_room_join(&probe, c->user, c->role, cmd->ts_us, &d)) !=
	        PL_OK ||
	    (m == NULL &&
	        (st = user_room_add(w, c->tenant, c->user, room)) != PL_OK))
		return st;
	*r = probe;
	mark_dirty(w, r);
	res->changed = true;
	return apply_day(w, c->tenant, &d);
}

static pl_status ap_leave(brk_wtxn *w, const Parley__Internal__Command *cmd,
    uint64_t room, brk_applied *res)
{
	const Parley__Internal__Caller *c = cmd->caller;
	brk_room *r;
	pl_status st = brk_room_get(w, room, &r);
	if (st != PL_OK)
		return st;
	if ((st = brk_access(r, c, PARLEY__CLIENT_FRAME__BODY_LEAVE)) != PL_OK)
		return st;
	brk_member *m = brk_room_member(r, c->user);
	if (m == NULL || !m->joined)
		return PL_OK;
	brk_room_leave(r, c->user);
	mark_dirty(w, r);
	res->changed = true;
	return PL_OK;
}

static size_t dedup_key(uint8_t *out, uint64_t room, const char *cmid)
{
	size_t n = strlen(cmid);
	put_be64(out, room);
	memcpy(out + 8, cmid, n);
	return 8 + n;
}

/* A dedup record is seq | ts | origin (origin since resends were told
 * apart; older records of 16 bytes have none). A hit is the client's
 * duplicate unless the stored message came from this very request
 * (origin, non-zero, equal): then the gateway resent it after a
 * failover and the client sent it once. */
#define DEDUP_VALUE_BYTES 24
#define DEDUP_VALUE_BYTES_V1 16

static pl_status dedup_check(brk_wtxn *w, uint64_t room, const char *cmid,
    uint64_t origin, brk_applied *res)
{
	uint8_t k[8 + PL_CLIENT_MSG_ID_CHARS_MAX];
	MDB_val v;
	if (cmid == NULL || cmid[0] == '\0' ||
	    strlen(cmid) > PL_CLIENT_MSG_ID_CHARS_MAX)
		return PL_E_NOT_FOUND;
	pl_status st = get(w, w->s->dedup, k, dedup_key(k, room, cmid), &v);
	if (st != PL_OK || (v.mv_size != DEDUP_VALUE_BYTES &&
	                       v.mv_size != DEDUP_VALUE_BYTES_V1))
		return PL_E_NOT_FOUND;
	uint64_t stored = v.mv_size == DEDUP_VALUE_BYTES
	                      ? get_be64((uint8_t *)v.mv_data + 16)
	                      : 0;
	res->room = room;
	res->seq = get_be64(v.mv_data);
	res->ts_us = (int64_t)get_be64((uint8_t *)v.mv_data + 8);
	res->duplicate = stored == 0 || stored != origin;
	return PL_OK;
}

/* Forgets the client_msg_id of seq (dedup window pruning). */
static pl_status dedup_forget(brk_wtxn *w, uint64_t room, uint64_t seq)
{
	uint8_t k[16];
	MDB_val v;
	put_be64(k, room);
	put_be64(k + 8, seq);
	if (get(w, w->s->seq, k, 16, &v) != PL_OK || v.mv_size <= 8)
		return PL_OK;
	uint8_t dk[8 + PL_CLIENT_MSG_ID_CHARS_MAX];
	size_t n = v.mv_size - 8;
	if (n > PL_CLIENT_MSG_ID_CHARS_MAX)
		return PL_E_CORRUPT;
	put_be64(dk, room);
	memcpy(dk + 8, (uint8_t *)v.mv_data + 8, n);
	return del(w, w->s->dedup, dk, 8 + n);
}

/* Writes the seq index (-> log index + client_msg_id) and dedup entry. */
static pl_status index_message(brk_wtxn *w, uint64_t room, uint64_t seq,
    const char *cmid, uint64_t origin, int64_t ts, uint64_t index)
{
	brk_store *s = w->s;
	uint8_t k[16], v[8 + PL_CLIENT_MSG_ID_CHARS_MAX];
	size_t cl = cmid ? strlen(cmid) : 0;
	if (cl > PL_CLIENT_MSG_ID_CHARS_MAX)
		return PL_E_BAD_REQUEST;
	put_be64(k, room);
	put_be64(k + 8, seq);
	put_be64(v, index);
	memcpy(v + 8, cmid, cl);
	pl_status st = put(w, s->seq, k, 16, v, 8 + cl);
	if (st != PL_OK || cl == 0)
		return st;
	uint8_t dk[8 + PL_CLIENT_MSG_ID_CHARS_MAX], dv[DEDUP_VALUE_BYTES];
	put_be64(dv, seq);
	put_be64(dv + 8, (uint64_t)ts);
	put_be64(dv + 16, origin);
	st = put(w, s->dedup, dk, dedup_key(dk, room, cmid), dv, sizeof(dv));
	if (st == PL_OK && s->cfg.dedup_window && seq > s->cfg.dedup_window)
		st = dedup_forget(w, room, seq - s->cfg.dedup_window);
	return st;
}

static pl_status body_encode(brk_store *s, Parley__Internal__PublishCmd *op,
    const ProtobufCBinaryData *body)
{
	op->body = *body;
	if (body->len > BODY_BYTES_MAX)
		return PL_E_TOO_LARGE;
	if (s->cfg.compress_bytes_min == 0 ||
	    body->len < s->cfg.compress_bytes_min)
		return PL_OK;
	size_t z = ZSTD_compressCCtx(
	    s->zc, s->zbuf, s->zbuf_cap, body->data, body->len, ZSTD_LEVEL);
	if (ZSTD_isError(z) || z >= body->len)
		return PL_OK;
	op->body.data = s->zbuf;
	op->body.len = z;
	op->compressed = true;
	op->raw_len = (uint32_t)body->len;
	return PL_OK;
}

static pl_status message_from_cmd(brk_store *s,
    const Parley__Internal__Command *c, uint64_t room, uint64_t seq,
    brk_arena *a, Parley__Message *m);

static pl_status ap_publish(brk_wtxn *w, const Parley__Internal__Command *cmd,
    uint64_t index, brk_arena *a, brk_applied *res)
{
	const Parley__Internal__Caller *c = cmd->caller;
	const Parley__Internal__PublishCmd *op = cmd->publish;
	uint64_t room = op->room;
	brk_room *r;
	size_t raw = op->compressed ? op->raw_len : op->body.len;
	if (raw > BODY_BYTES_MAX)
		return PL_E_TOO_LARGE;
	if (op->kind == PARLEY__KIND__SYSTEM &&
	    c->role != PARLEY__ROLE__SERVICE)
		return PL_E_FORBIDDEN;
	pl_status st =
	    room_for_write(w, c, room, PARLEY__CLIENT_FRAME__BODY_PUBLISH, &r);
	if (st != PL_OK)
		return st;
	const char *cmid = op->client_msg_id ? op->client_msg_id : "";
	if (dedup_check(w, room, cmid, op->origin, res) == PL_OK)
		return PL_OK;
	uint64_t seq = r->last_seq + 1;
	if ((st = index_message(w, room, seq, cmid, op->origin, cmd->ts_us,
	         index)) != PL_OK)
		return st;
	brk_day_delta d;
	brk_day_delta_init(&d, cmd->ts_us);
	r->last_seq = seq;
	brk_room_on_message(r, c->role, op->kind, cmd->ts_us, &d);
	mark_dirty(w, r);
	res->room = room;
	res->seq = seq;
	res->ts_us = cmd->ts_us;
	if ((st = apply_day(w, r->tenant, &d)) != PL_OK)
		return st;
	if (a == NULL)
		return PL_OK;
	Parley__Message *m = brk_arena_alloc(a, sizeof(*m));
	if (m == NULL || message_from_cmd(w->s, cmd, room, seq, a, m) != PL_OK)
		return PL_OK; /* the event is best effort: history has it */
	res->msg = m;
	return PL_OK;
}

static pl_status ap_read(brk_wtxn *w, const Parley__Internal__Command *cmd,
    uint64_t room, brk_applied *res)
{
	const Parley__Internal__Caller *c = cmd->caller;
	uint64_t seq = cmd->read->seq;
	brk_room *r;
	pl_status st = brk_room_get(w, room, &r);
	if (st != PL_OK)
		return st;
	if ((st = brk_access(r, c, PARLEY__CLIENT_FRAME__BODY_READ)) != PL_OK)
		return st;
	brk_member *m = brk_room_member(r, c->user);
	if (seq > r->last_seq)
		seq = r->last_seq;
	if (m == NULL)
		return PL_OK;
	res->seq = m->read_seq;
	if (seq <= m->read_seq)
		return PL_OK; /* positions only move forward */
	m->read_seq = seq;
	res->seq = seq;
	res->changed = true;
	mark_dirty(w, r);
	return PL_OK;
}

static pl_status ap_close(brk_wtxn *w, const Parley__Internal__Command *cmd,
    uint64_t room, brk_applied *res)
{
	brk_room *r;
	pl_status st = room_for_write(
	    w, cmd->caller, room, PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM, &r);
	if (st != PL_OK)
		return st;
	const char *reason = cmd->close->reason ? cmd->close->reason : "";
	brk_day_delta d;
	brk_day_delta_init(&d, cmd->ts_us);
	brk_room_close(r, reason, cmd->ts_us, &d);
	mark_dirty(w, r);
	res->changed = true;
	return apply_day(w, r->tenant, &d);
}

/* Failures of the store itself, as opposed to a command's outcome: they
 * fail the whole round. */
static bool storage_failure(pl_status st)
{
	return st == PL_E_MAP_FULL || st == PL_E_DISK_FULL || st == PL_E_IO ||
	       st == PL_E_NOMEM || st == PL_E_CORRUPT;
}

static pl_status apply_cmd(brk_wtxn *w, const Parley__Internal__Command *cmd,
    uint64_t index, brk_arena *a, brk_applied *res)
{
	switch (cmd->op_case) {
	case PARLEY__INTERNAL__COMMAND__OP_CREATE_ROOM:
		return ap_create(w, cmd, res);
	case PARLEY__INTERNAL__COMMAND__OP_JOIN:
		res->room = cmd->join->room;
		return ap_join(w, cmd, cmd->join->room, res);
	case PARLEY__INTERNAL__COMMAND__OP_LEAVE:
		res->room = cmd->leave->room;
		return ap_leave(w, cmd, cmd->leave->room, res);
	case PARLEY__INTERNAL__COMMAND__OP_PUBLISH:
		res->room = cmd->publish->room;
		return ap_publish(w, cmd, index, a, res);
	case PARLEY__INTERNAL__COMMAND__OP_READ:
		res->room = cmd->read->room;
		return ap_read(w, cmd, cmd->read->room, res);
	case PARLEY__INTERNAL__COMMAND__OP_CLOSE:
		res->room = cmd->close->room;
		return ap_close(w, cmd, cmd->close->room, res);
	default:
		return PL_E_BAD_REQUEST;
	}
}

pl_status brk_apply(
    brk_wtxn *w, const raft_entry *e, brk_arena *a, brk_applied *res)
{
	memset(res, 0, sizeof(*res));
	if (e->index != w->applied + 1)
		return PL_E_CORRUPT; /* applying out of order */
	if (!w->write)
		return PL_E_MAP_FULL;
	res->index = e->index;
	if (e->type == RAFT_ENTRY_NORMAL && e->len > 0) {
		Parley__Internal__Command *cmd;
		pl_arena_reset(&w->s->cmd_scratch);
		pl_status st = pl_command_decode(
		    e->data, e->len, &w->s->cmd_scratch, &cmd);
		if (st != PL_OK) {
			/* A leader encodes what it proposes; a command that
			 * does not decode is refused the same way on every
			 * replica. */
			res->st = PL_E_BAD_REQUEST;
		} else {
			res->cmd = cmd;
			st = apply_cmd(w, cmd, e->index, a, res);
			if (storage_failure(st)) {
				PL_ERROR("store",
				    "event=apply_failed index=%llu op=%d "
				    "err=\"%s\"",
				    (unsigned long long)e->index,
				    (int)cmd->op_case, pl_strerror(st));
				return st;
			}
			res->st = st;
		}
	}
	w->applied = e->index;
	return PL_OK;
}

/* ---- commands from requests ---- */

pl_status brk_cmd_build(brk_store *s, const Parley__Internal__Caller *c,
    const Parley__ClientFrame *f, uint64_t room, int64_t ts, brk_cmd *out)
{
	Parley__Internal__Command *cmd = &out->cmd;
	parley__internal__command__init(cmd);
	cmd->ts_us = ts;
	cmd->caller = (Parley__Internal__Caller *)c;
	switch (f->body_case) {
	case PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM: {
		Parley__Internal__CreateRoomCmd *op = &out->op.create_room;
		parley__internal__create_room_cmd__init(op);
		op->idempotency_key = f->create_room->idempotency_key;
		op->n_meta = f->create_room->n_meta;
		op->meta = f->create_room->meta;
		cmd->op_case = PARLEY__INTERNAL__COMMAND__OP_CREATE_ROOM;
		cmd->create_room = op;
		return PL_OK;
	}
	case PARLEY__CLIENT_FRAME__BODY_JOIN:
	case PARLEY__CLIENT_FRAME__BODY_LEAVE: {
		/* JoinCmd and LeaveCmd carry the room alone. */
		bool join = f->body_case == PARLEY__CLIENT_FRAME__BODY_JOIN;
		if (join) {
			parley__internal__join_cmd__init(&out->op.join);
			out->op.join.room = room;
			cmd->op_case = PARLEY__INTERNAL__COMMAND__OP_JOIN;
			cmd->join = &out->op.join;
		} else {
			parley__internal__leave_cmd__init(&out->op.leave);
			out->op.leave.room = room;
			cmd->op_case = PARLEY__INTERNAL__COMMAND__OP_LEAVE;
			cmd->leave = &out->op.leave;
		}
		return PL_OK;
	}
	case PARLEY__CLIENT_FRAME__BODY_PUBLISH: {
		const Parley__Publish *p = f->publish;
		Parley__Internal__PublishCmd *op = &out->op.publish;
		parley__internal__publish_cmd__init(op);
		op->room = room;
		op->client_msg_id = p->client_msg_id ? p->client_msg_id : "";
		op->kind = p->kind;
		op->n_meta = p->n_meta;
		op->meta = p->meta;
		cmd->op_case = PARLEY__INTERNAL__COMMAND__OP_PUBLISH;
		cmd->publish = op;
		return body_encode(s, op, &p->body);
	}
	case PARLEY__CLIENT_FRAME__BODY_READ: {
		Parley__Internal__ReadCmd *op = &out->op.read;
		parley__internal__read_cmd__init(op);
		op->room = room;
		op->seq = f->read->seq;
		cmd->op_case = PARLEY__INTERNAL__COMMAND__OP_READ;
		cmd->read = op;
		return PL_OK;
	}
	case PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM: {
		Parley__Internal__CloseCmd *op = &out->op.close;
		parley__internal__close_cmd__init(op);
		op->room = room;
		op->reason = f->close_room->reason ? f->close_room->reason : "";
		cmd->op_case = PARLEY__INTERNAL__COMMAND__OP_CLOSE;
		cmd->close = op;
		return PL_OK;
	}
	default:
		return PL_E_BAD_REQUEST;
	}
}

/* ---- single-replica writes (tests, tools): propose and apply at once */

/* Builds the command of f, appends it as the next entry and applies it. */
static pl_status local_apply(brk_wtxn *w, const Parley__Internal__Caller *c,
    const Parley__ClientFrame *f, uint64_t room, int64_t ts, brk_applied *res)
{
	brk_store *s = w->s;
	brk_cmd bc;
	size_t n;
	if (w->applied != w->last_index)
		return PL_E_AGAIN;
	pl_status st = brk_cmd_build(s, c, f, room, ts, &bc);
	if (st == PL_OK)
		st = pl_pb_encode(&bc.cmd.base, s->cbuf, ENTRY_BYTES_MAX, &n);
	if (st != PL_OK)
		return st;
	raft_entry e = {.term = w->hs.term ? w->hs.term : 1,
	    .index = w->last_index + 1,
	    .type = RAFT_ENTRY_NORMAL,
	    .data = s->cbuf,
	    .len = n};
	if ((st = brk_log_append(w, &e, 1)) != PL_OK)
		return st;
	if ((st = brk_apply(w, &e, NULL, res)) != PL_OK)
		return st;
	return res->st;
}

pl_status brk_create_room(brk_wtxn *w, const Parley__Internal__Caller *c,
    const Parley__CreateRoom *cr, int64_t ts, uint64_t *room, bool *existed)
{
	Parley__ClientFrame f = PARLEY__CLIENT_FRAME__INIT;
	brk_applied res;
	f.body_case = PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM;
	f.create_room = (Parley__CreateRoom *)cr;
	pl_status st = local_apply(w, c, &f, 0, ts, &res);
	if (st == PL_OK) {
		*room = res.room;
		*existed = res.existed;
	}
	return st;
}

pl_status brk_publish(brk_wtxn *w, const Parley__Internal__Caller *c,
    uint64_t room, const Parley__Publish *p, int64_t ts, brk_pub_result *r)
{
	Parley__ClientFrame f = PARLEY__CLIENT_FRAME__INIT;
	brk_applied res;
	memset(&res, 0, sizeof(res));
	f.body_case = PARLEY__CLIENT_FRAME__BODY_PUBLISH;
	f.publish = (Parley__Publish *)p;
	/* A retry is answered from the dedup table without a log entry. */
	pl_status st = dedup_check(w, room, p->client_msg_id, 0, &res);
	if (st != PL_OK &&
	    (st = local_apply(w, c, &f, room, ts, &res)) != PL_OK)
		return st;
	r->seq = res.seq;
	r->ts_us = res.ts_us;
	r->duplicate = res.duplicate;
	return PL_OK;
}

/* ---- reads ---- */

static pl_status body_copy(brk_store *s, const Parley__Internal__PublishCmd *op,
    brk_arena *a, ProtobufCBinaryData *out)
{
	size_t n = op->compressed ? op->raw_len : op->body.len;
	if (n > BODY_BYTES_MAX)
		return PL_E_CORRUPT;
	uint8_t *p = brk_arena_alloc(a, n ? n : 1);
	if (p == NULL)
		return PL_E_NOMEM;
	if (!op->compressed) {
		memcpy(p, op->body.data, n);
	} else {
		size_t got = ZSTD_decompressDCtx(
		    s->zd, p, n, op->body.data, op->body.len);
		if (ZSTD_isError(got) || got != n)
			return PL_E_CORRUPT;
	}
	out->data = p;
	out->len = n;
	return PL_OK;
}

static pl_status meta_copy(
    Parley__MetaEntry **src, size_t n, brk_arena *a, Parley__Message *m)
{
	if (n == 0)
		return PL_OK;
	Parley__MetaEntry *e = brk_arena_alloc(a, n * sizeof(*e));
	Parley__MetaEntry **ep = brk_arena_alloc(a, n * sizeof(*ep));
	if (e == NULL || ep == NULL)
		return PL_E_NOMEM;
	for (size_t i = 0; i < n; i++) {
		parley__meta_entry__init(&e[i]);
		e[i].key = brk_arena_strdup(a, src[i]->key);
		e[i].value = brk_arena_strdup(a, src[i]->value);
		if (e[i].key == NULL || e[i].value == NULL)
			return PL_E_NOMEM;
		ep[i] = &e[i];
	}
	m->n_meta = n;
	m->meta = ep;
	return PL_OK;
}

/* Builds m (in a) from a verified publish command stored as seq. */
static pl_status message_from_cmd(brk_store *s,
    const Parley__Internal__Command *c, uint64_t room, uint64_t seq,
    brk_arena *a, Parley__Message *m)
{
	const Parley__Internal__PublishCmd *op = c->publish;
	if (c->op_case != PARLEY__INTERNAL__COMMAND__OP_PUBLISH ||
	    op->room != room || c->caller == NULL)
		return PL_E_CORRUPT;
	parley__message__init(m);
	char *id = brk_arena_alloc(a, PL_ROOM_ID_CHARS + 1);
	if (id == NULL)
		return PL_E_NOMEM;
	pl_room_format(room, id);
	m->room = id;
	m->seq = seq;
	m->ts_us = c->ts_us;
	m->sender = brk_arena_strdup(a, c->caller->user);
	m->role = c->caller->role;
	m->kind = op->kind;
	m->client_msg_id = brk_arena_strdup(a, op->client_msg_id);
	if (m->sender == NULL || m->client_msg_id == NULL)
		return PL_E_NOMEM;
	pl_status st = body_copy(s, op, a, &m->body);
	if (st == PL_OK)
		st = meta_copy(op->meta, op->n_meta, a, m);
	return st;
}

pl_status brk_message_get(brk_wtxn *w, uint64_t room, uint64_t seq,
    brk_arena *a, Parley__Message *out)
{
	uint8_t k[16];
	MDB_val v;
	Parley__Internal__Command *c;
	put_be64(k, room);
	put_be64(k + 8, seq);
	pl_status st = get(w, w->s->seq, k, 16, &v);
	if (st != PL_OK)
		return st;
	if (v.mv_size < 8)
		return PL_E_CORRUPT;
	if ((st = read_cmd(w, get_be64(v.mv_data), &c)) != PL_OK)
		return st;
	return message_from_cmd(w->s, c, room, seq, a, out);
}

/* The page's seq range: first seq and direction. */
static bool history_range(
    const brk_room *r, const Parley__History *h, uint64_t *first, int *dir)
{
	if (h->before_seq != 0) {
		uint64_t b = h->before_seq > r->last_seq + 1 ? r->last_seq + 1
		                                             : h->before_seq;
		*first = b - 1;
		*dir = -1;
		return b > 1;
	}
	if (h->after_seq != 0 || h->oldest_first) {
		*first = h->after_seq + 1;
		*dir = 1;
		return *first <= r->last_seq;
	}
	*first = r->last_seq;
	*dir = -1;
	return r->last_seq > 0;
}

pl_status brk_history(brk_wtxn *w, uint64_t room, const Parley__History *h,
    brk_arena *a, Parley__HistoryPage *out)
{
	brk_room *r;
	pl_status st = brk_room_get(w, room, &r);
	if (st != PL_OK)
		return st;
	uint64_t last = r->last_seq, seq;
	int dir;
	uint32_t limit = h->limit ? h->limit : HISTORY_LIMIT_DEFAULT;
	if (limit > PL_HISTORY_LIMIT_MAX)
		limit = PL_HISTORY_LIMIT_MAX;
	parley__history_page__init(out);
	out->room = brk_arena_alloc(a, PL_ROOM_ID_CHARS + 1);
	out->messages = brk_arena_alloc(a, limit * sizeof(*out->messages));
	if (out->room == NULL || out->messages == NULL)
		return PL_E_NOMEM;
	pl_room_format(room, out->room);
	if (!history_range(r, h, &seq, &dir))
		return PL_OK;
	size_t bytes = 0, budget = HISTORY_PAGE_BYTES_MAX;
	if (h->max_bytes != 0 && h->max_bytes < budget)
		budget = h->max_bytes;
	while (seq >= 1 && seq <= last) {
		if (out->n_messages == limit || bytes >= budget) {
			out->more = true;
			break;
		}
		Parley__Message *m = brk_arena_alloc(a, sizeof(*m));
		if (m == NULL)
			return PL_E_NOMEM;
		if ((st = brk_message_get(w, room, seq, a, m)) != PL_OK)
			return st == PL_E_NOT_FOUND ? PL_E_CORRUPT : st;
		bytes += m->body.len;
		out->messages[out->n_messages++] = m;
		seq = dir > 0 ? seq + 1 : seq - 1;
	}
	return PL_OK;
}

/* A page of rooms from an index whose keys are a prefix and a big-endian
 * room id (the last 8 of kl bytes): from the key k on, at most limit. */
static pl_status list_rooms_from(brk_wtxn *w, MDB_dbi dbi, const uint8_t *k,
    size_t kl, uint32_t limit, brk_arena *a, Parley__RoomList *out)
{
	MDB_cursor *cur;
	MDB_val key, val;
	if (limit == 0 || limit > LIST_LIMIT_MAX)
		limit = limit ? LIST_LIMIT_MAX : LIST_LIMIT_DEFAULT;
	parley__room_list__init(out);
	out->rooms = brk_arena_alloc(a, limit * sizeof(char *));
	if (kl == 0 || out->rooms == NULL)
		return kl == 0 ? PL_E_BAD_REQUEST : PL_E_NOMEM;
	if (mdb_cursor_open(w->txn, dbi, &cur) != MDB_SUCCESS)
		return PL_E_IO;
	key.mv_size = kl;
	key.mv_data = (void *)k;
	int rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	pl_status st = PL_OK;
	while (rc == MDB_SUCCESS && key.mv_size == kl &&
	       memcmp(key.mv_data, k, kl - 8) == 0) {
		if (out->n_rooms == limit) {
			out->more = true;
			break;
		}
		char *id = brk_arena_alloc(a, PL_ROOM_ID_CHARS + 1);
		if (id == NULL) {
			st = PL_E_NOMEM;
			break;
		}
		pl_room_format(get_be64((uint8_t *)key.mv_data + kl - 8), id);
		out->rooms[out->n_rooms++] = id;
		rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return st;
}

pl_status brk_list_rooms(brk_wtxn *w, const char *tenant, uint64_t after,
    uint32_t limit, brk_arena *a, Parley__RoomList *out)
{
	uint8_t k[PL_TENANT_CHARS_MAX + 10], start[8];
	put_be64(start, after + 1);
	size_t kl = tenant_key(k, sizeof(k), tenant, start, 8);
	return list_rooms_from(w, w->s->tenant_rooms, k, kl, limit, a, out);
}

pl_status brk_list_user_rooms(brk_wtxn *w, const char *tenant, const char *user,
    uint64_t after, uint32_t limit, brk_arena *a, Parley__RoomList *out)
{
	uint8_t k[PL_TENANT_CHARS_MAX + PL_USER_CHARS_MAX + 10];
	size_t kl = user_room_key(k, sizeof(k), tenant, user, after + 1);
	return list_rooms_from(w, w->s->user_rooms, k, kl, limit, a, out);
}

static void day_date(uint32_t day, char *out, size_t cap)
{
	time_t t = (time_t)day * 86400;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%d", &tm);
}

static pl_status day_to_pb(const Parley__Internal__TenantDayRec *r,
    uint32_t day, const char *tenant, brk_arena *a, Parley__TenantDay *d)
{
	char *date = brk_arena_alloc(a, 16);
	char *t = brk_arena_strdup(a, tenant);
	if (date == NULL || t == NULL)
		return PL_E_NOMEM;
	day_date(day, date, 16);
	parley__tenant_day__init(d);
	d->tenant = t;
	d->day = day;
	d->date = date;
	d->rooms_created = r->rooms_created;
	d->rooms_closed = r->rooms_closed;
	d->messages = r->messages;
	d->wait_us_sum = r->wait_us_sum;
	d->wait_n = r->wait_n;
	d->first_response_us_sum = r->first_response_us_sum;
	d->first_response_n = r->first_response_n;
	d->handle_us_sum = r->handle_us_sum;
	d->handle_n = r->handle_n;
	return PL_OK;
}

pl_status brk_report(brk_wtxn *w, const char *tenant, uint32_t first_day,
    uint32_t last_day, brk_arena *a, Parley__Report *out)
{
	if (last_day < first_day || last_day - first_day >= PL_REPORT_DAYS_MAX)
		return PL_E_BAD_REQUEST;
	pl_status st = flush_days(w); /* the round's own days count too */
	if (st != PL_OK && st != PL_E_MAP_FULL)
		return st;
	size_t n = last_day - first_day + 1;
	parley__report__init(out);
	out->days = brk_arena_alloc(a, n * sizeof(*out->days));
	if (out->days == NULL)
		return PL_E_NOMEM;
	for (uint32_t day = first_day; day <= last_day; day++) {
		uint8_t key[PL_TENANT_CHARS_MAX + 8],
		    dk[4] = {(uint8_t)(day >> 24), (uint8_t)(day >> 16),
		        (uint8_t)(day >> 8), (uint8_t)day};
		size_t kl = tenant_key(key, sizeof(key), tenant, dk, 4);
		MDB_val v;
		if (kl == 0 || get(w, w->s->days, key, kl, &v) != PL_OK)
			continue;
		Parley__Internal__TenantDayRec *r =
		    parley__internal__tenant_day_rec__unpack(
		        NULL, v.mv_size, v.mv_data);
		if (r == NULL)
			return PL_E_CORRUPT;
		Parley__TenantDay *d = brk_arena_alloc(a, sizeof(*d));
		st = d != NULL ? day_to_pb(r, day, tenant, a, d) : PL_E_NOMEM;
		parley__internal__tenant_day_rec__free_unpacked(r, NULL);
		if (st != PL_OK)
			return st;
		out->days[out->n_days++] = d;
	}
	return PL_OK;
}

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
