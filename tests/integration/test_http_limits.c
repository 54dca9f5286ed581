/*
 * test_http_limits.c - the gateway's HTTP port bounds every client, over
 * http/ws and over https/wss alike, with short configured deadlines:
 *   fault: connections that send nothing, half a request line, or stay
 *   open after a 404 on keep-alive; more connections from one address
 *   than the per-address cap.
 *   invariant: the gateway closes each of them (an idle one without a
 *   word, a half request with 408; the test waits for the close, it does
 *   not time it), answers the one over the cap 429 and closes it, frees
 *   the slots of closed connections, and meanwhile a WebSocket session
 *   (which counts against the cap), /healthz and /metrics keep working.
 */
#define CHECK_MAIN
#include <stdlib.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 3000
/* Connections of each kind that must be closed. */
#define N 64
/* The longest the test waits for one close: far above the deadlines
 * configured (3 s at most), so only a gateway that never closes reaches
 * it. */
#define CLOSE_WAIT_MS 15000

typedef struct port {
	hx_cluster c;
	bool tls;
	char ca[200];
	char url[96]; /* tcp:// or tls+tcp:// to the HTTP port */
	nng_stream_dialer *d;
} port;

static bool make_cert(const hx_cluster *c, char *ca, size_t cap)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
	    "cd %s && openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost "
	    "-addext subjectAltName=DNS:localhost -keyout key.pem "
	    "-out cert.pem >/dev/null 2>&1 && cat cert.pem key.pem > "
	    "certkey.pem",
	    c->dir);
	snprintf(ca, cap, "%s/cert.pem", c->dir);
	return system(cmd) == 0;
}

static bool dialer_open(port *p)
{
	snprintf(p->url, sizeof(p->url), "%s://127.0.0.1:%d",
	    p->tls ? "tls+tcp" : "tcp", p->c.http_port);
	if (nng_stream_dialer_alloc(&p->d, p->url) != 0)
		return false;
	if (!p->tls)
		return true;
	nng_tls_config *cfg;
	int rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT);
	if (rv != 0)
		return false;
	if ((rv = nng_tls_config_ca_file(cfg, p->ca)) == 0 &&
	    (rv = nng_tls_config_server_name(cfg, "localhost")) == 0 &&
	    (rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) ==
	        0)
		rv = nng_stream_dialer_set_ptr(p->d, NNG_OPT_TLS_CONFIG, cfg);
	nng_tls_config_free(cfg);
	return rv == 0;
}

/* Starts a gateway (one broker group) with extra [gateway] lines. */
static bool port_start(port *p, bool tls, const char *extra)
{
	memset(p, 0, sizeof(*p));
	p->tls = tls;
	if (!hx_init(&p->c, 1))
		return false;
	int n = snprintf(p->c.gw_extra, sizeof(p->c.gw_extra), "%s", extra);
	if (tls) {
		if (!make_cert(&p->c, p->ca, sizeof(p->ca)))
			return false;
		snprintf(p->c.gw_extra + n, sizeof(p->c.gw_extra) - (size_t)n,
		    "tls_cert_key = %s/certkey.pem\n", p->c.dir);
		snprintf(p->c.ws_url, sizeof(p->c.ws_url),
		    "wss://127.0.0.1:%d/ws", p->c.http_port);
	}
	return hx_start(&p->c) && dialer_open(p);
}

static void port_stop(port *p, bool failed)
{
	nng_stream_dialer_free(p->d);
	hx_fini(&p->c, failed);
}

/* A WebSocket session that said hello (wss verified against the CA). */
static parley_conn *ws_session(port *p, const char *user)
{
	parley_opts o = {.tls_ca_file = p->ca, .tls_server_name = "localhost"};
	parley_conn *conn;
	if (parley_connect(p->c.ws_url, T, p->tls ? &o : NULL, &conn) != PL_OK)
		return NULL;
	if (parley_hello(conn,
	        hx_token(&p->c, "acme", user, PARLEY__ROLE__SERVICE, 600, ""),
	        T, NULL) != PL_OK) {
		parley_close(conn);
		return NULL;
	}
	return conn;
}

static nng_stream *raw_open(port *p)
{
	nng_aio *aio;
	nng_stream *s = NULL;
	if (nng_aio_alloc(&aio, NULL, NULL) != 0)
		return NULL;
	nng_aio_set_timeout(aio, T);
	nng_stream_dialer_dial(p->d, aio);
	nng_aio_wait(aio);
	if (nng_aio_result(aio) == 0)
		s = nng_aio_get_output(aio, 0);
	nng_aio_free(aio);
	return s;
}

static bool raw_send_bytes(nng_stream *s, const void *buf, size_t n)
{
	nng_aio *aio;
	const char *text = buf;
	size_t off = 0;
	if (nng_aio_alloc(&aio, NULL, NULL) != 0)
		return false;
	nng_aio_set_timeout(aio, T);
	while (off < n) {
		nng_iov iov = {.iov_buf = (char *)text + off, .iov_len = n - off};
		nng_aio_set_iov(aio, 1, &iov);
		nng_stream_send(s, aio);
		nng_aio_wait(aio);
		if (nng_aio_result(aio) != 0)
			break;
		off += nng_aio_count(aio);
	}
	nng_aio_free(aio);
	return off == n;
}

static bool raw_send(nng_stream *s, const char *text)
{
	return raw_send_bytes(s, text, strlen(text));
}

/* One read: bytes read, 0 when the gateway closed the connection, -1
 * when nothing came within ms. */
static int raw_recv(nng_stream *s, char *buf, size_t cap, int ms)
{
	nng_aio *aio;
	if (nng_aio_alloc(&aio, NULL, NULL) != 0)
		return -1;
	nng_iov iov = {.iov_buf = buf, .iov_len = cap};
	nng_aio_set_iov(aio, 1, &iov);
	nng_aio_set_timeout(aio, ms);
	nng_stream_recv(s, aio);
	nng_aio_wait(aio);
	int rv = nng_aio_result(aio);
	int n = rv == 0                ? (int)nng_aio_count(aio)
	        : rv == NNG_ETIMEDOUT ? -1
	                              : 0;
	nng_aio_free(aio);
	return n;
}

/* Reads until the gateway closes the connection; what it sent before is
 * in got. False when it was still open after CLOSE_WAIT_MS. (nng's TLS
 * client does not report a close that arrives together with the last
 * data, and a receive after it never ends: over TLS a reply followed by
 * a close is read with read_response and the close is checked on the
 * gateway's side, see http_conns_reach.) */
static bool wait_closed(nng_stream *s, char *got, size_t cap)
{
	size_t len = 0;
	got[0] = '\0';
	for (;;) {
		int n = raw_recv(s, got + len, cap - 1 - len, CLOSE_WAIT_MS);
		if (n < 0)
			return false;
		if (n == 0)
			return true;
		len += (size_t)n;
		got[len] = '\0';
		if (len + 1 == cap)
			len = 0; /* keep the tail only */
	}
}

/* Reads one whole response (head and Content-Length body) into out,
 * waiting up to ms for each part; returns its status, -1 on a close or
 * timeout before it ended. */
static int read_response_within(nng_stream *s, char *out, size_t cap, int ms)
{
	size_t len = 0, want = 0;
	while (want == 0 || len < want) {
		if (len + 1 >= cap)
			return -1;
		int n = raw_recv(s, out + len, cap - 1 - len, ms);
		if (n <= 0)
			return -1;
		len += (size_t)n;
		out[len] = '\0';
		const char *end = strstr(out, "\r\n\r\n");
		const char *cl = strstr(out, "Content-Length: ");
		if (want == 0 && end != NULL && cl != NULL && cl < end)
			want = (size_t)(end + 4 - out) +
			       strtoul(cl + 16, NULL, 10);
	}
	int status = -1;
	if (sscanf(out, "HTTP/1.1 %d", &status) != 1)
		return -1;
	return status;
}

/* A reply to a request just sent. */
static int read_response(nng_stream *s, char *out, size_t cap)
{
	return read_response_within(s, out, cap, T);
}

/* A reply the gateway sends when a deadline passes. */
static int read_late_response(nng_stream *s, char *out, size_t cap)
{
	return read_response_within(s, out, cap, CLOSE_WAIT_MS);
}

/* GET path on an open connection (kept alive). */
static int get_on(nng_stream *s, const char *path, char *out, size_t cap)
{
	char req[256];
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n",
	    path);
	return raw_send(s, req) ? read_response(s, out, cap) : -1;
}

/* GET path on a new connection, closed after. */
static int get(port *p, const char *path, char *out, size_t cap)
{
	nng_stream *s = raw_open(p);
	if (s == NULL)
		return -1;
	int st = get_on(s, path, out, cap);
	nng_stream_free(s);
	return st;
}

/* The value of a metric line "name value" in a /metrics text. */
static long long metric(const char *text, const char *name)
{
	const char *at = strstr(text, name);
	while (at != NULL && at > text && at[-1] != '\n')
		at = strstr(at + 1, name);
	return at != NULL ? atoll(at + strlen(name) + 1) : -1;
}

/* Waits until the gateway has exactly n HTTP connections open, besides
 * the one that asks (its parley_gateway_http_connections gauge). */
static bool http_conns_reach(port *p, long long n)
{
	static char text[65536];
	for (int i = 0; i < CLOSE_WAIT_MS / 50; i++) {
		if (get(p, "/metrics", text, sizeof(text)) == 200 &&
		    metric(text, "parley_gateway_http_connections") == n + 1)
			return true;
		nng_msleep(50);
	}
	return false;
}

/* The WebSocket session still carries messages both ways. */
static bool session_works(port *p, parley_conn *ws, const char *text)
{
	char room[17], body[64];
	parley_conn *tcp = hx_client(&p->c, false, "acme", "poster",
	    PARLEY__ROLE__SERVICE);
	bool ok = tcp != NULL &&
	          parley_create_room(tcp, NULL, NULL, 0, T, room, NULL) ==
	              PL_OK &&
	          parley_subscribe(ws, room, 0, T, NULL) == PL_OK &&
	          parley_publish(tcp, room, "m1", PARLEY__KIND__TEXT, text,
	              strlen(text), T, NULL) == PL_OK &&
	          hx_next_message(ws, room, T, body, sizeof(body)) == 1 &&
	          strcmp(body, text) == 0 &&
	          parley_ping(ws, T, NULL, NULL) == PL_OK;
	if (tcp != NULL)
		parley_close(tcp);
	return ok;
}

/* Short deadlines; the head's is long enough for a connection to be
 * made and a request sent on a loaded machine (ASan, TLS), the test's
 * slow clients never send theirs anyway. */
static const char *TIMEOUTS = "http_header_timeout_ms = 3000\n"
                              "http_keepalive_ms = 1000\n";

static void slow_clients_closed(int *check_failed_, bool tls)
{
	port p;
	static nng_stream *idle[N], *half[N], *kept[N];
	static char got[65536];
	CHECK(port_start(&p, tls, TIMEOUTS));
	parley_conn *ws = ws_session(&p, "steady");
	CHECK(ws != NULL);
	CHECK(session_works(&p, ws, "before"));
	for (int i = 0; i < N; i++) {
		CHECK((idle[i] = raw_open(&p)) != NULL);
		CHECK((half[i] = raw_open(&p)) != NULL);
		CHECK(raw_send(half[i], "GET /heal"));
		CHECK((kept[i] = raw_open(&p)) != NULL);
		CHECK_EQ(get_on(kept[i], "/nope", got, sizeof(got)), 404);
	}
	/* Keep-alive works: two requests on one connection. */
	nng_stream *ka = raw_open(&p);
	CHECK(ka != NULL);
	CHECK_EQ(get_on(ka, "/healthz", got, sizeof(got)), 200);
	CHECK_EQ(get_on(ka, "/metrics", got, sizeof(got)), 200);
	CHECK(wait_closed(ka, got, sizeof(got)));
	nng_stream_free(ka);
	for (int i = 0; i < N; i++) {
		CHECK(wait_closed(idle[i], got, sizeof(got)));
		CHECK_STR_EQ(got, ""); /* closed without a word */
		CHECK_EQ(read_late_response(half[i], got, sizeof(got)), 408);
		CHECK(strstr(got, "Connection: close\r\n") != NULL);
		if (!tls)
			CHECK(wait_closed(half[i], got, sizeof(got)));
		CHECK(wait_closed(kept[i], got, sizeof(got)));
		CHECK_STR_EQ(got, "");
		nng_stream_free(idle[i]);
		nng_stream_free(half[i]);
		nng_stream_free(kept[i]);
	}
	/* Every HTTP connection is gone (over TLS this checks that the 408
	 * ones were closed); the upgraded connection is not an HTTP one: no
	 * HTTP deadline applies to it. */
	CHECK(http_conns_reach(&p, 0));
	CHECK(session_works(&p, ws, "after"));
	CHECK_EQ(get(&p, "/healthz", got, sizeof(got)), 200);
	CHECK_EQ(get(&p, "/metrics", got, sizeof(got)), 200);
	CHECK_GE(metric(got, "parley_gateway_http_timeouts_total{kind=\"header\"}"),
	    2 * N);
	CHECK_GE(metric(got,
	             "parley_gateway_http_timeouts_total{kind=\"keepalive\"}"),
	    N + 1);
	CHECK_EQ(metric(got, "parley_gateway_connections{transport=\"ws\"}"), 1);
	parley_close(ws);
	port_stop(&p, false);
}

TEST(test_http_limits_slow_clients_closed)
{
	slow_clients_closed(check_failed_, false);
}

TEST(test_http_limits_slow_clients_closed_tls)
{
	slow_clients_closed(check_failed_, true);
}

/* Malformed, oversize and unserved requests are answered and closed. */
TEST(test_http_limits_bad_requests_answered_and_closed)
{
	port p;
	static char got[65536];
	CHECK(port_start(&p, false, "http_header_bytes_max = 1024\n"));
	static const struct {
		const char *req;
		const char *status;
	} cases[] = {
	    {"BREW /pot HTTP/1.1\r\n\r\n", "HTTP/1.1 405 "},
	    {"GET / HTTP/9.9\r\n\r\n", "HTTP/1.1 400 "},
	    {"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", "HTTP/1.1 413 "},
	    {"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 "},
	    {"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	     "Sec-WebSocket-Version: 8\r\n\r\n",
	        "HTTP/1.1 426 "},
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
		nng_stream *s = raw_open(&p);
		CHECK(s != NULL);
		CHECK(raw_send(s, cases[i].req));
		CHECK(wait_closed(s, got, sizeof(got)));
		CHECK(strncmp(got, cases[i].status, 13) == 0);
		nng_stream_free(s);
	}
	/* A head over http_header_bytes_max: 431. */
	char big[2048];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	nng_stream *s = raw_open(&p);
	CHECK(s != NULL);
	CHECK(raw_send(s, big));
	CHECK(wait_closed(s, got, sizeof(got)));
	CHECK(strncmp(got, "HTTP/1.1 431 ", 13) == 0);
	nng_stream_free(s);
	CHECK_EQ(get(&p, "/metrics", got, sizeof(got)), 200);
	port_stop(&p, false);
}

static void per_address_cap(int *check_failed_, bool tls)
{
	enum { CAP = 4 };
	port p;
	nng_stream *s[CAP];
	static char got[65536];
	char extra[256];
	snprintf(extra, sizeof(extra), "%shttp_connections_per_address = %d\n",
	    TIMEOUTS, CAP);
	CHECK(port_start(&p, tls, extra));
	/* The WebSocket session holds one of the address's slots. */
	parley_conn *ws = ws_session(&p, "steady");
	CHECK(ws != NULL);
	for (int round = 0; round < 2; round++) {
		/* Slow clients fill the other slots. */
		for (int i = 0; i < CAP - 1; i++) {
			CHECK((s[i] = raw_open(&p)) != NULL);
			CHECK(raw_send(s[i], "GET /metr"));
		}
		/* One over the cap: 429, closed. */
		nng_stream *over = raw_open(&p);
		CHECK(over != NULL);
		CHECK_EQ(read_response(over, got, sizeof(got)), 429);
		CHECK(strstr(got, "Connection: close\r\n") != NULL);
		if (!tls)
			CHECK(wait_closed(over, got, sizeof(got)));
		nng_stream_free(over);
		/* Their heads time out: a slot is given back before its 408
		 * is written, so once every 408 is read the next round fits. */
		for (int i = 0; i < CAP - 1; i++) {
			CHECK_EQ(read_late_response(s[i], got, sizeof(got)),
			    408);
			nng_stream_free(s[i]);
		}
	}
	CHECK(session_works(&p, ws, "capped"));
	parley_close(ws);
	CHECK_EQ(get(&p, "/metrics", got, sizeof(got)), 200);
	CHECK_EQ(metric(got,
	             "parley_gateway_http_refused_total{reason=\"per_address\"}"),
	    2);
	port_stop(&p, false);
}

TEST(test_http_limits_per_address_cap)
{
	per_address_cap(check_failed_, false);
}

TEST(test_http_limits_per_address_cap_tls)
{
	per_address_cap(check_failed_, true);
}

/* A WebSocket client frame, masked unless asked not to be. */
static size_t ws_frame(uint8_t *out, uint8_t b0, const char *payload,
    size_t len, bool masked)
{
	static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
	size_t h = 0;
	out[h++] = b0;
	out[h++] = (uint8_t)((masked ? 0x80 : 0) | len); /* len < 126 */
	if (masked) {
		memcpy(out + h, key, 4);
		h += 4;
	}
	for (size_t i = 0; i < len; i++)
		out[h + i] = (uint8_t)(payload[i] ^ (masked ? key[i & 3] : 0));
	return h + len;
}

/* Upgrades a raw connection; false unless the 101 carries the RFC 6455
 * accept key of the sample nonce. */
static bool ws_raw_upgrade(nng_stream *s)
{
	char got[1024] = "";
	if (!raw_send(s, "GET /ws HTTP/1.1\r\nHost: localhost\r\n"
	                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	                 "Sec-WebSocket-Version: 13\r\n\r\n"))
		return false;
	size_t len = 0;
	while (strstr(got, "\r\n\r\n") == NULL) {
		int n = raw_recv(s, got + len, sizeof(got) - 1 - len, T);
		if (n <= 0)
			return false;
		len += (size_t)n;
		got[len] = '\0';
	}
	return strncmp(got, "HTTP/1.1 101 ", 13) == 0 &&
	       strstr(got, "Sec-WebSocket-Accept: "
	                   "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != NULL;
}

/* The close frame the gateway sent last, after its Goodbye: its code. */
static int close_code_of(const uint8_t *got, size_t len)
{
	size_t off = 0;
	int code = -1;
	while (off + 2 <= len) {
		size_t plen = got[off + 1] & 0x7f, h = 2;
		if (plen == 126) {
			plen = (size_t)got[off + 2] << 8 | got[off + 3];
			h = 4;
		}
		if ((got[off] & 0x0f) == 0x8 && plen >= 2 && off + h + 2 <= len)
			code = got[off + h] << 8 | got[off + h + 1];
		off += h + plen;
	}
	return code;
}

/* Server side of RFC 6455 through the gateway: a ping is answered with
 * its payload, a text message (the protocol is binary) and an unmasked
 * frame end the connection with a Goodbye, close 1003 / 1002 and EOF. */
TEST(test_http_limits_websocket_protocol)
{
	port p;
	uint8_t f[256];
	static char got[65536];
	CHECK(port_start(&p, false, ""));
	nng_stream *s = raw_open(&p);
	CHECK(s != NULL);
	CHECK(ws_raw_upgrade(s));
	CHECK(raw_send_bytes(s, f, ws_frame(f, 0x89, "hi there", 8, true)));
	int n = raw_recv(s, got, sizeof(got), T);
	CHECK_EQ(n, 10);
	CHECK_EQ((uint8_t)got[0], 0x8A); /* FIN | pong, unmasked */
	CHECK_EQ(got[1], 8);
	CHECK(memcmp(got + 2, "hi there", 8) == 0);
	CHECK(raw_send_bytes(s, f, ws_frame(f, 0x81, "text", 4, true)));
	size_t len = 0;
	while ((n = raw_recv(s, got + len, sizeof(got) - len, CLOSE_WAIT_MS)) > 0)
		len += (size_t)n;
	CHECK_EQ(n, 0);
	CHECK_EQ(close_code_of((const uint8_t *)got, len), 1003);
	nng_stream_free(s);
	s = raw_open(&p);
	CHECK(s != NULL);
	CHECK(ws_raw_upgrade(s));
	CHECK(raw_send_bytes(s, f, ws_frame(f, 0x82, "abcd", 4, false)));
	len = 0;
	while ((n = raw_recv(s, got + len, sizeof(got) - len, CLOSE_WAIT_MS)) > 0)
		len += (size_t)n;
	CHECK_EQ(n, 0);
	CHECK_EQ(close_code_of((const uint8_t *)got, len), 1002);
	nng_stream_free(s);
	port_stop(&p, false);
}
