/*
 * link_sock.c - one nng req0 socket per broker address, shared by every
 * link that has a replica there (DESIGN.md "Cluster map": a broker hosts
 * replicas of many groups and shares its sockets): a gateway opens one
 * connection per broker, not one per group. Each link replica opens its
 * own contexts on the shared socket; the socket's pipe events are fanned
 * out to every replica using it. Entries are reference counted under
 * g->socks_mu and live until gw_free, so a pipe callback never touches
 * freed memory.
 */
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "proto/nng_close.h"
#include "gateway/link_int.h"

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000

/* nng's pipe callback: it may not touch the socket, so a lost
 * connection is only noted here and each replica using the socket
 * handles it on its own naio. The socket dials one address, so it has
 * one pipe at a time; the id makes a late removal of an older pipe
 * harmless. */
static void pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	gw_sock *s = arg;
	uint32_t id = nng_pipe_id(p);
	if (ev == NNG_PIPE_EV_ADD_POST) {
		atomic_store(&s->pipe_id, id);
		return;
	}
	if (ev != NNG_PIPE_EV_REM_POST ||
	    !atomic_compare_exchange_strong(&s->pipe_id, &id, 0))
		return;
	pthread_mutex_lock(&s->mu);
	for (gw_replica *rp = s->users; rp != NULL; rp = rp->sock_next) {
		if (!atomic_exchange(&rp->down_armed, true))
			nng_sleep_aio(0, rp->naio);
	}
	pthread_mutex_unlock(&s->mu);
}

static int sock_open(gw_sock *s)
{
	/* Before the dial: its pipe may be added before nng_dial returns. */
	atomic_store(&s->pipe_id, 0);
	int rv = nng_req0_open(&s->sock);
	if (rv != 0)
		return rv;
	/* Never resend inside nng: a batch may hold creates and joins that
	 * must not run twice behind the client's back. The link decides
	 * what is sent again (failover.c). */
	if ((rv = nng_socket_set_ms(s->sock, NNG_OPT_REQ_RESENDTIME,
	         NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_size(
	         s->sock, NNG_OPT_RECVMAXSZ, PL_FRAME_BYTES_CEIL)) != 0 ||
	    (rv = nng_socket_set_ms(
	         s->sock, NNG_OPT_RECONNMINT, RECONNECT_MIN_MS)) != 0 ||
	    (rv = nng_socket_set_ms(
	         s->sock, NNG_OPT_RECONNMAXT, RECONNECT_MAX_MS)) != 0 ||
	    (rv = nng_pipe_notify(
	         s->sock, NNG_PIPE_EV_ADD_POST, pipe_cb, s)) != 0 ||
	    (rv = nng_pipe_notify(
	         s->sock, NNG_PIPE_EV_REM_POST, pipe_cb, s)) != 0 ||
	    /* Non-blocking: a broker that is not up yet is dialed again. */
	    (rv = nng_dial(s->sock, s->addr, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		nng_close(s->sock);
		return rv;
	}
	s->open = true;
	atomic_fetch_add(&s->g->socks_open, 1);
	return 0;
}

gw_sock *gw_sock_get(gw *g, const char *addr, int *err)
{
	pthread_mutex_lock(&g->socks_mu);
	gw_sock *s = g->socks;
	while (s != NULL && strcmp(s->addr, addr) != 0)
		s = s->next;
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL || strlen(addr) >= sizeof(s->addr)) {
			pthread_mutex_unlock(&g->socks_mu);
			free(s);
			*err = s == NULL ? NNG_ENOMEM : NNG_EADDRINVAL;
			return NULL;
		}
		s->g = g;
		memcpy(s->addr, addr, strlen(addr) + 1);
		pthread_mutex_init(&s->mu, NULL);
		s->next = g->socks;
		g->socks = s;
	}
	int rv = s->open ? 0 : sock_open(s);
	if (rv == 0)
		s->refs++;
	pthread_mutex_unlock(&g->socks_mu);
	*err = rv;
	return rv == 0 ? s : NULL;
}

void gw_sock_put(gw *g, gw_sock *s)
{
	pthread_mutex_lock(&g->socks_mu);
	PL_ASSERT(s->refs > 0);
	if (--s->refs == 0 && s->open) {
		s->open = false;
		atomic_fetch_sub(&g->socks_open, 1);
		(void)pl_nng_close_bounded(&s->sock, 1, GW_MOD, PL_NNG_CLOSE_MS);
	}
	pthread_mutex_unlock(&g->socks_mu);
}

void gw_sock_attach(gw_sock *s, gw_replica *rp)
{
	pthread_mutex_lock(&s->mu);
	rp->sock_next = s->users;
	s->users = rp;
	pthread_mutex_unlock(&s->mu);
}

void gw_sock_detach(gw_sock *s, gw_replica *rp)
{
	pthread_mutex_lock(&s->mu);
	gw_replica **pp = &s->users;
	while (*pp != NULL && *pp != rp)
		pp = &(*pp)->sock_next;
	if (*pp != NULL)
		*pp = rp->sock_next;
	rp->sock_next = NULL;
	pthread_mutex_unlock(&s->mu);
}

void gw_socks_free(gw *g)
{
	nng_socket socks[64];
	int n = 0;
	/* Closed together, under one bound per 64 (links freed theirs
	 * already; what is left belongs to nobody). */
	for (gw_sock *s = g->socks; s != NULL; s = s->next) {
		if (!s->open)
			continue;
		s->open = false;
		atomic_fetch_sub(&g->socks_open, 1);
		socks[n++] = s->sock;
		if (n == (int)PL_ARRAY_LEN(socks)) {
			(void)pl_nng_close_bounded(
			    socks, n, GW_MOD, PL_NNG_CLOSE_MS);
			n = 0;
		}
	}
	(void)pl_nng_close_bounded(socks, n, GW_MOD, PL_NNG_CLOSE_MS);
	while (g->socks != NULL) {
		gw_sock *s = g->socks;
		g->socks = s->next;
		pthread_mutex_destroy(&s->mu);
		free(s);
	}
}

int gw_link_sockets(gw *g)
{
	return atomic_load(&g->socks_open);
}
