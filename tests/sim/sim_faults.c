/*
 * sim_faults.c - what the simulation does to the group each step before
 * it heals: crashes, leader kills, partitions and bit flips; and what its
 * clients do: proposals, bursts, membership changes (a leader's removal
 * of itself among them), leadership transfers.
 */
#include "tests/sim/sim_internal.h"

static void partition(sim *w)
{
	memset(w->blocked, 0, sizeof w->blocked);
	w->part_epoch++;
	w->two_way = false;
	if (chance_pm(w, 500)) {
		w->two_way = true;
		/* Two-way: a random side S against the rest. */
		uint32_t side = (uint32_t)rnd_below(w, 1u << w->n_all);
		for (int a = 1; a <= w->n_all; a++)
			for (int b = 1; b <= w->n_all; b++)
				if (((side >> (a - 1)) & 1) !=
				    ((side >> (b - 1)) & 1))
					w->blocked[a][b] = true;
		trace(w, "partition two-way side=%#x", side);
		return;
	}
	/* One-way: a few links lose traffic in one direction only. */
	int links = 1 + (int)rnd_below(w, (uint64_t)w->n_all);
	for (int i = 0; i < links; i++) {
		int a = 1 + (int)rnd_below(w, (uint64_t)w->n_all);
		int b = 1 + (int)rnd_below(w, (uint64_t)w->n_all);
		w->blocked[a][b] = true;
		trace(w, "partition one-way %d -> %d", a, b);
	}
}

/* Damaged: a fault struck its disk and it is not repaired yet. */
static bool node_damaged(snode *s)
{
	if (s->st.rep.to != 0 || sstore_tainted(&s->st))
		return true;
	raft_status st;
	if (!s->up)
		return false;
	raft_status_get(s->r, &st);
	return st.repairing;
}

/* A bit flip in a synced entry of one replica, between steps, as long as
 * at most damage_max replicas (a minority) are damaged at once. Half the
 * flips strike the last few synced entries: the ones a quorum may have
 * just committed with this replica's copy. */
static void flip(sim *w)
{
	if (rnd2_below(w, 1000000) >= w->flip_ppm)
		return;
	snode *s = &w->nodes[rnd2_below(w, (uint64_t)w->n_all)];
	uint64_t mark = s->st.mark;
	if (mark == 0)
		return;
	if (!node_damaged(s)) {
		int n = 0;
		for (int i = 0; i < w->n_all; i++)
			n += node_damaged(&w->nodes[i]);
		if (n >= w->damage_max)
			return;
	}
	uint64_t idx = rnd2_below(w, 2) == 0
	                   ? mark - rnd2_below(w, mark < 4 ? mark : 4)
	                   : 1 + rnd2_below(w, mark);
	unsigned field = (unsigned)rnd2_below(w, 5);
	sstore_flip(&s->st, idx, field, (uint32_t)rnd2(w));
	w->res->flips++;
	trace(w, "node %" PRIu64 " bit flip in entry %" PRIu64 " field %u%s",
	    s->id, idx, field, s->up ? "" : " (down)");
}

void sim_faults(sim *w)
{
	for (int i = 0; i < w->n_all; i++) {
		snode *s = &w->nodes[i];
		if (s->up && chance_pm(w, w->crash_pm)) {
			sim_node_crash(w, s);
			s->down_until = w->now + 1 + rnd_below(w, 400);
		} else if (!s->up && w->now >= s->down_until) {
			sim_node_start(w, s);
		}
	}
	if (chance_pm(w, w->kill_leader_pm)) {
		for (int i = 0; i < w->n_all; i++) {
			snode *s = &w->nodes[i];
			raft_status st;
			if (!s->up)
				continue;
			raft_status_get(s->r, &st);
			if (st.role != RAFT_LEADER)
				continue;
			sim_node_crash(w, s);
			s->down_until = w->now + 1 + rnd_below(w, 300);
		}
	}
	if (chance_pm(w, w->part_pm))
		partition(w);
	else if (chance_pm(w, 2 * w->part_pm))
		sim_unblock(w);
	flip(w);
}

/* Proposes the next value at s, len payload bytes, packed as the group
 * driver packs a command: after any drive that makes room, so a drive's
 * arena reset never meets it. PL_E_BACKPRESSURE only if even a drive
 * could not make room. */
static pl_status propose_value(sim *w, snode *s, size_t len)
{
	if (raft_unstable_count(s->r) >= RAFT_UNSTABLE_MAX) {
		w->res->backpressure++;
		sim_drain(w, s);
		if (!s->up || w->failed)
			return PL_E_CLOSED;
	}
	uint64_t v = w->next_value;
	uint8_t *p = sim_prop_alloc(&s->prop, len);
	memcpy(p, &v, 8);
	for (size_t i = 8; i < len; i++)
		p[i] = (uint8_t)(v * 7 + i);
	uint64_t index, term;
	pl_status st = raft_propose(s->r, p, len, &index, &term);
	if (st != PL_OK)
		return st;
	if (v >= w->cap_val) {
		size_t n = w->cap_val;
		w->cap_val = 2 * v + 64;
		w->val_state = xrealloc(w->val_state, w->cap_val);
		w->val_node = xrealloc(w->val_node, 8 * w->cap_val);
		w->val_index = xrealloc(w->val_index, 8 * w->cap_val);
		w->val_term = xrealloc(w->val_term, 8 * w->cap_val);
		w->val_floor = xrealloc(w->val_floor, 8 * w->cap_val);
		w->val_count = xrealloc(w->val_count, 8 * w->cap_val);
		memset(w->val_state + n, 0, w->cap_val - n);
		memset(w->val_count + n, 0, 8 * (w->cap_val - n));
	}
	w->next_value++;
	w->val_state[v] = 1;
	w->val_node[v] = s->id;
	w->val_index[v] = index;
	w->val_term[v] = term;
	w->val_floor[v] = w->acked_max;
	trace(w,
	    "node %" PRIu64 " takes value %" PRIu64 " at %" PRIu64 "/%" PRIu64,
	    s->id, v, index, term);
	return PL_OK;
}

void sim_propose(sim *w)
{
	/* Clients find the leader as a gateway would: any replica that
	 * believes it leads; otherwise they try a random one. */
	snode *s = &w->nodes[rnd_below(w, (uint64_t)w->n_all)];
	for (int i = 0; i < w->n_all; i++) {
		raft_status st;
		if (!w->nodes[i].up)
			continue;
		raft_status_get(w->nodes[i].r, &st);
		if (st.role == RAFT_LEADER && chance_pm(w, 800))
			s = &w->nodes[i];
	}
	if (!s->up)
		return;
	size_t len = 8 + (size_t)rnd_below(w, PAYLOAD_BYTES_MAX - 8);
	if (propose_value(w, s, len) != PL_OK)
		return;
	sim_drain(w, s);
}

/* A gateway batch of thousands of publishes: up to 1.5 unstable logs'
 * worth proposed to a leader with no ready in between (the driver drives
 * only when the core pushes back), crossing the message, inflight and
 * apply bounds on the way. */
void sim_burst(sim *w)
{
	snode *s = NULL;
	for (int i = 0; i < w->n_all; i++) {
		raft_status st;
		if (!w->nodes[i].up)
			continue;
		raft_status_get(w->nodes[i].r, &st);
		if (st.role == RAFT_LEADER)
			s = &w->nodes[i];
	}
	if (s == NULL)
		return;
	uint64_t n =
	    1 + rnd3_below(w, RAFT_UNSTABLE_MAX + RAFT_UNSTABLE_MAX / 2);
	w->res->bursts++;
	trace(w, "node %" PRIu64 " gets a burst of %" PRIu64, s->id, n);
	for (uint64_t k = 0; k < n && s->up && !w->failed; k++) {
		size_t len = 8 + (size_t)rnd3_below(w, PAYLOAD_BYTES_MAX - 8);
		if (propose_value(w, s, len) != PL_OK)
			break;
	}
	if (s->up && !w->failed)
		sim_drain(w, s);
}

/* Leader s is on the side of a two-way partition that holds fewer than
 * a quorum of the voters of configuration c (the one its change leads
 * to, in force from its append): neither it nor any leader on its side
 * can commit, and the entry cannot leave the side while the partition
 * holds. */
static bool cut_off(sim *w, snode *s, const raft_conf *c)
{
	if (!w->two_way)
		return false;
	int n = 0;
	for (int i = 0; i < c->n_voters; i++)
		n += !w->blocked[s->id][c->voters[i]];
	return n < c->n_voters / 2 + 1;
}

void sim_unblock(sim *w)
{
	memset(w->blocked, 0, sizeof w->blocked);
	w->part_epoch++;
	w->two_way = false;
}

void sim_conf_change(sim *w)
{
	snode *s = NULL;
	for (int i = 0; i < w->n_all; i++) {
		raft_status st;
		if (!w->nodes[i].up)
			continue;
		raft_status_get(w->nodes[i].r, &st);
		if (st.role == RAFT_LEADER)
			s = &w->nodes[i];
	}
	if (s == NULL)
		return;
	raft_status st;
	raft_status_get(s->r, &st);
	/* Walk the spare through: learner, voter, removed; or remove and
	 * re-add an original voter as a learner. */
	uint64_t id = 1 + rnd_below(w, (uint64_t)w->n_all);
	raft_conf_op op;
	if (raft_conf_is_learner(&st.conf, id))
		op = chance_pm(w, 700) ? RAFT_CONF_PROMOTE : RAFT_CONF_REMOVE;
	else if (raft_conf_is_voter(&st.conf, id))
		op = st.conf.n_voters > 3 ? RAFT_CONF_REMOVE : 0;
	else
		op = RAFT_CONF_ADD_LEARNER;
	if (op == 0 || (id == s->id && !w->o.self_removal))
		return;
	uint64_t index, term;
	if (raft_propose_conf(s->r, op, id, &index, &term) == PL_OK) {
		raft_status_get(s->r, &st); /* the new configuration */
		bool cut = cut_off(w, s, &st.conf);
		trace(w,
		    "node %" PRIu64 " proposes conf op %d node %" PRIu64
		    " at %" PRIu64 "%s",
		    s->id, (int)op, id, index,
		    cut ? " (cut off from a quorum)" : "");
		if (cut) {
			cut_change k = {index, term, w->part_epoch};
			VEC_PUSH(w->cut, w->n_cut, w->cap_cut, k);
			w->res->cut_off_changes++;
		}
	}
	sim_drain(w, s);
}

void sim_transfer(sim *w)
{
	for (int i = 0; i < w->n_all; i++) {
		snode *s = &w->nodes[i];
		raft_status st;
		if (!s->up)
			continue;
		raft_status_get(s->r, &st);
		if (st.role != RAFT_LEADER || st.conf.n_voters < 2)
			continue;
		uint64_t to = st.conf.voters[rnd_below(w, st.conf.n_voters)];
		if (to != s->id && raft_transfer_leader(s->r, to) == PL_OK)
			trace(w, "node %" PRIu64 " transfers to %" PRIu64,
			    s->id, to);
		sim_drain(w, s);
	}
}
