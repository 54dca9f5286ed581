/*
 * send.c - a libparley connection's send path: encodes a frame into one
 * buffer and writes it whole under c->send_mu, so frames from several
 * threads never interleave; a partial write closes the connection.
 */
#include <stdlib.h>

#include "client/conn.h"

/* Idle connections stay small: the buffer starts at this size and grows
 * to the frame at hand. */
#define SEND_BUF_BYTES_MIN 1024

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
			parley_conn_fail(c,
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
pl_status parley_send_frame(parley_conn *c, const Parley__ClientFrame *req)
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
