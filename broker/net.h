/*
 * net.h - the broker's gateway-facing front (net.c): an nng rep0 socket
 * that gateways dial, served by a fixed set of contexts (so the batches in
 * flight are bounded), and an HTTP server for /healthz and /metrics.
 * Received batches go to the callback given at start; replies come back
 * through brk_net_reply on the context that received them.
 */
#ifndef PARLEY_BROKER_NET_H
#define PARLEY_BROKER_NET_H

#include <nng/nng.h>

#include "broker/config.h"

/* Contexts = gateway batches in flight at once (each waits for its
 * reply, a parked feed poll or map watch for up to its wait). The socket
 * starts with BRK_NET_CONTEXTS and opens more whenever fewer than
 * BRK_NET_CONTEXTS_SPARE wait for a request, up to BRK_NET_CONTEXTS_MAX:
 * every gateway polls every group it watches, so the count follows
 * gateways x groups. Past the max a gateway's batch waits in nng's
 * queue (bounded by its own timeout). */
#define BRK_NET_CONTEXTS 128
#define BRK_NET_CONTEXTS_SPARE 16
#define BRK_NET_CONTEXTS_MAX 16384

typedef struct brk_net brk_net;

/* Called on an nng thread with a received batch: takes msg on PL_OK; on
 * an error msg stays with the caller (who frees it; the gateway's batch
 * times out and it retries). reply_ctx is passed back to brk_net_reply. */
typedef pl_status (*brk_net_receive_fn)(
    void *ctx, void *reply_ctx, nng_msg *msg);

pl_status brk_net_start(const brk_config *cfg, brk_net_receive_fn receive,
    void *ctx, pl_metrics *metrics, brk_net **out);
/* Sends reply (taken) on the context that received the request. */
void brk_net_reply(brk_net *n, void *reply_ctx, nng_msg *reply);
void brk_net_stop(brk_net *n); /* accepts NULL */

#endif
