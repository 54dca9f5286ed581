/*
 * access.h - who may do what (access.c): one table of rights per role
 * and request type, applied to every request (reads by the group's
 * dispatcher before a handler runs, writes by the store when they apply).
 */
#ifndef PARLEY_BROKER_ACCESS_H
#define PARLEY_BROKER_ACCESS_H

#include "broker/room.h"

/* Who may do what (access.c; docs/internals.md "Authorization", the
 * README's role table). A right of a role for a request type: */
typedef enum brk_right {
	BRK_RIGHT_NONE,   /* forbidden */
	BRK_RIGHT_ANY,    /* any room of the tenant; tenant-wide: allowed */
	BRK_RIGHT_MEMBER, /* a room the caller is or was a member of (a
	                   * room-scoped token: its room) */
	BRK_RIGHT_JOINED, /* a room the caller has joined and not left */
} brk_right;
/* Whether caller c may make request op (a Parley__ClientFrame__BodyCase)
 * on room r, or, for a tenant-wide request (create_room, list_rooms,
 * report, status), with r NULL; list_rooms with a room r: whether r
 * may appear in the caller's list. PL_E_NOT_FOUND for another tenant's
 * room, PL_E_FORBIDDEN otherwise, and for any request type the table
 * does not name. */
pl_status brk_access(
    const brk_room *r, const Parley__Internal__Caller *c, int op);
/* c's right for op from the table alone (scope applied: a room-scoped
 * token has none for a tenant-wide request other than list_rooms). */
brk_right brk_access_right(const Parley__Internal__Caller *c, int op);
/* Whether c may publish a message of kind (a Parley__Kind), on top of
 * brk_access for publish: system messages come from services only.
 * PL_E_FORBIDDEN otherwise, and for a kind the table does not name. */
pl_status brk_access_kind(const Parley__Internal__Caller *c, int kind);

#endif
