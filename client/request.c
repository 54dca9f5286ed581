/*
 * request.c - a libparley connection's callers' side: the request table
 * (an id's slot is slots[id & (nslots - 1)], under c->mu), sending a
 * registered request, and waiting for what the receive path delivers:
 * replies, async completions and events.
 */
#include <stdlib.h>
#include <time.h>

#include "client/conn.h"

#define SLOTS_MIN 16

static struct timespec deadline_after(int64_t timeout_us)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t ns = ts.tv_nsec + (timeout_us % 1000000) * 1000;
	ts.tv_sec += (time_t)(timeout_us / 1000000 + ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	return ts;
}

/* Waits on c->cv (mu held) until *dl; dl NULL waits forever.
 * Returns false once the deadline passed. */
static bool cv_wait(parley_conn *c, const struct timespec *dl)
{
	if (dl == NULL) {
		pthread_cond_wait(&c->cv, &c->mu);
		return true;
	}
	return pthread_cond_timedwait(&c->cv, &c->mu, dl) == 0;
}

/* ------------------------------------------------------------------ */
/* Request slots (mu held). */

slot *parley_slot_find(parley_conn *c, uint64_t id)
{
	if (c->nslots == 0 || id == 0)
		return NULL;
	slot *s = &c->slots[id & (c->nslots - 1)];
	return (s->state != SLOT_FREE && s->id == id) ? s : NULL;
}

/* Doubles the table; ids keep their slots' low bits, so no two busy slots
 * can collide in the larger table. */
static pl_status slots_grow(parley_conn *c)
{
	uint32_t n = c->nslots ? c->nslots * 2 : SLOTS_MIN;
	if (n > PARLEY_INFLIGHT_MAX)
		return PL_E_BACKPRESSURE;
	slot *t = calloc(n, sizeof(*t));
	if (t == NULL)
		return PL_E_NOMEM;
	for (uint32_t i = 0; i < c->nslots; i++) {
		if (c->slots[i].state != SLOT_FREE)
			t[c->slots[i].id & (n - 1)] = c->slots[i];
	}
	free(c->slots);
	c->slots = t;
	c->nslots = n;
	return PL_OK;
}

static pl_status slot_acquire(
    parley_conn *c, bool async, uint64_t tag, uint64_t *id)
{
	if (c->closed)
		return c->close_status ? c->close_status : PL_E_CLOSED;
	if (c->nbusy == c->nslots) {
		pl_status st = slots_grow(c);
		if (st != PL_OK)
			return st;
	}
	if (async && c->done.items == NULL) {
		/* Sized once for every slot, so the receive path's push of a
		 * completion can never fail. */
		c->done.items = malloc(sizeof(uint64_t) * c->done.max);
		if (c->done.items == NULL)
			return PL_E_NOMEM;
		c->done.cap = c->done.max;
	}
	slot *s;
	do {
		if (++c->next_id == 0)
			c->next_id = 1;
		s = &c->slots[c->next_id & (c->nslots - 1)];
	} while (s->state != SLOT_FREE);
	*s = (slot){
	    .id = c->next_id, .tag = tag, .state = SLOT_WAIT, .async = async};
	c->nbusy++;
	if (async)
		c->nasync++;
	*id = c->next_id;
	return PL_OK;
}

/* Frees a slot; returns the reply it held (owned by the caller). */
static frame_box *slot_release(parley_conn *c, slot *s)
{
	frame_box *b = s->reply;
	if (s->async)
		c->nasync--;
	*s = (slot){0};
	c->nbusy--;
	return b;
}

/* ------------------------------------------------------------------ */
/* Requests. */

/* Turns a reply (taken) into a status; an Error body is recorded as the
 * connection's last error and freed. */
static pl_status reply_status(parley_conn *c, frame_box *b, int *code)
{
	if (b->frame.body_case != PARLEY__SERVER_FRAME__BODY_ERROR) {
		*code = 0;
		return PL_OK;
	}
	int ec = (int)b->frame.error->code;
	pthread_mutex_lock(&c->mu);
	parley_error_set_locked(c, ec, b->frame.error->message);
	pthread_mutex_unlock(&c->mu);
	parley_box_free(b);
	pl_status st = pl_code_to_status(ec);
	*code = ec;
	return st == PL_OK ? PL_E_INTERNAL : st;
}

/* Waits for the reply of sync request id; frees its slot in every case. */
static pl_status wait_reply(
    parley_conn *c, uint64_t id, int timeout_ms, frame_box **out)
{
	struct timespec dl = deadline_after((int64_t)timeout_ms * 1000);
	pthread_mutex_lock(&c->mu);
	slot *s = parley_slot_find(c, id);
	PL_ASSERT(s != NULL);
	pl_status st = PL_OK;
	while (s->state != SLOT_DONE) {
		if (c->closed) {
			st = c->close_status ? c->close_status : PL_E_CLOSED;
			break;
		}
		if (!cv_wait(c, timeout_ms < 0 ? NULL : &dl)) {
			st = PL_E_TIMEOUT;
			parley_error_set_locked(c, pl_status_to_code(st),
			    "no reply before the timeout");
			break;
		}
		s = parley_slot_find(c, id); /* the table may have grown */
	}
	frame_box *b = slot_release(c, s);
	pthread_mutex_unlock(&c->mu);
	if (st != PL_OK) {
		parley_box_free(b);
		return st;
	}
	*out = b;
	return PL_OK;
}

static pl_status send_registered(parley_conn *c, Parley__ClientFrame *req,
    bool async, uint64_t tag, uint64_t *id)
{
	pthread_mutex_lock(&c->mu);
	pl_status st = slot_acquire(c, async, tag, id);
	pthread_mutex_unlock(&c->mu);
	if (st != PL_OK)
		return parley_local_error(c, st, NULL);
	req->id = *id;
	st = parley_send_frame(c, req);
	if (st != PL_OK) {
		pthread_mutex_lock(&c->mu);
		slot *s = parley_slot_find(c, *id);
		if (s != NULL)
			parley_box_free(slot_release(c, s));
		pthread_mutex_unlock(&c->mu);
		return parley_local_error(c, st, NULL);
	}
	return PL_OK;
}

pl_status parley_request(parley_conn *c, Parley__ClientFrame *req,
    int timeout_ms, Parley__ServerFrame **reply)
{
	uint64_t id;
	pl_status st = send_registered(c, req, false, 0, &id);
	if (st != PL_OK)
		return st;
	frame_box *b = NULL;
	st = wait_reply(c, id, timeout_ms, &b);
	if (st != PL_OK)
		return st;
	int code;
	st = reply_status(c, b, &code);
	if (st != PL_OK)
		return st;
	*reply = &b->frame;
	return PL_OK;
}

pl_status parley_send(
    parley_conn *c, Parley__ClientFrame *req, uint64_t tag, uint64_t *id)
{
	uint64_t nid;
	pl_status st = send_registered(c, req, true, tag, &nid);
	if (st != PL_OK)
		return st;
	*id = nid;
	return PL_OK;
}

pl_status parley_collect(
    parley_conn *c, int64_t timeout_us, parley_completion *out)
{
	struct timespec dl = deadline_after(timeout_us < 0 ? 0 : timeout_us);
	pthread_mutex_lock(&c->mu);
	while (c->done.len == 0) {
		if (c->closed || timeout_us == 0 ||
		    !cv_wait(c, timeout_us < 0 ? NULL : &dl)) {
			pl_status st = c->closed ? PL_E_CLOSED : PL_E_TIMEOUT;
			pthread_mutex_unlock(&c->mu);
			return st;
		}
	}
	uint64_t id = parley_ring_pop(&c->done);
	slot *s = parley_slot_find(c, id);
	PL_ASSERT(s != NULL && s->state == SLOT_DONE);
	uint64_t tag = s->tag;
	frame_box *b = slot_release(c, s);
	pthread_mutex_unlock(&c->mu);

	parley_completion r = {.id = id, .tag = tag, .recv_us = b->recv_us};
	r.status = reply_status(c, b, &r.code);
	r.reply = r.status == PL_OK ? &b->frame : NULL;
	*out = r;
	return PL_OK;
}

pl_status parley_next_event(
    parley_conn *c, int timeout_ms, Parley__ServerFrame **ev)
{
	struct timespec dl = deadline_after((int64_t)timeout_ms * 1000);
	pthread_mutex_lock(&c->mu);
	pl_status st = PL_OK;
	while (!c->overflow_pending && c->events.len == 0) {
		if (c->closed || timeout_ms == 0 ||
		    !cv_wait(c, timeout_ms < 0 ? NULL : &dl)) {
			st = c->closed ? PL_E_CLOSED : PL_E_TIMEOUT;
			break;
		}
	}
	if (st == PL_OK && c->overflow_pending) {
		c->overflow_pending = false;
		st = PL_E_BACKPRESSURE;
	} else if (st == PL_OK) {
		frame_box *b =
		    (frame_box *)(uintptr_t)parley_ring_pop(&c->events);
		*ev = &b->frame;
	}
	pthread_mutex_unlock(&c->mu);
	return st;
}
