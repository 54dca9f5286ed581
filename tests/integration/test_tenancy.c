/*
 * test_tenancy.c - tokens and tenant isolation: a token of tenant B can
 * neither read, publish to, subscribe to nor list tenant A's rooms; bad,
 * expired and missing tokens are refused; scoped tokens stay in scope.
 */
#define CHECK_MAIN
#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 3000

TEST(test_tenancy_other_tenant_sees_nothing)
{
	hx_cluster c;
	char room[17];
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	parley_conn *a =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	parley_conn *b =
	    hx_client(&c, false, "globex", "backend", PARLEY__ROLE__SERVICE);
	CHECK(a != NULL && b != NULL);
	CHECK_EQ(
	    parley_create_room(a, "secret", NULL, 0, T, room, NULL), PL_OK);
	CHECK_EQ(parley_publish(
	             a, room, "s1", PARLEY__KIND__TEXT, "pii", 3, T, NULL),
	    PL_OK);
	Parley__ServerFrame *f;
	parley_history_query q = {.limit = 10};
	CHECK_EQ(parley_history(b, room, &q, T, &f), PL_E_NOT_FOUND);
	CHECK_EQ(
	    parley_publish(b, room, "x", PARLEY__KIND__TEXT, "x", 1, T, NULL),
	    PL_E_NOT_FOUND);
	CHECK_EQ(parley_subscribe(b, room, 0, T, NULL), PL_E_NOT_FOUND);
	CHECK_EQ(parley_join(b, room, T), PL_E_NOT_FOUND);
	CHECK_EQ(parley_room_info(b, room, T, &f), PL_E_NOT_FOUND);
	CHECK_EQ(parley_close_room(b, room, NULL, T), PL_E_NOT_FOUND);
	CHECK_EQ(parley_list_rooms(b, 100, NULL, T, &f), PL_OK);
	CHECK_EQ(f->room_list->n_rooms, 0);
	parley_frame_free(f);
	/* Same idempotency key in B makes B's own room, not A's. */
	char broom[17];
	CHECK_EQ(
	    parley_create_room(b, "secret", NULL, 0, T, broom, NULL), PL_OK);
	CHECK(strcmp(room, broom) != 0);
	parley_close(a);
	parley_close(b);
	hx_fini(&c, false);
}

TEST(test_tenancy_bad_tokens_refused)
{
	hx_cluster c;
	char room[17];
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	parley_conn *conn;
	CHECK_EQ(parley_connect(c.tcp_url, T, NULL, &conn), PL_OK);
	/* Before hello: refused. */
	CHECK_EQ(parley_create_room(conn, NULL, NULL, 0, T, room, NULL),
	    PL_E_UNAUTHORIZED);
	CHECK_EQ(
	    parley_hello(conn, "garbage.token", T, NULL), PL_E_UNAUTHORIZED);
	const char *expired =
	    hx_token(&c, "acme", "u", PARLEY__ROLE__AGENT, -10, "");
	CHECK_EQ(parley_hello(conn, expired, T, NULL), PL_E_UNAUTHORIZED);
	parley_close(conn);
	/* A token signed by globex's key but claiming acme. */
	char tok[PL_TOKEN_CHARS_MAX + 1];
	snprintf(tok, sizeof(tok), "%s",
	    hx_token(&c, "globex", "u", PARLEY__ROLE__AGENT, 60, ""));
	CHECK_EQ(parley_connect(c.tcp_url, T, NULL, &conn), PL_OK);
	const char *good =
	    hx_token(&c, "acme", "u", PARLEY__ROLE__AGENT, 60, "");
	/* Swap signatures: acme's claims with globex's signature. */
	char forged[PL_TOKEN_CHARS_MAX + 1];
	const char *dot_good = strchr(good, '.'), *dot_bad = strchr(tok, '.');
	CHECK(dot_good != NULL && dot_bad != NULL);
	snprintf(forged, sizeof(forged), "%.*s%s", (int)(dot_good - good), good,
	    dot_bad);
	CHECK_EQ(parley_hello(conn, forged, T, NULL), PL_E_UNAUTHORIZED);
	CHECK_EQ(parley_hello(conn, good, T, NULL), PL_OK);
	parley_close(conn);
	hx_fini(&c, false);
}

TEST(test_tenancy_room_scoped_token_stays_in_room)
{
	hx_cluster c;
	char room[17], other[17];
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	CHECK_EQ(parley_create_room(svc, NULL, NULL, 0, T, room, NULL), PL_OK);
	CHECK_EQ(parley_create_room(svc, NULL, NULL, 0, T, other, NULL), PL_OK);
	parley_conn *cust;
	CHECK_EQ(parley_connect(c.tcp_url, T, NULL, &cust), PL_OK);
	CHECK_EQ(
	    parley_hello(cust,
	        hx_token(&c, "acme", "carl", PARLEY__ROLE__CUSTOMER, 60, room),
	        T, NULL),
	    PL_OK);
	CHECK_EQ(parley_join(cust, room, T), PL_OK);
	CHECK_EQ(parley_publish(
	             cust, room, "c", PARLEY__KIND__TEXT, "hi", 2, T, NULL),
	    PL_OK);
	CHECK_EQ(parley_join(cust, other, T), PL_E_FORBIDDEN);
	CHECK_EQ(parley_subscribe(cust, other, 0, T, NULL), PL_E_FORBIDDEN);
	char mine[17];
	CHECK_EQ(parley_create_room(cust, NULL, NULL, 0, T, mine, NULL),
	    PL_E_FORBIDDEN);
	/* Customers without scope cannot wander into others' rooms. */
	parley_conn *eve =
	    hx_client(&c, false, "acme", "eve", PARLEY__ROLE__CUSTOMER);
	CHECK(eve != NULL);
	CHECK_EQ(parley_join(eve, room, T), PL_E_FORBIDDEN);
	CHECK_EQ(parley_subscribe(eve, room, 0, T, NULL), PL_E_FORBIDDEN);
	parley_close(eve);
	parley_close(cust);
	parley_close(svc);
	hx_fini(&c, false);
}
