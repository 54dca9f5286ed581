/*
 * lane.h - private to gateway/: a link's queue of requests (lane.c), one
 * lane per connection so that its requests keep their order through
 * batching and resends. All calls are made under the link's mutex.
 */
#ifndef PARLEY_GW_LANE_H
#define PARLEY_GW_LANE_H

#include "gateway/req.h"

/* GwBatch and BrokerBatch must stay under PL_FRAME_BYTES_CEIL: a batch
 * stops growing when its requests, or the replies they may produce,
 * pass half the ceiling. */
#define GW_BATCH_BYTES_MAX (PL_FRAME_BYTES_CEIL / 2)
/* Idle lanes kept for reuse per link (lane.c), so a steady load of
 * connections allocates no lane per batch. */
#define GW_LANES_SPARE_MAX 1024
/* Bytes a request adds to a GwBatch beyond its packed body (its id and
 * the field headers), counted when a batch is sized. */
#define GW_REQ_OVERHEAD_BYTES 32

/* One lane of a link (lane.c): a connection's queued requests to one
 * shard group, in send order, and how many of its requests are in
 * batches now (busy while > 0). */
typedef struct gw_lane {
	uint64_t id;
	gw_req *head, *tail;
	uint32_t inflight;
	bool ready; /* in the ready list */
	struct gw_lane *next_ready;
	struct gw_lane *hnext; /* hash chain, or the spare list */
} gw_lane;

/* A link's lanes: a hash of lanes by id and a FIFO of the lanes that
 * may send (queued requests, nothing in flight). Under link->mu. */
typedef struct gw_lanes {
	gw_lane **buckets;
	size_t nbuckets; /* power of two */
	gw_lane *ready_head, *ready_tail;
	gw_lane *spare;
	uint32_t nspare;
	uint32_t nlanes;
	uint32_t queued;
} gw_lanes;

pl_status gw_lanes_init(gw_lanes *t, size_t nbuckets);
void gw_lanes_fini(gw_lanes *t);
/* Queues r (taken on success) at the back of lane r->lane. */
pl_status gw_lanes_push(gw_lanes *t, gw_req *r);
/* Puts rs[0..n) back at the front of their lanes, in that order (they
 * came back from a batch). Taken ones are set to NULL; on PL_E_NOMEM
 * the rest are still the caller's. */
pl_status gw_lanes_push_front(gw_lanes *t, gw_req **rs, uint32_t n);
bool gw_lanes_has_ready(const gw_lanes *t);
/* Takes up to max requests for one batch (bounded by GW_BATCH_BYTES_MAX
 * in requests and in the replies they may produce): whole runs of ready
 * lanes, each in order; the lanes become busy. Returns how many. */
uint32_t gw_lanes_take(gw_lanes *t, gw_req **out, uint32_t max);
/* A batch is settled: its requests of lanes[0..n) left flight (each
 * entry one request). Called after the batch's requests to be sent
 * again were put back with gw_lanes_push_front, under the same lock,
 * so no later request of a lane can overtake them. */
void gw_lanes_release(gw_lanes *t, const uint64_t *lanes, uint32_t n);
/* Empties every lane; returns the requests as one list (next). */
gw_req *gw_lanes_drain(gw_lanes *t);

#endif /* PARLEY_GW_LANE_H */
