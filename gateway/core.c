/*
 * core.c - what every module of a gateway shares and no module owns:
 * the error counters and the pool of decode arenas for client frames.
 * The state itself, and the rules for it, are in core.h.
 */
#include <stdlib.h>

#include "gateway/core.h"

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
