/*
 * gateway.h - the contract of parley-gateway: its configuration, the
 * gateway's life cycle (new, start, stop, free) and the subscription
 * cursor, a pure state machine kept separate so it can be unit-tested.
 * The gateway <-> broker protocol it speaks is docs/internals.md; the
 * cursor implements its "Subscription cursor" section exactly.
 *
 * Inside gateway/ each module has its own header, and calls point one
 * way, down this list (a module calls only those below it; what must go
 * up is a callback it was given):
 *
 *   main.c          this header only
 *   gateway.c       life cycle, the sweeper; wires the callbacks below
 *   listen.c        the TCP listener            listen.h
 *   httpd.c         the HTTP port, /ws upgrade  httpd_port.h
 *   http.c          /healthz, /metrics, files   http.h
 *   request.c       a client frame: local answers, limits, routing
 *                                               request.h
 *   feed.c, multi.c subscriptions; fan-out requests
 *                                               feed.h, multi.h
 *   link*.c         the broker transport: replicas, batches, the poll
 *                   (feed events up through gw_link_feed)
 *                                               link.h (link_int.h)
 *   lane.c          a link's per-connection queues       lane.h
 *   req.c           a request and its done callback      req.h
 *   conn.c          a client connection (frames, drain, close and the
 *                   HTTP port's count up through gw_conn_hooks)  conn.h
 *   core.c          shared state, metrics, decode arenas  core.h
 *   ws.c, http_parse.c, cursor.c, failover.c, config.c, tenant.c
 *                   pure leaves (tenant.h: tenant limits' shares)
 *                                               httpd.h, this header
 */
#ifndef PARLEY_GATEWAY_H
#define PARLEY_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"

/* The module name of the gateway's log lines. */
#define GW_MOD "gateway"

/* ------------------------------------------------------------------ */
/* Configuration.                                                      */

/* Shard groups a gateway routes to (static ones and the cluster map's
 * together); group ids are 16-bit. One broker hosts many groups, so a
 * deployment may have hundreds: tables of groups live on the heap. A map
 * with more (up to PL_MAP_GROUPS_MAX) has the rest left out, logged. */
#define GW_GROUPS_MAX 1024
#define GW_ID_CHARS_MAX 63
#define GW_URL_CHARS_MAX 255
#define GW_PATH_CHARS_MAX 1023
/* Replicas of one shard group: a Raft group has 1, 3 or 5 voters; 7 is
 * the most a group is ever given (docs/replication.md). */
#define GW_REPLICAS_MAX 7
/* Meta group replicas `meta` may list: a meta group has 1, 3 or 5
 * (PL_META_ADDRS_MAX, checked in gateway.c). */
#define GW_META_MAX 7

typedef struct gw_group_conf {
	uint16_t id;
	/* Every replica's gateway-facing address, as configured: a broker's
	 * leader_hint is matched against these strings exactly. */
	char brokers[GW_REPLICAS_MAX][GW_URL_CHARS_MAX + 1];
	int nbrokers;
	uint32_t weight;
	bool draining;
} gw_group_conf;

typedef struct gw_config {
	char id[GW_ID_CHARS_MAX + 1];
	char tcp[GW_URL_CHARS_MAX + 1];  /* "" disables the TCP listener */
	char http[GW_URL_CHARS_MAX + 1]; /* host:port; "" disables HTTP+WS */
	char web_root[GW_PATH_CHARS_MAX + 1];
	/* PEM file with the certificate chain and private key. When set the
	 * HTTP port serves https:// and wss://, and a tls+tcp:// `tcp` URL
	 * uses it; "" serves plain text. */
	char tls_cert_key[GW_PATH_CHARS_MAX + 1];
	uint32_t frame_bytes_max;
	uint32_t body_bytes_max;
	uint32_t publish_per_sec;
	uint32_t subscriptions_max;
	uint32_t send_queue_bytes_max;
	uint32_t connections_max;
	uint32_t idle_ms;
	uint32_t hello_timeout_ms;
	/* The HTTP port: a request head must arrive within the timeout
	 * (from the accept, or from its first byte on a kept-alive
	 * connection) and fit header_bytes_max; a kept-alive connection
	 * idle for keepalive_ms is closed; one address may hold at most
	 * conns_per_addr connections there, WebSocket ones included. */
	uint32_t http_header_timeout_ms;
	uint32_t http_keepalive_ms;
	uint32_t http_header_bytes_max;
	uint32_t http_conns_per_addr;
	uint32_t broker_timeout_ms;
	/* A group with several replicas: a batch unanswered this long is
	 * given up on that replica (the next one is tried), so a stopped
	 * leader costs a short pause, not broker_timeout_ms. */
	uint32_t replica_timeout_ms;
	/* How long the gateway keeps re-sending a request through a leader
	 * change before it answers unavailable. */
	uint32_t failover_ms;
	uint32_t broker_contexts;  /* request contexts per broker link */
	uint32_t broker_queue_max; /* pending requests per broker link */
	/* The meta group's replicas (`meta`): when set, groups and tenant
	 * keys come from the cluster map; the static ones below are only
	 * the starting point until the first map arrives. */
	char meta[GW_META_MAX][GW_URL_CHARS_MAX + 1];
	int nmeta;
	gw_group_conf *groups; /* owned, GW_GROUPS_MAX of them */
	int ngroups;
	pl_keyring *keys; /* owned; large, so on the heap */
} gw_config;

/* Fills defaults (see gateway.example.ini) and allocates the keyring and
 * the group table.
 * PL_E_NOMEM on failure. Pair with gw_config_fini. */
pl_status gw_config_init(gw_config *c);
void gw_config_fini(gw_config *c); /* accepts zeroed memory */

/* Reads an INI file into c (on top of its current values): [gateway],
 * [group.N], [tenant.ID] and [log]. Logs the offending line and returns
 * PL_E_CONFIG on a bad value, PL_E_IO when the file cannot be read. */
pl_status gw_config_load(gw_config *c, const char *path);

/* Checks the limits against each other and the codec ceilings, and
 * that every group lists at least one broker and none twice. Zero
 * groups are fine: with `meta` set they come from the map. */
pl_status gw_config_check(const gw_config *c);

/* Parses a `meta` value (addresses separated by commas, like `broker`)
 * into c->meta. False when one is empty or too long, or there are more
 * than GW_META_MAX; c is then unchanged. */
bool gw_config_meta_parse(gw_config *c, const char *v);

/* ------------------------------------------------------------------ */
/* The cluster map's routing (config.c). Pure: what a gateway takes from
 * a map (proto/map.h), computed on the watcher's thread and then
 * applied by gw_map_apply. */

struct pl_map;

typedef struct gw_map_table {
	uint64_t version;
	/* Each group the map has not removed, by id: its replicas' broker
	 * `listen` addresses (voters and learners, leaving ones too: all
	 * answer and may be named in a leader_hint), weight and draining.
	 * nbrokers may be 0 when no replica's broker has an address. */
	gw_group_conf *groups; /* owned, GW_GROUPS_MAX of them */
	int ngroups;
	/* Every tenant's keys that are not revoked. */
	pl_keyring *keys; /* owned; handed to the gateway by gw_map_apply */
	int skipped; /* groups, replicas or keys left out (logged) */
} gw_map_table;

/* Allocates an empty table; PL_E_NOMEM. Pair with gw_map_table_fini,
 * which accepts zeroed memory and a table whose keys were taken. */
pl_status gw_map_table_init(gw_map_table *t);
void gw_map_table_fini(gw_map_table *t);

/* Fills t (initialised, empty) from m (borrowed). Groups whose id is
 * not a 16-bit group id, past GW_GROUPS_MAX, replicas whose broker is
 * unknown, has no address or repeats one, and keys the keyring refuses
 * are left out and counted in t->skipped. Never fails. */
void gw_map_table_from(gw_map_table *t, const struct pl_map *m);

/* Parses a `broker` value: addresses separated by commas (blanks around
 * them ignored) into gc->brokers. False when one is empty or too long,
 * or there are more than GW_REPLICAS_MAX; gc is then unchanged. */
bool gw_config_brokers_parse(gw_group_conf *gc, const char *v);

/* ------------------------------------------------------------------ */
/* Life cycle.                                                          */

typedef struct gw gw;

/* Creates a gateway for conf (borrowed: it must outlive the gateway).
 * *out is written only on success. */
pl_status gw_new(const gw_config *conf, gw **out);

/* Dials the brokers and opens the listeners. PL_E_IO when a listener
 * cannot bind. Call once, from a thread that is not an nng callback. */
pl_status gw_start(gw *g);

/* Closes listeners, then every connection, then the broker links, and
 * waits until no callback can run any more. Not from an nng callback. */
void gw_stop(gw *g);

void gw_free(gw *g); /* after gw_stop; accepts NULL */

/* Applies a cluster map: the watcher's callback (started by gw_start
 * when `meta` is set), public so tests apply maps they built. m is
 * borrowed. New groups get a link at once, existing ones their weight,
 * draining flag and replica addresses; a group the map dropped or
 * removed takes no new rooms but keeps its link until gw_stop (rooms
 * never move, and readers hold links without a lock); the tenant keys
 * are swapped whole. A map not newer than the last one is ignored.
 * Calls are serialised; not from an nng callback (it may close a
 * socket). Returns PL_E_NOMEM (nothing applied) or PL_OK. */
pl_status gw_map_apply(gw *g, const struct pl_map *m);

/* ------------------------------------------------------------------ */
/* Subscription cursor (docs/internals.md "Subscription cursor").
 * One per (connection, room). Pure: no I/O, no clock, no locks; the
 * caller serialises calls and performs the returned action. */

/* A catch-up page that delivers nothing and has no "more" while the
 * cursor still expects seqs is retried this many times before the
 * cursor trusts history and leaves catch-up (so a broker that lost a
 * message cannot make the gateway spin). */
#define GW_CURSOR_STUCK_MAX 3

typedef enum gw_cursor_act {
	GW_CUR_NONE = 0, /* nothing to do */
	GW_CUR_DELIVER,  /* send this message to the client */
	GW_CUR_DROP,     /* duplicate or not ours: drop it */
	GW_CUR_FETCH,    /* request history after gw_cursor_after() */
	GW_CUR_RETRY,    /* fetch again later (no progress was made) */
} gw_cursor_act;

typedef struct gw_cursor {
	uint64_t next;       /* next seq to deliver */
	uint64_t seen_max;   /* highest live seq seen while catching up */
	uint64_t last_seq;   /* room head from Subscribed */
	uint64_t fetch_from; /* next when the page in flight was asked */
	uint8_t stuck;       /* consecutive pages without progress */
	bool subscribed;     /* Subscribed arrived: fetching may start */
	bool catching_up;
	bool fetching; /* a history page is in flight */
	bool stale;    /* a resync happened while a page was in flight */
} gw_cursor;

/* Step 1: a new subscription delivers from since + 1. Live messages seen
 * before Subscribed only raise seen_max. */
void gw_cursor_init(gw_cursor *c, uint64_t since);
/* Subscribed{last_seq} arrived: returns GW_CUR_FETCH. */
gw_cursor_act gw_cursor_subscribed(gw_cursor *c, uint64_t last_seq);
/* Step 2: a live message. DELIVER (next advanced), DROP, NONE (noted
 * while catching up) or FETCH (a gap: catch-up starts). */
gw_cursor_act gw_cursor_live(gw_cursor *c, uint64_t seq);
/* The after_seq of the history page to request (next - 1). */
uint64_t gw_cursor_after(const gw_cursor *c);
/* Step 3: one message of a catch-up page, in page order: DELIVER (next
 * advanced) or DROP. A seq beyond next means history has a hole (the
 * room was pruned): history is authoritative and the cursor jumps. */
gw_cursor_act gw_cursor_page_msg(gw_cursor *c, uint64_t seq);
/* Step 3: the page ended. FETCH for another page, RETRY when the page
 * made no progress yet seqs are still expected, NONE when caught up. */
gw_cursor_act gw_cursor_page_end(gw_cursor *c, bool more);
/* A catch-up request failed (timeout, broker error): RETRY. */
gw_cursor_act gw_cursor_page_failed(gw_cursor *c);
/* The fetch FETCH asked for was not sent because the connection's send
 * queue is still full of earlier pages (flow control): RETRY later. */
gw_cursor_act gw_cursor_fetch_deferred(gw_cursor *c);
/* Re-issue a fetch after RETRY: returns FETCH unless one is in flight. */
gw_cursor_act gw_cursor_retry(gw_cursor *c);
/* Step 4: overflow or epoch change. FETCH, or NONE when a page is in
 * flight (it is marked stale and followed by a fresh one), or when
 * Subscribed has not arrived yet (its catch-up covers it). */
gw_cursor_act gw_cursor_resync(gw_cursor *c);

/* ------------------------------------------------------------------ */
/* Failover policy (docs/replication.md "Gateways follow leadership").
 * Pure: link_batch.c asks it what to do with each request whose attempt did
 * not end in a usable answer. */

/* How one attempt of a request ended. */
typedef enum gw_outcome {
	/* unavailable with not_applied: refused before it entered the log
	 * (a replica that does not lead); sending it again cannot repeat
	 * anything. */
	GW_OUT_NOT_APPLIED = 0,
	/* unavailable without not_applied: a leader took it and lost its
	 * leadership before it finished; it may or may not have happened. */
	GW_OUT_UNKNOWN,
	/* The batch got no answer (timeout, connection reset): unknown as
	 * well, but with one replica there is nowhere else to go, and the
	 * client hears unavailable at once, as before replication. */
	GW_OUT_LOST,
} gw_outcome;

typedef enum gw_retry_act {
	GW_RETRY_FAIL = 0, /* answer the client unavailable */
	GW_RETRY_RESEND,   /* queue it again, at the current leader */
} gw_retry_act;

/* Whether a request of this kind (parley.ClientFrame body case) may be
 * sent twice when its first outcome is unknown: reads, watches and the
 * operations the broker de-duplicates. A publish needs a client_msg_id,
 * a create_room an idempotency key; close_room never (a second close
 * would answer room_closed to a close that worked). */
bool gw_resend_safe(int op, bool has_msg_id, bool has_idem_key);

/* The decision for one request: resend while now_us is before
 * deadline_us and the outcome allows it (resend_safe for UNKNOWN and,
 * with several replicas, LOST; anything for NOT_APPLIED). */
gw_retry_act gw_retry_decide(gw_outcome o, bool resend_safe, int nreplicas,
    int64_t now_us, int64_t deadline_us);

/* The index in gc->brokers of a leader_hint (exact string match), or -1
 * for NULL, "" or an address that is not configured. */
int gw_replica_match(const gw_group_conf *gc, const char *hint);

#endif /* PARLEY_GATEWAY_H */
