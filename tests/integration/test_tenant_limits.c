/*
 * test_tenant_limits.c - a tenant's limits from the cluster map hold
 * across gateways together (gateway/tenant.h): three cluster brokers, one
 * group, two gateways; tenant acme has connections_max 4 and
 * publish_per_sec 20 for the whole cluster, globex no limits.
 *   connections: with two gateways each holds 2 of acme's; a third on
 *   either is refused `overloaded`, one closing frees a place; globex's
 *   connections on the same gateway are not affected;
 *   publishes: acme publishing as fast as it can through one gateway is
 *   refused `rate_limited` past that gateway's share (10/s, a bucket of
 *   two seconds), while globex publishing the same way is never refused.
 */
#define CHECK_MAIN
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 5000

static pl_status limits_set(
    hx_cluster *c, const char *tenant, uint32_t conns, uint32_t rate)
{
	Parley__Cluster__Limits l = PARLEY__CLUSTER__LIMITS__INIT;
	Parley__Cluster__TenantSet ts = PARLEY__CLUSTER__TENANT_SET__INIT;
	Parley__Cluster__Change ch = PARLEY__CLUSTER__CHANGE__INIT;
	l.connections_max = conns;
	l.publish_per_sec = rate;
	ts.name = (char *)tenant;
	ts.limits = &l;
	ch.op_case = PARLEY__CLUSTER__CHANGE__OP_TENANT_SET;
	ch.tenant_set = &ts;
	return hx_map_change(c, &ch, NULL);
}

static bool gateways_counted(hx_cluster *c, long n)
{
	for (int i = 0; i < 200; i++) {
		if (hx_metric(c->http_port, "parley_gateway_cluster_gateways") ==
		        n &&
		    hx_metric(c->http_port2, "parley_gateway_cluster_gateways") ==
		        n)
			return true;
		usleep(50000);
	}
	return false;
}

/* Publishes n times as fast as it can; counts acks and rate_limited. */
static void burst(parley_conn *conn, const char *room, const char *tag,
    int n, int *acked, int *limited)
{
	*acked = *limited = 0;
	for (int i = 0; i < n; i++) {
		char id[48];
		snprintf(id, sizeof(id), "%s-%d", tag, i);
		pl_status st = parley_publish(
		    conn, room, id, PARLEY__KIND__TEXT, "x", 1, T, NULL);
		*acked += st == PL_OK;
		*limited += st == PL_E_RATE_LIMITED;
	}
}

TEST(test_tenant_limits_hold_across_gateways)
{
	hx_cluster c;
	CHECK(hx_init_replicated(&c, 1, 3));
	CHECK(hx_init_meta(&c));
	pl_map m;
	CHECK(hx_cluster_up(&c, 3, &m));
	CHECK_EQ(hx_map_tenant_with_key(&c, "acme", &m), PL_OK);
	CHECK_EQ(hx_map_tenant_with_key(&c, "globex", &m), PL_OK);
	CHECK_EQ(limits_set(&c, "acme", 4, 20), PL_OK);
	CHECK_EQ(hx_map_group_add(&c, 3, &m), PL_OK);
	CHECK(hx_start_gateway(&c));
	CHECK(hx_start_gateway2(&c));
	/* Both gateways poll the group's leader, which counts them. */
	CHECK(gateways_counted(&c, 2));

	parley_conn *a[6] = {0}, *gx[5] = {0};
	a[0] = hx_client_at(&c, 1, false, "acme", "a0", PARLEY__ROLE__SERVICE);
	a[1] = hx_client_at(&c, 1, true, "acme", "a1", PARLEY__ROLE__SERVICE);
	CHECK(a[0] != NULL && a[1] != NULL);
	a[2] = hx_client_at(&c, 1, false, "acme", "a2", PARLEY__ROLE__SERVICE);
	CHECK(a[2] == NULL); /* gateway 1's share of 4 over 2 is in use */
	a[3] = hx_client_at(&c, 2, false, "acme", "a3", PARLEY__ROLE__SERVICE);
	a[4] = hx_client_at(&c, 2, true, "acme", "a4", PARLEY__ROLE__SERVICE);
	CHECK(a[3] != NULL && a[4] != NULL);
	a[5] = hx_client_at(&c, 2, false, "acme", "a5", PARLEY__ROLE__SERVICE);
	CHECK(a[5] == NULL);
	for (int i = 0; i < 5; i++) {
		gx[i] = hx_client_at(
		    &c, 1, i % 2 == 1, "globex", "g", PARLEY__ROLE__SERVICE);
		CHECK(gx[i] != NULL); /* another tenant: nothing held */
	}
	CHECK(hx_metric(c.http_port,
	          "parley_gateway_tenant_refused_total{limit=\"connections\"}") ==
	      1);
	/* One closes: its place is free again. */
	parley_close(a[1]);
	a[1] = NULL;
	for (int i = 0; i < 50 && a[1] == NULL; i++) {
		a[1] = hx_client_at(
		    &c, 1, false, "acme", "a1", PARLEY__ROLE__SERVICE);
		if (a[1] == NULL)
			usleep(20000); /* the close is counted as it ends */
	}
	CHECK(a[1] != NULL);

	/* Publishes: acme's share on gateway 1 is 10/s, a bucket of 20. */
	char room_a[17], room_g[17];
	CHECK_EQ(parley_create_room(a[0], NULL, NULL, 0, T, room_a, NULL),
	    PL_OK);
	CHECK_EQ(parley_create_room(gx[0], NULL, NULL, 0, T, room_g, NULL),
	    PL_OK);
	int64_t t0 = pl_mono_us();
	int acked, limited;
	burst(a[0], room_a, "a", 60, &acked, &limited);
	double s = (double)(pl_mono_us() - t0) / 1e6;
	fprintf(stderr,
	    "  acme through one gateway: %d acked, %d rate_limited in %.2f s\n",
	    acked, limited, s);
	CHECK(limited > 0);
	CHECK_EQ(acked + limited, 60);
	CHECK(acked <= 20 + (int)(10 * s) + 2);
	burst(gx[0], room_g, "g", 60, &acked, &limited);
	CHECK_EQ(limited, 0);
	CHECK_EQ(acked, 60);

	for (int i = 0; i < 6; i++)
		parley_close(a[i]);
	for (int i = 0; i < 5; i++)
		parley_close(gx[i]);
	pl_map_fini(&m);
	hx_fini(&c, *check_failed_ != 0);
}
