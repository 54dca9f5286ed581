/*
 * broker.h - the contract of parley-broker, one header per module:
 *
 *   room.h      the room model and consultation statistics (room.c)
 *   access.h    who may do what (access.c)
 *   arena.h     the chunked arena replies are built in (arena.c)
 *   store/store.h  the LMDB store of one group replica (store/)
 *   auth.h      sealing broker-to-broker messages (auth.c)
 *   config.h    a broker's configuration (config.c)
 *   net.h peer.h  the transports (net.c, peer.c)
 *   group.h     one replica of a shard group (group.c and the files
 *               group_internal.h lists)
 *   host.h      one broker process: the groups it hosts, their routing
 *               and, in a cluster, the map it follows (host.c)
 *
 * Storage layout and invariants are written in docs/internals.md; the
 * group's threading rules are at the top of group.c.
 */
#ifndef PARLEY_BROKER_H
#define PARLEY_BROKER_H

#include "broker/access.h"
#include "broker/arena.h"
#include "broker/auth.h"
#include "broker/config.h"
#include "broker/group.h"
#include "broker/host.h"
#include "broker/net.h"
#include "broker/peer.h"
#include "broker/room.h"
#include "broker/store/store.h"

#endif /* PARLEY_BROKER_H */
