/*
 * test_http.c - the pure parts of the gateway's HTTP port: the request
 * reader (good heads, every refusal, heads arriving a byte at a time)
 * and the WebSocket side (the RFC 6455 accept key, server frame headers,
 * and the decoder of client frames: masking, fragmentation with control
 * frames between fragments, every protocol error and its close code,
 * input split at every byte).
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "common/common.h"
#include "gateway/httpd.h"

#define MAX 8192

static int parse(const char *text, gw_http_req *req)
{
	return gw_http_parse(
	    (const uint8_t *)text, strlen(text), MAX, req);
}

TEST(test_http_parse_good_heads)
{
	gw_http_req r;
	CHECK_EQ(parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
	CHECK_STR_EQ(r.path, "/");
	CHECK(r.keep_alive && r.http11 && r.method == GW_HTTP_GET);
	CHECK_EQ(r.head_bytes, 27);
	CHECK_EQ(parse("GET /a/b.js?v=1#x HTTP/1.0\r\n\r\n", &r), 0);
	CHECK_STR_EQ(r.path, "/a/b.js");
	CHECK(!r.keep_alive && !r.http11);
	CHECK_EQ(parse("HEAD /m HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
	             &r),
	    0);
	CHECK(r.keep_alive && r.method == GW_HTTP_HEAD);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nconnection: foo, close\r\n\r\n", &r),
	    0);
	CHECK(!r.keep_alive);
	/* Bare LF line ends and empty lines before the request line. */
	CHECK_EQ(parse("\r\n\nGET /healthz HTTP/1.1\nHost: x\n\n", &r), 0);
	CHECK_STR_EQ(r.path, "/healthz");
	CHECK_EQ(parse("DELETE / HTTP/1.1\r\n\r\n", &r), 0);
	CHECK(r.method == GW_HTTP_OTHER);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r), 0);
	CHECK(!r.has_body);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nContent-Length: 12\r\n\r\n", &r), 0);
	CHECK(r.has_body);
	CHECK_EQ(
	    parse("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r),
	    0);
	CHECK(r.has_body);
}

TEST(test_http_parse_websocket_headers)
{
	gw_http_req r;
	CHECK_EQ(parse("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"
	               "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
	               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	               "Sec-WebSocket-Version: 13\r\n\r\n",
	             &r),
	    0);
	CHECK(r.upgrade_ws && r.conn_upgrade);
	CHECK_EQ(r.ws_version, 13);
	CHECK_STR_EQ(r.ws_key, "dGhlIHNhbXBsZSBub25jZQ==");
	/* A key that is not base64 of 16 bytes is no key; version 8 is not
	 * 13. */
	CHECK_EQ(parse("GET /ws HTTP/1.1\r\nSec-WebSocket-Key: abc\r\n"
	               "Sec-WebSocket-Version: 8\r\n\r\n",
	             &r),
	    0);
	CHECK_STR_EQ(r.ws_key, "");
	CHECK_EQ(r.ws_version, -1);
	CHECK(!r.upgrade_ws && !r.conn_upgrade);
	CHECK_EQ(parse("GET /ws HTTP/1.1\r\n"
	               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ!==\r\n\r\n",
	             &r),
	    0);
	CHECK_STR_EQ(r.ws_key, "");
}

TEST(test_http_parse_refusals)
{
	static const struct {
		const char *text;
		int want;
	} cases[] = {
	    {"GET / HTTP/2.0\r\n\r\n", 400},
	    {"GET / HTTP/1.1 x\r\n\r\n", 400},
	    {"GET  / HTTP/1.1\r\n\r\n", 400},
	    {"GET /\r\n\r\n", 400},
	    {" / HTTP/1.1\r\n\r\n", 400},
	    {"GET http://x/ HTTP/1.1\r\n\r\n", 400},
	    {"GET /a\x01 HTTP/1.1\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\n: empty name\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400},
	};
	gw_http_req r;
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
		int got = parse(cases[i].text, &r);
		if (got != cases[i].want)
			fprintf(stderr, "  case %zu: %s\n", i, cases[i].text);
		CHECK_EQ(got, cases[i].want);
	}
	/* NUL inside a header value. */
	const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
	CHECK_EQ(gw_http_parse((const uint8_t *)nul, sizeof(nul) - 1, MAX, &r),
	    400);
}

TEST(test_http_parse_bounds)
{
	gw_http_req r;
	char big[MAX + 64];
	/* A head that does not end within max bytes: 431, at max and past
	 * it; one byte short of max is still "more, please". */
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX-Long: ", 24);
	CHECK_EQ(gw_http_parse((const uint8_t *)big, MAX - 1, MAX, &r), -1);
	CHECK_EQ(gw_http_parse((const uint8_t *)big, MAX, MAX, &r), 431);
	CHECK_EQ(gw_http_parse((const uint8_t *)big, sizeof(big), MAX, &r),
	    431);
	/* A head of exactly max bytes is whole. */
	memcpy(big + MAX - 4, "\r\n\r\n", 4);
	CHECK_EQ(gw_http_parse((const uint8_t *)big, MAX, MAX, &r), 0);
	CHECK_EQ(r.head_bytes, MAX);
	/* A request line with no end at all. */
	memset(big, 'b', sizeof(big));
	CHECK_EQ(gw_http_parse((const uint8_t *)big, MAX, MAX, &r), 431);
	/* A path over GW_HTTP_PATH_CHARS_MAX. */
	int n = snprintf(big, sizeof(big), "GET /%0*d HTTP/1.1\r\n\r\n",
	    GW_HTTP_PATH_CHARS_MAX, 0);
	CHECK_EQ(gw_http_parse((const uint8_t *)big, (size_t)n, MAX, &r), 414);
}

TEST(test_http_parse_byte_at_a_time)
{
	const char *text = "GET /ws?x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket"
	                   "\r\nConnection: Upgrade\r\n\r\nEXTRA";
	size_t head = strlen(text) - 5;
	gw_http_req r;
	for (size_t n = 0; n < head; n++)
		CHECK_EQ(gw_http_parse((const uint8_t *)text, n, MAX, &r), -1);
	for (size_t n = head; n <= strlen(text); n++) {
		CHECK_EQ(gw_http_parse((const uint8_t *)text, n, MAX, &r), 0);
		CHECK_EQ(r.head_bytes, head);
		CHECK_STR_EQ(r.path, "/ws");
		CHECK(r.upgrade_ws && r.conn_upgrade);
	}
}

/* ---- WebSocket ---- */

TEST(test_ws_accept_rfc6455_example)
{
	char out[GW_WS_ACCEPT_CHARS + 1];
	/* RFC 6455 section 1.3. */
	gw_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", out);
	CHECK_STR_EQ(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(test_ws_server_frame_headers)
{
	static const struct {
		size_t len;
		size_t hlen;
		uint8_t b1;
	} cases[] = {{0, 2, 0}, {125, 2, 125}, {126, 4, 126},
	    {65535, 4, 126}, {65536, 10, 127}, {1u << 20, 10, 127}};
	uint8_t h[GW_WS_HDR_BYTES_MAX];
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
		CHECK_EQ(gw_ws_hdr_len(cases[i].len), cases[i].hlen);
		CHECK_EQ(gw_ws_hdr_write(h, GW_WS_OP_BINARY, cases[i].len),
		    cases[i].hlen);
		CHECK_EQ(h[0], 0x82);
		CHECK_EQ(h[1], cases[i].b1);
		uint64_t len = h[1];
		if (h[1] == 126)
			len = (uint64_t)h[2] << 8 | h[3];
		if (h[1] == 127) {
			len = 0;
			for (int k = 0; k < 8; k++)
				len = len << 8 | h[2 + k];
		}
		CHECK_EQ(len, cases[i].len);
	}
}

/* Appends a client frame: b0 is FIN|RSV|opcode, masked with a fixed key
 * unless unmasked. */
static size_t frame(uint8_t *out, uint8_t b0, const void *payload,
    size_t len, bool masked)
{
	static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
	size_t h = 0;
	out[h++] = b0;
	uint8_t m = masked ? 0x80 : 0;
	if (len < 126) {
		out[h++] = (uint8_t)(m | len);
	} else if (len < 65536) {
		out[h++] = m | 126;
		out[h++] = (uint8_t)(len >> 8);
		out[h++] = (uint8_t)len;
	} else {
		out[h++] = m | 127;
		for (int i = 0; i < 8; i++)
			out[h++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
	}
	if (masked) {
		memcpy(out + h, key, 4);
		h += 4;
	}
	const uint8_t *p = payload;
	for (size_t i = 0; i < len; i++)
		out[h + i] = masked ? (uint8_t)(p[i] ^ key[i & 3]) : p[i];
	return h + len;
}

/* What a connection makes of a byte stream fed in chunks of step bytes,
 * the way conn.c keeps its buffer: decoded bytes, then a partial header. */
typedef struct feed {
	uint8_t buf[1 << 18];
	size_t dlen, rlen;
	uint8_t out[1 << 18];
	size_t out_len;
	int pings, pongs;
	char ping_payload[GW_WS_CTL_BYTES_MAX + 1];
	gw_ws_ev last; /* CLOSE or ERROR when the stream ended */
} feed;

static void feed_run(feed *f, gw_ws_rx *rx, const uint8_t *in, size_t n,
    size_t step)
{
	memset(f, 0, sizeof(*f));
	for (size_t off = 0; off < n && f->last == GW_WS_EV_NONE;
	     off += step) {
		size_t k = n - off < step ? n - off : step;
		memcpy(f->buf + f->rlen, in + off, k);
		f->rlen += k;
		size_t w = f->dlen, r = f->dlen;
		for (;;) {
			gw_ws_ev ev = gw_ws_rx_step(rx, f->buf, &w, &r, f->rlen);
			if (ev == GW_WS_EV_NONE)
				break;
			if (ev == GW_WS_EV_PING) {
				f->pings++;
				memcpy(f->ping_payload, rx->ctl, rx->ctl_len);
				f->ping_payload[rx->ctl_len] = '\0';
			} else if (ev == GW_WS_EV_PONG) {
				f->pongs++;
			} else {
				f->last = ev;
				break;
			}
		}
		memmove(f->buf + w, f->buf + r, f->rlen - r);
		f->rlen = w + (f->rlen - r);
		f->dlen = w;
		/* The application takes every decoded byte. */
		memcpy(f->out + f->out_len, f->buf, f->dlen);
		f->out_len += f->dlen;
		memmove(f->buf, f->buf + f->dlen, f->rlen - f->dlen);
		f->rlen -= f->dlen;
		f->dlen = 0;
	}
}

static feed F;

TEST(test_ws_rx_fragmented_message_with_control_frames_any_split)
{
	uint8_t in[4096];
	uint8_t big[300];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	size_t n = 0;
	n += frame(in + n, 0x82, "one", 3, true);         /* whole message */
	n += frame(in + n, 0x02, "frag-", 5, true);       /* first fragment */
	n += frame(in + n, 0x89, "are you there", 13, true); /* ping */
	n += frame(in + n, 0x00, "mented-", 7, true);     /* continuation */
	n += frame(in + n, 0x8A, "", 0, true);            /* pong */
	n += frame(in + n, 0x00, "", 0, true);            /* empty fragment */
	n += frame(in + n, 0x80, big, sizeof(big), true); /* last, 16-bit len */
	n += frame(in + n, 0x82, "", 0, true);            /* empty message */
	n += frame(in + n, 0x88, "\x03\xe9" "bye", 5, true); /* close 1001 */
	uint8_t want[512];
	memcpy(want, "onefrag-mented-", 15);
	memcpy(want + 15, big, sizeof(big));
	for (size_t step = 1; step <= n; step++) {
		gw_ws_rx rx;
		gw_ws_rx_init(&rx, 1024);
		feed_run(&F, &rx, in, n, step);
		CHECK_EQ(F.last, GW_WS_EV_CLOSE);
		CHECK_EQ(rx.close_code, 1001);
		CHECK_EQ(F.pings, 1);
		CHECK_EQ(F.pongs, 1);
		CHECK_STR_EQ(F.ping_payload, "are you there");
		CHECK_EQ(F.out_len, 15 + sizeof(big));
		CHECK(memcmp(F.out, want, F.out_len) == 0);
	}
}

TEST(test_ws_rx_64bit_length_and_close_without_code)
{
	static uint8_t in[70000 + 32], payload[70000];
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i ^ (i >> 8));
	size_t n = frame(in, 0x82, payload, sizeof(payload), true);
	n += frame(in + n, 0x88, "", 0, true);
	gw_ws_rx rx;
	gw_ws_rx_init(&rx, sizeof(payload));
	feed_run(&F, &rx, in, n, 4000);
	CHECK_EQ(F.last, GW_WS_EV_CLOSE);
	CHECK_EQ(rx.close_code, GW_WS_CLOSE_NORMAL);
	CHECK_EQ(F.out_len, sizeof(payload));
	CHECK(memcmp(F.out, payload, sizeof(payload)) == 0);
}

TEST(test_ws_rx_protocol_errors)
{
	uint8_t ctl126[126] = {0};
	static const struct {
		const char *name;
		uint8_t b0[2];   /* first frame (b0), second frame (0: none) */
		size_t len[2];
		bool masked;
		uint16_t code;
	} cases[] = {
	    {"unmasked", {0x82, 0}, {3, 0}, false, 1002},
	    {"rsv1", {0xC2, 0}, {3, 0}, true, 1002},
	    {"rsv3", {0x92, 0}, {3, 0}, true, 1002},
	    {"opcode 3", {0x83, 0}, {3, 0}, true, 1002},
	    {"opcode 11", {0x8B, 0}, {3, 0}, true, 1002},
	    {"fragmented ping", {0x09, 0}, {3, 0}, true, 1002},
	    {"ping of 126", {0x89, 0}, {126, 0}, true, 1002},
	    {"close of 1", {0x88, 0}, {1, 0}, true, 1002},
	    {"lone continuation", {0x80, 0}, {3, 0}, true, 1002},
	    {"message in message", {0x02, 0x82}, {3, 3}, true, 1002},
	    {"text", {0x81, 0}, {3, 0}, true, 1003},
	    {"too big at once", {0x82, 0}, {101, 0}, true, 1009},
	    {"too big in pieces", {0x02, 0x80}, {60, 41}, true, 1009},
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
		uint8_t in[1024];
		size_t n = frame(in, cases[i].b0[0], ctl126, cases[i].len[0],
		    cases[i].masked);
		if (cases[i].b0[1] != 0)
			n += frame(in + n, cases[i].b0[1], ctl126,
			    cases[i].len[1], cases[i].masked);
		for (size_t step = 1; step <= n; step += 7) {
			gw_ws_rx rx;
			gw_ws_rx_init(&rx, 100);
			feed_run(&F, &rx, in, n, step);
			if (F.last != GW_WS_EV_ERROR ||
			    rx.close_code != cases[i].code)
				fprintf(stderr, "  case %s step %zu\n",
				    cases[i].name, step);
			CHECK_EQ(F.last, GW_WS_EV_ERROR);
			CHECK_EQ(rx.close_code, cases[i].code);
			CHECK(rx.error != NULL);
		}
	}
	/* A 64-bit length with the top bit set. */
	uint8_t in[14] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
	gw_ws_rx rx;
	gw_ws_rx_init(&rx, 100);
	feed_run(&F, &rx, in, sizeof(in), 1);
	CHECK_EQ(F.last, GW_WS_EV_ERROR);
	CHECK_EQ(rx.close_code, GW_WS_CLOSE_PROTOCOL);
}

TEST(test_ws_rx_partial_header_waits)
{
	uint8_t in[64];
	size_t n = frame(in, 0x82, "abcdef", 6, true);
	gw_ws_rx rx;
	gw_ws_rx_init(&rx, 100);
	/* Every prefix of the header decodes nothing and asks for more. */
	for (size_t k = 0; k < 6; k++) {
		size_t w = 0, r = 0;
		uint8_t buf[64];
		memcpy(buf, in, n);
		CHECK_EQ(gw_ws_rx_step(&rx, buf, &w, &r, k), GW_WS_EV_NONE);
		CHECK_EQ(w, 0);
		CHECK_EQ(r, 0);
	}
}
