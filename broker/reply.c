/*
 * reply.c - reply frames built in an item's arena: errors (with the text a
 * client is shown, whether the request never entered the log, and where
 * the leader is), ok, and the replies of applied writes (room created,
 * ack, ok).
 */
#include "broker/group_internal.h"

/* What a client is told for st: the cause and what to do, where the
 * status alone would only name a class. */
static const char *client_text(pl_status st)
{
	switch (st) {
	case PL_E_NOT_FOUND:
		return "room not found (no such room of the token's tenant)";
	case PL_E_FORBIDDEN:
		return "forbidden: the token's role or room scope does not "
		       "allow this";
	case PL_E_ROOM_CLOSED:
		return "room closed: it takes no more writes";
	case PL_E_NOT_LEADER:
		return "this replica does not lead the room's shard group";
	case PL_E_MAP_FULL:
		return "storage map full (map_size_mb): writes refused, reads "
		       "go on";
	case PL_E_DISK_FULL:
		return "disk full: writes refused, reads go on";
	case PL_E_BACKPRESSURE:
		return "shard group queue full, retry";
	default:
		return pl_strerror(st);
	}
}

/* An error reply built in a. not_applied: the request never entered
 * the log, so sending it again cannot repeat it. */
void brk_rep_fail(brk_arena *a, Parley__ServerFrame *rep, pl_status st,
    bool not_applied, const char *hint)
{
	Parley__Error *e = brk_arena_alloc(a, sizeof(*e));
	if (e == NULL)
		return; /* the empty reply still carries the id */
	parley__error__init(e);
	e->code = pl_status_to_code(st);
	e->message = (char *)client_text(st);
	e->not_applied = not_applied;
	e->leader_hint = (char *)(hint != NULL ? hint : "");
	rep->body_case = PARLEY__SERVER_FRAME__BODY_ERROR;
	rep->error = e;
}

void brk_rep_ok(brk_arena *a, Parley__ServerFrame *rep)
{
	Parley__Ok *ok = brk_arena_alloc(a, sizeof(*ok));
	if (ok == NULL)
		return;
	parley__ok__init(ok);
	rep->body_case = PARLEY__SERVER_FRAME__BODY_OK;
	rep->ok = ok;
}

/* The reply of an applied write. */
void brk_rep_applied(
    brk_arena *a, Parley__ServerFrame *rep, const brk_applied *res, int op)
{
	if (res->st != PL_OK) {
		brk_rep_fail(a, rep, res->st, false, NULL);
		return;
	}
	char *id = brk_arena_alloc(a, PL_ROOM_ID_CHARS + 1);
	if (id == NULL)
		return;
	pl_room_format(res->room, id);
	if (op == PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM) {
		Parley__RoomCreated *rc = brk_arena_alloc(a, sizeof(*rc));
		if (rc == NULL)
			return;
		parley__room_created__init(rc);
		rc->room = id;
		rc->existed = res->existed;
		rep->body_case = PARLEY__SERVER_FRAME__BODY_ROOM_CREATED;
		rep->room_created = rc;
	} else if (op == PARLEY__CLIENT_FRAME__BODY_PUBLISH) {
		Parley__Ack *ack = brk_arena_alloc(a, sizeof(*ack));
		if (ack == NULL)
			return;
		parley__ack__init(ack);
		ack->room = id;
		ack->seq = res->seq;
		ack->ts_us = res->ts_us;
		ack->duplicate = res->duplicate;
		rep->body_case = PARLEY__SERVER_FRAME__BODY_ACK;
		rep->ack = ack;
	} else {
		brk_rep_ok(a, rep);
	}
}
