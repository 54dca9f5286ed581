/*
 * test_room.c - room id formatting and parsing (canonical form only) and
 * role names, checked against the generated parley.Role numbers.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "common/common.h"
#include "proto/codec.h"

static const struct {
	const char *s;
	pl_status want;
	uint64_t room;
} parse_cases[] = {
    {"0001000000000007", PL_OK, UINT64_C(0x0001000000000007)},
    {"ffffffffffffffff", PL_OK, UINT64_MAX},
    {"00a0000000abcdef", PL_OK, UINT64_C(0x00a0000000abcdef)},
    {"0000000000000007", PL_E_BAD_REQUEST, 0}, /* group 0 */
    {"0001000000000000", PL_E_BAD_REQUEST, 0}, /* counter 0 */
    {"0001000000000007 ", PL_E_BAD_REQUEST, 0},
    {"000100000000007", PL_E_BAD_REQUEST, 0},   /* 15 digits */
    {"00010000000000070", PL_E_BAD_REQUEST, 0}, /* 17 digits */
    {"0001ABCD00000007", PL_E_BAD_REQUEST, 0},  /* not canonical */
    {"0001g00000000007", PL_E_BAD_REQUEST, 0},
    {"-001000000000007", PL_E_BAD_REQUEST, 0},
    {"0x01000000000007", PL_E_BAD_REQUEST, 0},
    {"", PL_E_BAD_REQUEST, 0},
    {NULL, PL_E_BAD_REQUEST, 0},
};

TEST(test_room_parse_table)
{
	for (size_t i = 0; i < PL_ARRAY_LEN(parse_cases); i++) {
		uint64_t room = 42;
		pl_status st = pl_room_parse(parse_cases[i].s, &room);
		if (st != parse_cases[i].want)
			fprintf(stderr, "  case \"%s\"\n",
			    parse_cases[i].s ? parse_cases[i].s : "(null)");
		CHECK_EQ(st, parse_cases[i].want);
		/* Output parameters are written only on success. */
		CHECK_EQ(room, st == PL_OK ? parse_cases[i].room : 42);
	}
}

TEST(test_room_format_round_trip)
{
	const uint64_t rooms[] = {pl_room_make(1, 7), pl_room_make(0xffff, 1),
	    pl_room_make(0x1234, PL_ROOM_COUNTER_MAX), pl_room_make(2, 1)};
	for (size_t i = 0; i < PL_ARRAY_LEN(rooms); i++) {
		char s[PL_ROOM_ID_CHARS + 1];
		uint64_t back = 0;
		pl_room_format(rooms[i], s);
		CHECK_EQ(strlen(s), PL_ROOM_ID_CHARS);
		CHECK_EQ(pl_room_parse(s, &back), PL_OK);
		CHECK_EQ(back, rooms[i]);
	}
}

TEST(test_room_make_splits_group_and_counter)
{
	uint64_t r = pl_room_make(3, (UINT64_C(1) << 48) | 5);
	CHECK_EQ(pl_room_group(r), 3);
	CHECK_EQ(r & PL_ROOM_COUNTER_MAX, 5); /* counter is masked */
	char s[PL_ROOM_ID_CHARS + 1];
	pl_room_format(pl_room_make(1, 7), s);
	CHECK_STR_EQ(s, "0001000000000007");
}

TEST(test_room_role_names)
{
	static const struct {
		int role;
		const char *name;
	} roles[] = {
	    {PARLEY__ROLE__ROLE_NONE, "none"},
	    {PARLEY__ROLE__CUSTOMER, "customer"},
	    {PARLEY__ROLE__AGENT, "agent"},
	    {PARLEY__ROLE__BOT, "bot"},
	    {PARLEY__ROLE__OBSERVER, "observer"},
	    {PARLEY__ROLE__SERVICE, "service"},
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(roles); i++) {
		CHECK_STR_EQ(pl_role_name(roles[i].role), roles[i].name);
		CHECK_EQ(pl_role_parse(roles[i].name), roles[i].role);
	}
}

TEST(test_room_role_unknown)
{
	CHECK_STR_EQ(pl_role_name(-1), "unknown");
	CHECK_STR_EQ(pl_role_name(PARLEY__ROLE__SERVICE + 1), "unknown");
	CHECK_EQ(pl_role_parse("Agent"), -1);
	CHECK_EQ(pl_role_parse(""), -1);
	CHECK_EQ(pl_role_parse(NULL), -1);
}
