/*
 * arena.h - the broker's chunked arena (arena.c).
 */
#ifndef PARLEY_BROKER_ARENA_H
#define PARLEY_BROKER_ARENA_H

#include <stddef.h>

#include "proto/codec.h"

/* Chunked arena (arena.c): bump allocation from a chain of chunks, reset
 * keeps the first chunk. Usable as a ProtobufCAllocator. Not thread-safe.
 * Unlike pl_arena it grows, for replies whose size is known only while
 * they are built (history pages). */

typedef struct brk_chunk brk_chunk;
typedef struct brk_arena {
	ProtobufCAllocator alloc; /* first: passed to protobuf-c */
	brk_chunk *head;
	size_t chunk_bytes;
	size_t total_bytes;
	size_t total_max; /* allocation fails beyond this */
} brk_arena;

void brk_arena_init(brk_arena *a, size_t chunk_bytes, size_t total_max);
void brk_arena_fini(brk_arena *a);
void brk_arena_reset(brk_arena *a);
void *brk_arena_alloc(brk_arena *a, size_t n); /* NULL when over max */
char *brk_arena_strdup(brk_arena *a, const char *s);

#endif
