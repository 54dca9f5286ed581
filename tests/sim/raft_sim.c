/*
 * raft_sim.c - the command line of the Raft simulation (sim.c): runs the
 * named regression seeds, then a range of seeds, prints the single
 * command that replays a failing one, and ends with seeds per second.
 * Usage: see usage() (raft_sim --help).
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
 * its steps (0: the default). docs/raft.md "Simulation" tells the
 * stories. Re-verify them after changing the simulation or the core's
 * behaviour under faults: the draws decide what a seed means. */
static const struct regression {
	const char *name;
	int nodes;
	uint64_t seed;
	uint64_t steps;
} regressions[] = {
    /* Found: a re-added learner stayed behind for ever, because a
     * follower refused appends carrying more configuration entries than
     * a fixed table of uncommitted ones could hold. */
    {"learner_behind_many_conf_entries", 5, 16307, 0},
    /* Found with storage faults: a learner restarted its election timer
     * although it never campaigns, so a departed leader's lease never
     * ran out and it ignored every vote; no quorum formed again. */
    {"learner_lease_never_expires", 3, 17763, 0},
    {"learner_lease_never_expires", 5, 16855, 0},
    /* Found with storage faults: an entry a follower could not read was
     * taken for a conflict and truncated before the damage was
     * reported, so the repair record understated what it had
     * acknowledged and it voted without committed entries. */
    {"corrupt_read_taken_for_conflict", 3, 1594, 0},
    {"corrupt_read_taken_for_conflict", 5, 452, 0},
    /* Found with storage faults: repair only through a leader waited
     * for ever when no leader could be elected without the repairing
     * replica (a learner held the only electable log). */
    {"peer_repair_without_leader", 3, 1223508, 5000},
    /* Found with storage faults: damage reported above an entry that
     * was unreadable too made the core guess that entry's term; the
     * guess named an entry no log holds and the repair never ended. */
    {"guessed_term_record", 3, 313661, 0},
    {"guessed_term_record", 5, 165266, 0},
    /* Found by the long run: the repairing replica had led the last
     * term and lost a tail no peer held, a learner held the most
     * up-to-date log (its entries) and a promotion uncommitted on some
     * voters: no candidate could win, no repair could run. Now a peer
     * serves what it holds of the record's term and a repairing replica
     * campaigns without its own vote. Each seed, its story: */
    /* node 3 led term 10, lost 186-187/10; learner 4 held to 185/10 */
    {"repairing_leader_lost_tail", 3, 1449244, 5000},
    /* node 1 lost its log from entry 4 at a restart; learner 4 ahead */
    {"repairing_leader_lost_tail", 3, 1472724, 5000},
    /* node 1 led term 5, lost 86-89/5; node 2 counts learner 4 voter */
    {"repairing_leader_lost_tail", 3, 1697163, 5000},
    /* node 2 lost 59-108/5 at a restart; learner 4 holds to 99 */
    {"repairing_leader_lost_tail", 3, 1804333, 5000},
    /* node 1 led term 13 and lost 57/13; node 3's promotion pending */
    {"repairing_leader_lost_tail", 3, 1907031, 5000},
    /* node 2 led term 8, lost 23-25/8; learner 4 holds 23-24/8 */
    {"repairing_leader_lost_tail", 3, 195284, 3000},
    /* Sentinels: a core that commits an older term's entry by counting
     * (Figure 8), grants votes to stale logs, acks before the sync,
     * lets a repairing replica vote, ignores a repairing follower's
     * heartbeat answer, or lets a repairing candidate count its own
     * vote. */
    {"sentinel_commit_rule_figure8", 3, 215258, 0},
    {"sentinel_commit_rule_figure8", 5, 152374, 0},
    {"sentinel_vote_up_to_date", 3, 1, 0},
    {"sentinel_vote_up_to_date", 5, 4, 0},
    {"sentinel_ack_before_durable", 3, 2, 0},
    {"sentinel_ack_before_durable", 5, 1, 0},
    {"sentinel_repairing_replica_votes", 3, 1, 0},
    {"sentinel_repairing_replica_votes", 5, 1, 0},
    {"sentinel_repair_heartbeat_ignored", 3, 6, 0},
    {"sentinel_repair_heartbeat_ignored", 5, 6, 0},
    {"sentinel_repairing_candidate_own_vote", 3, 79, 0},
    {"sentinel_repairing_candidate_own_vote", 5, 403, 0},
};

#define STEPS_DEFAULT 3000 /* simulated ms of faults before healing */
/* --long: a million seeds of each size past those CI runs, each with
 * the longer fault period of CI (about 35 minutes on one core). */
#define LONG_SEEDS 1000000
#define LONG_START 1000000
#define LONG_STEPS 5000
/* Scenario floor: over 1,000 seeds or more, each membership scenario
 * the checks cover must happen in at least one seed in 200 (measured at
 * 5,000 steps: the rarest, a change proposed by a cut-off leader, in
 * one seed in 34 with three replicas, one in 19 with five). */
#define SCENARIO_SEEDS_MIN 1000
#define SCENARIO_RARITY_MAX 200

static sim_opts cur_opts; /* for the abort handler only */
static const char *prog = "raft_sim";

static void print_replay(FILE *f, const sim_opts *o)
{
	fprintf(f,
	    "replay: %s --seed %" PRIu64 " --nodes %d --steps %" PRIu64
	    "%s%s%s\n",
	    prog, o->seed, o->nodes, o->steps,
	    o->membership ? "" : " --no-membership",
	    o->bursts ? " --bursts" : "",
	    o->self_removal || !o->membership ? "" : " --no-self-removal");
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

/* Over a range: bursts, and proposals among them that found the core's
 * unstable log full (the summary shows the bounds were crossed); and the
 * seeds in which each membership scenario happened. */
typedef struct range_totals {
	uint64_t bursts, backpressure;
	uint64_t promoted, self_removed, new_leader, cut_off, cut_committed;
} range_totals;

static void add_totals(range_totals *t, const sim_result *res)
{
	t->bursts += res->bursts;
	t->backpressure += res->backpressure;
	t->promoted += res->promotions > 0;
	t->self_removed += res->self_removals > 0;
	t->new_leader += res->self_removal_new_leader > 0;
	t->cut_off += res->cut_off_changes > 0;
	t->cut_committed += res->cut_off_changes_committed > 0;
}

static bool run_one(const sim_opts *o, const char *name, range_totals *bt)
{
	sim_result res;
	cur_opts = *o;
	sim_run(o, &res);
	if (bt != NULL)
		add_totals(bt, &res);
	if (o->verbose || !res.ok)
		fprintf(stderr,
		    "seed %" PRIu64 "%s%s: %s acked=%" PRIu64
		    " committed=%" PRIu64 " elections=%" PRIu64
		    " crashes=%" PRIu64 " torn=%" PRIu64 " flips=%" PRIu64
		    " repairs=%" PRIu64 " heal_steps=%" PRIu64
		    " promoted=%" PRIu64 " self_removed=%" PRIu64
		    " cut_off_changes=%" PRIu64 "\n",
		    o->seed, name ? " " : "", name ? name : "",
		    res.ok ? "ok" : res.why, res.acked, res.committed,
		    res.elections, res.crashes, res.torn, res.flips,
		    res.repairs, res.heal_steps, res.promotions,
		    res.self_removals, res.cut_off_changes);
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

static int usage(FILE *f, int code)
{
	fprintf(f,
	    "usage: raft_sim [--nodes 3|5] [--steps K] [--seeds N] "
	    "[--start S]\n"
	    "                [--seed S] [--long] [--keep-going] "
	    "[--no-membership]\n"
	    "                [--no-self-removal] [--bursts] [--verbose]\n"
	    "\n"
	    "Runs the named regression seeds, then seeds S..S+N-1 (default "
	    "1..100),\n"
	    "each K simulated ms of faults (default %d) then healing, and "
	    "prints\n"
	    "seeds per second. --seed S replays one seed (--verbose traces "
	    "it).\n"
	    "A failing seed prints the command that replays it; the run "
	    "stops there\n"
	    "unless --keep-going (then it counts failures and goes on).\n"
	    "\n"
	    "With membership changes (the default; --no-membership: "
	    "none) a leader\n"
	    "may remove itself (--no-self-removal: never, as the "
	    "regression seeds run);\n"
	    "a range of 1,000 seeds or more fails if a membership "
	    "scenario happened\n"
	    "in fewer than 1 seed in %d.\n"
	    "\n"
	    "--long runs a million seeds of each size past those CI "
	    "runs, going on\n"
	    "after a failure (--start %d --seeds %d --steps %d;\n"
	    "add --nodes N for one size):\n"
	    "  raft_sim --long\n",
	    STEPS_DEFAULT, SCENARIO_RARITY_MAX, LONG_START, LONG_SEEDS,
	    LONG_STEPS);
	return code;
}

/* Prints in how many of the range's seeds each membership scenario
 * happened. Over SCENARIO_SEEDS_MIN seeds or more, each must happen in
 * at least 1 seed in SCENARIO_RARITY_MAX, or the checks written for it
 * would guard nothing: false then (a change to the faults or the core
 * that stops drawing a scenario fails the run, not silently passes). */
static bool scenarios_met(
    const sim_opts *o, uint64_t seeds, const range_totals *t)
{
	static const char *names[] = {"learner promoted",
	    "leader removed itself", "new leader after it",
	    "change proposed cut off from a quorum",
	    "such a change committed after the partition"};
	uint64_t n[] = {t->promoted, t->self_removed, t->new_leader, t->cut_off,
	    t->cut_committed};
	bool need[] = {true, o->self_removal, o->self_removal, true, false};
	bool ok = true;
	printf("raft_sim: seeds with");
	for (size_t i = 0; i < PL_ARRAY_LEN(n); i++)
		printf("%s %s: %" PRIu64, i ? "," : "", names[i], n[i]);
	printf(" (of %" PRIu64 ")\n", seeds);
	for (size_t i = 0; i < PL_ARRAY_LEN(n); i++) {
		if (!need[i] || seeds < SCENARIO_SEEDS_MIN ||
		    n[i] * SCENARIO_RARITY_MAX >= seeds)
			continue;
		printf("raft_sim: scenario \"%s\" in only %" PRIu64
		       " of %" PRIu64 " seeds\n",
		    names[i], n[i], seeds);
		ok = false;
	}
	return ok;
}

/* Runs the regression seeds of o->nodes, then seeds [start, start +
 * seeds), and prints seeds per second. False at the first failure, or
 * with keep_going at the end, after counting every failing seed. */
static bool run_range(
    sim_opts o, uint64_t seeds, uint64_t start, bool keep_going)
{
	double t0 = now_s();
	uint64_t ran = 0, failed = 0;
	range_totals bt;
	memset(&bt, 0, sizeof bt);
	for (size_t i = 0; i < PL_ARRAY_LEN(regressions); i++) {
		if (regressions[i].nodes != o.nodes)
			continue;
		sim_opts r = o;
		/* The draws a regression seed was found with. */
		r.bursts = false;
		r.self_removal = false;
		r.seed = regressions[i].seed;
		r.steps =
		    regressions[i].steps ? regressions[i].steps : STEPS_DEFAULT;
		ran++;
		if (!run_one(&r, regressions[i].name, NULL))
			return false;
	}
	for (uint64_t s = start; s < start + seeds; s++) {
		o.seed = s;
		ran++;
		if (!run_one(&o, NULL, &bt) && (failed++, !keep_going))
			return false;
	}
	double dt = now_s() - t0;
	printf("raft_sim: %" PRIu64 " seeds (%d nodes, %" PRIu64
	       " steps%s) %s in %.1f s: %.0f seeds/s\n",
	    ran, o.nodes, o.steps, o.bursts ? ", bursts" : "",
	    failed ? "run" : "ok", dt,
	    dt > 0 ? (double)ran / dt : 0.0);
	if (o.bursts)
		printf("raft_sim: %" PRIu64 " bursts, %" PRIu64
		       " proposals met a full unstable log\n",
		    bt.bursts, bt.backpressure);
	if (o.membership && !scenarios_met(&o, seeds, &bt))
		failed++;
	if (failed)
		printf("raft_sim: %" PRIu64 " seeds FAILED (replay lines on "
		       "stderr)\n",
		    failed);
	fflush(stdout);
	return failed == 0;
}

int main(int argc, char **argv)
{
	sim_opts o = {.nodes = 3,
	    .steps = STEPS_DEFAULT,
	    .membership = true,
	    .self_removal = true};
	uint64_t seeds = 100, start = 1;
	bool one = false, longrun = false, nodes_set = false, keep = false;
	prog = argv[0];
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			return usage(stdout, 0);
		if (strcmp(a, "--verbose") == 0) {
			o.verbose = true;
			continue;
		}
		if (strcmp(a, "--no-membership") == 0) {
			o.membership = false;
			continue;
		}
		if (strcmp(a, "--no-self-removal") == 0) {
			o.self_removal = false;
			continue;
		}
		if (strcmp(a, "--bursts") == 0) {
			o.bursts = true;
			continue;
		}
		if (strcmp(a, "--keep-going") == 0) {
			keep = true;
			continue;
		}
		if (strcmp(a, "--long") == 0) {
			longrun = keep = true;
			seeds = LONG_SEEDS;
			start = LONG_START;
			o.steps = LONG_STEPS;
			continue;
		}
		if (v == NULL)
			return usage(stderr, 2);
		uint64_t x = strtoull(v, NULL, 10);
		i++;
		if (strcmp(a, "--nodes") == 0 && (x == 3 || x == 5)) {
			o.nodes = (int)x;
			nodes_set = true;
		} else if (strcmp(a, "--steps") == 0 && x > 0)
			o.steps = x;
		else if (strcmp(a, "--seeds") == 0)
			seeds = x;
		else if (strcmp(a, "--start") == 0)
			start = x;
		else if (strcmp(a, "--seed") == 0) {
			o.seed = x;
			one = true;
		} else
			return usage(stderr, 2);
	}
	signal(SIGABRT, on_abort);
	if (one)
		return run_one(&o, NULL, NULL) ? 0 : 1;
	if (longrun && !nodes_set) {
		sim_opts o5 = o;
		o5.nodes = 5;
		bool ok3 = run_range(o, seeds, start, keep);
		bool ok5 = run_range(o5, seeds, start, keep);
		return ok3 && ok5 ? 0 : 1;
	}
	return run_range(o, seeds, start, keep) ? 0 : 1;
}
