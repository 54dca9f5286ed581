/*
 * listen.c - the client listeners: raw TCP and WebSocket, both through
 * nng's stream API. The WebSocket listener at ws://host:port/ws owns an
 * HTTP server on that port; http.c adds /healthz, /metrics and the static
 * pages to the same server, so one port serves all of them.
 */
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "gateway/gw_internal.h"

/* A WebSocket message may carry several frames; nng buffers a whole
 * message before handing out its bytes, so bound it. */
#define WS_MSG_FRAMES_MAX 4

static void accept_done(gw *g, int t)
{
	nng_aio *aio = g->accept_aio[t];
	int rv = nng_aio_result(aio);
	if (rv == 0)
		gw_conn_accept(g, nng_aio_get_output(aio, 0), t);
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED ||
	    atomic_load(&g->stopping))
		return;
	if (rv != 0) {
		PL_WARN(
		    GW_MOD, "event=accept_failed err=\"%s\"", nng_strerror(rv));
		/* Out of descriptors and the like: do not spin on it. */
		nng_msleep(10);
	}
	nng_stream_listener_accept(g->lst[t], aio);
}

static void accept_tcp_cb(void *arg)
{
	accept_done(arg, GW_TCP);
}

static void accept_ws_cb(void *arg)
{
	accept_done(arg, GW_WS);
}

static pl_status listen_fail(const char *url, int rv)
{
	PL_ERROR(GW_MOD, "event=listen_failed url=%s err=\"%s\"", url,
	    nng_strerror(rv));
	return PL_E_IO;
}

/* A TLS listener gets the certificate and key before it listens. */
static int tls_setup(gw *g, nng_stream_listener *l)
{
	if (g->conf->tls_cert_key[0] == '\0')
		return NNG_EINVAL; /* a TLS URL without a certificate */
	return nng_stream_listener_set_string(
	    l, NNG_OPT_TLS_CERT_KEY_FILE, g->conf->tls_cert_key);
}

static pl_status tcp_start(gw *g)
{
	const char *url = g->conf->tcp;
	int rv;
	if ((rv = nng_stream_listener_alloc(&g->lst[GW_TCP], url)) != 0)
		return listen_fail(url, rv);
	if (strncmp(url, "tls+tcp://", 10) == 0 &&
	    (rv = tls_setup(g, g->lst[GW_TCP])) != 0)
		return listen_fail(url, rv);
	(void)nng_stream_listener_set_bool(
	    g->lst[GW_TCP], NNG_OPT_TCP_NODELAY, true);
	if ((rv = nng_stream_listener_listen(g->lst[GW_TCP])) != 0)
		return listen_fail(url, rv);
	return PL_OK;
}

static pl_status ws_start(gw *g)
{
	char url[GW_URL_CHARS_MAX + 16];
	nng_stream_listener *l;
	int rv;
	size_t msg_max = (size_t)WS_MSG_FRAMES_MAX *
	                 (g->conf->frame_bytes_max + PL_FRAME_HEADER_BYTES);
	bool tls = g->conf->tls_cert_key[0] != '\0';
	snprintf(
	    url, sizeof(url), "%s://%s/ws", tls ? "wss" : "ws", g->conf->http);
	if ((rv = nng_stream_listener_alloc(&g->lst[GW_WS], url)) != 0)
		return listen_fail(url, rv);
	l = g->lst[GW_WS];
	if (tls && (rv = tls_setup(g, l)) != 0)
		return listen_fail(url, rv);
	/* Small frames must not wait for Nagle (TLS writes a record header
	 * and body separately: ~40 ms stalls without this). */
	(void)nng_stream_listener_set_bool(l, NNG_OPT_TCP_NODELAY, true);
	if ((rv = nng_stream_listener_set_size(
	         l, NNG_OPT_RECVMAXSZ, msg_max)) != 0 ||
	    (rv = nng_stream_listener_set_size(
	         l, NNG_OPT_WS_RECVMAXFRAME, msg_max)) != 0)
		PL_WARN(GW_MOD, "event=ws_option_failed err=\"%s\"",
		    nng_strerror(rv));
	/* The HTTP handlers go on the server this listener created, before
	 * it starts serving. */
	if (gw_http_start(g) != PL_OK)
		return PL_E_IO;
	if ((rv = nng_stream_listener_listen(l)) != 0)
		return listen_fail(url, rv);
	return PL_OK;
}

pl_status gw_listen_start(gw *g)
{
	static void (*const cbs[GW_TRANSPORTS])(void *) = {
	    accept_tcp_cb, accept_ws_cb};
	pl_status st;
	if (g->conf->tcp[0] != '\0' && (st = tcp_start(g)) != PL_OK)
		return st;
	if (g->conf->http[0] != '\0' && (st = ws_start(g)) != PL_OK)
		return st;
	for (int t = 0; t < GW_TRANSPORTS; t++) {
		if (g->lst[t] == NULL)
			continue;
		if (nng_aio_alloc(&g->accept_aio[t], cbs[t], g) != 0)
			return PL_E_NOMEM;
		nng_stream_listener_accept(g->lst[t], g->accept_aio[t]);
	}
	return PL_OK;
}

void gw_listen_stop(gw *g)
{
	for (int t = 0; t < GW_TRANSPORTS; t++) {
		if (g->lst[t] != NULL)
			nng_stream_listener_close(g->lst[t]);
		if (g->accept_aio[t] != NULL)
			nng_aio_free(g->accept_aio[t]);
		g->accept_aio[t] = NULL;
	}
	gw_http_stop(g);
	for (int t = 0; t < GW_TRANSPORTS; t++) {
		if (g->lst[t] != NULL)
			nng_stream_listener_free(g->lst[t]);
		g->lst[t] = NULL;
	}
}
