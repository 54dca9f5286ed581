/*
 * raft_internal.h - what the files of the Raft core share: struct raft, the
 * leader's per-peer progress and its states, and the functions one raft file
 * calls in another (prefix rf_; the public API stays raft_, in raft.h).
 * Included only by the raft/ .c files: nothing outside raft/ sees struct raft.
 * The invariants the core keeps are written at the top of raft.c.
 *
 * The files, bottom-up:
 *   conf.c       configurations: membership, encoding, the single-server
 *                change; queries on the one in force (quorum, a member's
 *                progress, may campaign, repairing);
 *   log.c        the log view: unstable entries over storage reads, terms,
 *                appends and commit;
 *   elect.c      progress of peers, role changes, election timeouts, votes;
 *   replicate.c  leader replication and the commit rule; follower appends;
 *   repair.c     damaged logs: the repair record, asking and serving peers;
 *   raft.c       peer message validation, the term rules and the public
 *                entry points (step, tick, propose, ready/advance, life
 *                cycle).
 * Three calls go up the list: elect.c, replicate.c and repair.c queue
 * messages with rf_send/rf_send_simple (raft.c owns the round's output), an
 * appended configuration entry rebuilds the progress table (log.c ->
 * rf_conf_apply) and a new leader sends its first appends (elect.c ->
 * rf_bcast_append).
 */
#ifndef PARLEY_RAFT_INTERNAL_H
#define PARLEY_RAFT_INTERNAL_H

#include "raft/raft.h"

/* Progress states of a peer, as seen by the leader. */
enum { PR_PROBE = 0, PR_REPLICATE, PR_SNAPSHOT };

/* Per-peer replication state on the leader (and vote state on candidates). */
typedef struct progress {
	uint64_t id;
	bool learner;
	uint8_t state;
	bool probe_sent; /* PR_PROBE: an append is out, wait for an answer */
	bool active;     /* heard from since the last quorum check */
	int8_t vote;     /* 0 unknown, 1 granted, -1 refused */
	uint64_t match;  /* highest index known durable and matching there */
	uint64_t next;   /* next index to send */
	uint64_t snap_index;
	uint64_t infl[RAFT_INFLIGHT_MAX]; /* last index of each append out */
	uint8_t infl_start;
	uint8_t infl_n;
} progress;

struct raft {
	raft_config cfg;
	uint64_t id;
	raft_role role;
	uint64_t term;
	uint64_t vote;
	uint64_t lead;
	uint64_t commit;
	uint64_t applied;
	uint64_t persisted; /* entries <= persisted are durable and current */
	uint64_t persisted_term; /* term of entry `persisted` (or above it) */

	/* The log: storage holds [first, stable_last]; unstable entries
	 * [u_off, u_off + u_n) replace anything stored from u_off on. */
	uint64_t stable_last;
	uint64_t u_off;
	size_t u_n;
	raft_entry u_ents[RAFT_UNSTABLE_MAX + 1]; /* +1: the leader no-op */

	/* Configuration: the latest configuration entry in the log (or the
	 * snapshot's, at its index), committed or not. */
	raft_conf conf;
	uint64_t conf_index;
	/* This replica is a voter of the configuration before conf_index
	 * and the entry at conf_index removed it: until it knows that entry
	 * committed it may still be needed, so it campaigns (without its
	 * own vote; Ongaro's dissertation, 4.2.2). */
	bool left_voter;
	uint8_t conf_buf[RAFT_CONF_BYTES_MAX]; /* leader's last conf entry */

	progress prs[RAFT_PEERS_MAX];
	int n_prs;

	uint32_t election_elapsed;
	uint32_t heartbeat_elapsed;
	uint32_t timeout; /* randomized election timeout */
	uint64_t prng;
	uint64_t transferee;
	uint64_t term_start; /* leader: index of its term's no-op */

	/* Follower: an append ack waiting for raft_persisted. */
	uint64_t ack_to, ack_term, ack_index;

	/* Output of the current round. */
	raft_msg msgs[RAFT_MSGS_MAX];
	size_t n_msgs;
	raft_entry msg_ents[RAFT_MSG_ENTS_POOL];
	size_t n_msg_ents;
	raft_entry apply_ents[RAFT_APPLY_MAX];
	size_t n_apply;
	raft_hard_state prev_hs;
	bool in_ready;

	uint64_t dropped_msgs;
	pl_status storage_err;
	uint64_t storage_errs; /* storage errors seen (NOT_FOUND aside) */

	/* A damaged log under repair (to == 0: none), and the highest index
	 * known to match the log of the leader of this term. */
	raft_repair repair;
	uint64_t repair_match;
	/* Replicas to ask besides the configuration's members. */
	uint64_t repair_peers[RAFT_REPAIR_PEERS_MAX];
	size_t n_repair_peers;
};

/* conf.c: configurations. */
bool rf_conf_valid(const raft_conf *c);
pl_status rf_conf_change(
    const raft_conf *c, raft_conf_op op, uint64_t node, raft_conf *out);
const raft_conf *rf_conf_cur(const raft *r);
int rf_quorum(const raft *r);
progress *rf_pr_find(raft *r, uint64_t id);
bool rf_promotable(const raft *r);
bool rf_may_campaign(const raft *r);
bool rf_repairing(const raft *r);

/* log.c: the log. */
uint64_t rf_first_index(const raft *r);
uint64_t rf_last_index(const raft *r);
pl_status rf_log_term(raft *r, uint64_t i, uint64_t *t);
uint64_t rf_last_term(raft *r);
bool rf_match_term(raft *r, uint64_t i, uint64_t t);
bool rf_up_to_date(raft *r, uint64_t lt, uint64_t li);
pl_status rf_log_entries(raft *r, uint64_t lo, uint64_t hi, size_t max_bytes,
    raft_entry *out, size_t cap, size_t *n);
pl_status rf_conf_at(raft *r, uint64_t upto, raft_conf *c, uint64_t *ci);
void rf_conf_left_refresh(raft *r);
void rf_log_append(raft *r, const raft_entry *ents, size_t n,
    const raft_conf *revert, uint64_t revert_index);
void rf_commit_to(raft *r, uint64_t c);

/* elect.c: progress, role changes, elections. */
void rf_reset_timeout(raft *r);
bool rf_pr_paused(const progress *pr);
void rf_pr_reset(progress *pr, uint8_t state, uint64_t next);
void rf_pr_infl_add(progress *pr, uint64_t last);
void rf_pr_infl_free_le(progress *pr, uint64_t idx);
void rf_conf_apply(raft *r);
void rf_become_follower(raft *r, uint64_t term, uint64_t lead);
void rf_record_vote(raft *r, uint64_t from, bool granted);
void rf_hup(raft *r, bool transfer);
void rf_handle_vote(raft *r, const raft_msg *m);

/* replicate.c: leader replication, follower appends. */
bool rf_send_append(raft *r, progress *pr, bool allow_empty);
void rf_bcast_append(raft *r);
void rf_bcast_heartbeat(raft *r);
bool rf_maybe_commit(raft *r);
void rf_maybe_send_timeout_now(raft *r, progress *pr);
void rf_step_leader(raft *r, const raft_msg *m);
void rf_step_follower(raft *r, const raft_msg *m);
void rf_step_candidate(raft *r, const raft_msg *m);

/* repair.c: damaged logs. */
void rf_repair_check(raft *r);
void rf_repair_ask(raft *r, uint64_t to);
void rf_handle_repair(raft *r, const raft_msg *m);
void rf_handle_repair_resp(raft *r, const raft_msg *m);

/* raft.c: the round's output. */
void rf_send(raft *r, const raft_msg *m);
void rf_send_simple(raft *r, int type, uint64_t to, uint64_t term, bool reject);

#endif
