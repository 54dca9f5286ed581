/*
 * conn.c - one client connection over an nng stream (TCP or WebSocket):
 * the read loop and its length-prefixed framing, the bytes-bounded send
 * queue whose frames are coalesced into one nng_stream_send, Goodbye and
 * close, deadlines checked by the sweeper, and the final free. Lifetime
 * and lock rules are in core.h; each outstanding read or write
 * holds a reference so a callback never outlives its connection.
 *
 * The transport seam: a WebSocket connection (c->ws set, upgraded by
 * httpd.c) reads the same length-prefixed frames out of the bytes ws.c
 * decodes from its data frames, and wraps every frame it queues in one
 * final binary WebSocket frame; TCP bytes go through as they are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/conn.h"

/* Receive buffer starts small (idle connections are the common case)
 * and grows to the largest frame, then shrinks back when empty. */
#define GW_RBUF_BYTES_MIN 512
_Static_assert(GW_RBUF_BYTES_MIN >= PL_FRAME_HEADER_BYTES,
    "a frame header must fit the smallest receive buffer");
/* A connection being closed with a Goodbye gets this long to flush what
 * is already on its way to the socket, then the Goodbye: a close comes
 * at a frame boundary unless the client reads nothing for this long. */
#define GW_CLOSE_FLUSH_MS 10000
/* A WebSocket message may carry several frames: a message is bounded to
 * this many of the largest (over it: close 1009). */
#define GW_WS_MSG_FRAMES_MAX 4

static void read_cb(void *arg);
static void write_cb(void *arg);
static void read_more(gw_conn *c, size_t n);
static gw_conn *conn_new(
    gw *g, nng_stream *s, int transport, const gw_peer *peer);
static void conn_open(gw_conn *c);

static const char *transport_name(int t)
{
	return t == GW_WS ? "ws" : "tcp";
}

/* Hands a connection whose last reference is gone to the sweeper
 * (gateway.c), which stops its aios and frees it off the callback
 * thread. */
static void reap_push(gw *g, gw_conn *c)
{
	pthread_mutex_lock(&g->reap_mu);
	c->reap_next = g->reap;
	g->reap = c;
	pthread_cond_signal(&g->reap_cv);
	pthread_mutex_unlock(&g->reap_mu);
}

void gw_conn_ref(gw_conn *c)
{
	atomic_fetch_add(&c->refs, 1);
}

void gw_conn_unref(gw_conn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) == 1)
		reap_push(c->g, c);
}

static bool table_insert(gw *g, gw_conn *c)
{
	pthread_mutex_lock(&g->conns_mu);
	if (g->nconns >= g->conf->connections_max) {
		pthread_mutex_unlock(&g->conns_mu);
		return false;
	}
	c->id = ++g->conn_ids;
	c->next = g->conns;
	if (g->conns != NULL)
		g->conns->prev = c;
	g->conns = c;
	g->nconns++;
	pthread_mutex_unlock(&g->conns_mu);
	return true;
}

static void table_remove(gw *g, gw_conn *c)
{
	pthread_mutex_lock(&g->conns_mu);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		g->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	g->nconns--;
	pthread_mutex_unlock(&g->conns_mu);
}

static void read_next(gw_conn *c)
{
	nng_iov iov = {
	    .iov_buf = c->rbuf + c->rlen, .iov_len = c->rcap - c->rlen};
	nng_aio_set_iov(c->raio, 1, &iov);
	nng_stream_recv(c->stream, c->raio);
}

/* Takes s (owned) in every case: on refusal the stream is freed. */
void gw_conn_accept(gw *g, nng_stream *s, int transport)
{
	gw_conn *c = conn_new(g, s, transport, NULL);
	if (c != NULL)
		conn_open(c);
}

static void ws_accepted(gw_conn *c, const uint8_t *hs, size_t hs_len,
    const uint8_t *early, size_t early_len);

/* Takes s and the peer's count (released when the connection ends) in
 * every case. hs (the 101 response) goes out before any frame; early
 * holds WebSocket bytes the client sent behind its request. */
void gw_conn_accept_ws(gw *g, nng_stream *s, const gw_peer *peer,
    const uint8_t *hs, size_t hs_len, const uint8_t *early, size_t early_len)
{
	gw_conn *c = conn_new(g, s, GW_WS, peer);
	if (c == NULL)
		return;
	ws_accepted(c, hs, hs_len, early, early_len);
	conn_open(c);
}

static gw_conn *conn_new(
    gw *g, nng_stream *s, int transport, const gw_peer *peer)
{
	gw_conn *c = calloc(1, sizeof(*c));
	if (c == NULL || (c->rbuf = malloc(GW_RBUF_BYTES_MIN)) == NULL ||
	    (transport == GW_WS && (c->ws = malloc(sizeof(*c->ws))) == NULL) ||
	    nng_aio_alloc(&c->raio, read_cb, c) != 0 ||
	    nng_aio_alloc(&c->waio, write_cb, c) != 0) {
		PL_WARN(GW_MOD, "event=accept_refused reason=nomem");
		goto fail;
	}
	if (c->ws != NULL)
		gw_ws_rx_init(c->ws,
		    (uint64_t)GW_WS_MSG_FRAMES_MAX *
		        (g->conf->frame_bytes_max + PL_FRAME_HEADER_BYTES));
	c->g = g;
	c->stream = s;
	c->transport = (uint8_t)transport;
	c->rcap = GW_RBUF_BYTES_MIN;
	c->created_us = pl_mono_us();
	atomic_store(&c->last_rx_us, c->created_us);
	c->tokens = 2 * (int64_t)g->conf->publish_per_sec * 1000000;
	c->tokens_us = c->created_us;
	pthread_mutex_init(&c->mu, NULL);
	atomic_store(&c->refs, 2); /* the table's and the read's */
	if (atomic_load(&g->stopping) || !table_insert(g, c)) {
		PL_WARN(GW_MOD, "event=accept_refused reason=connections_max");
		pthread_mutex_destroy(&c->mu);
		goto fail;
	}
	if (peer != NULL)
		c->peer = *peer;
	atomic_fetch_add(&g->conns_alive, 1);
	return c;
fail:
	if (c != NULL) {
		nng_aio_free(c->raio);
		nng_aio_free(c->waio);
		free(c->rbuf);
		free(c->ws);
		free(c);
	}
	if (peer != NULL)
		g->conn_hooks.peer_put(g, peer);
	nng_stream_free(s);
	return NULL;
}

static void conn_open(gw_conn *c)
{
	pl_metric_inc(c->g->m.conns[c->transport], 1);
	PL_DEBUG(GW_MOD, "event=conn_open conn=%llu transport=%s",
	    (unsigned long long)c->id, transport_name(c->transport));
	if (c->rlen > 0) {
		uint32_t early = c->rlen;
		c->rlen = 0;
		read_more(c, early);
		return;
	}
	read_next(c);
}

/* ---- send queue ---- */

/* Called with mu held. Puts pend on the wire; pend and out swap so the
 * bytes queued while a write is in flight go out in one send. */
static void kick_locked(gw_conn *c)
{
	if (c->sending || c->closed || c->pend_len == 0)
		return;
	uint8_t *spare = c->out;
	uint32_t spare_cap = c->out_cap;
	c->out = c->pend;
	c->out_cap = c->pend_cap;
	c->out_len = c->pend_len;
	c->out_off = 0;
	c->pend = spare;
	c->pend_cap = spare_cap;
	c->pend_len = 0;
	nng_iov iov = {.iov_buf = c->out, .iov_len = c->out_len};
	nng_aio_set_iov(c->waio, 1, &iov);
	c->sending = true;
	gw_conn_ref(c); /* the write's */
	nng_stream_send(c->stream, c->waio);
}

/* Called with mu held. Makes room for n more bytes. force skips the
 * slow-consumer bound (a Goodbye must fit). */
static pl_status reserve_locked(gw_conn *c, size_t n, bool force)
{
	if (c->closed || (c->closing && !force))
		return PL_E_CLOSED;
	size_t unsent = c->pend_len + (c->out_len - c->out_off);
	/* An empty queue takes any one frame: a large reply is not a slow
	 * client. */
	if (!force && unsent > 0 &&
	    unsent + n > c->g->conf->send_queue_bytes_max)
		return PL_E_BACKPRESSURE;
	if (c->pend_len + n <= c->pend_cap)
		return PL_OK;
	size_t cap = c->pend_cap ? c->pend_cap : 1024;
	while (cap < c->pend_len + n)
		cap *= 2;
	uint8_t *p = realloc(c->pend, cap);
	if (p == NULL)
		return PL_E_NOMEM;
	c->pend = p;
	c->pend_cap = (uint32_t)cap;
	return PL_OK;
}

/* Called with mu held: the WebSocket header of a frame of n bytes,
 * written at pend_len (room for it is reserved); 0 bytes on TCP. */
static size_t ws_wrap_locked(gw_conn *c, int op, size_t n)
{
	if (c->ws == NULL)
		return 0;
	return gw_ws_hdr_write(c->pend + c->pend_len, op, n);
}

static size_t ws_hdr_len(const gw_conn *c, size_t n)
{
	return c->ws != NULL ? gw_ws_hdr_len(n) : 0;
}

static pl_status append_frame_locked(
    gw_conn *c, const Parley__ServerFrame *f, bool force)
{
	size_t n = PL_FRAME_HEADER_BYTES +
	           protobuf_c_message_get_packed_size(&f->base);
	if (n > PL_FRAME_BYTES_CEIL)
		return PL_E_TOO_LARGE;
	size_t h = ws_hdr_len(c, n);
	pl_status st = reserve_locked(c, h + n, force);
	if (st != PL_OK)
		return st;
	size_t w;
	st = pl_frame_encode(&f->base, c->pend + c->pend_len + h, n, &w);
	if (st == PL_OK) {
		(void)ws_wrap_locked(c, GW_WS_OP_BINARY, w);
		c->pend_len += (uint32_t)(h + w);
	}
	return st;
}

/* Called with mu held: a WebSocket control frame (RFC 6455 5.5). A
 * close frame carries the code and as much of reason as fits. */
static void ws_control_locked(
    gw_conn *c, int op, uint16_t code, const uint8_t *payload, size_t len)
{
	uint8_t body[GW_WS_CTL_BYTES_MAX];
	if (op == GW_WS_OP_CLOSE) {
		body[0] = (uint8_t)(code >> 8);
		body[1] = (uint8_t)code;
		if (len > sizeof(body) - 2)
			len = sizeof(body) - 2;
		memcpy(body + 2, payload, len);
		len += 2;
	} else {
		memcpy(body, payload, len);
	}
	size_t h = gw_ws_hdr_len(len);
	if (reserve_locked(c, h + len, true) != PL_OK)
		return;
	(void)ws_wrap_locked(c, op, len);
	memcpy(c->pend + c->pend_len + h, body, len);
	c->pend_len += (uint32_t)(h + len);
}

static void goodbye_locked(gw_conn *c, int code, const char *reason)
{
	if (c->closing || c->closed)
		return;
	Parley__Goodbye gb = PARLEY__GOODBYE__INIT;
	gb.code = code;
	gb.reason = (char *)reason;
	Parley__ServerFrame f = PARLEY__SERVER_FRAME__INIT;
	f.body_case = PARLEY__SERVER_FRAME__BODY_GOODBYE;
	f.goodbye = &gb;
	(void)append_frame_locked(c, &f, true);
	if (c->ws != NULL)
		ws_control_locked(c, GW_WS_OP_CLOSE,
		    c->ws->error != NULL ? c->ws->close_code
		                         : GW_WS_CLOSE_NORMAL,
		    (const uint8_t *)reason, strlen(reason));
	c->closing = true;
	c->close_at_us = pl_mono_us() + (int64_t)GW_CLOSE_FLUSH_MS * 1000;
	PL_INFO(GW_MOD, "event=goodbye conn=%llu code=%s reason=\"%s\"",
	    (unsigned long long)c->id, pl_code_name(code), reason);
	if (c->pend_len > 0)
		kick_locked(c);
}

/* The frames not yet handed to the socket are dropped (the client is
 * leaving; it resumes from its last seq): what is on its way finishes,
 * whole frames only, then the Goodbye, then the close. */
static void slow_locked(gw_conn *c)
{
	pl_metric_inc(c->g->m.slow, 1);
	if (!c->closing && !c->closed)
		c->pend_len = 0;
	goodbye_locked(c, PARLEY__ERROR_CODE__OVERLOADED, "slow consumer");
}

/* A frame that goes nowhere is counted: a closing connection's late
 * replies, or no memory for the queue. (A slow consumer's is counted
 * as the slow consumer.) */
static void send_dropped(gw_conn *c, pl_status st)
{
	if (st == PL_E_CLOSED)
		pl_metric_inc(c->g->m.sends_dropped[0], 1);
	else if (st == PL_E_NOMEM)
		pl_metric_inc(c->g->m.sends_dropped[1], 1);
}

pl_status gw_conn_send(gw_conn *c, const Parley__ServerFrame *f)
{
	if (f->body_case == PARLEY__SERVER_FRAME__BODY_ERROR &&
	    f->error != NULL)
		gw_count_error(c->g, f->error->code);
	pthread_mutex_lock(&c->mu);
	pl_status st = append_frame_locked(c, f, false);
	if (st == PL_E_BACKPRESSURE)
		slow_locked(c);
	else if (st == PL_OK)
		kick_locked(c);
	pthread_mutex_unlock(&c->mu);
	send_dropped(c, st);
	return st;
}

pl_status gw_conn_send_bytes(gw_conn *c, const uint8_t *buf, size_t n)
{
	pthread_mutex_lock(&c->mu);
	size_t h = ws_hdr_len(c, n);
	pl_status st = reserve_locked(c, h + n, false);
	if (st == PL_OK) {
		(void)ws_wrap_locked(c, GW_WS_OP_BINARY, n);
		memcpy(c->pend + c->pend_len + h, buf, n);
		c->pend_len += (uint32_t)(h + n);
		kick_locked(c);
	} else if (st == PL_E_BACKPRESSURE) {
		slow_locked(c);
	}
	pthread_mutex_unlock(&c->mu);
	send_dropped(c, st);
	return st;
}

void gw_conn_send_error(gw_conn *c, uint64_t id, int code, const char *msg)
{
	Parley__Error e = PARLEY__ERROR__INIT;
	e.code = code;
	e.message = (char *)msg;
	Parley__ServerFrame f = PARLEY__SERVER_FRAME__INIT;
	f.id = id;
	f.body_case = PARLEY__SERVER_FRAME__BODY_ERROR;
	f.error = &e;
	(void)gw_conn_send(c, &f);
}

void gw_conn_send_retry(
    gw_conn *c, uint64_t id, int code, const char *msg, uint32_t retry_after_ms)
{
	Parley__Error e = PARLEY__ERROR__INIT;
	e.code = code;
	e.message = (char *)msg;
	e.not_applied = true;
	e.retry_after_ms = retry_after_ms;
	Parley__ServerFrame f = PARLEY__SERVER_FRAME__INIT;
	f.id = id;
	f.body_case = PARLEY__SERVER_FRAME__BODY_ERROR;
	f.error = &e;
	(void)gw_conn_send(c, &f);
}

void gw_conn_goodbye(gw_conn *c, int code, const char *reason)
{
	pthread_mutex_lock(&c->mu);
	goodbye_locked(c, code, reason);
	pthread_mutex_unlock(&c->mu);
}

size_t gw_conn_unsent(gw_conn *c)
{
	pthread_mutex_lock(&c->mu);
	size_t n = c->pend_len + (c->out_len - c->out_off);
	pthread_mutex_unlock(&c->mu);
	return n;
}

static void write_cb(void *arg)
{
	gw_conn *c = arg;
	int rv = nng_aio_result(c->waio);
	bool close_now = false;
	size_t unsent = 0;
	pthread_mutex_lock(&c->mu);
	c->sending = false;
	if (rv != 0) {
		close_now = true;
	} else {
		c->out_off += (uint32_t)nng_aio_count(c->waio);
		if (c->out_off < c->out_len && !c->closed) {
			nng_iov iov = {.iov_buf = c->out + c->out_off,
			    .iov_len = c->out_len - c->out_off};
			nng_aio_set_iov(c->waio, 1, &iov);
			c->sending = true;
			nng_stream_send(c->stream, c->waio);
			pthread_mutex_unlock(&c->mu);
			return; /* the write keeps its reference */
		}
		c->out_len = c->out_off = 0;
		kick_locked(c);
		if (!c->sending) {
			/* Drained: an idle connection keeps no send buffer. */
			free(c->out);
			free(c->pend);
			c->out = c->pend = NULL;
			c->out_cap = c->pend_cap = 0;
			close_now = c->closing;
		}
		unsent = c->pend_len + (c->out_len - c->out_off);
	}
	pthread_mutex_unlock(&c->mu);
	if (rv == 0 && !close_now && atomic_load(&c->catchup_waiting) &&
	    unsent <= GW_CATCHUP_BUDGET(c->g) &&
	    atomic_exchange(&c->catchup_waiting, false))
		c->g->conn_hooks.drained(c);
	if (close_now)
		gw_conn_close(c, rv != 0 ? nng_strerror(rv) : "goodbye sent");
	gw_conn_unref(c);
}

/* The 101 response first, then the client's early bytes into rbuf for
 * conn_open to decode. Out of memory: the connection closes at once. */
static void ws_accepted(gw_conn *c, const uint8_t *hs, size_t hs_len,
    const uint8_t *early, size_t early_len)
{
	pthread_mutex_lock(&c->mu);
	if (reserve_locked(c, hs_len, true) == PL_OK) {
		memcpy(c->pend, hs, hs_len);
		c->pend_len = (uint32_t)hs_len;
		kick_locked(c);
	}
	pthread_mutex_unlock(&c->mu);
	if (early_len == 0)
		return;
	size_t need = early_len + GW_WS_RX_HDR_BYTES_MAX;
	uint8_t *p = need <= c->rcap ? c->rbuf : realloc(c->rbuf, need);
	if (p == NULL) {
		gw_conn_goodbye(
		    c, PARLEY__ERROR_CODE__OVERLOADED, "out of memory");
		return;
	}
	if (need > c->rcap) {
		c->rbuf = p;
		c->rcap = (uint32_t)need;
	}
	memcpy(c->rbuf, early, early_len);
	c->rlen = (uint32_t)early_len;
}

/* ---- read loop ---- */

static bool conn_closing(gw_conn *c)
{
	pthread_mutex_lock(&c->mu);
	bool closing = c->closing || c->closed;
	pthread_mutex_unlock(&c->mu);
	return closing;
}

/* A framing error leaves the byte stream unparseable: say why, close. */
static void framing_error(gw_conn *c, const uint8_t *hdr, pl_status st)
{
	bool big = st == PL_E_TOO_LARGE;
	int code = big ? PARLEY__ERROR_CODE__TOO_LARGE
	               : PARLEY__ERROR_CODE__BAD_REQUEST;
	char msg[96];
	uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
	             (uint32_t)hdr[2] << 8 | hdr[3];
	if (big)
		snprintf(msg, sizeof(msg),
		    "frame of %u bytes exceeds frame_bytes_max %u", n,
		    c->g->conf->frame_bytes_max);
	else
		snprintf(msg, sizeof(msg), "empty frame (length 0)");
	gw_conn_send_error(c, 0, code, msg);
	gw_conn_goodbye(c, code, big ? "frame too large" : "bad framing");
}

/* Grows rbuf for the frame being received, or shrinks it back when the
 * connection went quiet. */
static bool rbuf_fit(gw_conn *c, bool was_full)
{
	size_t need = GW_RBUF_BYTES_MIN;
	/* read_frames has checked the announced length against the max. */
	if (c->dlen >= PL_FRAME_HEADER_BYTES)
		need =
		    PL_FRAME_HEADER_BYTES +
		    (((size_t)c->rbuf[0] << 24) | ((size_t)c->rbuf[1] << 16) |
		        ((size_t)c->rbuf[2] << 8) | c->rbuf[3]);
	/* WebSocket: the next frame header arrives before its payload. */
	if (c->ws != NULL)
		need += GW_WS_RX_HDR_BYTES_MAX;
	/* A busy pipelining client reads in bigger gulps. */
	size_t busy = (size_t)c->rcap * 2;
	if (was_full && busy > need && busy <= 16384)
		need = busy;
	if (need < c->rlen)
		need = c->rlen;
	if (need == c->rcap || (need < c->rcap && (was_full || c->rlen > 0)))
		return true;
	uint8_t *p = realloc(c->rbuf, need);
	if (p == NULL)
		return false;
	c->rbuf = p;
	c->rcap = (uint32_t)need;
	return true;
}

/* Handles every whole frame in rbuf. False when the connection must not
 * read any more. */
static bool read_frames(gw_conn *c)
{
	size_t off = 0, plen;
	size_t max = c->g->conf->frame_bytes_max;
	for (;;) {
		pl_status st =
		    pl_frame_peek(c->rbuf + off, c->dlen - off, max, &plen);
		if (st == PL_E_AGAIN)
			break;
		if (st != PL_OK) {
			framing_error(c, c->rbuf + off, st);
			return false;
		}
		c->g->conn_hooks.frame(
		    c, c->rbuf + off + PL_FRAME_HEADER_BYTES, plen);
		off += PL_FRAME_HEADER_BYTES + plen;
		if (conn_closing(c))
			return false;
	}
	memmove(c->rbuf, c->rbuf + off, c->rlen - off);
	c->rlen -= (uint32_t)off;
	c->dlen -= (uint32_t)off;
	return true;
}

/* The client closes, or broke the WebSocket protocol: answer with a
 * close frame (after a Goodbye naming the error) and stop reading. */
static void ws_end(gw_conn *c, gw_ws_ev ev)
{
	if (ev == GW_WS_EV_ERROR) {
		bool big = c->ws->close_code == GW_WS_CLOSE_TOO_BIG;
		char why[96];
		snprintf(why, sizeof(why), "websocket: %s", c->ws->error);
		gw_conn_goodbye(c,
		    big ? PARLEY__ERROR_CODE__TOO_LARGE
		        : PARLEY__ERROR_CODE__BAD_REQUEST,
		    why);
		return;
	}
	pthread_mutex_lock(&c->mu);
	if (!c->closing && !c->closed) {
		ws_control_locked(c, GW_WS_OP_CLOSE, GW_WS_CLOSE_NORMAL,
		    (const uint8_t *)"", 0);
		c->closing = true;
		c->close_at_us =
		    pl_mono_us() + (int64_t)GW_CLOSE_FLUSH_MS * 1000;
		kick_locked(c);
	}
	pthread_mutex_unlock(&c->mu);
}

/* WebSocket: turns the bytes read since the last call (after dlen) into
 * frame bytes, answering pings. Returns CLOSE or ERROR when reading must
 * stop (once the frames decoded before it are handled), else NONE. */
static gw_ws_ev ws_input(gw_conn *c)
{
	size_t w = c->dlen, r = c->dlen;
	for (;;) {
		gw_ws_ev ev = gw_ws_rx_step(c->ws, c->rbuf, &w, &r, c->rlen);
		if (ev == GW_WS_EV_NONE)
			break;
		if (ev == GW_WS_EV_PING) {
			pthread_mutex_lock(&c->mu);
			if (!c->closing && !c->closed) {
				ws_control_locked(c, GW_WS_OP_PONG, 0,
				    c->ws->ctl, c->ws->ctl_len);
				kick_locked(c);
			}
			pthread_mutex_unlock(&c->mu);
		} else if (ev != GW_WS_EV_PONG) {
			c->dlen = (uint32_t)w;
			return ev;
		}
	}
	/* A partial header stays, right after the decoded bytes. */
	memmove(c->rbuf + w, c->rbuf + r, c->rlen - r);
	c->rlen = (uint32_t)(w + (c->rlen - r));
	c->dlen = (uint32_t)w;
	return GW_WS_EV_NONE;
}

static void read_cb(void *arg)
{
	gw_conn *c = arg;
	int rv = nng_aio_result(c->raio);
	if (rv != 0) {
		gw_conn_close(c, nng_strerror(rv));
		gw_conn_unref(c);
		return;
	}
	read_more(c, nng_aio_count(c->raio));
}

/* n new bytes are at rbuf + rlen: handles them, then reads again (the
 * read's reference goes with it, or is dropped when reading stops). */
static void read_more(gw_conn *c, size_t n)
{
	bool was_full = c->rlen + n == c->rcap;
	c->rlen += (uint32_t)n;
	if (c->ws == NULL)
		c->dlen = c->rlen;
	atomic_store(&c->last_rx_us, pl_mono_us());
	gw_ws_ev end = c->ws != NULL ? ws_input(c) : GW_WS_EV_NONE;
	if (!read_frames(c) || end != GW_WS_EV_NONE) {
		if (end != GW_WS_EV_NONE)
			ws_end(c, end);
		gw_conn_unref(c);
		return;
	}
	if (!rbuf_fit(c, was_full)) {
		gw_conn_goodbye(
		    c, PARLEY__ERROR_CODE__OVERLOADED, "out of memory");
		gw_conn_unref(c);
		return;
	}
	/* Re-armed under mu: a close that came meanwhile (from a write or
	 * the sweeper) has already aborted what was pending, and nng does
	 * not fail a receive posted on a closed stream, so the read would
	 * keep its reference forever. */
	pthread_mutex_lock(&c->mu);
	bool closed = c->closed;
	if (!closed)
		read_next(c); /* the read keeps its reference */
	pthread_mutex_unlock(&c->mu);
	if (closed)
		gw_conn_unref(c);
}

/* ---- close and free ---- */

void gw_conn_close(gw_conn *c, const char *reason)
{
	pthread_mutex_lock(&c->mu);
	if (c->closed) {
		pthread_mutex_unlock(&c->mu);
		return;
	}
	c->closed = true;
	c->closing = true;
	pthread_mutex_unlock(&c->mu);
	/* Aborts the outstanding read and write: their callbacks drop their
	 * references. */
	nng_stream_close(c->stream);
	c->g->conn_hooks.closing(c);
	table_remove(c->g, c);
	gw_tenant_use *u = atomic_exchange(&c->tuse, NULL);
	if (u != NULL)
		gw_tenant_conn_drop(u);
	pl_metric_inc(c->g->m.conns[c->transport], -1);
	PL_DEBUG(GW_MOD, "event=conn_close conn=%llu reason=\"%s\"",
	    (unsigned long long)c->id, reason);
	gw_conn_unref(c); /* the table's */
}

/* Called by the sweeper with conns_mu held. */
void gw_conn_sweep(gw_conn *c, int64_t now_us, bool *close_now)
{
	const gw_config *conf = c->g->conf;
	int64_t idle_us = now_us - atomic_load(&c->last_rx_us);
	pthread_mutex_lock(&c->mu);
	if (c->closed) {
		/* nothing: close is in progress elsewhere */
	} else if (c->closing) {
		*close_now = now_us >= c->close_at_us;
	} else if (!atomic_load(&c->authed) &&
	           now_us - c->created_us >=
	               (int64_t)conf->hello_timeout_ms * 1000) {
		goodbye_locked(
		    c, PARLEY__ERROR_CODE__UNAUTHORIZED, "hello timeout");
	} else if (atomic_load(&c->authed) &&
	           pl_now_us() / 1000000 >= atomic_load(&c->exp_s)) {
		goodbye_locked(
		    c, PARLEY__ERROR_CODE__UNAUTHORIZED, "token expired");
	} else if (idle_us >= (int64_t)conf->idle_ms * 1000) {
		goodbye_locked(c, PARLEY__ERROR_CODE__E_NONE, "idle");
	}
	pthread_mutex_unlock(&c->mu);
}

/* On the sweeper thread, after the last reference went: waits for any
 * callback still returning, then frees. */
void gw_conn_destroy(gw_conn *c)
{
	nng_aio_free(c->raio);
	nng_aio_free(c->waio);
	nng_stream_free(c->stream);
	pthread_mutex_destroy(&c->mu);
	free(c->rbuf);
	free(c->pend);
	free(c->out);
	free(c->ws);
	c->g->conn_hooks.peer_put(c->g, &c->peer);
	atomic_fetch_sub(&c->g->conns_alive, 1);
	free(c);
}
