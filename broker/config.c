/*
 * config.c - the broker's configuration: defaults that start a local node
 * with no file, the [broker] and [log] sections of the INI file (inih),
 * and the same keys as --key=value flags.
 */
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/config.h"

void brk_config_defaults(brk_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "broker-1");
	snprintf(c->listen, sizeof(c->listen), "tcp://127.0.0.1:7401");
	snprintf(c->http, sizeof(c->http), "127.0.0.1:7402");
	snprintf(c->data_dir, sizeof(c->data_dir), "./data/broker-1");
	c->group = 1;
	c->map_bytes = 1ull << 30;
	c->sync = true;
	c->sync_interval_ms = 100;
	c->compress_bytes_min = 512;
	c->dedup_window = 10000;
	c->gateway_events_max = 65536;
	c->gateway_idle_ms = 30000;
	c->node = 1;
	c->election_ms = 400;
	c->heartbeat_ms = 50;
	c->quiet_after_ms = 2000;
	c->log_keep_entries = 100000;
	c->snapshot_chunk_bytes = 1024 * 1024;
}

brk_replica *brk_config_replica(brk_config *c, uint64_t id, bool create)
{
	for (int i = 0; i < c->nreplicas; i++)
		if (c->replicas[i].id == id)
			return &c->replicas[i];
	if (!create || c->nreplicas == RAFT_PEERS_MAX)
		return NULL;
	brk_replica *r = &c->replicas[c->nreplicas++];
	memset(r, 0, sizeof(*r));
	r->id = id;
	return r;
}

static pl_status copy_str(char *dst, size_t cap, const char *v)
{
	if (strlen(v) >= cap)
		return PL_E_CONFIG;
	snprintf(dst, cap, "%s", v);
	return PL_OK;
}

/* [meta.N]: one meta replica. */
static brk_replica *meta_replica(brk_config *c, uint64_t id)
{
	for (int i = 0; i < c->nmeta; i++)
		if (c->meta[i].id == id)
			return &c->meta[i];
	if (c->nmeta == RAFT_PEERS_MAX)
		return NULL;
	brk_replica *r = &c->meta[c->nmeta++];
	memset(r, 0, sizeof(*r));
	r->id = id;
	return r;
}

pl_status brk_config_for_group(const brk_config *proc, uint32_t group,
    const brk_replica *replicas, int n, brk_config *out)
{
	*out = *proc;
	out->group = (uint16_t)group;
	out->nmeta = 0;
	out->metrics_by_group = true;
	int len = group == 0
	              ? snprintf(out->data_dir, sizeof(out->data_dir),
	                    "%s/meta", proc->data_dir)
	              : snprintf(out->data_dir, sizeof(out->data_dir),
	                    "%s/g%u", proc->data_dir, (unsigned)group);
	if (len < 0 || (size_t)len >= sizeof(out->data_dir) ||
	    n > RAFT_PEERS_MAX)
		return PL_E_CONFIG;
	memcpy(out->replicas, replicas, (size_t)n * sizeof(*replicas));
	out->nreplicas = n;
	return PL_OK;
}

/* [replica.N] or [meta.N] listen / peer */
static pl_status replica_set(brk_config *c, bool meta, const char *id_str,
    const char *k, const char *v)
{
	char *end;
	unsigned long long id = strtoull(id_str, &end, 10);
	if (*id_str == '\0' || *end != '\0' || id == 0 || id > 255)
		return PL_E_CONFIG;
	brk_replica *r =
	    meta ? meta_replica(c, id) : brk_config_replica(c, id, true);
	if (r == NULL)
		return PL_E_CONFIG;
	if (strcmp(k, "listen") == 0)
		return copy_str(r->listen, sizeof(r->listen), v);
	if (strcmp(k, "peer") == 0)
		return copy_str(r->peer, sizeof(r->peer), v);
	return PL_E_CONFIG;
}

pl_status brk_config_check(brk_config *c)
{
	if (c->nmeta > 0) {
		/* A cluster broker: groups come from the map. */
		for (int i = 0; i < c->nmeta; i++) {
			if (c->meta[i].listen[0] == '\0' ||
			    c->meta[i].peer[0] == '\0') {
				PL_ERROR("broker",
				    "event=bad_config reason=\"[meta.%llu] "
				    "needs listen and peer\"",
				    (unsigned long long)c->meta[i].id);
				return PL_E_CONFIG;
			}
		}
		if (c->peer[0] == '\0' || c->secret_file[0] == '\0') {
			PL_ERROR("broker",
			    "event=bad_config reason=\"a cluster broker "
			    "needs peer and secret_file\"");
			return PL_E_CONFIG;
		}
		if (c->heartbeat_ms * 2 > c->election_ms) {
			PL_ERROR("broker",
			    "event=bad_config reason=\"heartbeat_ms must "
			    "be at most half of election_ms\"");
			return PL_E_CONFIG;
		}
		return PL_OK;
	}
	if (c->nreplicas == 0) {
		/* A single-replica group: itself, at its own addresses. */
		brk_replica *r = brk_config_replica(c, c->node, true);
		snprintf(r->listen, sizeof(r->listen), "%s", c->listen);
		snprintf(r->peer, sizeof(r->peer), "%s", c->peer);
	}
	brk_replica *self = brk_config_replica(c, c->node, false);
	if (self == NULL) {
		PL_ERROR("broker",
		    "event=bad_config reason=\"node %llu is not "
		    "among the [replica.N] sections\"",
		    (unsigned long long)c->node);
		return PL_E_CONFIG;
	}
	if (c->heartbeat_ms * 2 > c->election_ms) {
		PL_ERROR("broker",
		    "event=bad_config reason=\"heartbeat_ms must "
		    "be at most half of election_ms\"");
		return PL_E_CONFIG;
	}
	if (c->group == 0 && c->secret_file[0] == '\0') {
		PL_ERROR("broker", "event=bad_config reason=\"the meta group "
		                   "(group = 0) needs secret_file: map changes "
		                   "are signed with the cluster secret\"");
		return PL_E_CONFIG;
	}
	if (c->nreplicas == 1)
		return PL_OK;
	for (int i = 0; i < c->nreplicas; i++) {
		if (c->replicas[i].peer[0] == '\0') {
			PL_ERROR("broker",
			    "event=bad_config reason=\"replica %llu has no "
			    "peer address\"",
			    (unsigned long long)c->replicas[i].id);
			return PL_E_CONFIG;
		}
	}
	if (c->peer[0] == '\0')
		snprintf(c->peer, sizeof(c->peer), "%s", self->peer);
	if (c->secret_file[0] == '\0') {
		PL_ERROR("broker", "event=bad_config reason=\"a replicated "
		                   "group needs secret_file (the cluster "
		                   "secret)\"");
		return PL_E_CONFIG;
	}
	return PL_OK;
}

static pl_status set_u64(
    const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long x = strtoull(v, &end, 10);
	if (*v == '\0' || *end != '\0' || x < min || x > max)
		return PL_E_CONFIG;
	*out = x;
	return PL_OK;
}

/* One key of [broker]; strings bounded by their fields. */
pl_status brk_config_set(brk_config *c, const char *k, const char *v)
{
	uint64_t x = 0;
	pl_status st = PL_OK;
	if (strcmp(k, "id") == 0)
		snprintf(c->id, sizeof(c->id), "%s", v);
	else if (strcmp(k, "listen") == 0)
		snprintf(c->listen, sizeof(c->listen), "%s", v);
	else if (strcmp(k, "http") == 0)
		snprintf(c->http, sizeof(c->http), "%s", v);
	else if (strcmp(k, "data") == 0)
		snprintf(c->data_dir, sizeof(c->data_dir), "%s", v);
	else if (strcmp(k, "durability") == 0) {
		if (strcmp(v, "sync") != 0 && strcmp(v, "relaxed") != 0)
			return PL_E_CONFIG;
		c->sync = strcmp(v, "sync") == 0;
	} else if (strcmp(k, "group") == 0) {
		/* 0: a replica of the meta group (the cluster map). */
		if ((st = set_u64(v, 0, 65535, &x)) == PL_OK)
			c->group = (uint16_t)x;
	} else if (strcmp(k, "map_size_mb") == 0) {
		if ((st = set_u64(v, 1, 1u << 24, &x)) == PL_OK)
			c->map_bytes = x << 20;
	} else if (strcmp(k, "sync_interval_ms") == 0) {
		if ((st = set_u64(v, 1, 60000, &x)) == PL_OK)
			c->sync_interval_ms = (uint32_t)x;
	} else if (strcmp(k, "compress_bytes_min") == 0) {
		if ((st = set_u64(v, 0, 1u << 20, &x)) == PL_OK)
			c->compress_bytes_min = (uint32_t)x;
	} else if (strcmp(k, "dedup_window") == 0) {
		if ((st = set_u64(v, 0, 1u << 24, &x)) == PL_OK)
			c->dedup_window = (uint32_t)x;
	} else if (strcmp(k, "gateway_events_max") == 0) {
		if ((st = set_u64(v, 16, 1u << 24, &x)) == PL_OK)
			c->gateway_events_max = (uint32_t)x;
	} else if (strcmp(k, "gateway_idle_ms") == 0) {
		if ((st = set_u64(v, 100, 3600000, &x)) == PL_OK)
			c->gateway_idle_ms = (uint32_t)x;
	} else if (strcmp(k, "node") == 0) {
		if ((st = set_u64(v, 1, 255, &x)) == PL_OK)
			c->node = x;
	} else if (strcmp(k, "peer") == 0) {
		st = copy_str(c->peer, sizeof(c->peer), v);
	} else if (strcmp(k, "secret_file") == 0) {
		st = copy_str(c->secret_file, sizeof(c->secret_file), v);
	} else if (strcmp(k, "election_ms") == 0) {
		if ((st = set_u64(v, 20, 60000, &x)) == PL_OK)
			c->election_ms = (uint32_t)x;
	} else if (strcmp(k, "snapshot_chunk_bytes") == 0) {
		if ((st = set_u64(v, 4096, 4u << 20, &x)) == PL_OK)
			c->snapshot_chunk_bytes = x;
	} else if (strcmp(k, "log_keep_entries") == 0) {
		if ((st = set_u64(v, 10, 1u << 30, &x)) == PL_OK)
			c->log_keep_entries = x;
	} else if (strcmp(k, "heartbeat_ms") == 0) {
		if ((st = set_u64(v, 5, 30000, &x)) == PL_OK)
			c->heartbeat_ms = (uint32_t)x;
	} else if (strcmp(k, "quiet_after_ms") == 0) {
		if ((st = set_u64(v, 0, 3600 * 1000, &x)) == PL_OK)
			c->quiet_after_ms = (uint32_t)x;
	} else {
		return PL_E_CONFIG;
	}
	return st;
}

static int ini_cb(
    void *user, const char *section, const char *name, const char *value)
{
	brk_config *c = user;
	if (strcmp(section, "log") == 0) {
		int lvl = pl_log_level_parse(value);
		if (lvl < 0)
			return 0;
		pl_log_set_level(strcmp(name, "level") == 0 ? NULL : name, lvl);
		return 1;
	}
	pl_status st;
	if (strncmp(section, "replica.", 8) == 0)
		st = replica_set(c, false, section + 8, name, value);
	else if (strncmp(section, "meta.", 5) == 0)
		st = replica_set(c, true, section + 5, name, value);
	else if (strcmp(section, "broker") == 0)
		st = brk_config_set(c, name, value);
	else
		return 1; /* other sections belong to other components */
	if (st != PL_OK) {
		PL_ERROR("broker", "event=bad_config key=%s value=\"%s\"", name,
		    value);
		return 0;
	}
	return 1;
}

pl_status brk_config_load(brk_config *c, const char *path)
{
	int rc = ini_parse(path, ini_cb, c);
	if (rc != 0) {
		PL_ERROR(
		    "broker", "event=config_failed file=%s line=%d", path, rc);
		return PL_E_CONFIG;
	}
	return PL_OK;
}
