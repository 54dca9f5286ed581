/*
 * recv.c - a libparley connection's receive path: the nng aio callback
 * reads into one buffer, cuts it into frames, decodes each into a box and
 * routes it (a reply to its request's slot, an event to the bounded event
 * queue). One callback runs at a time, so the buffer needs no lock.
 */
#include <stdlib.h>
#include <string.h>

#include "client/conn.h"

/* Idle connections stay small (the idle bench opens tens of thousands):
 * buffers start at these sizes and grow to the frame at hand. */
#define RECV_BUF_BYTES_MIN 4096
#define RECV_BUF_BYTES_KEEP (256u * 1024) /* shrink back above this */
#define ARENA_RETRIES 3 /* arena sizes x1, x4, x16 the estimate */

/* Routes one decoded frame (taken). Replies to unknown ids (a request
 * that timed out) are dropped, as are events beyond the queue bound. */
static void dispatch(parley_conn *c, frame_box *b)
{
	Parley__ServerFrame *f = &b->frame;
	pthread_mutex_lock(&c->mu);
	if (f->id != 0) {
		slot *s = parley_slot_find(c, f->id);
		if (s == NULL || s->state != SLOT_WAIT) {
			parley_box_free(b);
		} else {
			s->reply = b;
			s->state = SLOT_DONE;
			if (s->async && !parley_ring_push(&c->done, s->id))
				PL_ASSERT(!"done ring holds every async slot");
		}
	} else {
		if (f->body_case == PARLEY__SERVER_FRAME__BODY_GOODBYE) {
			int code = (int)f->goodbye->code;
			c->close_status =
			    code ? pl_code_to_status(code) : PL_E_CLOSED;
			parley_error_set_locked(c, code, f->goodbye->reason);
		}
		if (!parley_ring_push(&c->events, (uint64_t)(uintptr_t)b)) {
			parley_box_free(b);
			c->dropped++;
			c->overflow_pending = true;
		}
	}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
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
		st = parley_box_decode(c, p, n, cap, &b);
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

void parley_recv_start(parley_conn *c)
{
	nng_iov iov = {
	    .iov_buf = c->rbuf + c->rlen, .iov_len = c->rcap - c->rlen};
	nng_aio_set_iov(c->recv_aio, 1, &iov);
	nng_stream_recv(c->stream, c->recv_aio);
}

void parley_recv_cb(void *arg)
{
	parley_conn *c = arg;
	int rv = nng_aio_result(c->recv_aio);
	if (rv != 0) {
		parley_conn_fail(c, PL_E_CLOSED, nng_strerror(rv));
		return;
	}
	c->rlen += nng_aio_count(c->recv_aio);
	pl_status st = recv_drain(c);
	if (st != PL_OK) {
		parley_conn_fail(c, st == PL_E_NOMEM ? st : PL_E_PROTO,
		    "undecodable frame from server");
		nng_stream_close(c->stream);
		return;
	}
	parley_recv_start(c);
}

pl_status parley_recv_buf_init(parley_conn *c)
{
	return rbuf_reserve(c, RECV_BUF_BYTES_MIN);
}
