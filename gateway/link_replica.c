/*
 * link_replica.c - a link's replica set (docs/replication.md "Gateways
 * follow leadership"): each replica's socket and whether it has a
 * connection, and which replica the link believes leads. A replica that
 * does not lead answers not_leader, with the leader's address when it
 * knows it; the link moves there (or, on no hint, to the next replica
 * after GW_LEADER_BACKOFF_MS). A replica that does not answer, or whose
 * connection drops, is left for the next one. Everything named _locked
 * runs with the link's mu held. Replicas sit in stable slots that the
 * cluster map fills and empties (gw_link_replica_open/close); each uses
 * its broker's shared socket (link_sock.c).
 */
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "gateway/link_int.h"

bool gw_link_replica_used(const gw_replica *rp)
{
	return atomic_load(&rp->sock) != NULL;
}

bool gw_link_replica_up(gw_replica *rp)
{
	gw_sock *s = atomic_load(&rp->sock);
	return s != NULL && atomic_load(&s->pipe_id) != 0;
}

const char *gw_link_rep_addr(const gw_replica *rp)
{
	gw_sock *s = atomic_load(&rp->sock);
	return s != NULL ? s->addr : "";
}

/* With several replicas a batch unanswered for replica_timeout_ms moves
 * on; with one there is nowhere to go, so broker_timeout_ms applies. */
static void timeout_set(gw_link *l)
{
	const gw_config *c = l->g->conf;
	uint32_t t = c->broker_timeout_ms;
	if (atomic_load(&l->nrep) > 1 && c->replica_timeout_ms < t)
		t = c->replica_timeout_ms;
	atomic_store(&l->timeout_ms, t);
}

static void ctxs_close(nng_ctx *ctxs, const bool *open, int n)
{
	for (int i = 0; i < n; i++) {
		if (open[i])
			nng_ctx_close(ctxs[i]);
	}
}

/* Contexts are opened before the slot is published under mu, so a send
 * never finds a slot half made. */
int gw_link_replica_open(gw_link *l, int slot, const char *addr)
{
	gw_replica *rp = &l->reps[slot];
	int rv;
	gw_sock *s = gw_sock_get(l->g, addr, &rv);
	if (s == NULL)
		return rv;
	nng_ctx pctx, *ctxs = calloc(l->nctx, sizeof(*ctxs));
	bool *open = calloc(l->nctx, sizeof(*open));
	bool popen = false;
	rv = ctxs == NULL || open == NULL ? NNG_ENOMEM : 0;
	for (uint32_t i = 0; rv == 0 && i < l->nctx; i++) {
		if ((rv = nng_ctx_open(&ctxs[i], s->sock)) == 0)
			open[i] = true;
		if (rv == 0)
			rv = nng_ctx_set_ms(ctxs[i], NNG_OPT_REQ_RESENDTIME,
			    NNG_DURATION_INFINITE);
	}
	if (rv == 0 && (rv = nng_ctx_open(&pctx, s->sock)) == 0) {
		popen = true;
		rv = nng_ctx_set_ms(
		    pctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	}
	if (rv != 0) {
		if (ctxs != NULL && open != NULL)
			ctxs_close(ctxs, open, (int)l->nctx);
		if (popen)
			nng_ctx_close(pctx);
		free(ctxs);
		free(open);
		gw_sock_put(l->g, s);
		return rv;
	}
	gw_sock_attach(s, rp);
	pthread_mutex_lock(&l->mu);
	for (uint32_t i = 0; i < l->nctx; i++) {
		l->ctxs[i].ctx[slot] = ctxs[i];
		l->ctxs[i].ctx_open[slot] = true;
	}
	rp->pctx = pctx;
	rp->pctx_open = true;
	atomic_store(&rp->sock, s);
	if (atomic_fetch_add(&l->nrep, 1) == 0)
		atomic_store(&l->cur, slot);
	timeout_set(l);
	pthread_mutex_unlock(&l->mu);
	free(ctxs);
	free(open);
	return 0;
}

static int replica_next_locked(gw_link *l, int from);
static void leader_set_locked(gw_link *l, int to, const char *why);

void gw_link_replica_close(gw_link *l, int slot)
{
	gw_replica *rp = &l->reps[slot];
	nng_ctx *ctxs = calloc(l->nctx, sizeof(*ctxs));
	bool *open = calloc(l->nctx, sizeof(*open));
	pthread_mutex_lock(&l->mu);
	gw_sock *s = atomic_load(&rp->sock);
	if (s == NULL || ctxs == NULL || open == NULL) {
		/* Out of memory: the replica stays (it is only stale). */
		pthread_mutex_unlock(&l->mu);
		free(ctxs);
		free(open);
		return;
	}
	PL_ASSERT(atomic_load(&l->nrep) > 1);
	if (atomic_load(&l->cur) == slot)
		leader_set_locked(l, replica_next_locked(l, slot), "removed");
	atomic_store(&rp->sock, NULL);
	atomic_fetch_sub(&l->nrep, 1);
	timeout_set(l);
	for (uint32_t i = 0; i < l->nctx; i++) {
		gw_bctx *b = &l->ctxs[i];
		ctxs[i] = b->ctx[slot];
		open[i] = b->ctx_open[slot];
		b->ctx_open[slot] = false;
		/* Lost, as on a dropped connection: re-sent at the new
		 * current replica when that is safe (failover.c). */
		if (b->busy && b->rep == slot)
			nng_aio_cancel(b->aio);
	}
	if (atomic_load(&l->poll_rep) == slot && l->paio != NULL)
		nng_aio_cancel(l->paio);
	nng_ctx pctx = rp->pctx;
	bool popen = rp->pctx_open;
	rp->pctx_open = false;
	gw_req *q = rp->pq_head;
	for (gw_req *r = q; r != NULL; r = r->next)
		l->qlen--;
	rp->pq_head = rp->pq_tail = NULL;
	pthread_mutex_unlock(&l->mu);
	PL_INFO(GW_MOD, "event=replica_removed group=%u broker=%s",
	    (unsigned)l->id, s->addr);
	gw_sock_detach(s, rp);
	ctxs_close(ctxs, open, (int)l->nctx);
	if (popen)
		nng_ctx_close(pctx);
	free(ctxs);
	free(open);
	gw_sock_put(l->g, s);
	while (q != NULL) {
		gw_req *r = q;
		q = r->next;
		r->done(r, NULL, PARLEY__ERROR_CODE__UNAVAILABLE);
	}
}

/* With l->mu held: the next replica after `from` that has a connection,
 * or simply the next one when none has. */
static int replica_next_locked(gw_link *l, int from)
{
	int next = -1;
	for (int k = 1; k < GW_REPLICAS_MAX; k++) {
		int i = (from + k) % GW_REPLICAS_MAX;
		if (!gw_link_replica_used(&l->reps[i]))
			continue;
		if (gw_link_replica_up(&l->reps[i]))
			return i;
		if (next < 0)
			next = i;
	}
	return next >= 0 ? next : from;
}

/* The slot whose address is hint (exact string match), or -1. */
static int replica_match_locked(gw_link *l, const char *hint)
{
	if (hint == NULL || hint[0] == '\0')
		return -1;
	for (int i = 0; i < GW_REPLICAS_MAX; i++) {
		if (gw_link_replica_used(&l->reps[i]) &&
		    strcmp(gw_link_rep_addr(&l->reps[i]), hint) == 0)
			return i;
	}
	return -1;
}

static void leader_set_locked(gw_link *l, int to, const char *why)
{
	int from = atomic_load(&l->cur);
	if (to == from)
		return;
	atomic_store(&l->cur, to);
	PL_INFO(GW_MOD, "event=leader_switch group=%u from=%s to=%s reason=%s",
	    (unsigned)l->id, gw_link_rep_addr(&l->reps[from]),
	    gw_link_rep_addr(&l->reps[to]), why);
}

/* With l->mu held: replica `from` answered that it does not lead. Only
 * an answer from the current replica moves the link: a late one from a
 * replica already left behind says nothing new. */
void gw_link_leader_moved_locked(gw_link *l, int from, const char *hint)
{
	if (from != atomic_load(&l->cur))
		return;
	int h = replica_match_locked(l, hint);
	if (h >= 0 && h != from && gw_link_replica_up(&l->reps[h])) {
		leader_set_locked(l, h, "hint");
		l->hold_until_us = 0;
		return;
	}
	/* No usable hint (none yet, or the old leader, now gone): an
	 * election is under way. Ask around, pausing between replicas. */
	if (atomic_load(&l->nrep) > 1)
		leader_set_locked(l, replica_next_locked(l, from), "no_leader");
	l->hold_until_us = pl_mono_us() + GW_LEADER_BACKOFF_MS * 1000;
}

/* With l->mu held: replica `from` did not answer (timeout, lost
 * connection). With several replicas the next one is asked at once: it
 * answers, or names the leader, or says there is none yet. */
void gw_link_leader_lost_locked(gw_link *l, int from)
{
	if (atomic_load(&l->nrep) > 1 && !l->stopping &&
	    from == atomic_load(&l->cur))
		leader_set_locked(l, replica_next_locked(l, from), "no_answer");
}

/* With l->mu held: where a batch for the leader goes now. A current
 * replica without a connection is passed over for one that has one:
 * a request sent to it would only wait for its timeout. */
int gw_link_leader_dest_locked(gw_link *l)
{
	int cur = atomic_load(&l->cur);
	if (atomic_load(&l->nrep) > 1 && !gw_link_replica_up(&l->reps[cur])) {
		int n = replica_next_locked(l, cur);
		if (gw_link_replica_up(&l->reps[n])) {
			leader_set_locked(l, n, "disconnected");
			cur = n;
		}
	}
	return cur;
}

/* A replica's connection is gone (nng_sleep_aio from pipe_cb): the link
 * leaves it, and whatever waits on it is cancelled now rather than at
 * its timeout (replies already on their way were answered by nng with a
 * reset; what was sent after the loss would only wait). */
void gw_link_replica_down_cb(void *arg)
{
	gw_replica *rp = arg;
	gw_link *l = rp->link;
	atomic_store(&rp->down_armed, false);
	if (nng_aio_result(rp->naio) != 0)
		return;
	pthread_mutex_lock(&l->mu);
	if (l->stopping || !gw_link_replica_used(rp) ||
	    gw_link_replica_up(rp)) {
		pthread_mutex_unlock(&l->mu);
		return;
	}
	PL_INFO(GW_MOD, "event=replica_disconnected group=%u broker=%s",
	    (unsigned)l->id, gw_link_rep_addr(rp));
	gw_link_leader_lost_locked(l, rp->idx);
	/* Cancelling only completes the aios; their callbacks run on
	 * nng's threads and take mu after we release it. */
	for (uint32_t i = 0; i < l->nctx; i++) {
		if (l->ctxs[i].busy && l->ctxs[i].rep == rp->idx)
			nng_aio_cancel(l->ctxs[i].aio);
	}
	if (atomic_load(&l->nrep) > 1 && l->poll_rep == rp->idx)
		nng_aio_cancel(l->paio);
	pthread_mutex_unlock(&l->mu);
}
