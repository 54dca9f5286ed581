/*
 * ctl_ops.c - parleyctl's operator commands: keygen and token, which work
 * offline on a key file, and status, group status, report and ping over
 * a gateway connection.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "client/ctl.h"
#include "proto/token.h"

#define TTL_S_DEFAULT 3600

/* ------------------------------------------------------------------ */
/* Offline commands. */

int ctl_keygen(const ctl_args *a)
{
	if (!ctl_args_check(a, "tenant,key-id,out", 0, 0))
		return ctl_usage();
	const char *tenant = ctl_opt(a, "tenant"), *kid = ctl_opt(a, "key-id");
	const char *out = ctl_opt(a, "out");
	if (tenant == NULL || kid == NULL || out == NULL)
		return ctl_usage();
	char pk[128];
	pl_status st = pl_keyfile_generate(out, tenant, kid, pk, sizeof(pk));
	if (st != PL_OK)
		return ctl_fail_st(NULL, st);
	printf("key.%s = %s\n", kid, pk);
	return 0;
}

static int mint(const char *keyfile, pl_claims *c, int64_t ttl)
{
	uint8_t sk[64];
	pl_status st = pl_keyfile_load(keyfile, c->tenant, sizeof(c->tenant),
	    c->key_id, sizeof(c->key_id), sk, NULL);
	if (st != PL_OK)
		return ctl_fail_st(NULL, st);
	c->exp_s = pl_now_us() / 1000000 + ttl;
	char tok[PL_TOKEN_CHARS_MAX + 1];
	st = pl_token_mint(c, sk, tok, sizeof(tok));
	sodium_memzero(sk, sizeof(sk));
	if (st != PL_OK)
		return ctl_fail_st(NULL, st);
	printf("%s\n", tok);
	return 0;
}

int ctl_token(const ctl_args *a)
{
	if (!ctl_args_check(a, "key,user,role,ttl,room", 0, 0))
		return ctl_usage();
	const char *key = ctl_opt(a, "key"), *user = ctl_opt(a, "user");
	const char *role = ctl_opt(a, "role"), *room = ctl_opt(a, "room");
	uint64_t ttl = TTL_S_DEFAULT;
	if (key == NULL || user == NULL || role == NULL ||
	    !ctl_opt_u64(a, "ttl", &ttl) || ttl == 0 || ttl > INT32_MAX)
		return ctl_usage();
	pl_claims c = {0};
	c.role = pl_role_parse(role);
	if (c.role <= 0)
		return ctl_fail("bad_request", "unknown role");
	if (strlen(user) > PL_USER_CHARS_MAX)
		return ctl_fail("bad_request", "user id too long");
	snprintf(c.user, sizeof(c.user), "%s", user);
	uint64_t rid;
	if (room != NULL && pl_room_parse(room, &rid) != PL_OK)
		return ctl_fail("bad_request", "room id is not 16 hex digits");
	snprintf(c.room, sizeof(c.room), "%s", room ? room : "");
	return mint(key, &c, (int64_t)ttl);
}

/* ------------------------------------------------------------------ */
/* Gateway commands. */

int ctl_status(parley_conn *c, const ctl_args *a)
{
	Parley__ServerFrame *r = NULL;
	pl_status st = parley_status(c, REQUEST_TIMEOUT_MS, &r);
	if (st != PL_OK)
		return ctl_fail_st(c, st);
	if (ctl_opt(a, "json") != NULL)
		ctl_json_status(r->status);
	else
		ctl_print_status(r->status);
	parley_frame_free(r);
	return 0;
}

/* parleyctl group status: the gateway asks every replica itself. */
int ctl_group(const ctl_args *a)
{
	const char *sub = a->npos > 0 ? a->pos[0] : "";
	if (strcmp(sub, "status") != 0 ||
	    !ctl_args_check(a, GW_OPTS "json", 1, 1))
		return ctl_usage();
	parley_conn *c = NULL;
	int rc = ctl_open(a, &c, NULL);
	if (rc != 0)
		return rc;
	Parley__ServerFrame *r = NULL;
	pl_status st = parley_status(c, REQUEST_TIMEOUT_MS, &r);
	if (st != PL_OK) {
		rc = ctl_fail_st(c, st);
	} else if (ctl_opt(a, "json") != NULL) {
		ctl_json_group_status(r->status);
	} else {
		ctl_print_group_status(r->status);
	}
	parley_frame_free(r);
	parley_close(c);
	return rc;
}

int ctl_report(parley_conn *c, const ctl_args *a)
{
	uint64_t days = 0;
	if (!ctl_opt_u64(a, "days", &days) || days > PL_REPORT_DAYS_MAX)
		return ctl_fail("bad_request", "--days wants a number <= 366");
	Parley__ServerFrame *r = NULL;
	pl_status st = parley_report(c, (uint32_t)days, REQUEST_TIMEOUT_MS, &r);
	if (st != PL_OK)
		return ctl_fail_st(c, st);
	ctl_print_report(r->report, ctl_opt(a, "json") != NULL);
	parley_frame_free(r);
	return 0;
}

int ctl_ping(parley_conn *c)
{
	int64_t rtt, srv;
	pl_status st = parley_ping(c, REQUEST_TIMEOUT_MS, &rtt, &srv);
	if (st != PL_OK)
		return ctl_fail_st(c, st);
	printf("pong rtt=%.3fms\n", (double)rtt / 1e3);
	return 0;
}
