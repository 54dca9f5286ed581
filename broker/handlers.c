/*
 * handlers.c - the requests a group answers, in one table: for each
 * ClientFrame body case whether it is a write (proposed to Raft; the
 * store checks and applies it), the access rule the dispatcher applies
 * before any handler runs (the role table itself is access.c), and the
 * handler of a read. Handlers fill rep in the item's arena and record the
 * round's deferred effects (events, watch changes); they change no group
 * state directly, and they read only applied state (rd->w).
 */
#include "broker/group_internal.h"

static void rep_ok(round *rd, Parley__ServerFrame *rep)
{
	brk_rep_ok(rd->a, rep);
}

static Parley__Event *event_new(round *rd, uint64_t room)
{
	if (rd->nevents == rd->events_cap) {
		/* bounded by the round's request count */
		pl_metric_inc(rd->g->m.events_lost, 1);
		return NULL;
	}
	Parley__Event *ev = ralloc(rd, sizeof(*ev));
	char *id = ralloc(rd, PL_ROOM_ID_CHARS + 1);
	if (ev == NULL || id == NULL)
		return NULL;
	parley__event__init(ev);
	pl_room_format(room, id);
	ev->room = id;
	rd->events[rd->nevents].room = room;
	rd->events[rd->nevents].ev = ev;
	rd->nevents++;
	return ev;
}

static void watch_defer(round *rd, brk_feed_gw *gw, uint64_t room,
    const Parley__Internal__Caller *c, bool on)
{
	if (gw == NULL)
		return;
	if (rd->nwatches == rd->watches_cap) {
		pl_metric_inc(rd->g->m.watches_lost, 1);
		return;
	}
	round_watch *w = &rd->watches[rd->nwatches++];
	w->gw = gw;
	w->room = room;
	w->caller = c;
	w->on = on;
}

static pl_status h_subscribe(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, uint64_t room, brk_room *r,
    Parley__ServerFrame *rep)
{
	Parley__Subscribed *s = ralloc(rd, sizeof(*s));
	char *id = ralloc(rd, PL_ROOM_ID_CHARS + 1);
	if (s == NULL || id == NULL)
		return PL_E_NOMEM;
	parley__subscribed__init(s);
	pl_room_format(room, id);
	s->room = id;
	s->last_seq = r->last_seq;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_SUBSCRIBED;
	rep->subscribed = s;
	watch_defer(rd, it->gw, room, rq->caller, true);
	return PL_OK;
}

/* No room load: it only undoes the caller's own watch. */
static pl_status h_unsubscribe(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, uint64_t room, brk_room *r,
    Parley__ServerFrame *rep)
{
	watch_defer(rd, it->gw, room, rq->caller, false);
	rep_ok(rd, rep);
	return PL_OK;
}

static pl_status h_history(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, uint64_t room, brk_room *r,
    Parley__ServerFrame *rep)
{
	pl_status st;
	Parley__HistoryPage *page = ralloc(rd, sizeof(*page));
	if (page == NULL)
		return PL_E_NOMEM;
	if ((st = brk_history(rd->w, room, rq->frame->history, rd->a, page)) !=
	    PL_OK)
		return st;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_HISTORY;
	rep->history = page;
	return PL_OK;
}

static pl_status h_typing(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, uint64_t room, brk_room *r,
    Parley__ServerFrame *rep)
{
	pl_status st = PL_OK;
	if (r->closed)
		st = PL_E_ROOM_CLOSED;
	if (st != PL_OK)
		return st;
	rep_ok(rd, rep);
	Parley__Event *ev = event_new(rd, room);
	Parley__TypingEvent *te = ralloc(rd, sizeof(*te));
	if (ev == NULL || te == NULL)
		return PL_OK; /* ephemeral: may be dropped */
	parley__typing_event__init(te);
	te->user = rq->caller->user;
	te->role = rq->caller->role;
	te->active = rq->frame->typing->active;
	ev->ev_case = PARLEY__EVENT__EV_TYPING;
	ev->typing = te;
	return PL_OK;
}

static pl_status h_presence(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, uint64_t room, brk_room *r,
    Parley__ServerFrame *rep)
{
	const brk_room_watch *rw = brk_watch_room(&rd->g->watches, room);
	int max = r->nmembers + (rw ? rw->n : 0);
	Parley__PresenceList *pl = ralloc(rd, sizeof(*pl));
	Parley__Member *mem = ralloc(rd, sizeof(*mem) * (size_t)(max + 1));
	Parley__Member **mp = ralloc(rd, sizeof(*mp) * (size_t)(max + 1));
	char *id = ralloc(rd, PL_ROOM_ID_CHARS + 1);
	if (!pl || !mem || !mp || !id)
		return PL_E_NOMEM;
	parley__presence_list__init(pl);
	pl_room_format(room, id);
	pl->room = id;
	int n = 0;
	for (int i = 0; i < r->nmembers; i++) {
		brk_member *m = &r->members[i];
		parley__member__init(&mem[n]);
		mem[n].user = brk_arena_strdup(rd->a, m->user);
		mem[n].role = m->role;
		mem[n].joined = m->joined;
		mem[n].read_seq = m->read_seq;
		mem[n].online =
		    rw != NULL && brk_watch_user_conns(rw, m->user) > 0;
		mp[n] = &mem[n];
		n++;
	}
	for (int i = 0; rw != NULL && i < rw->n; i++) {
		bool known = false;
		for (int j = 0; j < n && !known; j++)
			known = strcmp(mem[j].user, rw->v[i].user) == 0;
		if (known)
			continue;
		parley__member__init(&mem[n]);
		mem[n].user = rw->v[i].user;
		mem[n].role = rw->v[i].role;
		mem[n].online = true;
		mp[n] = &mem[n];
		n++;
	}
	pl->n_members = (size_t)n;
	pl->members = mp;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_PRESENCE;
	rep->presence = pl;
	return PL_OK;
}

static pl_status h_room_info(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, uint64_t room, brk_room *r,
    Parley__ServerFrame *rep)
{
	pl_status st;
	Parley__RoomInfo *info = ralloc(rd, sizeof(*info));
	if (info == NULL)
		return PL_E_NOMEM;
	/* r lives in the store's round cache: copy what the reply keeps. */
	brk_room *copy = ralloc(rd, sizeof(*copy));
	if (copy == NULL)
		return PL_E_NOMEM;
	*copy = *r;
	if ((st = brk_room_info(copy, &rd->a->alloc, info)) != PL_OK)
		return st;
	const brk_room_watch *rw = brk_watch_room(&rd->g->watches, room);
	for (size_t i = 0; rw != NULL && i < info->n_members; i++)
		info->members[i]->online =
		    brk_watch_user_conns(rw, info->members[i]->user) > 0;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_ROOM_INFO;
	rep->room_info = info;
	return PL_OK;
}

/* A room-scoped token's list: its room, when it is in this group, after
 * `after` and visible to it. */
static pl_status list_scoped(round *rd, const Parley__Internal__Caller *c,
    uint64_t after, Parley__RoomList *rl)
{
	uint64_t room;
	brk_room *r;
	int op = PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS;
	parley__room_list__init(rl);
	rl->rooms = ralloc(rd, sizeof(char *));
	if (rl->rooms == NULL)
		return PL_E_NOMEM;
	if (pl_room_parse(c->room_scope, &room) != PL_OK ||
	    pl_room_group(room) != rd->g->cfg.group || room <= after ||
	    brk_room_get(rd->w, room, &r) != PL_OK ||
	    brk_access(r, c, op) != PL_OK)
		return PL_OK;
	char *id = ralloc(rd, PL_ROOM_ID_CHARS + 1);
	if (id == NULL)
		return PL_E_NOMEM;
	pl_room_format(room, id);
	rl->rooms[rl->n_rooms++] = id;
	return PL_OK;
}

/* The rooms the caller may see (access.c): every room of the tenant, the
 * rooms it is or was a member of, or a scoped token's room. */
static pl_status h_list(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, uint64_t room, brk_room *r,
    Parley__ServerFrame *rep)
{
	const Parley__Internal__Caller *c = rq->caller;
	const Parley__ListRooms *l = rq->frame->list_rooms;
	uint64_t after = 0;
	if (l->after != NULL && l->after[0] != '\0' &&
	    pl_room_parse(l->after, &after) != PL_OK)
		return PL_E_BAD_REQUEST;
	pl_status st;
	Parley__RoomList *rl = ralloc(rd, sizeof(*rl));
	if (rl == NULL)
		return PL_E_NOMEM;
	if (c->room_scope != NULL && c->room_scope[0] != '\0')
		st = list_scoped(rd, c, after, rl);
	else if (brk_access_right(c, PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS) ==
	         BRK_RIGHT_ANY)
		st = brk_list_rooms(
		    rd->w, c->tenant, after, l->limit, rd->a, rl);
	else
		st = brk_list_user_rooms(
		    rd->w, c->tenant, c->user, after, l->limit, rd->a, rl);
	if (st != PL_OK)
		return st;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_ROOM_LIST;
	rep->room_list = rl;
	return PL_OK;
}

/* Tenant statistics are for the tenant's staff and backend, not for
 * customers or bots (access.c). */
static pl_status h_report(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, uint64_t room, brk_room *r,
    Parley__ServerFrame *rep)
{
	const Parley__ReportRequest *q = rq->frame->report;
	uint32_t days = q->days ? q->days : REPORT_DAYS_DEFAULT;
	uint32_t today = (uint32_t)(rd->ts_us / (86400LL * 1000000));
	uint32_t first = days > today + 1 ? 0 : today + 1 - days;
	Parley__Report *out = ralloc(rd, sizeof(*out));
	if (out == NULL)
		return PL_E_NOMEM;
	pl_status st =
	    brk_report(rd->w, rq->caller->tenant, first, today, rd->a, out);
	if (st != PL_OK)
		return st;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_REPORT;
	rep->report = out;
	return PL_OK;
}

static pl_status h_status(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, uint64_t room, brk_room *r,
    Parley__ServerFrame *rep)
{
	brk_group *g = rd->g;
	Parley__StatusReply *s = ralloc(rd, sizeof(*s));
	Parley__GroupStatus *gs = ralloc(rd, sizeof(*gs));
	Parley__GroupStatus **gp = ralloc(rd, sizeof(*gp));
	if (!s || !gs || !gp || brk_status_fill(g, rd->a, gs) != PL_OK)
		return PL_E_NOMEM;
	parley__status_reply__init(s);
	s->node = g->cfg.id;
	s->uptime_us = pl_now_us() - g->started_us;
	gp[0] = gs;
	s->n_groups = 1;
	s->groups = gp;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_STATUS;
	rep->status = s;
	return PL_OK;
}

/* How a request's caller is checked before its handler runs. */
typedef enum access_check {
	CHECK_NONE,      /* not served by the broker */
	CHECK_AT_APPLY,  /* a write: the store checks it when it applies */
	CHECK_ROOM,      /* the room is loaded, brk_access(room, caller) */
	CHECK_CALLER,    /* no room: brk_access(NULL, caller) */
	CHECK_OWN_WATCH, /* undoes the caller's own watch: any right at all */
} access_check;

typedef pl_status (*handler_fn)(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, uint64_t room, brk_room *r,
    Parley__ServerFrame *rep);

typedef struct op_entry {
	bool write;
	bool at_once; /* answered by any replica, in the first pass */
	bool room;    /* about one room of this group (frame's room) */
	access_check check;
	handler_fn read; /* NULL for writes */
} op_entry;

#define OP(c) PARLEY__CLIENT_FRAME__BODY_##c
/* Hello, ping and refresh are the gateway's own: it never forwards them. */
static const op_entry OPS[] = {
    [OP(CREATE_ROOM)] = {.write = true, .check = CHECK_AT_APPLY},
    [OP(JOIN)] = {.write = true, .room = true, .check = CHECK_AT_APPLY},
    [OP(LEAVE)] = {.write = true, .room = true, .check = CHECK_AT_APPLY},
    [OP(PUBLISH)] = {.write = true, .room = true, .check = CHECK_AT_APPLY},
    [OP(READ)] = {.write = true, .room = true, .check = CHECK_AT_APPLY},
    [OP(CLOSE_ROOM)] = {.write = true, .room = true, .check = CHECK_AT_APPLY},
    [OP(SUBSCRIBE)] = {.room = true, .check = CHECK_ROOM, .read = h_subscribe},
    [OP(UNSUBSCRIBE)] = {.room = true,
        .check = CHECK_OWN_WATCH,
        .read = h_unsubscribe},
    [OP(HISTORY)] = {.room = true, .check = CHECK_ROOM, .read = h_history},
    [OP(TYPING)] = {.room = true, .check = CHECK_ROOM, .read = h_typing},
    [OP(PRESENCE)] = {.room = true, .check = CHECK_ROOM, .read = h_presence},
    [OP(ROOM_INFO)] = {.room = true, .check = CHECK_ROOM, .read = h_room_info},
    [OP(LIST_ROOMS)] = {.check = CHECK_CALLER, .read = h_list},
    [OP(REPORT)] = {.check = CHECK_CALLER, .read = h_report},
    [OP(STATUS)] = {.at_once = true, .check = CHECK_CALLER, .read = h_status},
};
#undef OP

static const op_entry *op_find(int op)
{
	if (op <= 0 || (size_t)op >= PL_ARRAY_LEN(OPS) ||
	    OPS[op].check == CHECK_NONE)
		return NULL;
	return &OPS[op];
}

bool brk_op_is_write(int op)
{
	const op_entry *e = op_find(op);
	return e != NULL && e->write;
}

bool brk_op_at_once(int op)
{
	const op_entry *e = op_find(op);
	return e != NULL && e->at_once;
}

pl_status brk_dispatch(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, Parley__ServerFrame *rep)
{
	const Parley__ClientFrame *f = rq->frame;
	const Parley__Internal__Caller *c = rq->caller;
	/* The codec checked the frame; the first pass, the caller. */
	if (f == NULL || c == NULL || c->tenant == NULL || c->tenant[0] == '\0')
		return PL_E_BAD_REQUEST;
	const op_entry *e = op_find((int)f->body_case);
	if (e == NULL || e->write)
		return PL_E_BAD_REQUEST;
	uint64_t room = 0;
	brk_room *r = NULL;
	if (e->room) {
		const char *rs = pl_client_frame_room(f);
		if (rs == NULL)
			return PL_E_BAD_REQUEST;
		if (pl_room_parse(rs, &room) != PL_OK ||
		    pl_room_group(room) != rd->g->cfg.group)
			return PL_E_NOT_FOUND;
	}
	pl_status st = PL_OK;
	switch (e->check) {
	case CHECK_ROOM:
		st = brk_room_get(rd->w, room, &r);
		if (st == PL_OK)
			st = brk_access(r, c, (int)f->body_case);
		break;
	case CHECK_CALLER:
		st = brk_access(NULL, c, (int)f->body_case);
		break;
	case CHECK_OWN_WATCH:
		if (brk_access_right(c, (int)f->body_case) == BRK_RIGHT_NONE)
			st = PL_E_FORBIDDEN;
		break;
	case CHECK_NONE:
	case CHECK_AT_APPLY:
		PL_ASSERT(!"reads are checked before they run");
	}
	if (st != PL_OK)
		return st;
	return e->read(rd, it, rq, room, r, rep);
}
