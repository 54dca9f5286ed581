/*
 * group_metrics.c - a group's metrics: counters and histograms are
 * updated where things happen (a drop where it is seen), gauges are read
 * once a second by brk_group_gauges.
 */
#include "broker/group_internal.h"

void brk_group_metrics_register(brk_group *g, pl_metrics *r)
{
	g->m.batches = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_batches_total", "Gateway batches received");
	g->m.requests = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_requests_total", "Requests handled");
	g->m.rounds = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_commit_rounds_total",
	    "Durable commit rounds: log entries or hard state, one write "
	    "transaction and fsync each");
	g->m.round_fail = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_commit_failures_total",
	    "Rounds whose writes failed (map full, disk full, I/O)");
	g->m.commit_s =
	    pl_metrics_add(r, PL_METRIC_HIST, "parley_broker_round_seconds",
	        "Time to run and commit one round, fsync included");
	g->m.round_reqs =
	    pl_metrics_add(r, PL_METRIC_HIST, "parley_broker_round_requests",
	        "Requests per round (recorded as microseconds = count)");
	g->m.events = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_events_total", "Live events fanned out");
	g->m.events_dropped = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_feed_dropped_total",
	    "Events dropped for slow gateways (they catch up from history)");
	g->m.rooms = pl_metrics_add(
	    r, PL_METRIC_GAUGE, "parley_broker_rooms", "Rooms stored");
	g->m.map_used = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_broker_map_used_bytes", "LMDB pages in use");
	g->m.map_size = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_broker_map_size_bytes", "LMDB map size");
	g->m.last_index = pl_metrics_add(
	    r, PL_METRIC_GAUGE, "parley_broker_last_index", "Last log index");
	g->m.gateways = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_broker_gateways", "Gateways polling the feed");
	g->m.term = pl_metrics_add(
	    r, PL_METRIC_GAUGE, "parley_broker_raft_term", "Raft term");
	g->m.is_leader =
	    pl_metrics_add(r, PL_METRIC_GAUGE, "parley_broker_raft_leader",
	        "1 while this replica leads its group");
	g->m.commit = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_broker_raft_commit_index", "Highest index known committed");
	g->m.applied = pl_metrics_add(r, PL_METRIC_GAUGE,
	    "parley_broker_raft_applied_index", "Highest index applied");
	g->m.elections = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_raft_leaderships_total",
	    "Times this replica became leader");
	g->m.peer_in = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_peer_batches_in_total",
	    "Authenticated peer batches received");
	g->m.peer_out = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_peer_batches_out_total", "Peer batches sent");
	g->m.peer_bad = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_peer_rejected_total",
	    "Peer batches dropped: bad MAC, replay, wrong group, malformed");
	g->m.peer_dropped =
	    pl_metrics_add(r, PL_METRIC_GAUGE, "parley_broker_peer_dropped",
	        "Peer messages dropped since start: a peer down or its queue "
	        "full (Raft sends again)");
	g->m.snaps_sent = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_snapshots_sent_total",
	    "Snapshots streamed to followers behind the log's start");
	g->m.snaps_installed = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_snapshots_installed_total",
	    "Snapshots received and installed");
	g->m.proposals = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_raft_proposals_total", "Writes proposed");
	g->m.watch_failed = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_watch_failed_total",
	    "Watches not registered for want of memory (their clients catch "
	    "up from history)");
	g->m.watches_lost = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_watch_changes_dropped_total",
	    "Watch changes of a round past its bound (dropped)");
	g->m.events_lost = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_events_unsent_total",
	    "Live events not fanned out: past a round's or a frame's bound");
	g->m.gateways_refused = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_gateways_refused_total",
	    "Gateway batches answered empty: no feed for the gateway (table "
	    "full or no memory)");
	g->m.feed_failed = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_feed_answers_failed_total",
	    "Feed polls that could not be answered (no memory)");
	g->m.peer_send_failed = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_broker_peer_send_failed_total",
	    "Peer batches not sent: too large, no memory or not sealed "
	    "(Raft sends again)");
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
}
