/*
 * tenant.h - tenant limits held across every gateway together (tenant.c,
 * a pure leaf: no gateway state). The cluster map holds each tenant's
 * connections_max and publish_per_sec for the whole cluster; the brokers
 * say how many gateways they serve (BrokerBatch.gateways); each gateway
 * holds its share, ceil(limit / gateways), so together they hold the
 * limit (give or take a rounding per gateway). A tenant whose clients
 * crowd onto one gateway meets its limit early there: shares follow the
 * number of gateways, not where the load is.
 *
 * Thread safety: the table's entries are added under a mutex and found
 * without one (an entry's name is written before it is published with
 * release); counts are atomics; each entry's rate bucket has its own
 * mutex.
 */
#ifndef PARLEY_GATEWAY_TENANT_H
#define PARLEY_GATEWAY_TENANT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"

/* Tenants with a limit a gateway tracks; past it a tenant's limits are
 * not held (counted by gw_tenants.full). Power of two. */
#define GW_TENANT_SLOTS 8192

typedef struct gw_tenant_use {
	_Atomic bool used;
	char name[PL_TENANT_CHARS_MAX + 1];
	_Atomic uint32_t conn_max; /* cluster-wide; 0: no limit */
	_Atomic uint32_t pub_rate; /* cluster-wide publishes/s; 0: none */
	_Atomic int32_t conns;     /* this gateway's */
	pthread_mutex_t mu;        /* the bucket */
	int64_t tokens;            /* millionths of a publish */
	int64_t tokens_us;
} gw_tenant_use;

typedef struct gw_tenants {
	gw_tenant_use *slot; /* GW_TENANT_SLOTS */
	pthread_mutex_t add_mu;
	_Atomic uint32_t gateways; /* as the brokers count them; >= 1 */
	_Atomic uint64_t full;     /* tenants not tracked: table full */
} gw_tenants;

pl_status gw_tenants_init(gw_tenants *t);
void gw_tenants_fini(gw_tenants *t);
/* Sets a tenant's cluster-wide limits (0: none); a tenant without any
 * and not tracked yet is not added. */
void gw_tenants_set(gw_tenants *t, const char *tenant, uint32_t conn_max,
    uint32_t pub_rate);
/* The number of gateways serving the cluster (0 is taken as 1). */
void gw_tenants_gateways(gw_tenants *t, uint32_t n);
/* This gateway's share of a cluster-wide limit: ceil(limit / gateways). */
uint32_t gw_tenants_share(const gw_tenants *t, uint32_t limit);
/* The tenant's entry, or NULL when it has no limits here. */
gw_tenant_use *gw_tenants_find(gw_tenants *t, const char *tenant);
/* One more connection of u's tenant, unless this gateway's share of
 * connections_max is reached (then false and *share says it). */
bool gw_tenant_conn_take(gw_tenants *t, gw_tenant_use *u, uint32_t *share);
void gw_tenant_conn_drop(gw_tenant_use *u);
/* One publish of u's tenant at time now_us from this gateway's share of
 * publish_per_sec (a bucket of two seconds' worth); false with the wait
 * in *wait_ms and the share in *share when empty. */
bool gw_tenant_rate_take(gw_tenants *t, gw_tenant_use *u, int64_t now_us,
    uint32_t *wait_ms, uint32_t *share);

#endif /* PARLEY_GATEWAY_TENANT_H */
