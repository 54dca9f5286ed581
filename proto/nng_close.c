/*
 * nng_close.c - closing an nng socket without waiting forever. nng 1.5.2
 * can hang inside nng_close: the socket waits for a pipe whose receive
 * aio the TCP transport never finishes when the pipe was closed while
 * that receive was being started (docs/internals.md, "Bounds and
 * stopping"). The close runs on a thread of its own; the caller waits
 * up to a bound and then goes on without it. An abandoned close holds
 * only nng's own state: its listeners and dialers are already shut (nng
 * shuts endpoints before it waits for pipes), so the address is free,
 * and the one pipe it waits for has already run its last callback.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "common/common.h"
#include "proto/nng_close.h"

static atomic_bool abandoned;

bool pl_nng_close_abandoned(void)
{
	return atomic_load(&abandoned);
}

typedef struct closer {
	nng_socket sock;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int refs; /* the waiter and the closing thread */
} closer;

static void closer_unref(closer *c)
{
	pthread_mutex_lock(&c->mu);
	bool last = --c->refs == 0;
	pthread_mutex_unlock(&c->mu);
	if (last) {
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
		free(c);
	}
}

static void *close_main(void *arg)
{
	closer *c = arg;
	nng_close(c->sock);
	pthread_mutex_lock(&c->mu);
	c->done = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	closer_unref(c);
	return NULL;
}

/* Starts the close of sock on a thread of its own; NULL when there is
 * no thread to spare (the socket is then closed in line). */
static closer *close_start(nng_socket sock)
{
	closer *c = calloc(1, sizeof(*c));
	pthread_attr_t attr;
	pthread_t th;
	if (c == NULL || pthread_attr_init(&attr) != 0) {
		free(c);
		nng_close(sock);
		return NULL;
	}
	c->sock = sock;
	c->refs = 2;
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rv = pthread_create(&th, &attr, close_main, c);
	pthread_attr_destroy(&attr);
	if (rv != 0) {
		c->refs = 1;
		closer_unref(c);
		nng_close(sock);
		return NULL;
	}
	return c;
}

/* Waits for c's close until `until` (CLOCK_MONOTONIC); true when done. */
static bool close_wait(closer *c, const struct timespec *until)
{
	if (c == NULL)
		return true;
	pthread_mutex_lock(&c->mu);
	while (!c->done &&
	       pthread_cond_timedwait(&c->cv, &c->mu, until) == 0)
		;
	bool done = c->done;
	pthread_mutex_unlock(&c->mu);
	closer_unref(c);
	return done;
}

bool pl_nng_close_bounded(
    const nng_socket *socks, int n, const char *module, int ms)
{
	closer *cs[PL_NNG_CLOSE_MANY_MAX];
	if (n > PL_NNG_CLOSE_MANY_MAX)
		n = PL_NNG_CLOSE_MANY_MAX;
	for (int i = 0; i < n; i++)
		cs[i] = close_start(socks[i]);
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	int left = 0;
	for (int i = 0; i < n; i++)
		left += !close_wait(cs[i], &until);
	if (left == 0)
		return true;
	atomic_store(&abandoned, true);
	PL_WARN(module,
	    "event=close_abandoned sockets=%d ms=%d detail=\"nng_close did "
	    "not return; the socket is left to nng\"",
	    left, ms);
	return false;
}
