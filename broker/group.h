/*
 * group.h - one replica of a shard group (group.c and the files listed
 * in group_internal.h): a thread that owns the replica's store and Raft
 * core, takes gateway batches from net.c and peer messages from peer.c,
 * and answers through net.c. The group's invariants are written at the
 * top of group.c; the replication contract is docs/replication.md.
 */
#ifndef PARLEY_BROKER_GROUP_H
#define PARLEY_BROKER_GROUP_H

#include <nng/nng.h>

#include "broker/config.h"
#include "broker/net.h"
#include "broker/peer.h"

typedef struct brk_group brk_group;

/* One unit of work handed from net or peer to the group: a received
 * GwBatch (answered through brk_net_reply exactly once) or a peer
 * message. */
typedef struct brk_item brk_item;

pl_status brk_group_new(
    const brk_config *cfg, pl_metrics *metrics, brk_group **out);
/* The meta group (group 0) tells this hook of every new applied map:
 * called on the group thread with the encoding (borrowed for the call)
 * and its version. Set before brk_group_start. */
typedef void (*brk_map_hook_fn)(
    void *ctx, const uint8_t *map, size_t len, uint64_t version);
void brk_group_set_map_hook(brk_group *g, brk_map_hook_fn fn, void *ctx);

/* Starts the group thread. peers is NULL for a group of one. */
pl_status brk_group_start(brk_group *g, brk_net *net, brk_peers *peers);
void brk_group_stop(brk_group *g);
void brk_group_free(brk_group *g);

/* net.c's receive callback (brk_net_receive_fn; group is the brk_group):
 * takes msg (owned) on success; PL_E_BACKPRESSURE when no item is free
 * (msg stays with the caller). */
pl_status brk_group_submit(void *group, void *reply_ctx, nng_msg *msg);
/* peer.c's receive callback (brk_peer_receive_fn): PL_E_BACKPRESSURE
 * when the peer queue is full (the caller frees msg, Raft resends). */
pl_status brk_group_submit_peer(void *group, nng_msg *msg);

#endif
