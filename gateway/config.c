/*
 * config.c - the gateway's INI configuration (inih): [gateway] limits and
 * addresses, [group.N] brokers, [tenant.ID] public keys and [log] levels,
 * and the same routing taken from a cluster map (gw_map_table_from).
 * Defaults live in gw_config_init and match gateway.example.ini.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "gateway/gateway.h"
#include "proto/codec.h"
#include "proto/map.h"

/* Broker request contexts: enough batches in flight to hide a group
 * commit's fsync, few enough that each stays full under load. */
#define GW_BROKER_CONTEXTS_DEFAULT 8
#define GW_BROKER_CONTEXTS_MAX 64
/* Pending broker requests per link: a few batches' worth at full size. */
#define GW_BROKER_QUEUE_DEFAULT 16384
#define GW_CONNECTIONS_DEFAULT 65536
/* With several replicas a healthy leader answers a batch in milliseconds
 * (a commit round); a second without an answer means it is stopped or
 * cut off, and the next replica is asked. Elections take election_ms to
 * 2 x election_ms (1 s to 2 s by default), so the gateway's retries keep
 * going for several elections before a client hears unavailable. */
#define GW_REPLICA_TIMEOUT_DEFAULT_MS 1000
#define GW_FAILOVER_DEFAULT_MS 10000
/* The HTTP port. A browser sends its request head at once: 10 s covers
 * any real link and bounds a slowloris. Browsers keep an idle connection
 * for reuse; 15 s is enough for a page's requests. 8 KiB of head is what
 * common servers take (nginx, Apache). Many people behind one NAT share
 * an address, each with a WebSocket and a few page requests: 1024. */
#define GW_HTTP_HEADER_TIMEOUT_DEFAULT_MS 10000
#define GW_HTTP_KEEPALIVE_DEFAULT_MS 15000
#define GW_HTTP_HEADER_BYTES_DEFAULT 8192
#define GW_HTTP_CONNS_PER_ADDR_DEFAULT 1024

pl_status gw_config_init(gw_config *c)
{
	*c = (gw_config){0};
	snprintf(c->id, sizeof(c->id), "gw1");
	snprintf(c->tcp, sizeof(c->tcp), "tcp://127.0.0.1:7100");
	snprintf(c->http, sizeof(c->http), "127.0.0.1:7180");
	c->frame_bytes_max = PL_CLIENT_FRAME_BYTES_DEFAULT;
	c->body_bytes_max = PL_BODY_BYTES_DEFAULT;
	c->publish_per_sec = 200;
	c->subscriptions_max = 256;
	c->send_queue_bytes_max = 1024 * 1024;
	c->connections_max = GW_CONNECTIONS_DEFAULT;
	c->idle_ms = 60000;
	c->hello_timeout_ms = 10000;
	c->http_header_timeout_ms = GW_HTTP_HEADER_TIMEOUT_DEFAULT_MS;
	c->http_keepalive_ms = GW_HTTP_KEEPALIVE_DEFAULT_MS;
	c->http_header_bytes_max = GW_HTTP_HEADER_BYTES_DEFAULT;
	c->http_conns_per_addr = GW_HTTP_CONNS_PER_ADDR_DEFAULT;
	c->broker_timeout_ms = 5000;
	c->replica_timeout_ms = GW_REPLICA_TIMEOUT_DEFAULT_MS;
	c->failover_ms = GW_FAILOVER_DEFAULT_MS;
	c->broker_contexts = GW_BROKER_CONTEXTS_DEFAULT;
	c->broker_queue_max = GW_BROKER_QUEUE_DEFAULT;
	c->keys = calloc(1, sizeof(*c->keys));
	c->groups = calloc(GW_GROUPS_MAX, sizeof(*c->groups));
	if (c->keys == NULL || c->groups == NULL) {
		gw_config_fini(c);
		return PL_E_NOMEM;
	}
	return PL_OK;
}

void gw_config_fini(gw_config *c)
{
	if (c == NULL)
		return;
	free(c->keys);
	c->keys = NULL;
	free(c->groups);
	c->groups = NULL;
}

static bool parse_u32(const char *v, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi)
		return false;
	*out = (uint32_t)x;
	return true;
}

static bool parse_bool(const char *v, bool *out)
{
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
	    strcmp(v, "yes") == 0) {
		*out = true;
		return true;
	}
	if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 ||
	    strcmp(v, "no") == 0) {
		*out = false;
		return true;
	}
	return false;
}

static bool copy_str(char *dst, size_t cap, const char *v)
{
	size_t n = strlen(v);
	if (n >= cap)
		return false;
	memcpy(dst, v, n + 1);
	return true;
}

/* The HTTP address is host:port; an http:// prefix is accepted. */
static bool set_http(gw_config *c, const char *v)
{
	if (strncmp(v, "http://", 7) == 0)
		v += 7;
	return copy_str(c->http, sizeof(c->http), v);
}

struct u32_key {
	const char *name;
	size_t off;
	uint32_t lo, hi;
};

static const struct u32_key u32_keys[] = {
    {"frame_bytes_max", offsetof(gw_config, frame_bytes_max), 256,
        PL_FRAME_BYTES_CEIL},
    {"body_bytes_max", offsetof(gw_config, body_bytes_max), 1,
        PL_FRAME_BYTES_CEIL},
    {"publish_per_sec", offsetof(gw_config, publish_per_sec), 1, 1000000},
    {"subscriptions_max", offsetof(gw_config, subscriptions_max), 1, 65535},
    {"send_queue_bytes_max", offsetof(gw_config, send_queue_bytes_max), 4096,
        1u << 30},
    {"connections_max", offsetof(gw_config, connections_max), 1, 10000000},
    {"idle_ms", offsetof(gw_config, idle_ms), 100, 86400000},
    {"hello_timeout_ms", offsetof(gw_config, hello_timeout_ms), 100, 3600000},
    {"http_header_timeout_ms", offsetof(gw_config, http_header_timeout_ms), 100,
        3600000},
    {"http_keepalive_ms", offsetof(gw_config, http_keepalive_ms), 100, 3600000},
    {"http_header_bytes_max", offsetof(gw_config, http_header_bytes_max), 1024,
        65536},
    {"http_connections_per_address", offsetof(gw_config, http_conns_per_addr),
        1, 10000000},
    {"broker_timeout_ms", offsetof(gw_config, broker_timeout_ms), 10, 600000},
    {"replica_timeout_ms", offsetof(gw_config, replica_timeout_ms), 10, 600000},
    {"failover_ms", offsetof(gw_config, failover_ms), 0, 600000},
    {"broker_contexts", offsetof(gw_config, broker_contexts), 1,
        GW_BROKER_CONTEXTS_MAX},
    {"broker_queue_max", offsetof(gw_config, broker_queue_max), 16, 1u << 22},
};

static bool gateway_key(gw_config *c, const char *name, const char *v)
{
	if (strcmp(name, "id") == 0)
		return v[0] != '\0' && copy_str(c->id, sizeof(c->id), v);
	if (strcmp(name, "tcp") == 0)
		return copy_str(c->tcp, sizeof(c->tcp), v);
	if (strcmp(name, "http") == 0)
		return set_http(c, v);
	if (strcmp(name, "web_root") == 0)
		return copy_str(c->web_root, sizeof(c->web_root), v);
	if (strcmp(name, "tls_cert_key") == 0)
		return copy_str(c->tls_cert_key, sizeof(c->tls_cert_key), v);
	if (strcmp(name, "meta") == 0)
		return gw_config_meta_parse(c, v);
	for (size_t i = 0; i < PL_ARRAY_LEN(u32_keys); i++) {
		if (strcmp(name, u32_keys[i].name) == 0)
			return parse_u32(v, u32_keys[i].lo, u32_keys[i].hi,
			    (uint32_t *)((char *)c + u32_keys[i].off));
	}
	return false;
}

static gw_group_conf *group_get(gw_config *c, const char *id_str)
{
	uint32_t id;
	if (!parse_u32(id_str, 1, 65535, &id))
		return NULL;
	for (int i = 0; i < c->ngroups; i++) {
		if (c->groups[i].id == id)
			return &c->groups[i];
	}
	if (c->ngroups == GW_GROUPS_MAX)
		return NULL;
	gw_group_conf *gc = &c->groups[c->ngroups++];
	*gc = (gw_group_conf){.id = (uint16_t)id, .weight = 1};
	return gc;
}

static bool group_key(
    gw_config *c, const char *id, const char *name, const char *v)
{
	gw_group_conf *gc = group_get(c, id);
	if (gc == NULL)
		return false;
	if (strcmp(name, "broker") == 0)
		return gw_config_brokers_parse(gc, v);
	if (strcmp(name, "weight") == 0)
		return parse_u32(v, 0, 1000000, &gc->weight);
	if (strcmp(name, "draining") == 0)
		return parse_bool(v, &gc->draining);
	return false;
}

/* Addresses separated by commas, blanks around them ignored, into list
 * (max of them); the count, or -1 when one is empty or too long or there
 * are too many. */
static int addrs_parse(
    char (*list)[GW_URL_CHARS_MAX + 1], int max, const char *v)
{
	int n = 0;
	for (const char *p = v;; p++) {
		const char *end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		size_t len = (size_t)(end - p);
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == 0 || len > GW_URL_CHARS_MAX || n == max)
			return -1;
		memcpy(list[n], p, len);
		list[n++][len] = '\0';
		if (*end == '\0')
			break;
		p = end;
	}
	return n;
}

bool gw_config_brokers_parse(gw_group_conf *gc, const char *v)
{
	char list[GW_REPLICAS_MAX][GW_URL_CHARS_MAX + 1];
	int n = addrs_parse(list, GW_REPLICAS_MAX, v);
	if (n < 0)
		return false;
	memcpy(gc->brokers, list, sizeof(list));
	gc->nbrokers = n;
	return true;
}

bool gw_config_meta_parse(gw_config *c, const char *v)
{
	char list[GW_META_MAX][GW_URL_CHARS_MAX + 1];
	int n = addrs_parse(list, GW_META_MAX, v);
	if (n < 0)
		return false;
	memcpy(c->meta, list, sizeof(list));
	c->nmeta = n;
	return true;
}

static bool tenant_key(
    gw_config *c, const char *tenant, const char *name, const char *v)
{
	uint8_t pk[32];
	if (strncmp(name, "key.", 4) != 0 ||
	    pl_b64_decode_key(v, pk, sizeof(pk)) != PL_OK)
		return false;
	return pl_keyring_add(c->keys, tenant, name + 4, pk) == PL_OK;
}

static bool log_key(const char *name, const char *v)
{
	int lvl = pl_log_level_parse(v);
	if (lvl < 0)
		return false;
	pl_log_set_level(
	    strcmp(name, "level") == 0 ? NULL : name, (pl_log_level)lvl);
	return true;
}

static int on_ini(
    void *user, const char *section, const char *name, const char *value)
{
	gw_config *c = user;
	bool ok = false;
	if (strcmp(section, "gateway") == 0)
		ok = gateway_key(c, name, value);
	else if (strncmp(section, "group.", 6) == 0)
		ok = group_key(c, section + 6, name, value);
	else if (strncmp(section, "tenant.", 7) == 0)
		ok = tenant_key(c, section + 7, name, value);
	else if (strcmp(section, "log") == 0)
		ok = log_key(name, value);
	if (!ok)
		PL_ERROR(GW_MOD, "event=config_bad section=%s key=%s", section,
		    name);
	return ok ? 1 : 0;
}

pl_status gw_config_load(gw_config *c, const char *path)
{
	int rv = ini_parse(path, on_ini, c);
	if (rv < 0) {
		PL_ERROR(GW_MOD, "event=config_unreadable path=%s", path);
		return PL_E_IO;
	}
	if (rv > 0) {
		PL_ERROR(
		    GW_MOD, "event=config_invalid path=%s line=%d", path, rv);
		return PL_E_CONFIG;
	}
	return PL_OK;
}

/* A group needs a broker, and a replica listed twice would make the
 * leader's address ambiguous. */
static bool group_check(const gw_group_conf *gc)
{
	if (gc->nbrokers == 0) {
		PL_ERROR(GW_MOD,
		    "event=config_invalid group=%u reason=no_broker",
		    (unsigned)gc->id);
		return false;
	}
	for (int i = 0; i < gc->nbrokers; i++) {
		for (int j = 0; j < i; j++) {
			if (strcmp(gc->brokers[i], gc->brokers[j]) != 0)
				continue;
			PL_ERROR(GW_MOD,
			    "event=config_invalid group=%u broker=%s "
			    "reason=listed_twice",
			    (unsigned)gc->id, gc->brokers[i]);
			return false;
		}
	}
	return true;
}

pl_status gw_config_check(const gw_config *c)
{
	if (c->body_bytes_max + 1024 > c->frame_bytes_max) {
		PL_ERROR(GW_MOD, "event=config_invalid reason=%s",
		    "body_bytes_max must leave 1 KiB of frame_bytes_max");
		return PL_E_CONFIG;
	}
	if (c->send_queue_bytes_max < c->frame_bytes_max) {
		PL_ERROR(GW_MOD, "event=config_invalid reason=%s",
		    "send_queue_bytes_max below frame_bytes_max");
		return PL_E_CONFIG;
	}
	for (int i = 0; i < c->ngroups; i++) {
		if (!group_check(&c->groups[i]))
			return PL_E_CONFIG;
	}
	if (c->tcp[0] == '\0' && c->http[0] == '\0') {
		PL_ERROR(GW_MOD, "event=config_invalid reason=no_listener");
		return PL_E_CONFIG;
	}
	return PL_OK;
}

/* ---- the cluster map's routing ---- */

pl_status gw_map_table_init(gw_map_table *t)
{
	*t = (gw_map_table){0};
	t->groups = calloc(GW_GROUPS_MAX, sizeof(*t->groups));
	t->keys = calloc(1, sizeof(*t->keys));
	if (t->groups == NULL || t->keys == NULL) {
		gw_map_table_fini(t);
		return PL_E_NOMEM;
	}
	return PL_OK;
}

void gw_map_table_fini(gw_map_table *t)
{
	if (t == NULL)
		return;
	free(t->groups);
	free(t->keys);
	*t = (gw_map_table){0};
}

/* The broker of node (brokers are sorted by node), or NULL. Searched
 * here rather than with pl_map_broker_find: the gateway reads the map's
 * plain structs and needs nothing else of map.c. */
static const pl_map_broker *broker_of(const pl_map *m, uint64_t node)
{
	size_t lo = 0, hi = m->nbrokers;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->brokers[mid].node == node)
			return &m->brokers[mid];
		if (m->brokers[mid].node < node)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* One replica's address into gc: its broker's gateway-facing `listen`,
 * which is what leader hints name. False when it has none usable. */
static bool replica_add(
    gw_group_conf *gc, const pl_map *m, const pl_map_replica *r)
{
	const pl_map_broker *b = broker_of(m, r->node);
	if (b == NULL || b->listen[0] == '\0' ||
	    strlen(b->listen) > GW_URL_CHARS_MAX ||
	    gc->nbrokers == GW_REPLICAS_MAX)
		return false;
	for (int i = 0; i < gc->nbrokers; i++) {
		if (strcmp(gc->brokers[i], b->listen) == 0)
			return false; /* a hint could not tell them apart */
	}
	snprintf(gc->brokers[gc->nbrokers++], sizeof(gc->brokers[0]), "%s",
	    b->listen);
	return true;
}

static void groups_from(gw_map_table *t, const pl_map *m)
{
	for (size_t i = 0; i < m->ngroups; i++) {
		const pl_map_group *mg = &m->groups[i];
		if (mg->removed)
			continue;
		if (mg->id == 0 || mg->id > UINT16_MAX ||
		    t->ngroups == GW_GROUPS_MAX) {
			PL_WARN(GW_MOD,
			    "event=map_group_skipped group=%u reason=%s",
			    (unsigned)mg->id,
			    t->ngroups == GW_GROUPS_MAX ? "groups_max"
			                                : "bad_id");
			t->skipped++;
			continue;
		}
		gw_group_conf *gc = &t->groups[t->ngroups++];
		*gc = (gw_group_conf){.id = (uint16_t)mg->id,
		    .weight = mg->weight,
		    .draining = mg->draining};
		for (int r = 0; r < mg->nreplicas && r < PL_MAP_REPLICAS_MAX;
		     r++) {
			if (replica_add(gc, m, &mg->replicas[r]))
				continue;
			PL_WARN(GW_MOD,
			    "event=map_replica_skipped group=%u node=%llu",
			    (unsigned)mg->id,
			    (unsigned long long)mg->replicas[r].node);
			t->skipped++;
		}
	}
}

static void keys_from(gw_map_table *t, const pl_map *m)
{
	for (size_t i = 0; i < m->ntenants; i++) {
		const pl_map_tenant *mt = &m->tenants[i];
		for (int k = 0; k < mt->nkeys && k < PL_KEYS_PER_TENANT_MAX;
		     k++) {
			const pl_map_key *mk = &mt->keys[k];
			if (mk->revoked)
				continue;
			pl_status st =
			    pl_keyring_add(t->keys, mt->name, mk->id, mk->pk);
			if (st == PL_OK)
				continue;
			PL_WARN(GW_MOD,
			    "event=map_key_skipped tenant=%s key=%s err=%s",
			    mt->name, mk->id, pl_strerror(st));
			t->skipped++;
		}
	}
}

void gw_map_table_from(gw_map_table *t, const pl_map *m)
{
	t->version = m->version;
	groups_from(t, m);
	keys_from(t, m);
}
