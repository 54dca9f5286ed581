/*
 * core.h - private to gateway/: the state one gateway shares between
 * its modules (struct gw: metrics, the connection table, the sweeper's
 * queue, the subscription table, the broker links, the decode arenas)
 * and the rules that keep it safe across nng's callback threads.
 *
 * Lock order (outer first): link->feed_mu -> g->subs_mu -> conn->mu, and
 * g->conns_mu -> conn->mu. link->mu, multi->mu, g->arena_mu and
 * g->reap_mu are leaves: nothing else is locked while one is held.
 * link->feed_mu -> link->mu is allowed (a poll is sent under both).
 * g->map_mu (one map applied at a time) -> g->links_mu -> g->socks_mu ->
 * sock->mu, and g->map_mu -> link->mu; sock->mu and g->keys_mu are
 * leaves.
 *
 * Lifetime: a connection is reference counted. The connection table
 * holds one reference until the connection closes; every request in
 * flight to a broker holds one. The last unref hands the connection to
 * the sweeper thread, which stops its aios (waiting for callbacks) and
 * frees it, so no callback or late broker reply touches freed memory.
 *
 * Links are never freed before gw_free, even when the map drops their
 * group: connection threads hold a gw_link * from gw_link_find without
 * any lock. The table of links is an immutable sorted view replaced
 * whole (link.c); old views are kept until gw_free too.
 *
 * The modules and the order they depend in are listed in gateway.h.
 */
#ifndef PARLEY_GW_CORE_H
#define PARLEY_GW_CORE_H

#include <pthread.h>
#include <stdatomic.h>

#include <nng/nng.h>

#include "gateway/gateway.h"
#include "gateway/tenant.h"
#include "proto/codec.h"

/* Sweeper period: idle, hello and close deadlines, catch-up retries. */
#define GW_SWEEP_MS 250
/* After this long waiting for connections at stop, say so in the log
 * (and keep waiting: freeing under a running callback is worse). */
#define GW_STOP_WAIT_MS 5000
/* Error codes are parley.ErrorCode values 0..INTERNAL. */
#define GW_CODES 11

enum { GW_TCP = 0, GW_WS = 1, GW_TRANSPORTS = 2 };

typedef struct gw_conn gw_conn;
typedef struct gw_link gw_link;
typedef struct gw_room gw_room;
typedef struct gw_sock gw_sock;   /* link_sock.c */
typedef struct gw_links gw_links; /* link.c */
/* A keyring and the verifies using it (core.c). */
struct gw_keys {
	pl_keyring *kr;
	bool owned; /* false for conf->keys */
	int refs;   /* one for being current, one per verify, keys_mu */
};
struct pl_map_watch;

typedef struct gw_mset {
	pl_metric *conns[GW_TRANSPORTS];
	pl_metric *subs;
	pl_metric *rooms;
	pl_metric *requests;
	pl_metric *publishes;
	pl_metric *acks;
	pl_metric *errors[GW_CODES];
	pl_metric *slow;
	pl_metric *publish_ack;
	pl_metric *deliver;
	pl_metric *broker_rtt;
	pl_metric *http_conns;
	pl_metric *http_bad;
	pl_metric *http_timeouts[2]; /* request head, keep-alive idle */
	pl_metric *http_refused[2];  /* per address, connections_max */
	/* Drops that would otherwise be silent. */
	pl_metric *sends_dropped[2];  /* to a closing conn, out of memory */
	pl_metric *events_in;         /* live events received from brokers */
	pl_metric *events_dropped[2]; /* invalid, not encodable */
	pl_metric *watch_dropped;
	pl_metric *replies_unmatched;
	pl_metric *map_version;
	pl_metric *map_updates;
	pl_metric *groups;
	pl_metric *cluster_gateways;
	pl_metric *tenant_refused[2]; /* connections, publishes */
} gw_mset;

/* A client's address, as counted by the HTTP port's per-address cap
 * (httpd.c); len 0: not counted. */
typedef struct gw_peer {
	uint8_t addr[16];
	uint8_t len;
} gw_peer;

/* What a client connection (conn.c) tells the modules above it. They
 * are set once, by gw_new, so conn.c names none of those modules. Each
 * is called on an nng thread, without conn->mu held. */
typedef struct gw_conn_hooks {
	/* One client frame's payload (borrowed for the call). */
	void (*frame)(gw_conn *c, const uint8_t *payload, size_t len);
	/* The connection is closing: what it subscribed to goes. */
	void (*closing)(gw_conn *c);
	/* Its send queue drained below the catch-up budget while a
	 * catch-up waited for it. */
	void (*drained)(gw_conn *c);
	/* A connection counted by the HTTP port for p is gone. */
	void (*peer_put)(gw *g, const gw_peer *p);
} gw_conn_hooks;

typedef struct gw_arena {
	pl_arena a;
	struct gw_arena *next;
} gw_arena;

struct gw {
	const gw_config *conf;
	pl_metrics metrics;
	gw_mset m;
	int64_t start_us;
	_Atomic bool stopping;
	/* Connection objects not yet destroyed: gw_stop waits for zero, so
	 * no connection callback can run once it returns. */
	_Atomic int conns_alive;

	/* The TCP client listener (listen.c) and the HTTP port (httpd.c,
	 * owned there). */
	nng_stream_listener *tcp_lst;
	nng_aio *tcp_accept;
	struct gw_httpd *httpd;

	/* Connection table, and what connections call upward. */
	gw_conn_hooks conn_hooks;
	pthread_mutex_t conns_mu;
	gw_conn *conns;
	uint32_t nconns;
	uint64_t conn_ids;

	/* Sweeper thread: deadlines, retries, and freeing dead conns. */
	pthread_mutex_t reap_mu;
	pthread_cond_t reap_cv;
	gw_conn *reap;
	bool sweeper_stop;
	bool sweeper_started;
	pthread_t sweeper;

	/* Subscriptions (feed.c), all under subs_mu. */
	pthread_mutex_t subs_mu;
	gw_room **rooms; /* hash buckets, power of two */
	size_t rooms_cap, nrooms;
	uint64_t nsubs, sub_ids;
	uint32_t retry_n; /* subscriptions waiting for a catch-up retry */

	/* Broker links (link.c): the current view, read with acquire by
	 * any thread and replaced (release) under links_mu when a group is
	 * added; views and links live until gw_free. */
	_Atomic(gw_links *) links;
	pthread_mutex_t links_mu;
	/* One req0 socket per broker address, shared by every link with a
	 * replica there (link_sock.c), under socks_mu. */
	pthread_mutex_t socks_mu;
	gw_sock *socks;
	_Atomic int socks_open;
	_Atomic uint64_t req_ids;

	/* Tenant keys: conf->keys, then each map's (gw_keys_swap). keys_mu
	 * guards the pointer and the counts only: a verify takes a
	 * reference and checks the signature outside the lock. */
	pthread_mutex_t keys_mu;
	struct gw_keys *keys;
	/* Tenant limits held across gateways (tenant.h), from each map. */
	gw_tenants tenants;

	/* The cluster map (gateway.c): its watcher, the last version
	 * applied (0: none yet), one map applied at a time. */
	struct pl_map_watch *watch;
	_Atomic uint64_t map_version;
	pthread_mutex_t map_mu;
	/* client_msg_ids the gateway makes for publishes without one. */
	uint64_t msg_id_boot; /* random, 48 bits */
	_Atomic uint64_t msg_ids;
	_Atomic uint64_t origins; /* publishes given an origin */

	/* Decode arenas for client frames, one per concurrent reader. */
	pthread_mutex_t arena_mu;
	gw_arena *arenas;
	size_t arena_bytes;
};

/* A decode arena for one client frame, from the pool (or new); NULL
 * when out of memory. Give it back with gw_arena_put. */
gw_arena *gw_arena_get(gw *g);
void gw_arena_put(gw *g, gw_arena *a);
/* Counts an error reply sent to a client, by code. */
void gw_count_error(gw *g, int code);
/* At gw_free: frees the pooled arenas. */
void gw_arenas_free(gw *g);

/* Verifies a client token against the current tenant keys
 * (pl_token_verify_why; may run on any thread). */
pl_status gw_token_verify(gw *g, const char *token, int64_t now_s,
    pl_claims *out, const char **why);
/* At gw_new: conf->keys are the tenant keys. PL_E_NOMEM. */
pl_status gw_keys_init(gw *g);
/* Makes kr (taken) the tenant keys: tokens verified from now on use it;
 * the previous keyring is freed once no verify uses it (unless it is
 * conf->keys). PL_E_NOMEM: kr is freed, the keys stay. */
pl_status gw_keys_swap(gw *g, pl_keyring *kr);
/* At gw_free: frees the keyring the gateway owns. */
void gw_keys_fini(gw *g);

/* With `meta` set and no map applied yet the gateway knows no groups:
 * what needs one is refused as retryable (unavailable), not not_found. */
static inline bool gw_map_pending(gw *g)
{
	return g->conf->nmeta > 0 && atomic_load(&g->map_version) == 0;
}

#endif /* PARLEY_GW_CORE_H */
