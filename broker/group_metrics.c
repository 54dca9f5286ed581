/*
 * group_metrics.c - a group's metrics: counters and histograms are
 * updated where things happen (a drop where it is seen), gauges are read
 * once a second by brk_group_gauges.
 */
#include <stddef.h>
#include <stdio.h>

#include "broker/group_internal.h"

/* Every metric of a group, registered in this order. */
static const struct {
	size_t field; /* offset of its pointer in brk_group_metrics */
	pl_metric_kind kind;
	const char *name, *help;
} METRICS[] = {
    {offsetof(brk_group_metrics, batches), PL_METRIC_COUNTER,
        "parley_broker_batches_total", "Gateway batches received"},
    {offsetof(brk_group_metrics, requests), PL_METRIC_COUNTER,
        "parley_broker_requests_total", "Requests handled"},
    {offsetof(brk_group_metrics, rounds), PL_METRIC_COUNTER,
        "parley_broker_commit_rounds_total",
        "Durable commit rounds: log entries or hard state, one write "
        "transaction and fsync each"},
    {offsetof(brk_group_metrics, round_fail), PL_METRIC_COUNTER,
        "parley_broker_commit_failures_total",
        "Rounds whose writes failed (map full, disk full, I/O)"},
    {offsetof(brk_group_metrics, commit_s), PL_METRIC_HIST,
        "parley_broker_round_seconds",
        "Time to run and commit one round, fsync included"},
    {offsetof(brk_group_metrics, round_reqs), PL_METRIC_HIST,
        "parley_broker_round_requests",
        "Requests per round (recorded as microseconds = count)"},
    {offsetof(brk_group_metrics, events), PL_METRIC_COUNTER,
        "parley_broker_events_total", "Live events fanned out"},
    {offsetof(brk_group_metrics, events_dropped), PL_METRIC_COUNTER,
        "parley_broker_feed_dropped_total",
        "Events dropped for slow gateways (they catch up from history)"},
    {offsetof(brk_group_metrics, rooms), PL_METRIC_GAUGE, "parley_broker_rooms",
        "Rooms stored"},
    {offsetof(brk_group_metrics, map_used), PL_METRIC_GAUGE,
        "parley_broker_map_used_bytes", "LMDB pages in use"},
    {offsetof(brk_group_metrics, map_size), PL_METRIC_GAUGE,
        "parley_broker_map_size_bytes", "LMDB map size"},
    {offsetof(brk_group_metrics, last_index), PL_METRIC_GAUGE,
        "parley_broker_last_index", "Last log index"},
    {offsetof(brk_group_metrics, gateways), PL_METRIC_GAUGE,
        "parley_broker_gateways", "Gateways polling the feed"},
    {offsetof(brk_group_metrics, term), PL_METRIC_GAUGE,
        "parley_broker_raft_term", "Raft term"},
    {offsetof(brk_group_metrics, is_leader), PL_METRIC_GAUGE,
        "parley_broker_raft_leader", "1 while this replica leads its group"},
    {offsetof(brk_group_metrics, commit), PL_METRIC_GAUGE,
        "parley_broker_raft_commit_index", "Highest index known committed"},
    {offsetof(brk_group_metrics, applied), PL_METRIC_GAUGE,
        "parley_broker_raft_applied_index", "Highest index applied"},
    {offsetof(brk_group_metrics, elections), PL_METRIC_COUNTER,
        "parley_broker_raft_leaderships_total",
        "Times this replica became leader"},
    {offsetof(brk_group_metrics, peer_in), PL_METRIC_COUNTER,
        "parley_broker_peer_batches_in_total",
        "Authenticated peer batches received"},
    {offsetof(brk_group_metrics, peer_out), PL_METRIC_COUNTER,
        "parley_broker_peer_batches_out_total", "Peer batches sent"},
    {offsetof(brk_group_metrics, peer_bad), PL_METRIC_COUNTER,
        "parley_broker_peer_rejected_total",
        "Peer batches dropped: bad MAC, replay, wrong group, malformed"},
    {offsetof(brk_group_metrics, peer_dropped), PL_METRIC_GAUGE,
        "parley_broker_peer_dropped",
        "Peer messages dropped since start: a peer down or its queue "
        "full (Raft sends again)"},
    {offsetof(brk_group_metrics, snaps_sent), PL_METRIC_COUNTER,
        "parley_broker_snapshots_sent_total",
        "Snapshots streamed to followers behind the log's start"},
    {offsetof(brk_group_metrics, snaps_installed), PL_METRIC_COUNTER,
        "parley_broker_snapshots_installed_total",
        "Snapshots received and installed"},
    {offsetof(brk_group_metrics, proposals), PL_METRIC_COUNTER,
        "parley_broker_raft_proposals_total", "Writes proposed"},
    {offsetof(brk_group_metrics, watch_failed), PL_METRIC_COUNTER,
        "parley_broker_watch_failed_total",
        "Watches not registered for want of memory (their clients catch "
        "up from history)"},
    {offsetof(brk_group_metrics, watches_lost), PL_METRIC_COUNTER,
        "parley_broker_watch_changes_dropped_total",
        "Watch changes of a round past its bound (dropped)"},
    {offsetof(brk_group_metrics, events_lost), PL_METRIC_COUNTER,
        "parley_broker_events_unsent_total",
        "Live events not fanned out: past a round's or a frame's bound"},
    {offsetof(brk_group_metrics, gateways_refused), PL_METRIC_COUNTER,
        "parley_broker_gateways_refused_total",
        "Gateway batches answered empty: no feed for the gateway (table "
        "full or no memory)"},
    {offsetof(brk_group_metrics, feed_failed), PL_METRIC_COUNTER,
        "parley_broker_feed_answers_failed_total",
        "Feed polls that could not be answered (no memory)"},
    {offsetof(brk_group_metrics, peer_send_failed), PL_METRIC_COUNTER,
        "parley_broker_peer_send_failed_total",
        "Peer batches not sent: too large, no memory or not sealed "
        "(Raft sends again)"},
    {offsetof(brk_group_metrics, raft_voters), PL_METRIC_GAUGE,
        "parley_broker_raft_voters",
        "Voters in this replica's Raft configuration (latest in its log)"},
    {offsetof(brk_group_metrics, raft_learners), PL_METRIC_GAUGE,
        "parley_broker_raft_learners",
        "Learners in this replica's Raft configuration"},
    {offsetof(brk_group_metrics, map_voters), PL_METRIC_GAUGE,
        "parley_broker_map_voters",
        "Voters the cluster map wants for this group (0: not in the map)"},
    {offsetof(brk_group_metrics, members_changes), PL_METRIC_COUNTER,
        "parley_broker_members_changes_total",
        "Raft membership changes this replica proposed as leader to follow "
        "the map"},
    {offsetof(brk_group_metrics, transfers), PL_METRIC_COUNTER,
        "parley_broker_leader_transfers_total",
        "Leadership transfers this replica started (preferred leader, "
        "handoff before stop, its own removal)"},
    {offsetof(brk_group_metrics, quiet), PL_METRIC_GAUGE,
        "parley_broker_raft_quiet",
        "1 while this replica's Raft clock is stopped: the group is idle"},
    {offsetof(brk_group_metrics, quiets), PL_METRIC_COUNTER,
        "parley_broker_raft_quiets_total",
        "Times this replica went quiet"},
};

_Static_assert(
    PL_ARRAY_LEN(METRICS) == sizeof(brk_group_metrics) / sizeof(pl_metric *),
    "every field of brk_group_metrics is registered");

pl_status brk_group_metrics_register(brk_group *g, pl_metrics *r)
{
	for (size_t i = 0; i < PL_ARRAY_LEN(METRICS); i++) {
		char name[PL_METRIC_NAME_MAX + 1];
		/* A broker hosting many groups labels each group's series. */
		if (g->cfg.metrics_by_group)
			snprintf(name, sizeof(name), "%s{group=\"%u\"}",
			    METRICS[i].name, (unsigned)g->cfg.group);
		else
			snprintf(name, sizeof(name), "%s", METRICS[i].name);
		pl_metric *m =
		    pl_metrics_add(r, METRICS[i].kind, name, METRICS[i].help);
		if (m == NULL)
			return PL_E_NOMEM;
		*(pl_metric **)((char *)&g->m + METRICS[i].field) = m;
	}
	return PL_OK;
}

void brk_group_gauges(brk_group *g, int64_t now_us)
{
	uint64_t used, size, rooms;
	brk_store_usage(g->store, &used, &size, &rooms);
	pl_metric_set(g->m.map_used, (int64_t)used);
	pl_metric_set(g->m.map_size, (int64_t)size);
	pl_metric_set(g->m.rooms, (int64_t)rooms);
	pl_metric_set(g->m.last_index, (int64_t)brk_store_last_index(g->store));
	raft_status rs;
	raft_status_get(g->raft, &rs);
	pl_metric_set(g->m.commit, (int64_t)rs.commit);
	pl_metric_set(g->m.applied, (int64_t)brk_store_applied(g->store));
	if (g->peers != NULL)
		pl_metric_set(
		    g->m.peer_dropped, (int64_t)brk_peers_dropped(g->peers));
	pl_metric_set(g->m.gateways, g->feeds.n);
	pl_metric_set(g->m.raft_voters, rs.conf.n_voters);
	pl_metric_set(g->m.raft_learners, rs.conf.n_learners);
	pl_metric_set(g->m.map_voters, g->have_target ? g->target.nvoters : 0);
}
