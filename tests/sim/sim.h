/*
 * sim.h - the deterministic simulation of Raft groups (raft_sim.c): the
 * real core (raft/raft.c) on N in-memory replicas whose storage models
 * the broker's CRC-checked log (sim_store.h: written and durable state
 * apart, torn writes, bit flips), under a seeded scheduler of faults.
 * Every choice comes from PRNGs seeded by the seed, so a seed replays
 * exactly. The invariants checked are listed at the top of sim.c.
 */
#ifndef PARLEY_SIM_H
#define PARLEY_SIM_H

#include <stdbool.h>
#include <stdint.h>

/* One run's parameters: the command line of raft_sim. */
typedef struct sim_opts {
	uint64_t seed;
	int nodes;       /* 3 or 5 */
	uint64_t steps;  /* simulated milliseconds of faults */
	bool membership; /* also propose configuration changes */
	bool verbose;    /* trace every event to stderr */
	/* Clients also send bursts of proposals to a leader without a
	 * ready in between, past the core's unstable log (RAFT_UNSTABLE_MAX)
	 * and every message and apply batch bound, as a gateway batch of
	 * thousands of publishes does. */
	bool bursts;
	/* A leader may propose its own removal (it must step down once the
	 * change commits). Off for regression seeds: the draws they were
	 * found with never removed the leader. */
	bool self_removal;
} sim_opts;

/* Result of one seed. */
typedef struct sim_result {
	bool ok;
	char why[256];      /* the violated invariant, when !ok */
	uint64_t acked;     /* proposals acknowledged to clients */
	uint64_t committed; /* entries committed */
	uint64_t elections; /* distinct leader terms */
	uint64_t crashes;
	uint64_t torn;       /* crashes that left a torn tail */
	uint64_t flips;      /* bit flips in synced entries */
	uint64_t repairs;    /* damaged entries found (then repaired) */
	uint64_t heal_steps; /* steps from healing to convergence */
	uint64_t bursts;     /* bursts proposed (with opts.bursts) */
	uint64_t backpressure; /* proposals that found the unstable log full */
	/* Scenarios the checks must meet, counted so that a run shows they
	 * happened: learners promoted (committed), leaders that removed
	 * themselves (committed) and of those, how many saw a new leader
	 * elected after; changes proposed by a leader cut off from a quorum
	 * by a two-way partition, and of those, how many were committed
	 * later, once the partition had changed. */
	uint64_t promotions;
	uint64_t self_removals, self_removal_new_leader;
	uint64_t cut_off_changes, cut_off_changes_committed;
} sim_result;

/* Runs one seed to the end or to the first violation. */
void sim_run(const sim_opts *o, sim_result *res);

#endif /* PARLEY_SIM_H */
