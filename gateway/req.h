/*
 * req.h - private to gateway/: one request for a broker (req.c), packed
 * once when it is made and spliced into batches by the link; who made
 * it says, in done, what its reply is for.
 */
#ifndef PARLEY_GW_REQ_H
#define PARLEY_GW_REQ_H

#include "gateway/conn.h"

typedef struct gw_req gw_req;
typedef struct gw_multi gw_multi;

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
	gw_multi *multi;
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
/* Packs GwRequest{caller of c, frame, watch} into a new request. */
gw_req *gw_req_new(gw_conn *c, gw_req_kind kind, const Parley__ClientFrame *f,
    const Parley__Internal__Watch *w);
void gw_req_free(gw_req *r);
void gw_caller_fill(const gw_conn *c, Parley__Internal__Caller *caller);

#endif /* PARLEY_GW_REQ_H */
