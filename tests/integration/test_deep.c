/*
 * test_deep.c - commit rounds far larger than any internal buffer: a
 * real gateway and shard group (1 and 3 replicas) driven with thousands
 * of pipelined requests, the shapes that once crashed a broker (a round
 * whose proposals outgrew the proposal arena).
 *   load: few connections with thousands of publishes in flight each;
 *   many connections with hundreds each; bodies up to body_bytes_max;
 *   one connection mixing creates, joins, publishes, history and room
 *   info in one burst;
 *   fault: none injected — the depth itself is the fault;
 *   invariant: no server dies or logs a sanitizer report (the harness
 *   checks), every request is answered, only with success or a
 *   retryable overloaded/rate_limited/unavailable saying not_applied,
 *   and afterwards every acknowledged publish is in its room's history
 *   exactly once, at its acked seq, with its exact body.
 */
#define CHECK_MAIN
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 30000
#define LANES_MAX 48
#define ROOMS_PER_LANE 4
#define BODY_MAX PL_BODY_BYTES_DEFAULT
/* A lane gives up after this long: a stalled broker fails the test. */
#define LANE_US (120 * 1000000LL)

typedef struct lane {
	hx_cluster *c;
	parley_conn *conn;
	int idx;
	int npubs;  /* publishes this lane sends */
	int depth;  /* in flight at most */
	int sizes;  /* BODY_SMALL, BODY_MIXED or BODY_LARGEST */
	char rooms[ROOMS_PER_LANE][PL_ROOM_ID_CHARS + 1];
	uint8_t *state; /* 0 to send, 1 in flight, 2 acked */
	uint64_t *seq;  /* acked seq of each publish */
	int acked, retried, overloaded;
	char error[200];
	pthread_t th;
} lane;

/* Body sizes of a lane's publishes. */
enum { BODY_SMALL, BODY_MIXED, BODY_LARGEST };

/* Body of publish i of lane l: its id, then a pattern; small ones are
 * 200 bytes, mixed ones vary with every 37th at the gateway's maximum. */
static size_t make_body(int l, int i, int sizes, char *out)
{
	size_t n = sizes == BODY_LARGEST     ? BODY_MAX
	           : sizes == BODY_SMALL ? 200
	           : (i % 37 == 0)       ? BODY_MAX
	                                 : (size_t)(24 + (i * 131) % 900);
	int k = snprintf(out, 32, "L%d-%d:", l, i);
	for (size_t j = (size_t)k; j < n; j++)
		out[j] = (char)('a' + (j * 7 + (size_t)i) % 26);
	return n;
}

static bool retryable(const parley_completion *cp)
{
	return cp->code == PARLEY__ERROR_CODE__OVERLOADED ||
	       cp->code == PARLEY__ERROR_CODE__RATE_LIMITED ||
	       cp->code == PARLEY__ERROR_CODE__UNAVAILABLE;
}

static bool lane_send(lane *ln, int i, char *body)
{
	char id[32];
	snprintf(id, sizeof(id), "L%d-%d", ln->idx, i);
	size_t n = make_body(ln->idx, i, ln->sizes, body);
	uint64_t rid;
	pl_status st = parley_publish_send(ln->conn,
	    ln->rooms[i % ROOMS_PER_LANE], id, PARLEY__KIND__TEXT, body, n,
	    (uint64_t)i, &rid);
	if (st != PL_OK) {
		snprintf(ln->error, sizeof(ln->error), "lane %d: send %d: %s",
		    ln->idx, i, pl_strerror(st));
		return false;
	}
	ln->state[i] = 1;
	return true;
}

static bool lane_collect(lane *ln, int64_t wait_us)
{
	parley_completion cp;
	pl_status st = parley_collect(ln->conn, wait_us, &cp);
	if (st == PL_E_TIMEOUT)
		return true;
	if (st != PL_OK) {
		snprintf(ln->error, sizeof(ln->error), "lane %d: collect: %s",
		    ln->idx, pl_strerror(st));
		return false;
	}
	int i = (int)cp.tag;
	if (cp.status == PL_OK) {
		parley_ack a;
		pl_status ast = parley_ack_from(cp.reply, &a);
		parley_frame_free(cp.reply);
		if (ast != PL_OK || ln->state[i] != 1) {
			snprintf(ln->error, sizeof(ln->error),
			    "lane %d: publish %d: bad ack", ln->idx, i);
			return false;
		}
		ln->state[i] = 2;
		ln->seq[i] = a.seq;
		ln->acked++;
		return true;
	}
	if (retryable(&cp)) {
		ln->state[i] = 0; /* same client_msg_id: stored at most once */
		ln->retried++;
		ln->overloaded += cp.code == PARLEY__ERROR_CODE__OVERLOADED;
		usleep(50); /* a refusal is instant: do not spin on it */
		return true;
	}
	snprintf(ln->error, sizeof(ln->error), "lane %d: publish %d: %s (%d)",
	    ln->idx, i, pl_strerror(cp.status), cp.code);
	return false;
}

static void *lane_main(void *arg)
{
	lane *ln = arg;
	char *body = malloc(BODY_MAX + 1);
	int64_t end = pl_mono_us() + LANE_US;
	int next = 0;
	while (body != NULL && ln->acked < ln->npubs && pl_mono_us() < end) {
		/* Fill the pipe, taking up what a refusal handed back. */
		while ((int)parley_inflight(ln->conn) < ln->depth) {
			while (next < ln->npubs && ln->state[next] != 0)
				next++;
			if (next == ln->npubs) {
				next = 0;
				while (next < ln->npubs && ln->state[next] != 0)
					next++;
				if (next == ln->npubs)
					break;
			}
			if (!lane_send(ln, next, body))
				goto out;
		}
		if (!lane_collect(ln, 50000))
			goto out;
	}
	if (ln->acked < ln->npubs && ln->error[0] == '\0')
		snprintf(ln->error, sizeof(ln->error),
		    "lane %d: %d of %d acked in time", ln->idx, ln->acked,
		    ln->npubs);
out:
	free(body);
	return NULL;
}

/*
 * Another tenant's traffic while a lane floods: one publish at a time
 * from globex, each answered. A bystander may be told overloaded (the
 * gateway's link to the group is shared) but must not stall: it runs
 * until the flood ends and every publish it sent is acknowledged.
 */
typedef struct bystander {
	hx_cluster *c;
	atomic_bool stop;
	int acked, refused;
	int64_t worst_us;
	char error[200];
	pthread_t th;
} bystander;

static void *bystander_main(void *arg)
{
	bystander *b = arg;
	parley_conn *conn =
	    hx_client(b->c, false, "globex", "calm", PARLEY__ROLE__SERVICE);
	char room[PL_ROOM_ID_CHARS + 1];
	if (conn == NULL ||
	    parley_create_room(conn, NULL, NULL, 0, T, room, NULL) != PL_OK) {
		snprintf(b->error, sizeof(b->error), "bystander: set-up failed");
		parley_close(conn);
		return NULL;
	}
	int64_t end = pl_mono_us() + LANE_US;
	while (!atomic_load(&b->stop) && pl_mono_us() < end) {
		char id[32], body[64];
		snprintf(id, sizeof(id), "calm-%d", b->acked);
		int n = snprintf(body, sizeof(body), "bystander %d", b->acked);
		int64_t t0 = pl_mono_us();
		uint64_t rid;
		parley_completion cp;
		pl_status st = parley_publish_send(conn, room, id,
		    PARLEY__KIND__TEXT, body, (size_t)n, 0, &rid);
		if (st == PL_OK)
			st = parley_collect(conn, (int64_t)T * 1000, &cp);
		if (st != PL_OK) {
			snprintf(b->error, sizeof(b->error), "bystander: %s",
			    pl_strerror(st));
			break;
		}
		parley_frame_free(cp.reply);
		if (cp.status != PL_OK && !retryable(&cp)) {
			snprintf(b->error, sizeof(b->error),
			    "bystander: publish %d: %s", b->acked,
			    pl_strerror(cp.status));
			break;
		}
		if (cp.status == PL_OK) {
			b->acked++;
			int64_t d = pl_mono_us() - t0;
			b->worst_us = d > b->worst_us ? d : b->worst_us;
		} else {
			b->refused++;
			usleep(1000);
		}
	}
	parley_close(conn);
	return NULL;
}

/* Pages through room's history oldest-first and checks it against the
 * acks of the lane that owns it. */
static bool check_room(lane *ln, int r, char *err, size_t cap)
{
	const char *room = ln->rooms[r];
	int expect = 0;
	for (int i = r; i < ln->npubs; i += ROOMS_PER_LANE)
		expect++;
	char *want = malloc(BODY_MAX + 1);
	uint64_t after = 0;
	int seen = 0;
	bool ok = want != NULL;
	while (ok) {
		parley_history_query q = {
		    .after_seq = after, .limit = 200, .oldest_first = true};
		Parley__ServerFrame *rep;
		if (hx_history_retry(ln->conn, room, &q, &rep) != PL_OK) {
			snprintf(err, cap, "room %s: history failed", room);
			ok = false;
			break;
		}
		Parley__HistoryPage *h = rep->history;
		for (size_t k = 0; ok && k < h->n_messages; k++) {
			Parley__Message *m = h->messages[k];
			int l = -1, i = -1;
			if (sscanf(m->client_msg_id, "L%d-%d", &l, &i) != 2 ||
			    l != ln->idx || i < 0 || i >= ln->npubs ||
			    i % ROOMS_PER_LANE != r) {
				snprintf(err, cap, "room %s: stranger %s", room,
				    m->client_msg_id);
				ok = false;
				break;
			}
			size_t n = make_body(l, i, ln->sizes, want);
			if (ln->state[i] != 2 || ln->seq[i] != m->seq ||
			    m->body.len != n ||
			    memcmp(m->body.data, want, n) != 0) {
				snprintf(err, cap,
				    "room %s: seq %llu (%s) is not the ack "
				    "(acked seq %llu)",
				    room, (unsigned long long)m->seq,
				    m->client_msg_id,
				    (unsigned long long)ln->seq[i]);
				ok = false;
				break;
			}
			ln->state[i] = 3; /* seen once */
			after = m->seq;
			seen++;
		}
		bool more = h->more && h->n_messages > 0;
		parley_frame_free(rep);
		if (!more)
			break;
	}
	if (ok && seen != expect) {
		snprintf(err, cap, "room %s: %d messages, %d acked", room, seen,
		    expect);
		ok = false;
	}
	free(want);
	return ok;
}

/* Runs nlanes connections, each with npubs publishes over its own
 * rooms at most depth in flight, and checks every room. */
static bool run_lanes(hx_cluster *c, int nlanes, int npubs, int depth,
    int sizes, int *overloaded, char *err, size_t cap)
{
	static lane lanes[LANES_MAX];
	static bystander by;
	bool ok = true;
	parley_conn *svc = hx_client(c, false, "acme", "deep", PARLEY__ROLE__SERVICE);
	if (svc == NULL) {
		snprintf(err, cap, "no service connection");
		return false;
	}
	for (int l = 0; l < nlanes; l++) {
		lane *ln = &lanes[l];
		memset(ln, 0, sizeof(*ln));
		ln->c = c;
		ln->idx = l;
		ln->npubs = npubs;
		ln->depth = depth;
		ln->sizes = sizes;
		ln->state = calloc((size_t)npubs, 1);
		ln->seq = calloc((size_t)npubs, sizeof(*ln->seq));
		ln->conn = hx_client(c, l % 2 == 1, "acme", "deep",
		    PARLEY__ROLE__SERVICE);
		for (int r = 0; ln->conn && r < ROOMS_PER_LANE; r++)
			if (parley_create_room(svc, NULL, NULL, 0, T,
			        ln->rooms[r], NULL) != PL_OK)
				ln->conn = NULL; /* leaked on failure: test ends */
		if (ln->conn == NULL || ln->state == NULL || ln->seq == NULL) {
			snprintf(err, cap, "lane %d: set-up failed", l);
			return false;
		}
	}
	memset(&by, 0, sizeof(by));
	by.c = c;
	pthread_create(&by.th, NULL, bystander_main, &by);
	for (int l = 0; l < nlanes; l++)
		pthread_create(&lanes[l].th, NULL, lane_main, &lanes[l]);
	int retried = 0;
	*overloaded = 0;
	for (int l = 0; l < nlanes; l++) {
		pthread_join(lanes[l].th, NULL);
		retried += lanes[l].retried;
		*overloaded += lanes[l].overloaded;
		if (ok && lanes[l].error[0] != '\0') {
			snprintf(err, cap, "%s", lanes[l].error);
			ok = false;
		}
	}
	atomic_store(&by.stop, true);
	pthread_join(by.th, NULL);
	if (ok && by.error[0] != '\0') {
		snprintf(err, cap, "%s", by.error);
		ok = false;
	}
	if (ok && by.acked == 0) {
		snprintf(err, cap, "bystander: no publish acked during the flood");
		ok = false;
	}
	fprintf(stderr,
	    "    %d connections x %d publishes (%s bodies), %d in flight "
	    "each: %d refusals retried (%d overloaded); another tenant: "
	    "%d acked one at a time, %d refused, slowest %.1f ms\n",
	    nlanes, npubs,
	    sizes == BODY_SMALL ? "small" : sizes == BODY_LARGEST ? "max" : "mixed",
	    depth, retried, *overloaded, by.acked, by.refused,
	    (double)by.worst_us / 1000.0);
	for (int l = 0; ok && l < nlanes; l++)
		for (int r = 0; ok && r < ROOMS_PER_LANE; r++)
			ok = check_room(&lanes[l], r, err, cap);
	for (int l = 0; l < nlanes; l++) {
		parley_close(lanes[l].conn);
		free(lanes[l].state);
		free(lanes[l].seq);
	}
	parley_close(svc);
	return ok;
}

/* One burst on one connection mixing every kind of write and read:
 * N creates (idempotency keys), joins, publishes, history pages and
 * room infos, interleaved, all in flight at once. */
static bool run_mixed(hx_cluster *c, int n, char *err, size_t cap)
{
	parley_conn *conn =
	    hx_client(c, false, "acme", "mixer", PARLEY__ROLE__SERVICE);
	char room[PL_ROOM_ID_CHARS + 1];
	if (conn == NULL ||
	    parley_create_room(conn, NULL, NULL, 0, T, room, NULL) != PL_OK) {
		snprintf(err, cap, "mixed: set-up failed");
		parley_close(conn);
		return false;
	}
	char (*created)[PL_ROOM_ID_CHARS + 1] = calloc((size_t)n, sizeof(*created));
	uint8_t *pub_ok = calloc((size_t)n, 1);
	int answered = 0, sent = 0, bad = 0;
	char key[32], cmid[32], body[64];
	for (int i = 0; created && pub_ok && i < n; i++) {
		Parley__ClientFrame f = PARLEY__CLIENT_FRAME__INIT;
		Parley__CreateRoom cr = PARLEY__CREATE_ROOM__INIT;
		Parley__Join j = PARLEY__JOIN__INIT;
		Parley__History h = PARLEY__HISTORY__INIT;
		Parley__RoomInfoRequest ri = PARLEY__ROOM_INFO_REQUEST__INIT;
		uint64_t id;
		int kind = i % 5;
		if (kind == 0) {
			snprintf(key, sizeof(key), "mix-%d", i);
			cr.idempotency_key = key;
			f.body_case = PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM;
			f.create_room = &cr;
		} else if (kind == 1) {
			j.room = room;
			f.body_case = PARLEY__CLIENT_FRAME__BODY_JOIN;
			f.join = &j;
		} else if (kind == 2) {
			snprintf(cmid, sizeof(cmid), "mix-%d", i);
			int bl = snprintf(body, sizeof(body), "mixed %d", i);
			if (parley_publish_send(conn, room, cmid,
			        PARLEY__KIND__TEXT, body, (size_t)bl,
			        (uint64_t)i, &id) == PL_OK)
				sent++;
			continue;
		} else if (kind == 3) {
			h.room = room;
			h.limit = 50;
			f.body_case = PARLEY__CLIENT_FRAME__BODY_HISTORY;
			f.history = &h;
		} else {
			ri.room = room;
			f.body_case = PARLEY__CLIENT_FRAME__BODY_ROOM_INFO;
			f.room_info = &ri;
		}
		if (parley_send(conn, &f, (uint64_t)i, &id) == PL_OK)
			sent++;
	}
	while (answered < sent) {
		parley_completion cp;
		if (parley_collect(conn, 20 * 1000000LL, &cp) != PL_OK)
			break;
		answered++;
		int i = (int)cp.tag;
		if (cp.status != PL_OK) {
			if (!retryable(&cp))
				bad++;
			continue;
		}
		if (i % 5 == 0 && cp.reply->body_case ==
		                      PARLEY__SERVER_FRAME__BODY_ROOM_CREATED)
			snprintf(created[i], sizeof(created[i]), "%s",
			    cp.reply->room_created->room);
		if (i % 5 == 2 &&
		    cp.reply->body_case == PARLEY__SERVER_FRAME__BODY_ACK)
			pub_ok[i] = 1;
		parley_frame_free(cp.reply);
	}
	bool ok = created && pub_ok && sent == n && answered == sent && bad == 0;
	if (!ok)
		snprintf(err, cap, "mixed: sent %d of %d, answered %d, %d bad",
		    sent, n, answered, bad);
	/* A created room is distinct, and a retried key names it again. */
	for (int i = 0; ok && i < n; i += 5) {
		if (created[i][0] == '\0')
			continue;
		for (int k = 0; ok && k < i; k += 5)
			if (strcmp(created[k], created[i]) == 0) {
				snprintf(err, cap, "mixed: room %s twice",
				    created[i]);
				ok = false;
			}
		char again[PL_ROOM_ID_CHARS + 1];
		bool existed = false;
		snprintf(key, sizeof(key), "mix-%d", i);
		if (ok && (parley_create_room(conn, key, NULL, 0, T, again,
		                &existed) != PL_OK ||
		              strcmp(again, created[i]) != 0 || !existed)) {
			snprintf(err, cap, "mixed: key %s not idempotent", key);
			ok = false;
		}
	}
	/* Every acknowledged publish is in history once. */
	int acked = 0, found = 0;
	for (int i = 2; ok && i < n; i += 5)
		acked += pub_ok[i];
	uint64_t after = 0;
	while (ok) {
		parley_history_query q = {
		    .after_seq = after, .limit = 500, .oldest_first = true};
		Parley__ServerFrame *rep;
		if (hx_history_retry(conn, room, &q, &rep) != PL_OK) {
			snprintf(err, cap, "mixed: history failed");
			ok = false;
			break;
		}
		for (size_t k = 0; k < rep->history->n_messages; k++) {
			Parley__Message *m = rep->history->messages[k];
			int i = -1;
			if (sscanf(m->client_msg_id, "mix-%d", &i) == 1 &&
			    i >= 0 && i < n && pub_ok[i] == 1) {
				pub_ok[i] = 2;
				found++;
			}
			after = m->seq;
		}
		bool more = rep->history->more && rep->history->n_messages;
		parley_frame_free(rep);
		if (!more)
			break;
	}
	if (ok && found != acked) {
		snprintf(err, cap, "mixed: %d acked, %d in history", acked,
		    found);
		ok = false;
	}
	fprintf(stderr, "    mixed burst of %d: %d publishes acked\n", n,
	    acked);
	free(created);
	free(pub_ok);
	parley_close(conn);
	return ok;
}

static bool start(hx_cluster *c, int replicas)
{
	bool ok = replicas > 1 ? hx_init_replicated(c, 1, replicas)
	                       : hx_init(c, 1);
	if (!ok)
		return false;
	snprintf(c->gw_extra, sizeof(c->gw_extra),
	    "publish_per_sec = 1000000\n");
	return hx_start(c);
}

static void deep(int *check_failed_, int replicas)
{
	hx_cluster c;
	CHECK(start(&c, replicas));
	char err[256] = "";
	int over = 0;
	/* Few connections, the gateway's per-connection bound crossed:
	 * past GW_CONN_INFLIGHT_MAX the answer is overloaded. */
	bool ok = run_lanes(
	    &c, 4, 8000, 3000, BODY_SMALL, &over, err, sizeof(err));
	if (ok && over == 0) {
		snprintf(err, sizeof(err),
		    "3000 in flight per connection: never told overloaded");
		ok = false;
	}
	if (ok)
		ok = run_lanes(
		    &c, 2, 3000, 2000, BODY_MIXED, &over, err, sizeof(err));
	if (ok) /* rounds of the largest bodies */
		ok = run_lanes(
		    &c, 4, 600, 600, BODY_LARGEST, &over, err, sizeof(err));
	if (ok) /* many connections */
		ok = run_lanes(&c, LANES_MAX, 500, 500, BODY_SMALL, &over, err,
		    sizeof(err));
	if (ok)
		ok = run_mixed(&c, 1000, err, sizeof(err));
	if (!ok)
		fprintf(stderr, "    %s\n", err);
	hx_fini(&c, !ok);
	CHECK(ok);
}

TEST(test_deep_rounds_one_replica)
{
	deep(check_failed_, 1);
}

TEST(test_deep_rounds_three_replicas)
{
	deep(check_failed_, 3);
}
