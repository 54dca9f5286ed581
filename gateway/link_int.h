/*
 * link_int.h - private to the link's files (link*.c): a link's replicas,
 * its batch slots and its live-feed poll. Nothing outside link*.c
 * includes it; the rest of the gateway sees link.h.
 */
#ifndef PARLEY_GW_LINK_INT_H
#define PARLEY_GW_LINK_INT_H

#include <stdatomic.h>
#include <pthread.h>

#include <nng/nng.h>

#include "gateway/lane.h"
#include "proto/codec.h"
#include "gateway/link.h"

/* Requests in one GwBatch the link builds (internals.md): a batch slot
 * holds this many, and a lane hash is sized for every slot's worth. A
 * broker refuses a batch with more than PL_GW_BATCH_REQS_MAX (the wire's
 * bound, proto/codec.h) as malformed, every request in it lost. */
#define GW_LINK_BATCH_REQS_MAX 256
_Static_assert(GW_LINK_BATCH_REQS_MAX <= PL_GW_BATCH_REQS_MAX,
    "a batch the gateway builds is one the broker accepts");
/* After a failed poll, wait before polling again: no busy loop while a
 * broker is down. */
#define GW_POLL_RETRY_MS 250
/* A replica answered that the group has no leader it knows of: wait
 * this long before asking the next one, so an election costs a few
 * requests per replica, not a busy loop. */
#define GW_LEADER_BACKOFF_MS 50

/* A broker address's req0 socket, shared by every link with a replica
 * there (link_sock.c): one connection per broker however many groups it
 * hosts. Entries live until gw_free (a pipe callback may hold one); the
 * socket is closed when its last replica goes and opened again if one
 * comes back. Its pipe events reach every replica in users. */
struct gw_sock {
	gw *g;
	char addr[GW_URL_CHARS_MAX + 1]; /* never changes */
	nng_socket sock;
	bool open; /* under g->socks_mu */
	int refs;  /* replicas using it, under g->socks_mu */
	/* The id of its connected pipe, 0 when none (pipe events). */
	_Atomic uint32_t pipe_id;
	pthread_mutex_t mu; /* users: a leaf */
	struct gw_replica *users;
	gw_sock *next; /* in g->socks */
};

/* The links, sorted by group: immutable once published (link.c). */
struct gw_links {
	gw_links *prev; /* the views it replaced, freed at gw_free */
	int n;
	gw_link *l[];
};

/* One batch slot of a link: a context on every replica's socket (the
 * batch goes to one of them) and one aio. */
typedef struct gw_bctx {
	gw_link *link;
	/* Under link->mu: per replica slot, open while the slot is. */
	nng_ctx ctx[GW_REPLICAS_MAX];
	bool ctx_open[GW_REPLICAS_MAX];
	/* The context the batch in flight uses: set with the send, so the
	 * callback's receive needs no lock while a slot changes. */
	nng_ctx cur_ctx;
	nng_aio *aio;
	gw_req *reqs[GW_LINK_BATCH_REQS_MAX];
	/* The lane of each request taken (reqs[i] may be gone): released
	 * when the batch is settled. */
	uint64_t lanes[GW_LINK_BATCH_REQS_MAX];
	uint32_t nlanes;
	uint32_t n;
	uint64_t base; /* GwRequest.id of reqs[0]; reqs[i] is base + i */
	int64_t t0_us;
	/* Set by the sender, read and flipped by bctx_cb on nng's threads. */
	_Atomic bool receiving;
	/* Under link->mu: a batch is in flight, to replica rep; pinned: it
	 * holds requests for that replica only. */
	bool busy;
	bool pinned;
	int8_t rep;
	struct gw_bctx *next_idle;
} gw_bctx;

/* One replica slot of the group: a broker's shared socket (every
 * replica is connected, so a leader change needs no new connection), a
 * poll context and its connection state. Slots are stable: a replica
 * the map moves leaves its slot empty and the new address takes a free
 * one, so indices held by batches in flight never name another replica
 * while they run (a freed slot may be reused; what was in flight on it
 * was cancelled first). */
typedef struct gw_replica {
	gw_link *link;
	int idx;
	/* NULL while the slot is empty. Written under link->mu; read
	 * without it for logs and status (the entry outlives the link). */
	_Atomic(gw_sock *) sock;
	struct gw_replica *sock_next; /* in sock->users, under sock->mu */
	nng_ctx pctx;
	bool pctx_open;
	/* A lost connection is handled on naio, off nng's pipe callback
	 * (which may not touch the socket); armed while it is pending. */
	nng_aio *naio;
	_Atomic bool down_armed;
	/* Under link->mu: requests pinned to it (status parts). */
	gw_req *pq_head, *pq_tail;
} gw_replica;

struct gw_link {
	gw *g;
	uint16_t id;
	/* Routing of new rooms, changed by each map (gw_link_update). */
	_Atomic uint32_t weight;
	_Atomic bool draining;
	gw_group_conf init; /* the replicas gw_link_start opens */
	gw_link_feed feed;  /* what the feed is told (gw_link_new) */
	gw_replica reps[GW_REPLICAS_MAX]; /* slots */
	_Atomic int nrep; /* slots in use */
	/* Per batch: shorter with several replicas. */
	_Atomic uint32_t timeout_ms;
	pthread_mutex_t mu; /* queues, idle contexts, leader, stopping */
	gw_lanes lanes;      /* the main queue (lane.c) */
	uint32_t qlen;       /* main and pinned queues together */
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
	/* What paio is doing (link_poll.c): set by the sender, read by
	 * poll_cb on another thread. */
	_Atomic int poll_phase;
	/* The replica the poll went to: written under mu, also read by
	 * poll_cb without it; and its context, for the receive. */
	_Atomic int poll_rep;
	nng_ctx poll_ctx;
	pthread_mutex_t feed_mu;
	char epoch[64];
	_Atomic int64_t last_ok_us;
};

/* link.c */
/* Decodes a BrokerBatch into a (initialised here; the caller finishes
 * it in every case). NULL when it does not decode (logged). */
Parley__Internal__BrokerBatch *gw_link_reply_decode(
    gw_link *l, nng_msg *m, pl_arena *a);

/* link_sock.c */
/* The shared socket of addr with one more reference: opened and dialed
 * (without waiting) when it had none. NULL with an nng code in *err. */
gw_sock *gw_sock_get(gw *g, const char *addr, int *err);
/* Drops a reference; the last closes the socket (bounded). */
void gw_sock_put(gw *g, gw_sock *s);
/* Pipe events of s reach rp from attach until detach returns. */
void gw_sock_attach(gw_sock *s, gw_replica *rp);
void gw_sock_detach(gw_sock *s, gw_replica *rp);

/* link_replica.c */
/* Puts addr in the free slot `slot`: its shared socket, a poll context
 * and a context per batch slot. An nng error code, 0 on success (the
 * slot stays empty on error). Not under l->mu. */
int gw_link_replica_open(gw_link *l, int slot, const char *addr);
/* Empties slot: what is in flight on it is cancelled (and re-sent
 * elsewhere or failed as on a lost connection), requests pinned to it
 * fail, its contexts close and its socket reference goes. Not under
 * l->mu; l->nrep stays at least 1 (the caller opens first). */
void gw_link_replica_close(gw_link *l, int slot);
/* A replica's naio: its connection is gone (link_sock.c's pipe events). */
void gw_link_replica_down_cb(void *arg);
/* Whether slot holds a replica, and whether it has a connection now. */
bool gw_link_replica_used(const gw_replica *rp);
bool gw_link_replica_up(gw_replica *rp);
/* The replica's address, "" for an empty slot (never freed). */
const char *gw_link_rep_addr(const gw_replica *rp);
/* With l->mu held: replica `from` answered that it does not lead;
 * hint is the leader it names, if any. */
void gw_link_leader_moved_locked(gw_link *l, int from, const char *hint);
/* With l->mu held: replica `from` did not answer. */
void gw_link_leader_lost_locked(gw_link *l, int from);
/* With l->mu held: the replica a batch for the leader goes to now. */
int gw_link_leader_dest_locked(gw_link *l);

/* link_batch.c */
/* The callbacks of a batch slot's aio and of the hold's wake-up. */
void gw_link_bctx_cb(void *arg);
void gw_link_kick_cb(void *arg);
/* Ends every request b still holds with code (their done callbacks). */
void gw_link_batch_fail(gw_bctx *b, int code);

/* link_poll.c */
/* Sends the next poll to the leader (or waits when none is known). */
void gw_link_poll_send(gw_link *l);
/* The callbacks of the poll's aio and of the wait between polls. */
void gw_link_poll_cb(void *arg);
void gw_link_poll_sleep_cb(void *arg);
/* A batch reply from the leader carried epoch: a change is told to the
 * feed (on_epoch). Takes feed_mu. */
void gw_link_batch_epoch(gw_link *l, const char *epoch);

#endif /* PARLEY_GW_LINK_INT_H */
