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

/* One batch slot of a link: a context on every replica's socket (the
 * batch goes to one of them) and one aio. */
typedef struct gw_bctx {
	gw_link *link;
	nng_ctx ctx[GW_REPLICAS_MAX];
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
	gw_link_feed feed; /* what the feed is told (gw_link_new) */
	gw_replica reps[GW_REPLICAS_MAX];
	int nrep;
	uint32_t timeout_ms; /* per batch: shorter with several replicas */
	pthread_mutex_t mu;  /* queues, idle contexts, leader, stopping */
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
	 * poll_cb without it. */
	_Atomic int poll_rep;
	pthread_mutex_t feed_mu;
	char epoch[64];
	_Atomic int64_t last_ok_us;
};

/* link.c */
/* Decodes a BrokerBatch into a (initialised here; the caller finishes
 * it in every case). NULL when it does not decode (logged). */
Parley__Internal__BrokerBatch *gw_link_reply_decode(
    gw_link *l, nng_msg *m, pl_arena *a);

/* link_replica.c */
/* Opens replica rp's socket, its poll context, and dials (without
 * waiting). An nng error code, 0 on success. */
int gw_link_replica_open(gw_replica *rp);
/* Whether the replica has a connection now. */
bool gw_link_replica_up(gw_replica *rp);
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
