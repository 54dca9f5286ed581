/*
 * store_internal.h - what the files of broker/store/ share and nothing
 * outside them (and the store's test support) may use: the store and
 * round structs, the key encodings and the helpers one file offers the
 * others. The contract is store.h; this header may change with any
 * store change.
 *
 * One job per file:
 *   env.c        the LMDB environment (open, close, usage, sync, copy,
 *                snapshot adopt), its DBIs and commit rounds (brk_wtxn_*)
 *   room_cache.c the decoded rooms of a round (brk_room_get), written
 *                back when the round commits
 *   days.c       tenant day aggregates of a round, flushed like rooms
 *   log.c        the Raft log: append, truncate, term, entries, compact,
 *                verify, hard state, sync and repair marks
 *   apply.c      the state machine: brk_apply of committed commands
 *   cmd.c        commands built from client requests (brk_cmd_build)
 *   query.c      reads: history, one message, room lists, day reports
 *   map.c        the cluster map (meta group only): changes and reads
 *
 * Invariants (docs/internals.md "Storage layout"):
 *  - a commit round is one LMDB write transaction: the entries it appends
 *    and every state change they cause land together or not at all; the
 *    round's counters live in brk_wtxn and reach brk_store only when the
 *    transaction commits;
 *  - seqs of a room are 1..last_seq without gaps: seq N exists iff
 *    N <= last_seq;
 *  - a message body is written once, inside its log entry;
 *  - nothing read from the map outlives its transaction: history and
 *    message reads copy into the caller's arena.
 */
#ifndef PARLEY_BROKER_STORE_INTERNAL_H
#define PARLEY_BROKER_STORE_INTERNAL_H

#include <lmdb.h>
#include <string.h>
#include <zstd.h>

#include "broker/access.h"
#include "broker/store/store.h"

/* A log entry is a command plus its body; bodies are limited by the
 * gateway (16 KiB by default), the store refuses anything near 1 MiB. */
#define ENTRY_BYTES_MAX (1024 * 1024)
#define BODY_BYTES_MAX (ENTRY_BYTES_MAX - 64 * 1024)
/* Tenant-day aggregates touched by one round that stay in memory. */
#define ROUND_DAYS_CACHED_MAX 16

_Static_assert(ROOM_REC_BYTES_MAX < ENTRY_BYTES_MAX,
    "the entry scratch arena also decodes room records");
_Static_assert(BODY_BYTES_MAX > PL_BODY_BYTES_DEFAULT,
    "the store must accept the gateway's default body size");

typedef struct day_slot {
	char tenant[PL_TENANT_CHARS_MAX + 1];
	uint32_t day;
	Parley__Internal__TenantDayRec rec;
} day_slot;

/* A commit round: the transaction and the counters as this round moved
 * them (copied from brk_store at begin, back at commit). */
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
	uint8_t *zbuf; /* compression scratch */
	size_t zbuf_cap;
	pl_arena scratch;     /* decoding of one room record */
	pl_arena cmd_scratch; /* decoding of one command */
	brk_wtxn round;       /* one round at a time (the group thread's) */
	brk_room *cache;      /* ROUND_ROOMS_CACHED_MAX rooms of the round */
	day_slot days_cache[ROUND_DAYS_CACHED_MAX];
};

/* ---- keys: big-endian integers sort in numeric order ---- */

static inline void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static inline uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* key = tenant NUL suffix; returns its length or 0 if it won't fit. */
static inline size_t tenant_key(uint8_t *out, size_t cap, const char *tenant,
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

/* The user_rooms key: tenant NUL user NUL room u64 BE. 0 when too long. */
static inline size_t user_room_key(uint8_t *out, size_t cap, const char *tenant,
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

/* ---- env.c: LMDB calls in a round ---- */

/* An LMDB return code as a pl_status. */
pl_status brk_mdb_status(int rc);
/* put and del return PL_E_MAP_FULL in a read-only round; get returns
 * PL_E_NOT_FOUND when absent, and val points into the map. */
pl_status brk_wtxn_put(brk_wtxn *w, MDB_dbi db, const void *k, size_t klen,
    const void *v, size_t vlen);
pl_status brk_wtxn_get(
    brk_wtxn *w, MDB_dbi db, const void *k, size_t klen, MDB_val *val);
pl_status brk_wtxn_del(brk_wtxn *w, MDB_dbi db, const void *k, size_t klen);

/* ---- map.c ---- */

/* Applies a map change (the meta group's command): the outcome in
 * res->st (a refusal is an outcome, the same on every replica), the
 * version after it in res->map_version. The return value is a failure of
 * the store itself. */
pl_status brk_apply_map(
    brk_wtxn *w, const Parley__Internal__MapCmd *cmd, brk_applied *res);

/* ---- room_cache.c ---- */

/* A free cache slot (w->s->cache[*slot], not dirty); when the cache is
 * full, writes every dirty room back first. */
pl_status brk_room_cache_slot(brk_wtxn *w, int *slot);
/* r (a cached room of this round) is written back at commit. */
void brk_room_cache_dirty(brk_wtxn *w, const brk_room *r);
/* Writes every dirty cached room into the transaction. */
pl_status brk_room_cache_flush(brk_wtxn *w);

/* ---- days.c ---- */

/* Adds dd to tenant's aggregate of dd's day (cached for the round). */
pl_status brk_days_add(
    brk_wtxn *w, const char *tenant, const brk_day_delta *dd);
/* Writes the round's cached aggregates into the transaction. */
pl_status brk_days_flush(brk_wtxn *w);
/* The days key: tenant NUL day u32 BE. 0 when it won't fit. */
size_t brk_days_key(uint8_t *out, size_t cap, const char *tenant, uint32_t day);

/* ---- log.c ---- */

/* Reads, verifies and decodes the command of entry idx (into the store's
 * command arena, valid until the next decode). PL_E_CORRUPT when it is
 * missing, damaged or not a command. */
pl_status brk_log_cmd_read(
    brk_wtxn *w, uint64_t idx, Parley__Internal__Command **out);

/* ---- apply.c ---- */

/* The dedup record of cmid in room, if any (PL_E_NOT_FOUND otherwise):
 * fills res->room, seq, ts_us and duplicate. */
pl_status brk_apply_dedup_find(brk_wtxn *w, uint64_t room, const char *cmid,
    uint64_t origin, brk_applied *res);

/* ---- query.c ---- */

/* Builds m (in a) from a verified publish command stored as seq of room:
 * body decompressed, strings copied. PL_E_CORRUPT, PL_E_NOMEM. */
pl_status brk_message_build(brk_store *s, const Parley__Internal__Command *c,
    uint64_t room, uint64_t seq, brk_arena *a, Parley__Message *m);

#endif /* PARLEY_BROKER_STORE_INTERNAL_H */
