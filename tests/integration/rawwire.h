/*
 * rawwire.h - a client that speaks the wire protocol byte by byte over
 * TCP or WebSocket (nng streams), for frames libparley would never send:
 * strings with NUL bytes or invalid UTF-8, hand-signed claims. Frames are
 * built with a tiny protobuf writer; server frames are decoded with the
 * codec, and the bytes of a frame cut short by a close are counted.
 */
#ifndef PARLEY_RAWWIRE_H
#define PARLEY_RAWWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tests/integration/harness.h"

/* A protobuf message being written: fields in the order they are put. */
#define RW_PB_BYTES_MAX 8192
typedef struct rw_pb {
	uint8_t b[RW_PB_BYTES_MAX];
	size_t n;
	bool overflow;
} rw_pb;

void rw_pb_varint(rw_pb *m, uint32_t field, uint64_t v);
void rw_pb_bytes(rw_pb *m, uint32_t field, const void *p, size_t n);
void rw_pb_str(rw_pb *m, uint32_t field, const char *s); /* strlen(s) */
void rw_pb_msg(rw_pb *m, uint32_t field, const rw_pb *sub);

/* A ClientFrame{id, <op field> = body}. */
void rw_frame(rw_pb *out, uint64_t id, uint32_t op_field, const rw_pb *body);

typedef struct rw_conn rw_conn;

/* Dials the gateway's TCP port or its /ws endpoint. NULL on failure. */
rw_conn *rw_open(hx_cluster *c, bool ws);
void rw_close(rw_conn *r);
/* Sends a frame (length header added): one write, one WebSocket message. */
bool rw_send(rw_conn *r, const rw_pb *frame);
/* Sends hello with the token (request id 1); true when a welcome came
 * back (its frame in *welcome when not NULL, valid as rw_next's). */
bool rw_hello(rw_conn *r, const char *token, Parley__ServerFrame **welcome);

/* The next server frame within timeout_ms: PL_OK with *out (owned by r,
 * valid until the next rw_next or rw_reply), PL_E_TIMEOUT, PL_E_CLOSED
 * (the server closed; see rw_leftover), PL_E_PROTO (undecodable). */
pl_status rw_next(rw_conn *r, int timeout_ms, Parley__ServerFrame **out);
/* The reply to request id, skipping events, within timeout_ms; NULL on
 * timeout or close. */
Parley__ServerFrame *rw_reply(rw_conn *r, uint64_t id, int timeout_ms);
/* paused: the socket is no longer read once the receive in progress
 * completes (a client that stops reading); false reads on. */
void rw_pause(rw_conn *r, bool paused);
/* Bytes received that do not make a whole frame. */
size_t rw_leftover(rw_conn *r);

/* A token over hand-built claims bytes, signed with tenant's key in the
 * cluster dir (the claims are signed exactly as given). Static buffer. */
const char *rw_token_raw(
    hx_cluster *c, const char *tenant, const rw_pb *claims);

#endif
