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

/* A read lock rather than an atomic pointer: a verify holds the keyring
 * for one signature check (tens of microseconds) and a swap is rare, so
 * the lock costs nothing measurable, and freeing the old keyring needs
 * no grace period: once the writer holds the lock no reader can. */
pl_status gw_token_verify(gw *g, const char *token, int64_t now_s,
    pl_claims *out, const char **why)
{
	pthread_rwlock_rdlock(&g->keys_mu);
	pl_status st = pl_token_verify_why(g->keys, token, now_s, out, why);
	pthread_rwlock_unlock(&g->keys_mu);
	return st;
}

void gw_keys_swap(gw *g, pl_keyring *kr)
{
	pthread_rwlock_wrlock(&g->keys_mu);
	pl_keyring *old = g->keys_owned ? g->keys : NULL;
	g->keys = kr;
	g->keys_owned = true;
	pthread_rwlock_unlock(&g->keys_mu);
	free(old);
}

void gw_keys_fini(gw *g)
{
	if (g->keys_owned)
		free(g->keys);
	g->keys = NULL;
	g->keys_owned = false;
}
