/*
 * peer.c - the broker-to-broker transport of a replicated group. Each
 * broker listens with one nng bus0 socket on its peer address (it only
 * receives there) and sends to every other replica through a bus0 socket
 * of its own that dials only that replica, so a send reaches exactly one
 * peer. Sends never block: Raft tolerates loss, so a full queue or an
 * unreachable peer drops the message and the core sends again
 * (heartbeats, append retries). What is sent is sealed by the group
 * (auth.c): this file moves bytes only.
 *
 * Why bus0 and not push0/pull0: nng 1.5.2's push0 starts a new pipe's
 * receive before it puts the pipe on its ready list, so a connection that
 * its peer resets at once (a replica killed or stopping while it is being
 * dialed) is closed and freed while it is still on that list, and the next
 * send uses the freed pipe (heap-use-after-free in push0_sock_send, found
 * with ASan builds of the broker and of nng under the stop loop of
 * tests/integration/test_stop.c; in a release build a segfault or general
 * protection fault inside libnng). bus0 lists a pipe before it starts any
 * operation on it and unlists it on close, under one lock.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/bus0/bus.h>

#include "broker/peer.h"
#include "proto/codec.h"
#include "proto/nng_close.h"

/* A PeerBatch is bounded by the group (append bytes per message times the
 * in-flight window); anything larger is refused by nng before we see it. */
#define PEER_RECV_BYTES_MAX PL_FRAME_BYTES_CEIL
/* Messages queued per peer before sends drop: a few rounds' worth. */
#define PEER_SENDBUF 64
#define PEER_RECONNECT_MIN_MS 20
#define PEER_RECONNECT_MAX_MS 500
/* Brokers one broker sends to: every broker of the cluster map. */
#define PEERS_MAX 256

typedef struct peer_out {
	uint64_t id;
	nng_socket sock;
	nng_dialer dialer;
	bool open, dialing;
} peer_out;

struct brk_peers {
	brk_peer_receive_fn receive;
	void *receive_ctx;
	nng_socket in;
	nng_listener listener;
	bool in_open, listening;
	nng_aio *rx;
	/* Under mu: peers are added while groups send (a broker that
	 * joins the map). Never removed before stop: a send to a departed
	 * broker is dropped by its dialer like any down peer's. */
	pthread_mutex_t mu;
	peer_out out[PEERS_MAX];
	int nout;
	_Atomic uint64_t dropped;
};

static void rx_cb(void *arg)
{
	brk_peers *p = arg;
	int rv = nng_aio_result(p->rx);
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
		return;
	if (rv == 0) {
		nng_msg *m = nng_aio_get_msg(p->rx);
		if (p->receive(p->receive_ctx, m) != PL_OK) {
			nng_msg_free(m); /* the sender retries */
			p->dropped++;
		}
	}
	nng_recv_aio(p->in, p->rx);
}

static int out_open(peer_out *o, const char *addr)
{
	int rv = nng_bus0_open(&o->sock);
	if (rv != 0)
		return rv;
	o->open = true;
	if ((rv = nng_socket_set_int(o->sock, NNG_OPT_SENDBUF, PEER_SENDBUF)) !=
	        0 ||
	    (rv = nng_socket_set_ms(
	         o->sock, NNG_OPT_RECONNMINT, PEER_RECONNECT_MIN_MS)) != 0 ||
	    (rv = nng_socket_set_ms(
	         o->sock, NNG_OPT_RECONNMAXT, PEER_RECONNECT_MAX_MS)) != 0)
		return rv;
	/* Non-blocking: a peer that is down is dialed again and again. */
	rv = nng_dial(o->sock, addr, &o->dialer, NNG_FLAG_NONBLOCK);
	o->dialing = rv == 0;
	return rv;
}

pl_status brk_peers_start(const brk_config *cfg, brk_peer_receive_fn receive,
    void *ctx, brk_peers **out)
{
	brk_peers *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return PL_E_NOMEM;
	pthread_mutex_init(&p->mu, NULL);
	p->receive = receive;
	p->receive_ctx = ctx;
	int rv = nng_bus0_open(&p->in);
	if (rv == 0) {
		p->in_open = true;
		rv = nng_socket_set_size(
		    p->in, NNG_OPT_RECVMAXSZ, PEER_RECV_BYTES_MAX);
	}
	if (rv == 0)
		rv = nng_aio_alloc(&p->rx, rx_cb, p);
	if (rv == 0)
		rv = nng_listen(p->in, cfg->peer, &p->listener, 0);
	p->listening = rv == 0;
	if (rv != 0)
		PL_ERROR("peer", "event=listen_failed addr=%s err=\"%s\"",
		    cfg->peer, nng_strerror(rv));
	pl_status st = rv == 0 ? PL_OK : PL_E_CONFIG;
	for (int i = 0; i < cfg->nreplicas && st == PL_OK; i++)
		if (cfg->replicas[i].id != cfg->node)
			st = brk_peers_add(
			    p, cfg->replicas[i].id, cfg->replicas[i].peer);
	if (st != PL_OK) {
		brk_peers_stop(p);
		return st;
	}
	nng_recv_aio(p->in, p->rx);
	PL_INFO("peer", "event=listening addr=%s peers=%d", cfg->peer, p->nout);
	*out = p;
	return PL_OK;
}

pl_status brk_peers_add(brk_peers *p, uint64_t node, const char *addr)
{
	pl_status st = PL_OK;
	pthread_mutex_lock(&p->mu);
	for (int i = 0; i < p->nout; i++) {
		if (p->out[i].id == node) {
			pthread_mutex_unlock(&p->mu);
			return PL_OK; /* a broker's peer address never changes */
		}
	}
	if (p->nout == PEERS_MAX) {
		st = PL_E_TOO_LARGE;
	} else {
		peer_out *o = &p->out[p->nout++];
		o->id = node;
		int rv = out_open(o, addr);
		if (rv != 0) {
			PL_ERROR("peer", "event=dial_failed addr=%s err=\"%s\"",
			    addr, nng_strerror(rv));
			st = PL_E_CONFIG;
		} else {
			PL_INFO("peer", "event=peer_added node=%llu addr=%s",
			    (unsigned long long)node, addr);
		}
	}
	pthread_mutex_unlock(&p->mu);
	return st;
}

void brk_peers_send(brk_peers *p, uint64_t node, nng_msg *m)
{
	pthread_mutex_lock(&p->mu);
	for (int i = 0; i < p->nout; i++) {
		if (p->out[i].id != node || !p->out[i].open)
			continue;
		if (nng_sendmsg(p->out[i].sock, m, NNG_FLAG_NONBLOCK) == 0) {
			pthread_mutex_unlock(&p->mu);
			return;
		}
		break;
	}
	pthread_mutex_unlock(&p->mu);
	p->dropped++;
	nng_msg_free(m);
}

uint64_t brk_peers_dropped(brk_peers *p)
{
	return p->dropped;
}

/*
 * The close order keeps nng 1.5.2 from waiting on itself: first the
 * receive aio (its callback is finished when nng_aio_stop returns, and no
 * new receive starts), then the endpoints — dialers still redialing a
 * dead peer and the listener — so no pipe is being created or started
 * while its socket closes (nng issue 1653: a pipe destroyed while it
 * starts), then the sockets. A close that hangs anyway is cut short by
 * pl_nng_close_bounded, which gives up on it after PL_NNG_CLOSE_MS
 * (a unit test's node is stopped in process), and then by the process's
 * stop deadline (common/deadline.c).
 */
void brk_peers_stop(brk_peers *p)
{
	if (p == NULL)
		return;
	if (p->rx != NULL)
		nng_aio_stop(p->rx);
	for (int i = 0; i < p->nout; i++)
		if (p->out[i].dialing)
			nng_dialer_close(p->out[i].dialer);
	if (p->listening)
		nng_listener_close(p->listener);
	nng_socket socks[PEERS_MAX + 1];
	int n = 0;
	if (p->in_open)
		socks[n++] = p->in;
	for (int i = 0; i < p->nout; i++)
		if (p->out[i].open)
			socks[n++] = p->out[i].sock;
	(void)pl_nng_close_bounded(socks, n, "peer", PL_NNG_CLOSE_MS);
	nng_aio_free(p->rx);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
