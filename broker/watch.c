/*
 * watch.c - the watch table (watch.h): rooms hashed into buckets, each
 * with its watchers, one per (gateway, user), counting connections.
 *
 * Invariants: a room is in the table only while it has a watcher; a
 * watcher's conns is at least 1; presence online is reported when a
 * user's connections to a room go from 0 to 1 over all gateways, offline
 * when they go back to 0, so the two alternate per (room, user).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/watch.h"

_Static_assert(BRK_WATCH_BUCKETS == 4096, "the room hash takes 12 bits");

static brk_room_watch **bucket(const brk_watches *w, uint64_t room)
{
	return (
	    brk_room_watch **)&w->buckets[(room * 0x9E3779B97F4A7C15ull) >> 52];
}

static brk_room_watch *find(const brk_watches *w, uint64_t room)
{
	for (brk_room_watch *rw = *bucket(w, room); rw != NULL; rw = rw->next)
		if (rw->room == room)
			return rw;
	return NULL;
}

static void drop_room(brk_watches *w, brk_room_watch *rw)
{
	brk_room_watch **b = bucket(w, rw->room);
	while (*b != rw)
		b = &(*b)->next;
	*b = rw->next;
	free(rw->v);
	free(rw);
	PL_ASSERT(w->rooms > 0);
	w->rooms--;
}

void brk_watches_init(brk_watches *w, brk_presence_fn presence, void *ctx)
{
	memset(w, 0, sizeof(*w));
	w->presence = presence;
	w->ctx = ctx;
}

void brk_watches_fini(brk_watches *w)
{
	for (int b = 0; b < BRK_WATCH_BUCKETS; b++)
		while (w->buckets[b] != NULL)
			drop_room(w, w->buckets[b]);
	PL_ASSERT(w->rooms == 0);
}

const brk_room_watch *brk_watch_room(const brk_watches *w, uint64_t room)
{
	return find(w, room);
}

uint32_t brk_watch_user_conns(const brk_room_watch *rw, const char *user)
{
	uint32_t n = 0;
	for (int i = 0; rw != NULL && i < rw->n; i++)
		if (strcmp(rw->v[i].user, user) == 0)
			n += rw->v[i].conns;
	return n;
}

static void presence(
    brk_watches *w, uint64_t room, const char *user, int role, bool online)
{
	if (w->presence != NULL)
		w->presence(w->ctx, room, user, role, online);
}

pl_status brk_watch_on(
    brk_watches *w, const void *gw, uint64_t room, const char *user, int role)
{
	brk_room_watch *rw = find(w, room);
	if (rw == NULL) {
		rw = calloc(1, sizeof(*rw));
		if (rw == NULL) {
			w->failed++;
			return PL_E_NOMEM;
		}
		brk_room_watch **b = bucket(w, room);
		rw->room = room;
		rw->next = *b;
		*b = rw;
		w->rooms++;
	}
	bool first = brk_watch_user_conns(rw, user) == 0;
	for (int i = 0; i < rw->n; i++) {
		brk_watcher *v = &rw->v[i];
		if (v->gw == gw && strcmp(v->user, user) == 0) {
			v->conns++;
			return PL_OK;
		}
	}
	if (rw->n == rw->cap) {
		int cap = rw->cap ? rw->cap * 2 : 4;
		brk_watcher *v = realloc(rw->v, sizeof(*v) * (size_t)cap);
		if (v == NULL) {
			w->failed++;
			if (rw->n == 0)
				drop_room(w, rw);
			return PL_E_NOMEM;
		}
		rw->v = v;
		rw->cap = cap;
	}
	brk_watcher *v = &rw->v[rw->n++];
	v->gw = gw;
	snprintf(v->user, sizeof(v->user), "%s", user);
	v->role = role;
	v->conns = 1;
	if (first)
		presence(w, room, user, role, true);
	return PL_OK;
}

void brk_watch_off(
    brk_watches *w, const void *gw, uint64_t room, const char *user)
{
	brk_room_watch *rw = find(w, room);
	if (rw == NULL)
		return;
	for (int i = 0; i < rw->n; i++) {
		brk_watcher *v = &rw->v[i];
		if (v->gw != gw || strcmp(v->user, user) != 0)
			continue;
		int role = v->role;
		PL_ASSERT(v->conns > 0);
		if (--v->conns == 0)
			rw->v[i] = rw->v[--rw->n];
		if (brk_watch_user_conns(rw, user) == 0)
			presence(w, room, user, role, false);
		break;
	}
	if (rw->n == 0)
		drop_room(w, rw);
}

void brk_watches_drop_gw(brk_watches *w, const void *gw)
{
	for (int b = 0; b < BRK_WATCH_BUCKETS; b++) {
		brk_room_watch *rw = w->buckets[b];
		while (rw != NULL) {
			brk_room_watch *next = rw->next;
			for (int i = rw->n - 1; i >= 0; i--) {
				if (rw->v[i].gw != gw)
					continue;
				brk_watcher v = rw->v[i];
				rw->v[i] = rw->v[--rw->n];
				if (brk_watch_user_conns(rw, v.user) == 0)
					presence(
					    w, rw->room, v.user, v.role, false);
			}
			if (rw->n == 0)
				drop_room(w, rw);
			rw = next;
		}
	}
}
