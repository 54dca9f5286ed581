/*
 * ctl_cluster.c - parleyctl's cluster operations that change the map and
 * then watch the groups follow it (docs/cluster.md "Following the map"):
 *
 *   cluster status             every broker and group: leader, term,
 *                              commit, each replica's role, lag, rooms,
 *                              disk, configuration
 *   replica move G --from A --to B
 *                              B joins as a learner, catches up, votes,
 *                              then A leaves
 *   broker drain --node N      no new replica on N, then each of its
 *                              replicas moved to the least loaded active
 *                              broker (--keep-replicas: only the state)
 *   leader rebalance [--avoid N,...]
 *                              preferred leaders spread again; waits
 *                              until the groups' leaders follow
 *   broker prepare-restart --node N
 *                              preference moved off N; waits until N
 *                              leads no shard group
 *
 * Every map change is idempotent, so a command interrupted or timed out
 * is run again as it was: the steps already in effect say "unchanged".
 * Replicas are asked directly for their status (pl_replica_status, any
 * broker's rep0 address), so these need only --meta and --secret.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/ctl.h"

#define STATUS_MS 1000
#define POLL_MS 200
#define MOVE_TIMEOUT_S 300
#define LEADERS_TIMEOUT_S 60
/* A learner this close to the leader's commit index is caught up (the
 * leader checks the same before it promotes: broker/members.c). */
#define CATCHUP_SLACK 256

/* What the replicas of one group said. */
typedef struct obs {
	uint64_t node[PL_MAP_REPLICAS_MAX + 1];
	pl_replica_info r[PL_MAP_REPLICAS_MAX + 1];
	bool ok[PL_MAP_REPLICAS_MAX + 1];
	int n;
	int lead; /* index of the replica leading the highest term, or -1 */
} obs;

static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static bool has(const uint64_t *ids, int n, uint64_t id)
{
	for (int i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/* Asks every replica the map places for group g, and node extra (a
 * replica leaving, 0 none). */
static void observe(const pl_map *m, const pl_map_group *g, uint64_t extra,
    obs *o)
{
	memset(o, 0, sizeof(*o));
	o->lead = -1;
	for (int i = 0; i < g->nreplicas; i++)
		o->node[o->n++] = g->replicas[i].node;
	if (extra != 0 && !has(o->node, o->n, extra))
		o->node[o->n++] = extra;
	for (int i = 0; i < o->n; i++) {
		const pl_map_broker *b = pl_map_broker_find(m, o->node[i]);
		o->ok[i] = b != NULL && pl_replica_status(b->listen, g->id,
		                            STATUS_MS, &o->r[i]) == PL_OK;
		if (o->ok[i] && strcmp(o->r[i].role, "leader") == 0 &&
		    (o->lead < 0 || o->r[i].term > o->r[o->lead].term))
			o->lead = i;
	}
}

static void ids_print(const char *label, const uint64_t *ids, int n)
{
	printf(" %s=", label);
	for (int i = 0; i < n; i++)
		printf("%s%" PRIu64, i ? "," : "", ids[i]);
	if (n == 0)
		printf("-");
}

/* ---- cluster status ---- */

int ctl_cluster_status(const ctl_args *a)
{
	/* --secret is accepted (and unused) so one environment serves
	 * every cluster command. */
	if (!ctl_args_check(a, "meta,secret", 1, 1))
		return ctl_usage();
	pl_map m;
	int rc = ctl_map_get(a, &m);
	if (rc != 0)
		return rc;
	obs *os = calloc(m.ngroups + 1, sizeof(*os));
	if (os == NULL) {
		pl_map_fini(&m);
		return ctl_fail("internal", "out of memory");
	}
	int leaderless = 0;
	for (size_t i = 0; i < m.ngroups; i++) {
		if (!m.groups[i].removed) {
			observe(&m, &m.groups[i], 0, &os[i]);
			leaderless += os[i].lead < 0;
		}
	}
	printf("map version %" PRIu64 ": %zu brokers, %zu groups, %zu "
	       "tenants\n",
	    m.version, m.nbrokers, m.ngroups, m.ntenants);
	for (size_t b = 0; b < m.nbrokers; b++) {
		const pl_map_broker *br = &m.brokers[b];
		int leads = 0, prefers = 0;
		for (size_t i = 0; i < m.ngroups; i++) {
			const obs *o = &os[i];
			leads += o->lead >= 0 && o->node[o->lead] == br->node;
			prefers += m.groups[i].leader == br->node;
		}
		printf("broker %" PRIu64 " %s %s replicas=%d leads=%d "
		       "preferred=%d listen=%s\n",
		    br->node, br->name, pl_map_broker_state_name(br->state),
		    pl_map_replicas_on(&m, br->node), leads, prefers,
		    br->listen);
	}
	for (size_t i = 0; i < m.ngroups; i++) {
		const pl_map_group *g = &m.groups[i];
		const obs *o = &os[i];
		if (g->removed) {
			printf("group %u removed\n", g->id);
			continue;
		}
		const pl_replica_info *l = o->lead >= 0 ? &o->r[o->lead] : NULL;
		printf("group %u%s weight=%u preferred=%" PRIu64, g->id,
		    g->draining ? " draining" : "", g->weight, g->leader);
		if (l != NULL) {
			printf(" leader=%" PRIu64 " term=%" PRIu64
			       " commit=%" PRIu64,
			    l->node, l->term, l->commit);
			ids_print("voters", l->voters, l->nvoters);
			ids_print("learners", l->learners, l->nlearners);
		} else {
			printf(" leader=none");
		}
		printf("\n");
		for (int r = 0; r < o->n; r++) {
			const pl_map_replica *mr = pl_map_group_replica(g, o->node[r]);
			printf("  replica %" PRIu64 "%s: ", o->node[r],
			    mr != NULL && mr->learner ? " (learner)" : "");
			if (!o->ok[r]) {
				printf("unreachable\n");
				continue;
			}
			const pl_replica_info *x = &o->r[r];
			uint64_t top = l != NULL ? l->commit : x->commit;
			printf("%s term=%" PRIu64 " applied=%" PRIu64
			       " lag=%" PRIu64 " rooms=%" PRIu64
			       " disk=%" PRIu64 "/%" PRIu64 " MiB%s\n",
			    x->role, x->term, x->applied,
			    top > x->applied ? top - x->applied : 0, x->rooms,
			    x->map_used >> 20, x->map_size >> 20,
			    x->repairing ? " repairing" : "");
		}
	}
	free(os);
	pl_map_fini(&m);
	if (leaderless > 0) {
		fprintf(stderr, "warning: %d group(s) without a leader\n",
		    leaderless);
		return EXIT_FAIL;
	}
	return 0;
}

/* ---- waiting for a group to follow ---- */

typedef bool (*done_fn)(const pl_map_group *g, const obs *o, const void *arg);

/* Polls group id (the map fetched again each time: its replicas move)
 * until done says so or timeout_s pass; prints what it waited for. */
static int wait_for(const ctl_args *a, uint32_t id, uint64_t extra,
    done_fn done, const void *arg, const char *what, int timeout_s)
{
	int64_t t0 = pl_mono_us(), end = t0 + (int64_t)timeout_s * 1000000;
	for (;;) {
		pl_map m;
		int rc = ctl_map_get(a, &m);
		if (rc != 0)
			return rc;
		const pl_map_group *g = pl_map_group_find(&m, id);
		bool ok = false;
		if (g != NULL) {
			obs o;
			observe(&m, g, extra, &o);
			ok = done(g, &o, arg);
		}
		pl_map_fini(&m);
		int64_t now = pl_mono_us();
		if (ok) {
			printf("group %u: %s (%.1f s)\n", id, what,
			    (double)(now - t0) / 1e6);
			return 0;
		}
		if (now >= end) {
			char msg[200];
			snprintf(msg, sizeof(msg),
			    "group %u: not %s after %d s; run the command "
			    "again to go on waiting",
			    id, what, timeout_s);
			return ctl_fail("timeout", msg);
		}
		pause_ms(POLL_MS);
	}
}

static const pl_replica_info *info_of(const obs *o, uint64_t node)
{
	for (int i = 0; i < o->n; i++)
		if (o->node[i] == node && o->ok[i])
			return &o->r[i];
	return NULL;
}

/* The leader's configuration holds node as a learner and its replica
 * applied within CATCHUP_SLACK of the leader's commit. */
static bool caught_up(const pl_map_group *g, const obs *o, const void *arg)
{
	uint64_t node = *(const uint64_t *)arg;
	(void)g;
	if (o->lead < 0)
		return false;
	const pl_replica_info *l = &o->r[o->lead], *x = info_of(o, node);
	return x != NULL &&
	       (has(l->learners, l->nlearners, node) ||
	           has(l->voters, l->nvoters, node)) &&
	       x->applied + CATCHUP_SLACK >= l->commit;
}

static bool votes(const pl_map_group *g, const obs *o, const void *arg)
{
	uint64_t node = *(const uint64_t *)arg;
	(void)g;
	return o->lead >= 0 &&
	       has(o->r[o->lead].voters, o->r[o->lead].nvoters, node);
}

static bool gone(const pl_map_group *g, const obs *o, const void *arg)
{
	uint64_t node = *(const uint64_t *)arg;
	(void)g;
	if (o->lead < 0)
		return false;
	const pl_replica_info *l = &o->r[o->lead];
	return l->node != node && !has(l->voters, l->nvoters, node) &&
	       !has(l->learners, l->nlearners, node);
}

/* ---- replica move ---- */

static int step(const ctl_args *a, int op, uint32_t group, uint64_t node)
{
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	Parley__Cluster__ReplicaAdd ra = PARLEY__CLUSTER__REPLICA_ADD__INIT;
	Parley__Cluster__ReplicaPromote rp =
	    PARLEY__CLUSTER__REPLICA_PROMOTE__INIT;
	Parley__Cluster__ReplicaRemove rr =
	    PARLEY__CLUSTER__REPLICA_REMOVE__INIT;
	c.op_case = op;
	if (op == PARLEY__CLUSTER__CHANGE__OP_REPLICA_ADD) {
		ra.group = group, ra.node = node, c.replica_add = &ra;
		printf("group %u: broker %" PRIu64 " joins as a learner: ",
		    group, node);
	} else if (op == PARLEY__CLUSTER__CHANGE__OP_REPLICA_PROMOTE) {
		rp.group = group, rp.node = node, c.replica_promote = &rp;
		printf("group %u: broker %" PRIu64 " votes: ", group, node);
	} else {
		rr.group = group, rr.node = node, c.replica_remove = &rr;
		printf("group %u: broker %" PRIu64 " leaves: ", group, node);
	}
	fflush(stdout);
	return ctl_change_send(a, &c);
}

/* The steps of a move from the one the map shows: a rerun after an
 * interruption picks up where it stopped (a voter on `to` is not added
 * again: the map refuses a learner where a voter is). */
static int move_one(const ctl_args *a, uint32_t group, uint64_t from,
    uint64_t to, int timeout_s)
{
	int64_t t0 = pl_mono_us();
	pl_map m;
	int rc = ctl_map_get(a, &m);
	if (rc != 0)
		return rc;
	const pl_map_group *g = pl_map_group_find(&m, group);
	const pl_map_replica *dst = g != NULL ? pl_map_group_replica(g, to) : NULL;
	bool voting = dst != NULL && !dst->learner && !dst->leaving;
	pl_map_fini(&m);
	if (voting) {
		if ((rc = wait_for(a, group, 0, votes, &to,
		         "new replica votes", timeout_s)) != 0)
			return rc;
	} else if ((rc = step(a, PARLEY__CLUSTER__CHANGE__OP_REPLICA_ADD,
	                group, to)) != 0 ||
	    (rc = wait_for(a, group, 0, caught_up, &to, "learner caught up",
	         timeout_s)) != 0 ||
	    (rc = step(a, PARLEY__CLUSTER__CHANGE__OP_REPLICA_PROMOTE, group,
	         to)) != 0 ||
	    (rc = wait_for(a, group, 0, votes, &to, "new replica votes",
	         timeout_s)) != 0)
		return rc;
	if ((rc = step(a, PARLEY__CLUSTER__CHANGE__OP_REPLICA_REMOVE, group,
	         from)) != 0 ||
	    (rc = wait_for(a, group, from, gone, &from, "old replica removed",
	         timeout_s)) != 0)
		return rc;
	printf("group %u: moved from broker %" PRIu64 " to %" PRIu64
	       " in %.1f s\n",
	    group, from, to, (double)(pl_mono_us() - t0) / 1e6);
	return 0;
}

static bool timeout_opt(const ctl_args *a, int def, int *out)
{
	uint64_t v = (uint64_t)def;
	if (!ctl_opt_u64(a, "timeout", &v) || v == 0 || v > 86400)
		return false;
	*out = (int)v;
	return true;
}

/* replica move G --from A --to B [--timeout S] */
int ctl_replica(const ctl_args *a)
{
	uint64_t group, from = 0, to = 0;
	int timeout_s;
	if (a->npos != 2 || strcmp(a->pos[0], "move") != 0 ||
	    !ctl_args_check(a, "meta,secret,from,to,timeout", 2, 2) ||
	    !ctl_parse_u64(a->pos[1], &group) || group == 0 ||
	    group > 65535 || !ctl_opt_u64(a, "from", &from) ||
	    !ctl_opt_u64(a, "to", &to) || from == 0 || to == 0 ||
	    !timeout_opt(a, MOVE_TIMEOUT_S, &timeout_s))
		return ctl_usage();
	if (from == to)
		return ctl_fail("bad_request", "--from and --to are the same");
	pl_map m;
	int rc = ctl_map_get(a, &m);
	if (rc != 0)
		return rc;
	const pl_map_group *g = pl_map_group_find(&m, (uint32_t)group);
	const pl_map_replica *src = g != NULL ? pl_map_group_replica(g, from) : NULL;
	const pl_map_replica *dst = g != NULL ? pl_map_group_replica(g, to) : NULL;
	bool found = g != NULL, either = src != NULL || dst != NULL;
	pl_map_fini(&m);
	if (!found)
		return ctl_fail("not_found", "no such group in the map");
	if (!either)
		return ctl_fail("not_found",
		    "broker --from holds no replica of the group");
	return move_one(a, (uint32_t)group, from, to, timeout_s);
}

/* ---- broker drain ---- */

/* The active broker without a replica of g holding the fewest replicas
 * (ties to the lower node), or 0. */
static uint64_t target_for(const pl_map *m, const pl_map_group *g)
{
	uint64_t best = 0;
	int best_n = 0;
	for (size_t i = 0; i < m->nbrokers; i++) {
		const pl_map_broker *b = &m->brokers[i];
		if (b->state != PL_BROKER_ACTIVE || pl_map_group_replica(g, b->node))
			continue;
		int n = pl_map_replicas_on(m, b->node);
		if (best == 0 || n < best_n) {
			best = b->node;
			best_n = n;
		}
	}
	return best;
}

int ctl_broker_drain(const ctl_args *a, uint64_t node)
{
	int timeout_s;
	if (!ctl_args_check(a, "meta,secret,node,keep-replicas,timeout", 1, 1) ||
	    !timeout_opt(a, MOVE_TIMEOUT_S, &timeout_s))
		return ctl_usage();
	Parley__Cluster__BrokerSetState bs =
	    PARLEY__CLUSTER__BROKER_SET_STATE__INIT;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	bs.node = node;
	bs.state = PARLEY__CLUSTER__BROKER_STATE__BROKER_DRAINING;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_BROKER_STATE;
	c.broker_state = &bs;
	printf("broker %" PRIu64 " drains: ", node);
	fflush(stdout);
	int rc = ctl_change_send(a, &c);
	if (rc != 0 || ctl_opt(a, "keep-replicas") != NULL)
		return rc;
	for (;;) {
		pl_map m;
		if ((rc = ctl_map_get(a, &m)) != 0)
			return rc;
		uint32_t group = 0;
		uint64_t to = 0;
		for (size_t i = 0; i < m.ngroups && group == 0; i++) {
			const pl_map_group *g = &m.groups[i];
			if (!g->removed && pl_map_group_replica(g, node) != NULL) {
				group = g->id;
				to = target_for(&m, g);
			}
		}
		pl_map_fini(&m);
		if (group == 0)
			break;
		if (to == 0) {
			char msg[160];
			snprintf(msg, sizeof(msg),
			    "group %u: no active broker without a replica of "
			    "it to move to (add a broker)",
			    group);
			return ctl_fail("unavailable", msg);
		}
		if ((rc = move_one(a, group, node, to, timeout_s)) != 0)
			return rc;
	}
	printf("broker %" PRIu64 " holds no replica: stop it, then "
	       "`parleyctl broker remove --node %" PRIu64 "`\n",
	    node, node);
	return 0;
}

/* ---- leaders ---- */

static int rebalance(const ctl_args *a, const uint64_t *avoid, size_t n)
{
	Parley__Cluster__LeaderRebalance lr =
	    PARLEY__CLUSTER__LEADER_REBALANCE__INIT;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	lr.avoid = (uint64_t *)avoid;
	lr.n_avoid = n;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_LEADER_REBALANCE;
	c.leader_rebalance = &lr;
	printf("preferred leaders: ");
	fflush(stdout);
	return ctl_change_send(a, &c);
}

/* Waits until every shard group is led by its preferred leader, or, with
 * avoid != 0, until none is led by broker avoid. */
static int leaders_wait(const ctl_args *a, uint64_t avoid, int timeout_s)
{
	int64_t t0 = pl_mono_us(), end = t0 + (int64_t)timeout_s * 1000000;
	for (;;) {
		pl_map m;
		int rc = ctl_map_get(a, &m);
		if (rc != 0)
			return rc;
		int off = 0, total = 0;
		for (size_t i = 0; i < m.ngroups; i++) {
			const pl_map_group *g = &m.groups[i];
			if (g->removed)
				continue;
			obs o;
			observe(&m, g, 0, &o);
			uint64_t lead = o.lead >= 0 ? o.node[o.lead] : 0;
			total++;
			off += avoid != 0 ? lead == avoid || lead == 0
			                  : lead != g->leader;
		}
		pl_map_fini(&m);
		int64_t now = pl_mono_us();
		if (off == 0) {
			printf("%d group(s) led as preferred (%.1f s)\n", total,
			    (double)(now - t0) / 1e6);
			return 0;
		}
		if (now >= end) {
			char msg[160];
			snprintf(msg, sizeof(msg),
			    "%d of %d group(s) not led as preferred after %d s",
			    off, total, timeout_s);
			return ctl_fail("timeout", msg);
		}
		pause_ms(POLL_MS);
	}
}

/* leader rebalance [--avoid N[,N...]] [--timeout S] */
int ctl_leader(const ctl_args *a)
{
	int timeout_s;
	if (a->npos != 1 || strcmp(a->pos[0], "rebalance") != 0 ||
	    !ctl_args_check(a, "meta,secret,avoid,timeout", 1, 1) ||
	    !timeout_opt(a, LEADERS_TIMEOUT_S, &timeout_s))
		return ctl_usage();
	uint64_t avoid[16];
	size_t n = 0;
	const char *v = ctl_opt(a, "avoid");
	while (v != NULL && *v != '\0' && n < PL_ARRAY_LEN(avoid)) {
		char *end;
		unsigned long long x = strtoull(v, &end, 10);
		if (end == v || x == 0 || (*end != ',' && *end != '\0'))
			return ctl_usage();
		avoid[n++] = x;
		v = *end == ',' ? end + 1 : end;
	}
	int rc = rebalance(a, avoid, n);
	if (rc == 0)
		rc = leaders_wait(a, n == 1 ? avoid[0] : 0, timeout_s);
	return rc;
}

/* broker prepare-restart --node N [--timeout S] */
int ctl_broker_prepare_restart(const ctl_args *a, uint64_t node)
{
	int timeout_s;
	if (!ctl_args_check(a, "meta,secret,node,timeout", 1, 1) ||
	    !timeout_opt(a, LEADERS_TIMEOUT_S, &timeout_s))
		return ctl_usage();
	int rc = rebalance(a, &node, 1);
	if (rc == 0)
		rc = leaders_wait(a, node, timeout_s);
	if (rc == 0)
		printf("broker %" PRIu64 " leads no shard group: restart it "
		       "(it hands the meta group over as it stops), wait for "
		       "`cluster status` to show it caught up, then "
		       "`parleyctl leader rebalance`\n",
		    node);
	return rc;
}
