/*
 * ctl_room.c - parleyctl's room commands over a gateway connection: room
 * create, list, info, join, leave and close; publish; subscribe, which
 * tails pushed events; history; presence; typing and read.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "client/ctl.h"

/* room list follows pages; a tenant listing beyond this is an export. */
#define LIST_PAGES_MAX 1000
#define LIST_PAGE_ROOMS 100

static int room_create(parley_conn *c, const ctl_args *a)
{
	parley_meta meta[PL_META_ENTRIES_MAX];
	char kbuf[PL_META_ENTRIES_MAX][PL_META_CHARS_MAX + 1];
	size_t n = 0;
	for (int i = 0; i < a->nopts; i++) {
		if (strcmp(a->opts[i].key, "meta") != 0)
			continue;
		const char *v = a->opts[i].value, *eq = strchr(v, '=');
		if (n == PL_META_ENTRIES_MAX || eq == NULL ||
		    (size_t)(eq - v) > PL_META_CHARS_MAX)
			return ctl_fail("bad_request",
			    "--meta wants k=v (at most "
			    "16, keys <= 256 bytes)");
		snprintf(kbuf[n], sizeof(kbuf[n]), "%.*s", (int)(eq - v), v);
		meta[n] = (parley_meta){.key = kbuf[n], .value = eq + 1};
		n++;
	}
	char room[PL_ROOM_ID_CHARS + 1];
	bool existed = false;
	pl_status st = parley_create_room(
	    c, ctl_opt(a, "key"), meta, n, REQUEST_TIMEOUT_MS, room, &existed);
	if (st != PL_OK)
		return ctl_fail_st(c, st);
	printf("%s\n", room);
	if (existed)
		fprintf(stderr, "note: room existed (same idempotency key)\n");
	return 0;
}

static int room_list(parley_conn *c)
{
	char after[PL_ROOM_ID_CHARS + 1] = "";
	for (int page = 0; page < LIST_PAGES_MAX; page++) {
		Parley__ServerFrame *r = NULL;
		pl_status st = parley_list_rooms(
		    c, LIST_PAGE_ROOMS, after, REQUEST_TIMEOUT_MS, &r);
		if (st != PL_OK)
			return ctl_fail_st(c, st);
		const Parley__RoomList *l = r->room_list;
		for (size_t i = 0; i < l->n_rooms; i++)
			printf("%s\n", l->rooms[i]);
		bool more = l->more && l->n_rooms > 0;
		if (more)
			snprintf(after, sizeof(after), "%s",
			    l->rooms[l->n_rooms - 1]);
		parley_frame_free(r);
		if (!more)
			return 0;
	}
	fprintf(
	    stderr, "note: listing stopped after %d pages\n", LIST_PAGES_MAX);
	return 0;
}

static int room_info(parley_conn *c, const ctl_args *a)
{
	Parley__ServerFrame *r = NULL;
	pl_status st = parley_room_info(c, a->pos[1], REQUEST_TIMEOUT_MS, &r);
	if (st != PL_OK)
		return ctl_fail_st(c, st);
	if (ctl_opt(a, "json") != NULL)
		ctl_json_room_info(r->room_info);
	else
		ctl_print_room_info(r->room_info);
	parley_frame_free(r);
	return 0;
}

static int room_run(parley_conn *c, const ctl_args *a)
{
	const char *sub = a->pos[0], *room = a->pos[1];
	pl_status st;
	if (strcmp(sub, "create") == 0)
		return room_create(c, a);
	if (strcmp(sub, "list") == 0)
		return room_list(c);
	if (strcmp(sub, "info") == 0)
		return room_info(c, a);
	if (strcmp(sub, "join") == 0)
		st = parley_join(c, room, REQUEST_TIMEOUT_MS);
	else if (strcmp(sub, "leave") == 0)
		st = parley_leave(c, room, REQUEST_TIMEOUT_MS);
	else
		st = parley_close_room(
		    c, room, ctl_opt(a, "reason"), REQUEST_TIMEOUT_MS);
	return st == PL_OK ? 0 : ctl_fail_st(c, st);
}

int ctl_room(const ctl_args *a)
{
	const char *sub = a->npos > 0 ? a->pos[0] : "";
	bool ok;
	if (strcmp(sub, "create") == 0)
		ok = ctl_args_check(a, GW_OPTS "key,meta", 1, 1);
	else if (strcmp(sub, "list") == 0)
		ok = ctl_args_check(a, GW_OPTS, 1, 1);
	else if (strcmp(sub, "info") == 0)
		ok = ctl_args_check(a, GW_OPTS "json", 2, 2);
	else if (strcmp(sub, "close") == 0)
		ok = ctl_args_check(a, GW_OPTS "reason", 2, 2);
	else if (strcmp(sub, "join") == 0 || strcmp(sub, "leave") == 0)
		ok = ctl_args_check(a, GW_OPTS, 2, 2);
	else
		ok = false;
	if (!ok)
		return ctl_usage();
	parley_conn *c = NULL;
	int rc = ctl_open(a, &c, NULL);
	if (rc != 0)
		return rc;
	rc = room_run(c, a);
	parley_close(c);
	return rc;
}

static int kind_parse(const char *s)
{
	if (s == NULL || strcmp(s, "text") == 0)
		return PARLEY__KIND__TEXT;
	if (strcmp(s, "event") == 0)
		return PARLEY__KIND__EVENT;
	if (strcmp(s, "system") == 0)
		return PARLEY__KIND__SYSTEM;
	return -1;
}

int ctl_publish(parley_conn *c, const ctl_args *a)
{
	int kind = kind_parse(ctl_opt(a, "kind"));
	if (kind < 0)
		return ctl_fail(
		    "bad_request", "--kind is text, event or system");
	const char *text = a->pos[1];
	parley_ack ack;
	pl_status st = parley_publish(c, a->pos[0], ctl_opt(a, "id"), kind,
	    text, strlen(text), REQUEST_TIMEOUT_MS, &ack);
	if (st != PL_OK)
		return ctl_fail_st(c, st);
	printf("%" PRIu64 "\n", ack.seq);
	if (ack.duplicate)
		fprintf(stderr, "note: duplicate of an earlier publish\n");
	return 0;
}

/* Prints one pushed frame; returns -1 to go on, else an exit code. A
 * message event counts towards *left (when counting). */
static int tail_one(
    parley_conn *c, const Parley__ServerFrame *f, uint64_t *left)
{
	if (f->body_case == PARLEY__SERVER_FRAME__BODY_GOODBYE) {
		int code = (int)f->goodbye->code;
		return ctl_fail(
		    pl_code_name(code ? code : PARLEY__ERROR_CODE__UNAVAILABLE),
		    f->goodbye->reason);
	}
	if (f->body_case != PARLEY__SERVER_FRAME__BODY_EVENT)
		return -1;
	ctl_print_event(f->event);
	if (f->event->ev_case == PARLEY__EVENT__EV_MESSAGE && *left > 0 &&
	    --*left == 0)
		return 0;
	return -1;
}

/* How long to wait for the next event (ms, -1 forever): until the end of
 * the tail or the next keepalive ping, whichever comes first. */
static int tail_wait(int64_t end, int64_t next_ping)
{
	int64_t until = end;
	if (next_ping >= 0 && (until < 0 || next_ping < until))
		until = next_ping;
	if (until < 0)
		return -1;
	int64_t rem = (until - pl_mono_us()) / 1000;
	if (rem < 0)
		return 0;
	return rem > INT32_MAX ? INT32_MAX : (int)rem;
}

/* Tails pushed frames until count messages (0: no limit) or timeout_ms
 * (-1: none). A tail only listens, so it pings at half the server's idle
 * limit to keep the connection. */
static int tail(
    parley_conn *c, uint64_t count, int64_t timeout_ms, uint32_t idle_ms)
{
	int64_t end = timeout_ms >= 0 ? pl_mono_us() + timeout_ms * 1000 : -1;
	int64_t ping_us = (int64_t)idle_ms * 500;
	int64_t next_ping = idle_ms ? pl_mono_us() + ping_us : -1;
	uint64_t left = count;
	for (;;) {
		if (end >= 0 && pl_mono_us() >= end)
			return 0;
		if (next_ping >= 0 && pl_mono_us() >= next_ping) {
			pl_status ps =
			    parley_ping(c, REQUEST_TIMEOUT_MS, NULL, NULL);
			if (ps != PL_OK)
				return ctl_fail_st(c, ps);
			next_ping = pl_mono_us() + ping_us;
		}
		Parley__ServerFrame *f = NULL;
		pl_status st =
		    parley_next_event(c, tail_wait(end, next_ping), &f);
		if (st == PL_E_TIMEOUT)
			continue;
		if (st == PL_E_BACKPRESSURE) {
			fprintf(stderr, "warning: events dropped (slow "
			                "reader); re-read history\n");
			continue;
		}
		if (st != PL_OK)
			return ctl_fail_st(c, st);
		int rc = tail_one(c, f, &left);
		parley_frame_free(f);
		if (rc >= 0)
			return rc;
	}
}

int ctl_subscribe(parley_conn *c, const ctl_args *a, uint32_t idle_ms)
{
	uint64_t since = 0, count = 0, tmo = 0;
	const char *t = ctl_opt(a, "timeout-ms");
	if (!ctl_opt_u64(a, "since", &since) ||
	    !ctl_opt_u64(a, "count", &count) ||
	    !ctl_opt_u64(a, "timeout-ms", &tmo) || tmo > INT32_MAX)
		return ctl_fail("bad_request", "--since/--count/--timeout-ms "
		                               "want numbers");
	uint64_t last;
	pl_status st =
	    parley_subscribe(c, a->pos[0], since, REQUEST_TIMEOUT_MS, &last);
	if (st != PL_OK)
		return ctl_fail_st(c, st);
	fprintf(stderr, "subscribed %s since %" PRIu64 " (head %" PRIu64 ")\n",
	    a->pos[0], since, last);
	return tail(c, count, t ? (int64_t)tmo : -1, idle_ms);
}

int ctl_history(parley_conn *c, const ctl_args *a)
{
	parley_history_query q = {0};
	uint64_t limit = 0;
	if (!ctl_opt_u64(a, "before", &q.before_seq) ||
	    !ctl_opt_u64(a, "after", &q.after_seq) ||
	    !ctl_opt_u64(a, "limit", &limit) || limit > PL_HISTORY_LIMIT_MAX)
		return ctl_fail("bad_request", "--before/--after/--limit want "
		                               "numbers (limit <= 500)");
	if (q.before_seq != 0 && q.after_seq != 0)
		return ctl_fail("bad_request", "--before and --after exclude "
		                               "each other");
	q.limit = (uint32_t)limit;
	q.oldest_first = ctl_opt(a, "after") != NULL;
	Parley__ServerFrame *r = NULL;
	pl_status st = parley_history(c, a->pos[0], &q, REQUEST_TIMEOUT_MS, &r);
	if (st != PL_OK)
		return ctl_fail_st(c, st);
	for (size_t i = 0; i < r->history->n_messages; i++)
		ctl_print_message(r->history->messages[i]);
	if (r->history->more)
		fprintf(stderr, "note: more messages\n");
	parley_frame_free(r);
	return 0;
}

int ctl_presence(parley_conn *c, const ctl_args *a)
{
	Parley__ServerFrame *r = NULL;
	pl_status st = parley_presence(c, a->pos[0], REQUEST_TIMEOUT_MS, &r);
	if (st != PL_OK)
		return ctl_fail_st(c, st);
	ctl_print_members(r->presence->members, r->presence->n_members);
	parley_frame_free(r);
	return 0;
}

int ctl_typing_read(const char *cmd, parley_conn *c, const ctl_args *a)
{
	pl_status st;
	if (strcmp(cmd, "typing") == 0) {
		st = parley_typing(c, a->pos[0], true, REQUEST_TIMEOUT_MS);
	} else {
		uint64_t seq;
		if (!ctl_parse_u64(a->pos[1], &seq))
			return ctl_fail("bad_request", "SEQ is a number");
		st = parley_read(c, a->pos[0], seq, REQUEST_TIMEOUT_MS);
	}
	return st == PL_OK ? 0 : ctl_fail_st(c, st);
}
