/*
 * test_tls.c - the gateway over TLS: tls+tcp:// and wss:// with a
 * certificate made for the test (openssl), clients verifying it against
 * the CA file and the expected name.
 *   invariant: verified clients chat as over plain sockets; a client with
 *   the wrong name, no CA or plain text is refused and the gateway keeps
 *   serving.
 */
#define CHECK_MAIN
#include <stdlib.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 3000

static bool make_cert(const hx_cluster *c, char *ca, size_t cap)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
	    "cd %s && openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost "
	    "-addext subjectAltName=DNS:localhost -keyout key.pem "
	    "-out cert.pem >/dev/null 2>&1 && cat cert.pem key.pem > "
	    "certkey.pem",
	    c->dir);
	snprintf(ca, cap, "%s/cert.pem", c->dir);
	return system(cmd) == 0;
}

static parley_conn *tls_client(
    const char *url, const parley_opts *o, hx_cluster *c, pl_status *st)
{
	parley_conn *conn;
	*st = parley_connect(url, T, o, &conn);
	if (*st != PL_OK)
		return NULL;
	*st = parley_hello(conn,
	    hx_token(c, "acme", "tls-user", PARLEY__ROLE__SERVICE, 60, ""), T,
	    NULL);
	if (*st != PL_OK) {
		parley_close(conn);
		return NULL;
	}
	return conn;
}

TEST(test_tls_verified_clients_chat_others_refused)
{
	hx_cluster c;
	char ca[200], room[17], body[32];
	pl_status st;
	CHECK(hx_init(&c, 1));
	CHECK(make_cert(&c, ca, sizeof(ca)));
	snprintf(c.gw_extra, sizeof(c.gw_extra),
	    "tls_cert_key = %s/certkey.pem\n", c.dir);
	/* The harness's URLs, with TLS schemes. */
	char *port = strrchr(c.tcp_url, ':');
	char tcp[64], wss[80];
	snprintf(tcp, sizeof(tcp), "tls+tcp://127.0.0.1%s", port);
	snprintf(c.tcp_url, sizeof(c.tcp_url), "%s", tcp);
	snprintf(wss, sizeof(wss), "wss://127.0.0.1:%d/ws", c.http_port);
	CHECK(hx_start(&c));
	parley_opts ok = {.tls_ca_file = ca, .tls_server_name = "localhost"};
	parley_conn *a = tls_client(tcp, &ok, &c, &st);
	CHECK_EQ(st, PL_OK);
	parley_conn *b = tls_client(wss, &ok, &c, &st);
	CHECK_EQ(st, PL_OK);
	CHECK_EQ(parley_create_room(a, NULL, NULL, 0, T, room, NULL), PL_OK);
	CHECK_EQ(parley_subscribe(b, room, 0, T, NULL), PL_OK);
	CHECK_EQ(parley_publish(
	             a, room, "t1", PARLEY__KIND__TEXT, "over tls", 8, T, NULL),
	    PL_OK);
	CHECK_EQ(hx_next_message(b, room, T, body, sizeof(body)), 1);
	CHECK_STR_EQ(body, "over tls");
	/* Refused: wrong name, no CA, plain text on the TLS port. */
	parley_opts wrong = {.tls_ca_file = ca, .tls_server_name = "evil"};
	CHECK(tls_client(tcp, &wrong, &c, &st) == NULL);
	CHECK(tls_client(wss, &wrong, &c, &st) == NULL);
	CHECK(tls_client(tcp, NULL, &c, &st) == NULL);
	CHECK_EQ(st, PL_E_BAD_REQUEST);
	char plain[64];
	snprintf(plain, sizeof(plain), "tcp://127.0.0.1%s", port);
	CHECK(tls_client(plain, NULL, &c, &st) == NULL);
	/* Still serving the verified ones. */
	CHECK_EQ(parley_ping(a, T, NULL, NULL), PL_OK);
	CHECK_EQ(parley_ping(b, T, NULL, NULL), PL_OK);
	parley_close(a);
	parley_close(b);
	hx_fini(&c, false);
}
