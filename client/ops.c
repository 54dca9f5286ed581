/*
 * ops.c - libparley's typed helpers: each builds one ClientFrame on the
 * stack (borrowing the caller's strings), sends it with parley_request()
 * or parley_send(), and checks that the reply has the body the operation
 * promises before it writes any output.
 */
#include <stdio.h>
#include <string.h>

#include "client/internal.h"

#define META_ENTRIES_MAX PL_META_ENTRIES_MAX

/* protobuf-c takes char *; the strings are only read while packing. */
static char *str_arg(const char *s)
{
	return (char *)(s ? s : "");
}

/* Sends req and expects a reply with body `want`. On PL_OK *reply is
 * owned by the caller. A reply with another body is PL_E_PROTO. */
static pl_status request_expect(parley_conn *c, Parley__ClientFrame *req,
    int want, int timeout_ms, Parley__ServerFrame **reply)
{
	Parley__ServerFrame *rep = NULL;
	pl_status st = parley_request(c, req, timeout_ms, &rep);
	if (st != PL_OK)
		return st;
	if ((int)rep->body_case != want) {
		parley_frame_free(rep);
		return parley_local_error(
		    c, PL_E_PROTO, "reply has an unexpected body");
	}
	*reply = rep;
	return PL_OK;
}

/* For operations answered with `ok` (or any non-error body). */
static pl_status request_ok(
    parley_conn *c, Parley__ClientFrame *req, int timeout_ms)
{
	Parley__ServerFrame *rep = NULL;
	pl_status st = parley_request(c, req, timeout_ms, &rep);
	if (st == PL_OK)
		parley_frame_free(rep);
	return st;
}

pl_status parley_create_room(parley_conn *c, const char *idempotency_key,
    const parley_meta *meta, size_t nmeta, int timeout_ms, char *room_out,
    bool *existed)
{
	if (nmeta > META_ENTRIES_MAX)
		return PL_E_TOO_LARGE;
	Parley__MetaEntry ents[META_ENTRIES_MAX];
	Parley__MetaEntry *ptrs[META_ENTRIES_MAX];
	for (size_t i = 0; i < nmeta; i++) {
		parley__meta_entry__init(&ents[i]);
		ents[i].key = str_arg(meta[i].key);
		ents[i].value = str_arg(meta[i].value);
		ptrs[i] = &ents[i];
	}
	Parley__CreateRoom cr = PARLEY__CREATE_ROOM__INIT;
	cr.idempotency_key = str_arg(idempotency_key);
	cr.n_meta = nmeta;
	cr.meta = nmeta ? ptrs : NULL;
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM;
	req.create_room = &cr;
	Parley__ServerFrame *rep = NULL;
	pl_status st = request_expect(
	    c, &req, PARLEY__SERVER_FRAME__BODY_ROOM_CREATED, timeout_ms, &rep);
	if (st != PL_OK)
		return st;
	snprintf(room_out, PL_ROOM_ID_CHARS + 1, "%s", rep->room_created->room);
	if (existed != NULL)
		*existed = rep->room_created->existed;
	parley_frame_free(rep);
	return PL_OK;
}

pl_status parley_join(parley_conn *c, const char *room, int timeout_ms)
{
	Parley__Join j = PARLEY__JOIN__INIT;
	j.room = str_arg(room);
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_JOIN;
	req.join = &j;
	return request_ok(c, &req, timeout_ms);
}

pl_status parley_leave(parley_conn *c, const char *room, int timeout_ms)
{
	Parley__Leave l = PARLEY__LEAVE__INIT;
	l.room = str_arg(room);
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_LEAVE;
	req.leave = &l;
	return request_ok(c, &req, timeout_ms);
}

pl_status parley_ack_from(const Parley__ServerFrame *reply, parley_ack *ack)
{
	if (reply == NULL || reply->body_case != PARLEY__SERVER_FRAME__BODY_ACK)
		return PL_E_PROTO;
	*ack = (parley_ack){.seq = reply->ack->seq,
	    .ts_us = reply->ack->ts_us,
	    .duplicate = reply->ack->duplicate};
	return PL_OK;
}

static void publish_fill(Parley__Publish *p, const char *room,
    const char *client_msg_id, int kind, const void *body, size_t len)
{
	parley__publish__init(p);
	p->room = str_arg(room);
	p->client_msg_id = str_arg(client_msg_id);
	p->kind = (Parley__Kind)kind;
	p->body.data = (uint8_t *)body;
	p->body.len = len;
}

pl_status parley_publish(parley_conn *c, const char *room,
    const char *client_msg_id, int kind, const void *body, size_t len,
    int timeout_ms, parley_ack *ack)
{
	Parley__Publish p;
	publish_fill(&p, room, client_msg_id, kind, body, len);
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_PUBLISH;
	req.publish = &p;
	Parley__ServerFrame *rep = NULL;
	pl_status st = request_expect(
	    c, &req, PARLEY__SERVER_FRAME__BODY_ACK, timeout_ms, &rep);
	if (st != PL_OK)
		return st;
	parley_ack a;
	st = parley_ack_from(rep, &a);
	parley_frame_free(rep);
	if (st == PL_OK && ack != NULL)
		*ack = a;
	return st;
}

pl_status parley_publish_send(parley_conn *c, const char *room,
    const char *client_msg_id, int kind, const void *body, size_t len,
    uint64_t tag, uint64_t *id)
{
	Parley__Publish p;
	publish_fill(&p, room, client_msg_id, kind, body, len);
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_PUBLISH;
	req.publish = &p;
	return parley_send(c, &req, tag, id);
}

pl_status parley_subscribe(parley_conn *c, const char *room, uint64_t since_seq,
    int timeout_ms, uint64_t *last_seq)
{
	Parley__Subscribe s = PARLEY__SUBSCRIBE__INIT;
	s.room = str_arg(room);
	s.since_seq = since_seq;
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE;
	req.subscribe = &s;
	Parley__ServerFrame *rep = NULL;
	pl_status st = request_expect(
	    c, &req, PARLEY__SERVER_FRAME__BODY_SUBSCRIBED, timeout_ms, &rep);
	if (st != PL_OK)
		return st;
	if (last_seq != NULL)
		*last_seq = rep->subscribed->last_seq;
	parley_frame_free(rep);
	return PL_OK;
}

pl_status parley_unsubscribe(parley_conn *c, const char *room, int timeout_ms)
{
	Parley__Unsubscribe u = PARLEY__UNSUBSCRIBE__INIT;
	u.room = str_arg(room);
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_UNSUBSCRIBE;
	req.unsubscribe = &u;
	return request_ok(c, &req, timeout_ms);
}

pl_status parley_history(parley_conn *c, const char *room,
    const parley_history_query *q, int timeout_ms, Parley__ServerFrame **reply)
{
	Parley__History h = PARLEY__HISTORY__INIT;
	h.room = str_arg(room);
	if (q != NULL) {
		h.before_seq = q->before_seq;
		h.after_seq = q->after_seq;
		h.limit = q->limit;
		h.oldest_first = q->oldest_first;
	}
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_HISTORY;
	req.history = &h;
	return request_expect(
	    c, &req, PARLEY__SERVER_FRAME__BODY_HISTORY, timeout_ms, reply);
}

pl_status parley_typing(
    parley_conn *c, const char *room, bool active, int timeout_ms)
{
	Parley__Typing t = PARLEY__TYPING__INIT;
	t.room = str_arg(room);
	t.active = active;
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_TYPING;
	req.typing = &t;
	return request_ok(c, &req, timeout_ms);
}

pl_status parley_read(
    parley_conn *c, const char *room, uint64_t seq, int timeout_ms)
{
	Parley__Read r = PARLEY__READ__INIT;
	r.room = str_arg(room);
	r.seq = seq;
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_READ;
	req.read = &r;
	return request_ok(c, &req, timeout_ms);
}

pl_status parley_presence(parley_conn *c, const char *room, int timeout_ms,
    Parley__ServerFrame **reply)
{
	Parley__Presence p = PARLEY__PRESENCE__INIT;
	p.room = str_arg(room);
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_PRESENCE;
	req.presence = &p;
	return request_expect(
	    c, &req, PARLEY__SERVER_FRAME__BODY_PRESENCE, timeout_ms, reply);
}

pl_status parley_close_room(
    parley_conn *c, const char *room, const char *reason, int timeout_ms)
{
	Parley__CloseRoom cr = PARLEY__CLOSE_ROOM__INIT;
	cr.room = str_arg(room);
	cr.reason = str_arg(reason);
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM;
	req.close_room = &cr;
	return request_ok(c, &req, timeout_ms);
}

pl_status parley_room_info(parley_conn *c, const char *room, int timeout_ms,
    Parley__ServerFrame **reply)
{
	Parley__RoomInfoRequest r = PARLEY__ROOM_INFO_REQUEST__INIT;
	r.room = str_arg(room);
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_ROOM_INFO;
	req.room_info = &r;
	return request_expect(
	    c, &req, PARLEY__SERVER_FRAME__BODY_ROOM_INFO, timeout_ms, reply);
}

pl_status parley_list_rooms(parley_conn *c, uint32_t limit, const char *after,
    int timeout_ms, Parley__ServerFrame **reply)
{
	Parley__ListRooms l = PARLEY__LIST_ROOMS__INIT;
	l.limit = limit;
	l.after = str_arg(after);
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS;
	req.list_rooms = &l;
	return request_expect(
	    c, &req, PARLEY__SERVER_FRAME__BODY_ROOM_LIST, timeout_ms, reply);
}

pl_status parley_status(
    parley_conn *c, int timeout_ms, Parley__ServerFrame **reply)
{
	Parley__StatusRequest s = PARLEY__STATUS_REQUEST__INIT;
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_STATUS;
	req.status = &s;
	return request_expect(
	    c, &req, PARLEY__SERVER_FRAME__BODY_STATUS, timeout_ms, reply);
}

pl_status parley_report(
    parley_conn *c, uint32_t days, int timeout_ms, Parley__ServerFrame **reply)
{
	Parley__ReportRequest r = PARLEY__REPORT_REQUEST__INIT;
	r.days = days;
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_REPORT;
	req.report = &r;
	return request_expect(
	    c, &req, PARLEY__SERVER_FRAME__BODY_REPORT, timeout_ms, reply);
}

pl_status parley_ping(
    parley_conn *c, int timeout_ms, int64_t *rtt_us, int64_t *server_time_us)
{
	Parley__Ping p = PARLEY__PING__INIT;
	int64_t t0 = pl_mono_us();
	p.ts_us = pl_now_us();
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_PING;
	req.ping = &p;
	Parley__ServerFrame *rep = NULL;
	pl_status st = request_expect(
	    c, &req, PARLEY__SERVER_FRAME__BODY_PONG, timeout_ms, &rep);
	if (st != PL_OK)
		return st;
	if (rtt_us != NULL)
		*rtt_us = pl_mono_us() - t0;
	if (server_time_us != NULL)
		*server_time_us = rep->pong->server_time_us;
	parley_frame_free(rep);
	return PL_OK;
}
