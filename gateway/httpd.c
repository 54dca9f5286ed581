/*
 * httpd.c - the gateway's HTTP port, served by the gateway itself over an
 * nng tcp:// or tls+tcp:// stream listener so that every connection has
 * deadlines and a per-address bound (nng's own HTTP server has neither):
 *
 *   - a request head must arrive within http_header_timeout_ms of the
 *     accept, or of its first byte on a kept-alive connection, and fit
 *     http_header_bytes_max (else 408, 431);
 *   - a kept-alive connection idle for http_keepalive_ms is closed;
 *   - one address holds at most http_connections_per_address connections
 *     on this port, WebSocket ones included (over it: 429), and the port
 *     at most connections_max in HTTP (over it: 503);
 *   - GET /ws with a valid RFC 6455 handshake becomes a client connection
 *     (conn.c, with ws.c framing); other requests go to http.c's routes.
 *
 * A connection does one thing at a time (read a head, or write a reply),
 * so it has one aio, whose timeout is the deadline. It is freed from its
 * own callback (nng_aio_reap). Connections are listed under h->mu so that
 * stop can close them and wait; h->mu also guards the per-address counts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/gw_internal.h"

#include <nng/supplemental/util/platform.h>

/* A reply not taken by the client within this long is dropped: a
 * client that does not read holds a connection no longer than this. */
#define HTTPD_WRITE_MS 10000
/* Per-address counts: hash buckets (a power of two). */
#define HTTPD_PEER_BUCKETS 1024

typedef struct peer_node {
	gw_peer key;
	uint32_t n;
	struct peer_node *next;
} peer_node;

typedef struct hconn hconn;

struct gw_httpd {
	gw *g;
	nng_stream_listener *lst;
	nng_aio *accept_aio;
	pthread_mutex_t mu;
	hconn *conns; /* under mu */
	uint32_t nconns;
	bool stopping;
	peer_node *peers[HTTPD_PEER_BUCKETS];
};

struct hconn {
	struct gw_httpd *h;
	nng_stream *s;
	nng_aio *aio;
	gw_peer peer; /* counted; len 0 when not (or handed on) */
	bool closed;  /* under h->mu: stop closed the stream */
	bool writing;
	bool close_after; /* the reply being written ends the connection */
	bool got_bytes;   /* some of the current request has arrived */
	bool answered;    /* a reply went out: the connection is kept alive */
	int64_t deadline_us;
	uint8_t *buf; /* request bytes, cap = http_header_bytes_max */
	size_t len, cap;
	/* The reply: head, then body (owned when body_owned). */
	char head[512];
	size_t head_len;
	uint8_t *body;
	size_t body_len;
	bool body_owned;
	size_t sent;
	hconn *prev, *next;
};

static void conn_cb(void *arg);

/* ---- per-address counts ---- */

static size_t peer_hash(const gw_peer *p)
{
	uint32_t x = 2166136261u; /* FNV-1a */
	for (uint8_t i = 0; i < p->len; i++)
		x = (x ^ p->addr[i]) * 16777619u;
	return x & (HTTPD_PEER_BUCKETS - 1);
}

static peer_node **peer_find(struct gw_httpd *h, const gw_peer *p)
{
	peer_node **pp = &h->peers[peer_hash(p)];
	while (*pp != NULL && ((*pp)->key.len != p->len ||
	                          memcmp((*pp)->key.addr, p->addr, p->len)))
		pp = &(*pp)->next;
	return pp;
}

/* Called with mu held. False when p is at the cap (or out of memory). */
static bool peer_get_locked(struct gw_httpd *h, const gw_peer *p)
{
	peer_node **pp = peer_find(h, p);
	if (*pp == NULL) {
		peer_node *n = calloc(1, sizeof(*n));
		if (n == NULL)
			return false;
		n->key = *p;
		*pp = n;
	}
	if ((*pp)->n >= h->g->conf->http_conns_per_addr)
		return false;
	(*pp)->n++;
	return true;
}

static void peer_put_locked(struct gw_httpd *h, const gw_peer *p)
{
	peer_node **pp = peer_find(h, p);
	peer_node *n = *pp;
	PL_ASSERT(n != NULL && n->n > 0);
	if (--n->n == 0) {
		*pp = n->next;
		free(n);
	}
}

void gw_httpd_peer_put(gw *g, const gw_peer *p)
{
	struct gw_httpd *h = g->httpd;
	if (h == NULL || p->len == 0)
		return;
	pthread_mutex_lock(&h->mu);
	peer_put_locked(h, p);
	pthread_mutex_unlock(&h->mu);
}

/* The peer's IP address (port left out), or len 0 when nng has none. */
static void peer_of(nng_stream *s, gw_peer *p)
{
	nng_sockaddr sa;
	memset(p, 0, sizeof(*p));
	if (nng_stream_get_addr(s, NNG_OPT_REMADDR, &sa) != 0)
		return;
	if (sa.s_family == NNG_AF_INET) {
		memcpy(p->addr, &sa.s_in.sa_addr, 4);
		p->len = 4;
	} else if (sa.s_family == NNG_AF_INET6) {
		memcpy(p->addr, sa.s_in6.sa_addr, 16);
		p->len = 16;
	}
}

/* ---- connection life ---- */

/* From the connection's own callback, with nothing in flight. */
static void hconn_free(hconn *c)
{
	struct gw_httpd *h = c->h;
	pthread_mutex_lock(&h->mu);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	h->nconns--;
	if (c->peer.len > 0)
		peer_put_locked(h, &c->peer);
	pthread_mutex_unlock(&h->mu);
	pl_metric_inc(h->g->m.http_conns, -1);
	if (c->s != NULL)
		nng_stream_free(c->s);
	nng_aio_reap(c->aio);
	if (c->body_owned)
		free(c->body);
	free(c->buf);
	free(c);
}

/* Posts the next read or write under mu (stop may have closed the
 * stream, and nng does not fail an operation posted on a closed one).
 * False when the connection was closed: the caller frees it. */
static bool post(hconn *c, bool write, nng_duration ms)
{
	struct gw_httpd *h = c->h;
	pthread_mutex_lock(&h->mu);
	bool closed = c->closed;
	if (!closed) {
		c->writing = write;
		nng_aio_set_timeout(c->aio, ms < 1 ? 1 : ms);
		if (write)
			nng_stream_send(c->s, c->aio);
		else
			nng_stream_recv(c->s, c->aio);
	}
	pthread_mutex_unlock(&h->mu);
	return !closed;
}

static void write_more(hconn *c)
{
	nng_iov iov[2];
	unsigned n = 0;
	if (c->sent < c->head_len)
		iov[n++] = (nng_iov){.iov_buf = c->head + c->sent,
		    .iov_len = c->head_len - c->sent};
	size_t boff = c->sent > c->head_len ? c->sent - c->head_len : 0;
	if (boff < c->body_len)
		iov[n++] = (nng_iov){.iov_buf = c->body + boff,
		    .iov_len = c->body_len - boff};
	nng_aio_set_iov(c->aio, n, iov);
	if (!post(c, true, HTTPD_WRITE_MS))
		hconn_free(c);
}

static void read_more(hconn *c)
{
	int64_t left_ms = (c->deadline_us - pl_mono_us()) / 1000;
	nng_iov iov = {.iov_buf = c->buf + c->len, .iov_len = c->cap - c->len};
	nng_aio_set_iov(c->aio, 1, &iov);
	if (!post(c, false, (nng_duration)left_ms))
		hconn_free(c);
}

/* Starts writing a reply made of head text and an optional body. */
static void reply_start(hconn *c, const gw_http_res *res, bool head_only)
{
	c->close_after = c->close_after || res->status >= 400;
	int n = snprintf(c->head, sizeof(c->head),
	    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	    "%sConnection: %s\r\n\r\n",
	    res->status, gw_http_reason(res->status),
	    res->ctype != NULL ? res->ctype : "text/plain", res->len,
	    res->extra != NULL ? res->extra : "",
	    c->close_after ? "close" : "keep-alive");
	PL_ASSERT(n > 0 && (size_t)n < sizeof(c->head));
	c->head_len = (size_t)n;
	c->body = res->body;
	c->body_len = head_only ? 0 : res->len;
	c->body_owned = res->owned;
	c->sent = 0;
	if (res->status >= 400)
		PL_DEBUG(GW_MOD, "event=http_refused status=%d", res->status);
	write_more(c);
}

/* A refusal with a short text body; the connection closes after it. */
static void refuse(hconn *c, int status, const char *text, const char *extra)
{
	gw_http_res res = {.status = status,
	    .ctype = "text/plain",
	    .body = (uint8_t *)text,
	    .len = strlen(text),
	    .extra = extra};
	c->close_after = true;
	reply_start(c, &res, false);
}

/* ---- requests ---- */

/* GET /ws: the RFC 6455 handshake. On success the stream moves to a
 * client connection and c is freed. */
static void ws_upgrade(hconn *c, const gw_http_req *req)
{
	if (!req->upgrade_ws || !req->conn_upgrade) {
		refuse(c, 400, "websocket upgrade expected on /ws\n", NULL);
		return;
	}
	if (req->ws_version != 13) {
		refuse(c, 426, "Sec-WebSocket-Version 13 expected\n",
		    "Sec-WebSocket-Version: 13\r\n");
		return;
	}
	if (req->ws_key[0] == '\0') {
		refuse(c, 400, "Sec-WebSocket-Key missing or malformed\n",
		    NULL);
		return;
	}
	char accept[GW_WS_ACCEPT_CHARS + 1];
	gw_ws_accept(req->ws_key, accept);
	int n = snprintf(c->head, sizeof(c->head),
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
	    accept);
	/* Under mu: stop must not close the stream once it is handed on. */
	pthread_mutex_lock(&c->h->mu);
	nng_stream *s = c->closed ? NULL : c->s;
	if (s != NULL)
		c->s = NULL;
	pthread_mutex_unlock(&c->h->mu);
	if (s == NULL) {
		hconn_free(c);
		return;
	}
	gw_peer peer = c->peer;
	c->peer.len = 0;
	gw_conn_accept_ws(c->h->g, s, &peer, (const uint8_t *)c->head,
	    (size_t)n, c->buf + req->head_bytes, c->len - req->head_bytes);
	hconn_free(c);
}

/* A whole request head is in buf: answer it. */
static void request(hconn *c, const gw_http_req *req)
{
	if (strcmp(req->path, "/ws") == 0 && req->method == GW_HTTP_GET &&
	    !req->has_body) {
		ws_upgrade(c, req);
		return;
	}
	if (req->method == GW_HTTP_OTHER) {
		refuse(c, 405, "only GET and HEAD are served\n",
		    "Allow: GET, HEAD\r\n");
		return;
	}
	if (req->has_body) {
		refuse(c, 413, "request bodies are not accepted\n", NULL);
		return;
	}
	/* The request is taken off buf; pipelined bytes stay. */
	memmove(c->buf, c->buf + req->head_bytes, c->len - req->head_bytes);
	c->len -= req->head_bytes;
	c->close_after = !req->keep_alive;
	gw_http_res res;
	gw_http_route(c->h->g, req, &res);
	reply_start(c, &res, req->method == GW_HTTP_HEAD);
}

/* Parses what has arrived: answers a whole head or a bad one, else
 * reads on. */
static void parse(hconn *c)
{
	gw_http_req req;
	int st = gw_http_parse(
	    c->buf, c->len, c->h->g->conf->http_header_bytes_max, &req);
	if (st == 0) {
		request(c, &req);
	} else if (st > 0) {
		pl_metric_inc(c->h->g->m.http_bad, 1);
		refuse(c, st,
		    st == 431   ? "request head too large\n"
		    : st == 414 ? "request target too long\n"
		                : "malformed request\n",
		    NULL);
	} else {
		read_more(c);
	}
}

/* The reply is out: close, or wait for the next request. */
static void reply_done(hconn *c)
{
	if (c->body_owned)
		free(c->body);
	c->body = NULL;
	c->body_owned = false;
	if (c->close_after) {
		hconn_free(c);
		return;
	}
	c->answered = true;
	c->got_bytes = c->len > 0;
	int64_t now = pl_mono_us();
	const gw_config *conf = c->h->g->conf;
	c->deadline_us = now + (int64_t)(c->got_bytes
	                                     ? conf->http_header_timeout_ms
	                                     : conf->http_keepalive_ms) *
	                           1000;
	if (c->got_bytes)
		parse(c);
	else
		read_more(c);
}

/* A read or write ran out of time. */
static void timed_out(hconn *c)
{
	gw *g = c->h->g;
	if (c->writing) {
		hconn_free(c);
		return;
	}
	if (c->got_bytes) {
		pl_metric_inc(g->m.http_timeouts[0], 1);
		refuse(c, 408, "request head not received in time\n", NULL);
		return;
	}
	/* Nothing of a request came: close without a word (a browser's
	 * spare connection must not read a 408 as an answer). */
	pl_metric_inc(g->m.http_timeouts[c->answered ? 1 : 0], 1);
	hconn_free(c);
}

static void conn_cb(void *arg)
{
	hconn *c = arg;
	int rv = nng_aio_result(c->aio);
	if (rv == NNG_ETIMEDOUT) {
		timed_out(c);
		return;
	}
	if (rv != 0) {
		hconn_free(c);
		return;
	}
	size_t n = nng_aio_count(c->aio);
	if (c->writing) {
		c->sent += n;
		if (c->sent < c->head_len + c->body_len)
			write_more(c);
		else
			reply_done(c);
		return;
	}
	if (!c->got_bytes && n > 0) {
		/* On a kept-alive connection the head's deadline starts at
		 * its first byte; the first head's ran from the accept. */
		c->got_bytes = true;
		if (c->answered)
			c->deadline_us = pl_mono_us() +
			    (int64_t)c->h->g->conf->http_header_timeout_ms * 1000;
	}
	c->len += n;
	parse(c);
}

/* ---- accept ---- */

/* A new connection, or a refusal when the port or its address is full
 * (the refusal is written, then the connection closes). */
static void conn_start(struct gw_httpd *h, nng_stream *s)
{
	gw *g = h->g;
	hconn *c = calloc(1, sizeof(*c));
	size_t cap = g->conf->http_header_bytes_max;
	if (c == NULL || (c->buf = malloc(cap)) == NULL ||
	    nng_aio_alloc(&c->aio, conn_cb, c) != 0) {
		PL_WARN(GW_MOD, "event=http_accept_refused reason=nomem");
		if (c != NULL)
			free(c->buf);
		free(c);
		nng_stream_free(s);
		return;
	}
	c->h = h;
	c->s = s;
	c->cap = cap;
	c->deadline_us =
	    pl_mono_us() + (int64_t)g->conf->http_header_timeout_ms * 1000;
	gw_peer peer;
	peer_of(s, &peer);
	int refused = 0;
	pthread_mutex_lock(&h->mu);
	if (h->stopping) {
		refused = 503;
	} else if (h->nconns >= g->conf->connections_max) {
		refused = 503;
	} else if (peer.len > 0 && !peer_get_locked(h, &peer)) {
		refused = 429;
	} else {
		c->peer = peer;
	}
	c->next = h->conns;
	if (h->conns != NULL)
		h->conns->prev = c;
	h->conns = c;
	h->nconns++;
	pthread_mutex_unlock(&h->mu);
	pl_metric_inc(g->m.http_conns, 1);
	if (refused == 429) {
		pl_metric_inc(g->m.http_refused[0], 1);
		refuse(c, 429, "too many connections from this address\n",
		    "Retry-After: 1\r\n");
	} else if (refused != 0) {
		pl_metric_inc(g->m.http_refused[1], 1);
		refuse(c, 503, "too many connections\n", "Retry-After: 1\r\n");
	} else {
		read_more(c);
	}
}

static void accept_cb(void *arg)
{
	struct gw_httpd *h = arg;
	int rv = nng_aio_result(h->accept_aio);
	if (rv == 0)
		conn_start(h, nng_aio_get_output(h->accept_aio, 0));
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED ||
	    atomic_load(&h->g->stopping))
		return;
	if (rv != 0) {
		PL_WARN(GW_MOD, "event=accept_failed err=\"%s\"",
		    nng_strerror(rv));
		nng_msleep(10); /* out of descriptors: do not spin */
	}
	nng_stream_listener_accept(h->lst, h->accept_aio);
}

static pl_status listen_fail(const char *url, int rv)
{
	PL_ERROR(GW_MOD, "event=listen_failed url=%s err=\"%s\"", url,
	    nng_strerror(rv));
	return PL_E_IO;
}

pl_status gw_httpd_start(gw *g)
{
	struct gw_httpd *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return PL_E_NOMEM;
	h->g = g;
	pthread_mutex_init(&h->mu, NULL);
	g->httpd = h;
	bool tls = g->conf->tls_cert_key[0] != '\0';
	char url[GW_URL_CHARS_MAX + 16];
	snprintf(url, sizeof(url), "%s://%s", tls ? "tls+tcp" : "tcp",
	    g->conf->http);
	int rv;
	if ((rv = nng_stream_listener_alloc(&h->lst, url)) != 0)
		return listen_fail(url, rv);
	if (tls && (rv = nng_stream_listener_set_string(h->lst,
	                NNG_OPT_TLS_CERT_KEY_FILE, g->conf->tls_cert_key)) != 0)
		return listen_fail(url, rv);
	/* Small frames must not wait for Nagle (TLS writes a record header
	 * and body separately: ~40 ms stalls without this). */
	(void)nng_stream_listener_set_bool(h->lst, NNG_OPT_TCP_NODELAY, true);
	if ((rv = nng_stream_listener_listen(h->lst)) != 0)
		return listen_fail(url, rv);
	if (nng_aio_alloc(&h->accept_aio, accept_cb, h) != 0)
		return PL_E_NOMEM;
	nng_stream_listener_accept(h->lst, h->accept_aio);
	return PL_OK;
}

void gw_httpd_stop(gw *g)
{
	struct gw_httpd *h = g->httpd;
	if (h == NULL)
		return;
	if (h->lst != NULL)
		nng_stream_listener_close(h->lst);
	if (h->accept_aio != NULL)
		nng_aio_free(h->accept_aio); /* waits for accept_cb */
	h->accept_aio = NULL;
	pthread_mutex_lock(&h->mu);
	h->stopping = true;
	for (hconn *c = h->conns; c != NULL; c = c->next) {
		c->closed = true;
		if (c->s != NULL)
			nng_stream_close(c->s);
	}
	pthread_mutex_unlock(&h->mu);
	/* Each closed connection's callback frees it. */
	for (int i = 0;; i++) {
		pthread_mutex_lock(&h->mu);
		uint32_t n = h->nconns;
		pthread_mutex_unlock(&h->mu);
		if (n == 0)
			break;
		if (i == GW_STOP_WAIT_MS)
			PL_WARN(GW_MOD, "event=stop_waiting http_conns=%u", n);
		usleep(1000);
	}
	if (h->lst != NULL)
		nng_stream_listener_free(h->lst);
	h->lst = NULL;
}

void gw_httpd_free(gw *g)
{
	struct gw_httpd *h = g->httpd;
	if (h == NULL)
		return;
	for (size_t i = 0; i < HTTPD_PEER_BUCKETS; i++) {
		while (h->peers[i] != NULL) {
			peer_node *n = h->peers[i];
			h->peers[i] = n->next;
			free(n);
		}
	}
	pthread_mutex_destroy(&h->mu);
	free(h);
	g->httpd = NULL;
}
