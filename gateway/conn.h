/*
 * conn.h - private to gateway/: one client connection (conn.c), TCP or
 * WebSocket: its receive buffer and frame parser, its bounded send
 * queue, its close and reference counting. What it hears from the
 * client goes up through the hooks in struct gw (core.h): conn.c calls
 * no module above it.
 */
#ifndef PARLEY_GW_CONN_H
#define PARLEY_GW_CONN_H

#include <stdatomic.h>
#include <pthread.h>

#include <nng/nng.h>

#include "gateway/core.h"
#include "gateway/httpd.h"
#include "proto/codec.h"

/* Catch-up is flow controlled: a page is asked for only while the
 * connection has at most this many unsent bytes, and a page carries at
 * most as many body bytes. Both at a quarter of the send queue bound, a
 * page plus one oversize message plus earlier bytes stay under it, so a
 * client resuming a long backlog is never mistaken for a slow one. */
#define GW_CATCHUP_BUDGET(g) ((size_t)(g)->conf->send_queue_bytes_max / 4)
/* What an overloaded answer suggests as retry_after_ms: a broker round
 * at load is a few milliseconds, so a queue has room again soon. */
#define GW_RETRY_AFTER_MS 50

typedef struct gw_sub gw_sub;

struct gw_conn {
	gw *g;
	nng_stream *stream;
	/* WebSocket only (else NULL): the decoder of client frames, owned
	 * by the read path; and the address the HTTP port counted. */
	gw_ws_rx *ws;
	gw_peer peer;
	nng_aio *raio, *waio;
	pthread_mutex_t mu;
	_Atomic int refs;
	uint64_t id;
	uint8_t transport;
	int64_t created_us;
	_Atomic int64_t last_rx_us;
	_Atomic uint32_t inflight;
	_Atomic bool authed;

	/* Owned by the read path (one read is outstanding at a time). */
	uint8_t *rbuf;
	uint32_t rlen, rcap;
	uint32_t dlen;     /* of rlen, the bytes ready for the frame parser */
	int64_t tokens;    /* rate bucket, in millionths of a publish */
	int64_t tokens_us; /* when it was last filled */
	uint8_t hello_fails;
	/* Written once by hello before authed is set, read-only after. */
	pl_claims claims;
	/* The tenant's limits entry when hello counted this connection in
	 * it (tenant.h); dropped at close. */
	_Atomic(gw_tenant_use *) tuse;
	char session[33];
	/* The token's expiry, Unix seconds: hello sets it, refresh moves it
	 * later, the sweeper says goodbye once it passes. */
	_Atomic int64_t exp_s;

	/* Under mu: the send queue and the close state. pending collects
	 * frames while out is on the wire; their bytes together are bounded
	 * by send_queue_bytes_max. */
	uint8_t *pend;
	uint32_t pend_len, pend_cap;
	uint8_t *out;
	uint32_t out_len, out_off, out_cap;
	bool sending, closing, closed;
	int64_t close_at_us;
	/* A catch-up waits for the send queue to drain (feed.c sets it,
	 * write_cb clears it and resumes). */
	_Atomic bool catchup_waiting;

	/* Under g->subs_mu. */
	gw_sub *subs;
	uint32_t nsubs;

	/* Under g->conns_mu. */
	gw_conn *prev, *next;
	/* Under g->reap_mu. */
	gw_conn *reap_next;
};

void gw_conn_accept(gw *g, nng_stream *s, int transport);
/* An upgraded WebSocket connection (httpd.c): takes s and the peer's
 * count in every case; hs, the 101 response, is sent first; early holds
 * bytes the client sent after its request (both borrowed). */
void gw_conn_accept_ws(gw *g, nng_stream *s, const gw_peer *peer,
    const uint8_t *hs, size_t hs_len, const uint8_t *early, size_t early_len);
void gw_conn_ref(gw_conn *c);
void gw_conn_unref(gw_conn *c);
/* Encodes f and queues it. PL_E_CLOSED when closing, PL_E_BACKPRESSURE
 * when the client is a slow consumer (it is then being closed). */
pl_status gw_conn_send(gw_conn *c, const Parley__ServerFrame *f);
pl_status gw_conn_send_bytes(gw_conn *c, const uint8_t *buf, size_t n);
/* Bytes queued and not yet written to the socket. */
size_t gw_conn_unsent(gw_conn *c);
void gw_conn_send_error(gw_conn *c, uint64_t id, int code, const char *msg);
/* A retryable error (rate_limited, overloaded, unavailable) the gateway
 * gives before the request went anywhere: not_applied is set, and
 * retry_after_ms (0: none) says when to try again. */
void gw_conn_send_retry(gw_conn *c, uint64_t id, int code, const char *msg,
    uint32_t retry_after_ms);
void gw_conn_goodbye(gw_conn *c, int code, const char *reason);
void gw_conn_close(gw_conn *c, const char *reason);
void gw_conn_sweep(gw_conn *c, int64_t now_us, bool *close_now);
void gw_conn_destroy(gw_conn *c);

#endif /* PARLEY_GW_CONN_H */
