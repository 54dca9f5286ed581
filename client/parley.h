/*
 * parley.h - libparley, the blocking C client of the Parley client protocol
 * (proto/parley.proto) over tcp:// and ws:// (nng streams). This header is
 * the library's whole contract; the connection, its receive path and
 * request table are in the files conn.h lists, ops.c has the typed helpers.
 *
 * Model. A parley_conn is one socket to a gateway. Any number of threads
 * may call into one connection at once (requests are pipelined: each gets
 * a library-chosen id and waits for its own reply). A receive callback
 * (nng aio) reads frames as they arrive, so replies and events are taken
 * off the socket even while no caller is waiting:
 *   - a reply goes to the request that carries its id;
 *   - an event (ServerFrame id 0, body `event`) or a `goodbye` goes to a
 *     bounded event queue read with parley_next_event(); when the queue is
 *     full, events are dropped and the next parley_next_event() reports
 *     PL_E_BACKPRESSURE once (the app re-reads history to resync).
 *
 * Ownership. Strings and buffers passed in are borrowed for the call.
 * A Parley__ServerFrame handed to the caller is owned by the caller and is
 * freed with parley_frame_free() (never with protobuf-c's free). Plain
 * result structs are written only when the call returns PL_OK.
 *
 * Errors. Every call returns a pl_status (common/common.h). A server error
 * reply maps through pl_code_to_status(); its code and message are kept
 * per connection and read with parley_last_error(). Local failures:
 * PL_E_TIMEOUT (no reply in time; a late reply is dropped), PL_E_CLOSED
 * (connection closed, or closed by the server after `goodbye`),
 * PL_E_BACKPRESSURE (too many requests in flight), PL_E_TOO_LARGE (frame
 * over the limit), PL_E_UNAVAILABLE (dial failed), PL_E_PROTO (the server
 * sent something undecodable; the connection is closed).
 */
#ifndef PARLEY_CLIENT_H
#define PARLEY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "proto/codec.h"

/* Requests in flight per connection (sync and async together). A power of
 * two: a request's id picks its slot, so lookup is one index. 4096 covers
 * the bench's deepest pipelines with room to spare. */
#define PARLEY_INFLIGHT_MAX 4096
/* Default event queue bound: a tailing UI drains it continuously; a burst
 * of a few thousand events is absorbed, anything beyond is an overflow. */
#define PARLEY_EVENTS_DEFAULT 4096
#define PARLEY_EVENTS_MAX (1u << 20)
/* Session and string bounds of the plain result structs. */
#define PARLEY_SESSION_CHARS_MAX 63
#define PARLEY_ERROR_CHARS_MAX 255

_Static_assert((PARLEY_INFLIGHT_MAX & (PARLEY_INFLIGHT_MAX - 1)) == 0,
    "slot lookup masks the request id");

typedef struct parley_conn parley_conn;

/* Supplies a new token for an open connection: writes it (NUL-terminated,
 * at most cap bytes) into out and returns true, or returns false (no new
 * token now: asked again a second later while the old one lasts). Called
 * on a library thread, never while the library holds a lock. */
typedef bool (*parley_token_fn)(void *arg, char *out, size_t cap);

/* Connection options; zeroed fields take the defaults. */
typedef struct parley_opts {
	uint32_t events_max; /* event queue bound (PARLEY_EVENTS_DEFAULT) */
	uint32_t
	    recv_frame_max; /* largest server frame (PL_FRAME_BYTES_CEIL) */
	uint32_t send_frame_max; /* largest client frame (64 KiB default;
	                            lowered by welcome.limits) */
	int send_timeout_ms;     /* a stuck socket fails a send (10000) */
	/* tls+tcp:// and wss:// only: the PEM file of the CA that signed the
	 * gateway's certificate (the server is verified against it), or
	 * tls_insecure to skip verification (tests, never production). */
	const char *tls_ca_file;
	bool tls_insecure;
	/* The name the certificate must carry; NULL: the URL's host. (The
	 * TLS engine matches DNS names, not IP addresses: dial
	 * wss://127.0.0.1 with tls_server_name "localhost".) */
	const char *tls_server_name;
	/* Token refresh: with a callback, after hello the library refreshes
	 * the connection's token refresh_ahead_s (30) before it expires (or
	 * at half its remaining life when that is sooner), so the gateway
	 * never closes it with goodbye "token expired". */
	parley_token_fn token_refresh;
	void *token_refresh_arg;
	uint32_t refresh_ahead_s;
} parley_opts;

/* ------------------------------------------------------------------ */
/* Connections. */

/*
 * Dials url ("tcp://host:port" or "ws://host:port/path") within
 * timeout_ms (<0: no limit) and starts the receive path. opts may be NULL.
 * On success *out is a new connection, owned by the caller (parley_close).
 * Errors: PL_E_BAD_REQUEST (bad url), PL_E_UNAVAILABLE (refused,
 * unreachable), PL_E_TIMEOUT, PL_E_NOMEM.
 */
pl_status parley_connect(const char *url, int timeout_ms,
    const parley_opts *opts, parley_conn **out);

/*
 * Closes the socket, waits for the receive callback to finish, fails
 * nothing further and frees everything still queued. c may be NULL. No
 * other call on c may be in progress or start during or after this.
 */
void parley_close(parley_conn *c);

/* True once the socket is closed (by the server, an error or a goodbye). */
bool parley_is_closed(parley_conn *c);

/*
 * The connection's most recent failure: the server's message (or a local
 * description) and, when code is not NULL, its wire ErrorCode
 * (parley.ErrorCode; pl_code_name() names it). The text is owned by the
 * connection and valid until the next failing call on it; with several
 * threads on one connection it may describe another thread's failure.
 * "" when nothing failed yet.
 */
const char *parley_last_error(parley_conn *c, int *code);

/* Frees a frame returned by this library. NULL is accepted. */
void parley_frame_free(Parley__ServerFrame *f);

/* pl_mono_us() at which the receive path decoded f (for latency). */
int64_t parley_frame_recv_us(const Parley__ServerFrame *f);

/* ------------------------------------------------------------------ */
/* Generic requests. */

/*
 * Sends req and waits up to timeout_ms (<0: forever) for its reply. The
 * library assigns req->id (any value set by the caller is overwritten).
 * req is borrowed. On PL_OK *reply is the reply frame, owned by the caller
 * (parley_frame_free); an Error reply is returned as its mapped status
 * (parley_last_error has the message) and *reply is not written.
 */
pl_status parley_request(parley_conn *c, Parley__ClientFrame *req,
    int timeout_ms, Parley__ServerFrame **reply);

/*
 * Pipelining. parley_send() sends req without waiting and writes the
 * assigned request id to *id; tag is returned untouched with the
 * completion (the bench stores the intended send time there). At most
 * PARLEY_INFLIGHT_MAX requests may be in flight or uncollected:
 * PL_E_BACKPRESSURE beyond. Replies are collected in arrival order with
 * parley_collect().
 */
pl_status parley_send(
    parley_conn *c, Parley__ClientFrame *req, uint64_t tag, uint64_t *id);

typedef struct parley_completion {
	uint64_t id;      /* request id from parley_send */
	uint64_t tag;     /* the caller's tag */
	pl_status status; /* PL_OK, or the mapped server error */
	int code;         /* parley.ErrorCode when status != PL_OK */
	int64_t recv_us;  /* pl_mono_us() when the reply was decoded */
	/* The reply (status PL_OK only), owned by the caller:
	 * parley_frame_free. NULL on error. */
	Parley__ServerFrame *reply;
} parley_completion;

/*
 * Waits up to timeout_us (<0: forever, 0: poll) for the next completed
 * parley_send() request and writes it to *out. PL_E_TIMEOUT when none
 * completed in time, PL_E_CLOSED when the connection is closed and no
 * completion remains (requests still in flight then are lost).
 */
pl_status parley_collect(
    parley_conn *c, int64_t timeout_us, parley_completion *out);

/* Requests sent with parley_send() and not yet collected. */
uint32_t parley_inflight(parley_conn *c);

/* ------------------------------------------------------------------ */
/* Events. */

/*
 * Waits up to timeout_ms (<0: forever, 0: poll) for the next pushed frame:
 * body `event` (message, typing, read, presence, closed) or `goodbye`.
 * On PL_OK *ev is owned by the caller (parley_frame_free).
 * PL_E_TIMEOUT: nothing arrived. PL_E_BACKPRESSURE: events were dropped
 * since the previous call because the queue was full (reported once; the
 * queued ones remain; parley_events_dropped() has the total).
 * PL_E_CLOSED: the connection is closed and the queue is empty.
 */
pl_status parley_next_event(
    parley_conn *c, int timeout_ms, Parley__ServerFrame **ev);

/* Events dropped on a full queue since the connection opened. */
uint64_t parley_events_dropped(parley_conn *c);

/* ------------------------------------------------------------------ */
/* Typed helpers: one per operation. All wait up to timeout_ms. */

typedef struct parley_welcome {
	char session[PARLEY_SESSION_CHARS_MAX + 1];
	int64_t server_time_us;
	uint32_t frame_bytes_max;
	uint32_t body_bytes_max;
	uint32_t publish_per_sec;
	uint32_t subscriptions_max;
	uint32_t idle_ms;
	char tenant[PL_TENANT_CHARS_MAX + 1];
	char user[PL_USER_CHARS_MAX + 1];
	int role; /* parley.Role */
	int64_t
	    token_exp_s; /* the token's expiry, Unix seconds (0: none said) */
	uint32_t history_limit_max;
	uint32_t send_queue_bytes_max;
} parley_welcome;

/* Authenticates with a token (borrowed). Must be the first request.
 * out may be NULL. Lowers the connection's frame limit to the server's. */
pl_status parley_hello(
    parley_conn *c, const char *token, int timeout_ms, parley_welcome *out);

/* Replaces the connection's token with a new one (borrowed) of the same
 * tenant, user, role and room scope; *exp_s (may be NULL) receives the
 * connection's new expiry. PL_E_UNAUTHORIZED when the gateway refuses it
 * (the old token stays in force until it expires). */
pl_status parley_refresh(
    parley_conn *c, const char *token, int timeout_ms, int64_t *exp_s);

typedef struct parley_meta {
	const char *key;   /* borrowed */
	const char *value; /* borrowed */
} parley_meta;

/* Creates a room; idempotency_key may be NULL or "". room_out receives the
 * room id (PL_ROOM_ID_CHARS + 1 bytes); existed (may be NULL) says a
 * retried create returned the room made earlier with the same key. */
pl_status parley_create_room(parley_conn *c, const char *idempotency_key,
    const parley_meta *meta, size_t nmeta, int timeout_ms, char *room_out,
    bool *existed);

pl_status parley_join(parley_conn *c, const char *room, int timeout_ms);
pl_status parley_leave(parley_conn *c, const char *room, int timeout_ms);

typedef struct parley_ack {
	uint64_t seq;
	int64_t ts_us;  /* server time of the message */
	bool duplicate; /* a retry of a stored client_msg_id */
} parley_ack;

/* Publishes body (len bytes, borrowed) to room; client_msg_id may be NULL
 * or "" (no de-duplication). kind is parley.Kind. ack may be NULL. */
pl_status parley_publish(parley_conn *c, const char *room,
    const char *client_msg_id, int kind, const void *body, size_t len,
    int timeout_ms, parley_ack *ack);

/* The same as an async request (see parley_send); parley_ack_from()
 * reads the ack out of the completion's reply. */
pl_status parley_publish_send(parley_conn *c, const char *room,
    const char *client_msg_id, int kind, const void *body, size_t len,
    uint64_t tag, uint64_t *id);
pl_status parley_ack_from(const Parley__ServerFrame *reply, parley_ack *ack);

/* Subscribes to room from since_seq (messages with seq > since_seq, then
 * live, as events). last_seq (may be NULL) receives the room head. */
pl_status parley_subscribe(parley_conn *c, const char *room, uint64_t since_seq,
    int timeout_ms, uint64_t *last_seq);
pl_status parley_unsubscribe(parley_conn *c, const char *room, int timeout_ms);

typedef struct parley_history_query {
	uint64_t before_seq; /* != 0: newest-first page of seqs < before */
	uint64_t after_seq;  /* != 0: oldest-first page of seqs > after */
	uint32_t limit;      /* 0: server default */
	bool oldest_first;
} parley_history_query;

/* On PL_OK *reply (owned, parley_frame_free) has body `history`:
 * (*reply)->history->messages[0 .. n_messages), ->more. */
pl_status parley_history(parley_conn *c, const char *room,
    const parley_history_query *q, int timeout_ms, Parley__ServerFrame **reply);

pl_status parley_typing(
    parley_conn *c, const char *room, bool active, int timeout_ms);
pl_status parley_read(
    parley_conn *c, const char *room, uint64_t seq, int timeout_ms);

/* On PL_OK *reply (owned) has body `presence` (->presence->members). */
pl_status parley_presence(parley_conn *c, const char *room, int timeout_ms,
    Parley__ServerFrame **reply);

/* reason may be NULL. */
pl_status parley_close_room(
    parley_conn *c, const char *room, const char *reason, int timeout_ms);

/* On PL_OK *reply (owned) has body `room_info` (->room_info: state,
 * members with read positions, stats, meta). */
pl_status parley_room_info(parley_conn *c, const char *room, int timeout_ms,
    Parley__ServerFrame **reply);

/* One page of the tenant's rooms after `after` (NULL or "": from the
 * start). On PL_OK *reply (owned) has body `room_list` (->rooms, ->more). */
pl_status parley_list_rooms(parley_conn *c, uint32_t limit, const char *after,
    int timeout_ms, Parley__ServerFrame **reply);

/* Node status. On PL_OK *reply (owned) has body `status`. */
pl_status parley_status(
    parley_conn *c, int timeout_ms, Parley__ServerFrame **reply);

/* The caller's tenant statistics for the last `days` days (0: 7), per
 * UTC day, summed over every shard group. Staff and service tokens only
 * (customers and bots get PL_E_FORBIDDEN). On PL_OK *reply (owned) has
 * body `report` (->report->days, oldest first). */
pl_status parley_report(
    parley_conn *c, uint32_t days, int timeout_ms, Parley__ServerFrame **reply);

/* Round trip: rtt_us (may be NULL) measured with the monotonic clock,
 * server_time_us (may be NULL) from the pong. */
pl_status parley_ping(
    parley_conn *c, int timeout_ms, int64_t *rtt_us, int64_t *server_time_us);

#endif /* PARLEY_CLIENT_H */
