/*
 * test_group.c - the group driver behind its real nng front, spoken to
 * like a gateway would (req0, GwBatch/BrokerBatch) over an ipc socket:
 * group commit of many rooms' publishes, replies after commit, live-feed
 * filtering at the sender, feed overflow, presence and retries.
 */
#define CHECK_MAIN
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdlib.h>
#include <unistd.h>

#include "broker/broker.h"
#include "tests/check.h"

typedef struct node {
	brk_config cfg;
	pl_metrics metrics;
	brk_group *g;
	brk_net *net;
} node;

static pl_status node_start(node *n, uint32_t events_max)
{
	memset(n, 0, sizeof(*n));
	brk_config_defaults(&n->cfg);
	snprintf(n->cfg.data_dir, sizeof(n->cfg.data_dir),
	    "/tmp/parley-group-XXXXXX");
	if (mkdtemp(n->cfg.data_dir) == NULL)
		return PL_E_IO;
	if (strlen(n->cfg.data_dir) > 64)
		return PL_E_CONFIG;
	snprintf(n->cfg.listen, sizeof(n->cfg.listen), "ipc://%.64s/sock",
	    n->cfg.data_dir);
	n->cfg.http[0] = '\0';
	n->cfg.gateway_events_max = events_max;
	pl_metrics_init(&n->metrics);
	pl_status st = brk_group_new(&n->cfg, &n->metrics, &n->g);
	if (st == PL_OK)
		st = brk_net_start(
		    &n->cfg, brk_group_submit, n->g, &n->metrics, &n->net);
	if (st == PL_OK)
		st = brk_group_start(n->g, n->net, NULL);
	return st;
}

static void node_stop(node *n)
{
	char cmd[600];
	brk_group_stop(n->g);
	brk_net_stop(n->net);
	brk_group_free(n->g);
	pl_metrics_fini(&n->metrics);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", n->cfg.data_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed\n");
}

static int64_t metric(node *n, const char *name)
{
	for (int i = 0; i < n->metrics.n; i++)
		if (strcmp(pl_metrics_at(&n->metrics, i)->name, name) == 0)
			return pl_metrics_at(&n->metrics, i)->value;
	return -1;
}

static nng_socket gw_dial(node *n)
{
	nng_socket s;
	PL_ASSERT(nng_req0_open(&s) == 0);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000);
	PL_ASSERT(nng_dial(s, n->cfg.listen, NULL, 0) == 0);
	return s;
}

typedef struct req_builder {
	Parley__Internal__GwBatch b;
	Parley__Internal__GwRequest reqs[256], *rp[256];
	Parley__ClientFrame frames[256];
	Parley__Internal__Caller caller;
	union {
		Parley__CreateRoom cr;
		Parley__Publish pub;
		Parley__Subscribe sub;
		Parley__Join join;
	} ops[256];
	char rooms[256][PL_ROOM_ID_CHARS + 1];
	char ids[256][16];
} req_builder;

static void rb_init(req_builder *rb, const char *gw, const char *user, int role)
{
	memset(rb, 0, sizeof(*rb));
	parley__internal__gw_batch__init(&rb->b);
	rb->b.gateway = (char *)gw;
	rb->b.reqs = rb->rp;
	parley__internal__caller__init(&rb->caller);
	rb->caller.tenant = "acme";
	rb->caller.user = (char *)user;
	rb->caller.role = role;
	rb->caller.room_scope = "";
}

static Parley__ClientFrame *rb_add(req_builder *rb)
{
	size_t i = rb->b.n_reqs++;
	parley__internal__gw_request__init(&rb->reqs[i]);
	parley__client_frame__init(&rb->frames[i]);
	rb->reqs[i].id = 1000 + i;
	rb->reqs[i].caller = &rb->caller;
	rb->reqs[i].frame = &rb->frames[i];
	rb->rp[i] = &rb->reqs[i];
	return &rb->frames[i];
}

static void rb_create(req_builder *rb)
{
	Parley__ClientFrame *f = rb_add(rb);
	Parley__CreateRoom *cr = &rb->ops[rb->b.n_reqs - 1].cr;
	parley__create_room__init(cr);
	f->body_case = PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM;
	f->create_room = cr;
}

static void rb_publish(req_builder *rb, const char *room, const char *cmid)
{
	size_t i = rb->b.n_reqs;
	Parley__ClientFrame *f = rb_add(rb);
	Parley__Publish *p = &rb->ops[i].pub;
	parley__publish__init(p);
	snprintf(rb->rooms[i], sizeof(rb->rooms[i]), "%s", room);
	snprintf(rb->ids[i], sizeof(rb->ids[i]), "%s", cmid);
	p->room = rb->rooms[i];
	p->client_msg_id = rb->ids[i];
	p->body.data = (uint8_t *)"hello";
	p->body.len = 5;
	f->body_case = PARLEY__CLIENT_FRAME__BODY_PUBLISH;
	f->publish = p;
}

static void rb_subscribe(req_builder *rb, const char *room)
{
	size_t i = rb->b.n_reqs;
	Parley__ClientFrame *f = rb_add(rb);
	Parley__Subscribe *s = &rb->ops[i].sub;
	parley__subscribe__init(s);
	snprintf(rb->rooms[i], sizeof(rb->rooms[i]), "%s", room);
	s->room = rb->rooms[i];
	f->body_case = PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE;
	f->subscribe = s;
}

/* Sends the batch, returns the unpacked reply (free with
 * parley__internal__broker_batch__free_unpacked) or NULL. */
static Parley__Internal__BrokerBatch *roundtrip(
    nng_socket s, Parley__Internal__GwBatch *b)
{
	size_t n = parley__internal__gw_batch__get_packed_size(b);
	nng_msg *m;
	if (nng_msg_alloc(&m, n) != 0)
		return NULL;
	parley__internal__gw_batch__pack(b, nng_msg_body(m));
	if (nng_sendmsg(s, m, 0) != 0) {
		nng_msg_free(m);
		return NULL;
	}
	if (nng_recvmsg(s, &m, 0) != 0)
		return NULL;
	Parley__Internal__BrokerBatch *r =
	    parley__internal__broker_batch__unpack(
	        NULL, nng_msg_len(m), nng_msg_body(m));
	nng_msg_free(m);
	return r;
}

static Parley__Internal__BrokerBatch *poll_feed(
    nng_socket s, const char *gw, uint32_t wait_ms)
{
	Parley__Internal__GwBatch b;
	parley__internal__gw_batch__init(&b);
	b.gateway = (char *)gw;
	b.poll = true;
	b.wait_ms = wait_ms;
	return roundtrip(s, &b);
}

static pl_status make_rooms(nng_socket s, int n, char rooms[][17])
{
	static req_builder rb;
	rb_init(&rb, "gw-a", "backend", PARLEY__ROLE__SERVICE);
	for (int i = 0; i < n; i++)
		rb_create(&rb);
	Parley__Internal__BrokerBatch *r = roundtrip(s, &rb.b);
	if (r == NULL || r->n_replies != (size_t)n)
		return PL_E_INTERNAL;
	for (int i = 0; i < n; i++) {
		if (r->replies[i]->body_case !=
		    PARLEY__SERVER_FRAME__BODY_ROOM_CREATED)
			return PL_E_INTERNAL;
		snprintf(rooms[i], 17, "%s", r->replies[i]->room_created->room);
	}
	parley__internal__broker_batch__free_unpacked(r, NULL);
	return PL_OK;
}

TEST(test_group_publishes_of_many_rooms_share_one_commit)
{
	static node n;
	static req_builder rb;
	char rooms[50][17];
	CHECK_EQ(node_start(&n, 1024), PL_OK);
	nng_socket s = gw_dial(&n);
	CHECK_EQ(make_rooms(s, 50, rooms), PL_OK);
	int64_t rounds = metric(&n, "parley_broker_commit_rounds_total");
	rb_init(&rb, "gw-a", "backend", PARLEY__ROLE__SERVICE);
	for (int i = 0; i < 200; i++) {
		char id[16];
		snprintf(id, sizeof(id), "m%d", i);
		rb_publish(&rb, rooms[i % 50], id);
	}
	Parley__Internal__BrokerBatch *r = roundtrip(s, &rb.b);
	CHECK(r != NULL);
	CHECK_EQ(r->n_replies, 200);
	for (int i = 0; i < 200; i++) {
		CHECK_EQ(r->replies[i]->id, 1000 + i);
		CHECK_EQ(
		    r->replies[i]->body_case, PARLEY__SERVER_FRAME__BODY_ACK);
		CHECK_EQ(r->replies[i]->ack->seq, (uint64_t)(i / 50 + 1));
	}
	parley__internal__broker_batch__free_unpacked(r, NULL);
	/* 200 publishes over 50 rooms: one round, one transaction. */
	CHECK_EQ(metric(&n, "parley_broker_commit_rounds_total"), rounds + 1);
	nng_close(s);
	node_stop(&n);
}

TEST(test_group_feed_goes_only_to_watching_gateways)
{
	static node n;
	static req_builder rb;
	char rooms[2][17];
	CHECK_EQ(node_start(&n, 1024), PL_OK);
	nng_socket s = gw_dial(&n);
	CHECK_EQ(make_rooms(s, 2, rooms), PL_OK);
	/* Gateway A watches room 0 for two users (it must get each event
	 * once), gateway B watches room 1. */
	rb_init(&rb, "gw-a", "agent-a", PARLEY__ROLE__AGENT);
	rb_subscribe(&rb, rooms[0]);
	Parley__Internal__BrokerBatch *r = roundtrip(s, &rb.b);
	CHECK(r != NULL && r->n_replies == 1);
	CHECK_EQ(
	    r->replies[0]->body_case, PARLEY__SERVER_FRAME__BODY_SUBSCRIBED);
	parley__internal__broker_batch__free_unpacked(r, NULL);
	rb_init(&rb, "gw-a", "agent-a2", PARLEY__ROLE__AGENT);
	rb_subscribe(&rb, rooms[0]);
	r = roundtrip(s, &rb.b);
	CHECK(r != NULL && r->n_replies == 1);
	CHECK_EQ(
	    r->replies[0]->body_case, PARLEY__SERVER_FRAME__BODY_SUBSCRIBED);
	parley__internal__broker_batch__free_unpacked(r, NULL);
	rb_init(&rb, "gw-b", "agent-b", PARLEY__ROLE__AGENT);
	rb_subscribe(&rb, rooms[1]);
	r = roundtrip(s, &rb.b);
	CHECK(r != NULL);
	parley__internal__broker_batch__free_unpacked(r, NULL);
	/* Drain the presence events both subscriptions caused. */
	r = poll_feed(s, "gw-a", 50);
	CHECK(r != NULL);
	parley__internal__broker_batch__free_unpacked(r, NULL);
	r = poll_feed(s, "gw-b", 50);
	CHECK(r != NULL);
	parley__internal__broker_batch__free_unpacked(r, NULL);

	rb_init(&rb, "gw-a", "backend", PARLEY__ROLE__SERVICE);
	rb_publish(&rb, rooms[0], "x1");
	rb_publish(&rb, rooms[0], "x2");
	r = roundtrip(s, &rb.b);
	CHECK(r != NULL);
	parley__internal__broker_batch__free_unpacked(r, NULL);
	r = poll_feed(s, "gw-a", 1000);
	CHECK(r != NULL);
	CHECK_EQ(r->n_events, 2);
	CHECK_STR_EQ(r->events[0]->room, rooms[0]);
	CHECK_EQ(r->events[0]->message->seq, 1);
	CHECK_EQ(r->events[1]->message->seq, 2);
	CHECK(!r->overflow);
	CHECK(r->epoch != NULL && strlen(r->epoch) > 32);
	parley__internal__broker_batch__free_unpacked(r, NULL);
	r = poll_feed(s, "gw-b", 100); /* nothing for room 0 reaches B */
	CHECK(r != NULL);
	CHECK_EQ(r->n_events, 0);
	parley__internal__broker_batch__free_unpacked(r, NULL);
	nng_close(s);
	node_stop(&n);
}

TEST(test_group_feed_overflow_drops_and_flags)
{
	static node n;
	static req_builder rb;
	char rooms[1][17];
	CHECK_EQ(node_start(&n, 16), PL_OK);
	nng_socket s = gw_dial(&n);
	CHECK_EQ(make_rooms(s, 1, rooms), PL_OK);
	rb_init(&rb, "gw-a", "agent", PARLEY__ROLE__AGENT);
	rb_subscribe(&rb, rooms[0]);
	Parley__Internal__BrokerBatch *r = roundtrip(s, &rb.b);
	CHECK(r != NULL);
	parley__internal__broker_batch__free_unpacked(r, NULL);
	rb_init(&rb, "gw-a", "backend", PARLEY__ROLE__SERVICE);
	for (int i = 0; i < 40; i++) {
		char id[16];
		snprintf(id, sizeof(id), "o%d", i);
		rb_publish(&rb, rooms[0], id);
	}
	r = roundtrip(s, &rb.b);
	CHECK(r != NULL && r->n_replies == 40);
	/* Every publish is acked even though the feed overflowed. */
	CHECK_EQ(r->replies[39]->ack->seq, 40);
	parley__internal__broker_batch__free_unpacked(r, NULL);
	r = poll_feed(s, "gw-a", 1000);
	CHECK(r != NULL);
	CHECK(r->overflow);
	CHECK_LE(r->n_events, 16);
	parley__internal__broker_batch__free_unpacked(r, NULL);
	CHECK_GT(metric(&n, "parley_broker_feed_dropped_total"), 0);
	nng_close(s);
	node_stop(&n);
}

TEST(test_group_presence_online_on_subscribe)
{
	static node n;
	static req_builder rb;
	char rooms[1][17];
	CHECK_EQ(node_start(&n, 1024), PL_OK);
	nng_socket s = gw_dial(&n);
	CHECK_EQ(make_rooms(s, 1, rooms), PL_OK);
	rb_init(&rb, "gw-a", "agent-1", PARLEY__ROLE__AGENT);
	rb_subscribe(&rb, rooms[0]);
	Parley__Internal__BrokerBatch *r = roundtrip(s, &rb.b);
	CHECK(r != NULL);
	parley__internal__broker_batch__free_unpacked(r, NULL);
	r = poll_feed(s, "gw-a", 1000);
	CHECK(r != NULL);
	CHECK_EQ(r->n_events, 1);
	CHECK_EQ(r->events[0]->ev_case, PARLEY__EVENT__EV_PRESENCE);
	CHECK_STR_EQ(r->events[0]->presence->user, "agent-1");
	CHECK(r->events[0]->presence->online);
	parley__internal__broker_batch__free_unpacked(r, NULL);
	nng_close(s);
	node_stop(&n);
}

TEST(test_group_garbage_batch_gets_empty_reply)
{
	static node n;
	CHECK_EQ(node_start(&n, 1024), PL_OK);
	nng_socket s = gw_dial(&n);
	nng_msg *m;
	CHECK_EQ(nng_msg_alloc(&m, 0), 0);
	CHECK_EQ(nng_msg_append(m, "\xff\xff\xff\xff\x0f garbage", 14), 0);
	CHECK_EQ(nng_sendmsg(s, m, 0), 0);
	CHECK_EQ(nng_recvmsg(s, &m, 0), 0);
	Parley__Internal__BrokerBatch *r =
	    parley__internal__broker_batch__unpack(
	        NULL, nng_msg_len(m), nng_msg_body(m));
	nng_msg_free(m);
	CHECK(r != NULL);
	CHECK_EQ(r->n_replies, 0);
	parley__internal__broker_batch__free_unpacked(r, NULL);
	nng_close(s);
	node_stop(&n);
}
