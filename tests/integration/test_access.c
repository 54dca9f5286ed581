/*
 * test_access.c - who may do what, checked cell by cell against a
 * running gateway and two shard groups: every request type x role x
 * token scope (tenant-wide or room-scoped) x the room it is about (one
 * the caller joined, one it joined and left, one it never joined, for a
 * scoped token one outside its scope, and one of another tenant). The
 * table below is the README's role table ("Who may do what"): the same
 * facts, and the broker's (broker/access.c); a cell that disagrees fails
 * with its coordinates. Connections alternate between TCP and WebSocket.
 */
#define CHECK_MAIN
#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 5000

/* Rights, as in the README table. */
enum { NO, ANY, MEM, JOI };

enum { CUSTOMER, AGENT, BOT, OBSERVER, SERVICE, ROLES };
static const int ROLE[ROLES] = {PARLEY__ROLE__CUSTOMER, PARLEY__ROLE__AGENT,
    PARLEY__ROLE__BOT, PARLEY__ROLE__OBSERVER, PARLEY__ROLE__SERVICE};
static const char *ROLE_NAME[ROLES] = {
    "customer", "agent", "bot", "observer", "service"};

typedef struct row {
	const char *name;
	int op;      /* Parley__ClientFrame__BodyCase */
	bool room;   /* about one room */
	bool scoped; /* a room-scoped token may make it (on its room) */
	int right[ROLES];
} row;

/* README "Who may do what". Columns: customer, agent, bot, observer,
 * service. */
static const row TABLE[] = {
    {"create_room", PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM, false, false,
        {ANY, ANY, ANY, NO, ANY}},
    {"list_rooms", PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS, false, true,
        {MEM, ANY, ANY, ANY, ANY}},
    {"report", PARLEY__CLIENT_FRAME__BODY_REPORT, false, false,
        {NO, ANY, NO, ANY, ANY}},
    {"status", PARLEY__CLIENT_FRAME__BODY_STATUS, false, true,
        {ANY, ANY, ANY, ANY, ANY}},
    {"join", PARLEY__CLIENT_FRAME__BODY_JOIN, true, true,
        {MEM, ANY, ANY, ANY, ANY}},
    {"leave", PARLEY__CLIENT_FRAME__BODY_LEAVE, true, true,
        {MEM, ANY, ANY, ANY, ANY}},
    {"publish", PARLEY__CLIENT_FRAME__BODY_PUBLISH, true, true,
        {JOI, JOI, JOI, NO, ANY}},
    {"typing", PARLEY__CLIENT_FRAME__BODY_TYPING, true, true,
        {JOI, JOI, JOI, NO, ANY}},
    {"read", PARLEY__CLIENT_FRAME__BODY_READ, true, true,
        {JOI, JOI, JOI, NO, ANY}},
    {"subscribe", PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE, true, true,
        {MEM, ANY, ANY, ANY, ANY}},
    {"history", PARLEY__CLIENT_FRAME__BODY_HISTORY, true, true,
        {MEM, ANY, ANY, ANY, ANY}},
    {"presence", PARLEY__CLIENT_FRAME__BODY_PRESENCE, true, true,
        {MEM, ANY, ANY, ANY, ANY}},
    {"room_info", PARLEY__CLIENT_FRAME__BODY_ROOM_INFO, true, true,
        {MEM, ANY, ANY, ANY, ANY}},
    {"close_room", PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM, true, true,
        {JOI, ANY, NO, NO, ANY}},
    {"unsubscribe", PARLEY__CLIENT_FRAME__BODY_UNSUBSCRIBE, true, true,
        {ANY, ANY, ANY, ANY, ANY}},
};

/* The room a request is about, relative to the caller. */
enum { JOINED, LEFT, STRANGER, OUTSIDE, FOREIGN, TARGETS };
static const char *TARGET_NAME[TARGETS] = {
    "joined", "left", "never joined", "outside scope", "other tenant"};

typedef struct env {
	hx_cluster c;
	parley_conn *svc;                   /* acme's backend: makes rooms */
	char foreign[PL_ROOM_ID_CHARS + 1]; /* a globex room */
	int cells, users;
	bool ws;
} env;

/* What the table says a cell answers. */
static pl_status expect_room(const row *rw, int role, bool scoped, int tg)
{
	if (rw->op == PARLEY__CLIENT_FRAME__BODY_UNSUBSCRIBE)
		return PL_OK; /* undoes only the caller's own subscription */
	if (tg == FOREIGN)
		return PL_E_NOT_FOUND; /* another tenant's room does not exist
		                        */
	if (tg == OUTSIDE || (scoped && !rw->scoped))
		return PL_E_FORBIDDEN;
	switch (rw->right[role]) {
	case ANY:
		return PL_OK;
	case MEM:
		return tg == JOINED || tg == LEFT || scoped ? PL_OK
		                                            : PL_E_FORBIDDEN;
	case JOI:
		return tg == JOINED ? PL_OK : PL_E_FORBIDDEN;
	default:
		return PL_E_FORBIDDEN;
	}
}

static parley_conn *connect_as(
    env *e, const char *user, int role, const char *scope)
{
	parley_conn *conn;
	e->ws = !e->ws;
	if (parley_connect(
	        e->ws ? e->c.ws_url : e->c.tcp_url, T, NULL, &conn) != PL_OK)
		return NULL;
	const char *tok = hx_token(&e->c, "acme", user, role, 3600, scope);
	if (parley_hello(conn, tok, T, NULL) != PL_OK) {
		parley_close(conn);
		return NULL;
	}
	return conn;
}

static pl_status op_do(parley_conn *conn, int op, const char *room)
{
	Parley__ServerFrame *f = NULL;
	pl_status st;
	switch (op) {
	case PARLEY__CLIENT_FRAME__BODY_JOIN:
		return parley_join(conn, room, T);
	case PARLEY__CLIENT_FRAME__BODY_LEAVE:
		return parley_leave(conn, room, T);
	case PARLEY__CLIENT_FRAME__BODY_PUBLISH:
		return parley_publish(
		    conn, room, NULL, PARLEY__KIND__TEXT, "hi", 2, T, NULL);
	case PARLEY__CLIENT_FRAME__BODY_TYPING:
		return parley_typing(conn, room, true, T);
	case PARLEY__CLIENT_FRAME__BODY_READ:
		return parley_read(conn, room, 1, T);
	case PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE:
		return parley_subscribe(conn, room, 0, T, NULL);
	case PARLEY__CLIENT_FRAME__BODY_UNSUBSCRIBE:
		return parley_unsubscribe(conn, room, T);
	case PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM:
		return parley_close_room(conn, room, "done", T);
	case PARLEY__CLIENT_FRAME__BODY_HISTORY: {
		parley_history_query q = {.limit = 10};
		st = parley_history(conn, room, &q, T, &f);
		break;
	}
	case PARLEY__CLIENT_FRAME__BODY_PRESENCE:
		st = parley_presence(conn, room, T, &f);
		break;
	case PARLEY__CLIENT_FRAME__BODY_ROOM_INFO:
		st = parley_room_info(conn, room, T, &f);
		break;
	default:
		return PL_E_INTERNAL;
	}
	parley_frame_free(f);
	return st;
}

static bool room_new(env *e, char *room)
{
	return parley_create_room(e->svc, NULL, NULL, 0, T, room, NULL) ==
	       PL_OK;
}

/* The caller becomes a member of room: an unscoped customer only by
 * creating it (on its own connection), everyone else by joining. */
static bool member_make(
    parley_conn *conn, int role, bool scoped, bool leave, env *e, char *room)
{
	if (role == CUSTOMER && !scoped) {
		if (parley_create_room(conn, NULL, NULL, 0, T, room, NULL) !=
		    PL_OK)
			return false;
	} else if (parley_join(conn, room, T) != PL_OK) {
		return false;
	}
	(void)e;
	return !leave || parley_leave(conn, room, T) == PL_OK;
}

/* One cell of a room request: a fresh user and room, set up as the
 * target says, then the request. */
static bool room_cell(env *e, const row *rw, int role, bool scoped, int tg)
{
	char user[32], room[PL_ROOM_ID_CHARS + 1], other[PL_ROOM_ID_CHARS + 1];
	snprintf(user, sizeof(user), "u%d", ++e->users);
	bool own_create =
	    role == CUSTOMER && !scoped && (tg == JOINED || tg == LEFT);
	if ((!own_create && !room_new(e, room)) || !room_new(e, other))
		return false;
	const char *scope = !scoped                          ? ""
	                    : tg == OUTSIDE || tg == FOREIGN ? other
	                                                     : room;
	parley_conn *conn = connect_as(e, user, ROLE[role], scope);
	if (conn == NULL)
		return false;
	bool ok = true;
	if (tg == JOINED || tg == LEFT)
		ok = member_make(conn, role, scoped, tg == LEFT, e, room);
	const char *target = tg == FOREIGN ? e->foreign : room;
	pl_status want = expect_room(rw, role, scoped, tg);
	pl_status got = ok ? op_do(conn, rw->op, target) : PL_E_INTERNAL;
	if (got != want)
		fprintf(stderr,
		    "  %s by %s (%s token) on a room %s: got %s, table says "
		    "%s%s\n",
		    rw->name, ROLE_NAME[role],
		    scoped ? "room-scoped" : "tenant", TARGET_NAME[tg],
		    pl_strerror(got), pl_strerror(want),
		    ok ? "" : " (set-up failed)");
	parley_close(conn);
	e->cells++;
	return got == want;
}

/* Every room of the caller's list, paged; false on an error. */
static bool list_all(parley_conn *conn, char (*out)[PL_ROOM_ID_CHARS + 1],
    int cap, int *n, pl_status *st)
{
	char after[PL_ROOM_ID_CHARS + 1] = "";
	*n = 0;
	for (;;) {
		Parley__ServerFrame *f;
		*st = parley_list_rooms(conn, 1000, after, T, &f);
		if (*st != PL_OK)
			return true;
		Parley__RoomList *rl = f->room_list;
		for (size_t i = 0; i < rl->n_rooms && *n < cap; i++)
			snprintf(out[(*n)++], PL_ROOM_ID_CHARS + 1, "%s",
			    rl->rooms[i]);
		bool more = rl->more && rl->n_rooms > 0;
		if (more)
			snprintf(after, sizeof(after), "%s",
			    rl->rooms[rl->n_rooms - 1]);
		parley_frame_free(f);
		if (!more)
			return *n < cap;
	}
}

static bool listed(char (*rooms)[PL_ROOM_ID_CHARS + 1], int n, const char *r)
{
	for (int i = 0; i < n; i++)
		if (strcmp(rooms[i], r) == 0)
			return true;
	return false;
}

/* list_rooms: the rooms listed are exactly those the table lets the
 * caller see among a joined, a left and a never-joined room (and, for
 * a member-only or scoped list, nothing else); never another tenant's. */
static bool list_cell(env *e, const row *rw, int role, bool scoped)
{
	static char rooms[20000][PL_ROOM_ID_CHARS + 1];
	char user[32], rj[PL_ROOM_ID_CHARS + 1], rl[PL_ROOM_ID_CHARS + 1],
	    rs[PL_ROOM_ID_CHARS + 1];
	snprintf(user, sizeof(user), "u%d", ++e->users);
	bool own_create = role == CUSTOMER && !scoped;
	if ((!own_create && (!room_new(e, rj) || !room_new(e, rl))) ||
	    !room_new(e, rs))
		return false;
	parley_conn *conn = connect_as(e, user, ROLE[role], scoped ? rj : "");
	if (conn == NULL)
		return false;
	bool ok = member_make(conn, role, scoped, false, e, rj) &&
	          (scoped || member_make(conn, role, false, true, e, rl));
	int n = 0;
	pl_status st = PL_OK;
	ok = ok && list_all(conn, rooms, 20000, &n, &st);
	parley_close(conn);
	e->cells++;
	int right = rw->right[role];
	bool sees_j = true, sees_l = !scoped, sees_s = !scoped && right == ANY;
	int exact = scoped ? 1 : right == MEM ? 2 : -1;
	bool good = ok && st == PL_OK && listed(rooms, n, rj) == sees_j &&
	            (scoped || listed(rooms, n, rl) == sees_l) &&
	            listed(rooms, n, rs) == sees_s &&
	            !listed(rooms, n, e->foreign) && (exact < 0 || n == exact);
	if (!good)
		fprintf(stderr,
		    "  list_rooms by %s (%s token): %s, %d rooms (joined %d, "
		    "left %d, never joined %d, other tenant %d)\n",
		    ROLE_NAME[role], scoped ? "room-scoped" : "tenant",
		    pl_strerror(st), n, listed(rooms, n, rj),
		    listed(rooms, n, rl), listed(rooms, n, rs),
		    listed(rooms, n, e->foreign));
	return good;
}

static pl_status tenant_do(parley_conn *conn, int op)
{
	Parley__ServerFrame *f = NULL;
	char room[PL_ROOM_ID_CHARS + 1];
	pl_status st;
	switch (op) {
	case PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM:
		return parley_create_room(conn, NULL, NULL, 0, T, room, NULL);
	case PARLEY__CLIENT_FRAME__BODY_REPORT:
		st = parley_report(conn, 1, T, &f);
		break;
	case PARLEY__CLIENT_FRAME__BODY_STATUS:
		st = parley_status(conn, T, &f);
		break;
	default:
		return PL_E_INTERNAL;
	}
	parley_frame_free(f);
	return st;
}

static bool tenant_cell(env *e, const row *rw, int role, bool scoped)
{
	if (rw->op == PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS)
		return list_cell(e, rw, role, scoped);
	char user[32], scope[PL_ROOM_ID_CHARS + 1] = "";
	snprintf(user, sizeof(user), "u%d", ++e->users);
	if (scoped && !room_new(e, scope))
		return false;
	parley_conn *conn = connect_as(e, user, ROLE[role], scope);
	if (conn == NULL)
		return false;
	pl_status want = (scoped && !rw->scoped) || rw->right[role] == NO
	                     ? PL_E_FORBIDDEN
	                     : PL_OK;
	pl_status got = tenant_do(conn, rw->op);
	parley_close(conn);
	e->cells++;
	if (got != want)
		fprintf(stderr,
		    "  %s by %s (%s token): got %s, table says %s\n", rw->name,
		    ROLE_NAME[role], scoped ? "room-scoped" : "tenant",
		    pl_strerror(got), pl_strerror(want));
	return got == want;
}

TEST(test_access_every_cell_of_the_role_table)
{
	static env e;
	CHECK(hx_init(&e.c, 2));
	CHECK(hx_start(&e.c));
	e.svc =
	    hx_client(&e.c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	parley_conn *gx =
	    hx_client(&e.c, false, "globex", "backend", PARLEY__ROLE__SERVICE);
	CHECK(e.svc != NULL && gx != NULL);
	CHECK_EQ(
	    parley_create_room(gx, NULL, NULL, 0, T, e.foreign, NULL), PL_OK);
	int bad = 0;
	for (size_t i = 0; i < PL_ARRAY_LEN(TABLE); i++) {
		const row *rw = &TABLE[i];
		for (int role = 0; role < ROLES; role++) {
			for (int sc = 0; sc < 2; sc++) {
				if (!rw->room) {
					bad += !tenant_cell(&e, rw, role, sc);
					continue;
				}
				for (int tg = 0; tg < TARGETS; tg++) {
					if (tg == OUTSIDE && !sc)
						continue; /* no scope to be out
						             of */
					bad += !room_cell(&e, rw, role, sc, tg);
				}
			}
		}
	}
	fprintf(stderr, "  %d cells checked, %d disagree with the table\n",
	    e.cells, bad);
	parley_close(e.svc);
	parley_close(gx);
	hx_fini(&e.c, bad > 0);
	CHECK_EQ(bad, 0);
}
