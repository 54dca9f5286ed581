/*
 * test_resume.c - subscriptions resume without gap or duplicate, and a
 * retried publish is stored once.
 *   fault: a subscriber disconnects while messages keep coming;
 *   invariant: after resubscribing from the last seq it saw, it receives
 *   exactly the missed seqs in order, then live ones.
 *   fault: a publisher loses its connection before reading the ack;
 *   invariant: the retry with the same client_msg_id returns the original
 *   seq and nothing is stored twice.
 */
#define CHECK_MAIN
#include <signal.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 3000

TEST(test_resume_since_seq_no_gap_no_duplicate)
{
	hx_cluster c;
	char room[17];
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	parley_conn *sub =
	    hx_client(&c, true, "acme", "agent", PARLEY__ROLE__AGENT);
	CHECK(svc != NULL && sub != NULL);
	CHECK_EQ(parley_create_room(svc, NULL, NULL, 0, T, room, NULL), PL_OK);
	for (int i = 1; i <= 5; i++)
		CHECK_EQ(hx_publish_n(svc, room, i, NULL), PL_OK);
	CHECK_EQ(parley_subscribe(sub, room, 2, T, NULL), PL_OK);
	uint64_t last = 2;
	for (int i = 0; i < 3; i++) {
		uint64_t s = hx_next_message(sub, room, T, NULL, 0);
		CHECK_EQ(s, last + 1);
		last = s;
	}
	parley_close(sub); /* gone while more arrive */
	for (int i = 6; i <= 40; i++)
		CHECK_EQ(hx_publish_n(svc, room, i, NULL), PL_OK);
	sub = hx_client(&c, false, "acme", "agent", PARLEY__ROLE__AGENT);
	CHECK(sub != NULL);
	CHECK_EQ(parley_subscribe(sub, room, last, T, NULL), PL_OK);
	/* Live publishes race with the catch-up from history. */
	for (int i = 41; i <= 60; i++)
		CHECK_EQ(hx_publish_n(svc, room, i, NULL), PL_OK);
	while (last < 60) {
		uint64_t s = hx_next_message(sub, room, T, NULL, 0);
		CHECK_EQ(s, last + 1);
		last = s;
	}
	CHECK_EQ(hx_next_message(sub, room, 300, NULL, 0), 0); /* no extra */
	parley_close(sub);
	parley_close(svc);
	hx_fini(&c, false);
}

TEST(test_resume_retry_after_lost_ack_stored_once)
{
	hx_cluster c;
	char room[17];
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	CHECK_EQ(parley_create_room(svc, NULL, NULL, 0, T, room, NULL), PL_OK);
	CHECK_EQ(hx_publish_n(svc, room, 1, NULL), PL_OK);
	/* Send publish 2 and drop the connection without reading the ack. */
	uint64_t id;
	CHECK_EQ(parley_publish_send(svc, room, "msg-2", PARLEY__KIND__TEXT,
	             "body 2", 6, 0, &id),
	    PL_OK);
	parley_close(svc);
	svc = hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	parley_ack a;
	/* The retry returns the seq the first attempt got (if it landed) or
	 * stores it now; either way seq 2, and a second retry is a dup. */
	CHECK_EQ(hx_publish_n(svc, room, 2, &a), PL_OK);
	CHECK_EQ(a.seq, 2);
	CHECK_EQ(hx_publish_n(svc, room, 2, &a), PL_OK);
	CHECK_EQ(a.seq, 2);
	CHECK(a.duplicate);
	CHECK_EQ(hx_publish_n(svc, room, 3, &a), PL_OK);
	CHECK_EQ(a.seq, 3);
	Parley__ServerFrame *f;
	parley_history_query q = {
	    .after_seq = 0, .oldest_first = true, .limit = 50};
	CHECK_EQ(parley_history(svc, room, &q, T, &f), PL_OK);
	CHECK_EQ(f->history->n_messages, 3);
	for (size_t i = 0; i < 3; i++)
		CHECK_EQ(f->history->messages[i]->seq, i + 1);
	parley_frame_free(f);
	parley_close(svc);
	hx_fini(&c, false);
}

/* fault: kill -9 of the broker while a subscriber stays connected to the
 * gateway, then restart;
 * invariant: the gateway re-watches the room under the broker's new
 * epoch and the subscriber receives every seq once, in order, without
 * resubscribing. */
TEST(test_resume_live_subscription_survives_broker_restart)
{
	hx_cluster c;
	char room[17];
	CHECK(hx_init(&c, 1));
	snprintf(c.gw_extra, sizeof(c.gw_extra), "broker_timeout_ms = 500\n");
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	parley_conn *sub =
	    hx_client(&c, true, "acme", "agent", PARLEY__ROLE__AGENT);
	CHECK(svc != NULL && sub != NULL);
	CHECK_EQ(parley_create_room(svc, NULL, NULL, 0, T, room, NULL), PL_OK);
	CHECK_EQ(parley_subscribe(sub, room, 0, T, NULL), PL_OK);
	for (int i = 1; i <= 5; i++)
		CHECK_EQ(hx_publish_n(svc, room, i, NULL), PL_OK);
	uint64_t last = 0;
	while (last < 5) {
		uint64_t s = hx_next_message(sub, room, T, NULL, 0);
		CHECK_EQ(s, last + 1);
		last = s;
	}
	hx_kill(&c.broker[1], SIGKILL);
	CHECK(hx_start_broker(&c, 1));
	for (int i = 6; i <= 10; i++) {
		pl_status st = PL_E_UNAVAILABLE;
		for (int k = 0; k < 50 && st != PL_OK; k++) {
			st = hx_publish_n(svc, room, i, NULL);
			if (st != PL_OK)
				usleep(100000);
		}
		CHECK_EQ(st, PL_OK);
	}
	while (last < 10) {
		uint64_t s = hx_next_message(sub, room, 5000, NULL, 0);
		CHECK_EQ(s, last + 1);
		last = s;
	}
	CHECK_EQ(hx_next_message(sub, room, 300, NULL, 0), 0);
	parley_close(sub);
	parley_close(svc);
	hx_fini(&c, false);
}
