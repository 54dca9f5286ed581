/*
 * raft.h - the contract of Parley's Raft core: a pure, deterministic state
 * machine in the style of etcd's raft library. It does no I/O, reads no
 * clock, starts no thread and allocates only in raft_new. The driver (a
 * shard group, or the simulation in tests/sim/) feeds it ticks, received
 * messages, proposals and storage completions, and collects its output in a
 * raft_ready: messages to send, entries to write, entries to apply. The
 * rules the caller must follow and the invariants the core keeps are
 * written in docs/raft.md and at the top of raft/raft.c.
 */
#ifndef PARLEY_RAFT_H
#define PARLEY_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* ------------------------------------------------------------------ */
/* Limits. */

/* A shard group has 1, 3 or 5 voters; 7 leaves room for a learner or two
 * while a replica is moved (add learner, catch up, promote, remove). */
#define RAFT_PEERS_MAX 7
/* Append messages in flight to one peer: enough to keep a LAN pipe full
 * with batches of RAFT_MSG_ENTRIES_MAX, small enough to bound memory. */
#define RAFT_INFLIGHT_MAX 8
/* Entries in one append message (the byte bound is raft_config). */
#define RAFT_MSG_ENTRIES_MAX 64
/* Entries appended but not yet handed to the caller in a ready: a
 * proposal refused with PL_E_BACKPRESSURE beyond this. */
#define RAFT_UNSTABLE_MAX 1024
/* Committed entries handed out for applying in one ready. */
#define RAFT_APPLY_MAX 256
/* Messages in one ready: a full pipe to every peer plus a few control
 * messages (votes, heartbeats, responses) each. */
#define RAFT_MSGS_MAX (RAFT_PEERS_MAX * (RAFT_INFLIGHT_MAX + 4))
/* Entry slots shared by the append messages of one ready. */
#define RAFT_MSG_ENTS_POOL (RAFT_PEERS_MAX * 2 * RAFT_MSG_ENTRIES_MAX)
/* Replicas outside its configuration a repairing replica may ask (the
 * configuration it lost to damage, the driver's list): a group's
 * members plus as many again for ones that left or are joining. */
#define RAFT_REPAIR_PEERS_MAX (2 * RAFT_PEERS_MAX)
/* Bytes of an encoded configuration entry: version, counts, ids. */
#define RAFT_CONF_BYTES_MAX (3 + 8 * RAFT_PEERS_MAX)

_Static_assert(RAFT_UNSTABLE_MAX >= RAFT_MSG_ENTRIES_MAX,
    "a follower must be able to take one whole append message");

/* ------------------------------------------------------------------ */
/* Log entries. */

typedef enum raft_entry_type {
	RAFT_ENTRY_NORMAL = 0, /* opaque payload: the broker's Command */
	RAFT_ENTRY_CONF = 1,   /* a configuration (raft_conf, encoded) */
} raft_entry_type;

/* An entry. data is borrowed: see the lifetime rules at raft_propose,
 * raft_step and raft_storage.entries. An empty payload (len 0) is the
 * no-op a new leader appends at the start of its term. */
typedef struct raft_entry {
	uint64_t term;
	uint64_t index;
	uint8_t type; /* raft_entry_type */
	const uint8_t *data;
	size_t len;
} raft_entry;

/* A configuration: voters and learners, disjoint, ids non-zero, together
 * at most RAFT_PEERS_MAX. */
typedef struct raft_conf {
	uint64_t voters[RAFT_PEERS_MAX];
	uint8_t n_voters;
	uint64_t learners[RAFT_PEERS_MAX];
	uint8_t n_learners;
} raft_conf;

/* State that must survive a restart. term and vote must be durable before
 * any message of the ready that changed them is sent; commit may lag. */
typedef struct raft_hard_state {
	uint64_t term;
	uint64_t vote; /* 0: none in this term */
	uint64_t commit;
} raft_hard_state;

/* A repair under way: the replica found entries of its log unreadable
 * (CRC) and lost them; see raft_log_damaged. The driver stores it
 * durably, in the same write that truncates the log, and passes it back
 * in raft_config.repair when it restarts. to == 0: no repair. The
 * replica is repaired once its log durably holds entry (to, term) again
 * (from any peer that holds it: RAFT_MSG_REPAIR), or an entry of its
 * current term T > term matching the log of the leader of T (its own,
 * if it leads T). Until then it grants no vote and campaigns only
 * without counting its own (docs/raft.md, "Damaged logs"). */
typedef struct raft_repair {
	uint64_t to;   /* the last durable entry when damage was found... */
	uint64_t term; /* ...and its term (the largest such, when merged) */
} raft_repair;

/* ------------------------------------------------------------------ */
/* Storage: the log as the caller stores it (LMDB in the broker, memory in
 * the simulation). It holds entries [first, last]; first - 1 is the index
 * of the snapshot the log starts after (0 and term 0 for a new group).
 * Every callback is called from inside raft_* calls only; none may call
 * back into the core. */

typedef struct raft_storage {
	/* State at start: hard state, snapshot index and term, and the
	 * configuration as of the snapshot (for a new group: the bootstrap
	 * voters). Read by raft_new, and again for the snapshot's
	 * configuration when a truncation reverts to it. */
	pl_status (*load)(void *ctx, raft_hard_state *hs, uint64_t *snap_index,
	    uint64_t *snap_term, raft_conf *snap_conf);
	uint64_t (*first_index)(void *ctx);
	uint64_t (*last_index)(void *ctx);
	/* Term of the entry at index, first <= index <= last, into *term.
	 * PL_E_NOT_FOUND outside that range; PL_E_CORRUPT, PL_E_IO. */
	pl_status (*term_at)(void *ctx, uint64_t index, uint64_t *term);
	/* Entries [lo, hi) into out (at most cap), stopping before the byte
	 * total of payloads passes max_bytes (but always at least one).
	 * Payload pointers stay valid until the next raft_advance, and
	 * writing a ready's entries must not invalidate those below
	 * entries[0].index. *n is written only on success. */
	pl_status (*entries)(void *ctx, uint64_t lo, uint64_t hi,
	    size_t max_bytes, raft_entry *out, size_t cap, size_t *n);
} raft_storage;

/* ------------------------------------------------------------------ */
/* Messages between replicas. Entries point into the sender's storage or
 * proposals (outgoing) or into the receiver's buffer (incoming). */

typedef enum raft_msg_type {
	RAFT_MSG_APP = 1,      /* index/log_term = previous entry */
	RAFT_MSG_APP_RESP,     /* index = matched, or rejected + hint */
	RAFT_MSG_VOTE,         /* index/log_term = candidate's last */
	RAFT_MSG_VOTE_RESP,    /* reject = refused */
	RAFT_MSG_PREVOTE,      /* term = the term the candidate would use */
	RAFT_MSG_PREVOTE_RESP, /* term = the pre-vote's term when granted */
	RAFT_MSG_HEARTBEAT,    /* commit = min(leader commit, match) */
	/* reject = the follower is repairing a damaged log; index = the
	 * last entry it holds durably (the leader stops trusting a higher
	 * match and probes from there). Transports carry reject and index
	 * for every type. */
	RAFT_MSG_HEARTBEAT_RESP,
	RAFT_MSG_TIMEOUT_NOW, /* transfer: campaign at once */
	/* Leader to its driver: "peer `to` is behind our first index; send it
	 * the snapshot at index/log_term". Not a wire message: the broker runs
	 * the chunked transfer, then calls raft_snapshot_done on the leader
	 * and raft_snapshot_restore on the follower. */
	RAFT_MSG_SNAP,
	/* A repairing replica to any peer, whatever the terms: "if your log
	 * holds entry (hint, commit) and matches mine at (index, log_term),
	 * send me the entries after index up to hint". hint and commit are
	 * its raft_repair (to, term). */
	RAFT_MSG_REPAIR,
	/* The answer: entries after (index, log_term), up to hint (echoed);
	 * commit = the sender's commit, at most the last entry sent. */
	RAFT_MSG_REPAIR_RESP,
	RAFT_MSG_TYPE_END_,
} raft_msg_type;

typedef struct raft_msg {
	uint8_t type; /* raft_msg_type */
	bool reject;
	bool force; /* vote of a leadership transfer: ignore the lease */
	uint64_t from;
	uint64_t to;
	uint64_t term;
	uint64_t index;
	uint64_t log_term;
	uint64_t commit;
	uint64_t
	    hint; /* APP_RESP reject: retry from here; log_term = its term */
	const raft_entry *ents; /* borrowed */
	size_t n_ents;
} raft_msg;

/* ------------------------------------------------------------------ */
/* The core. */

typedef struct raft raft;

typedef struct raft_config {
	uint64_t id; /* non-zero */
	/* Election timeout: randomized per election in [ticks, 2 * ticks). */
	uint32_t election_ticks;
	uint32_t heartbeat_ticks; /* < election_ticks */
	uint64_t seed;            /* of the timeout PRNG: runs replay exactly */
	bool pre_vote;
	bool check_quorum;
	/* Payload bytes in one append message (at least one entry goes). */
	size_t msg_bytes_max;
	/* Index the caller's state machine has applied (0: the snapshot). */
	uint64_t applied;
	const raft_storage *storage; /* borrowed; lives as long as the core */
	void *storage_ctx;
	/* The repair stored by the driver (all zero: none). With a repair,
	 * the stored commit may pass the log (it is lowered to the last
	 * index) and applied may pass commit (entries lost to damage that
	 * the state machine applied are not handed out again). */
	raft_repair repair;
} raft_config;

typedef enum raft_role {
	RAFT_FOLLOWER = 0,
	RAFT_PRE_CANDIDATE,
	RAFT_CANDIDATE,
	RAFT_LEADER,
} raft_role;

/*
 * Output of one round. Handle it in this order, then call raft_advance:
 *  1. if hs_sync: make hs durable (term or vote changed);
 *     write hs.commit whenever convenient (it may lag);
 *  2. write entries[0..n_ents) to the log, replacing stored entries at
 *     index >= entries[0].index; they must be readable through the
 *     storage callbacks at once, and become durable at some later sync,
 *     reported with raft_persisted;
 *  3. send msgs (and run snapshot transfers for RAFT_MSG_SNAP);
 *  4. apply committed[0..n_committed) in order.
 * Every pointer in it is owned by the core and valid until raft_advance.
 */
typedef struct raft_ready {
	raft_hard_state hs;
	bool hs_sync;
	const raft_entry *entries;
	size_t n_ents;
	const raft_msg *msgs;
	size_t n_msgs;
	const raft_entry *committed;
	size_t n_committed;
} raft_ready;

/* A snapshot of the core's state for the driver, metrics and tests. */
typedef struct raft_status {
	uint64_t id;
	raft_role role;
	uint64_t term;
	uint64_t vote;
	uint64_t lead;
	uint64_t commit;
	uint64_t applied;
	uint64_t persisted;
	uint64_t last_index;
	uint64_t first_index;
	raft_conf conf; /* latest in the log, committed or not */
	uint64_t transferee;
	uint64_t dropped_msgs; /* invalid or unprocessable peer messages */
	pl_status storage_err; /* the last storage error seen, or PL_OK */
	/* Damaged log not yet repaired (raft_log_damaged): no votes; it
	 * campaigns without its own. repair is what the driver must have
	 * stored; once repairing is false the driver may clear its stored
	 * copy. */
	bool repairing;
	raft_repair repair;
} raft_status;

/*
 * Allocates a core and loads its state through cfg->storage (which must
 * hold a log whose configuration and hard state are consistent). *out is
 * written only on success. Errors: PL_E_CONFIG (bad cfg), PL_E_NOMEM,
 * PL_E_CORRUPT (inconsistent storage), storage errors.
 */
pl_status raft_new(const raft_config *cfg, raft **out);
/* Frees a core; accepts NULL. */
void raft_free(raft *r);

/* One logical clock tick: election and heartbeat timers. */
void raft_tick(raft *r);

/*
 * Feeds one message received from a peer. The message is untrusted:
 * malformed or impossible messages are dropped (counted in dropped_msgs)
 * and PL_E_PROTO is returned; the state never depends on its validity.
 * Entry payloads of an accepted append are borrowed until raft_advance
 * returns: keep the receive buffer alive until then.
 */
pl_status raft_step(raft *r, const raft_msg *m);

/*
 * Appends a normal entry with payload data[0..len) (borrowed until the
 * ready holding it is advanced). On success *index and *term name the
 * entry: the proposal succeeded iff an applied entry has that index and
 * term. Errors: PL_E_NOT_LEADER, PL_E_AGAIN (leadership transfer under
 * way), PL_E_BACKPRESSURE (unstable log full).
 */
pl_status raft_propose(
    raft *r, const void *data, size_t len, uint64_t *index, uint64_t *term);

typedef enum raft_conf_op {
	RAFT_CONF_ADD_VOTER = 1,
	RAFT_CONF_ADD_LEARNER,
	RAFT_CONF_PROMOTE, /* learner -> voter */
	RAFT_CONF_REMOVE,  /* voter or learner */
} raft_conf_op;

/*
 * Proposes a single-server configuration change. It takes effect on every
 * replica when the entry is appended to its log (see docs/raft.md,
 * "Membership"). Errors: PL_E_NOT_LEADER; PL_E_AGAIN while another change
 * is uncommitted or the leader has not committed an entry of its term;
 * PL_E_BAD_REQUEST for a change that is not valid for the configuration
 * (unknown node, already a member, removing the last voter, > 7 peers).
 */
pl_status raft_propose_conf(
    raft *r, raft_conf_op op, uint64_t node, uint64_t *index, uint64_t *term);

/*
 * Asks the leader to hand leadership to voter `to`: it stops taking
 * proposals, brings `to` up to date and sends it RAFT_MSG_TIMEOUT_NOW.
 * Abandoned after an election timeout. Errors: PL_E_NOT_LEADER,
 * PL_E_BAD_REQUEST (not a voter, or self).
 */
pl_status raft_transfer_leader(raft *r, uint64_t to);

/*
 * The caller made the log durable up to entry (index, term): that entry
 * was the last one written when the sync started. Reports that no longer
 * match the log (it was truncated since) are ignored.
 */
void raft_persisted(raft *r, uint64_t index, uint64_t term);

/* Leader: the snapshot transfer to `peer` ended (ok or failed). */
void raft_snapshot_done(raft *r, uint64_t peer, bool ok);

/*
 * Follower: the caller replaced its log and state machine with a snapshot
 * at (index, term) with configuration conf, received from leader `from`
 * in term `term_from`; storage now has first = index + 1, last = index,
 * durable. Ignored (PL_E_AGAIN) when index <= commit. PL_E_BAD_REQUEST for
 * an invalid conf.
 */
pl_status raft_snapshot_restore(raft *r, uint64_t from, uint64_t term_from,
    uint64_t index, uint64_t term, const raft_conf *conf);

/*
 * The driver found log entry bad_index unreadable (its CRC does not
 * match: a bit flip, a bad sector) while the core runs. Call it between
 * rounds (not between raft_ready_get and raft_advance), with the lowest
 * bad index known, first <= bad_index <= the stored last index. The core
 * then treats its log as ending at bad_index - 1 (its unstable tail
 * goes too), lowers commit and persisted to at most bad_index - 1 (an
 * entry that was committed stays committed in the group; this replica
 * merely forgets it holds it; applied is kept and nothing is handed out
 * twice), steps down if it led or campaigned, and starts repairing: it
 * refuses every vote and pre-vote and campaigns only without counting
 * its own vote until repaired from its peers or by leading (see
 * raft_repair and docs/raft.md, "Damaged logs").
 *
 * *rep receives the repair record (merged with one under way). Before
 * handling the next ready, the driver must, in one durable write:
 * truncate its log to bad_index - 1, lower its stored commit to at most
 * bad_index - 1, and store *rep. A sync that was under way must not be
 * reported with raft_persisted (it may name entries written again
 * since). Errors, with nothing changed: PL_E_BAD_REQUEST (bad_index out
 * of range), PL_E_CORRUPT or another storage error (an entry below
 * bad_index could not be read either: call again with that index).
 */
pl_status raft_log_damaged(raft *r, uint64_t bad_index, raft_repair *rep);

/*
 * Optional: the ids of the group's replicas the driver knows of (its
 * static list; members of the configuration or not). A repairing replica
 * asks them as well as the members of its configuration, which after
 * damage may be older than the group's and miss the one replica that
 * holds what it lost. The core also keeps, until it is freed, the
 * members of a configuration it lost to damage. Adds copies of the ids
 * (0, the replica's own id and known ones are skipped); PL_E_TOO_LARGE
 * when the RAFT_REPAIR_PEERS_MAX known ids leave no room for some.
 */
pl_status raft_repair_peers(raft *r, const uint64_t *ids, size_t n);

/*
 * For a driver that finds damage before the core runs (a scan at
 * restart): merges into *rep the damage of a log whose durable entries
 * ended at (index, term), the last entry a completed sync covered (the
 * driver keeps that pair with its sync state). Store the result with the
 * truncation, then pass it in raft_config.repair. index 0 (nothing was
 * durable, so nothing was acknowledged) leaves *rep as it is.
 */
void raft_repair_note(raft_repair *rep, uint64_t index, uint64_t term);

/* True when raft_ready would return something to handle. */
bool raft_has_ready(const raft *r);
/* Entries appended (proposed or received) and not yet handed out by an
 * advanced ready: their payloads are still borrowed by the core. */
size_t raft_unstable_count(const raft *r);
/* Fills *rd with this round's output (see raft_ready). No other raft_*
 * call but raft_status may happen until raft_advance(r). */
void raft_ready_get(raft *r, raft_ready *rd);
/* The ready has been handled as raft_ready describes. */
void raft_advance(raft *r);

void raft_status_get(const raft *r, raft_status *st);

/* Leader: the highest index known durable on peer `id` and matching the
 * leader's log there, into *match (how far a learner has caught up), and
 * in *recent (may be NULL) whether the peer answered since the last
 * quorum check, an election timeout at most (the leader itself always
 * has). PL_E_NOT_LEADER on any other role, PL_E_NOT_FOUND for a
 * non-member. */
pl_status raft_peer_match(
    const raft *r, uint64_t id, uint64_t *match, bool *recent);

/* Encodes / decodes a configuration entry payload (the decoder validates:
 * the payload is untrusted). Exposed for the driver and tests. */
size_t raft_conf_encode(const raft_conf *c, uint8_t out[RAFT_CONF_BYTES_MAX]);
pl_status raft_conf_decode(const uint8_t *p, size_t len, raft_conf *c);
bool raft_conf_is_voter(const raft_conf *c, uint64_t id);
bool raft_conf_is_learner(const raft_conf *c, uint64_t id);

const char *raft_role_name(raft_role role);
const char *raft_msg_type_name(int type);

#endif /* PARLEY_RAFT_H */
