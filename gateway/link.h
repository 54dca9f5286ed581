/*
 * link.h - private to gateway/: the link to one shard group (link*.c),
 * the gateway's transport to the brokers. Users submit gw_reqs; the
 * link answers each by calling its done callback and hands the live
 * feed's events to the callbacks it was given at gw_link_new, so it
 * calls no module above it.
 */
#ifndef PARLEY_GW_LINK_H
#define PARLEY_GW_LINK_H

#include "gateway/req.h"

/* Live feed poll: broker parks it up to this long; events per reply. */
#define GW_POLL_WAIT_MS 1000
/* A broker answering within this long counts as healthy (/healthz). */
#define GW_HEALTHY_MS (3 * GW_POLL_WAIT_MS)

/* What a link tells the module above it about its group's live feed
 * (the feed, through gateway.c). Both are called on nng threads. */
typedef struct gw_link_feed {
	/* Events of one BrokerBatch (borrowed for the call), in the order
	 * the broker sent them: calls for one link never overlap (they are
	 * made under its feed lock, which the callee may not take). */
	void (*on_events)(
	    void *ctx, uint16_t group, Parley__Internal__BrokerBatch *b);
	/* The group's leader has a new epoch: it restarted and forgot the
	 * watches. Called without the link's locks held. */
	void (*on_epoch)(void *ctx, uint16_t group);
	void *ctx; /* borrowed: it outlives the link */
} gw_link_feed;

/* A link to group conf (borrowed, like g: both outlive the link) that
 * reports its feed to *feed (copied). *out is written only on success;
 * PL_E_NOMEM otherwise. Dials nothing yet (gw_link_start). */
pl_status gw_link_new(
    gw *g, const gw_group_conf *conf, const gw_link_feed *feed, gw_link **out);
pl_status gw_link_start(gw_link *l);
void gw_link_stop(gw_link *l);
void gw_link_free(gw_link *l);
/* Queues r (taken on success). PL_E_BACKPRESSURE when full, PL_E_CLOSED
 * when stopping; on error r is still the caller's. A request pinned to
 * a replica that has no connection is refused with PL_E_UNAVAILABLE
 * (r->pin, set by the caller). */
pl_status gw_link_submit(gw_link *l, gw_req *r);
gw_link *gw_link_find(gw *g, uint16_t group);
/* Weighted among non-draining groups; NULL if none. key (may be NULL)
 * makes the choice deterministic per (tenant, key). */
gw_link *gw_link_pick(gw *g, const char *tenant, const char *key);
/* The shard group the link serves. */
uint16_t gw_link_group(const gw_link *l);
/* How many replicas the group has, and the address of one. */
int gw_link_replicas(const gw_link *l);
const char *gw_link_replica_addr(const gw_link *l, int rep);
/* When a replica of the group last answered (pl_mono_us), 0: never. */
int64_t gw_link_last_ok_us(const gw_link *l);

#endif /* PARLEY_GW_LINK_H */
