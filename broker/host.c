/*
 * host.c - one broker process and the groups it hosts (host.h).
 *
 * Threads: nng's callbacks route received messages (route_batch,
 * route_peer) under the read side of h->mu; the host thread adds and
 * retires groups under its write side, so a message never reaches a
 * group being added or retired. A replica is retired (stopped, its data
 * directory renamed *.retired-<time>) once the map no longer places it
 * here and its own Raft configuration no longer names it: the group
 * went on without it (retire_check).
 *
 * Invariants:
 *  - one group id, at most one hosted replica (the map never places two
 *    replicas of a group on one broker, and the table is keyed by id);
 *  - a group's Raft node id is its broker's node id, so every group on
 *    two brokers shares one peer connection between them;
 *  - a change of the map is applied by one thread (the host thread) in
 *    version order; a map older than one applied is ignored.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <nng/nng.h>
#include <sodium.h>

#include "broker/auth.h"
#include "broker/group.h"
#include "broker/host.h"
#include "broker/net.h"
#include "broker/peer.h"
#include "cluster.pb-c.h"
#include "proto/codec.h"
#include "proto/map_client.h"
#include "proto/splice.h"

/* How long the host waits for a replica's status when it checks whether
 * a group went on without it. */
#define RETIRE_ASK_MS 500
/* How long a change to the map (self-registration) may take. */
#define REGISTER_TIMEOUT_MS 2000

typedef struct hosted {
	uint32_t id;
	brk_group *g;
} hosted;

struct brk_host {
	brk_config cfg;
	pl_metrics *metrics;
	brk_net *net;
	brk_peers *peers;
	pthread_rwlock_t mu; /* the table; read by nng callbacks */
	hosted *tab;         /* BRK_HOST_GROUPS_MAX */
	int n;
	pl_metric *m_groups, *m_map_version, *m_unrouted;

	/* Cluster mode: the map watcher, and the map the host thread is
	 * to apply next (under map_mu). */
	pl_map_watch *watch;
	pthread_mutex_t map_mu;
	pthread_cond_t map_cv;
	pl_map next;
	bool have_next, stopping;
	pthread_t thread;
	bool thread_on;
	uint64_t applied_version;
	bool registered;
	uint8_t secret[BRK_SECRET_BYTES];
};

static brk_group *group_find_locked(brk_host *h, uint32_t id)
{
	for (int i = 0; i < h->n; i++)
		if (h->tab[i].id == id)
			return h->tab[i].g;
	return NULL;
}

/* A batch for a group this broker does not host: answered at once with
 * not_leader and no hint, so the gateway asks another replica. */
static void answer_unhosted(brk_host *h, void *reply_ctx, uint32_t group)
{
	Parley__Internal__BrokerBatch b;
	parley__internal__broker_batch__init(&b);
	b.group = group;
	b.not_leader = true;
	b.epoch = "";
	nng_msg *m;
	size_t n = parley__internal__broker_batch__get_packed_size(&b);
	if (nng_msg_alloc(&m, n) != 0)
		return; /* the gateway's batch times out and it retries */
	parley__internal__broker_batch__pack(&b, nng_msg_body(m));
	brk_net_reply(h->net, reply_ctx, m);
}

static pl_status route_batch(void *ctx, void *reply_ctx, nng_msg *msg)
{
	brk_host *h = ctx;
	uint32_t group = 0;
	if (pl_splice_gw_batch_group_peek(
	        nng_msg_body(msg), nng_msg_len(msg), &group) != PL_OK) {
		pl_metric_inc(h->m_unrouted, 1);
		return PL_E_PROTO; /* freed by net.c; the sender times out */
	}
	pthread_rwlock_rdlock(&h->mu);
	/* A broker of one static group serves every batch with it: a
	 * gateway of an older release names no group. */
	brk_group *g = h->cfg.nmeta == 0 && h->n == 1
	                   ? h->tab[0].g
	                   : group_find_locked(h, group);
	pl_status st = PL_OK;
	if (g != NULL)
		st = brk_group_submit(g, reply_ctx, msg);
	pthread_rwlock_unlock(&h->mu);
	if (g == NULL) {
		pl_metric_inc(h->m_unrouted, 1);
		nng_msg_free(msg);
		answer_unhosted(h, reply_ctx, group);
		return PL_OK;
	}
	return st;
}

static pl_status route_peer(void *ctx, nng_msg *msg)
{
	brk_host *h = ctx;
	const uint8_t *p = nng_msg_body(msg);
	if (nng_msg_len(msg) < BRK_AUTH_OVERHEAD)
		return PL_E_PROTO;
	/* The sealed sender id, (group << 16) | node, in the clear: the
	 * group opens and checks the seal. */
	uint64_t sender = 0;
	for (int i = 0; i < 8; i++)
		sender = (sender << 8) | p[i];
	uint32_t group = (uint32_t)(sender >> 16);
	pthread_rwlock_rdlock(&h->mu);
	brk_group *g = group_find_locked(h, group);
	pl_status st = g != NULL ? brk_group_submit_peer(g, msg) : PL_E_NOT_FOUND;
	pthread_rwlock_unlock(&h->mu);
	if (g == NULL)
		pl_metric_inc(h->m_unrouted, 1);
	return st;
}

/* Creates a replica of a group and adds it to the table; it takes
 * batches into its queue at once and runs once group_run starts it. */
static pl_status group_add(brk_host *h, const brk_config *gc, brk_group **out)
{
	if (h->n == BRK_HOST_GROUPS_MAX)
		return PL_E_TOO_LARGE;
	brk_group *g;
	pl_status st = brk_group_new(gc, h->metrics, &g);
	if (st != PL_OK)
		return st;
	pthread_rwlock_wrlock(&h->mu);
	h->tab[h->n].id = gc->group;
	h->tab[h->n].g = g;
	h->n++;
	pthread_rwlock_unlock(&h->mu);
	pl_metric_set(h->m_groups, h->n);
	*out = g;
	return PL_OK;
}

static pl_status group_run(brk_host *h, const brk_config *gc, brk_group *g)
{
	pl_status st = brk_group_start(g, h->net,
	    gc->nreplicas > 1 || h->cfg.nmeta > 0 ? h->peers : NULL);
	if (st == PL_OK)
		PL_INFO("broker",
		    "event=group_hosted group=%u node=%llu replicas=%d",
		    (unsigned)gc->group, (unsigned long long)gc->node,
		    gc->nreplicas);
	return st; /* a group that did not start is freed at stop */
}

static pl_status group_host(brk_host *h, const brk_config *gc)
{
	brk_group *g;
	pl_status st = group_add(h, gc, &g);
	return st == PL_OK ? group_run(h, gc, g) : st;
}

static bool hosted_already(brk_host *h, uint32_t id)
{
	pthread_rwlock_rdlock(&h->mu);
	bool found = group_find_locked(h, id) != NULL;
	pthread_rwlock_unlock(&h->mu);
	return found;
}

/* The replicas of map group mg as a group config, or false when a
 * broker it names is unknown. */
static bool group_config(
    brk_host *h, const pl_map *m, const pl_map_group *mg, brk_config *out)
{
	brk_replica reps[RAFT_PEERS_MAX];
	int n = 0;
	for (int i = 0; i < mg->nreplicas && n < RAFT_PEERS_MAX; i++) {
		const pl_map_broker *b =
		    pl_map_broker_find(m, mg->replicas[i].node);
		if (b == NULL)
			return false;
		memset(&reps[n], 0, sizeof(reps[n]));
		reps[n].id = b->node;
		reps[n].learner = mg->replicas[i].learner;
		snprintf(reps[n].listen, sizeof(reps[n].listen), "%s", b->listen);
		snprintf(reps[n].peer, sizeof(reps[n].peer), "%s", b->peer);
		n++;
	}
	return brk_config_for_group(&h->cfg, mg->id, reps, n, out) == PL_OK;
}

/* Tells every hosted shard group what the map wants of it: its leader
 * follows (broker/members.c). A group the map removed, or one this
 * broker no longer holds a replica of, still gets its target, so a
 * leader the map moved away hands over and is removed. */
static void targets_set(brk_host *h, const pl_map *m)
{
	pthread_rwlock_rdlock(&h->mu);
	for (int i = 0; i < h->n; i++) {
		const pl_map_group *mg = pl_map_group_find(m, h->tab[i].id);
		if (h->tab[i].id == 0 || mg == NULL || mg->removed)
			continue;
		brk_members_target t;
		memset(&t, 0, sizeof(t));
		t.version = m->version;
		t.leader = mg->leader;
		for (int r = 0; r < mg->nreplicas; r++) {
			const pl_map_replica *rp = &mg->replicas[r];
			if (rp->learner)
				t.learners[t.nlearners++] = rp->node;
			else if (!rp->leaving)
				t.voters[t.nvoters++] = rp->node;
		}
		brk_group_set_target(h->tab[i].g, &t);
	}
	pthread_rwlock_unlock(&h->mu);
}

/* Applies a map on the host thread: peers for every broker, a replica
 * of every group placed here that is not hosted yet (a learner too: it
 * waits for the leader to add it and then catches up), and every hosted
 * group's target. */
static void map_apply(brk_host *h, const pl_map *m)
{
	if (m->version <= h->applied_version)
		return;
	for (size_t i = 0; i < m->nbrokers; i++) {
		const pl_map_broker *b = &m->brokers[i];
		if (b->node != h->cfg.node && b->state != PL_BROKER_REMOVED)
			(void)brk_peers_add(h->peers, b->node, b->peer);
		if (b->node == h->cfg.node)
			h->registered = true;
	}
	for (size_t i = 0; i < m->ngroups; i++) {
		const pl_map_group *mg = &m->groups[i];
		if (mg->removed || hosted_already(h, mg->id))
			continue;
		if (pl_map_group_replica(mg, h->cfg.node) == NULL)
			continue;
		brk_config gc;
		if (!group_config(h, m, mg, &gc)) {
			PL_WARN("broker",
			    "event=group_unplaced group=%u reason=\"a replica's "
			    "broker is not in the map\"",
			    (unsigned)mg->id);
			continue;
		}
		pl_status st = group_host(h, &gc);
		if (st != PL_OK)
			PL_ERROR("broker",
			    "event=group_start_failed group=%u err=\"%s\"",
			    (unsigned)mg->id, pl_strerror(st));
	}
	targets_set(h, m);
	h->applied_version = m->version;
	pl_metric_set(h->m_map_version, (int64_t)m->version);
}

static bool placed_here(const brk_host *h, const pl_map *m, uint32_t id)
{
	const pl_map_group *mg = pl_map_group_find(m, id);
	if (mg == NULL || mg->removed)
		return mg == NULL; /* not in the map yet: keep it */
	return pl_map_group_replica(mg, h->cfg.node) != NULL;
}

/* Stops the replica of table entry i (taken out of the table first, so
 * nothing routes to it), keeps its data under another name. */
static void retire(brk_host *h, int i, uint64_t version)
{
	pthread_rwlock_wrlock(&h->mu);
	hosted e = h->tab[i];
	h->tab[i] = h->tab[h->n - 1];
	h->n--;
	pthread_rwlock_unlock(&h->mu);
	char dir[sizeof(((brk_config *)0)->data_dir)];
	snprintf(dir, sizeof(dir), "%s", brk_group_data_dir(e.g));
	brk_group_stop(e.g);
	brk_group_free(e.g);
	char to[sizeof(dir) + 40];
	snprintf(to, sizeof(to), "%s.retired-%lld", dir,
	    (long long)(pl_now_us() / 1000000));
	bool kept = rename(dir, to) == 0;
	pl_metric_set(h->m_groups, h->n);
	PL_INFO("broker",
	    "event=replica_retired group=%u map_version=%llu data=%s",
	    (unsigned)e.id, (unsigned long long)version, kept ? to : dir);
}

/* Whether the group went on without this broker: its own log says it
 * was removed, or the group's leader (asked through the replicas the map
 * places) has a configuration without it. A leader removes a replica by
 * appending the change, and sends it nothing after, so the removed
 * replica rarely learns it from its own log. */
static bool gone_from_group(brk_host *h, const pl_map *m, uint32_t id,
    brk_group *g)
{
	if (!brk_group_in_conf(g))
		return true;
	const pl_map_group *mg = pl_map_group_find(m, id);
	for (int r = 0; mg != NULL && r < mg->nreplicas; r++) {
		const pl_map_broker *b =
		    pl_map_broker_find(m, mg->replicas[r].node);
		pl_replica_info x;
		if (b == NULL || b->node == h->cfg.node ||
		    pl_replica_status(b->listen, id, RETIRE_ASK_MS, &x) != PL_OK ||
		    strcmp(x.role, "leader") != 0)
			continue;
		for (int v = 0; v < x.nvoters; v++)
			if (x.voters[v] == h->cfg.node)
				return false;
		for (int l = 0; l < x.nlearners; l++)
			if (x.learners[l] == h->cfg.node)
				return false;
		return true;
	}
	return false;
}

/* Retires every hosted shard-group replica the map no longer places here
 * once the group went on without it. The meta group's membership comes
 * from configs, never from the map. */
static void retire_check(brk_host *h, const pl_map *m)
{
	if (m->version == 0)
		return;
	for (int i = h->n - 1; i >= 0; i--) {
		uint32_t id = h->tab[i].id; /* the table changes on this thread */
		if (id != 0 && !placed_here(h, m, id) &&
		    gone_from_group(h, m, id, h->tab[i].g))
			retire(h, i, m->version);
	}
}

/* Adds this broker to the map (idempotent: a retry of an applied add is
 * a no-op). */
static void register_self(brk_host *h, const char *const *addrs, int n)
{
	Parley__Cluster__Broker b = PARLEY__CLUSTER__BROKER__INIT;
	Parley__Cluster__BrokerAdd ba = PARLEY__CLUSTER__BROKER_ADD__INIT;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	b.node = h->cfg.node;
	b.name = h->cfg.id;
	b.listen = h->cfg.listen;
	b.peer = h->cfg.peer;
	ba.broker = &b;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_BROKER_ADD;
	c.broker_add = &ba;
	uint8_t buf[1024];
	if (parley__cluster__change__get_packed_size(&c) > sizeof(buf))
		return;
	size_t len = parley__cluster__change__pack(&c, buf);
	bool changed = false;
	char why[160] = "";
	pl_status st = pl_map_change(addrs, n, h->secret, buf, len,
	    REGISTER_TIMEOUT_MS, &changed, NULL, why, sizeof(why));
	if (st == PL_OK) {
		h->registered = true;
		PL_INFO("broker", "event=registered node=%llu changed=%d",
		    (unsigned long long)h->cfg.node, changed);
	} else if (st != PL_E_UNAVAILABLE && st != PL_E_TIMEOUT) {
		PL_ERROR("broker", "event=register_refused err=\"%s\" why=\"%s\"",
		    pl_strerror(st), why);
	}
}

static void on_map(void *ctx, const pl_map *m)
{
	brk_host *h = ctx;
	pthread_mutex_lock(&h->map_mu);
	pl_map_fini(&h->next);
	pl_map_init(&h->next);
	if (pl_map_copy(&h->next, m) == PL_OK)
		h->have_next = true;
	pthread_cond_signal(&h->map_cv);
	pthread_mutex_unlock(&h->map_mu);
}

static void *host_main(void *arg)
{
	brk_host *h = arg;
	const char *addrs[RAFT_PEERS_MAX];
	for (int i = 0; i < h->cfg.nmeta; i++)
		addrs[i] = h->cfg.meta[i].listen;
	pl_map m;
	pl_map_init(&m);
	pthread_mutex_lock(&h->map_mu);
	while (!h->stopping) {
		if (!h->have_next) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&h->map_cv, &h->map_mu, &ts);
		}
		bool fresh = h->have_next;
		if (fresh) {
			pl_map_fini(&m);
			m = h->next; /* moved */
			pl_map_init(&h->next);
			h->have_next = false;
		}
		pthread_mutex_unlock(&h->map_mu);
		if (fresh)
			map_apply(h, &m);
		retire_check(h, &m);
		if (!h->registered)
			register_self(h, addrs, h->cfg.nmeta);
		pthread_mutex_lock(&h->map_mu);
	}
	pthread_mutex_unlock(&h->map_mu);
	pl_map_fini(&m);
	return NULL;
}

/* The cluster half of start: the meta replica, the watch and the host
 * thread. */
static pl_status cluster_start(brk_host *h)
{
	/* Groups live in directories under the broker's. */
	if (mkdir(h->cfg.data_dir, 0700) != 0 && errno != EEXIST) {
		PL_ERROR("broker", "event=data_dir_failed dir=%s err=\"%s\"",
		    h->cfg.data_dir, strerror(errno));
		return PL_E_IO;
	}
	_Static_assert(PL_SECRET_BYTES == BRK_SECRET_BYTES, "one secret size");
	pl_status st = pl_secret_file_load(h->cfg.secret_file, h->secret);
	if (st != PL_OK) {
		PL_ERROR("broker", "event=secret_unreadable file=%s",
		    h->cfg.secret_file);
		return st;
	}
	for (int i = 0; i < h->cfg.nmeta; i++) {
		if (h->cfg.meta[i].id != h->cfg.node)
			continue;
		brk_config gc;
		st = brk_config_for_group(
		    &h->cfg, 0, h->cfg.meta, h->cfg.nmeta, &gc);
		if (st == PL_OK)
			st = group_host(h, &gc);
		if (st != PL_OK)
			return st;
	}
	const char *addrs[RAFT_PEERS_MAX];
	for (int i = 0; i < h->cfg.nmeta; i++)
		addrs[i] = h->cfg.meta[i].listen;
	st = pl_map_watch_start(
	    addrs, h->cfg.nmeta, 0, on_map, h, &h->watch);
	if (st != PL_OK)
		return st;
	if (pthread_create(&h->thread, NULL, host_main, h) != 0)
		return PL_E_NOMEM;
	h->thread_on = true;
	return PL_OK;
}

pl_status brk_host_start(
    const brk_config *cfg, pl_metrics *metrics, brk_host **out)
{
	brk_host *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return PL_E_NOMEM;
	h->tab = calloc(BRK_HOST_GROUPS_MAX, sizeof(*h->tab));
	if (h->tab == NULL) {
		free(h);
		return PL_E_NOMEM;
	}
	h->cfg = *cfg;
	h->metrics = metrics;
	pthread_rwlock_init(&h->mu, NULL);
	pthread_mutex_init(&h->map_mu, NULL);
	pthread_cond_init(&h->map_cv, NULL);
	pl_map_init(&h->next);
	h->m_groups = pl_metrics_add(metrics, PL_METRIC_GAUGE,
	    "parley_broker_groups", "Group replicas this broker hosts");
	h->m_map_version = pl_metrics_add(metrics, PL_METRIC_GAUGE,
	    "parley_broker_map_version",
	    "Version of the cluster map this broker applied");
	h->m_unrouted = pl_metrics_add(metrics, PL_METRIC_COUNTER,
	    "parley_broker_unrouted_total",
	    "Messages for a group this broker does not host (answered "
	    "not_leader, or dropped for peers: Raft sends again)");
	pl_status st = PL_OK;
	brk_group *single = NULL;
	if (h->m_groups == NULL || h->m_map_version == NULL ||
	    h->m_unrouted == NULL)
		st = PL_E_NOMEM;
	/* A static group is in the table before the socket listens, so no
	 * gateway batch finds the broker without it. */
	if (st == PL_OK && cfg->nmeta == 0)
		st = group_add(h, &h->cfg, &single);
	if (st == PL_OK)
		st = brk_net_start(&h->cfg, route_batch, h, metrics, &h->net);
	if (st == PL_OK && (cfg->nmeta > 0 || cfg->nreplicas > 1))
		st = brk_peers_start(&h->cfg, route_peer, h, &h->peers);
	if (st == PL_OK && cfg->nmeta > 0) {
		for (int i = 0; i < cfg->nmeta && st == PL_OK; i++)
			if (cfg->meta[i].id != cfg->node)
				st = brk_peers_add(h->peers, cfg->meta[i].id,
				    cfg->meta[i].peer);
		if (st == PL_OK)
			st = cluster_start(h);
	} else if (st == PL_OK) {
		st = group_run(h, &h->cfg, single);
	}
	if (st != PL_OK) {
		brk_host_stop(h);
		return st;
	}
	*out = h;
	return PL_OK;
}

int brk_host_groups(brk_host *h)
{
	pthread_rwlock_rdlock(&h->mu);
	int n = h->n;
	pthread_rwlock_unlock(&h->mu);
	return n;
}

/* Every hosted group told to hand over (under the table's read lock:
 * the host thread may add one meanwhile); how many still lead. */
static int handoff_count(brk_host *h, bool ask)
{
	int leading = 0;
	pthread_rwlock_rdlock(&h->mu);
	for (int i = 0; i < h->n; i++) {
		if (ask)
			brk_group_handoff(h->tab[i].g);
		leading += brk_group_leads(h->tab[i].g);
	}
	pthread_rwlock_unlock(&h->mu);
	return leading;
}

void brk_host_handoff(brk_host *h)
{
	if (handoff_count(h, true) == 0)
		return;
	int64_t end = pl_mono_us() + (int64_t)BRK_HOST_HANDOFF_MS * 1000;
	/* The group threads publish whether they lead every 50 ms. */
	struct timespec pause = {0, 60 * 1000 * 1000};
	nanosleep(&pause, NULL);
	for (;;) {
		int leading = handoff_count(h, true);
		if (leading == 0 || pl_mono_us() >= end) {
			if (leading > 0)
				PL_WARN("broker",
				    "event=handoff_incomplete groups=%d",
				    leading);
			return;
		}
		pause.tv_nsec = 20 * 1000 * 1000;
		nanosleep(&pause, NULL);
	}
}

void brk_host_stop(brk_host *h)
{
	if (h == NULL)
		return;
	/* The map first (no group is added any more), then the groups (no
	 * more replies through net, no more sends), then the transports
	 * (no more submissions), then the groups' memory. */
	pl_map_watch_stop(h->watch);
	if (h->thread_on) {
		pthread_mutex_lock(&h->map_mu);
		h->stopping = true;
		pthread_cond_signal(&h->map_cv);
		pthread_mutex_unlock(&h->map_mu);
		pthread_join(h->thread, NULL);
	}
	for (int i = 0; i < h->n; i++)
		brk_group_stop(h->tab[i].g);
	brk_peers_stop(h->peers);
	brk_net_stop(h->net);
	for (int i = 0; i < h->n; i++)
		brk_group_free(h->tab[i].g);
	pl_map_fini(&h->next);
	sodium_memzero(h->secret, sizeof(h->secret));
	pthread_cond_destroy(&h->map_cv);
	pthread_mutex_destroy(&h->map_mu);
	pthread_rwlock_destroy(&h->mu);
	free(h->tab);
	free(h);
}
