/*
 * req.c - a request for a broker: packed once (caller, frame, origin
 * and lane) when it is made, so resends carry the same bytes; its
 * reference on the connection and its count of requests in flight; and
 * the completion of a client's own request, its reply sent under the
 * client's request id.
 */
#include <stdlib.h>

#include "gateway/req.h"

/* Default page sizes the broker applies when a request says 0; used to
 * estimate reply bytes when sizing a batch. */
#define HISTORY_LIMIT_GUESS 50
#define REPLY_BYTES_SMALL 4096

void gw_caller_fill(const gw_conn *c, Parley__Internal__Caller *caller)
{
	caller->tenant = (char *)c->claims.tenant;
	caller->user = (char *)c->claims.user;
	caller->role = c->claims.role;
	caller->room_scope = (char *)c->claims.room;
}

static uint32_t reply_estimate(const gw_conn *c, const Parley__ClientFrame *f)
{
	if (f == NULL || f->body_case != PARLEY__CLIENT_FRAME__BODY_HISTORY)
		return REPLY_BYTES_SMALL;
	uint32_t lim =
	    f->history->limit ? f->history->limit : HISTORY_LIMIT_GUESS;
	if (lim > PL_HISTORY_LIMIT_MAX)
		lim = PL_HISTORY_LIMIT_MAX;
	return lim * (c->g->conf->body_bytes_max + 512);
}

uint64_t gw_origin_next(gw *g)
{
	uint64_t z =
	    g->msg_id_boot * UINT64_C(0x100000001B3) +
	    atomic_fetch_add(&g->origins, 1) * UINT64_C(0x9E3779B97F4A7C15);
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	z ^= z >> 31;
	return z != 0 ? z : 1;
}

static bool resend_safe(const Parley__ClientFrame *f)
{
	bool id = f->body_case == PARLEY__CLIENT_FRAME__BODY_PUBLISH &&
	          f->publish->client_msg_id != NULL &&
	          f->publish->client_msg_id[0] != '\0';
	bool key = f->body_case == PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM &&
	           f->create_room->idempotency_key != NULL &&
	           f->create_room->idempotency_key[0] != '\0';
	return gw_resend_safe((int)f->body_case, id, key);
}

gw_req *gw_req_new(gw_conn *c, gw_req_kind kind, const Parley__ClientFrame *f,
    gw_req_done_fn *done, void *ctx)
{
	Parley__Internal__Caller caller = PARLEY__INTERNAL__CALLER__INIT;
	Parley__Internal__GwRequest req = PARLEY__INTERNAL__GW_REQUEST__INIT;
	gw_caller_fill(c, &caller);
	req.caller = &caller;
	req.frame = (Parley__ClientFrame *)f;
	/* Resends carry the same packed body, so the same origin. */
	if (f != NULL && f->body_case == PARLEY__CLIENT_FRAME__BODY_PUBLISH)
		req.origin = gw_origin_next(c->g);
	/* The connection's lane: its requests keep their order through
	 * batching and resends, and the broker keeps it within a batch. */
	uint64_t lane = kind != GW_REQ_WATCH ? c->id : 0;
	req.lane = lane;
	size_t size = protobuf_c_message_get_packed_size(&req.base);
	gw_req *r = malloc(sizeof(*r) + size);
	if (r == NULL)
		return NULL;
	/* Header first: the struct's tail padding may overlap body[]. */
	*r = (gw_req){.done = done,
	    .ctx = ctx,
	    .kind = (uint8_t)kind,
	    .t0_us = pl_mono_us(),
	    .reply_est = reply_estimate(c, f),
	    .pin = -1,
	    .lane = lane};
	r->deadline_us = r->t0_us + (int64_t)c->g->conf->failover_ms * 1000;
	size_t n;
	if (pl_pb_encode(&req.base, r->body, size, &n) != PL_OK) {
		free(r);
		return NULL;
	}
	r->len = (uint32_t)n;
	if (f != NULL) {
		r->client_id = f->id;
		r->op = (uint8_t)f->body_case;
		if (resend_safe(f))
			r->flags |= GW_REQF_RESEND_SAFE;
	}
	/* A watch change's reply is dropped: it needs no connection. */
	if (kind != GW_REQ_WATCH) {
		r->conn = c;
		gw_conn_ref(c);
	}
	if (kind == GW_REQ_CLIENT || kind == GW_REQ_SUBSCRIBE)
		atomic_fetch_add(&c->inflight, 1);
	return r;
}

void gw_req_free(gw_req *r)
{
	if (r == NULL)
		return;
	if (r->conn != NULL) {
		if (r->kind == GW_REQ_CLIENT || r->kind == GW_REQ_SUBSCRIBE)
			atomic_fetch_sub(&r->conn->inflight, 1);
		gw_conn_unref(r->conn);
	}
	free(r);
}

static void client_reply(gw *g, gw_req *r, Parley__ServerFrame *f)
{
	f->id = r->client_id;
	if (r->op == PARLEY__CLIENT_FRAME__BODY_PUBLISH &&
	    f->body_case == PARLEY__SERVER_FRAME__BODY_ACK) {
		/* The client sent no id, so it sent this once: a duplicate
		 * is the gateway's own earlier attempt through a failover. */
		if (r->flags & GW_REQF_GEN_ID)
			f->ack->duplicate = false;
		pl_metric_inc(g->m.acks, 1);
		pl_hist_record(g->m.publish_ack->hist,
		    (uint64_t)(pl_mono_us() - r->t0_us));
	}
	(void)gw_conn_send(r->conn, f);
}

void gw_req_client_done(gw_req *r, Parley__ServerFrame *f, int code)
{
	gw *g = r->ctx;
	Parley__Error e = PARLEY__ERROR__INIT;
	Parley__ServerFrame ef = PARLEY__SERVER_FRAME__INIT;
	if (f == NULL) {
		e.code = code;
		e.message = code == PARLEY__ERROR_CODE__UNAVAILABLE
		                ? "broker unavailable, retry"
		                : "broker gave no reply";
		ef.body_case = PARLEY__SERVER_FRAME__BODY_ERROR;
		ef.error = &e;
		f = &ef;
	}
	client_reply(g, r, f);
	gw_req_free(r);
}
