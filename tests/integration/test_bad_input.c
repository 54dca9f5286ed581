/*
 * test_bad_input.c - bad bytes and abusive clients against a real gateway.
 * Each test names the fault it injects; the invariant is always the same:
 * a clear error or a close with a reason, the gateway keeps serving, and
 * nothing acknowledged is lost.
 */
#define CHECK_MAIN
#include <poll.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 3000

static bool raw_send(int s, const void *p, size_t n)
{
	return write(s, p, n) == (ssize_t)n;
}

static bool raw_frame(int s, Parley__ClientFrame *f)
{
	uint8_t buf[4096];
	size_t n;
	return pl_frame_encode(&f->base, buf, sizeof(buf), &n) == PL_OK &&
	       raw_send(s, buf, n);
}

static bool raw_hello(hx_cluster *c, int s)
{
	Parley__ClientFrame f;
	Parley__Hello h;
	parley__client_frame__init(&f);
	parley__hello__init(&h);
	h.token =
	    (char *)hx_token(c, "acme", "raw", PARLEY__ROLE__AGENT, 60, "");
	f.id = 1;
	f.body_case = PARLEY__CLIENT_FRAME__BODY_HELLO;
	f.hello = &h;
	return raw_frame(s, &f);
}

/* What the server sent until it closed or timeout_ms of silence. */
typedef struct seen {
	int frames, errors, goodbyes, welcomes;
	int last_error_code, goodbye_code;
	uint64_t last_error_id;
	char goodbye_reason[128];
	bool closed;
} seen;

static void raw_read(int s, int timeout_ms, seen *out)
{
	static uint8_t buf[1 << 20];
	size_t len = 0;
	memset(out, 0, sizeof(*out));
	for (;;) {
		struct pollfd p = {.fd = s, .events = POLLIN};
		if (poll(&p, 1, timeout_ms) <= 0)
			return;
		ssize_t r = read(s, buf + len, sizeof(buf) - len);
		if (r <= 0) {
			out->closed = true;
			return;
		}
		len += (size_t)r;
		size_t n;
		while (pl_frame_peek(buf, len, sizeof(buf), &n) == PL_OK) {
			pl_arena a;
			Parley__ServerFrame *f;
			pl_arena_init(&a, NULL, PL_ARENA_BYTES_FOR(n));
			if (pl_server_frame_decode(
			        buf + 4, n, sizeof(buf), &a, &f) == PL_OK) {
				out->frames++;
				if (f->body_case ==
				    PARLEY__SERVER_FRAME__BODY_ERROR) {
					out->errors++;
					out->last_error_code = f->error->code;
					out->last_error_id = f->id;
				} else if (f->body_case ==
				           PARLEY__SERVER_FRAME__BODY_GOODBYE) {
					out->goodbyes++;
					out->goodbye_code = f->goodbye->code;
					snprintf(out->goodbye_reason,
					    sizeof(out->goodbye_reason), "%s",
					    f->goodbye->reason);
				} else if (f->body_case ==
				           PARLEY__SERVER_FRAME__BODY_WELCOME) {
					out->welcomes++;
				}
			}
			pl_arena_fini(&a);
			memmove(buf, buf + 4 + n, len - 4 - n);
			len -= 4 + n;
		}
	}
}

/* The gateway still serves a well-behaved client. */
static bool still_serving(hx_cluster *c)
{
	parley_conn *conn =
	    hx_client(c, false, "acme", "probe", PARLEY__ROLE__SERVICE);
	if (conn == NULL)
		return false;
	pl_status st = parley_ping(conn, T, NULL, NULL);
	parley_close(conn);
	return st == PL_OK;
}

TEST(test_bad_input_oversized_frame_header_closes_with_reason)
{
	hx_cluster c;
	seen r;
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	int s = hx_raw_connect(&c);
	CHECK(s >= 0);
	CHECK(raw_hello(&c, s));
	const uint8_t huge[4] = {0x7f, 0xff, 0xff, 0xff};
	CHECK(raw_send(s, huge, 4));
	raw_read(s, T, &r);
	close(s);
	CHECK(r.closed);
	CHECK_EQ(r.goodbyes, 1);
	CHECK_EQ(r.goodbye_code, PARLEY__ERROR_CODE__TOO_LARGE);
	CHECK(still_serving(&c));
	hx_fini(&c, false);
}

TEST(test_bad_input_zero_length_frame_closes)
{
	hx_cluster c;
	seen r;
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	int s = hx_raw_connect(&c);
	CHECK(s >= 0);
	const uint8_t zero[4] = {0, 0, 0, 0};
	CHECK(raw_send(s, zero, 4));
	raw_read(s, T, &r);
	close(s);
	CHECK(r.closed);
	CHECK(still_serving(&c));
	hx_fini(&c, false);
}

TEST(test_bad_input_garbage_payload_gets_bad_request)
{
	hx_cluster c;
	seen r;
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	int s = hx_raw_connect(&c);
	CHECK(s >= 0);
	CHECK(raw_hello(&c, s));
	const uint8_t junk[] = {0, 0, 0, 6, 0xff, 0xfe, 0x0a, 0x99, 0x01, 0x02};
	CHECK(raw_send(s, junk, sizeof(junk)));
	raw_read(s, 500, &r);
	close(s);
	CHECK_EQ(r.welcomes, 1);
	CHECK_GE(r.errors + r.goodbyes, 1);
	if (r.errors > 0)
		CHECK_EQ(r.last_error_code, PARLEY__ERROR_CODE__BAD_REQUEST);
	CHECK(still_serving(&c));
	hx_fini(&c, false);
}

TEST(test_bad_input_truncated_frame_then_close)
{
	hx_cluster c;
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	for (int i = 0; i < 20; i++) {
		int s = hx_raw_connect(&c);
		CHECK(s >= 0);
		const uint8_t part[] = {0, 0, 0, 100, 0x08, 0x01, 0x12};
		CHECK(raw_send(s, part, 3 + (size_t)(i % 5)));
		close(s);
	}
	CHECK(still_serving(&c));
	hx_fini(&c, false);
}

TEST(test_bad_input_body_over_limit_is_too_large)
{
	hx_cluster c;
	char room[17];
	static char body[20000];
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	CHECK_EQ(parley_create_room(svc, NULL, NULL, 0, T, room, NULL), PL_OK);
	memset(body, 'x', sizeof(body));
	CHECK_EQ(parley_publish(svc, room, "big", PARLEY__KIND__TEXT, body,
	             sizeof(body), T, NULL),
	    PL_E_TOO_LARGE);
	parley_ack a;
	CHECK_EQ(parley_publish(
	             svc, room, "ok", PARLEY__KIND__TEXT, body, 1000, T, &a),
	    PL_OK);
	CHECK_EQ(a.seq, 1); /* the refused one took no seq */
	parley_close(svc);
	hx_fini(&c, false);
}

TEST(test_bad_input_rate_limit_refuses_excess_loses_nothing)
{
	hx_cluster c;
	char room[17];
	CHECK(hx_init(&c, 1));
	snprintf(c.gw_extra, sizeof(c.gw_extra), "publish_per_sec = 10\n");
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	CHECK_EQ(parley_create_room(svc, NULL, NULL, 0, T, room, NULL), PL_OK);
	for (int i = 0; i < 100; i++) {
		char id[16];
		uint64_t rid;
		snprintf(id, sizeof(id), "r%d", i);
		CHECK_EQ(parley_publish_send(svc, room, id, PARLEY__KIND__TEXT,
		             "x", 1, (uint64_t)i, &rid),
		    PL_OK);
	}
	int acked = 0, limited = 0;
	uint64_t max_seq = 0;
	for (int i = 0; i < 100; i++) {
		parley_completion comp;
		CHECK_EQ(parley_collect(svc, 5000000, &comp), PL_OK);
		if (comp.status == PL_OK) {
			parley_ack a;
			CHECK_EQ(parley_ack_from(comp.reply, &a), PL_OK);
			acked++;
			max_seq = a.seq > max_seq ? a.seq : max_seq;
		} else {
			CHECK_EQ(comp.status, PL_E_RATE_LIMITED);
			limited++;
		}
		parley_frame_free(comp.reply);
	}
	CHECK_GT(limited, 0);
	CHECK_GT(acked, 0);
	CHECK_EQ(max_seq, (uint64_t)acked); /* every ack is a stored seq */
	parley_close(svc);
	hx_fini(&c, false);
}

TEST(test_bad_input_subscriptions_over_max_refused)
{
	hx_cluster c;
	char rooms[3][17];
	CHECK(hx_init(&c, 1));
	snprintf(c.gw_extra, sizeof(c.gw_extra), "subscriptions_max = 2\n");
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(
		    parley_create_room(svc, NULL, NULL, 0, T, rooms[i], NULL),
		    PL_OK);
	CHECK_EQ(parley_subscribe(svc, rooms[0], 0, T, NULL), PL_OK);
	CHECK_EQ(parley_subscribe(svc, rooms[1], 0, T, NULL), PL_OK);
	CHECK(parley_subscribe(svc, rooms[2], 0, T, NULL) != PL_OK);
	CHECK_EQ(parley_unsubscribe(svc, rooms[0], T), PL_OK);
	CHECK_EQ(parley_subscribe(svc, rooms[2], 0, T, NULL), PL_OK);
	parley_close(svc);
	hx_fini(&c, false);
}

TEST(test_bad_input_idle_connection_closed_with_reason)
{
	hx_cluster c;
	seen r;
	CHECK(hx_init(&c, 1));
	snprintf(c.gw_extra, sizeof(c.gw_extra), "idle_ms = 300\n");
	CHECK(hx_start(&c));
	int s = hx_raw_connect(&c);
	CHECK(s >= 0);
	CHECK(raw_hello(&c, s));
	raw_read(s, 3000, &r);
	close(s);
	CHECK(r.closed);
	CHECK_EQ(r.goodbyes, 1);
	CHECK(strstr(r.goodbye_reason, "idle") != NULL);
	hx_fini(&c, false);
}

/* fault: a subscriber that never reads its socket while a room floods.
 * invariant: the gateway closes it as a slow consumer (other clients are
 * unaffected) and it can resume from its last seq with nothing lost. */
TEST(test_bad_input_slow_consumer_closed_and_resumes)
{
	hx_cluster c;
	char room[17];
	static char body[8000];
	CHECK(hx_init(&c, 1));
	snprintf(c.gw_extra, sizeof(c.gw_extra),
	    "send_queue_bytes_max = 65536\npublish_per_sec = 100000\n");
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	CHECK_EQ(parley_create_room(svc, NULL, NULL, 0, T, room, NULL), PL_OK);
	int s = hx_raw_connect(&c);
	CHECK(s >= 0);
	CHECK(raw_hello(&c, s));
	Parley__ClientFrame f;
	Parley__Subscribe sub;
	parley__client_frame__init(&f);
	parley__subscribe__init(&sub);
	sub.room = room;
	f.id = 2;
	f.body_case = PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE;
	f.subscribe = &sub;
	CHECK(raw_frame(s, &f));
	usleep(200000);
	memset(body, 'z', sizeof(body));
	/* 24 MB: more than the loopback socket buffers of both ends hold
	 * (tcp_wmem and tcp_rmem maxima, 4 and 6 MiB by default). */
	for (int i = 0; i < 3000; i++) {
		char id[16];
		snprintf(id, sizeof(id), "f%d", i);
		CHECK_EQ(parley_publish(svc, room, id, PARLEY__KIND__TEXT, body,
		             sizeof(body), T, NULL),
		    PL_OK);
	}
	seen r;
	raw_read(s, 3000, &r);
	close(s);
	CHECK(r.closed);
	char text[65536];
	CHECK_EQ(hx_http_get(c.http_port, "/metrics", text, sizeof(text)), 200);
	const char *m = strstr(text, "\nparley_gateway_slow_consumers_total");
	CHECK(m != NULL);
	CHECK(strtol(strchr(m + 1, ' ') + 1, NULL, 10) >= 1);
	/* Resume: everything is there, in order. */
	parley_conn *again =
	    hx_client(&c, false, "acme", "raw", PARLEY__ROLE__AGENT);
	CHECK(again != NULL);
	CHECK_EQ(parley_subscribe(again, room, 0, T, NULL), PL_OK);
	for (uint64_t want = 1; want <= 3000; want++)
		CHECK_EQ(hx_next_message(again, room, T, NULL, 0), want);
	parley_close(again);
	parley_close(svc);
	hx_fini(&c, false);
}

/* fault: random bytes (seeded) from many connections, some with valid
 * length prefixes around garbage payloads, some after a valid hello;
 * invariant: the gateway never crashes and keeps serving. */
TEST(test_bad_input_random_bytes_never_crash_the_gateway)
{
	hx_cluster c;
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	uint64_t x = 0x9E3779B97F4A7C15ull; /* fixed seed: replayable */
	for (int i = 0; i < 200; i++) {
		int s = hx_raw_connect(&c);
		CHECK(s >= 0);
		if (i % 3 == 0)
			CHECK(raw_hello(&c, s));
		uint8_t buf[2048];
		size_t n = 16 + (size_t)(i * 37 % 2000);
		for (size_t k = 0; k < n; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[k] = (uint8_t)x;
		}
		if (i % 2 == 0) { /* a plausible length, garbage inside */
			uint32_t len = (uint32_t)(n - 4);
			buf[0] = (uint8_t)(len >> 24);
			buf[1] = (uint8_t)(len >> 16);
			buf[2] = (uint8_t)(len >> 8);
			buf[3] = (uint8_t)len;
		}
		(void)raw_send(s, buf, n);
		close(s);
	}
	CHECK(still_serving(&c));
	hx_fini(&c, false);
}
