/*
 * store.h - the store of a shard group replica: one LMDB environment
 * holding the replicated log and the state that applying it builds
 * (rooms, per-room seq index, de-duplication, idempotency keys, tenant
 * day aggregates). broker/broker.h includes this header; the files that
 * implement it are in broker/store/ (one job each, listed at the top of
 * store_internal.h). Storage layout and invariants: docs/internals.md
 * "Storage layout".
 *
 * Threading: a store belongs to one thread (the group thread); one commit
 * round at a time.
 */
#ifndef PARLEY_BROKER_STORE_H
#define PARLEY_BROKER_STORE_H

#include "broker/arena.h"
#include "broker/room.h"
#include "raft/raft.h"

typedef struct brk_store_config {
	const char *dir;    /* created if missing */
	uint64_t map_bytes; /* LMDB map size */
	bool sync;          /* durability = sync: fsync at each commit */
	uint16_t group;
	uint32_t compress_bytes_min; /* bodies at least this long: zstd */
	uint32_t dedup_window;       /* client_msg_ids remembered per room */
} brk_store_config;

typedef struct brk_store brk_store;
typedef struct brk_wtxn brk_wtxn; /* a commit round's write transaction */

/* ---- the environment and commit rounds (env.c) ---- */

/* Opens (creating) the environment. *out set only on success.
 * PL_E_IO / PL_E_CORRUPT / PL_E_NOMEM. */
pl_status brk_store_open(const brk_store_config *cfg, brk_store **out);
void brk_store_close(brk_store *s); /* accepts NULL */
uint64_t brk_store_last_index(const brk_store *s);
void brk_store_usage(
    brk_store *s, uint64_t *used_bytes, uint64_t *map_bytes, uint64_t *rooms);
/* Forces an fsync (relaxed durability's periodic sync). */
pl_status brk_store_sync(brk_store *s);

/*
 * A commit round. begin opens a write transaction (or a read-only one
 * when write is false: every write call then returns PL_E_MAP_FULL, the
 * state after a full map). Writes are visible to reads in the same round.
 * commit writes cached rooms, commits and (sync) fsyncs; on any error
 * nothing of the round is stored. abort discards.
 */
pl_status brk_wtxn_begin(brk_store *s, bool write, brk_wtxn **out);
pl_status brk_wtxn_commit(brk_wtxn *w);
void brk_wtxn_abort(brk_wtxn *w); /* accepts NULL */

/* ---- the round's rooms (room_cache.c) ---- */

/* The room, decoded and cached for this round (borrowed, valid until the
 * round ends). PL_E_NOT_FOUND, PL_E_CORRUPT. */
pl_status brk_room_get(brk_wtxn *w, uint64_t room, brk_room **out);

/* ---- the replicated log (log.c) ---- */

/*
 * The replicated log. Entries are stored by index as
 * crc32c | term | type | payload (a packed Command); the CRC covers the
 * index too and is verified on every read. The hard state (term, vote,
 * commit) and the applied index live in `meta`, written in the same
 * transaction as the round's entries. Invariant: applied <= last_index,
 * and the room state is exactly the result of applying entries
 * 1..applied in order.
 */

/* Appends entries (consecutive indexes) in the round, first deleting any
 * stored entry at or after e[0].index (a conflicting suffix). Refuses
 * (PL_E_CORRUPT) to touch an applied entry or to leave a hole. */
pl_status brk_log_append(brk_wtxn *w, const raft_entry *e, size_t n);
/* Deletes entries >= from (a damaged tail), lowering last_index, the
 * stored commit and the sync mark to what remains. */
pl_status brk_log_truncate(brk_wtxn *w, uint64_t from);
/* The repair record of a damaged log (docs/raft.md "Damaged logs"):
 * stored with the truncation, cleared once repaired. */
void brk_repair_put(brk_wtxn *w, const raft_repair *rep);
void brk_store_repair(const brk_store *s, raft_repair *rep);
/* The Raft view of the log starts after the snapshot point (index, term)
 * (0, 0 for a log never compacted). Entries before it stay stored. */
uint64_t brk_store_first_index(const brk_store *s);
void brk_store_snap(const brk_store *s, uint64_t *index, uint64_t *term);
/* Moves the snapshot point up to index (<= applied). */
pl_status brk_log_compact(brk_store *s, uint64_t index);
/* Snapshots, which work on the whole environment (env.c). Writes a
 * consistent, compacted copy of the environment into dir (its
 * data.mdb): a snapshot to send. Safe beside the group's writes. */
pl_status brk_store_copy(brk_store *s, const char *dir);
/* On a store just opened on a received copy: cuts the log after the
 * copy's applied index, makes that the snapshot point, writes this
 * replica's own hard state; *index, *term = the snapshot point. */
pl_status brk_store_snapshot_adopt(
    brk_store *s, const raft_hard_state *hs, uint64_t *index, uint64_t *term);
/* The sync mark: (index, term) of the last entry written durably. */
void brk_store_mark(const brk_store *s, uint64_t *index, uint64_t *term);
/* Records the hard state; written when the round commits. */
void brk_hs_put(brk_wtxn *w, const raft_hard_state *hs);
/* The hard state and applied index as of the last committed round. */
void brk_store_raft(const brk_store *s, raft_hard_state *hs, uint64_t *applied);
uint64_t brk_store_applied(const brk_store *s);
uint64_t brk_wtxn_applied(const brk_wtxn *w); /* including this round's */

/* The Raft core's storage callbacks read through a read-only view that
 * brk_log_release ends; entries' data points into it until then. */
pl_status brk_log_term(brk_store *s, uint64_t index, uint64_t *term);
pl_status brk_log_entries(brk_store *s, uint64_t lo, uint64_t hi,
    size_t max_bytes, raft_entry *out, size_t cap, size_t *n);
void brk_log_release(brk_store *s);

/* ---- the state machine (apply.c) ---- */

/* What applying one entry did. st is the command's outcome: a refused
 * command (room closed, forbidden, ...) is applied as a refusal, the same
 * on every replica. */
typedef struct brk_applied {
	uint64_t index;
	pl_status st;
	const Parley__Internal__Command *cmd; /* NULL for no-op / config;
	                                         valid until the next apply */
	uint64_t room;
	bool existed;   /* create: the idempotency key was known */
	bool duplicate; /* publish: the client_msg_id was known */
	bool changed;   /* join, leave, read, close: the state moved */
	uint64_t seq;   /* publish: the message's seq; read: the position */
	int64_t ts_us;  /* publish: the message's timestamp */
	Parley__Message *msg; /* publish: the stored message (in a) */
	/* map: the map's version after it, and why it was refused. */
	uint64_t map_version;
	char why[160];
} brk_applied;

/*
 * Applies entry e (which must be applied + 1) in the round: the
 * deterministic state machine. Outcomes go to res->st; the return value
 * is a failure of the store itself (map or disk full, I/O, corruption),
 * which fails the round. With a != NULL a stored message is also built
 * in a for the live feed.
 */
pl_status brk_apply(
    brk_wtxn *w, const raft_entry *e, brk_arena *a, brk_applied *res);

/* ---- the cluster map of the meta group (map.c) ---- */

/* The applied map's encoding (malloc'd into *out, *len; *out NULL and
 * *len 0 while no change was ever applied) and its version. Reads the
 * last committed state (a read transaction of its own). */
pl_status brk_store_map_read(
    brk_store *s, uint8_t **out, size_t *len, uint64_t *version);

/* ---- the group's Raft configuration (conf.c) ---- */

/* Stores the configuration entry e applies (called by brk_apply). */
pl_status brk_apply_conf(brk_wtxn *w, const raft_entry *e);
/* The configuration of the last configuration entry applied into *out;
 * PL_E_NOT_FOUND when the group never changed its membership (its
 * configuration is the bootstrap one), PL_E_CORRUPT, LMDB errors. */
pl_status brk_store_conf(brk_store *s, raft_conf *out);

/* ---- commands from requests (cmd.c) ---- */

/* Storage for a command built from a client request. */
typedef struct brk_cmd {
	Parley__Internal__Command cmd;
	union {
		Parley__Internal__CreateRoomCmd create_room;
		Parley__Internal__JoinCmd join;
		Parley__Internal__LeaveCmd leave;
		Parley__Internal__PublishCmd publish;
		Parley__Internal__ReadCmd read;
		Parley__Internal__CloseCmd close;
	} op;
} brk_cmd;

/* The command a write request becomes (create_room, join, leave,
 * publish, read, close_room), for the room it names (0 for a create).
 * Strings and meta are borrowed from c and f; a publish body is
 * compressed when that pays, into store scratch valid until the next
 * call. PL_E_BAD_REQUEST for other requests, PL_E_TOO_LARGE. */
pl_status brk_cmd_build(brk_store *s, const Parley__Internal__Caller *c,
    const Parley__ClientFrame *f, uint64_t room, int64_t ts, brk_cmd *out);

/* ---- reads (query.c) ---- */

/* Reads. Messages are built in arena a (bodies decompressed, CRC
 * verified: PL_E_CORRUPT on mismatch). */
pl_status brk_history(brk_wtxn *w, uint64_t room, const Parley__History *h,
    brk_arena *a, Parley__HistoryPage *out);
/* One stored message by seq (for live fan-out). */
pl_status brk_message_get(brk_wtxn *w, uint64_t room, uint64_t seq,
    brk_arena *a, Parley__Message *out);
pl_status brk_list_rooms(brk_wtxn *w, const char *tenant, uint64_t after,
    uint32_t limit, brk_arena *a, Parley__RoomList *out);
/* The same, of the rooms user is or was a member of (the user_rooms
 * index: a join or a create as a member adds a room, leaving keeps it). */
pl_status brk_list_user_rooms(brk_wtxn *w, const char *tenant, const char *user,
    uint64_t after, uint32_t limit, brk_arena *a, Parley__RoomList *out);

/* The tenant's day aggregates for days [first_day, last_day] (days since
 * the epoch), oldest first, built in a. Days of the current round that are
 * not yet flushed are included. */
pl_status brk_report(brk_wtxn *w, const char *tenant, uint32_t first_day,
    uint32_t last_day, brk_arena *a, Parley__Report *out);

/* ---- verification (log.c) ---- */

/* Verifies the CRC of every log entry; *bad_index gets the first bad one.
 * For tests and `parleyctl` maintenance: PL_OK or PL_E_CORRUPT. */
pl_status brk_store_verify(
    brk_store *s, uint64_t *entries, uint64_t *bad_index);
/* The same over the Raft log only (after the snapshot point): what a
 * replica checks at start, bounded by log_keep_entries rather than by
 * every message ever stored. Entries before it are committed on every
 * replica; damage there is reported when history reads it. */
pl_status brk_log_verify(brk_store *s, uint64_t *bad_index);

#endif /* PARLEY_BROKER_STORE_H */
