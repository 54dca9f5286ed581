/*
 * watch.h - which gateways watch which rooms, for whom. A gateway tells
 * the leader of a room's group that one of its connections subscribed
 * (a watch on) or left (off); the table counts connections per (room,
 * gateway, user) and says when a user's first connection to a room
 * appears or its last one goes (presence online/offline). It holds no
 * sockets, clock or group: the group feeds it the changes of committed
 * rounds and fans events out to the gateways it lists.
 *
 * A gateway is an opaque key here (the group passes its feed state).
 */
#ifndef PARLEY_BROKER_WATCH_H
#define PARLEY_BROKER_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* Hash buckets of the room table: a few thousand watched rooms per group
 * leader keep chains short. */
#define BRK_WATCH_BUCKETS 4096

typedef struct brk_watcher {
	const void *gw; /* the gateway (opaque) */
	char user[PL_USER_CHARS_MAX + 1];
	int role;
	uint32_t conns; /* that gateway's connections of user to the room */
} brk_watcher;

typedef struct brk_room_watch {
	uint64_t room;
	brk_watcher *v;
	int n, cap;
	struct brk_room_watch *next;
} brk_room_watch;

/* Called when a user's first connection to a room appears (online) or
 * its last one goes (offline), with the role it was watched with. */
typedef void (*brk_presence_fn)(
    void *ctx, uint64_t room, const char *user, int role, bool online);

typedef struct brk_watches {
	brk_room_watch *buckets[BRK_WATCH_BUCKETS];
	brk_presence_fn presence;
	void *ctx;
	uint64_t failed; /* watches not registered: out of memory */
	size_t rooms;    /* rooms with at least one watcher */
} brk_watches;

void brk_watches_init(brk_watches *w, brk_presence_fn presence, void *ctx);
/* Frees every room without presence callbacks. */
void brk_watches_fini(brk_watches *w);

/* One more connection of user on gw watches room. PL_E_NOMEM (counted in
 * w->failed) when the table cannot grow: the watch is lost, the client
 * catches up from history. */
pl_status brk_watch_on(
    brk_watches *w, const void *gw, uint64_t room, const char *user, int role);
/* One connection fewer; unknown watches are ignored. */
void brk_watch_off(
    brk_watches *w, const void *gw, uint64_t room, const char *user);
/* Forgets every watch of gw (a gateway gone or starting over). */
void brk_watches_drop_gw(brk_watches *w, const void *gw);

/* The room's watchers, NULL when nobody watches it. Valid until the next
 * change to the table. */
const brk_room_watch *brk_watch_room(const brk_watches *w, uint64_t room);
/* Connections of user to the room over every gateway (0 = offline). */
uint32_t brk_watch_user_conns(const brk_room_watch *rw, const char *user);

#endif
