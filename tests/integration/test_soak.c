/*
 * test_soak.c - churn against a real gateway and two brokers, bounded in
 * time: threads connect over TCP and WebSocket, subscribe and unsubscribe,
 * publish with client_msg_ids (some retried), type, read, and drop their
 * connections abruptly, some with requests in flight.
 *   invariant: no server crashes or logs a sanitizer report (checked by
 *   the harness), every acknowledged publish is in its room's history
 *   exactly once, in seq order, and the gateway still serves at the end.
 */
#define CHECK_MAIN
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 3000
#define ROOMS 6
#define THREADS 6
#define SOAK_US (8 * 1000000LL)
#define ACKED_MAX 20000

typedef struct soak {
	hx_cluster *c;
	char rooms[ROOMS][17];
	pthread_mutex_t mu;
	char (*acked)[24]; /* client_msg_ids acknowledged */
	int nacked;
	_Atomic int errors; /* unexpected failures */
} soak;

typedef struct worker {
	soak *s;
	int id;
	uint64_t rnd;
} worker;

static uint32_t next_rnd(worker *w)
{
	w->rnd ^= w->rnd << 13;
	w->rnd ^= w->rnd >> 7;
	w->rnd ^= w->rnd << 17;
	return (uint32_t)w->rnd;
}

static void note_ack(soak *s, const char *id)
{
	pthread_mutex_lock(&s->mu);
	if (s->nacked < ACKED_MAX)
		snprintf(s->acked[s->nacked++], 24, "%s", id);
	pthread_mutex_unlock(&s->mu);
}

/* Errors a churned connection may legitimately see. */
static bool expected(pl_status st)
{
	return st == PL_OK || st == PL_E_CLOSED || st == PL_E_TIMEOUT ||
	       st == PL_E_RATE_LIMITED || st == PL_E_UNAVAILABLE ||
	       st == PL_E_BACKPRESSURE;
}

static void session(worker *w, int n)
{
	soak *s = w->s;
	parley_conn *conn = hx_client(
	    s->c, n % 2 == 1, "acme", "soaker", PARLEY__ROLE__SERVICE);
	if (conn == NULL) {
		atomic_fetch_add(&s->errors, 1);
		return;
	}
	int ops = 5 + (int)(next_rnd(w) % 40);
	for (int k = 0; k < ops; k++) {
		const char *room = s->rooms[next_rnd(w) % ROOMS];
		char id[24];
		pl_status st = PL_OK;
		switch (next_rnd(w) % 6) {
		case 0:
			st = parley_subscribe(conn, room, 0, T, NULL);
			if (st == PL_E_BAD_REQUEST)
				st = PL_OK; /* already subscribed here */
			break;
		case 1:
			st = parley_unsubscribe(conn, room, T);
			break;
		case 2:
			st = parley_typing(conn, room, true, T);
			break;
		default: {
			parley_ack a;
			snprintf(id, sizeof(id), "w%d-%d-%d", w->id, n, k);
			st = parley_publish(conn, room, id, PARLEY__KIND__TEXT,
			    id, strlen(id), T, &a);
			if (st == PL_OK)
				note_ack(s, id);
			break;
		}
		}
		if (!expected(st)) {
			fprintf(stderr, "  worker %d: %s\n", w->id,
			    pl_strerror(st));
			atomic_fetch_add(&s->errors, 1);
		}
		/* Drain events now and then; otherwise leave them queued. */
		Parley__ServerFrame *f;
		while (
		    next_rnd(w) % 2 && parley_next_event(conn, 0, &f) == PL_OK)
			parley_frame_free(f);
	}
	if (next_rnd(w) % 3 == 0) {
		/* Abrupt: a request in flight when the socket goes. */
		uint64_t rid;
		(void)parley_publish_send(conn, s->rooms[0], NULL,
		    PARLEY__KIND__TEXT, "bye", 3, 0, &rid);
	}
	parley_close(conn);
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	int64_t end = pl_mono_us() + SOAK_US;
	for (int n = 0; pl_mono_us() < end; n++)
		session(w, n);
	return NULL;
}

static char seen[ACKED_MAX * 2][24];
static int nseen;

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* No client_msg_id is stored twice (the broker de-duplicates retries). */
static bool seen_unique(void)
{
	qsort(seen, (size_t)nseen, sizeof(seen[0]), cmp_id);
	for (int i = 1; i < nseen; i++)
		if (strcmp(seen[i - 1], seen[i]) == 0)
			return false;
	return true;
}

/* Every acked id appears in the rooms' histories, each room's seqs are
 * 1..last without holes; returns how many acked ids were found. */
static int verify(soak *s, parley_conn *conn)
{
	int found = 0;
	for (int r = 0; r < ROOMS; r++) {
		uint64_t next = 1;
		bool more = true;
		while (more) {
			Parley__ServerFrame *f;
			parley_history_query q = {.after_seq = next - 1,
			    .oldest_first = true,
			    .limit = 500};
			if (parley_history(conn, s->rooms[r], &q, T, &f) !=
			    PL_OK)
				return -1;
			for (size_t i = 0; i < f->history->n_messages; i++) {
				Parley__Message *m = f->history->messages[i];
				if (m->seq != next++) {
					parley_frame_free(f);
					return -1;
				}
				if (m->client_msg_id[0] == '\0')
					continue; /* unacked "bye" publishes */
				if (nseen < ACKED_MAX * 2)
					snprintf(seen[nseen++], 24, "%s",
					    m->client_msg_id);
				for (int a = 0; a < s->nacked; a++)
					if (strcmp(s->acked[a],
					        m->client_msg_id) == 0) {
						s->acked[a][0] =
						    '\0'; /* once */
						found++;
						break;
					}
			}
			more = f->history->more;
			parley_frame_free(f);
		}
	}
	return found;
}

TEST(test_soak_churn_keeps_every_ack_once)
{
	static hx_cluster c;
	static soak s;
	static char acked[ACKED_MAX][24];
	CHECK(hx_init(&c, 2));
	snprintf(c.gw_extra, sizeof(c.gw_extra),
	    "publish_per_sec = 100000\nbroker_timeout_ms = 3000\n");
	CHECK(hx_start(&c));
	memset(&s, 0, sizeof(s));
	s.c = &c;
	s.acked = acked;
	pthread_mutex_init(&s.mu, NULL);
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	for (int r = 0; r < ROOMS; r++)
		CHECK_EQ(
		    parley_create_room(svc, NULL, NULL, 0, T, s.rooms[r], NULL),
		    PL_OK);
	pthread_t th[THREADS];
	worker w[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (worker){.s = &s, .id = i, .rnd = 0x9E3779B9u * (i + 1)};
		CHECK_EQ(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	fprintf(stderr, "  acked publishes: %d, unexpected errors: %d\n",
	    s.nacked, atomic_load(&s.errors));
	CHECK_EQ(atomic_load(&s.errors), 0);
	CHECK_GT(s.nacked, 100);
	int acked_n = s.nacked;
	CHECK_EQ(verify(&s, svc), acked_n);
	CHECK(seen_unique());
	CHECK_EQ(parley_ping(svc, T, NULL, NULL), PL_OK);
	parley_close(svc);
	pthread_mutex_destroy(&s.mu);
	hx_fini(&c, false);
}
