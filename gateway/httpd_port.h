/*
 * httpd_port.h - private to gateway/: the HTTP port (httpd.c), which
 * serves the routes of http.c and hands upgraded WebSocket connections
 * to conn.c. (httpd.h is the pure part: the request parser and the
 * WebSocket framing.)
 */
#ifndef PARLEY_GW_HTTPD_PORT_H
#define PARLEY_GW_HTTPD_PORT_H

#include "gateway/core.h"

/* Start binds it (PL_E_IO when it cannot); stop closes it and every
 * HTTP connection not yet upgraded, and waits for them; free (in
 * gw_free, after every client connection is gone) releases the rest.
 * Not from an nng callback. */
pl_status gw_httpd_start(gw *g);
void gw_httpd_stop(gw *g);
void gw_httpd_free(gw *g);
/* From the sweeper: ends reads past their deadline (408 or a close). */
void gw_httpd_sweep(gw *g);
/* A connection counted for p ended (p->len 0: none was counted). */
void gw_httpd_peer_put(gw *g, const gw_peer *p);

#endif /* PARLEY_GW_HTTPD_PORT_H */
