/*
 * test_watch.c - the watch table (broker/watch.c) on its own: presence
 * goes online with a user's first connection to a room over every
 * gateway and offline with its last, watchers are counted per (gateway,
 * user), a gateway dropped takes exactly its watchers, and a room leaves
 * the table with its last watcher.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "broker/watch.h"

#define LOG_MAX 64

typedef struct presence_log {
	struct {
		uint64_t room;
		char user[32];
		int role;
		bool online;
	} e[LOG_MAX];
	int n;
} presence_log;

static void on_presence(
    void *ctx, uint64_t room, const char *user, int role, bool online)
{
	presence_log *l = ctx;
	if (l->n == LOG_MAX)
		return;
	l->e[l->n].room = room;
	snprintf(l->e[l->n].user, sizeof(l->e[l->n].user), "%s", user);
	l->e[l->n].role = role;
	l->e[l->n].online = online;
	l->n++;
}

/* Two gateways (opaque keys). */
static const int GW_A = 1, GW_B = 2;
#define A ((const void *)&GW_A)
#define B ((const void *)&GW_B)

TEST(test_watch_presence_table)
{
	/* Each step: a watch change, then whether it must report presence
	 * (0 none, 1 online, -1 offline) and the user's connections after. */
	static const struct {
		const char *what;
		bool on;
		int gw; /* 1 = A, 2 = B */
		const char *user;
		int presence;
		uint32_t conns;
	} steps[] = {
	    {"ann's first connection: online", true, 1, "ann", 1, 1},
	    {"ann again on A: no news", true, 1, "ann", 0, 2},
	    {"ann on B: no news", true, 2, "ann", 0, 3},
	    {"bob on B: bob online", true, 2, "bob", 1, 1},
	    {"ann leaves A once", false, 1, "ann", 0, 2},
	    {"ann leaves A again", false, 1, "ann", 0, 1},
	    {"ann leaves A a third time: unknown, ignored", false, 1, "ann", 0,
	        1},
	    {"ann leaves B: offline", false, 2, "ann", -1, 0},
	    {"bob leaves B: offline", false, 2, "bob", -1, 0},
	};
	presence_log log = {0};
	brk_watches w;
	brk_watches_init(&w, on_presence, &log);
	const uint64_t room = 0x0001000000000007ull;
	for (size_t i = 0; i < PL_ARRAY_LEN(steps); i++) {
		const void *gw = steps[i].gw == 1 ? A : B;
		int before = log.n;
		if (steps[i].on)
			CHECK_EQ(brk_watch_on(&w, gw, room, steps[i].user, 2),
			    PL_OK);
		else
			brk_watch_off(&w, gw, room, steps[i].user);
		int want = steps[i].presence != 0 ? 1 : 0;
		if (log.n - before != want)
			fprintf(stderr, "step: %s\n", steps[i].what);
		CHECK_EQ(log.n - before, want);
		if (want) {
			CHECK_EQ(log.e[before].online, steps[i].presence > 0);
			CHECK_STR_EQ(log.e[before].user, steps[i].user);
			CHECK_EQ(log.e[before].role, 2);
			CHECK_EQ(log.e[before].room, room);
		}
		CHECK_EQ(brk_watch_user_conns(
		             brk_watch_room(&w, room), steps[i].user),
		    steps[i].conns);
	}
	CHECK(brk_watch_room(&w, room) == NULL); /* the last one left */
	CHECK_EQ(w.rooms, 0);
	CHECK_EQ(w.failed, 0);
	brk_watches_fini(&w);
}

/* One watcher per (gateway, user), whatever its connections; rooms are
 * kept apart. (Fan-out feeds each gateway of a room once: test_group.) */
TEST(test_watch_one_watcher_per_gateway_and_user)
{
	brk_watches w;
	brk_watches_init(&w, NULL, NULL);
	const uint64_t room = 42;
	CHECK_EQ(brk_watch_on(&w, A, room, "ann", 1), PL_OK);
	CHECK_EQ(brk_watch_on(&w, A, room, "ann", 1), PL_OK);
	CHECK_EQ(brk_watch_on(&w, A, room, "bob", 1), PL_OK);
	CHECK_EQ(brk_watch_on(&w, B, room, "cat", 1), PL_OK);
	CHECK_EQ(brk_watch_on(&w, A, room + 1, "ann", 1), PL_OK);
	const brk_room_watch *rw = brk_watch_room(&w, room);
	CHECK(rw != NULL);
	CHECK_EQ(rw->n, 3);
	int on_a = 0, on_b = 0;
	for (int i = 0; i < rw->n; i++) {
		on_a += rw->v[i].gw == A;
		on_b += rw->v[i].gw == B;
	}
	CHECK_EQ(on_a, 2);
	CHECK_EQ(on_b, 1);
	CHECK_EQ(brk_watch_user_conns(rw, "ann"), 2);
	CHECK_EQ(brk_watch_room(&w, room + 1)->n, 1);
	CHECK_EQ(w.rooms, 2);
	brk_watches_fini(&w);
	CHECK_EQ(w.rooms, 0);
}

TEST(test_watch_drop_gateway_takes_only_its_watchers)
{
	presence_log log = {0};
	brk_watches w;
	brk_watches_init(&w, on_presence, &log);
	/* Many rooms so several buckets are walked; ann is on both gateways
	 * in room 7, so only bob and cat go offline there. */
	for (uint64_t r = 1; r <= 200; r++)
		CHECK_EQ(brk_watch_on(&w, A, r, "bob", 1), PL_OK);
	CHECK_EQ(brk_watch_on(&w, A, 7, "ann", 1), PL_OK);
	CHECK_EQ(brk_watch_on(&w, B, 7, "ann", 1), PL_OK);
	CHECK_EQ(brk_watch_on(&w, B, 9, "cat", 1), PL_OK);
	log.n = 0;
	brk_watches_drop_gw(&w, A);
	/* Offline for bob in the first LOG_MAX rooms logged; none for ann. */
	CHECK_EQ(log.n, LOG_MAX);
	for (int i = 0; i < log.n; i++) {
		CHECK_STR_EQ(log.e[i].user, "bob");
		CHECK(!log.e[i].online);
	}
	CHECK_EQ(w.rooms, 2); /* 7 (ann on B) and 9 (cat on B) */
	CHECK_EQ(brk_watch_user_conns(brk_watch_room(&w, 7), "ann"), 1);
	CHECK_EQ(brk_watch_user_conns(brk_watch_room(&w, 9), "cat"), 1);
	CHECK(brk_watch_room(&w, 1) == NULL);
	brk_watches_fini(&w);
}
