/*
 * codec.h - Parley's frame and record codec. The generated protobuf-c
 * headers are included from here: frames are 4-byte big-endian length +
 * one protobuf message. Decoding checks the length against its maximum
 * before unpacking, unpacks into a caller-provided arena (no malloc per
 * frame) and validates every field the rest of the program relies on, so
 * a decoded message is safe to use: strings are bounded, oneofs are set,
 * room ids parse.
 */
#ifndef PARLEY_CODEC_H
#define PARLEY_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "internal.pb-c.h"
#include "parley.pb-c.h"

#define PL_FRAME_HEADER_BYTES 4
/* Hard ceiling of any frame or internal record: 8 MiB. Configurable limits
 * (client frames default to 64 KiB) must be at or below it. */
#define PL_FRAME_BYTES_CEIL (8u * 1024 * 1024)
/* Client bodies default to 16 KiB: chat text plus small attachments' refs. */
#define PL_BODY_BYTES_DEFAULT (16u * 1024)
#define PL_CLIENT_FRAME_BYTES_DEFAULT (64u * 1024)
/* Validation bounds for strings inside frames, in bytes of UTF-8. */
#define PL_CLIENT_MSG_ID_CHARS_MAX 64
#define PL_IDEMPOTENCY_KEY_CHARS_MAX 128
#define PL_META_ENTRIES_MAX 16
#define PL_META_CHARS_MAX 256 /* each key and each value */
#define PL_REASON_CHARS_MAX 256
#define PL_HISTORY_LIMIT_MAX 500 /* messages per history page */
#define PL_REPORT_DAYS_MAX 366   /* a year of daily statistics per report */
/* Requests one GwBatch may carry: the broker refuses a batch with more
 * (gateways send at most their own, smaller, batch size). */
#define PL_GW_BATCH_REQS_MAX 1024
/* A stored TenantDayRec: a tenant id and ten counters, under 200 bytes. */
#define PL_TENANT_DAY_REC_BYTES_MAX 512

_Static_assert(PL_CLIENT_FRAME_BYTES_DEFAULT <= PL_FRAME_BYTES_CEIL,
    "client frames must fit the ceiling");
_Static_assert(PL_BODY_BYTES_DEFAULT < PL_CLIENT_FRAME_BYTES_DEFAULT,
    "a body must fit in a frame with its envelope");

/* Arena for protobuf-c unpacking: bump allocation from a fixed buffer,
 * free is a no-op, reset between frames. Not thread-safe. */
typedef struct pl_arena {
	ProtobufCAllocator alloc; /* must be first: passed to protobuf-c */
	uint8_t *base;
	size_t cap;
	size_t used;
	bool owned;
	bool exhausted; /* an allocation failed since the last reset */
} pl_arena;

/* Uses buf (borrowed) of cap bytes; buf NULL allocates cap bytes (owned). */
pl_status pl_arena_init(pl_arena *a, void *buf, size_t cap);
void pl_arena_fini(pl_arena *a);
void pl_arena_reset(pl_arena *a);
/* Arena bytes needed to unpack a frame of n bytes: protobuf-c needs the
 * struct sizes on top of the data. The densest real traffic is a batch of
 * empty `ok` replies: 8 wire bytes become ~80 bytes of structs, so 16x
 * plus 8 KiB covers every record we send. A hostile frame made of empty
 * submessages can need more; it then fails with PL_E_TOO_LARGE, which is
 * the right answer to it. */
#define PL_ARENA_BYTES_FOR(n) ((size_t)(n)*16 + 8192)

/*
 * Framing. pl_frame_peek looks at buf (len bytes received so far):
 *   PL_OK          a whole frame is there; *payload_len set
 *   PL_E_AGAIN     need more bytes
 *   PL_E_TOO_LARGE header announces more than max payload bytes
 *   PL_E_PROTO     header announces an empty frame
 */
pl_status pl_frame_peek(
    const uint8_t *buf, size_t len, size_t max, size_t *payload_len);
void pl_frame_put_header(uint8_t *out, uint32_t payload_len);

/*
 * Encoding: pl_frame_encode writes header + packed message into out (cap
 * bytes), *n = total bytes. PL_E_TOO_LARGE if it does not fit.
 * pl_pb_encode packs without a header.
 */
pl_status pl_frame_encode(
    const ProtobufCMessage *m, uint8_t *out, size_t cap, size_t *n);
pl_status pl_pb_encode(
    const ProtobufCMessage *m, uint8_t *out, size_t cap, size_t *n);

/* Why a frame was refused, for the error a client gets: the field and
 * the rule or bound it broke ("publish.client_msg_id contains a NUL
 * byte", "history.limit 501 exceeds 500"). */
#define PL_WHY_CHARS_MAX 191
typedef struct pl_why {
	char text[PL_WHY_CHARS_MAX + 1];
} pl_why;

/*
 * Every string field in the packed message buf (len bytes) of type d,
 * nested messages included, is UTF-8 without a NUL byte (pl_text_check).
 * It reads the wire bytes because protobuf-c hands strings over as C
 * strings: after unpacking, a NUL inside a value is invisible and the
 * value silently ends there. PL_E_BAD_REQUEST naming the field (why may
 * be NULL); PL_E_PROTO when the bytes are not a well-formed message.
 */
pl_status pl_wire_strings_check(const ProtobufCMessageDescriptor *d,
    const uint8_t *buf, size_t len, pl_why *why);

/*
 * Decoding of a payload (no header). max is checked before unpacking.
 * *out points into the arena and is valid until the arena is reset.
 * PL_E_TOO_LARGE over max or if the arena runs out; PL_E_PROTO when
 * unpacking or validation fails. Client frames return what
 * pl_client_frame_validate returns. The arena is not reset here, so one
 * arena can hold several frames of one read.
 */
pl_status pl_client_frame_decode(const uint8_t *buf, size_t len, size_t max,
    pl_arena *a, Parley__ClientFrame **out);
/* The same, saying in *why (may be NULL) what was wrong on failure:
 * every string checked on the wire (pl_wire_strings_check), then every
 * field (pl_client_frame_check). */
pl_status pl_client_frame_decode_why(const uint8_t *buf, size_t len, size_t max,
    pl_arena *a, Parley__ClientFrame **out, pl_why *why);
pl_status pl_server_frame_decode(const uint8_t *buf, size_t len, size_t max,
    pl_arena *a, Parley__ServerFrame **out);
pl_status pl_gw_batch_decode(const uint8_t *buf, size_t len, pl_arena *a,
    Parley__Internal__GwBatch **out);
/* As pl_gw_batch_decode, with the caller's protobuf-c allocator. */
pl_status pl_gw_batch_decode_with(const uint8_t *buf, size_t len,
    ProtobufCAllocator *alloc, Parley__Internal__GwBatch **out);
pl_status pl_broker_batch_decode(const uint8_t *buf, size_t len, pl_arena *a,
    Parley__Internal__BrokerBatch **out);
pl_status pl_command_decode(const uint8_t *buf, size_t len, pl_arena *a,
    Parley__Internal__Command **out);
pl_status pl_peer_batch_decode(const uint8_t *buf, size_t len, pl_arena *a,
    Parley__Internal__PeerBatch **out);
pl_status pl_room_rec_decode(const uint8_t *buf, size_t len, pl_arena *a,
    Parley__Internal__RoomRec **out);
/* A tenant's day totals as stored (at most PL_TENANT_DAY_REC_BYTES_MAX). */
pl_status pl_tenant_day_rec_decode(const uint8_t *buf, size_t len, pl_arena *a,
    Parley__Internal__TenantDayRec **out);
/* Claims: every string checked on the wire too (a NUL inside a claim
 * would make the identity used differ from the one signed). */
pl_status pl_claims_decode(const uint8_t *buf, size_t len, pl_arena *a,
    Parley__Internal__Claims **out);

/* Field validation used by the decoders, exposed for tests.
 *   PL_E_PROTO       not a request we understand: no body set
 *   PL_E_TOO_LARGE   a string or a count over its bound (meta, ids, token)
 *   PL_E_BAD_REQUEST a value out of range: room id, enum, history limit
 * The strings of f are C strings: a NUL inside a wire value is caught by
 * pl_wire_strings_check before this runs. pl_client_frame_check also
 * names the field and the rule in *why (may be NULL). */
pl_status pl_client_frame_validate(const Parley__ClientFrame *f);
pl_status pl_client_frame_check(const Parley__ClientFrame *f, pl_why *why);

/* The room id a client frame names, or NULL for ops without a room
 * (hello, create_room, ping, list_rooms, status). Borrowed from f. */
const char *pl_client_frame_room(const Parley__ClientFrame *f);

#endif /* PARLEY_CODEC_H */
