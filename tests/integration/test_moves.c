/*
 * test_moves.c - an operator moves replicas and leaders with parleyctl
 * while a publisher keeps writing: four cluster brokers (1..3 host the
 * meta group), one shard group of three replicas on 1, 2 and 3.
 *   replica move: the leader's replica moved to broker 4 (learner, catch
 *   up, promote, remove; the leader hands over first); afterwards the
 *   group's Raft configuration is the map's;
 *   rolling restart of one broker: prepare-restart moves the group's
 *   leadership off it, it is stopped (SIGTERM) and started again, then
 *   leader rebalance gives the lead back to the preferred leader;
 *   broker drain: a broker's replica moved to the one active broker
 *   without one, after which it holds none and is removed;
 *   a replica the group went on without is retired by its broker;
 *   invariant: every publish acknowledged during all this reads back
 *   once, in order. The longest wait for an acknowledgement in each
 *   phase is printed (a figure, not a pass/fail bound).
 */
#define CHECK_MAIN
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/codec.h"
#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 5000

typedef struct load {
	parley_conn *svc;
	char room[17];
	atomic_bool stop;
	atomic_int acked;
	_Atomic int64_t max_gap_us;
	int failures;
	pthread_t th;
} load;

/* Publishes 1, 2, 3, ... one at a time; a failed publish is sent again
 * with the same client message id (idempotent), so the room holds each
 * number once whatever the failures. */
static void *load_main(void *arg)
{
	load *l = arg;
	int64_t last = pl_mono_us();
	while (!atomic_load(&l->stop)) {
		int i = atomic_load(&l->acked) + 1;
		if (hx_publish_n(l->svc, l->room, i, NULL) == PL_OK) {
			int64_t now = pl_mono_us();
			if (now - last > atomic_load(&l->max_gap_us))
				atomic_store(&l->max_gap_us, now - last);
			last = now;
			atomic_store(&l->acked, i);
			usleep(10000);
		} else {
			l->failures++;
			usleep(20000);
		}
	}
	return NULL;
}

/* The phase's longest wait for an acknowledgement, reset. */
static double gap_ms(load *l)
{
	return (double)atomic_exchange(&l->max_gap_us, 0) / 1000.0;
}

/* The node leading group 1 among nodes 1..4, or 0. */
static int leader_of(hx_cluster *c, pl_replica_info *out)
{
	int lead = 0;
	uint64_t term = 0;
	for (int n = 1; n <= c->nreplicas; n++) {
		pl_replica_info r;
		if (c->rep[0][n].pid > 0 &&
		    hx_replica_info(c, n, 1, &r) == PL_OK &&
		    strcmp(r.role, "leader") == 0 && r.term >= term) {
			lead = n;
			term = r.term;
			if (out != NULL)
				*out = r;
		}
	}
	return lead;
}

/* The leader's Raft configuration is exactly the map's voters. */
static bool conf_is_map(hx_cluster *c)
{
	pl_map m;
	pl_map_init(&m);
	pl_replica_info l;
	bool ok = hx_map_fetch(c, &m) == PL_OK && leader_of(c, &l) != 0;
	const pl_map_group *g = ok ? pl_map_group_find(&m, 1) : NULL;
	ok = g != NULL && l.nlearners == 0 && l.nvoters == g->nreplicas;
	for (int i = 0; ok && i < l.nvoters; i++) {
		const pl_map_replica *r = pl_map_group_replica(g, l.voters[i]);
		ok = r != NULL && !r->learner;
	}
	pl_map_fini(&m);
	return ok;
}

/* Waits until broker node hosts n groups (meta included). */
static bool hosts(hx_cluster *c, int node, long n)
{
	for (int i = 0; i < 200; i++) {
		if (hx_metric(c->rep_http[0][node], "parley_broker_groups") == n)
			return true;
		usleep(50000);
	}
	return false;
}

TEST(test_moves_replicas_and_leaders_under_load)
{
	hx_cluster c;
	CHECK(hx_init_replicated(&c, 1, 4));
	CHECK(hx_init_meta(&c));
	c.nmeta = 3;
	pl_map m;
	CHECK(hx_cluster_up(&c, 4, &m));
	CHECK_EQ(hx_map_tenant_with_key(&c, "acme", &m), PL_OK);
	CHECK_EQ(hx_map_group_add(&c, 3, &m), PL_OK);
	const pl_map_group *g = pl_map_group_find(&m, 1);
	CHECK(g != NULL && pl_map_group_replica(g, 4) == NULL); /* 1, 2, 3 */
	for (int n = 1; n <= 3; n++)
		CHECK(hosts(&c, n, 2));
	CHECK(hx_start_gateway(&c));

	load l;
	memset(&l, 0, sizeof(l));
	l.svc = hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(l.svc != NULL);
	pl_status st = PL_E_UNAVAILABLE;
	for (int i = 0; i < 50 && st != PL_OK; i++) {
		st = parley_create_room(l.svc, NULL, NULL, 0, T, l.room, NULL);
		if (st != PL_OK)
			usleep(100000);
	}
	CHECK_EQ(st, PL_OK);
	CHECK_EQ(pthread_create(&l.th, NULL, load_main, &l), 0);
	usleep(300000);
	fprintf(stderr, "  steady: longest wait for an ack %.1f ms\n",
	    gap_ms(&l));

	/* The leader's replica moves to broker 4. */
	int from = 0;
	for (int i = 0; i < 100 && from == 0; i++, usleep(50000))
		from = leader_of(&c, NULL);
	CHECK(from != 0);
	char args[128], out[8192];
	snprintf(args, sizeof(args), "replica move 1 --from %d --to 4", from);
	CHECK_EQ(hx_ctl(&c, args, out, sizeof(out)), 0);
	fprintf(stderr, "%s", out);
	CHECK(strstr(out, "moved from broker") != NULL);
	CHECK(conf_is_map(&c));
	CHECK_EQ(hx_map_fetch(&c, &m), PL_OK);
	g = pl_map_group_find(&m, 1);
	CHECK(g != NULL && pl_map_group_replica(g, 4) != NULL &&
	      pl_map_group_replica(g, (uint64_t)from) == NULL);
	CHECK(leader_of(&c, NULL) != from);
	/* The replica left behind is retired: its broker hosts the meta
	 * replica only. */
	CHECK(hosts(&c, from, 1));
	/* Again: every step is in effect already. */
	CHECK_EQ(hx_ctl(&c, args, out, sizeof(out)), 0);
	CHECK(strstr(out, "unchanged") != NULL);
	fprintf(stderr, "  replica move: longest wait for an ack %.1f ms\n",
	    gap_ms(&l));

	/* A rolling restart of the group's current leader. */
	int lead = leader_of(&c, NULL);
	CHECK(lead != 0);
	snprintf(args, sizeof(args), "broker prepare-restart --node %d", lead);
	CHECK_EQ(hx_ctl(&c, args, out, sizeof(out)), 0);
	fprintf(stderr, "%s", out);
	int now_lead = leader_of(&c, NULL);
	CHECK(now_lead != 0 && now_lead != lead);
	hx_kill(&c.rep[0][lead], SIGTERM);
	CHECK(hx_start_cluster_broker(&c, lead));
	CHECK(hosts(&c, lead, lead <= 3 ? 2 : 1));
	CHECK_EQ(hx_ctl(&c, "leader rebalance", out, sizeof(out)), 0);
	fprintf(stderr, "%s", out);
	CHECK_EQ(hx_map_fetch(&c, &m), PL_OK);
	g = pl_map_group_find(&m, 1);
	CHECK(g != NULL && leader_of(&c, NULL) == (int)g->leader);
	fprintf(stderr, "  rolling restart: longest wait for an ack %.1f ms\n",
	    gap_ms(&l));

	/* Broker drain: its replica goes to the one active broker without
	 * one (the broker the first move emptied). */
	int drained = 0;
	for (int n = 1; n <= 4 && drained == 0; n++)
		if (n != from && pl_map_group_replica(g, (uint64_t)n) != NULL &&
		    n != leader_of(&c, NULL))
			drained = n;
	CHECK(drained != 0);
	snprintf(args, sizeof(args), "broker drain --node %d", drained);
	CHECK_EQ(hx_ctl(&c, args, out, sizeof(out)), 0);
	fprintf(stderr, "%s", out);
	CHECK_EQ(hx_map_fetch(&c, &m), PL_OK);
	CHECK_EQ(pl_map_replicas_on(&m, (uint64_t)drained), 0);
	CHECK(hosts(&c, drained, drained <= 3 ? 1 : 0)); /* meta: 1..3 */
	g = pl_map_group_find(&m, 1);
	CHECK(g != NULL && pl_map_group_replica(g, (uint64_t)from) != NULL);
	CHECK(conf_is_map(&c));
	snprintf(args, sizeof(args), "broker remove --node %d", drained);
	CHECK_EQ(hx_ctl(&c, args, out, sizeof(out)), 0);
	CHECK_EQ(hx_ctl(&c, "cluster status", out, sizeof(out)), 0);
	fprintf(stderr, "%s", out);
	fprintf(stderr, "  broker drain: longest wait for an ack %.1f ms\n",
	    gap_ms(&l));

	atomic_store(&l.stop, true);
	pthread_join(l.th, NULL);
	int acked = atomic_load(&l.acked);
	fprintf(stderr, "  %d publishes acknowledged, %d attempts failed\n",
	    acked, l.failures);
	CHECK(acked > 50);
	/* Read back in pages: each number once, in order. */
	size_t seen = 0;
	for (bool more = true; more;) {
		parley_history_query q = {.after_seq = seen,
		    .limit = PL_HISTORY_LIMIT_MAX, .oldest_first = true};
		Parley__ServerFrame *rep = NULL;
		CHECK_EQ(hx_history_retry(l.svc, l.room, &q, &rep), PL_OK);
		CHECK(rep != NULL && rep->history != NULL);
		for (size_t i = 0; i < rep->history->n_messages; i++) {
			const Parley__Message *msg = rep->history->messages[i];
			char want[32];
			seen++;
			snprintf(want, sizeof(want), "body %zu", seen);
			CHECK_EQ(msg->seq, seen);
			CHECK(msg->body.len == strlen(want) &&
			      memcmp(msg->body.data, want, strlen(want)) == 0);
		}
		more = rep->history->n_messages > 0;
		parley_frame_free(rep);
	}
	CHECK_EQ(seen, (size_t)acked);
	parley_close(l.svc);
	pl_map_fini(&m);
	hx_fini(&c, *check_failed_ != 0);
}
