/*
 * group.c - the shard group driver: one thread owns this replica's store,
 * its Raft core, its watch table and every gateway's feed. nng callbacks
 * only hand received batches (gateways) and messages (peer brokers) over
 * bounded queues; the thread steps the core, writes what it says, sends,
 * applies and answers. The replication contract is docs/replication.md.
 *
 * Invariants:
 *  - a write is proposed to Raft on the leader and answered only when its
 *    entry is applied: a majority holds it durably (sync durability), so
 *    an ack is never sent for a write that a failover could lose;
 *  - one LMDB transaction per ready: its entries, its hard state and the
 *    entries it commits, applied in index order; term and vote are
 *    durable before any message of that ready leaves;
 *  - reads (history, subscribe, room info, presence, list, report) are
 *    answered by a leader that has applied an entry of its own term, from
 *    applied state only: nothing uncommitted is ever shown;
 *  - a request refused before entering the log says not_applied, so the
 *    gateway may send it anywhere again; one lost with the leadership does
 *    not (its outcome is unknown: only idempotent requests are resent);
 *  - replies and live events of applied entries (events only from the
 *    leader) leave in log order once the transaction that applied them
 *    committed: an acknowledged write is visible to every later read;
 *  - a ready whose write fails (map or disk full, I/O) is held and written
 *    again later; meanwhile no other Raft call is made, writes are refused
 *    with the failure and reads are still served.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <zstd.h>

#include "broker/broker.h"
#include "proto/splice.h"

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
/* Raft's logical clock: election and heartbeat are counted in ticks. */
#define RAFT_TICK_MS 10
/* Peer messages held at once (the nng peer socket's receive side). */
#define PEER_ITEMS_MAX 128
/* Writes proposed and not yet applied. */
#define PENDING_MAX 65536
/* Payload bytes per append message; a PeerBatch carries at most
 * RAFT_INFLIGHT_MAX of them per round, far below the frame ceiling. */
#define APPEND_BYTES_MAX (256 * 1024)
/* PeerBatches above this are zstd-compressed. */
#define PEER_COMPRESS_BYTES 4096
/* A failed ready write is tried again after this long. */
#define STALL_RETRY_US 100000
#define REPORT_DAYS_DEFAULT 7
#define POLL_WAIT_MS_MAX 30000

typedef struct gw_state gw_state;

struct brk_item {
	void *ctx; /* the nng context to answer on */
	nng_msg *msg;
	Parley__Internal__GwBatch *batch;
	Parley__ServerFrame **replies;
	size_t nreplies;
	gw_state *gw; /* valid during the round that takes the batch */
	char epoch[48];
	int64_t deadline_us; /* polls */
	brk_arena arena;     /* decoded request and replies */
	brk_item *next_free;
	/* Requests proposed and not yet applied, plus one while the batch
	 * is being handled: the batch is answered when it reaches 0. */
	uint32_t npending;
	uint8_t *deferred; /* per request: a read answered after the round */
	bool peer;         /* a peer broker's message, not a gateway batch */
	pl_arena peer_arena;
	uint8_t *peer_raw; /* decompressed PeerBatch */
};

/* A snapshot being sent to one peer / received from the leader. */
enum { SNAP_COPYING = 0, SNAP_READY = 1, SNAP_FAILED = -1 };
typedef struct snap_out {
	bool active, thread_on;
	uint64_t peer, xfer, term;
	char dir[600];
	int fd;
	uint64_t total, sent, acked;
	int64_t started_us, progress_us;
	_Atomic int state;
	pthread_t th;
	brk_group *g;
} snap_out;

typedef struct snap_in {
	bool active;
	uint64_t from, xfer, term, total, got;
	int fd;
	char dir[600];
} snap_in;

/* A write waiting for its entry to be applied. */
typedef struct pending {
	uint64_t index, term;
	brk_item *it;
	Parley__ServerFrame *rep;
	int op; /* the request's ClientFrame body case */
} pending;

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
	/* Raft. */
	raft *raft;
	raft_storage rs;
	brk_peers *peers;
	brk_auth auth;
	bool auth_on;
	bool leader;         /* as of the last look at the core */
	uint64_t lead_index; /* first entry of this leadership */
	uint64_t lead_id;
	uint64_t term;
	int64_t last_tick_us;
	pending *pend; /* ring */
	size_t pend_head, npend;
	/* Packed commands of proposals. The core borrows each payload from
	 * raft_propose until the ready that hands it out is advanced, so the
	 * arena is reset only when the core holds no unstable entry
	 * (asserted in drive), and nothing allocated in it before a drive
	 * may be used after that drive. */
	brk_arena prop_arena;
	brk_arena ev_arena;   /* events of applied entries until fanned out */
	round_event *evs;
	size_t nev;
	brk_applied *res; /* results of one ready's applied entries */
	uint64_t *res_term;
	brk_item pitems[PEER_ITEMS_MAX];
	brk_item *free_peer;
	brk_item *held[PEER_ITEMS_MAX]; /* stepped, released after advance */
	size_t nheld;
	bool stalled;
	bool damage_handled;
	bool gws_reset;  /* leadership changed: forget gateways next */
	bool stall_sent; /* the held ready's messages already left */
	brk_store_config sc;
	snap_out sout[RAFT_PEERS_MAX];
	snap_in sin;
	uint64_t xfer_ids;
	uint8_t *snap_buf;
	int64_t last_compact_us;
	raft_ready stall_rd;
	int64_t stall_retry_us;
	pl_status stall_err;
	uint8_t *peer_buf, *peer_zbuf;
	size_t peer_zbuf_cap;
	brk_arena send_arena;
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
	struct {
		pl_metric *batches, *requests, *publishes, *duplicates;
		pl_metric *rounds, *round_fail, *commit_s, *round_reqs;
		pl_metric *events, *events_dropped, *rooms, *map_used,
		    *map_size, *last_index, *gateways;
		pl_metric *snaps_sent, *snaps_installed, *peer_dropped;
		pl_metric *term, *is_leader, *commit, *applied, *elections,
		    *peer_in, *peer_out, *peer_bad, *proposals, *stalls;
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
	it->epoch[0] = '\0';
	it->npending = 0;
	it->deferred = NULL;
	brk_arena_reset(&it->arena);
	pthread_mutex_lock(&g->free_mu);
	if (it->peer) {
		pl_arena_fini(&it->peer_arena);
		free(it->peer_raw);
		it->peer_raw = NULL;
		it->next_free = g->free_peer;
		g->free_peer = it;
	} else {
		it->next_free = g->free_items;
		g->free_items = it;
	}
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

pl_status brk_group_submit_peer(brk_group *g, nng_msg *msg)
{
	pthread_mutex_lock(&g->free_mu);
	brk_item *it = g->free_peer;
	if (it != NULL)
		g->free_peer = it->next_free;
	pthread_mutex_unlock(&g->free_mu);
	if (it == NULL)
		return PL_E_BACKPRESSURE;
	it->msg = msg;
	pl_status st = pl_queue_push(&g->q, it);
	if (st != PL_OK) {
		it->msg = NULL;
		item_put(g, it);
	}
	return st;
}

/* The leader's gateway-facing address, "" when unknown or self. */
static const char *leader_hint(brk_group *g)
{
	if (g->lead_id == 0)
		return "";
	brk_replica *r = brk_config_replica(&g->cfg, g->lead_id, false);
	return r != NULL ? r->listen : "";
}

/* Packs a BrokerBatch with the item's replies and sends it; releases it. */
static void item_reply(brk_group *g, brk_item *it)
{
	Parley__Internal__BrokerBatch b;
	nng_msg *m;
	parley__internal__broker_batch__init(&b);
	b.replies = it->replies;
	b.n_replies = it->nreplies;
	/* The epoch is the item's copy: a batch waiting for its writes may
	 * outlive its gateway's state (forgotten after a leadership change
	 * or an idle spell). */
	b.epoch = it->epoch[0] != '\0' ? it->epoch : g->epoch;
	b.group = g->cfg.group;
	b.not_leader = !g->leader;
	b.leader_hint = (char *)leader_hint(g);
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

/* Appends one packed Event as BrokerBatch field 2 to gw's feed. */
static void feed_append(brk_group *g, gw_state *gw, const uint8_t *ev, size_t n)
{
	uint8_t hdr[PL_SPLICE_HEADER_BYTES_MAX];
	size_t h = pl_splice_event_header(hdr, n);
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
	uint8_t tail[PL_SPLICE_FEED_TAIL_BYTES(sizeof(gw->epoch))];
	size_t t = pl_splice_feed_tail(tail, gw->epoch, gw->overflow, g->cfg.group);
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

/* What a client is told for st: the cause and what to do, where the
 * status alone would only name a class. */
static const char *client_text(pl_status st)
{
	switch (st) {
	case PL_E_NOT_FOUND:
		return "room not found (no such room of the token's tenant)";
	case PL_E_FORBIDDEN:
		return "forbidden: the token's role or room scope does not "
		       "allow this";
	case PL_E_ROOM_CLOSED:
		return "room closed: it takes no more writes";
	case PL_E_NOT_LEADER:
		return "this replica does not lead the room's shard group";
	case PL_E_MAP_FULL:
		return "storage map full (map_size_mb): writes refused, reads "
		       "go on";
	case PL_E_DISK_FULL:
		return "disk full: writes refused, reads go on";
	case PL_E_BACKPRESSURE:
		return "shard group queue full, retry";
	default:
		return pl_strerror(st);
	}
}

/* An error reply built in a. not_applied: the request never entered
 * the log, so sending it again cannot repeat it. */
static void rep_fail(brk_arena *a, Parley__ServerFrame *rep, pl_status st,
    bool not_applied, const char *hint)
{
	Parley__Error *e = brk_arena_alloc(a, sizeof(*e));
	if (e == NULL)
		return; /* the empty reply still carries the id */
	parley__error__init(e);
	e->code = pl_status_to_code(st);
	e->message = (char *)client_text(st);
	e->not_applied = not_applied;
	e->leader_hint = (char *)(hint != NULL ? hint : "");
	rep->body_case = PARLEY__SERVER_FRAME__BODY_ERROR;
	rep->error = e;
}

static void rep_error(round *rd, Parley__ServerFrame *rep, pl_status st)
{
	rep_fail(rd->a, rep, st, true, NULL); /* reads change nothing */
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

/* Loads a room and checks that c may make request op on it. */
static pl_status room_allowed(round *rd, const Parley__Internal__Caller *c,
    uint64_t room, int op, brk_room **r)
{
	pl_status st = brk_room_get(rd->w, room, r);
	if (st == PL_OK)
		st = brk_access(*r, c, op);
	return st;
}

static pl_status h_subscribe(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, uint64_t room,
    Parley__ServerFrame *rep)
{
	brk_room *r;
	pl_status st = room_allowed(
	    rd, rq->caller, room, PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE, &r);
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
	pl_status st =
	    room_allowed(rd, c, room, PARLEY__CLIENT_FRAME__BODY_HISTORY, &r);
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
	pl_status st =
	    room_allowed(rd, c, room, PARLEY__CLIENT_FRAME__BODY_TYPING, &r);
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

static pl_status h_presence(round *rd, const Parley__Internal__Caller *c,
    uint64_t room, Parley__ServerFrame *rep)
{
	brk_room *r;
	pl_status st =
	    room_allowed(rd, c, room, PARLEY__CLIENT_FRAME__BODY_PRESENCE, &r);
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
	pl_status st =
	    room_allowed(rd, c, room, PARLEY__CLIENT_FRAME__BODY_ROOM_INFO, &r);
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

/* A room-scoped token's list: its room, when it is in this group, after
 * `after` and visible to it. */
static pl_status list_scoped(round *rd, const Parley__Internal__Caller *c,
    uint64_t after, Parley__RoomList *rl)
{
	uint64_t room;
	brk_room *r;
	parley__room_list__init(rl);
	rl->rooms = ralloc(rd, sizeof(char *));
	if (rl->rooms == NULL)
		return PL_E_NOMEM;
	if (pl_room_parse(c->room_scope, &room) != PL_OK ||
	    pl_room_group(room) != rd->g->cfg.group || room <= after ||
	    room_allowed(rd, c, room, PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS,
	        &r) != PL_OK)
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
static pl_status h_list(round *rd, const Parley__Internal__Caller *c,
    const Parley__ListRooms *l, Parley__ServerFrame *rep)
{
	uint64_t after = 0;
	if (l->after != NULL && l->after[0] != '\0' &&
	    pl_room_parse(l->after, &after) != PL_OK)
		return PL_E_BAD_REQUEST;
	pl_status st =
	    brk_access(NULL, c, PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS);
	if (st != PL_OK)
		return st;
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
static pl_status h_report(round *rd, const Parley__Internal__Caller *c,
    const Parley__ReportRequest *rq, Parley__ServerFrame *rep)
{
	pl_status ast = brk_access(NULL, c, PARLEY__CLIENT_FRAME__BODY_REPORT);
	if (ast != PL_OK)
		return ast;
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
	raft_status st;
	raft_status_get(g->raft, &st);
	gs->role = (char *)raft_role_name(st.role);
	gs->node_id = g->cfg.node;
	gs->term = st.term;
	gs->commit = st.commit;
	gs->applied = brk_store_applied(g->store);
	gs->leader_id = st.lead;
	gs->voters = st.conf.n_voters;
	gs->repairing = st.repairing;
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
	switch (f->body_case) {
	case PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE:
		return h_subscribe(rd, it, rq, room, rep);
	case PARLEY__CLIENT_FRAME__BODY_UNSUBSCRIBE:
		/* No room load: it only undoes the caller's own watch. */
		if (brk_access_right(c, f->body_case) == BRK_RIGHT_NONE)
			return PL_E_FORBIDDEN;
		watch_defer(rd, it->gw, room, c, false);
		rep_ok(rd, rep);
		return PL_OK;
	case PARLEY__CLIENT_FRAME__BODY_HISTORY:
		return h_history(rd, c, room, f->history, rep);
	case PARLEY__CLIENT_FRAME__BODY_TYPING:
		return h_typing(rd, c, room, f->typing, rep);
	case PARLEY__CLIENT_FRAME__BODY_PRESENCE:
		return h_presence(rd, c, room, rep);
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
/* Raft driving */

static bool is_write(const Parley__ClientFrame *f)
{
	switch (f->body_case) {
	case PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM:
	case PARLEY__CLIENT_FRAME__BODY_JOIN:
	case PARLEY__CLIENT_FRAME__BODY_LEAVE:
	case PARLEY__CLIENT_FRAME__BODY_PUBLISH:
	case PARLEY__CLIENT_FRAME__BODY_READ:
	case PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM:
		return true;
	default:
		return false;
	}
}

/* A leader may serve reads once it has applied an entry of its term:
 * then its applied state holds every entry committed before it led. The
 * check-quorum lease (a leader that loses its majority steps down within
 * an election timeout) keeps a deposed leader from serving for longer. */
static bool reads_ready(brk_group *g)
{
	return g->leader && brk_store_applied(g->store) >= g->lead_index;
}

static void item_done(brk_group *g, brk_item *it)
{
	PL_ASSERT(it->npending > 0);
	if (--it->npending == 0)
		item_reply(g, it);
}

static void pend_push(brk_group *g, uint64_t index, uint64_t term, brk_item *it,
    Parley__ServerFrame *rep, int op)
{
	pending *p = &g->pend[(g->pend_head + g->npend) % PENDING_MAX];
	g->npend++;
	p->index = index;
	p->term = term;
	p->it = it;
	p->rep = rep;
	p->op = op;
	it->npending++;
}

static pending *pend_pop(brk_group *g)
{
	pending *p = &g->pend[g->pend_head];
	g->pend_head = (g->pend_head + 1) % PENDING_MAX;
	g->npend--;
	return p;
}

/* Every write in flight fails: leadership lost (outcome unknown). */
static void pend_fail_all(brk_group *g, pl_status st)
{
	while (g->npend > 0) {
		pending *p = pend_pop(g);
		rep_fail(&p->it->arena, p->rep, st, false, leader_hint(g));
		item_done(g, p->it);
	}
}

/* The reply of an applied write. */
static void rep_applied(
    brk_arena *a, Parley__ServerFrame *rep, const brk_applied *res, int op)
{
	if (res->st != PL_OK) {
		rep_fail(a, rep, res->st, false, NULL);
		return;
	}
	char *id = brk_arena_alloc(a, PL_ROOM_ID_CHARS + 1);
	if (id == NULL)
		return;
	pl_room_format(res->room, id);
	if (op == PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM) {
		Parley__RoomCreated *rc = brk_arena_alloc(a, sizeof(*rc));
		if (rc == NULL)
			return;
		parley__room_created__init(rc);
		rc->room = id;
		rc->existed = res->existed;
		rep->body_case = PARLEY__SERVER_FRAME__BODY_ROOM_CREATED;
		rep->room_created = rc;
	} else if (op == PARLEY__CLIENT_FRAME__BODY_PUBLISH) {
		Parley__Ack *ack = brk_arena_alloc(a, sizeof(*ack));
		if (ack == NULL)
			return;
		parley__ack__init(ack);
		ack->room = id;
		ack->seq = res->seq;
		ack->ts_us = res->ts_us;
		ack->duplicate = res->duplicate;
		rep->body_case = PARLEY__SERVER_FRAME__BODY_ACK;
		rep->ack = ack;
	} else {
		Parley__Ok *ok = brk_arena_alloc(a, sizeof(*ok));
		if (ok == NULL)
			return;
		parley__ok__init(ok);
		rep->body_case = PARLEY__SERVER_FRAME__BODY_OK;
		rep->ok = ok;
	}
}

/* ---- events of applied entries (leader) ---- */

static Parley__Event *ev_new(brk_group *g, uint64_t room)
{
	if (g->nev == (size_t)ROUND_ITEMS_MAX * GW_BATCH_REQS_MAX)
		return NULL;
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
static void ev_applied(brk_group *g, const brk_applied *res)
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

/* ---- peers: PeerBatch encoding, sealing, receiving ---- */

static Parley__Internal__RaftMsg *msg_to_pb(brk_arena *a, const raft_msg *m)
{
	Parley__Internal__RaftMsg *pm = brk_arena_alloc(a, sizeof(*pm));
	if (pm == NULL)
		return NULL;
	parley__internal__raft_msg__init(pm);
	pm->type = m->type;
	pm->reject = m->reject;
	pm->force = m->force;
	pm->from = m->from;
	pm->to = m->to;
	pm->term = m->term;
	pm->index = m->index;
	pm->log_term = m->log_term;
	pm->commit = m->commit;
	pm->hint = m->hint;
	if (m->n_ents == 0)
		return pm;
	Parley__Internal__RaftEntry *e =
	    brk_arena_alloc(a, m->n_ents * sizeof(*e));
	pm->ents = brk_arena_alloc(a, m->n_ents * sizeof(*pm->ents));
	if (e == NULL || pm->ents == NULL)
		return NULL;
	for (size_t i = 0; i < m->n_ents; i++) {
		parley__internal__raft_entry__init(&e[i]);
		e[i].term = m->ents[i].term;
		e[i].index = m->ents[i].index;
		e[i].type = m->ents[i].type;
		e[i].data.data = (uint8_t *)m->ents[i].data;
		e[i].data.len = m->ents[i].len;
		pm->ents[i] = &e[i];
	}
	pm->n_ents = m->n_ents;
	return pm;
}

static void peer_send(
    brk_group *g, uint64_t to, Parley__Internal__PeerBatch *bp);

static void peer_send_batch(
    brk_group *g, uint64_t to, Parley__Internal__RaftMsg **msgs, size_t n)
{
	Parley__Internal__PeerBatch b;
	parley__internal__peer_batch__init(&b);
	b.msgs = msgs;
	b.n_msgs = n;
	peer_send(g, to, &b);
}

/* Packs, maybe compresses, seals and sends one PeerBatch to `to`. */
static void peer_send(
    brk_group *g, uint64_t to, Parley__Internal__PeerBatch *bp)
{
	Parley__Internal__PeerBatch b = *bp;
	b.group = g->cfg.group;
	size_t len = parley__internal__peer_batch__get_packed_size(&b);
	if (len + 5 + BRK_AUTH_OVERHEAD > PL_FRAME_BYTES_CEIL) {
		PL_ERROR("group", "event=peer_batch_too_large bytes=%zu", len);
		return;
	}
	uint8_t *p = g->peer_buf;
	size_t plen;
	p[0] = 0;
	parley__internal__peer_batch__pack(&b, p + 1);
	plen = len + 1;
	if (len >= PEER_COMPRESS_BYTES) {
		/* Appends of chat text compress well; small control
		 * messages are not worth it. */
		size_t z = ZSTD_compressCCtx(g->zc, g->peer_zbuf + 5,
		    g->peer_zbuf_cap - 5, p + 1, len, 1);
		if (!ZSTD_isError(z) && z + 5 < plen) {
			g->peer_zbuf[0] = 1;
			g->peer_zbuf[1] = (uint8_t)(len >> 24);
			g->peer_zbuf[2] = (uint8_t)(len >> 16);
			g->peer_zbuf[3] = (uint8_t)(len >> 8);
			g->peer_zbuf[4] = (uint8_t)len;
			p = g->peer_zbuf;
			plen = z + 5;
		}
	}
	nng_msg *m;
	size_t sealed;
	if (nng_msg_alloc(&m, plen + BRK_AUTH_OVERHEAD) != 0)
		return;
	if (brk_auth_seal(&g->auth, p, plen, nng_msg_body(m),
	        plen + BRK_AUTH_OVERHEAD, &sealed) != PL_OK) {
		nng_msg_free(m);
		return;
	}
	pl_metric_inc(g->m.peer_out, 1);
	brk_peers_send(g->peers, to, m);
}

/* Sends a ready's messages: one PeerBatch per peer, in the core's order.
 * Snapshot requests are returned in snap[] (never expected: the log is
 * not compacted, so no follower is ever behind its first index). */
static size_t send_msgs(brk_group *g, const raft_ready *rd, uint64_t *snap)
{
	size_t nsnap = 0;
	if (g->peers == NULL || rd->n_msgs == 0)
		return 0;
	uint64_t done[RAFT_PEERS_MAX];
	size_t ndone = 0;
	Parley__Internal__RaftMsg **batch =
	    brk_arena_alloc(&g->send_arena, rd->n_msgs * sizeof(*batch));
	if (batch == NULL)
		return 0;
	for (size_t i = 0; i < rd->n_msgs; i++) {
		uint64_t to = rd->msgs[i].to;
		if (rd->msgs[i].type == RAFT_MSG_SNAP) {
			if (nsnap < RAFT_PEERS_MAX)
				snap[nsnap++] = to;
			continue;
		}
		bool seen = false;
		for (size_t k = 0; k < ndone && !seen; k++)
			seen = done[k] == to;
		if (seen || ndone == RAFT_PEERS_MAX)
			continue;
		done[ndone++] = to;
		size_t n = 0;
		for (size_t j = i; j < rd->n_msgs; j++) {
			const raft_msg *m = &rd->msgs[j];
			if (m->to != to || m->type == RAFT_MSG_SNAP)
				continue;
			Parley__Internal__RaftMsg *pm =
			    msg_to_pb(&g->send_arena, m);
			if (pm != NULL)
				batch[n++] = pm;
		}
		peer_send_batch(g, to, batch, n);
	}
	brk_arena_reset(&g->send_arena);
	return nsnap;
}

static void snap_on_chunk(
    brk_group *g, uint64_t from, const Parley__Internal__SnapChunk *c);
static void snap_on_ack(
    brk_group *g, uint64_t from, const Parley__Internal__SnapAck *a);

/* Opens, checks and steps one received PeerBatch. Anything wrong with it
 * (bad MAC, replay, wrong group, a sender claiming another's id, bytes
 * that do not decode) drops it whole: Raft resends what matters. */
static void peer_receive(brk_group *g, brk_item *it)
{
	uint64_t sender;
	const uint8_t *p;
	size_t n;
	if (!g->auth_on ||
	    brk_auth_open(&g->auth, nng_msg_body(it->msg), nng_msg_len(it->msg),
	        &sender, &p, &n) != PL_OK ||
	    n < 1 || (sender >> 16) != g->cfg.group) {
		pl_metric_inc(g->m.peer_bad, 1);
		return;
	}
	if (p[0] == 1) {
		if (n < 5)
			goto bad;
		size_t raw = (size_t)p[1] << 24 | (size_t)p[2] << 16 |
		             (size_t)p[3] << 8 | p[4];
		if (raw > PL_FRAME_BYTES_CEIL ||
		    (it->peer_raw = malloc(raw ? raw : 1)) == NULL)
			goto bad;
		size_t got =
		    ZSTD_decompressDCtx(g->zd, it->peer_raw, raw, p + 5, n - 5);
		if (ZSTD_isError(got) || got != raw)
			goto bad;
		p = it->peer_raw;
		n = raw;
	} else if (p[0] == 0) {
		p++;
		n--;
	} else {
		goto bad;
	}
	Parley__Internal__PeerBatch *b;
	if (pl_arena_init(&it->peer_arena, NULL, PL_ARENA_BYTES_FOR(n)) !=
	        PL_OK ||
	    pl_peer_batch_decode(p, n, &it->peer_arena, &b) != PL_OK ||
	    b->group != g->cfg.group)
		goto bad;
	pl_metric_inc(g->m.peer_in, 1);
	for (size_t i = 0; i < b->n_msgs; i++) {
		const Parley__Internal__RaftMsg *pm = b->msgs[i];
		if (pm->from != (sender & 0xffff) || pm->to != g->cfg.node ||
		    pm->n_ents > RAFT_MSG_ENTRIES_MAX)
			goto bad;
		raft_entry *ents = NULL;
		if (pm->n_ents > 0) {
			ents = brk_arena_alloc(
			    &it->arena, pm->n_ents * sizeof(*ents));
			if (ents == NULL)
				goto bad;
		}
		for (size_t j = 0; j < pm->n_ents; j++) {
			const Parley__Internal__RaftEntry *e = pm->ents[j];
			ents[j] = (raft_entry){.term = e->term,
			    .index = e->index,
			    .type = (uint8_t)e->type,
			    .data = e->data.data,
			    .len = e->data.len};
		}
		raft_msg m = {.type = (uint8_t)pm->type,
		    .reject = pm->reject,
		    .force = pm->force,
		    .from = pm->from,
		    .to = pm->to,
		    .term = pm->term,
		    .index = pm->index,
		    .log_term = pm->log_term,
		    .commit = pm->commit,
		    .hint = pm->hint,
		    .ents = ents,
		    .n_ents = pm->n_ents};
		if (raft_step(g->raft, &m) != PL_OK)
			PL_DEBUG("group",
			    "event=peer_msg_refused type=%s from=%llu "
			    "term=%llu",
			    raft_msg_type_name(m.type),
			    (unsigned long long)m.from,
			    (unsigned long long)m.term);
	}
	for (size_t i = 0; i < b->n_chunks; i++)
		snap_on_chunk(g, sender & 0xffff, b->chunks[i]);
	for (size_t i = 0; i < b->n_acks; i++)
		snap_on_ack(g, sender & 0xffff, b->acks[i]);
	return;
bad:
	pl_metric_inc(g->m.peer_bad, 1);
}

/* ---- snapshots: a far-behind follower gets a copy of the environment ---- */

/* Chunks in flight, unacknowledged (each at most snapshot_chunk_bytes,
 * 1 MiB by default). */
#define SNAP_WINDOW_CHUNKS 4
/* No acknowledged progress for this long: send again from the last ack;
 * for SNAP_GIVEUP_US: give up (Raft asks again later). */
#define SNAP_RESEND_US 2000000
#define SNAP_GIVEUP_US 120000000

static void *snap_copy_main(void *arg)
{
	snap_out *o = arg;
	pl_status st = brk_store_copy(o->g->store, o->dir);
	atomic_store(&o->state, st == PL_OK ? SNAP_READY : SNAP_FAILED);
	return NULL;
}

static void rm_dir(const char *dir)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
}

static void snap_out_end(brk_group *g, snap_out *o, bool ok, bool tell)
{
	if (o->thread_on)
		pthread_join(o->th, NULL);
	o->thread_on = false;
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	rm_dir(o->dir);
	if (tell && g->leader)
		raft_snapshot_done(g->raft, o->peer, ok);
	if (ok)
		pl_metric_inc(g->m.snaps_sent, 1);
	PL_INFO("group", "event=snapshot_%s peer=%llu bytes=%llu",
	    ok ? "sent" : "abandoned", (unsigned long long)o->peer,
	    (unsigned long long)o->total);
	o->active = false;
}

/* Raft asks for a snapshot to peer: copy the environment (in a thread,
 * the group goes on), then stream it. */
static void snap_out_start(brk_group *g, uint64_t peer)
{
	snap_out *o = NULL;
	for (int i = 0; i < RAFT_PEERS_MAX; i++) {
		if (g->sout[i].active && g->sout[i].peer == peer)
			return; /* already under way */
		if (!g->sout[i].active && o == NULL)
			o = &g->sout[i];
	}
	if (o == NULL)
		return;
	memset(o, 0, sizeof(*o));
	o->g = g;
	o->fd = -1;
	o->peer = peer;
	o->xfer = ++g->xfer_ids;
	o->term = g->term;
	o->started_us = o->progress_us = pl_mono_us();
	snprintf(o->dir, sizeof(o->dir), "%s.snap-out-%llu", g->cfg.data_dir,
	    (unsigned long long)peer);
	rm_dir(o->dir);
	atomic_store(&o->state, SNAP_COPYING);
	o->active = true;
	if (pthread_create(&o->th, NULL, snap_copy_main, o) != 0) {
		o->active = false;
		raft_snapshot_done(g->raft, peer, false);
		return;
	}
	o->thread_on = true;
	PL_INFO("group", "event=snapshot_start peer=%llu xfer=%llu",
	    (unsigned long long)peer, (unsigned long long)o->xfer);
}

/* Sends what the window allows of every transfer whose copy is ready. */
static void snap_pump(brk_group *g)
{
	int64_t now = pl_mono_us();
	for (int i = 0; i < RAFT_PEERS_MAX; i++) {
		snap_out *o = &g->sout[i];
		if (!o->active)
			continue;
		if (!g->leader || o->term != g->term) {
			snap_out_end(g, o, false, false);
			continue;
		}
		int state = atomic_load(&o->state);
		if (state == SNAP_COPYING)
			continue;
		if (state == SNAP_FAILED ||
		    now - o->started_us > SNAP_GIVEUP_US) {
			snap_out_end(g, o, false, true);
			continue;
		}
		if (o->fd < 0) {
			char path[700];
			struct stat sb;
			snprintf(path, sizeof(path), "%s/data.mdb", o->dir);
			o->fd = open(path, O_RDONLY);
			if (o->fd < 0 || fstat(o->fd, &sb) != 0) {
				snap_out_end(g, o, false, true);
				continue;
			}
			o->total = (uint64_t)sb.st_size;
			PL_INFO("group",
			    "event=snapshot_copied peer=%llu bytes=%llu",
			    (unsigned long long)o->peer,
			    (unsigned long long)o->total);
		}
		if (now - o->progress_us > SNAP_RESEND_US) {
			o->sent = o->acked; /* go back to what arrived */
			o->progress_us = now;
		}
		uint64_t chunk = g->cfg.snapshot_chunk_bytes;
		while (o->sent < o->total &&
		       o->sent - o->acked < SNAP_WINDOW_CHUNKS * chunk) {
			size_t n = o->total - o->sent < chunk
			               ? (size_t)(o->total - o->sent)
			               : (size_t)chunk;
			ssize_t got =
			    pread(o->fd, g->snap_buf, n, (off_t)o->sent);
			if (got != (ssize_t)n) {
				snap_out_end(g, o, false, true);
				break;
			}
			Parley__Internal__SnapChunk c, *cp = &c;
			Parley__Internal__PeerBatch b;
			parley__internal__snap_chunk__init(&c);
			parley__internal__peer_batch__init(&b);
			c.xfer = o->xfer;
			c.term = o->term;
			c.offset = o->sent;
			c.total = o->total;
			c.data.data = g->snap_buf;
			c.data.len = n;
			b.chunks = &cp;
			b.n_chunks = 1;
			peer_send(g, o->peer, &b);
			o->sent += n;
		}
	}
}

static void snap_on_ack(
    brk_group *g, uint64_t from, const Parley__Internal__SnapAck *a)
{
	for (int i = 0; i < RAFT_PEERS_MAX; i++) {
		snap_out *o = &g->sout[i];
		if (!o->active || o->peer != from || o->xfer != a->xfer)
			continue;
		if (a->offset > o->acked && a->offset <= o->total) {
			o->acked = a->offset;
			o->progress_us = pl_mono_us();
		}
		if (a->done)
			snap_out_end(g, o, true, true);
		return;
	}
}

static void snap_ack(
    brk_group *g, uint64_t to, uint64_t xfer, uint64_t offset, bool done)
{
	Parley__Internal__SnapAck a, *ap = &a;
	Parley__Internal__PeerBatch b;
	parley__internal__snap_ack__init(&a);
	parley__internal__peer_batch__init(&b);
	a.xfer = xfer;
	a.offset = offset;
	a.done = done;
	b.acks = &ap;
	b.n_acks = 1;
	peer_send(g, to, &b);
}

/* Swaps the received copy in for this replica's store and tells the
 * core. The copy is opened first to check it is newer than what this
 * replica has committed; the old environment is kept until the new one
 * is open. */
static pl_status snap_install(brk_group *g, snap_in *in)
{
	char path[700], cur[700], old[700], lock[700];
	raft_status rs;
	raft_status_get(g->raft, &rs);
	brk_store_config sc = g->sc;
	sc.dir = in->dir;
	brk_store *probe;
	pl_status st = brk_store_open(&sc, &probe);
	if (st != PL_OK)
		return st;
	uint64_t a = brk_store_applied(probe);
	brk_store_close(probe);
	if (a <= rs.commit)
		return PL_E_AGAIN; /* nothing new in it */
	raft_hard_state hs;
	uint64_t applied;
	brk_store_raft(g->store, &hs, &applied);
	snprintf(path, sizeof(path), "%s/data.mdb", in->dir);
	snprintf(cur, sizeof(cur), "%s/data.mdb", g->cfg.data_dir);
	snprintf(old, sizeof(old), "%s/data.mdb.old", g->cfg.data_dir);
	snprintf(lock, sizeof(lock), "%s/lock.mdb", g->cfg.data_dir);
	brk_store_close(g->store);
	g->store = NULL;
	unlink(lock);
	if (rename(cur, old) != 0 || rename(path, cur) != 0) {
		rename(old, cur);
		st = PL_E_IO;
	}
	if (st == PL_OK && (st = brk_store_open(&g->sc, &g->store)) != PL_OK) {
		unlink(lock);
		rename(old, cur);
	}
	if (g->store == NULL) {
		pl_status st2 = brk_store_open(&g->sc, &g->store);
		if (st2 != PL_OK) {
			PL_ERROR("group", "event=store_lost err=\"%s\"",
			    pl_strerror(st2));
			abort(); /* no store to run on: restart from disk */
		}
		return st;
	}
	uint64_t index, term;
	st = brk_store_snapshot_adopt(g->store, &hs, &index, &term);
	if (st == PL_OK) {
		raft_conf conf;
		memset(&conf, 0, sizeof(conf));
		for (int i = 0; i < g->cfg.nreplicas; i++)
			conf.voters[conf.n_voters++] = g->cfg.replicas[i].id;
		st = raft_snapshot_restore(
		    g->raft, in->from, in->term, index, term, &conf);
	}
	brk_log_release(g->store);
	if (st == PL_OK) {
		unlink(old);
		pl_metric_inc(g->m.snaps_installed, 1);
		PL_INFO("group",
		    "event=snapshot_installed index=%llu term=%llu",
		    (unsigned long long)index, (unsigned long long)term);
	} else {
		PL_ERROR("group", "event=snapshot_install_failed err=\"%s\"",
		    pl_strerror(st));
	}
	return st;
}

/* A chunk from the leader: written in order, acknowledged with what is
 * held; the last one installs the snapshot. */
static void snap_on_chunk(
    brk_group *g, uint64_t from, const Parley__Internal__SnapChunk *c)
{
	snap_in *in = &g->sin;
	if (g->leader || c->total == 0 || c->total > g->cfg.map_bytes ||
	    c->offset + c->data.len > c->total)
		return;
	if (!in->active || in->xfer != c->xfer || in->from != from) {
		if (c->offset != 0)
			return; /* a stale stream: its sender starts over */
		if (in->fd >= 0)
			close(in->fd);
		memset(in, 0, sizeof(*in));
		snprintf(
		    in->dir, sizeof(in->dir), "%s.snap-in", g->cfg.data_dir);
		rm_dir(in->dir);
		char path[700];
		snprintf(path, sizeof(path), "%s/data.mdb", in->dir);
		if (mkdir(in->dir, 0700) != 0 ||
		    (in->fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600)) <
		        0) {
			in->fd = -1;
			return;
		}
		in->active = true;
		in->xfer = c->xfer;
		in->from = from;
		in->term = c->term;
		in->total = c->total;
		PL_INFO("group",
		    "event=snapshot_receiving from=%llu bytes=%llu",
		    (unsigned long long)from, (unsigned long long)c->total);
	}
	if (c->offset == in->got && c->data.len > 0) {
		if (pwrite(in->fd, c->data.data, c->data.len,
		        (off_t)c->offset) != (ssize_t)c->data.len) {
			in->active = false;
			return;
		}
		in->got += c->data.len;
	}
	bool done = false;
	if (in->got == in->total) {
		bool synced = fsync(in->fd) == 0;
		close(in->fd);
		in->fd = -1;
		in->active = false;
		pl_status st = synced ? snap_install(g, in) : PL_E_IO;
		rm_dir(in->dir);
		done = st == PL_OK || st == PL_E_AGAIN;
	}
	snap_ack(g, from, in->xfer, in->got, done);
}

/* ---- readies ---- */

static pl_status apply_one(
    brk_group *g, brk_wtxn *w, const raft_entry *e, size_t *n)
{
	brk_applied *res = &g->res[*n];
	pl_status st = brk_apply(w, e, g->leader ? &g->ev_arena : NULL, res);
	if (st != PL_OK) {
		PL_ERROR("group",
		    "event=apply_failed index=%llu applied=%llu err=\"%s\"",
		    (unsigned long long)e->index,
		    (unsigned long long)brk_wtxn_applied(w), pl_strerror(st));
		return st;
	}
	if (g->leader)
		ev_applied(g, res);
	res->cmd = NULL; /* not valid past this entry */
	res->msg = NULL;
	g->res_term[(*n)++] = e->term;
	return PL_OK;
}

/* Writes a ready in one transaction: hard state, entries, and the
 * entries it commits applied in order. *nres results are kept for the
 * replies sent once it committed. */
static pl_status ready_write(brk_group *g, const raft_ready *rd, size_t *nres)
{
	brk_wtxn *w;
	pl_status st = brk_wtxn_begin(g->store, true, &w);
	if (st != PL_OK)
		return st;
	brk_hs_put(w, &rd->hs);
	raft_repair stored;
	brk_store_repair(g->store, &stored);
	if (stored.to != 0) {
		raft_status rs;
		raft_status_get(g->raft, &rs);
		if (!rs.repairing) {
			raft_repair none = {0, 0};
			brk_repair_put(w, &none);
			PL_INFO("group", "event=log_repaired");
		}
	}
	if (rd->n_ents > 0 &&
	    (st = brk_log_append(w, rd->entries, rd->n_ents)) != PL_OK)
		PL_ERROR("group",
		    "event=append_failed first=%llu n=%zu err=\"%s\"",
		    (unsigned long long)rd->entries[0].index, rd->n_ents,
		    pl_strerror(st));
	size_t n = 0;
	for (size_t i = 0; i < rd->n_committed && st == PL_OK; i++) {
		/* Applied already: a group of one applies as it appends. */
		if (rd->committed[i].index <= brk_wtxn_applied(w))
			continue;
		st = apply_one(g, w, &rd->committed[i], &n);
	}
	/* A group of one commits an entry as soon as it is durable on its
	 * only voter, which is this transaction: applying its new entries
	 * here saves a second transaction and fsync per round. Only in
	 * order (everything before them applied) and only while leading. */
	if (st == PL_OK && g->cfg.nreplicas == 1 && g->leader &&
	    rd->n_ents > 0 && rd->entries[0].index == brk_wtxn_applied(w) + 1) {
		for (size_t i = 0; i < rd->n_ents && st == PL_OK; i++)
			st = apply_one(g, w, &rd->entries[i], &n);
		/* Durable with this transaction, so committed: the stored
		 * commit must not lag what is applied. */
		raft_hard_state hs = rd->hs;
		hs.commit = brk_wtxn_applied(w);
		brk_hs_put(w, &hs);
	}
	if (st != PL_OK) {
		brk_wtxn_abort(w);
		return st;
	}
	/* Every write transaction is synced, applies included: LMDB without
	 * a sync can be damaged by a power loss on a filesystem that reorders
	 * writes. Under load a ready carries both new entries and commits,
	 * so this costs a sync only when idle. */
	st = brk_wtxn_commit(w);
	*nres = n;
	return st;
}

static void results_complete(brk_group *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const brk_applied *res = &g->res[i];
		while (
		    g->npend > 0 && g->pend[g->pend_head].index <= res->index) {
			pending *p = pend_pop(g);
			if (p->index == res->index && p->term == g->res_term[i])
				rep_applied(&p->it->arena, p->rep, res, p->op);
			else /* overwritten by another leader's entry */
				rep_fail(&p->it->arena, p->rep,
				    PL_E_UNAVAILABLE, false, leader_hint(g));
			item_done(g, p->it);
		}
	}
}

static void events_flush(brk_group *g, bool send)
{
	for (size_t i = 0; send && i < g->nev; i++)
		fanout(g, g->evs[i].room, g->evs[i].ev);
	g->nev = 0;
	brk_arena_reset(&g->ev_arena);
}

/* Handles one ready as raft.h prescribes; false when its write failed
 * (the ready is then held, see the invariants at the top). */
static bool ready_handle(brk_group *g, const raft_ready *rd)
{
	size_t nres = 0;
	int64_t t0 = pl_mono_us();
	PL_DEBUG("group",
	    "event=ready term=%llu commit=%llu entries=%zu committed=%zu "
	    "msgs=%zu",
	    (unsigned long long)rd->hs.term, (unsigned long long)rd->hs.commit,
	    rd->n_ents, rd->n_committed, rd->n_msgs);
	bool write = rd->hs_sync || rd->n_ents > 0 || rd->n_committed > 0;
	/* Messages may leave before this replica's own write when they do
	 * not depend on it: the term and vote are unchanged, and the core
	 * acknowledges only entries reported durable (raft_persisted). So a
	 * leader's appends reach the followers while it syncs its own copy:
	 * the two fsyncs overlap instead of adding up. A held ready (retried
	 * after a failed write) has sent its messages already. */
	uint64_t snap[RAFT_PEERS_MAX];
	size_t nsnap = 0;
	bool early = !rd->hs_sync && !g->stalled;
	if (early)
		nsnap = send_msgs(g, rd, snap);
	if (write) {
		pl_status st = ready_write(g, rd, &nres);
		if (st != PL_OK) {
			events_flush(g, false);
			if (!g->stalled)
				PL_ERROR("group",
				    "event=ready_write_failed err=\"%s\" "
				    "entries=%zu committed=%zu",
				    pl_strerror(st), rd->n_ents,
				    rd->n_committed);
			pl_metric_inc(g->m.round_fail, 1);
			if (!g->stalled)
				g->stall_sent = early;
			g->stalled = true;
			g->stall_err = st;
			g->stall_rd = *rd;
			g->stall_retry_us = pl_mono_us() + STALL_RETRY_US;
			pend_fail_all(g, st);
			return false;
		}
		pl_hist_record(
		    g->m.commit_s->hist, (uint64_t)(pl_mono_us() - t0));
		if (rd->n_ents > 0 || rd->hs_sync)
			pl_metric_inc(g->m.rounds, 1);
	}
	bool was_stalled = g->stalled && g->stall_sent;
	if (g->stalled)
		PL_INFO("group", "event=ready_write_recovered");
	g->stalled = false;
	if (!early && !was_stalled)
		nsnap = send_msgs(g, rd, snap);
	bool persisted = rd->n_ents > 0;
	uint64_t last = persisted ? rd->entries[rd->n_ents - 1].index : 0;
	uint64_t last_term = persisted ? rd->entries[rd->n_ents - 1].term : 0;
	raft_advance(g->raft);
	brk_log_release(g->store);
	for (size_t i = 0; i < nsnap; i++)
		snap_out_start(g, snap[i]);
	/* In sync durability the commit above fsynced; in relaxed mode it
	 * did not, and that is the documented risk of relaxed. */
	if (persisted)
		raft_persisted(g->raft, last, last_term);
	results_complete(g, nres);
	events_flush(g, true);
	return true;
}

/* Notices leadership changes: a new leader starts fresh feeds (gateways
 * see a new epoch, re-watch and catch up); a deposed one fails what it
 * had in flight and sends gateways elsewhere. */
static void gw_forget(brk_group *g, int idx);

static void damage_check(brk_group *g);

static void leader_check(brk_group *g)
{
	damage_check(g);
	raft_status st;
	raft_status_get(g->raft, &st);
	g->lead_id = st.lead;
	if (st.term != g->term) {
		g->term = st.term;
		pl_metric_set(g->m.term, (int64_t)st.term);
	}
	bool leader = st.role == RAFT_LEADER;
	if (leader == g->leader)
		return;
	g->leader = leader;
	pl_metric_set(g->m.is_leader, leader);
	if (leader) {
		g->lead_index = st.last_index;
		pl_metric_inc(g->m.elections, 1);
		PL_INFO("group", "event=leader term=%llu first_index=%llu",
		    (unsigned long long)st.term,
		    (unsigned long long)st.last_index);
	} else {
		PL_INFO("group", "event=follower term=%llu leader=%llu",
		    (unsigned long long)st.term, (unsigned long long)st.lead);
		pend_fail_all(g, PL_E_UNAVAILABLE);
	}
	/* Either way the watch table starts over: watches belong to the
	 * leadership that took them. Not here: batches of the round under
	 * way still point at their gateway's state (see gws_reset). */
	g->gws_reset = true;
}

/* Forgets every gateway (answering parked polls first), between rounds:
 * a gateway that comes back gets a new epoch and re-watches. */
static void gws_reset(brk_group *g)
{
	if (!g->gws_reset)
		return;
	g->gws_reset = false;
	while (g->ngws > 0) {
		gw_state *gw = g->gws[g->ngws - 1];
		while (gw->npolls > 0)
			feed_flush(g, gw);
		gw_forget(g, g->ngws - 1);
	}
}

/* Steps the core through every ready it has. */
static void drive(brk_group *g)
{
	if (g->stalled) {
		if (pl_mono_us() < g->stall_retry_us ||
		    !ready_handle(g, &g->stall_rd))
			return;
	}
	while (raft_has_ready(g->raft)) {
		raft_ready rd;
		raft_ready_get(g->raft, &rd);
		bool appended = rd.n_ents > 0;
		if (!ready_handle(g, &rd))
			return;
		/* The entries just written commit soon (at once in a group of
		 * one): stop here so that their applying shares the next
		 * ready's transaction with whatever is proposed meanwhile —
		 * one durable commit per round, as in a group of one before
		 * Raft. The thread comes back without waiting. */
		if (appended)
			break;
	}
	/* Every ready written was advanced: the core borrows no payload. */
	PL_ASSERT(raft_unstable_count(g->raft) == 0);
	brk_arena_reset(&g->prop_arena);
	leader_check(g);
}

static void raft_ticks(brk_group *g)
{
	int64_t now = pl_mono_us();
	while (now - g->last_tick_us >= RAFT_TICK_MS * 1000) {
		raft_tick(g->raft);
		g->last_tick_us += RAFT_TICK_MS * 1000;
	}
}

/* ---- writes ---- */

/* Builds the command of a write request and proposes it. */
static pl_status propose(brk_group *g, brk_item *it,
    const Parley__Internal__GwRequest *rq, Parley__ServerFrame *rep)
{
	const Parley__ClientFrame *f = rq->frame;
	brk_cmd bc;
	uint64_t room = 0;
	int64_t now = pl_now_us();
	int64_t ts = now > g->last_ts_us ? now : g->last_ts_us + 1;
	g->last_ts_us = ts;
	if (f->body_case != PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM) {
		const char *rs = pl_client_frame_room(f);
		if (rs == NULL || pl_room_parse(rs, &room) != PL_OK ||
		    pl_room_group(room) != g->cfg.group)
			return PL_E_NOT_FOUND;
	}
	pl_status bst = brk_cmd_build(g->store, rq->caller, f, room, ts, &bc);
	if (bst != PL_OK)
		return bst;
	if (bc.cmd.op_case == PARLEY__INTERNAL__COMMAND__OP_PUBLISH)
		bc.cmd.publish->origin = rq->origin;
	if (g->npend == PENDING_MAX)
		return PL_E_BACKPRESSURE;
	if (raft_unstable_count(g->raft) >= RAFT_UNSTABLE_MAX) {
		/* Write out what is queued first. The drive resets the
		 * proposal arena, so the command is packed after it. */
		drive(g);
		if (g->stalled || !g->leader)
			return g->stalled ? g->stall_err : PL_E_NOT_LEADER;
	}
	Parley__Internal__Command *cmd = &bc.cmd;
	size_t n = parley__internal__command__get_packed_size(cmd);
	uint8_t *buf = brk_arena_alloc(&g->prop_arena, n ? n : 1);
	if (buf == NULL)
		return PL_E_BACKPRESSURE;
	parley__internal__command__pack(cmd, buf);
	uint64_t index, term;
	pl_status st = raft_propose(g->raft, buf, n, &index, &term);
	if (st != PL_OK)
		return st;
	pl_metric_inc(g->m.proposals, 1);
	pend_push(g, index, term, it, rep, f->body_case);
	return PL_OK;
}

/* Lanes of one batch whose writes are refused from some request on
 * (internals.md "Request order"): a write refused before entering the
 * log, for a reason that passes (backpressure, a stalled disk, no
 * leadership), makes every later write of its lane in the batch refused
 * with the same answer, so that on the retry a later write cannot land
 * before the earlier one. A lane of 0 is no lane. */
typedef struct lane_block {
	uint64_t *lane;
	pl_status *st;
	size_t n, cap;
} lane_block;

static bool refusal_passes(pl_status st)
{
	int code = pl_status_to_code(st);
	return code == PARLEY__ERROR_CODE__OVERLOADED ||
	       code == PARLEY__ERROR_CODE__UNAVAILABLE ||
	       code == PARLEY__ERROR_CODE__RATE_LIMITED ||
	       code == PARLEY__ERROR_CODE__INTERNAL;
}

static pl_status lane_blocked(const lane_block *lb, uint64_t lane)
{
	for (size_t i = 0; lane != 0 && i < lb->n; i++)
		if (lb->lane[i] == lane)
			return lb->st[i];
	return PL_OK;
}

static void lane_block_add(lane_block *lb, uint64_t lane, pl_status st)
{
	if (lane == 0 || !refusal_passes(st) || lb->n == lb->cap ||
	    lane_blocked(lb, lane) != PL_OK)
		return;
	lb->lane[lb->n] = lane;
	lb->st[lb->n] = st;
	lb->n++;
}

/* A write of rq: proposed, or refused as its lane already is. */
static pl_status write_propose(brk_group *g, brk_item *it,
    const Parley__Internal__GwRequest *rq, Parley__ServerFrame *rep,
    lane_block *lb)
{
	pl_status st = lane_blocked(lb, rq->lane);
	if (st != PL_OK)
		return st;
	st = g->stalled ? g->stall_err : propose(g, it, rq, rep);
	if (st != PL_OK)
		lane_block_add(lb, rq->lane, st);
	return st;
}

/* First pass over a gateway batch: status is answered at once, writes
 * are proposed, reads wait for the end of the round (deferred). */
static void handle_item(brk_group *g, brk_item *it, round *rd, size_t *reads)
{
	Parley__Internal__GwBatch *b = it->batch;
	rd->a = &it->arena;
	it->nreplies = 0;
	it->npending = 1; /* held until this pass ends */
	it->replies = ralloc(rd, sizeof(*it->replies) * (b->n_reqs + 1));
	it->deferred = ralloc(rd, b->n_reqs + 1);
	lane_block lb = {.cap = b->n_reqs};
	lb.lane = ralloc(rd, sizeof(*lb.lane) * (b->n_reqs + 1));
	lb.st = ralloc(rd, sizeof(*lb.st) * (b->n_reqs + 1));
	if (it->replies == NULL || it->deferred == NULL || lb.lane == NULL ||
	    lb.st == NULL)
		return; /* empty reply: the gateway answers unavailable */
	for (size_t i = 0; i < b->n_reqs; i++) {
		Parley__ServerFrame *rep = ralloc(rd, sizeof(*rep));
		if (rep == NULL)
			break;
		parley__server_frame__init(rep);
		const Parley__Internal__GwRequest *rq = b->reqs[i];
		rep->id = rq->id;
		it->replies[it->nreplies++] = rep;
		const Parley__ClientFrame *f = rq->frame;
		pl_status st = PL_OK;
		if (f == NULL || rq->caller == NULL ||
		    rq->caller->tenant == NULL ||
		    rq->caller->tenant[0] == '\0' ||
		    pl_client_frame_validate(f) != PL_OK) {
			st = PL_E_BAD_REQUEST;
		} else if (f->body_case == PARLEY__CLIENT_FRAME__BODY_STATUS) {
			st = brk_access(NULL, rq->caller, f->body_case);
			if (st == PL_OK)
				st = h_status(rd, rep);
		} else if (!g->leader) {
			rep_fail(&it->arena, rep, PL_E_NOT_LEADER, true,
			    leader_hint(g));
			continue;
		} else if (!is_write(f)) {
			if (reads_ready(g)) {
				it->deferred[i] = 1;
				(*reads)++;
				continue;
			}
			st = PL_E_UNAVAILABLE; /* a new leader catching up */
		} else {
			st = write_propose(g, it, rq, rep, &lb);
		}
		if (st == PL_E_NOT_LEADER) {
			rep_fail(&it->arena, rep, st, true, leader_hint(g));
			continue;
		}
		if (st != PL_OK)
			rep_fail(&it->arena, rep, st, true, NULL);
	}
}

/* Second pass: the deferred reads, from the applied state. */
static void serve_reads(brk_group *g, round *rd, brk_item **items, size_t n)
{
	if (brk_wtxn_begin(g->store, false, &rd->w) != PL_OK) {
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; items[i]->deferred != NULL &&
			                   j < items[i]->nreplies;
			     j++)
				if (items[i]->deferred[j])
					rep_fail(&items[i]->arena,
					    items[i]->replies[j], PL_E_IO, true,
					    NULL);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		brk_item *it = items[i];
		rd->a = &it->arena;
		for (size_t j = 0; it->deferred != NULL && j < it->nreplies;
		     j++) {
			if (!it->deferred[j])
				continue;
			Parley__ServerFrame *rep = it->replies[j];
			pl_status st =
			    dispatch(rd, it, it->batch->reqs[j], rep);
			if (st != PL_OK)
				rep_error(rd, rep, st);
		}
	}
	brk_wtxn_abort(rd->w);
	rd->w = NULL;
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
	size_t reqs = 0, reads = 0;
	for (size_t i = 0; i < n; i++)
		reqs += items[i]->batch->n_reqs;
	round rd;
	memset(&rd, 0, sizeof(rd));
	rd.g = g;
	int64_t now = pl_now_us();
	rd.ts_us = now > g->last_ts_us ? now : g->last_ts_us + 1;
	rd.events = g->events_buf;
	rd.events_cap = reqs;
	rd.watches = g->watches_buf;
	rd.watches_cap = reqs;
	if (g->stalled) {
		/* Requests are waiting: try the held write now rather than
		 * refuse them if the disk has room again. */
		g->stall_retry_us = 0;
		drive(g);
	}
	for (size_t i = 0; i < n; i++)
		handle_item(g, items[i], &rd, &reads);
	drive(g);
	if (reads > 0)
		serve_reads(g, &rd, items, n);
	pl_metric_inc(g->m.requests, (int64_t)reqs);
	pl_hist_record(g->m.round_reqs->hist, reqs);
	round_apply(g, &rd);
	for (size_t i = 0; i < n; i++)
		item_done(g, items[i]); /* the first pass's hold */
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

/* Sorts received items: peer messages are stepped (and held until the
 * ready they feed is advanced), polls are parked (or, on a replica that
 * does not lead, answered at once), batches go to the round. */
static size_t intake(brk_group *g, brk_item **in, size_t n, brk_item **out)
{
	size_t nr = 0;
	int64_t now = pl_now_us();
	for (size_t i = 0; i < n; i++) {
		brk_item *it = in[i];
		if (it->peer) {
			if (!g->stalled)
				peer_receive(g, it);
			g->held[g->nheld++] = it;
			continue;
		}
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
		snprintf(it->epoch, sizeof(it->epoch), "%s", it->gw->epoch);
		if (it->batch->poll && it->batch->n_reqs == 0) {
			if (g->leader)
				park_poll(g, it, now);
			else
				item_reply(
				    g, it); /* not_leader: go elsewhere */
		} else {
			out[nr++] = it;
		}
	}
	return nr;
}

static void held_release(brk_group *g)
{
	for (size_t i = 0; i < g->nheld; i++)
		item_put(g, g->held[i]);
	g->nheld = 0;
}

/* Moves the Raft log's start up once it holds twice log_keep_entries
 * applied entries: followers further behind get a snapshot. */
static void compact(brk_group *g)
{
	int64_t now = pl_mono_us();
	if (now - g->last_compact_us < 1000000 || g->stalled)
		return;
	g->last_compact_us = now;
	uint64_t applied = brk_store_applied(g->store), si, st;
	brk_store_snap(g->store, &si, &st);
	uint64_t keep = g->cfg.log_keep_entries;
	if (applied > si + 2 * keep &&
	    brk_log_compact(g->store, applied - keep) == PL_OK)
		PL_DEBUG("group", "event=log_compacted first=%llu",
		    (unsigned long long)(applied - keep + 1));
}

static void housekeeping(brk_group *g)
{
	int64_t now = pl_now_us();
	gws_reset(g);
	compact(g);
	snap_pump(g);
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
		raft_status rs;
		raft_status_get(g->raft, &rs);
		pl_metric_set(g->m.commit, (int64_t)rs.commit);
		pl_metric_set(
		    g->m.applied, (int64_t)brk_store_applied(g->store));
		if (g->peers != NULL)
			pl_metric_set(g->m.peer_dropped,
			    (int64_t)brk_peers_dropped(g->peers));
		g->last_gauges_us = now;
	}
}

static void *group_main(void *arg)
{
	brk_group *g = arg;
	brk_item *in[ITEMS_MAX + PEER_ITEMS_MAX], *batch[ITEMS_MAX];
	g->last_tick_us = pl_mono_us();
	if (g->cfg.nreplicas == 1) {
		/* A group of one elects itself at once rather than after an
		 * election timeout. */
		for (int i = 0;
		     i < 2 * (int)g->cfg.election_ms / RAFT_TICK_MS &&
		     !g->leader;
		     i++) {
			raft_tick(g->raft);
			drive(g);
		}
	}
	while (g->running) {
		bool more = !g->stalled && raft_has_ready(g->raft);
		size_t n = pl_queue_pop_many(&g->q, (void **)in,
		    ITEMS_MAX + PEER_ITEMS_MAX, more ? 0 : TICK_US);
		size_t nr = intake(g, in, n, batch);
		if (!g->stalled)
			raft_ticks(g);
		/* With requests waiting, their round drives the core, so
		 * their entries join the ready that applies earlier ones. */
		if (nr == 0)
			drive(g);
		for (size_t i = 0; i < nr; i += ROUND_ITEMS_MAX) {
			size_t k =
			    nr - i < ROUND_ITEMS_MAX ? nr - i : ROUND_ITEMS_MAX;
			run_round(g, batch + i, k);
		}
		held_release(g); /* stepped entries live until advanced */
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
	    "Durable commit rounds: log entries or hard state, one write "
	    "transaction and fsync each");
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
	g->m.term = pl_metrics_add(
	    r, PL_METRIC_GAUGE, "parley_broker_raft_term", "Raft term");
	g->m.is_leader =
	    pl_metrics_add(r, PL_METRIC_GAUGE, "parley_broker_raft_leader",
	        "1 while this replica leads its group");
	g->m.commit = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_broker_raft_commit_index", "Highest index known committed");
	g->m.applied = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_broker_raft_applied_index", "Highest index applied");
	g->m.elections = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_raft_leaderships_total",
	    "Times this replica became leader");
	g->m.peer_in = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_peer_batches_in_total",
	    "Authenticated peer batches received");
	g->m.peer_out = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_peer_batches_out_total", "Peer batches sent");
	g->m.peer_bad = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_peer_rejected_total",
	    "Peer batches dropped: bad MAC, replay, wrong group, malformed");
	g->m.peer_dropped =
	    pl_metrics_add(r, PL_METRIC_GAUGE, "parley_broker_peer_dropped",
	        "Peer messages dropped since start: a peer down or its queue "
	        "full (Raft sends again)");
	g->m.snaps_sent = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_snapshots_sent_total",
	    "Snapshots streamed to followers behind the log's start");
	g->m.snaps_installed = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_snapshots_installed_total",
	    "Snapshots received and installed");
	g->m.proposals = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_raft_proposals_total", "Writes proposed");
}

/* ---- Raft storage: the LMDB log, read through the store ---- */

static pl_status rs_load(void *ctx, raft_hard_state *hs, uint64_t *snap_index,
    uint64_t *snap_term, raft_conf *conf)
{
	brk_group *g = ctx;
	uint64_t applied;
	brk_store_raft(g->store, hs, &applied);
	brk_store_snap(g->store, snap_index, snap_term);
	memset(conf, 0, sizeof(*conf));
	for (int i = 0; i < g->cfg.nreplicas; i++)
		conf->voters[conf->n_voters++] = g->cfg.replicas[i].id;
	return PL_OK;
}

static uint64_t rs_first(void *ctx)
{
	brk_group *g = ctx;
	return brk_store_first_index(g->store);
}

static uint64_t rs_last(void *ctx)
{
	brk_group *g = ctx;
	return brk_store_last_index(g->store);
}

static pl_status rs_term(void *ctx, uint64_t index, uint64_t *term)
{
	brk_group *g = ctx;
	return brk_log_term(g->store, index, term);
}

static pl_status rs_entries(void *ctx, uint64_t lo, uint64_t hi,
    size_t max_bytes, raft_entry *out, size_t cap, size_t *n)
{
	brk_group *g = ctx;
	return brk_log_entries(g->store, lo, hi, max_bytes, out, cap, n);
}

/* Truncates the log at its first bad entry in one durable write, storing
 * the repair record rep when given (docs/raft.md "Damaged logs"). */
static pl_status log_cut(brk_group *g, uint64_t bad, const raft_repair *rep)
{
	brk_wtxn *w;
	pl_status st = brk_wtxn_begin(g->store, true, &w);
	if (st != PL_OK)
		return st;
	st = brk_log_truncate(w, bad);
	if (st == PL_OK && rep != NULL)
		brk_repair_put(w, rep);
	if (st == PL_OK)
		return brk_wtxn_commit(w);
	brk_wtxn_abort(w);
	return st;
}

/* Before the core starts: every entry's CRC is checked. A bad entry at
 * or below the sync mark is damage (the replica held it durably): the log
 * is cut there and a repair record keeps the replica from voting until
 * its peers have refilled it. A bad entry above the mark would be a torn
 * tail never reported durable: cut, nothing to repair (LMDB does not
 * tear; the rule is kept explicit). */
static pl_status log_check(brk_group *g)
{
	uint64_t bad = 0;
	if (brk_log_verify(g->store, &bad) != PL_E_CORRUPT)
		return PL_OK;
	uint64_t mark, mark_term;
	raft_repair rep;
	brk_store_mark(g->store, &mark, &mark_term);
	brk_store_repair(g->store, &rep);
	bool damage = bad <= mark;
	if (damage)
		raft_repair_note(&rep, mark, mark_term);
	PL_ERROR("group",
	    "event=log_damaged first_bad=%llu last=%llu repair_to=%llu "
	    "repair_term=%llu",
	    (unsigned long long)bad,
	    (unsigned long long)brk_store_last_index(g->store),
	    (unsigned long long)rep.to, (unsigned long long)rep.term);
	return log_cut(g, bad, damage ? &rep : NULL);
}

/* While running: a storage callback met a bad CRC (the core records it).
 * The core is told, then the log is cut in one durable write. Checked
 * between rounds; the whole log is scanned once per such report. */
static void damage_check(brk_group *g)
{
	raft_status st;
	raft_status_get(g->raft, &st);
	if (st.storage_err != PL_E_CORRUPT || g->damage_handled)
		return;
	g->damage_handled = true; /* the core's error stays set */
	uint64_t bad = 0;
	if (brk_log_verify(g->store, &bad) != PL_E_CORRUPT)
		return;
	raft_repair rep;
	if (raft_log_damaged(g->raft, bad, &rep) != PL_OK)
		return;
	PL_ERROR("group", "event=log_damaged first_bad=%llu repair_to=%llu",
	    (unsigned long long)bad, (unsigned long long)rep.to);
	pl_status s = log_cut(g, bad, &rep);
	if (s != PL_OK)
		PL_ERROR(
		    "group", "event=log_cut_failed err=\"%s\"", pl_strerror(s));
}

static pl_status raft_init(brk_group *g)
{
	pl_status cst = log_check(g);
	if (cst != PL_OK)
		return cst;
	g->rs = (raft_storage){.load = rs_load,
	    .first_index = rs_first,
	    .last_index = rs_last,
	    .term_at = rs_term,
	    .entries = rs_entries};
	uint8_t seed[8];
	randombytes_buf(seed, sizeof(seed));
	raft_config rc = {.id = g->cfg.node,
	    .election_ticks = g->cfg.election_ms / RAFT_TICK_MS,
	    .heartbeat_ticks = g->cfg.heartbeat_ms / RAFT_TICK_MS,
	    .pre_vote = true,
	    .check_quorum = true,
	    .msg_bytes_max = APPEND_BYTES_MAX,
	    .applied = brk_store_applied(g->store),
	    .storage = &g->rs,
	    .storage_ctx = g};
	memcpy(&rc.seed, seed, sizeof(seed));
	brk_store_repair(g->store, &rc.repair);
	if (rc.heartbeat_ticks == 0)
		rc.heartbeat_ticks = 1;
	if (rc.election_ticks <= rc.heartbeat_ticks)
		rc.election_ticks = rc.heartbeat_ticks + 1;
	pl_status st = raft_new(&rc, &g->raft);
	if (st == PL_OK) {
		/* A repairing replica asks every configured replica for what
		 * it lost, not only the members of the configuration it
		 * reverted to (docs/raft.md "Damaged logs"). */
		uint64_t ids[RAFT_PEERS_MAX];
		for (int i = 0; i < g->cfg.nreplicas; i++)
			ids[i] = g->cfg.replicas[i].id;
		st = raft_repair_peers(g->raft, ids, (size_t)g->cfg.nreplicas);
	}
	brk_log_release(g->store);
	if (st != PL_OK)
		PL_ERROR("group", "event=raft_start_failed err=\"%s\"",
		    pl_strerror(st));
	return st;
}

/* The cluster secret: base64 of 32 bytes in secret_file. Every message
 * between replicas is sealed with it (auth.c). A group of one needs none. */
static pl_status auth_init(brk_group *g)
{
	if (g->cfg.nreplicas <= 1 && g->cfg.secret_file[0] == '\0')
		return PL_OK;
	char text[256];
	FILE *f = fopen(g->cfg.secret_file, "r");
	if (f == NULL) {
		PL_ERROR("group", "event=secret_unreadable file=%s",
		    g->cfg.secret_file);
		return PL_E_CONFIG;
	}
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	uint8_t key[BRK_SECRET_BYTES];
	pl_status st = brk_secret_parse(text, key);
	sodium_memzero(text, sizeof(text));
	if (st == PL_OK)
		st = brk_auth_init(&g->auth, key,
		    ((uint64_t)g->cfg.group << 16) | g->cfg.node,
		    pl_now_us() / 1000000);
	sodium_memzero(key, sizeof(key));
	if (st != PL_OK) {
		PL_ERROR("group", "event=secret_invalid file=%s",
		    g->cfg.secret_file);
		return PL_E_CONFIG;
	}
	g->auth_on = true;
	return PL_OK;
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
	for (int i = PEER_ITEMS_MAX - 1; i >= 0; i--) {
		brk_arena_init(&g->pitems[i].arena, 16 * 1024,
		    (size_t)PL_FRAME_BYTES_CEIL);
		g->pitems[i].peer = true;
		g->pitems[i].next_free = g->free_peer;
		g->free_peer = &g->pitems[i];
	}
	brk_arena_init(&g->prop_arena, 256 * 1024, (size_t)1 << 30);
	brk_arena_init(&g->ev_arena, 256 * 1024, (size_t)1 << 30);
	brk_arena_init(&g->send_arena, 64 * 1024, (size_t)1 << 30);
	g->evs = calloc(reqs_max, sizeof(round_event));
	g->pend = calloc(PENDING_MAX, sizeof(pending));
	g->res =
	    calloc(RAFT_APPLY_MAX + RAFT_UNSTABLE_MAX, sizeof(brk_applied));
	g->res_term =
	    calloc(RAFT_APPLY_MAX + RAFT_UNSTABLE_MAX, sizeof(uint64_t));
	g->peer_buf = malloc(PL_FRAME_BYTES_CEIL);
	g->peer_zbuf_cap = ZSTD_compressBound(PL_FRAME_BYTES_CEIL) + 5;
	g->peer_zbuf = malloc(g->peer_zbuf_cap);
	g->zc = ZSTD_createCCtx();
	g->zd = ZSTD_createDCtx();
	g->snap_buf = malloc(g->cfg.snapshot_chunk_bytes);
	for (int i = 0; i < RAFT_PEERS_MAX; i++)
		g->sout[i].fd = -1;
	g->sin.fd = -1;
	brk_store_config sc = {.dir = g->cfg.data_dir,
	    .map_bytes = cfg->map_bytes,
	    .sync = cfg->sync,
	    .group = cfg->group,
	    .compress_bytes_min = cfg->compress_bytes_min,
	    .dedup_window = cfg->dedup_window};
	pl_status st = brk_config_check(&g->cfg);
	if (st == PL_OK && !(g->events_buf && g->watches_buf && g->pack &&
	                       g->evs && g->pend && g->res && g->res_term &&
	                       g->peer_buf && g->peer_zbuf && g->zc && g->zd))
		st = PL_E_NOMEM;
	if (st == PL_OK)
		st = pl_queue_init(&g->q, ITEMS_MAX + PEER_ITEMS_MAX);
	g->sc = sc;
	if (st == PL_OK && g->snap_buf == NULL)
		st = PL_E_NOMEM;
	if (st == PL_OK)
		st = brk_store_open(&sc, &g->store);
	if (st == PL_OK)
		st = auth_init(g);
	if (st == PL_OK)
		st = raft_init(g);
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

pl_status brk_group_start(brk_group *g, brk_net *net, brk_peers *peers)
{
	g->net = net;
	g->peers = peers;
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
	brk_item *left[ITEMS_MAX + PEER_ITEMS_MAX];
	size_t n = g->q.cap ? pl_queue_pop_many(&g->q, (void **)left,
	                          ITEMS_MAX + PEER_ITEMS_MAX, 0)
	                    : 0;
	for (size_t i = 0; i < n; i++)
		item_put(g, left[i]);
	held_release(g);
	while (g->ngws > 0)
		gw_forget(g, g->ngws - 1);
	for (int b = 0; b < WATCH_BUCKETS; b++)
		while (g->watch[b] != NULL)
			watch_drop_room(g, g->watch[b]);
	/* An item still waiting at stop (its writes uncommitted, so never
	 * answered) still owns the request it was given. */
	for (int i = 0; i < ITEMS_MAX; i++) {
		nng_msg_free(g->items[i].msg);
		brk_arena_fini(&g->items[i].arena);
	}
	for (int i = 0; i < PEER_ITEMS_MAX; i++) {
		nng_msg_free(g->pitems[i].msg);
		brk_arena_fini(&g->pitems[i].arena);
	}
	brk_arena_fini(&g->prop_arena);
	brk_arena_fini(&g->ev_arena);
	brk_arena_fini(&g->send_arena);
	for (int i = 0; i < RAFT_PEERS_MAX; i++)
		if (g->sout[i].active)
			snap_out_end(g, &g->sout[i], false, false);
	if (g->sin.fd >= 0)
		close(g->sin.fd);
	free(g->snap_buf);
	raft_free(g->raft);
	brk_auth_fini(g->auth_on ? &g->auth : NULL);
	brk_store_close(g->store);
	free(g->evs);
	free(g->pend);
	free(g->res);
	free(g->res_term);
	free(g->peer_buf);
	free(g->peer_zbuf);
	ZSTD_freeCCtx(g->zc);
	ZSTD_freeDCtx(g->zd);
	pl_queue_fini(&g->q);
	pthread_mutex_destroy(&g->free_mu);
	free(g->events_buf);
	free(g->watches_buf);
	free(g->pack);
	free(g);
}
