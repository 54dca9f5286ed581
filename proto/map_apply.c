/*
 * map_apply.c - pl_map_apply: one encoded parley.cluster.Change, decoded
 * and dispatched to one function per Change (brokers, groups, membership
 * steps, tenants, keys, defaults, leader rebalance), with the placement
 * of new groups' replicas and the choice of their preferred leaders.
 * docs/cluster.md lists the rules of each change; an op checks everything
 * before it touches the map, so a refusal leaves it as it was.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.pb-c.h"
#include "proto/codec.h"
#include "proto/map.h"
#include "proto/map_internal.h"

/* A Change names one broker, group, tenant or key: a few hundred bytes.
 * 64 KiB bounds the unpacking of anything sent as one. */
#define CHANGE_BYTES_MAX (64u * 1024)
/* Groups named in a refusal's reason before "...". */
#define WHY_GROUPS_MAX 8

_Static_assert(PL_MAP_REPLICAS_MAX == 7, "GroupAdd allows 1, 3, 5 or 7");

/* ---- apply: helpers ---- */

/* The replica of g in a membership step (a learner catching up or a
 * leaving voter), or NULL: a group takes one step at a time. */
static const pl_map_replica *group_step(const pl_map_group *g)
{
	for (int i = 0; i < g->nreplicas; i++) {
		if (g->replicas[i].learner || g->replicas[i].leaving)
			return &g->replicas[i];
	}
	return NULL;
}

/* Groups whose preferred leader is node (removed groups have none). */
static int leads_of(const pl_map *m, uint64_t node)
{
	int n = 0;
	for (size_t i = 0; i < m->ngroups; i++)
		n += m->groups[i].leader == node;
	return n;
}

typedef struct apply {
	pl_map *m;
	char *why;
	size_t why_len;
	bool changed;
} apply;

static pl_status say(apply *a, pl_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static pl_status say(apply *a, pl_status st, const char *fmt, ...)
{
	if (a->why != NULL && a->why_len > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(a->why, a->why_len, fmt, ap);
		va_end(ap);
	}
	return st;
}

/* A non-empty string of at most max bytes (UTF-8 without NUL was checked
 * on the wire). */
static pl_status check_text(
    apply *a, const char *what, const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	if (n == 0)
		return say(a, PL_E_BAD_REQUEST, "%s is empty", what);
	if (n > max)
		return say(
		    a, PL_E_TOO_LARGE, "%s exceeds %zu bytes", what, max);
	return PL_OK;
}

static pl_status check_slug(
    apply *a, const char *what, const char *s, size_t max)
{
	if (strnlen(s, max + 1) > max)
		return say(
		    a, PL_E_TOO_LARGE, "%s exceeds %zu bytes", what, max);
	if (!pl_slug_ok(s, max))
		return say(a, PL_E_BAD_REQUEST,
		    "%s \"%s\" is not a slug of [A-Za-z0-9._-]", what, s);
	return PL_OK;
}

/* The map, grown by extra bytes, still encodes within PL_MAP_BYTES_MAX. */
static pl_status check_fits(apply *a, size_t extra)
{
	size_t n = mi_map_bytes_bound(a->m) + extra;
	if (n <= PL_MAP_BYTES_MAX)
		return PL_OK;
	return say(a, PL_E_TOO_LARGE, "the map would exceed %u bytes",
	    PL_MAP_BYTES_MAX);
}

/* Makes room for one element at index at of *arr (n elements of sz
 * bytes), zeroed; the array keeps its contents on PL_E_NOMEM. */
static pl_status insert_at(void **arr, size_t *n, size_t sz, size_t at)
{
	uint8_t *p = realloc(*arr, (*n + 1) * sz);
	if (p == NULL)
		return PL_E_NOMEM;
	memmove(p + (at + 1) * sz, p + at * sz, (*n - at) * sz);
	memset(p + at * sz, 0, sz);
	*arr = p;
	(*n)++;
	return PL_OK;
}

static bool limits_eq(const pl_map_limits *x, const pl_map_limits *y)
{
	return x->connections_max == y->connections_max &&
	       x->publish_per_sec == y->publish_per_sec &&
	       x->rooms_open_max == y->rooms_open_max &&
	       x->stored_bytes_max == y->stored_bytes_max;
}

/* ---- apply: brokers ---- */

static pl_status broker_add_check(apply *a, const Parley__Cluster__Broker *b)
{
	pl_status st;
	if (b->node == 0)
		return say(a, PL_E_BAD_REQUEST, "broker node must be > 0");
	if ((st = check_text(
	         a, "broker name", b->name, PL_MAP_NAME_CHARS_MAX)) != PL_OK ||
	    (st = check_text(a, "broker listen", b->listen,
	         PL_MAP_ADDR_CHARS_MAX)) != PL_OK ||
	    (st = check_text(
	         a, "broker peer", b->peer, PL_MAP_ADDR_CHARS_MAX)) != PL_OK)
		return st;
	if (b->state != PARLEY__CLUSTER__BROKER_STATE__BROKER_ACTIVE)
		return say(a, PL_E_BAD_REQUEST,
		    "a broker is added active (set its state afterwards)");
	if (strcmp(b->listen, b->peer) == 0)
		return say(a, PL_E_FORBIDDEN,
		    "broker %" PRIu64 ": listen and peer are one address %s",
		    b->node, b->listen);
	return PL_OK;
}

static pl_status op_broker_add(apply *a, const Parley__Cluster__BrokerAdd *c)
{
	const Parley__Cluster__Broker *b = c->broker;
	if (b == NULL)
		return say(a, PL_E_BAD_REQUEST, "broker_add names no broker");
	pl_status st = broker_add_check(a, b);
	if (st != PL_OK)
		return st;
	pl_map *m = a->m;
	bool found;
	size_t i = mi_broker_at(m, b->node, &found);
	if (found) {
		const pl_map_broker *o = &m->brokers[i];
		if (o->state == PL_BROKER_REMOVED)
			return say(a, PL_E_FORBIDDEN,
			    "broker %" PRIu64 " was removed: node ids are "
			    "never reused",
			    b->node);
		if (strcmp(o->name, b->name) == 0 &&
		    strcmp(o->listen, b->listen) == 0 &&
		    strcmp(o->peer, b->peer) == 0)
			return PL_OK; /* the same broker: already added */
		return say(a, PL_E_FORBIDDEN,
		    "node %" PRIu64 " is broker %s (listen %s, peer %s)",
		    b->node, o->name, o->listen, o->peer);
	}
	const char *addrs[2] = {b->listen, b->peer};
	for (int k = 0; k < 2; k++) {
		const pl_map_broker *o = mi_addr_owner(m, addrs[k], 0);
		if (o != NULL)
			return say(a, PL_E_FORBIDDEN,
			    "address %s is broker %" PRIu64 "'s (%s)", addrs[k],
			    o->node, o->name);
	}
	if (m->nbrokers >= PL_MAP_BROKERS_MAX)
		return say(a, PL_E_TOO_LARGE,
		    "a map holds at most %d brokers, removed ones included",
		    PL_MAP_BROKERS_MAX);
	pl_map_broker nb = {.node = b->node, .state = PL_BROKER_ACTIVE};
	PL_ASSERT(mi_str_copy(nb.name, sizeof(nb.name), b->name) &&
	          mi_str_copy(nb.listen, sizeof(nb.listen), b->listen) &&
	          mi_str_copy(nb.peer, sizeof(nb.peer), b->peer));
	if ((st = check_fits(a, mi_broker_bytes(&nb))) != PL_OK)
		return st;
	if (insert_at((void **)&m->brokers, &m->nbrokers, sizeof(nb), i) !=
	    PL_OK)
		return say(a, PL_E_NOMEM, "out of memory");
	m->brokers[i] = nb;
	a->changed = true;
	return PL_OK;
}

/* "1, 4, 7" (at most WHY_GROUPS_MAX, then "..."): the groups that
 * still have a replica on node. */
static void groups_on(const pl_map *m, uint64_t node, char *out, size_t cap)
{
	size_t off = 0;
	int n = 0;
	out[0] = '\0';
	for (size_t i = 0; i < m->ngroups && off < cap; i++) {
		if (mi_replica_at(&m->groups[i], node) < 0)
			continue;
		int w = n++ == WHY_GROUPS_MAX
		            ? snprintf(out + off, cap - off, ", ...")
		            : snprintf(out + off, cap - off, "%s%u",
		                  n > 1 ? ", " : "", (unsigned)m->groups[i].id);
		off += w > 0 ? (size_t)w : 0;
		if (n > WHY_GROUPS_MAX)
			break;
	}
}

static pl_status op_broker_state(
    apply *a, const Parley__Cluster__BrokerSetState *c)
{
	if ((unsigned)c->state > PL_BROKER_REMOVED)
		return say(a, PL_E_BAD_REQUEST, "unknown broker state %d",
		    (int)c->state);
	pl_map *m = a->m;
	bool found;
	size_t i = mi_broker_at(m, c->node, &found);
	if (!found)
		return say(a, PL_E_NOT_FOUND, "no broker %" PRIu64, c->node);
	pl_map_broker *b = &m->brokers[i];
	pl_map_broker_state to = (pl_map_broker_state)c->state;
	if (b->state == to)
		return PL_OK;
	if (b->state == PL_BROKER_REMOVED)
		return say(a, PL_E_FORBIDDEN,
		    "broker %" PRIu64 " was removed and cannot come back",
		    c->node);
	if (to == PL_BROKER_REMOVED && pl_map_replicas_on(m, c->node) > 0) {
		char list[96];
		groups_on(m, c->node, list, sizeof(list));
		return say(a, PL_E_FORBIDDEN,
		    "broker %" PRIu64 " still holds replicas of groups %s: "
		    "move them off first",
		    c->node, list);
	}
	b->state = to;
	a->changed = true;
	return PL_OK;
}

/* ---- apply: groups ---- */

/* Picks k distinct active brokers with the fewest replicas (ties by
 * node), sorted by node into out. False when fewer than k are active. */
static bool place(const pl_map *m, int k, uint64_t *out)
{
	int load[PL_MAP_BROKERS_MAX] = {0};
	bool taken[PL_MAP_BROKERS_MAX] = {false};
	int active = 0;
	for (size_t i = 0; i < m->ngroups; i++) {
		const pl_map_group *g = &m->groups[i];
		for (int r = 0; r < g->nreplicas; r++) {
			bool found;
			size_t b = mi_broker_at(m, g->replicas[r].node, &found);
			if (found)
				load[b]++;
		}
	}
	for (size_t i = 0; i < m->nbrokers; i++)
		active += m->brokers[i].state == PL_BROKER_ACTIVE;
	if (active < k)
		return false;
	for (int n = 0; n < k; n++) {
		size_t best = SIZE_MAX;
		for (size_t i = 0; i < m->nbrokers; i++) {
			if (taken[i] || m->brokers[i].state != PL_BROKER_ACTIVE)
				continue;
			/* brokers are sorted: a strict < keeps the lower node
			 */
			if (best == SIZE_MAX || load[i] < load[best])
				best = i;
		}
		taken[best] = true;
	}
	int n = 0;
	for (size_t i = 0; i < m->nbrokers; i++) {
		if (taken[i])
			out[n++] = m->brokers[i].node;
	}
	return true;
}

/* The voter of g that is preferred leader of the fewest groups (ties by
 * node), so that leaders spread as evenly as replicas; 0 when g has no
 * voter. Counts g itself as it stands. */
static uint64_t leader_pick(const pl_map *m, const pl_map_group *g)
{
	uint64_t best = 0;
	int best_n = 0;
	for (int i = 0; i < g->nreplicas; i++) {
		if (!mi_is_voter(&g->replicas[i]))
			continue;
		int n = leads_of(m, g->replicas[i].node);
		if (best == 0 || n < best_n) {
			best = g->replicas[i].node;
			best_n = n;
		}
	}
	return best;
}

static pl_status group_add_existing(
    apply *a, const pl_map_group *g, uint32_t replicas)
{
	if (g->removed)
		return say(a, PL_E_FORBIDDEN,
		    "group %u was removed: group ids are never reused",
		    (unsigned)g->id);
	int voters = pl_map_group_voters(g);
	if (voters == (int)replicas)
		return PL_OK;
	return say(a, PL_E_FORBIDDEN,
	    "group %u exists with %d voters: its membership changes one "
	    "replica at a time",
	    (unsigned)g->id, voters);
}

static pl_status op_group_add(apply *a, const Parley__Cluster__GroupAdd *c)
{
	pl_map *m = a->m;
	if (c->replicas != 1 && c->replicas != 3 && c->replicas != 5 &&
	    c->replicas != 7)
		return say(a, PL_E_BAD_REQUEST,
		    "replicas %u: a group has 1, 3, 5 or 7 (an even count "
		    "survives no more failures than one fewer)",
		    (unsigned)c->replicas);
	if (c->id > GROUP_ID_MAX)
		return say(a, PL_E_BAD_REQUEST, "group id %u exceeds %u",
		    (unsigned)c->id, GROUP_ID_MAX);
	uint32_t id = c->id;
	if (id == 0) {
		id = m->ngroups > 0 ? m->groups[m->ngroups - 1].id + 1 : 1;
		if (id > GROUP_ID_MAX)
			return say(a, PL_E_TOO_LARGE,
			    "no group id is free above %u", GROUP_ID_MAX);
	}
	bool found;
	size_t i = mi_group_at(m, id, &found);
	if (found)
		return group_add_existing(a, &m->groups[i], c->replicas);
	if (m->ngroups >= PL_MAP_GROUPS_MAX)
		return say(a, PL_E_TOO_LARGE,
		    "a map holds at most %d groups, removed ones included",
		    PL_MAP_GROUPS_MAX);
	pl_map_group g = {.id = id, .weight = c->weight ? c->weight : 1};
	uint64_t nodes[PL_MAP_REPLICAS_MAX];
	if (!place(m, (int)c->replicas, nodes))
		return say(a, PL_E_FORBIDDEN,
		    "group %u needs %u active brokers", (unsigned)id,
		    (unsigned)c->replicas);
	g.nreplicas = (int)c->replicas;
	for (int r = 0; r < g.nreplicas; r++)
		g.replicas[r].node = nodes[r];
	g.leader = leader_pick(m, &g);
	pl_status st = check_fits(a, mi_group_bytes(g.nreplicas));
	if (st != PL_OK)
		return st;
	if (insert_at((void **)&m->groups, &m->ngroups, sizeof(g), i) != PL_OK)
		return say(a, PL_E_NOMEM, "out of memory");
	m->groups[i] = g;
	a->changed = true;
	return PL_OK;
}

/* The group c names, or a refusal: NOT_FOUND, or FORBIDDEN when it was
 * removed and may_be_removed is false. */
static pl_status group_get(
    apply *a, uint32_t id, bool may_be_removed, pl_map_group **out)
{
	bool found;
	size_t i = mi_group_at(a->m, id, &found);
	if (!found)
		return say(a, PL_E_NOT_FOUND, "no group %u", (unsigned)id);
	if (a->m->groups[i].removed && !may_be_removed)
		return say(
		    a, PL_E_FORBIDDEN, "group %u was removed", (unsigned)id);
	*out = &a->m->groups[i];
	return PL_OK;
}

static pl_status op_group_set(apply *a, const Parley__Cluster__GroupSet *c)
{
	pl_map_group *g;
	pl_status st = group_get(a, c->id, true, &g);
	if (st != PL_OK)
		return st;
	/* weight 0 keeps the weight: proto3 cannot tell "unset" from 0,
	 * and draining is how a group stops taking rooms. */
	uint32_t w = c->weight ? c->weight : g->weight;
	if (g->draining == (bool)c->draining && g->weight == w)
		return PL_OK;
	if (g->removed)
		return say(
		    a, PL_E_FORBIDDEN, "group %u was removed", (unsigned)c->id);
	g->draining = c->draining;
	g->weight = w;
	a->changed = true;
	return PL_OK;
}

static pl_status op_group_remove(
    apply *a, const Parley__Cluster__GroupRemove *c)
{
	pl_map_group *g;
	pl_status st = group_get(a, c->id, true, &g);
	if (st != PL_OK)
		return st;
	if (g->removed)
		return PL_OK;
	if (!g->draining)
		return say(a, PL_E_FORBIDDEN,
		    "group %u is not draining: drain it first",
		    (unsigned)c->id);
	g->removed = true;
	g->nreplicas = 0;
	g->leader = 0;
	memset(g->replicas, 0, sizeof(g->replicas));
	a->changed = true;
	return PL_OK;
}

/* ---- apply: membership steps ---- */

/* The broker node of a membership step: it exists (NOT_FOUND). */
static pl_status step_broker(apply *a, uint64_t node, const pl_map_broker **b)
{
	*b = pl_map_broker_find(a->m, node);
	if (*b == NULL)
		return say(a, PL_E_NOT_FOUND, "no broker %" PRIu64, node);
	return PL_OK;
}

static pl_status op_replica_add(apply *a, const Parley__Cluster__ReplicaAdd *c)
{
	pl_map_group *g;
	const pl_map_broker *b;
	pl_status st;
	if ((st = group_get(a, c->group, false, &g)) != PL_OK ||
	    (st = step_broker(a, c->node, &b)) != PL_OK)
		return st;
	int r = mi_replica_at(g, c->node);
	if (r >= 0 && g->replicas[r].learner)
		return PL_OK; /* this very step, already taken */
	if (r >= 0)
		return say(a, PL_E_FORBIDDEN,
		    "broker %" PRIu64 " already holds a replica of group %u",
		    c->node, (unsigned)c->group);
	if (b->state != PL_BROKER_ACTIVE)
		return say(a, PL_E_FORBIDDEN,
		    "broker %" PRIu64 " is not active", c->node);
	const pl_map_replica *s = group_step(g);
	if (s != NULL)
		return say(a, PL_E_FORBIDDEN,
		    "group %u has a step in progress (%s on broker %" PRIu64
		    "): one at a time",
		    (unsigned)c->group, s->learner ? "learner" : "leaving",
		    s->node);
	if (g->nreplicas >= PL_MAP_REPLICAS_MAX)
		return say(a, PL_E_TOO_LARGE, "group %u has %d replicas",
		    (unsigned)c->group, PL_MAP_REPLICAS_MAX);
	int at = 0;
	while (at < g->nreplicas && g->replicas[at].node < c->node)
		at++;
	memmove(&g->replicas[at + 1], &g->replicas[at],
	    (size_t)(g->nreplicas - at) * sizeof(g->replicas[0]));
	g->replicas[at] = (pl_map_replica){.node = c->node, .learner = true};
	g->nreplicas++;
	a->changed = true;
	return PL_OK;
}

static pl_status op_replica_promote(
    apply *a, const Parley__Cluster__ReplicaPromote *c)
{
	pl_map_group *g;
	const pl_map_broker *b;
	pl_status st;
	if ((st = group_get(a, c->group, false, &g)) != PL_OK ||
	    (st = step_broker(a, c->node, &b)) != PL_OK)
		return st;
	int r = mi_replica_at(g, c->node);
	if (r < 0)
		return say(a, PL_E_NOT_FOUND,
		    "broker %" PRIu64 " holds no replica of group %u", c->node,
		    (unsigned)c->group);
	pl_map_replica *rp = &g->replicas[r];
	if (mi_is_voter(rp))
		return PL_OK;
	if (rp->leaving)
		return say(a, PL_E_FORBIDDEN,
		    "the replica on broker %" PRIu64 " is leaving", c->node);
	if (b->state != PL_BROKER_ACTIVE)
		return say(a, PL_E_FORBIDDEN,
		    "broker %" PRIu64 " is not active: remove the learner",
		    c->node);
	rp->learner = false;
	a->changed = true;
	return PL_OK;
}

/* Refuses removing voter r of g while it would break the group. */
static pl_status remove_voter_check(apply *a, const pl_map_group *g, int r)
{
	const pl_map_replica *s = group_step(g);
	if (s != NULL)
		return say(a, PL_E_FORBIDDEN,
		    "group %u: the %s on broker %" PRIu64 " is still in "
		    "progress (promote or remove it first)",
		    (unsigned)g->id, s->learner ? "learner" : "leaving replica",
		    s->node);
	if (pl_map_group_voters(g) <= 1)
		return say(a, PL_E_FORBIDDEN,
		    "removing broker %" PRIu64 " would leave group %u "
		    "without a voter",
		    g->replicas[r].node, (unsigned)g->id);
	return PL_OK;
}

static pl_status op_replica_remove(
    apply *a, const Parley__Cluster__ReplicaRemove *c)
{
	pl_map_group *g;
	const pl_map_broker *b;
	pl_status st;
	if ((st = group_get(a, c->group, true, &g)) != PL_OK ||
	    (st = step_broker(a, c->node, &b)) != PL_OK)
		return st;
	int r = mi_replica_at(g, c->node);
	if (r < 0)
		return PL_OK; /* already gone */
	if (mi_is_voter(&g->replicas[r]) &&
	    (st = remove_voter_check(a, g, r)) != PL_OK)
		return st;
	memmove(&g->replicas[r], &g->replicas[r + 1],
	    (size_t)(g->nreplicas - r - 1) * sizeof(g->replicas[0]));
	g->nreplicas--;
	memset(&g->replicas[g->nreplicas], 0, sizeof(g->replicas[0]));
	if (g->leader == c->node) {
		g->leader = 0; /* not counted as its own leader's load */
		g->leader = leader_pick(a->m, g);
	}
	a->changed = true;
	return PL_OK;
}

/* ---- apply: tenants and defaults ---- */

static pl_status op_tenant_set(apply *a, const Parley__Cluster__TenantSet *c)
{
	pl_map *m = a->m;
	pl_status st = check_slug(a, "tenant", c->name, PL_TENANT_CHARS_MAX);
	if (st != PL_OK)
		return st;
	pl_map_limits l;
	mi_limits_from_pb(&l, c->limits);
	bool found;
	size_t i = mi_tenant_at(m, c->name, &found);
	if (found) {
		pl_map_tenant *t = &m->tenants[i];
		if (limits_eq(&t->limits, &l) &&
		    t->retention_days == c->retention_days)
			return PL_OK;
		t->limits = l;
		t->retention_days = c->retention_days;
		a->changed = true;
		return PL_OK;
	}
	if (m->ntenants >= PL_MAP_TENANTS_MAX)
		return say(a, PL_E_TOO_LARGE, "a map holds at most %d tenants",
		    PL_MAP_TENANTS_MAX);
	pl_map_tenant t = {.limits = l, .retention_days = c->retention_days};
	PL_ASSERT(mi_str_copy(t.name, sizeof(t.name), c->name));
	if ((st = check_fits(a, mi_tenant_bytes(&t))) != PL_OK)
		return st;
	if (insert_at((void **)&m->tenants, &m->ntenants, sizeof(t), i) !=
	    PL_OK)
		return say(a, PL_E_NOMEM, "out of memory");
	m->tenants[i] = t;
	a->changed = true;
	return PL_OK;
}

static pl_status tenant_get(apply *a, const char *name, pl_map_tenant **out)
{
	pl_status st = check_slug(a, "tenant", name, PL_TENANT_CHARS_MAX);
	if (st != PL_OK)
		return st;
	bool found;
	size_t i = mi_tenant_at(a->m, name, &found);
	if (!found)
		return say(a, PL_E_NOT_FOUND, "no tenant %s", name);
	*out = &a->m->tenants[i];
	return PL_OK;
}

static int key_at(const pl_map_tenant *t, const char *id)
{
	for (int i = 0; i < t->nkeys; i++) {
		if (strcmp(t->keys[i].id, id) == 0)
			return i;
	}
	return -1;
}

/* Where a new key goes: a free slot, else the oldest revoked key's
 * (revocation must not use up the slots: rotation goes on forever);
 * -1 when every slot holds a valid key. */
static int key_slot(const pl_map_tenant *t)
{
	if (t->nkeys < PL_KEYS_PER_TENANT_MAX)
		return t->nkeys;
	for (int i = 0; i < t->nkeys; i++) {
		if (t->keys[i].revoked)
			return i;
	}
	return -1;
}

static pl_status op_key_add(apply *a, const Parley__Cluster__KeyAdd *c)
{
	const Parley__Cluster__Key *k = c->key;
	pl_map_tenant *t;
	pl_status st;
	if (k == NULL)
		return say(a, PL_E_BAD_REQUEST, "key_add names no key");
	if ((st = check_slug(a, "key id", k->id, PL_KEY_ID_CHARS_MAX)) != PL_OK)
		return st;
	if (k->public_key.len != 32)
		return say(a, PL_E_BAD_REQUEST,
		    "key %s: a public key is 32 bytes, not %zu", k->id,
		    k->public_key.len);
	if (k->revoked)
		return say(a, PL_E_BAD_REQUEST,
		    "key %s: a key is added unrevoked", k->id);
	if ((st = tenant_get(a, c->tenant, &t)) != PL_OK)
		return st;
	int i = key_at(t, k->id);
	if (i >= 0 && memcmp(t->keys[i].pk, k->public_key.data, 32) == 0)
		return PL_OK; /* revoked or not: revocation is final */
	if (i >= 0)
		return say(a, PL_E_FORBIDDEN,
		    "tenant %s already has a different key %s", t->name, k->id);
	int slot = key_slot(t);
	if (slot < 0)
		return say(a, PL_E_TOO_LARGE,
		    "tenant %s has %d valid keys: revoke one first", t->name,
		    PL_KEYS_PER_TENANT_MAX);
	pl_map_key nk = {.revoked = false};
	PL_ASSERT(mi_str_copy(nk.id, sizeof(nk.id), k->id));
	memcpy(nk.pk, k->public_key.data, 32);
	if ((st = check_fits(a, mi_key_bytes(&nk))) != PL_OK)
		return st;
	t->keys[slot] = nk;
	if (slot == t->nkeys)
		t->nkeys++;
	a->changed = true;
	return PL_OK;
}

static pl_status op_key_revoke(apply *a, const Parley__Cluster__KeyRevoke *c)
{
	pl_map_tenant *t;
	pl_status st;
	if ((st = check_slug(a, "key id", c->key_id, PL_KEY_ID_CHARS_MAX)) !=
	        PL_OK ||
	    (st = tenant_get(a, c->tenant, &t)) != PL_OK)
		return st;
	int i = key_at(t, c->key_id);
	if (i < 0)
		return say(a, PL_E_NOT_FOUND, "tenant %s has no key %s",
		    t->name, c->key_id);
	if (t->keys[i].revoked)
		return PL_OK;
	t->keys[i].revoked = true;
	a->changed = true;
	return PL_OK;
}

static pl_status op_defaults(apply *a, const Parley__Cluster__DefaultsSet *c)
{
	pl_map_limits l;
	mi_limits_from_pb(&l, c->limits);
	if (limits_eq(&a->m->limits, &l) &&
	    a->m->retention_days == c->retention_days)
		return PL_OK;
	a->m->limits = l;
	a->m->retention_days = c->retention_days;
	a->changed = true;
	return PL_OK;
}

/* ---- apply: leaders ---- */

#define REBALANCE_AVOID_MAX 16

/*
 * Every group's preferred leader chosen again, greedily in id order: the
 * voter on an active broker not avoided that was given the fewest groups
 * so far, the current one when it is among those, else the lower node.
 * A group with no such voter keeps its preference. With every group
 * having R voters spread by placement, this gives each broker
 * ceil(groups / brokers) or fewer.
 */
static pl_status op_leader_rebalance(
    apply *a, const Parley__Cluster__LeaderRebalance *c)
{
	pl_map *m = a->m;
	if (c->n_avoid > REBALANCE_AVOID_MAX)
		return say(a, PL_E_BAD_REQUEST, "at most %d brokers to avoid",
		    REBALANCE_AVOID_MAX);
	for (size_t i = 0; i < c->n_avoid; i++) {
		if (pl_map_broker_find(m, c->avoid[i]) == NULL)
			return say(a, PL_E_NOT_FOUND,
			    "no broker %" PRIu64 " in the map", c->avoid[i]);
	}
	int *given = calloc(m->nbrokers + 1, sizeof(*given));
	if (given == NULL)
		return say(a, PL_E_NOMEM, "out of memory");
	for (size_t gi = 0; gi < m->ngroups; gi++) {
		pl_map_group *g = &m->groups[gi];
		if (g->removed)
			continue;
		size_t best = SIZE_MAX;
		for (int r = 0; r < g->nreplicas; r++) {
			const pl_map_replica *rp = &g->replicas[r];
			bool avoided = false;
			for (size_t k = 0; k < c->n_avoid; k++)
				avoided = avoided || c->avoid[k] == rp->node;
			size_t bi = 0;
			while (
			    bi < m->nbrokers && m->brokers[bi].node != rp->node)
				bi++;
			if (!mi_is_voter(rp) || avoided || bi == m->nbrokers ||
			    m->brokers[bi].state != PL_BROKER_ACTIVE)
				continue;
			if (best == SIZE_MAX || given[bi] < given[best] ||
			    (given[bi] == given[best] &&
			        m->brokers[best].node != g->leader &&
			        (rp->node == g->leader ||
			            rp->node < m->brokers[best].node)))
				best = bi;
		}
		if (best == SIZE_MAX)
			continue; /* no voter to prefer: left as it is */
		given[best]++;
		if (g->leader != m->brokers[best].node) {
			g->leader = m->brokers[best].node;
			a->changed = true;
		}
	}
	free(given);
	return PL_OK;
}

/* ---- apply ---- */

static pl_status dispatch(apply *a, const Parley__Cluster__Change *c)
{
	switch (c->op_case) {
	case PARLEY__CLUSTER__CHANGE__OP_BROKER_ADD:
		return op_broker_add(a, c->broker_add);
	case PARLEY__CLUSTER__CHANGE__OP_BROKER_STATE:
		return op_broker_state(a, c->broker_state);
	case PARLEY__CLUSTER__CHANGE__OP_GROUP_ADD:
		return op_group_add(a, c->group_add);
	case PARLEY__CLUSTER__CHANGE__OP_GROUP_SET:
		return op_group_set(a, c->group_set);
	case PARLEY__CLUSTER__CHANGE__OP_GROUP_REMOVE:
		return op_group_remove(a, c->group_remove);
	case PARLEY__CLUSTER__CHANGE__OP_REPLICA_ADD:
		return op_replica_add(a, c->replica_add);
	case PARLEY__CLUSTER__CHANGE__OP_REPLICA_PROMOTE:
		return op_replica_promote(a, c->replica_promote);
	case PARLEY__CLUSTER__CHANGE__OP_REPLICA_REMOVE:
		return op_replica_remove(a, c->replica_remove);
	case PARLEY__CLUSTER__CHANGE__OP_TENANT_SET:
		return op_tenant_set(a, c->tenant_set);
	case PARLEY__CLUSTER__CHANGE__OP_KEY_ADD:
		return op_key_add(a, c->key_add);
	case PARLEY__CLUSTER__CHANGE__OP_KEY_REVOKE:
		return op_key_revoke(a, c->key_revoke);
	case PARLEY__CLUSTER__CHANGE__OP_DEFAULTS:
		return op_defaults(a, c->defaults);
	case PARLEY__CLUSTER__CHANGE__OP_LEADER_REBALANCE:
		return op_leader_rebalance(a, c->leader_rebalance);
	default:
		return say(a, PL_E_BAD_REQUEST, "a change names no operation");
	}
}

pl_status pl_map_apply(pl_map *m, const uint8_t *change, size_t len,
    bool *changed, char *why, size_t why_len)
{
	apply a = {.m = m, .why = why, .why_len = why_len};
	if (why != NULL && why_len > 0)
		why[0] = '\0';
	if (len > CHANGE_BYTES_MAX)
		return say(&a, PL_E_TOO_LARGE, "change of %zu bytes exceeds %u",
		    len, CHANGE_BYTES_MAX);
	if (len == 0)
		return say(&a, PL_E_BAD_REQUEST, "a change names no operation");
	pl_why w;
	pl_status st = pl_wire_strings_check(
	    &parley__cluster__change__descriptor, change, len, &w);
	if (st == PL_E_BAD_REQUEST)
		return say(&a, st, "%s", w.text);
	Parley__Cluster__Change *c =
	    st == PL_OK ? parley__cluster__change__unpack(NULL, len, change)
	                : NULL;
	if (c == NULL)
		return say(&a, PL_E_BAD_REQUEST, "undecodable change");
	st = dispatch(&a, c);
	parley__cluster__change__free_unpacked(c, NULL);
	PL_DEBUG_ASSERT(mi_map_check(m));
	if (st != PL_OK)
		return st;
	if (a.changed)
		m->version++;
	if (changed != NULL)
		*changed = a.changed;
	return PL_OK;
}
