/*
 * group.c - the shard group driver: one thread owns the group's store,
 * its watch table and every gateway's feed. nng callbacks only hand
 * received batches over a bounded queue (brk_group_submit); the thread
 * runs commit rounds and answers.
 *
 * Invariants (docs/internals.md):
 *  - a commit round is one write transaction; every reply of the round is
 *    sent after it committed (fsync in sync mode), so an ack is never sent
 *    for a write that is not durable;
 *  - events of a round are fanned out only after its commit, in commit
 *    order, so each gateway sees a room's messages in seq order;
 *  - a gateway's feed is bounded: overflow drops events and flags the next
 *    poll, never blocks the round;
 *  - a round that fails (map full, disk full, I/O) is re-run read-only:
 *    reads are answered, writes get the failure, nothing partial is kept.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "broker/broker.h"

/* Batches in flight from all gateways: one per nng context. */
#define ITEMS_MAX 128
/* Requests in one GwBatch; the gateway packs at most 256. */
#define GW_BATCH_REQS_MAX 1024
/* Batches handled in one commit round: bounds a round's latency. */
#define ROUND_ITEMS_MAX 64
/* Parked feed polls per gateway (the gateway keeps one or two). */
#define POLLS_PER_GATEWAY_MAX 4
#define GATEWAYS_MAX 256
#define FEED_BYTES_MAX (8u * 1024 * 1024)
#define WATCH_BUCKETS 4096
#define TICK_US 5000
#define REPORT_DAYS_DEFAULT 7
#define POLL_WAIT_MS_MAX 30000

typedef struct gw_state gw_state;

struct brk_item {
	void *ctx; /* the nng context to answer on */
	nng_msg *msg;
	Parley__Internal__GwBatch *batch;
	Parley__ServerFrame **replies;
	size_t nreplies;
	gw_state *gw;
	int64_t deadline_us; /* polls */
	brk_arena arena;     /* decoded request and replies */
	brk_item *next_free;
};

struct gw_state {
	char id[64];
	/* The broker's epoch plus this state's incarnation: a gateway that
	 * was forgotten (idle) and comes back sees a new epoch and re-sends
	 * its watches, exactly as after a broker restart. */
	char epoch[48];
	uint8_t *feed; /* pre-encoded BrokerBatch.events fields */
	size_t feed_len;
	uint32_t feed_events;
	bool overflow;
	brk_item *polls[POLLS_PER_GATEWAY_MAX];
	int npolls;
	int64_t last_seen_us;
};

typedef struct watcher {
	gw_state *gw;
	char user[PL_USER_CHARS_MAX + 1];
	int role;
	uint32_t conns;
} watcher;

typedef struct room_watch {
	uint64_t room;
	watcher *v;
	int n, cap;
	struct room_watch *next;
} room_watch;

/* Deferred effects of a round, applied after it committed. */
typedef struct round_event {
	uint64_t room;
	Parley__Event *ev;
} round_event;

typedef struct round_watch {
	gw_state *gw;
	uint64_t room;
	const Parley__Internal__Caller *caller;
	bool on;
} round_watch;

typedef struct round {
	brk_wtxn *w;
	int64_t ts_us;
	pl_status fail;    /* sticky write failure: re-run read-only */
	pl_status refused; /* read-only re-run: what writes answer */
	round_event *events;
	size_t nevents, events_cap;
	round_watch *watches;
	size_t nwatches, watches_cap;
	brk_arena *a; /* the item being handled */
	brk_group *g;
} round;

struct brk_group {
	brk_config cfg;
	brk_store *store;
	brk_net *net;
	pl_queue q;
	pthread_t thread;
	bool running;
	char epoch[33];
	uint32_t incarnations;
	brk_item items[ITEMS_MAX];
	brk_item *free_items;
	pthread_mutex_t free_mu;
	gw_state *gws[GATEWAYS_MAX];
	int ngws;
	room_watch *watch[WATCH_BUCKETS];
	round_event *events_buf;
	round_watch *watches_buf;
	uint8_t *pack; /* event encoding scratch */
	int64_t last_sync_us;
	int64_t started_us;
	int64_t last_ts_us;
	int64_t last_gauges_us;
	struct {
		pl_metric *batches, *requests, *publishes, *duplicates;
		pl_metric *rounds, *round_fail, *commit_s, *round_reqs;
		pl_metric *events, *events_dropped, *rooms, *map_used,
		    *map_size, *last_index, *gateways;
	} m;
};

/* ------------------------------------------------------------------ */
/* Items */

static brk_item *item_get(brk_group *g)
{
	pthread_mutex_lock(&g->free_mu);
	brk_item *it = g->free_items;
	if (it != NULL)
		g->free_items = it->next_free;
	pthread_mutex_unlock(&g->free_mu);
	return it;
}

static void item_put(brk_group *g, brk_item *it)
{
	if (it->msg != NULL)
		nng_msg_free(it->msg);
	it->msg = NULL;
	it->batch = NULL;
	it->replies = NULL;
	it->nreplies = 0;
	it->gw = NULL;
	brk_arena_reset(&it->arena);
	pthread_mutex_lock(&g->free_mu);
	it->next_free = g->free_items;
	g->free_items = it;
	pthread_mutex_unlock(&g->free_mu);
}

pl_status brk_group_submit(brk_group *g, void *ctx, nng_msg *msg)
{
	brk_item *it = item_get(g);
	if (it == NULL)
		return PL_E_BACKPRESSURE;
	it->ctx = ctx;
	it->msg = msg;
	pl_status st = pl_queue_push(&g->q, it);
	if (st != PL_OK) {
		it->msg = NULL; /* stays with the caller */
		item_put(g, it);
	}
	return st;
}

/* Packs a BrokerBatch with the item's replies and sends it; releases it. */
static void item_reply(brk_group *g, brk_item *it)
{
	Parley__Internal__BrokerBatch b;
	nng_msg *m;
	parley__internal__broker_batch__init(&b);
	b.replies = it->replies;
	b.n_replies = it->nreplies;
	b.epoch = it->gw != NULL ? it->gw->epoch : g->epoch;
	b.group = g->cfg.group;
	size_t n = parley__internal__broker_batch__get_packed_size(&b);
	if (nng_msg_alloc(&m, n) == 0) {
		parley__internal__broker_batch__pack(&b, nng_msg_body(m));
		brk_net_reply(g->net, it->ctx, m);
	} else {
		PL_ERROR("group", "event=reply_alloc_failed bytes=%zu", n);
	}
	item_put(g, it);
}

/* ------------------------------------------------------------------ */
/* Gateways and their feeds */

static gw_state *gw_find(brk_group *g, const char *id, bool create)
{
	for (int i = 0; i < g->ngws; i++)
		if (strcmp(g->gws[i]->id, id) == 0)
			return g->gws[i];
	if (!create || g->ngws == GATEWAYS_MAX || strlen(id) >= 64)
		return NULL;
	gw_state *gw = calloc(1, sizeof(*gw));
	if (gw == NULL)
		return NULL;
	gw->feed = malloc(FEED_BYTES_MAX);
	if (gw->feed == NULL) {
		free(gw);
		return NULL;
	}
	snprintf(gw->id, sizeof(gw->id), "%s", id);
	snprintf(
	    gw->epoch, sizeof(gw->epoch), "%s.%u", g->epoch, ++g->incarnations);
	g->gws[g->ngws++] = gw;
	pl_metric_set(g->m.gateways, g->ngws);
	PL_INFO("group", "event=gateway_new gateway=%s", id);
	return gw;
}

static size_t varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Appends one packed Event as BrokerBatch field 2 to gw's feed. */
static void feed_append(brk_group *g, gw_state *gw, const uint8_t *ev, size_t n)
{
	uint8_t hdr[11];
	hdr[0] = (2 << 3) | 2; /* field 2, length-delimited */
	size_t h = 1 + varint_put(hdr + 1, n);
	if (gw->feed_len + h + n > FEED_BYTES_MAX ||
	    gw->feed_events >= g->cfg.gateway_events_max) {
		gw->overflow = true;
		pl_metric_inc(g->m.events_dropped, 1);
		return;
	}
	memcpy(gw->feed + gw->feed_len, hdr, h);
	memcpy(gw->feed + gw->feed_len + h, ev, n);
	gw->feed_len += h + n;
	gw->feed_events++;
}

/* Answers gw's oldest parked poll with everything queued. */
static void feed_flush(brk_group *g, gw_state *gw)
{
	if (gw->npolls == 0)
		return;
	brk_item *it = gw->polls[0];
	memmove(gw->polls, gw->polls + 1, sizeof(gw->polls[0]) * --gw->npolls);
	uint8_t tail[96]; /* epoch (<48), overflow and group fields */
	size_t t = 0, el = strlen(gw->epoch);
	tail[t++] = (3 << 3) | 2;
	t += varint_put(tail + t, el);
	memcpy(tail + t, gw->epoch, el);
	t += el;
	if (gw->overflow) {
		tail[t++] = 4 << 3;
		tail[t++] = 1;
	}
	tail[t++] = 5 << 3;
	t += varint_put(tail + t, g->cfg.group);
	nng_msg *m;
	if (nng_msg_alloc(&m, 0) == 0 &&
	    nng_msg_append(m, gw->feed, gw->feed_len) == 0 &&
	    nng_msg_append(m, tail, t) == 0) {
		brk_net_reply(g->net, it->ctx, m);
		gw->feed_len = 0;
		gw->feed_events = 0;
		gw->overflow = false;
	} else {
		PL_ERROR("group", "event=feed_alloc_failed gateway=%s", gw->id);
	}
	item_put(g, it);
}

static void polls_expire(brk_group *g, int64_t now)
{
	for (int i = 0; i < g->ngws; i++) {
		gw_state *gw = g->gws[i];
		if (gw->npolls > 0)
			gw->last_seen_us = now;
		if (gw->feed_len > 0 || gw->overflow ||
		    (gw->npolls > 0 && gw->polls[0]->deadline_us <= now))
			feed_flush(g, gw);
	}
}

/* ------------------------------------------------------------------ */
/* Watches and presence */

static room_watch *watch_find(brk_group *g, uint64_t room, bool create)
{
	room_watch **b = &g->watch[(room * 0x9E3779B97F4A7C15ull) >> 52];
	for (room_watch *w = *b; w != NULL; w = w->next)
		if (w->room == room)
			return w;
	if (!create)
		return NULL;
	room_watch *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	w->room = room;
	w->next = *b;
	*b = w;
	return w;
}

static void watch_drop_room(brk_group *g, room_watch *rw)
{
	room_watch **b = &g->watch[(rw->room * 0x9E3779B97F4A7C15ull) >> 52];
	while (*b != rw)
		b = &(*b)->next;
	*b = rw->next;
	free(rw->v);
	free(rw);
}

static uint32_t user_conns(const room_watch *rw, const char *user)
{
	uint32_t n = 0;
	for (int i = 0; i < rw->n; i++)
		if (strcmp(rw->v[i].user, user) == 0)
			n += rw->v[i].conns;
	return n;
}

_Static_assert(WATCH_BUCKETS == 4096, "the watch hash takes 12 bits");

/* Fans a packed event out to every gateway watching the room. */
static void fanout(brk_group *g, uint64_t room, const Parley__Event *ev)
{
	room_watch *rw = watch_find(g, room, false);
	if (rw == NULL || rw->n == 0)
		return;
	size_t n = parley__event__get_packed_size(ev);
	if (n > PL_FRAME_BYTES_CEIL)
		return;
	parley__event__pack(ev, g->pack);
	pl_metric_inc(g->m.events, 1);
	gw_state *sent[GATEWAYS_MAX];
	int nsent = 0;
	for (int i = 0; i < rw->n; i++) {
		gw_state *gw = rw->v[i].gw;
		bool dup = false;
		for (int j = 0; j < nsent && !dup; j++)
			dup = sent[j] == gw;
		if (dup)
			continue;
		sent[nsent++] = gw;
		feed_append(g, gw, g->pack, n);
	}
}

static void presence_event(
    brk_group *g, uint64_t room, const char *user, int role, bool online)
{
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
	fanout(g, room, &ev);
}

static void watch_on(
    brk_group *g, gw_state *gw, uint64_t room, const char *user, int role)
{
	room_watch *rw = watch_find(g, room, true);
	if (rw == NULL)
		return;
	bool first = user_conns(rw, user) == 0;
	for (int i = 0; i < rw->n; i++) {
		watcher *w = &rw->v[i];
		if (w->gw == gw && strcmp(w->user, user) == 0) {
			w->conns++;
			return;
		}
	}
	if (rw->n == rw->cap) {
		int cap = rw->cap ? rw->cap * 2 : 4;
		watcher *v = realloc(rw->v, sizeof(*v) * (size_t)cap);
		if (v == NULL)
			return;
		rw->v = v;
		rw->cap = cap;
	}
	watcher *w = &rw->v[rw->n++];
	w->gw = gw;
	snprintf(w->user, sizeof(w->user), "%s", user);
	w->role = role;
	w->conns = 1;
	if (first)
		presence_event(g, room, user, role, true);
}

static void watch_off(
    brk_group *g, gw_state *gw, uint64_t room, const char *user)
{
	room_watch *rw = watch_find(g, room, false);
	if (rw == NULL)
		return;
	for (int i = 0; i < rw->n; i++) {
		watcher *w = &rw->v[i];
		if (w->gw != gw || strcmp(w->user, user) != 0)
			continue;
		int role = w->role;
		if (--w->conns == 0)
			rw->v[i] = rw->v[--rw->n];
		if (user_conns(rw, user) == 0)
			presence_event(g, room, user, role, false);
		break;
	}
	if (rw->n == 0)
		watch_drop_room(g, rw);
}

/* Removes every watcher of gw from one room; presence goes offline for
 * users left with no connection. Returns false if the room was freed. */
static bool watch_drop_gw(brk_group *g, room_watch *rw, gw_state *gw)
{
	for (int i = rw->n - 1; i >= 0; i--) {
		if (rw->v[i].gw != gw)
			continue;
		watcher w = rw->v[i];
		rw->v[i] = rw->v[--rw->n];
		if (user_conns(rw, w.user) == 0)
			presence_event(g, rw->room, w.user, w.role, false);
	}
	if (rw->n > 0)
		return true;
	watch_drop_room(g, rw);
	return false;
}

/* Forgets a gateway that stopped polling: its watchers go offline. */
static void gw_forget(brk_group *g, int idx)
{
	gw_state *gw = g->gws[idx];
	for (int b = 0; b < WATCH_BUCKETS; b++) {
		room_watch *rw = g->watch[b];
		while (rw != NULL) {
			room_watch *next = rw->next;
			watch_drop_gw(g, rw, gw);
			rw = next;
		}
	}
	PL_INFO("group", "event=gateway_forgotten gateway=%s", gw->id);
	for (int i = 0; i < gw->npolls; i++)
		item_put(g, gw->polls[i]);
	free(gw->feed);
	free(gw);
	g->gws[idx] = g->gws[--g->ngws];
	pl_metric_set(g->m.gateways, g->ngws);
}

static void gws_expire(brk_group *g, int64_t now)
{
	int64_t idle = (int64_t)g->cfg.gateway_idle_ms * 1000;
	for (int i = g->ngws - 1; i >= 0; i--) {
		gw_state *gw = g->gws[i];
		if (gw->npolls == 0 && now - gw->last_seen_us >= idle)
			gw_forget(g, i);
	}
}

/* ------------------------------------------------------------------ */
/* Request handlers. Each fills rep (in the item's arena) and records the
 * round's deferred effects. They may run twice (a failed round re-runs
 * read-only), so they change no group state directly. */

static void *ralloc(round *rd, size_t n)
{
	void *p = brk_arena_alloc(rd->a, n);
	if (p != NULL)
		memset(p, 0, n);
	return p;
}

static void rep_error(round *rd, Parley__ServerFrame *rep, pl_status st)
{
	Parley__Error *e = ralloc(rd, sizeof(*e));
	if (e == NULL)
		return; /* the empty reply still carries the id */
	parley__error__init(e);
	e->code = pl_status_to_code(st);
	e->message = (char *)pl_strerror(st);
	rep->body_case = PARLEY__SERVER_FRAME__BODY_ERROR;
	rep->error = e;
}

static void rep_ok(round *rd, Parley__ServerFrame *rep)
{
	Parley__Ok *ok = ralloc(rd, sizeof(*ok));
	if (ok == NULL)
		return;
	parley__ok__init(ok);
	rep->body_case = PARLEY__SERVER_FRAME__BODY_OK;
	rep->ok = ok;
}

static Parley__Event *event_new(round *rd, uint64_t room)
{
	if (rd->nevents == rd->events_cap)
		return NULL; /* bounded by the round's request count */
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

static void watch_defer(round *rd, gw_state *gw, uint64_t room,
    const Parley__Internal__Caller *c, bool on)
{
	if (gw == NULL || rd->nwatches == rd->watches_cap)
		return;
	round_watch *w = &rd->watches[rd->nwatches++];
	w->gw = gw;
	w->room = room;
	w->caller = c;
	w->on = on;
}

/* Loads a room and checks read access. */
static pl_status room_readable(
    round *rd, const Parley__Internal__Caller *c, uint64_t room, brk_room **r)
{
	pl_status st = brk_room_get(rd->w, room, r);
	if (st == PL_OK)
		st = brk_room_access(*r, c, BRK_ACCESS_READ);
	return st;
}

static pl_status note_failure(round *rd, pl_status st)
{
	if (st == PL_E_MAP_FULL || st == PL_E_DISK_FULL || st == PL_E_IO ||
	    st == PL_E_NOMEM)
		if (rd->fail == PL_OK)
			rd->fail = st;
	return st;
}

static pl_status h_create(round *rd, const Parley__Internal__Caller *c,
    const Parley__CreateRoom *cr, Parley__ServerFrame *rep)
{
	uint64_t room;
	bool existed;
	pl_status st =
	    brk_create_room(rd->w, c, cr, rd->ts_us, &room, &existed);
	if (st != PL_OK)
		return note_failure(rd, st);
	Parley__RoomCreated *rc = ralloc(rd, sizeof(*rc));
	char *id = ralloc(rd, PL_ROOM_ID_CHARS + 1);
	if (rc == NULL || id == NULL)
		return PL_E_NOMEM;
	parley__room_created__init(rc);
	pl_room_format(room, id);
	rc->room = id;
	rc->existed = existed;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_ROOM_CREATED;
	rep->room_created = rc;
	return PL_OK;
}

static pl_status membership_event(
    round *rd, uint64_t room, const Parley__Internal__Caller *c, bool joined)
{
	Parley__Event *ev = event_new(rd, room);
	Parley__PresenceEvent *pe = ralloc(rd, sizeof(*pe));
	if (ev == NULL || pe == NULL)
		return PL_OK; /* events are best effort; the state is stored */
	parley__presence_event__init(pe);
	pe->user = c->user;
	pe->role = c->role;
	pe->joined = joined;
	pe->left = !joined;
	ev->ev_case = PARLEY__EVENT__EV_PRESENCE;
	ev->presence = pe;
	return PL_OK;
}

static pl_status h_publish(round *rd, const Parley__Internal__Caller *c,
    uint64_t room, Parley__Publish *p, Parley__ServerFrame *rep)
{
	brk_pub_result res;
	pl_status st = brk_publish(rd->w, c, room, p, rd->ts_us, &res);
	if (st != PL_OK)
		return note_failure(rd, st);
	Parley__Ack *ack = ralloc(rd, sizeof(*ack));
	char *id = ralloc(rd, PL_ROOM_ID_CHARS + 1);
	if (ack == NULL || id == NULL)
		return PL_E_NOMEM;
	parley__ack__init(ack);
	pl_room_format(room, id);
	ack->room = id;
	ack->seq = res.seq;
	ack->ts_us = res.ts_us;
	ack->duplicate = res.duplicate;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_ACK;
	rep->ack = ack;
	if (res.duplicate)
		return PL_OK;
	Parley__Event *ev = event_new(rd, room);
	Parley__Message *m = ralloc(rd, sizeof(*m));
	if (ev == NULL || m == NULL)
		return PL_OK; /* subscribers catch up from history */
	parley__message__init(m);
	m->room = id;
	m->seq = res.seq;
	m->ts_us = res.ts_us;
	m->sender = c->user;
	m->role = c->role;
	m->kind = p->kind;
	m->body = p->body;
	m->n_meta = p->n_meta;
	m->meta = p->meta;
	m->client_msg_id = p->client_msg_id;
	ev->ev_case = PARLEY__EVENT__EV_MESSAGE;
	ev->message = m;
	return PL_OK;
}

static pl_status h_subscribe(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, uint64_t room,
    Parley__ServerFrame *rep)
{
	brk_room *r;
	pl_status st = room_readable(rd, rq->caller, room, &r);
	if (st != PL_OK)
		return st;
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

static pl_status h_history(round *rd, const Parley__Internal__Caller *c,
    uint64_t room, const Parley__History *h, Parley__ServerFrame *rep)
{
	brk_room *r;
	pl_status st = room_readable(rd, c, room, &r);
	if (st != PL_OK)
		return st;
	Parley__HistoryPage *page = ralloc(rd, sizeof(*page));
	if (page == NULL)
		return PL_E_NOMEM;
	if ((st = brk_history(rd->w, room, h, rd->a, page)) != PL_OK)
		return st;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_HISTORY;
	rep->history = page;
	return PL_OK;
}

static pl_status h_typing(round *rd, const Parley__Internal__Caller *c,
    uint64_t room, const Parley__Typing *t, Parley__ServerFrame *rep)
{
	brk_room *r;
	pl_status st = brk_room_get(rd->w, room, &r);
	if (st == PL_OK)
		st = brk_room_access(r, c, BRK_ACCESS_WRITE);
	if (st == PL_OK && r->closed)
		st = PL_E_ROOM_CLOSED;
	if (st != PL_OK)
		return st;
	rep_ok(rd, rep);
	Parley__Event *ev = event_new(rd, room);
	Parley__TypingEvent *te = ralloc(rd, sizeof(*te));
	if (ev == NULL || te == NULL)
		return PL_OK; /* ephemeral: may be dropped */
	parley__typing_event__init(te);
	te->user = c->user;
	te->role = c->role;
	te->active = t->active;
	ev->ev_case = PARLEY__EVENT__EV_TYPING;
	ev->typing = te;
	return PL_OK;
}

static pl_status h_read(round *rd, const Parley__Internal__Caller *c,
    uint64_t room, uint64_t seq, Parley__ServerFrame *rep)
{
	pl_status st = brk_read(rd->w, c, room, seq, rd->ts_us);
	if (st != PL_OK)
		return note_failure(rd, st);
	brk_room *r;
	if (brk_room_get(rd->w, room, &r) != PL_OK)
		return PL_E_INTERNAL;
	brk_member *m = brk_room_member(r, c->user);
	rep_ok(rd, rep);
	Parley__Event *ev = event_new(rd, room);
	Parley__ReadEvent *re = ralloc(rd, sizeof(*re));
	if (ev == NULL || re == NULL || m == NULL)
		return PL_OK;
	parley__read_event__init(re);
	re->user = c->user;
	re->seq = m->read_seq;
	ev->ev_case = PARLEY__EVENT__EV_READ;
	ev->read = re;
	return PL_OK;
}

static pl_status h_close(round *rd, const Parley__Internal__Caller *c,
    uint64_t room, const Parley__CloseRoom *cl, Parley__ServerFrame *rep)
{
	pl_status st = brk_close_room(rd->w, c, room, cl->reason, rd->ts_us);
	if (st != PL_OK)
		return note_failure(rd, st);
	rep_ok(rd, rep);
	Parley__Event *ev = event_new(rd, room);
	Parley__ClosedEvent *ce = ralloc(rd, sizeof(*ce));
	if (ev == NULL || ce == NULL)
		return PL_OK;
	parley__closed_event__init(ce);
	ce->reason = cl->reason;
	ce->ts_us = rd->ts_us;
	ev->ev_case = PARLEY__EVENT__EV_CLOSED;
	ev->closed = ce;
	return PL_OK;
}

static pl_status h_presence(round *rd, const Parley__Internal__Caller *c,
    uint64_t room, Parley__ServerFrame *rep)
{
	brk_room *r;
	pl_status st = room_readable(rd, c, room, &r);
	if (st != PL_OK)
		return st;
	room_watch *rw = watch_find(rd->g, room, false);
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
		mem[n].online = rw != NULL && user_conns(rw, m->user) > 0;
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

static pl_status h_room_info(round *rd, const Parley__Internal__Caller *c,
    uint64_t room, Parley__ServerFrame *rep)
{
	brk_room *r;
	pl_status st = room_readable(rd, c, room, &r);
	if (st != PL_OK)
		return st;
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
	room_watch *rw = watch_find(rd->g, room, false);
	for (size_t i = 0; rw != NULL && i < info->n_members; i++)
		info->members[i]->online =
		    user_conns(rw, info->members[i]->user) > 0;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_ROOM_INFO;
	rep->room_info = info;
	return PL_OK;
}

static pl_status h_list(round *rd, const Parley__Internal__Caller *c,
    const Parley__ListRooms *l, Parley__ServerFrame *rep)
{
	uint64_t after = 0;
	if (l->after != NULL && l->after[0] != '\0' &&
	    pl_room_parse(l->after, &after) != PL_OK)
		return PL_E_BAD_REQUEST;
	Parley__RoomList *rl = ralloc(rd, sizeof(*rl));
	if (rl == NULL)
		return PL_E_NOMEM;
	pl_status st =
	    brk_list_rooms(rd->w, c->tenant, after, l->limit, rd->a, rl);
	if (st != PL_OK)
		return st;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_ROOM_LIST;
	rep->room_list = rl;
	return PL_OK;
}

/* Tenant statistics are for the tenant's staff and backend, not for
 * customers or bots. */
static pl_status h_report(round *rd, const Parley__Internal__Caller *c,
    const Parley__ReportRequest *rq, Parley__ServerFrame *rep)
{
	if (c->role != PARLEY__ROLE__SERVICE &&
	    c->role != PARLEY__ROLE__AGENT && c->role != PARLEY__ROLE__OBSERVER)
		return PL_E_FORBIDDEN;
	if (c->room_scope != NULL && c->room_scope[0] != '\0')
		return PL_E_FORBIDDEN;
	uint32_t days = rq->days ? rq->days : REPORT_DAYS_DEFAULT;
	uint32_t today = (uint32_t)(rd->ts_us / (86400LL * 1000000));
	uint32_t first = days > today + 1 ? 0 : today + 1 - days;
	Parley__Report *r = ralloc(rd, sizeof(*r));
	if (r == NULL)
		return PL_E_NOMEM;
	pl_status st = brk_report(rd->w, c->tenant, first, today, rd->a, r);
	if (st != PL_OK)
		return st;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_REPORT;
	rep->report = r;
	return PL_OK;
}

static pl_status h_status(round *rd, Parley__ServerFrame *rep)
{
	brk_group *g = rd->g;
	Parley__StatusReply *s = ralloc(rd, sizeof(*s));
	Parley__GroupStatus *gs = ralloc(rd, sizeof(*gs));
	Parley__GroupStatus **gp = ralloc(rd, sizeof(*gp));
	if (!s || !gs || !gp)
		return PL_E_NOMEM;
	parley__status_reply__init(s);
	parley__group_status__init(gs);
	s->node = g->cfg.id;
	s->uptime_us = pl_now_us() - g->started_us;
	gs->group = g->cfg.group;
	gs->address = g->cfg.listen;
	gs->reachable = true;
	brk_store_usage(
	    g->store, &gs->map_used_bytes, &gs->map_size_bytes, &gs->rooms);
	gs->last_index = brk_store_last_index(g->store);
	gs->durability = g->cfg.sync ? "sync" : "relaxed";
	gs->role = "leader";
	gp[0] = gs;
	s->n_groups = 1;
	s->groups = gp;
	rep->body_case = PARLEY__SERVER_FRAME__BODY_STATUS;
	rep->status = s;
	return PL_OK;
}

static pl_status dispatch_room(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, uint64_t room,
    Parley__ServerFrame *rep)
{
	const Parley__Internal__Caller *c = rq->caller;
	Parley__ClientFrame *f = rq->frame;
	pl_status st;
	switch (f->body_case) {
	case PARLEY__CLIENT_FRAME__BODY_JOIN:
		st = note_failure(rd, brk_join(rd->w, c, room, rd->ts_us));
		if (st == PL_OK) {
			rep_ok(rd, rep);
			membership_event(rd, room, c, true);
		}
		return st;
	case PARLEY__CLIENT_FRAME__BODY_LEAVE:
		st = note_failure(rd, brk_leave(rd->w, c, room, rd->ts_us));
		if (st == PL_OK) {
			rep_ok(rd, rep);
			membership_event(rd, room, c, false);
		}
		return st;
	case PARLEY__CLIENT_FRAME__BODY_PUBLISH:
		return h_publish(rd, c, room, f->publish, rep);
	case PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE:
		return h_subscribe(rd, it, rq, room, rep);
	case PARLEY__CLIENT_FRAME__BODY_UNSUBSCRIBE:
		watch_defer(rd, it->gw, room, c, false);
		rep_ok(rd, rep);
		return PL_OK;
	case PARLEY__CLIENT_FRAME__BODY_HISTORY:
		return h_history(rd, c, room, f->history, rep);
	case PARLEY__CLIENT_FRAME__BODY_TYPING:
		return h_typing(rd, c, room, f->typing, rep);
	case PARLEY__CLIENT_FRAME__BODY_READ:
		return h_read(rd, c, room, f->read->seq, rep);
	case PARLEY__CLIENT_FRAME__BODY_PRESENCE:
		return h_presence(rd, c, room, rep);
	case PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM:
		return h_close(rd, c, room, f->close_room, rep);
	case PARLEY__CLIENT_FRAME__BODY_ROOM_INFO:
		return h_room_info(rd, c, room, rep);
	default:
		return PL_E_BAD_REQUEST;
	}
}

static pl_status dispatch(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, Parley__ServerFrame *rep)
{
	Parley__ClientFrame *f = rq->frame;
	if (f == NULL || rq->caller == NULL || rq->caller->tenant == NULL ||
	    rq->caller->tenant[0] == '\0')
		return PL_E_BAD_REQUEST;
	if (pl_client_frame_validate(f) != PL_OK)
		return PL_E_BAD_REQUEST;
	switch (f->body_case) {
	case PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM:
		return h_create(rd, rq->caller, f->create_room, rep);
	case PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS:
		return h_list(rd, rq->caller, f->list_rooms, rep);
	case PARLEY__CLIENT_FRAME__BODY_STATUS:
		return h_status(rd, rep);
	case PARLEY__CLIENT_FRAME__BODY_REPORT:
		return h_report(rd, rq->caller, f->report, rep);
	default:
		break;
	}
	const char *rs = pl_client_frame_room(f);
	uint64_t room;
	if (rs == NULL)
		return PL_E_BAD_REQUEST;
	if (pl_room_parse(rs, &room) != PL_OK)
		return PL_E_NOT_FOUND;
	if (pl_room_group(room) != rd->g->cfg.group)
		return PL_E_NOT_FOUND;
	return dispatch_room(rd, it, rq, room, rep);
}

/* ------------------------------------------------------------------ */
/* Commit rounds */

static void handle_item(round *rd, brk_item *it)
{
	Parley__Internal__GwBatch *b = it->batch;
	rd->a = &it->arena;
	it->nreplies = 0;
	it->replies = ralloc(rd, sizeof(*it->replies) * (b->n_reqs + 1));
	if (it->replies == NULL)
		return; /* the gateway times the batch out: unavailable */
	for (size_t i = 0; i < b->n_reqs; i++) {
		Parley__ServerFrame *rep = ralloc(rd, sizeof(*rep));
		if (rep == NULL)
			break;
		parley__server_frame__init(rep);
		rep->id = b->reqs[i]->id;
		pl_status st = dispatch(rd, it, b->reqs[i], rep);
		if (st == PL_E_MAP_FULL && rd->refused != PL_OK)
			st = rd->refused;
		if (st != PL_OK)
			rep_error(rd, rep, st);
		it->replies[it->nreplies++] = rep;
	}
}

static void round_pass(round *rd, brk_item **items, size_t n)
{
	rd->nevents = 0;
	rd->nwatches = 0;
	for (size_t i = 0; i < n; i++)
		handle_item(rd, items[i]);
}

/* Runs the batches as one write transaction; on failure re-runs them
 * read-only so reads are still answered. */
static void round_execute(brk_group *g, round *rd, brk_item **items, size_t n)
{
	pl_status st = brk_wtxn_begin(g->store, true, &rd->w);
	if (st == PL_OK) {
		round_pass(rd, items, n);
		st = rd->fail != PL_OK ? rd->fail : brk_wtxn_commit(rd->w);
		if (st != PL_OK)
			brk_wtxn_abort(rd->w);
	}
	if (st == PL_OK)
		return;
	PL_WARN("group", "event=round_failed err=\"%s\" batches=%zu",
	    pl_strerror(st), n);
	pl_metric_inc(g->m.round_fail, 1);
	rd->refused = st;
	rd->fail = PL_OK;
	if (brk_wtxn_begin(g->store, false, &rd->w) != PL_OK) {
		for (size_t i = 0; i < n; i++)
			items[i]->nreplies = 0; /* gateway: unavailable */
		rd->nevents = rd->nwatches = 0;
		return;
	}
	round_pass(rd, items, n);
	brk_wtxn_abort(rd->w);
	rd->nevents = 0; /* nothing was stored: no message events */
}

static void round_apply(brk_group *g, round *rd)
{
	for (size_t i = 0; i < rd->nwatches; i++) {
		round_watch *w = &rd->watches[i];
		if (w->on)
			watch_on(g, w->gw, w->room, w->caller->user,
			    w->caller->role);
		else
			watch_off(g, w->gw, w->room, w->caller->user);
	}
	for (size_t i = 0; i < rd->nevents; i++)
		fanout(g, rd->events[i].room, rd->events[i].ev);
}

static void run_round(brk_group *g, brk_item **items, size_t n)
{
	size_t reqs = 0;
	for (size_t i = 0; i < n; i++)
		reqs += items[i]->batch->n_reqs;
	round rd;
	memset(&rd, 0, sizeof(rd));
	rd.g = g;
	int64_t now = pl_now_us();
	rd.ts_us = now > g->last_ts_us ? now : g->last_ts_us + 1;
	g->last_ts_us = rd.ts_us;
	rd.events = g->events_buf;
	rd.events_cap = reqs;
	rd.watches = g->watches_buf;
	rd.watches_cap = reqs;
	int64_t t0 = pl_mono_us();
	round_execute(g, &rd, items, n);
	pl_hist_record(g->m.commit_s->hist, (uint64_t)(pl_mono_us() - t0));
	pl_metric_inc(g->m.rounds, 1);
	pl_metric_inc(g->m.requests, (int64_t)reqs);
	pl_hist_record(g->m.round_reqs->hist, reqs);
	round_apply(g, &rd);
	for (size_t i = 0; i < n; i++)
		item_reply(g, items[i]);
}

/* ------------------------------------------------------------------ */
/* The group thread */

static pl_status item_decode(brk_item *it)
{
	size_t len = nng_msg_len(it->msg);
	if (len > PL_FRAME_BYTES_CEIL)
		return PL_E_TOO_LARGE;
	Parley__Internal__GwBatch *b = parley__internal__gw_batch__unpack(
	    &it->arena.alloc, len, nng_msg_body(it->msg));
	if (b == NULL)
		return PL_E_PROTO;
	if (b->n_reqs > GW_BATCH_REQS_MAX || b->gateway == NULL ||
	    b->gateway[0] == '\0')
		return PL_E_PROTO;
	it->batch = b;
	return PL_OK;
}

static void park_poll(brk_group *g, brk_item *it, int64_t now)
{
	gw_state *gw = it->gw;
	uint32_t wait = it->batch->wait_ms;
	if (wait > POLL_WAIT_MS_MAX)
		wait = POLL_WAIT_MS_MAX;
	if (gw->npolls == POLLS_PER_GATEWAY_MAX)
		feed_flush(g, gw); /* answers the oldest */
	it->deadline_us = now + (int64_t)wait * 1000;
	gw->polls[gw->npolls++] = it;
}

/* Sorts received items into parked polls and the round's batches. */
static size_t intake(brk_group *g, brk_item **in, size_t n, brk_item **out)
{
	size_t nr = 0;
	int64_t now = pl_now_us();
	for (size_t i = 0; i < n; i++) {
		brk_item *it = in[i];
		pl_metric_inc(g->m.batches, 1);
		if (item_decode(it) != PL_OK) {
			PL_WARN("group", "event=bad_batch bytes=%zu",
			    nng_msg_len(it->msg));
			item_reply(g, it); /* empty: the gateway retries */
			continue;
		}
		it->gw = gw_find(g, it->batch->gateway, true);
		if (it->gw == NULL) {
			item_reply(g, it);
			continue;
		}
		it->gw->last_seen_us = now;
		if (it->batch->poll && it->batch->n_reqs == 0)
			park_poll(g, it, now);
		else
			out[nr++] = it;
	}
	return nr;
}

static void housekeeping(brk_group *g)
{
	int64_t now = pl_now_us();
	polls_expire(g, now);
	gws_expire(g, now);
	if (!g->cfg.sync &&
	    now - g->last_sync_us >= (int64_t)g->cfg.sync_interval_ms * 1000) {
		if (brk_store_sync(g->store) != PL_OK)
			PL_ERROR("group", "event=sync_failed");
		g->last_sync_us = now;
	}
	if (now - g->last_gauges_us >= 1000000) {
		uint64_t used, size, rooms;
		brk_store_usage(g->store, &used, &size, &rooms);
		pl_metric_set(g->m.map_used, (int64_t)used);
		pl_metric_set(g->m.map_size, (int64_t)size);
		pl_metric_set(g->m.rooms, (int64_t)rooms);
		pl_metric_set(
		    g->m.last_index, (int64_t)brk_store_last_index(g->store));
		g->last_gauges_us = now;
	}
}

static void *group_main(void *arg)
{
	brk_group *g = arg;
	brk_item *in[ITEMS_MAX], *batch[ITEMS_MAX];
	while (g->running) {
		size_t n =
		    pl_queue_pop_many(&g->q, (void **)in, ITEMS_MAX, TICK_US);
		size_t nr = intake(g, in, n, batch);
		for (size_t i = 0; i < nr; i += ROUND_ITEMS_MAX) {
			size_t k =
			    nr - i < ROUND_ITEMS_MAX ? nr - i : ROUND_ITEMS_MAX;
			run_round(g, batch + i, k);
		}
		housekeeping(g);
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Lifecycle */

static void metrics_register(brk_group *g, pl_metrics *r)
{
	g->m.batches = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_batches_total", "Gateway batches received");
	g->m.requests = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_requests_total", "Requests handled");
	g->m.rounds = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_commit_rounds_total",
	    "Commit rounds (one write transaction and fsync each)");
	g->m.round_fail = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_commit_failures_total",
	    "Rounds whose writes failed (map full, disk full, I/O)");
	g->m.commit_s =
	    pl_metrics_add(r, PL_METRIC_HIST, "parley_broker_round_seconds",
	        "Time to run and commit one round, fsync included");
	g->m.round_reqs =
	    pl_metrics_add(r, PL_METRIC_HIST, "parley_broker_round_requests",
	        "Requests per round (recorded as microseconds = count)");
	g->m.events = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_events_total", "Live events fanned out");
	g->m.events_dropped = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_feed_dropped_total",
	    "Events dropped for slow gateways (they catch up from history)");
	g->m.rooms = pl_metrics_add(
	    r, PL_METRIC_GAUGE, "parley_broker_rooms", "Rooms stored");
	g->m.map_used = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_broker_map_used_bytes", "LMDB pages in use");
	g->m.map_size = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_broker_map_size_bytes", "LMDB map size");
	g->m.last_index = pl_metrics_add(
	    r, PL_METRIC_GAUGE, "parley_broker_last_index", "Last log index");
	g->m.gateways = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_broker_gateways", "Gateways polling the feed");
}

pl_status brk_group_new(
    const brk_config *cfg, pl_metrics *metrics, brk_group **out)
{
	brk_group *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return PL_E_NOMEM;
	g->cfg = *cfg;
	pthread_mutex_init(&g->free_mu, NULL);
	for (int i = ITEMS_MAX - 1; i >= 0; i--) {
		brk_arena_init(&g->items[i].arena, 64 * 1024,
		    (size_t)PL_FRAME_BYTES_CEIL * 8);
		g->items[i].next_free = g->free_items;
		g->free_items = &g->items[i];
	}
	size_t reqs_max = (size_t)ROUND_ITEMS_MAX * GW_BATCH_REQS_MAX;
	g->events_buf = calloc(reqs_max, sizeof(round_event));
	g->watches_buf = calloc(reqs_max, sizeof(round_watch));
	g->pack = malloc(PL_FRAME_BYTES_CEIL);
	brk_store_config sc = {.dir = g->cfg.data_dir,
	    .map_bytes = cfg->map_bytes,
	    .sync = cfg->sync,
	    .group = cfg->group,
	    .compress_bytes_min = cfg->compress_bytes_min,
	    .dedup_window = cfg->dedup_window};
	pl_status st = PL_E_NOMEM;
	if (g->events_buf && g->watches_buf && g->pack)
		st = pl_queue_init(&g->q, ITEMS_MAX);
	if (st == PL_OK)
		st = brk_store_open(&sc, &g->store);
	if (st != PL_OK) {
		brk_group_free(g);
		return st;
	}
	uint8_t rnd[16];
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(g->epoch, sizeof(g->epoch), rnd, sizeof(rnd));
	metrics_register(g, metrics);
	g->started_us = pl_now_us();
	*out = g;
	return PL_OK;
}

pl_status brk_group_start(brk_group *g, brk_net *net)
{
	g->net = net;
	g->running = true;
	if (pthread_create(&g->thread, NULL, group_main, g) != 0) {
		g->running = false;
		return PL_E_NOMEM;
	}
	return PL_OK;
}

void brk_group_stop(brk_group *g)
{
	if (g == NULL || !g->running)
		return;
	g->running = false;
	pl_queue_close(&g->q);
	pthread_join(g->thread, NULL);
}

void brk_group_free(brk_group *g)
{
	if (g == NULL)
		return;
	brk_item *left[ITEMS_MAX];
	size_t n = pl_queue_pop_many(&g->q, (void **)left, ITEMS_MAX, 0);
	for (size_t i = 0; i < n; i++)
		item_put(g, left[i]);
	while (g->ngws > 0)
		gw_forget(g, g->ngws - 1);
	for (int b = 0; b < WATCH_BUCKETS; b++)
		while (g->watch[b] != NULL)
			watch_drop_room(g, g->watch[b]);
	for (int i = 0; i < ITEMS_MAX; i++)
		brk_arena_fini(&g->items[i].arena);
	brk_store_close(g->store);
	pl_queue_fini(&g->q);
	pthread_mutex_destroy(&g->free_mu);
	free(g->events_buf);
	free(g->watches_buf);
	free(g->pack);
	free(g);
}
