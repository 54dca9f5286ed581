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

/* A link to group conf (copied; at least one broker) of g (borrowed: it
 * outlives the link) that reports its feed to *feed (copied). *out is
 * written only on success; PL_E_NOMEM otherwise. Dials nothing yet
 * (gw_link_start). */
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
/* Both may run on any thread while a map adds links: they read the
 * current view of the table without a lock. */
gw_link *gw_link_find(gw *g, uint16_t group);
/* Weighted among non-draining groups; NULL if none. key (may be NULL)
 * makes the choice deterministic per (tenant, key). */
gw_link *gw_link_pick(gw *g, const char *tenant, const char *key);
/* The shard group the link serves. */
uint16_t gw_link_group(const gw_link *l);
/* How many replicas the group has, and the address of the one in slot
 * rep (0..GW_REPLICAS_MAX-1; NULL when the slot is empty: slots are
 * stable while the map moves replicas, so they may have holes). */
int gw_link_replicas(const gw_link *l);
const char *gw_link_replica_addr(const gw_link *l, int rep);
/* When a replica of the group last answered (pl_mono_us), 0: never. */
int64_t gw_link_last_ok_us(const gw_link *l);

/* From the cluster map (gateway.c, one call at a time, not from an nng
 * callback): the group's weight and draining flag change at once; its
 * replicas follow conf's brokers (none listed: unchanged). A replica
 * whose address goes is left, what was in flight on it is re-sent or
 * failed as when its connection drops. */
void gw_link_update(gw_link *l, const gw_group_conf *conf);
/* The map removed the group: it takes no new rooms. Its link stays
 * until gw_stop (its rooms are still served while a broker answers). */
void gw_link_retire(gw_link *l);
bool gw_link_draining(const gw_link *l);
uint32_t gw_link_weight(const gw_link *l);

/* The table of links: gw_links_init at gw_new (empty), gw_links_add
 * publishes a started link (PL_E_NOMEM, PL_E_TOO_LARGE past
 * GW_GROUPS_MAX), gw_links_fini at gw_free (after the links are freed;
 * it frees the views only). gw_links_view: the current links sorted by
 * group, *n of them; the array never changes and lives until gw_free. */
pl_status gw_links_init(gw *g);
pl_status gw_links_add(gw *g, gw_link *l);
void gw_links_fini(gw *g);
gw_link *const *gw_links_view(gw *g, int *n);

/* Broker sockets open now: one per broker address in use, however many
 * groups' replicas it holds (link_sock.c). */
int gw_link_sockets(gw *g);
/* At gw_free, after the links: frees the socket table. */
void gw_socks_free(gw *g);

#endif /* PARLEY_GW_LINK_H */
