/*
 * make_seeds.c - writes the seed corpus of fuzz_frame: one valid input per
 * decoder path (selector byte + payload), so fuzzing starts from frames
 * that pass validation and mutates from there. Usage: make_seeds DIR.
 */
#include <stdio.h>
#include <string.h>

#include "proto/codec.h"
#include "tests/fuzz/fuzz_keys.h"
#include "proto/token.h"

#define ROOM "0001000000000007"
#define SEED_BYTES_MAX 8192

static int seed_write(
    const char *dir, const char *name, int sel, const uint8_t *buf, size_t n)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -1;
	fputc(sel, f);
	fwrite(buf, 1, n, f);
	return fclose(f);
}

static int seed_msg(
    const char *dir, const char *name, int sel, const ProtobufCMessage *m)
{
	uint8_t buf[SEED_BYTES_MAX];
	size_t n;
	PL_ASSERT(pl_pb_encode(m, buf, sizeof(buf), &n) == PL_OK);
	return seed_write(dir, name, sel, buf, n);
}

static int seeds_client(const char *dir)
{
	Parley__MetaEntry me = PARLEY__META_ENTRY__INIT;
	Parley__MetaEntry *meta[] = {&me};
	Parley__Publish pub = PARLEY__PUBLISH__INIT;
	Parley__History hist = PARLEY__HISTORY__INIT;
	Parley__CreateRoom cr = PARLEY__CREATE_ROOM__INIT;
	Parley__ClientFrame f = PARLEY__CLIENT_FRAME__INIT;
	uint8_t stream[SEED_BYTES_MAX];
	size_t n, m;
	int rc = 0;
	me.key = "source";
	me.value = "widget";
	pub.room = ROOM;
	pub.client_msg_id = "c-1";
	pub.body.data = (uint8_t *)"hello";
	pub.body.len = 5;
	pub.n_meta = 1;
	pub.meta = meta;
	f.id = 1;
	f.body_case = PARLEY__CLIENT_FRAME__BODY_PUBLISH;
	f.publish = &pub;
	rc |= seed_msg(dir, "client_publish", FUZZ_CLIENT_FRAME, &f.base);
	PL_ASSERT(
	    pl_frame_encode(&f.base, stream, sizeof(stream), &n) == PL_OK);
	hist.room = ROOM;
	hist.limit = 50;
	f.body_case = PARLEY__CLIENT_FRAME__BODY_HISTORY;
	f.history = &hist;
	rc |= seed_msg(dir, "client_history", FUZZ_CLIENT_FRAME, &f.base);
	PL_ASSERT(pl_frame_encode(
	              &f.base, stream + n, sizeof(stream) - n, &m) == PL_OK);
	rc |= seed_write(dir, "stream_two_frames", FUZZ_STREAM, stream, n + m);
	cr.idempotency_key = "order-42";
	cr.n_meta = 1;
	cr.meta = meta;
	f.body_case = PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM;
	f.create_room = &cr;
	rc |= seed_msg(dir, "client_create_room", FUZZ_CLIENT_FRAME, &f.base);
	return rc;
}

/* Replaces the first occurrence of the n bytes from in buf by to (same
 * length): how a seed gets bytes that protobuf-c cannot write from a C
 * string, a NUL inside a string among them. */
static void patch(
    uint8_t *buf, size_t len, const char *from, const char *to, size_t n)
{
	for (size_t i = 0; i + n <= len; i++) {
		if (memcmp(buf + i, from, n) == 0) {
			memcpy(buf + i, to, n);
			return;
		}
	}
	PL_ASSERT(!"patch target not found");
}

static int seed_patched(const char *dir, const char *name, int sel,
    const ProtobufCMessage *m, const char *from, const char *to, size_t n)
{
	uint8_t buf[SEED_BYTES_MAX];
	size_t len;
	PL_ASSERT(pl_pb_encode(m, buf, sizeof(buf), &len) == PL_OK);
	patch(buf, len, from, to, n);
	return seed_write(dir, name, sel, buf, len);
}

/* Strings the codec must refuse, naming the field: a NUL inside an id,
 * a room id with a trailing NUL, invalid UTF-8 (a stray 0xff, an
 * overlong '/', a surrogate) and an id over its bound. */
static int seeds_strings(const char *dir)
{
	Parley__MetaEntry me = PARLEY__META_ENTRY__INIT;
	Parley__MetaEntry *meta[] = {&me};
	Parley__Publish pub = PARLEY__PUBLISH__INIT;
	Parley__ClientFrame f = PARLEY__CLIENT_FRAME__INIT;
	char overlong[PL_CLIENT_MSG_ID_CHARS_MAX + 2];
	int rc = 0;
	me.key = "kQk";
	me.value = "vQQv";
	pub.room = ROOM "Z"; /* 17 bytes: the Z becomes a NUL */
	pub.client_msg_id = "nXa";
	pub.body.data = (uint8_t *)"hello";
	pub.body.len = 5;
	pub.n_meta = 1;
	pub.meta = meta;
	f.id = 1;
	f.body_case = PARLEY__CLIENT_FRAME__BODY_PUBLISH;
	f.publish = &pub;
	rc |= seed_patched(dir, "str_room_trailing_nul", FUZZ_CLIENT_FRAME,
	    &f.base, ROOM "Z", ROOM "\0", 17);
	pub.room = ROOM;
	rc |= seed_patched(
	    dir, "str_id_nul", FUZZ_CLIENT_FRAME, &f.base, "nXa", "n\0a", 3);
	rc |= seed_patched(dir, "str_meta_key_ff", FUZZ_CLIENT_FRAME, &f.base,
	    "kQk", "k\xffk", 3);
	rc |= seed_patched(dir, "str_meta_value_overlong", FUZZ_CLIENT_FRAME,
	    &f.base, "vQQv", "\xe0\x80\xaf", 3);
	rc |= seed_patched(dir, "str_meta_value_surrogate", FUZZ_CLIENT_FRAME,
	    &f.base, "vQQv", "\xed\xa0\x80", 3);
	memset(overlong, 'o', sizeof(overlong) - 1);
	overlong[sizeof(overlong) - 1] = '\0';
	pub.client_msg_id = overlong;
	rc |= seed_msg(dir, "str_id_overlong", FUZZ_CLIENT_FRAME, &f.base);
	return rc;
}

static int seeds_server(const char *dir)
{
	Parley__Message msg = PARLEY__MESSAGE__INIT;
	Parley__Event ev = PARLEY__EVENT__INIT;
	Parley__Event *evs[] = {&ev};
	Parley__Error err = PARLEY__ERROR__INIT;
	Parley__ServerFrame f = PARLEY__SERVER_FRAME__INIT;
	Parley__ServerFrame *reps[] = {&f};
	Parley__Internal__BrokerBatch bb = PARLEY__INTERNAL__BROKER_BATCH__INIT;
	int rc = 0;
	msg.room = ROOM;
	msg.seq = 3;
	msg.sender = "alice";
	msg.role = PARLEY__ROLE__CUSTOMER;
	ev.room = ROOM;
	ev.ev_case = PARLEY__EVENT__EV_MESSAGE;
	ev.message = &msg;
	f.body_case = PARLEY__SERVER_FRAME__BODY_EVENT;
	f.event = &ev;
	rc |= seed_msg(dir, "server_event", FUZZ_SERVER_FRAME, &f.base);
	err.code = PARLEY__ERROR_CODE__UNAVAILABLE;
	err.message = "no leader";
	f.id = 5;
	f.body_case = PARLEY__SERVER_FRAME__BODY_ERROR;
	f.error = &err;
	rc |= seed_msg(dir, "server_error", FUZZ_SERVER_FRAME, &f.base);
	bb.n_replies = 1;
	bb.replies = reps;
	bb.n_events = 1;
	bb.events = evs;
	bb.epoch = "e1";
	rc |= seed_msg(dir, "broker_batch", FUZZ_BROKER_BATCH, &bb.base);
	return rc;
}

static int seeds_internal(const char *dir)
{
	Parley__Join join = PARLEY__JOIN__INIT;
	Parley__ClientFrame cf = PARLEY__CLIENT_FRAME__INIT;
	Parley__Internal__Caller caller = PARLEY__INTERNAL__CALLER__INIT;
	Parley__Internal__GwRequest r = PARLEY__INTERNAL__GW_REQUEST__INIT;
	Parley__Internal__GwRequest *reqs[] = {&r};
	Parley__Internal__GwBatch gb = PARLEY__INTERNAL__GW_BATCH__INIT;
	Parley__Internal__PublishCmd pc = PARLEY__INTERNAL__PUBLISH_CMD__INIT;
	Parley__Internal__Command cmd = PARLEY__INTERNAL__COMMAND__INIT;
	Parley__Internal__MemberRec mr = PARLEY__INTERNAL__MEMBER_REC__INIT;
	Parley__Internal__MemberRec *mrs[] = {&mr};
	Parley__Internal__RoomRec rr = PARLEY__INTERNAL__ROOM_REC__INIT;
	int rc = 0;
	join.room = ROOM;
	cf.body_case = PARLEY__CLIENT_FRAME__BODY_JOIN;
	cf.join = &join;
	caller.tenant = "acme";
	caller.user = "alice";
	caller.role = PARLEY__ROLE__CUSTOMER;
	r.id = 1;
	r.caller = &caller;
	r.frame = &cf;
	gb.gateway = "gw1";
	gb.n_reqs = 1;
	gb.reqs = reqs;
	gb.poll = 1;
	rc |= seed_msg(dir, "gw_batch", FUZZ_GW_BATCH, &gb.base);
	pc.room = 7;
	pc.seq = 1;
	pc.client_msg_id = "c-1";
	pc.body.data = (uint8_t *)"hi";
	pc.body.len = 2;
	cmd.caller = &caller;
	cmd.op_case = PARLEY__INTERNAL__COMMAND__OP_PUBLISH;
	cmd.publish = &pc;
	rc |= seed_msg(dir, "command", FUZZ_COMMAND, &cmd.base);
	mr.user = "alice";
	mr.role = PARLEY__ROLE__CUSTOMER;
	mr.joined = 1;
	rr.room = 7;
	rr.tenant = "acme";
	rr.n_members = 1;
	rr.members = mrs;
	rc |= seed_msg(dir, "room_rec", FUZZ_ROOM_REC, &rr.base);
	Parley__Internal__TenantDayRec td =
	    PARLEY__INTERNAL__TENANT_DAY_REC__INIT;
	td.tenant = "acme";
	td.day = 20000;
	td.rooms_created = 12;
	td.messages = 340;
	td.wait_us_sum = 9000000;
	td.wait_n = 12;
	rc |= seed_msg(dir, "tenant_day_rec", FUZZ_TENANT_DAY_REC, &td.base);
	return rc;
}

static int seeds_token(const char *dir)
{
	uint8_t pk[32], sk[64];
	char tok[PL_TOKEN_CHARS_MAX + 1];
	pl_claims c;
	Parley__Internal__Claims cl = PARLEY__INTERNAL__CLAIMS__INIT;
	fuzz_keypair(pk, sk);
	memset(&c, 0, sizeof(c));
	strcpy(c.tenant, FUZZ_TENANT);
	strcpy(c.user, "alice");
	strcpy(c.key_id, FUZZ_KEY_ID);
	strcpy(c.room, ROOM);
	c.role = PARLEY__ROLE__AGENT;
	c.exp_s = FUZZ_NOW_S + 3600;
	PL_ASSERT(pl_token_mint(&c, sk, tok, sizeof(tok)) == PL_OK);
	int rc = seed_write(
	    dir, "token", FUZZ_TOKEN, (const uint8_t *)tok, strlen(tok));
	cl.tenant = FUZZ_TENANT;
	cl.user = "alice";
	cl.role = PARLEY__ROLE__AGENT;
	cl.exp_s = FUZZ_NOW_S;
	rc |= seed_msg(dir, "claims", FUZZ_CLAIMS, &cl.base);
	/* A user "ali\0e": the identity used must be the one signed. */
	rc |= seed_patched(dir, "claims_user_nul", FUZZ_CLAIMS, &cl.base,
	    "alice", "ali\0e", 5);
	/* The same inside a token signed over exactly those bytes. */
	uint8_t body[256], sig[crypto_sign_BYTES];
	size_t n;
	PL_ASSERT(pl_pb_encode(&cl.base, body, sizeof(body), &n) == PL_OK);
	patch(body, n, "alice", "ali\0e", 5);
	crypto_sign_detached(sig, NULL, body, n, sk);
	const int v = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
	size_t bl = sodium_base64_ENCODED_LEN(n, v);
	sodium_bin2base64(tok, bl, body, n, v);
	tok[bl - 1] = '.';
	sodium_bin2base64(tok + bl, sizeof(tok) - bl, sig, sizeof(sig), v);
	return rc | seed_write(dir, "token_user_nul", FUZZ_TOKEN,
	                (const uint8_t *)tok, strlen(tok));
}

/* fuzz_envelope's seeds (its own selectors, see fuzz_envelope.c): a
 * PeerBatch with an append of two entries and a snapshot ack, as a batch
 * to compress (2) and as an uncompressed payload (1). */
static int seeds_envelope(const char *dir)
{
	Parley__Internal__RaftEntry e1 = PARLEY__INTERNAL__RAFT_ENTRY__INIT;
	Parley__Internal__RaftEntry e2 = PARLEY__INTERNAL__RAFT_ENTRY__INIT;
	Parley__Internal__RaftEntry *ents[] = {&e1, &e2};
	Parley__Internal__RaftMsg m = PARLEY__INTERNAL__RAFT_MSG__INIT;
	Parley__Internal__RaftMsg *msgs[] = {&m};
	Parley__Internal__SnapAck ack = PARLEY__INTERNAL__SNAP_ACK__INIT;
	Parley__Internal__SnapAck *acks[] = {&ack};
	Parley__Internal__PeerBatch b = PARLEY__INTERNAL__PEER_BATCH__INIT;
	e1.term = e2.term = 3;
	e1.index = 10;
	e2.index = 11;
	e1.data.data = (uint8_t *)"first entry";
	e1.data.len = 11;
	e2.data.data = (uint8_t *)"second entry";
	e2.data.len = 12;
	m.type = 3; /* an append */
	m.from = 2;
	m.to = 1;
	m.term = 3;
	m.index = 9;
	m.log_term = 3;
	m.commit = 9;
	m.n_ents = 2;
	m.ents = ents;
	ack.xfer = 1;
	ack.offset = 4096;
	b.group = 1;
	b.n_msgs = 1;
	b.msgs = msgs;
	b.n_acks = 1;
	b.acks = acks;
	uint8_t buf[SEED_BYTES_MAX];
	size_t n;
	PL_ASSERT(pl_pb_encode(&b.base, buf + 1, sizeof(buf) - 1, &n) == PL_OK);
	buf[0] = 0; /* the envelope's "not compressed" flag */
	return seed_write(dir, "batch_compressed", 2, buf + 1, n) |
	       seed_write(dir, "batch_plain", 1, buf, n + 1);
}

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: make_seeds DIR [ENVELOPE_DIR]\n");
		return 2;
	}
	PL_ASSERT(sodium_init() >= 0);
	int rc = seeds_client(argv[1]) | seeds_strings(argv[1]) |
	         seeds_server(argv[1]) | seeds_internal(argv[1]) |
	         seeds_token(argv[1]);
	if (argc == 3)
		rc |= seeds_envelope(argv[2]);
	if (rc != 0)
		perror("make_seeds");
	return rc != 0;
}
