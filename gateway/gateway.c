/*
 * gateway.c - the gateway's life cycle: metrics registration, the decode
 * arena pool, the sweeper thread (deadlines, catch-up retries, freeing
 * dead connections), the start/stop order, and applying the cluster
 * map (groups and tenant keys at runtime). Locking and lifetime rules
 * are in core.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unistd.h>

#include <sodium.h>

#include "gateway/conn.h"
#include "gateway/feed.h"
#include "gateway/httpd_port.h"
#include "gateway/link.h"
#include "gateway/listen.h"
#include "gateway/request.h"
#include "proto/map_client.h"

_Static_assert(GW_META_MAX == PL_META_ADDRS_MAX,
    "`meta` lists what the map watcher accepts");

/* At stop, connections get this long to receive their goodbye: a small
 * part of the stop deadline (PL_STOP_DEADLINE_MS). */
#define GW_STOP_GOODBYE_MS 250
_Static_assert(GW_STOP_GOODBYE_MS < PL_STOP_DEADLINE_MS / 4,
    "goodbyes leave most of the stop deadline to the rest of the stop");

static void metrics_register(gw *g)
{
	pl_metrics *r = &g->metrics;
	gw_mset *m = &g->m;
	m->conns[GW_TCP] = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_gateway_connections{transport=\"tcp\"}",
	    "Open client connections");
	m->conns[GW_WS] = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_gateway_connections{transport=\"ws\"}",
	    "Open client connections");
	m->subs = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_gateway_subscriptions", "Active room subscriptions");
	m->rooms = pl_metrics_add(r, PL_METRIC_GAUGE, "parley_gateway_rooms",
	    "Rooms with at least one subscriber on this gateway");
	m->requests = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_requests_total", "Client requests received");
	m->publishes = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_publish_total", "Publish requests received");
	m->acks = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_acks_total", "Publish acks sent to clients");
	for (int code = 1; code < GW_CODES; code++) {
		char name[PL_METRIC_NAME_MAX + 1];
		snprintf(name, sizeof(name),
		    "parley_gateway_errors_total{code=\"%s\"}",
		    pl_code_name(code));
		m->errors[code] = pl_metrics_add(r, PL_METRIC_COUNTER, name,
		    "Error replies sent to clients, by code");
	}
	m->slow = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_slow_consumers_total",
	    "Connections closed because their send queue overflowed");
	m->publish_ack = pl_metrics_add(r, PL_METRIC_HIST,
	    "parley_gateway_publish_ack_seconds",
	    "Publish received to ack sent");
	m->deliver =
	    pl_metrics_add(r, PL_METRIC_HIST, "parley_gateway_deliver_seconds",
	        "Message timestamp to delivery at the gateway");
	m->broker_rtt = pl_metrics_add(r, PL_METRIC_HIST,
	    "parley_gateway_broker_rtt_seconds", "Broker batch round trip");
	m->http_conns = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_gateway_http_connections",
	    "Open HTTP connections not (yet) upgraded to WebSocket");
	m->http_bad = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_http_bad_requests_total",
	    "HTTP request heads refused as malformed or too large");
	m->http_timeouts[0] = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_http_timeouts_total{kind=\"header\"}",
	    "HTTP connections closed by a deadline");
	m->http_timeouts[1] = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_http_timeouts_total{kind=\"keepalive\"}",
	    "HTTP connections closed by a deadline");
	m->http_refused[0] = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_http_refused_total{reason=\"per_address\"}",
	    "HTTP connections refused at accept");
	m->http_refused[1] = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_http_refused_total{reason=\"connections_max\"}",
	    "HTTP connections refused at accept");
	m->sends_dropped[0] = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_sends_dropped_total{reason=\"closing\"}",
	    "Frames for a client dropped (slow consumers are counted apart)");
	m->sends_dropped[1] = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_sends_dropped_total{reason=\"nomem\"}",
	    "Frames for a client dropped (slow consumers are counted apart)");
	m->events_in = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_feed_events_total",
	    "Live events received from brokers (only rooms this gateway "
	    "watches)");
	m->events_dropped[0] = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_feed_events_dropped_total{reason=\"invalid\"}",
	    "Live feed events fanned out to no subscriber");
	m->events_dropped[1] = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_feed_events_dropped_total{reason=\"encode\"}",
	    "Live feed events fanned out to no subscriber");
	m->watch_dropped = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_watch_dropped_total",
	    "Watch changes not sent to a broker (best effort)");
	m->replies_unmatched = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_broker_replies_unmatched_total",
	    "Broker replies that match no request of their batch (ignored)");
	m->map_version = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_gateway_map_version",
	    "Version of the cluster map applied (0: none yet)");
	m->map_updates = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_map_updates_total", "Cluster maps applied");
	m->cluster_gateways = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_gateway_cluster_gateways",
	    "Gateways the brokers serve, this one included: tenant limits are "
	    "shared by this many");
	m->tenant_refused[0] = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_tenant_refused_total{limit=\"connections\"}",
	    "Hellos refused: the tenant's share of connections_max reached");
	m->tenant_refused[1] = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_gateway_tenant_refused_total{limit=\"publish_per_sec\"}",
	    "Publishes refused: the tenant's share of publish_per_sec used");
	m->groups = pl_metrics_add(r, PL_METRIC_GAUGE, "parley_gateway_groups",
	    "Shard groups the gateway routes to");
}

pl_status gw_new(const gw_config *conf, gw **out)
{
	gw *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return PL_E_NOMEM;
	g->conf = conf;
	g->start_us = pl_now_us();
	uint8_t boot[6];
	randombytes_buf(boot, sizeof(boot));
	for (size_t i = 0; i < sizeof(boot); i++)
		g->msg_id_boot = g->msg_id_boot << 8 | boot[i];
	g->arena_bytes = PL_ARENA_BYTES_FOR(conf->frame_bytes_max);
	pl_metrics_init(&g->metrics);
	metrics_register(g);
	g->conn_hooks = (gw_conn_hooks){.frame = gw_request_handle,
	    .closing = gw_subs_drop_conn,
	    .drained = gw_subs_resume,
	    .peer_put = gw_httpd_peer_put};
	pthread_mutex_init(&g->conns_mu, NULL);
	pthread_mutex_init(&g->reap_mu, NULL);
	pthread_cond_init(&g->reap_cv, NULL);
	pthread_mutex_init(&g->arena_mu, NULL);
	pthread_mutex_init(&g->links_mu, NULL);
	pthread_mutex_init(&g->socks_mu, NULL);
	pthread_mutex_init(&g->map_mu, NULL);
	pthread_mutex_init(&g->keys_mu, NULL);
	if (gw_keys_init(g) != PL_OK || gw_links_init(g) != PL_OK ||
	    gw_subs_init(g) != PL_OK || gw_tenants_init(&g->tenants) != PL_OK) {
		gw_free(g);
		return PL_E_NOMEM;
	}
	*out = g;
	return PL_OK;
}

/* ---- sweeper ---- */

/* Frees connections whose last reference is gone. Runs on the sweeper
 * thread because nng_aio_free waits for callbacks, which a callback of
 * the same connection could never do. */
static void reap_all(gw *g)
{
	pthread_mutex_lock(&g->reap_mu);
	gw_conn *list = g->reap;
	g->reap = NULL;
	pthread_mutex_unlock(&g->reap_mu);
	while (list != NULL) {
		gw_conn *c = list;
		list = c->reap_next;
		gw_conn_destroy(c);
	}
}

/* Connections past a deadline are collected under conns_mu (with a
 * reference) and closed after it is released: closing takes subs_mu,
 * which is ordered before conn->mu but not after conns_mu. */
#define SWEEP_BATCH 256

static void sweep_conns(gw *g)
{
	int64_t now = pl_mono_us();
	gw_conn *victims[SWEEP_BATCH];
	size_t n = 0;
	pthread_mutex_lock(&g->conns_mu);
	for (gw_conn *c = g->conns; c != NULL && n < SWEEP_BATCH; c = c->next) {
		bool close_now = false;
		gw_conn_sweep(c, now, &close_now);
		if (close_now) {
			gw_conn_ref(c);
			victims[n++] = c;
		}
	}
	pthread_mutex_unlock(&g->conns_mu);
	for (size_t i = 0; i < n; i++) {
		gw_conn_close(victims[i], "deadline");
		gw_conn_unref(victims[i]);
	}
}

static void *sweeper_main(void *arg)
{
	gw *g = arg;
	pthread_mutex_lock(&g->reap_mu);
	while (!g->sweeper_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += GW_SWEEP_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		if (g->reap == NULL)
			pthread_cond_timedwait(&g->reap_cv, &g->reap_mu, &ts);
		pthread_mutex_unlock(&g->reap_mu);
		reap_all(g);
		sweep_conns(g);
		gw_httpd_sweep(g);
		gw_subs_retry(g);
		pthread_mutex_lock(&g->reap_mu);
	}
	pthread_mutex_unlock(&g->reap_mu);
	reap_all(g);
	return NULL;
}

/* ---- start / stop ---- */

/* The links report their live feeds to the subscriptions. */
static void feed_events(
    void *ctx, uint16_t group, Parley__Internal__BrokerBatch *b)
{
	gw_subs_events(ctx, group, b);
}

static void feed_epoch(void *ctx, uint16_t group)
{
	gw_subs_resync_group(ctx, group, true);
}

static const gw_link_feed *link_feed(void)
{
	static const gw_link_feed feed = {
	    .on_events = feed_events, .on_epoch = feed_epoch};
	return &feed;
}

/* A new link for gc, started and published (sorted by group: list_rooms
 * merges in room id order). One that fails to start was never seen by
 * anyone and is freed at once. */
static pl_status link_add(gw *g, const gw_group_conf *gc)
{
	gw_link_feed feed = *link_feed();
	feed.ctx = g;
	gw_link *l;
	pl_status st = gw_link_new(g, gc, &feed, &l);
	if (st != PL_OK)
		return st;
	if ((st = gw_link_start(l)) == PL_OK)
		st = gw_links_add(g, l);
	if (st != PL_OK) {
		gw_link_stop(l);
		gw_link_free(l);
	}
	return st;
}

static pl_status links_start(gw *g)
{
	const gw_config *conf = g->conf;
	for (int i = 0; i < conf->ngroups; i++) {
		pl_status st = link_add(g, &conf->groups[i]);
		if (st != PL_OK)
			return st;
	}
	pl_metric_set(g->m.groups, conf->ngroups);
	return PL_OK;
}

/* ---- the cluster map ---- */

static const gw_group_conf *table_group(const gw_map_table *t, uint16_t id)
{
	for (int i = 0; i < t->ngroups; i++) {
		if (t->groups[i].id == id)
			return &t->groups[i];
	}
	return NULL;
}

/* Groups of the map: new ones get a link, known ones follow it, and a
 * link whose group the map no longer routes to is retired (draining):
 * links are never freed while connections may hold them. Returns how
 * many groups are routed. */
static int groups_apply(gw *g, const gw_map_table *t)
{
	for (int i = 0; i < t->ngroups; i++) {
		const gw_group_conf *gc = &t->groups[i];
		gw_link *l = gw_link_find(g, gc->id);
		if (l != NULL) {
			gw_link_update(l, gc);
			continue;
		}
		if (gc->nbrokers == 0)
			continue; /* no address yet: added once it has one */
		pl_status st = link_add(g, gc);
		if (st != PL_OK)
			PL_ERROR(GW_MOD,
			    "event=group_add_failed group=%u err=%s",
			    (unsigned)gc->id, pl_strerror(st));
		else
			PL_INFO(GW_MOD,
			    "event=group_added group=%u replicas=%d weight=%u",
			    (unsigned)gc->id, gc->nbrokers, gc->weight);
	}
	int nlinks, routed = 0;
	gw_link *const *links = gw_links_view(g, &nlinks);
	for (int i = 0; i < nlinks; i++) {
		if (table_group(t, gw_link_group(links[i])) != NULL) {
			routed++;
			continue;
		}
		if (!gw_link_draining(links[i]))
			PL_INFO(GW_MOD, "event=group_retired group=%u",
			    (unsigned)gw_link_group(links[i]));
		gw_link_retire(links[i]);
	}
	return routed;
}

pl_status gw_map_apply(gw *g, const pl_map *m)
{
	gw_map_table t;
	if (gw_map_table_init(&t) != PL_OK) {
		PL_ERROR(GW_MOD, "event=map_apply_failed version=%llu err=%s",
		    (unsigned long long)m->version, pl_strerror(PL_E_NOMEM));
		return PL_E_NOMEM;
	}
	pthread_mutex_lock(&g->map_mu);
	if (m->version <= atomic_load(&g->map_version) ||
	    atomic_load(&g->stopping)) {
		pthread_mutex_unlock(&g->map_mu);
		gw_map_table_fini(&t);
		return PL_OK;
	}
	gw_map_table_from(&t, m);
	int routed = groups_apply(g, &t);
	for (size_t i = 0; i < m->ntenants; i++) {
		const pl_map_tenant *mt = &m->tenants[i];
		gw_tenants_set(&g->tenants, mt->name,
		    mt->limits.connections_max ? mt->limits.connections_max
		                               : m->limits.connections_max,
		    mt->limits.publish_per_sec ? mt->limits.publish_per_sec
		                               : m->limits.publish_per_sec);
	}
	int ntenants = t.keys->ntenants;
	if (gw_keys_swap(g, t.keys) != PL_OK)
		PL_ERROR(GW_MOD, "event=map_keys_kept version=%llu err=%s",
		    (unsigned long long)t.version, pl_strerror(PL_E_NOMEM));
	t.keys = NULL;
	atomic_store(&g->map_version, t.version);
	pl_metric_set(g->m.map_version, (int64_t)t.version);
	pl_metric_inc(g->m.map_updates, 1);
	pl_metric_set(g->m.groups, routed);
	PL_INFO(GW_MOD,
	    "event=map_applied version=%llu groups=%d tenants=%d skipped=%d",
	    (unsigned long long)t.version, routed, ntenants, t.skipped);
	pthread_mutex_unlock(&g->map_mu);
	gw_map_table_fini(&t);
	return PL_OK;
}

static void map_watch_cb(void *ctx, const pl_map *m)
{
	(void)gw_map_apply(ctx, m);
}

/* Serves at once: until the first map, what needs a group is refused as
 * retryable (gw_map_pending). */
static pl_status watch_start(gw *g)
{
	const gw_config *conf = g->conf;
	if (conf->nmeta == 0)
		return PL_OK;
	const char *addrs[GW_META_MAX];
	for (int i = 0; i < conf->nmeta; i++)
		addrs[i] = conf->meta[i];
	pl_status st = pl_map_watch_start(
	    addrs, conf->nmeta, 0, map_watch_cb, g, &g->watch);
	if (st != PL_OK)
		PL_ERROR(GW_MOD, "event=map_watch_failed err=%s",
		    pl_strerror(st));
	else
		PL_INFO(GW_MOD, "event=map_watch meta=%d first=%s",
		    conf->nmeta, conf->meta[0]);
	return st;
}

pl_status gw_start(gw *g)
{
	if (pthread_create(&g->sweeper, NULL, sweeper_main, g) != 0)
		return PL_E_NOMEM;
	g->sweeper_started = true;
	pl_status st = links_start(g);
	if (st == PL_OK)
		st = gw_listen_start(g);
	if (st == PL_OK)
		st = watch_start(g);
	if (st != PL_OK)
		return st;
	int nlinks;
	(void)gw_links_view(g, &nlinks);
	PL_INFO(GW_MOD, "event=started id=%s tcp=%s http=%s groups=%d meta=%d",
	    g->conf->id, g->conf->tcp, g->conf->http, nlinks, g->conf->nmeta);
	return PL_OK;
}

/* Every connection gets goodbye(unavailable, "gateway stopping") and a
 * moment to receive it (each closes itself once it is written); what is
 * left is closed by conns_close_all. */
static void conns_goodbye_all(gw *g)
{
	pthread_mutex_lock(&g->conns_mu);
	for (gw_conn *c = g->conns; c != NULL; c = c->next)
		gw_conn_goodbye(
		    c, PARLEY__ERROR_CODE__UNAVAILABLE, "gateway stopping");
	pthread_mutex_unlock(&g->conns_mu);
	for (int waited = 0; waited < GW_STOP_GOODBYE_MS; waited++) {
		pthread_mutex_lock(&g->conns_mu);
		bool none = g->conns == NULL;
		pthread_mutex_unlock(&g->conns_mu);
		if (none)
			return;
		usleep(1000);
	}
}

/* Closes every connection; their broker replies are still delivered (to
 * nobody) while the links run, which releases the references. */
static void conns_close_all(gw *g)
{
	for (;;) {
		pthread_mutex_lock(&g->conns_mu);
		gw_conn *c = g->conns;
		if (c != NULL)
			gw_conn_ref(c);
		pthread_mutex_unlock(&g->conns_mu);
		if (c == NULL)
			return;
		gw_conn_close(c, "shutdown");
		gw_conn_unref(c);
	}
}

static void sweeper_join(gw *g)
{
	if (!g->sweeper_started)
		return;
	pthread_mutex_lock(&g->reap_mu);
	g->sweeper_stop = true;
	pthread_cond_signal(&g->reap_cv);
	pthread_mutex_unlock(&g->reap_mu);
	pthread_join(g->sweeper, NULL);
	g->sweeper_started = false;
}

void gw_stop(gw *g)
{
	/* No map is applied once this returns: links stop as they are. */
	pl_map_watch_stop(g->watch);
	g->watch = NULL;
	atomic_store(&g->stopping, true);
	gw_listen_stop(g);
	conns_goodbye_all(g);
	conns_close_all(g);
	/* Stopping a link fails what is queued or in flight, which drops
	 * the last references of closed connections. */
	int nlinks;
	gw_link *const *links = gw_links_view(g, &nlinks);
	for (int i = 0; i < nlinks; i++)
		gw_link_stop(links[i]);
	sweeper_join(g);
	reap_all(g);
	/* A callback that was running when its connection closed still holds
	 * a reference: wait until every connection is destroyed (destroying
	 * waits for its callbacks), so nothing touches g after gw_free. */
	for (int i = 0; atomic_load(&g->conns_alive) > 0; i++) {
		if (i == GW_STOP_WAIT_MS)
			PL_WARN(GW_MOD, "event=stop_waiting conns=%d",
			    atomic_load(&g->conns_alive));
		usleep(1000);
		reap_all(g);
	}
	PL_INFO(GW_MOD, "event=stopped id=%s", g->conf->id);
}

void gw_free(gw *g)
{
	if (g == NULL)
		return;
	int nlinks = 0;
	gw_link *const *links =
	    atomic_load(&g->links) != NULL ? gw_links_view(g, &nlinks) : NULL;
	for (int i = 0; i < nlinks; i++)
		gw_link_free(links[i]);
	gw_links_fini(g);
	gw_socks_free(g);
	/* Freeing the links ran their last callbacks: references those
	 * dropped are reaped here, after the sweeper has gone. */
	reap_all(g);
	gw_keys_fini(g);
	gw_tenants_fini(&g->tenants);
	gw_httpd_free(g);
	gw_subs_fini(g);
	gw_arenas_free(g);
	pl_metrics_fini(&g->metrics);
	pthread_mutex_destroy(&g->conns_mu);
	pthread_mutex_destroy(&g->reap_mu);
	pthread_cond_destroy(&g->reap_cv);
	pthread_mutex_destroy(&g->arena_mu);
	pthread_mutex_destroy(&g->links_mu);
	pthread_mutex_destroy(&g->socks_mu);
	pthread_mutex_destroy(&g->map_mu);
	pthread_mutex_destroy(&g->keys_mu);
	free(g);
}
