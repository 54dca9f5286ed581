/*
 * ring.c - the bounded FIFO of 64-bit values behind a connection's event
 * queue (box pointers) and its completion queue (request ids). It
 * allocates lazily and doubles up to its max; it never grows past it.
 */
#include <stdlib.h>

#include "client/conn.h"

bool parley_ring_push(ring *r, uint64_t v)
{
	if (r->len == r->cap) {
		if (r->cap >= r->max)
			return false;
		uint32_t ncap = r->cap ? r->cap * 2 : 16;
		if (ncap > r->max)
			ncap = r->max;
		uint64_t *n = malloc(sizeof(*n) * ncap);
		if (n == NULL)
			return false;
		for (uint32_t i = 0; i < r->len; i++)
			n[i] = r->items[(r->head + i) % r->cap];
		free(r->items);
		r->items = n;
		r->cap = ncap;
		r->head = 0;
	}
	r->items[(r->head + r->len) % r->cap] = v;
	r->len++;
	return true;
}

uint64_t parley_ring_pop(ring *r)
{
	PL_ASSERT(r->len > 0);
	uint64_t v = r->items[r->head];
	r->head = (r->head + 1) % r->cap;
	r->len--;
	return v;
}
