/*
 * map_client.c - the client side of the cluster map (map_client.h): a
 * watcher thread that long-polls one meta replica at a time, and the
 * synchronous change and fetch. Every request is one GwBatch { group 0,
 * map } on a req0 context of a socket per replica; nng never resends
 * (a change is resent by us, to the replica a not_leader reply names).
 *
 * Stopping a watcher: every nng operation the thread starts is started
 * with the watcher's mutex held and only while it is not stopping, and
 * stop sets stopping and cancels the aio under the same mutex, so the
 * thread is either waiting on an operation that stop cancels or starts
 * none. docs/cluster.md "Watching and changing the map".
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <sodium.h>

#include "proto/codec.h"
#include "proto/map_client.h"
#include "proto/nng_close.h"

#define MOD "map"
/* GwBatch.gateway is required (codec.c): what a replica logs as asking. */
#define CLIENT_ID "map-client"
/* Addresses learnt from leader hints, beyond the ones given: a leader
 * names itself by the address it was configured with, which may be
 * spelled differently from ours. */
#define HINTS_MAX PL_META_ADDRS_MAX
#define PEERS_MAX (PL_META_ADDRS_MAX + HINTS_MAX)
/* A change sent to a replica that does not answer within this is sent
 * to the next: committing a change takes milliseconds, so one second
 * means the replica is down or cut off, and it leaves time for another
 * replica inside a caller's timeout of a few seconds. */
#define CHANGE_ASK_MS 1000
/* The pause before asking again after a refusal to serve (no leader
 * yet, no quorum, a malformed reply): an election takes longer, so
 * asking faster would only spin. */
#define RETRY_PAUSE_MS 50
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000

_Static_assert(PEERS_MAX <= PL_NNG_CLOSE_MANY_MAX,
    "every peer socket closes in one bounded call");

/* ---- peers: one req0 socket per replica ---- */

typedef struct peer {
	char *addr;
	nng_socket sock;
	bool open, dialed;
} peer;

typedef struct peers {
	peer p[PEERS_MAX];
	int n;
} peers;

static int peer_open(peer *p, const char *addr)
{
	p->addr = strdup(addr);
	if (p->addr == NULL)
		return NNG_ENOMEM;
	int rv = nng_req0_open(&p->sock);
	if (rv != 0)
		return rv;
	p->open = true;
	/* We decide what is resent, and to whom. */
	if ((rv = nng_socket_set_ms(p->sock, NNG_OPT_REQ_RESENDTIME,
	         NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_size(
	         p->sock, NNG_OPT_RECVMAXSZ, PL_FRAME_BYTES_CEIL)) != 0 ||
	    (rv = nng_socket_set_ms(
	         p->sock, NNG_OPT_RECONNMINT, RECONNECT_MIN_MS)) != 0 ||
	    (rv = nng_socket_set_ms(
	         p->sock, NNG_OPT_RECONNMAXT, RECONNECT_MAX_MS)) != 0)
		return rv;
	return 0; /* dialed when first asked: peer_sock */
}

/* The socket of p, dialed now if it was not yet. Dialing only the
 * replicas actually asked spares the others a connection: nng 1.5.2
 * leaks the state of a dial still connecting when its socket closes,
 * and a one-shot call that the first replica answers closes at once. A
 * dial that fails here leaves the ask to time out and move on. */
static nng_socket peer_sock(peer *p)
{
	if (!p->dialed) {
		p->dialed = true;
		/* Non-blocking: a replica that is down is dialed again. */
		int rv = nng_dial(p->sock, p->addr, NULL, NNG_FLAG_NONBLOCK);
		if (rv != 0)
			PL_WARN(MOD, "event=map_dial_failed addr=%s err=\"%s\"",
			    p->addr, nng_strerror(rv));
	}
	return p->sock;
}

static void peers_close(peers *ps)
{
	/* Zeroed: GCC 12 at -O3 sees socks read uninitialized when n is 0. */
	nng_socket socks[PEERS_MAX] = {{0}};
	int n = 0;
	for (int i = 0; i < ps->n; i++) {
		if (ps->p[i].open)
			socks[n++] = ps->p[i].sock;
	}
	(void)pl_nng_close_bounded(socks, n, MOD, PL_NNG_CLOSE_MS);
	for (int i = 0; i < ps->n; i++)
		free(ps->p[i].addr);
	memset(ps, 0, sizeof(*ps));
}

static pl_status peers_open(peers *ps, const char *const *addrs, int n)
{
	memset(ps, 0, sizeof(*ps));
	if (addrs == NULL || n < 1 || n > PL_META_ADDRS_MAX)
		return PL_E_BAD_REQUEST;
	for (int i = 0; i < n; i++) {
		if (addrs[i] == NULL || addrs[i][0] == '\0') {
			peers_close(ps);
			return PL_E_BAD_REQUEST;
		}
		int rv = peer_open(&ps->p[ps->n++], addrs[i]);
		if (rv != 0) {
			PL_ERROR(MOD, "event=map_dial_failed addr=%s err=\"%s\"",
			    addrs[i], nng_strerror(rv));
			peers_close(ps);
			return rv == NNG_ENOMEM ? PL_E_NOMEM : PL_E_BAD_REQUEST;
		}
	}
	return PL_OK;
}

/* The peer at addr, dialed now if it is new; -1 when it cannot be. */
static int peers_find_or_add(peers *ps, const char *addr)
{
	for (int i = 0; i < ps->n; i++) {
		if (strcmp(ps->p[i].addr, addr) == 0)
			return i;
	}
	if (ps->n == PEERS_MAX)
		return -1;
	peer *p = &ps->p[ps->n];
	if (peer_open(p, addr) != 0) {
		if (p->open)
			(void)pl_nng_close_bounded(&p->sock, 1, MOD,
			    PL_NNG_CLOSE_MS);
		free(p->addr);
		memset(p, 0, sizeof(*p));
		return -1;
	}
	return ps->n++;
}

/* ---- one request ---- */

/* Whether a watcher stops; NULL for the one-shot calls. */
typedef struct gate {
	pthread_mutex_t mu;
	bool stopping;
} gate;

static bool gate_stopping(gate *g)
{
	if (g == NULL)
		return false;
	pthread_mutex_lock(&g->mu);
	bool s = g->stopping;
	pthread_mutex_unlock(&g->mu);
	return s;
}

/* Starts op(ctx, aio) unless g stops (see the top of the file), then
 * waits for it. */
static int aio_run(gate *g, nng_aio *aio, void (*op)(nng_ctx, nng_aio *),
    nng_ctx ctx)
{
	if (g != NULL) {
		pthread_mutex_lock(&g->mu);
		if (g->stopping) {
			pthread_mutex_unlock(&g->mu);
			return NNG_ECANCELED;
		}
	}
	op(ctx, aio);
	if (g != NULL)
		pthread_mutex_unlock(&g->mu);
	nng_aio_wait(aio);
	return nng_aio_result(aio);
}

static void aio_sleep(gate *g, nng_aio *aio, nng_duration ms)
{
	if (g != NULL) {
		pthread_mutex_lock(&g->mu);
		if (g->stopping) {
			pthread_mutex_unlock(&g->mu);
			return;
		}
	}
	nng_sleep_aio(ms, aio);
	if (g != NULL)
		pthread_mutex_unlock(&g->mu);
	nng_aio_wait(aio);
}

static void aio_msg_drop(nng_aio *aio)
{
	nng_msg *m = nng_aio_get_msg(aio);
	if (m != NULL)
		nng_msg_free(m);
	nng_aio_set_msg(aio, NULL);
}

/* Sends req (taken) on a new context of s and waits up to ms in all for
 * its reply (*rep, returned owned). An nng error code. */
static int ask(gate *g, nng_aio *aio, nng_socket s, nng_msg *req,
    nng_duration ms, nng_msg **rep)
{
	nng_ctx ctx;
	int rv = nng_ctx_open(&ctx, s);
	if (rv != 0) {
		nng_msg_free(req);
		return rv;
	}
	int64_t end_us = pl_mono_us() + (int64_t)ms * 1000;
	nng_aio_set_timeout(aio, ms);
	nng_aio_set_msg(aio, req);
	rv = aio_run(g, aio, nng_ctx_send, ctx);
	if (rv != 0) {
		aio_msg_drop(aio); /* nng hands an unsent request back */
		nng_ctx_close(ctx);
		return rv;
	}
	int64_t left_ms = (end_us - pl_mono_us()) / 1000;
	nng_aio_set_timeout(aio, left_ms > 0 ? (nng_duration)left_ms : 1);
	rv = aio_run(g, aio, nng_ctx_recv, ctx);
	if (rv == 0) {
		*rep = nng_aio_get_msg(aio);
		nng_aio_set_msg(aio, NULL);
	}
	nng_ctx_close(ctx);
	return rv;
}

static nng_msg *gw_batch_msg(
    uint32_t group, Parley__Internal__MapRequest *mr)
{
	Parley__Internal__GwBatch gb = PARLEY__INTERNAL__GW_BATCH__INIT;
	gb.gateway = CLIENT_ID;
	gb.group = group;
	gb.map = mr;
	size_t n = parley__internal__gw_batch__get_packed_size(&gb);
	nng_msg *m;
	if (nng_msg_alloc(&m, n) != 0)
		return NULL;
	size_t packed = parley__internal__gw_batch__pack(&gb, nng_msg_body(m));
	PL_ASSERT(packed == n);
	return m;
}

static nng_msg *map_request(uint64_t since, uint32_t wait_ms,
    const uint8_t *change, size_t len, const uint8_t *mac)
{
	Parley__Internal__MapRequest mr = PARLEY__INTERNAL__MAP_REQUEST__INIT;
	mr.since = since;
	mr.wait_ms = wait_ms;
	if (change != NULL) {
		mr.change.data = (uint8_t *)change;
		mr.change.len = len;
		mr.mac.data = (uint8_t *)mac;
		mr.mac.len = crypto_auth_BYTES;
	}
	return gw_batch_msg(0, &mr);
}

/* What a replica answered. */
typedef struct answer {
	bool not_leader;
	char hint[PL_MAP_ADDR_CHARS_MAX + 1]; /* "" none */
	int code;
	char why[PL_WHY_CHARS_MAX + 1];
	bool changed;
	uint64_t version;
	bool has_map;
	pl_map map; /* has_map: owned */
} answer;

static pl_status answer_from(answer *ans, const Parley__Internal__BrokerBatch *bb)
{
	if (bb->not_leader) {
		ans->not_leader = true;
		if (bb->leader_hint != NULL &&
		    strlen(bb->leader_hint) < sizeof(ans->hint))
			strcpy(ans->hint, bb->leader_hint);
		return PL_OK;
	}
	const Parley__Internal__MapReply *r = bb->map;
	if (r == NULL || bb->group != 0)
		return PL_E_PROTO;
	ans->code = r->code;
	ans->changed = r->changed;
	ans->version = r->version;
	if (r->why != NULL)
		snprintf(ans->why, sizeof(ans->why), "%s", r->why);
	if (r->code != 0 && r->map.len == 0)
		return PL_OK; /* a refusal may come without the map */
	if (pl_map_decode(&ans->map, r->map.data, r->map.len) != PL_OK)
		return PL_E_PROTO;
	if (ans->map.version != r->version) {
		pl_map_fini(&ans->map);
		return PL_E_PROTO;
	}
	ans->has_map = true;
	return PL_OK;
}

/* Decodes a reply (borrowed) into *ans; PL_E_PROTO when it is not a
 * meta replica's answer. */
static pl_status answer_read(nng_msg *m, answer *ans)
{
	memset(ans, 0, sizeof(*ans));
	pl_map_init(&ans->map);
	size_t len = nng_msg_len(m);
	pl_arena a;
	Parley__Internal__BrokerBatch *bb;
	if (pl_arena_init(&a, NULL, PL_ARENA_BYTES_FOR(len)) != PL_OK)
		return PL_E_NOMEM;
	pl_status st = pl_broker_batch_decode(nng_msg_body(m), len, &a, &bb);
	if (st == PL_OK)
		st = answer_from(ans, bb);
	pl_arena_fini(&a);
	return st == PL_E_NOMEM ? st : st != PL_OK ? PL_E_PROTO : PL_OK;
}

/* ---- watcher ---- */

struct pl_map_watch {
	gate g;
	peers ps;
	nng_aio *aio;
	pthread_t thread;
	bool started;
	_Atomic uint64_t version;
	pl_map_watch_fn fn;
	void *ctx;
};

static int watch_next(pl_map_watch *w, int cur, const char *why)
{
	int n = (cur + 1) % w->ps.n;
	if (n != cur)
		PL_INFO(MOD, "event=map_watch_switch from=%s to=%s reason=%s",
		    w->ps.p[cur].addr, w->ps.p[n].addr, why);
	return n;
}

/* One long poll at replica cur; returns the replica to ask next. */
static int watch_once(pl_map_watch *w, int cur)
{
	uint64_t since = atomic_load(&w->version);
	nng_msg *req = map_request(since, PL_MAP_WATCH_WAIT_MS, NULL, 0, NULL);
	nng_msg *rep = NULL;
	if (req == NULL) {
		aio_sleep(&w->g, w->aio, RETRY_PAUSE_MS);
		return cur;
	}
	int rv = ask(&w->g, w->aio, peer_sock(&w->ps.p[cur]), req,
	    2 * PL_MAP_WATCH_WAIT_MS, &rep);
	if (rv != 0) {
		if (rv != NNG_ETIMEDOUT)
			aio_sleep(&w->g, w->aio, RETRY_PAUSE_MS);
		return gate_stopping(&w->g) ? cur : watch_next(w, cur, "no_answer");
	}
	answer ans;
	pl_status st = answer_read(rep, &ans);
	nng_msg_free(rep);
	if (st != PL_OK || ans.not_leader || ans.code != 0 || !ans.has_map) {
		pl_map_fini(&ans.map);
		aio_sleep(&w->g, w->aio, RETRY_PAUSE_MS);
		return watch_next(w, cur, "bad_answer");
	}
	uint64_t v = ans.map.version;
	if (v > since) {
		w->fn(w->ctx, &ans.map);
		atomic_store(&w->version, v);
	}
	pl_map_fini(&ans.map);
	/* A replica behind what we hold lags the meta group (cut off, or
	 * catching up): another one knows more. */
	return v < since ? watch_next(w, cur, "behind") : cur;
}

static void *watch_main(void *arg)
{
	pl_map_watch *w = arg;
	int cur = 0;
	while (!gate_stopping(&w->g))
		cur = watch_once(w, cur);
	return NULL;
}

static void watch_free(pl_map_watch *w)
{
	if (w->aio != NULL)
		nng_aio_stop(w->aio);
	peers_close(&w->ps);
	if (w->aio != NULL)
		nng_aio_free(w->aio);
	pthread_mutex_destroy(&w->g.mu);
	free(w);
}

pl_status pl_map_watch_start(const char *const *addrs, int naddrs,
    uint64_t since, pl_map_watch_fn fn, void *ctx, pl_map_watch **out)
{
	if (fn == NULL)
		return PL_E_BAD_REQUEST;
	pl_map_watch *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return PL_E_NOMEM;
	pthread_mutex_init(&w->g.mu, NULL);
	atomic_init(&w->version, since);
	w->fn = fn;
	w->ctx = ctx;
	pl_status st = peers_open(&w->ps, addrs, naddrs);
	if (st == PL_OK && nng_aio_alloc(&w->aio, NULL, NULL) != 0)
		st = PL_E_NOMEM;
	if (st == PL_OK && pthread_create(&w->thread, NULL, watch_main, w) != 0)
		st = PL_E_INTERNAL;
	if (st != PL_OK) {
		watch_free(w);
		return st;
	}
	w->started = true;
	*out = w;
	return PL_OK;
}

uint64_t pl_map_watch_version(const pl_map_watch *w)
{
	return atomic_load(&((pl_map_watch *)w)->version);
}

/* Not from the watcher's callback: it would wait for itself. */
void pl_map_watch_stop(pl_map_watch *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->g.mu);
	w->g.stopping = true;
	nng_aio_cancel(w->aio);
	pthread_mutex_unlock(&w->g.mu);
	if (w->started)
		pthread_join(w->thread, NULL);
	watch_free(w);
}

/* ---- change and fetch ---- */

void pl_map_change_mac(const uint8_t secret[32], const uint8_t *change,
    size_t len, uint8_t mac[32])
{
	_Static_assert(crypto_auth_KEYBYTES == 32 && crypto_auth_BYTES == 32,
	    "the cluster secret and the MAC are 32 bytes");
	pl_crypto_ready();
	crypto_auth(mac, change, len, secret);
}

bool pl_map_change_mac_ok(const uint8_t secret[32], const uint8_t *change,
    size_t len, const uint8_t *mac, size_t mac_len)
{
	if (mac == NULL || mac_len != crypto_auth_BYTES)
		return false;
	pl_crypto_ready();
	return crypto_auth_verify(mac, change, len, secret) == 0;
}

/* A replica's code that means "ask again" rather than a refusal. */
static bool code_retryable(int code)
{
	return code == PL_E_UNAVAILABLE || code == PL_E_NOT_LEADER ||
	       code == PL_E_TIMEOUT || code == PL_E_BACKPRESSURE;
}

typedef struct change_call {
	const uint8_t *change;
	size_t len;
	uint8_t mac[32];
	bool *changed;
	pl_map *after;
	char *why;
	size_t why_len;
	bool answered; /* some replica answered: they are up, no leader */
} change_call;

/* One answer to a change: PL_OK or a refusal ends the call (*done),
 * anything else says where to ask next in *cur. */
static pl_status change_answer(
    change_call *c, peers *ps, answer *ans, int *cur, bool *done)
{
	c->answered = true;
	*done = false;
	if (ans->not_leader) {
		int h = ans->hint[0] != '\0' ? peers_find_or_add(ps, ans->hint)
		                             : -1;
		*cur = h >= 0 && h != *cur ? h : (*cur + 1) % ps->n;
		return PL_E_NOT_LEADER;
	}
	if (code_retryable(ans->code)) {
		*cur = (*cur + 1) % ps->n;
		return PL_E_UNAVAILABLE;
	}
	*done = true;
	if (ans->code != 0) {
		if (c->why != NULL && c->why_len > 0)
			snprintf(c->why, c->why_len, "%s", ans->why);
		return (pl_status)ans->code;
	}
	if (c->changed != NULL)
		*c->changed = ans->changed;
	if (c->after != NULL && ans->has_map) {
		pl_map_fini(c->after);
		*c->after = ans->map;
		pl_map_init(&ans->map);
	}
	return PL_OK;
}

static pl_status change_loop(change_call *c, peers *ps, nng_aio *aio,
    uint32_t timeout_ms)
{
	int64_t end_us = pl_mono_us() + (int64_t)timeout_ms * 1000;
	int cur = 0;
	for (;;) {
		int64_t left_ms = (end_us - pl_mono_us()) / 1000;
		if (left_ms <= 0)
			return c->answered ? PL_E_UNAVAILABLE : PL_E_TIMEOUT;
		nng_msg *req = map_request(0, 0, c->change, c->len, c->mac);
		if (req == NULL)
			return PL_E_NOMEM;
		nng_msg *rep = NULL;
		int rv = ask(NULL, aio, peer_sock(&ps->p[cur]), req,
		    left_ms < CHANGE_ASK_MS ? left_ms : CHANGE_ASK_MS, &rep);
		if (rv != 0) {
			cur = (cur + 1) % ps->n;
			continue;
		}
		answer ans;
		pl_status st = answer_read(rep, &ans);
		nng_msg_free(rep);
		bool done = false;
		if (st == PL_OK)
			st = change_answer(c, ps, &ans, &cur, &done);
		else
			cur = (cur + 1) % ps->n;
		pl_map_fini(&ans.map);
		if (done)
			return st;
		if (st != PL_E_NOT_LEADER || ans.hint[0] == '\0')
			aio_sleep(NULL, aio, RETRY_PAUSE_MS);
	}
}

pl_status pl_map_change(const char *const *addrs, int naddrs,
    const uint8_t secret[32], const uint8_t *change, size_t len,
    uint32_t timeout_ms, bool *changed, pl_map *after, char *why,
    size_t why_len)
{
	if (why != NULL && why_len > 0)
		why[0] = '\0';
	if (change == NULL || len == 0)
		return PL_E_BAD_REQUEST;
	change_call c = {.change = change, .len = len, .changed = changed,
	    .after = after, .why = why, .why_len = why_len};
	pl_map_change_mac(secret, change, len, c.mac);
	peers ps;
	nng_aio *aio = NULL;
	pl_status st = peers_open(&ps, addrs, naddrs);
	if (st != PL_OK)
		return st;
	if (nng_aio_alloc(&aio, NULL, NULL) != 0)
		st = PL_E_NOMEM;
	else
		st = change_loop(&c, &ps, aio, timeout_ms);
	if (aio != NULL)
		nng_aio_stop(aio);
	peers_close(&ps);
	nng_aio_free(aio);
	return st;
}

/* *out is written on success only; the map it held is freed then. */
pl_status pl_map_fetch(const char *const *addrs, int naddrs,
    uint32_t timeout_ms, pl_map *out)
{
	peers ps;
	nng_aio *aio = NULL;
	pl_status st = peers_open(&ps, addrs, naddrs);
	if (st != PL_OK)
		return st;
	if (nng_aio_alloc(&aio, NULL, NULL) != 0) {
		peers_close(&ps);
		return PL_E_NOMEM;
	}
	int64_t end_us = pl_mono_us() + (int64_t)timeout_ms * 1000;
	st = PL_E_TIMEOUT;
	for (int cur = 0;; cur = (cur + 1) % ps.n) {
		int64_t left_ms = (end_us - pl_mono_us()) / 1000;
		if (left_ms <= 0)
			break;
		nng_msg *req = map_request(0, 0, NULL, 0, NULL);
		nng_msg *rep = NULL;
		if (req == NULL) {
			st = PL_E_NOMEM;
			break;
		}
		if (ask(NULL, aio, peer_sock(&ps.p[cur]), req,
		        left_ms < CHANGE_ASK_MS ? left_ms : CHANGE_ASK_MS,
		        &rep) != 0)
			continue;
		answer ans;
		pl_status ast = answer_read(rep, &ans);
		nng_msg_free(rep);
		if (ast == PL_OK && ans.has_map && ans.code == 0) {
			pl_map_fini(out); /* the caller's earlier map, if any */
			*out = ans.map;
			st = PL_OK;
			break;
		}
		pl_map_fini(&ans.map);
		st = PL_E_UNAVAILABLE;
		aio_sleep(NULL, aio, RETRY_PAUSE_MS);
	}
	nng_aio_stop(aio);
	peers_close(&ps);
	nng_aio_free(aio);
	return st;
}

/* ---- a replica's status ---- */

static pl_status info_from(const Parley__Internal__BrokerBatch *bb,
    uint32_t group, pl_replica_info *out)
{
	if (bb->group != group)
		return PL_E_PROTO;
	if (bb->map == NULL || bb->map->status == NULL)
		return bb->not_leader ? PL_E_NOT_FOUND : PL_E_PROTO;
	const Parley__GroupStatus *gs = bb->map->status;
	if (gs->group != group ||
	    gs->n_conf_voters > PL_ARRAY_LEN(out->voters) ||
	    gs->n_conf_learners > PL_ARRAY_LEN(out->learners))
		return PL_E_PROTO;
	memset(out, 0, sizeof(*out));
	out->group = gs->group;
	out->node = gs->node_id;
	snprintf(out->role, sizeof(out->role), "%s",
	    gs->role != NULL ? gs->role : "");
	out->term = gs->term;
	out->commit = gs->commit;
	out->applied = gs->applied;
	out->last_index = gs->last_index;
	out->leader = gs->leader_id;
	out->nvoters = (int)gs->n_conf_voters;
	for (size_t i = 0; i < gs->n_conf_voters; i++)
		out->voters[i] = gs->conf_voters[i];
	out->nlearners = (int)gs->n_conf_learners;
	for (size_t i = 0; i < gs->n_conf_learners; i++)
		out->learners[i] = gs->conf_learners[i];
	out->rooms = gs->rooms;
	out->map_used = gs->map_used_bytes;
	out->map_size = gs->map_size_bytes;
	out->repairing = gs->repairing;
	return PL_OK;
}

pl_status pl_replica_status(const char *addr, uint32_t group,
    uint32_t timeout_ms, pl_replica_info *out)
{
	peers ps;
	const char *one[1] = {addr};
	pl_status st = peers_open(&ps, one, 1);
	if (st != PL_OK)
		return st;
	nng_aio *aio = NULL;
	if (nng_aio_alloc(&aio, NULL, NULL) != 0) {
		peers_close(&ps);
		return PL_E_NOMEM;
	}
	Parley__Internal__MapRequest mr = PARLEY__INTERNAL__MAP_REQUEST__INIT;
	mr.status = true;
	nng_msg *req = gw_batch_msg(group, &mr), *rep = NULL;
	st = PL_E_NOMEM;
	if (req != NULL) {
		int rv = ask(NULL, aio, peer_sock(&ps.p[0]), req,
		    (nng_duration)timeout_ms, &rep);
		st = rv == NNG_ETIMEDOUT ? PL_E_TIMEOUT
		     : rv != 0           ? PL_E_UNAVAILABLE
		                         : PL_OK;
	}
	if (st == PL_OK) {
		size_t len = nng_msg_len(rep);
		pl_arena a;
		Parley__Internal__BrokerBatch *bb;
		st = pl_arena_init(&a, NULL, PL_ARENA_BYTES_FOR(len));
		if (st == PL_OK) {
			st = pl_broker_batch_decode(
			    nng_msg_body(rep), len, &a, &bb);
			st = st == PL_OK ? info_from(bb, group, out) : PL_E_PROTO;
			pl_arena_fini(&a);
		}
		nng_msg_free(rep);
	}
	nng_aio_stop(aio);
	peers_close(&ps);
	nng_aio_free(aio);
	return st;
}
