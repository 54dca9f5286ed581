/*
 * listen.c - the client listeners: raw TCP (tcp:// or tls+tcp://) through
 * nng's stream API, and the HTTP port, whose WebSocket connections
 * (/ws), /healthz, /metrics and static pages httpd.c serves.
 */
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "gateway/conn.h"
#include "gateway/httpd_port.h"
#include "gateway/listen.h"

static void accept_cb(void *arg)
{
	gw *g = arg;
	nng_aio *aio = g->tcp_accept;
	int rv = nng_aio_result(aio);
	if (rv == 0)
		gw_conn_accept(g, nng_aio_get_output(aio, 0), GW_TCP);
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED ||
	    atomic_load(&g->stopping))
		return;
	if (rv != 0) {
		PL_WARN(
		    GW_MOD, "event=accept_failed err=\"%s\"", nng_strerror(rv));
		/* Out of descriptors and the like: do not spin on it. */
		nng_msleep(10);
	}
	nng_stream_listener_accept(g->tcp_lst, aio);
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
	if ((rv = nng_stream_listener_alloc(&g->tcp_lst, url)) != 0)
		return listen_fail(url, rv);
	if (strncmp(url, "tls+tcp://", 10) == 0 &&
	    (rv = tls_setup(g, g->tcp_lst)) != 0)
		return listen_fail(url, rv);
	(void)nng_stream_listener_set_bool(
	    g->tcp_lst, NNG_OPT_TCP_NODELAY, true);
	if ((rv = nng_stream_listener_listen(g->tcp_lst)) != 0)
		return listen_fail(url, rv);
	return PL_OK;
}

pl_status gw_listen_start(gw *g)
{
	pl_status st;
	if (g->conf->tcp[0] != '\0') {
		if ((st = tcp_start(g)) != PL_OK)
			return st;
		if (nng_aio_alloc(&g->tcp_accept, accept_cb, g) != 0)
			return PL_E_NOMEM;
		nng_stream_listener_accept(g->tcp_lst, g->tcp_accept);
	}
	if (g->conf->http[0] != '\0' && (st = gw_httpd_start(g)) != PL_OK)
		return st;
	return PL_OK;
}

void gw_listen_stop(gw *g)
{
	if (g->tcp_lst != NULL)
		nng_stream_listener_close(g->tcp_lst);
	if (g->tcp_accept != NULL)
		nng_aio_free(g->tcp_accept); /* waits for accept_cb */
	g->tcp_accept = NULL;
	gw_httpd_stop(g);
	if (g->tcp_lst != NULL)
		nng_stream_listener_free(g->tcp_lst);
	g->tcp_lst = NULL;
}
