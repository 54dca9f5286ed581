/*
 * gw_internal.h - private to gateway/: the structs its files share and
 * the rules that keep them safe across nng's callback threads.
 *
 * Lock order (outer first): link->feed_mu -> g->subs_mu -> conn->mu, and
 * g->conns_mu -> conn->mu. link->mu, multi->mu, g->arena_mu and
 * g->reap_mu are leaves: nothing else is locked while one is held.
 * link->feed_mu -> link->mu is allowed (a poll is sent under both).
 *
 * Lifetime: a connection is reference counted. The connection table
 * holds one reference until the connection closes; every request in
 * flight to a broker holds one. The last unref hands the connection to
 * the sweeper thread, which stops its aios (waiting for callbacks) and
 * frees it, so no callback or late broker reply touches freed memory.
 */
#ifndef PARLEY_GW_INTERNAL_H
#define PARLEY_GW_INTERNAL_H

#include <stdatomic.h>
#include <pthread.h>

#include <nng/nng.h>

#include "gateway/gateway.h"
#include "gateway/httpd.h"
#include "proto/codec.h"

#define GW_MOD "gateway"

/* A batch takes at most this many requests (internals.md). */
#define GW_BATCH_REQS_MAX 256
/* GwBatch and BrokerBatch must stay under PL_FRAME_BYTES_CEIL: a batch
 * stops growing when its requests, or the replies they may produce,
 * pass half the ceiling. */
#define GW_BATCH_BYTES_MAX (PL_FRAME_BYTES_CEIL / 2)
/* Catch-up page size (internals.md asks 200 per history page). */
#define GW_CATCHUP_LIMIT 200
/* Catch-up is flow controlled: a page is asked for only while the
 * connection has at most this many unsent bytes, and a page carries at
 * most as many body bytes. Both at a quarter of the send queue bound, a
 * page plus one oversize message plus earlier bytes stay under it, so a
 * client resuming a long backlog is never mistaken for a slow one. */
#define GW_CATCHUP_BUDGET(g) ((size_t)(g)->conf->send_queue_bytes_max / 4)
/* Live feed poll: broker parks it up to this long; events per reply. */
#define GW_POLL_WAIT_MS 1000
#define GW_POLL_EVENTS_MAX 4096
/* After a failed poll, wait before polling again: no busy loop while a
 * broker is down. */
#define GW_POLL_RETRY_MS 250
/* Requests one connection may have in flight: pipelining is allowed,
 * unbounded pipelining would let one client fill the broker queue. */
#define GW_CONN_INFLIGHT_MAX 1024
/* Receive buffer starts small (idle connections are the common case)
 * and grows to the largest frame, then shrinks back when empty. */
#define GW_RBUF_BYTES_MIN 512
/* A connection being closed with a Goodbye gets this long to flush what
 * is already on its way to the socket, then the Goodbye: a close comes
 * at a frame boundary unless the client reads nothing for this long. */
#define GW_CLOSE_FLUSH_MS 10000
/* What an overloaded answer suggests as retry_after_ms: a broker round
 * at load is a few milliseconds, so a queue has room again soon. */
#define GW_RETRY_AFTER_MS 50
/* At stop, connections get this long to receive their goodbye: a small
 * part of the stop deadline (PL_STOP_DEADLINE_MS). */
#define GW_STOP_GOODBYE_MS 250
_Static_assert(GW_STOP_GOODBYE_MS < PL_STOP_DEADLINE_MS / 4,
    "goodbyes leave most of the stop deadline to the rest of the stop");
/* Failed hello attempts before the connection is closed. */
#define GW_HELLO_FAILS_MAX 3
/* Sweeper period: idle, hello and close deadlines, catch-up retries. */
#define GW_SWEEP_MS 250
/* After this long waiting for connections at stop, say so in the log
 * (and keep waiting: freeing under a running callback is worse). */
#define GW_STOP_WAIT_MS 5000
/* A broker answering within this long counts as healthy (/healthz). */
#define GW_HEALTHY_MS (3 * GW_POLL_WAIT_MS)
/* A replica answered that the group has no leader it knows of: wait
 * this long before asking the next one, so an election costs a few
 * requests per replica, not a busy loop. */
#define GW_LEADER_BACKOFF_MS 50
/* A gateway-made client_msg_id: "g:" gateway id (cut to this length),
 * ":" 12 hex digits drawn at start (two runs of one gateway never share
 * ids) ":" a counter; it must fit PL_CLIENT_MSG_ID_CHARS_MAX. */
#define GW_MSG_ID_GWID_CHARS 24
_Static_assert(
    2 + GW_MSG_ID_GWID_CHARS + 1 + 12 + 1 + 20 <= PL_CLIENT_MSG_ID_CHARS_MAX,
    "a gateway-made client_msg_id fits the protocol's bound");
/* Idle lanes kept for reuse per link (lane.c), so a steady load of
 * connections allocates no lane per batch. */
#define GW_LANES_SPARE_MAX 1024
/* Bytes a request adds to a GwBatch beyond its packed body (its id and
 * the field headers), counted when a batch is sized. */
#define GW_REQ_OVERHEAD_BYTES 32
/* Error codes are parley.ErrorCode values 0..INTERNAL. */
#define GW_CODES 11

/* A WebSocket message may carry several frames: a message is bounded to
 * this many of the largest (over it: close 1009). */
#define GW_WS_MSG_FRAMES_MAX 4

_Static_assert(GW_RBUF_BYTES_MIN >= PL_FRAME_HEADER_BYTES,
    "a frame header must fit the smallest receive buffer");

enum { GW_TCP = 0, GW_WS = 1, GW_TRANSPORTS = 2 };

typedef struct gw_conn gw_conn;
typedef struct gw_link gw_link;
typedef struct gw_req gw_req;
typedef struct gw_sub gw_sub;
typedef struct gw_room gw_room;
typedef struct gw_multi gw_multi;

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
} gw_mset;

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

	/* Connection table. */
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

	/* Broker links (link.c), fixed after gw_start. */
	gw_link *links[GW_GROUPS_MAX];
	int nlinks;
	_Atomic uint64_t req_ids;
	/* client_msg_ids the gateway makes for publishes without one. */
	uint64_t msg_id_boot; /* random, 48 bits */
	_Atomic uint64_t msg_ids;
	_Atomic uint64_t origins; /* publishes given an origin */

	/* Decode arenas for client frames, one per concurrent reader. */
	pthread_mutex_t arena_mu;
	gw_arena *arenas;
	size_t arena_bytes;
};

/* A client's address, as counted by the HTTP port's per-address cap
 * (httpd.c); len 0: not counted. */
typedef struct gw_peer {
	uint8_t addr[16];
	uint8_t len;
} gw_peer;

struct gw_conn {
	gw *g;
	nng_stream *stream;
	/* WebSocket only (else NULL): the decoder of client frames, owned
	 * by the read path; and the address the HTTP port counted. */
	gw_ws_rx *ws;
	gw_peer peer;
	nng_aio *raio, *waio;
	pthread_mutex_t mu;
	_Atomic int refs;
	uint64_t id;
	uint8_t transport;
	int64_t created_us;
	_Atomic int64_t last_rx_us;
	_Atomic uint32_t inflight;
	_Atomic bool authed;

	/* Owned by the read path (one read is outstanding at a time). */
	uint8_t *rbuf;
	uint32_t rlen, rcap;
	uint32_t dlen; /* of rlen, the bytes ready for the frame parser */
	int64_t tokens;    /* rate bucket, in millionths of a publish */
	int64_t tokens_us; /* when it was last filled */
	uint8_t hello_fails;
	/* Written once by hello before authed is set, read-only after. */
	pl_claims claims;
	char session[33];
	/* The token's expiry, Unix seconds: hello sets it, refresh moves it
	 * later, the sweeper says goodbye once it passes. */
	_Atomic int64_t exp_s;

	/* Under mu: the send queue and the close state. pending collects
	 * frames while out is on the wire; their bytes together are bounded
	 * by send_queue_bytes_max. */
	uint8_t *pend;
	uint32_t pend_len, pend_cap;
	uint8_t *out;
	uint32_t out_len, out_off, out_cap;
	bool sending, closing, closed;
	int64_t close_at_us;
	/* A catch-up waits for the send queue to drain (feed.c sets it,
	 * write_cb clears it and resumes). */
	_Atomic bool catchup_waiting;

	/* Under g->subs_mu. */
	gw_sub *subs;
	uint32_t nsubs;

	/* Under g->conns_mu. */
	gw_conn *prev, *next;
	/* Under g->reap_mu. */
	gw_conn *reap_next;
};

typedef enum gw_req_kind {
	GW_REQ_CLIENT,    /* reply goes to the client as is */
	GW_REQ_SUBSCRIBE, /* Subscribed starts the cursor */
	GW_REQ_CATCHUP,   /* a history page for a cursor */
	GW_REQ_WATCH,     /* watch change; the reply is dropped */
	GW_REQ_PART,      /* one group's share of list_rooms / status */
} gw_req_kind;

enum {
	/* Sending it twice is harmless (gw_resend_safe). */
	GW_REQF_RESEND_SAFE = 1,
	/* Its client_msg_id was made by the gateway: a duplicate ack can
	 * only be the gateway's own earlier attempt. */
	GW_REQF_GEN_ID = 2,
};

/* One request for a broker: a packed GwRequest without its id (the id is
 * spliced in when the batch is built). */
struct gw_req {
	gw_req *next;
	gw_conn *conn; /* reference held; NULL for watch changes */
	gw_multi *multi;
	uint64_t client_id;
	uint64_t sub_id;
	int64_t t0_us;
	/* Re-sent through leader changes until then (failover_ms). */
	int64_t deadline_us;
	uint32_t reply_est; /* reply bytes it may produce */
	uint8_t kind;
	uint8_t op; /* Parley__ClientFrame__BodyCase */
	uint8_t flags;
	/* >= 0: for this replica only (a status part), never re-sent. */
	int8_t pin;
	uint16_t part;
	/* Its lane (lane.c): the connection's id, 0 for watch changes. */
	uint64_t lane;
	uint32_t len;
	uint8_t body[];
};

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

/* list_rooms and report fan out to every group, status to every
 * replica of every group; the parts are merged. */
struct gw_multi {
	pthread_mutex_t mu;
	gw_conn *conn; /* reference held */
	uint64_t client_id;
	uint8_t op;
	uint32_t limit;
	int pending;
	int nparts;
	struct {
		uint16_t group;
		int8_t replica; /* status: which one; -1 otherwise */
		uint8_t
		    *buf; /* packed ServerFrame reply, owned; NULL: failed */
		size_t len;
		int code; /* the group's error code when it answered one */
	} parts[];
};

/* Up to GW_MULTI_PARTS_MAX parts: a status asks every replica. */
#define GW_MULTI_PARTS_MAX (GW_GROUPS_MAX * GW_REPLICAS_MAX)

/* One batch slot of a link: a context on every replica's socket (the
 * batch goes to one of them) and one aio. */
typedef struct gw_bctx {
	gw_link *link;
	nng_ctx ctx[GW_REPLICAS_MAX];
	nng_aio *aio;
	gw_req *reqs[GW_BATCH_REQS_MAX];
	/* The lane of each request taken (reqs[i] may be gone): released
	 * when the batch is settled. */
	uint64_t lanes[GW_BATCH_REQS_MAX];
	uint32_t nlanes;
	uint32_t n;
	uint64_t base; /* GwRequest.id of reqs[0]; reqs[i] is base + i */
	int64_t t0_us;
	bool receiving;
	/* Under link->mu: a batch is in flight, to replica rep; pinned: it
	 * holds requests for that replica only. */
	bool busy;
	bool pinned;
	int8_t rep;
	struct gw_bctx *next_idle;
} gw_bctx;

/* One replica of the group: its own socket (so a leader change needs
 * no new connection), a poll context and its connection state. */
typedef struct gw_replica {
	gw_link *link;
	int idx;
	const char *addr; /* conf->brokers[idx] */
	nng_socket sock;
	bool sock_open;
	nng_ctx pctx;
	bool pctx_open;
	/* The id of its connected pipe, 0 when none (pipe events). */
	_Atomic uint32_t pipe_id;
	/* A lost connection is handled on naio, off nng's pipe callback
	 * (which may not touch the socket); armed while it is pending. */
	nng_aio *naio;
	_Atomic bool down_armed;
	/* Under link->mu: requests pinned to it (status parts). */
	gw_req *pq_head, *pq_tail;
} gw_replica;

struct gw_link {
	gw *g;
	const gw_group_conf *conf;
	gw_replica reps[GW_REPLICAS_MAX];
	int nrep;
	uint32_t timeout_ms; /* per batch: shorter with several replicas */
	pthread_mutex_t mu;  /* queues, idle contexts, leader, stopping */
	gw_lanes lanes;      /* the main queue (lane.c) */
	uint32_t qlen; /* main and pinned queues together */
	gw_bctx *idle;
	bool stopping;
	/* The replica believed to lead: written under mu. */
	_Atomic int cur;
	/* Under mu: no batch for the leader leaves before this (a replica
	 * said it knows no leader); kaio wakes the idle contexts then. */
	int64_t hold_until_us;
	bool kick_armed;
	nng_aio *kaio;
	gw_bctx *ctxs;
	uint32_t nctx;
	/* Live feed: one poll in flight, to the current replica. feed_mu
	 * is taken before the next poll is sent and held while its events
	 * are processed, so replies are processed in the order the broker
	 * sent them. */
	nng_aio *paio;
	nng_aio *psaio; /* the wait before the next poll */
	int poll_phase; /* link.c: what paio is doing */
	int poll_rep;   /* under mu: the replica the poll went to */
	pthread_mutex_t feed_mu;
	char epoch[64];
	_Atomic int64_t last_ok_us;
};

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

/* gateway.c */
gw_arena *gw_arena_get(gw *g);
void gw_arena_put(gw *g, gw_arena *a);
void gw_count_error(gw *g, int code);
void gw_reap_push(gw *g, gw_conn *c);

/* conn.c */
void gw_conn_accept(gw *g, nng_stream *s, int transport);
/* An upgraded WebSocket connection (httpd.c): takes s and the peer's
 * count in every case; hs, the 101 response, is sent first; early holds
 * bytes the client sent after its request (both borrowed). */
void gw_conn_accept_ws(gw *g, nng_stream *s, const gw_peer *peer,
    const uint8_t *hs, size_t hs_len, const uint8_t *early, size_t early_len);
void gw_conn_ref(gw_conn *c);
void gw_conn_unref(gw_conn *c);
/* Encodes f and queues it. PL_E_CLOSED when closing, PL_E_BACKPRESSURE
 * when the client is a slow consumer (it is then being closed). */
pl_status gw_conn_send(gw_conn *c, const Parley__ServerFrame *f);
pl_status gw_conn_send_bytes(gw_conn *c, const uint8_t *buf, size_t n);
/* Bytes queued and not yet written to the socket. */
size_t gw_conn_unsent(gw_conn *c);
void gw_conn_send_error(gw_conn *c, uint64_t id, int code, const char *msg);
/* A retryable error (rate_limited, overloaded, unavailable) the gateway
 * gives before the request went anywhere: not_applied is set, and
 * retry_after_ms (0: none) says when to try again. */
void gw_conn_send_retry(gw_conn *c, uint64_t id, int code, const char *msg,
    uint32_t retry_after_ms);
void gw_conn_goodbye(gw_conn *c, int code, const char *reason);
void gw_conn_close(gw_conn *c, const char *reason);
void gw_conn_sweep(gw_conn *c, int64_t now_us, bool *close_now);
void gw_conn_destroy(gw_conn *c);

/* request.c */
void gw_request_handle(gw_conn *c, const uint8_t *payload, size_t len);
/* The next GwRequest.origin: distinct for every request of this
 * gateway process (a bijection of a counter), random across gateways
 * and restarts (keyed by the boot value), never 0. */
uint64_t gw_origin_next(gw *g);
/* Packs GwRequest{caller of c, frame, watch} into a new request. */
gw_req *gw_req_new(gw_conn *c, gw_req_kind kind, const Parley__ClientFrame *f,
    const Parley__Internal__Watch *w);
void gw_req_free(gw_req *r);
/* Delivers a broker reply (f may be NULL: the batch failed with code)
 * and frees r. */
void gw_req_complete(gw *g, gw_req *r, Parley__ServerFrame *f, int code);
void gw_caller_fill(const gw_conn *c, Parley__Internal__Caller *caller);

/* lane.c: all under the link's mutex. */
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

/* link.c */
pl_status gw_link_new(gw *g, const gw_group_conf *conf, gw_link **out);
pl_status gw_link_start(gw_link *l);
void gw_link_stop(gw_link *l);
void gw_link_free(gw_link *l);
/* Queues r (taken on success). PL_E_BACKPRESSURE when full, PL_E_CLOSED
 * when stopping; on error r is still the caller's. */
pl_status gw_link_submit(gw_link *l, gw_req *r);
/* A request pinned to a replica that has no connection is refused with
 * PL_E_UNAVAILABLE by gw_link_submit (r->pin, set by the caller). */
gw_link *gw_link_find(gw *g, uint16_t group);
/* Weighted among non-draining groups; NULL if none. key (may be NULL)
 * makes the choice deterministic per (tenant, key). */
gw_link *gw_link_pick(gw *g, const char *tenant, const char *key);
void gw_link_batch_epoch(gw_link *l, const char *epoch);

/* feed.c */
pl_status gw_subs_init(gw *g);
void gw_subs_fini(gw *g);
void gw_subs_subscribe(gw_conn *c, const Parley__ClientFrame *f);
void gw_subs_unsubscribe(gw_conn *c, const Parley__ClientFrame *f);
void gw_subs_drop_conn(gw_conn *c);
void gw_subs_on_subscribed(gw *g, gw_req *r, Parley__ServerFrame *f, int code);
void gw_subs_on_page(gw *g, gw_req *r, Parley__ServerFrame *f, int code);
void gw_subs_events(gw_link *l, Parley__Internal__BrokerBatch *b);
void gw_subs_resync_group(gw *g, uint16_t group, bool rewatch);
void gw_subs_retry(gw *g);
/* The connection's send queue drained below the catch-up budget: its
 * deferred catch-ups go on. Called without conn->mu held. */
void gw_subs_resume(gw_conn *c);

/* multi.c */
void gw_multi_start(gw_conn *c, const Parley__ClientFrame *f);
void gw_multi_part_done(gw *g, gw_req *r, Parley__ServerFrame *f, int code);

/* listen.c */
pl_status gw_listen_start(gw *g);
void gw_listen_stop(gw *g);

/* httpd.c: the HTTP port. Start binds it (PL_E_IO when it cannot);
 * stop closes it and every HTTP connection not yet upgraded, and waits
 * for them; free (in gw_free, after every client connection is gone)
 * releases the rest. Not from an nng callback. */
pl_status gw_httpd_start(gw *g);
void gw_httpd_stop(gw *g);
void gw_httpd_free(gw *g);
/* From the sweeper: ends reads past their deadline (408 or a close). */
void gw_httpd_sweep(gw *g);
/* A connection counted for p ended (p->len 0: none was counted). */
void gw_httpd_peer_put(gw *g, const gw_peer *p);

/* http.c: the routes other than /ws; res is filled in every case. */
void gw_http_route(gw *g, const gw_http_req *req, gw_http_res *res);

#endif /* PARLEY_GW_INTERNAL_H */
