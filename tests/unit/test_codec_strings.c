/*
 * test_codec_strings.c - strings on the wire: the UTF-8 and room-name
 * checks, and every decoder refusing a string with a NUL or bad UTF-8 and
 * naming the field. Part of unit_codec (test_codec.h).
 */
#include "tests/unit/test_codec.h"

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
