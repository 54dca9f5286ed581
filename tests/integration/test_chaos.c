/*
 * test_chaos.c - a replicated shard group (3 broker replicas) and a
 * gateway under publish load, with faults, then a checker that reads
 * every replica's own LMDB store.
 *   load: ROOMS publishers, one per room, one publish at a time with a
 *   client_msg_id, and one subscriber per room;
 *   faults, from a fixed cycle until LEADER_KILLS leaders were killed:
 *   kill -9 of the leader (restarted once another leads), kill -9 of a
 *   follower, SIGSTOP of a follower and of the leader (a hung machine),
 *   and a quorum loss (both followers stopped at once);
 *   invariant: no client sees an error or a duplicate it did not cause;
 *   no process dies unless the test killed it (the harness fails the
 *   binary otherwise); every subscriber sees every seq once, in order;
 *   after the faults heal and the brokers stop, each replica's store
 *   holds, for every room, exactly the acked messages, once, in order
 *   (seq k = the k-th publish), and the replicas' logs are
 *   byte-identical up to the shortest one, which holds every ack.
 * The same binary is the long soak: PARLEY_CHAOS_LEADER_KILLS (default
 * 50) and PARLEY_CHAOS_MINUTES (default none) set its length;
 * bench/soak.sh runs it for 30 minutes and 500 kills.
 */
#define CHECK_MAIN
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "broker/broker.h"
#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 20000
#define REPLICAS 3
#define ROOMS 3
#define LEADER_KILLS_DEFAULT 50
/* A publisher stops here (a soak's rooms hold at most this many). */
#define PUBS_MAX 10000000
/* Pauses measured, one per leader kill. */
#define PAUSES_MAX 100000

typedef struct pubber {
	parley_conn *conn, *sub;
	char room[PL_ROOM_ID_CHARS + 1];
	int idx;
	_Atomic bool stop;    /* publisher */
	_Atomic bool drained; /* subscriber: stop once caught up */
	_Atomic int acked;
	_Atomic int64_t ack_us; /* pl_mono_us() of the last ack */
	_Atomic uint64_t seen;  /* subscriber: last seq received */
	char error[160];
	pthread_t pth, sth;
} pubber;

static void *pub_main(void *arg)
{
	pubber *p = arg;
	while (!atomic_load(&p->stop) && p->acked < PUBS_MAX) {
		int i = atomic_load(&p->acked);
		char id[32];
		snprintf(id, sizeof(id), "r%d-m%d", p->idx, i + 1);
		parley_ack a;
		pl_status st = parley_publish(p->conn, p->room, id,
		    PARLEY__KIND__TEXT, id, strlen(id), T, &a);
		if (st == PL_OK && a.duplicate) {
			snprintf(p->error, sizeof(p->error),
			    "room %d: publish %d, sent once, acked as a "
			    "duplicate",
			    p->idx, i + 1);
			return NULL;
		}
		if (st == PL_OK && a.seq != (uint64_t)i + 1) {
			snprintf(p->error, sizeof(p->error),
			    "room %d: publish %d acked as seq %llu", p->idx,
			    i + 1, (unsigned long long)a.seq);
			return NULL;
		}
		if (st != PL_OK) {
			snprintf(p->error, sizeof(p->error),
			    "room %d: publish %d: %s (%s)", p->idx, i + 1,
			    pl_strerror(st), parley_last_error(p->conn, NULL));
			return NULL;
		}
		atomic_store(&p->ack_us, pl_mono_us());
		atomic_store(&p->acked, i + 1);
	}
	return NULL;
}

static void *sub_main(void *arg)
{
	pubber *p = arg;
	int64_t deadline = 0, ping_at = pl_mono_us();
	while (!atomic_load(&p->drained) ||
	       atomic_load(&p->seen) < (uint64_t)atomic_load(&p->acked)) {
		if (atomic_load(&p->drained) && deadline == 0)
			deadline = pl_mono_us() + 30000000;
		if (deadline != 0 && pl_mono_us() > deadline)
			return NULL; /* the check below reports it */
		/* A listener still pings: the gateway closes connections
		 * that send nothing for idle_ms. */
		if (pl_mono_us() - ping_at > 10000000) {
			ping_at = pl_mono_us();
			if (parley_ping(p->sub, T, NULL, NULL) != PL_OK) {
				snprintf(p->error, sizeof(p->error),
				    "room %d subscriber: ping failed", p->idx);
				return NULL;
			}
		}
		Parley__ServerFrame *f;
		pl_status st = parley_next_event(p->sub, 100, &f);
		if (st == PL_E_TIMEOUT)
			continue;
		if (st != PL_OK) {
			snprintf(p->error, sizeof(p->error),
			    "room %d subscriber: %s", p->idx, pl_strerror(st));
			return NULL;
		}
		if (f->body_case == PARLEY__SERVER_FRAME__BODY_EVENT &&
		    f->event->ev_case == PARLEY__EVENT__EV_MESSAGE) {
			uint64_t seq = f->event->message->seq;
			uint64_t want = atomic_load(&p->seen) + 1;
			if (seq != want && p->error[0] == '\0')
				snprintf(p->error, sizeof(p->error),
				    "room %d subscriber: seq %llu, wanted %llu",
				    p->idx, (unsigned long long)seq,
				    (unsigned long long)want);
			if (seq == want)
				atomic_store(&p->seen, seq);
		}
		parley_frame_free(f);
	}
	return NULL;
}

/* Replica node's own data directory (harness layout). */
static void data_dir(hx_cluster *c, int node, char *out, size_t cap)
{
	snprintf(out, cap, "%s/data-1-%d", c->dir, node);
}

/* The checker: every replica's store, opened after the brokers stopped. */
static bool check_stores(hx_cluster *c, pubber *p)
{
	brk_store *s[REPLICAS + 1] = {0};
	bool ok = true;
	for (int n = 1; n <= REPLICAS && ok; n++) {
		brk_store_config sc = {.map_bytes = 1ull << 30,
		    .sync = true,
		    .group = 1,
		    .compress_bytes_min = 512,
		    .dedup_window = 10000};
		char dir[256];
		data_dir(c, n, dir, sizeof(dir));
		sc.dir = dir;
		if (brk_store_open(&sc, &s[n]) != PL_OK) {
			fprintf(stderr, "  checker: cannot open %s\n", dir);
			ok = false;
		}
	}
	/* Logs: byte-identical over the range every replica still holds (a
	 * long run compacts each log behind its snapshot at its own pace);
	 * CRCs all verified. */
	uint64_t shortest = UINT64_MAX, first = 1;
	for (int n = 1; n <= REPLICAS && ok; n++) {
		uint64_t entries, bad = 0;
		if (brk_store_verify(s[n], &entries, &bad) != PL_OK) {
			fprintf(stderr,
			    "  checker: replica %d bad entry %llu\n", n,
			    (unsigned long long)bad);
			ok = false;
		}
		uint64_t last = brk_store_last_index(s[n]);
		uint64_t from = brk_store_first_index(s[n]);
		if (last < shortest)
			shortest = last;
		if (from > first)
			first = from;
		fprintf(stderr,
		    "  replica %d: log %llu..%llu applied %llu\n", n,
		    (unsigned long long)from, (unsigned long long)last,
		    (unsigned long long)brk_store_applied(s[n]));
	}
	if (ok)
		fprintf(stderr, "  logs compared over %llu..%llu\n",
		    (unsigned long long)first, (unsigned long long)shortest);
	for (uint64_t i = first; ok && i <= shortest; i++) {
		raft_entry e1, en;
		size_t k;
		ok = brk_log_entries(s[1], i, i + 1, 1 << 20, &e1, 1, &k) ==
		     PL_OK;
		if (!ok)
			fprintf(stderr, "  checker: entry %llu unreadable on "
			                "replica 1\n",
			    (unsigned long long)i);
		for (int n = 2; n <= REPLICAS && ok; n++) {
			ok = brk_log_entries(s[n], i, i + 1, 1 << 20, &en, 1,
			         &k) == PL_OK &&
			     e1.term == en.term && e1.type == en.type &&
			     e1.len == en.len &&
			     memcmp(e1.data, en.data, e1.len) == 0;
			if (!ok)
				fprintf(stderr,
				    "  checker: entry %llu differs on replica "
				    "%d\n",
				    (unsigned long long)i, n);
		}
		for (int n = 1; n <= REPLICAS; n++)
			brk_log_release(s[n]);
	}
	/* Rooms: exactly the acked messages, once, in order, everywhere. */
	brk_arena a;
	brk_arena_init(&a, 1 << 20, 1u << 30);
	for (int n = 1; n <= REPLICAS && ok; n++) {
		for (int r = 0; r < ROOMS && ok; r++) {
			uint64_t room, next = 1;
			int acked = atomic_load(&p[r].acked);
			ok = pl_room_parse(p[r].room, &room) == PL_OK;
			while (ok && next <= (uint64_t)acked) {
				brk_wtxn *w;
				Parley__History h = PARLEY__HISTORY__INIT;
				Parley__HistoryPage page;
				h.after_seq = next - 1;
				h.oldest_first = true;
				h.limit = 200;
				brk_arena_reset(&a);
				ok = brk_wtxn_begin(s[n], false, &w) == PL_OK;
				if (!ok)
					break;
				ok = brk_history(w, room, &h, &a, &page) ==
				     PL_OK;
				brk_wtxn_abort(w);
				if (ok && page.n_messages == 0) {
					fprintf(stderr,
					    "  checker: replica %d room %d "
					    "ends at %llu of %d\n",
					    n, r, (unsigned long long)next - 1,
					    acked);
					ok = false;
				}
				for (size_t i = 0; ok && i < page.n_messages;
				     i++, next++) {
					char id[32];
					snprintf(id, sizeof(id), "r%d-m%llu", r,
					    (unsigned long long)next);
					const Parley__Message *m =
					    page.messages[i];
					ok =
					    m->seq == next &&
					    strcmp(m->client_msg_id, id) == 0 &&
					    m->body.len == strlen(id) &&
					    memcmp(m->body.data, id,
					        m->body.len) == 0;
					if (!ok)
						fprintf(stderr,
						    "  checker: replica %d "
						    "room "
						    "%d seq %llu is %s\n",
						    n, r,
						    (unsigned long long)m->seq,
						    m->client_msg_id);
				}
			}
			if (ok) {
				/* Nothing beyond the acks: every publish sent
				 * was acked before the publisher stopped. */
				brk_wtxn *w = NULL;
				brk_room *rm;
				ok = brk_wtxn_begin(s[n], false, &w) == PL_OK;
				ok = ok &&
				     brk_room_get(w, room, &rm) == PL_OK &&
				     rm->last_seq == (uint64_t)acked;
				if (!ok)
					fprintf(stderr,
					    "  checker: replica %d room %d holds "
					    "more than its %d acks\n",
					    n, r, acked);
				if (w != NULL)
					brk_wtxn_abort(w);
			}
			if (ok)
				fprintf(stderr,
				    "  replica %d room %d: %d acked messages, "
				    "once, in order\n",
				    n, r, acked);
		}
	}
	brk_arena_fini(&a);
	for (int n = 1; n <= REPLICAS; n++)
		brk_store_close(s[n]);
	return ok;
}

static int follower_of(int leader)
{
	return leader % REPLICAS + 1;
}

static bool healthy(parley_conn *conn, int timeout_ms)
{
	int64_t end = pl_mono_us() + (int64_t)timeout_ms * 1000;
	while (pl_mono_us() < end) {
		Parley__ServerFrame *f;
		int ok = 0, leaders = 0;
		if (parley_status(conn, 3000, &f) == PL_OK) {
			for (size_t i = 0; i < f->status->n_groups; i++) {
				const Parley__GroupStatus *g =
				    f->status->groups[i];
				ok += g->reachable && g->lag == 0;
				leaders += g->reachable &&
				           strcmp(g->role, "leader") == 0;
			}
			parley_frame_free(f);
		}
		if (ok == REPLICAS && leaders == 1)
			return true;
		usleep(50000);
	}
	return false;
}

typedef enum fault {
	KILL_LEADER,
	KILL_FOLLOWER,
	STOP_LEADER,
	STOP_FOLLOWER,
	QUORUM_LOSS,
} fault;

static const char *const fault_names[] = {"kill -9 leader",
    "kill -9 follower", "SIGSTOP leader", "SIGSTOP follower",
    "quorum loss"};

/* One cycle of faults. Leader kills dominate, as they decide failover;
 * the rest keep every other path warm. */
static const fault cycle[] = {KILL_LEADER, KILL_FOLLOWER, KILL_LEADER,
    STOP_FOLLOWER, KILL_LEADER, STOP_LEADER, KILL_LEADER, QUORUM_LOSS};

typedef struct chaos {
	hx_cluster *c;
	parley_conn *ctl;
	pubber *p;
	int counts[5];
	int64_t pauses[PAUSES_MAX]; /* us from a leader kill to acks again */
	int npauses;
} chaos;

/* Microseconds from t0 until every room had an ack after t0; -1 when
 * that took longer than timeout_ms. */
static int64_t pause_after(chaos *ch, int64_t t0, int timeout_ms)
{
	int64_t end = t0 + (int64_t)timeout_ms * 1000, worst = 0;
	bool seen[ROOMS] = {false};
	int left = ROOMS;
	while (left > 0 && pl_mono_us() < end) {
		for (int r = 0; r < ROOMS; r++) {
			int64_t a = atomic_load(&ch->p[r].ack_us);
			if (!seen[r] && a > t0) {
				seen[r] = true;
				left--;
				if (a - t0 > worst)
					worst = a - t0;
			}
		}
		usleep(1000);
	}
	return left == 0 ? worst : -1;
}

/* Injects fault f and heals it; false (with a line saying why) when the
 * group does not recover. */
static bool inject(chaos *ch, fault f)
{
	hx_cluster *c = ch->c;
	int leader = hx_leader(c, ch->ctl, 1, T);
	if (leader <= 0) {
		fprintf(stderr, "  no leader within %d ms\n", T);
		return false;
	}
	int f1 = follower_of(leader), f2 = follower_of(f1);
	int restart = 0;
	switch (f) {
	case KILL_LEADER: {
		int64_t t0 = pl_mono_us();
		hx_kill(hx_replica(c, 1, leader), SIGKILL);
		int64_t pause = pause_after(ch, t0, T);
		if (pause < 0) {
			fprintf(stderr, "  no ack within %d ms of a kill\n", T);
			for (int r = 0; r < ROOMS; r++)
				if (ch->p[r].error[0] != '\0')
					fprintf(stderr, "  %s\n", ch->p[r].error);
			return false;
		}
		if (ch->npauses < PAUSES_MAX)
			ch->pauses[ch->npauses++] = pause;
		restart = leader;
		break;
	}
	case KILL_FOLLOWER:
		hx_kill(hx_replica(c, 1, f1), SIGKILL);
		usleep(300000);
		restart = f1;
		break;
	case STOP_LEADER:
	case STOP_FOLLOWER: {
		hx_proc *v = hx_replica(c, 1, f == STOP_LEADER ? leader : f1);
		hx_pause(v);
		usleep(1000000);
		hx_resume(v);
		break;
	}
	case QUORUM_LOSS:
		hx_pause(hx_replica(c, 1, f1));
		hx_pause(hx_replica(c, 1, f2));
		usleep(700000);
		hx_resume(hx_replica(c, 1, f1));
		hx_resume(hx_replica(c, 1, f2));
		break;
	}
	if (restart > 0 && !hx_start_replica(c, 1, restart)) {
		fprintf(stderr, "  replica %d did not restart\n", restart);
		return false;
	}
	ch->counts[f]++;
	if (!healthy(ch->ctl, T)) {
		fprintf(stderr, "  group not healthy within %d ms\n", T);
		return false;
	}
	return true;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int env_int(const char *name, int dflt)
{
	const char *v = getenv(name);
	return v != NULL && atoi(v) > 0 ? atoi(v) : dflt;
}

/* Faults from the cycle until kills leaders were killed or minutes
 * passed (0: no limit); prints the counts and the pauses. */
static bool run_faults(chaos *ch, int kills, int minutes)
{
	int64_t end = minutes > 0 ? pl_mono_us() + minutes * 60000000LL : 0;
	bool ok = true;
	for (size_t k = 0; ok && ch->counts[KILL_LEADER] < kills; k++) {
		if (end != 0 && pl_mono_us() > end)
			break;
		usleep(200000); /* load between faults */
		fault f = cycle[k % PL_ARRAY_LEN(cycle)];
		ok = inject(ch, f);
		if (!ok || k % 10 == 9)
			fprintf(stderr, "  fault %zu (%s)%s: acked %d %d %d\n",
			    k + 1, fault_names[f], ok ? "" : " FAILED",
			    atomic_load(&ch->p[0].acked),
			    atomic_load(&ch->p[1].acked),
			    atomic_load(&ch->p[2].acked));
	}
	fprintf(stderr, "  faults:");
	for (size_t f = 0; f < PL_ARRAY_LEN(fault_names); f++)
		fprintf(stderr, " %s %d%s", fault_names[f], ch->counts[f],
		    f + 1 < PL_ARRAY_LEN(fault_names) ? "," : "\n");
	if (ch->npauses > 0) {
		qsort(ch->pauses, (size_t)ch->npauses, sizeof(int64_t), cmp_i64);
		fprintf(stderr,
		    "  pause after a leader kill (all rooms acked again): "
		    "p50 %.0f ms, p99 %.0f ms, max %.0f ms over %d kills\n",
		    (double)ch->pauses[ch->npauses / 2] / 1000,
		    (double)ch->pauses[ch->npauses * 99 / 100] / 1000,
		    (double)ch->pauses[ch->npauses - 1] / 1000, ch->npauses);
	}
	return ok;
}

TEST(test_chaos_kill_and_stop_replicas_checker_reads_every_store)
{
	static hx_cluster c;
	static pubber p[ROOMS];
	memset(p, 0, sizeof(p));
	CHECK(hx_init_replicated(&c, 1, REPLICAS));
	snprintf(c.broker_extra, sizeof(c.broker_extra),
	    "election_ms = 300\nheartbeat_ms = 30\n");
	snprintf(c.gw_extra, sizeof(c.gw_extra), "publish_per_sec = 100000\n");
	CHECK(hx_start(&c));
	parley_conn *ctl =
	    hx_client(&c, false, "acme", "ctl", PARLEY__ROLE__SERVICE);
	CHECK(ctl != NULL);
	for (int r = 0; r < ROOMS; r++) {
		char key[16];
		p[r].idx = r;
		snprintf(key, sizeof(key), "chaos-%d", r);
		p[r].conn =
		    hx_client(&c, false, "acme", "svc", PARLEY__ROLE__SERVICE);
		p[r].sub =
		    hx_client(&c, true, "acme", "agent", PARLEY__ROLE__AGENT);
		CHECK(p[r].conn != NULL && p[r].sub != NULL);
		CHECK_EQ(parley_create_room(
		             p[r].conn, key, NULL, 0, T, p[r].room, NULL),
		    PL_OK);
		CHECK_EQ(
		    parley_subscribe(p[r].sub, p[r].room, 0, T, NULL), PL_OK);
		CHECK_EQ(pthread_create(&p[r].pth, NULL, pub_main, &p[r]), 0);
		CHECK_EQ(pthread_create(&p[r].sth, NULL, sub_main, &p[r]), 0);
	}
	static chaos ch;
	memset(&ch, 0, sizeof(ch));
	ch.c = &c;
	ch.ctl = ctl;
	ch.p = p;
	bool ok = run_faults(&ch,
	    env_int("PARLEY_CHAOS_LEADER_KILLS", LEADER_KILLS_DEFAULT),
	    env_int("PARLEY_CHAOS_MINUTES", 0));
	CHECK(ok);
	for (int r = 0; r < ROOMS; r++)
		atomic_store(&p[r].stop, true);
	for (int r = 0; r < ROOMS; r++) {
		pthread_join(p[r].pth, NULL);
		atomic_store(&p[r].drained, true);
		pthread_join(p[r].sth, NULL);
		CHECK_STR_EQ(p[r].error, "");
		CHECK_GT(atomic_load(&p[r].acked), 0);
		CHECK_EQ(atomic_load(&p[r].seen), (uint64_t)p[r].acked);
	}
	/* Let every replica apply everything, then stop them cleanly. */
	CHECK(healthy(ctl, 20000));
	for (int n = 1; n <= REPLICAS; n++)
		hx_kill(hx_replica(&c, 1, n), SIGTERM);
	bool stores = check_stores(&c, p);
	for (int r = 0; r < ROOMS; r++) {
		parley_close(p[r].conn);
		parley_close(p[r].sub);
	}
	parley_close(ctl);
	hx_fini(&c, !stores);
	CHECK(stores);
}
