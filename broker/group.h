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
#include "raft/raft.h"

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

/* What the cluster map wants of this group (broker/members.c): its
 * voters and learners, and the preferred leader (0: none). */
typedef struct brk_members_target {
	uint64_t version; /* of the map it comes from */
	uint64_t voters[RAFT_PEERS_MAX];
	int nvoters;
	uint64_t learners[RAFT_PEERS_MAX];
	int nlearners;
	uint64_t leader;
} brk_members_target;
/* Hands the group a new target (copied; any thread). While it leads,
 * the replica changes the group's Raft configuration towards it one
 * step at a time and hands leadership to the preferred leader. */
void brk_group_set_target(brk_group *g, const brk_members_target *t);
/* Asks the replica to hand leadership to a caught-up voter (a broker
 * about to stop); any thread. brk_group_leads says whether it still
 * leads a group with other voters (as of the group thread's last look,
 * at most 50 ms old). */
void brk_group_handoff(brk_group *g);
bool brk_group_leads(brk_group *g);
/* Whether the replica's latest Raft configuration (in its log, as of
 * the group thread's last look) still names it; true until it looked. */
bool brk_group_in_conf(brk_group *g);
/* The replica's data directory (its config's). */
const char *brk_group_data_dir(const brk_group *g);

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
