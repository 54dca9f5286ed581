/*
 * feed.c - per-gateway feeds (feed.h).
 *
 * Invariants: a feed holds at most BRK_FEED_BYTES_MAX bytes (its buffer
 * grows from BRK_FEED_BYTES_MIN to that, never past) and
 * events_max events; once it dropped one, overflow stays set until a poll
 * carried it; polls are answered oldest first, each exactly once (answer)
 * or given back (release).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/feed.h"
#include "common/common.h"
#include "proto/splice.h"

_Static_assert(BRK_FEED_EPOCH_CHARS_MAX >= 32 + 1 + 10,
    "an epoch holds the leader's 32 hex digits, a dot and a 32-bit count");

void brk_feeds_init(brk_feeds *f, const char *epoch, uint32_t group,
    uint32_t events_max, brk_feed_answer_fn answer, brk_feed_release_fn release,
    void *ctx)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->epoch, sizeof(f->epoch), "%s", epoch);
	f->group = group;
	f->events_max = events_max;
	f->answer = answer;
	f->release = release;
	f->ctx = ctx;
}

void brk_feeds_fini(brk_feeds *f)
{
	while (f->n > 0)
		brk_feeds_forget(f, f->n - 1);
	free(f->gws);
	f->gws = NULL;
	f->cap = 0;
}

brk_feed_gw *brk_feeds_find(brk_feeds *f, const char *id, bool create)
{
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->gws[i]->id, id) == 0)
			return f->gws[i];
	if (!create)
		return NULL;
	if (f->n == f->cap) {
		int cap = f->cap ? f->cap * 2 : 16;
		brk_feed_gw **v = realloc(f->gws, sizeof(*v) * (size_t)cap);
		if (v == NULL) {
			f->refused++;
			return NULL;
		}
		f->gws = v;
		f->cap = cap;
	}
	brk_feed_gw *gw = NULL;
	if (strlen(id) <= BRK_FEED_ID_CHARS_MAX &&
	    (gw = calloc(1, sizeof(*gw))) != NULL &&
	    (gw->buf = malloc(BRK_FEED_BYTES_MIN)) == NULL) {
		free(gw);
		gw = NULL;
	}
	if (gw == NULL) {
		f->refused++;
		return NULL;
	}
	gw->cap = BRK_FEED_BYTES_MIN;
	snprintf(gw->id, sizeof(gw->id), "%s", id);
	snprintf(
	    gw->epoch, sizeof(gw->epoch), "%s.%u", f->epoch, ++f->incarnations);
	f->gws[f->n++] = gw;
	PL_INFO("group", "event=gateway_new gateway=%s", id);
	return gw;
}

/* Makes room for need bytes (at most BRK_FEED_BYTES_MAX). */
static bool grow(brk_feed_gw *gw, size_t need)
{
	if (need <= gw->cap)
		return true;
	size_t cap = gw->cap;
	while (cap < need)
		cap *= 2;
	if (cap > BRK_FEED_BYTES_MAX)
		cap = BRK_FEED_BYTES_MAX;
	uint8_t *b = realloc(gw->buf, cap);
	if (b == NULL)
		return false;
	gw->buf = b;
	gw->cap = cap;
	return true;
}

bool brk_feed_append(brk_feeds *f, brk_feed_gw *gw, const uint8_t *ev, size_t n)
{
	uint8_t hdr[PL_SPLICE_HEADER_BYTES_MAX];
	size_t h = pl_splice_event_header(hdr, n);
	size_t need = gw->len + h + n;
	if (need > BRK_FEED_BYTES_MAX || gw->events >= f->events_max ||
	    !grow(gw, need)) {
		gw->overflow = true;
		f->dropped++;
		return false;
	}
	memcpy(gw->buf + gw->len, hdr, h);
	memcpy(gw->buf + gw->len + h, ev, n);
	gw->len += h + n;
	gw->events++;
	PL_DEBUG_ASSERT(gw->len <= gw->cap && gw->cap <= BRK_FEED_BYTES_MAX);
	return true;
}

void brk_feed_flush(brk_feeds *f, brk_feed_gw *gw)
{
	if (gw->npolls == 0)
		return;
	void *poll = gw->polls[0];
	gw->npolls--;
	memmove(gw->polls, gw->polls + 1, sizeof(gw->polls[0]) * gw->npolls);
	memmove(gw->deadlines_us, gw->deadlines_us + 1,
	    sizeof(gw->deadlines_us[0]) * gw->npolls);
	uint8_t tail[PL_SPLICE_FEED_TAIL_BYTES(sizeof(gw->epoch))];
	size_t t = pl_splice_feed_tail(tail, gw->epoch, gw->overflow, f->group);
	if (f->answer(f->ctx, poll, gw->buf, gw->len, tail, t)) {
		gw->len = 0;
		gw->events = 0;
		gw->overflow = false;
		/* A burst's buffer is not kept by a gateway gone quiet. */
		uint8_t *b;
		if (gw->cap > 16 * BRK_FEED_BYTES_MIN &&
		    (b = realloc(gw->buf, BRK_FEED_BYTES_MIN)) != NULL) {
			gw->buf = b;
			gw->cap = BRK_FEED_BYTES_MIN;
		}
	} else {
		f->failed++;
		PL_ERROR(
		    "group", "event=feed_answer_failed gateway=%s", gw->id);
	}
}

void brk_feed_park(
    brk_feeds *f, brk_feed_gw *gw, void *poll, int64_t deadline_us)
{
	if (gw->npolls == BRK_FEED_POLLS_MAX)
		brk_feed_flush(f, gw); /* answers the oldest */
	PL_ASSERT(gw->npolls < BRK_FEED_POLLS_MAX);
	gw->polls[gw->npolls] = poll;
	gw->deadlines_us[gw->npolls] = deadline_us;
	gw->npolls++;
}

void brk_feeds_tick(brk_feeds *f, int64_t now_us)
{
	for (int i = 0; i < f->n; i++) {
		brk_feed_gw *gw = f->gws[i];
		if (gw->npolls > 0)
			gw->last_seen_us = now_us;
		if (gw->len > 0 || gw->overflow ||
		    (gw->npolls > 0 && gw->deadlines_us[0] <= now_us))
			brk_feed_flush(f, gw);
	}
}

int brk_feeds_idle(const brk_feeds *f, int64_t now_us, int64_t idle_us)
{
	for (int i = f->n - 1; i >= 0; i--) {
		const brk_feed_gw *gw = f->gws[i];
		if (gw->npolls == 0 && now_us - gw->last_seen_us >= idle_us)
			return i;
	}
	return -1;
}

void brk_feeds_forget(brk_feeds *f, int idx)
{
	PL_ASSERT(idx >= 0 && idx < f->n);
	brk_feed_gw *gw = f->gws[idx];
	PL_INFO("group", "event=gateway_forgotten gateway=%s", gw->id);
	for (int i = 0; i < gw->npolls; i++)
		f->release(f->ctx, gw->polls[i]);
	free(gw->buf);
	free(gw);
	f->gws[idx] = f->gws[--f->n];
}
