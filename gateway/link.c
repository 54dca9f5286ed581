/*
 * link.c - the gateway's link to one shard group (internals.md): an nng
 * req0 socket per replica, each with several contexts, and the replica
 * believed to lead. This file builds, starts, stops and frees a link and
 * routes to links (by group, by weight); the link's jobs are in three
 * more files, which share link_int.h:
 *
 *   link_replica.c  the replica set: sockets, connection state, which
 *                   replica leads and following it through failover;
 *   link_batch.c    request batches: the bounded queue of lanes, one
 *                   GwBatch per free context, replies mapped back by id;
 *   link_poll.c     the live feed: one poll in flight at the leader,
 *                   replies handed to the feed in order, epochs.
 *
 * Requests end through their own done callback and the feed's events go
 * to the callbacks given to gw_link_new: the link calls no module above
 * it.
 */
#include <stdlib.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <sodium.h>

#include "proto/nng_close.h"
#include "gateway/link_int.h"

pl_status gw_link_new(
    gw *g, const gw_group_conf *conf, const gw_link_feed *feed, gw_link **out)
{
	gw_link *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return PL_E_NOMEM;
	l->g = g;
	l->conf = conf;
	l->feed = *feed;
	l->nctx = g->conf->broker_contexts;
	l->nrep = conf->nbrokers;
	l->timeout_ms = g->conf->broker_timeout_ms;
	if (l->nrep > 1 && g->conf->replica_timeout_ms < l->timeout_ms)
		l->timeout_ms = g->conf->replica_timeout_ms;
	for (int i = 0; i < l->nrep; i++) {
		l->reps[i].link = l;
		l->reps[i].idx = i;
		l->reps[i].addr = conf->brokers[i];
	}
	pthread_mutex_init(&l->mu, NULL);
	pthread_mutex_init(&l->feed_mu, NULL);
	l->ctxs = calloc(l->nctx, sizeof(*l->ctxs));
	if (l->ctxs == NULL ||
	    gw_lanes_init(
	        &l->lanes, (size_t)l->nctx * GW_LINK_BATCH_REQS_MAX) != PL_OK) {
		gw_link_free(l);
		return PL_E_NOMEM;
	}
	*out = l;
	return PL_OK;
}

static int ctxs_open(gw_link *l)
{
	int rv;
	for (uint32_t i = 0; i < l->nctx; i++) {
		gw_bctx *b = &l->ctxs[i];
		b->link = l;
		if ((rv = nng_aio_alloc(&b->aio, gw_link_bctx_cb, b)) != 0)
			return rv;
		for (int r = 0; r < l->nrep; r++) {
			if ((rv = nng_ctx_open(&b->ctx[r], l->reps[r].sock)) !=
			        0 ||
			    (rv = nng_ctx_set_ms(b->ctx[r],
			         NNG_OPT_REQ_RESENDTIME,
			         NNG_DURATION_INFINITE)) != 0)
				return rv;
		}
		b->next_idle = l->idle;
		l->idle = b;
	}
	if ((rv = nng_aio_alloc(&l->kaio, gw_link_kick_cb, l)) != 0 ||
	    (rv = nng_aio_alloc(&l->psaio, gw_link_poll_sleep_cb, l)) != 0)
		return rv;
	return nng_aio_alloc(&l->paio, gw_link_poll_cb, l);
}

pl_status gw_link_start(gw_link *l)
{
	int rv = 0, i = 0;
	for (; rv == 0 && i < l->nrep; i++)
		rv = gw_link_replica_open(&l->reps[i]);
	if (rv == 0)
		rv = ctxs_open(l);
	if (rv != 0) {
		PL_ERROR(GW_MOD,
		    "event=link_failed group=%u broker=%s err=\"%s\"",
		    (unsigned)l->conf->id, l->reps[i > 0 ? i - 1 : 0].addr,
		    nng_strerror(rv));
		return PL_E_IO;
	}
	for (i = 0; i < l->nrep; i++)
		PL_INFO(GW_MOD,
		    "event=link_dial group=%u broker=%s replica=%d/%d "
		    "contexts=%u timeout_ms=%u",
		    (unsigned)l->conf->id, l->reps[i].addr, i + 1, l->nrep,
		    l->nctx, l->timeout_ms);
	gw_link_poll_send(l);
	return PL_OK;
}

Parley__Internal__BrokerBatch *gw_link_reply_decode(
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

gw_link *gw_link_find(gw *g, uint16_t group)
{
	for (int i = 0; i < g->nlinks; i++) {
		if (g->links[i]->conf->id == group)
			return g->links[i];
	}
	return NULL;
}

uint16_t gw_link_group(const gw_link *l)
{
	return l->conf->id;
}

int gw_link_replicas(const gw_link *l)
{
	return l->nrep;
}

const char *gw_link_replica_addr(const gw_link *l, int rep)
{
	return l->reps[rep].addr;
}

int64_t gw_link_last_ok_us(const gw_link *l)
{
	return atomic_load(&l->last_ok_us);
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
	gw_req *q = gw_lanes_drain(&l->lanes);
	for (int i = 0; i < l->nrep; i++) {
		/* Pinned requests join the main list to be failed. */
		gw_replica *rp = &l->reps[i];
		if (rp->pq_head == NULL)
			continue;
		rp->pq_tail->next = q;
		q = rp->pq_head;
		rp->pq_head = rp->pq_tail = NULL;
	}
	l->qlen = 0;
	pthread_mutex_unlock(&l->mu);
	while (q != NULL) {
		gw_req *r = q;
		q = r->next;
		r->done(r, NULL, PARLEY__ERROR_CODE__UNAVAILABLE);
	}
	/* Aborts what is in flight; callbacks fail their batches and, seeing
	 * stopping, start nothing new. */
	for (uint32_t i = 0; i < l->nctx; i++) {
		if (l->ctxs[i].aio != NULL)
			nng_aio_stop(l->ctxs[i].aio);
	}
	if (l->paio != NULL)
		nng_aio_stop(l->paio);
	if (l->psaio != NULL)
		nng_aio_stop(l->psaio);
	if (l->kaio != NULL)
		nng_aio_stop(l->kaio);
	for (int i = 0; i < l->nrep; i++) {
		if (l->reps[i].naio != NULL)
			nng_aio_stop(l->reps[i].naio);
	}
	/* An operation started on an aio that is already stopping never
	 * runs its callback (nng refuses to begin it): whatever a context
	 * still holds is failed here, and a message still set on an aio is
	 * freed, so nothing outlives the gateway. Every path that consumes
	 * an aio's message clears it. */
	for (uint32_t i = 0; i < l->nctx; i++) {
		gw_link_batch_fail(
		    &l->ctxs[i], PARLEY__ERROR_CODE__UNAVAILABLE);
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
		for (int r = 0; l->ctxs[i].aio != NULL && r < l->nrep; r++)
			nng_ctx_close(l->ctxs[i].ctx[r]);
	}
	nng_aio_free(l->paio);
	nng_aio_free(l->psaio);
	nng_aio_free(l->kaio);
	/* Closing ends the pipes; their callbacks may still start naio,
	 * which is stopped (refused), so it is freed after. The replicas'
	 * sockets close together, under one bound. */
	nng_socket socks[GW_REPLICAS_MAX];
	int n = 0;
	for (int i = 0; i < l->nrep; i++) {
		gw_replica *rp = &l->reps[i];
		if (rp->pctx_open)
			nng_ctx_close(rp->pctx);
		if (rp->sock_open)
			socks[n++] = rp->sock;
	}
	(void)pl_nng_close_bounded(socks, n, GW_MOD, PL_NNG_CLOSE_MS);
	for (int i = 0; i < l->nrep; i++)
		nng_aio_free(l->reps[i].naio);
	gw_lanes_fini(&l->lanes);
	pthread_mutex_destroy(&l->mu);
	pthread_mutex_destroy(&l->feed_mu);
	free(l->ctxs);
	free(l);
}
