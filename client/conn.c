/*
 * conn.c - a libparley connection: dialing an nng stream, the receive
 * callback that decodes frames and routes them (replies to request slots,
 * events to a bounded queue), the serialized send path and the request
 * table. Invariants: a request id's slot is slots[id & (nslots - 1)]; every
 * queue is bounded (events by events_max, slots by PARLEY_INFLIGHT_MAX);
 * all shared state is under c->mu, the socket writer under c->send_mu.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "client/internal.h"

/* Idle connections stay small (the idle bench opens tens of thousands):
 * buffers start at these sizes and grow to the frame at hand. */
#define RECV_BUF_BYTES_MIN 4096
#define RECV_BUF_BYTES_KEEP (256u * 1024) /* shrink back above this */
#define SEND_BUF_BYTES_MIN 1024
#define SLOTS_MIN 16
#define SEND_TIMEOUT_MS_DEFAULT 10000
#define BOX_MAGIC 0x706c6278u /* "plbx" */
#define ARENA_RETRIES 3       /* arena sizes x1, x4, x16 the estimate */
/* A token is refreshed this long before it expires: enough for a token
 * service round trip and a retry or two. */
#define REFRESH_AHEAD_S_DEFAULT 30

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

	/* Receive path: touched only by recv_cb (one at a time). */
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

/* ------------------------------------------------------------------ */
/* Small helpers. */

static bool ring_push(ring *r, uint64_t v)
{
	if (r->len == r->cap) {
		if (r->cap >= r->max)
			return false;
		uint32_t ncap = r->cap ? r->cap * 2 : 16;
		if (ncap > r->max)
			ncap = r->max;
		uint64_t *n = malloc(sizeof(*n) * ncap);
		if (n == NULL)
			return false;
		for (uint32_t i = 0; i < r->len; i++)
			n[i] = r->items[(r->head + i) % r->cap];
		free(r->items);
		r->items = n;
		r->cap = ncap;
		r->head = 0;
	}
	r->items[(r->head + r->len) % r->cap] = v;
	r->len++;
	return true;
}

static uint64_t ring_pop(ring *r)
{
	PL_ASSERT(r->len > 0);
	uint64_t v = r->items[r->head];
	r->head = (r->head + 1) % r->cap;
	r->len--;
	return v;
}

static void box_free(frame_box *b)
{
	if (b == NULL)
		return;
	PL_ASSERT(b->magic == BOX_MAGIC);
	pl_arena_fini(&b->arena);
	b->magic = 0;
	free(b);
}

void parley_frame_free(Parley__ServerFrame *f)
{
	box_free((frame_box *)f);
}

int64_t parley_frame_recv_us(const Parley__ServerFrame *f)
{
	const frame_box *b = (const frame_box *)f;
	PL_ASSERT(b->magic == BOX_MAGIC);
	return b->recv_us;
}

static struct timespec deadline_after(int64_t timeout_us)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t ns = ts.tv_nsec + (timeout_us % 1000000) * 1000;
	ts.tv_sec += (time_t)(timeout_us / 1000000 + ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	return ts;
}

/* Waits on c->cv (mu held) until *dl; dl NULL waits forever.
 * Returns false once the deadline passed. */
static bool cv_wait(parley_conn *c, const struct timespec *dl)
{
	if (dl == NULL) {
		pthread_cond_wait(&c->cv, &c->mu);
		return true;
	}
	return pthread_cond_timedwait(&c->cv, &c->mu, dl) == 0;
}

static void set_error_locked(parley_conn *c, int code, const char *msg)
{
	c->err_code = code;
	snprintf(c->err_msg, sizeof(c->err_msg), "%s", msg ? msg : "");
}

pl_status parley_local_error(parley_conn *c, pl_status st, const char *what)
{
	pthread_mutex_lock(&c->mu);
	if (what == NULL)
		what = pl_strerror(st);
	set_error_locked(c, pl_status_to_code(st), what);
	pthread_mutex_unlock(&c->mu);
	return st;
}

const char *parley_last_error(parley_conn *c, int *code)
{
	pthread_mutex_lock(&c->mu);
	if (code != NULL)
		*code = c->err_code;
	const char *m = c->err_msg;
	pthread_mutex_unlock(&c->mu);
	return m;
}

bool parley_is_closed(parley_conn *c)
{
	pthread_mutex_lock(&c->mu);
	bool closed = c->closed;
	pthread_mutex_unlock(&c->mu);
	return closed;
}

uint64_t parley_events_dropped(parley_conn *c)
{
	pthread_mutex_lock(&c->mu);
	uint64_t d = c->dropped;
	pthread_mutex_unlock(&c->mu);
	return d;
}

uint32_t parley_inflight(parley_conn *c)
{
	pthread_mutex_lock(&c->mu);
	uint32_t n = c->nasync;
	pthread_mutex_unlock(&c->mu);
	return n;
}

/* Marks the connection closed once, with the status pending and future
 * requests fail with, and wakes every waiter. */
static void conn_fail(parley_conn *c, pl_status st, const char *why)
{
	pthread_mutex_lock(&c->mu);
	if (!c->closed) {
		c->closed = true;
		if (c->close_status == PL_OK) {
			c->close_status = st;
			set_error_locked(c, pl_status_to_code(st), why);
		}
	}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

/* ------------------------------------------------------------------ */
/* Request slots (mu held). */

static slot *slot_find(parley_conn *c, uint64_t id)
{
	if (c->nslots == 0 || id == 0)
		return NULL;
	slot *s = &c->slots[id & (c->nslots - 1)];
	return (s->state != SLOT_FREE && s->id == id) ? s : NULL;
}

/* Doubles the table; ids keep their slots' low bits, so no two busy slots
 * can collide in the larger table. */
static pl_status slots_grow(parley_conn *c)
{
	uint32_t n = c->nslots ? c->nslots * 2 : SLOTS_MIN;
	if (n > PARLEY_INFLIGHT_MAX)
		return PL_E_BACKPRESSURE;
	slot *t = calloc(n, sizeof(*t));
	if (t == NULL)
		return PL_E_NOMEM;
	for (uint32_t i = 0; i < c->nslots; i++) {
		if (c->slots[i].state != SLOT_FREE)
			t[c->slots[i].id & (n - 1)] = c->slots[i];
	}
	free(c->slots);
	c->slots = t;
	c->nslots = n;
	return PL_OK;
}

static pl_status slot_acquire(
    parley_conn *c, bool async, uint64_t tag, uint64_t *id)
{
	if (c->closed)
		return c->close_status ? c->close_status : PL_E_CLOSED;
	if (c->nbusy == c->nslots) {
		pl_status st = slots_grow(c);
		if (st != PL_OK)
			return st;
	}
	if (async && c->done.items == NULL) {
		/* Sized once for every slot, so the receive path's push of a
		 * completion can never fail. */
		c->done.items = malloc(sizeof(uint64_t) * c->done.max);
		if (c->done.items == NULL)
			return PL_E_NOMEM;
		c->done.cap = c->done.max;
	}
	slot *s;
	do {
		if (++c->next_id == 0)
			c->next_id = 1;
		s = &c->slots[c->next_id & (c->nslots - 1)];
	} while (s->state != SLOT_FREE);
	*s = (slot){
	    .id = c->next_id, .tag = tag, .state = SLOT_WAIT, .async = async};
	c->nbusy++;
	if (async)
		c->nasync++;
	*id = c->next_id;
	return PL_OK;
}

/* Frees a slot; returns the reply it held (owned by the caller). */
static frame_box *slot_release(parley_conn *c, slot *s)
{
	frame_box *b = s->reply;
	if (s->async)
		c->nasync--;
	*s = (slot){0};
	c->nbusy--;
	return b;
}

/* ------------------------------------------------------------------ */
/* Receive path. */

/* Routes one decoded frame (taken). Replies to unknown ids (a request
 * that timed out) are dropped, as are events beyond the queue bound. */
static void dispatch(parley_conn *c, frame_box *b)
{
	Parley__ServerFrame *f = &b->frame;
	pthread_mutex_lock(&c->mu);
	if (f->id != 0) {
		slot *s = slot_find(c, f->id);
		if (s == NULL || s->state != SLOT_WAIT) {
			box_free(b);
		} else {
			s->reply = b;
			s->state = SLOT_DONE;
			if (s->async && !ring_push(&c->done, s->id))
				PL_ASSERT(!"done ring holds every async slot");
		}
	} else {
		if (f->body_case == PARLEY__SERVER_FRAME__BODY_GOODBYE) {
			int code = (int)f->goodbye->code;
			c->close_status =
			    code ? pl_code_to_status(code) : PL_E_CLOSED;
			set_error_locked(c, code, f->goodbye->reason);
		}
		if (!ring_push(&c->events, (uint64_t)(uintptr_t)b)) {
			box_free(b);
			c->dropped++;
			c->overflow_pending = true;
		}
	}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

/* Decodes one payload into a new box with an arena of cap bytes. */
static pl_status box_decode(
    parley_conn *c, const uint8_t *p, size_t n, size_t cap, frame_box **out)
{
	frame_box *b = malloc(sizeof(*b) + cap);
	if (b == NULL)
		return PL_E_NOMEM;
	pl_status st = pl_arena_init(&b->arena, b->mem, cap);
	if (st != PL_OK) {
		free(b);
		return st;
	}
	b->magic = BOX_MAGIC;
	Parley__ServerFrame *f;
	st = pl_server_frame_decode(p, n, c->recv_max, &b->arena, &f);
	if (st != PL_OK) {
		box_free(b);
		return st;
	}
	b->frame = *f;
	b->recv_us = pl_mono_us();
	*out = b;
	return PL_OK;
}

/* The payload's length is already checked, so PL_E_TOO_LARGE means the
 * arena ran out (pages of many tiny messages need more than the codec's
 * estimate): retry with a larger arena, a bounded number of times. */
static pl_status decode_frame(parley_conn *c, const uint8_t *p, size_t n)
{
	size_t cap = PL_ARENA_BYTES_FOR(n);
	frame_box *b = NULL;
	pl_status st = PL_E_TOO_LARGE;
	for (int i = 0; i < ARENA_RETRIES && st == PL_E_TOO_LARGE; i++) {
		st = box_decode(c, p, n, cap, &b);
		cap *= 4;
	}
	if (st != PL_OK)
		return st;
	dispatch(c, b);
	return PL_OK;
}

static uint32_t get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | p[3];
}

/* Makes room for at least need bytes in rbuf (need <= recv_max + 4). */
static pl_status rbuf_reserve(parley_conn *c, size_t need)
{
	if (c->rcap >= need && c->rlen < c->rcap)
		return PL_OK;
	size_t ncap = c->rcap ? c->rcap : RECV_BUF_BYTES_MIN;
	while (ncap < need || ncap <= c->rlen)
		ncap *= 2;
	uint8_t *n = realloc(c->rbuf, ncap);
	if (n == NULL)
		return PL_E_NOMEM;
	c->rbuf = n;
	c->rcap = ncap;
	return PL_OK;
}

/* Decodes every whole frame in rbuf, keeps the partial tail, and sizes
 * the buffer for the frame being received. */
static pl_status recv_drain(parley_conn *c)
{
	size_t off = 0;
	for (;;) {
		size_t plen;
		pl_status st = pl_frame_peek(
		    c->rbuf + off, c->rlen - off, c->recv_max, &plen);
		if (st == PL_E_AGAIN)
			break;
		if (st != PL_OK)
			return st;
		st = decode_frame(
		    c, c->rbuf + off + PL_FRAME_HEADER_BYTES, plen);
		if (st != PL_OK)
			return st;
		off += PL_FRAME_HEADER_BYTES + plen;
	}
	memmove(c->rbuf, c->rbuf + off, c->rlen - off);
	c->rlen -= off;
	if (c->rlen == 0 && c->rcap > RECV_BUF_BYTES_KEEP) {
		free(c->rbuf);
		c->rbuf = NULL;
		c->rcap = 0;
	}
	size_t need = RECV_BUF_BYTES_MIN;
	if (c->rlen >= PL_FRAME_HEADER_BYTES)
		need = PL_FRAME_HEADER_BYTES + (size_t)get_be32(c->rbuf);
	return rbuf_reserve(c, need);
}

static void recv_start(parley_conn *c)
{
	nng_iov iov = {
	    .iov_buf = c->rbuf + c->rlen, .iov_len = c->rcap - c->rlen};
	nng_aio_set_iov(c->recv_aio, 1, &iov);
	nng_stream_recv(c->stream, c->recv_aio);
}

static void recv_cb(void *arg)
{
	parley_conn *c = arg;
	int rv = nng_aio_result(c->recv_aio);
	if (rv != 0) {
		conn_fail(c, PL_E_CLOSED, nng_strerror(rv));
		return;
	}
	c->rlen += nng_aio_count(c->recv_aio);
	pl_status st = recv_drain(c);
	if (st != PL_OK) {
		conn_fail(c, st == PL_E_NOMEM ? st : PL_E_PROTO,
		    "undecodable frame from server");
		nng_stream_close(c->stream);
		return;
	}
	recv_start(c);
}

/* ------------------------------------------------------------------ */
/* Send path. */

static pl_status write_all(parley_conn *c, const uint8_t *p, size_t n)
{
	while (n > 0) {
		nng_iov iov = {.iov_buf = (void *)p, .iov_len = n};
		nng_aio_set_iov(c->send_aio, 1, &iov);
		nng_aio_set_timeout(c->send_aio, c->send_timeout_ms);
		nng_stream_send(c->stream, c->send_aio);
		nng_aio_wait(c->send_aio);
		int rv = nng_aio_result(c->send_aio);
		if (rv != 0) {
			/* A partial frame corrupts the stream: close it. */
			nng_stream_close(c->stream);
			conn_fail(c,
			    rv == NNG_ETIMEDOUT ? PL_E_TIMEOUT : PL_E_CLOSED,
			    nng_strerror(rv));
			return rv == NNG_ETIMEDOUT ? PL_E_TIMEOUT : PL_E_CLOSED;
		}
		size_t done = nng_aio_count(c->send_aio);
		p += done;
		n -= done;
	}
	return PL_OK;
}

/* Encodes and writes one frame; frames from several threads never
 * interleave. */
static pl_status conn_send(parley_conn *c, const Parley__ClientFrame *req)
{
	size_t body = protobuf_c_message_get_packed_size(&req->base);
	pthread_mutex_lock(&c->send_mu);
	if (body > c->send_max) {
		pthread_mutex_unlock(&c->send_mu);
		return PL_E_TOO_LARGE;
	}
	size_t need = body + PL_FRAME_HEADER_BYTES;
	if (c->scap < need) {
		size_t ncap =
		    need < SEND_BUF_BYTES_MIN ? SEND_BUF_BYTES_MIN : need;
		uint8_t *n = realloc(c->sbuf, ncap);
		if (n == NULL) {
			pthread_mutex_unlock(&c->send_mu);
			return PL_E_NOMEM;
		}
		c->sbuf = n;
		c->scap = ncap;
	}
	size_t len;
	pl_status st = pl_frame_encode(&req->base, c->sbuf, c->scap, &len);
	if (st == PL_OK)
		st = write_all(c, c->sbuf, len);
	pthread_mutex_unlock(&c->send_mu);
	return st;
}

/* ------------------------------------------------------------------ */
/* Connect and close. */

static void opts_apply(parley_conn *c, const parley_opts *o)
{
	parley_opts d = {0};
	if (o == NULL)
		o = &d;
	c->events.max = o->events_max ? o->events_max : PARLEY_EVENTS_DEFAULT;
	if (c->events.max > PARLEY_EVENTS_MAX)
		c->events.max = PARLEY_EVENTS_MAX;
	c->done.max = PARLEY_INFLIGHT_MAX;
	c->recv_max =
	    o->recv_frame_max ? o->recv_frame_max : PL_FRAME_BYTES_CEIL;
	if (c->recv_max > PL_FRAME_BYTES_CEIL)
		c->recv_max = PL_FRAME_BYTES_CEIL;
	c->send_max = o->send_frame_max ? o->send_frame_max
	                                : PL_CLIENT_FRAME_BYTES_DEFAULT;
	if (c->send_max > PL_FRAME_BYTES_CEIL)
		c->send_max = PL_FRAME_BYTES_CEIL;
	c->send_timeout_ms =
	    o->send_timeout_ms ? o->send_timeout_ms : SEND_TIMEOUT_MS_DEFAULT;
	c->token_fn = o->token_refresh;
	c->token_arg = o->token_refresh_arg;
	c->refresh_ahead_s =
	    o->refresh_ahead_s ? o->refresh_ahead_s : REFRESH_AHEAD_S_DEFAULT;
}

static pl_status conn_init(parley_conn *c)
{
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->send_mu, NULL);
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) != 0)
		return PL_E_NOMEM;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int rv = pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rv != 0)
		return PL_E_NOMEM;
	if (nng_aio_alloc(&c->recv_aio, recv_cb, c) != 0 ||
	    nng_aio_alloc(&c->send_aio, NULL, NULL) != 0)
		return PL_E_NOMEM;
	return rbuf_reserve(c, RECV_BUF_BYTES_MIN);
}

static pl_status dial_status(int rv)
{
	switch (rv) {
	case NNG_ETIMEDOUT:
		return PL_E_TIMEOUT;
	case NNG_ENOMEM:
		return PL_E_NOMEM;
	case NNG_EADDRINVAL:
	case NNG_ENOTSUP:
	case NNG_EINVAL:
		return PL_E_BAD_REQUEST;
	default:
		return PL_E_UNAVAILABLE;
	}
}

static bool url_is_tls(const char *url)
{
	return strncmp(url, "tls+tcp://", 10) == 0 ||
	       strncmp(url, "wss://", 6) == 0;
}

/* Verification against a CA file (and the URL's host name), or none when
 * asked for explicitly; a TLS URL with neither is refused rather than
 * silently unverified. The dialer keeps its own hold on the config. */
static int tls_setup(
    nng_stream_dialer *d, const char *url, const parley_opts *o)
{
	bool ca = o != NULL && o->tls_ca_file != NULL && o->tls_ca_file[0];
	if (!ca && (o == NULL || !o->tls_insecure))
		return NNG_EINVAL;
	nng_url *u = NULL;
	nng_tls_config *cfg = NULL;
	int rv = nng_url_parse(&u, url);
	if (rv == 0)
		rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT);
	if (rv == 0 && ca)
		rv = nng_tls_config_ca_file(cfg, o->tls_ca_file);
	if (rv == 0 && ca)
		rv = nng_tls_config_server_name(cfg,
		    o->tls_server_name ? o->tls_server_name : u->u_hostname);
	if (rv == 0)
		rv = nng_tls_config_auth_mode(cfg,
		    ca ? NNG_TLS_AUTH_MODE_REQUIRED : NNG_TLS_AUTH_MODE_NONE);
	if (rv == 0)
		rv = nng_stream_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
	if (cfg != NULL)
		nng_tls_config_free(cfg);
	if (u != NULL)
		nng_url_free(u);
	return rv;
}

static pl_status conn_dial(
    parley_conn *c, const char *url, int timeout_ms, const parley_opts *opts)
{
	int rv = nng_stream_dialer_alloc(&c->dialer, url);
	if (rv != 0)
		return dial_status(rv);
	if (url_is_tls(url) && (rv = tls_setup(c->dialer, url, opts)) != 0)
		return PL_E_BAD_REQUEST;
	/* Chat frames are small: no Nagle delay (ignored where unknown). */
	(void)nng_stream_dialer_set_bool(c->dialer, NNG_OPT_TCP_NODELAY, true);
	/* ws only; tcp answers ENOTSUP, which is fine. A history page may
	 * arrive as one WebSocket frame. */
	(void)nng_stream_dialer_set_size(c->dialer, NNG_OPT_WS_RECVMAXFRAME,
	    (size_t)c->recv_max + PL_FRAME_HEADER_BYTES);
	nng_aio_set_timeout(
	    c->send_aio, timeout_ms < 0 ? NNG_DURATION_INFINITE : timeout_ms);
	nng_stream_dialer_dial(c->dialer, c->send_aio);
	nng_aio_wait(c->send_aio);
	rv = nng_aio_result(c->send_aio);
	if (rv != 0)
		return dial_status(rv);
	c->stream = nng_aio_get_output(c->send_aio, 0);
	return PL_OK;
}

pl_status parley_connect(
    const char *url, int timeout_ms, const parley_opts *opts, parley_conn **out)
{
	if (url == NULL || out == NULL)
		return PL_E_BAD_REQUEST;
	parley_conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return PL_E_NOMEM;
	opts_apply(c, opts);
	pl_status st = conn_init(c);
	if (st == PL_OK)
		st = conn_dial(c, url, timeout_ms, opts);
	if (st != PL_OK) {
		parley_close(c);
		return st;
	}
	recv_start(c);
	*out = c;
	return PL_OK;
}

static void conn_drain_all(parley_conn *c)
{
	while (c->events.len > 0)
		box_free((frame_box *)(uintptr_t)ring_pop(&c->events));
	for (uint32_t i = 0; i < c->nslots; i++)
		box_free(c->slots[i].reply);
	free(c->events.items);
	free(c->done.items);
	free(c->slots);
}

void parley_close(parley_conn *c)
{
	if (c == NULL)
		return;
	if (c->stream != NULL)
		nng_stream_close(c->stream);
	/* Its requests fail now that the socket is closed. */
	parley_refresher_stop(c->refresher);
	if (c->recv_aio != NULL)
		nng_aio_stop(c->recv_aio);
	if (c->send_aio != NULL)
		nng_aio_stop(c->send_aio);
	if (c->stream != NULL)
		nng_stream_free(c->stream);
	if (c->dialer != NULL)
		nng_stream_dialer_free(c->dialer);
	if (c->recv_aio != NULL)
		nng_aio_free(c->recv_aio);
	if (c->send_aio != NULL)
		nng_aio_free(c->send_aio);
	conn_drain_all(c);
	free(c->rbuf);
	free(c->sbuf);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->send_mu);
	free(c);
}

/* ------------------------------------------------------------------ */
/* Requests. */

/* Turns a reply (taken) into a status; an Error body is recorded as the
 * connection's last error and freed. */
static pl_status reply_status(parley_conn *c, frame_box *b, int *code)
{
	if (b->frame.body_case != PARLEY__SERVER_FRAME__BODY_ERROR) {
		*code = 0;
		return PL_OK;
	}
	int ec = (int)b->frame.error->code;
	pthread_mutex_lock(&c->mu);
	set_error_locked(c, ec, b->frame.error->message);
	pthread_mutex_unlock(&c->mu);
	box_free(b);
	pl_status st = pl_code_to_status(ec);
	*code = ec;
	return st == PL_OK ? PL_E_INTERNAL : st;
}

/* Waits for the reply of sync request id; frees its slot in every case. */
static pl_status wait_reply(
    parley_conn *c, uint64_t id, int timeout_ms, frame_box **out)
{
	struct timespec dl = deadline_after((int64_t)timeout_ms * 1000);
	pthread_mutex_lock(&c->mu);
	slot *s = slot_find(c, id);
	PL_ASSERT(s != NULL);
	pl_status st = PL_OK;
	while (s->state != SLOT_DONE) {
		if (c->closed) {
			st = c->close_status ? c->close_status : PL_E_CLOSED;
			break;
		}
		if (!cv_wait(c, timeout_ms < 0 ? NULL : &dl)) {
			st = PL_E_TIMEOUT;
			set_error_locked(c, pl_status_to_code(st),
			    "no reply before the timeout");
			break;
		}
		s = slot_find(c, id); /* the table may have grown */
	}
	frame_box *b = slot_release(c, s);
	pthread_mutex_unlock(&c->mu);
	if (st != PL_OK) {
		box_free(b);
		return st;
	}
	*out = b;
	return PL_OK;
}

static pl_status send_registered(parley_conn *c, Parley__ClientFrame *req,
    bool async, uint64_t tag, uint64_t *id)
{
	pthread_mutex_lock(&c->mu);
	pl_status st = slot_acquire(c, async, tag, id);
	pthread_mutex_unlock(&c->mu);
	if (st != PL_OK)
		return parley_local_error(c, st, NULL);
	req->id = *id;
	st = conn_send(c, req);
	if (st != PL_OK) {
		pthread_mutex_lock(&c->mu);
		slot *s = slot_find(c, *id);
		if (s != NULL)
			box_free(slot_release(c, s));
		pthread_mutex_unlock(&c->mu);
		return parley_local_error(c, st, NULL);
	}
	return PL_OK;
}

pl_status parley_request(parley_conn *c, Parley__ClientFrame *req,
    int timeout_ms, Parley__ServerFrame **reply)
{
	uint64_t id;
	pl_status st = send_registered(c, req, false, 0, &id);
	if (st != PL_OK)
		return st;
	frame_box *b = NULL;
	st = wait_reply(c, id, timeout_ms, &b);
	if (st != PL_OK)
		return st;
	int code;
	st = reply_status(c, b, &code);
	if (st != PL_OK)
		return st;
	*reply = &b->frame;
	return PL_OK;
}

pl_status parley_send(
    parley_conn *c, Parley__ClientFrame *req, uint64_t tag, uint64_t *id)
{
	uint64_t nid;
	pl_status st = send_registered(c, req, true, tag, &nid);
	if (st != PL_OK)
		return st;
	*id = nid;
	return PL_OK;
}

pl_status parley_collect(
    parley_conn *c, int64_t timeout_us, parley_completion *out)
{
	struct timespec dl = deadline_after(timeout_us < 0 ? 0 : timeout_us);
	pthread_mutex_lock(&c->mu);
	while (c->done.len == 0) {
		if (c->closed || timeout_us == 0 ||
		    !cv_wait(c, timeout_us < 0 ? NULL : &dl)) {
			pl_status st = c->closed ? PL_E_CLOSED : PL_E_TIMEOUT;
			pthread_mutex_unlock(&c->mu);
			return st;
		}
	}
	uint64_t id = ring_pop(&c->done);
	slot *s = slot_find(c, id);
	PL_ASSERT(s != NULL && s->state == SLOT_DONE);
	uint64_t tag = s->tag;
	frame_box *b = slot_release(c, s);
	pthread_mutex_unlock(&c->mu);

	parley_completion r = {.id = id, .tag = tag, .recv_us = b->recv_us};
	r.status = reply_status(c, b, &r.code);
	r.reply = r.status == PL_OK ? &b->frame : NULL;
	*out = r;
	return PL_OK;
}

pl_status parley_next_event(
    parley_conn *c, int timeout_ms, Parley__ServerFrame **ev)
{
	struct timespec dl = deadline_after((int64_t)timeout_ms * 1000);
	pthread_mutex_lock(&c->mu);
	pl_status st = PL_OK;
	while (!c->overflow_pending && c->events.len == 0) {
		if (c->closed || timeout_ms == 0 ||
		    !cv_wait(c, timeout_ms < 0 ? NULL : &dl)) {
			st = c->closed ? PL_E_CLOSED : PL_E_TIMEOUT;
			break;
		}
	}
	if (st == PL_OK && c->overflow_pending) {
		c->overflow_pending = false;
		st = PL_E_BACKPRESSURE;
	} else if (st == PL_OK) {
		frame_box *b = (frame_box *)(uintptr_t)ring_pop(&c->events);
		*ev = &b->frame;
	}
	pthread_mutex_unlock(&c->mu);
	return st;
}

/* ------------------------------------------------------------------ */
/* hello lives here: it adopts the server's frame limit. */

static void welcome_copy(const Parley__Welcome *w, parley_welcome *out)
{
	parley_welcome r = {0};
	snprintf(r.session, sizeof(r.session), "%s", w->session);
	r.server_time_us = w->server_time_us;
	if (w->limits != NULL) {
		r.frame_bytes_max = w->limits->frame_bytes_max;
		r.body_bytes_max = w->limits->body_bytes_max;
		r.publish_per_sec = w->limits->publish_per_sec;
		r.subscriptions_max = w->limits->subscriptions_max;
		r.idle_ms = w->limits->idle_ms;
		r.history_limit_max = w->limits->history_limit_max;
		r.send_queue_bytes_max = w->limits->send_queue_bytes_max;
	}
	r.token_exp_s = w->token_exp_s;
	snprintf(r.tenant, sizeof(r.tenant), "%s", w->tenant);
	snprintf(r.user, sizeof(r.user), "%s", w->user);
	r.role = (int)w->role;
	*out = r;
}

/* Starts the token refresher after the first welcome that names an
 * expiry, when the application gave a callback. */
static pl_status refresher_arm(parley_conn *c, int64_t exp_s)
{
	if (c->token_fn == NULL || exp_s <= 0)
		return PL_OK;
	pl_status st = PL_OK;
	pthread_mutex_lock(&c->mu);
	if (c->refresher == NULL)
		st = parley_refresher_start(c, c->token_fn, c->token_arg,
		    c->refresh_ahead_s, exp_s, &c->refresher);
	pthread_mutex_unlock(&c->mu);
	return st == PL_OK ? PL_OK : parley_local_error(c, st, NULL);
}

pl_status parley_hello(
    parley_conn *c, const char *token, int timeout_ms, parley_welcome *out)
{
	Parley__Hello h = PARLEY__HELLO__INIT;
	h.token = (char *)(token ? token : "");
	h.client = "libparley/0.1";
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_HELLO;
	req.hello = &h;
	Parley__ServerFrame *rep = NULL;
	pl_status st = parley_request(c, &req, timeout_ms, &rep);
	if (st != PL_OK)
		return st;
	if (rep->body_case != PARLEY__SERVER_FRAME__BODY_WELCOME) {
		parley_frame_free(rep);
		return parley_local_error(
		    c, PL_E_PROTO, "hello: reply is no welcome");
	}
	const Parley__Limits *l = rep->welcome->limits;
	if (l != NULL && l->frame_bytes_max != 0) {
		pthread_mutex_lock(&c->send_mu);
		if (l->frame_bytes_max < c->send_max)
			c->send_max = l->frame_bytes_max;
		pthread_mutex_unlock(&c->send_mu);
	}
	int64_t exp = rep->welcome->token_exp_s;
	if (out != NULL)
		welcome_copy(rep->welcome, out);
	parley_frame_free(rep);
	return refresher_arm(c, exp);
}

pl_status parley_refresh(
    parley_conn *c, const char *token, int timeout_ms, int64_t *exp_s)
{
	Parley__Refresh r = PARLEY__REFRESH__INIT;
	r.token = (char *)(token ? token : "");
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_REFRESH;
	req.refresh = &r;
	Parley__ServerFrame *rep = NULL;
	pl_status st = parley_request(c, &req, timeout_ms, &rep);
	if (st != PL_OK)
		return st;
	if (rep->body_case != PARLEY__SERVER_FRAME__BODY_REFRESHED) {
		parley_frame_free(rep);
		return parley_local_error(
		    c, PL_E_PROTO, "refresh: reply is no refreshed");
	}
	int64_t exp = rep->refreshed->token_exp_s;
	parley_frame_free(rep);
	/* Set once and freed only by parley_close; noted without c->mu,
	 * which the refresher takes under its own lock. */
	pthread_mutex_lock(&c->mu);
	parley_refresher *rf = c->refresher;
	pthread_mutex_unlock(&c->mu);
	parley_refresher_note(rf, exp);
	if (exp_s != NULL)
		*exp_s = exp;
	return PL_OK;
}
