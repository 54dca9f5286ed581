/*
 * link.c - the gateway's link to one shard group's broker (internals.md):
 * an nng req0 socket with several contexts. Requests from every
 * connection wait in one bounded queue; a free context takes up to
 * GW_BATCH_REQS_MAX of them into one GwBatch and maps the BrokerBatch
 * replies back by id. One more context keeps a live-feed poll in flight.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <sodium.h>

#include "gateway/gw_internal.h"

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000

enum { POLL_SEND, POLL_RECV, POLL_SLEEP };

static void bctx_cb(void *arg);
static void poll_cb(void *arg);
static void poll_send(gw_link *l);

pl_status gw_link_new(gw *g, const gw_group_conf *conf, gw_link **out)
{
	gw_link *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return PL_E_NOMEM;
	l->g = g;
	l->conf = conf;
	l->nctx = g->conf->broker_contexts;
	pthread_mutex_init(&l->mu, NULL);
	pthread_mutex_init(&l->feed_mu, NULL);
	l->ctxs = calloc(l->nctx, sizeof(*l->ctxs));
	if (l->ctxs == NULL) {
		gw_link_free(l);
		return PL_E_NOMEM;
	}
	*out = l;
	return PL_OK;
}

static int socket_open(gw_link *l)
{
	int rv = nng_req0_open(&l->sock);
	if (rv != 0)
		return rv;
	l->sock_open = true;
	/* Never resend: a batch may hold creates and joins that must not
	 * run twice behind the client's back. A timeout answers
	 * unavailable instead and the client retries (idempotently). */
	if ((rv = nng_socket_set_ms(l->sock, NNG_OPT_REQ_RESENDTIME,
	         NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_size(
	         l->sock, NNG_OPT_RECVMAXSZ, PL_FRAME_BYTES_CEIL)) != 0 ||
	    (rv = nng_socket_set_ms(
	         l->sock, NNG_OPT_RECONNMINT, RECONNECT_MIN_MS)) != 0 ||
	    (rv = nng_socket_set_ms(
	         l->sock, NNG_OPT_RECONNMAXT, RECONNECT_MAX_MS)) != 0)
		return rv;
	/* Non-blocking: a broker that is not up yet is dialed again. */
	return nng_dial(l->sock, l->conf->broker, NULL, NNG_FLAG_NONBLOCK);
}

static int ctxs_open(gw_link *l)
{
	int rv;
	for (uint32_t i = 0; i < l->nctx; i++) {
		gw_bctx *b = &l->ctxs[i];
		b->link = l;
		if ((rv = nng_ctx_open(&b->ctx, l->sock)) != 0 ||
		    (rv = nng_ctx_set_ms(b->ctx, NNG_OPT_REQ_RESENDTIME,
		         NNG_DURATION_INFINITE)) != 0 ||
		    (rv = nng_aio_alloc(&b->aio, bctx_cb, b)) != 0)
			return rv;
		b->next_idle = l->idle;
		l->idle = b;
	}
	if ((rv = nng_ctx_open(&l->pctx, l->sock)) != 0 ||
	    (rv = nng_ctx_set_ms(
	         l->pctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0)
		return rv;
	return nng_aio_alloc(&l->paio, poll_cb, l);
}

pl_status gw_link_start(gw_link *l)
{
	int rv = socket_open(l);
	if (rv == 0)
		rv = ctxs_open(l);
	if (rv != 0) {
		PL_ERROR(GW_MOD,
		    "event=link_failed group=%u broker=%s err=\"%s\"",
		    (unsigned)l->conf->id, l->conf->broker, nng_strerror(rv));
		return PL_E_IO;
	}
	PL_INFO(GW_MOD, "event=link_dial group=%u broker=%s contexts=%u",
	    (unsigned)l->conf->id, l->conf->broker, l->nctx);
	poll_send(l);
	return PL_OK;
}

/* ---- request batches ---- */

static size_t varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *varint_put(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* GwBatch is written by splicing: each request was packed once when it
 * was queued (without its id); here it becomes field 2 (reqs) with field
 * 1 (id) put in front. Protobuf allows fields in any order, so this is
 * the record protobuf-c would write, without unpacking anything. */
static size_t batch_size(const gw_bctx *b, const char *gwid)
{
	size_t idn = strlen(gwid);
	size_t n = 1 + varint_len(idn) + idn;
	for (uint32_t i = 0; i < b->n; i++) {
		size_t inner = 1 + varint_len(b->base + i) + b->reqs[i]->len;
		n += 1 + varint_len(inner) + inner;
	}
	return n;
}

static void batch_write(const gw_bctx *b, const char *gwid, uint8_t *p)
{
	size_t idn = strlen(gwid);
	*p++ = 0x0a; /* field 1, length-delimited: gateway */
	p = varint_put(p, idn);
	memcpy(p, gwid, idn);
	p += idn;
	for (uint32_t i = 0; i < b->n; i++) {
		const gw_req *r = b->reqs[i];
		uint64_t id = b->base + i;
		*p++ = 0x12; /* field 2, length-delimited: reqs */
		p = varint_put(p, 1 + varint_len(id) + r->len);
		*p++ = 0x08; /* GwRequest field 1, varint: id */
		p = varint_put(p, id);
		memcpy(p, r->body, r->len);
		p += r->len;
	}
}

/* With l->mu held: moves up to a batch's worth from the queue. */
static void batch_take_locked(gw_link *l, gw_bctx *b)
{
	size_t bytes = 0, reply = 0;
	b->n = 0;
	while (l->qhead != NULL && b->n < GW_BATCH_REQS_MAX) {
		gw_req *r = l->qhead;
		if (b->n > 0 && (bytes + r->len + 32 > GW_BATCH_BYTES_MAX ||
		                    reply + r->reply_est > GW_BATCH_BYTES_MAX))
			break;
		l->qhead = r->next;
		if (l->qhead == NULL)
			l->qtail = NULL;
		l->qlen--;
		r->next = NULL;
		bytes += r->len + 32;
		reply += r->reply_est;
		b->reqs[b->n++] = r;
	}
}

static void batch_fail(gw_bctx *b, int code)
{
	gw *g = b->link->g;
	for (uint32_t i = 0; i < b->n; i++) {
		if (b->reqs[i] != NULL)
			gw_req_complete(g, b->reqs[i], NULL, code);
		b->reqs[i] = NULL;
	}
	b->n = 0;
}

/* With l->mu held, so batches reach the socket in queue order and one
 * connection's pipelined requests are not reordered between contexts.
 * False when the message could not be built (the batch is still b's). */
static bool batch_send_locked(gw_bctx *b)
{
	gw_link *l = b->link;
	const char *gwid = l->g->conf->id;
	nng_msg *m;
	b->base = atomic_fetch_add(&l->g->req_ids, b->n) + 1;
	if (nng_msg_alloc(&m, batch_size(b, gwid)) != 0)
		return false;
	batch_write(b, gwid, nng_msg_body(m));
	nng_aio_set_msg(b->aio, m);
	nng_aio_set_timeout(
	    b->aio, (nng_duration)l->g->conf->broker_timeout_ms);
	b->t0_us = pl_mono_us();
	b->receiving = false;
	nng_ctx_send(b->ctx, b->aio);
	return true;
}

/* A context is free: start its next batch or park it. */
static void bctx_next(gw_bctx *b)
{
	gw_link *l = b->link;
	for (;;) {
		pthread_mutex_lock(&l->mu);
		if (l->stopping || l->qhead == NULL) {
			if (!l->stopping) {
				b->next_idle = l->idle;
				l->idle = b;
			}
			pthread_mutex_unlock(&l->mu);
			return;
		}
		batch_take_locked(l, b);
		bool sent = batch_send_locked(b);
		pthread_mutex_unlock(&l->mu);
		if (sent)
			return;
		batch_fail(b, PARLEY__ERROR_CODE__INTERNAL);
	}
}

pl_status gw_link_submit(gw_link *l, gw_req *r)
{
	pthread_mutex_lock(&l->mu);
	if (l->stopping) {
		pthread_mutex_unlock(&l->mu);
		return PL_E_CLOSED;
	}
	if (l->qlen >= l->g->conf->broker_queue_max) {
		pthread_mutex_unlock(&l->mu);
		return PL_E_BACKPRESSURE;
	}
	r->next = NULL;
	if (l->qtail != NULL)
		l->qtail->next = r;
	else
		l->qhead = r;
	l->qtail = r;
	l->qlen++;
	gw_bctx *b = l->idle;
	bool failed = false;
	if (b != NULL) {
		l->idle = b->next_idle;
		batch_take_locked(l, b);
		failed = !batch_send_locked(b);
	}
	pthread_mutex_unlock(&l->mu);
	if (failed) {
		batch_fail(b, PARLEY__ERROR_CODE__INTERNAL);
		bctx_next(b);
	}
	return PL_OK;
}

/* Checks a reply's epoch; a change means the broker restarted and forgot
 * our watches. True on a change (not on the first sighting). */
static bool epoch_update(gw_link *l, const char *epoch)
{
	if (epoch == NULL || epoch[0] == '\0' ||
	    strncmp(l->epoch, epoch, sizeof(l->epoch) - 1) == 0)
		return false;
	bool changed = l->epoch[0] != '\0';
	PL_INFO(GW_MOD, "event=broker_epoch group=%u epoch=%s previous=%s",
	    (unsigned)l->conf->id, epoch, changed ? l->epoch : "-");
	snprintf(l->epoch, sizeof(l->epoch), "%s", epoch);
	return changed;
}

void gw_link_batch_epoch(gw_link *l, const char *epoch)
{
	pthread_mutex_lock(&l->feed_mu);
	bool changed = epoch_update(l, epoch);
	pthread_mutex_unlock(&l->feed_mu);
	if (changed)
		gw_subs_resync_group(l->g, l->conf->id, true);
}

static Parley__Internal__BrokerBatch *reply_decode(
    gw_link *l, nng_msg *m, pl_arena *a)
{
	Parley__Internal__BrokerBatch *bb;
	size_t len = nng_msg_len(m);
	if (pl_arena_init(a, NULL, PL_ARENA_BYTES_FOR(len)) != PL_OK)
		return NULL;
	if (pl_broker_batch_decode(nng_msg_body(m), len, a, &bb) != PL_OK) {
		PL_ERROR(GW_MOD,
		    "event=broker_reply_invalid group=%u bytes=%zu",
		    (unsigned)l->conf->id, len);
		return NULL;
	}
	return bb;
}

static void batch_reply(gw_bctx *b, nng_msg *m)
{
	gw_link *l = b->link;
	gw *g = l->g;
	pl_arena a = {0};
	pl_hist_record(
	    g->m.broker_rtt->hist, (uint64_t)(pl_mono_us() - b->t0_us));
	Parley__Internal__BrokerBatch *bb = reply_decode(l, m, &a);
	if (bb == NULL) {
		batch_fail(b, PARLEY__ERROR_CODE__INTERNAL);
		pl_arena_fini(&a);
		return;
	}
	atomic_store(&l->last_ok_us, pl_mono_us());
	gw_link_batch_epoch(l, bb->epoch);
	for (size_t i = 0; i < bb->n_replies; i++) {
		Parley__ServerFrame *f = bb->replies[i];
		uint64_t idx = f->id - b->base;
		if (f->id < b->base || idx >= b->n || b->reqs[idx] == NULL) {
			PL_DEBUG(GW_MOD,
			    "event=reply_unmatched group=%u id=%llu "
			    "base=%llu n=%u",
			    (unsigned)l->conf->id, (unsigned long long)f->id,
			    (unsigned long long)b->base, b->n);
			continue; /* not ours: ignore rather than trust */
		}
		gw_req *r = b->reqs[idx];
		b->reqs[idx] = NULL;
		gw_req_complete(g, r, f, 0);
	}
	if (bb->n_events > 0 || bb->overflow) {
		pthread_mutex_lock(&l->feed_mu);
		gw_subs_events(l, bb);
		pthread_mutex_unlock(&l->feed_mu);
	}
	batch_fail(b, PARLEY__ERROR_CODE__INTERNAL); /* unanswered ones */
	pl_arena_fini(&a);
}

static void bctx_cb(void *arg)
{
	gw_bctx *b = arg;
	gw_link *l = b->link;
	int rv = nng_aio_result(b->aio);
	if (!b->receiving && rv == 0) {
		b->receiving = true;
		nng_aio_set_timeout(
		    b->aio, (nng_duration)l->g->conf->broker_timeout_ms);
		nng_ctx_recv(b->ctx, b->aio);
		return;
	}
	if (rv != 0) {
		if (!b->receiving) {
			nng_msg_free(nng_aio_get_msg(b->aio));
			nng_aio_set_msg(b->aio, NULL);
		}
		PL_WARN(GW_MOD,
		    "event=broker_batch_failed group=%u reqs=%u "
		    "err=\"%s\"",
		    (unsigned)l->conf->id, b->n, nng_strerror(rv));
		batch_fail(b, PARLEY__ERROR_CODE__UNAVAILABLE);
	} else {
		nng_msg *m = nng_aio_get_msg(b->aio);
		nng_aio_set_msg(b->aio, NULL);
		batch_reply(b, m);
		nng_msg_free(m);
	}
	b->receiving = false;
	bctx_next(b);
}

/* ---- live feed ---- */

static void poll_retry_later(gw_link *l)
{
	l->poll_phase = POLL_SLEEP;
	nng_sleep_aio(GW_POLL_RETRY_MS, l->paio);
}

static void poll_send(gw_link *l)
{
	Parley__Internal__GwBatch gb = PARLEY__INTERNAL__GW_BATCH__INIT;
	gb.gateway = (char *)l->g->conf->id;
	gb.poll = true;
	gb.wait_ms = GW_POLL_WAIT_MS;
	gb.max_events = GW_POLL_EVENTS_MAX;
	uint8_t buf[GW_ID_CHARS_MAX + 32];
	size_t n;
	nng_msg *m;
	if (pl_pb_encode(&gb.base, buf, sizeof(buf), &n) != PL_OK ||
	    nng_msg_alloc(&m, n) != 0) {
		poll_retry_later(l);
		return;
	}
	memcpy(nng_msg_body(m), buf, n);
	/* Started under mu, after checking stopping: gw_link_stop sets
	 * stopping under mu before it stops the aio, so an operation is
	 * either fully started (and then cancelled, its callback freeing
	 * the message) or never started (and the message freed here). */
	pthread_mutex_lock(&l->mu);
	if (l->stopping) {
		pthread_mutex_unlock(&l->mu);
		nng_msg_free(m);
		return;
	}
	nng_aio_set_msg(l->paio, m);
	nng_aio_set_timeout(l->paio,
	    (nng_duration)(GW_POLL_WAIT_MS + l->g->conf->broker_timeout_ms));
	l->poll_phase = POLL_SEND;
	nng_ctx_send(l->pctx, l->paio);
	pthread_mutex_unlock(&l->mu);
}

static bool link_stopping(gw_link *l)
{
	pthread_mutex_lock(&l->mu);
	bool s = l->stopping;
	pthread_mutex_unlock(&l->mu);
	return s;
}

/* A poll reply: the next poll goes out before its events are processed
 * (so the broker can park it meanwhile), but feed_mu is taken first, so
 * the next reply waits until this one's events are delivered: replies
 * are processed in the order the broker sent them. */
static void poll_reply(gw_link *l)
{
	pthread_mutex_lock(&l->feed_mu);
	nng_msg *m = nng_aio_get_msg(l->paio);
	nng_aio_set_msg(l->paio, NULL);
	poll_send(l);
	pl_arena a = {0};
	Parley__Internal__BrokerBatch *bb = reply_decode(l, m, &a);
	bool changed = false;
	if (bb != NULL) {
		atomic_store(&l->last_ok_us, pl_mono_us());
		changed = epoch_update(l, bb->epoch);
		gw_subs_events(l, bb);
	}
	pthread_mutex_unlock(&l->feed_mu);
	if (changed)
		gw_subs_resync_group(l->g, l->conf->id, true);
	pl_arena_fini(&a);
	nng_msg_free(m);
}

static void poll_cb(void *arg)
{
	gw_link *l = arg;
	int rv = nng_aio_result(l->paio);
	int phase = l->poll_phase;
	if (rv != 0 && phase == POLL_SEND) {
		/* A failed send still owns its message. */
		nng_msg_free(nng_aio_get_msg(l->paio));
		nng_aio_set_msg(l->paio, NULL);
	}
	if (link_stopping(l)) {
		if (rv == 0 && phase == POLL_RECV) {
			nng_msg_free(nng_aio_get_msg(l->paio));
			nng_aio_set_msg(l->paio, NULL);
		}
		return;
	}
	if (phase == POLL_SLEEP) {
		poll_send(l);
	} else if (rv != 0) {
		/* The broker may be down: wait a little, no busy loop. */
		PL_DEBUG(GW_MOD, "event=poll_failed group=%u err=\"%s\"",
		    (unsigned)l->conf->id, nng_strerror(rv));
		poll_retry_later(l);
	} else if (phase == POLL_SEND) {
		l->poll_phase = POLL_RECV;
		nng_ctx_recv(l->pctx, l->paio);
	} else {
		poll_reply(l);
	}
}

gw_link *gw_link_find(gw *g, uint16_t group)
{
	for (int i = 0; i < g->nlinks; i++) {
		if (g->links[i]->conf->id == group)
			return g->links[i];
	}
	return NULL;
}

/* FNV-1a: spreads idempotency keys over the groups. */
static uint64_t key_hash(const char *tenant, const char *key)
{
	uint64_t h = UINT64_C(1469598103934665603);
	for (const char *p = tenant; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * UINT64_C(1099511628211);
	h = (h ^ 0xff) * UINT64_C(1099511628211);
	for (const char *p = key; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * UINT64_C(1099511628211);
	return h;
}

/* With an idempotency key the choice is a function of (tenant, key), so
 * a retried create reaches the group that remembers the key; otherwise
 * it is random. Both follow the weights of non-draining groups. */
gw_link *gw_link_pick(gw *g, const char *tenant, const char *key)
{
	uint64_t total = 0;
	for (int i = 0; i < g->nlinks; i++) {
		if (!g->links[i]->conf->draining)
			total += g->links[i]->conf->weight;
	}
	if (total == 0 || total > UINT32_MAX)
		return NULL;
	uint32_t x = key != NULL && key[0] != '\0'
	                 ? (uint32_t)(key_hash(tenant, key) % total)
	                 : randombytes_uniform((uint32_t)total);
	for (int i = 0; i < g->nlinks; i++) {
		const gw_group_conf *gc = g->links[i]->conf;
		if (gc->draining)
			continue;
		if (x < gc->weight)
			return g->links[i];
		x -= gc->weight;
	}
	return NULL;
}

/* ---- stop / free ---- */

static void aio_msg_drop(nng_aio *aio)
{
	nng_msg *m = nng_aio_get_msg(aio);
	if (m != NULL)
		nng_msg_free(m);
	nng_aio_set_msg(aio, NULL);
}

void gw_link_stop(gw_link *l)
{
	pthread_mutex_lock(&l->mu);
	l->stopping = true;
	gw_req *q = l->qhead;
	l->qhead = l->qtail = NULL;
	l->qlen = 0;
	pthread_mutex_unlock(&l->mu);
	while (q != NULL) {
		gw_req *r = q;
		q = r->next;
		gw_req_complete(l->g, r, NULL, PARLEY__ERROR_CODE__UNAVAILABLE);
	}
	/* Aborts what is in flight; callbacks fail their batches and, seeing
	 * stopping, start nothing new. */
	for (uint32_t i = 0; i < l->nctx; i++) {
		if (l->ctxs[i].aio != NULL)
			nng_aio_stop(l->ctxs[i].aio);
	}
	if (l->paio != NULL)
		nng_aio_stop(l->paio);
	/* An operation started on an aio that is already stopping never
	 * runs its callback (nng refuses to begin it): whatever a context
	 * still holds is failed here, and a message still set on an aio is
	 * freed, so nothing outlives the gateway. Every path that consumes
	 * an aio's message clears it. */
	for (uint32_t i = 0; i < l->nctx; i++) {
		batch_fail(&l->ctxs[i], PARLEY__ERROR_CODE__UNAVAILABLE);
		if (l->ctxs[i].aio != NULL)
			aio_msg_drop(l->ctxs[i].aio);
	}
	if (l->paio != NULL)
		aio_msg_drop(l->paio);
}

void gw_link_free(gw_link *l)
{
	if (l == NULL)
		return;
	for (uint32_t i = 0; l->ctxs != NULL && i < l->nctx; i++) {
		nng_aio_free(l->ctxs[i].aio);
		if (l->ctxs[i].aio != NULL)
			nng_ctx_close(l->ctxs[i].ctx);
	}
	if (l->paio != NULL) {
		nng_aio_free(l->paio);
		nng_ctx_close(l->pctx);
	}
	if (l->sock_open)
		nng_close(l->sock);
	pthread_mutex_destroy(&l->mu);
	pthread_mutex_destroy(&l->feed_mu);
	free(l->ctxs);
	free(l);
}
