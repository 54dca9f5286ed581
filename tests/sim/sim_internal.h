/*
 * sim_internal.h - what the files of one seed of the Raft simulation
 * share: its limits, the replica (snode) and the world (sim), the PRNG
 * streams and the small helpers every file uses (static inline, so each
 * keeps its names private), and the functions one file calls in
 * another. Only tests/sim's raft_sim files include it; raft_sim.c sees
 * sim.h. The invariants checked are listed at the top of sim.c.
 *
 *   sim.c         the run: profile, steps, healing, convergence
 *   sim_checks.c  group-wide checks (the invariants)
 *   sim_node.c    driving one replica: readies, storage, crash, restart
 *   sim_net.c     the network: delays, drops, duplicates, delivery
 *   sim_faults.c  faults and clients: crashes, partitions, bit flips,
 *                 proposals, bursts, membership changes, transfers
 */
#ifndef PARLEY_SIM_INTERNAL_H
#define PARLEY_SIM_INTERNAL_H

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

static inline void *xrealloc(void *p, size_t n)
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

/* A node's proposal arena, kept as the broker keeps its own
 * (broker/writes.c, broker/driver.c): the
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

/* A change proposed by a leader a two-way partition cut off from a
 * quorum of the configuration it leads to: nobody may commit it until
 * the partition changes. */
typedef struct cut_change {
	uint64_t index, term, epoch;
} cut_change;

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
	bool two_way;        /* blocked is a two-way partition */
	uint64_t part_epoch; /* bumped whenever blocked changes */
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
	/* Membership scenarios (sim_result): the committed configuration;
	 * the last self-removal committed (leader, term, index; node 0:
	 * none) and whether a new leader was seen since; changes proposed
	 * by a cut-off leader, with the partition epoch they were proposed
	 * in. */
	raft_conf gc_conf;
	uint64_t rm_node, rm_term, rm_index;
	bool rm_wait_leader;
	cut_change *cut;
	size_t n_cut, cap_cut;
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

static inline uint64_t rnd(sim *w)
{
	uint64_t z = (w->rng += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static inline uint64_t rnd_below(sim *w, uint64_t n)
{
	return n ? rnd(w) % n : 0;
}

static inline bool chance_pm(sim *w, uint32_t per_mille)
{
	return rnd_below(w, 1000) < per_mille;
}

/* The second stream: storage faults only. */
static inline uint64_t rnd2(sim *w)
{
	uint64_t z = (w->rng2 += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static inline uint64_t rnd2_below(sim *w, uint64_t n)
{
	return n ? rnd2(w) % n : 0;
}

/* The third stream: bursts only. */
static inline uint64_t rnd3_below(sim *w, uint64_t n)
{
	uint64_t z = (w->rng3 += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	z ^= z >> 31;
	return n ? z % n : 0;
}

static inline void fail(sim *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void fail(sim *w, const char *fmt, ...)
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

static inline void trace(sim *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void trace(sim *w, const char *fmt, ...)
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

static inline uint64_t payload_value(const raft_entry *e)
{
	uint64_t v = 0;
	if (e->type != RAFT_ENTRY_NORMAL || e->len < 8)
		return 0;
	memcpy(&v, e->data, 8);
	return v;
}

/* What propose wrote: the value, then bytes that depend on it. */
static inline bool payload_intact(const sim *w, const raft_entry *e, uint64_t v)
{
	const uint8_t *p = e->data;
	if (v >= w->next_value)
		return false;
	for (size_t i = 8; i < e->len; i++)
		if (p[i] != (uint8_t)(v * 7 + i))
			return false;
	return true;
}

static inline bool ent_equal(const raft_entry *a, const raft_entry *b)
{
	return a->index == b->index && a->term == b->term &&
	       a->type == b->type && a->len == b->len &&
	       (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* sim_checks.c: the group-wide checks, run as events happen. */
void sim_check_log_matching(
    sim *w, snode *s, const raft_entry *e, uint64_t prev_term);
void sim_check_commit(sim *w, snode *s, uint64_t c, uint64_t term);
void sim_check_leader(sim *w, snode *s, const raft_status *st);
void sim_note_ack(snode *s, uint64_t t, uint64_t index);
void sim_check_voter(sim *w, snode *s);
void sim_check_removed_leader(sim *w, snode *s, const raft_status *st);

/* sim_node.c: one replica's driver and its proposal arena. */
void *sim_prop_alloc(prop_arena *a, size_t n);
void sim_prop_fini(prop_arena *a);
void sim_drain(sim *w, snode *s);
void sim_node_start(sim *w, snode *s);
void sim_node_crash(sim *w, snode *s);
void sim_sync_start(sim *w, snode *s);
void sim_sync_done(sim *w, snode *s);

/* sim_net.c: the network. */
void sim_net_send(sim *w, const raft_msg *m);
void sim_net_deliver(sim *w);

/* sim_faults.c: faults and clients, drawn each step. */
void sim_faults(sim *w);
void sim_propose(sim *w);
void sim_burst(sim *w);
void sim_conf_change(sim *w);
void sim_unblock(sim *w);
void sim_transfer(sim *w);

#endif /* PARLEY_SIM_INTERNAL_H */
