/*
 * test_failover.c - unit tests of the gateway's failover policy
 * (failover.c) and of the `broker` list it follows (config.c): which
 * requests are re-sent through a leader change, until when, and which
 * replica a leader_hint names.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "gateway/gateway.h"
#include "proto/codec.h"

#include <unistd.h>

enum { NONE = 0, ID = 1, KEY = 2 };

static const struct {
	int op;
	int has; /* ID, KEY */
	bool safe;
} resend_cases[] = {
    {PARLEY__CLIENT_FRAME__BODY_PUBLISH, ID, true},
    {PARLEY__CLIENT_FRAME__BODY_PUBLISH, NONE, false},
    {PARLEY__CLIENT_FRAME__BODY_PUBLISH, KEY, false},
    {PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM, KEY, true},
    {PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM, NONE, false},
    {PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM, ID, false},
    {PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM, NONE, false},
    {PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM, ID | KEY, false},
    {PARLEY__CLIENT_FRAME__BODY_JOIN, NONE, true},
    {PARLEY__CLIENT_FRAME__BODY_LEAVE, NONE, true},
    {PARLEY__CLIENT_FRAME__BODY_READ, NONE, true},
    {PARLEY__CLIENT_FRAME__BODY_TYPING, NONE, true},
    {PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE, NONE, true},
    {PARLEY__CLIENT_FRAME__BODY_UNSUBSCRIBE, NONE, true},
    {PARLEY__CLIENT_FRAME__BODY_HISTORY, NONE, true},
    {PARLEY__CLIENT_FRAME__BODY_ROOM_INFO, NONE, true},
    {PARLEY__CLIENT_FRAME__BODY_PRESENCE, NONE, true},
    {PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS, NONE, true},
    {PARLEY__CLIENT_FRAME__BODY_REPORT, NONE, true},
    {PARLEY__CLIENT_FRAME__BODY_STATUS, NONE, true},
    /* Answered by the gateway itself; never re-sent to a broker. */
    {PARLEY__CLIENT_FRAME__BODY_HELLO, NONE, false},
    {PARLEY__CLIENT_FRAME__BODY_PING, NONE, false},
    {PARLEY__CLIENT_FRAME__BODY__NOT_SET, NONE, false},
};

TEST(test_failover_resend_safe_table)
{
	for (size_t i = 0; i < sizeof(resend_cases) / sizeof(resend_cases[0]);
	     i++) {
		bool got = gw_resend_safe(resend_cases[i].op,
		    (resend_cases[i].has & ID) != 0,
		    (resend_cases[i].has & KEY) != 0);
		if (got != resend_cases[i].safe)
			fprintf(stderr, "  case %zu (op %d)\n", i,
			    resend_cases[i].op);
		CHECK_EQ(got, resend_cases[i].safe);
	}
}

#define NOW 1000000
#define LATER (NOW + 1)

static const struct {
	gw_outcome out;
	bool safe;
	int nrep;
	int64_t deadline;
	gw_retry_act act;
} decide_cases[] = {
    /* Refused before the log: anything goes again, even a close. */
    {GW_OUT_NOT_APPLIED, false, 3, LATER, GW_RETRY_RESEND},
    {GW_OUT_NOT_APPLIED, true, 3, LATER, GW_RETRY_RESEND},
    {GW_OUT_NOT_APPLIED, false, 1, LATER, GW_RETRY_RESEND},
    /* Taken by a leader that lost its leadership: only if safe. */
    {GW_OUT_UNKNOWN, true, 3, LATER, GW_RETRY_RESEND},
    {GW_OUT_UNKNOWN, false, 3, LATER, GW_RETRY_FAIL},
    {GW_OUT_UNKNOWN, true, 1, LATER, GW_RETRY_RESEND},
    /* No answer: another replica, if there is one and it is safe. */
    {GW_OUT_LOST, true, 3, LATER, GW_RETRY_RESEND},
    {GW_OUT_LOST, true, 5, LATER, GW_RETRY_RESEND},
    {GW_OUT_LOST, false, 3, LATER, GW_RETRY_FAIL},
    {GW_OUT_LOST, true, 1, LATER, GW_RETRY_FAIL},
    /* At or past the deadline the client hears unavailable. */
    {GW_OUT_NOT_APPLIED, true, 3, NOW, GW_RETRY_FAIL},
    {GW_OUT_UNKNOWN, true, 3, NOW, GW_RETRY_FAIL},
    {GW_OUT_LOST, true, 3, NOW - 1, GW_RETRY_FAIL},
};

TEST(test_failover_retry_decide_table)
{
	for (size_t i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]);
	     i++) {
		gw_retry_act got =
		    gw_retry_decide(decide_cases[i].out, decide_cases[i].safe,
		        decide_cases[i].nrep, NOW, decide_cases[i].deadline);
		if (got != decide_cases[i].act)
			fprintf(stderr, "  case %zu\n", i);
		CHECK_EQ(got, decide_cases[i].act);
	}
}

static bool group3(gw_group_conf *gc)
{
	*gc = (gw_group_conf){.id = 1, .weight = 1};
	return gw_config_brokers_parse(gc,
	    "tcp://127.0.0.1:7401, tcp://127.0.0.1:7403,tcp://127.0.0.1:7405");
}

TEST(test_failover_hint_matches_exact_address)
{
	gw_group_conf gc;
	CHECK(group3(&gc));
	CHECK_EQ(gc.nbrokers, 3);
	CHECK_EQ(gw_replica_match(&gc, "tcp://127.0.0.1:7401"), 0);
	CHECK_EQ(gw_replica_match(&gc, "tcp://127.0.0.1:7403"), 1);
	CHECK_EQ(gw_replica_match(&gc, "tcp://127.0.0.1:7405"), 2);
}

TEST(test_failover_hint_unknown_or_empty_is_no_match)
{
	gw_group_conf gc;
	CHECK(group3(&gc));
	CHECK_EQ(gw_replica_match(&gc, NULL), -1);
	CHECK_EQ(gw_replica_match(&gc, ""), -1);
	CHECK_EQ(gw_replica_match(&gc, "tcp://127.0.0.1:7407"), -1);
	/* Exact strings: no prefix, no trimming, no name resolution. */
	CHECK_EQ(gw_replica_match(&gc, "tcp://127.0.0.1:740"), -1);
	CHECK_EQ(gw_replica_match(&gc, " tcp://127.0.0.1:7401"), -1);
	CHECK_EQ(gw_replica_match(&gc, "tcp://localhost:7401"), -1);
}

static const struct {
	const char *value;
	int n; /* -1: refused */
	const char *last;
} list_cases[] = {
    {"tcp://127.0.0.1:7401", 1, "tcp://127.0.0.1:7401"},
    {"tcp://a:1,tcp://b:2", 2, "tcp://b:2"},
    {"  tcp://a:1 ,\ttcp://b:2  , tcp://c:3", 3, "tcp://c:3"},
    {"a,b,c,d,e,f,g", 7, "g"},
    {"a,b,c,d,e,f,g,h", -1, NULL},
    {"", -1, NULL},
    {" ", -1, NULL},
    {"a,,b", -1, NULL},
    {"a,", -1, NULL},
    {",a", -1, NULL},
};

TEST(test_failover_broker_list_parse_table)
{
	for (size_t i = 0; i < sizeof(list_cases) / sizeof(list_cases[0]);
	     i++) {
		gw_group_conf gc = {.id = 1, .nbrokers = 0};
		bool ok = gw_config_brokers_parse(&gc, list_cases[i].value);
		if (ok != (list_cases[i].n >= 0))
			fprintf(stderr, "  case %zu \"%s\"\n", i,
			    list_cases[i].value);
		CHECK_EQ(ok, list_cases[i].n >= 0);
		if (!ok) {
			CHECK_EQ(gc.nbrokers, 0); /* unchanged */
			continue;
		}
		CHECK_EQ(gc.nbrokers, list_cases[i].n);
		CHECK_STR_EQ(gc.brokers[gc.nbrokers - 1], list_cases[i].last);
	}
}

TEST(test_failover_broker_list_address_too_long_refused)
{
	char v[GW_URL_CHARS_MAX + 16];
	memset(v, 'x', sizeof(v) - 1);
	v[sizeof(v) - 1] = '\0';
	gw_group_conf gc = {.id = 1};
	CHECK(!gw_config_brokers_parse(&gc, v));
	v[GW_URL_CHARS_MAX] = '\0';
	CHECK(gw_config_brokers_parse(&gc, v));
	CHECK_EQ(gc.nbrokers, 1);
}

TEST(test_failover_config_check_refuses_replica_listed_twice)
{
	gw_config c;
	CHECK_EQ(gw_config_init(&c), PL_OK);
	c.ngroups = 1;
	c.groups[0] = (gw_group_conf){.id = 1, .weight = 1};
	CHECK(gw_config_brokers_parse(&c.groups[0], "tcp://a:1,tcp://b:2"));
	CHECK_EQ(gw_config_check(&c), PL_OK);
	CHECK(gw_config_brokers_parse(&c.groups[0], "tcp://a:1, tcp://a:1"));
	CHECK_EQ(gw_config_check(&c), PL_E_CONFIG);
	c.groups[0].nbrokers = 0;
	CHECK_EQ(gw_config_check(&c), PL_E_CONFIG);
	gw_config_fini(&c);
}

TEST(test_failover_config_defaults)
{
	gw_config c;
	CHECK_EQ(gw_config_init(&c), PL_OK);
	CHECK_EQ(c.failover_ms, 10000);
	CHECK_EQ(c.replica_timeout_ms, 1000);
	CHECK_EQ(c.broker_timeout_ms, 5000);
	gw_config_fini(&c);
}

TEST(test_failover_config_file_lists_replicas)
{
	char path[] = "/tmp/parley-gwconf-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	FILE *f = fdopen(fd, "w");
	CHECK(f != NULL);
	fputs("[gateway]\nfailover_ms = 4000\nreplica_timeout_ms = 300\n"
	      "[group.1]\nbroker = tcp://127.0.0.1:7401, "
	      "tcp://127.0.0.1:7403, tcp://127.0.0.1:7405\n"
	      "[group.2]\nbroker = tcp://127.0.0.1:7407\n",
	    f);
	fclose(f);
	gw_config c;
	CHECK_EQ(gw_config_init(&c), PL_OK);
	pl_status st = gw_config_load(&c, path);
	unlink(path);
	CHECK_EQ(st, PL_OK);
	CHECK_EQ(gw_config_check(&c), PL_OK);
	CHECK_EQ(c.failover_ms, 4000);
	CHECK_EQ(c.replica_timeout_ms, 300);
	CHECK_EQ(c.ngroups, 2);
	CHECK_EQ(c.groups[0].nbrokers, 3);
	CHECK_STR_EQ(c.groups[0].brokers[2], "tcp://127.0.0.1:7405");
	/* One address works exactly as before replication. */
	CHECK_EQ(c.groups[1].nbrokers, 1);
	CHECK_STR_EQ(c.groups[1].brokers[0], "tcp://127.0.0.1:7407");
	gw_config_fini(&c);
}
