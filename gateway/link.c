/*
 * link.c - the gateway's link to one shard group (internals.md): an nng
 * req0 socket per replica, each with several contexts, and the replica
 * believed to lead. Requests from every connection wait in one bounded
 * queue of lanes (lane.c: one per connection, in send order); a free
 * batch slot takes up to GW_BATCH_REQS_MAX of them into one GwBatch for
 * the leader and maps the BrokerBatch replies back by id. A lane with
 * requests in a batch sends nothing more until that batch is settled,
 * and what comes back to be sent again goes to its lane's front: a
 * connection's requests reach the leader in the order it sent them
 * (internals.md "Request order"). One more context keeps a live-feed
 * poll in flight at the leader.
 *
 * Following the leader (docs/replication.md "Gateways follow
 * leadership"): a replica that does not lead answers not_leader, with
 * the leader's address when it knows it; the gateway moves there (or, on
 * no hint, to the next replica after GW_LEADER_BACKOFF_MS) and sends the
 * refused requests again. A batch without an answer (a dead or stopped
 * replica) moves to the next replica too; its requests are sent again
 * when that is safe (failover.c), all within failover_ms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <sodium.h>

#include "proto/nng_close.h"
#include "proto/splice.h"
#include "gateway/link_int.h"

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000

enum { POLL_SEND, POLL_RECV };

static void bctx_cb(void *arg);
static void poll_cb(void *arg);
static void poll_sleep_cb(void *arg);
static void kick_cb(void *arg);
static void replica_down_cb(void *arg);
static void poll_send(gw_link *l);

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
	    gw_lanes_init(&l->lanes, (size_t)l->nctx * GW_BATCH_REQS_MAX) !=
	        PL_OK) {
		gw_link_free(l);
		return PL_E_NOMEM;
	}
	*out = l;
	return PL_OK;
}

static bool replica_up(gw_replica *rp)
{
	return atomic_load(&rp->pipe_id) != 0;
}

/* nng's pipe callback: it may not touch the socket, so a lost
 * connection is only noted here and handled on the replica's naio. A
 * replica dials one address, so it has one pipe at a time; the id makes
 * a late removal of an older pipe harmless. */
static void pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	gw_replica *rp = arg;
	uint32_t id = nng_pipe_id(p);
	if (ev == NNG_PIPE_EV_ADD_POST) {
		atomic_store(&rp->pipe_id, id);
		return;
	}
	if (ev != NNG_PIPE_EV_REM_POST ||
	    !atomic_compare_exchange_strong(&rp->pipe_id, &id, 0))
		return;
	if (!atomic_exchange(&rp->down_armed, true))
		nng_sleep_aio(0, rp->naio);
}

static int socket_open(gw_replica *rp)
{
	int rv = nng_req0_open(&rp->sock);
	if (rv != 0)
		return rv;
	rp->sock_open = true;
	/* Never resend inside nng: a batch may hold creates and joins that
	 * must not run twice behind the client's back. The link decides
	 * what is sent again (failover.c). */
	if ((rv = nng_socket_set_ms(rp->sock, NNG_OPT_REQ_RESENDTIME,
	         NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_size(
	         rp->sock, NNG_OPT_RECVMAXSZ, PL_FRAME_BYTES_CEIL)) != 0 ||
	    (rv = nng_socket_set_ms(
	         rp->sock, NNG_OPT_RECONNMINT, RECONNECT_MIN_MS)) != 0 ||
	    (rv = nng_socket_set_ms(
	         rp->sock, NNG_OPT_RECONNMAXT, RECONNECT_MAX_MS)) != 0 ||
	    (rv = nng_pipe_notify(
	         rp->sock, NNG_PIPE_EV_ADD_POST, pipe_cb, rp)) != 0 ||
	    (rv = nng_pipe_notify(
	         rp->sock, NNG_PIPE_EV_REM_POST, pipe_cb, rp)) != 0 ||
	    (rv = nng_aio_alloc(&rp->naio, replica_down_cb, rp)) != 0)
		return rv;
	if ((rv = nng_ctx_open(&rp->pctx, rp->sock)) != 0)
		return rv;
	rp->pctx_open = true;
	if ((rv = nng_ctx_set_ms(
	         rp->pctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0)
		return rv;
	/* Non-blocking: a broker that is not up yet is dialed again. */
	return nng_dial(rp->sock, rp->addr, NULL, NNG_FLAG_NONBLOCK);
}

static int ctxs_open(gw_link *l)
{
	int rv;
	for (uint32_t i = 0; i < l->nctx; i++) {
		gw_bctx *b = &l->ctxs[i];
		b->link = l;
		if ((rv = nng_aio_alloc(&b->aio, bctx_cb, b)) != 0)
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
	if ((rv = nng_aio_alloc(&l->kaio, kick_cb, l)) != 0 ||
	    (rv = nng_aio_alloc(&l->psaio, poll_sleep_cb, l)) != 0)
		return rv;
	return nng_aio_alloc(&l->paio, poll_cb, l);
}

pl_status gw_link_start(gw_link *l)
{
	int rv = 0, i = 0;
	for (; rv == 0 && i < l->nrep; i++)
		rv = socket_open(&l->reps[i]);
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
	poll_send(l);
	return PL_OK;
}

/* ---- which replica leads ---- */

/* With l->mu held: the next replica after `from` that has a connection,
 * or simply the next one when none has. */
static int replica_next_locked(gw_link *l, int from)
{
	for (int k = 1; k < l->nrep; k++) {
		int i = (from + k) % l->nrep;
		if (replica_up(&l->reps[i]))
			return i;
	}
	return (from + 1) % l->nrep;
}

static void leader_set_locked(gw_link *l, int to, const char *why)
{
	int from = atomic_load(&l->cur);
	if (to == from)
		return;
	atomic_store(&l->cur, to);
	PL_INFO(GW_MOD, "event=leader_switch group=%u from=%s to=%s reason=%s",
	    (unsigned)l->conf->id, l->reps[from].addr, l->reps[to].addr, why);
}

/* With l->mu held: replica `from` answered that it does not lead. Only
 * an answer from the current replica moves the link: a late one from a
 * replica already left behind says nothing new. */
static void leader_moved_locked(gw_link *l, int from, const char *hint)
{
	if (from != atomic_load(&l->cur))
		return;
	int h = gw_replica_match(l->conf, hint);
	if (h >= 0 && h != from && replica_up(&l->reps[h])) {
		leader_set_locked(l, h, "hint");
		l->hold_until_us = 0;
		return;
	}
	/* No usable hint (none yet, or the old leader, now gone): an
	 * election is under way. Ask around, pausing between replicas. */
	if (l->nrep > 1)
		leader_set_locked(l, replica_next_locked(l, from), "no_leader");
	l->hold_until_us = pl_mono_us() + GW_LEADER_BACKOFF_MS * 1000;
}

/* With l->mu held: replica `from` did not answer (timeout, lost
 * connection). With several replicas the next one is asked at once: it
 * answers, or names the leader, or says there is none yet. */
static void leader_lost_locked(gw_link *l, int from)
{
	if (l->nrep > 1 && !l->stopping && from == atomic_load(&l->cur))
		leader_set_locked(l, replica_next_locked(l, from), "no_answer");
}

/* With l->mu held: where a batch for the leader goes now. A current
 * replica without a connection is passed over for one that has one:
 * a request sent to it would only wait for its timeout. */
static int leader_dest_locked(gw_link *l)
{
	int cur = atomic_load(&l->cur);
	if (l->nrep > 1 && !replica_up(&l->reps[cur])) {
		int n = replica_next_locked(l, cur);
		if (replica_up(&l->reps[n])) {
			leader_set_locked(l, n, "disconnected");
			cur = n;
		}
	}
	return cur;
}

/* ---- request batches ---- */

/* GwBatch is written by splicing (proto/splice.h): each request was
 * packed once when it was queued (without its id); here it becomes a reqs
 * record with its id put in front, without unpacking anything. */
static size_t batch_size(const gw_bctx *b, const char *gwid)
{
	size_t n = pl_splice_gw_batch_gateway_len(gwid);
	for (uint32_t i = 0; i < b->n; i++)
		n += pl_splice_gw_request_len(b->base + i, b->reqs[i]->len);
	return n;
}

static void batch_write(const gw_bctx *b, const char *gwid, uint8_t *p)
{
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
	while (*head != NULL && b->n < GW_BATCH_REQS_MAX) {
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
	b->n = gw_lanes_take(&l->lanes, b->reqs, GW_BATCH_REQS_MAX);
	for (uint32_t i = 0; i < b->n; i++)
		b->lanes[i] = b->reqs[i]->lane;
	b->nlanes = b->n;
	l->qlen -= b->n;
}

/* With l->mu held: wakes the idle contexts when the hold ends. Started
 * under mu after checking stopping, like a poll (see poll_send). */
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
	for (int i = 0; i < l->nrep; i++) {
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
	b->rep = (int8_t)leader_dest_locked(l);
	lanes_take_locked(l, b);
	return true;
}

static void batch_fail(gw_bctx *b, int code)
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
		 * GW_BATCH_REQS_MAX. */
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
	b->base = atomic_fetch_add(&l->g->req_ids, b->n) + 1;
	if (nng_msg_alloc(&m, batch_size(b, gwid)) != 0)
		return false;
	batch_write(b, gwid, nng_msg_body(m));
	nng_aio_set_msg(b->aio, m);
	nng_aio_set_timeout(b->aio, (nng_duration)l->timeout_ms);
	b->t0_us = pl_mono_us();
	b->receiving = false;
	b->busy = true;
	nng_ctx_send(b->ctx[b->rep], b->aio);
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
		batch_fail(b, PARLEY__ERROR_CODE__INTERNAL);
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
			batch_fail(b, PARLEY__ERROR_CODE__INTERNAL);
			batch_settle(b, NULL, 0);
			bctx_next(b);
		}
	}
}

static void kick_cb(void *arg)
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
		gw_replica *rp = &l->reps[r->pin];
		if (!replica_up(rp)) {
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

static void batch_epoch(gw_link *l, const char *epoch)
{
	pthread_mutex_lock(&l->feed_mu);
	bool changed = epoch_update(l, epoch);
	pthread_mutex_unlock(&l->feed_mu);
	if (changed)
		l->feed.on_epoch(l->feed.ctx, l->conf->id);
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
	                      (r->flags & GW_REQF_RESEND_SAFE) != 0, l->nrep,
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
		leader_moved_locked(l, b->rep, bb->leader_hint);
		pthread_mutex_unlock(&l->mu);
		return;
	}
	atomic_store(&l->last_ok_us, pl_mono_us());
	/* A pinned batch is a replica's own status, maybe a follower's:
	 * its epoch is not the feed's. */
	if (!b->pinned && b->rep == atomic_load(&l->cur))
		batch_epoch(l, bb->epoch);
}

static void batch_reply(gw_bctx *b, nng_msg *m)
{
	gw_link *l = b->link;
	gw *g = l->g;
	pl_arena a = {0};
	gw_req *again[GW_BATCH_REQS_MAX];
	uint32_t nagain = 0;
	pl_hist_record(
	    g->m.broker_rtt->hist, (uint64_t)(pl_mono_us() - b->t0_us));
	Parley__Internal__BrokerBatch *bb = reply_decode(l, m, &a);
	if (bb == NULL) {
		batch_fail(b, PARLEY__ERROR_CODE__INTERNAL);
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
			    (unsigned)l->conf->id, (unsigned long long)f->id,
			    (unsigned long long)b->base, b->n);
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
		l->feed.on_events(l->feed.ctx, l->conf->id, bb);
		pthread_mutex_unlock(&l->feed_mu);
	}
	batch_fail(b, PARLEY__ERROR_CODE__INTERNAL); /* unanswered ones */
	pl_arena_fini(&a);
	batch_settle(b, again, nagain);
}

/* The batch got no answer: its outcome is unknown. With several
 * replicas the next one is asked and what may be re-sent is; with one,
 * the client hears unavailable at once (and retries by itself). */
static void batch_lost(gw_bctx *b)
{
	gw_link *l = b->link;
	gw_req *again[GW_BATCH_REQS_MAX];
	uint32_t nagain = 0;
	if (!b->pinned) {
		pthread_mutex_lock(&l->mu);
		leader_lost_locked(l, b->rep);
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
		        (r->flags & GW_REQF_RESEND_SAFE) != 0, l->nrep, now,
		        r->deadline_us) == GW_RETRY_RESEND)
			again[nagain++] = r;
		else
			r->done(r, NULL, PARLEY__ERROR_CODE__UNAVAILABLE);
	}
	b->n = 0;
	batch_settle(b, again, nagain);
}

static void bctx_cb(void *arg)
{
	gw_bctx *b = arg;
	gw_link *l = b->link;
	int rv = nng_aio_result(b->aio);
	if (!b->receiving && rv == 0) {
		b->receiving = true;
		nng_aio_set_timeout(b->aio, (nng_duration)l->timeout_ms);
		nng_ctx_recv(b->ctx[b->rep], b->aio);
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
		    (unsigned)l->conf->id, l->reps[b->rep].addr, b->n,
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

/* A replica's connection is gone (nng_sleep_aio from pipe_cb): the link
 * leaves it, and whatever waits on it is cancelled now rather than at
 * its timeout (replies already on their way were answered by nng with a
 * reset; what was sent after the loss would only wait). */
static void replica_down_cb(void *arg)
{
	gw_replica *rp = arg;
	gw_link *l = rp->link;
	atomic_store(&rp->down_armed, false);
	if (nng_aio_result(rp->naio) != 0)
		return;
	pthread_mutex_lock(&l->mu);
	if (l->stopping || replica_up(rp)) {
		pthread_mutex_unlock(&l->mu);
		return;
	}
	PL_INFO(GW_MOD, "event=replica_disconnected group=%u broker=%s",
	    (unsigned)l->conf->id, rp->addr);
	leader_lost_locked(l, rp->idx);
	/* Cancelling only completes the aios; their callbacks run on
	 * nng's threads and take mu after we release it. */
	for (uint32_t i = 0; i < l->nctx; i++) {
		if (l->ctxs[i].busy && l->ctxs[i].rep == rp->idx)
			nng_aio_cancel(l->ctxs[i].aio);
	}
	if (l->nrep > 1 && l->poll_rep == rp->idx)
		nng_aio_cancel(l->paio);
	pthread_mutex_unlock(&l->mu);
}

/* ---- live feed ---- */

/* The wait between polls has its own aio: nng 1.5 leaves an aio that
 * once slept marked as sleeping, and a later timeout on it would then
 * complete as a success without a message. */
static void poll_sleep(gw_link *l, int64_t ms)
{
	nng_sleep_aio((nng_duration)ms, l->psaio);
}

static void poll_sleep_cb(void *arg)
{
	gw_link *l = arg;
	if (nng_aio_result(l->psaio) == 0)
		poll_send(l); /* cancelled only by gw_link_stop */
}

/* After a failed poll, wait before polling again: no busy loop while a
 * broker is down. With several replicas the link has moved on already,
 * so only the leader backoff is waited. */
static void poll_retry_later(gw_link *l)
{
	poll_sleep(l, l->nrep > 1 ? GW_LEADER_BACKOFF_MS : GW_POLL_RETRY_MS);
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
	int64_t now = pl_mono_us();
	if (now < l->hold_until_us) {
		/* No leader known yet: ask again when the hold ends. */
		poll_sleep(l, (l->hold_until_us - now) / 1000 + 1);
		pthread_mutex_unlock(&l->mu);
		nng_msg_free(m);
		return;
	}
	l->poll_rep = leader_dest_locked(l);
	nng_aio_set_msg(l->paio, m);
	nng_aio_set_timeout(
	    l->paio, (nng_duration)(GW_POLL_WAIT_MS + l->timeout_ms));
	l->poll_phase = POLL_SEND;
	nng_ctx_send(l->reps[l->poll_rep].pctx, l->paio);
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
 * are processed in the order the broker sent them. A replica that does
 * not lead answers at once with no events: the link moves (see
 * leader_moved_locked) before the next poll is sent. */
static void poll_reply(gw_link *l)
{
	pthread_mutex_lock(&l->feed_mu);
	nng_msg *m = nng_aio_get_msg(l->paio);
	nng_aio_set_msg(l->paio, NULL);
	pl_arena a = {0};
	Parley__Internal__BrokerBatch *bb = reply_decode(l, m, &a);
	pthread_mutex_lock(&l->mu);
	int from = l->poll_rep;
	if (bb != NULL && bb->not_leader)
		leader_moved_locked(l, from, bb->leader_hint);
	bool current = from == atomic_load(&l->cur);
	pthread_mutex_unlock(&l->mu);
	poll_send(l);
	bool changed = false;
	if (bb != NULL && !bb->not_leader) {
		atomic_store(&l->last_ok_us, pl_mono_us());
		/* A replica left behind may still answer once: its events
		 * are real, its epoch is not the feed's any more. */
		if (current)
			changed = epoch_update(l, bb->epoch);
		l->feed.on_events(l->feed.ctx, l->conf->id, bb);
	}
	pthread_mutex_unlock(&l->feed_mu);
	if (changed)
		l->feed.on_epoch(l->feed.ctx, l->conf->id);
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
	if (rv == 0 && phase == POLL_RECV && nng_aio_get_msg(l->paio) == NULL)
		rv = NNG_EINTERNAL; /* never seen since psaio; not trusted */
	if (rv != 0) {
		/* The broker may be down: another replica may lead. */
		PL_DEBUG(GW_MOD, "event=poll_failed group=%u err=\"%s\"",
		    (unsigned)l->conf->id, nng_strerror(rv));
		pthread_mutex_lock(&l->mu);
		leader_lost_locked(l, l->poll_rep);
		pthread_mutex_unlock(&l->mu);
		poll_retry_later(l);
	} else if (phase == POLL_SEND) {
		l->poll_phase = POLL_RECV;
		nng_ctx_recv(l->reps[l->poll_rep].pctx, l->paio);
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
