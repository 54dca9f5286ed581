/*
 * queue.c - bounded pointer queue (ring buffer under a mutex) between
 * threads. It never grows: a full queue refuses with PL_E_BACKPRESSURE and
 * the producer decides what to shed. Consumers wait on a condition variable
 * bound to CLOCK_MONOTONIC so a wall-clock step cannot stretch a timeout.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"

pl_status pl_queue_init(pl_queue *q, size_t cap)
{
	pthread_condattr_t ca;

	PL_ASSERT(cap > 0);
	memset(q, 0, sizeof(*q));
	q->items = calloc(cap, sizeof(*q->items));
	if (q->items == NULL)
		return PL_E_NOMEM;
	q->cap = cap;
	PL_ASSERT(pthread_mutex_init(&q->mu, NULL) == 0);
	PL_ASSERT(pthread_condattr_init(&ca) == 0);
	PL_ASSERT(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0);
	PL_ASSERT(pthread_cond_init(&q->nonempty, &ca) == 0);
	pthread_condattr_destroy(&ca);
	return PL_OK;
}

/* A zeroed queue has no items array and no initialised locks. */
void pl_queue_fini(pl_queue *q)
{
	if (q == NULL || q->items == NULL)
		return;
	pthread_cond_destroy(&q->nonempty);
	pthread_mutex_destroy(&q->mu);
	free(q->items);
	memset(q, 0, sizeof(*q));
}

pl_status pl_queue_push(pl_queue *q, void *item)
{
	pl_status st = PL_OK;

	pthread_mutex_lock(&q->mu);
	if (q->closed) {
		st = PL_E_CLOSED;
	} else if (q->len == q->cap) {
		st = PL_E_BACKPRESSURE;
	} else {
		q->items[(q->head + q->len) % q->cap] = item;
		q->len++;
		pthread_cond_signal(&q->nonempty);
	}
	pthread_mutex_unlock(&q->mu);
	return st;
}

static struct timespec deadline_after(int64_t timeout_us)
{
	struct timespec ts;
	PL_ASSERT(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
	int64_t ns = ts.tv_nsec + (timeout_us % 1000000) * 1000;
	ts.tv_sec += (time_t)(timeout_us / 1000000 + ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	return ts;
}

/* Waits with q->mu held until an item arrives, the queue closes or the
 * timeout passes. Returns whether items are there. */
static bool queue_wait(pl_queue *q, int64_t timeout_us)
{
	struct timespec dl;
	if (timeout_us > 0)
		dl = deadline_after(timeout_us);
	while (q->len == 0 && !q->closed && timeout_us != 0) {
		if (timeout_us < 0) {
			pthread_cond_wait(&q->nonempty, &q->mu);
		} else if (pthread_cond_timedwait(&q->nonempty, &q->mu, &dl) ==
		           ETIMEDOUT) {
			break;
		}
	}
	return q->len > 0;
}

/* After close the remaining items are still handed out, so nothing that
 * was accepted is lost; 0 then means closed and drained. */
size_t pl_queue_pop_many(
    pl_queue *q, void **out, size_t max, int64_t timeout_us)
{
	size_t n = 0;

	pthread_mutex_lock(&q->mu);
	if (queue_wait(q, timeout_us)) {
		for (; n < max && q->len > 0; n++) {
			out[n] = q->items[q->head];
			q->head = (q->head + 1) % q->cap;
			q->len--;
		}
		/* Another consumer may take what this one left. */
		if (q->len > 0)
			pthread_cond_signal(&q->nonempty);
	}
	pthread_mutex_unlock(&q->mu);
	return n;
}

void pl_queue_close(pl_queue *q)
{
	pthread_mutex_lock(&q->mu);
	q->closed = true;
	pthread_cond_broadcast(&q->nonempty);
	pthread_mutex_unlock(&q->mu);
}
