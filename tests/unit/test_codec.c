/*
 * test_codec.c - frames and records: framing edge cases, a table of client
 * frames (every op round-trips; each bound is probed just inside and just
 * outside), raw malformed payloads, and the structural checks of server
 * frames and internal records. Validation must agree on both ends: what
 * pl_client_frame_validate says of a frame, decoding it says too.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "proto/codec.h"

#define ROOM_OK "0001000000000007"
#define FRAME_CAP (256 * 1024)

/* ---- framing ---- */

TEST(test_codec_frame_peek_table)
{
	static const struct {
		const char *name;
		uint8_t bytes[8];
		size_t len, max;
		pl_status want;
		size_t payload;
	} cases[] = {
	    {"empty", {0}, 0, 100, PL_E_AGAIN, 0},
	    {"truncated header", {0, 0, 0}, 3, 100, PL_E_AGAIN, 0},
	    {"zero length", {0, 0, 0, 0}, 4, 100, PL_E_PROTO, 0},
	    {"over max", {0, 0, 0, 101}, 4, 100, PL_E_TOO_LARGE, 0},
	    {"huge", {0xff, 0xff, 0xff, 0xff}, 4, 100, PL_E_TOO_LARGE, 0},
	    {"partial payload", {0, 0, 0, 3, 1, 2}, 6, 100, PL_E_AGAIN, 0},
	    {"whole", {0, 0, 0, 3, 1, 2, 3}, 7, 100, PL_OK, 3},
	    {"whole and more", {0, 0, 0, 2, 1, 2, 0, 0}, 8, 100, PL_OK, 2},
	    {"at max", {0, 0, 0, 4, 1, 2, 3, 4}, 8, 4, PL_OK, 4},
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
		size_t payload = 999;
		pl_status st = pl_frame_peek(
		    cases[i].bytes, cases[i].len, cases[i].max, &payload);
		if (st != cases[i].want)
			fprintf(stderr, "  case \"%s\"\n", cases[i].name);
		CHECK_EQ(st, cases[i].want);
		CHECK_EQ(payload, st == PL_OK ? cases[i].payload : 999);
	}
}

TEST(test_codec_frame_header_big_endian)
{
	uint8_t h[4];
	pl_frame_put_header(h, 0x01020304u);
	CHECK(h[0] == 1 && h[1] == 2 && h[2] == 3 && h[3] == 4);
}

/* ---- client frames: a table ---- */

struct frame_case {
	const char *name;
	Parley__ClientFrame__BodyCase body;
	const char *room; /* NULL: a valid room ("" for list_rooms) */
	size_t text;      /* length of the op's bounded string */
	size_t nmeta, meta_key, meta_val;
	uint32_t limit;
	int kind;
	pl_status want;
};

#define B(x) PARLEY__CLIENT_FRAME__BODY_##x
static const struct frame_case frame_cases[] = {
    /* every op round-trips */
    {"hello", B(HELLO), NULL, 200, 0, 0, 0, 0, 0, PL_OK},
    {"create_room", B(CREATE_ROOM), NULL, 16, 2, 4, 8, 0, 0, PL_OK},
    {"join", B(JOIN), NULL, 0, 0, 0, 0, 0, 0, PL_OK},
    {"leave", B(LEAVE), NULL, 0, 0, 0, 0, 0, 0, PL_OK},
    {"publish", B(PUBLISH), NULL, 12, 1, 3, 3, 0, 1, PL_OK},
    {"subscribe", B(SUBSCRIBE), NULL, 0, 0, 0, 0, 0, 0, PL_OK},
    {"unsubscribe", B(UNSUBSCRIBE), NULL, 0, 0, 0, 0, 0, 0, PL_OK},
    {"history", B(HISTORY), NULL, 0, 0, 0, 0, 50, 0, PL_OK},
    {"typing", B(TYPING), NULL, 0, 0, 0, 0, 0, 0, PL_OK},
    {"read", B(READ), NULL, 0, 0, 0, 0, 0, 0, PL_OK},
    {"presence", B(PRESENCE), NULL, 0, 0, 0, 0, 0, 0, PL_OK},
    {"close_room", B(CLOSE_ROOM), NULL, 20, 0, 0, 0, 0, 0, PL_OK},
    {"ping", B(PING), NULL, 0, 0, 0, 0, 0, 0, PL_OK},
    {"room_info", B(ROOM_INFO), NULL, 0, 0, 0, 0, 0, 0, PL_OK},
    {"list_rooms", B(LIST_ROOMS), NULL, 0, 0, 0, 0, 0, 0, PL_OK},
    {"list_rooms after", B(LIST_ROOMS), ROOM_OK, 0, 0, 0, 0, 0, 0, PL_OK},
    {"status", B(STATUS), NULL, 0, 0, 0, 0, 0, 0, PL_OK},
    /* room ids */
    {"join bad room", B(JOIN), "xyz", 0, 0, 0, 0, 0, 0, PL_E_BAD_REQUEST},
    {"publish no room", B(PUBLISH), "", 0, 0, 0, 0, 0, 0, PL_E_BAD_REQUEST},
    {"subscribe group 0", B(SUBSCRIBE), "0000000000000007", 0, 0, 0, 0, 0, 0,
        PL_E_BAD_REQUEST},
    {"history upper hex", B(HISTORY), "0001ABCD00000007", 0, 0, 0, 0, 0, 0,
        PL_E_BAD_REQUEST},
    {"list_rooms bad after", B(LIST_ROOMS), "17", 0, 0, 0, 0, 0, 0,
        PL_E_BAD_REQUEST},
    /* string bounds: at the bound passes, one over fails */
    {"msg id at max", B(PUBLISH), NULL, PL_CLIENT_MSG_ID_CHARS_MAX, 0, 0, 0, 0,
        0, PL_OK},
    {"msg id overlong", B(PUBLISH), NULL, PL_CLIENT_MSG_ID_CHARS_MAX + 1, 0, 0,
        0, 0, 0, PL_E_TOO_LARGE},
    {"idem key at max", B(CREATE_ROOM), NULL, PL_IDEMPOTENCY_KEY_CHARS_MAX, 0,
        0, 0, 0, 0, PL_OK},
    {"idem key overlong", B(CREATE_ROOM), NULL,
        PL_IDEMPOTENCY_KEY_CHARS_MAX + 1, 0, 0, 0, 0, 0, PL_E_TOO_LARGE},
    {"reason at max", B(CLOSE_ROOM), NULL, PL_REASON_CHARS_MAX, 0, 0, 0, 0, 0,
        PL_OK},
    {"reason overlong", B(CLOSE_ROOM), NULL, PL_REASON_CHARS_MAX + 1, 0, 0, 0,
        0, 0, PL_E_TOO_LARGE},
    {"token at max", B(HELLO), NULL, PL_TOKEN_CHARS_MAX, 0, 0, 0, 0, 0, PL_OK},
    {"token overlong", B(HELLO), NULL, PL_TOKEN_CHARS_MAX + 1, 0, 0, 0, 0, 0,
        PL_E_TOO_LARGE},
    /* meta */
    {"meta at max", B(PUBLISH), NULL, 0, PL_META_ENTRIES_MAX, PL_META_CHARS_MAX,
        PL_META_CHARS_MAX, 0, 0, PL_OK},
    {"too many meta", B(PUBLISH), NULL, 0, PL_META_ENTRIES_MAX + 1, 1, 1, 0, 0,
        PL_E_TOO_LARGE},
    {"meta key overlong", B(CREATE_ROOM), NULL, 0, 1, PL_META_CHARS_MAX + 1, 1,
        0, 0, PL_E_TOO_LARGE},
    {"meta value overlong", B(PUBLISH), NULL, 0, 1, 1, PL_META_CHARS_MAX + 1, 0,
        0, PL_E_TOO_LARGE},
    /* values */
    {"history limit at max", B(HISTORY), NULL, 0, 0, 0, 0, PL_HISTORY_LIMIT_MAX,
        0, PL_OK},
    {"history limit over", B(HISTORY), NULL, 0, 0, 0, 0,
        PL_HISTORY_LIMIT_MAX + 1, 0, PL_E_BAD_REQUEST},
    {"kind system", B(PUBLISH), NULL, 0, 0, 0, 0, 0, PARLEY__KIND__SYSTEM,
        PL_OK},
    {"bad enum", B(PUBLISH), NULL, 0, 0, 0, 0, 0, 7, PL_E_BAD_REQUEST},
    {"negative enum", B(PUBLISH), NULL, 0, 0, 0, 0, 0, -1, PL_E_BAD_REQUEST},
    {"no body", PARLEY__CLIENT_FRAME__BODY__NOT_SET, NULL, 0, 0, 0, 0, 0, 0,
        PL_E_PROTO},
};
#undef B

/* Storage for one frame built from a case. */
struct parts {
	Parley__ClientFrame f;
	union {
		Parley__Hello hello;
		Parley__CreateRoom create_room;
		Parley__Join join;
		Parley__Leave leave;
		Parley__Publish publish;
		Parley__Subscribe subscribe;
		Parley__Unsubscribe unsubscribe;
		Parley__History history;
		Parley__Typing typing;
		Parley__Read read;
		Parley__Presence presence;
		Parley__CloseRoom close_room;
		Parley__Ping ping;
		Parley__RoomInfoRequest room_info;
		Parley__ListRooms list_rooms;
		Parley__StatusRequest status;
	} u;
	Parley__MetaEntry meta[PL_META_ENTRIES_MAX + 1];
	Parley__MetaEntry *metap[PL_META_ENTRIES_MAX + 1];
	char text[PL_TOKEN_CHARS_MAX + 2];
	char key[PL_META_CHARS_MAX + 2], val[PL_META_CHARS_MAX + 2];
};

static char *str_of(char *buf, size_t n, char c)
{
	memset(buf, c, n);
	buf[n] = '\0';
	return buf;
}

static void build_meta(const struct frame_case *fc, struct parts *p, size_t *n,
    Parley__MetaEntry ***meta)
{
	for (size_t i = 0; i < fc->nmeta; i++) {
		parley__meta_entry__init(&p->meta[i]);
		p->meta[i].key = str_of(p->key, fc->meta_key, 'k');
		p->meta[i].value = str_of(p->val, fc->meta_val, 'v');
		p->metap[i] = &p->meta[i];
	}
	*n = fc->nmeta;
	*meta = p->metap;
}

/* The ops whose fields are only a room id. */
static void build_room_op(
    const struct frame_case *fc, struct parts *p, char *room)
{
	switch (fc->body) {
#define ROOM_OP(C, field, init)                                                \
	case PARLEY__CLIENT_FRAME__BODY_##C:                                   \
		init(&p->u.field);                                             \
		p->u.field.room = room;                                        \
		p->f.field = &p->u.field;                                      \
		break;
		ROOM_OP(JOIN, join, parley__join__init)
		ROOM_OP(LEAVE, leave, parley__leave__init)
		ROOM_OP(SUBSCRIBE, subscribe, parley__subscribe__init)
		ROOM_OP(UNSUBSCRIBE, unsubscribe, parley__unsubscribe__init)
		ROOM_OP(TYPING, typing, parley__typing__init)
		ROOM_OP(READ, read, parley__read__init)
		ROOM_OP(PRESENCE, presence, parley__presence__init)
		ROOM_OP(ROOM_INFO, room_info, parley__room_info_request__init)
#undef ROOM_OP
	default:
		PL_ASSERT(!"not a room op");
	}
}

static void build_other_op(
    const struct frame_case *fc, struct parts *p, char *room, char *text)
{
	static uint8_t body[] = "hi";
	switch (fc->body) {
	case PARLEY__CLIENT_FRAME__BODY_HELLO:
		parley__hello__init(&p->u.hello);
		p->u.hello.token = text;
		p->f.hello = &p->u.hello;
		break;
	case PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM:
		parley__create_room__init(&p->u.create_room);
		p->u.create_room.idempotency_key = text;
		build_meta(
		    fc, p, &p->u.create_room.n_meta, &p->u.create_room.meta);
		p->f.create_room = &p->u.create_room;
		break;
	case PARLEY__CLIENT_FRAME__BODY_PUBLISH:
		parley__publish__init(&p->u.publish);
		p->u.publish.room = room;
		p->u.publish.client_msg_id = text;
		p->u.publish.kind = (Parley__Kind)fc->kind;
		p->u.publish.body.data = body;
		p->u.publish.body.len = 2;
		build_meta(fc, p, &p->u.publish.n_meta, &p->u.publish.meta);
		p->f.publish = &p->u.publish;
		break;
	case PARLEY__CLIENT_FRAME__BODY_HISTORY:
		parley__history__init(&p->u.history);
		p->u.history.room = room;
		p->u.history.limit = fc->limit;
		p->f.history = &p->u.history;
		break;
	case PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM:
		parley__close_room__init(&p->u.close_room);
		p->u.close_room.room = room;
		p->u.close_room.reason = text;
		p->f.close_room = &p->u.close_room;
		break;
	case PARLEY__CLIENT_FRAME__BODY_PING:
		parley__ping__init(&p->u.ping);
		p->f.ping = &p->u.ping;
		break;
	case PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS:
		parley__list_rooms__init(&p->u.list_rooms);
		p->u.list_rooms.after = fc->room ? room : "";
		p->f.list_rooms = &p->u.list_rooms;
		break;
	case PARLEY__CLIENT_FRAME__BODY_STATUS:
		parley__status_request__init(&p->u.status);
		p->f.status = &p->u.status;
		break;
	default:
		build_room_op(fc, p, room);
	}
}

static void build_frame(const struct frame_case *fc, struct parts *p)
{
	memset(p, 0, sizeof(*p));
	parley__client_frame__init(&p->f);
	p->f.id = 77;
	p->f.body_case = fc->body;
	if (fc->body == PARLEY__CLIENT_FRAME__BODY__NOT_SET)
		return;
	char *room = (char *)(fc->room ? fc->room : ROOM_OK);
	build_other_op(fc, p, room, str_of(p->text, fc->text, 't'));
}

/* The room the decoded frame carries, for the ops that have one. */
static const char *decoded_room(const Parley__ClientFrame *f)
{
	switch (f->body_case) {
	case PARLEY__CLIENT_FRAME__BODY_JOIN:
		return f->join->room;
	case PARLEY__CLIENT_FRAME__BODY_PUBLISH:
		return f->publish->room;
	case PARLEY__CLIENT_FRAME__BODY_HISTORY:
		return f->history->room;
	case PARLEY__CLIENT_FRAME__BODY_READ:
		return f->read->room;
	default:
		return NULL;
	}
}

static void run_frame_case(int *check_failed_, const struct frame_case *fc,
    struct parts *p, uint8_t *buf, pl_arena *a)
{
	size_t n, payload;
	Parley__ClientFrame *out = NULL;
	build_frame(fc, p);
	CHECK_EQ(pl_client_frame_validate(&p->f), fc->want);
	CHECK_EQ(pl_frame_encode(&p->f.base, buf, FRAME_CAP, &n), PL_OK);
	CHECK_EQ(pl_frame_peek(buf, n, FRAME_CAP, &payload), PL_OK);
	CHECK_EQ(payload + PL_FRAME_HEADER_BYTES, n);
	pl_arena_reset(a);
	CHECK_EQ(pl_client_frame_decode(
	             buf + PL_FRAME_HEADER_BYTES, payload, FRAME_CAP, a, &out),
	    fc->want);
	if (fc->want != PL_OK) {
		CHECK(out == NULL); /* written only on success */
		return;
	}
	CHECK_EQ(out->id, 77);
	CHECK_EQ(out->body_case, fc->body);
	if (decoded_room(out) != NULL)
		CHECK_STR_EQ(decoded_room(out), ROOM_OK);
}

TEST(test_codec_client_frame_table)
{
	struct parts *p = malloc(sizeof(*p));
	uint8_t *buf = malloc(FRAME_CAP);
	pl_arena a;
	CHECK_EQ(pl_arena_init(&a, NULL, PL_ARENA_BYTES_FOR(FRAME_CAP)), PL_OK);
	for (size_t i = 0; i < PL_ARRAY_LEN(frame_cases); i++) {
		int failed = 0;
		run_frame_case(&failed, &frame_cases[i], p, buf, &a);
		if (failed) {
			fprintf(stderr, "  case \"%s\"\n", frame_cases[i].name);
			*check_failed_ = 1;
		}
	}
	pl_arena_fini(&a);
	free(buf);
	free(p);
}

/* Payloads that are not a valid ClientFrame at the protobuf level. */
TEST(test_codec_client_frame_raw_table)
{
	static const struct {
		const char *name;
		uint8_t bytes[12];
		size_t len, max;
		pl_status want;
	} cases[] = {
	    {"empty", {0}, 0, 100, PL_E_PROTO},
	    {"garbage", {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 6, 100,
	        PL_E_PROTO},
	    /* join { room: 16 bytes } cut short */
	    {"truncated", {0x22, 0x12, 0x0a, 0x10, '0', '0'}, 6, 100,
	        PL_E_PROTO},
	    {"unknown body", {0x08, 0x01, 0x98, 0x06, 0x01}, 5, 100,
	        PL_E_PROTO},
	    {"body as varint", {0x10, 0x01}, 2, 100, PL_E_PROTO},
	    {"length over max", {0x08, 0x01, 0x7a, 0x00}, 4, 3, PL_E_TOO_LARGE},
	    {"ping", {0x08, 0x05, 0x72, 0x00}, 4, 100, PL_OK},
	    {"unknown field", {0x72, 0x02, 0x10, 0x01}, 4, 100, PL_OK},
	    /* ping { field 0 as a two-byte tag }: kept by protobuf-c */
	    {"field 0 nested", {0x72, 0x06, 0x85, 0x00, 0, 0, 0, 0}, 8, 100,
	        PL_E_PROTO},
	    {"field 0 top", {0x85, 0x00, 0, 0, 0, 0, 0x72, 0x00}, 8, 100,
	        PL_E_PROTO},
	};
	uint8_t arena_buf[PL_ARENA_BYTES_FOR(64)];
	pl_arena a;
	CHECK_EQ(pl_arena_init(&a, arena_buf, sizeof(arena_buf)), PL_OK);
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
		Parley__ClientFrame *f = NULL;
		pl_arena_reset(&a);
		pl_status st = pl_client_frame_decode(
		    cases[i].bytes, cases[i].len, cases[i].max, &a, &f);
		if (st != cases[i].want)
			fprintf(stderr, "  case \"%s\"\n", cases[i].name);
		CHECK_EQ(st, cases[i].want);
		CHECK((f != NULL) == (st == PL_OK));
	}
	pl_arena_fini(&a);
}

/* ---- arena and encoding ---- */

TEST(test_codec_arena_exhausted_is_too_large)
{
	uint8_t buf[FRAME_CAP], small[256];
	struct parts *p = malloc(sizeof(*p));
	const struct frame_case fc = {"meta",
	    PARLEY__CLIENT_FRAME__BODY_PUBLISH, NULL, 10, 16, 100, 100, 0, 0,
	    PL_OK};
	size_t n;
	pl_arena a;
	Parley__ClientFrame *f;
	build_frame(&fc, p);
	CHECK_EQ(pl_pb_encode(&p->f.base, buf, sizeof(buf), &n), PL_OK);
	CHECK_EQ(pl_arena_init(&a, small, sizeof(small)), PL_OK);
	CHECK_EQ(
	    pl_client_frame_decode(buf, n, FRAME_CAP, &a, &f), PL_E_TOO_LARGE);
	CHECK(a.used <= a.cap);
	pl_arena_fini(&a);
	free(p);
}

TEST(test_codec_arena_aligned_and_reset)
{
	uint8_t buf[64 + 1];
	pl_arena a;
	CHECK_EQ(pl_arena_init(&a, buf + 1, 64), PL_OK); /* misaligned base */
	for (int i = 0; i < 3; i++) {
		void *p = a.alloc.alloc(a.alloc.allocator_data, 3);
		CHECK(p != NULL);
		CHECK_EQ((uintptr_t)p % 8, 0);
	}
	CHECK(a.alloc.alloc(a.alloc.allocator_data, 64) == NULL);
	CHECK(a.exhausted);
	pl_arena_reset(&a);
	CHECK(!a.exhausted);
	CHECK_EQ(a.used, 0);
	CHECK(a.alloc.alloc(a.alloc.allocator_data, 40) != NULL);
	pl_arena_fini(&a);
	pl_arena_fini(NULL);
}

TEST(test_codec_encode_limits)
{
	Parley__Ping ping = PARLEY__PING__INIT;
	Parley__ClientFrame f = PARLEY__CLIENT_FRAME__INIT;
	uint8_t buf[64];
	size_t n = 0;
	ping.ts_us = 123456789;
	f.body_case = PARLEY__CLIENT_FRAME__BODY_PING;
	f.ping = &ping;
	size_t size = protobuf_c_message_get_packed_size(&f.base);
	CHECK_EQ(pl_frame_encode(&f.base, buf, size + 3, &n), PL_E_TOO_LARGE);
	CHECK_EQ(n, 0);
	CHECK_EQ(pl_frame_encode(&f.base, buf, size + 4, &n), PL_OK);
	CHECK_EQ(n, size + 4);
	CHECK_EQ(pl_pb_encode(&f.base, buf, size - 1, &n), PL_E_TOO_LARGE);
	CHECK_EQ(pl_pb_encode(&f.base, buf, size, &n), PL_OK);
	CHECK_EQ(n, size);
	/* Nothing set packs to 0 bytes, which pl_frame_peek refuses. */
	Parley__ClientFrame empty = PARLEY__CLIENT_FRAME__INIT;
	CHECK_EQ(
	    pl_frame_encode(&empty.base, buf, sizeof(buf), &n), PL_E_PROTO);
}

/* Internal records are bounded by the ceiling before any byte is read:
 * a length over it is refused even with a tiny buffer behind it. */
TEST(test_codec_internal_over_ceiling)
{
	uint8_t tiny[1] = {0}, arena_buf[64];
	pl_arena a;
	Parley__Internal__GwBatch *gb;
	Parley__Internal__Command *cmd;
	CHECK_EQ(pl_arena_init(&a, arena_buf, sizeof(arena_buf)), PL_OK);
	CHECK_EQ(pl_gw_batch_decode(tiny, PL_FRAME_BYTES_CEIL + 1, &a, &gb),
	    PL_E_TOO_LARGE);
	CHECK_EQ(pl_command_decode(tiny, PL_FRAME_BYTES_CEIL + 1, &a, &cmd),
	    PL_E_TOO_LARGE);
	CHECK_EQ(a.used, 0);
}

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

/* ---- strings on the wire: UTF-8 without NUL, named in the refusal ---- */

TEST(test_codec_text_check_table)
{
	static const struct {
		const char *name;
		const char *s;
		size_t n;
		pl_text_verdict want;
	} cases[] = {
	    {"empty", "", 0, PL_TEXT_OK},
	    {"ascii", "hello", 5, PL_TEXT_OK},
	    {"two bytes", "\xc3\xa9", 2, PL_TEXT_OK},
	    {"three bytes", "\xe2\x82\xac", 3, PL_TEXT_OK},
	    {"four bytes", "\xf0\x9f\x98\x80", 4, PL_TEXT_OK},
	    {"U+10FFFF", "\xf4\x8f\xbf\xbf", 4, PL_TEXT_OK},
	    {"NUL inside", "n\0a", 3, PL_TEXT_NUL},
	    {"NUL at end", "abc\0", 4, PL_TEXT_NUL},
	    {"lone continuation", "\x80", 1, PL_TEXT_BAD_UTF8},
	    {"0xff", "a\xff", 2, PL_TEXT_BAD_UTF8},
	    {"overlong 2", "\xc0\xaf", 2, PL_TEXT_BAD_UTF8},
	    {"overlong 3", "\xe0\x80\xaf", 3, PL_TEXT_BAD_UTF8},
	    {"overlong 4", "\xf0\x80\x80\xaf", 4, PL_TEXT_BAD_UTF8},
	    {"surrogate", "\xed\xa0\x80", 3, PL_TEXT_BAD_UTF8},
	    {"above U+10FFFF", "\xf4\x90\x80\x80", 4, PL_TEXT_BAD_UTF8},
	    {"truncated", "\xe2\x82", 2, PL_TEXT_BAD_UTF8},
	    {"bad continuation", "\xe2\x28\xa1", 3, PL_TEXT_BAD_UTF8},
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
		pl_text_verdict v = pl_text_check(cases[i].s, cases[i].n);
		if (v != cases[i].want)
			fprintf(stderr, "  case \"%s\"\n", cases[i].name);
		CHECK_EQ(v, cases[i].want);
	}
}

TEST(test_codec_room_rule_table)
{
	static const struct {
		const char *s;
		size_t n;
		const char *rule; /* NULL: a room id */
	} cases[] = {
	    {"0001000000000007", 16, NULL},
	    {"ffff000000000001", 16, NULL},
	    {"", 0, "is empty"},
	    {"zzzz", 4, "shorter than 16"},
	    {"00010000000000071", 17, "longer than 16"},
	    {"0001000000000000", 16, "counter 0"},
	    {"0000000000000007", 16, "shard group 0"},
	    {"000100000000000A", 16, "lowercase hex"},
	    {"0001000000000007\0", 17, "longer than 16"},
	    {"000100000000\0007", 16, "lowercase hex"},
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
		const char *r = pl_room_rule(cases[i].s, cases[i].n);
		if (cases[i].rule == NULL) {
			CHECK(r == NULL);
		} else {
			CHECK(r != NULL);
			if (strstr(r, cases[i].rule) == NULL) {
				fprintf(
				    stderr, "  \"%s\" for case %zu\n", r, i);
				CHECK(strstr(r, cases[i].rule) != NULL);
			}
		}
	}
}

/* A packed ClientFrame{id 9, publish{room, client_msg_id, meta{k, v}}}
 * with each string given as exact bytes. */
static size_t pack_publish(uint8_t *out, const char *room, size_t rn,
    const char *id, size_t idn, const char *mk, size_t mkn, const char *mv,
    size_t mvn)
{
	uint8_t pub[512], meta[256];
	size_t p = 0, m = 0, o = 0;
	meta[m++] = 0x0a;
	meta[m++] = (uint8_t)mkn;
	memcpy(meta + m, mk, mkn);
	m += mkn;
	meta[m++] = 0x12;
	meta[m++] = (uint8_t)mvn;
	memcpy(meta + m, mv, mvn);
	m += mvn;
	pub[p++] = 0x0a;
	pub[p++] = (uint8_t)rn;
	memcpy(pub + p, room, rn);
	p += rn;
	pub[p++] = 0x12;
	pub[p++] = (uint8_t)idn;
	memcpy(pub + p, id, idn);
	p += idn;
	pub[p++] = 0x2a;
	pub[p++] = (uint8_t)m;
	memcpy(pub + p, meta, m);
	p += m;
	out[o++] = 0x08;
	out[o++] = 9;
	out[o++] = 0x32;
	out[o++] = (uint8_t)p;
	memcpy(out + o, pub, p);
	return o + p;
}

/* Each string of a publish broken in turn: the decoder refuses it and
 * names the field; a NUL is never cut into a shorter valid value. */
TEST(test_codec_wire_strings_table)
{
	static const struct {
		const char *name;
		const char *room, *id, *mk, *mv;
		size_t rn, idn, mkn, mvn;
		pl_status want;
		const char *why;
	} cases[] = {
	    {"valid", ROOM_OK, "n", "k", "v", 16, 1, 1, 1, PL_OK, NULL},
	    {"id NUL", ROOM_OK, "n\0a", "k", "v", 16, 3, 1, 1, PL_E_BAD_REQUEST,
	        "publish.client_msg_id contains a NUL byte"},
	    {"room trailing NUL", ROOM_OK "\0", "n", "k", "v", 17, 1, 1, 1,
	        PL_E_BAD_REQUEST, "publish.room contains a NUL byte"},
	    {"meta key bad", ROOM_OK, "n", "\xc0\x80", "v", 16, 1, 2, 1,
	        PL_E_BAD_REQUEST, "publish.meta.key is not valid UTF-8"},
	    {"meta value NUL", ROOM_OK, "n", "k", "a\0", 16, 1, 1, 2,
	        PL_E_BAD_REQUEST, "publish.meta.value contains a NUL byte"},
	    {"room short", "0001", "n", "k", "v", 4, 1, 1, 1, PL_E_BAD_REQUEST,
	        "publish.room: room id is shorter than 16"},
	    {"room counter 0", "0001000000000000", "n", "k", "v", 16, 1, 1, 1,
	        PL_E_BAD_REQUEST, "counter 0"},
	    {"id too long", ROOM_OK,
	        "01234567890123456789012345678901234567890123456789012345678901"
	        "23"
	        "4",
	        "k", "v", 16, 65, 1, 1, PL_E_TOO_LARGE,
	        "publish.client_msg_id of 65 bytes exceeds 64"},
	};
	uint8_t buf[1024];
	pl_arena a;
	CHECK_EQ(pl_arena_init(&a, NULL, PL_ARENA_BYTES_FOR(1024)), PL_OK);
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
		size_t n = pack_publish(buf, cases[i].room, cases[i].rn,
		    cases[i].id, cases[i].idn, cases[i].mk, cases[i].mkn,
		    cases[i].mv, cases[i].mvn);
		Parley__ClientFrame *f = NULL;
		pl_why why = {{0}};
		pl_arena_reset(&a);
		pl_status st =
		    pl_client_frame_decode_why(buf, n, FRAME_CAP, &a, &f, &why);
		if (st != cases[i].want ||
		    (cases[i].why && strstr(why.text, cases[i].why) == NULL))
			fprintf(stderr, "  case \"%s\": \"%s\"\n",
			    cases[i].name, why.text);
		CHECK_EQ(st, cases[i].want);
		CHECK((f != NULL) == (st == PL_OK));
		if (cases[i].why != NULL)
			CHECK(strstr(why.text, cases[i].why) != NULL);
		/* The plain decoder agrees. */
		pl_arena_reset(&a);
		CHECK_EQ(pl_client_frame_decode(buf, n, FRAME_CAP, &a, &f),
		    cases[i].want);
	}
	pl_arena_fini(&a);
}

/* The check walks nested messages: a GwBatch carrying a frame whose
 * string holds a NUL is refused as a whole. */
TEST(test_codec_gw_batch_nested_nul_refused)
{
	uint8_t frame[256], req[300], batch[320];
	size_t fn = pack_publish(frame, ROOM_OK, 16, "n\0a", 3, "k", 1, "v", 1);
	size_t rn = 0, bn = 0;
	req[rn++] = 0x1a; /* GwRequest.frame = 3 */
	req[rn++] = (uint8_t)fn;
	memcpy(req + rn, frame, fn);
	rn += fn;
	batch[bn++] = 0x0a; /* GwBatch.gateway = 1: "g" */
	batch[bn++] = 1;
	batch[bn++] = 'g';
	batch[bn++] = 0x12; /* GwBatch.reqs = 2 */
	batch[bn++] = (uint8_t)rn;
	memcpy(batch + bn, req, rn);
	bn += rn;
	pl_arena a;
	Parley__Internal__GwBatch *b = NULL;
	CHECK_EQ(pl_arena_init(&a, NULL, PL_ARENA_BYTES_FOR(512)), PL_OK);
	CHECK_EQ(pl_gw_batch_decode(batch, bn, &a, &b), PL_E_PROTO);
	pl_why why = {{0}};
	CHECK_EQ(pl_wire_strings_check(
	             &parley__internal__gw_batch__descriptor, batch, bn, &why),
	    PL_E_BAD_REQUEST);
	CHECK_STR_EQ(
	    why.text, "reqs.frame.publish.client_msg_id contains a NUL byte");
	/* Without the NUL it decodes. */
	fn = pack_publish(frame, ROOM_OK, 16, "nxa", 3, "k", 1, "v", 1);
	memcpy(batch + 7, frame, fn);
	pl_arena_reset(&a);
	CHECK_EQ(pl_gw_batch_decode(batch, bn, &a, &b), PL_OK);
	CHECK_STR_EQ(b->reqs[0]->frame->publish->client_msg_id, "nxa");
	pl_arena_fini(&a);
}

TEST(test_codec_history_limit_named)
{
	Parley__History h = PARLEY__HISTORY__INIT;
	Parley__ClientFrame f = PARLEY__CLIENT_FRAME__INIT;
	h.room = ROOM_OK;
	h.limit = 501;
	f.body_case = PARLEY__CLIENT_FRAME__BODY_HISTORY;
	f.history = &h;
	pl_why why = {{0}};
	CHECK_EQ(pl_client_frame_check(&f, &why), PL_E_BAD_REQUEST);
	CHECK_STR_EQ(why.text, "history limit 501 exceeds 500");
	h.limit = 500;
	CHECK_EQ(pl_client_frame_check(&f, &why), PL_OK);
}

TEST(test_codec_meta_bounds_named)
{
	static char big[PL_META_CHARS_MAX + 2];
	memset(big, 'v', sizeof(big) - 1);
	Parley__MetaEntry me = PARLEY__META_ENTRY__INIT;
	Parley__MetaEntry *meta[PL_META_ENTRIES_MAX + 1];
	for (size_t i = 0; i < PL_ARRAY_LEN(meta); i++)
		meta[i] = &me;
	me.key = "k";
	me.value = big;
	Parley__Publish p = PARLEY__PUBLISH__INIT;
	Parley__ClientFrame f = PARLEY__CLIENT_FRAME__INIT;
	p.room = ROOM_OK;
	p.n_meta = 1;
	p.meta = meta;
	f.body_case = PARLEY__CLIENT_FRAME__BODY_PUBLISH;
	f.publish = &p;
	pl_why why = {{0}};
	CHECK_EQ(pl_client_frame_check(&f, &why), PL_E_TOO_LARGE);
	CHECK_STR_EQ(why.text, "publish.meta.value of 257 bytes exceeds 256");
	me.value = "v";
	p.n_meta = PL_ARRAY_LEN(meta);
	CHECK_EQ(pl_client_frame_check(&f, &why), PL_E_TOO_LARGE);
	CHECK_STR_EQ(why.text, "publish.meta has 17 entries, limit 16");
}
