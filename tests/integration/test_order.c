/*
 * test_order.c - a connection's publishes to a room are stored in the
 * order it sent them (internals.md "Request order"), whatever the
 * gateway's batching over several broker contexts, leader changes and
 * resends.
 *   load: 2 shard groups of 3 replicas; 4 connections (2 TCP, 2
 *   WebSocket), each pipelining thousands of publishes round-robin over
 *   6 rooms of both groups, hundreds in flight;
 *   fault: kill -9 of group 1's leader mid-burst (restarted later), then
 *   kill -9 of the gateway and a new one on the same ports; the senders
 *   reconnect and send again, in order, what was not acknowledged;
 *   invariant: in every room, each connection's messages appear in send
 *   order, each once, and every acknowledged publish is there at its
 *   acked seq.
 */
#define CHECK_MAIN
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 10000
#define SENDERS 4
#define ROOMS 6
#define PER_GROUP (ROOMS / 2)
#define PUBS 3000
#define DEPTH 256
/* A sender gives up after this long: a stalled cluster fails the test. */
#define SENDER_US (180 * 1000000LL)

typedef struct sender {
	hx_cluster *c;
	int idx;
	bool ws;
	char (*rooms)[PL_ROOM_ID_CHARS + 1];
	parley_conn *conn;
	uint8_t state[PUBS]; /* 0 to send, 1 in flight, 2 acked */
	uint64_t seq[PUBS];
	_Atomic int acked;
	int reconnects;
	char error[200];
	pthread_t th;
} sender;

static int room_of(int i)
{
	return i % ROOMS;
}

static bool sender_connect(sender *s, int64_t end)
{
	char user[16];
	snprintf(user, sizeof(user), "s%d", s->idx);
	parley_close(s->conn);
	s->conn = NULL;
	while (pl_mono_us() < end) {
		s->conn =
		    hx_client(s->c, s->ws, "acme", user, PARLEY__ROLE__SERVICE);
		if (s->conn != NULL)
			return true;
		usleep(20000);
	}
	snprintf(s->error, sizeof(s->error), "sender %d: no reconnect", s->idx);
	return false;
}

/* The connection is gone: what was in flight is unknown, so it is sent
 * again, in order, from the first publish not acknowledged. */
static int sender_reset(sender *s)
{
	int first = PUBS;
	for (int i = PUBS - 1; i >= 0; i--) {
		if (s->state[i] == 1)
			s->state[i] = 0;
		if (s->state[i] != 2)
			first = i;
	}
	s->reconnects++;
	return first;
}

static bool sender_send(sender *s, int i)
{
	char id[32], body[64];
	snprintf(id, sizeof(id), "C%d-%d", s->idx, i);
	int n = snprintf(body, sizeof(body), "sender %d publish %d", s->idx, i);
	uint64_t rid;
	pl_status st = parley_publish_send(s->conn, s->rooms[room_of(i)], id,
	    PARLEY__KIND__TEXT, body, (size_t)n, (uint64_t)i, &rid);
	if (st == PL_OK)
		s->state[i] = 1;
	return st == PL_OK;
}

/* False when the connection is gone; a refused publish fails the test:
 * the gateway hides failovers, so nothing here is refused. */
static bool sender_collect(sender *s)
{
	parley_completion cp;
	pl_status st = parley_collect(s->conn, 50000, &cp);
	if (st == PL_E_TIMEOUT)
		return true;
	if (st != PL_OK)
		return false;
	int i = (int)cp.tag;
	parley_ack a;
	if (cp.status != PL_OK || parley_ack_from(cp.reply, &a) != PL_OK) {
		if (s->error[0] == '\0')
			snprintf(s->error, sizeof(s->error),
			    "sender %d: publish %d: %s (code %d)", s->idx, i,
			    pl_strerror(cp.status), cp.code);
		parley_frame_free(cp.reply);
		return true;
	}
	parley_frame_free(cp.reply);
	if (s->state[i] == 1) {
		s->state[i] = 2;
		s->seq[i] = a.seq;
		atomic_fetch_add(&s->acked, 1);
	}
	return true;
}

static void *sender_main(void *arg)
{
	sender *s = arg;
	int64_t end = pl_mono_us() + SENDER_US;
	int next = 0;
	while (s->error[0] == '\0' && atomic_load(&s->acked) < PUBS &&
	       pl_mono_us() < end) {
		bool up = !parley_is_closed(s->conn);
		while (up && next < PUBS &&
		       (int)parley_inflight(s->conn) < DEPTH) {
			if (s->state[next] == 0 && !sender_send(s, next)) {
				up = false;
				break;
			}
			next++;
		}
		if (up && sender_collect(s))
			continue;
		/* Gone: drain nothing more from it, start again. */
		next = sender_reset(s);
		if (!sender_connect(s, end))
			break;
	}
	if (atomic_load(&s->acked) < PUBS && s->error[0] == '\0')
		snprintf(s->error, sizeof(s->error),
		    "sender %d: %d of %d acked", s->idx, atomic_load(&s->acked),
		    PUBS);
	return NULL;
}

static int acked_total(sender *s)
{
	int n = 0;
	for (int k = 0; k < SENDERS; k++)
		n += atomic_load(&s[k].acked);
	return n;
}

/* Waits until the senders together have `n` acks (or one gave up). */
static void wait_acked(sender *s, int n)
{
	int64_t end = pl_mono_us() + SENDER_US;
	while (acked_total(s) < n && pl_mono_us() < end)
		usleep(5000);
}

/* Rooms on both groups: creates with fresh keys until each group has
 * PER_GROUP (the gateway places a keyed create by its key's hash). */
static bool rooms_make(parley_conn *svc, char (*rooms)[PL_ROOM_ID_CHARS + 1])
{
	int have[3] = {0};
	for (int k = 0; k < 200 && have[1] + have[2] < ROOMS; k++) {
		char key[32], id[PL_ROOM_ID_CHARS + 1];
		snprintf(key, sizeof(key), "order-%d", k);
		if (parley_create_room(svc, key, NULL, 0, T, id, NULL) != PL_OK)
			return false;
		uint64_t r;
		if (pl_room_parse(id, &r) != PL_OK)
			return false;
		int g = pl_room_group(r);
		if (g < 1 || g > 2 || have[g] == PER_GROUP)
			continue;
		memcpy(rooms[(g - 1) * PER_GROUP + have[g]++], id, sizeof(id));
	}
	return have[1] == PER_GROUP && have[2] == PER_GROUP;
}

/* Checks one room's whole history against the senders' acks; counts
 * the room's messages into *seen. */
static bool room_check(parley_conn *svc, sender *s, int r, int *seen,
    uint8_t (*found)[PUBS], char *err, size_t cap)
{
	const char *room = s[0].rooms[r];
	int last[SENDERS];
	for (int k = 0; k < SENDERS; k++)
		last[k] = -1;
	uint64_t after = 0;
	for (;;) {
		parley_history_query q = {
		    .after_seq = after, .limit = 500, .oldest_first = true};
		Parley__ServerFrame *rep;
		if (hx_history_retry(svc, room, &q, &rep) != PL_OK) {
			snprintf(err, cap, "room %s: history failed", room);
			return false;
		}
		Parley__HistoryPage *h = rep->history;
		for (size_t j = 0; j < h->n_messages; j++) {
			Parley__Message *m = h->messages[j];
			int k = -1, i = -1;
			if (sscanf(m->client_msg_id, "C%d-%d", &k, &i) != 2 ||
			    k < 0 || k >= SENDERS || i < 0 || i >= PUBS ||
			    room_of(i) != r) {
				snprintf(err, cap, "room %s: stranger %s", room,
				    m->client_msg_id);
				parley_frame_free(rep);
				return false;
			}
			bool bad =
			    found[k][i] || i <= last[k] ||
			    (s[k].state[i] == 2 && s[k].seq[i] != m->seq);
			if (bad) {
				snprintf(err, cap,
				    "room %s: seq %llu is sender %d's publish "
				    "%d after its publish %d%s",
				    room, (unsigned long long)m->seq, k, i,
				    last[k], found[k][i] ? " (twice)" : "");
				parley_frame_free(rep);
				return false;
			}
			found[k][i] = 1;
			last[k] = i;
			after = m->seq;
			(*seen)++;
		}
		bool more = h->more;
		parley_frame_free(rep);
		if (!more)
			return true;
	}
}

static bool senders_start(
    hx_cluster *c, sender *s, char (*rooms)[PL_ROOM_ID_CHARS + 1])
{
	for (int k = 0; k < SENDERS; k++) {
		s[k].c = c;
		s[k].idx = k;
		s[k].ws = k % 2 == 1;
		s[k].rooms = rooms;
		if (!sender_connect(&s[k], pl_mono_us() + T * 1000LL) ||
		    pthread_create(&s[k].th, NULL, sender_main, &s[k]) != 0)
			return false;
	}
	return true;
}

TEST(test_order_per_connection_through_failover_and_gateway_restart)
{
	static hx_cluster c;
	static sender s[SENDERS];
	static uint8_t found[SENDERS][PUBS];
	char rooms[ROOMS][PL_ROOM_ID_CHARS + 1];
	CHECK(hx_init_replicated(&c, 2, 3));
	snprintf(c.broker_extra, sizeof(c.broker_extra),
	    "election_ms = 400\nheartbeat_ms = 50\n");
	snprintf(c.gw_extra, sizeof(c.gw_extra),
	    "publish_per_sec = 1000000\nbroker_queue_max = 1000000\n");
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "checker", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	CHECK(hx_leader(&c, svc, 1, T) > 0 && hx_leader(&c, svc, 2, T) > 0);
	CHECK(rooms_make(svc, rooms));
	CHECK(senders_start(&c, s, rooms));

	/* Mid-burst: group 1 loses its leader. */
	wait_acked(s, SENDERS * PUBS / 4);
	int leader = hx_leader(&c, svc, 1, T);
	CHECK(leader > 0);
	hx_kill(hx_replica(&c, 1, leader), SIGKILL);
	fprintf(stderr, "  killed group 1's leader (node %d) at %d acks\n",
	    leader, acked_total(s));
	wait_acked(s, SENDERS * PUBS / 2);
	CHECK(hx_start_replica(&c, 1, leader));

	/* Then the gateway dies with requests in flight; a new one starts
	 * on the same ports and the senders come back to it. */
	wait_acked(s, SENDERS * PUBS * 2 / 3);
	fprintf(stderr, "  gateway kill -9 at %d acks\n", acked_total(s));
	hx_kill(&c.gateway, SIGKILL);
	parley_close(svc);
	CHECK(hx_start_gateway(&c));
	svc = hx_client(&c, false, "acme", "checker", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);

	bool failed = false;
	for (int k = 0; k < SENDERS; k++) {
		pthread_join(s[k].th, NULL);
		if (s[k].error[0] != '\0') {
			fprintf(stderr, "  %s\n", s[k].error);
			failed = true;
		}
	}
	int seen = 0;
	char err[300] = "";
	for (int r = 0; !failed && r < ROOMS; r++) {
		if (!room_check(svc, s, r, &seen, found, err, sizeof(err))) {
			fprintf(stderr, "  %s\n", err);
			failed = true;
		}
	}
	int missing = 0;
	for (int k = 0; !failed && k < SENDERS; k++)
		for (int i = 0; i < PUBS; i++)
			missing += s[k].state[i] == 2 && !found[k][i];
	fprintf(stderr,
	    "  %d publishes acked, %d stored, %d acked ones missing, "
	    "reconnects %d %d %d %d\n",
	    acked_total(s), seen, missing, s[0].reconnects, s[1].reconnects,
	    s[2].reconnects, s[3].reconnects);
	for (int k = 0; k < SENDERS; k++)
		parley_close(s[k].conn);
	parley_close(svc);
	hx_fini(&c, failed || missing > 0);
	CHECK(!failed);
	CHECK_EQ(missing, 0);
	CHECK_EQ(seen, SENDERS * PUBS);
}
