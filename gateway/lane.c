/*
 * lane.c - a link's request queue as ordered lanes (internals.md
 * "Request order"). A lane is one connection's requests to one shard
 * group, in the order the connection sent them; the link's batch slots
 * take whole runs of ready lanes, and a lane that has requests in a batch
 * is busy: none of its later requests leave before that batch is
 * settled (answered, or lost and put back at the lane's front). So a
 * lane's requests are never in two racing batches, and within one batch
 * they are in lane order, which is the order the broker proposes them.
 *
 * Lane 0 holds requests of no connection (watch changes): it is never
 * busy, as nothing about their order is promised. All of it runs under
 * the link's mutex; nothing here blocks or touches nng.
 */
#include <stdlib.h>
#include <string.h>

#include "gateway/lane.h"

static size_t lane_bucket(const gw_lanes *t, uint64_t id)
{
	uint64_t h = id * UINT64_C(0x9E3779B97F4A7C15);
	return (size_t)(h >> 32) & (t->nbuckets - 1);
}

pl_status gw_lanes_init(gw_lanes *t, size_t nbuckets)
{
	memset(t, 0, sizeof(*t));
	size_t n = 16;
	while (n < nbuckets)
		n <<= 1;
	t->buckets = calloc(n, sizeof(*t->buckets));
	if (t->buckets == NULL)
		return PL_E_NOMEM;
	t->nbuckets = n;
	return PL_OK;
}

void gw_lanes_fini(gw_lanes *t)
{
	if (t == NULL || t->buckets == NULL)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		while (t->buckets[i] != NULL) {
			gw_lane *ln = t->buckets[i];
			t->buckets[i] = ln->hnext;
			free(ln);
		}
	}
	while (t->spare != NULL) {
		gw_lane *ln = t->spare;
		t->spare = ln->hnext;
		free(ln);
	}
	free(t->buckets);
	memset(t, 0, sizeof(*t));
}

static gw_lane *lane_find(gw_lanes *t, uint64_t id, bool create)
{
	size_t b = lane_bucket(t, id);
	for (gw_lane *ln = t->buckets[b]; ln != NULL; ln = ln->hnext)
		if (ln->id == id)
			return ln;
	if (!create)
		return NULL;
	gw_lane *ln = t->spare;
	if (ln != NULL) {
		t->spare = ln->hnext;
		t->nspare--;
	} else if ((ln = malloc(sizeof(*ln))) == NULL) {
		return NULL;
	}
	memset(ln, 0, sizeof(*ln));
	ln->id = id;
	ln->hnext = t->buckets[b];
	t->buckets[b] = ln;
	t->nlanes++;
	return ln;
}

/* A lane with nothing queued and nothing in flight is forgotten; a few
 * are kept for reuse, so a steady load allocates nothing. */
static void lane_drop_if_idle(gw_lanes *t, gw_lane *ln)
{
	if (ln->head != NULL || ln->inflight > 0 || ln->ready)
		return;
	gw_lane **pp = &t->buckets[lane_bucket(t, ln->id)];
	while (*pp != ln)
		pp = &(*pp)->hnext;
	*pp = ln->hnext;
	t->nlanes--;
	if (t->nspare < GW_LANES_SPARE_MAX) {
		ln->hnext = t->spare;
		t->spare = ln;
		t->nspare++;
	} else {
		free(ln);
	}
}

static void ready_push(gw_lanes *t, gw_lane *ln)
{
	if (ln->ready || ln->head == NULL || (ln->inflight > 0 && ln->id != 0))
		return;
	ln->ready = true;
	ln->next_ready = NULL;
	if (t->ready_tail != NULL)
		t->ready_tail->next_ready = ln;
	else
		t->ready_head = ln;
	t->ready_tail = ln;
}

pl_status gw_lanes_push(gw_lanes *t, gw_req *r)
{
	gw_lane *ln = lane_find(t, r->lane, true);
	if (ln == NULL)
		return PL_E_NOMEM;
	r->next = NULL;
	if (ln->tail != NULL)
		ln->tail->next = r;
	else
		ln->head = r;
	ln->tail = r;
	t->queued++;
	ready_push(t, ln);
	return PL_OK;
}

pl_status gw_lanes_push_front(gw_lanes *t, gw_req **rs, uint32_t n)
{
	for (uint32_t i = n; i-- > 0;) {
		gw_req *r = rs[i];
		gw_lane *ln = lane_find(t, r->lane, true);
		if (ln == NULL)
			return PL_E_NOMEM; /* rs[0..i] are still the caller's */
		r->next = ln->head;
		ln->head = r;
		if (ln->tail == NULL)
			ln->tail = r;
		t->queued++;
		rs[i] = NULL;
		ready_push(t, ln);
	}
	return PL_OK;
}

bool gw_lanes_has_ready(const gw_lanes *t)
{
	return t->ready_head != NULL;
}

/* Whether r still fits a batch holding n requests of these sizes. */
static bool batch_fits(
    uint32_t n, size_t bytes, size_t reply, const gw_req *r, uint32_t max)
{
	if (n >= max)
		return false;
	return n == 0 ||
	       (bytes + r->len + GW_REQ_OVERHEAD_BYTES <= GW_BATCH_BYTES_MAX &&
	           reply + r->reply_est <= GW_BATCH_BYTES_MAX);
}

uint32_t gw_lanes_take(gw_lanes *t, gw_req **out, uint32_t max)
{
	uint32_t n = 0;
	size_t bytes = 0, reply = 0;
	while (t->ready_head != NULL) {
		gw_lane *ln = t->ready_head;
		if (!batch_fits(n, bytes, reply, ln->head, max))
			break;
		t->ready_head = ln->next_ready;
		if (t->ready_head == NULL)
			t->ready_tail = NULL;
		ln->ready = false;
		while (ln->head != NULL &&
		       batch_fits(n, bytes, reply, ln->head, max)) {
			gw_req *r = ln->head;
			ln->head = r->next;
			if (ln->head == NULL)
				ln->tail = NULL;
			r->next = NULL;
			bytes += r->len + GW_REQ_OVERHEAD_BYTES;
			reply += r->reply_est;
			out[n++] = r;
			t->queued--;
			ln->inflight++;
		}
		/* The rest of a busy lane waits for this batch; lane 0 is
		 * never busy and goes back in line. */
		ready_push(t, ln);
	}
	return n;
}

void gw_lanes_release(gw_lanes *t, const uint64_t *lanes, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		gw_lane *ln = lane_find(t, lanes[i], false);
		PL_ASSERT(ln != NULL && ln->inflight > 0);
		ln->inflight--;
		if (ln->inflight == 0) {
			ready_push(t, ln);
			lane_drop_if_idle(t, ln);
		}
	}
}

gw_req *gw_lanes_drain(gw_lanes *t)
{
	gw_req *all = NULL, **tail = &all;
	for (size_t i = 0; i < t->nbuckets; i++) {
		for (gw_lane *ln = t->buckets[i]; ln != NULL; ln = ln->hnext) {
			if (ln->head == NULL)
				continue;
			*tail = ln->head;
			tail = &ln->tail->next;
			ln->head = ln->tail = NULL;
			ln->ready = false;
		}
	}
	t->ready_head = t->ready_tail = NULL;
	t->queued = 0;
	return all;
}
