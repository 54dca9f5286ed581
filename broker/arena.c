/*
 * arena.c - a growing bump allocator for building replies whose size is
 * known only while they are built. Chunks are chained; reset frees all but
 * the first so a steady workload allocates nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "broker/arena.h"

struct brk_chunk {
	brk_chunk *next;
	size_t cap, used;
	_Alignas(16) uint8_t data[];
};

static void *pb_alloc(void *data, size_t n)
{
	return brk_arena_alloc(data, n);
}

static void pb_free(void *data, void *p)
{
	(void)data;
	(void)p; /* freed with the arena */
}

void brk_arena_init(brk_arena *a, size_t chunk_bytes, size_t total_max)
{
	memset(a, 0, sizeof(*a));
	a->alloc.alloc = pb_alloc;
	a->alloc.free = pb_free;
	a->alloc.allocator_data = a;
	a->chunk_bytes = chunk_bytes;
	a->total_max = total_max;
}

static void free_chain(brk_chunk *c)
{
	while (c != NULL) {
		brk_chunk *next = c->next;
		free(c);
		c = next;
	}
}

void brk_arena_fini(brk_arena *a)
{
	if (a == NULL)
		return;
	free_chain(a->head);
	a->head = NULL;
	a->total_bytes = 0;
}

void brk_arena_reset(brk_arena *a)
{
	if (a->head == NULL)
		return;
	/* Keep the oldest chunk (the tail of the chain). */
	brk_chunk *c = a->head, *keep = NULL;
	while (c->next != NULL) {
		brk_chunk *next = c->next;
		free(c);
		c = next;
	}
	keep = c;
	keep->used = 0;
	a->head = keep;
	a->total_bytes = keep->cap;
}

void *brk_arena_alloc(brk_arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	brk_chunk *c = a->head;
	if (c == NULL || c->cap - c->used < n) {
		size_t cap = n > a->chunk_bytes ? n : a->chunk_bytes;
		if (a->total_bytes + cap > a->total_max)
			return NULL;
		c = malloc(sizeof(*c) + cap);
		if (c == NULL)
			return NULL;
		c->cap = cap;
		c->used = 0;
		c->next = a->head;
		a->head = c;
		a->total_bytes += cap;
	}
	void *p = c->data + c->used;
	c->used += n;
	return p;
}

char *brk_arena_strdup(brk_arena *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = brk_arena_alloc(a, n);
	if (p != NULL)
		memcpy(p, s, n);
	return p;
}
