/*
 * group_internal.h - what the files of one shard group's driver share:
 * the group's state (struct brk_group, owned by its thread), the work
 * items, the pending-write ring, the round, and each file's entry points.
 * Nothing outside the group's files includes it; the group's contract is
 * broker/group.h, its invariants are written at the top of group.c.
 *
 * The files, from the bottom up:
 *   item.c          work items: submit (from nng callbacks), decode, reply
 *   watch.c feed.c  the watch table and the gateways' feeds (pure)
 *   reply.c         reply and error frames built in an item's arena
 *   handlers.c      one table of requests: handler, write?, access rule
 *   pending.c       writes waiting for their entry to apply; their replies
 *   events.c        live events of applied entries, fanned out
 *   envelope.c      the peer envelope: pack, compress, seal / open
 *   raft_msgs.c     Raft messages to and from peers through the envelope
 *   snapshot.c      chunked snapshots to and from peers
 *   raft_storage.c  the core's storage callbacks; damage checks and repair
 *   driver.c        the ready loop: write, send, advance, apply, answer
 *   writes.c        proposing writes, the lane refusal rule
 *   map_serve.c     the meta group's map: watches and changes; status
 *   status.c        this replica's status (GroupStatus)
 *   members.c       the leader follows the map: membership, leadership
 *   quiet.c         an idle group stops its Raft clock
 *   round.c         one commit round over a set of gateway batches
 *   group_metrics.c the group's metrics
 *   group.c         the thread, intake, housekeeping and lifecycle
 */
#ifndef PARLEY_BROKER_GROUP_INTERNAL_H
#define PARLEY_BROKER_GROUP_INTERNAL_H

#include <stdatomic.h>
#include <string.h>

#include <zstd.h>

#include "broker/broker.h"
#include "broker/envelope.h"
#include "broker/feed.h"
#include "broker/watch.h"

/* Batches in flight from all gateways: ITEMS_MAX items come with the
 * group, more are made as gateways and their parked polls need them (up
 * to ITEMS_BOUND, then a batch is refused and its gateway retries), so
 * the number of gateways a broker serves has no fixed cap. ITEMS_POP is
 * what the thread takes from its queue at once. */
#define ITEMS_MAX BRK_NET_CONTEXTS
#define ITEMS_BOUND BRK_NET_CONTEXTS_MAX
#define ITEMS_POP (ITEMS_MAX + PEER_ITEMS_MAX)
/* Batches handled in one commit round: bounds a round's latency. */
#define ROUND_ITEMS_MAX 64
/* Requests of one round: every batch at the wire's bound. */
#define ROUND_REQS_MAX ((size_t)ROUND_ITEMS_MAX * PL_GW_BATCH_REQS_MAX)
#define TICK_US 5000
/* The longest an idle group's thread sleeps (group.c idle_wait_us). */
#define IDLE_WAIT_US 50000
/* The longest a quiet group's thread sleeps (quiet.c). */
#define QUIET_WAIT_US 1000000
/* Raft's logical clock: election and heartbeat are counted in ticks. */
#define RAFT_TICK_MS 10
/* Peer messages held at once (the nng peer socket's receive side). */
#define PEER_ITEMS_MAX 128
/* Writes proposed and not yet applied. */
#define PENDING_MAX 65536
/* Payload bytes per append message; a PeerBatch carries at most
 * RAFT_INFLIGHT_MAX of them per round, far below the frame ceiling. */
#define APPEND_BYTES_MAX (256 * 1024)
/* A failed ready write is tried again after this long. */
#define STALL_RETRY_US 100000
#define REPORT_DAYS_DEFAULT 7
#define POLL_WAIT_MS_MAX 30000

_Static_assert(
    (size_t)RAFT_INFLIGHT_MAX *APPEND_BYTES_MAX + BRK_ENVELOPE_OVERHEAD_BYTES <
        PL_FRAME_BYTES_CEIL,
    "a round's appends to one peer fit one PeerBatch");

/* The group's metrics (group_metrics.c registers each). */
typedef struct brk_group_metrics {
	pl_metric *batches, *requests;
	pl_metric *rounds, *round_fail, *commit_s, *round_reqs;
	pl_metric *events, *events_dropped, *rooms, *map_used, *map_size,
	    *last_index, *gateways;
	pl_metric *snaps_sent, *snaps_installed, *peer_dropped;
	pl_metric *term, *is_leader, *commit, *applied, *elections, *peer_in,
	    *peer_out, *peer_bad, *proposals;
	pl_metric *watch_failed, *watches_lost, *events_lost, *gateways_refused,
	    *feed_failed, *peer_send_failed;
	pl_metric *raft_voters, *raft_learners, *map_voters, *members_changes,
	    *transfers, *quiet, *quiets;
} brk_group_metrics;

struct brk_item {
	void *ctx; /* the nng context to answer on */
	nng_msg *msg;
	Parley__Internal__GwBatch *batch;
	Parley__ServerFrame **replies;
	size_t nreplies;
	brk_feed_gw *gw; /* valid during the round that takes the batch */
	char epoch[BRK_FEED_EPOCH_CHARS_MAX + 1];
	int64_t deadline_us; /* polls, map watches */
	uint64_t map_since;  /* a map watch: answered past this version */
	Parley__Internal__MapReply *map_reply; /* in arena, or NULL */
	brk_arena arena;     /* decoded request and replies */
	brk_item *next_free;
	/* Requests proposed and not yet applied, plus one while the batch
	 * is being handled: the batch is answered when it reaches 0. */
	uint32_t npending;
	uint8_t *deferred; /* per request: a read answered after the round */
	bool peer;         /* a peer broker's message, not a gateway batch */
	brk_item *next_extra; /* made past ITEMS_MAX (g->extra) */
	pl_arena peer_arena;
	uint8_t *peer_raw; /* decompressed PeerBatch */
};

/* A snapshot being sent to one peer / received from the leader. */
enum { SNAP_COPYING = 0, SNAP_READY = 1, SNAP_FAILED = -1 };
typedef struct snap_out {
	bool active, thread_on;
	uint64_t peer, xfer, term;
	char dir[600];
	int fd;
	uint64_t total, sent, acked;
	int64_t started_us, progress_us;
	_Atomic int state;
	pthread_t th;
	brk_group *g;
} snap_out;

typedef struct snap_in {
	bool active;
	uint64_t from, xfer, term, total, got;
	int fd;
	char dir[600];
} snap_in;

/* A write waiting for its entry to be applied. */
typedef struct pending {
	uint64_t index, term;
	brk_item *it;
	Parley__ServerFrame *rep;
	int op; /* the request's ClientFrame body case */
} pending;

/* Deferred effects of a round, applied after it committed. */
typedef struct round_event {
	uint64_t room;
	Parley__Event *ev;
} round_event;

typedef struct round_watch {
	brk_feed_gw *gw;
	uint64_t room;
	const Parley__Internal__Caller *caller;
	bool on;
} round_watch;

typedef struct round {
	brk_wtxn *w; /* the read transaction of the round's reads */
	int64_t ts_us;
	round_event *events;
	size_t nevents, events_cap;
	round_watch *watches;
	size_t nwatches, watches_cap;
	brk_arena *a; /* the item being handled */
	brk_group *g;
} round;

struct brk_group {
	brk_config cfg;
	brk_store *store;
	brk_net *net;
	pl_queue q;
	pthread_t thread;
	atomic_bool running; /* written by the stopping thread */
	char epoch[33];
	brk_item items[ITEMS_MAX];
	brk_item *free_items;
	brk_item *extra; /* items made past ITEMS_MAX, freed with the group */
	size_t nitems;   /* under free_mu: items made */
	pthread_mutex_t free_mu;
	brk_feeds feeds;
	brk_watches watches;
	uint64_t fanout_mark; /* one per event fanned out (events.c) */
	round_event *events_buf;
	round_watch *watches_buf;
	uint8_t *pack; /* event encoding scratch */
	int64_t last_sync_us;
	int64_t started_us;
	int64_t last_ts_us;
	int64_t last_gauges_us;
	/* Raft. */
	raft *raft;
	raft_storage rs;
	brk_peers *peers;
	brk_auth auth;
	bool auth_on;
	bool leader;         /* as of the last look at the core */
	uint64_t lead_index; /* first entry of this leadership */
	uint64_t lead_id;
	uint64_t term;
	int64_t last_tick_us;
	pending *pend; /* ring, in index order */
	size_t pend_head, npend;
	/* Packed commands of proposals. The core borrows each payload from
	 * raft_propose until the ready that hands it out is advanced, so the
	 * arena is reset only when the core holds no unstable entry
	 * (asserted in drive), and nothing allocated in it before a drive
	 * may be used after that drive. */
	brk_arena prop_arena;
	brk_arena ev_arena; /* events of applied entries until fanned out */
	round_event *evs;
	size_t nev;
	brk_applied *res; /* results of one ready's applied entries */
	uint64_t *res_term;
	brk_item pitems[PEER_ITEMS_MAX];
	brk_item *free_peer;
	brk_item *held[PEER_ITEMS_MAX]; /* stepped, released after advance */
	size_t nheld;
	bool stalled;
	bool damage_handled;
	bool gws_reset;  /* leadership changed: forget gateways next */
	bool stall_sent; /* the held ready's messages already left */
	brk_store_config sc;
	snap_out sout[RAFT_PEERS_MAX];
	snap_in sin;
	uint64_t xfer_ids;
	uint8_t *snap_buf;
	int64_t last_compact_us;
	raft_ready stall_rd;
	int64_t stall_retry_us;
	pl_status stall_err;
	brk_envelope env;
	brk_arena send_arena;
	brk_group_metrics m;

	/* members.c: the map's target (target_in under target_mu, taken by
	 * the group thread into target), and the leader's pacing. */
	pthread_mutex_t target_mu;
	brk_members_target target_in, target;
	bool target_new, have_target;
	atomic_bool handoff, leads, in_conf;
	int64_t lead_since_us, members_us, transfer_us;

	/* quiet.c: the Raft clock stopped while the group is idle. */
	bool quiet;
	int64_t quiet_after_us, quiet_since_us, quiet_until_us, quiet_beat_us;
	int64_t active_us, quiet_look_us;
	uint64_t seen_last, seen_commit;
	struct {
		uint64_t node;
		int64_t at_us;
	} quiet_ack[RAFT_PEERS_MAX];
	/* The meta group's map (map_serve.c): the applied map's encoding,
	 * its version, the parked watches and who is told of a new map. */
	uint8_t *map_buf;
	size_t map_len;
	uint64_t map_version;
	brk_item **map_watches;
	size_t nmap_watches, map_watches_cap;
	brk_map_hook_fn map_hook;
	void *map_hook_ctx;
};

/* A zeroed allocation in the round's current item arena. */
static inline void *ralloc(round *rd, size_t n)
{
	void *p = brk_arena_alloc(rd->a, n);
	if (p != NULL)
		memset(p, 0, n);
	return p;
}

/* item.c */
void brk_item_put(brk_group *g, brk_item *it);
/* Packs a BrokerBatch with the item's replies and sends it; releases it. */
void brk_item_reply(brk_group *g, brk_item *it);
/* The batch's bytes through the codec (proto/codec.h), into its arena. */
pl_status brk_item_decode(brk_item *it);
/* The leader's gateway-facing address, "" when unknown or self. */
const char *brk_group_leader_hint(brk_group *g);

/* reply.c */
/* An error reply built in a. not_applied: the request never entered
 * the log, so sending it again cannot repeat it. */
void brk_rep_fail(brk_arena *a, Parley__ServerFrame *rep, pl_status st,
    bool not_applied, const char *hint);
void brk_rep_ok(brk_arena *a, Parley__ServerFrame *rep);
/* The reply of an applied write (op: its ClientFrame body case). */
void brk_rep_applied(
    brk_arena *a, Parley__ServerFrame *rep, const brk_applied *res, int op);

/* handlers.c */
/* Whether a request of this ClientFrame body case is a write (proposed
 * to Raft, checked and applied by the store) or a read. */
bool brk_op_is_write(int op);
/* A read, from the round's applied state (rd->w); fills rep. */
pl_status brk_dispatch(round *rd, brk_item *it,
    const Parley__Internal__GwRequest *rq, Parley__ServerFrame *rep);
/* Whether a request is answered by any replica in the round's first pass
 * (status), without the applied state. */
bool brk_op_at_once(int op);

/* pending.c */
void brk_item_done(brk_group *g, brk_item *it);
void brk_pend_push(brk_group *g, uint64_t index, uint64_t term, brk_item *it,
    Parley__ServerFrame *rep, int op);
/* Every write in flight fails: leadership lost (outcome unknown). */
void brk_pend_fail_all(brk_group *g, pl_status st);
/* Answers the writes of the n results of the last ready. */
void brk_results_complete(brk_group *g, size_t n);

/* events.c */
/* Builds the live event of an applied command (leader only). */
void brk_ev_applied(brk_group *g, const brk_applied *res);
/* Fans the applied entries' events out (send) or drops them. */
void brk_events_flush(brk_group *g, bool send);
/* Fans a packed event out to every gateway watching the room. */
void brk_fanout(brk_group *g, uint64_t room, const Parley__Event *ev);
/* watch.c's presence callback: a presence event fanned out. */
void brk_presence_event(
    void *ctx, uint64_t room, const char *user, int role, bool online);

/* raft_msgs.c */
/* Seals and sends one PeerBatch to `to` (the group field is set here). */
void brk_peer_send(brk_group *g, uint64_t to, Parley__Internal__PeerBatch *b);
/* Sends a ready's messages, one PeerBatch per peer in the core's order;
 * the peers Raft asks to be sent a snapshot are returned in snap[]. */
size_t brk_send_msgs(brk_group *g, const raft_ready *rd, uint64_t *snap);
/* Opens, checks and steps one received PeerBatch. */
void brk_peer_receive(brk_group *g, brk_item *it);

/* snapshot.c */
void brk_snap_out_start(brk_group *g, uint64_t peer);
void brk_snap_pump(brk_group *g);
void brk_snap_on_chunk(
    brk_group *g, uint64_t from, const Parley__Internal__SnapChunk *c);
void brk_snap_on_ack(
    brk_group *g, uint64_t from, const Parley__Internal__SnapAck *a);
/* Ends every transfer (at stop). */
void brk_snap_fini(brk_group *g);

/* members.c: run from housekeeping. */
void brk_members_tick(brk_group *g, int64_t now_us);

/* quiet.c: from housekeeping; a received QuietBeat; any work. */
void brk_quiet_tick(brk_group *g, int64_t now_us);
void brk_quiet_on_beat(
    brk_group *g, uint64_t from, const Parley__Internal__QuietBeat *q);
void brk_quiet_wake(brk_group *g, const char *why);

/* status.c: this replica's GroupStatus, arrays in a. */
pl_status brk_status_fill(brk_group *g, brk_arena *a, Parley__GroupStatus *gs);

/* raft_storage.c */
pl_status brk_raft_init(brk_group *g);
/* The configuration Raft starts from and a snapshot installs with: the
 * stored one (store/conf.c), else the bootstrap of g's config. */
pl_status brk_conf_base(brk_group *g, raft_conf *c);
void brk_damage_check(brk_group *g);

/* driver.c */
void brk_drive(brk_group *g);
bool brk_group_solo(const brk_group *g);
void brk_raft_ticks(brk_group *g);
void brk_compact(brk_group *g);
/* Forgets every gateway after a leadership change, between rounds. */
void brk_gws_reset(brk_group *g);
/* Forgets one gateway: its watches go offline, its polls are released. */
void brk_gw_forget(brk_group *g, int idx);

/* writes.c */
/* Lanes of one batch whose writes are refused from some request on. */
typedef struct lane_block {
	uint64_t *lane;
	pl_status *st;
	size_t n, cap;
} lane_block;
/* Packs cmd and proposes it; the pending write (it, rep, op) is answered
 * when its entry applies. PL_E_BACKPRESSURE, PL_E_NOT_LEADER, a stall. */
pl_status brk_propose_cmd(brk_group *g, Parley__Internal__Command *cmd,
    brk_item *it, Parley__ServerFrame *rep, int op);
/* A write of rq: proposed, or refused as its lane already is. */
pl_status brk_write_propose(brk_group *g, brk_item *it,
    const Parley__Internal__GwRequest *rq, Parley__ServerFrame *rep,
    lane_block *lb);

/* map_serve.c */
/* The pending op of a map change (no ClientFrame body case is negative). */
#define BRK_OP_MAP (-1)
/* Takes a batch carrying a MapRequest: a watch answered now or parked,
 * a change proposed (leader) or refused. */
void brk_map_serve(brk_group *g, brk_item *it, int64_t now_us);
/* A map change's entry applied (res) or failed (st): its answer. */
void brk_map_applied(brk_group *g, brk_item *it, const brk_applied *res);
void brk_map_failed(brk_group *g, brk_item *it, pl_status st);
/* Reads the store's map; when its version moved, answers the parked
 * watches and tells the hook. At start, after applied map changes and
 * after a snapshot is installed. */
void brk_map_refresh(brk_group *g);
/* Answers watches whose wait ended (housekeeping); at stop, all. */
void brk_map_expire(brk_group *g, int64_t now_us, bool all);

/* round.c */
void brk_run_round(brk_group *g, brk_item **items, size_t n);

/* group_metrics.c */
pl_status brk_group_metrics_register(brk_group *g, pl_metrics *r);
/* Gauges and the counters kept by the pure modules, once a second. */
void brk_group_gauges(brk_group *g, int64_t now_us);

#endif
