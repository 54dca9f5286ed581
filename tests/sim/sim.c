/*
 * sim.c - one seed of the Raft simulation: the run (the profile of faults,
 * the steps, healing, convergence and the final check). The other parts
 * are sim_checks.c, sim_node.c, sim_net.c and sim_faults.c; what they
 * share is sim_internal.h. Time is in simulated
 * milliseconds ("steps"); a replica ticks every TICK_STEPS. Each replica
 * runs the real core against a model of the broker's log store
 * (sim_store.c): entries with a CRC32C checked on every read, written
 * (readable at once) and durable (after a sync) images, a sync mark. A
 * sync captures the written image when it starts and reports
 * raft_persisted when it ends; a crash throws away everything written
 * since the last completed sync, or leaves a torn tail; bit flips strike
 * synced entries of a minority; damage found by a read, the scrubber or
 * the scan at restart goes to the core (raft_log_damaged,
 * raft_config.repair). Term and vote are synced before a ready's
 * messages go out, as raft.h demands. Clients publish unique values; a
 * publish is acknowledged when its proposer applies its (index, term).
 *
 * Checked after every event (a violation ends the seed):
 *  - election safety: at most one leader per term;
 *  - log matching: every written entry (index, term) carries the same
 *    payload and follows the same previous term on every replica (by
 *    induction: equal (index, term) => equal prefixes);
 *  - leader completeness: a new leader's log holds every entry committed
 *    so far;
 *  - voter completeness: a replica granting a vote holds every committed
 *    entry it acknowledged in its commit term or later (what damage
 *    threatens);
 *  - committed entries never change: a replica's entries <= its commit
 *    equal the group's committed sequence (an entry failing its CRC is
 *    absent, not changed), and nothing <= commit is rewritten;
 *  - state machine safety: applied entries are exactly the committed
 *    sequence, in order, so no acknowledged publish is lost, reordered
 *    or duplicated; a value is committed at most once; a publish
 *    proposed after another was acknowledged lands after it;
 *  - after the faults heal: a new proposal is acknowledged within
 *    LIVENESS_STEPS_MAX, then every member is repaired and all logs
 *    become byte-identical and fully applied, and every acknowledged
 *    publish is in every state machine exactly once, at the index it was
 *    acknowledged at.
 */
#include "tests/sim/sim_internal.h"

/* ------------------------------------------------------------------ */
/* The run. */

static void tick_and_sync(sim *w)
{
	for (int i = 0; i < w->n_all && !w->failed; i++) {
		snode *s = &w->nodes[i];
		if (!s->up)
			continue;
		if ((w->now + s->phase) % TICK_STEPS == 0) {
			raft_tick(s->r);
			/* A background scrubber reads a few entries a tick. */
			sstore_scrub(&s->st, SCRUB_ENTRIES_PER_TICK);
			sim_drain(w, s);
		}
		if (s->st.syncing && w->now >= s->sync_at)
			sim_sync_done(w, s);
		else if (!s->st.syncing && s->st.dirty && chance_pm(w, 300))
			sim_sync_start(w, s);
	}
}

static void step(sim *w)
{
	if (!w->healed)
		sim_faults(w);
	if (w->live_at == 0 && chance_pm(w, w->prop_pm))
		sim_propose(w);
	if (w->o.bursts && !w->healed && rnd3_below(w, 1000) < 2)
		sim_burst(w);
	if (w->conf_changes && !w->healed && chance_pm(w, 3))
		sim_conf_change(w);
	if (!w->healed && chance_pm(w, 1))
		sim_transfer(w);
	sim_net_deliver(w);
	tick_and_sync(w);
}

static void heal(sim *w)
{
	w->healed = true;
	w->heal_at = w->now;
	w->first_value_after_heal = w->next_value;
	sim_unblock(w);
	for (int i = 0; i < w->n_all; i++)
		if (!w->nodes[i].up)
			sim_node_start(w, &w->nodes[i]);
	/* Every replica scrubs its whole log once: no damage stays hidden
	 * in entries nothing reads any more. */
	for (int i = 0; i < w->n_all && !w->failed; i++) {
		sstore_scrub(&w->nodes[i].st, SIZE_MAX);
		sim_drain(w, &w->nodes[i]);
	}
	trace(w, "healed");
}

/* The members of the configuration of the group's leader, or NULL. */
static snode *find_leader(sim *w, raft_status *lst)
{
	snode *l = NULL;
	for (int i = 0; i < w->n_all; i++) {
		raft_status st;
		raft_status_get(w->nodes[i].r, &st);
		if (st.role == RAFT_LEADER &&
		    (l == NULL || st.term > lst->term)) {
			l = &w->nodes[i];
			*lst = st;
		}
	}
	return l;
}

/* Converged: every member of the leader's configuration holds the
 * leader's log, has committed and applied all of it, is repaired, and
 * the leader synced it. */
static bool converged(sim *w)
{
	raft_status lst;
	snode *l = find_leader(w, &lst);
	if (l == NULL || lst.commit != lst.last_index || l->st.dirty ||
	    l->st.syncing)
		return false;
	for (int i = 0; i < w->n_all; i++) {
		snode *s = &w->nodes[i];
		raft_status st;
		if (!raft_conf_is_voter(&lst.conf, s->id) &&
		    !raft_conf_is_learner(&lst.conf, s->id))
			continue;
		raft_status_get(s->r, &st);
		if (st.last_index != lst.last_index ||
		    st.commit != lst.commit || s->applied != lst.commit ||
		    s->st.cur.n != lst.last_index || st.repairing ||
		    s->st.rep.to != 0)
			return false;
	}
	return true;
}

static void dump(sim *w)
{
	for (int i = 0; i < w->n_all && w->o.verbose; i++) {
		raft_status st;
		snode *s = &w->nodes[i];
		if (!s->up)
			continue;
		raft_status_get(s->r, &st);
		trace(w,
		    "node %" PRIu64 " %s term %" PRIu64 " lead %" PRIu64
		    " last %" PRIu64 " commit %" PRIu64 " persisted %" PRIu64
		    " applied %" PRIu64
		    " voters %d learners %d%s dropped %" PRIu64 "%s",
		    s->id, raft_role_name(st.role), st.term, st.lead,
		    st.last_index, st.commit, st.persisted, st.applied,
		    st.conf.n_voters, st.conf.n_learners,
		    raft_conf_is_voter(&st.conf, s->id) ? "" : " (not a voter)",
		    st.dropped_msgs, st.repairing ? " repairing" : "");
	}
}

/* The stored bytes of two records are the same (and check out). */
static bool rec_same(srec *a, srec *b, uint64_t index)
{
	return sstore_rec_ok(a, index) && sstore_rec_ok(b, index) &&
	       a->crc == b->crc && ent_equal(&a->e, &b->e);
}

/* After convergence: byte-identical logs, every acked value applied
 * once. */
static void final_check(sim *w)
{
	raft_status lst;
	snode *l = find_leader(w, &lst);
	for (int i = 0; i < w->n_all && !w->failed; i++) {
		snode *s = &w->nodes[i];
		if (!raft_conf_is_voter(&lst.conf, s->id) &&
		    !raft_conf_is_learner(&lst.conf, s->id))
			continue;
		for (size_t k = 0; k < s->st.cur.n && !w->failed; k++)
			if (!rec_same(&s->st.cur.r[k], &l->st.cur.r[k], k + 1))
				fail(w,
				    "logs differ after healing: node %" PRIu64
				    " entry %zu",
				    s->id, k + 1);
	}
	if (l->st.cur.n != w->n_gc)
		fail(
		    w, "leader log %zu != committed %zu", l->st.cur.n, w->n_gc);
	for (uint64_t v = 1; v < w->next_value && !w->failed; v++) {
		if (w->val_state[v] != 2)
			continue;
		uint64_t i = w->val_index[v];
		if (w->val_count[v] != 1 || i > w->n_gc ||
		    payload_value(&w->gc[i - 1]) != v)
			fail(w, "acked value %" PRIu64 " lost or moved", v);
	}
}

static void run_heal(sim *w)
{
	heal(w);
	uint64_t end = w->now + LIVENESS_STEPS_MAX;
	while (!w->failed && w->live_at == 0 && w->now < end) {
		w->now++;
		step(w);
	}
	if (w->failed)
		return;
	if (w->live_at == 0) {
		dump(w);
		fail(w, "no commit within %d steps of healing",
		    LIVENESS_STEPS_MAX);
		return;
	}
	end = w->now + CONVERGE_STEPS_MAX;
	while (!w->failed && !converged(w) && w->now < end) {
		w->now++;
		step(w);
	}
	if (!w->failed && !converged(w)) {
		dump(w);
		fail(w, "logs did not converge within %d steps",
		    CONVERGE_STEPS_MAX);
	}
	if (!w->failed)
		final_check(w);
	w->res->heal_steps = w->now - w->heal_at;
}

static void profile(sim *w)
{
	static const uint32_t drop[] = {0, 10, 50, 200};
	static const uint32_t dup[] = {0, 20, 100};
	static const uint32_t delay[] = {2, 10, 40};
	static const uint32_t crash[] = {0, 1, 3};
	static const uint32_t part[] = {0, 2, 6};
	w->drop_pm = drop[rnd_below(w, PL_ARRAY_LEN(drop))];
	w->dup_pm = dup[rnd_below(w, PL_ARRAY_LEN(dup))];
	w->delay_max = delay[rnd_below(w, PL_ARRAY_LEN(delay))];
	w->crash_pm = crash[rnd_below(w, PL_ARRAY_LEN(crash))];
	w->part_pm = part[rnd_below(w, PL_ARRAY_LEN(part))];
	w->prop_pm = 20 + (uint32_t)rnd_below(w, 100);
	static const uint32_t reorder[] = {0, 20, 100, 250};
	w->reorder_pm = reorder[rnd_below(w, PL_ARRAY_LEN(reorder))];
	/* Leaders that die soon after replicating are what the commit rule
	 * (Figure 8) and leader completeness are about; tiny messages and
	 * slow syncs make partial replication and partial acks common. */
	static const uint32_t kill[] = {0, 2, 10};
	static const size_t bytes[] = {1, 64, 256, 4096};
	static const uint32_t sync[] = {1, 5, 30};
	w->kill_leader_pm = kill[rnd_below(w, PL_ARRAY_LEN(kill))];
	w->msg_bytes = bytes[rnd_below(w, PL_ARRAY_LEN(bytes))];
	w->sync_max = sync[rnd_below(w, PL_ARRAY_LEN(sync))];
}

/* Storage faults come from their own stream: with both off, a seed runs
 * exactly as it did before they existed (regression seeds keep their
 * meaning). */
static void storage_profile(sim *w)
{
	static const uint32_t flips[] = {0, 500, 2000, 6000};
	static const uint32_t torn[] = {0, 300, 1000};
	w->rng2 = w->o.seed ^ UINT64_C(0xD1B54A32D192ED03);
	w->flip_ppm = flips[rnd2_below(w, PL_ARRAY_LEN(flips))];
	w->torn_pm = torn[rnd2_below(w, PL_ARRAY_LEN(torn))];
	w->conf_changes = w->o.membership;
	w->damage_max = 1;
	/* Two damaged replicas of five only while the group cannot shrink
	 * to three voters, of which two would be a majority. */
	if (w->n == 5 && w->flip_ppm > 0 &&
	    (!w->o.membership || rnd2_below(w, 2) == 0)) {
		w->damage_max = 2;
		w->conf_changes = false;
	}
}

static void sim_init(sim *w, const sim_opts *o, sim_result *res)
{
	memset(w, 0, sizeof *w);
	memset(res, 0, sizeof *res);
	res->ok = true;
	w->o = *o;
	w->res = res;
	w->rng = o->seed;
	w->rng3 = o->seed ^ UINT64_C(0x8CB92BA72F3D8DD7);
	w->n = o->nodes;
	w->n_all = o->membership ? o->nodes + 1 : o->nodes;
	w->next_value = 1;
	profile(w);
	storage_profile(w);
	/* Bursts of a thousand entries over messages of one or two entries
	 * would take longer to replicate than the healing allows: burst
	 * seeds use messages of many entries (the broker's are 256 KiB),
	 * still far below RAFT_MSG_ENTRIES_MAX payloads of the largest. */
	if (o->bursts && w->msg_bytes < 4096)
		w->msg_bytes = 4096;
	raft_conf boot = {.n_voters = (uint8_t)w->n};
	for (int i = 0; i < w->n; i++)
		boot.voters[i] = (uint64_t)i + 1;
	w->gc_conf = boot;
	for (int i = 0; i < w->n_all; i++) {
		snode *s = &w->nodes[i];
		s->id = (uint64_t)i + 1;
		s->w = w;
		s->st.boot = boot;
		s->phase = (uint32_t)rnd_below(w, TICK_STEPS);
		sim_node_start(w, s);
	}
}

static void sim_fini(sim *w)
{
	for (int i = 0; i < w->n_all; i++) {
		snode *s = &w->nodes[i];
		raft_free(s->r);
		sstore_fini(&s->st);
		free(s->acked);
	}
	for (size_t i = 0; i < w->n_net; i++)
		free(w->net[i].ents);
	free(w->net);
	free(w->gc);
	free(w->gc_term);
	free(w->leader_of);
	free(w->cut);
	free(w->reg);
	free(w->val_state);
	free(w->val_node);
	free(w->val_index);
	free(w->val_term);
	free(w->val_floor);
	free(w->val_count);
	for (int i = 0; i < w->n_all; i++)
		sim_prop_fini(&w->nodes[i].prop);
}

void sim_run(const sim_opts *o, sim_result *res)
{
	sim *w = xrealloc(NULL, sizeof *w);
	sim_init(w, o, res);
	trace(w,
	    "profile drop=%u dup=%u delay=%u crash=%u part=%u prop=%u "
	    "kill_leader=%u msg_bytes=%zu sync=%u reorder=%u",
	    w->drop_pm, w->dup_pm, w->delay_max, w->crash_pm, w->part_pm,
	    w->prop_pm, w->kill_leader_pm, w->msg_bytes, w->sync_max,
	    w->reorder_pm);
	trace(w, "storage flip_ppm=%u torn=%u damage_max=%d conf_changes=%d",
	    w->flip_ppm, w->torn_pm, w->damage_max, (int)w->conf_changes);
	while (!w->failed && w->now < o->steps) {
		w->now++;
		step(w);
	}
	if (!w->failed)
		run_heal(w);
	sim_fini(w);
	free(w);
}
