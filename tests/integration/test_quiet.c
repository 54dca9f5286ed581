/*
 * test_quiet.c - idle groups stop their Raft clocks (broker/quiet.c) and
 * still serve and fail over: three cluster brokers, one shard group of
 * three replicas.
 *   idle: after a couple of seconds without traffic every replica of the
 *   group reports parley_broker_raft_quiet 1;
 *   work: a publish to the quiet group is acknowledged (it wakes), and
 *   the group goes quiet again afterwards;
 *   fault: the quiet group's leader killed with kill -9: the others
 *   notice the missing beats, elect, and the next publish is
 *   acknowledged; every acknowledged publish reads back once, in order.
 *   The time from the kill to the first acknowledgement is printed.
 */
#define CHECK_MAIN
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 5000

/* Replicas of group 1 (metrics labelled {group="1"}) reporting quiet. */
static int quiet_replicas(hx_cluster *c)
{
	int n = 0;
	for (int r = 1; r <= c->nreplicas; r++) {
		char body[65536];
		if (c->rep[0][r].pid <= 0 ||
		    hx_http_get(c->rep_http[0][r], "/metrics", body,
		        sizeof(body)) != 200)
			continue;
		n += strstr(body, "parley_broker_raft_quiet{group=\"1\"} 1") !=
		     NULL;
	}
	return n;
}

static bool all_quiet(hx_cluster *c, int want, int ms)
{
	for (int i = 0; i < ms / 100; i++) {
		if (quiet_replicas(c) >= want)
			return true;
		usleep(100000);
	}
	return false;
}

static int leader_node(hx_cluster *c)
{
	for (int n = 1; n <= c->nreplicas; n++) {
		pl_replica_info r;
		if (c->rep[0][n].pid > 0 &&
		    hx_replica_info(c, n, 1, &r) == PL_OK &&
		    strcmp(r.role, "leader") == 0)
			return n;
	}
	return 0;
}

TEST(test_quiet_groups_serve_and_fail_over)
{
	hx_cluster c;
	CHECK(hx_init_replicated(&c, 1, 3));
	CHECK(hx_init_meta(&c));
	pl_map m;
	CHECK(hx_cluster_up(&c, 3, &m));
	CHECK_EQ(hx_map_tenant_with_key(&c, "acme", &m), PL_OK);
	CHECK_EQ(hx_map_group_add(&c, 3, &m), PL_OK);
	CHECK(hx_start_gateway(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	char room[17];
	pl_status st = PL_E_UNAVAILABLE;
	for (int i = 0; i < 50 && st != PL_OK; i++) {
		st = parley_create_room(svc, NULL, NULL, 0, T, room, NULL);
		if (st != PL_OK)
			usleep(100000);
	}
	CHECK_EQ(st, PL_OK);
	CHECK_EQ(hx_publish_n(svc, room, 1, NULL), PL_OK);

	/* Idle: every replica stops its clock. */
	CHECK(all_quiet(&c, 3, 10000));
	/* Work on a quiet group: acknowledged; quiet again afterwards. */
	CHECK_EQ(hx_publish_n(svc, room, 2, NULL), PL_OK);
	CHECK(all_quiet(&c, 3, 10000));

	/* The quiet leader dies. */
	int lead = leader_node(&c);
	CHECK(lead != 0);
	int64_t t0 = pl_mono_us();
	hx_kill(&c.rep[0][lead], SIGKILL);
	st = PL_E_UNAVAILABLE;
	for (int i = 0; i < 40 && st != PL_OK; i++)
		st = hx_publish_n(svc, room, 3, NULL);
	CHECK_EQ(st, PL_OK);
	fprintf(stderr,
	    "  quiet leader killed: next publish acknowledged after %.0f ms\n",
	    (double)(pl_mono_us() - t0) / 1000.0);
	CHECK(leader_node(&c) != 0);
	CHECK_EQ(hx_publish_n(svc, room, 4, NULL), PL_OK);

	parley_history_query q = {.limit = 10, .oldest_first = true};
	Parley__ServerFrame *rep = NULL;
	CHECK_EQ(hx_history_retry(svc, room, &q, &rep), PL_OK);
	CHECK(rep != NULL && rep->history != NULL);
	CHECK_EQ(rep->history->n_messages, 4);
	for (size_t i = 0; i < rep->history->n_messages; i++)
		CHECK_EQ(rep->history->messages[i]->seq, i + 1);
	parley_frame_free(rep);
	parley_close(svc);
	pl_map_fini(&m);
	hx_fini(&c, *check_failed_ != 0);
}
