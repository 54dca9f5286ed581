/*
 * conn.h - private to the files of a libparley connection: struct
 * parley_conn and what those files call in one another. Invariants: a
 * request id's slot is slots[id & (nslots - 1)]; every queue is bounded
 * (events by events_max, slots by PARLEY_INFLIGHT_MAX); all shared state
 * is under c->mu, the socket writer under c->send_mu.
 *
 * The connection, one job a file:
 *   conn.c     options, connect and close; closed state and last error
 *   dial.c     the transport: dialing tcp://, ws://, tls+tcp://, wss://
 *   frame.c    a decoded server frame in its own arena (frame_box)
 *   ring.c     the bounded FIFO behind the event and completion queues
 *   recv.c     the receive callback: framing, decoding, routing
 *   send.c     the serialized send path
 *   request.c  the request table and the calls that wait on it
 *   session.c  hello and refresh
 */
#ifndef PARLEY_CLIENT_CONN_H
#define PARLEY_CLIENT_CONN_H

#include <nng/nng.h>

#include "client/internal.h"

_Static_assert(sizeof(uintptr_t) >= sizeof(uint64_t),
    "the uint64 ring also carries pointers");

/* A decoded server frame with its own arena. The frame struct is first,
 * so the Parley__ServerFrame pointer handed out is the box pointer. The
 * frame is a shallow copy of the decoded top-level message; every nested
 * pointer points into mem, which lives as long as the box. */
typedef struct frame_box {
	Parley__ServerFrame frame;
	int64_t recv_us;
	uint32_t magic;
	pl_arena arena;
	max_align_t mem[];
} frame_box;

/* A bounded FIFO of 64-bit values (box pointers or request ids) that
 * allocates lazily and doubles up to max. */
typedef struct ring {
	uint64_t *items;
	uint32_t cap, head, len, max;
} ring;

enum slot_state { SLOT_FREE = 0, SLOT_WAIT, SLOT_DONE };

typedef struct slot {
	uint64_t id;
	uint64_t tag;
	frame_box *reply; /* owned while the slot holds it */
	uint8_t state;
	bool async;
} slot;

struct parley_conn {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* replies, events, completions, close */
	pthread_mutex_t send_mu;
	nng_stream_dialer *dialer;
	nng_stream *stream;
	nng_aio *recv_aio; /* callback-driven, owned by the receive path */
	nng_aio *send_aio; /* waited on under send_mu */

	/* Receive path: touched only by parley_recv_cb (one at a time). */
	uint8_t *rbuf;
	size_t rcap, rlen;
	uint32_t recv_max;

	/* Send path: under send_mu. */
	uint8_t *sbuf;
	size_t scap;
	uint32_t send_max;
	int send_timeout_ms;

	/* Under mu. */
	slot *slots;
	uint32_t nslots, nbusy, nasync;
	uint64_t next_id;
	ring events;
	ring done; /* ids of completed async requests */
	uint64_t dropped;
	bool overflow_pending;
	bool closed;
	pl_status close_status;
	int err_code;
	char err_msg[PARLEY_ERROR_CHARS_MAX + 1];

	/* Token refresh (refresh.c): fixed at connect; refresher is set by
	 * the first successful hello, under mu. */
	parley_token_fn token_fn;
	void *token_arg;
	uint32_t refresh_ahead_s;
	parley_refresher *refresher;
};

/* conn.c */

/* Records code and msg (NULL for none) as the last error; mu held. */
void parley_error_set_locked(parley_conn *c, int code, const char *msg);
/* Marks the connection closed once, with the status pending and future
 * requests fail with, and wakes every waiter. */
void parley_conn_fail(parley_conn *c, pl_status st, const char *why);

/* dial.c: dials url with the options' TLS settings and sets c->dialer
 * and c->stream; timeout_ms < 0 waits forever. */
pl_status parley_dial(
    parley_conn *c, const char *url, int timeout_ms, const parley_opts *opts);

/* frame.c */
/* Decodes one payload into a new box with an arena of cap bytes. */
pl_status parley_box_decode(
    parley_conn *c, const uint8_t *p, size_t n, size_t cap, frame_box **out);
/* Frees a box; NULL accepted. */
void parley_box_free(frame_box *b);

/* ring.c: push is false when the ring holds max items (or is out of
 * memory); pop requires a non-empty ring. */
bool parley_ring_push(ring *r, uint64_t v);
uint64_t parley_ring_pop(ring *r);

/* recv.c: the receive aio's callback (set by conn.c's init), the first
 * buffer, and the receive that starts the loop once connected. */
void parley_recv_cb(void *arg);
pl_status parley_recv_buf_init(parley_conn *c);
void parley_recv_start(parley_conn *c);

/* send.c */
/* Encodes and writes one frame; frames from several threads never
 * interleave. */
pl_status parley_send_frame(parley_conn *c, const Parley__ClientFrame *req);

/* request.c: the busy slot of request id, else NULL; mu held. */
slot *parley_slot_find(parley_conn *c, uint64_t id);

#endif /* PARLEY_CLIENT_CONN_H */
