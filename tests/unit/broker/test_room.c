/*
 * test_room.c - consultation statistics and room authorization, table
 * driven: each case is a script of joins, messages and a close with the
 * statistics it must produce.
 */
#define CHECK_MAIN
#include "broker/broker.h"
#include "tests/check.h"

enum { JOIN, MSG, CLOSE, END };
typedef struct step {
	int op;
	int role;
	int kind;
	int64_t ts;
	const char *user;
} step;

typedef struct stats_case {
	const char *name;
	step steps[12];
	int64_t wait, first_response, handle;
	uint32_t turns;
	int64_t turn0, turn1;
	uint64_t customer_msgs, agent_msgs;
} stats_case;

#define C PARLEY__ROLE__CUSTOMER
#define A PARLEY__ROLE__AGENT
#define B PARLEY__ROLE__BOT
#define T PARLEY__KIND__TEXT
#define E PARLEY__KIND__EVENT

static const stats_case cases[] = {
    {"customer first, agent joins and answers",
        {{MSG, C, T, 100, "c"}, {JOIN, A, 0, 400, "a"}, {MSG, A, T, 700, "a"},
            {CLOSE, A, 0, 2000, "a"}, {.op = END}},
        300, 600, 1600, 1, 600, 0, 1, 1},
    {"agent joins before any message: wait from creation",
        {{JOIN, A, 0, 50, "a"}, {MSG, C, T, 100, "c"}, {MSG, A, T, 160, "a"},
            {.op = END}},
        50, 60, 0, 1, 60, 0, 1, 1},
    {"two turns; a second customer line does not restart the turn",
        {{MSG, C, T, 100, "c"}, {MSG, C, T, 150, "c"}, {JOIN, A, 0, 200, "a"},
            {MSG, A, T, 300, "a"}, {MSG, C, T, 1000, "c"},
            {MSG, A, T, 1500, "a"}, {.op = END}},
        100, 200, 0, 2, 200, 500, 3, 2},
    {"bot answers are not agent responses; events are not turns",
        {{MSG, C, T, 100, "c"}, {MSG, B, T, 110, "b"}, {MSG, C, E, 120, "c"},
            {JOIN, A, 0, 130, "a"}, {MSG, A, T, 190, "a"}, {.op = END}},
        30, 90, 0, 1, 90, 0, 1, 1},
    {"closed without agent: no handle time",
        {{MSG, C, T, 100, "c"}, {CLOSE, C, 0, 300, "c"}, {.op = END}}, 0, 0, 0,
        0, 0, 0, 1, 0},
};

static void run_case(const stats_case *sc, brk_room *r)
{
	memset(r, 0, sizeof(*r));
	r->stats.created_us = 0;
	for (const step *s = sc->steps; s->op != END; s++) {
		brk_day_delta d;
		brk_day_delta_init(&d, s->ts);
		if (s->op == JOIN)
			brk_room_join(r, s->user, s->role, s->ts, &d);
		else if (s->op == MSG)
			brk_room_on_message(r, s->role, s->kind, s->ts, &d);
		else
			brk_room_close(r, "done", s->ts, &d);
	}
}

TEST(test_room_stats_table)
{
	static brk_room r;
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
		const stats_case *sc = &cases[i];
		run_case(sc, &r);
		fprintf(stderr, "  case: %s\n", sc->name);
		CHECK_EQ(r.stats.wait_us, sc->wait);
		CHECK_EQ(r.stats.first_response_us, sc->first_response);
		CHECK_EQ(r.stats.handle_us, sc->handle);
		CHECK_EQ(r.stats.turns, sc->turns);
		if (sc->turns > 0)
			CHECK_EQ(r.stats.turn_us[0], sc->turn0);
		if (sc->turns > 1)
			CHECK_EQ(r.stats.turn_us[1], sc->turn1);
		CHECK_EQ(r.stats.customer_msgs, sc->customer_msgs);
		CHECK_EQ(r.stats.agent_msgs, sc->agent_msgs);
	}
}

TEST(test_room_join_full_room_refused)
{
	static brk_room r;
	char user[16];
	brk_day_delta d;
	memset(&r, 0, sizeof(r));
	brk_day_delta_init(&d, 1);
	for (int i = 0; i < ROOM_MEMBERS_MAX; i++) {
		snprintf(user, sizeof(user), "u%d", i);
		CHECK_EQ(brk_room_join(&r, user, C, 1, &d), PL_OK);
	}
	CHECK_EQ(brk_room_join(&r, "one-more", C, 1, &d), PL_E_TOO_LARGE);
	/* A member re-joining still works. */
	CHECK_EQ(brk_room_join(&r, "u3", C, 2, &d), PL_OK);
}

TEST(test_room_encode_decode_roundtrip)
{
	static brk_room r, back;
	static uint8_t buf[ROOM_REC_BYTES_MAX];
	size_t n;
	run_case(&cases[2], &r);
	r.id = pl_room_make(1, 42);
	snprintf(r.tenant, sizeof(r.tenant), "acme");
	r.nmeta = PL_META_ENTRIES_MAX;
	for (int i = 0; i < r.nmeta; i++) {
		memset(r.meta[i].key, 'k', PL_META_CHARS_MAX);
		memset(r.meta[i].value, 'v', PL_META_CHARS_MAX);
	}
	for (int i = r.nmembers; i < ROOM_MEMBERS_MAX; i++) {
		memset(r.members[i].user, 'u', PL_USER_CHARS_MAX);
		r.members[i].user[0] = (char)('A' + i);
	}
	r.nmembers = ROOM_MEMBERS_MAX;
	CHECK_EQ(brk_room_encode(&r, buf, sizeof(buf), &n), PL_OK);
	CHECK_LE(n, ROOM_REC_BYTES_MAX);
	pl_arena a;
	CHECK_EQ(pl_arena_init(&a, NULL, PL_ARENA_BYTES_FOR(n)), PL_OK);
	CHECK_EQ(brk_room_decode(buf, n, &a, &back), PL_OK);
	pl_arena_fini(&a);
	CHECK_EQ(back.id, r.id);
	CHECK_STR_EQ(back.tenant, "acme");
	CHECK_EQ(back.stats.turns, 2);
	CHECK_EQ(back.stats.turn_us[1], 500);
	CHECK_EQ(back.nmembers, ROOM_MEMBERS_MAX);
	CHECK_EQ(back.nmeta, PL_META_ENTRIES_MAX);
	CHECK_EQ(memcmp(&back.members, &r.members, sizeof(r.members)), 0);
}

TEST(test_room_decode_garbage_is_corrupt)
{
	static brk_room r;
	uint8_t junk[] = {0xff, 0xff, 0xff, 0x01, 0x02};
	pl_arena a;
	CHECK_EQ(pl_arena_init(&a, NULL, 4096), PL_OK);
	CHECK_EQ(brk_room_decode(junk, sizeof(junk), &a, &r), PL_E_CORRUPT);
	pl_arena_fini(&a);
}

typedef struct access_case {
	int role;
	bool member;
	const char *tenant;
	const char *scope;
	int what; /* a request type */
	pl_status want;
} access_case;

TEST(test_room_access_table)
{
	static brk_room r;
	brk_day_delta d;
	char own[PL_ROOM_ID_CHARS + 1];
	memset(&r, 0, sizeof(r));
	r.id = pl_room_make(1, 7);
	pl_room_format(r.id, own);
	snprintf(r.tenant, sizeof(r.tenant), "acme");
	brk_day_delta_init(&d, 1);
	brk_room_join(&r, "member", C, 1, &d);
	const access_case cases_[] = {
	    {C, true, "acme", "", PARLEY__CLIENT_FRAME__BODY_HISTORY, PL_OK},
	    {C, false, "acme", "", PARLEY__CLIENT_FRAME__BODY_HISTORY,
	        PL_E_FORBIDDEN},
	    {C, false, "acme", own, PARLEY__CLIENT_FRAME__BODY_JOIN, PL_OK},
	    {C, false, "acme", "0001000000000008",
	        PARLEY__CLIENT_FRAME__BODY_HISTORY, PL_E_FORBIDDEN},
	    {C, true, "other", "", PARLEY__CLIENT_FRAME__BODY_HISTORY,
	        PL_E_NOT_FOUND},
	    {A, false, "other", "", PARLEY__CLIENT_FRAME__BODY_HISTORY,
	        PL_E_NOT_FOUND},
	    {A, false, "acme", "", PARLEY__CLIENT_FRAME__BODY_HISTORY, PL_OK},
	    {A, false, "acme", "", PARLEY__CLIENT_FRAME__BODY_PUBLISH,
	        PL_E_FORBIDDEN},
	    {PARLEY__ROLE__SERVICE, false, "acme", "",
	        PARLEY__CLIENT_FRAME__BODY_PUBLISH, PL_OK},
	    {PARLEY__ROLE__OBSERVER, false, "acme", "",
	        PARLEY__CLIENT_FRAME__BODY_PUBLISH, PL_E_FORBIDDEN},
	    {C, true, "acme", "", PARLEY__CLIENT_FRAME__BODY_PUBLISH, PL_OK},
	    {C, true, "acme", "", PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM, PL_OK},
	    {C, false, "acme", own, PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM,
	        PL_E_FORBIDDEN},
	    {A, false, "acme", "", PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM,
	        PL_OK},
	    /* A request type the table does not name is nobody's. */
	    {PARLEY__ROLE__SERVICE, false, "acme", "",
	        PARLEY__CLIENT_FRAME__BODY_PING, PL_E_FORBIDDEN},
	    {PARLEY__ROLE__SERVICE, false, "acme", "",
	        PARLEY__CLIENT_FRAME__BODY_HELLO, PL_E_FORBIDDEN},
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(cases_); i++) {
		const access_case *ac = &cases_[i];
		Parley__Internal__Caller c;
		parley__internal__caller__init(&c);
		c.tenant = (char *)ac->tenant;
		c.user = ac->member ? "member" : "stranger";
		c.role = ac->role;
		c.room_scope = (char *)ac->scope;
		pl_status got = brk_access(&r, &c, ac->what);
		if (got != ac->want)
			fprintf(stderr, "  access case %zu\n", i);
		CHECK_EQ(got, ac->want);
	}
}
