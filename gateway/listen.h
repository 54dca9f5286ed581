/*
 * listen.h - private to gateway/: the client listeners (listen.c): the
 * TCP port, and the HTTP port started and stopped with it.
 */
#ifndef PARLEY_GW_LISTEN_H
#define PARLEY_GW_LISTEN_H

#include "gateway/core.h"

pl_status gw_listen_start(gw *g);
void gw_listen_stop(gw *g);

#endif /* PARLEY_GW_LISTEN_H */
