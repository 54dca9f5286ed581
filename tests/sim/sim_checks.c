/*
 * sim_checks.c - the simulation's group-wide checks (the invariants listed
 * at the top of sim.c), run as events happen: log matching as entries are
 * written, committed entries as commits move, one leader per term and
 * leader completeness, voter completeness as votes are granted.
 */
#include "tests/sim/sim_internal.h"

static reg_slot *reg_find(sim *w, uint64_t index, uint64_t term)
{
	uint64_t h = (index * UINT64_C(0x9E3779B97F4A7C15)) ^
	             (term * UINT64_C(0xC2B2AE3D27D4EB4F));
	size_t mask = w->reg_cap - 1;
	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
		reg_slot *s = &w->reg[i];
		if (s->index == 0 || (s->index == index && s->term == term))
			return s;
	}
}

static void reg_grow(sim *w)
{
	reg_slot *old = w->reg;
	size_t n = w->reg_cap;
	w->reg_cap = n ? 2 * n : 1024;
	w->reg = xrealloc(NULL, sizeof(reg_slot) * w->reg_cap);
	memset(w->reg, 0, sizeof(reg_slot) * w->reg_cap);
	for (size_t i = 0; i < n; i++)
		if (old[i].index != 0)
			*reg_find(w, old[i].index, old[i].term) = old[i];
	free(old);
}

/* Log matching, incrementally: entry e written after prev_term. */
void sim_check_log_matching(
    sim *w, snode *s, const raft_entry *e, uint64_t prev_term)
{
	if (2 * (w->reg_n + 1) > w->reg_cap)
		reg_grow(w);
	reg_slot *r = reg_find(w, e->index, e->term);
	if (r->index == 0) {
		*r = (reg_slot){
		    e->index, e->term, prev_term, e->data, e->len, e->type};
		w->reg_n++;
		return;
	}
	raft_entry k = {.index = r->index,
	    .term = r->term,
	    .type = r->type,
	    .data = r->data,
	    .len = r->len};
	if (!ent_equal(&k, e) || r->prev_term != prev_term)
		fail(w,
		    "log matching: node %" PRIu64 " entry %" PRIu64 "/%" PRIu64
		    " differs from another replica's",
		    s->id, e->index, e->term);
}

/* A configuration entry e joins the committed sequence: count the
 * membership scenarios it completes and check the one a partition
 * forbids (a change proposed by a cut-off leader committed while that
 * partition holds: some quorum acknowledged what it never received). */
static void gc_conf_entry(sim *w, const raft_entry *e)
{
	raft_conf c;
	if (raft_conf_decode(e->data, e->len, &c) != PL_OK) {
		fail(w, "committed configuration entry %" PRIu64 " is invalid",
		    e->index);
		return;
	}
	for (size_t i = 0; i < w->n_cut; i++) {
		cut_change *k = &w->cut[i];
		if (k->index != e->index || k->term != e->term)
			continue;
		if (k->epoch == w->part_epoch)
			fail(w,
			    "change %" PRIu64 "/%" PRIu64 " of a leader cut off "
			    "from a quorum committed within its partition",
			    e->index, e->term);
		w->res->cut_off_changes_committed++;
	}
	const raft_conf *p = &w->gc_conf;
	uint64_t leader = e->term < w->cap_leader ? w->leader_of[e->term] : 0;
	for (int i = 0; i < c.n_voters; i++)
		if (raft_conf_is_learner(p, c.voters[i]))
			w->res->promotions++;
	if (leader != 0 && raft_conf_is_voter(p, leader) &&
	    !raft_conf_is_voter(&c, leader)) {
		w->res->self_removals++;
		w->rm_node = leader;
		w->rm_term = e->term;
		w->rm_index = e->index;
		w->rm_wait_leader = true;
		trace(w, "node %" PRIu64 " removed itself at %" PRIu64, leader,
		    e->index);
	}
	w->gc_conf = c;
}

static void gc_extend(sim *w, const raft_entry *e, uint64_t term)
{
	size_t n = w->n_gc;
	VEC_PUSH(w->gc_term, n, w->cap_gc_term, term);
	VEC_PUSH(w->gc, w->n_gc, w->cap_gc, *e);
	w->res->committed = w->n_gc;
	if (e->type == RAFT_ENTRY_CONF)
		gc_conf_entry(w, e);
	uint64_t v = payload_value(e);
	if (v == 0)
		return;
	if (!payload_intact(w, e, v)) {
		fail(w,
		    "entry %" PRIu64 " committed with a damaged payload (a "
		    "proposal's payload outlived its arena)",
		    e->index);
		return;
	}
	if (++w->val_count[v] > 1)
		fail(w, "value %" PRIu64 " committed twice", v);
}

/* A replica in term `term` saw its commit move to c: its entries up to
 * c are the group's. An entry whose CRC fails is absent, not changed: the
 * replica will find it and repair it (it is compared again once its
 * commit comes back). */
void sim_check_commit(sim *w, snode *s, uint64_t c, uint64_t term)
{
	if (c < s->commit_seen)
		fail(w,
		    "node %" PRIu64 " commit went back %" PRIu64 " -> %" PRIu64,
		    s->id, s->commit_seen, c);
	if (c > s->st.cur.n)
		fail(w, "node %" PRIu64 " commit %" PRIu64 " > last %zu", s->id,
		    c, s->st.cur.n);
	for (uint64_t i = s->commit_seen + 1; i <= c && !w->failed; i++) {
		srec *r = &s->st.cur.r[i - 1];
		if (!sstore_rec_ok(r, i))
			continue;
		if (i == w->n_gc + 1)
			gc_extend(w, &r->e, term);
		else if (i <= w->n_gc && !ent_equal(&w->gc[i - 1], &r->e))
			fail(w,
			    "committed entry %" PRIu64
			    " changed on node %" PRIu64,
			    i, s->id);
	}
	if (c > s->commit_seen)
		s->commit_seen = c;
}

/* Replica s is a voter of the configuration in force before the latest
 * configuration entry of its log (the boot one when there is no other).
 * True when a record between cannot be read: a check that cannot see
 * does not fail. */
static bool voter_before_latest(snode *s)
{
	int seen = 0;
	for (size_t i = s->st.cur.n; i-- > 0;) {
		srec *r = &s->st.cur.r[i];
		if (!sstore_rec_ok(r, i + 1))
			return true;
		if (r->e.type != RAFT_ENTRY_CONF || ++seen < 2)
			continue;
		raft_conf c;
		return raft_conf_decode(r->e.data, r->e.len, &c) != PL_OK ||
		       raft_conf_is_voter(&c, s->id);
	}
	return seen == 1 && raft_conf_is_voter(&s->st.boot, s->id);
}

void sim_check_leader(sim *w, snode *s, const raft_status *st)
{
	if (st->role != RAFT_LEADER)
		return;
	if (st->term >= w->cap_leader) {
		size_t n = w->cap_leader;
		w->cap_leader = 2 * st->term + 64;
		w->leader_of =
		    xrealloc(w->leader_of, sizeof(uint64_t) * w->cap_leader);
		memset(w->leader_of + n, 0,
		    sizeof(uint64_t) * (w->cap_leader - n));
	}
	uint64_t *l = &w->leader_of[st->term];
	if (*l != 0 && *l != s->id)
		fail(w,
		    "two leaders in term %" PRIu64 ": %" PRIu64 " and %" PRIu64,
		    st->term, *l, s->id);
	if (*l == 0) {
		w->res->elections++;
		trace(w, "node %" PRIu64 " leads term %" PRIu64 "%s", s->id,
		    st->term, st->repairing ? " (repairing)" : "");
		/* Only a voter campaigns: of its configuration, or of the
		 * one before the latest entry of its log, which removed it
		 * (it may not know that entry committed). */
		if (!raft_conf_is_voter(&st->conf, s->id) &&
		    !voter_before_latest(s))
			fail(w,
			    "node %" PRIu64 " leads term %" PRIu64
			    " but is no voter of its configuration",
			    s->id, st->term);
		/* After a leader removed itself, the group elects another
		 * among the voters that remain. */
		if (w->rm_wait_leader && st->term > w->rm_term) {
			w->rm_wait_leader = false;
			w->res->self_removal_new_leader++;
		}
	}
	*l = s->id;
	if (s->led_term == st->term)
		return;
	s->led_term = st->term;
	/* Leader completeness: every committed entry is in its log. The
	 * log model holds written entries; the core's unstable tail holds
	 * at most the new no-op beyond them. */
	if (st->last_index < w->n_gc)
		fail(w,
		    "leader %" PRIu64 " of term %" PRIu64
		    " lacks committed entries (%" PRIu64 " < %zu)",
		    s->id, st->term, st->last_index, w->n_gc);
	for (size_t i = 0; i < w->n_gc && i < s->st.cur.n && !w->failed; i++)
		if (sstore_rec_ok(&s->st.cur.r[i], i + 1) &&
		    !ent_equal(&w->gc[i], &s->st.cur.r[i].e))
			fail(w,
			    "leader %" PRIu64 " of term %" PRIu64
			    " has a different committed entry %zu",
			    s->id, st->term, i + 1);
}

/* Replica s acknowledged entries up to index in term t. */
void sim_note_ack(snode *s, uint64_t t, uint64_t index)
{
	if (t >= s->cap_acked) {
		size_t n = s->cap_acked;
		s->cap_acked = 2 * t + 16;
		s->acked = xrealloc(s->acked, 8 * s->cap_acked);
		memset(s->acked + n, 0, 8 * (s->cap_acked - n));
	}
	if (index > s->acked[t])
		s->acked[t] = index;
}

/* Voter completeness, the invariant that damaged replicas must not
 * break: a replica that grants a vote holds every committed entry it
 * acknowledged in the term the entry was committed in or later (an ack
 * in term t up to index i covered the log of the leader of t, which holds
 * every entry committed by then; an entry acknowledged earlier may be
 * replaced lawfully and committed later, Figure 8). gc_term over-states
 * the commit's term, which only weakens the check. An entry with a bad
 * CRC not found yet still counts: the log holds it, only its bytes are
 * bad, and a vote compares last term and index. */
void sim_check_voter(sim *w, snode *s)
{
	uint64_t best = 0; /* m[t]: highest index acked in a term >= t */
	size_t t = s->cap_acked;
	uint64_t *m = xrealloc(NULL, 8 * (t + 1));
	m[t] = 0;
	while (t-- > 0) {
		if (s->acked[t] > best)
			best = s->acked[t];
		m[t] = best;
	}
	for (size_t j = 1; j <= w->n_gc && !w->failed; j++) {
		const raft_entry *g = &w->gc[j - 1];
		uint64_t ct = w->gc_term[j - 1];
		if (ct >= s->cap_acked || m[ct] < j)
			continue; /* not acknowledged by s since committed */
		srec *r = j <= s->st.cur.n ? &s->st.cur.r[j - 1] : NULL;
		if (r == NULL || (sstore_rec_ok(r, j) && !ent_equal(&r->e, g)))
			fail(w,
			    "node %" PRIu64 " grants a vote without committed "
			    "entry %zu/%" PRIu64
			    " it acknowledged (has %" PRIu64 ")",
			    s->id, j, g->term, r != NULL ? r->e.term : 0);
	}
	free(m);
}

/* A leader whose removal of itself committed steps down: it may not go
 * on leading the term it removed itself in once it knows the commit. */
void sim_check_removed_leader(sim *w, snode *s, const raft_status *st)
{
	if (st->role == RAFT_LEADER && s->id == w->rm_node &&
	    st->term == w->rm_term && st->commit >= w->rm_index)
		fail(w,
		    "node %" PRIu64 " removed itself at %" PRIu64
		    " and still leads term %" PRIu64 " after it committed",
		    s->id, w->rm_index, st->term);
}
