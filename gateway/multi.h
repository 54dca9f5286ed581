/*
 * multi.h - private to gateway/: requests that fan out (multi.c):
 * list_rooms and report to every group, status to every replica of
 * every group; the parts' answers are merged into one reply.
 */
#ifndef PARLEY_GW_MULTI_H
#define PARLEY_GW_MULTI_H

#include "gateway/req.h"

void gw_multi_start(gw_conn *c, const Parley__ClientFrame *f);

#endif /* PARLEY_GW_MULTI_H */
