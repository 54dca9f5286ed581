/*
 * req.h - private to gateway/: one request for a broker (req.c), packed
 * once when it is made and spliced into batches by the link; who made
 * it says, in done, what its reply is for.
 */
#ifndef PARLEY_GW_REQ_H
#define PARLEY_GW_REQ_H

#include "gateway/conn.h"

typedef struct gw_req gw_req;

/* How a request ends: called once, by the link, with the broker's reply
 * (borrowed for the call), or with f NULL when the request failed with
 * code (a parley.ErrorCode: unavailable, internal). It takes r: it must
 * free it (gw_req_free). Runs on an nng thread; for a request in a batch
 * it is called without the link's locks held, for one failed at submit
 * by the submitter's own thread. */
typedef void gw_req_done_fn(gw_req *r, Parley__ServerFrame *f, int code);

typedef enum gw_req_kind {
	GW_REQ_CLIENT,    /* reply goes to the client as is */
	GW_REQ_SUBSCRIBE, /* Subscribed starts the cursor */
	GW_REQ_CATCHUP,   /* a history page for a cursor */
	GW_REQ_WATCH,     /* watch change; the reply is dropped */
	GW_REQ_PART,      /* one group's share of list_rooms / status */
} gw_req_kind;

enum {
	/* Sending it twice is harmless (gw_resend_safe). */
	GW_REQF_RESEND_SAFE = 1,
	/* Its client_msg_id was made by the gateway: a duplicate ack can
	 * only be the gateway's own earlier attempt. */
	GW_REQF_GEN_ID = 2,
};

/* One request for a broker: a packed GwRequest without its id (the id is
 * spliced in when the batch is built). */
struct gw_req {
	gw_req *next;
	gw_conn *conn; /* reference held; NULL for watch changes */
	/* Set by whoever makes it: what its reply is for (see above). */
	gw_req_done_fn *done;
	void *ctx; /* done's, borrowed: it outlives the request */
	uint64_t client_id;
	uint64_t sub_id;
	int64_t t0_us;
	/* Re-sent through leader changes until then (failover_ms). */
	int64_t deadline_us;
	uint32_t reply_est; /* reply bytes it may produce */
	uint8_t kind;
	uint8_t op; /* Parley__ClientFrame__BodyCase */
	uint8_t flags;
	/* >= 0: for this replica only (a status part), never re-sent. */
	int8_t pin;
	uint16_t part;
	/* Its lane (lane.c): the connection's id, 0 for watch changes. */
	uint64_t lane;
	uint32_t len;
	uint8_t body[];
};

/* The next GwRequest.origin: distinct for every request of this
 * gateway process (a bijection of a counter), random across gateways
 * and restarts (keyed by the boot value), never 0. */
uint64_t gw_origin_next(gw *g);
/* Packs GwRequest{caller of c, frame} into a new request that
 * ends by calling done(r, f, code) with ctx in r->ctx. NULL when out of
 * memory. c and f are borrowed; the request holds a reference on c
 * unless it is a watch change. */
gw_req *gw_req_new(gw_conn *c, gw_req_kind kind, const Parley__ClientFrame *f,
    gw_req_done_fn *done, void *ctx);
/* Drops the reference on the connection and frees r; accepts NULL. */
void gw_req_free(gw_req *r);
/* The done of a client's own request (ctx: the gw): the reply goes to
 * the client under its request id; a failure becomes an error reply. */
gw_req_done_fn gw_req_client_done;
void gw_caller_fill(const gw_conn *c, Parley__Internal__Caller *caller);

#endif /* PARLEY_GW_REQ_H */
