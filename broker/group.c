/*
 * group.c - a shard group replica's thread: it owns this replica's store,
 * its Raft core, its watch table and every gateway's feed. nng callbacks
 * only hand received batches (gateways) and messages (peer brokers) over
 * bounded queues; the thread steps the core, writes what it says, sends,
 * applies and answers. The replication contract is docs/replication.md;
 * the group's other files are listed in group_internal.h.
 *
 * Invariants:
 *  - a write is proposed to Raft on the leader and answered only when its
 *    entry is applied: a majority holds it durably (sync durability), so
 *    an ack is never sent for a write that a failover could lose;
 *  - one LMDB transaction per ready: its entries, its hard state and the
 *    entries it commits, applied in index order; term and vote are
 *    durable before any message of that ready leaves;
 *  - reads (history, subscribe, room info, presence, list, report) are
 *    answered by a leader that has applied an entry of its own term, from
 *    applied state only: nothing uncommitted is ever shown;
 *  - a request refused before entering the log says not_applied, so the
 *    gateway may send it anywhere again; one lost with the leadership does
 *    not (its outcome is unknown: only idempotent requests are resent);
 *  - replies and live events of applied entries (events only from the
 *    leader) leave in log order once the transaction that applied them
 *    committed: an acknowledged write is visible to every later read;
 *  - a ready whose write fails (map or disk full, I/O) is held and written
 *    again later; meanwhile no other Raft call is made, writes are refused
 *    with the failure and reads are still served.
 */
#include <stdio.h>
#include <stdlib.h>

#include <sodium.h>

#include "broker/group_internal.h"

/* feed.c's answer: a parked poll's item gets the feed as its reply. */
static bool feed_answer(void *ctx, void *poll, const uint8_t *feed, size_t n,
    const uint8_t *tail, size_t tn)
{
	brk_group *g = ctx;
	brk_item *it = poll;
	nng_msg *m;
	/* BrokerBatch.gateways (field 9, a varint) appended: protobuf
	 * merges fields in any order, and gateways share tenant limits by
	 * this count (gateway/tenant.h). */
	uint8_t gws[1 + 10];
	size_t gn = 0;
	if (g->leader) {
		uint32_t v = (uint32_t)g->feeds.n;
		gws[gn++] = 9 << 3;
		do {
			gws[gn++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
			v >>= 7;
		} while (v != 0);
	}
	bool ok = nng_msg_alloc(&m, 0) == 0;
	if (ok && (nng_msg_append(m, feed, n) != 0 ||
	              nng_msg_append(m, tail, tn) != 0 ||
	              (gn > 0 && nng_msg_append(m, gws, gn) != 0))) {
		nng_msg_free(m);
		ok = false;
	}
	if (ok)
		brk_net_reply(g->net, it->ctx, m);
	else
		pl_metric_inc(g->m.feed_failed, 1);
	brk_item_put(g, it);
	return ok;
}

static void feed_release(void *ctx, void *poll)
{
	brk_item_put(ctx, poll);
}

void brk_gw_forget(brk_group *g, int idx)
{
	/* Watches first: their presence events may still go to its feed. */
	brk_watches_drop_gw(&g->watches, g->feeds.gws[idx]);
	brk_feeds_forget(&g->feeds, idx);
}

/* Forgets every gateway (answering parked polls first), between rounds:
 * a gateway that comes back gets a new epoch and re-watches. */
void brk_gws_reset(brk_group *g)
{
	if (!g->gws_reset)
		return;
	g->gws_reset = false;
	while (g->feeds.n > 0) {
		brk_feed_gw *gw = g->feeds.gws[g->feeds.n - 1];
		while (gw->npolls > 0)
			brk_feed_flush(&g->feeds, gw);
		brk_gw_forget(g, g->feeds.n - 1);
	}
}

/* Forgets gateways that stopped polling: their watchers go offline. */
static void gws_expire(brk_group *g, int64_t now)
{
	int64_t idle = (int64_t)g->cfg.gateway_idle_ms * 1000;
	int i;
	while ((i = brk_feeds_idle(&g->feeds, now, idle)) >= 0)
		brk_gw_forget(g, i);
}

static void park_poll(brk_group *g, brk_item *it, int64_t now)
{
	uint32_t wait = it->batch->wait_ms;
	if (wait > POLL_WAIT_MS_MAX)
		wait = POLL_WAIT_MS_MAX;
	brk_feed_park(&g->feeds, it->gw, it, now + (int64_t)wait * 1000);
}

/* Sorts received items: peer messages are stepped (and held until the
 * ready they feed is advanced), polls are parked (or, on a replica that
 * does not lead, answered at once), batches go to the round. */
static size_t intake(brk_group *g, brk_item **in, size_t n, brk_item **out)
{
	size_t nr = 0;
	int64_t now = pl_now_us();
	for (size_t i = 0; i < n; i++) {
		brk_item *it = in[i];
		if (it->peer) {
			if (!g->stalled)
				brk_peer_receive(g, it);
			/* Peer items are PEER_ITEMS_MAX: all fit. */
			PL_ASSERT(g->nheld < PEER_ITEMS_MAX);
			g->held[g->nheld++] = it;
			continue;
		}
		pl_metric_inc(g->m.batches, 1);
		if (brk_item_decode(it) != PL_OK) {
			PL_WARN("group", "event=bad_batch bytes=%zu",
			    nng_msg_len(it->msg));
			brk_item_reply(g, it); /* empty: the gateway retries */
			continue;
		}
		if (it->batch->map != NULL) {
			brk_map_serve(g, it, now);
			continue;
		}
		it->gw = brk_feeds_find(&g->feeds, it->batch->gateway, true);
		if (it->gw == NULL) {
			pl_metric_inc(g->m.gateways_refused, 1);
			brk_item_reply(g, it);
			continue;
		}
		it->gw->last_seen_us = now;
		snprintf(it->epoch, sizeof(it->epoch), "%s", it->gw->epoch);
		if (it->batch->poll && it->batch->n_reqs == 0) {
			if (g->leader)
				park_poll(g, it, now);
			else
				brk_item_reply(
				    g, it); /* not_leader: go elsewhere */
		} else {
			out[nr++] = it;
		}
	}
	return nr;
}

static void held_release(brk_group *g)
{
	for (size_t i = 0; i < g->nheld; i++)
		brk_item_put(g, g->held[i]);
	g->nheld = 0;
}

static void housekeeping(brk_group *g)
{
	int64_t now = pl_now_us();
	brk_gws_reset(g);
	brk_compact(g);
	brk_snap_pump(g);
	brk_feeds_tick(&g->feeds, now);
	gws_expire(g, now);
	brk_map_expire(g, now, false);
	brk_members_tick(g, pl_mono_us());
	brk_quiet_tick(g, pl_mono_us());
	if (!g->cfg.sync &&
	    now - g->last_sync_us >= (int64_t)g->cfg.sync_interval_ms * 1000) {
		if (brk_store_sync(g->store) != PL_OK)
			PL_ERROR("group", "event=sync_failed");
		g->last_sync_us = now;
	}
	if (now - g->last_gauges_us >= 1000000) {
		brk_group_gauges(g, now);
		g->last_gauges_us = now;
	}
}

/*
 * How long the thread may wait for work with nothing queued. Work wakes
 * it at once (the queue signals), so this only decides how late the
 * timers run: the Raft clock (ticks are counted from elapsed time, so a
 * late look ticks several times), parked polls' and watches' deadlines,
 * compaction, gauges. A broker hosts many groups, and an idle group that
 * woke every TICK_US would cost a context switch 200 times a second:
 * followers wait IDLE_WAIT_US (their election timer fires at most that
 * late, against an election_ms of hundreds), leaders half a heartbeat
 * (heartbeats go out on time), a group moving a snapshot or syncing on
 * an interval no longer than it needs.
 */
static uint32_t idle_wait_us(const brk_group *g)
{
	if (g->sin.active)
		return TICK_US;
	if (g->quiet) {
		/* Until the next beat is due (a leader) or the leader's beat
		 * is overdue (a follower; each beat wakes it anyway). */
		int64_t due = g->leader ? g->quiet_beat_us +
		                              (int64_t)g->cfg.election_ms * 500
		                        : g->quiet_until_us;
		int64_t q = due - pl_mono_us();
		return q < TICK_US         ? TICK_US
		       : q > QUIET_WAIT_US ? QUIET_WAIT_US
		                           : (uint32_t)q;
	}
	for (int i = 0; i < RAFT_PEERS_MAX; i++)
		if (g->sout[i].active)
			return TICK_US;
	uint32_t w = g->leader ? g->cfg.heartbeat_ms * 1000 / 2 : IDLE_WAIT_US;
	if (!g->cfg.sync && g->cfg.sync_interval_ms * 1000 / 2 < w)
		w = g->cfg.sync_interval_ms * 1000 / 2;
	return w < TICK_US ? TICK_US : w > IDLE_WAIT_US ? IDLE_WAIT_US : w;
}

static void *group_main(void *arg)
{
	brk_group *g = arg;
	brk_item *in[ITEMS_POP], *batch[ITEMS_POP];
	g->last_tick_us = pl_mono_us();
	brk_map_refresh(g); /* the meta group: the map it applied so far */
	if (brk_group_solo(g)) {
		/* A group of one elects itself at once rather than after an
		 * election timeout. */
		for (int i = 0;
		     i < 2 * (int)g->cfg.election_ms / RAFT_TICK_MS &&
		     !g->leader;
		     i++) {
			raft_tick(g->raft);
			brk_drive(g);
		}
	}
	while (atomic_load(&g->running)) {
		bool more = !g->stalled && raft_has_ready(g->raft);
		size_t n = pl_queue_pop_many(
		    &g->q, (void **)in, ITEMS_POP, more ? 0 : idle_wait_us(g));
		size_t nr = intake(g, in, n, batch);
		if (!g->stalled)
			brk_raft_ticks(g);
		/* With requests waiting, their round drives the core, so
		 * their entries join the ready that applies earlier ones. */
		if (nr == 0)
			brk_drive(g);
		for (size_t i = 0; i < nr; i += ROUND_ITEMS_MAX) {
			size_t k =
			    nr - i < ROUND_ITEMS_MAX ? nr - i : ROUND_ITEMS_MAX;
			brk_run_round(g, batch + i, k);
		}
		held_release(g); /* stepped entries live until advanced */
		housekeeping(g);
	}
	return NULL;
}

/* The cluster secret: base64 of 32 bytes in secret_file. Every message
 * between replicas is sealed with it (auth.c). A group of one needs none. */
static pl_status auth_init(brk_group *g)
{
	if (g->cfg.nreplicas <= 1 && g->cfg.secret_file[0] == '\0')
		return PL_OK;
	uint8_t key[BRK_SECRET_BYTES];
	pl_status st = pl_secret_file_load(g->cfg.secret_file, key);
	if (st == PL_E_NOT_FOUND) {
		PL_ERROR("group", "event=secret_unreadable file=%s",
		    g->cfg.secret_file);
		return PL_E_CONFIG;
	}
	if (st == PL_OK)
		st = brk_auth_init(&g->auth, key,
		    ((uint64_t)g->cfg.group << 16) | g->cfg.node,
		    pl_now_us() / 1000000);
	sodium_memzero(key, sizeof(key));
	if (st != PL_OK) {
		PL_ERROR("group", "event=secret_invalid file=%s",
		    g->cfg.secret_file);
		return PL_E_CONFIG;
	}
	g->auth_on = true;
	return PL_OK;
}

pl_status brk_group_new(
    const brk_config *cfg, pl_metrics *metrics, brk_group **out)
{
	brk_group *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return PL_E_NOMEM;
	g->cfg = *cfg;
	pthread_mutex_init(&g->free_mu, NULL);
	pthread_mutex_init(&g->target_mu, NULL);
	atomic_store(&g->in_conf, true);
	g->quiet_after_us = (int64_t)cfg->quiet_after_ms * 1000;
	uint8_t rnd[16];
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(g->epoch, sizeof(g->epoch), rnd, sizeof(rnd));
	brk_feeds_init(&g->feeds, g->epoch, cfg->group, cfg->gateway_events_max,
	    feed_answer, feed_release, g);
	brk_watches_init(&g->watches, brk_presence_event, g);
	g->nitems = ITEMS_MAX;
	for (int i = ITEMS_MAX - 1; i >= 0; i--) {
		brk_arena_init(&g->items[i].arena, 64 * 1024,
		    (size_t)PL_FRAME_BYTES_CEIL * 8);
		g->items[i].next_free = g->free_items;
		g->free_items = &g->items[i];
	}
	size_t reqs_max = ROUND_REQS_MAX;
	g->events_buf = calloc(reqs_max, sizeof(round_event));
	g->watches_buf = calloc(reqs_max, sizeof(round_watch));
	g->pack = malloc(PL_FRAME_BYTES_CEIL);
	for (int i = PEER_ITEMS_MAX - 1; i >= 0; i--) {
		brk_arena_init(&g->pitems[i].arena, 16 * 1024,
		    (size_t)PL_FRAME_BYTES_CEIL);
		g->pitems[i].peer = true;
		g->pitems[i].next_free = g->free_peer;
		g->free_peer = &g->pitems[i];
	}
	brk_arena_init(&g->prop_arena, 256 * 1024, (size_t)1 << 30);
	brk_arena_init(&g->ev_arena, 256 * 1024, (size_t)1 << 30);
	brk_arena_init(&g->send_arena, 64 * 1024, (size_t)1 << 30);
	g->evs = calloc(reqs_max, sizeof(round_event));
	g->pend = calloc(PENDING_MAX, sizeof(pending));
	g->res =
	    calloc(RAFT_APPLY_MAX + RAFT_UNSTABLE_MAX, sizeof(brk_applied));
	g->res_term =
	    calloc(RAFT_APPLY_MAX + RAFT_UNSTABLE_MAX, sizeof(uint64_t));
	g->snap_buf = malloc(g->cfg.snapshot_chunk_bytes);
	for (int i = 0; i < RAFT_PEERS_MAX; i++)
		g->sout[i].fd = -1;
	g->sin.fd = -1;
	brk_store_config sc = {.dir = g->cfg.data_dir,
	    .map_bytes = cfg->map_bytes,
	    .sync = cfg->sync,
	    .group = cfg->group,
	    .compress_bytes_min = cfg->compress_bytes_min,
	    .dedup_window = cfg->dedup_window};
	pl_status st = brk_config_check(&g->cfg);
	if (st == PL_OK && !(g->events_buf && g->watches_buf && g->pack &&
	                       g->evs && g->pend && g->res && g->res_term))
		st = PL_E_NOMEM;
	if (st == PL_OK)
		st = brk_envelope_init(&g->env);
	if (st == PL_OK)
		st = pl_queue_init(&g->q, ITEMS_BOUND + PEER_ITEMS_MAX);
	g->sc = sc;
	if (st == PL_OK && g->snap_buf == NULL)
		st = PL_E_NOMEM;
	if (st == PL_OK)
		st = brk_store_open(&sc, &g->store);
	if (st == PL_OK)
		st = auth_init(g);
	if (st == PL_OK)
		st = brk_raft_init(g);
	if (st == PL_OK)
		st = brk_group_metrics_register(g, metrics);
	if (st != PL_OK) {
		brk_group_free(g);
		return st;
	}
	g->started_us = pl_now_us();
	*out = g;
	return PL_OK;
}

pl_status brk_group_start(brk_group *g, brk_net *net, brk_peers *peers)
{
	g->net = net;
	g->peers = peers;
	atomic_store(&g->running, true);
	if (pthread_create(&g->thread, NULL, group_main, g) != 0) {
		atomic_store(&g->running, false);
		return PL_E_NOMEM;
	}
	return PL_OK;
}

void brk_group_stop(brk_group *g)
{
	if (g == NULL || !atomic_exchange(&g->running, false))
		return;
	pl_queue_close(&g->q);
	pthread_join(g->thread, NULL);
}

void brk_group_free(brk_group *g)
{
	if (g == NULL)
		return;
	brk_item *left[ITEMS_POP];
	size_t n;
	while (g->q.cap &&
	       (n = pl_queue_pop_many(&g->q, (void **)left, ITEMS_POP, 0)) > 0)
		for (size_t i = 0; i < n; i++)
			brk_item_put(g, left[i]);
	held_release(g);
	/* No presence events at the end: nobody is listening. */
	brk_watches_fini(&g->watches);
	brk_feeds_fini(&g->feeds);
	/* An item still waiting at stop (its writes uncommitted, so never
	 * answered) still owns the request it was given. */
	for (int i = 0; i < ITEMS_MAX; i++) {
		nng_msg_free(g->items[i].msg);
		brk_arena_fini(&g->items[i].arena);
	}
	for (int i = 0; i < PEER_ITEMS_MAX; i++) {
		nng_msg_free(g->pitems[i].msg);
		brk_arena_fini(&g->pitems[i].arena);
	}
	while (g->extra != NULL) {
		brk_item *it = g->extra;
		g->extra = it->next_extra;
		nng_msg_free(it->msg);
		brk_arena_fini(&it->arena);
		free(it);
	}
	brk_arena_fini(&g->prop_arena);
	brk_arena_fini(&g->ev_arena);
	brk_arena_fini(&g->send_arena);
	brk_snap_fini(g);
	free(g->snap_buf);
	raft_free(g->raft);
	brk_auth_fini(g->auth_on ? &g->auth : NULL);
	brk_store_close(g->store);
	free(g->evs);
	free(g->pend);
	free(g->res);
	free(g->res_term);
	brk_envelope_fini(&g->env);
	pl_queue_fini(&g->q);
	pthread_mutex_destroy(&g->free_mu);
	pthread_mutex_destroy(&g->target_mu);
	free(g->events_buf);
	free(g->watches_buf);
	free(g->pack);
	free(g->map_watches);
	free(g->map_buf);
	free(g);
}
