/*
 * broker.h - the contract of parley-broker: the LMDB-backed store of a
 * shard group (broker/store/, its contract in broker/store/store.h,
 * included below), the room model and consultation statistics
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
/* Whether c may publish a message of kind (a Parley__Kind), on top of
 * brk_access for publish: system messages come from services only.
 * PL_E_FORBIDDEN otherwise, and for a kind the table does not name. */
pl_status brk_access_kind(const Parley__Internal__Caller *c, int kind);

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
/* Store (broker/store/): one LMDB environment per shard group replica.
 * Its contract is broker/store/store.h. */

#include "broker/store/store.h"

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
