/*
 * map_codec.c - the codec between parley.cluster.Map and pl_map: encode,
 * with the bound of the encoded size that apply keeps every map under,
 * and decode, which copies the unpacked map and accepts it only when it
 * holds every invariant of docs/cluster.md "Invariants" (mi_map_check,
 * which apply checks again after every change).
 */
#include <stdlib.h>
#include <string.h>

#include "cluster.pb-c.h"
#include "proto/codec.h"
#include "proto/map.h"
#include "proto/map_internal.h"

_Static_assert(
    PL_MAP_BYTES_MAX <= PL_FRAME_BYTES_CEIL, "a map travels in one MapReply");

/* ---- invariants ---- */

static bool broker_ok(const pl_map *m, size_t i)
{
	const pl_map_broker *b = &m->brokers[i];
	if (b->node == 0 || (i > 0 && m->brokers[i - 1].node >= b->node))
		return false;
	if (b->name[0] == '\0' || b->listen[0] == '\0' || b->peer[0] == '\0' ||
	    (unsigned)b->state > PL_BROKER_REMOVED)
		return false;
	if (b->state == PL_BROKER_REMOVED)
		return true;
	return strcmp(b->listen, b->peer) != 0 &&
	       mi_addr_owner(m, b->listen, b->node) == NULL &&
	       mi_addr_owner(m, b->peer, b->node) == NULL;
}

static bool group_ok(const pl_map *m, size_t i)
{
	const pl_map_group *g = &m->groups[i];
	if (g->id == 0 || g->id > GROUP_ID_MAX ||
	    (i > 0 && m->groups[i - 1].id >= g->id) || g->nreplicas < 0 ||
	    g->nreplicas > PL_MAP_REPLICAS_MAX)
		return false;
	if (g->removed)
		return g->draining && g->nreplicas == 0 && g->leader == 0;
	int steps = 0;
	for (int r = 0; r < g->nreplicas; r++) {
		const pl_map_replica *rp = &g->replicas[r];
		const pl_map_broker *b = pl_map_broker_find(m, rp->node);
		if (b == NULL || b->state == PL_BROKER_REMOVED ||
		    (r > 0 && g->replicas[r - 1].node >= rp->node) ||
		    (rp->learner && rp->leaving))
			return false;
		steps += !mi_is_voter(rp);
	}
	int lr = mi_replica_at(g, g->leader);
	return steps <= 1 && pl_map_group_voters(g) >= 1 && lr >= 0 &&
	       mi_is_voter(&g->replicas[lr]);
}

static bool tenant_ok(const pl_map *m, size_t i)
{
	const pl_map_tenant *t = &m->tenants[i];
	if (!pl_slug_ok(t->name, PL_TENANT_CHARS_MAX) ||
	    (i > 0 && strcmp(m->tenants[i - 1].name, t->name) >= 0) ||
	    t->nkeys < 0 || t->nkeys > PL_KEYS_PER_TENANT_MAX)
		return false;
	for (int k = 0; k < t->nkeys; k++) {
		if (!pl_slug_ok(t->keys[k].id, PL_KEY_ID_CHARS_MAX))
			return false;
		for (int j = 0; j < k; j++) {
			if (strcmp(t->keys[j].id, t->keys[k].id) == 0)
				return false;
		}
	}
	return true;
}

/* Every invariant of docs/cluster.md "Invariants": what decode accepts
 * and what every apply leaves. */
bool mi_map_check(const pl_map *m)
{
	if (m->nbrokers > PL_MAP_BROKERS_MAX ||
	    m->ngroups > PL_MAP_GROUPS_MAX || m->ntenants > PL_MAP_TENANTS_MAX)
		return false;
	for (size_t i = 0; i < m->nbrokers; i++) {
		if (!broker_ok(m, i))
			return false;
	}
	for (size_t i = 0; i < m->ngroups; i++) {
		if (!group_ok(m, i))
			return false;
	}
	for (size_t i = 0; i < m->ntenants; i++) {
		if (!tenant_ok(m, i))
			return false;
	}
	return true;
}

/* ---- encoded size ---- */

/* An upper bound of the encoded size: a tag of one byte (every field
 * number is below 16), a varint of at most 10 bytes, a length prefix of
 * at most 3 bytes (every sub-message is below 2 MiB but the map). */
#define NUM_BYTES 11
#define SUB_BYTES 4
#define LIMITS_BYTES (SUB_BYTES + 4 * NUM_BYTES)

static size_t str_bytes(const char *s)
{
	size_t n = strlen(s);
	return n == 0 ? 0 : 4 + n;
}

size_t mi_broker_bytes(const pl_map_broker *b)
{
	return SUB_BYTES + 2 * NUM_BYTES + str_bytes(b->name) +
	       str_bytes(b->listen) + str_bytes(b->peer);
}

size_t mi_group_bytes(int nreplicas)
{
	return SUB_BYTES + 5 * NUM_BYTES +
	       (size_t)nreplicas * (SUB_BYTES + 3 * NUM_BYTES);
}

size_t mi_key_bytes(const pl_map_key *k)
{
	return SUB_BYTES + str_bytes(k->id) + 2 + 32 + 2;
}

size_t mi_tenant_bytes(const pl_map_tenant *t)
{
	size_t n = SUB_BYTES + str_bytes(t->name) + LIMITS_BYTES + NUM_BYTES;
	for (int k = 0; k < t->nkeys; k++)
		n += mi_key_bytes(&t->keys[k]);
	return n;
}

size_t mi_map_bytes_bound(const pl_map *m)
{
	size_t n = 2 * NUM_BYTES + LIMITS_BYTES;
	for (size_t i = 0; i < m->nbrokers; i++)
		n += mi_broker_bytes(&m->brokers[i]);
	for (size_t i = 0; i < m->ngroups; i++)
		n += mi_group_bytes(m->groups[i].nreplicas);
	for (size_t i = 0; i < m->ntenants; i++)
		n += mi_tenant_bytes(&m->tenants[i]);
	return n;
}

/* ---- encode ---- */

static void limits_to_pb(Parley__Cluster__Limits *p, const pl_map_limits *l)
{
	parley__cluster__limits__init(p);
	p->connections_max = l->connections_max;
	p->publish_per_sec = l->publish_per_sec;
	p->rooms_open_max = l->rooms_open_max;
	p->stored_bytes_max = l->stored_bytes_max;
}

/* Everything encode allocates, freed at once. The strings point into
 * the map (protobuf-c only reads them). */
typedef struct pb_parts {
	Parley__Cluster__Broker *b, **bp;
	Parley__Cluster__Group *g, **gp;
	Parley__Cluster__Replica *r, **rp;
	Parley__Cluster__Tenant *t, **tp;
	Parley__Cluster__Limits *tl;
	Parley__Cluster__Key *k, **kp;
} pb_parts;

static void parts_free(pb_parts *p)
{
	free(p->b), free(p->bp), free(p->g), free(p->gp), free(p->r);
	free(p->rp), free(p->t), free(p->tp), free(p->tl), free(p->k);
	free(p->kp);
}

static bool parts_alloc(pb_parts *p, const pl_map *m, size_t nrep, size_t nkey)
{
	/* calloc(0) may return NULL: ask for one at least. */
	size_t nb = m->nbrokers + 1, ng = m->ngroups + 1, nt = m->ntenants + 1;
	nrep++, nkey++;
	p->b = calloc(nb, sizeof(*p->b)), p->bp = calloc(nb, sizeof(*p->bp));
	p->g = calloc(ng, sizeof(*p->g)), p->gp = calloc(ng, sizeof(*p->gp));
	p->r = calloc(nrep, sizeof(*p->r));
	p->rp = calloc(nrep, sizeof(*p->rp));
	p->t = calloc(nt, sizeof(*p->t)), p->tp = calloc(nt, sizeof(*p->tp));
	p->tl = calloc(nt, sizeof(*p->tl));
	p->k = calloc(nkey, sizeof(*p->k)),
	p->kp = calloc(nkey, sizeof(*p->kp));
	return p->b && p->bp && p->g && p->gp && p->r && p->rp && p->t &&
	       p->tp && p->tl && p->k && p->kp;
}

static void brokers_to_pb(pb_parts *p, const pl_map *m)
{
	for (size_t i = 0; i < m->nbrokers; i++) {
		const pl_map_broker *b = &m->brokers[i];
		Parley__Cluster__Broker *pb = &p->b[i];
		parley__cluster__broker__init(pb);
		pb->node = b->node;
		pb->name = (char *)b->name;
		pb->listen = (char *)b->listen;
		pb->peer = (char *)b->peer;
		pb->state = (Parley__Cluster__BrokerState)b->state;
		p->bp[i] = pb;
	}
}

static void groups_to_pb(pb_parts *p, const pl_map *m)
{
	size_t r = 0;
	for (size_t i = 0; i < m->ngroups; i++) {
		const pl_map_group *g = &m->groups[i];
		Parley__Cluster__Group *pg = &p->g[i];
		parley__cluster__group__init(pg);
		pg->id = g->id;
		pg->weight = g->weight;
		pg->draining = g->draining;
		pg->removed = g->removed;
		pg->leader = g->leader;
		pg->replicas = &p->rp[r];
		pg->n_replicas = (size_t)g->nreplicas;
		for (int j = 0; j < g->nreplicas; j++, r++) {
			parley__cluster__replica__init(&p->r[r]);
			p->r[r].node = g->replicas[j].node;
			p->r[r].learner = g->replicas[j].learner;
			p->r[r].leaving = g->replicas[j].leaving;
			p->rp[r] = &p->r[r];
		}
		p->gp[i] = pg;
	}
}

static void tenants_to_pb(pb_parts *p, const pl_map *m)
{
	size_t k = 0;
	for (size_t i = 0; i < m->ntenants; i++) {
		const pl_map_tenant *t = &m->tenants[i];
		Parley__Cluster__Tenant *pt = &p->t[i];
		parley__cluster__tenant__init(pt);
		pt->name = (char *)t->name;
		limits_to_pb(&p->tl[i], &t->limits);
		pt->limits = &p->tl[i];
		pt->retention_days = t->retention_days;
		pt->keys = &p->kp[k];
		pt->n_keys = (size_t)t->nkeys;
		for (int j = 0; j < t->nkeys; j++, k++) {
			parley__cluster__key__init(&p->k[k]);
			p->k[k].id = (char *)t->keys[j].id;
			p->k[k].public_key.data = (uint8_t *)t->keys[j].pk;
			p->k[k].public_key.len = 32;
			p->k[k].revoked = t->keys[j].revoked;
			p->kp[k] = &p->k[k];
		}
		p->tp[i] = pt;
	}
}

pl_status pl_map_encode(const pl_map *m, uint8_t **out, size_t *len)
{
	size_t nrep = 0, nkey = 0;
	for (size_t i = 0; i < m->ngroups; i++)
		nrep += (size_t)m->groups[i].nreplicas;
	for (size_t i = 0; i < m->ntenants; i++)
		nkey += (size_t)m->tenants[i].nkeys;
	pb_parts p = {0};
	if (!parts_alloc(&p, m, nrep, nkey)) {
		parts_free(&p);
		return PL_E_NOMEM;
	}
	brokers_to_pb(&p, m);
	groups_to_pb(&p, m);
	tenants_to_pb(&p, m);
	Parley__Cluster__Map pm = PARLEY__CLUSTER__MAP__INIT;
	Parley__Cluster__Limits dl;
	limits_to_pb(&dl, &m->limits);
	pm.version = m->version;
	pm.retention_days = m->retention_days;
	pm.limits = &dl;
	pm.brokers = p.bp, pm.n_brokers = m->nbrokers;
	pm.groups = p.gp, pm.n_groups = m->ngroups;
	pm.tenants = p.tp, pm.n_tenants = m->ntenants;
	size_t n = parley__cluster__map__get_packed_size(&pm);
	/* The bound apply keeps the map under is a bound indeed. */
	PL_ASSERT(n <= mi_map_bytes_bound(m));
	uint8_t *buf = malloc(n > 0 ? n : 1);
	if (buf == NULL) {
		parts_free(&p);
		return PL_E_NOMEM;
	}
	size_t packed = parley__cluster__map__pack(&pm, buf);
	parts_free(&p);
	PL_ASSERT(packed == n);
	*out = buf;
	*len = n;
	return PL_OK;
}

/* ---- decode ---- */

void mi_limits_from_pb(pl_map_limits *l, const Parley__Cluster__Limits *p)
{
	memset(l, 0, sizeof(*l));
	if (p == NULL)
		return;
	l->connections_max = p->connections_max;
	l->publish_per_sec = p->publish_per_sec;
	l->rooms_open_max = p->rooms_open_max;
	l->stored_bytes_max = p->stored_bytes_max;
}

static bool broker_from_pb(pl_map_broker *b, const Parley__Cluster__Broker *p)
{
	b->node = p->node;
	b->state = (pl_map_broker_state)p->state;
	return mi_str_copy(b->name, sizeof(b->name), p->name) &&
	       mi_str_copy(b->listen, sizeof(b->listen), p->listen) &&
	       mi_str_copy(b->peer, sizeof(b->peer), p->peer);
}

static bool group_from_pb(pl_map_group *g, const Parley__Cluster__Group *p)
{
	if (p->n_replicas > PL_MAP_REPLICAS_MAX || p->id > GROUP_ID_MAX)
		return false;
	g->id = p->id;
	g->weight = p->weight;
	g->draining = p->draining;
	g->removed = p->removed;
	g->leader = p->leader;
	g->nreplicas = (int)p->n_replicas;
	for (size_t i = 0; i < p->n_replicas; i++) {
		g->replicas[i].node = p->replicas[i]->node;
		g->replicas[i].learner = p->replicas[i]->learner;
		g->replicas[i].leaving = p->replicas[i]->leaving;
	}
	return true;
}

static bool tenant_from_pb(pl_map_tenant *t, const Parley__Cluster__Tenant *p)
{
	if (p->n_keys > PL_KEYS_PER_TENANT_MAX ||
	    !mi_str_copy(t->name, sizeof(t->name), p->name))
		return false;
	mi_limits_from_pb(&t->limits, p->limits);
	t->retention_days = p->retention_days;
	t->nkeys = (int)p->n_keys;
	for (size_t i = 0; i < p->n_keys; i++) {
		const Parley__Cluster__Key *k = p->keys[i];
		if (k->public_key.len != 32 ||
		    !mi_str_copy(t->keys[i].id, sizeof(t->keys[i].id), k->id))
			return false;
		memcpy(t->keys[i].pk, k->public_key.data, 32);
		t->keys[i].revoked = k->revoked;
	}
	return true;
}

/* The unpacked map into m (empty); false when a field does not fit. */
static pl_status map_from_pb(pl_map *m, const Parley__Cluster__Map *p)
{
	if (p->n_brokers > PL_MAP_BROKERS_MAX ||
	    p->n_groups > PL_MAP_GROUPS_MAX ||
	    p->n_tenants > PL_MAP_TENANTS_MAX)
		return PL_E_TOO_LARGE;
	m->version = p->version;
	m->retention_days = p->retention_days;
	mi_limits_from_pb(&m->limits, p->limits);
	if ((p->n_brokers > 0 &&
	        !(m->brokers = calloc(p->n_brokers, sizeof(*m->brokers)))) ||
	    (p->n_groups > 0 &&
	        !(m->groups = calloc(p->n_groups, sizeof(*m->groups)))) ||
	    (p->n_tenants > 0 &&
	        !(m->tenants = calloc(p->n_tenants, sizeof(*m->tenants)))))
		return PL_E_NOMEM;
	m->nbrokers = p->n_brokers;
	m->ngroups = p->n_groups;
	m->ntenants = p->n_tenants;
	for (size_t i = 0; i < p->n_brokers; i++) {
		if (!broker_from_pb(&m->brokers[i], p->brokers[i]))
			return PL_E_PROTO;
	}
	for (size_t i = 0; i < p->n_groups; i++) {
		if (!group_from_pb(&m->groups[i], p->groups[i]))
			return PL_E_PROTO;
	}
	for (size_t i = 0; i < p->n_tenants; i++) {
		if (!tenant_from_pb(&m->tenants[i], p->tenants[i]))
			return PL_E_PROTO;
	}
	return mi_map_check(m) ? PL_OK : PL_E_PROTO;
}

pl_status pl_map_decode(pl_map *m, const uint8_t *buf, size_t len)
{
	pl_map_init(m);
	if (len > PL_MAP_BYTES_MAX)
		return PL_E_TOO_LARGE;
	static const uint8_t none[1];
	if (len == 0)
		buf = none; /* an empty map is a valid encoding */
	/* protobuf-c cuts a string at a NUL it unpacks: read the wire. */
	if (pl_wire_strings_check(
	        &parley__cluster__map__descriptor, buf, len, NULL) != PL_OK)
		return PL_E_PROTO;
	Parley__Cluster__Map *p = parley__cluster__map__unpack(NULL, len, buf);
	if (p == NULL)
		return PL_E_PROTO;
	pl_status st = map_from_pb(m, p);
	parley__cluster__map__free_unpacked(p, NULL);
	if (st != PL_OK)
		pl_map_fini(m);
	return st;
}
