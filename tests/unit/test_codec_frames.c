/*
 * test_codec_frames.c - framing edge cases, a table of client frames (every
 * op round-trips; each bound is probed just inside and just outside), raw
 * malformed payloads, the decode arena and encoding limits. Shared
 * definitions and the other files of unit_codec: test_codec.h.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "tests/unit/test_codec.h"

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
