/*
 * feed.c - subscriptions: the room -> local subscriptions map, watch
 * changes sent to brokers, live events from the feed fanned out through
 * each subscription's cursor (cursor.c), and history catch-up pages.
 * Everything here runs under g->subs_mu (see core.h for order);
 * sends to connections take conn->mu inside it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/conn.h"
#include "gateway/feed.h"
#include "gateway/link.h"
#include "gateway/req.h"

#define ROOMS_BUCKETS_MIN 1024

pl_status gw_subs_init(gw *g)
{
	pthread_mutex_init(&g->subs_mu, NULL);
	g->rooms_cap = ROOMS_BUCKETS_MIN;
	g->rooms = calloc(g->rooms_cap, sizeof(*g->rooms));
	return g->rooms != NULL ? PL_OK : PL_E_NOMEM;
}

void gw_subs_fini(gw *g)
{
	/* Connections dropped their subscriptions when they closed. */
	for (size_t i = 0; g->rooms != NULL && i < g->rooms_cap; i++) {
		while (g->rooms[i] != NULL) {
			gw_room *r = g->rooms[i];
			g->rooms[i] = r->hnext;
			free(r);
		}
	}
	free(g->rooms);
	g->rooms = NULL;
	pthread_mutex_destroy(&g->subs_mu);
}

/* ---- room map ---- */

static size_t room_hash(uint64_t room, size_t cap)
{
	return (size_t)((room * UINT64_C(0x9E3779B97F4A7C15)) >> 32) &
	       (cap - 1);
}

static gw_room *room_find(gw *g, uint64_t room)
{
	for (gw_room *r = g->rooms[room_hash(room, g->rooms_cap)]; r != NULL;
	     r = r->hnext) {
		if (r->room == room)
			return r;
	}
	return NULL;
}

/* Doubles the bucket array when rooms outnumber buckets; on allocation
 * failure the map just stays denser. */
static void rooms_grow(gw *g)
{
	size_t cap = g->rooms_cap * 2;
	gw_room **b = calloc(cap, sizeof(*b));
	if (b == NULL)
		return;
	for (size_t i = 0; i < g->rooms_cap; i++) {
		while (g->rooms[i] != NULL) {
			gw_room *r = g->rooms[i];
			g->rooms[i] = r->hnext;
			size_t h = room_hash(r->room, cap);
			r->hnext = b[h];
			b[h] = r;
		}
	}
	free(g->rooms);
	g->rooms = b;
	g->rooms_cap = cap;
}

static gw_room *room_get(gw *g, uint64_t room)
{
	gw_room *r = room_find(g, room);
	if (r != NULL)
		return r;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->room = room;
	size_t h = room_hash(room, g->rooms_cap);
	r->hnext = g->rooms[h];
	g->rooms[h] = r;
	pl_metric_set(g->m.rooms, (int64_t)++g->nrooms);
	if (g->nrooms > g->rooms_cap)
		rooms_grow(g);
	return r;
}

static void room_drop(gw *g, gw_room *room)
{
	gw_room **pp = &g->rooms[room_hash(room->room, g->rooms_cap)];
	while (*pp != room)
		pp = &(*pp)->hnext;
	*pp = room->hnext;
	pl_metric_set(g->m.rooms, (int64_t)--g->nrooms);
	free(room);
}

/* ---- subscriptions ---- */

static gw_sub *conn_sub_by_room(gw_conn *c, uint64_t room)
{
	for (gw_sub *s = c->subs; s != NULL; s = s->cnext) {
		if (s->room == room)
			return s;
	}
	return NULL;
}

static gw_sub *conn_sub_by_id(gw_conn *c, uint64_t id)
{
	for (gw_sub *s = c->subs; s != NULL; s = s->cnext) {
		if (s->id == id)
			return s;
	}
	return NULL;
}

static gw_sub *sub_add(
    gw *g, gw_conn *c, uint64_t room, const char *room_str, uint64_t since)
{
	gw_sub *s = calloc(1, sizeof(*s));
	gw_room *rm = s != NULL ? room_get(g, room) : NULL;
	if (rm == NULL) {
		free(s);
		return NULL;
	}
	s->id = ++g->sub_ids;
	s->room = room;
	snprintf(s->room_str, sizeof(s->room_str), "%s", room_str);
	s->conn = c;
	gw_cursor_init(&s->cur, since);
	s->rnext = rm->subs;
	if (rm->subs != NULL)
		rm->subs->rprev = s;
	rm->subs = s;
	rm->nsubs++;
	s->cnext = c->subs;
	c->subs = s;
	c->nsubs++;
	pl_metric_set(g->m.subs, (int64_t)++g->nsubs);
	return s;
}

static void sub_remove(gw *g, gw_sub *s)
{
	gw_conn *c = s->conn;
	gw_room *rm = room_find(g, s->room);
	PL_ASSERT(rm != NULL);
	if (s->rprev != NULL)
		s->rprev->rnext = s->rnext;
	else
		rm->subs = s->rnext;
	if (s->rnext != NULL)
		s->rnext->rprev = s->rprev;
	if (--rm->nsubs == 0)
		room_drop(g, rm);
	gw_sub **pp = &c->subs;
	while (*pp != s)
		pp = &(*pp)->cnext;
	*pp = s->cnext;
	c->nsubs--;
	if (s->retry)
		g->retry_n--;
	pl_metric_set(g->m.subs, (int64_t)--g->nsubs);
	free(s);
}

static gw_req_done_fn watch_done, subscribed_done, page_done;

/* Sends a watch change that nobody waits for. Best effort: a lost "on"
 * shows as a gap (caught up from history), a lost "off" is forgotten by
 * the broker when the gateway idles. The change travels as the client
 * frame that causes it (subscribe since the head, or unsubscribe) with
 * the connection's caller, exactly like a client's own request: the
 * broker keys watches on (gateway, room, user). */
static void watch_send(gw *g, const gw_sub *s, bool on)
{
	Parley__Subscribe sb = PARLEY__SUBSCRIBE__INIT;
	Parley__Unsubscribe ub = PARLEY__UNSUBSCRIBE__INIT;
	Parley__ClientFrame f = PARLEY__CLIENT_FRAME__INIT;
	if (on) {
		sb.room = (char *)s->room_str;
		f.body_case = PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE;
		f.subscribe = &sb;
	} else {
		ub.room = (char *)s->room_str;
		f.body_case = PARLEY__CLIENT_FRAME__BODY_UNSUBSCRIBE;
		f.unsubscribe = &ub;
	}
	gw_link *l = gw_link_find(g, pl_room_group(s->room));
	gw_req *r = l != NULL
	                ? gw_req_new(s->conn, GW_REQ_WATCH, &f, watch_done, g)
	                : NULL;
	if (r != NULL && gw_link_submit(l, r) != PL_OK) {
		PL_WARN(GW_MOD, "event=watch_dropped room=%s on=%d",
		    s->room_str, (int)on);
		gw_req_free(r);
		r = NULL;
	}
	if (r == NULL) /* no link for the room, no memory, or refused */
		pl_metric_inc(g->m.watch_dropped, 1);
}

static void retry_mark(gw *g, gw_sub *s)
{
	if (!s->retry) {
		s->retry = true;
		g->retry_n++;
	}
}

static void act(gw *g, gw_sub *s, gw_cursor_act a);

/* Asks for the history page after the cursor (the cursor has marked the
 * fetch in flight), unless the connection has not yet written what the
 * previous pages gave it: then the fetch waits (flow control). */
static void fetch(gw *g, gw_sub *s)
{
	/* Flag first, then look: a write that drains the queue after the
	 * look sees the flag and resumes us (conn.c write_cb). */
	atomic_store(&s->conn->catchup_waiting, true);
	if (gw_conn_unsent(s->conn) > GW_CATCHUP_BUDGET(g)) {
		act(g, s, gw_cursor_fetch_deferred(&s->cur));
		return;
	}
	Parley__History h = PARLEY__HISTORY__INIT;
	h.room = s->room_str;
	h.after_seq = gw_cursor_after(&s->cur);
	h.limit = GW_CATCHUP_LIMIT;
	h.oldest_first = true;
	h.max_bytes = (uint32_t)GW_CATCHUP_BUDGET(g);
	Parley__ClientFrame f = PARLEY__CLIENT_FRAME__INIT;
	f.body_case = PARLEY__CLIENT_FRAME__BODY_HISTORY;
	f.history = &h;
	gw_link *l = gw_link_find(g, pl_room_group(s->room));
	gw_req *r = gw_req_new(s->conn, GW_REQ_CATCHUP, &f, page_done, g);
	if (r != NULL) {
		r->sub_id = s->id;
		if (l != NULL && gw_link_submit(l, r) == PL_OK)
			return;
		gw_req_free(r);
	}
	(void)gw_cursor_page_failed(&s->cur);
	retry_mark(g, s);
}

static void act(gw *g, gw_sub *s, gw_cursor_act a)
{
	if (a == GW_CUR_FETCH)
		fetch(g, s);
	else if (a == GW_CUR_RETRY)
		retry_mark(g, s);
}

static void subscribe_locked(
    gw_conn *c, const Parley__ClientFrame *f, uint64_t room)
{
	gw *g = c->g;
	const Parley__Subscribe *sb = f->subscribe;
	char msg[96];
	if (c->nsubs >= g->conf->subscriptions_max) {
		/* Waiting does not help; unsubscribing does. */
		snprintf(msg, sizeof(msg),
		    "subscriptions_max %u reached: unsubscribe first",
		    g->conf->subscriptions_max);
		gw_conn_send_retry(
		    c, f->id, PARLEY__ERROR_CODE__RATE_LIMITED, msg, 0);
		return;
	}
	if (conn_sub_by_room(c, room) != NULL) {
		gw_conn_send_error(c, f->id, PARLEY__ERROR_CODE__BAD_REQUEST,
		    "already subscribed to this room on this connection");
		return;
	}
	gw_sub *s = sub_add(g, c, room, sb->room, sb->since_seq);
	gw_req *r = NULL;
	if (s != NULL)
		r = gw_req_new(c, GW_REQ_SUBSCRIBE, f, subscribed_done, g);
	if (r == NULL) {
		if (s != NULL)
			sub_remove(g, s);
		gw_conn_send_error(
		    c, f->id, PARLEY__ERROR_CODE__INTERNAL, "out of memory");
		return;
	}
	r->sub_id = s->id;
	pl_status st = gw_link_submit(gw_link_find(g, pl_room_group(room)), r);
	if (st != PL_OK) {
		sub_remove(g, s);
		gw_req_free(r);
		gw_conn_send_retry(c, f->id,
		    st == PL_E_BACKPRESSURE ? PARLEY__ERROR_CODE__OVERLOADED
		                            : PARLEY__ERROR_CODE__UNAVAILABLE,
		    st == PL_E_BACKPRESSURE ? "broker queue full, retry"
		                            : "gateway stopping",
		    st == PL_E_BACKPRESSURE ? GW_RETRY_AFTER_MS : 0);
	}
}

/* Routes and validates first, so subs_mu is only held for the update. */
static bool sub_room(gw_conn *c, uint64_t id, const char *s, uint64_t *room)
{
	/* The codec checked the id already. */
	if (s == NULL || pl_room_parse(s, room) != PL_OK) {
		gw_conn_send_error(c, id, PARLEY__ERROR_CODE__BAD_REQUEST,
		    "room: not a room id (16 lowercase hex digits)");
		return false;
	}
	if (gw_link_find(c->g, pl_room_group(*room)) == NULL &&
	    gw_map_pending(c->g)) {
		gw_conn_send_retry(c, id, PARLEY__ERROR_CODE__UNAVAILABLE,
		    "no cluster map yet: groups are not known", 0);
		return false;
	}
	if (gw_link_find(c->g, pl_room_group(*room)) == NULL) {
		char msg[96];
		snprintf(msg, sizeof(msg),
		    "room not found: no shard group %u serves it",
		    (unsigned)pl_room_group(*room));
		gw_conn_send_error(c, id, PARLEY__ERROR_CODE__NOT_FOUND, msg);
		return false;
	}
	return true;
}

void gw_subs_subscribe(gw_conn *c, const Parley__ClientFrame *f)
{
	uint64_t room;
	if (!sub_room(c, f->id, f->subscribe->room, &room))
		return;
	pthread_mutex_lock(&c->g->subs_mu);
	subscribe_locked(c, f, room);
	pthread_mutex_unlock(&c->g->subs_mu);
}

static void reply_ok(gw_conn *c, uint64_t id)
{
	Parley__Ok ok = PARLEY__OK__INIT;
	Parley__ServerFrame sf = PARLEY__SERVER_FRAME__INIT;
	sf.id = id;
	sf.body_case = PARLEY__SERVER_FRAME__BODY_OK;
	sf.ok = &ok;
	(void)gw_conn_send(c, &sf);
}

void gw_subs_unsubscribe(gw_conn *c, const Parley__ClientFrame *f)
{
	gw *g = c->g;
	uint64_t room;
	if (!sub_room(c, f->id, f->unsubscribe->room, &room))
		return;
	pthread_mutex_lock(&g->subs_mu);
	gw_sub *s = conn_sub_by_room(c, room);
	if (s == NULL) {
		/* Not subscribed here: nothing to undo at the broker. */
		pthread_mutex_unlock(&g->subs_mu);
		reply_ok(c, f->id);
		return;
	}
	gw_req *r = gw_req_new(c, GW_REQ_CLIENT, f, gw_req_client_done, g);
	sub_remove(g, s);
	pl_status st =
	    r != NULL ? gw_link_submit(gw_link_find(g, pl_room_group(room)), r)
	              : PL_E_NOMEM;
	pthread_mutex_unlock(&g->subs_mu);
	if (st != PL_OK) {
		/* Locally it is gone; the broker forgets the watch later. */
		gw_req_free(r);
		reply_ok(c, f->id);
	}
}

void gw_subs_drop_conn(gw_conn *c)
{
	gw *g = c->g;
	pthread_mutex_lock(&g->subs_mu);
	while (c->subs != NULL) {
		watch_send(g, c->subs, false);
		sub_remove(g, c->subs);
	}
	pthread_mutex_unlock(&g->subs_mu);
}

/* ---- broker replies for subscriptions ---- */

/* A watch change's reply is dropped: nobody waits for it. */
static void watch_done(gw_req *r, Parley__ServerFrame *f, int code)
{
	(void)f;
	(void)code;
	gw_req_free(r);
}

static void on_subscribed(gw *g, gw_req *r, Parley__ServerFrame *f, int code)
{
	Parley__Error e = PARLEY__ERROR__INIT;
	Parley__ServerFrame ef = PARLEY__SERVER_FRAME__INIT;
	if (f == NULL) {
		e.code = code;
		e.message = "broker unavailable, retry";
		ef.body_case = PARLEY__SERVER_FRAME__BODY_ERROR;
		ef.error = &e;
		f = &ef;
	}
	f->id = r->client_id;
	char msg[96];
	pthread_mutex_lock(&g->subs_mu);
	gw_sub *s = conn_sub_by_id(r->conn, r->sub_id);
	bool ok = f->body_case == PARLEY__SERVER_FRAME__BODY_SUBSCRIBED;
	/* A since past the head would wait for seqs that the room will
	 * number differently: refused, not a silent subscription. */
	if (ok && s != NULL &&
	    gw_cursor_after(&s->cur) > f->subscribed->last_seq) {
		snprintf(msg, sizeof(msg),
		    "since %" PRIu64 " is past the room's last seq %" PRIu64,
		    gw_cursor_after(&s->cur), f->subscribed->last_seq);
		e.code = PARLEY__ERROR_CODE__BAD_REQUEST;
		e.message = msg;
		ef.body_case = PARLEY__SERVER_FRAME__BODY_ERROR;
		ef.error = &e;
		ef.id = r->client_id;
		f = &ef;
		ok = false;
		watch_send(g, s, false);
	}
	if (s != NULL && !ok)
		sub_remove(g, s);
	/* Sent under subs_mu so it precedes the catch-up's events. */
	(void)gw_conn_send(r->conn, f);
	if (s != NULL && ok)
		act(g, s,
		    gw_cursor_subscribed(&s->cur, f->subscribed->last_seq));
	pthread_mutex_unlock(&g->subs_mu);
}

static void deliver(gw *g, gw_sub *s, const Parley__Message *m)
{
	Parley__Event ev = PARLEY__EVENT__INIT;
	ev.room = s->room_str;
	ev.ev_case = PARLEY__EVENT__EV_MESSAGE;
	ev.message = (Parley__Message *)m;
	Parley__ServerFrame sf = PARLEY__SERVER_FRAME__INIT;
	sf.body_case = PARLEY__SERVER_FRAME__BODY_EVENT;
	sf.event = &ev;
	if (gw_conn_send(s->conn, &sf) == PL_OK && m->ts_us > 0)
		pl_hist_record(
		    g->m.deliver->hist, (uint64_t)(pl_now_us() - m->ts_us));
}

/* A refused catch-up that retrying cannot fix ends the subscription. */
static bool page_refused(gw *g, gw_sub *s, const Parley__ServerFrame *f)
{
	if (f == NULL || f->body_case != PARLEY__SERVER_FRAME__BODY_ERROR)
		return false;
	int code = f->error->code;
	if (code != PARLEY__ERROR_CODE__FORBIDDEN &&
	    code != PARLEY__ERROR_CODE__NOT_FOUND)
		return false;
	Parley__Error e = PARLEY__ERROR__INIT;
	e.code = code;
	e.message = "subscription ended: catch-up refused";
	Parley__ServerFrame ef = PARLEY__SERVER_FRAME__INIT;
	ef.body_case = PARLEY__SERVER_FRAME__BODY_ERROR;
	ef.error = &e;
	PL_INFO(GW_MOD, "event=sub_ended conn=%llu room=%s code=%s",
	    (unsigned long long)s->conn->id, s->room_str, pl_code_name(code));
	(void)gw_conn_send(s->conn, &ef);
	sub_remove(g, s);
	return true;
}

static void subscribed_done(gw_req *r, Parley__ServerFrame *f, int code)
{
	on_subscribed(r->ctx, r, f, code);
	gw_req_free(r);
}

static void on_page(gw *g, gw_req *r, Parley__ServerFrame *f, int code)
{
	(void)code;
	pthread_mutex_lock(&g->subs_mu);
	gw_sub *s = conn_sub_by_id(r->conn, r->sub_id);
	if (s == NULL || page_refused(g, s, f)) {
		pthread_mutex_unlock(&g->subs_mu);
		return;
	}
	if (f == NULL || f->body_case != PARLEY__SERVER_FRAME__BODY_HISTORY) {
		act(g, s, gw_cursor_page_failed(&s->cur));
		pthread_mutex_unlock(&g->subs_mu);
		return;
	}
	const Parley__HistoryPage *p = f->history;
	for (size_t i = 0; i < p->n_messages; i++) {
		if (gw_cursor_page_msg(&s->cur, p->messages[i]->seq) ==
		    GW_CUR_DELIVER)
			deliver(g, s, p->messages[i]);
	}
	act(g, s, gw_cursor_page_end(&s->cur, p->more));
	pthread_mutex_unlock(&g->subs_mu);
}

static void page_done(gw_req *r, Parley__ServerFrame *f, int code)
{
	on_page(r->ctx, r, f, code);
	gw_req_free(r);
}

/* ---- live feed ---- */

/* The frame of one event, encoded once for all of a room's subscribers
 * into buf (grown as needed, owned by the caller). */
static size_t event_encode(Parley__Event *ev, uint8_t **buf, size_t *cap)
{
	Parley__ServerFrame sf = PARLEY__SERVER_FRAME__INIT;
	sf.body_case = PARLEY__SERVER_FRAME__BODY_EVENT;
	sf.event = ev;
	size_t n = PL_FRAME_HEADER_BYTES +
	           protobuf_c_message_get_packed_size(&sf.base);
	if (n > *cap) {
		uint8_t *p = realloc(*buf, n);
		if (p == NULL)
			return 0;
		*buf = p;
		*cap = n;
	}
	size_t w;
	return pl_frame_encode(&sf.base, *buf, n, &w) == PL_OK ? w : 0;
}

static void event_fanout(
    gw *g, gw_room *rm, Parley__Event *ev, uint8_t **buf, size_t *cap)
{
	size_t n = 0;
	bool msg = ev->ev_case == PARLEY__EVENT__EV_MESSAGE;
	int64_t now = pl_now_us();
	for (gw_sub *s = rm->subs; s != NULL; s = s->rnext) {
		gw_cursor_act a = GW_CUR_DELIVER;
		if (msg)
			a = gw_cursor_live(&s->cur, ev->message->seq);
		else if (!s->cur.subscribed)
			continue; /* Subscribed goes first */
		if (a != GW_CUR_DELIVER) {
			act(g, s, a);
			continue;
		}
		if (n == 0 && (n = event_encode(ev, buf, cap)) == 0) {
			pl_metric_inc(g->m.events_dropped[1], 1);
			return;
		}
		if (gw_conn_send_bytes(s->conn, *buf, n) == PL_OK && msg &&
		    ev->message->ts_us > 0)
			pl_hist_record(g->m.deliver->hist,
			    (uint64_t)(now - ev->message->ts_us));
	}
}

/* Called with l->feed_mu held, for a BrokerBatch with events. */
void gw_subs_events(gw *g, uint16_t group, Parley__Internal__BrokerBatch *b)
{
	uint8_t *buf = NULL;
	size_t cap = 0;
	pl_metric_inc(g->m.events_in, (int64_t)b->n_events);
	pthread_mutex_lock(&g->subs_mu);
	for (size_t i = 0; i < b->n_events; i++) {
		Parley__Event *ev = b->events[i];
		uint64_t room;
		if (ev->room == NULL ||
		    pl_room_parse(ev->room, &room) != PL_OK ||
		    (ev->ev_case == PARLEY__EVENT__EV_MESSAGE &&
		        ev->message == NULL)) {
			pl_metric_inc(g->m.events_dropped[0], 1);
			continue;
		}
		gw_room *rm = room_find(g, room);
		if (rm != NULL)
			event_fanout(g, rm, ev, &buf, &cap);
	}
	pthread_mutex_unlock(&g->subs_mu);
	free(buf);
	if (b->overflow) {
		PL_WARN(
		    GW_MOD, "event=feed_overflow group=%u", (unsigned)group);
		gw_subs_resync_group(g, group, false);
	}
}

/* Overflow: every subscription of the group catches up. Epoch change
 * (rewatch): the broker forgot the watches, so they are sent again
 * first. Overflow does not re-send them: the broker counts watching
 * connections, a second "on" would count one twice. */
void gw_subs_resync_group(gw *g, uint16_t group, bool rewatch)
{
	size_t n = 0;
	pthread_mutex_lock(&g->subs_mu);
	for (size_t i = 0; i < g->rooms_cap; i++) {
		for (gw_room *rm = g->rooms[i]; rm != NULL; rm = rm->hnext) {
			if (pl_room_group(rm->room) != group)
				continue;
			for (gw_sub *s = rm->subs; s != NULL; s = s->rnext) {
				if (rewatch && s->cur.subscribed)
					watch_send(g, s, true);
				act(g, s, gw_cursor_resync(&s->cur));
				n++;
			}
		}
	}
	pthread_mutex_unlock(&g->subs_mu);
	PL_INFO(GW_MOD, "event=resync group=%u rewatch=%d subs=%zu",
	    (unsigned)group, (int)rewatch, n);
}

void gw_subs_resume(gw_conn *c)
{
	gw *g = c->g;
	pthread_mutex_lock(&g->subs_mu);
	for (gw_sub *s = c->subs; s != NULL; s = s->cnext) {
		if (!s->retry)
			continue;
		s->retry = false;
		g->retry_n--;
		act(g, s, gw_cursor_retry(&s->cur));
	}
	pthread_mutex_unlock(&g->subs_mu);
}

/* Sweeper: re-issues catch-ups that failed or made no progress. */
void gw_subs_retry(gw *g)
{
	pthread_mutex_lock(&g->subs_mu);
	for (size_t i = 0; g->retry_n > 0 && i < g->rooms_cap; i++) {
		for (gw_room *rm = g->rooms[i]; rm != NULL; rm = rm->hnext) {
			for (gw_sub *s = rm->subs; s != NULL; s = s->rnext) {
				if (!s->retry)
					continue;
				s->retry = false;
				g->retry_n--;
				act(g, s, gw_cursor_retry(&s->cur));
			}
		}
	}
	pthread_mutex_unlock(&g->subs_mu);
}
