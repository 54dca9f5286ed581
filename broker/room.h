/*
 * room.h - the room model (room.c): plain structs decoded from RoomRec
 * records, membership, the consultation statistics a room keeps as its
 * messages apply (wait time, first response, per-turn response times) and
 * what each change adds to its tenant's day; the room record's codec.
 */
#ifndef PARLEY_BROKER_ROOM_H
#define PARLEY_BROKER_ROOM_H

#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"
#include "proto/codec.h"

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

#endif
