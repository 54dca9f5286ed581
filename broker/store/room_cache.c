/*
 * room_cache.c - the rooms a round touches, decoded once and kept in
 * ROUND_ROOMS_CACHED_MAX slots (brk_store.cache) until the round
 * commits, when the dirty ones are encoded back into the `rooms` DBI. A
 * full cache is written back and reused, so a round may touch any number
 * of rooms.
 *
 * Invariants: the slots in use are cache[0, nrooms); dirty[i] means
 * cache[i] differs from its stored record; a room pointer handed out is
 * valid until the cache is next reused or the round ends (brk_room_get's
 * contract in store.h).
 *
 * Entry points: brk_room_get (store.h); brk_room_cache_slot,
 * brk_room_cache_dirty, brk_room_cache_flush (store_internal.h).
 */
#include "broker/store/store_internal.h"

static pl_status flush_room(brk_wtxn *w, int i)
{
	brk_store *s = w->s;
	uint8_t key[8];
	size_t n;
	PL_ASSERT(i >= 0 && i < w->nrooms);
	if (!w->dirty[i])
		return PL_OK;
	put_be64(key, s->cache[i].id);
	pl_status st =
	    brk_room_encode(&s->cache[i], s->buf, ENTRY_BYTES_MAX, &n);
	if (st == PL_OK)
		st = brk_wtxn_put(w, s->rooms, key, 8, s->buf, n);
	w->dirty[i] = false;
	return st;
}

pl_status brk_room_cache_flush(brk_wtxn *w)
{
	pl_status st = PL_OK;
	for (int i = 0; i < w->nrooms && st == PL_OK; i++)
		st = flush_room(w, i);
	return st;
}

static int cache_find(brk_wtxn *w, uint64_t room)
{
	for (int i = 0; i < w->nrooms; i++)
		if (w->s->cache[i].id == room)
			return i;
	return -1;
}

/* A free cache slot; when the cache is full, writes every dirty room back
 * to the transaction and starts over (pointers handed out before are then
 * stale, which brk_room_get's contract allows). */
pl_status brk_room_cache_slot(brk_wtxn *w, int *slot)
{
	if (w->nrooms == ROUND_ROOMS_CACHED_MAX) {
		pl_status st = brk_room_cache_flush(w);
		if (st != PL_OK)
			return st;
		w->nrooms = 0;
	}
	PL_ASSERT(w->nrooms < ROUND_ROOMS_CACHED_MAX);
	*slot = w->nrooms++;
	w->dirty[*slot] = false;
	return PL_OK;
}

pl_status brk_room_get(brk_wtxn *w, uint64_t room, brk_room **out)
{
	int i = cache_find(w, room);
	if (i < 0) {
		uint8_t key[8];
		MDB_val v;
		put_be64(key, room);
		/* The slot first: taking it may flush the cache, and a write
		 * in this transaction can move the page a value read before
		 * it points into. */
		pl_status st = brk_room_cache_slot(w, &i);
		if (st != PL_OK)
			return st;
		st = brk_wtxn_get(w, w->s->rooms, key, 8, &v);
		if (st == PL_OK)
			st = brk_room_decode(v.mv_data, v.mv_size,
			    &w->s->scratch, &w->s->cache[i]);
		if (st != PL_OK) {
			if (st == PL_E_CORRUPT)
				PL_ERROR("store",
				    "event=room_decode_failed room=%016llx",
				    (unsigned long long)room);
			PL_ASSERT(i == w->nrooms - 1); /* the slot just taken */
			w->nrooms--;
			return st;
		}
	}
	*out = &w->s->cache[i];
	return PL_OK;
}

void brk_room_cache_dirty(brk_wtxn *w, const brk_room *r)
{
	int i = (int)(r - w->s->cache);
	PL_ASSERT(i >= 0 && i < w->nrooms);
	w->dirty[i] = true;
}
