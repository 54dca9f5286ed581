/*
 * members.c - the leader follows the cluster map: it changes the group's
 * Raft configuration towards the map's target one single-server step at
 * a time, hands leadership to the map's preferred leader, and hands it
 * away before its broker stops (docs/cluster.md "Following the map").
 *
 * The map holds the target; the Raft log holds the configuration. Only
 * the leader acts, on its own thread, at most one step per look
 * (MEMBERS_TICK_US), and only through raft_propose_conf and
 * raft_transfer_leader, so every safety property is Raft's: one
 * uncommitted change at a time (the core refuses a second with
 * PL_E_AGAIN), a change takes effect when appended, quorums of
 * consecutive configurations overlap.
 *
 * Order of the steps, so that a replica move (learner, catch up,
 * promote, remove) never leaves fewer caught-up voters than it started
 * with:
 *   1. a replica the target names and the configuration lacks joins as
 *      a learner;
 *   2. a learner the target wants as a voter is promoted once caught up
 *      (its match within CATCHUP_SLACK of the commit index);
 *   3. a learner the target no longer names is removed;
 *   4. a voter the target no longer names is removed, but only once no
 *      promotion is waiting (so the replacement votes first); when that
 *      voter is the leader itself it hands leadership to a caught-up
 *      voter the target keeps, and the next leader removes it;
 *   5. with nothing to change, the preferred leader (a caught-up voter)
 *      is handed leadership, after the leader has led LEAD_SETTLE_US and
 *      at most once per TRANSFER_RETRY_US.
 * A target demoting a voter to learner is not a step Raft offers here;
 * the map never asks for one.
 */
#include <inttypes.h>

#include "broker/group_internal.h"

#define MEMBERS_TICK_US (50 * 1000)
#define CATCHUP_SLACK 256
#define LEAD_SETTLE_US (3 * 1000000)
#define TRANSFER_RETRY_US (5 * 1000000)

void brk_group_set_target(brk_group *g, const brk_members_target *t)
{
	pthread_mutex_lock(&g->target_mu);
	g->target_in = *t;
	g->target_new = true;
	pthread_mutex_unlock(&g->target_mu);
}

void brk_group_handoff(brk_group *g)
{
	atomic_store(&g->handoff, true);
}

const char *brk_group_data_dir(const brk_group *g)
{
	return g->cfg.data_dir;
}

bool brk_group_in_conf(brk_group *g)
{
	return atomic_load(&g->in_conf);
}

/* True while this replica leads a group with other voters. */
bool brk_group_leads(brk_group *g)
{
	return atomic_load(&g->leads);
}

static bool in(const uint64_t *ids, int n, uint64_t id)
{
	for (int i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/* The peer answered lately and is within CATCHUP_SLACK entries of the
 * commit index. */
static bool caught_up(brk_group *g, const raft_status *rs, uint64_t id)
{
	uint64_t match = 0;
	bool recent = false;
	return raft_peer_match(g->raft, id, &match, &recent) == PL_OK &&
	       recent && match + CATCHUP_SLACK >= rs->commit;
}

static const char *op_name(raft_conf_op op)
{
	switch (op) {
	case RAFT_CONF_ADD_LEARNER:
		return "add_learner";
	case RAFT_CONF_PROMOTE:
		return "promote";
	case RAFT_CONF_REMOVE:
		return "remove";
	default:
		return "add_voter";
	}
}

static void propose(brk_group *g, raft_conf_op op, uint64_t node)
{
	uint64_t index, term;
	pl_status st = raft_propose_conf(g->raft, op, node, &index, &term);
	if (st == PL_OK) {
		pl_metric_inc(g->m.members_changes, 1);
		PL_INFO("group",
		    "event=members_change op=%s node=%" PRIu64
		    " index=%" PRIu64 " map_version=%" PRIu64,
		    op_name(op), node, index, g->target.version);
	} else if (st != PL_E_AGAIN) {
		PL_WARN("group",
		    "event=members_change_refused op=%s node=%" PRIu64
		    " err=\"%s\"",
		    op_name(op), node, pl_strerror(st));
	}
}

static void transfer(brk_group *g, uint64_t to, const char *why, int64_t now)
{
	g->transfer_us = now;
	pl_status st = raft_transfer_leader(g->raft, to);
	if (st == PL_OK)
		pl_metric_inc(g->m.transfers, 1);
	PL_INFO("group",
	    "event=leader_transfer to=%" PRIu64 " reason=%s err=\"%s\"", to,
	    why, st == PL_OK ? "" : pl_strerror(st));
}

/* The caught-up voter of conf other than this replica with the highest
 * match that answered within the last election timeout (a paused or
 * dead peer would never take over), preferring one the target keeps; 0
 * when there is none. */
static uint64_t successor(brk_group *g, const raft_status *rs)
{
	uint64_t best = 0, best_match = 0;
	bool best_kept = false;
	for (int i = 0; i < rs->conf.n_voters; i++) {
		uint64_t id = rs->conf.voters[i], match = 0;
		bool recent = false;
		if (id == g->cfg.node ||
		    raft_peer_match(g->raft, id, &match, &recent) != PL_OK ||
		    !recent || match + CATCHUP_SLACK < rs->commit)
			continue;
		bool kept = !g->have_target ||
		            in(g->target.voters, g->target.nvoters, id);
		if (best == 0 || (kept && !best_kept) ||
		    (kept == best_kept && match > best_match)) {
			best = id;
			best_match = match;
			best_kept = kept;
		}
	}
	return best;
}

/* One step towards the target's configuration; true when one was taken
 * or is waiting (no leadership preference is acted on then). */
static bool conf_step(brk_group *g, const raft_status *rs, int64_t now)
{
	const brk_members_target *t = &g->target;
	const raft_conf *c = &rs->conf;
	/* 1. Join as learners. */
	for (int k = 0; k < 2; k++) {
		const uint64_t *ids = k == 0 ? t->voters : t->learners;
		int n = k == 0 ? t->nvoters : t->nlearners;
		for (int i = 0; i < n; i++) {
			if (!raft_conf_is_voter(c, ids[i]) &&
			    !raft_conf_is_learner(c, ids[i])) {
				propose(g, RAFT_CONF_ADD_LEARNER, ids[i]);
				return true;
			}
		}
	}
	/* 2. Promote caught-up learners the target wants voting. */
	bool waiting = false;
	for (int i = 0; i < t->nvoters; i++) {
		if (!raft_conf_is_learner(c, t->voters[i]))
			continue;
		if (caught_up(g, rs, t->voters[i])) {
			propose(g, RAFT_CONF_PROMOTE, t->voters[i]);
			return true;
		}
		waiting = true;
	}
	/* 3. Learners no longer wanted. */
	for (int i = 0; i < c->n_learners; i++) {
		uint64_t id = c->learners[i];
		if (!in(t->voters, t->nvoters, id) &&
		    !in(t->learners, t->nlearners, id)) {
			propose(g, RAFT_CONF_REMOVE, id);
			return true;
		}
	}
	if (waiting)
		return true; /* the replacement votes before anyone leaves */
	/* 4. Voters no longer wanted; the leader itself hands over first. */
	for (int i = 0; i < c->n_voters; i++) {
		uint64_t id = c->voters[i];
		if (in(t->voters, t->nvoters, id))
			continue;
		if (id != g->cfg.node) {
			propose(g, RAFT_CONF_REMOVE, id);
			return true;
		}
		if (now - g->transfer_us >= TRANSFER_RETRY_US) {
			uint64_t to = successor(g, rs);
			if (to != 0)
				transfer(g, to, "leaving", now);
		}
		return true;
	}
	return false;
}

/* 5. The preferred leader leads once it is a caught-up voter. */
static void leader_step(brk_group *g, const raft_status *rs, int64_t now)
{
	uint64_t to = g->target.leader;
	if (to == 0 || to == g->cfg.node || !raft_conf_is_voter(&rs->conf, to) ||
	    now - g->lead_since_us < LEAD_SETTLE_US ||
	    now - g->transfer_us < TRANSFER_RETRY_US || !caught_up(g, rs, to))
		return;
	transfer(g, to, "preferred", now);
}

void brk_members_tick(brk_group *g, int64_t now)
{
	pthread_mutex_lock(&g->target_mu);
	if (g->target_new) {
		g->target = g->target_in;
		g->target_new = false;
		g->have_target = true;
	}
	pthread_mutex_unlock(&g->target_mu);
	if (!g->leader) {
		atomic_store(&g->leads, false);
		g->lead_since_us = 0;
	} else if (g->lead_since_us == 0) {
		g->lead_since_us = now;
	}
	if (now - g->members_us < MEMBERS_TICK_US)
		return;
	g->members_us = now;
	raft_status rs;
	raft_status_get(g->raft, &rs);
	atomic_store(&g->in_conf, raft_conf_is_voter(&rs.conf, g->cfg.node) ||
	                              raft_conf_is_learner(&rs.conf, g->cfg.node));
	if (!g->leader)
		return;
	/* A leader that is its group's only voter has no one to hand to:
	 * a stopping broker need not wait for it. */
	atomic_store(&g->leads, rs.conf.n_voters > 1);
	if (rs.transferee != 0)
		return; /* a transfer under way: proposals wait for it */
	if (atomic_load(&g->handoff)) {
		if (now - g->transfer_us >= TRANSFER_RETRY_US / 5) {
			uint64_t to = successor(g, &rs);
			if (to != 0)
				transfer(g, to, "stopping", now);
		}
		return;
	}
	if (!g->have_target || g->target.nvoters == 0)
		return; /* static groups and the meta group: no target */
	if (!conf_step(g, &rs, now))
		leader_step(g, &rs, now);
}
