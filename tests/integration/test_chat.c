/*
 * test_chat.c - two people chat through a real gateway and broker: a
 * customer over TCP, an agent over WebSocket. Messages, typing, read
 * positions, presence, close, and the consultation statistics.
 */
#define CHECK_MAIN
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 3000
#define CUSTOMER PARLEY__ROLE__CUSTOMER
#define AGENT PARLEY__ROLE__AGENT

/* Waits for an event of the given case in room; returns it (owned). */
static Parley__ServerFrame *next_event_of(parley_conn *c, int ev_case)
{
	for (int i = 0; i < 50; i++) {
		Parley__ServerFrame *f;
		if (parley_next_event(c, T, &f) != PL_OK)
			return NULL;
		if (f->body_case == PARLEY__SERVER_FRAME__BODY_EVENT &&
		    (int)f->event->ev_case == ev_case)
			return f;
		parley_frame_free(f);
	}
	return NULL;
}

TEST(test_chat_customer_and_agent_talk)
{
	hx_cluster c;
	char room[PL_ROOM_ID_CHARS + 1], body[64];
	CHECK(hx_init(&c, 1));
	bool ok = hx_start(&c);
	parley_conn *cust =
	    ok ? hx_client(&c, false, "acme", "ann", CUSTOMER) : NULL;
	parley_conn *agent =
	    ok ? hx_client(&c, true, "acme", "bob", AGENT) : NULL;
	if (!ok || cust == NULL || agent == NULL) {
		hx_fini(&c, true);
		CHECK(false);
	}
	parley_ack ack;
	int fails = *check_failed_;
	CHECK_EQ(
	    parley_create_room(cust, "visit-1", NULL, 0, T, room, NULL), PL_OK);
	CHECK_EQ(parley_subscribe(cust, room, 0, T, NULL), PL_OK);
	CHECK_EQ(parley_publish(cust, room, "c1", PARLEY__KIND__TEXT,
	             "hello, my order is late", 23, T, &ack),
	    PL_OK);
	CHECK_EQ(ack.seq, 1);
	/* The agent joins, reads history from the start, answers. */
	CHECK_EQ(parley_join(agent, room, T), PL_OK);
	CHECK_EQ(parley_subscribe(agent, room, 0, T, NULL), PL_OK);
	CHECK_EQ(hx_next_message(agent, room, T, body, sizeof(body)), 1);
	CHECK_STR_EQ(body, "hello, my order is late");
	CHECK_EQ(parley_typing(agent, room, true, T), PL_OK);
	Parley__ServerFrame *f = next_event_of(cust, PARLEY__EVENT__EV_TYPING);
	CHECK(f != NULL);
	CHECK_STR_EQ(f->event->typing->user, "bob");
	parley_frame_free(f);
	CHECK_EQ(parley_publish(agent, room, "a1", PARLEY__KIND__TEXT,
	             "sorry! checking now", 19, T, &ack),
	    PL_OK);
	CHECK_EQ(ack.seq, 2);
	CHECK_EQ(hx_next_message(cust, room, T, body, sizeof(body)), 2);
	CHECK_STR_EQ(body, "sorry! checking now");
	/* Read positions are stored and fanned out. */
	CHECK_EQ(parley_read(cust, room, 2, T), PL_OK);
	f = next_event_of(agent, PARLEY__EVENT__EV_READ);
	CHECK(f != NULL);
	CHECK_STR_EQ(f->event->read->user, "ann");
	CHECK_EQ(f->event->read->seq, 2);
	parley_frame_free(f);
	/* Presence lists both as online. */
	CHECK_EQ(parley_presence(agent, room, T, &f), PL_OK);
	int online = 0;
	for (size_t i = 0; i < f->presence->n_members; i++)
		online += f->presence->members[i]->online;
	CHECK_EQ(online, 2);
	parley_frame_free(f);
	/* Close; statistics are computed. */
	CHECK_EQ(parley_close_room(agent, room, "resolved", T), PL_OK);
	f = next_event_of(cust, PARLEY__EVENT__EV_CLOSED);
	CHECK(f != NULL);
	parley_frame_free(f);
	CHECK_EQ(parley_publish(
	             cust, room, "c2", PARLEY__KIND__TEXT, "x", 1, T, &ack),
	    PL_E_ROOM_CLOSED);
	CHECK_EQ(parley_room_info(agent, room, T, &f), PL_OK);
	Parley__RoomInfo *ri = f->room_info;
	CHECK(ri->closed);
	CHECK_EQ(ri->last_seq, 2);
	CHECK_GT(ri->stats->wait_us, 0);
	CHECK_GT(ri->stats->first_response_us, 0);
	CHECK_GE(ri->stats->first_response_us, ri->stats->wait_us);
	CHECK_EQ(ri->stats->turns, 1);
	CHECK_GT(ri->stats->handle_us, 0);
	CHECK_EQ(ri->stats->customer_msgs, 1);
	CHECK_EQ(ri->stats->agent_msgs, 1);
	bool ann_read = false;
	for (size_t i = 0; i < ri->n_members; i++)
		if (strcmp(ri->members[i]->user, "ann") == 0)
			ann_read = ri->members[i]->read_seq == 2;
	CHECK(ann_read);
	parley_frame_free(f);
	/* The tenant's day report counts this consultation. */
	CHECK_EQ(parley_report(agent, 1, T, &f), PL_OK);
	CHECK_EQ(f->report->n_days, 1);
	Parley__TenantDay *d = f->report->days[0];
	CHECK_STR_EQ(d->tenant, "acme");
	CHECK_EQ(d->rooms_created, 1);
	CHECK_EQ(d->rooms_closed, 1);
	CHECK_EQ(d->messages, 2);
	CHECK_EQ(d->wait_n, 1);
	CHECK_EQ(d->first_response_n, 1);
	CHECK_EQ(d->handle_n, 1);
	CHECK_GT(d->first_response_us_sum, 0);
	parley_frame_free(f);
	CHECK_EQ(parley_report(cust, 1, T, &f), PL_E_FORBIDDEN);
	parley_close(cust);
	parley_close(agent);
	hx_fini(&c, *check_failed_ != fails);
}

TEST(test_chat_idempotent_create_and_history_pages)
{
	hx_cluster c;
	char room[17], again[17];
	bool existed = false;
	CHECK(hx_init(&c, 2));
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	CHECK_EQ(
	    parley_create_room(svc, "ticket-9", NULL, 0, T, room, NULL), PL_OK);
	CHECK_EQ(
	    parley_create_room(svc, "ticket-9", NULL, 0, T, again, &existed),
	    PL_OK);
	CHECK_STR_EQ(room, again);
	CHECK(existed);
	for (int i = 1; i <= 25; i++) {
		char b[16];
		int n = snprintf(b, sizeof(b), "m%d", i);
		CHECK_EQ(parley_publish(svc, room, NULL, PARLEY__KIND__TEXT, b,
		             (size_t)n, T, NULL),
		    PL_OK);
	}
	Parley__ServerFrame *f;
	parley_history_query q = {.before_seq = 11, .limit = 4};
	CHECK_EQ(parley_history(svc, room, &q, T, &f), PL_OK);
	CHECK_EQ(f->history->n_messages, 4);
	CHECK_EQ(f->history->messages[0]->seq, 10);
	CHECK_EQ(f->history->messages[3]->seq, 7);
	CHECK(f->history->more);
	parley_frame_free(f);
	parley_history_query q2 = {
	    .after_seq = 20, .limit = 10, .oldest_first = true};
	CHECK_EQ(parley_history(svc, room, &q2, T, &f), PL_OK);
	CHECK_EQ(f->history->n_messages, 5);
	CHECK_EQ(f->history->messages[0]->seq, 21);
	CHECK(!f->history->more);
	parley_frame_free(f);
	/* Rooms are spread over both groups; list shows all of ours. */
	/* New rooms are spread over both groups (weighted random): create
	 * until each group has one, then list and report across both. */
	int groups_seen[3] = {0}, created = 1;
	while (created < 64 && (groups_seen[1] == 0 || groups_seen[2] == 0)) {
		char r[17];
		uint64_t id;
		CHECK_EQ(
		    parley_create_room(svc, NULL, NULL, 0, T, r, NULL), PL_OK);
		CHECK_EQ(pl_room_parse(r, &id), PL_OK);
		CHECK(pl_room_group(id) >= 1 && pl_room_group(id) <= 2);
		groups_seen[pl_room_group(id)]++;
		created++;
	}
	CHECK(groups_seen[1] > 0 && groups_seen[2] > 0);
	CHECK_EQ(parley_list_rooms(svc, 100, NULL, T, &f), PL_OK);
	CHECK_EQ(f->room_list->n_rooms, (size_t)created);
	parley_frame_free(f);
	/* The report adds both groups' days up. */
	CHECK_EQ(parley_report(svc, 7, T, &f), PL_OK);
	CHECK_EQ(f->report->n_days, 1);
	CHECK_EQ(f->report->days[0]->rooms_created, (uint64_t)created);
	CHECK_EQ(f->report->days[0]->messages, 25);
	parley_frame_free(f);
	parley_close(svc);
	hx_fini(&c, false);
}

TEST(test_chat_ping_and_status)
{
	hx_cluster c;
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "ops", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	int64_t rtt = 0;
	CHECK_EQ(parley_ping(svc, T, &rtt, NULL), PL_OK);
	CHECK_GT(rtt, 0);
	Parley__ServerFrame *f;
	CHECK_EQ(parley_status(svc, T, &f), PL_OK);
	CHECK_EQ(f->status->n_groups, 1);
	CHECK_EQ(f->status->groups[0]->group, 1);
	parley_frame_free(f);
	char text[16384];
	/* Healthy once a broker's answer counted: a status may come from a
	 * replica that does not lead yet, which does not count, and the
	 * first feed poll answers within its wait. */
	int code = 0;
	for (int i = 0; i < 100 && code != 200; i++) {
		code = hx_http_get(c.http_port, "/healthz", text, sizeof(text));
		if (code != 200)
			usleep(50000);
	}
	CHECK_EQ(code, 200);
	CHECK_EQ(hx_http_get(c.http_port, "/metrics", text, sizeof(text)), 200);
	CHECK(strstr(text, "parley_gateway_connections") != NULL);
	CHECK(strstr(text, "parley_gateway_rooms") != NULL);
	CHECK(
	    strstr(text, "parley_gateway_publish_ack_seconds_bucket") != NULL);
	CHECK(strstr(text, "parley_gateway_errors_total{code=\"not_found\"}") !=
	      NULL);
	CHECK_EQ(
	    hx_http_get(c.broker_http[1], "/metrics", text, sizeof(text)), 200);
	CHECK(strstr(text, "parley_broker_commit_rounds_total") != NULL);
	parley_close(svc);
	hx_fini(&c, false);
}
