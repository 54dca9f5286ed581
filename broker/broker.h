/*
 * broker.h - the contract of parley-broker: the LMDB-backed store of a
 * shard group (store.c), the room model and consultation statistics
 * (room.c), the group driver that orders, commits and fans out (group.c)
 * and the nng front (net.c). Storage layout and invariants are written in
 * docs/internals.md; the group's threading rules are at the top of group.c.
 */
#ifndef PARLEY_BROKER_H
#define PARLEY_BROKER_H

#include <stdbool.h>
#include <stdint.h>

#include "raft/raft.h"
#include "common/common.h"
#include "proto/codec.h"

#include <nng/nng.h>

/* ------------------------------------------------------------------ */
/* Limits. */

/* A consultation has a customer, a few agents or bots and observers; 32
 * members keeps a room record under 8 KiB so a batch can cache many. */
#define ROOM_MEMBERS_MAX 32
/* Per-turn response times kept per room; later turns still count in
 * turns and in the per-tenant day aggregates. */
#define ROOM_TURNS_TRACKED_MAX 64
/* History pages stop after this many body bytes (and say more = true), so
 * one reply stays far below the nng message ceiling. */
#define HISTORY_PAGE_BYTES_MAX (1024 * 1024)
/* A room record's encoded size bound: 32 members and 16 meta entries of
 * at most 2 x 256 bytes stay under 24 KiB. */
#define ROOM_REC_BYTES_MAX (32 * 1024)
/* Rooms touched by one commit round that stay decoded in memory. */
#define ROUND_ROOMS_CACHED_MAX 64

_Static_assert(HISTORY_PAGE_BYTES_MAX * 2 < PL_FRAME_BYTES_CEIL,
    "a history page must fit in one broker reply");

/* ------------------------------------------------------------------ */
/* Room model (room.c): plain structs decoded from RoomRec records. */

typedef struct brk_member {
	char user[PL_USER_CHARS_MAX + 1];
	int role; /* parley.Role */
	bool joined;
	uint64_t read_seq;
	int64_t joined_us;
} brk_member;

typedef struct brk_stats {
	int64_t created_us;
	int64_t first_customer_msg_us;
	int64_t first_agent_join_us;
	int64_t first_agent_msg_us;
	int64_t wait_us;
	int64_t first_response_us;
	int64_t pending_customer_us; /* open turn: unanswered customer text */
	int64_t turn_us[ROOM_TURNS_TRACKED_MAX];
	uint32_t turns;
	uint64_t customer_msgs, agent_msgs, bot_msgs;
	int64_t closed_us;
	int64_t handle_us;
} brk_stats;

typedef struct brk_meta {
	char key[PL_META_CHARS_MAX + 1];
	char value[PL_META_CHARS_MAX + 1];
} brk_meta;

typedef struct brk_room {
	uint64_t id;
	char tenant[PL_TENANT_CHARS_MAX + 1];
	bool closed;
	uint64_t last_seq;
	char close_reason[PL_REASON_CHARS_MAX + 1];
	brk_member members[ROOM_MEMBERS_MAX];
	int nmembers;
	brk_meta meta[PL_META_ENTRIES_MAX];
	int nmeta;
	brk_stats stats;
} brk_room;

/* What one applied command changed in the tenant's day aggregates. */
typedef struct brk_day_delta {
	int64_t day_ts_us; /* which day (the command's timestamp) */
	uint32_t rooms_created, rooms_closed, messages;
	int64_t wait_us, first_response_us, handle_us; /* -1: none */
} brk_day_delta;

brk_member *brk_room_member(brk_room *r, const char *user);
/* Adds or re-joins a member. PL_E_TOO_LARGE when the room is full. */
pl_status brk_room_join(
    brk_room *r, const char *user, int role, int64_t ts, brk_day_delta *d);
void brk_room_leave(brk_room *r, const char *user);
/* Statistics for a stored message of role/kind at ts. */
void brk_room_on_message(
    brk_room *r, int role, int kind, int64_t ts, brk_day_delta *d);
void brk_room_close(
    brk_room *r, const char *reason, int64_t ts, brk_day_delta *d);
void brk_day_delta_init(brk_day_delta *d, int64_t ts);

/* Who may do what (access.c; docs/internals.md "Authorization", the
 * README's role table). A right of a role for a request type: */
typedef enum brk_right {
	BRK_RIGHT_NONE,   /* forbidden */
	BRK_RIGHT_ANY,    /* any room of the tenant; tenant-wide: allowed */
	BRK_RIGHT_MEMBER, /* a room the caller is or was a member of (a
	                   * room-scoped token: its room) */
	BRK_RIGHT_JOINED, /* a room the caller has joined and not left */
} brk_right;
/* Whether caller c may make request op (a Parley__ClientFrame__BodyCase)
 * on room r, or, for a tenant-wide request (create_room, list_rooms,
 * report, status), with r NULL; list_rooms with a room r: whether r
 * may appear in the caller's list. PL_E_NOT_FOUND for another tenant's
 * room, PL_E_FORBIDDEN otherwise, and for any request type the table
 * does not name. */
pl_status brk_access(
    const brk_room *r, const Parley__Internal__Caller *c, int op);
/* c's right for op from the table alone (scope applied: a room-scoped
 * token has none for a tenant-wide request other than list_rooms). */
brk_right brk_access_right(const Parley__Internal__Caller *c, int op);

/* Room record <-> plain struct. decode unpacks in scratch (reset first;
 * at least PL_ARENA_BYTES_FOR(ROOM_REC_BYTES_MAX)) and writes *r only on
 * success. */
pl_status brk_room_decode(
    const uint8_t *buf, size_t len, pl_arena *scratch, brk_room *r);
pl_status brk_room_encode(
    const brk_room *r, uint8_t *out, size_t cap, size_t *n);
/* Fills a RoomInfo (strings point into r; arrays from alloc). */
pl_status brk_room_info(
    const brk_room *r, ProtobufCAllocator *alloc, Parley__RoomInfo *out);

/* ------------------------------------------------------------------ */
/* Chunked arena (arena.c): bump allocation from a chain of chunks, reset
 * keeps the first chunk. Usable as a ProtobufCAllocator. Not thread-safe.
 * Unlike pl_arena it grows, for replies whose size is known only while
 * they are built (history pages). */

typedef struct brk_chunk brk_chunk;
typedef struct brk_arena {
	ProtobufCAllocator alloc; /* first: passed to protobuf-c */
	brk_chunk *head;
	size_t chunk_bytes;
	size_t total_bytes;
	size_t total_max; /* allocation fails beyond this */
} brk_arena;

void brk_arena_init(brk_arena *a, size_t chunk_bytes, size_t total_max);
void brk_arena_fini(brk_arena *a);
void brk_arena_reset(brk_arena *a);
void *brk_arena_alloc(brk_arena *a, size_t n); /* NULL when over max */
char *brk_arena_strdup(brk_arena *a, const char *s);

/* ------------------------------------------------------------------ */
/* Store (store.c): one LMDB environment per shard group replica. */

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

/* The room, decoded and cached for this round (borrowed, valid until the
 * round ends). PL_E_NOT_FOUND, PL_E_CORRUPT. */
pl_status brk_room_get(brk_wtxn *w, uint64_t room, brk_room **out);

/*
 * The replicated log (store.c). Entries are stored by index as
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
/* Writes a consistent, compacted copy of the environment into dir (its
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

/* Results of writes. */
typedef struct brk_pub_result {
	uint64_t seq;
	int64_t ts_us;
	bool duplicate;
} brk_pub_result;

/*
 * Single-replica writes, for tests and tools: each builds the command,
 * appends it as the next entry and applies it at once (requires
 * applied == last_index). A replicated group proposes through Raft and
 * applies with brk_apply instead. A retried client_msg_id returns the
 * original seq without a new entry.
 */
pl_status brk_create_room(brk_wtxn *w, const Parley__Internal__Caller *c,
    const Parley__CreateRoom *cr, int64_t ts, uint64_t *room, bool *existed);
pl_status brk_publish(brk_wtxn *w, const Parley__Internal__Caller *c,
    uint64_t room, const Parley__Publish *p, int64_t ts, brk_pub_result *r);

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

/* Verifies the CRC of every log entry; *bad_index gets the first bad one.
 * For tests and `parleyctl` maintenance: PL_OK or PL_E_CORRUPT. */
pl_status brk_store_verify(
    brk_store *s, uint64_t *entries, uint64_t *bad_index);
/* The same over the Raft log only (after the snapshot point): what a
 * replica checks at start, bounded by log_keep_entries rather than by
 * every message ever stored. Entries before it are committed on every
 * replica; damage there is reported when history reads it. */
pl_status brk_log_verify(brk_store *s, uint64_t *bad_index);

/* ------------------------------------------------------------------ */
/* Cluster membership proof for broker-to-broker messages (auth.c): a
 * message is [sender u64][counter u64][HMAC-SHA-512-256 (32)][payload],
 * keyed with the cluster secret. Not thread-safe: one per sending and
 * receiving thread (the group thread). */

#define BRK_SECRET_BYTES 32
#define BRK_AUTH_OVERHEAD (8 + 8 + 32)
/* Peers a broker hears from: the replicas of every group it hosts. */
#define BRK_AUTH_PEERS_MAX 64

typedef struct brk_auth_peer {
	uint64_t id;
	uint64_t last; /* highest counter accepted */
} brk_auth_peer;

typedef struct brk_auth {
	uint8_t key[BRK_SECRET_BYTES];
	uint64_t self;
	uint64_t counter;
	brk_auth_peer peers[BRK_AUTH_PEERS_MAX];
	int npeers;
} brk_auth;

/* self_id != 0; now_s seeds the counter (see auth.c). PL_E_CONFIG. */
pl_status brk_auth_init(brk_auth *a, const uint8_t secret[BRK_SECRET_BYTES],
    uint64_t self_id, int64_t now_s);
void brk_auth_fini(brk_auth *a); /* wipes the key; accepts NULL */
/* Writes the sealed message into out; payload is borrowed and must not
 * overlap out. PL_E_TOO_LARGE
 * when cap is short. */
pl_status brk_auth_seal(brk_auth *a, const uint8_t *payload, size_t n,
    uint8_t *out, size_t cap, size_t *len);
/* Verifies msg (borrowed); on success *payload points into msg.
 * PL_E_UNAUTHORIZED: short, bad MAC, replayed or reflected;
 * PL_E_BACKPRESSURE: more distinct senders than BRK_AUTH_PEERS_MAX. */
pl_status brk_auth_open(brk_auth *a, const uint8_t *msg, size_t n,
    uint64_t *sender, const uint8_t **payload, size_t *plen);
/* A cluster secret as standard base64 of 32 bytes (whitespace ignored). */
pl_status brk_secret_parse(const char *b64, uint8_t out[BRK_SECRET_BYTES]);

/* ------------------------------------------------------------------ */
/* Broker process: configuration, transports and the group's driver. */

#include "broker/config.h"
#include "broker/group.h"
#include "broker/net.h"
#include "broker/peer.h"

#endif /* PARLEY_BROKER_H */
