/*
 * access.c - who may do what: one table of request type x role, read by
 * every request (reads in broker/handlers.c before their handler runs,
 * writes when their command is applied in broker/store/apply.c), so a request has no rule of its own
 * to forget: a request type missing from the table is forbidden to
 * everyone. The same facts are the README's role table and
 * tests/integration/test_access.c.
 *
 * A right is one of: never; any room of the caller's tenant; a room the
 * caller is or was a member of (for a room-scoped token: its room); a
 * room the caller has joined and not left. Before the table: another
 * tenant's room does not exist (not_found), and a room-scoped token works
 * on its room only (forbidden elsewhere) and for no tenant-wide request
 * except list_rooms (which then lists its room). A publish also passes
 * the kind table: system messages come from services only.
 */
#include <string.h>

#include "broker/access.h"

enum { R_CUSTOMER, R_AGENT, R_BOT, R_OBSERVER, R_SERVICE, ROLES };

typedef struct access_rule {
	int op;      /* Parley__ClientFrame__BodyCase */
	bool room;   /* about one room (else tenant-wide) */
	bool scoped; /* a room-scoped token may make it */
	uint8_t right[ROLES];
} access_rule;

#define NO BRK_RIGHT_NONE
#define ANY BRK_RIGHT_ANY
#define MEM BRK_RIGHT_MEMBER
#define JOI BRK_RIGHT_JOINED

/* Columns: customer, agent, bot, observer, service. */
static const access_rule RULES[] = {
    {PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM, false, false,
        {ANY, ANY, ANY, NO, ANY}},
    {PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS, false, true,
        {MEM, ANY, ANY, ANY, ANY}},
    {PARLEY__CLIENT_FRAME__BODY_REPORT, false, false, {NO, ANY, NO, ANY, ANY}},
    {PARLEY__CLIENT_FRAME__BODY_STATUS, false, true, {ANY, ANY, ANY, ANY, ANY}},
    {PARLEY__CLIENT_FRAME__BODY_JOIN, true, true, {MEM, ANY, ANY, ANY, ANY}},
    {PARLEY__CLIENT_FRAME__BODY_LEAVE, true, true, {MEM, ANY, ANY, ANY, ANY}},
    {PARLEY__CLIENT_FRAME__BODY_PUBLISH, true, true, {JOI, JOI, JOI, NO, ANY}},
    {PARLEY__CLIENT_FRAME__BODY_TYPING, true, true, {JOI, JOI, JOI, NO, ANY}},
    {PARLEY__CLIENT_FRAME__BODY_READ, true, true, {JOI, JOI, JOI, NO, ANY}},
    {PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE, true, true,
        {MEM, ANY, ANY, ANY, ANY}},
    {PARLEY__CLIENT_FRAME__BODY_HISTORY, true, true, {MEM, ANY, ANY, ANY, ANY}},
    {PARLEY__CLIENT_FRAME__BODY_PRESENCE, true, true,
        {MEM, ANY, ANY, ANY, ANY}},
    {PARLEY__CLIENT_FRAME__BODY_ROOM_INFO, true, true,
        {MEM, ANY, ANY, ANY, ANY}},
    {PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM, true, true,
        {JOI, ANY, NO, NO, ANY}},
    /* Only ever undoes the caller's own subscription. */
    {PARLEY__CLIENT_FRAME__BODY_UNSUBSCRIBE, true, true,
        {ANY, ANY, ANY, ANY, ANY}},
};

#undef NO
#undef ANY
#undef MEM
#undef JOI

/* Which kinds of message a role may publish (a publish must also pass
 * the table above): text and events from anyone who may publish, system
 * messages from services only (docs/internals.md "Authorization"). */
static const struct kind_rule {
	int kind; /* Parley__Kind */
	bool service_only;
} KINDS[] = {
    {PARLEY__KIND__TEXT, false},
    {PARLEY__KIND__EVENT, false},
    {PARLEY__KIND__SYSTEM, true},
};

static const access_rule *rule_find(int op)
{
	for (size_t i = 0; i < PL_ARRAY_LEN(RULES); i++)
		if (RULES[i].op == op)
			return &RULES[i];
	return NULL;
}

static int role_col(int role)
{
	switch (role) {
	case PARLEY__ROLE__CUSTOMER:
		return R_CUSTOMER;
	case PARLEY__ROLE__AGENT:
		return R_AGENT;
	case PARLEY__ROLE__BOT:
		return R_BOT;
	case PARLEY__ROLE__OBSERVER:
		return R_OBSERVER;
	case PARLEY__ROLE__SERVICE:
		return R_SERVICE;
	default:
		return -1;
	}
}

static bool scoped(const Parley__Internal__Caller *c)
{
	return c->room_scope != NULL && c->room_scope[0] != '\0';
}

brk_right brk_access_right(const Parley__Internal__Caller *c, int op)
{
	const access_rule *rule = rule_find(op);
	int col = role_col(c->role);
	if (rule == NULL || col < 0 || (scoped(c) && !rule->scoped))
		return BRK_RIGHT_NONE;
	return (brk_right)rule->right[col];
}

pl_status brk_access(
    const brk_room *r, const Parley__Internal__Caller *c, int op)
{
	const access_rule *rule = rule_find(op);
	if (rule == NULL || (rule->room && r == NULL))
		return PL_E_FORBIDDEN;
	if (r != NULL && strcmp(r->tenant, c->tenant) != 0)
		return PL_E_NOT_FOUND; /* another tenant's room does not exist
		                        */
	bool in_scope = false;
	if (r != NULL && scoped(c)) {
		char id[PL_ROOM_ID_CHARS + 1];
		pl_room_format(r->id, id);
		if (strcmp(id, c->room_scope) != 0)
			return PL_E_FORBIDDEN;
		in_scope = true;
	}
	brk_right right = brk_access_right(c, op);
	if (right == BRK_RIGHT_NONE)
		return PL_E_FORBIDDEN;
	if (right == BRK_RIGHT_ANY || r == NULL)
		return PL_OK;
	const brk_member *m = brk_room_member((brk_room *)r, c->user);
	if (right == BRK_RIGHT_MEMBER)
		return m != NULL || in_scope ? PL_OK : PL_E_FORBIDDEN;
	return m != NULL && m->joined ? PL_OK : PL_E_FORBIDDEN;
}

pl_status brk_access_kind(const Parley__Internal__Caller *c, int kind)
{
	for (size_t i = 0; i < PL_ARRAY_LEN(KINDS); i++) {
		if (KINDS[i].kind != kind)
			continue;
		if (KINDS[i].service_only && c->role != PARLEY__ROLE__SERVICE)
			return PL_E_FORBIDDEN;
		return PL_OK;
	}
	return PL_E_FORBIDDEN;
}
