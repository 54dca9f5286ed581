/*
 * tenant.c - tenant limits held across every gateway together: the
 * shares of tenant.h, counted per tenant.
 */
#include <stdlib.h>
#include <string.h>

#include "gateway/tenant.h"

pl_status gw_tenants_init(gw_tenants *t)
{
	memset(t, 0, sizeof(*t));
	t->slot = calloc(GW_TENANT_SLOTS, sizeof(*t->slot));
	if (t->slot == NULL)
		return PL_E_NOMEM;
	for (int i = 0; i < GW_TENANT_SLOTS; i++)
		pthread_mutex_init(&t->slot[i].mu, NULL);
	pthread_mutex_init(&t->add_mu, NULL);
	atomic_store(&t->gateways, 1);
	return PL_OK;
}

void gw_tenants_fini(gw_tenants *t)
{
	if (t->slot == NULL)
		return;
	for (int i = 0; i < GW_TENANT_SLOTS; i++)
		pthread_mutex_destroy(&t->slot[i].mu);
	pthread_mutex_destroy(&t->add_mu);
	free(t->slot);
	t->slot = NULL;
}

static uint32_t hash(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

gw_tenant_use *gw_tenants_find(gw_tenants *t, const char *tenant)
{
	uint32_t i = hash(tenant) & (GW_TENANT_SLOTS - 1);
	for (int probe = 0; probe < GW_TENANT_SLOTS; probe++) {
		gw_tenant_use *u = &t->slot[i];
		if (!atomic_load_explicit(&u->used, memory_order_acquire))
			return NULL;
		if (strcmp(u->name, tenant) == 0)
			return u;
		i = (i + 1) & (GW_TENANT_SLOTS - 1);
	}
	return NULL;
}

void gw_tenants_set(gw_tenants *t, const char *tenant, uint32_t conn_max,
    uint32_t pub_rate)
{
	if (strlen(tenant) > PL_TENANT_CHARS_MAX)
		return;
	gw_tenant_use *u = gw_tenants_find(t, tenant);
	if (u == NULL && conn_max == 0 && pub_rate == 0)
		return;
	pthread_mutex_lock(&t->add_mu);
	if (u == NULL)
		u = gw_tenants_find(t, tenant); /* added meanwhile? */
	if (u == NULL) {
		uint32_t i = hash(tenant) & (GW_TENANT_SLOTS - 1);
		for (int probe = 0; probe < GW_TENANT_SLOTS / 2 && u == NULL;
		     probe++) {
			if (!atomic_load(&t->slot[i].used))
				u = &t->slot[i];
			i = (i + 1) & (GW_TENANT_SLOTS - 1);
		}
		if (u == NULL) {
			/* Half full: probes stay short; the rest go
			 * unlimited here, counted. */
			atomic_fetch_add(&t->full, 1);
			pthread_mutex_unlock(&t->add_mu);
			return;
		}
		strcpy(u->name, tenant);
		atomic_store(&u->conn_max, conn_max);
		atomic_store(&u->pub_rate, pub_rate);
		atomic_store_explicit(&u->used, true, memory_order_release);
	} else {
		atomic_store(&u->conn_max, conn_max);
		atomic_store(&u->pub_rate, pub_rate);
	}
	pthread_mutex_unlock(&t->add_mu);
}

void gw_tenants_gateways(gw_tenants *t, uint32_t n)
{
	atomic_store(&t->gateways, n > 0 ? n : 1);
}

uint32_t gw_tenants_share(const gw_tenants *t, uint32_t limit)
{
	uint32_t n = atomic_load(&t->gateways);
	n = n > 0 ? n : 1;
	return (uint32_t)(((uint64_t)limit + n - 1) / n);
}

bool gw_tenant_conn_take(gw_tenants *t, gw_tenant_use *u, uint32_t *share)
{
	uint32_t max = atomic_load(&u->conn_max);
	if (max == 0) {
		atomic_fetch_add(&u->conns, 1);
		return true;
	}
	uint32_t s = gw_tenants_share(t, max);
	int32_t cur = atomic_load(&u->conns);
	do {
		if (cur >= (int32_t)s) {
			*share = s;
			return false;
		}
	} while (!atomic_compare_exchange_weak(&u->conns, &cur, cur + 1));
	return true;
}

void gw_tenant_conn_drop(gw_tenant_use *u)
{
	atomic_fetch_sub(&u->conns, 1);
}

bool gw_tenant_rate_take(gw_tenants *t, gw_tenant_use *u, int64_t now_us,
    uint32_t *wait_ms, uint32_t *share)
{
	uint32_t rate_all = atomic_load(&u->pub_rate);
	if (rate_all == 0)
		return true;
	const int64_t unit = 1000000;
	int64_t rate = gw_tenants_share(t, rate_all);
	bool ok;
	pthread_mutex_lock(&u->mu);
	if (u->tokens_us == 0) {
		u->tokens = 2 * rate * unit; /* a full bucket to start */
		u->tokens_us = now_us;
	}
	if (now_us > u->tokens_us) {
		u->tokens += (now_us - u->tokens_us) * rate;
		u->tokens_us = now_us;
	}
	if (u->tokens > 2 * rate * unit)
		u->tokens = 2 * rate * unit;
	ok = u->tokens >= unit;
	if (ok) {
		u->tokens -= unit;
	} else {
		int64_t us = (unit - u->tokens + rate - 1) / rate;
		*wait_ms = (uint32_t)((us + 999) / 1000);
		*share = (uint32_t)rate;
	}
	pthread_mutex_unlock(&u->mu);
	return ok;
}
