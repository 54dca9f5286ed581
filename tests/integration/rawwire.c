/*
 * rawwire.c - the raw wire client of rawwire.h: nng streams for TCP and
 * WebSocket alike, a protobuf writer, and server frames decoded one by
 * one from what arrived.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <sodium.h>

#include "tests/integration/rawwire.h"

#define RECV_CHUNK (64 * 1024)
#define RECV_BYTES_MAX (32u * 1024 * 1024)

/* A receive is always pending (as in libparley): nng's WebSocket may not
 * report a peer's close to a receive posted after the close arrived. */
struct rw_conn {
	nng_stream_dialer *d;
	nng_stream *s;
	nng_aio *aio;  /* dial and send */
	nng_aio *raio; /* the pending receive */
	uint8_t chunk[RECV_CHUNK];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *buf; /* under mu: bytes received, not yet framed */
	size_t len, cap;
	bool closed;
	bool paused, posted; /* under mu: rw_pause; a receive is pending */
	pl_arena arena;      /* the last frame returned */
};

/* ---- protobuf writer ---- */

static void put(rw_pb *m, const void *p, size_t n)
{
	if (m->overflow || n > sizeof(m->b) - m->n) {
		m->overflow = true;
		return;
	}
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

static void put_varint(rw_pb *m, uint64_t v)
{
	uint8_t b[10];
	size_t n = 0;
	do {
		b[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v != 0)
			b[n] |= 0x80;
		n++;
	} while (v != 0);
	put(m, b, n);
}

void rw_pb_varint(rw_pb *m, uint32_t field, uint64_t v)
{
	put_varint(m, (uint64_t)field << 3);
	put_varint(m, v);
}

void rw_pb_bytes(rw_pb *m, uint32_t field, const void *p, size_t n)
{
	put_varint(m, (uint64_t)field << 3 | 2);
	put_varint(m, n);
	put(m, p, n);
}

void rw_pb_str(rw_pb *m, uint32_t field, const char *s)
{
	rw_pb_bytes(m, field, s, strlen(s));
}

void rw_pb_msg(rw_pb *m, uint32_t field, const rw_pb *sub)
{
	rw_pb_bytes(m, field, sub->b, sub->n);
}

void rw_frame(rw_pb *out, uint64_t id, uint32_t op_field, const rw_pb *body)
{
	memset(out, 0, sizeof(*out));
	rw_pb_varint(out, 1, id);
	rw_pb_msg(out, op_field, body);
}

/* ---- connection ---- */

static void recv_post(rw_conn *r)
{
	nng_iov iov = {.iov_buf = r->chunk, .iov_len = sizeof(r->chunk)};
	nng_aio_set_iov(r->raio, 1, &iov);
	nng_stream_recv(r->s, r->raio);
}

/* Appends what arrived (mu held); false when it does not fit. */
static bool buf_append(rw_conn *r, const uint8_t *p, size_t n)
{
	if (r->cap - r->len < n) {
		size_t cap = r->cap;
		while (cap - r->len < n)
			cap *= 2;
		uint8_t *nb =
		    cap <= RECV_BYTES_MAX ? realloc(r->buf, cap) : NULL;
		if (nb == NULL)
			return false;
		r->buf = nb;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, p, n);
	r->len += n;
	return true;
}

static void recv_cb(void *arg)
{
	rw_conn *r = arg;
	int rv = nng_aio_result(r->raio);
	pthread_mutex_lock(&r->mu);
	if (rv != 0 || !buf_append(r, r->chunk, nng_aio_count(r->raio)))
		r->closed = true;
	bool more = !r->closed && !r->paused;
	r->posted = more;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	if (more)
		recv_post(r);
}

void rw_pause(rw_conn *r, bool paused)
{
	pthread_mutex_lock(&r->mu);
	r->paused = paused;
	bool post = !paused && !r->posted && !r->closed;
	if (post)
		r->posted = true;
	pthread_mutex_unlock(&r->mu);
	if (post)
		recv_post(r);
}

rw_conn *rw_open(hx_cluster *c, bool ws)
{
	rw_conn *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	r->cap = RECV_CHUNK * 2;
	r->buf = malloc(r->cap);
	if (r->buf == NULL || nng_aio_alloc(&r->aio, NULL, NULL) != 0 ||
	    nng_aio_alloc(&r->raio, recv_cb, r) != 0 ||
	    nng_stream_dialer_alloc(&r->d, ws ? c->ws_url : c->tcp_url) != 0)
		goto fail;
	(void)nng_stream_dialer_set_size(
	    r->d, NNG_OPT_WS_RECVMAXFRAME, PL_FRAME_BYTES_CEIL * 2);
	nng_aio_set_timeout(r->aio, 5000);
	nng_stream_dialer_dial(r->d, r->aio);
	nng_aio_wait(r->aio);
	if (nng_aio_result(r->aio) != 0)
		goto fail;
	r->s = nng_aio_get_output(r->aio, 0);
	r->posted = true;
	recv_post(r);
	return r;
fail:
	rw_close(r);
	return NULL;
}

void rw_close(rw_conn *r)
{
	if (r == NULL)
		return;
	if (r->s != NULL)
		nng_stream_close(r->s);
	if (r->raio != NULL)
		nng_aio_stop(r->raio); /* no callback runs after this */
	if (r->s != NULL)
		nng_stream_free(r->s);
	nng_aio_free(r->raio);
	nng_aio_free(r->aio);
	if (r->d != NULL)
		nng_stream_dialer_free(r->d);
	free(r->buf);
	pl_arena_fini(&r->arena);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

bool rw_send(rw_conn *r, const rw_pb *frame)
{
	uint8_t hdr[RW_PB_BYTES_MAX + 4];
	if (frame->overflow)
		return false;
	pl_frame_put_header(hdr, (uint32_t)frame->n);
	memcpy(hdr + 4, frame->b, frame->n);
	size_t off = 0, n = frame->n + 4;
	while (off < n) {
		nng_iov iov = {.iov_buf = hdr + off, .iov_len = n - off};
		nng_aio_set_iov(r->aio, 1, &iov);
		nng_aio_set_timeout(r->aio, 5000);
		nng_stream_send(r->s, r->aio);
		nng_aio_wait(r->aio);
		if (nng_aio_result(r->aio) != 0)
			return false;
		off += nng_aio_count(r->aio);
	}
	return true;
}

/* Decodes the next whole frame into r's arena (the previous frame's
 * memory goes). mu held. */
static pl_status take_frame(rw_conn *r, Parley__ServerFrame **out)
{
	size_t n;
	pl_status st = pl_frame_peek(r->buf, r->len, RECV_BYTES_MAX, &n);
	if (st != PL_OK)
		return st;
	pl_arena_fini(&r->arena);
	if (pl_arena_init(&r->arena, NULL, PL_ARENA_BYTES_FOR(n)) != PL_OK)
		return PL_E_NOMEM;
	/* Decoded strings point into the arena, not into buf. */
	st = pl_server_frame_decode(
	    r->buf + 4, n, RECV_BYTES_MAX, &r->arena, out);
	memmove(r->buf, r->buf + 4 + n, r->len - 4 - n);
	r->len -= 4 + n;
	return st == PL_OK ? PL_OK : PL_E_PROTO;
}

pl_status rw_next(rw_conn *r, int timeout_ms, Parley__ServerFrame **out)
{
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&r->mu);
	pl_status st;
	for (;;) {
		st = take_frame(r, out);
		if (st != PL_E_AGAIN)
			break;
		if (r->closed) {
			st = PL_E_CLOSED;
			break;
		}
		if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) != 0) {
			st = take_frame(r, out);
			if (st == PL_E_AGAIN)
				st = r->closed ? PL_E_CLOSED : PL_E_TIMEOUT;
			break;
		}
	}
	pthread_mutex_unlock(&r->mu);
	return st;
}

Parley__ServerFrame *rw_reply(rw_conn *r, uint64_t id, int timeout_ms)
{
	int64_t end = pl_mono_us() + (int64_t)timeout_ms * 1000;
	for (;;) {
		int64_t left = (end - pl_mono_us()) / 1000;
		Parley__ServerFrame *f;
		if (left <= 0 || rw_next(r, (int)left, &f) != PL_OK)
			return NULL;
		if (f->id == id)
			return f;
	}
}

bool rw_hello(rw_conn *r, const char *token, Parley__ServerFrame **welcome)
{
	rw_pb h = {0}, f;
	rw_pb_str(&h, 1, token);
	rw_frame(&f, 1, 2, &h);
	if (!rw_send(r, &f))
		return false;
	Parley__ServerFrame *rep = rw_reply(r, 1, 5000);
	bool ok =
	    rep != NULL && rep->body_case == PARLEY__SERVER_FRAME__BODY_WELCOME;
	if (ok && welcome != NULL)
		*welcome = rep;
	return ok;
}

size_t rw_leftover(rw_conn *r)
{
	pthread_mutex_lock(&r->mu);
	size_t n = r->len;
	pthread_mutex_unlock(&r->mu);
	return n;
}

const char *rw_token_raw(hx_cluster *c, const char *tenant, const rw_pb *claims)
{
	static char out[PL_TOKEN_CHARS_MAX + 1];
	char path[256], t[PL_TENANT_CHARS_MAX + 1],
	    kid[PL_KEY_ID_CHARS_MAX + 1];
	uint8_t sk[64], pk[32], sig[crypto_sign_BYTES];
	snprintf(path, sizeof(path), "%s/%s.key", c->dir, tenant);
	if (pl_keyfile_load(path, t, sizeof(t), kid, sizeof(kid), sk, pk) !=
	    PL_OK)
		return "";
	crypto_sign_detached(sig, NULL, claims->b, claims->n, sk);
	const int v = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
	size_t bl = sodium_base64_ENCODED_LEN(claims->n, v);
	size_t sl = sodium_base64_ENCODED_LEN(sizeof(sig), v);
	if (bl + sl > sizeof(out))
		return "";
	sodium_bin2base64(out, bl, claims->b, claims->n, v);
	out[bl - 1] = '.';
	sodium_bin2base64(out + bl, sl, sig, sizeof(sig), v);
	return out;
}
