/*
 * test_tenant.c - tenant limits' shares across gateways (gateway/tenant.c):
 * the share is ceil(limit / gateways); a tenant's connections stop at its
 * share and free a place when one closes; its publishes draw on a bucket
 * of two seconds of its share's rate that refills with time; limits
 * change at runtime; tenants without limits are not tracked; threads
 * taking connections at once never pass the share.
 */
#define CHECK_MAIN
#include <pthread.h>

#include "gateway/tenant.h"
#include "tests/check.h"

TEST(test_tenant_share_is_ceiling)
{
	gw_tenants t;
	CHECK_EQ(gw_tenants_init(&t), PL_OK);
	CHECK_EQ(gw_tenants_share(&t, 10), 10);
	gw_tenants_gateways(&t, 3);
	CHECK_EQ(gw_tenants_share(&t, 10), 4);
	CHECK_EQ(gw_tenants_share(&t, 9), 3);
	CHECK_EQ(gw_tenants_share(&t, 1), 1);
	gw_tenants_gateways(&t, 0); /* taken as one */
	CHECK_EQ(gw_tenants_share(&t, 7), 7);
	gw_tenants_fini(&t);
}

TEST(test_tenant_connections_stop_at_the_share)
{
	gw_tenants t;
	CHECK_EQ(gw_tenants_init(&t), PL_OK);
	gw_tenants_set(&t, "free", 0, 0);
	CHECK(gw_tenants_find(&t, "free") == NULL); /* nothing to hold */
	gw_tenants_set(&t, "acme", 4, 0);
	gw_tenants_gateways(&t, 2);
	gw_tenant_use *u = gw_tenants_find(&t, "acme");
	CHECK(u != NULL);
	uint32_t share = 0;
	CHECK(gw_tenant_conn_take(&t, u, &share));
	CHECK(gw_tenant_conn_take(&t, u, &share));
	CHECK(!gw_tenant_conn_take(&t, u, &share));
	CHECK_EQ(share, 2);
	gw_tenant_conn_drop(u);
	CHECK(gw_tenant_conn_take(&t, u, &share));
	/* One gateway left: the whole limit is this one's. */
	gw_tenants_gateways(&t, 1);
	CHECK(gw_tenant_conn_take(&t, u, &share));
	CHECK(gw_tenant_conn_take(&t, u, &share));
	CHECK(!gw_tenant_conn_take(&t, u, &share));
	/* The limit lifted at runtime. */
	gw_tenants_set(&t, "acme", 0, 0);
	CHECK(gw_tenant_conn_take(&t, u, &share));
	gw_tenants_fini(&t);
}

TEST(test_tenant_publish_bucket_refills)
{
	gw_tenants t;
	CHECK_EQ(gw_tenants_init(&t), PL_OK);
	gw_tenants_set(&t, "acme", 0, 20);
	gw_tenants_gateways(&t, 2); /* 10/s here, a bucket of 20 */
	gw_tenant_use *u = gw_tenants_find(&t, "acme");
	CHECK(u != NULL);
	int64_t now = 1000000;
	uint32_t wait = 0, share = 0;
	int ok = 0;
	while (gw_tenant_rate_take(&t, u, now, &wait, &share))
		ok++;
	CHECK_EQ(ok, 20);
	CHECK_EQ(share, 10);
	CHECK(wait >= 99 && wait <= 101); /* one publish per 100 ms */
	now += 500000; /* half a second: five more */
	ok = 0;
	while (gw_tenant_rate_take(&t, u, now, &wait, &share))
		ok++;
	CHECK_EQ(ok, 5);
	now += 60 * 1000000LL; /* a long pause fills two seconds, no more */
	ok = 0;
	while (gw_tenant_rate_take(&t, u, now, &wait, &share))
		ok++;
	CHECK_EQ(ok, 20);
	gw_tenants_fini(&t);
}

TEST(test_tenant_many_tenants_found_apart)
{
	gw_tenants t;
	CHECK_EQ(gw_tenants_init(&t), PL_OK);
	char name[32];
	for (int i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "tenant-%d", i);
		gw_tenants_set(&t, name, (uint32_t)i + 1, 0);
	}
	for (int i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "tenant-%d", i);
		gw_tenant_use *u = gw_tenants_find(&t, name);
		CHECK(u != NULL);
		CHECK_EQ(atomic_load(&u->conn_max), (uint32_t)i + 1);
	}
	CHECK(gw_tenants_find(&t, "tenant-3000") == NULL);
	/* Past half the table, tenants go unlimited here, counted. */
	for (int i = 3000; i < GW_TENANT_SLOTS; i++) {
		snprintf(name, sizeof(name), "tenant-%d", i);
		gw_tenants_set(&t, name, 1, 0);
	}
	CHECK(atomic_load(&t.full) > 0);
	gw_tenants_fini(&t);
}

static gw_tenants shared;
static _Atomic int taken;

static void *take_main(void *arg)
{
	gw_tenant_use *u = arg;
	for (int i = 0; i < 1000; i++) {
		uint32_t share;
		if (gw_tenant_conn_take(&shared, u, &share))
			atomic_fetch_add(&taken, 1);
	}
	return NULL;
}

TEST(test_tenant_concurrent_takes_never_pass_the_share)
{
	CHECK_EQ(gw_tenants_init(&shared), PL_OK);
	gw_tenants_set(&shared, "acme", 100, 0);
	gw_tenant_use *u = gw_tenants_find(&shared, "acme");
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, take_main, u);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(atomic_load(&taken), 100);
	CHECK_EQ(atomic_load(&u->conns), 100);
	gw_tenants_fini(&shared);
}
