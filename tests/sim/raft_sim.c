/*
 * raft_sim.c - the command line of the Raft simulation (sim.c): runs the
 * named regression seeds, then a range of seeds, and prints the single
 * command that replays a failing one. Usage:
 *
 *   raft_sim [--nodes 3|5] [--steps K] [--seeds N] [--start S]
 *            [--seed S] [--no-membership] [--verbose]
 *
 * --seed replays exactly one seed (add --verbose for a trace). A seed
 * means the same run on every machine: all choices come from it.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "tests/sim/sim.h"

/* Seeds that once found a bug, and seeds that catch a deliberately
 * broken core (a check that stopped catching them would be a blind
 * spot): each runs first, on every invocation with its node count, at
 * the default steps. docs/raft.md "Simulation" tells the stories. */
static const struct regression {
	const char *name;
	int nodes;
	uint64_t seed;
} regressions[] = {
    /* Found: a re-added learner stayed behind for ever, because a
     * follower refused appends carrying more configuration entries than
     * a fixed table of uncommitted ones could hold. */
    {"learner_behind_many_conf_entries", 5, 16307},
    /* Sentinels: a core that commits an older term's entry by counting
     * (Figure 8), grants votes to stale logs, or acks before the sync. */
    {"sentinel_commit_rule_figure8", 3, 215258},
    {"sentinel_commit_rule_figure8", 5, 36801},
    {"sentinel_vote_up_to_date", 3, 4},
    {"sentinel_vote_up_to_date", 5, 1},
    {"sentinel_ack_before_durable", 3, 51},
    {"sentinel_ack_before_durable", 5, 45},
};

#define STEPS_DEFAULT 3000 /* simulated ms of faults before healing */

static sim_opts cur_opts; /* for the abort handler only */

static void print_replay(FILE *f, const sim_opts *o)
{
	fprintf(f,
	    "replay: raft_sim --seed %" PRIu64 " --nodes %d --steps %" PRIu64
	    "%s\n",
	    o->seed, o->nodes, o->steps,
	    o->membership ? "" : " --no-membership");
}

/* A PL_ASSERT in the core aborts: say which seed did it. */
static void on_abort(int sig)
{
	(void)sig;
	fprintf(stderr, "raft_sim: assertion failed in seed %" PRIu64 "\n",
	    cur_opts.seed);
	print_replay(stderr, &cur_opts);
	signal(SIGABRT, SIG_DFL);
}

static bool run_one(const sim_opts *o, const char *name)
{
	sim_result res;
	cur_opts = *o;
	sim_run(o, &res);
	if (o->verbose || !res.ok)
		fprintf(stderr,
		    "seed %" PRIu64 "%s%s: %s acked=%" PRIu64
		    " committed=%" PRIu64 " elections=%" PRIu64
		    " crashes=%" PRIu64 " heal_steps=%" PRIu64 "\n",
		    o->seed, name ? " " : "", name ? name : "",
		    res.ok ? "ok" : res.why, res.acked, res.committed,
		    res.elections, res.crashes, res.heal_steps);
	if (!res.ok)
		print_replay(stderr, o);
	return res.ok;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int usage(void)
{
	fprintf(stderr, "usage: raft_sim [--nodes 3|5] [--steps K] "
	                "[--seeds N] [--start S] [--seed S] "
	                "[--no-membership] [--verbose]\n");
	return 2;
}

int main(int argc, char **argv)
{
	sim_opts o = {.nodes = 3, .steps = STEPS_DEFAULT, .membership = true};
	uint64_t seeds = 100, start = 1;
	bool one = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--verbose") == 0) {
			o.verbose = true;
			continue;
		}
		if (strcmp(a, "--no-membership") == 0) {
			o.membership = false;
			continue;
		}
		if (v == NULL)
			return usage();
		uint64_t x = strtoull(v, NULL, 10);
		i++;
		if (strcmp(a, "--nodes") == 0 && (x == 3 || x == 5))
			o.nodes = (int)x;
		else if (strcmp(a, "--steps") == 0 && x > 0)
			o.steps = x;
		else if (strcmp(a, "--seeds") == 0)
			seeds = x;
		else if (strcmp(a, "--start") == 0)
			start = x;
		else if (strcmp(a, "--seed") == 0) {
			o.seed = x;
			one = true;
		} else
			return usage();
	}
	signal(SIGABRT, on_abort);
	if (one)
		return run_one(&o, NULL) ? 0 : 1;

	double t0 = now_s();
	uint64_t ran = 0;
	for (size_t i = 0; i < PL_ARRAY_LEN(regressions); i++) {
		if (regressions[i].nodes != o.nodes)
			continue;
		sim_opts r = o;
		r.seed = regressions[i].seed;
		r.steps = STEPS_DEFAULT;
		ran++;
		if (!run_one(&r, regressions[i].name))
			return 1;
	}
	for (uint64_t s = start; s < start + seeds; s++) {
		o.seed = s;
		ran++;
		if (!run_one(&o, NULL))
			return 1;
	}
	double dt = now_s() - t0;
	printf("raft_sim: %" PRIu64 " seeds (%d nodes, %" PRIu64
	       " steps) ok in %.1f s: %.0f seeds/s\n",
	    ran, o.nodes, o.steps, dt, dt > 0 ? (double)ran / dt : 0.0);
	return 0;
}
