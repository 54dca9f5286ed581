/*
 * cursor.c - the subscription cursor of docs/internals.md: for one
 * (connection, room) it decides which live or history message is
 * delivered so the client sees since+1, since+2, ... in order, each once.
 * Pure state machine; gateway.h documents each transition.
 */
#include "gateway/gateway.h"

static gw_cursor_act start_fetch(gw_cursor *c)
{
	c->fetching = true;
	c->fetch_from = c->next;
	return GW_CUR_FETCH;
}

static void leave_catch_up(gw_cursor *c)
{
	c->catching_up = false;
	c->seen_max = 0;
	c->stuck = 0;
}

void gw_cursor_init(gw_cursor *c, uint64_t since)
{
	*c = (gw_cursor){0};
	c->next = since + 1;
	/* Until Subscribed and its first pages arrive, live messages are
	 * only noted: catch-up delivers them in order. */
	c->catching_up = true;
}

gw_cursor_act gw_cursor_subscribed(gw_cursor *c, uint64_t last_seq)
{
	c->last_seq = last_seq;
	c->subscribed = true;
	c->catching_up = true;
	if (c->fetching)
		return GW_CUR_NONE;
	return start_fetch(c);
}

gw_cursor_act gw_cursor_live(gw_cursor *c, uint64_t seq)
{
	if (c->catching_up) {
		if (seq > c->seen_max)
			c->seen_max = seq;
		return GW_CUR_NONE;
	}
	if (seq == c->next) {
		c->next++;
		return GW_CUR_DELIVER;
	}
	if (seq < c->next)
		return GW_CUR_DROP;
	c->catching_up = true;
	c->seen_max = seq;
	if (c->fetching)
		return GW_CUR_NONE;
	return start_fetch(c);
}

uint64_t gw_cursor_after(const gw_cursor *c)
{
	return c->next - 1;
}

gw_cursor_act gw_cursor_page_msg(gw_cursor *c, uint64_t seq)
{
	if (seq < c->next)
		return GW_CUR_DROP;
	/* seq > next only when history itself has a hole (pruned room):
	 * history is the authority, waiting for the missing seq would
	 * stall the subscription forever. */
	c->next = seq + 1;
	return GW_CUR_DELIVER;
}

gw_cursor_act gw_cursor_page_end(gw_cursor *c, bool more)
{
	bool progressed = c->next > c->fetch_from;

	c->fetching = false;
	if (progressed)
		c->stuck = 0;
	if (c->stale) {
		/* The page may predate the resync: it proves nothing. */
		c->stale = false;
		return start_fetch(c);
	}
	if (!more && c->seen_max == UINT64_MAX)
		c->seen_max = c->next - 1; /* cleared to the head */
	uint64_t target = c->seen_max > c->last_seq ? c->seen_max : c->last_seq;
	if (!more && c->next > target) {
		leave_catch_up(c);
		return GW_CUR_NONE;
	}
	if (progressed)
		return start_fetch(c);
	if (++c->stuck > GW_CURSOR_STUCK_MAX) {
		leave_catch_up(c);
		return GW_CUR_NONE;
	}
	return GW_CUR_RETRY;
}

gw_cursor_act gw_cursor_fetch_deferred(gw_cursor *c)
{
	c->fetching = false; /* not asked yet: no page is owed */
	return GW_CUR_RETRY;
}

gw_cursor_act gw_cursor_page_failed(gw_cursor *c)
{
	c->fetching = false;
	c->stale = false; /* the next fetch starts fresh anyway */
	return GW_CUR_RETRY;
}

gw_cursor_act gw_cursor_retry(gw_cursor *c)
{
	if (c->fetching || !c->catching_up || !c->subscribed)
		return GW_CUR_NONE;
	return start_fetch(c);
}

gw_cursor_act gw_cursor_resync(gw_cursor *c)
{
	c->catching_up = true;
	c->seen_max = UINT64_MAX;
	if (!c->subscribed)
		return GW_CUR_NONE;
	if (c->fetching) {
		c->stale = true;
		return GW_CUR_NONE;
	}
	return start_fetch(c);
}
