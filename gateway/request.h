/*
 * request.h - private to gateway/: what the gateway does with one client
 * frame (request.c): local answers (hello, refresh, ping), limits, and
 * routing to the link, the feed or a fan-out.
 */
#ifndef PARLEY_GW_REQUEST_H
#define PARLEY_GW_REQUEST_H

#include "gateway/conn.h"

/* Requests one connection may have in flight: pipelining is allowed,
 * unbounded pipelining would let one client fill the broker queue. */
#define GW_CONN_INFLIGHT_MAX 1024

/* Handles one client frame's payload (borrowed for the call). */
void gw_request_handle(gw_conn *c, const uint8_t *payload, size_t len);

#endif /* PARLEY_GW_REQUEST_H */
