/*
 * test_feed.c - per-gateway feeds (broker/feed.c) on their own: events
 * queue as BrokerBatch records that protobuf-c decodes with the tail
 * (epoch, overflow, group); polls are answered oldest first, at their
 * deadline or when there is news; a full feed drops and flags overflow
 * until a poll carried it; idle gateways are found and forgotten with
 * their polls given back; incarnations give a returning gateway a new
 * epoch.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include <stdlib.h>
#include <string.h>

#include "broker/feed.h"
#include "proto/codec.h"

typedef struct answers {
	int polls[16]; /* which poll (its number) was answered, in order */
	Parley__Internal__BrokerBatch *last;
	int n;
	int released;
	bool fail; /* answer fails (as when no memory) */
} answers;

static bool on_answer(void *ctx, void *poll, const uint8_t *feed, size_t n,
    const uint8_t *tail, size_t tn)
{
	answers *a = ctx;
	if (a->fail)
		return false;
	uint8_t *buf = malloc(n + tn);
	memcpy(buf, feed, n);
	memcpy(buf + n, tail, tn);
	if (a->last != NULL)
		parley__internal__broker_batch__free_unpacked(a->last, NULL);
	a->last = parley__internal__broker_batch__unpack(NULL, n + tn, buf);
	free(buf);
	a->polls[a->n++ % 16] = *(int *)poll;
	return true;
}

static void on_release(void *ctx, void *poll)
{
	((answers *)ctx)->released++;
}

static size_t event(uint8_t *buf, uint64_t seq)
{
	Parley__Message m = PARLEY__MESSAGE__INIT;
	Parley__Event ev = PARLEY__EVENT__INIT;
	m.seq = seq;
	ev.room = "0001000000000007";
	ev.ev_case = PARLEY__EVENT__EV_MESSAGE;
	ev.message = &m;
	return parley__event__pack(&ev, buf);
}

static const char EPOCH[] = "0123456789abcdef0123456789abcdef";

TEST(test_feed_polls_answered_in_order_with_the_tail)
{
	answers a = {0};
	brk_feeds f;
	brk_feeds_init(&f, EPOCH, 3, 100, on_answer, on_release, &a);
	brk_feed_gw *gw = brk_feeds_find(&f, "gw-1", true);
	CHECK(gw != NULL);
	CHECK(brk_feeds_find(&f, "gw-1", false) == gw);
	CHECK(brk_feeds_find(&f, "gw-2", false) == NULL);
	CHECK_STR_EQ(gw->epoch, "0123456789abcdef0123456789abcdef.1");
	int p1 = 1, p2 = 2;
	brk_feed_park(&f, gw, &p1, 1000);
	brk_feed_park(&f, gw, &p2, 5000);
	/* Nothing to say before the first deadline. */
	brk_feeds_tick(&f, 999);
	CHECK_EQ(a.n, 0);
	/* The first poll's deadline: answered empty, with the tail. */
	brk_feeds_tick(&f, 1000);
	CHECK_EQ(a.n, 1);
	CHECK_EQ(a.polls[0], 1);
	CHECK(a.last != NULL);
	CHECK_EQ(a.last->n_events, 0);
	CHECK_STR_EQ(a.last->epoch, gw->epoch);
	CHECK_EQ(a.last->group, 3);
	CHECK(!a.last->overflow);
	/* News answers the second at once, in order. */
	uint8_t ev[64];
	for (uint64_t s = 1; s <= 3; s++)
		CHECK(brk_feed_append(&f, gw, ev, event(ev, s)));
	brk_feeds_tick(&f, 1001);
	CHECK_EQ(a.n, 2);
	CHECK_EQ(a.polls[1], 2);
	CHECK_EQ(a.last->n_events, 3);
	CHECK_EQ(a.last->events[2]->message->seq, 3);
	CHECK_EQ(gw->len, 0);
	CHECK_EQ(gw->last_seen_us, 1001);
	parley__internal__broker_batch__free_unpacked(a.last, NULL);
	brk_feeds_fini(&f);
	CHECK_EQ(a.released, 0);
}

TEST(test_feed_overflow_flag_until_carried)
{
	answers a = {0};
	brk_feeds f;
	brk_feeds_init(&f, EPOCH, 1, 2, on_answer, on_release, &a);
	brk_feed_gw *gw = brk_feeds_find(&f, "gw", true);
	uint8_t ev[64];
	size_t n = event(ev, 1);
	CHECK(brk_feed_append(&f, gw, ev, n));
	CHECK(brk_feed_append(&f, gw, ev, n));
	CHECK(!brk_feed_append(&f, gw, ev, n)); /* events_max = 2 */
	CHECK_EQ(f.dropped, 1);
	CHECK(gw->overflow);
	int p = 7;
	/* A failed answer keeps everything for the next poll. */
	a.fail = true;
	brk_feed_park(&f, gw, &p, 10);
	brk_feed_flush(&f, gw);
	CHECK_EQ(f.failed, 1);
	CHECK(gw->overflow);
	CHECK_EQ(gw->events, 2);
	a.fail = false;
	brk_feed_park(&f, gw, &p, 10);
	brk_feed_flush(&f, gw);
	CHECK_EQ(a.n, 1);
	CHECK(a.last->overflow);
	CHECK_EQ(a.last->n_events, 2);
	CHECK(!gw->overflow);
	/* The next answer says nothing of it any more. */
	brk_feed_park(&f, gw, &p, 10);
	brk_feed_flush(&f, gw);
	CHECK(!a.last->overflow);
	parley__internal__broker_batch__free_unpacked(a.last, NULL);
	brk_feeds_fini(&f);
}

TEST(test_feed_park_past_the_bound_answers_the_oldest)
{
	answers a = {0};
	brk_feeds f;
	brk_feeds_init(&f, EPOCH, 1, 10, on_answer, on_release, &a);
	brk_feed_gw *gw = brk_feeds_find(&f, "gw", true);
	int p[BRK_FEED_POLLS_MAX + 1];
	for (int i = 0; i <= BRK_FEED_POLLS_MAX; i++) {
		p[i] = i;
		brk_feed_park(&f, gw, &p[i], 1000);
	}
	CHECK_EQ(a.n, 1);
	CHECK_EQ(a.polls[0], 0);
	CHECK_EQ(gw->npolls, BRK_FEED_POLLS_MAX);
	/* Forgetting the gateway gives back what is still parked. */
	brk_feeds_forget(&f, 0);
	CHECK_EQ(a.released, BRK_FEED_POLLS_MAX);
	CHECK_EQ(f.n, 0);
	parley__internal__broker_batch__free_unpacked(a.last, NULL);
	brk_feeds_fini(&f);
}

TEST(test_feed_idle_gateways_and_incarnations)
{
	answers a = {0};
	brk_feeds f;
	brk_feeds_init(&f, EPOCH, 1, 10, on_answer, on_release, &a);
	brk_feed_gw *g1 = brk_feeds_find(&f, "gw-1", true);
	brk_feed_gw *g2 = brk_feeds_find(&f, "gw-2", true);
	g1->last_seen_us = 100;
	g2->last_seen_us = 900;
	int p = 1;
	CHECK_EQ(brk_feeds_idle(&f, 1000, 500), 0); /* gw-1 */
	brk_feed_park(&f, g1, &p, 5000);            /* a poll: not idle */
	CHECK_EQ(brk_feeds_idle(&f, 1000, 500), -1);
	CHECK_EQ(brk_feeds_idle(&f, 1400, 500), 1); /* gw-2 now */
	brk_feeds_forget(&f, 1);
	/* Back after being forgotten: a new incarnation, a new epoch. */
	brk_feed_gw *again = brk_feeds_find(&f, "gw-2", true);
	CHECK_STR_EQ(again->epoch, "0123456789abcdef0123456789abcdef.3");
	/* Ids past the bound are refused and counted. */
	char big[BRK_FEED_ID_CHARS_MAX + 2];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK(brk_feeds_find(&f, big, true) == NULL);
	CHECK_EQ(f.refused, 1);
	/* No fixed number of gateways: a thousand more, each found again,
	 * each costing its small first buffer only. */
	for (int i = 0; i < 1000; i++) {
		char id[16];
		snprintf(id, sizeof(id), "g%d", i);
		brk_feed_gw *gw = brk_feeds_find(&f, id, true);
		CHECK(gw != NULL);
		CHECK_EQ(gw->cap, BRK_FEED_BYTES_MIN);
	}
	CHECK_EQ(f.n, 1002);
	CHECK(brk_feeds_find(&f, "g999", false) != NULL);
	CHECK_EQ(f.refused, 1);
	brk_feeds_fini(&f);
	CHECK_EQ(a.released, 1);
}

TEST(test_feed_buffer_grows_to_the_bound_and_shrinks_after)
{
	answers a = {0};
	brk_feeds f;
	brk_feeds_init(&f, EPOCH, 1, 1u << 30, on_answer, on_release, &a);
	brk_feed_gw *gw = brk_feeds_find(&f, "gw", true);
	static uint8_t ev[60 * 1024];
	memset(ev, 'e', sizeof(ev));
	/* Raw bytes: the feed does not look inside what it queues. */
	size_t queued = 0;
	while (brk_feed_append(&f, gw, ev, sizeof(ev)))
		queued++;
	CHECK(gw->overflow);
	CHECK_EQ(f.dropped, 1);
	CHECK_LE(gw->len, BRK_FEED_BYTES_MAX);
	CHECK_EQ(gw->cap, BRK_FEED_BYTES_MAX);
	CHECK_EQ(queued, BRK_FEED_BYTES_MAX / (sizeof(ev) + 4));
	a.fail = true;
	int p = 1;
	brk_feed_park(&f, gw, &p, 10);
	brk_feed_flush(&f, gw); /* fails: everything kept */
	CHECK_EQ(gw->cap, BRK_FEED_BYTES_MAX);
	CHECK_EQ(gw->events, queued);
	a.fail = false;
	brk_feed_park(&f, gw, &p, 10);
	brk_feed_flush(&f, gw); /* carried: the buffer goes back to small */
	CHECK_EQ(a.n, 1);
	CHECK_EQ(gw->len, 0);
	CHECK_EQ(gw->cap, BRK_FEED_BYTES_MIN);
	CHECK(brk_feed_append(&f, gw, ev, sizeof(ev))); /* and grows again */
	CHECK_GE(gw->cap, sizeof(ev));
	if (a.last != NULL)
		parley__internal__broker_batch__free_unpacked(a.last, NULL);
	brk_feeds_fini(&f);
	CHECK_EQ(a.released, 0);
}
