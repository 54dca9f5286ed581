/*
 * test_splice.c - the spliced records of proto/splice.c: every field
 * number it names is the generated descriptor's, and what it writes
 * decodes, with protobuf-c's own unpack, to the message it stands for.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include <string.h>

#include "proto/codec.h"
#include "proto/splice.h"

static uint32_t field_id(const ProtobufCMessageDescriptor *d, const char *name)
{
	const ProtobufCFieldDescriptor *f =
	    protobuf_c_message_descriptor_get_field_by_name(d, name);
	return f != NULL ? f->id : 0;
}

TEST(test_splice_field_numbers_are_the_descriptors)
{
	const ProtobufCMessageDescriptor *gb =
	    &parley__internal__gw_batch__descriptor;
	const ProtobufCMessageDescriptor *gr =
	    &parley__internal__gw_request__descriptor;
	const ProtobufCMessageDescriptor *bb =
	    &parley__internal__broker_batch__descriptor;
	CHECK_EQ(field_id(gb, "gateway"), PL_FIELD_GW_BATCH_GATEWAY);
	CHECK_EQ(field_id(gb, "reqs"), PL_FIELD_GW_BATCH_REQS);
	CHECK_EQ(field_id(gr, "id"), PL_FIELD_GW_REQUEST_ID);
	CHECK_EQ(field_id(gb, "group"), PL_FIELD_GW_BATCH_GROUP);
	CHECK_EQ(field_id(bb, "events"), PL_FIELD_BROKER_BATCH_EVENTS);
	CHECK_EQ(field_id(bb, "epoch"), PL_FIELD_BROKER_BATCH_EPOCH);
	CHECK_EQ(field_id(bb, "overflow"), PL_FIELD_BROKER_BATCH_OVERFLOW);
	CHECK_EQ(field_id(bb, "group"), PL_FIELD_BROKER_BATCH_GROUP);
}

TEST(test_splice_varint_edges)
{
	static const uint64_t v[] = {
	    0, 1, 127, 128, 16383, 16384, UINT32_MAX, UINT64_MAX};
	for (size_t i = 0; i < PL_ARRAY_LEN(v); i++) {
		uint8_t b[10];
		size_t n = pl_varint_put(b, v[i]);
		CHECK_EQ(n, pl_varint_len(v[i]));
		/* GwRequest{id = v} decodes from key 0x08 + the varint. */
		uint8_t rec[11] = {0x08};
		memcpy(rec + 1, b, n);
		Parley__Internal__GwRequest *r =
		    parley__internal__gw_request__unpack(NULL, 1 + n, rec);
		CHECK(r != NULL);
		CHECK_EQ(r->id, v[i]);
		parley__internal__gw_request__free_unpacked(r, NULL);
	}
}

TEST(test_splice_gw_batch_decodes_as_packed)
{
	/* Three requests packed without their ids, as the gateway queues
	 * them, with ids across the one/two byte varint edge. */
	static const uint64_t ids[] = {1, 127, 128, 300000};
	uint8_t bodies[4][64];
	size_t lens[4];
	for (size_t i = 0; i < PL_ARRAY_LEN(ids); i++) {
		Parley__Internal__GwRequest r =
		    PARLEY__INTERNAL__GW_REQUEST__INIT;
		r.origin = 1000 + i;
		r.lane = 7 * i;
		lens[i] = parley__internal__gw_request__pack(&r, bodies[i]);
	}
	const char *gw = "gw-7.1764790000";
	size_t n = pl_splice_gw_batch_gateway_len(gw);
	for (size_t i = 0; i < PL_ARRAY_LEN(ids); i++)
		n += pl_splice_gw_request_len(ids[i], lens[i]);
	uint8_t buf[1024];
	CHECK_LE(n, sizeof(buf));
	size_t k = pl_splice_gw_batch_gateway(buf, gw);
	for (size_t i = 0; i < PL_ARRAY_LEN(ids); i++)
		k += pl_splice_gw_request(buf + k, ids[i], bodies[i], lens[i]);
	CHECK_EQ(k, n);
	Parley__Internal__GwBatch *b =
	    parley__internal__gw_batch__unpack(NULL, k, buf);
	CHECK(b != NULL);
	CHECK_STR_EQ(b->gateway, gw);
	CHECK_EQ(b->n_reqs, PL_ARRAY_LEN(ids));
	for (size_t i = 0; i < b->n_reqs; i++) {
		CHECK_EQ(b->reqs[i]->id, ids[i]);
		CHECK_EQ(b->reqs[i]->origin, 1000 + i);
		CHECK_EQ(b->reqs[i]->lane, 7 * i);
	}
	parley__internal__gw_batch__free_unpacked(b, NULL);
}

TEST(test_splice_feed_decodes_as_packed)
{
	for (int overflow = 0; overflow <= 1; overflow++) {
		uint8_t buf[4096];
		size_t k = 0;
		for (uint64_t seq = 1; seq <= 3; seq++) {
			Parley__Message m = PARLEY__MESSAGE__INIT;
			Parley__Event ev = PARLEY__EVENT__INIT;
			m.seq = seq * 1000;
			ev.room = "0001000000000007";
			ev.ev_case = PARLEY__EVENT__EV_MESSAGE;
			ev.message = &m;
			uint8_t packed[256];
			size_t n = parley__event__pack(&ev, packed);
			k += pl_splice_event_header(buf + k, n);
			memcpy(buf + k, packed, n);
			k += n;
		}
		const char *epoch = "broker-2.1764790000.17";
		CHECK_LE(
		    k + PL_SPLICE_FEED_TAIL_BYTES(strlen(epoch)), sizeof(buf));
		size_t t = pl_splice_feed_tail(buf + k, epoch, overflow, 300);
		CHECK_LE(t, PL_SPLICE_FEED_TAIL_BYTES(strlen(epoch)));
		Parley__Internal__BrokerBatch *b =
		    parley__internal__broker_batch__unpack(NULL, k + t, buf);
		CHECK(b != NULL);
		CHECK_EQ(b->n_events, 3);
		CHECK_EQ(b->events[2]->message->seq, 3000);
		CHECK_STR_EQ(b->events[0]->room, "0001000000000007");
		CHECK_STR_EQ(b->epoch, epoch);
		CHECK_EQ(b->overflow, overflow);
		CHECK_EQ(b->group, 300);
		parley__internal__broker_batch__free_unpacked(b, NULL);
	}
}

TEST(test_splice_gw_batch_group_first_and_peeked)
{
	/* The gateway writes the group first; the broker peeks it from
	 * whatever a packer wrote (any field order) without decoding. */
	static const uint32_t groups[] = {0, 1, 127, 128, 65535};
	for (size_t i = 0; i < PL_ARRAY_LEN(groups); i++) {
		uint8_t buf[256];
		size_t k = pl_splice_gw_batch_group(buf, groups[i]);
		k += pl_splice_gw_batch_gateway(buf + k, "gw-1");
		Parley__Internal__GwBatch *b =
		    parley__internal__gw_batch__unpack(NULL, k, buf);
		CHECK(b != NULL);
		CHECK_EQ(b->group, groups[i]);
		CHECK_STR_EQ(b->gateway, "gw-1");
		parley__internal__gw_batch__free_unpacked(b, NULL);
		uint32_t g = 99;
		CHECK_EQ(pl_splice_gw_batch_group_peek(buf, k, &g), PL_OK);
		CHECK_EQ(g, groups[i]);

		/* protobuf-c's own packing: group after the other fields. */
		Parley__Internal__GwBatch p = PARLEY__INTERNAL__GW_BATCH__INIT;
		p.gateway = "gw-2";
		p.poll = true;
		p.wait_ms = 1000;
		p.group = groups[i];
		k = parley__internal__gw_batch__pack(&p, buf);
		CHECK_EQ(pl_splice_gw_batch_group_peek(buf, k, &g), PL_OK);
		CHECK_EQ(g, groups[i]);
		/* Cut anywhere inside a field: refused, never read past. */
		for (size_t cut = 1; cut < k; cut++) {
			pl_status st = pl_splice_gw_batch_group_peek(buf, cut, &g);
			if (st == PL_OK)
				continue; /* cut between fields */
			CHECK_EQ(st, PL_E_PROTO);
		}
	}
	/* Over 16 bits, a bad wire type, field 0: refused. */
	uint8_t big[] = {0x30, 0x80, 0x80, 0x04};
	uint8_t wire7[] = {0x0f, 0x01};
	uint8_t field0[] = {0x00, 0x01};
	uint32_t g;
	CHECK_EQ(pl_splice_gw_batch_group_peek(big, sizeof(big), &g), PL_E_PROTO);
	CHECK_EQ(
	    pl_splice_gw_batch_group_peek(wire7, sizeof(wire7), &g), PL_E_PROTO);
	CHECK_EQ(
	    pl_splice_gw_batch_group_peek(field0, sizeof(field0), &g), PL_E_PROTO);
}
