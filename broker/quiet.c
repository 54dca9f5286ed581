/*
 * quiet.c - an idle group stops its Raft clock (docs/replication.md
 * "Quiet groups"). A broker hosts many groups and most of them are idle
 * most of the time; with its clock running, an idle group of three sends
 * 40 heartbeats and answers a second, and every one wakes two threads.
 *
 * A leader whose group has been idle for quiet_after_ms goes quiet: its
 * log ends at its commit index, everything committed is applied, every
 * member answered lately and holds the whole log, no proposal, transfer,
 * snapshot or handoff is under way. It stops ticking (so it sends no
 * heartbeats) and instead sends each member a QuietBeat {term, commit}
 * every election_ms / 2. A follower of that leader in that term whose log
 * ends at that commit, all committed, stops ticking too and answers
 * with an ack. Then the group costs two small messages per member per
 * election timeout.
 *
 * Any work wakes a quiet replica (brk_quiet_wake): anything its core has
 * to do (a proposal; a message from a peer that asks something of it - a
 * heartbeat, an append, a vote request), which the driver sees before it
 * handles a ready; answers that change nothing (the last heartbeats'
 * acknowledgements arriving after the leader went quiet) do not. Waking
 * restarts the clock from now: ticks that were skipped are not made up,
 * so no timer fires early.
 *
 * Timers stand in for the clock while quiet, each bounded by the
 * election timeout the clock would have used:
 *  - a quiet follower that has no beat from its leader for election_ms
 *    wakes, and its election timer runs from then: a dead leader's group
 *    elects after at most two election timeouts instead of one;
 *  - a quiet leader that has no acks from a quorum for election_ms wakes,
 *    and check_quorum deposes it if it is cut off, as before;
 *  - a follower that will not go quiet (its log differs) keeps ticking;
 *    it campaigns after its timeout, its (pre-)vote request wakes the
 *    leader and the others, and heartbeats bring it up to date.
 * None of this decides what is committed: quiet is a matter of timers,
 * every safety property is the core's.
 */
#include "broker/group_internal.h"

/* How often a replica looks whether it may go quiet or must wake: the
 * look is off the path of every round (housekeeping runs after each). */
#define QUIET_LOOK_US (50 * 1000)

static int64_t election_us(const brk_group *g)
{
	return (int64_t)g->cfg.election_ms * 1000;
}

void brk_quiet_wake(brk_group *g, const char *why)
{
	if (!g->quiet)
		return;
	g->quiet = false;
	g->active_us = pl_mono_us();
	g->last_tick_us = g->active_us; /* skipped ticks are not made up */
	pl_metric_set(g->m.quiet, 0);
	PL_DEBUG("group", "event=quiet_end why=%s", why);
}

static void beat_send(brk_group *g, uint64_t to, uint64_t term,
    uint64_t commit, bool ack)
{
	Parley__Internal__QuietBeat q = PARLEY__INTERNAL__QUIET_BEAT__INIT;
	q.term = term;
	q.commit = commit;
	q.ack = ack;
	Parley__Internal__PeerBatch b;
	parley__internal__peer_batch__init(&b);
	b.quiet = &q;
	brk_peer_send(g, to, &b);
}

/* Every member but this replica. */
static int members(const raft_status *rs, uint64_t self, uint64_t *out)
{
	int n = 0;
	for (int i = 0; i < rs->conf.n_voters; i++)
		if (rs->conf.voters[i] != self)
			out[n++] = rs->conf.voters[i];
	for (int i = 0; i < rs->conf.n_learners; i++)
		if (rs->conf.learners[i] != self)
			out[n++] = rs->conf.learners[i];
	return n;
}

/* The leader may go quiet now (see the top). */
static bool leader_idle(brk_group *g, const raft_status *rs)
{
	if (rs->transferee != 0 || rs->commit != rs->last_index ||
	    brk_store_applied(g->store) != rs->commit || g->npend != 0 ||
	    raft_unstable_count(g->raft) != 0 || g->sin.active ||
	    atomic_load(&g->handoff) || g->stalled)
		return false;
	for (int i = 0; i < RAFT_PEERS_MAX; i++)
		if (g->sout[i].active)
			return false;
	uint64_t ids[2 * RAFT_PEERS_MAX];
	int n = members(rs, g->cfg.node, ids);
	for (int i = 0; i < n; i++) {
		uint64_t match = 0;
		bool recent = false;
		if (raft_peer_match(g->raft, ids[i], &match, &recent) != PL_OK ||
		    !recent || match != rs->last_index)
			return false;
	}
	return true;
}

/* Acks from a quorum of the voters (this leader counts) within the last
 * election timeout. */
static bool acks_fresh(const brk_group *g, const raft_status *rs, int64_t now)
{
	int fresh = 0;
	for (int i = 0; i < rs->conf.n_voters; i++) {
		uint64_t id = rs->conf.voters[i];
		if (id == g->cfg.node) {
			fresh++;
			continue;
		}
		for (int k = 0; k < RAFT_PEERS_MAX; k++)
			if (g->quiet_ack[k].node == id &&
			    now - g->quiet_ack[k].at_us < election_us(g))
				fresh++;
	}
	return fresh > rs->conf.n_voters / 2;
}

void brk_quiet_tick(brk_group *g, int64_t now)
{
	if (g->quiet_after_us == 0 || g->peers == NULL ||
	    now - g->quiet_look_us < QUIET_LOOK_US)
		return;
	g->quiet_look_us = now;
	raft_status rs;
	raft_status_get(g->raft, &rs);
	if (rs.last_index != g->seen_last || rs.commit != g->seen_commit) {
		g->seen_last = rs.last_index;
		g->seen_commit = rs.commit;
		g->active_us = now;
	}
	if (g->quiet && !g->leader) {
		if (now >= g->quiet_until_us)
			brk_quiet_wake(g, "leader_silent");
		return;
	}
	if (!g->leader)
		return;
	if (g->quiet) {
		if (!leader_idle(g, &rs)) {
			brk_quiet_wake(g, "work");
			return;
		}
		if (now - g->quiet_since_us >= election_us(g) &&
		    !acks_fresh(g, &rs, now)) {
			brk_quiet_wake(g, "no_quorum_acks");
			return;
		}
	} else {
		if (now - g->active_us < g->quiet_after_us ||
		    !leader_idle(g, &rs))
			return;
		g->quiet = true;
		g->quiet_since_us = now;
		g->quiet_beat_us = 0;
		pl_metric_set(g->m.quiet, 1);
		pl_metric_inc(g->m.quiets, 1);
		PL_DEBUG("group", "event=quiet term=%llu commit=%llu",
		    (unsigned long long)rs.term, (unsigned long long)rs.commit);
	}
	if (now - g->quiet_beat_us >= election_us(g) / 2) {
		g->quiet_beat_us = now;
		uint64_t ids[2 * RAFT_PEERS_MAX];
		int n = members(&rs, g->cfg.node, ids);
		for (int i = 0; i < n; i++)
			beat_send(g, ids[i], rs.term, rs.commit, false);
	}
}

void brk_quiet_on_beat(
    brk_group *g, uint64_t from, const Parley__Internal__QuietBeat *q)
{
	int64_t now = pl_mono_us();
	raft_status rs;
	raft_status_get(g->raft, &rs);
	if (q->ack) {
		if (!g->leader || q->term != rs.term)
			return;
		int slot = -1;
		for (int k = 0; k < RAFT_PEERS_MAX; k++) {
			if (g->quiet_ack[k].node == from) {
				slot = k;
				break;
			}
			if (slot < 0 && g->quiet_ack[k].node == 0)
				slot = k;
		}
		if (slot >= 0) {
			g->quiet_ack[slot].node = from;
			g->quiet_ack[slot].at_us = now;
		}
		return;
	}
	/* Only the leader this replica follows, in its term, with the same
	 * log, all committed: then nothing is missed by not ticking. */
	if (g->leader || g->quiet_after_us == 0 || rs.role != RAFT_FOLLOWER ||
	    rs.term != q->term || rs.lead != from ||
	    rs.last_index != q->commit || rs.commit != q->commit ||
	    raft_has_ready(g->raft))
		return;
	if (!g->quiet) {
		g->quiet = true;
		pl_metric_set(g->m.quiet, 1);
		pl_metric_inc(g->m.quiets, 1);
	}
	g->quiet_until_us = now + election_us(g);
	beat_send(g, from, q->term, q->commit, true);
}
