/*
 * host.h - one broker process (host.c): the groups it hosts, behind one
 * gateway-facing socket (net.c), one peer transport (peer.c) and one
 * metrics registry. A batch from a gateway names its group
 * (GwBatch.group, peeked without decoding); a peer message names its
 * sender's group in its sealed header; each goes to that group's queue.
 *
 * A broker of one static group (`group`, [replica.N]) hosts exactly it.
 * A cluster broker ([meta.N] sections) hosts a meta replica when its
 * node is one, registers itself in the map, watches the map and starts
 * a replica of every shard group the map places on it, at runtime.
 * docs/cluster.md tells the rules.
 */
#ifndef PARLEY_BROKER_HOST_H
#define PARLEY_BROKER_HOST_H

#include "broker/config.h"

/* Groups one broker hosts at most (each has its own LMDB environment,
 * thread and Raft instance). */
#define BRK_HOST_GROUPS_MAX 1024

typedef struct brk_host brk_host;

/* cfg is copied. Starts the transports and the configured groups;
 * *out only on success. */
pl_status brk_host_start(
    const brk_config *cfg, pl_metrics *metrics, brk_host **out);
/* Groups hosted now. */
int brk_host_groups(brk_host *h);
/* Stops every group and transport and frees; NULL ok. */
/* Before a stop: every group this broker leads hands its leadership to a
 * caught-up voter, so the restart costs each group one transfer instead
 * of an election timeout; returns once none leads or after
 * BRK_HOST_HANDOFF_MS (a group that cannot hand over just stops). */
#define BRK_HOST_HANDOFF_MS 500
void brk_host_handoff(brk_host *h);
void brk_host_stop(brk_host *h);

#endif /* PARLEY_BROKER_HOST_H */
