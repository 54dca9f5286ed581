/*
 * sim.c - one seed of the Raft simulation. Time is in simulated
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
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft/raft.h"
#include "tests/sim/sim.h"
#include "tests/sim/sim_store.h"

#define NODES_MAX 6       /* 5 voters + 1 spare for membership changes */
#define TICK_STEPS 10     /* a tick every 10 simulated ms */
#define ELECTION_TICKS 10 /* election timeout 100..200 ms */
#define HEARTBEAT_TICKS 2
#define LIVENESS_STEPS_MAX 8000 /* 40+ election timeouts after healing */
#define CONVERGE_STEPS_MAX 15000
#define PAYLOAD_BYTES_MAX 40
/* A scrubber pass over a few hundred entries takes a few hundred ms. */
#define SCRUB_ENTRIES_PER_TICK 8

/* ------------------------------------------------------------------ */
/* Growable arrays and an arena (the simulation may allocate freely). */

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL) {
		fprintf(stderr, "raft_sim: out of memory\n");
		abort();
	}
	return q;
}

#define VEC_PUSH(v, n, cap, x)                                                 \
	do {                                                                   \
		if ((n) == (cap)) {                                            \
			(cap) = (cap) ? 2 * (cap) : 64;                        \
			(v) = xrealloc((v), sizeof(*(v)) * (cap));             \
		}                                                              \
		(v)[(n)++] = (x);                                              \
	} while (0)

typedef struct arena_chunk {
	struct arena_chunk *next;
	size_t used;
	uint8_t buf[64 * 1024];
} arena_chunk;

/* A node's proposal arena, kept as broker/group.c keeps its own: the
 * core borrows a payload from raft_propose until the ready that hands it
 * out is advanced, so the arena is reset only when the core holds no
 * unstable entry, and a reset poisons what it held. A payload the core
 * still used after that would reach the log poisoned, and the payload
 * check at commit (gc_extend) would name it. */
typedef struct prop_arena {
	arena_chunk *used, *spare;
} prop_arena;

#define POISON_BYTE 0xA5

typedef struct netmsg {
	raft_msg m;
	raft_entry *ents; /* owned copy of the entry structs */
	uint64_t at;
} netmsg;

typedef struct reg_slot {
	uint64_t index, term; /* index 0: empty */
	uint64_t prev_term;
	const uint8_t *data;
	size_t len;
	uint8_t type;
} reg_slot;

typedef struct snode {
	uint64_t id;
	struct sim *w;
	raft *r;
	bool up;
	uint64_t down_until;
	sstore st;            /* the log store: written and durable images */
	uint64_t sync_at;     /* when the sync under way completes */
	uint64_t applied;     /* entries applied in this life */
	uint64_t commit_seen; /* commit monotonic within a life */
	uint64_t led_term;    /* last term checked for completeness */
	uint32_t phase;
	/* acked[t]: highest index it acknowledged (durable, matching the
	 * leader) in term t; a fact of the past, kept across crashes. */
	uint64_t *acked;
	size_t cap_acked;
	prop_arena prop;
} snode;

typedef struct sim {
	sim_opts o;
	sim_result *res;
	uint64_t rng;
	uint64_t now;
	int n; /* replicas (voters at bootstrap) */
	int n_all;
	snode nodes[NODES_MAX];
	bool blocked[NODES_MAX + 1][NODES_MAX + 1];
	netmsg *net;
	size_t n_net, cap_net;
	/* Fault profile of this seed. */
	uint32_t drop_pm, dup_pm, delay_max, crash_pm, part_pm, prop_pm;
	uint32_t kill_leader_pm, sync_max, reorder_pm;
	/* Storage faults, drawn from rng2 so that a seed without them runs
	 * exactly as it did before they existed. */
	uint64_t rng2;
	/* Bursts (opts.bursts) draw from a third stream. */
	uint64_t rng3;
	uint32_t flip_ppm; /* chance per step of a bit flip, per million */
	uint32_t torn_pm;  /* crashes that leave a torn tail, per mille */
	int damage_max;    /* replicas damaged at once: a minority */
	bool conf_changes; /* membership changes in this seed */
	uint64_t link_at[NODES_MAX + 1][NODES_MAX + 1]; /* FIFO horizon */
	size_t msg_bytes;
	bool healed;
	uint64_t heal_at, live_at;
	uint64_t first_value_after_heal;
	/* Group-wide history. */
	raft_entry *gc; /* the committed sequence, gc[i - 1] = entry i */
	size_t n_gc, cap_gc;
	uint64_t
	    *gc_term; /* a term at or after the one gc[i] was committed in */
	size_t cap_gc_term;
	uint64_t *leader_of; /* by term */
	size_t cap_leader;
	reg_slot *reg;
	size_t reg_cap, reg_n;
	/* Clients: values 1..next_value-1 proposed. */
	uint64_t next_value;
	uint8_t *val_state; /* 0 none, 1 proposed, 2 acked */
	uint64_t *val_node, *val_index, *val_term, *val_count;
	uint64_t *val_floor; /* highest index acknowledged when proposed */
	uint64_t acked_max;  /* highest index acknowledged so far */
	size_t cap_val;
	bool failed;
} sim;

static uint64_t rnd(sim *w)
{
	uint64_t z = (w->rng += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static uint64_t rnd_below(sim *w, uint64_t n)
{
	return n ? rnd(w) % n : 0;
}

static bool chance_pm(sim *w, uint32_t per_mille)
{
	return rnd_below(w, 1000) < per_mille;
}

/* The second stream: storage faults only. */
static uint64_t rnd2(sim *w)
{
	uint64_t z = (w->rng2 += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static uint64_t rnd2_below(sim *w, uint64_t n)
{
	return n ? rnd2(w) % n : 0;
}

/* The third stream: bursts only. */
static uint64_t rnd3_below(sim *w, uint64_t n)
{
	uint64_t z = (w->rng3 += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	z ^= z >> 31;
	return n ? z % n : 0;
}

static void *prop_alloc(prop_arena *a, size_t n)
{
	n = (n + 7) & ~(size_t)7;
	if (a->used == NULL || a->used->used + n > sizeof a->used->buf) {
		arena_chunk *c = a->spare;
		if (c != NULL)
			a->spare = c->next;
		else
			c = xrealloc(NULL, sizeof *c);
		c->used = 0;
		c->next = a->used;
		a->used = c;
	}
	void *p = a->used->buf + a->used->used;
	a->used->used += n;
	return p;
}

static void prop_reset(prop_arena *a)
{
	while (a->used != NULL) {
		arena_chunk *c = a->used;
		a->used = c->next;
		memset(c->buf, POISON_BYTE, c->used);
		c->used = 0;
		c->next = a->spare;
		a->spare = c;
	}
}

static void prop_fini(prop_arena *a)
{
	prop_reset(a);
	while (a->spare != NULL) {
		arena_chunk *c = a->spare;
		a->spare = c->next;
		free(c);
	}
}

static void fail(sim *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail(sim *w, const char *fmt, ...)
{
	if (w->failed)
		return;
	w->failed = true;
	w->res->ok = false;
	va_list ap;
	va_start(ap, fmt);
	int k = snprintf(
	    w->res->why, sizeof w->res->why, "t=%" PRIu64 ": ", w->now);
	vsnprintf(w->res->why + k, sizeof w->res->why - (size_t)k, fmt, ap);
	va_end(ap);
}

static void trace(sim *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void trace(sim *w, const char *fmt, ...)
{
	if (!w->o.verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "t=%" PRIu64 " ", w->now);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static uint64_t payload_value(const raft_entry *e)
{
	uint64_t v = 0;
	if (e->type != RAFT_ENTRY_NORMAL || e->len < 8)
		return 0;
	memcpy(&v, e->data, 8);
	return v;
}

/* What propose wrote: the value, then bytes that depend on it. */
static bool payload_intact(const sim *w, const raft_entry *e, uint64_t v)
{
	const uint8_t *p = e->data;
	if (v >= w->next_value)
		return false;
	for (size_t i = 8; i < e->len; i++)
		if (p[i] != (uint8_t)(v * 7 + i))
			return false;
	return true;
}

static bool ent_equal(const raft_entry *a, const raft_entry *b)
{
	return a->index == b->index && a->term == b->term &&
	       a->type == b->type && a->len == b->len &&
	       (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* ------------------------------------------------------------------ */
/* Group-wide checks. */

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
static void check_log_matching(
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

static void gc_extend(sim *w, const raft_entry *e, uint64_t term)
{
	size_t n = w->n_gc;
	VEC_PUSH(w->gc_term, n, w->cap_gc_term, term);
	VEC_PUSH(w->gc, w->n_gc, w->cap_gc, *e);
	w->res->committed = w->n_gc;
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
static void check_commit(sim *w, snode *s, uint64_t c, uint64_t term)
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

static void check_leader(sim *w, snode *s, const raft_status *st)
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
		trace(
		    w, "node %" PRIu64 " leads term %" PRIu64, s->id, st->term);
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
static void note_ack(snode *s, uint64_t t, uint64_t index)
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
static void check_voter(sim *w, snode *s)
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

/* ------------------------------------------------------------------ */
/* Driving one replica. */

static void net_send(sim *w, const raft_msg *m);

static void write_entries(sim *w, snode *s, const raft_entry *e, size_t n)
{
	uint64_t from = e[0].index;
	if (from > s->st.cur.n + 1 || from <= s->commit_seen) {
		fail(w,
		    "node %" PRIu64 " writes at %" PRIu64
		    " (last %zu, commit %" PRIu64 ")",
		    s->id, from, s->st.cur.n, s->commit_seen);
		return;
	}
	/* Like a real store, the model keeps a copy: the core lends
	 * payloads only until raft_advance. */
	uint64_t pt = from > 1 ? s->st.cur.r[from - 2].term0 : 0;
	srec *r = sstore_write(&s->st, e, n);
	for (size_t i = 0; i < n && !w->failed; i++) {
		check_log_matching(w, s, &r[i].e, pt);
		pt = r[i].e.term;
	}
}

static void apply_entries(sim *w, snode *s, const raft_entry *e, size_t n)
{
	for (size_t i = 0; i < n && !w->failed; i++) {
		uint64_t idx = e[i].index;
		if (idx != s->applied + 1 || idx > w->n_gc ||
		    !ent_equal(&w->gc[idx - 1], &e[i])) {
			fail(w,
			    "node %" PRIu64 " applies %" PRIu64
			    " out of order or not as committed",
			    s->id, idx);
			return;
		}
		s->applied = idx;
		uint64_t v = payload_value(&e[i]);
		if (v != 0 && w->val_state[v] == 1 && w->val_node[v] == s->id &&
		    w->val_index[v] == idx && w->val_term[v] == e[i].term) {
			w->val_state[v] = 2; /* acknowledged to the client */
			w->res->acked++;
			/* Publishes keep their real-time order: one proposed
			 * after another was acknowledged comes after it. */
			if (idx <= w->val_floor[v])
				fail(w,
				    "acked value %" PRIu64 " at %" PRIu64
				    " precedes one acked before it was "
				    "proposed (at %" PRIu64 ")",
				    v, idx, w->val_floor[v]);
			if (idx > w->acked_max)
				w->acked_max = idx;
			if (w->healed && v >= w->first_value_after_heal &&
			    w->live_at == 0)
				w->live_at = w->now;
		}
	}
}

/* A read found a bad CRC: the driver's part of raft_log_damaged. The
 * core is told first (it reads below the damage), then the log is
 * truncated and the repair record stored, in one durable write. */
static void handle_damage(sim *w, snode *s)
{
	while (!w->failed && s->up && s->st.bad_at != 0) {
		uint64_t bad = s->st.bad_at;
		s->st.bad_at = 0;
		raft_repair rep;
		pl_status st = raft_log_damaged(s->r, bad, &rep);
		if (st != PL_OK && s->st.bad_at != 0 && s->st.bad_at < bad)
			continue; /* an earlier entry is bad too */
		if (st != PL_OK) {
			fail(w,
			    "node %" PRIu64 " cannot report damage at %" PRIu64
			    ": %s",
			    s->id, bad, pl_strerror(st));
			return;
		}
		sstore_truncate(&s->st, bad - 1);
		s->st.rep = rep;
		if (s->commit_seen > bad - 1)
			s->commit_seen = bad - 1;
		w->res->repairs++;
		trace(w,
		    "node %" PRIu64 " finds entry %" PRIu64
		    " damaged: repair to %" PRIu64 "/%" PRIu64,
		    s->id, bad, rep.to, rep.term);
	}
}

/* Handles every ready of replica s, as raft.h prescribes. */
static void drain(sim *w, snode *s)
{
	handle_damage(w, s);
	while (!w->failed && s->up && raft_has_ready(s->r)) {
		raft_ready rd;
		raft_ready_get(s->r, &rd);
		if (rd.hs_sync) {
			s->st.hsd.term = rd.hs.term;
			s->st.hsd.vote = rd.hs.vote;
		}
		s->st.hs = rd.hs;
		if (rd.n_ents > 0)
			write_entries(w, s, rd.entries, rd.n_ents);
		check_commit(w, s, rd.hs.commit, rd.hs.term);
		for (size_t i = 0; i < rd.n_msgs; i++)
			net_send(w, &rd.msgs[i]);
		apply_entries(w, s, rd.committed, rd.n_committed);
		raft_advance(s->r);
		if (sstore_storage.last_index(&s->st) != s->st.cur.n)
			fail(w, "storage model out of step");
		handle_damage(w, s);
	}
	if (!s->up || w->failed)
		return;
	/* Every ready was advanced: the core borrows no payload. */
	if (raft_unstable_count(s->r) != 0) {
		fail(w, "node %" PRIu64 " holds unstable entries after a drain",
		    s->id);
		return;
	}
	prop_reset(&s->prop);
	raft_status st;
	raft_status_get(s->r, &st);
	check_leader(w, s, &st);
	if (st.role == RAFT_LEADER)
		note_ack(s, st.term, st.persisted); /* counts its own copy */
	if (s->st.rep.to != 0 && !st.repairing) {
		/* Repaired: the driver forgets the record. */
		memset(&s->st.rep, 0, sizeof s->st.rep);
		trace(w, "node %" PRIu64 " repaired", s->id);
	}
}

/* At restart the driver checks its whole log before starting the core:
 * a bad entry above the sync mark is a torn tail (dropped), at or below
 * it damage (dropped, and a repair noted). */
static void store_recover(sim *w, snode *s)
{
	uint64_t bad = 0;
	sstore_found f = sstore_recover(&s->st, &bad);
	if (f == SSTORE_DAMAGED) {
		w->res->repairs++;
		trace(w,
		    "node %" PRIu64 " finds entry %" PRIu64
		    " damaged at restart: repair to %" PRIu64 "/%" PRIu64,
		    s->id, bad, s->st.rep.to, s->st.rep.term);
	} else if (f == SSTORE_TORN) {
		trace(w, "node %" PRIu64 " drops a torn tail from %" PRIu64,
		    s->id, bad);
	}
}

static void node_start(sim *w, snode *s)
{
	store_recover(w, s);
	raft_config c = {
	    .id = s->id,
	    .election_ticks = ELECTION_TICKS,
	    .heartbeat_ticks = HEARTBEAT_TICKS,
	    .seed = w->o.seed * 31 + w->now,
	    .pre_vote = true,
	    .check_quorum = true,
	    .msg_bytes_max = w->msg_bytes,
	    .storage = &sstore_storage,
	    .storage_ctx = &s->st,
	    .repair = s->st.rep,
	};
	pl_status st = raft_new(&c, &s->r);
	if (st != PL_OK) {
		fail(w, "node %" PRIu64 " cannot restart: %s", s->id,
		    pl_strerror(st));
		return;
	}
	/* The driver knows its group's replicas (the broker's static
	 * list): a repairing replica asks them all. */
	uint64_t ids[NODES_MAX];
	for (int i = 0; i < w->n_all; i++)
		ids[i] = (uint64_t)i + 1;
	if (raft_repair_peers(s->r, ids, (size_t)w->n_all) != PL_OK)
		fail(w, "node %" PRIu64 " refuses its peer list", s->id);
	s->up = true;
	s->applied = 0;
	s->commit_seen = 0;
	check_commit(w, s, s->st.hsd.commit, s->st.hsd.term);
	trace(w,
	    "node %" PRIu64 " starts: term %" PRIu64 " last %zu commit %" PRIu64
	    "%s",
	    s->id, s->st.hsd.term, s->st.cur.n, s->st.hsd.commit,
	    s->st.rep.to ? " (repairing)" : "");
}

static void node_crash(sim *w, snode *s)
{
	raft_free(s->r);
	s->r = NULL;
	s->up = false;
	prop_reset(&s->prop);
	/* Unsynced writes are lost; or a prefix of them reached the disk,
	 * the last one perhaps half written. */
	size_t tear_n = 0;
	uint32_t tear_bit = UINT32_MAX;
	bool cut = false;
	if (rnd2_below(w, 1000) < w->torn_pm) {
		tear_n = 1 + (size_t)rnd2_below(w, 2 * RAFT_MSG_ENTRIES_MAX);
		if (rnd2_below(w, 2) == 0)
			tear_bit = (uint32_t)rnd2(w);
		cut = rnd2_below(w, 2) == 0;
	}
	size_t torn = sstore_crash(&s->st, tear_n, tear_bit, cut);
	w->res->crashes++;
	w->res->torn += torn > 0;
	trace(w, "node %" PRIu64 " crashes (durable last %zu, torn %zu%s)",
	    s->id, s->st.dur.n, torn,
	    torn > 0 && tear_bit != UINT32_MAX ? " damaged" : "");
}

static void sync_start(sim *w, snode *s)
{
	sstore_sync_start(&s->st);
	s->sync_at = w->now + 1 + rnd_below(w, w->sync_max);
}

static void sync_done(sim *w, snode *s)
{
	uint64_t index, term;
	sstore_sync_done(&s->st, &index, &term);
	raft_persisted(s->r, index, term);
	drain(w, s);
}

/* ------------------------------------------------------------------ */
/* Network: every message gets a random delay (so reordering), may be
 * dropped or duplicated, and is lost on a blocked link or a down node. */

static void net_enqueue(sim *w, const raft_msg *m, uint64_t delay)
{
	netmsg nm = {.m = *m, .at = w->now + delay};
	if (m->n_ents > 0) {
		/* Serialize, as a wire would: the core lends entries and
		 * payloads only until raft_advance. One block per message. */
		size_t bytes = sizeof(raft_entry) * m->n_ents;
		for (size_t i = 0; i < m->n_ents; i++)
			bytes += m->ents[i].len;
		nm.ents = xrealloc(NULL, bytes);
		uint8_t *p = (uint8_t *)(nm.ents + m->n_ents);
		for (size_t i = 0; i < m->n_ents; i++) {
			nm.ents[i] = m->ents[i];
			if (m->ents[i].len > 0)
				memcpy(p, m->ents[i].data, m->ents[i].len);
			nm.ents[i].data = p;
			p += m->ents[i].len;
		}
		nm.m.ents = nm.ents;
	}
	VEC_PUSH(w->net, w->n_net, w->cap_net, nm);
}

/* Links are mostly FIFO, as a stream between two replicas is; a few
 * messages take a random path and overtake or fall behind others. */
static uint64_t net_delay(sim *w, const raft_msg *m)
{
	uint64_t d = 1 + rnd_below(w, w->delay_max);
	if (chance_pm(w, w->reorder_pm))
		return chance_pm(w, 100) ? d * 10 : d;
	uint64_t *last =
	    &w->link_at[m->from % (NODES_MAX + 1)][m->to % (NODES_MAX + 1)];
	if (w->now + d < *last)
		d = *last - w->now;
	*last = w->now + d;
	return d;
}

static void snap_requested(sim *w, const raft_msg *m)
{
	/* The simulated storage never compacts, so no follower can be
	 * behind the first index: a snapshot request is a bug. */
	fail(w, "node %" PRIu64 " asks for a snapshot to %" PRIu64, m->from,
	    m->to);
}

static void net_send(sim *w, const raft_msg *m)
{
	if (m->type == RAFT_MSG_SNAP) {
		snap_requested(w, m);
		return;
	}
	snode *from = &w->nodes[m->from - 1];
	if (m->type == RAFT_MSG_APP_RESP && !m->reject)
		note_ack(from, m->term, m->index);
	if ((m->type == RAFT_MSG_VOTE_RESP ||
	        m->type == RAFT_MSG_PREVOTE_RESP) &&
	    !m->reject)
		check_voter(w, from);
	if (!w->healed && chance_pm(w, w->drop_pm))
		return;
	net_enqueue(w, m, net_delay(w, m));
	if (chance_pm(w, w->dup_pm))
		net_enqueue(w, m, net_delay(w, m));
}

static void net_deliver_one(sim *w, netmsg *nm)
{
	const raft_msg *m = &nm->m;
	if (m->to < 1 || m->to > (uint64_t)w->n_all)
		return;
	snode *s = &w->nodes[m->to - 1];
	if (!s->up || w->blocked[m->from][m->to])
		return;
	if (w->o.verbose)
		trace(w,
		    "deliver %s %" PRIu64 "->%" PRIu64 " term %" PRIu64
		    " index %" PRIu64 " log_term %" PRIu64 " commit %" PRIu64
		    " n %zu%s",
		    raft_msg_type_name(m->type), m->from, m->to, m->term,
		    m->index, m->log_term, m->commit, m->n_ents,
		    m->reject ? " reject" : "");
	pl_status st = raft_step(s->r, m);
	if (st != PL_OK && w->o.verbose) {
		fprintf(stderr,
		    "bad msg type=%d term=%" PRIu64 " index=%" PRIu64
		    " log_term=%" PRIu64 " n=%zu\n",
		    m->type, m->term, m->index, m->log_term, m->n_ents);
		for (size_t i = 0; i < m->n_ents; i++)
			fprintf(stderr,
			    "  ent %" PRIu64 "/%" PRIu64 " type=%d len=%zu\n",
			    m->ents[i].index, m->ents[i].term, m->ents[i].type,
			    m->ents[i].len);
	}
	if (st != PL_OK)
		fail(w, "node %" PRIu64 " refused a %s from %" PRIu64 ": %s",
		    s->id, raft_msg_type_name(m->type), m->from,
		    pl_strerror(st));
	drain(w, s);
}

/* Delivers the messages due now. */
static void net_deliver(sim *w)
{
	size_t due[256];
	size_t n = 0;
	for (size_t i = 0; i < w->n_net && n < PL_ARRAY_LEN(due); i++)
		if (w->net[i].at <= w->now)
			due[n++] = i;
	/* Earliest first, ties in sending order: a FIFO link stays FIFO
	 * (reordering comes from the delays net_delay draws). */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i;
		     j > 0 && w->net[due[j]].at < w->net[due[j - 1]].at; j--) {
			size_t t = due[j];
			due[j] = due[j - 1];
			due[j - 1] = t;
		}
	/* Take them out first: delivering may send (and grow w->net). */
	netmsg batch[256];
	for (size_t i = 0; i < n; i++) {
		batch[i] = w->net[due[i]];
		w->net[due[i]].at = UINT64_MAX; /* mark taken */
	}
	size_t k = 0;
	for (size_t i = 0; i < w->n_net; i++)
		if (w->net[i].at != UINT64_MAX)
			w->net[k++] = w->net[i];
	w->n_net = k;
	for (size_t i = 0; i < n; i++) {
		if (!w->failed)
			net_deliver_one(w, &batch[i]);
		free(batch[i].ents);
	}
}

/* ------------------------------------------------------------------ */
/* Faults and clients. */

static void partition(sim *w)
{
	memset(w->blocked, 0, sizeof w->blocked);
	if (chance_pm(w, 500)) {
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

static void faults(sim *w)
{
	for (int i = 0; i < w->n_all; i++) {
		snode *s = &w->nodes[i];
		if (s->up && chance_pm(w, w->crash_pm)) {
			node_crash(w, s);
			s->down_until = w->now + 1 + rnd_below(w, 400);
		} else if (!s->up && w->now >= s->down_until) {
			node_start(w, s);
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
			node_crash(w, s);
			s->down_until = w->now + 1 + rnd_below(w, 300);
		}
	}
	if (chance_pm(w, w->part_pm))
		partition(w);
	else if (chance_pm(w, 2 * w->part_pm))
		memset(w->blocked, 0, sizeof w->blocked);
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
		drain(w, s);
		if (!s->up || w->failed)
			return PL_E_CLOSED;
	}
	uint64_t v = w->next_value;
	uint8_t *p = prop_alloc(&s->prop, len);
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

static void propose(sim *w)
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
	drain(w, s);
}

/* A gateway batch of thousands of publishes: up to 1.5 unstable logs'
 * worth proposed to a leader with no ready in between (the driver drives
 * only when the core pushes back), crossing the message, inflight and
 * apply bounds on the way. */
static void burst(sim *w)
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
	uint64_t n = 1 + rnd3_below(w, RAFT_UNSTABLE_MAX + RAFT_UNSTABLE_MAX / 2);
	w->res->bursts++;
	trace(w, "node %" PRIu64 " gets a burst of %" PRIu64, s->id, n);
	for (uint64_t k = 0; k < n && s->up && !w->failed; k++) {
		size_t len = 8 + (size_t)rnd3_below(w, PAYLOAD_BYTES_MAX - 8);
		if (propose_value(w, s, len) != PL_OK)
			break;
	}
	if (s->up && !w->failed)
		drain(w, s);
}

static void conf_change(sim *w)
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
	if (op == 0 || id == s->id)
		return;
	uint64_t index, term;
	if (raft_propose_conf(s->r, op, id, &index, &term) == PL_OK)
		trace(w,
		    "node %" PRIu64 " proposes conf op %d node %" PRIu64
		    " at %" PRIu64,
		    s->id, (int)op, id, index);
	drain(w, s);
}

static void transfer(sim *w)
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
		drain(w, s);
	}
}

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
			drain(w, s);
		}
		if (s->st.syncing && w->now >= s->sync_at)
			sync_done(w, s);
		else if (!s->st.syncing && s->st.dirty && chance_pm(w, 300))
			sync_start(w, s);
	}
}

static void step(sim *w)
{
	if (!w->healed)
		faults(w);
	if (w->live_at == 0 && chance_pm(w, w->prop_pm))
		propose(w);
	if (w->o.bursts && !w->healed && rnd3_below(w, 1000) < 2)
		burst(w);
	if (w->conf_changes && !w->healed && chance_pm(w, 3))
		conf_change(w);
	if (!w->healed && chance_pm(w, 1))
		transfer(w);
	net_deliver(w);
	tick_and_sync(w);
}

static void heal(sim *w)
{
	w->healed = true;
	w->heal_at = w->now;
	w->first_value_after_heal = w->next_value;
	memset(w->blocked, 0, sizeof w->blocked);
	for (int i = 0; i < w->n_all; i++)
		if (!w->nodes[i].up)
			node_start(w, &w->nodes[i]);
	/* Every replica scrubs its whole log once: no damage stays hidden
	 * in entries nothing reads any more. */
	for (int i = 0; i < w->n_all && !w->failed; i++) {
		sstore_scrub(&w->nodes[i].st, SIZE_MAX);
		drain(w, &w->nodes[i]);
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
	for (int i = 0; i < w->n_all; i++) {
		snode *s = &w->nodes[i];
		s->id = (uint64_t)i + 1;
		s->w = w;
		s->st.boot = boot;
		s->phase = (uint32_t)rnd_below(w, TICK_STEPS);
		node_start(w, s);
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
	free(w->reg);
	free(w->val_state);
	free(w->val_node);
	free(w->val_index);
	free(w->val_term);
	free(w->val_floor);
	free(w->val_count);
	for (int i = 0; i < w->n_all; i++)
		prop_fini(&w->nodes[i].prop);
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
