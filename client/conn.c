/*
 * conn.c - a libparley connection's life: options, connect and close, and
 * the state every part reads under c->mu (closed, the close status, the
 * last error). The struct and the list of the connection's files are in
 * conn.h, with its invariants.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "client/conn.h"

#define SEND_TIMEOUT_MS_DEFAULT 10000
/* A token is refreshed this long before it expires: enough for a token
 * service round trip and a retry or two. */
#define REFRESH_AHEAD_S_DEFAULT 30

void parley_error_set_locked(parley_conn *c, int code, const char *msg)
{
	c->err_code = code;
	snprintf(c->err_msg, sizeof(c->err_msg), "%s", msg ? msg : "");
}

pl_status parley_local_error(parley_conn *c, pl_status st, const char *what)
{
	pthread_mutex_lock(&c->mu);
	if (what == NULL)
		what = pl_strerror(st);
	parley_error_set_locked(c, pl_status_to_code(st), what);
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
void parley_conn_fail(parley_conn *c, pl_status st, const char *why)
{
	pthread_mutex_lock(&c->mu);
	if (!c->closed) {
		c->closed = true;
		if (c->close_status == PL_OK) {
			c->close_status = st;
			parley_error_set_locked(c, pl_status_to_code(st), why);
		}
	}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
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
	if (nng_aio_alloc(&c->recv_aio, parley_recv_cb, c) != 0 ||
	    nng_aio_alloc(&c->send_aio, NULL, NULL) != 0)
		return PL_E_NOMEM;
	return parley_recv_buf_init(c);
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
		st = parley_dial(c, url, timeout_ms, opts);
	if (st != PL_OK) {
		parley_close(c);
		return st;
	}
	parley_recv_start(c);
	*out = c;
	return PL_OK;
}

static void conn_drain_all(parley_conn *c)
{
	while (c->events.len > 0)
		parley_box_free(
		    (frame_box *)(uintptr_t)parley_ring_pop(&c->events));
	for (uint32_t i = 0; i < c->nslots; i++)
		parley_box_free(c->slots[i].reply);
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
