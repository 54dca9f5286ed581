/*
 * request.c - what the gateway does with each client frame: decode and
 * validate, hello and ping answered locally, limits (hello first, body
 * size, publish rate, requests in flight), routing to the broker link of
 * the room's shard group, and delivery of the broker's reply under the
 * client's request id.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "gateway/conn.h"
#include "gateway/core.h"
#include "gateway/feed.h"
#include "gateway/link.h"
#include "gateway/multi.h"
#include "gateway/req.h"
#include "gateway/request.h"
#include "proto/token.h"

/* Failed hello attempts before the connection is closed. */
#define GW_HELLO_FAILS_MAX 3
/* A gateway-made client_msg_id: "g:" gateway id (cut to this length),
 * ":" 12 hex digits drawn at start (two runs of one gateway never share
 * ids) ":" a counter; it must fit PL_CLIENT_MSG_ID_CHARS_MAX. */
#define GW_MSG_ID_GWID_CHARS 24
_Static_assert(
    2 + GW_MSG_ID_GWID_CHARS + 1 + 12 + 1 + 20 <= PL_CLIENT_MSG_ID_CHARS_MAX,
    "a gateway-made client_msg_id fits the protocol's bound");
/* The request id of a frame that failed to decode, when its first field
 * is the id (protobuf-c writes fields in number order), else 0. */
static uint64_t peek_id(const uint8_t *p, size_t len)
{
	if (len < 2 || p[0] != 0x08)
		return 0;
	uint64_t v = 0;
	for (size_t i = 1; i < len && i <= 10; i++) {
		v |= (uint64_t)(p[i] & 0x7f) << (7 * (i - 1));
		if ((p[i] & 0x80) == 0)
			return v;
	}
	return 0;
}

/* ---- local requests ---- */

static void reply_hello_fail(gw_conn *c, uint64_t id, const char *why)
{
	char msg[PL_WHY_CHARS_MAX + 1];
	snprintf(msg, sizeof(msg), "hello refused: %s", why);
	gw_conn_send_error(c, id, PARLEY__ERROR_CODE__UNAUTHORIZED, msg);
	if (++c->hello_fails >= GW_HELLO_FAILS_MAX)
		gw_conn_goodbye(c, PARLEY__ERROR_CODE__UNAUTHORIZED,
		    "too many failed hellos");
}

/* Every bound a client can meet, as this gateway applies it. */
static void limits_fill(const gw_config *conf, Parley__Limits *lim)
{
	lim->frame_bytes_max = conf->frame_bytes_max;
	lim->body_bytes_max = conf->body_bytes_max;
	lim->publish_per_sec = conf->publish_per_sec;
	lim->publish_burst = 2 * conf->publish_per_sec; /* rate_take */
	lim->subscriptions_max = conf->subscriptions_max;
	lim->idle_ms = conf->idle_ms;
	lim->history_limit_max = PL_HISTORY_LIMIT_MAX;
	lim->client_msg_id_bytes_max = PL_CLIENT_MSG_ID_CHARS_MAX;
	lim->idempotency_key_bytes_max = PL_IDEMPOTENCY_KEY_CHARS_MAX;
	lim->meta_entries_max = PL_META_ENTRIES_MAX;
	lim->meta_bytes_max = PL_META_CHARS_MAX;
	lim->reason_bytes_max = PL_REASON_CHARS_MAX;
	lim->report_days_max = PL_REPORT_DAYS_MAX;
	lim->send_queue_bytes_max = conf->send_queue_bytes_max;
	lim->inflight_max = GW_CONN_INFLIGHT_MAX;
	lim->token_bytes_max = PL_TOKEN_CHARS_MAX;
}

static void handle_hello(gw_conn *c, const Parley__ClientFrame *f)
{
	pl_claims cl;
	const char *why = "invalid token";
	if (atomic_load(&c->authed)) {
		gw_conn_send_error(c, f->id, PARLEY__ERROR_CODE__BAD_REQUEST,
		    "already authenticated: use refresh for a new token");
		return;
	}
	if (gw_token_verify(c->g,
	        f->hello->token ? f->hello->token : "", pl_now_us() / 1000000,
	        &cl, &why) != PL_OK) {
		PL_INFO(GW_MOD,
		    "event=hello_refused conn=%llu fails=%u why=\"%s\"",
		    (unsigned long long)c->id, c->hello_fails + 1u, why);
		reply_hello_fail(c, f->id, why);
		return;
	}
	gw_tenant_use *u = gw_tenants_find(&c->g->tenants, cl.tenant);
	uint32_t share = 0;
	if (u != NULL && !gw_tenant_conn_take(&c->g->tenants, u, &share)) {
		char msg[200];
		snprintf(msg, sizeof(msg),
		    "tenant %s: this gateway's share of connections_max %u "
		    "(%u over %u gateways) is in use",
		    cl.tenant, atomic_load(&u->conn_max), share,
		    atomic_load(&c->g->tenants.gateways));
		pl_metric_inc(c->g->m.tenant_refused[0], 1);
		gw_conn_send_error(
		    c, f->id, PARLEY__ERROR_CODE__OVERLOADED, msg);
		return;
	}
	atomic_store(&c->tuse, u);
	c->claims = cl;
	atomic_store(&c->exp_s, cl.exp_s);
	uint8_t rnd[16];
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(c->session, sizeof(c->session), rnd, sizeof(rnd));
	atomic_store(&c->authed, true);

	Parley__Limits lim = PARLEY__LIMITS__INIT;
	limits_fill(c->g->conf, &lim);
	Parley__Welcome w = PARLEY__WELCOME__INIT;
	w.session = c->session;
	w.server_time_us = pl_now_us();
	w.limits = &lim;
	w.tenant = c->claims.tenant;
	w.user = c->claims.user;
	w.role = c->claims.role;
	w.token_exp_s = cl.exp_s;
	Parley__ServerFrame sf = PARLEY__SERVER_FRAME__INIT;
	sf.id = f->id;
	sf.body_case = PARLEY__SERVER_FRAME__BODY_WELCOME;
	sf.welcome = &w;
	PL_DEBUG(GW_MOD, /* one per connection: debug, not info */
	    "event=hello conn=%llu tenant=%s user=%s role=%s scope=%s",
	    (unsigned long long)c->id, cl.tenant, cl.user,
	    pl_role_name(cl.role), cl.room[0] ? cl.room : "-");
	(void)gw_conn_send(c, &sf);
}

/* The identity a refresh may not change. Claims strings are NUL-free
 * (checked on the wire), so comparing the C strings compares the whole
 * signed values. */
static bool same_identity(const pl_claims *a, const pl_claims *b)
{
	return strcmp(a->tenant, b->tenant) == 0 &&
	       strcmp(a->user, b->user) == 0 && a->role == b->role &&
	       strcmp(a->room, b->room) == 0;
}

/* A new token for an open connection: it moves the expiry, nothing else.
 * A refused refresh leaves the connection as it was (it expires at its
 * old time). */
static void handle_refresh(gw_conn *c, const Parley__ClientFrame *f)
{
	pl_claims cl;
	const char *why = "invalid token";
	char msg[PL_WHY_CHARS_MAX + 1];
	if (gw_token_verify(c->g,
	        f->refresh->token ? f->refresh->token : "",
	        pl_now_us() / 1000000, &cl, &why) != PL_OK) {
		snprintf(msg, sizeof(msg), "refresh refused: %s", why);
		gw_conn_send_error(
		    c, f->id, PARLEY__ERROR_CODE__UNAUTHORIZED, msg);
		return;
	}
	if (!same_identity(&cl, &c->claims)) {
		gw_conn_send_error(c, f->id, PARLEY__ERROR_CODE__UNAUTHORIZED,
		    "refresh refused: the token's tenant, user, role or room "
		    "scope differs from the connection's");
		return;
	}
	/* Never earlier: a replayed old token cannot shorten a session. */
	int64_t cur = atomic_load(&c->exp_s);
	while (cl.exp_s > cur &&
	       !atomic_compare_exchange_weak(&c->exp_s, &cur, cl.exp_s)) {
	}
	Parley__Refreshed r = PARLEY__REFRESHED__INIT;
	r.token_exp_s = atomic_load(&c->exp_s);
	Parley__ServerFrame sf = PARLEY__SERVER_FRAME__INIT;
	sf.id = f->id;
	sf.body_case = PARLEY__SERVER_FRAME__BODY_REFRESHED;
	sf.refreshed = &r;
	(void)gw_conn_send(c, &sf);
}

static void handle_ping(gw_conn *c, const Parley__ClientFrame *f)
{
	Parley__Pong p = PARLEY__PONG__INIT;
	p.ts_us = f->ping->ts_us;
	p.server_time_us = pl_now_us();
	Parley__ServerFrame sf = PARLEY__SERVER_FRAME__INIT;
	sf.id = f->id;
	sf.body_case = PARLEY__SERVER_FRAME__BODY_PONG;
	sf.pong = &p;
	(void)gw_conn_send(c, &sf);
}

/* Token bucket: publish_per_sec refill, burst of two seconds' worth.
 * Read-path state, so no lock. On refusal *wait_ms is when one publish
 * will be in the bucket again. */
static bool rate_take(gw_conn *c, uint32_t *wait_ms)
{
	const int64_t unit = 1000000;
	int64_t rate = c->g->conf->publish_per_sec;
	int64_t now = pl_mono_us();
	c->tokens += (now - c->tokens_us) * rate;
	c->tokens_us = now;
	if (c->tokens > 2 * rate * unit)
		c->tokens = 2 * rate * unit;
	if (c->tokens < unit) {
		/* tokens grow by rate per microsecond */
		int64_t us = (unit - c->tokens + rate - 1) / rate;
		*wait_ms = (uint32_t)((us + 999) / 1000);
		return false;
	}
	c->tokens -= unit;
	return true;
}

/* ---- forwarding ---- */

/* The broker link of the frame's room; replies the error itself and
 * returns NULL when there is none. */
static gw_link *route_room(gw_conn *c, const Parley__ClientFrame *f)
{
	const char *s = pl_client_frame_room(f);
	uint64_t room;
	/* The codec checked the id; a frame without a room has none. */
	if (s == NULL || pl_room_parse(s, &room) != PL_OK) {
		gw_conn_send_error(c, f->id, PARLEY__ERROR_CODE__BAD_REQUEST,
		    "room: not a room id (16 lowercase hex digits)");
		return NULL;
	}
	gw_link *l = gw_link_find(c->g, pl_room_group(room));
	if (l == NULL && gw_map_pending(c->g)) {
		gw_conn_send_retry(c, f->id, PARLEY__ERROR_CODE__UNAVAILABLE,
		    "no cluster map yet: groups are not known", 0);
	} else if (l == NULL) {
		char msg[96];
		snprintf(msg, sizeof(msg),
		    "room not found: no shard group %u serves it",
		    (unsigned)pl_room_group(room));
		gw_conn_send_error(
		    c, f->id, PARLEY__ERROR_CODE__NOT_FOUND, msg);
	}
	return l;
}

static void submit_error(gw_conn *c, uint64_t id, pl_status st)
{
	char msg[96];
	if (st == PL_E_BACKPRESSURE) {
		snprintf(msg, sizeof(msg),
		    "broker queue full (broker_queue_max %u), retry",
		    c->g->conf->broker_queue_max);
		gw_conn_send_retry(c, id, PARLEY__ERROR_CODE__OVERLOADED, msg,
		    GW_RETRY_AFTER_MS);
	} else if (st == PL_E_NOMEM) {
		gw_conn_send_error(
		    c, id, PARLEY__ERROR_CODE__INTERNAL, "out of memory");
	} else {
		gw_conn_send_retry(c, id, PARLEY__ERROR_CODE__UNAVAILABLE,
		    "gateway stopping: retry on another gateway", 0);
	}
}

static void forward(
    gw_conn *c, gw_link *l, const Parley__ClientFrame *f, uint8_t flags)
{
	gw_req *r =
	    gw_req_new(c, GW_REQ_CLIENT, f, gw_req_client_done, c->g);
	if (r == NULL) {
		submit_error(c, f->id, PL_E_NOMEM);
		return;
	}
	r->flags |= flags;
	pl_status st = gw_link_submit(l, r);
	if (st != PL_OK) {
		gw_req_free(r);
		submit_error(c, f->id, st);
	}
}

static bool publish_allowed(gw_conn *c, const Parley__ClientFrame *f)
{
	const gw_config *conf = c->g->conf;
	char msg[96];
	uint32_t wait_ms = 0;
	pl_metric_inc(c->g->m.publishes, 1);
	if (f->publish->body.len > conf->body_bytes_max) {
		snprintf(msg, sizeof(msg),
		    "publish.body of %zu bytes exceeds body_bytes_max %u",
		    f->publish->body.len, conf->body_bytes_max);
		gw_conn_send_error(
		    c, f->id, PARLEY__ERROR_CODE__TOO_LARGE, msg);
		return false;
	}
	if (!rate_take(c, &wait_ms)) {
		snprintf(msg, sizeof(msg),
		    "publish_per_sec %u exceeded (burst %u): retry in %u ms",
		    conf->publish_per_sec, 2 * conf->publish_per_sec, wait_ms);
		gw_conn_send_retry(
		    c, f->id, PARLEY__ERROR_CODE__RATE_LIMITED, msg, wait_ms);
		return false;
	}
	/* The tenant's share of its cluster-wide rate (tenant.h). */
	gw_tenant_use *u = gw_tenants_find(&c->g->tenants, c->claims.tenant);
	uint32_t share = 0;
	if (u != NULL && !gw_tenant_rate_take(&c->g->tenants, u, pl_mono_us(),
	                     &wait_ms, &share)) {
		char tmsg[200];
		snprintf(tmsg, sizeof(tmsg),
		    "tenant %s: publish_per_sec %u (%u on this gateway) "
		    "exceeded: retry in %u ms",
		    c->claims.tenant, atomic_load(&u->pub_rate), share, wait_ms);
		pl_metric_inc(c->g->m.tenant_refused[1], 1);
		gw_conn_send_retry(
		    c, f->id, PARLEY__ERROR_CODE__RATE_LIMITED, tmsg, wait_ms);
		return false;
	}
	return true;
}

/* A publish without a client_msg_id to a replicated group gets one
 * made here, so a failover can re-send it without storing it twice
 * (the broker de-duplicates ids). A single replica has no failover to
 * retry through, and its records stay exactly as the client sent them.
 * buf holds the id while f is forwarded. */
static uint8_t publish_id_fill(gw_conn *c, gw_link *l, Parley__Publish *p,
    char buf[static PL_CLIENT_MSG_ID_CHARS_MAX + 1])
{
	if (gw_link_replicas(l) < 2 ||
	    (p->client_msg_id != NULL && p->client_msg_id[0]))
		return 0;
	gw *g = c->g;
	snprintf(buf, PL_CLIENT_MSG_ID_CHARS_MAX + 1,
	    "g:%.*s:%012" PRIx64 ":%" PRIu64, GW_MSG_ID_GWID_CHARS, g->conf->id,
	    g->msg_id_boot, atomic_fetch_add(&g->msg_ids, 1) + 1);
	p->client_msg_id = buf;
	return GW_REQF_GEN_ID;
}

static void dispatch_publish(gw_conn *c, const Parley__ClientFrame *f)
{
	char id[PL_CLIENT_MSG_ID_CHARS_MAX + 1];
	if (!publish_allowed(c, f))
		return;
	gw_link *l = route_room(c, f);
	if (l != NULL)
		forward(c, l, f, publish_id_fill(c, l, f->publish, id));
}

static void dispatch_authed(gw_conn *c, const Parley__ClientFrame *f)
{
	gw_link *l;
	switch (f->body_case) {
	case PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE:
		gw_subs_subscribe(c, f);
		return;
	case PARLEY__CLIENT_FRAME__BODY_UNSUBSCRIBE:
		gw_subs_unsubscribe(c, f);
		return;
	case PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS:
	case PARLEY__CLIENT_FRAME__BODY_STATUS:
	case PARLEY__CLIENT_FRAME__BODY_REPORT:
		gw_multi_start(c, f);
		return;
	case PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM:
		l = gw_link_pick(
		    c->g, c->claims.tenant, f->create_room->idempotency_key);
		if (l == NULL) {
			gw_conn_send_retry(c, f->id,
			    PARLEY__ERROR_CODE__UNAVAILABLE,
			    "no shard group accepts new rooms (all draining)",
			    0);
			return;
		}
		forward(c, l, f, 0);
		return;
	case PARLEY__CLIENT_FRAME__BODY_PUBLISH:
		dispatch_publish(c, f);
		return;
	default:
		if ((l = route_room(c, f)) != NULL)
			forward(c, l, f, 0);
		return;
	}
}

static void dispatch(gw_conn *c, const Parley__ClientFrame *f)
{
	if (f->body_case == PARLEY__CLIENT_FRAME__BODY_HELLO) {
		handle_hello(c, f);
		return;
	}
	if (!atomic_load(&c->authed)) {
		gw_conn_send_error(c, f->id, PARLEY__ERROR_CODE__UNAUTHORIZED,
		    "hello first: no request is served before a welcome");
		return;
	}
	/* The sweeper says goodbye within GW_SWEEP_MS of the expiry; no
	 * request is served in between. */
	if (pl_now_us() / 1000000 >= atomic_load(&c->exp_s)) {
		gw_conn_send_error(c, f->id, PARLEY__ERROR_CODE__UNAUTHORIZED,
		    "token expired");
		gw_conn_goodbye(
		    c, PARLEY__ERROR_CODE__UNAUTHORIZED, "token expired");
		return;
	}
	if (f->body_case == PARLEY__CLIENT_FRAME__BODY_REFRESH) {
		handle_refresh(c, f);
		return;
	}
	if (f->body_case == PARLEY__CLIENT_FRAME__BODY_PING) {
		handle_ping(c, f);
		return;
	}
	if (atomic_load(&c->inflight) >= GW_CONN_INFLIGHT_MAX) {
		char msg[80];
		snprintf(msg, sizeof(msg),
		    "too many requests in flight (limit %d)",
		    GW_CONN_INFLIGHT_MAX);
		gw_conn_send_retry(c, f->id, PARLEY__ERROR_CODE__OVERLOADED,
		    msg, GW_RETRY_AFTER_MS);
		return;
	}
	dispatch_authed(c, f);
}

/* Called on the read path for each whole frame (payload borrowed). */
void gw_request_handle(gw_conn *c, const uint8_t *payload, size_t len)
{
	gw *g = c->g;
	Parley__ClientFrame *f;
	pl_metric_inc(g->m.requests, 1);
	gw_arena *a = gw_arena_get(g);
	if (a == NULL) {
		gw_conn_send_error(c, peek_id(payload, len),
		    PARLEY__ERROR_CODE__INTERNAL, "out of memory");
		return;
	}
	pl_why why = {.text = "undecodable frame"};
	pl_status st = pl_client_frame_decode_why(
	    payload, len, g->conf->frame_bytes_max, &a->a, &f, &why);
	if (st != PL_OK) {
		gw_conn_send_error(c, peek_id(payload, len),
		    st == PL_E_TOO_LARGE ? PARLEY__ERROR_CODE__TOO_LARGE
		                         : PARLEY__ERROR_CODE__BAD_REQUEST,
		    why.text);
	} else {
		dispatch(c, f);
	}
	gw_arena_put(g, a);
}
