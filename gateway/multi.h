/*
 * multi.h - private to gateway/: requests that fan out (multi.c):
 * list_rooms and report to every group, status to every replica of
 * every group; the parts' answers are merged into one reply.
 */
#ifndef PARLEY_GW_MULTI_H
#define PARLEY_GW_MULTI_H

#include "gateway/req.h"

/* list_rooms and report fan out to every group, status to every
 * replica of every group; the parts are merged. */
struct gw_multi {
	pthread_mutex_t mu;
	gw_conn *conn; /* reference held */
	uint64_t client_id;
	uint8_t op;
	uint32_t limit;
	int pending;
	int nparts;
	struct {
		uint16_t group;
		int8_t replica; /* status: which one; -1 otherwise */
		uint8_t
		    *buf; /* packed ServerFrame reply, owned; NULL: failed */
		size_t len;
		int code; /* the group's error code when it answered one */
	} parts[];
};

/* Up to GW_MULTI_PARTS_MAX parts: a status asks every replica. */
#define GW_MULTI_PARTS_MAX (GW_GROUPS_MAX * GW_REPLICAS_MAX)

void gw_multi_start(gw_conn *c, const Parley__ClientFrame *f);
void gw_multi_part_done(gw *g, gw_req *r, Parley__ServerFrame *f, int code);

#endif /* PARLEY_GW_MULTI_H */
