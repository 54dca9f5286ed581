/*
 * http.h - private to gateway/: the HTTP routes other than /ws (http.c):
 * health, metrics and static files.
 */
#ifndef PARLEY_GW_HTTP_H
#define PARLEY_GW_HTTP_H

#include "gateway/core.h"
#include "gateway/httpd.h"

/* res is filled in every case. */
void gw_http_route(gw *g, const gw_http_req *req, gw_http_res *res);

#endif /* PARLEY_GW_HTTP_H */
