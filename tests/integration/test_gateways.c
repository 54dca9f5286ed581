/*
 * test_gateways.c - two gateways in front of the same shard groups.
 *   any gateway serves any room: clients on either publish to and
 *   subscribe to the same rooms and all see every seq once, in order;
 *   a broker sends a room's live events only to the gateways that watch
 *   it: a gateway with no subscriber of a room receives none of its
 *   events (parley_gateway_feed_events_total stays where it was);
 *   fault: a subscriber moves from one gateway to the other, and then a
 *   gateway is killed with kill -9 under its publisher;
 *   invariant: resubscribing from the last seq seen, on the other
 *   gateway, delivers exactly the missed seqs then live ones: no gap, no
 *   duplicate, across both moves.
 */
#define CHECK_MAIN
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 3000

/* Reads messages of room until seq `to`; each must be the next. */
static bool read_through(
    parley_conn *sub, const char *room, uint64_t *last, uint64_t to)
{
	while (*last < to) {
		uint64_t s = hx_next_message(sub, room, T, NULL, 0);
		if (s != *last + 1) {
			fprintf(stderr, "  expected seq %llu, got %llu\n",
			    (unsigned long long)(*last + 1),
			    (unsigned long long)s);
			return false;
		}
		*last = s;
	}
	return true;
}

TEST(test_gateways_any_gateway_any_room_and_feeds_only_to_watchers)
{
	hx_cluster c;
	char a[17], b[17];
	CHECK(hx_init(&c, 2));
	CHECK(hx_start(&c));
	CHECK(hx_start_gateway2(&c));
	parley_conn *svc1 = hx_client_at(
	    &c, 1, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	parley_conn *svc2 = hx_client_at(
	    &c, 2, true, "acme", "backend-2", PARLEY__ROLE__SERVICE);
	parley_conn *sub1 =
	    hx_client_at(&c, 1, true, "acme", "agent-1", PARLEY__ROLE__AGENT);
	parley_conn *sub2 =
	    hx_client_at(&c, 2, false, "acme", "agent-2", PARLEY__ROLE__AGENT);
	CHECK(svc1 != NULL && svc2 != NULL && sub1 != NULL && sub2 != NULL);
	CHECK_EQ(parley_create_room(svc1, NULL, NULL, 0, T, a, NULL), PL_OK);
	CHECK_EQ(parley_create_room(svc2, NULL, NULL, 0, T, b, NULL), PL_OK);
	CHECK_EQ(parley_subscribe(sub1, a, 0, T, NULL), PL_OK);
	CHECK_EQ(parley_subscribe(sub2, a, 0, T, NULL), PL_OK);
	/* Publishers on both gateways, one room: one order for everyone. */
	for (int i = 1; i <= 60; i++)
		CHECK_EQ(hx_publish_n(i % 2 ? svc1 : svc2, a, i, NULL), PL_OK);
	uint64_t l1 = 0, l2 = 0;
	CHECK(read_through(sub1, a, &l1, 60));
	CHECK(read_through(sub2, a, &l2, 60));
	CHECK_EQ(hx_next_message(sub2, a, 200, NULL, 0), 0);

	/* Room b has a subscriber on gateway 1 only. */
	CHECK_EQ(parley_subscribe(sub1, b, 0, T, NULL), PL_OK);
	usleep(300 * 1000); /* events of room a already in flight land */
	long in1 = hx_metric(c.http_port, "parley_gateway_feed_events_total");
	long in2 = hx_metric(c.http_port2, "parley_gateway_feed_events_total");
	CHECK(in1 >= 60 && in2 >= 60);
	for (int i = 1; i <= 100; i++)
		CHECK_EQ(hx_publish_n(i % 2 ? svc1 : svc2, b, i, NULL), PL_OK);
	uint64_t lb = 0;
	CHECK(read_through(sub1, b, &lb, 100));
	usleep(300 * 1000);
	CHECK_GE(hx_metric(c.http_port, "parley_gateway_feed_events_total"),
	    in1 + 100);
	CHECK_EQ(
	    hx_metric(c.http_port2, "parley_gateway_feed_events_total"), in2);
	parley_close(svc1);
	parley_close(svc2);
	parley_close(sub1);
	parley_close(sub2);
	hx_fini(&c, false);
}

TEST(test_gateways_subscriber_moves_and_a_gateway_dies_no_gap_no_duplicate)
{
	hx_cluster c;
	char room[17];
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	CHECK(hx_start_gateway2(&c));
	parley_conn *svc = hx_client_at(
	    &c, 1, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	parley_conn *sub =
	    hx_client_at(&c, 1, true, "acme", "agent", PARLEY__ROLE__AGENT);
	CHECK(svc != NULL && sub != NULL);
	CHECK_EQ(parley_create_room(svc, NULL, NULL, 0, T, room, NULL), PL_OK);
	CHECK_EQ(parley_subscribe(sub, room, 0, T, NULL), PL_OK);
	for (int i = 1; i <= 40; i++)
		CHECK_EQ(hx_publish_n(svc, room, i, NULL), PL_OK);
	uint64_t last = 0;
	CHECK(read_through(sub, room, &last, 20)); /* 21..40 unread */
	parley_close(sub);

	/* The subscriber comes back on the other gateway while publishes
	 * go on through the first. */
	sub = hx_client_at(&c, 2, false, "acme", "agent", PARLEY__ROLE__AGENT);
	CHECK(sub != NULL);
	CHECK_EQ(parley_subscribe(sub, room, last, T, NULL), PL_OK);
	for (int i = 41; i <= 80; i++)
		CHECK_EQ(hx_publish_n(svc, room, i, NULL), PL_OK);
	CHECK(read_through(sub, room, &last, 80));

	/* The publisher's gateway dies; it goes on through the other one,
	 * where the subscriber is. */
	hx_kill(&c.gateway, SIGKILL);
	parley_close(svc);
	svc =
	    hx_client_at(&c, 2, true, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	for (int i = 81; i <= 120; i++)
		CHECK_EQ(hx_publish_n(svc, room, i, NULL), PL_OK);
	CHECK(read_through(sub, room, &last, 100)); /* 101..120 unread */

	/* The first gateway comes back; the subscriber moves to it. */
	CHECK(hx_start_gateway(&c));
	parley_close(sub);
	sub = hx_client_at(&c, 1, true, "acme", "agent", PARLEY__ROLE__AGENT);
	CHECK(sub != NULL);
	CHECK_EQ(parley_subscribe(sub, room, last, T, NULL), PL_OK);
	for (int i = 121; i <= 140; i++)
		CHECK_EQ(hx_publish_n(svc, room, i, NULL), PL_OK);
	CHECK(read_through(sub, room, &last, 140));
	CHECK_EQ(hx_next_message(sub, room, 300, NULL, 0), 0); /* no extra */

	/* Every message is stored once. */
	Parley__ServerFrame *f;
	parley_history_query q = {
	    .after_seq = 0, .oldest_first = true, .limit = 200};
	CHECK_EQ(parley_history(sub, room, &q, T, &f), PL_OK);
	CHECK_EQ(f->history->n_messages, 140);
	for (size_t i = 0; i < f->history->n_messages; i++)
		CHECK_EQ(f->history->messages[i]->seq, i + 1);
	parley_frame_free(f);
	parley_close(svc);
	parley_close(sub);
	hx_fini(&c, false);
}
