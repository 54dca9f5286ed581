/*
 * link_replica.c - a link's replica set (docs/replication.md "Gateways
 * follow leadership"): each replica's socket and whether it has a
 * connection, and which replica the link believes leads. A replica that
 * does not lead answers not_leader, with the leader's address when it
 * knows it; the link moves there (or, on no hint, to the next replica
 * after GW_LEADER_BACKOFF_MS). A replica that does not answer, or whose
 * connection drops, is left for the next one. Everything named _locked
 * runs with the link's mu held.
 */
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "gateway/link_int.h"

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000

static void replica_down_cb(void *arg);

bool gw_link_replica_up(gw_replica *rp)
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

int gw_link_replica_open(gw_replica *rp)
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

/* With l->mu held: the next replica after `from` that has a connection,
 * or simply the next one when none has. */
static int replica_next_locked(gw_link *l, int from)
{
	for (int k = 1; k < l->nrep; k++) {
		int i = (from + k) % l->nrep;
		if (gw_link_replica_up(&l->reps[i]))
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
void gw_link_leader_moved_locked(gw_link *l, int from, const char *hint)
{
	if (from != atomic_load(&l->cur))
		return;
	int h = gw_replica_match(l->conf, hint);
	if (h >= 0 && h != from && gw_link_replica_up(&l->reps[h])) {
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
void gw_link_leader_lost_locked(gw_link *l, int from)
{
	if (l->nrep > 1 && !l->stopping && from == atomic_load(&l->cur))
		leader_set_locked(l, replica_next_locked(l, from), "no_answer");
}

/* With l->mu held: where a batch for the leader goes now. A current
 * replica without a connection is passed over for one that has one:
 * a request sent to it would only wait for its timeout. */
int gw_link_leader_dest_locked(gw_link *l)
{
	int cur = atomic_load(&l->cur);
	if (l->nrep > 1 && !gw_link_replica_up(&l->reps[cur])) {
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
static void replica_down_cb(void *arg)
{
	gw_replica *rp = arg;
	gw_link *l = rp->link;
	atomic_store(&rp->down_armed, false);
	if (nng_aio_result(rp->naio) != 0)
		return;
	pthread_mutex_lock(&l->mu);
	if (l->stopping || gw_link_replica_up(rp)) {
		pthread_mutex_unlock(&l->mu);
		return;
	}
	PL_INFO(GW_MOD, "event=replica_disconnected group=%u broker=%s",
	    (unsigned)l->conf->id, rp->addr);
	gw_link_leader_lost_locked(l, rp->idx);
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
