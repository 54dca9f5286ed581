/*
 * test_codec_records.c - the structural checks of server frames and
 * internal records (gateway and broker batches, commands, peer batches,
 * room records, claims): each decodes, and each broken variant is
 * refused. Part of unit_codec (test_codec.h).
 */
#include "tests/unit/test_codec.h"

/* ---- server frames and internal records ---- */

struct packed {
	uint8_t buf[4096];
	size_t n;
	pl_arena a;
	uint8_t arena_buf[PL_ARENA_BYTES_FOR(4096)];
};

static struct packed *pack(const ProtobufCMessage *m)
{
	struct packed *pk = malloc(sizeof(*pk));
	PL_ASSERT(pl_pb_encode(m, pk->buf, sizeof(pk->buf), &pk->n) == PL_OK);
	PL_ASSERT(pl_arena_init(&pk->a, pk->arena_buf, sizeof(pk->arena_buf)) ==
	          PL_OK);
	return pk;
}

TEST(test_codec_server_frame_round_trip)
{
	Parley__Ack ack = PARLEY__ACK__INIT;
	Parley__ServerFrame f = PARLEY__SERVER_FRAME__INIT, *out;
	ack.room = ROOM_OK;
	ack.seq = 42;
	f.id = 9;
	f.body_case = PARLEY__SERVER_FRAME__BODY_ACK;
	f.ack = &ack;
	struct packed *pk = pack(&f.base);
	CHECK_EQ(
	    pl_server_frame_decode(pk->buf, pk->n, 4096, &pk->a, &out), PL_OK);
	CHECK_EQ(out->body_case, PARLEY__SERVER_FRAME__BODY_ACK);
	CHECK_EQ(out->ack->seq, 42);
	CHECK_STR_EQ(out->ack->room, ROOM_OK);
	free(pk);
}

TEST(test_codec_server_frame_structure)
{
	Parley__ServerFrame f = PARLEY__SERVER_FRAME__INIT, *out;
	Parley__Event ev = PARLEY__EVENT__INIT;
	f.id = 3; /* no body */
	struct packed *pk = pack(&f.base);
	CHECK_EQ(pl_server_frame_decode(pk->buf, pk->n, 4096, &pk->a, &out),
	    PL_E_PROTO);
	free(pk);
	ev.room = ROOM_OK; /* an event with no ev */
	f.body_case = PARLEY__SERVER_FRAME__BODY_EVENT;
	f.event = &ev;
	pk = pack(&f.base);
	CHECK_EQ(pl_server_frame_decode(pk->buf, pk->n, 4096, &pk->a, &out),
	    PL_E_PROTO);
	CHECK_EQ(
	    pl_server_frame_decode(pk->buf, pk->n, pk->n - 1, &pk->a, &out),
	    PL_E_TOO_LARGE);
	free(pk);
}

/* A GwBatch with a publish and a subscribe; then each broken variant. */
TEST(test_codec_gw_batch)
{
	Parley__Publish pub = PARLEY__PUBLISH__INIT;
	Parley__ClientFrame cf = PARLEY__CLIENT_FRAME__INIT;
	Parley__Internal__Caller caller = PARLEY__INTERNAL__CALLER__INIT;
	Parley__Subscribe sub = PARLEY__SUBSCRIBE__INIT;
	Parley__ClientFrame cf2 = PARLEY__CLIENT_FRAME__INIT;
	Parley__Internal__GwRequest r1 = PARLEY__INTERNAL__GW_REQUEST__INIT;
	Parley__Internal__GwRequest r2 = PARLEY__INTERNAL__GW_REQUEST__INIT;
	Parley__Internal__GwRequest *reqs[] = {&r1, &r2};
	Parley__Internal__GwBatch b = PARLEY__INTERNAL__GW_BATCH__INIT, *out;
	pub.room = ROOM_OK;
	cf.body_case = PARLEY__CLIENT_FRAME__BODY_PUBLISH;
	cf.publish = &pub;
	caller.tenant = "acme";
	caller.role = PARLEY__ROLE__AGENT;
	r1.id = 1;
	r1.caller = &caller;
	r1.frame = &cf;
	sub.room = ROOM_OK;
	cf2.body_case = PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE;
	cf2.subscribe = &sub;
	r2.id = 2;
	r2.caller = &caller;
	r2.frame = &cf2;
	b.gateway = "gw1";
	b.n_reqs = 2;
	b.reqs = reqs;
	struct packed *pk = pack(&b.base);
	CHECK_EQ(pl_gw_batch_decode(pk->buf, pk->n, &pk->a, &out), PL_OK);
	CHECK_EQ(out->n_reqs, 2);
	CHECK_STR_EQ(out->reqs[0]->frame->publish->room, ROOM_OK);
	CHECK_STR_EQ(out->reqs[1]->frame->subscribe->room, ROOM_OK);
	free(pk);

	pub.room = "bad"; /* the broker's promise: rooms parse */
	pk = pack(&b.base);
	CHECK_EQ(pl_gw_batch_decode(pk->buf, pk->n, &pk->a, &out), PL_E_PROTO);
	free(pk);
	pub.room = ROOM_OK;
	r2.frame = NULL; /* a request without a frame */
	pk = pack(&b.base);
	CHECK_EQ(pl_gw_batch_decode(pk->buf, pk->n, &pk->a, &out), PL_E_PROTO);
	free(pk);
	r2.frame = &cf2;
	caller.role = 6;
	pk = pack(&b.base);
	CHECK_EQ(pl_gw_batch_decode(pk->buf, pk->n, &pk->a, &out), PL_E_PROTO);
	free(pk);
	caller.role = PARLEY__ROLE__AGENT;
	b.gateway = ""; /* the broker keys feeds on it */
	pk = pack(&b.base);
	CHECK_EQ(pl_gw_batch_decode(pk->buf, pk->n, &pk->a, &out), PL_E_PROTO);
	free(pk);
	b.gateway = "gw1";
	/* At the wire's bound it decodes; one more is refused, by both
	 * decoders. */
	Parley__Internal__GwRequest **many =
	    calloc(PL_GW_BATCH_REQS_MAX + 1, sizeof(*many));
	for (size_t i = 0; i <= PL_GW_BATCH_REQS_MAX; i++)
		many[i] = &r1;
	b.reqs = many;
	for (size_t n = PL_GW_BATCH_REQS_MAX; n <= PL_GW_BATCH_REQS_MAX + 1;
	     n++) {
		b.n_reqs = n;
		size_t len = parley__internal__gw_batch__get_packed_size(&b);
		uint8_t *buf = malloc(len);
		parley__internal__gw_batch__pack(&b, buf);
		pl_arena a;
		CHECK_EQ(
		    pl_arena_init(&a, NULL, PL_ARENA_BYTES_FOR(len)), PL_OK);
		pl_status want = n <= PL_GW_BATCH_REQS_MAX ? PL_OK : PL_E_PROTO;
		CHECK_EQ(pl_gw_batch_decode(buf, len, &a, &out), want);
		CHECK_EQ(pl_gw_batch_decode_with(buf, len, NULL, &out), want);
		if (want == PL_OK) {
			CHECK_EQ(out->n_reqs, n);
			parley__internal__gw_batch__free_unpacked(out, NULL);
		}
		pl_arena_fini(&a);
		free(buf);
	}
	free(many);
}

TEST(test_codec_broker_batch)
{
	Parley__Message msg = PARLEY__MESSAGE__INIT;
	Parley__Event ev = PARLEY__EVENT__INIT;
	Parley__Event *evs[] = {&ev};
	Parley__Ok ok = PARLEY__OK__INIT;
	Parley__ServerFrame rep = PARLEY__SERVER_FRAME__INIT;
	Parley__ServerFrame *reps[] = {&rep};
	Parley__Internal__BrokerBatch b = PARLEY__INTERNAL__BROKER_BATCH__INIT;
	Parley__Internal__BrokerBatch *out;
	msg.room = ROOM_OK;
	msg.seq = 5;
	ev.room = ROOM_OK;
	ev.ev_case = PARLEY__EVENT__EV_MESSAGE;
	ev.message = &msg;
	rep.id = 11;
	rep.body_case = PARLEY__SERVER_FRAME__BODY_OK;
	rep.ok = &ok;
	b.n_replies = 1;
	b.replies = reps;
	b.n_events = 1;
	b.events = evs;
	b.epoch = "e1";
	struct packed *pk = pack(&b.base);
	CHECK_EQ(pl_broker_batch_decode(pk->buf, pk->n, &pk->a, &out), PL_OK);
	CHECK_EQ(out->replies[0]->id, 11);
	CHECK_EQ(out->events[0]->message->seq, 5);
	free(pk);
	ev.ev_case = PARLEY__EVENT__EV__NOT_SET;
	pk = pack(&b.base);
	CHECK_EQ(
	    pl_broker_batch_decode(pk->buf, pk->n, &pk->a, &out), PL_E_PROTO);
	free(pk);
}

TEST(test_codec_command)
{
	Parley__Internal__PublishCmd pc = PARLEY__INTERNAL__PUBLISH_CMD__INIT;
	Parley__Internal__Command cmd = PARLEY__INTERNAL__COMMAND__INIT, *out;
	pc.room = 7;
	pc.client_msg_id = "c-3";
	cmd.op_case = PARLEY__INTERNAL__COMMAND__OP_PUBLISH;
	cmd.publish = &pc;
	struct packed *pk = pack(&cmd.base);
	CHECK_EQ(pl_command_decode(pk->buf, pk->n, &pk->a, &out), PL_OK);
	CHECK_EQ(out->publish->room, 7);
	CHECK_STR_EQ(out->publish->client_msg_id, "c-3");
	free(pk);
	pc.kind = 9;
	pk = pack(&cmd.base);
	CHECK_EQ(pl_command_decode(pk->buf, pk->n, &pk->a, &out), PL_E_PROTO);
	free(pk);
	cmd.op_case = PARLEY__INTERNAL__COMMAND__OP__NOT_SET;
	pk = pack(&cmd.base);
	CHECK_EQ(pl_command_decode(pk->buf, pk->n, &pk->a, &out), PL_E_PROTO);
	free(pk);
}

TEST(test_codec_peer_batch)
{
	Parley__Internal__RaftEntry e = PARLEY__INTERNAL__RAFT_ENTRY__INIT;
	Parley__Internal__RaftEntry *ents[] = {&e};
	Parley__Internal__RaftMsg m = PARLEY__INTERNAL__RAFT_MSG__INIT;
	Parley__Internal__RaftMsg *msgs[] = {&m};
	Parley__Internal__PeerBatch b = PARLEY__INTERNAL__PEER_BATCH__INIT,
	                            *out;
	m.type = 1;
	m.from = 2;
	m.n_ents = 1;
	m.ents = ents;
	e.index = 5;
	e.data.data = (uint8_t *)"x";
	e.data.len = 1;
	b.group = 3;
	b.n_msgs = 1;
	b.msgs = msgs;
	struct packed *pk = pack(&b.base);
	CHECK_EQ(pl_peer_batch_decode(pk->buf, pk->n, &pk->a, &out), PL_OK);
	CHECK_EQ(out->msgs[0]->ents[0]->index, 5);
	free(pk);
	e.type = 7; /* neither normal nor configuration */
	pk = pack(&b.base);
	CHECK_EQ(
	    pl_peer_batch_decode(pk->buf, pk->n, &pk->a, &out), PL_E_PROTO);
	free(pk);
	e.type = 0;
	m.type = 0;
	pk = pack(&b.base);
	CHECK_EQ(
	    pl_peer_batch_decode(pk->buf, pk->n, &pk->a, &out), PL_E_PROTO);
	free(pk);
}

TEST(test_codec_room_rec)
{
	Parley__Internal__MemberRec m = PARLEY__INTERNAL__MEMBER_REC__INIT;
	Parley__Internal__MemberRec *ms[] = {&m};
	Parley__Internal__RoomRec r = PARLEY__INTERNAL__ROOM_REC__INIT, *out;
	m.user = "alice";
	m.role = PARLEY__ROLE__CUSTOMER;
	r.room = 7;
	r.tenant = "acme";
	r.n_members = 1;
	r.members = ms;
	struct packed *pk = pack(&r.base);
	CHECK_EQ(pl_room_rec_decode(pk->buf, pk->n, &pk->a, &out), PL_OK);
	CHECK_STR_EQ(out->members[0]->user, "alice");
	free(pk);
	m.role = 42;
	pk = pack(&r.base);
	CHECK_EQ(pl_room_rec_decode(pk->buf, pk->n, &pk->a, &out), PL_E_PROTO);
	free(pk);
}

TEST(test_codec_claims)
{
	Parley__Internal__Claims c = PARLEY__INTERNAL__CLAIMS__INIT, *out;
	c.tenant = "acme";
	c.user = "bob";
	c.role = PARLEY__ROLE__BOT;
	c.exp_s = 99;
	struct packed *pk = pack(&c.base);
	CHECK_EQ(pl_claims_decode(pk->buf, pk->n, &pk->a, &out), PL_OK);
	CHECK_STR_EQ(out->user, "bob");
	CHECK_EQ(out->exp_s, 99);
	CHECK_EQ(pl_claims_decode((const uint8_t *)"\xff\xff", 2, &pk->a, &out),
	    PL_E_PROTO);
	free(pk);
}

/* The store's day totals come back through the codec: bounded, and sums
 * that can only grow from zero are never negative. */
TEST(test_codec_tenant_day_rec)
{
	Parley__Internal__TenantDayRec
	    r = PARLEY__INTERNAL__TENANT_DAY_REC__INIT,
	    *out;
	r.tenant = "acme";
	r.day = 20000;
	r.messages = 340;
	r.wait_us_sum = 9000000;
	r.wait_n = 12;
	struct packed *pk = pack(&r.base);
	CHECK_EQ(pl_tenant_day_rec_decode(pk->buf, pk->n, &pk->a, &out), PL_OK);
	CHECK_EQ(out->messages, 340);
	CHECK_EQ(out->wait_us_sum, 9000000);
	free(pk);
	r.handle_us_sum = -1;
	pk = pack(&r.base);
	CHECK_EQ(
	    pl_tenant_day_rec_decode(pk->buf, pk->n, &pk->a, &out), PL_E_PROTO);
	free(pk);
	r.handle_us_sum = 0;
	char big[PL_TENANT_DAY_REC_BYTES_MAX + 1];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	r.tenant = big;
	pk = pack(&r.base);
	CHECK_EQ(pl_tenant_day_rec_decode(pk->buf, pk->n, &pk->a, &out),
	    PL_E_TOO_LARGE);
	free(pk);
}
