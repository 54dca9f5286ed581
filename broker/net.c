/*
 * net.c - the broker's nng front: a rep0 socket that gateways dial, served
 * by a fixed set of contexts (so the batches in flight are bounded), and an
 * HTTP server for /healthz and /metrics (net.h). Callbacks here never
 * touch group state: they hand messages to the receive callback given at
 * start and send what comes back.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/http/http.h>

#include "broker/net.h"
#include "proto/codec.h"
#include "proto/nng_close.h"

/* A GwBatch is far below this; larger messages are refused by nng. */
#define RECV_BYTES_MAX PL_FRAME_BYTES_CEIL

typedef struct net_ctx {
	nng_ctx ctx;
	nng_aio *aio;
	brk_net *net;
	bool sending;
} net_ctx;

struct brk_net {
	nng_socket sock;
	nng_listener listener;
	bool listening;
	/* Contexts, opened as needed (grow); never closed before stop. */
	pthread_mutex_t grow_mu;
	net_ctx **ctxs; /* BRK_NET_CONTEXTS_MAX */
	_Atomic int nctx;
	_Atomic int idle; /* contexts waiting for a request */
	_Atomic bool stopping;
	brk_net_receive_fn receive;
	void *receive_ctx;
	pl_metrics *metrics;
	nng_http_server *http;
	bool http_on;
};

static void ctx_cb(void *arg);

/* Opens one more context and starts its receive; false at the max or
 * on an nng error. */
static bool ctx_add(brk_net *n)
{
	int i = atomic_load(&n->nctx);
	if (i == BRK_NET_CONTEXTS_MAX || atomic_load(&n->stopping))
		return false;
	net_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return false;
	c->net = n;
	if (nng_ctx_open(&c->ctx, n->sock) != 0) {
		free(c);
		return false;
	}
	if (nng_aio_alloc(&c->aio, ctx_cb, c) != 0) {
		nng_ctx_close(c->ctx);
		free(c);
		return false;
	}
	n->ctxs[i] = c;
	atomic_store(&n->nctx, i + 1);
	atomic_fetch_add(&n->idle, 1);
	nng_ctx_recv(c->ctx, c->aio);
	return true;
}

/* A request arrived: keep BRK_NET_CONTEXTS_SPARE waiting for more. */
static void ctx_grow(brk_net *n)
{
	if (atomic_load(&n->idle) >= BRK_NET_CONTEXTS_SPARE)
		return;
	pthread_mutex_lock(&n->grow_mu);
	while (atomic_load(&n->idle) < BRK_NET_CONTEXTS_SPARE && ctx_add(n))
		;
	pthread_mutex_unlock(&n->grow_mu);
}

static void ctx_recv(net_ctx *c)
{
	atomic_fetch_add(&c->net->idle, 1);
	nng_ctx_recv(c->ctx, c->aio);
}

static void ctx_cb(void *arg)
{
	net_ctx *c = arg;
	int rv = nng_aio_result(c->aio);
	if (c->sending) {
		c->sending = false;
		if (rv != 0)
			nng_msg_free(nng_aio_get_msg(c->aio));
		if (rv == NNG_ECLOSED)
			return;
		ctx_recv(c);
		return;
	}
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
		return;
	atomic_fetch_sub(&c->net->idle, 1);
	if (rv != 0) {
		ctx_recv(c);
		return;
	}
	ctx_grow(c->net);
	nng_msg *m = nng_aio_get_msg(c->aio);
	if (c->net->receive(c->net->receive_ctx, c, m) != PL_OK) {
		/* No work item free (a group at its bound) or a batch that
		 * names no group: the gateway's batch times out and it
		 * retries. */
		nng_msg_free(m);
		ctx_recv(c);
	}
}

void brk_net_reply(brk_net *n, void *ctx, nng_msg *reply)
{
	net_ctx *c = ctx;
	(void)n;
	c->sending = true;
	nng_aio_set_msg(c->aio, reply);
	nng_ctx_send(c->ctx, c->aio);
}

static void http_reply(nng_aio *aio, uint16_t status, const char *type,
    const char *body, size_t len)
{
	nng_http_res *res;
	if (nng_http_res_alloc(&res) != 0) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	nng_http_res_set_status(res, status);
	nng_http_res_set_header(res, "Content-Type", type);
	nng_http_res_copy_data(res, body, len);
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static void http_metrics(nng_aio *aio)
{
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	brk_net *n = nng_http_handler_get_data(h);
	size_t len;
	char *text = pl_metrics_render(n->metrics, &len);
	if (text == NULL) {
		http_reply(aio, 500, "text/plain", "out of memory\n", 14);
		return;
	}
	http_reply(aio, 200, "text/plain; version=0.0.4", text, len);
	free(text);
}

static void http_health(nng_aio *aio)
{
	http_reply(aio, 200, "text/plain", "ok\n", 3);
}

static pl_status http_start(brk_net *n, const char *hostport)
{
	char url[200];
	nng_url *u;
	nng_http_handler *h;
	snprintf(url, sizeof(url), "http://%s", hostport);
	if (nng_url_parse(&u, url) != 0)
		return PL_E_CONFIG;
	int rv = nng_http_server_hold(&n->http, u);
	nng_url_free(u);
	if (rv != 0)
		return PL_E_CONFIG;
	struct {
		const char *path;
		void (*cb)(nng_aio *);
	} routes[] = {{"/metrics", http_metrics}, {"/healthz", http_health}};
	for (size_t i = 0; i < PL_ARRAY_LEN(routes) && rv == 0; i++) {
		rv = nng_http_handler_alloc(&h, routes[i].path, routes[i].cb);
		if (rv == 0)
			rv = nng_http_handler_set_data(h, n, NULL);
		if (rv == 0)
			rv = nng_http_server_add_handler(n->http, h);
	}
	if (rv == 0)
		rv = nng_http_server_start(n->http);
	if (rv != 0) {
		PL_ERROR("net", "event=http_failed addr=%s err=\"%s\"",
		    hostport, nng_strerror(rv));
		return PL_E_CONFIG;
	}
	n->http_on = true;
	return PL_OK;
}

static pl_status rep_start(brk_net *n, const char *addr)
{
	int rv = nng_rep0_open(&n->sock);
	if (rv == 0)
		rv = nng_socket_set_size(
		    n->sock, NNG_OPT_RECVMAXSZ, RECV_BYTES_MAX);
	if (rv == 0)
		rv = nng_listen(n->sock, addr, &n->listener, 0);
	n->listening = rv == 0;
	if (rv != 0) {
		PL_ERROR("net", "event=listen_failed addr=%s err=\"%s\"", addr,
		    nng_strerror(rv));
		return PL_E_CONFIG;
	}
	pthread_mutex_lock(&n->grow_mu);
	for (int i = 0; i < BRK_NET_CONTEXTS; i++)
		if (!ctx_add(n))
			rv = NNG_ENOMEM;
	pthread_mutex_unlock(&n->grow_mu);
	return rv == 0 ? PL_OK : PL_E_NOMEM;
}

pl_status brk_net_start(const brk_config *cfg, brk_net_receive_fn receive,
    void *ctx, pl_metrics *metrics, brk_net **out)
{
	brk_net *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return PL_E_NOMEM;
	n->ctxs = calloc(BRK_NET_CONTEXTS_MAX, sizeof(*n->ctxs));
	if (n->ctxs == NULL) {
		free(n);
		return PL_E_NOMEM;
	}
	pthread_mutex_init(&n->grow_mu, NULL);
	n->receive = receive;
	n->receive_ctx = ctx;
	n->metrics = metrics;
	pl_status st = rep_start(n, cfg->listen);
	if (st == PL_OK && cfg->http[0] != '\0')
		st = http_start(n, cfg->http);
	if (st != PL_OK) {
		brk_net_stop(n);
		return st;
	}
	PL_INFO(
	    "net", "event=listening addr=%s http=%s", cfg->listen, cfg->http);
	*out = n;
	return PL_OK;
}

void brk_net_stop(brk_net *n)
{
	if (n == NULL)
		return;
	if (n->http != NULL) {
		if (n->http_on)
			nng_http_server_stop(n->http);
		nng_http_server_release(n->http);
	}
	/* Contexts first (no callback runs after this), then the listener
	 * (no pipe is accepted while the socket closes), then the socket:
	 * the order peer.c documents. */
	pthread_mutex_lock(&n->grow_mu);
	atomic_store(&n->stopping, true); /* no context is added now */
	pthread_mutex_unlock(&n->grow_mu);
	int nctx = atomic_load(&n->nctx);
	for (int i = 0; i < nctx; i++)
		nng_aio_stop(n->ctxs[i]->aio);
	if (n->listening)
		nng_listener_close(n->listener);
	(void)pl_nng_close_bounded(&n->sock, 1, "net", PL_NNG_CLOSE_MS);
	for (int i = 0; i < nctx; i++) {
		nng_aio_free(n->ctxs[i]->aio);
		free(n->ctxs[i]);
	}
	pthread_mutex_destroy(&n->grow_mu);
	free(n->ctxs);
	free(n);
}
