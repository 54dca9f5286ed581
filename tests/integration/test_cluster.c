/*
 * test_cluster.c - a cluster run by its map: three brokers, each a meta
 * replica, that register themselves; shard groups added through the meta
 * group are hosted by the brokers the map places them on, at runtime; a
 * gateway configured with the meta addresses only follows the map.
 *   group add: a broker process starts a replica of the new group; new
 *   rooms land on it within 2 s; drain: new rooms stop landing on it,
 *   its rooms keep serving;
 *   tenants and keys from the map: a token of a tenant added through the
 *   map is accepted within a second or two; after its key is revoked a
 *   new connection with it is refused, the others unaffected;
 *   fault: a broker hosting a replica of every group killed with kill -9
 *   under publishes: every acknowledged publish is read back once, in
 *   order.
 */
#define CHECK_MAIN
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.pb-c.h"
#include "proto/map_client.h"
#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 5000

static pl_status change(
    hx_cluster *c, const Parley__Cluster__Change *ch, pl_map *after)
{
	return hx_map_change(c, ch, after);
}

static pl_status group_drain(hx_cluster *hc, uint32_t id, pl_map *after)
{
	Parley__Cluster__GroupSet gs = PARLEY__CLUSTER__GROUP_SET__INIT;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	gs.id = id;
	gs.weight = 1;
	gs.draining = true;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_GROUP_SET;
	c.group_set = &gs;
	return change(hc, &c, after);
}

static pl_status key_revoke(hx_cluster *hc, const char *tenant, pl_map *after)
{
	char path[256], t[64], kid[32];
	uint8_t sk[64], pk[32];
	snprintf(path, sizeof(path), "%s/%s.key", hc->dir, tenant);
	if (pl_keyfile_load(path, t, sizeof(t), kid, sizeof(kid), sk, pk) !=
	    PL_OK)
		return PL_E_IO;
	Parley__Cluster__KeyRevoke kr = PARLEY__CLUSTER__KEY_REVOKE__INIT;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	kr.tenant = (char *)tenant;
	kr.key_id = kid;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_KEY_REVOKE;
	c.key_revoke = &kr;
	return change(hc, &c, after);
}

/* Waits until every running broker hosts n groups (meta included). */
static bool brokers_host(hx_cluster *c, long n, int ms)
{
	for (int i = 0; i < ms / 50; i++) {
		bool all = true;
		for (int r = 1; r <= c->nreplicas; r++)
			if (c->rep[0][r].pid > 0 &&
			    hx_metric(c->rep_http[0][r],
			        "parley_broker_groups") != n)
				all = false;
		if (all)
			return true;
		usleep(50000);
	}
	return false;
}

static bool gateway_at(hx_cluster *c, uint64_t version, int ms)
{
	for (int i = 0; i < ms / 50; i++) {
		if (hx_metric(c->http_port, "parley_gateway_map_version") >=
		    (long)version)
			return true;
		usleep(50000);
	}
	return false;
}

/* Creates n rooms; returns how many landed on group g. */
static int rooms_on(parley_conn *svc, int n, uint16_t g, char last[17])
{
	int on = 0;
	for (int i = 0; i < n; i++) {
		char room[17];
		if (parley_create_room(svc, NULL, NULL, 0, T, room, NULL) !=
		    PL_OK)
			return -1;
		uint64_t id;
		if (pl_room_parse(room, &id) == PL_OK && pl_room_group(id) == g) {
			on++;
			if (last != NULL)
				memcpy(last, room, 17);
		}
	}
	return on;
}

TEST(test_cluster_grows_and_serves_from_its_map)
{
	hx_cluster c;
	CHECK(hx_init_replicated(&c, 1, 3));
	CHECK(hx_init_meta(&c));
	pl_map m;
	CHECK(hx_cluster_up(&c, 3, &m)); /* they register themselves */
	CHECK_EQ(hx_map_tenant_with_key(&c, "acme", &m), PL_OK);
	CHECK_EQ(hx_map_tenant_with_key(&c, "globex", &m), PL_OK);
	CHECK_EQ(hx_map_group_add(&c, 3, &m), PL_OK);
	CHECK(brokers_host(&c, 2, 10000));
	CHECK(hx_start_gateway(&c));
	CHECK(gateway_at(&c, m.version, 5000));

	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	char room1[17];
	CHECK_EQ(rooms_on(svc, 1, 1, room1), 1);
	for (int i = 1; i <= 50; i++)
		CHECK_EQ(hx_publish_n(svc, room1, i, NULL), PL_OK);

	/* A second group: hosted by the brokers, and new rooms land on it
	 * within 2 s. */
	CHECK_EQ(hx_map_group_add(&c, 3, &m), PL_OK);
	CHECK_EQ(m.ngroups, 2);
	CHECK(brokers_host(&c, 3, 10000));
	CHECK(gateway_at(&c, m.version, 2000));
	char room2[17];
	CHECK(rooms_on(svc, 20, 2, room2) > 0);

	/* Group 1 drained: new rooms land on group 2 only; room1 serves. */
	CHECK_EQ(group_drain(&c, 1, &m), PL_OK);
	CHECK(gateway_at(&c, m.version, 2000));
	CHECK_EQ(rooms_on(svc, 20, 1, NULL), 0);
	for (int i = 51; i <= 100; i++)
		CHECK_EQ(hx_publish_n(svc, room1, i, NULL), PL_OK);

	/* A tenant's key revoked in the map: its new connections are
	 * refused within a couple of seconds; acme goes on. */
	parley_conn *gx =
	    hx_client(&c, false, "globex", "backend", PARLEY__ROLE__SERVICE);
	CHECK(gx != NULL);
	parley_close(gx);
	CHECK_EQ(key_revoke(&c, "globex", &m), PL_OK);
	CHECK(gateway_at(&c, m.version, 2000));
	gx = hx_client(&c, false, "globex", "backend", PARLEY__ROLE__SERVICE);
	CHECK(gx == NULL);

	/* A broker holding a replica of every group killed: publishes go
	 * on after the pause; everything acknowledged reads back in order. */
	hx_kill(&c.rep[0][1], SIGKILL);
	int acked = 100;
	for (int i = 101; i <= 150; i++) {
		pl_status st = PL_E_UNAVAILABLE;
		for (int a = 0; a < 20 && st != PL_OK; a++)
			st = hx_publish_n(svc, room1, i, NULL);
		CHECK_EQ(st, PL_OK);
		acked = i;
	}
	parley_history_query q = {.limit = 500, .oldest_first = true};
	Parley__ServerFrame *rep = NULL;
	CHECK_EQ(hx_history_retry(svc, room1, &q, &rep), PL_OK);
	CHECK(rep != NULL && rep->history != NULL);
	CHECK_EQ(rep->history->n_messages, (size_t)acked);
	for (size_t i = 0; i < rep->history->n_messages; i++)
		CHECK_EQ(rep->history->messages[i]->seq, i + 1);
	parley_frame_free(rep);
	parley_close(svc);
	pl_map_fini(&m);
	hx_fini(&c, *check_failed_ != 0);
}
