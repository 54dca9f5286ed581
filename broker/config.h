/*
 * config.h - a broker process's configuration (config.c): its INI file's
 * [broker] section and [replica.N] sections, and the same keys as
 * --key=value options.
 */
#ifndef PARLEY_BROKER_CONFIG_H
#define PARLEY_BROKER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"
#include "raft/raft.h"

/* One replica of the group, as [replica.N] names it. */
typedef struct brk_replica {
	uint64_t id;
	char listen[256]; /* its gateway-facing address: the leader hint */
	char peer[256];   /* its broker-to-broker address */
	bool learner;     /* map: catching up, not a voter of the bootstrap */
} brk_replica;

typedef struct brk_config {
	char id[64];
	char listen[256]; /* nng rep0 address for gateways */
	char http[128];   /* host:port for /healthz and /metrics; "" off */
	char data_dir[512];
	uint16_t group;
	uint64_t map_bytes;
	bool sync;
	uint32_t sync_interval_ms; /* relaxed durability */
	uint32_t compress_bytes_min;
	uint32_t dedup_window;
	uint32_t gateway_events_max; /* per-gateway feed bound */
	uint32_t gateway_idle_ms;
	/* Replication: this replica's id, the group's replicas (itself
	 * included; none configured = a group of one), the address peers
	 * dial, the cluster secret and the Raft timers. */
	uint64_t node;
	char peer[256];
	char secret_file[512];
	uint32_t election_ms; /* randomized in [election, 2 x election) */
	uint32_t heartbeat_ms;
	/* An idle group stops its Raft clock after this long (0: never;
	 * broker/quiet.c). */
	uint32_t quiet_after_ms;
	/* Applied entries the Raft log keeps for followers that lag; one
	 * further behind is sent a snapshot. */
	uint64_t log_keep_entries;
	uint64_t snapshot_chunk_bytes; /* a snapshot travels in these */
	brk_replica replicas[RAFT_PEERS_MAX];
	int nreplicas;
	/* A broker of a cluster run by its map ([meta.N] sections): the
	 * meta group's replicas (id, listen, peer). The broker hosts a
	 * replica of the meta group when its node is among them, and the
	 * replicas of shard groups the map places on it. None: a broker of
	 * one statically configured group (`group`, [replica.N]). */
	brk_replica meta[RAFT_PEERS_MAX];
	int nmeta;
	/* Set by a broker hosting several groups (not an INI key): each
	 * group's metrics carry a group label. */
	bool metrics_by_group;
} brk_config;

void brk_config_defaults(brk_config *c);
pl_status brk_config_load(brk_config *c, const char *path);
/* One [broker] key; PL_E_CONFIG for unknown keys or bad values. */
pl_status brk_config_set(brk_config *c, const char *key, const char *value);
/* Completes and checks a loaded config (a group of one when no replica
 * is listed; peers, secret and timers of a replicated group). */
pl_status brk_config_check(brk_config *c);
brk_replica *brk_config_replica(brk_config *c, uint64_t id, bool create);
/* The config of one group a cluster broker hosts: the process's own
 * settings, group id, its data directory under the broker's (data/meta,
 * data/g<N>) and the given replicas. PL_E_CONFIG when a path is too
 * long. */
pl_status brk_config_for_group(const brk_config *proc, uint32_t group,
    const brk_replica *replicas, int n, brk_config *out);

#endif
