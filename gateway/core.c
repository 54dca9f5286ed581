/*
 * core.c - what every module of a gateway shares and no module owns:
 * the error counters, the pool of decode arenas for client frames and
 * the swappable tenant keyring. The state itself, and the rules for it,
 * are in core.h.
 */
#include <stdlib.h>

#include "gateway/core.h"
#include "proto/token.h"

void gw_count_error(gw *g, int code)
{
	if (code > 0 && code < GW_CODES)
		pl_metric_inc(g->m.errors[code], 1);
}

gw_arena *gw_arena_get(gw *g)
{
	pthread_mutex_lock(&g->arena_mu);
	gw_arena *a = g->arenas;
	if (a != NULL)
		g->arenas = a->next;
	pthread_mutex_unlock(&g->arena_mu);
	if (a != NULL) {
		pl_arena_reset(&a->a);
		return a;
	}
	/* The pool grows to the number of nng threads reading at once and
	 * then stays: one arena per concurrent callback, not per frame. */
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return NULL;
	if (pl_arena_init(&a->a, NULL, g->arena_bytes) != PL_OK) {
		free(a);
		return NULL;
	}
	return a;
}

void gw_arena_put(gw *g, gw_arena *a)
{
	pthread_mutex_lock(&g->arena_mu);
	a->next = g->arenas;
	g->arenas = a;
	pthread_mutex_unlock(&g->arena_mu);
}

void gw_arenas_free(gw *g)
{
	while (g->arenas != NULL) {
		gw_arena *a = g->arenas;
		g->arenas = a->next;
		pl_arena_fini(&a->a);
		free(a);
	}
}

/* A reference count under a mutex rather than a rwlock: a verify holds
 * the keyring for one signature check (tens of microseconds) with no
 * lock held, so many connections verifying at once never starve a swap
 * (glibc's rwlock prefers readers), and the old keyring is freed by
 * whoever drops its last reference, so no reader can be using it. */
static void keys_put(gw *g, struct gw_keys *k)
{
	pthread_mutex_lock(&g->keys_mu);
	bool last = --k->refs == 0;
	pthread_mutex_unlock(&g->keys_mu);
	if (!last)
		return;
	if (k->owned)
		free(k->kr);
	free(k);
}

pl_status gw_keys_init(gw *g)
{
	g->keys = calloc(1, sizeof(*g->keys));
	if (g->keys == NULL)
		return PL_E_NOMEM;
	*g->keys = (struct gw_keys){.kr = g->conf->keys, .refs = 1};
	return PL_OK;
}

pl_status gw_token_verify(gw *g, const char *token, int64_t now_s,
    pl_claims *out, const char **why)
{
	pthread_mutex_lock(&g->keys_mu);
	struct gw_keys *k = g->keys;
	k->refs++;
	pthread_mutex_unlock(&g->keys_mu);
	pl_status st = pl_token_verify_why(k->kr, token, now_s, out, why);
	keys_put(g, k);
	return st;
}

pl_status gw_keys_swap(gw *g, pl_keyring *kr)
{
	struct gw_keys *k = calloc(1, sizeof(*k));
	if (k == NULL) {
		free(kr);
		return PL_E_NOMEM;
	}
	*k = (struct gw_keys){.kr = kr, .owned = true, .refs = 1};
	pthread_mutex_lock(&g->keys_mu);
	struct gw_keys *old = g->keys;
	g->keys = k;
	pthread_mutex_unlock(&g->keys_mu);
	keys_put(g, old);
	return PL_OK;
}

void gw_keys_fini(gw *g)
{
	if (g->keys != NULL)
		keys_put(g, g->keys);
	g->keys = NULL;
}
