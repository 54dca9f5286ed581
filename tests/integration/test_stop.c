/*
 * test_stop.c - a rolling restart's view of shutdown: every broker and
 * gateway stop must end within HX_STOP_US_MAX of SIGTERM, whatever state
 * its sockets are in.
 *   load: a publisher (one publish at a time, client_msg_ids) and a
 *   subscriber on the gateway throughout; before each gateway stop,
 *   fresh TCP and WebSocket clients with publishes left in flight;
 *   fault: 50 SIGTERM stops of a broker replica of a 3-replica group —
 *   with its peers up, with one peer killed (SIGKILL) just before, with
 *   one peer paused (SIGSTOP) — each followed by a restart; then 50
 *   SIGTERM stops of the gateway with clients attached, every tenth
 *   with every broker dead;
 *   invariant: each stop ends within HX_STOP_US_MAX and its process
 *   logs event=stopped (the stop deadline's exit is counted and shown;
 *   the harness fails the binary on a slow stop, a death nobody asked
 *   for and a sanitizer report); afterwards every acknowledged publish
 *   is in history.
 */
#define CHECK_MAIN
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 10000
#define STOPS 50
#define REPLICAS 3
#define PUBS_MAX 20000
/* Clients attached to the gateway when it is told to stop. */
#define GW_CLIENTS 6

typedef struct traffic {
	hx_cluster *c;
	char room[PL_ROOM_ID_CHARS + 1];
	atomic_bool stop;
	uint64_t seq[PUBS_MAX]; /* acked seq of publish i, 0: none */
	int sent;
	char error[200];
	pthread_t th;
} traffic;

/* A connection that comes back after the gateway restarts. */
static parley_conn *reconnect(hx_cluster *c)
{
	for (int i = 0; i < 200; i++) {
		parley_conn *conn = hx_client(
		    c, i % 2 == 1, "acme", "stopper", PARLEY__ROLE__SERVICE);
		if (conn != NULL)
			return conn;
		usleep(50000);
	}
	return NULL;
}

/* Publishes one at a time until told to stop; an answer that says the
 * publish may not have happened is resent with the same client_msg_id,
 * a lost connection is dialled again. */
static void *traffic_main(void *arg)
{
	traffic *t = arg;
	parley_conn *conn = reconnect(t->c);
	while (conn != NULL && !atomic_load(&t->stop) && t->sent < PUBS_MAX) {
		char id[32], body[64];
		int i = t->sent;
		snprintf(id, sizeof(id), "stop-%d", i);
		int n = snprintf(body, sizeof(body), "publish %d", i);
		parley_ack a;
		pl_status st = parley_publish(conn, t->room, id,
		    PARLEY__KIND__TEXT, body, (size_t)n, T, &a);
		if (st == PL_OK) {
			t->seq[i] = a.seq;
			t->sent++;
			continue;
		}
		if (st == PL_E_CLOSED || st == PL_E_IO) {
			parley_close(conn);
			conn = reconnect(t->c);
		} else {
			usleep(20000); /* unavailable, timeout: the same id again */
		}
	}
	if (conn == NULL)
		snprintf(t->error, sizeof(t->error), "publisher: no connection");
	parley_close(conn);
	return NULL;
}

/* Every acked publish is in history at its seq with its body. */
static bool check_history(hx_cluster *c, traffic *t, char *err, size_t cap)
{
	parley_conn *conn = reconnect(c);
	if (conn == NULL) {
		snprintf(err, cap, "checker: no connection");
		return false;
	}
	int found = 0, acked = 0;
	for (int i = 0; i < t->sent; i++)
		acked += t->seq[i] != 0;
	uint64_t after = 0;
	bool ok = true;
	for (;;) {
		parley_history_query q = {
		    .after_seq = after, .limit = 500, .oldest_first = true};
		Parley__ServerFrame *h = NULL;
		if (hx_history_retry(conn, t->room, &q, &h) != PL_OK) {
			snprintf(err, cap, "checker: history failed");
			ok = false;
			break;
		}
		size_t n = h->history->n_messages;
		for (size_t k = 0; k < n; k++) {
			Parley__Message *m = h->history->messages[k];
			int i = -1;
			if (m->client_msg_id != NULL)
				sscanf(m->client_msg_id, "stop-%d", &i);
			if (i >= 0 && i < t->sent && t->seq[i] == m->seq)
				found++;
			after = m->seq;
		}
		parley_frame_free(h);
		if (n == 0)
			break;
	}
	parley_close(conn);
	if (ok && found != acked) {
		snprintf(err, cap, "%d of %d acked publishes in history", found,
		    acked);
		ok = false;
	}
	fprintf(stderr, "    %d publishes acked through the restarts, all in "
	                "history\n",
	    acked);
	return ok;
}

/* Occurrences of needle in the file at path. */
static int count_in_log(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	char line[2048];
	int n = 0;
	while (fgets(line, sizeof(line), f) != NULL)
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

static bool start(hx_cluster *c, traffic *t)
{
	if (!hx_init_replicated(c, 1, REPLICAS) || !hx_start(c))
		return false;
	parley_conn *svc =
	    hx_client(c, false, "acme", "stopper", PARLEY__ROLE__SERVICE);
	bool ok = svc != NULL && parley_create_room(svc, NULL, NULL, 0, T,
	                             t->room, NULL) == PL_OK;
	parley_close(svc);
	t->c = c;
	return ok;
}

/* The group has a leader again (asked through a fresh connection). */
static bool leader_back(hx_cluster *c)
{
	parley_conn *conn = reconnect(c);
	int leader = conn != NULL ? hx_leader(c, conn, 1, 20000) : 0;
	parley_close(conn);
	return leader != 0;
}

/* The loop's verdict after its stops: the publisher saw no error, every
 * stop logged its end (stopped or cut short), every ack is in history.
 * Stops the cluster; prints what failed. */
static bool verdict(hx_cluster *c, traffic *t, bool ok, int ended)
{
	char err[200] = "";
	if (ok && t->error[0] != '\0') {
		snprintf(err, sizeof(err), "%s", t->error);
		ok = false;
	}
	if (ok && ended < STOPS) {
		snprintf(err, sizeof(err), "%d of %d stops logged their end",
		    ended, STOPS);
		ok = false;
	}
	if (ok)
		ok = check_history(c, t, err, sizeof(err));
	if (!ok && err[0] != '\0')
		fprintf(stderr, "    %s\n", err);
	hx_fini(c, !ok);
	return ok;
}

TEST(test_stop_broker_fifty_times_with_live_dead_and_paused_peers)
{
	static hx_cluster c;
	static traffic t;
	CHECK(start(&c, &t));
	pthread_create(&t.th, NULL, traffic_main, &t);
	int64_t longest = 0;
	bool ok = true;
	const char *shape[] = {"peers up", "a peer killed", "a peer paused"};
	int64_t worst[3] = {0, 0, 0};
	for (int i = 0; ok && i < STOPS; i++) {
		int node = 1 + i % REPLICAS, other = 1 + (i + 1) % REPLICAS;
		int s = (i / REPLICAS) % 3;
		if (s == 1)
			hx_kill(hx_replica(&c, 1, other), SIGKILL);
		if (s == 2)
			hx_pause(hx_replica(&c, 1, other));
		int64_t us = hx_kill(hx_replica(&c, 1, node), SIGTERM);
		worst[s] = us > worst[s] ? us : worst[s];
		longest = us > longest ? us : longest;
		if (s == 2)
			hx_resume(hx_replica(&c, 1, other));
		ok = hx_start_replica(&c, 1, node) &&
		     (s != 1 || hx_start_replica(&c, 1, other)) &&
		     leader_back(&c);
		if (!ok)
			fprintf(stderr, "    stop %d (%s): no leader after restart\n",
			    i, shape[s]);
	}
	atomic_store(&t.stop, true);
	pthread_join(t.th, NULL);
	int stopped = 0, deadline = 0;
	for (int r = 1; r <= REPLICAS; r++) {
		stopped += count_in_log(hx_replica(&c, 1, r)->log, "event=stopped");
		deadline += count_in_log(
		    hx_replica(&c, 1, r)->log, "event=stop_deadline");
	}
	fprintf(stderr,
	    "    %d broker stops: longest %.1f ms (peers up %.1f, a peer "
	    "killed %.1f, a peer paused %.1f); %d logged stopped, %d cut "
	    "short by the stop deadline\n",
	    STOPS, (double)longest / 1000.0, (double)worst[0] / 1000.0,
	    (double)worst[1] / 1000.0, (double)worst[2] / 1000.0, stopped,
	    deadline);
	ok = verdict(&c, &t, ok, stopped + deadline);
	CHECK(ok);
	CHECK(longest <= HX_STOP_US_MAX);
}

/* Clients that are attached when the gateway is told to stop: half TCP,
 * half WebSocket, each with publishes sent and not yet answered. */
static int attach(hx_cluster *c, const char *room, parley_conn **out)
{
	int n = 0;
	for (int k = 0; k < GW_CLIENTS; k++) {
		parley_conn *conn = hx_client(
		    c, k % 2 == 1, "acme", "attached", PARLEY__ROLE__SERVICE);
		if (conn == NULL)
			continue;
		for (int j = 0; j < 8; j++) {
			char id[40];
			snprintf(id, sizeof(id), "att-%d-%d-%d", k, j, rand());
			uint64_t rid;
			(void)parley_publish_send(conn, room, id,
			    PARLEY__KIND__TEXT, "in flight", 9, 0, &rid);
		}
		out[n++] = conn;
	}
	return n;
}

TEST(test_stop_gateway_fifty_times_with_clients_attached)
{
	static hx_cluster c;
	static traffic t;
	CHECK(start(&c, &t));
	pthread_create(&t.th, NULL, traffic_main, &t);
	int64_t longest = 0, worst_dead = 0;
	bool ok = true;
	for (int i = 0; ok && i < STOPS; i++) {
		bool dead = i % 10 == 9; /* every broker down */
		parley_conn *conns[GW_CLIENTS];
		int n = attach(&c, t.room, conns);
		if (dead)
			for (int r = 1; r <= REPLICAS; r++)
				hx_kill(hx_replica(&c, 1, r), SIGKILL);
		int64_t us = hx_kill(&c.gateway, SIGTERM);
		longest = us > longest ? us : longest;
		if (dead)
			worst_dead = us > worst_dead ? us : worst_dead;
		for (int k = 0; k < n; k++)
			parley_close(conns[k]);
		for (int r = 1; dead && ok && r <= REPLICAS; r++)
			ok = hx_start_replica(&c, 1, r);
		ok = ok && hx_start_gateway(&c) && (!dead || leader_back(&c));
		if (!ok)
			fprintf(stderr, "    stop %d: restart failed\n", i);
	}
	atomic_store(&t.stop, true);
	pthread_join(t.th, NULL);
	int stopped = count_in_log(c.gateway.log, "event=stopped");
	int deadline = count_in_log(c.gateway.log, "event=stop_deadline");
	fprintf(stderr,
	    "    %d gateway stops with %d clients attached: longest %.1f ms "
	    "(every broker dead: %.1f ms); %d logged stopped, %d cut short "
	    "by the stop deadline\n",
	    STOPS, GW_CLIENTS, (double)longest / 1000.0,
	    (double)worst_dead / 1000.0, stopped, deadline);
	ok = verdict(&c, &t, ok, stopped + deadline);
	CHECK(ok);
	CHECK(longest <= HX_STOP_US_MAX);
}

/* The log of a process that took sig holds the crash line and at least
 * one frame of its backtrace. */
static bool crash_logged(hx_proc *p, int sig, char *err, size_t cap)
{
	char want[64];
	snprintf(want, sizeof(want), "event=crash signal=%d ", sig);
	bool line = count_in_log(p->log, want) == 1 &&
	            count_in_log(p->log, " pc=0x") == 1;
	/* Where the crashing instruction is, even when nothing unwinds. */
	bool where = count_in_log(p->log, "  pc is in: ") == 1;
	/* backtrace_symbols_fd writes "binary(function+0x..)[0x...]". */
	bool frames = count_in_log(p->log, ")[0x") > 0;
	if (!line || !where || !frames)
		snprintf(err, cap, "%s: crash line %s, pc mapping %s, backtrace %s",
		    p->name, line ? "found" : "missing",
		    where ? "found" : "missing", frames ? "found" : "missing");
	return line && where && frames;
}

TEST(test_stop_a_crashing_process_leaves_its_backtrace_in_the_log)
{
	static hx_cluster c;
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	char err[200] = "";
	/* An abort is what a failed assertion raises, in every build. */
	hx_kill(&c.broker[1], SIGABRT);
	hx_kill(&c.gateway, SIGABRT);
	bool ok = crash_logged(&c.broker[1], SIGABRT, err, sizeof(err)) &&
	          crash_logged(&c.gateway, SIGABRT, err, sizeof(err));
	if (!ok)
		fprintf(stderr, "    %s\n", err);
	hx_fini(&c, !ok);
	CHECK(ok);
}
