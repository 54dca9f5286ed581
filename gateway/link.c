/*
 * link.c - the gateway's link to one shard group (internals.md): several
 * contexts on each replica's broker socket (shared with other groups'
 * links, link_sock.c), and the replica believed to lead; and the table
 * of links, which the cluster map grows while connections read it. This file builds, starts, stops and frees a link and
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
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <sodium.h>

#include "proto/nng_close.h"
#include "gateway/link_int.h"

pl_status gw_link_new(
    gw *g, const gw_group_conf *conf, const gw_link_feed *feed, gw_link **out)
{
	PL_ASSERT(conf->nbrokers > 0 && conf->nbrokers <= GW_REPLICAS_MAX);
	gw_link *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return PL_E_NOMEM;
	l->g = g;
	l->id = conf->id;
	l->init = *conf;
	atomic_store(&l->weight, conf->weight);
	atomic_store(&l->draining, conf->draining);
	l->feed = *feed;
	l->nctx = g->conf->broker_contexts;
	atomic_store(&l->timeout_ms, g->conf->broker_timeout_ms);
	for (int i = 0; i < GW_REPLICAS_MAX; i++) {
		l->reps[i].link = l;
		l->reps[i].idx = i;
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

static int aios_open(gw_link *l)
{
	int rv;
	for (uint32_t i = 0; i < l->nctx; i++) {
		gw_bctx *b = &l->ctxs[i];
		b->link = l;
		if ((rv = nng_aio_alloc(&b->aio, gw_link_bctx_cb, b)) != 0)
			return rv;
	}
	for (int i = 0; i < GW_REPLICAS_MAX; i++) {
		if ((rv = nng_aio_alloc(&l->reps[i].naio,
		         gw_link_replica_down_cb, &l->reps[i])) != 0)
			return rv;
	}
	if ((rv = nng_aio_alloc(&l->kaio, gw_link_kick_cb, l)) != 0 ||
	    (rv = nng_aio_alloc(&l->psaio, gw_link_poll_sleep_cb, l)) != 0)
		return rv;
	return nng_aio_alloc(&l->paio, gw_link_poll_cb, l);
}

pl_status gw_link_start(gw_link *l)
{
	int rv = aios_open(l), i = 0;
	for (; rv == 0 && i < l->init.nbrokers; i++)
		rv = gw_link_replica_open(l, i, l->init.brokers[i]);
	if (rv != 0) {
		PL_ERROR(GW_MOD,
		    "event=link_failed group=%u broker=%s err=\"%s\"",
		    (unsigned)l->id, l->init.brokers[i > 0 ? i - 1 : 0],
		    nng_strerror(rv));
		return PL_E_IO;
	}
	pthread_mutex_lock(&l->mu);
	for (uint32_t c = 0; c < l->nctx; c++) {
		l->ctxs[c].next_idle = l->idle;
		l->idle = &l->ctxs[c];
	}
	pthread_mutex_unlock(&l->mu);
	for (i = 0; i < l->init.nbrokers; i++)
		PL_INFO(GW_MOD,
		    "event=link_dial group=%u broker=%s replica=%d/%d "
		    "contexts=%u timeout_ms=%u",
		    (unsigned)l->id, l->init.brokers[i], i + 1,
		    l->init.nbrokers, l->nctx, atomic_load(&l->timeout_ms));
	gw_link_poll_send(l);
	return PL_OK;
}

/* Whether some slot holds addr. */
static bool addr_used(gw_link *l, const char *addr)
{
	for (int i = 0; i < GW_REPLICAS_MAX; i++) {
		if (gw_link_replica_used(&l->reps[i]) &&
		    strcmp(gw_link_rep_addr(&l->reps[i]), addr) == 0)
			return true;
	}
	return false;
}

static bool addr_listed(const gw_group_conf *conf, const char *addr)
{
	for (int i = 0; i < conf->nbrokers; i++) {
		if (strcmp(conf->brokers[i], addr) == 0)
			return true;
	}
	return false;
}

/* A slot to drop (its address is no longer listed) or, with free, an
 * empty one; -1 when none. */
static int slot_find(gw_link *l, const gw_group_conf *conf, bool free)
{
	for (int i = 0; i < GW_REPLICAS_MAX; i++) {
		gw_replica *rp = &l->reps[i];
		if (free ? !gw_link_replica_used(rp)
		         : gw_link_replica_used(rp) &&
		               !addr_listed(conf, gw_link_rep_addr(rp)))
			return i;
	}
	return -1;
}

/* New addresses are opened before old ones are dropped, so the link
 * always has a replica and a moved leader is found by its hint. */
static void replicas_update(gw_link *l, const gw_group_conf *conf)
{
	for (int i = 0; i < conf->nbrokers; i++) {
		if (addr_used(l, conf->brokers[i]))
			continue;
		int slot = slot_find(l, conf, true);
		if (slot < 0) {
			int old = slot_find(l, conf, false);
			if (old < 0 || atomic_load(&l->nrep) < 2)
				break; /* cannot happen: at most 7 listed */
			gw_link_replica_close(l, old);
			slot = old;
		}
		int rv = gw_link_replica_open(l, slot, conf->brokers[i]);
		if (rv != 0) {
			PL_WARN(GW_MOD,
			    "event=replica_add_failed group=%u broker=%s "
			    "err=\"%s\"",
			    (unsigned)l->id, conf->brokers[i], nng_strerror(rv));
			continue;
		}
		PL_INFO(GW_MOD, "event=replica_added group=%u broker=%s",
		    (unsigned)l->id, conf->brokers[i]);
	}
	for (int old; (old = slot_find(l, conf, false)) >= 0;) {
		if (atomic_load(&l->nrep) < 2)
			break; /* none of the new ones opened: keep the last */
		gw_link_replica_close(l, old);
	}
}

void gw_link_update(gw_link *l, const gw_group_conf *conf)
{
	atomic_store(&l->weight, conf->weight);
	atomic_store(&l->draining, conf->draining);
	pthread_mutex_lock(&l->mu);
	bool stopping = l->stopping;
	pthread_mutex_unlock(&l->mu);
	if (!stopping && conf->nbrokers > 0)
		replicas_update(l, conf);
}

void gw_link_retire(gw_link *l)
{
	atomic_store(&l->draining, true);
}

bool gw_link_draining(const gw_link *l)
{
	return atomic_load(&l->draining);
}

uint32_t gw_link_weight(const gw_link *l)
{
	return atomic_load(&l->weight);
}

/* ---- the table of links ---- */

pl_status gw_links_init(gw *g)
{
	gw_links *v = calloc(1, sizeof(*v));
	if (v == NULL)
		return PL_E_NOMEM;
	atomic_store(&g->links, v);
	return PL_OK;
}

void gw_links_fini(gw *g)
{
	gw_links *v = atomic_load(&g->links);
	while (v != NULL) {
		gw_links *prev = v->prev;
		free(v);
		v = prev;
	}
	atomic_store(&g->links, NULL);
}

static gw_links *view(gw *g)
{
	return atomic_load_explicit(&g->links, memory_order_acquire);
}

gw_link *const *gw_links_view(gw *g, int *n)
{
	gw_links *v = view(g);
	*n = v->n;
	return v->l;
}

/* A view is never changed once published: adding a link makes a new
 * sorted copy and publishes it with release, so a reader that loaded a
 * view (acquire) sees every link in it fully built. The view replaced
 * is kept (a reader may still walk it) until gw_free: views are a few
 * pointers per group and change only when a map adds groups. */
pl_status gw_links_add(gw *g, gw_link *l)
{
	pthread_mutex_lock(&g->links_mu);
	gw_links *old = atomic_load(&g->links);
	if (old->n == GW_GROUPS_MAX) {
		pthread_mutex_unlock(&g->links_mu);
		return PL_E_TOO_LARGE;
	}
	gw_links *v =
	    malloc(sizeof(*v) + (size_t)(old->n + 1) * sizeof(v->l[0]));
	if (v == NULL) {
		pthread_mutex_unlock(&g->links_mu);
		return PL_E_NOMEM;
	}
	int j = 0;
	for (; j < old->n && old->l[j]->id < l->id; j++)
		v->l[j] = old->l[j];
	v->l[j] = l;
	for (; j < old->n; j++)
		v->l[j + 1] = old->l[j];
	v->n = old->n + 1;
	v->prev = old;
	atomic_store_explicit(&g->links, v, memory_order_release);
	pthread_mutex_unlock(&g->links_mu);
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
		    (unsigned)l->id, len);
		return NULL;
	}
	if (bb->gateways > 0) {
		gw_tenants_gateways(&l->g->tenants, bb->gateways);
		pl_metric_set(l->g->m.cluster_gateways, bb->gateways);
	}
	return bb;
}

gw_link *gw_link_find(gw *g, uint16_t group)
{
	gw_links *v = view(g);
	int lo = 0, hi = v->n;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		if (v->l[mid]->id == group)
			return v->l[mid];
		if (v->l[mid]->id < group)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

uint16_t gw_link_group(const gw_link *l)
{
	return l->id;
}

int gw_link_replicas(const gw_link *l)
{
	return atomic_load(&l->nrep);
}

const char *gw_link_replica_addr(const gw_link *l, int rep)
{
	if (rep < 0 || rep >= GW_REPLICAS_MAX ||
	    !gw_link_replica_used(&l->reps[rep]))
		return NULL;
	return gw_link_rep_addr(&l->reps[rep]);
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
	/* Weights are read once: a map may change them meanwhile, and the
	 * choice must land on a group the first pass counted. */
	gw_links *v = view(g);
	uint32_t *w = malloc(((size_t)v->n + 1) * sizeof(*w));
	if (w == NULL)
		return NULL;
	uint64_t total = 0;
	for (int i = 0; i < v->n; i++) {
		w[i] = atomic_load(&v->l[i]->draining)
		           ? 0
		           : atomic_load(&v->l[i]->weight);
		total += w[i];
	}
	gw_link *l = NULL;
	if (total > 0 && total <= UINT32_MAX) {
		uint32_t x = key != NULL && key[0] != '\0'
		                 ? (uint32_t)(key_hash(tenant, key) % total)
		                 : randombytes_uniform((uint32_t)total);
		for (int i = 0; l == NULL && i < v->n; i++) {
			if (x < w[i])
				l = v->l[i];
			else
				x -= w[i];
		}
	}
	free(w);
	return l;
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
	for (int i = 0; i < GW_REPLICAS_MAX; i++) {
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
	for (int i = 0; i < GW_REPLICAS_MAX; i++) {
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
		for (int r = 0; r < GW_REPLICAS_MAX; r++) {
			if (l->ctxs[i].ctx_open[r])
				nng_ctx_close(l->ctxs[i].ctx[r]);
		}
	}
	nng_aio_free(l->paio);
	nng_aio_free(l->psaio);
	nng_aio_free(l->kaio);
	/* Detached first: the socket's pipe callback may start a replica's
	 * naio until then (refused, it is stopped), so naio is freed after.
	 * The socket itself closes with its last reference. */
	for (int i = 0; i < GW_REPLICAS_MAX; i++) {
		gw_replica *rp = &l->reps[i];
		gw_sock *s = atomic_load(&rp->sock);
		if (rp->pctx_open)
			nng_ctx_close(rp->pctx);
		if (s != NULL)
			gw_sock_detach(s, rp);
		nng_aio_free(rp->naio);
		if (s != NULL)
			gw_sock_put(l->g, s);
		atomic_store(&rp->sock, NULL);
	}
	gw_lanes_fini(&l->lanes);
	pthread_mutex_destroy(&l->mu);
	pthread_mutex_destroy(&l->feed_mu);
	free(l->ctxs);
	free(l);
}
