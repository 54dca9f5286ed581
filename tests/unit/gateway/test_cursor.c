/*
 * test_cursor.c - unit tests of the subscription cursor (cursor.c): each
 * test drives one scenario of docs/internals.md "Subscription cursor" and
 * checks the delivered seqs are since+1, since+2, ... each once.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "gateway/gateway.h"

/* Subscribes at since and completes the first catch-up with an empty
 * page, as when the room head is since. */
static void caught_up(gw_cursor *c, uint64_t since)
{
	gw_cursor_init(c, since);
	(void)gw_cursor_subscribed(c, since);
	(void)gw_cursor_page_end(c, false);
}

TEST(test_cursor_subscribe_fetches_after_since)
{
	gw_cursor c;
	gw_cursor_init(&c, 5);
	CHECK_EQ(gw_cursor_live(&c, 9), GW_CUR_NONE); /* before Subscribed */
	CHECK_EQ(gw_cursor_subscribed(&c, 8), GW_CUR_FETCH);
	CHECK_EQ(gw_cursor_after(&c), 5);
	for (uint64_t s = 6; s <= 8; s++)
		CHECK_EQ(gw_cursor_page_msg(&c, s), GW_CUR_DELIVER);
	/* The page ends at 8, but 9 was seen live: fetch again. */
	CHECK_EQ(gw_cursor_page_end(&c, false), GW_CUR_FETCH);
	CHECK_EQ(gw_cursor_after(&c), 8);
	CHECK_EQ(gw_cursor_page_msg(&c, 9), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_page_end(&c, false), GW_CUR_NONE);
	CHECK(!c.catching_up);
	CHECK_EQ(c.next, 10);
}

TEST(test_cursor_live_in_order_delivered)
{
	gw_cursor c;
	caught_up(&c, 0);
	CHECK(!c.catching_up);
	for (uint64_t s = 1; s <= 100; s++)
		CHECK_EQ(gw_cursor_live(&c, s), GW_CUR_DELIVER);
	CHECK_EQ(c.next, 101);
}

TEST(test_cursor_live_duplicate_dropped)
{
	gw_cursor c;
	caught_up(&c, 3);
	CHECK_EQ(gw_cursor_live(&c, 4), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_live(&c, 4), GW_CUR_DROP);
	CHECK_EQ(gw_cursor_live(&c, 2), GW_CUR_DROP);
	CHECK_EQ(gw_cursor_live(&c, 5), GW_CUR_DELIVER);
	CHECK_EQ(c.next, 6);
}

TEST(test_cursor_gap_triggers_catch_up)
{
	gw_cursor c;
	caught_up(&c, 0);
	CHECK_EQ(gw_cursor_live(&c, 1), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_live(&c, 4), GW_CUR_FETCH); /* 2, 3 missed */
	CHECK(c.catching_up);
	CHECK_EQ(gw_cursor_after(&c), 1);
	CHECK_EQ(gw_cursor_live(&c, 5), GW_CUR_NONE); /* noted, not sent */
	for (uint64_t s = 2; s <= 5; s++)
		CHECK_EQ(gw_cursor_page_msg(&c, s), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_page_end(&c, false), GW_CUR_NONE);
	CHECK(!c.catching_up);
	CHECK_EQ(gw_cursor_live(&c, 5), GW_CUR_DROP);
	CHECK_EQ(gw_cursor_live(&c, 6), GW_CUR_DELIVER);
}

TEST(test_cursor_page_more_fetches_again)
{
	gw_cursor c;
	gw_cursor_init(&c, 0);
	CHECK_EQ(gw_cursor_subscribed(&c, 3), GW_CUR_FETCH);
	CHECK_EQ(gw_cursor_page_msg(&c, 1), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_page_end(&c, true), GW_CUR_FETCH);
	CHECK_EQ(gw_cursor_page_msg(&c, 1), GW_CUR_DROP); /* overlap */
	CHECK_EQ(gw_cursor_page_msg(&c, 2), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_page_msg(&c, 3), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_page_end(&c, false), GW_CUR_NONE);
}

TEST(test_cursor_live_during_catch_up_refetches_to_seen_max)
{
	gw_cursor c;
	caught_up(&c, 0);
	CHECK_EQ(gw_cursor_live(&c, 3), GW_CUR_FETCH);
	/* 4 and 5 arrive live while the page is in flight. */
	CHECK_EQ(gw_cursor_live(&c, 4), GW_CUR_NONE);
	CHECK_EQ(gw_cursor_live(&c, 5), GW_CUR_NONE);
	/* The page was read before 4 committed: it ends at 3, no more. */
	for (uint64_t s = 1; s <= 3; s++)
		CHECK_EQ(gw_cursor_page_msg(&c, s), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_page_end(&c, false), GW_CUR_FETCH);
	CHECK_EQ(gw_cursor_after(&c), 3);
	CHECK_EQ(gw_cursor_page_msg(&c, 4), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_page_msg(&c, 5), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_page_end(&c, false), GW_CUR_NONE);
	CHECK_EQ(c.next, 6);
}

TEST(test_cursor_overflow_resync_catches_up_to_head)
{
	gw_cursor c;
	caught_up(&c, 0);
	CHECK_EQ(gw_cursor_live(&c, 1), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_resync(&c), GW_CUR_FETCH);
	CHECK_EQ(gw_cursor_after(&c), 1);
	CHECK_EQ(gw_cursor_live(&c, 7), GW_CUR_NONE);
	for (uint64_t s = 2; s <= 4; s++)
		CHECK_EQ(gw_cursor_page_msg(&c, s), GW_CUR_DELIVER);
	/* seen_max is "unknown" until a page without more: keep going. */
	CHECK_EQ(gw_cursor_page_end(&c, true), GW_CUR_FETCH);
	for (uint64_t s = 5; s <= 7; s++)
		CHECK_EQ(gw_cursor_page_msg(&c, s), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_page_end(&c, false), GW_CUR_NONE);
	CHECK(!c.catching_up);
	CHECK_EQ(gw_cursor_live(&c, 8), GW_CUR_DELIVER);
}

TEST(test_cursor_resync_during_fetch_marks_page_stale)
{
	gw_cursor c;
	caught_up(&c, 0);
	CHECK_EQ(gw_cursor_live(&c, 2), GW_CUR_FETCH);
	CHECK_EQ(gw_cursor_resync(&c), GW_CUR_NONE);
	CHECK_EQ(gw_cursor_page_msg(&c, 1), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_page_msg(&c, 2), GW_CUR_DELIVER);
	/* The in-flight page may predate the dropped events. */
	CHECK_EQ(gw_cursor_page_end(&c, false), GW_CUR_FETCH);
	CHECK_EQ(gw_cursor_page_end(&c, false), GW_CUR_NONE);
}

TEST(test_cursor_failed_page_retries)
{
	gw_cursor c;
	caught_up(&c, 0);
	CHECK_EQ(gw_cursor_live(&c, 2), GW_CUR_FETCH);
	CHECK_EQ(gw_cursor_page_failed(&c), GW_CUR_RETRY);
	CHECK_EQ(gw_cursor_live(&c, 3), GW_CUR_NONE);
	CHECK_EQ(gw_cursor_retry(&c), GW_CUR_FETCH);
	CHECK_EQ(gw_cursor_retry(&c), GW_CUR_NONE); /* one in flight */
	for (uint64_t s = 1; s <= 3; s++)
		CHECK_EQ(gw_cursor_page_msg(&c, s), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_page_end(&c, false), GW_CUR_NONE);
}

TEST(test_cursor_empty_pages_give_up_after_stuck_max)
{
	gw_cursor c;
	caught_up(&c, 0);
	CHECK_EQ(gw_cursor_live(&c, 2), GW_CUR_FETCH);
	for (int i = 0; i < GW_CURSOR_STUCK_MAX; i++) {
		CHECK_EQ(gw_cursor_page_end(&c, false), GW_CUR_RETRY);
		CHECK_EQ(gw_cursor_retry(&c), GW_CUR_FETCH);
	}
	CHECK_EQ(gw_cursor_page_end(&c, false), GW_CUR_NONE);
	CHECK(!c.catching_up);
}

TEST(test_cursor_history_hole_jumps)
{
	gw_cursor c;
	gw_cursor_init(&c, 0);
	CHECK_EQ(gw_cursor_subscribed(&c, 10), GW_CUR_FETCH);
	CHECK_EQ(gw_cursor_page_msg(&c, 8), GW_CUR_DELIVER);
	CHECK_EQ(c.next, 9);
}

TEST(test_cursor_deferred_fetch_is_retried_without_counting_as_stuck)
{
	gw_cursor c;
	gw_cursor_init(&c, 0);
	CHECK_EQ(gw_cursor_subscribed(&c, 10), GW_CUR_FETCH);
	/* The send queue is full: the fetch is not sent. */
	CHECK_EQ(gw_cursor_fetch_deferred(&c), GW_CUR_RETRY);
	CHECK(!c.fetching);
	/* Many deferrals never end the catch-up. */
	for (int i = 0; i < 10; i++) {
		CHECK_EQ(gw_cursor_retry(&c), GW_CUR_FETCH);
		CHECK_EQ(gw_cursor_fetch_deferred(&c), GW_CUR_RETRY);
	}
	CHECK(c.catching_up);
	CHECK_EQ(gw_cursor_retry(&c), GW_CUR_FETCH);
	for (uint64_t s = 1; s <= 10; s++)
		CHECK_EQ(gw_cursor_page_msg(&c, s), GW_CUR_DELIVER);
	CHECK_EQ(gw_cursor_page_end(&c, false), GW_CUR_NONE);
	CHECK(!c.catching_up);
	CHECK_EQ(gw_cursor_live(&c, 11), GW_CUR_DELIVER);
}
