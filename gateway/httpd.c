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
 * A connection reads a head, then writes its reply, then reads again.
 * Read deadlines are enforced by the gateway's sweeper (gw_httpd_sweep),
 * not by aio timeouts: a cancelled receive ends an nng TLS stream at
 * once, and a late head still deserves its 408. A connection is freed by
 * the callback that finds it closed with nothing in flight (nng_aio_reap
 * frees its aios after that callback). Connections are listed under h->mu
 * so that the sweeper and stop can reach them; lock order h->mu -> c->mu
 * -> h->peers_mu (the per-address counts).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/conn.h"
#include "gateway/http.h"
#include "gateway/httpd_port.h"

#include <nng/supplemental/util/platform.h>

/* A reply not taken by the client within this long is dropped: a
 * client that does not read holds a connection no longer than this. */
#define HTTPD_WRITE_MS 10000
/* After a reply that ends the connection the gateway reads on (and
 * drops what comes) this long, or until the client closes, before it
 * closes: closing with unread request bytes would reset the connection
 * and could destroy the reply before the client reads it (RFC 9112
 * 9.6). */
#define HTTPD_LINGER_MS 1000
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
	/* A leaf lock: taken under h->mu or c->mu, nothing under it. */
	pthread_mutex_t peers_mu;
	peer_node *peers[HTTPD_PEER_BUCKETS];
};

struct hconn {
	struct gw_httpd *h;
	nng_stream *s; /* NULL once handed to a client connection */
	nng_aio *raio, *waio;
	pthread_mutex_t mu;
	gw_peer peer; /* counted; len 0 when not (or handed on) */
	/* Under mu. A read and a write are in flight together only when
	 * the sweeper answers 408 to a read it ended. */
	bool reading, writing;
	bool dead; /* the stream is closed: freed when nothing is in flight */
	bool expired;        /* the sweeper ended the current read */
	bool linger;         /* the last reply is out: reads drop what comes */
	int64_t deadline_us; /* of the read in flight */
	/* Owned by the operation in flight. */
	bool close_after; /* the reply being written ends the connection */
	bool got_bytes;   /* some of the current request has arrived */
	bool answered;    /* a reply went out: the connection is kept alive */
	uint8_t *buf;     /* request bytes, cap = http_header_bytes_max */
	size_t len, cap;
	/* The reply: head, then body (owned when body_owned). */
	char head[512];
	size_t head_len;
	uint8_t *body;
	size_t body_len;
	bool body_owned;
	size_t sent;
	hconn *prev, *next; /* under h->mu */
};

static void read_cb(void *arg);
static void write_cb(void *arg);

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

/* False when p is at the cap (or out of memory). */
static bool peer_get(struct gw_httpd *h, const gw_peer *p)
{
	bool ok = false;
	pthread_mutex_lock(&h->peers_mu);
	peer_node **pp = peer_find(h, p);
	if (*pp == NULL && (*pp = calloc(1, sizeof(**pp))) != NULL)
		(*pp)->key = *p;
	if (*pp != NULL && (*pp)->n < h->g->conf->http_conns_per_addr) {
		(*pp)->n++;
		ok = true;
	}
	if (*pp != NULL && (*pp)->n == 0) {
		peer_node *n = *pp;
		*pp = n->next;
		free(n);
	}
	pthread_mutex_unlock(&h->peers_mu);
	return ok;
}

static void peer_put(struct gw_httpd *h, const gw_peer *p)
{
	pthread_mutex_lock(&h->peers_mu);
	peer_node **pp = peer_find(h, p);
	peer_node *n = *pp;
	PL_ASSERT(n != NULL && n->n > 0);
	if (--n->n == 0) {
		*pp = n->next;
		free(n);
	}
	pthread_mutex_unlock(&h->peers_mu);
}

void gw_httpd_peer_put(gw *g, const gw_peer *p)
{
	if (g->httpd != NULL && p->len > 0)
		peer_put(g->httpd, p);
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

/* Nothing is in flight and the stream is closed: unlinks and frees c.
 * From one of its callbacks (nng_aio_reap frees the aios after it). */
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
	pthread_mutex_unlock(&h->mu);
	if (c->peer.len > 0)
		peer_put(h, &c->peer);
	pl_metric_inc(h->g->m.http_conns, -1);
	if (c->s != NULL)
		nng_stream_free(c->s);
	nng_aio_reap(c->raio);
	nng_aio_reap(c->waio);
	pthread_mutex_destroy(&c->mu);
	if (c->body_owned)
		free(c->body);
	free(c->buf);
	free(c);
}

/* Called with mu held: gives the address's slot back (the connection
 * is ending), so a client that saw the end may connect again at once. */
static void slot_release_locked(hconn *c)
{
	if (c->peer.len > 0) {
		peer_put(c->h, &c->peer);
		c->peer.len = 0;
	}
}

/* Called with mu held: closes the stream (what is in flight fails).
 * The address's slot is given back first, so a client that sees the
 * close may connect again at once. */
static void kill_locked(hconn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	slot_release_locked(c);
	if (c->s != NULL)
		nng_stream_close(c->s);
}

/* Called with mu held: whether c is to be freed now. */
static bool settled_locked(const hconn *c)
{
	return c->dead && !c->reading && !c->writing;
}

/* Called with mu held: sends what is left of the reply. A reply that
 * ends the connection releases its slot before a byte of it goes out. */
static void write_post_locked(hconn *c)
{
	if (c->close_after)
		slot_release_locked(c);
	nng_iov iov[2];
	unsigned n = 0;
	if (c->sent < c->head_len)
		iov[n++] = (nng_iov){.iov_buf = c->head + c->sent,
		    .iov_len = c->head_len - c->sent};
	size_t boff = c->sent > c->head_len ? c->sent - c->head_len : 0;
	if (boff < c->body_len)
		iov[n++] = (nng_iov){
		    .iov_buf = c->body + boff, .iov_len = c->body_len - boff};
	nng_aio_set_iov(c->waio, n, iov);
	nng_aio_set_timeout(c->waio, HTTPD_WRITE_MS);
	c->writing = true;
	nng_stream_send(c->s, c->waio);
}

/* What a path of the connection holds: a callback (or the accept) owns
 * its operation's flag until it posts the next one or stops, so a
 * concurrent callback never frees the connection under it. */
enum { OP_NONE = 0, OP_READ, OP_WRITE, OP_CLOSE };

/* Moves the path holding `from` to its next operation `to`, posted
 * under mu (stop or the sweeper may have closed the stream, and nng
 * does not fail an operation posted on a closed one). A closed
 * connection with nothing else in flight is freed. */
static void next_op(hconn *c, int from, int to)
{
	pthread_mutex_lock(&c->mu);
	if (from == OP_READ)
		c->reading = false;
	else if (from == OP_WRITE)
		c->writing = false;
	if (to == OP_CLOSE) {
		kill_locked(c);
	} else if (!c->dead && to == OP_WRITE) {
		write_post_locked(c);
	} else if (!c->dead && to == OP_READ) {
		nng_iov iov = {
		    .iov_buf = c->buf + c->len, .iov_len = c->cap - c->len};
		nng_aio_set_iov(c->raio, 1, &iov);
		c->reading = true;
		nng_stream_recv(c->s, c->raio);
	}
	bool free_now = settled_locked(c);
	pthread_mutex_unlock(&c->mu);
	if (free_now)
		hconn_free(c);
}

/* The deadline of the head being read (the sweeper reads it). */
static void deadline_set(hconn *c, int64_t at_us)
{
	pthread_mutex_lock(&c->mu);
	c->deadline_us = at_us;
	pthread_mutex_unlock(&c->mu);
}

/* Fills the reply's head and body (nothing is sent yet). */
static void reply_prepare(hconn *c, const gw_http_res *res, bool head_only)
{
	int n = snprintf(c->head, sizeof(c->head),
	    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	    "%sConnection: %s\r\n\r\n",
	    res->status, gw_http_reason(res->status),
	    res->ctype != NULL ? res->ctype : "text/plain", res->len,
	    res->extra != NULL ? res->extra : "",
	    c->close_after ? "close" : "keep-alive");
	PL_ASSERT(n > 0 && (size_t)n < sizeof(c->head));
	c->head_len = (size_t)n;
	if (c->body_owned)
		free(c->body);
	c->body = res->body;
	c->body_len = head_only ? 0 : res->len;
	c->body_owned = res->owned;
	c->sent = 0;
	if (res->status >= 400 && res->status != 404)
		PL_DEBUG(GW_MOD, "event=http_refused status=%d", res->status);
}

/* A refusal with a short text body; the connection closes after it. */
static void refusal_prepare(
    hconn *c, int status, const char *text, const char *extra)
{
	gw_http_res res = {.status = status,
	    .ctype = "text/plain",
	    .body = (uint8_t *)text,
	    .len = strlen(text),
	    .extra = extra};
	c->close_after = true;
	reply_prepare(c, &res, false);
}

static void refuse(
    hconn *c, int from, int status, const char *text, const char *extra)
{
	refusal_prepare(c, status, text, extra);
	next_op(c, from, OP_WRITE);
}

/* ---- requests ---- */

/* GET /ws: the RFC 6455 handshake. On success the stream moves to a
 * client connection and c is freed. */
static void ws_upgrade(hconn *c, int from, const gw_http_req *req)
{
	if (!req->upgrade_ws || !req->conn_upgrade) {
		refuse(
		    c, from, 400, "websocket upgrade expected on /ws\n", NULL);
		return;
	}
	if (req->ws_version != 13) {
		refuse(c, from, 426, "Sec-WebSocket-Version 13 expected\n",
		    "Sec-WebSocket-Version: 13\r\n");
		return;
	}
	if (req->ws_key[0] == '\0') {
		refuse(c, from, 400, "Sec-WebSocket-Key missing or malformed\n",
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
	pthread_mutex_lock(&c->mu);
	nng_stream *s = c->dead ? NULL : c->s;
	if (s != NULL) {
		c->s = NULL;
		c->dead = true;
	}
	pthread_mutex_unlock(&c->mu);
	if (s != NULL) {
		gw_peer peer = c->peer;
		c->peer.len = 0;
		gw_conn_accept_ws(c->h->g, s, &peer, (const uint8_t *)c->head,
		    (size_t)n, c->buf + req->head_bytes,
		    c->len - req->head_bytes);
	}
	next_op(c, from, OP_CLOSE);
}

/* A whole request head is in buf: answer it. */
static void request(hconn *c, int from, const gw_http_req *req)
{
	if (strcmp(req->path, "/ws") == 0 && req->method == GW_HTTP_GET &&
	    !req->has_body) {
		ws_upgrade(c, from, req);
		return;
	}
	if (req->method == GW_HTTP_OTHER) {
		refuse(c, from, 405, "only GET and HEAD are served\n",
		    "Allow: GET, HEAD\r\n");
		return;
	}
	if (req->has_body) {
		refuse(c, from, 413, "request bodies are not accepted\n", NULL);
		return;
	}
	/* The request is taken off buf; pipelined bytes stay. */
	memmove(c->buf, c->buf + req->head_bytes, c->len - req->head_bytes);
	c->len -= req->head_bytes;
	c->close_after = !req->keep_alive;
	gw_http_res res;
	gw_http_route(c->h->g, req, &res);
	reply_prepare(c, &res, req->method == GW_HTTP_HEAD);
	next_op(c, from, OP_WRITE);
}

/* Parses what has arrived: answers a whole head or a bad one, else
 * reads on. */
static void parse(hconn *c, int from)
{
	gw_http_req req;
	int st = gw_http_parse(
	    c->buf, c->len, c->h->g->conf->http_header_bytes_max, &req);
	if (st == 0) {
		request(c, from, &req);
	} else if (st > 0) {
		pl_metric_inc(c->h->g->m.http_bad, 1);
		refuse(c, from, st,
		    st == 431   ? "request head too large\n"
		    : st == 414 ? "request target too long\n"
		                : "malformed request\n",
		    NULL);
	} else {
		next_op(c, from, OP_READ);
	}
}

/* The reply is out: close, or wait for the next request. */
/* A reply that ends the connection is out: drop what the client still
 * sends, until it closes or HTTPD_LINGER_MS pass. A read may still be
 * in flight (the sweeper's 408): it becomes the lingering read. */
static void linger_start(hconn *c)
{
	pthread_mutex_lock(&c->mu);
	c->writing = false;
	c->linger = true;
	c->expired = false;
	c->len = 0;
	c->deadline_us = pl_mono_us() + (int64_t)HTTPD_LINGER_MS * 1000;
	if (!c->dead && !c->reading) {
		nng_iov iov = {.iov_buf = c->buf, .iov_len = c->cap};
		nng_aio_set_iov(c->raio, 1, &iov);
		c->reading = true;
		nng_stream_recv(c->s, c->raio);
	}
	bool free_now = settled_locked(c);
	pthread_mutex_unlock(&c->mu);
	if (free_now)
		hconn_free(c);
}

static void reply_done(hconn *c)
{
	if (c->close_after) {
		linger_start(c);
		return;
	}
	c->answered = true;
	c->got_bytes = c->len > 0;
	const gw_config *conf = c->h->g->conf;
	int64_t ms = c->got_bytes ? conf->http_header_timeout_ms
	                          : conf->http_keepalive_ms;
	deadline_set(c, pl_mono_us() + ms * 1000);
	parse(c, OP_WRITE);
}

static void write_cb(void *arg)
{
	hconn *c = arg;
	int rv = nng_aio_result(c->waio);
	if (rv != 0) {
		next_op(c, OP_WRITE, OP_CLOSE);
		return;
	}
	c->sent += nng_aio_count(c->waio);
	if (c->sent < c->head_len + c->body_len)
		next_op(c, OP_WRITE, OP_WRITE);
	else
		reply_done(c);
}

static void read_cb(void *arg)
{
	hconn *c = arg;
	int rv = nng_aio_result(c->raio);
	if (rv != 0) {
		next_op(c, OP_READ, OP_CLOSE);
		return;
	}
	pthread_mutex_lock(&c->mu);
	/* Ended by the sweeper: its 408 (or close) owns what follows. */
	bool ended = c->dead || c->expired;
	pthread_mutex_unlock(&c->mu);
	if (ended) {
		next_op(c, OP_READ, OP_NONE);
		return;
	}
	size_t n = nng_aio_count(c->raio);
	if (c->linger) {
		c->len = 0; /* dropped */
		next_op(c, OP_READ, OP_READ);
		return;
	}
	if (!c->got_bytes && n > 0) {
		/* On a kept-alive connection the head's deadline starts at
		 * its first byte; the first head's ran from the accept. */
		c->got_bytes = true;
		if (c->answered)
			deadline_set(c,
			    pl_mono_us() +
			        (int64_t)c->h->g->conf->http_header_timeout_ms *
			            1000);
	}
	c->len += n;
	parse(c, OP_READ);
}

/* Called with h->mu and c->mu held, for a read past its deadline. */
static void expire_locked(gw *g, hconn *c)
{
	c->expired = true;
	if (c->got_bytes) {
		/* Half a head came: say why, then close. The read stays in
		 * flight (cancelling it would end a TLS stream at once). */
		pl_metric_inc(g->m.http_timeouts[0], 1);
		refusal_prepare(
		    c, 408, "request head not received in time\n", NULL);
		write_post_locked(c);
		return;
	}
	/* Nothing of a request came: close without a word (a browser's
	 * spare connection must not read a 408 as an answer). */
	pl_metric_inc(g->m.http_timeouts[c->answered ? 1 : 0], 1);
	kill_locked(c);
}

void gw_httpd_sweep(gw *g)
{
	struct gw_httpd *h = g->httpd;
	if (h == NULL)
		return;
	int64_t now = pl_mono_us();
	/* h->mu keeps every listed connection alive while it is looked at
	 * (freeing unlinks under it). */
	pthread_mutex_lock(&h->mu);
	for (hconn *c = h->conns; c != NULL; c = c->next) {
		pthread_mutex_lock(&c->mu);
		if (!c->reading || c->expired || c->dead ||
		    now < c->deadline_us)
			;
		else if (c->linger)
			kill_locked(c);
		else
			expire_locked(g, c);
		pthread_mutex_unlock(&c->mu);
	}
	pthread_mutex_unlock(&h->mu);
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
	    nng_aio_alloc(&c->raio, read_cb, c) != 0 ||
	    nng_aio_alloc(&c->waio, write_cb, c) != 0) {
		PL_WARN(GW_MOD, "event=http_accept_refused reason=nomem");
		if (c != NULL) {
			nng_aio_free(c->raio);
			free(c->buf);
		}
		free(c);
		nng_stream_free(s);
		return;
	}
	pthread_mutex_init(&c->mu, NULL);
	c->h = h;
	c->s = s;
	c->cap = cap;
	int64_t deadline =
	    pl_mono_us() + (int64_t)g->conf->http_header_timeout_ms * 1000;
	gw_peer peer;
	peer_of(s, &peer);
	int refused = 0;
	pthread_mutex_lock(&h->mu);
	if (h->stopping || h->nconns >= g->conf->connections_max)
		refused = 503;
	else if (peer.len > 0 && !peer_get(h, &peer))
		refused = 429;
	else
		c->peer = peer;
	c->next = h->conns;
	if (h->conns != NULL)
		h->conns->prev = c;
	h->conns = c;
	h->nconns++;
	pthread_mutex_unlock(&h->mu);
	pl_metric_inc(g->m.http_conns, 1);
	if (refused == 429) {
		pl_metric_inc(g->m.http_refused[0], 1);
		refuse(c, OP_NONE, 429,
		    "too many connections from this address\n",
		    "Retry-After: 1\r\n");
	} else if (refused != 0) {
		pl_metric_inc(g->m.http_refused[1], 1);
		refuse(c, OP_NONE, 503, "too many connections\n",
		    "Retry-After: 1\r\n");
	} else {
		deadline_set(c, deadline);
		next_op(c, OP_NONE, OP_READ);
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
		PL_WARN(
		    GW_MOD, "event=accept_failed err=\"%s\"", nng_strerror(rv));
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
	pthread_mutex_init(&h->peers_mu, NULL);
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
		pthread_mutex_lock(&c->mu);
		kill_locked(c);
		pthread_mutex_unlock(&c->mu);
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
	pthread_mutex_destroy(&h->peers_mu);
	free(h);
	g->httpd = NULL;
}
