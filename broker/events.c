/*
 * events.c - live events. The leader builds the event of each applied
 * command (message, presence join/leave, read position, closed) in the
 * event arena while it applies, and fans them out once the transaction
 * that applied them committed, in log order; handlers' ephemeral events
 * (typing) and presence of watches go the same way. An event is packed
 * once and queued on every watching gateway's feed. Best effort: a
 * subscriber that misses one catches up from history.
 */
#include "broker/group_internal.h"

static Parley__Event *ev_new(brk_group *g, uint64_t room)
{
	if (g->nev == ROUND_REQS_MAX) {
		pl_metric_inc(g->m.events_lost, 1);
		return NULL;
	}
	brk_arena *a = &g->ev_arena;
	Parley__Event *ev = brk_arena_alloc(a, sizeof(*ev));
	char *id = brk_arena_alloc(a, PL_ROOM_ID_CHARS + 1);
	if (ev == NULL || id == NULL)
		return NULL;
	parley__event__init(ev);
	pl_room_format(room, id);
	ev->room = id;
	g->evs[g->nev].room = room;
	g->evs[g->nev].ev = ev;
	g->nev++;
	return ev;
}

/* Builds the live event of an applied command. Strings are copied: the
 * command is only valid until the next entry is applied. Best effort:
 * subscribers catch up from history when an event is missing. */
void brk_ev_applied(brk_group *g, const brk_applied *res)
{
	const Parley__Internal__Command *c = res->cmd;
	brk_arena *a = &g->ev_arena;
	if (c == NULL || res->st != PL_OK || c->caller == NULL)
		return;
	switch (c->op_case) {
	case PARLEY__INTERNAL__COMMAND__OP_PUBLISH: {
		if (res->duplicate || res->msg == NULL)
			return;
		Parley__Event *ev = ev_new(g, res->room);
		if (ev == NULL)
			return;
		ev->ev_case = PARLEY__EVENT__EV_MESSAGE;
		ev->message = res->msg;
		return;
	}
	case PARLEY__INTERNAL__COMMAND__OP_JOIN:
	case PARLEY__INTERNAL__COMMAND__OP_LEAVE: {
		if (!res->changed)
			return;
		Parley__Event *ev = ev_new(g, res->room);
		Parley__PresenceEvent *pe = brk_arena_alloc(a, sizeof(*pe));
		char *user = brk_arena_strdup(a, c->caller->user);
		if (ev == NULL || pe == NULL || user == NULL)
			return;
		bool joined = c->op_case == PARLEY__INTERNAL__COMMAND__OP_JOIN;
		parley__presence_event__init(pe);
		pe->user = user;
		pe->role = c->caller->role;
		pe->joined = joined;
		pe->left = !joined;
		ev->ev_case = PARLEY__EVENT__EV_PRESENCE;
		ev->presence = pe;
		return;
	}
	case PARLEY__INTERNAL__COMMAND__OP_READ: {
		if (!res->changed)
			return;
		Parley__Event *ev = ev_new(g, res->room);
		Parley__ReadEvent *re = brk_arena_alloc(a, sizeof(*re));
		char *user = brk_arena_strdup(a, c->caller->user);
		if (ev == NULL || re == NULL || user == NULL)
			return;
		parley__read_event__init(re);
		re->user = user;
		re->seq = res->seq;
		ev->ev_case = PARLEY__EVENT__EV_READ;
		ev->read = re;
		return;
	}
	case PARLEY__INTERNAL__COMMAND__OP_CLOSE: {
		Parley__Event *ev = ev_new(g, res->room);
		Parley__ClosedEvent *ce = brk_arena_alloc(a, sizeof(*ce));
		char *reason = brk_arena_strdup(
		    a, c->close->reason ? c->close->reason : "");
		if (ev == NULL || ce == NULL || reason == NULL)
			return;
		parley__closed_event__init(ce);
		ce->reason = reason;
		ce->ts_us = c->ts_us;
		ev->ev_case = PARLEY__EVENT__EV_CLOSED;
		ev->closed = ce;
		return;
	}
	default:
		return;
	}
}

void brk_events_flush(brk_group *g, bool send)
{
	for (size_t i = 0; send && i < g->nev; i++)
		brk_fanout(g, g->evs[i].room, g->evs[i].ev);
	g->nev = 0;
	brk_arena_reset(&g->ev_arena);
}

void brk_fanout(brk_group *g, uint64_t room, const Parley__Event *ev)
{
	const brk_room_watch *rw = brk_watch_room(&g->watches, room);
	if (rw == NULL || rw->n == 0)
		return;
	size_t n = parley__event__get_packed_size(ev);
	if (n > PL_FRAME_BYTES_CEIL) {
		pl_metric_inc(g->m.events_lost, 1);
		return;
	}
	PL_ASSERT(parley__event__pack(ev, g->pack) == n);
	pl_metric_inc(g->m.events, 1);
	/* Each gateway once, however many of its users watch the room: a
	 * watcher's gateway is a feed of this group (feed.h), marked when it
	 * has this event. */
	uint64_t mark = ++g->fanout_mark;
	for (int i = 0; i < rw->n; i++) {
		brk_feed_gw *gw = (brk_feed_gw *)rw->v[i].gw;
		if (gw->mark == mark)
			continue;
		gw->mark = mark;
		if (!brk_feed_append(&g->feeds, gw, g->pack, n))
			pl_metric_inc(g->m.events_dropped, 1);
	}
}

void brk_presence_event(
    void *ctx, uint64_t room, const char *user, int role, bool online)
{
	brk_group *g = ctx;
	Parley__Event ev;
	Parley__PresenceEvent pe;
	char id[PL_ROOM_ID_CHARS + 1];
	parley__event__init(&ev);
	parley__presence_event__init(&pe);
	pl_room_format(room, id);
	ev.room = id;
	pe.user = (char *)user;
	pe.role = role;
	pe.online = online;
	ev.ev_case = PARLEY__EVENT__EV_PRESENCE;
	ev.presence = &pe;
	brk_fanout(g, room, &ev);
}
