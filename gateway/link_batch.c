/*
 * link_batch.c - a link's request batches (internals.md). Requests from
 * every connection wait in one bounded queue of lanes (lane.c: one per
 * connection, in send order); a free batch slot takes up to
 * GW_LINK_BATCH_REQS_MAX of them into one GwBatch for the leader and
 * maps the BrokerBatch replies back by id. A lane with requests in a
 * batch sends nothing more until that batch is settled, and what comes
 * back to be sent again goes to its lane's front: a connection's
 * requests reach the leader in the order it sent them (internals.md
 * "Request order"). A refused or unanswered batch moves the link
 * (link_replica.c); its requests are sent again when that is safe
 * (failover.c), all within failover_ms. Each request ends through its
 * own done callback.
 */
#include <string.h>

#include <nng/nng.h>

#include "proto/splice.h"
#include "gateway/link_int.h"

/* GwBatch is written by splicing (proto/splice.h): each request was
 * packed once when it was queued (without its id); here it becomes a reqs
 * record with its id put in front, without unpacking anything. */
static size_t batch_size(const gw_bctx *b, size_t group_len, const char *gwid)
{
	size_t n = group_len + pl_splice_gw_batch_gateway_len(gwid);
	for (uint32_t i = 0; i < b->n; i++)
		n += pl_splice_gw_request_len(b->base + i, b->reqs[i]->len);
	return n;
}

static void batch_write(const gw_bctx *b, const uint8_t *group,
    size_t group_len, const char *gwid, uint8_t *p)
{
	/* The group goes first: a broker hosting many groups routes the
	 * batch by peeking at its first bytes. */
	memcpy(p, group, group_len);
	p += group_len;
	p += pl_splice_gw_batch_gateway(p, gwid);
	for (uint32_t i = 0; i < b->n; i++)
		p += pl_splice_gw_request(
		    p, b->base + i, b->reqs[i]->body, b->reqs[i]->len);
}

/* With l->mu held: moves up to a batch's worth from a replica's pinned
 * queue into b. Pinned requests (status parts) are in no lane. */
static void pinned_take_locked(
    gw_link *l, gw_req **head, gw_req **tail, gw_bctx *b)
{
	size_t bytes = 0, reply = 0;
	b->n = 0;
	b->nlanes = 0;
	while (*head != NULL && b->n < GW_LINK_BATCH_REQS_MAX) {
		gw_req *r = *head;
		if (b->n > 0 && (bytes + r->len + GW_REQ_OVERHEAD_BYTES >
		                        GW_BATCH_BYTES_MAX ||
		                    reply + r->reply_est > GW_BATCH_BYTES_MAX))
			break;
		*head = r->next;
		if (*head == NULL)
			*tail = NULL;
		l->qlen--;
		r->next = NULL;
		bytes += r->len + GW_REQ_OVERHEAD_BYTES;
		reply += r->reply_est;
		b->reqs[b->n++] = r;
	}
}

/* With l->mu held: the next batch from the lanes; its lanes are busy
 * until batch_settle. */
static void lanes_take_locked(gw_link *l, gw_bctx *b)
{
	b->n = gw_lanes_take(&l->lanes, b->reqs, GW_LINK_BATCH_REQS_MAX);
	for (uint32_t i = 0; i < b->n; i++)
		b->lanes[i] = b->reqs[i]->lane;
	b->nlanes = b->n;
	l->qlen -= b->n;
}

/* With l->mu held: wakes the idle contexts when the hold ends. Started
 * under mu after checking stopping, like a poll (see gw_link_poll_send). */
static void kick_arm_locked(gw_link *l, int64_t now)
{
	if (l->kick_armed || l->stopping)
		return;
	l->kick_armed = true;
	nng_sleep_aio(
	    (nng_duration)((l->hold_until_us - now) / 1000 + 1), l->kaio);
}

/* With l->mu held: fills b with the next batch that may leave now, and
 * says where it goes. Requests pinned to a replica go first and ignore
 * the hold (they ask that replica only); the main queue waits while a
 * leaderless answer holds it. False when there is nothing to send. */
static bool work_take_locked(gw_link *l, gw_bctx *b)
{
	for (int i = 0; i < GW_REPLICAS_MAX; i++) {
		gw_replica *rp = &l->reps[i];
		if (rp->pq_head == NULL)
			continue;
		pinned_take_locked(l, &rp->pq_head, &rp->pq_tail, b);
		b->pinned = true;
		b->rep = (int8_t)i;
		return true;
	}
	if (!gw_lanes_has_ready(&l->lanes))
		return false;
	int64_t now = pl_mono_us();
	if (now < l->hold_until_us) {
		kick_arm_locked(l, now);
		return false;
	}
	b->pinned = false;
	b->rep = (int8_t)gw_link_leader_dest_locked(l);
	lanes_take_locked(l, b);
	return true;
}

void gw_link_batch_fail(gw_bctx *b, int code)
{
	for (uint32_t i = 0; i < b->n; i++) {
		if (b->reqs[i] != NULL)
			b->reqs[i]->done(b->reqs[i], NULL, code);
		b->reqs[i] = NULL;
	}
	b->n = 0;
}

static void link_pump(gw_link *l);

/* A batch is over: what is to be sent again goes back to the front of
 * its lanes, in its order, and only then are the batch's lanes released,
 * under one lock, so no later request of a lane can slip in before the
 * ones that came back. When stopping, they are failed instead. */
static void batch_settle(gw_bctx *b, gw_req **again, uint32_t nagain)
{
	gw_link *l = b->link;
	pthread_mutex_lock(&l->mu);
	bool stopping = l->stopping;
	if (!stopping && nagain > 0) {
		uint32_t before = l->lanes.queued;
		if (gw_lanes_push_front(&l->lanes, again, nagain) != PL_OK)
			stopping = true; /* what is left is failed below */
		/* Counted against broker_queue_max when first queued and not
		 * refused now: at most nctx batches come back at once, so
		 * the queue stays within broker_queue_max + nctx x
		 * GW_LINK_BATCH_REQS_MAX. */
		l->qlen += l->lanes.queued - before;
	}
	gw_lanes_release(&l->lanes, b->lanes, b->nlanes);
	b->nlanes = 0;
	pthread_mutex_unlock(&l->mu);
	for (uint32_t i = 0; i < nagain; i++) {
		if (again[i] != NULL)
			again[i]->done(
			    again[i], NULL, PARLEY__ERROR_CODE__UNAVAILABLE);
	}
	/* Released lanes may have requests waiting: idle slots take them
	 * too, not only the slot this batch frees. */
	if (!stopping)
		link_pump(l);
}

/* With l->mu held, so batches reach the sockets in queue order and one
 * connection's pipelined requests are not reordered between contexts.
 * False when the message could not be built (the batch is still b's). */
static bool batch_send_locked(gw_bctx *b)
{
	gw_link *l = b->link;
	const char *gwid = l->g->conf->id;
	nng_msg *m;
	PL_ASSERT(b->n <= GW_LINK_BATCH_REQS_MAX);
	uint8_t group[PL_SPLICE_HEADER_BYTES_MAX];
	size_t glen = pl_splice_gw_batch_group(group, l->id);
	b->base = atomic_fetch_add(&l->g->req_ids, b->n) + 1;
	if (nng_msg_alloc(&m, batch_size(b, glen, gwid)) != 0)
		return false;
	batch_write(b, group, glen, gwid, nng_msg_body(m));
	nng_aio_set_msg(b->aio, m);
	nng_aio_set_timeout(b->aio, (nng_duration)atomic_load(&l->timeout_ms));
	b->t0_us = pl_mono_us();
	b->receiving = false;
	b->busy = true;
	PL_ASSERT(b->ctx_open[b->rep]);
	b->cur_ctx = b->ctx[b->rep];
	nng_ctx_send(b->cur_ctx, b->aio);
	return true;
}

/* A context is free: start its next batch or park it. */
static void bctx_next(gw_bctx *b)
{
	gw_link *l = b->link;
	for (;;) {
		pthread_mutex_lock(&l->mu);
		b->busy = false;
		if (l->stopping || !work_take_locked(l, b)) {
			if (!l->stopping) {
				b->next_idle = l->idle;
				l->idle = b;
			}
			pthread_mutex_unlock(&l->mu);
			return;
		}
		bool sent = batch_send_locked(b);
		pthread_mutex_unlock(&l->mu);
		if (sent)
			return;
		gw_link_batch_fail(b, PARLEY__ERROR_CODE__INTERNAL);
		batch_settle(b, NULL, 0);
	}
}

/* Puts idle contexts to work while there is something to send. */
static void link_pump(gw_link *l)
{
	for (;;) {
		pthread_mutex_lock(&l->mu);
		gw_bctx *b = l->idle;
		if (b == NULL || l->stopping || !work_take_locked(l, b)) {
			pthread_mutex_unlock(&l->mu);
			return;
		}
		l->idle = b->next_idle;
		bool sent = batch_send_locked(b);
		pthread_mutex_unlock(&l->mu);
		if (!sent) {
			gw_link_batch_fail(b, PARLEY__ERROR_CODE__INTERNAL);
			batch_settle(b, NULL, 0);
			bctx_next(b);
		}
	}
}

void gw_link_kick_cb(void *arg)
{
	gw_link *l = arg;
	pthread_mutex_lock(&l->mu);
	l->kick_armed = false;
	pthread_mutex_unlock(&l->mu);
	if (nng_aio_result(l->kaio) == 0)
		link_pump(l);
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
	if (r->pin >= 0) {
		gw_replica *rp = &l->reps[r->pin % GW_REPLICAS_MAX];
		if (r->pin >= GW_REPLICAS_MAX || !gw_link_replica_up(rp)) {
			pthread_mutex_unlock(&l->mu);
			return PL_E_UNAVAILABLE;
		}
		r->next = NULL;
		if (rp->pq_tail != NULL)
			rp->pq_tail->next = r;
		else
			rp->pq_head = r;
		rp->pq_tail = r;
	} else if (gw_lanes_push(&l->lanes, r) != PL_OK) {
		pthread_mutex_unlock(&l->mu);
		return PL_E_NOMEM;
	}
	l->qlen++;
	pthread_mutex_unlock(&l->mu);
	link_pump(l);
	return PL_OK;
}

/* True when f, the answer to r, asks for another attempt and the policy
 * grants one. An unavailable answer given to the client instead loses
 * its leader_hint: a broker address means nothing to a client. */
static bool reply_resend(
    const gw_link *l, const gw_bctx *b, gw_req *r, Parley__ServerFrame *f)
{
	if (f->body_case != PARLEY__SERVER_FRAME__BODY_ERROR ||
	    f->error->code != PARLEY__ERROR_CODE__UNAVAILABLE)
		return false;
	Parley__Error *e = f->error;
	if (!b->pinned && gw_retry_decide(e->not_applied ? GW_OUT_NOT_APPLIED
	                                                 : GW_OUT_UNKNOWN,
	                      (r->flags & GW_REQF_RESEND_SAFE) != 0, atomic_load(&l->nrep),
	                      pl_mono_us(), r->deadline_us) == GW_RETRY_RESEND)
		return true;
	e->leader_hint = "";
	return false;
}

/* Who answered and what it says about leadership: a refusal moves the
 * link; an answer is the group's health, and the leader's carries the
 * feed's epoch. */
static void reply_leadership(gw_bctx *b, Parley__Internal__BrokerBatch *bb)
{
	gw_link *l = b->link;
	if (bb->not_leader) {
		pthread_mutex_lock(&l->mu);
		gw_link_leader_moved_locked(l, b->rep, bb->leader_hint);
		pthread_mutex_unlock(&l->mu);
		return;
	}
	atomic_store(&l->last_ok_us, pl_mono_us());
	/* A pinned batch is a replica's own status, maybe a follower's:
	 * its epoch is not the feed's. */
	if (!b->pinned && b->rep == atomic_load(&l->cur))
		gw_link_batch_epoch(l, bb->epoch);
}

static void batch_reply(gw_bctx *b, nng_msg *m)
{
	gw_link *l = b->link;
	gw *g = l->g;
	pl_arena a = {0};
	gw_req *again[GW_LINK_BATCH_REQS_MAX];
	uint32_t nagain = 0;
	pl_hist_record(
	    g->m.broker_rtt->hist, (uint64_t)(pl_mono_us() - b->t0_us));
	Parley__Internal__BrokerBatch *bb = gw_link_reply_decode(l, m, &a);
	if (bb == NULL) {
		gw_link_batch_fail(b, PARLEY__ERROR_CODE__INTERNAL);
		pl_arena_fini(&a);
		batch_settle(b, NULL, 0);
		return;
	}
	reply_leadership(b, bb);
	for (size_t i = 0; i < bb->n_replies; i++) {
		Parley__ServerFrame *f = bb->replies[i];
		uint64_t idx = f->id - b->base;
		if (f->id < b->base || idx >= b->n || b->reqs[idx] == NULL) {
			PL_DEBUG(GW_MOD,
			    "event=reply_unmatched group=%u id=%llu "
			    "base=%llu n=%u",
			    (unsigned)l->id, (unsigned long long)f->id,
			    (unsigned long long)b->base, b->n);
			pl_metric_inc(g->m.replies_unmatched, 1);
			continue; /* not ours: ignore rather than trust */
		}
		gw_req *r = b->reqs[idx];
		b->reqs[idx] = NULL;
		if (reply_resend(l, b, r, f))
			again[nagain++] = r;
		else
			r->done(r, f, 0);
	}
	if (!bb->not_leader && (bb->n_events > 0 || bb->overflow)) {
		pthread_mutex_lock(&l->feed_mu);
		l->feed.on_events(l->feed.ctx, l->id, bb);
		pthread_mutex_unlock(&l->feed_mu);
	}
	gw_link_batch_fail(
	    b, PARLEY__ERROR_CODE__INTERNAL); /* unanswered ones */
	pl_arena_fini(&a);
	batch_settle(b, again, nagain);
}

/* The batch got no answer: its outcome is unknown. With several
 * replicas the next one is asked and what may be re-sent is; with one,
 * the client hears unavailable at once (and retries by itself). */
static void batch_lost(gw_bctx *b)
{
	gw_link *l = b->link;
	gw_req *again[GW_LINK_BATCH_REQS_MAX];
	uint32_t nagain = 0;
	if (!b->pinned) {
		pthread_mutex_lock(&l->mu);
		gw_link_leader_lost_locked(l, b->rep);
		pthread_mutex_unlock(&l->mu);
	}
	int64_t now = pl_mono_us();
	for (uint32_t i = 0; i < b->n; i++) {
		gw_req *r = b->reqs[i];
		b->reqs[i] = NULL;
		if (r == NULL)
			continue;
		if (!b->pinned &&
		    gw_retry_decide(GW_OUT_LOST,
		        (r->flags & GW_REQF_RESEND_SAFE) != 0, atomic_load(&l->nrep), now,
		        r->deadline_us) == GW_RETRY_RESEND)
			again[nagain++] = r;
		else
			r->done(r, NULL, PARLEY__ERROR_CODE__UNAVAILABLE);
	}
	b->n = 0;
	batch_settle(b, again, nagain);
}

void gw_link_bctx_cb(void *arg)
{
	gw_bctx *b = arg;
	gw_link *l = b->link;
	int rv = nng_aio_result(b->aio);
	if (!b->receiving && rv == 0) {
		b->receiving = true;
		nng_aio_set_timeout(
		    b->aio, (nng_duration)atomic_load(&l->timeout_ms));
		nng_ctx_recv(b->cur_ctx, b->aio);
		return;
	}
	if (rv != 0) {
		if (!b->receiving) {
			nng_msg_free(nng_aio_get_msg(b->aio));
			nng_aio_set_msg(b->aio, NULL);
		}
		PL_WARN(GW_MOD,
		    "event=broker_batch_failed group=%u broker=%s reqs=%u "
		    "err=\"%s\"",
		    (unsigned)l->id, gw_link_rep_addr(&l->reps[b->rep]), b->n,
		    nng_strerror(rv));
		batch_lost(b);
	} else {
		nng_msg *m = nng_aio_get_msg(b->aio);
		nng_aio_set_msg(b->aio, NULL);
		batch_reply(b, m);
		nng_msg_free(m);
	}
	b->receiving = false;
	bctx_next(b);
}
