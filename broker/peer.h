/*
 * peer.h - the broker-to-broker transport (peer.c), shared by every group
 * a broker hosts:
 * bus0 in, bus0 out per peer; sends take the message and never block
 * (dropped and counted when a queue is full or the peer is down: Raft
 * sends again). It moves bytes only: what it carries is sealed by the
 * group (envelope.h).
 */
#ifndef PARLEY_BROKER_PEER_H
#define PARLEY_BROKER_PEER_H

#include <stdint.h>

#include <nng/nng.h>

#include "broker/config.h"

typedef struct brk_peers brk_peers;

/* Called on an nng thread with a received message: takes msg on PL_OK;
 * on an error msg stays with the caller (dropped and counted). */
typedef pl_status (*brk_peer_receive_fn)(void *ctx, nng_msg *msg);

pl_status brk_peers_start(const brk_config *cfg, brk_peer_receive_fn receive,
    void *ctx, brk_peers **out);
/* Starts sending to another broker (idempotent by node). Thread-safe. */
pl_status brk_peers_add(brk_peers *p, uint64_t node, const char *addr);
void brk_peers_send(brk_peers *p, uint64_t node, nng_msg *m);
/* Messages dropped since start, sent and received. */
uint64_t brk_peers_dropped(brk_peers *p);
void brk_peers_stop(brk_peers *p); /* accepts NULL */

#endif
