/*
 * feed.h - private to gateway/: subscriptions (feed.c): the rooms this
 * gateway watches, each subscription's cursor, catch-up pages and the
 * fan-out of the live feed's events to subscribed connections.
 */
#ifndef PARLEY_GW_FEED_H
#define PARLEY_GW_FEED_H

#include "gateway/req.h"

/* Catch-up page size (internals.md asks 200 per history page). */
#define GW_CATCHUP_LIMIT 200

struct gw_sub {
	uint64_t id;
	uint64_t room;
	char room_str[PL_ROOM_ID_CHARS + 1];
	gw_conn *conn; /* borrowed: subs are removed before conn closes */
	gw_sub *rprev, *rnext; /* room list */
	gw_sub *cnext;         /* connection list */
	gw_cursor cur;
	bool retry; /* waiting for a catch-up retry */
};

struct gw_room {
	uint64_t room;
	gw_room *hnext;
	gw_sub *subs;
	uint32_t nsubs;
};

pl_status gw_subs_init(gw *g);
void gw_subs_fini(gw *g);
void gw_subs_subscribe(gw_conn *c, const Parley__ClientFrame *f);
void gw_subs_unsubscribe(gw_conn *c, const Parley__ClientFrame *f);
void gw_subs_drop_conn(gw_conn *c);
void gw_subs_events(gw *g, uint16_t group, Parley__Internal__BrokerBatch *b);
void gw_subs_resync_group(gw *g, uint16_t group, bool rewatch);
void gw_subs_retry(gw *g);
/* The connection's send queue drained below the catch-up budget: its
 * deferred catch-ups go on. Called without conn->mu held. */
void gw_subs_resume(gw_conn *c);

#endif /* PARLEY_GW_FEED_H */
