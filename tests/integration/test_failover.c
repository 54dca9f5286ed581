/*
 * test_failover.c - a replicated shard group (3 broker replicas running
 * Raft) behind one gateway, real processes on loopback.
 *   fault: kill -9 of the leader (found through status), three times,
 *   while a client publishes with client_msg_ids, one at a time, and a
 *   subscriber listens; each killed replica is restarted and catches up;
 *   fault: SIGSTOP of the leader (a hung machine), later SIGCONT;
 *   invariant: every publish is acked - the client never sees an error,
 *   only a pause - the subscriber receives every seq once, in order, and
 *   history holds every acked message once, in the order it was sent.
 * The pauses (kill to the next ack) are printed: the gateway's share of
 * a failover is finding the new leader once it is elected.
 */
#define CHECK_MAIN
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 15000
#define REPLICAS 3
#define PUBS_MAX 20000
#define ROUNDS_MAX 8

/* The publisher: one publish at a time, each must be acked; records
 * when each ack came. */
typedef struct pubber {
	parley_conn *conn;
	char room[PL_ROOM_ID_CHARS + 1];
	_Atomic bool stop;
	_Atomic int acked;
	int64_t acked_us[PUBS_MAX];
	pl_status failed;
	char error[128];
} pubber;

static void *pub_main(void *arg)
{
	pubber *p = arg;
	while (!atomic_load(&p->stop) && p->acked < PUBS_MAX) {
		int i = atomic_load(&p->acked);
		char id[32], body[32];
		snprintf(id, sizeof(id), "m%d", i);
		int n = snprintf(body, sizeof(body), "b%d", i);
		parley_ack a;
		pl_status st = parley_publish(p->conn, p->room, id,
		    PARLEY__KIND__TEXT, body, (size_t)n, T, &a);
		if (st == PL_OK && a.seq != (uint64_t)i + 1) {
			snprintf(p->error, sizeof(p->error),
			    "publish %d acked with seq %llu", i,
			    (unsigned long long)a.seq);
			st = PL_E_INTERNAL;
		}
		if (st != PL_OK) {
			if (p->error[0] == '\0')
				snprintf(p->error, sizeof(p->error),
				    "publish %d: %s (%s)", i, pl_strerror(st),
				    parley_last_error(p->conn, NULL));
			p->failed = st;
			return NULL;
		}
		p->acked_us[i] = pl_mono_us();
		atomic_store(&p->acked, i + 1);
	}
	return NULL;
}

/* The subscriber: every event must be the next seq. */
typedef struct subber {
	parley_conn *conn;
	const char *room;
	_Atomic bool stop;
	_Atomic uint64_t last;
	char error[128];
} subber;

static void *sub_main(void *arg)
{
	subber *s = arg;
	while (!atomic_load(&s->stop)) {
		Parley__ServerFrame *f;
		pl_status st = parley_next_event(s->conn, 100, &f);
		if (st == PL_E_TIMEOUT)
			continue;
		if (st != PL_OK) {
			snprintf(s->error, sizeof(s->error), "events: %s",
			    pl_strerror(st));
			return NULL;
		}
		if (f->body_case == PARLEY__SERVER_FRAME__BODY_EVENT &&
		    f->event->ev_case == PARLEY__EVENT__EV_MESSAGE) {
			uint64_t seq = f->event->message->seq;
			uint64_t want = atomic_load(&s->last) + 1;
			if (seq != want && s->error[0] == '\0')
				snprintf(s->error, sizeof(s->error),
				    "got seq %llu, wanted %llu",
				    (unsigned long long)seq,
				    (unsigned long long)want);
			if (seq == want)
				atomic_store(&s->last, seq);
		}
		parley_frame_free(f);
	}
	return NULL;
}

/* Waits until every replica is reachable with lag 0 (a restarted one
 * has caught up) and one leads. */
static bool group_healthy(hx_cluster *c, parley_conn *conn, int timeout_ms)
{
	int64_t end = pl_mono_us() + (int64_t)timeout_ms * 1000;
	while (pl_mono_us() < end) {
		Parley__ServerFrame *f;
		int ok = 0, leaders = 0;
		bool last = pl_mono_us() + 100000 >= end;
		pl_status st = parley_status(conn, 3000, &f);
		if (last && st != PL_OK)
			fprintf(stderr, "  status: %s (%s)\n", pl_strerror(st),
			    parley_last_error(conn, NULL));
		if (st == PL_OK) {
			for (size_t i = 0; i < f->status->n_groups; i++) {
				const Parley__GroupStatus *g =
				    f->status->groups[i];
				ok += g->reachable && g->lag == 0;
				leaders += g->reachable &&
				           strcmp(g->role, "leader") == 0;
				if (last)
					fprintf(stderr,
					    "  %s reachable=%d role=%s "
					    "term=%llu applied=%llu lag=%llu\n",
					    g->address, (int)g->reachable,
					    g->role,
					    (unsigned long long)g->term,
					    (unsigned long long)g->applied,
					    (unsigned long long)g->lag);
			}
			parley_frame_free(f);
		}
		if (ok == REPLICAS && leaders == 1)
			return true;
		usleep(100000);
	}
	(void)c;
	fprintf(stderr, "  the group did not become healthy\n");
	return false;
}

typedef struct run {
	hx_cluster c;
	parley_conn *svc, *subc;
	pubber *p;
	subber s;
	pthread_t pth, sth;
	int64_t fault_us[ROUNDS_MAX];
	int nfaults;
} run;

static bool run_start(run *r)
{
	if (!hx_init_replicated(&r->c, 1, REPLICAS))
		return false;
	snprintf(r->c.broker_extra, sizeof(r->c.broker_extra),
	    "election_ms = 400\nheartbeat_ms = 50\n");
	snprintf(
	    r->c.gw_extra, sizeof(r->c.gw_extra), "publish_per_sec = 100000\n");
	if (!hx_start(&r->c))
		return false;
	r->svc = hx_client(&r->c, false, "acme", "svc", PARLEY__ROLE__SERVICE);
	r->subc = hx_client(&r->c, true, "acme", "agent", PARLEY__ROLE__AGENT);
	r->p = calloc(1, sizeof(*r->p));
	if (r->svc == NULL || r->subc == NULL || r->p == NULL ||
	    hx_leader(&r->c, r->svc, 1, T) == 0)
		return false;
	r->p->conn = r->svc;
	if (parley_create_room(r->svc, "failover-room", NULL, 0, T, r->p->room,
	        NULL) != PL_OK ||
	    parley_subscribe(r->subc, r->p->room, 0, T, NULL) != PL_OK)
		return false;
	r->s.conn = r->subc;
	r->s.room = r->p->room;
	return pthread_create(&r->sth, NULL, sub_main, &r->s) == 0 &&
	       pthread_create(&r->pth, NULL, pub_main, r->p) == 0;
}

/* Stops the publisher, lets the subscriber drain, and checks the
 * invariants; prints the pauses. */
static bool run_finish(run *r)
{
	atomic_store(&r->p->stop, true);
	pthread_join(r->pth, NULL);
	int n = atomic_load(&r->p->acked);
	for (int i = 0; i < 100 && atomic_load(&r->s.last) < (uint64_t)n; i++)
		usleep(100000);
	usleep(300000); /* a duplicate would arrive now */
	atomic_store(&r->s.stop, true);
	pthread_join(r->sth, NULL);
	fprintf(stderr, "  %d publishes acked; subscriber at %llu\n", n,
	    (unsigned long long)atomic_load(&r->s.last));
	int64_t pause_max = 0;
	for (int k = 0; k < r->nfaults; k++) {
		int64_t pause = -1;
		for (int i = 0; i < n && pause < 0; i++)
			if (r->p->acked_us[i] > r->fault_us[k])
				pause = r->p->acked_us[i] - r->fault_us[k];
		fprintf(stderr, "  fault %d: next ack after %.0f ms\n", k + 1,
		    (double)pause / 1000.0);
		if (pause > pause_max)
			pause_max = pause;
	}
	if (r->p->failed != PL_OK)
		fprintf(stderr, "  publisher: %s\n", r->p->error);
	if (r->s.error[0] != '\0')
		fprintf(stderr, "  subscriber: %s\n", r->s.error);
	return r->p->failed == PL_OK && r->s.error[0] == '\0' &&
	       atomic_load(&r->s.last) == (uint64_t)n && n > 0 &&
	       pause_max < 5000000;
}

/* History: seq k holds the k-th publish, m(k-1), once. */
static bool history_exact(run *r, int n)
{
	uint64_t next = 1;
	for (int pages = 0; pages < 200 && next <= (uint64_t)n; pages++) {
		Parley__ServerFrame *f;
		parley_history_query q = {
		    .after_seq = next - 1, .oldest_first = true, .limit = 500};
		if (hx_history_retry(r->svc, r->p->room, &q, &f) != PL_OK)
			return false;
		for (size_t i = 0; i < f->history->n_messages; i++) {
			const Parley__Message *m = f->history->messages[i];
			char id[32];
			snprintf(id, sizeof(id), "m%llu",
			    (unsigned long long)next - 1);
			if (m->seq != next || strcmp(m->client_msg_id, id)) {
				fprintf(stderr, "  history: seq %llu id %s\n",
				    (unsigned long long)m->seq,
				    m->client_msg_id);
				parley_frame_free(f);
				return false;
			}
			next++;
		}
		bool more = f->history->more;
		parley_frame_free(f);
		if (!more)
			break;
	}
	return next == (uint64_t)n + 1;
}

static void run_free(run *r, bool failed)
{
	parley_close(r->subc);
	parley_close(r->svc);
	free(r->p);
	hx_fini(&r->c, failed);
}

TEST(test_failover_leader_kill9_no_error_gap_or_duplicate)
{
	static run r;
	memset(&r, 0, sizeof(r));
	bool ok = run_start(&r);
	CHECK(ok);
	for (int k = 0; ok && k < 3; k++) {
		usleep(700000);
		int leader = hx_leader(&r.c, r.svc, 1, T);
		ok = leader > 0;
		if (!ok)
			break;
		r.fault_us[r.nfaults++] = pl_mono_us();
		hx_kill(hx_replica(&r.c, 1, leader), SIGKILL);
		usleep(1500000); /* publishing goes on with two replicas */
		ok = hx_start_replica(&r.c, 1, leader) &&
		     group_healthy(&r.c, r.svc, 20000);
	}
	bool good = ok && run_finish(&r);
	int n = atomic_load(&r.p->acked);
	good = good && history_exact(&r, n);
	run_free(&r, !good);
	CHECK(good);
}

TEST(test_failover_leader_stopped_no_error_gap_or_duplicate)
{
	static run r;
	memset(&r, 0, sizeof(r));
	bool ok = run_start(&r);
	CHECK(ok);
	usleep(700000);
	int leader = hx_leader(&r.c, r.svc, 1, T);
	ok = leader > 0;
	if (ok) {
		/* Hung, not dead: its connections stay open. */
		r.fault_us[r.nfaults++] = pl_mono_us();
		hx_pause(hx_replica(&r.c, 1, leader));
		usleep(3000000);
		hx_resume(hx_replica(&r.c, 1, leader));
		ok = group_healthy(&r.c, r.svc, 20000);
		usleep(500000);
	}
	bool good = ok && run_finish(&r);
	int n = atomic_load(&r.p->acked);
	good = good && history_exact(&r, n);
	run_free(&r, !good);
	CHECK(good);
}
