/*
 * test_meta.c - the meta group: three broker replicas of group 0 holding
 * the cluster map (docs/cluster.md).
 *   changes: signed with the cluster secret, proposed through any
 *   replica (a follower's not_leader hint leads to the leader), applied
 *   once; a retry of an applied change is a no-op (same version); an
 *   unsafe change is refused with a reason and changes nothing; a change
 *   signed with another secret is refused;
 *   watch: a watcher sees every new version within a second;
 *   fault: the meta leader is killed with kill -9 (a new one takes
 *   changes); then a second replica (no quorum): changes fail, but the
 *   survivor still serves its last map; restarted, the replicas hold
 *   the same map.
 */
#define CHECK_MAIN
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cluster.pb-c.h"
#include "proto/map_client.h"
#include "tests/check.h"
#include "tests/integration/harness.h"

#define T_MS 8000

static uint8_t secret[32];
static const char *addrs[HX_REPLICAS_MAX];
static char addr_buf[HX_REPLICAS_MAX][64];
static int naddrs;

static bool secret_read(const char *path)
{
	return pl_secret_file_load(path, secret) == PL_OK;
}

static size_t pack_change(const Parley__Cluster__Change *c, uint8_t *out)
{
	return parley__cluster__change__pack(c, out);
}

static pl_status broker_add(uint64_t node, const char *key, bool *changed,
    pl_map *after, const uint8_t *key_secret)
{
	Parley__Cluster__Broker b = PARLEY__CLUSTER__BROKER__INIT;
	Parley__Cluster__BrokerAdd ba = PARLEY__CLUSTER__BROKER_ADD__INIT;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	char name[32], listen[64], peer[64];
	snprintf(name, sizeof(name), "broker-%llu", (unsigned long long)node);
	snprintf(listen, sizeof(listen), "tcp://127.0.0.1:%llu%s",
	    (unsigned long long)(20000 + node), key);
	snprintf(peer, sizeof(peer), "tcp://127.0.0.1:%llu",
	    (unsigned long long)(21000 + node));
	b.node = node;
	b.name = name;
	b.listen = listen;
	b.peer = peer;
	ba.broker = &b;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_BROKER_ADD;
	c.broker_add = &ba;
	uint8_t buf[512];
	size_t n = pack_change(&c, buf);
	char why[200];
	return pl_map_change(addrs, naddrs, key_secret, buf, n, T_MS, changed,
	    after, why, sizeof(why));
}

static pl_status group_add(uint32_t replicas, bool *changed, pl_map *after,
    char *why, size_t why_len)
{
	Parley__Cluster__GroupAdd ga = PARLEY__CLUSTER__GROUP_ADD__INIT;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	ga.id = 0;
	ga.replicas = replicas;
	ga.weight = 1;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_GROUP_ADD;
	c.group_add = &ga;
	uint8_t buf[128];
	size_t n = pack_change(&c, buf);
	return pl_map_change(addrs, naddrs, secret, buf, n, T_MS, changed,
	    after, why, why_len);
}

static _Atomic uint64_t watched;
static void on_map(void *ctx, const pl_map *m)
{
	(void)ctx;
	atomic_store(&watched, m->version);
}

static bool watch_reaches(uint64_t v, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (atomic_load(&watched) >= v)
			return true;
		usleep(10000);
	}
	return false;
}

static int find_leader(hx_cluster *c)
{
	for (int r = 1; r <= c->nreplicas; r++)
		if (c->rep[0][r].pid > 0 &&
		    hx_metric(c->rep_http[0][r], "parley_broker_raft_leader") == 1)
			return r;
	return 0;
}

TEST(test_meta_group_serves_the_map)
{
	hx_cluster c;
	CHECK(hx_init_replicated(&c, 1, 3));
	CHECK(hx_init_meta(&c));
	CHECK(secret_read(c.secret_file));
	naddrs = c.nreplicas;
	for (int r = 1; r <= c.nreplicas; r++) {
		snprintf(addr_buf[r - 1], sizeof(addr_buf[r - 1]),
		    "tcp://127.0.0.1:%d", c.rep_port[0][r]);
		addrs[r - 1] = addr_buf[r - 1];
		CHECK(hx_start_replica(&c, 0, r));
	}

	/* An empty map at first, from any replica. */
	pl_map m;
	pl_map_init(&m);
	CHECK_EQ(pl_map_fetch(addrs, naddrs, T_MS, &m), PL_OK);
	CHECK_EQ(m.version, 0);
	pl_map_watch *w;
	CHECK_EQ(pl_map_watch_start(addrs, naddrs, 0, on_map, NULL, &w), PL_OK);

	/* Three brokers: versions 1..3; each a no-op the second time. */
	for (uint64_t node = 1; node <= 3; node++) {
		bool changed = false;
		CHECK_EQ(broker_add(node, "", &changed, &m, secret), PL_OK);
		CHECK(changed);
		CHECK_EQ(m.version, node);
		CHECK_EQ(broker_add(node, "", &changed, &m, secret), PL_OK);
		CHECK(!changed);
		CHECK_EQ(m.version, node);
	}
	CHECK_EQ(m.nbrokers, 3);
	CHECK(watch_reaches(3, 1000));

	/* Another broker claiming node 2's id: refused, map unchanged. */
	bool changed = true;
	CHECK(broker_add(2, "9", &changed, &m, secret) != PL_OK);
	CHECK_EQ(pl_map_fetch(addrs, naddrs, T_MS, &m), PL_OK);
	CHECK_EQ(m.version, 3);
	/* Signed with another secret: refused. */
	uint8_t other[32];
	memcpy(other, secret, sizeof(other));
	other[0] ^= 1;
	CHECK_EQ(broker_add(4, "", &changed, &m, other), PL_E_UNAUTHORIZED);

	/* A group of three replicas placed on the three brokers; one of
	 * five cannot be placed (three brokers): refused with a reason. */
	char why[200] = "";
	CHECK_EQ(group_add(3, &changed, &m, why, sizeof(why)), PL_OK);
	CHECK(changed);
	CHECK_EQ(m.version, 4);
	CHECK_EQ(m.ngroups, 1);
	CHECK_EQ(m.groups[0].nreplicas, 3);
	CHECK(m.groups[0].replicas[0].node != m.groups[0].replicas[1].node);
	CHECK(watch_reaches(4, 1000));
	CHECK(group_add(5, &changed, &m, why, sizeof(why)) != PL_OK);
	CHECK(why[0] != '\0');

	/* The leader killed: a new one takes changes. */
	int lead = find_leader(&c);
	CHECK(lead > 0);
	hx_kill(&c.rep[0][lead], SIGKILL);
	CHECK_EQ(group_add(3, &changed, &m, why, sizeof(why)), PL_OK);
	CHECK(changed);
	CHECK_EQ(m.version, 5);
	CHECK(watch_reaches(5, 1000));

	/* A second replica gone: no quorum. Changes fail; the survivor
	 * still serves the last map. */
	int second = 0;
	for (int r = 1; r <= c.nreplicas && second == 0; r++)
		if (c.rep[0][r].pid > 0)
			second = r;
	hx_kill(&c.rep[0][second], SIGKILL);
	pl_status st = group_add(3, &changed, &m, why, sizeof(why));
	CHECK(st == PL_E_UNAVAILABLE || st == PL_E_TIMEOUT);
	CHECK_EQ(pl_map_fetch(addrs, naddrs, T_MS, &m), PL_OK);
	CHECK_EQ(m.version, 5);

	/* Back again: the map is what it was, and changes flow. */
	CHECK(hx_start_replica(&c, 0, lead));
	CHECK(hx_start_replica(&c, 0, second));
	CHECK_EQ(group_add(3, &changed, &m, why, sizeof(why)), PL_OK);
	CHECK_EQ(m.version, 6);
	CHECK_EQ(m.ngroups, 3);
	CHECK(watch_reaches(6, 2000));
	pl_map_watch_stop(w);
	pl_map_fini(&m);
	hx_fini(&c, *check_failed_ != 0);
}
