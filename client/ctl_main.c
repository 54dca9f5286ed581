/*
 * ctl_main.c - parleyctl, the operator and developer CLI: key and token
 * tools that work offline, and one subcommand per client operation over
 * libparley.
 * Every command exits 0 on success; failures print
 * "error: <code>: <message>" on stderr and exit 1 (2 for usage errors).
 *
 * This file holds main, the command line's parsing and checking, the
 * error reports, opening a gateway connection and the dispatch; the
 * commands and their output are in the files ctl.h lists.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <sodium.h>

#include "client/ctl.h"
#include "proto/nng_close.h"

#define URL_DEFAULT "tcp://127.0.0.1:7100"
#define CONNECT_TIMEOUT_MS 5000

/* Options that take no value. */
static bool is_flag(const char *name)
{
	return strcmp(name, "json") == 0 || strcmp(name, "insecure") == 0;
}

int ctl_usage(void)
{
	fputs("usage: parleyctl COMMAND [options]\n"
	      "  keygen --tenant T --key-id K --out FILE\n"
	      "  token --key FILE --user U --role R [--ttl S] [--room ID]\n"
	      "  room create [--key IDEMPOTENCY] [--meta k=v]...\n"
	      "  room join|leave|info ROOM [--json]\n"
	      "  room close ROOM [--reason R]\n"
	      "  room list\n"
	      "  publish ROOM TEXT [--id CLIENT_MSG_ID] "
	      "[--kind text|event|system]\n"
	      "  subscribe ROOM [--since N] [--count N] [--timeout-ms MS]\n"
	      "  history ROOM [--before N|--after N] [--limit N]\n"
	      "  typing ROOM | read ROOM SEQ | presence ROOM\n"
	      "  status [--json] | ping\n"
	      "  group status [--json]   (every replica: role, term, "
	      "commit, applied, lag)\n"
	      "  report [--days N] [--json]   (tenant statistics per day)\n"
	      "cluster map commands take --meta ADDR[,ADDR] (env PARLEY_META);\n"
	      "changes also --secret FILE (env PARLEY_SECRET_FILE):\n"
	      "  cluster map\n"
	      "  broker add --node N --name NAME --listen ADDR --peer ADDR\n"
	      "  cluster status   (every broker and group: leader, term, "
	      "lag, rooms, disk)\n"
	      "  broker drain --node N [--keep-replicas]   (moves its "
	      "replicas off)\n"
	      "  broker activate|remove|prepare-restart --node N\n"
	      "  replica move GROUP --from N --to N [--timeout S]\n"
	      "  leader rebalance [--avoid N[,N]] [--timeout S]\n"
	      "  group add [--id N] [--replicas R] [--weight W]\n"
	      "  group drain|undrain ID [--weight W] | group remove ID\n"
	      "  tenant add NAME [--retention-days D] [--connections-max N]\n"
	      "      [--publish-per-sec N] [--rooms-open-max N]\n"
	      "  key add TENANT --key-id K --public BASE64 | "
	      "key revoke TENANT K\n"
	      "gateway commands take --url URL (env PARLEY_URL, "
	      "default " URL_DEFAULT ") and --token TOKEN (env PARLEY_TOKEN);\n"
	      "tls+tcp:// and wss:// URLs verify the gateway with --ca FILE "
	      "(env PARLEY_CA) [--server-name NAME] or skip it with "
	      "--insecure\n",
	    stderr);
	return EXIT_USAGE;
}

int ctl_fail(const char *code, const char *msg)
{
	fprintf(stderr, "error: %s: %s\n", code, msg);
	return EXIT_FAIL;
}

/* Reports a failed call on c (may be NULL) with status st. */
int ctl_fail_st(parley_conn *c, pl_status st)
{
	int code = pl_status_to_code(st);
	const char *msg = "";
	if (c != NULL)
		msg = parley_last_error(c, &code);
	if (msg[0] == '\0')
		msg = pl_strerror(st);
	if (code == 0)
		code = pl_status_to_code(st);
	return ctl_fail(pl_code_name(code), msg);
}

static bool args_parse(int argc, char **argv, ctl_args *a)
{
	*a = (ctl_args){0};
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];
		if (strncmp(s, "--", 2) != 0 || s[2] == '\0') {
			if (a->npos == POS_MAX)
				return false;
			a->pos[a->npos++] = s;
			continue;
		}
		if (a->nopts == ARGS_MAX)
			return false;
		ctl_kv *o = &a->opts[a->nopts++];
		o->key = s + 2;
		if (!is_flag(o->key)) {
			if (i + 1 >= argc)
				return false;
			o->value = argv[++i];
		}
	}
	return true;
}

/* Every option given must be in allowed ("url,token,json"). */
bool ctl_args_check(
    const ctl_args *a, const char *allowed, int npos_min, int npos_max)
{
	if (a->npos < npos_min || a->npos > npos_max)
		return false;
	for (int i = 0; i < a->nopts; i++) {
		const char *p = strstr(allowed, a->opts[i].key);
		size_t n = strlen(a->opts[i].key);
		bool ok = false;
		while (p != NULL && !ok) {
			ok = (p == allowed || p[-1] == ',') &&
			     (p[n] == ',' || p[n] == '\0');
			p = strstr(p + 1, a->opts[i].key);
		}
		if (!ok)
			return false;
	}
	return true;
}

const char *ctl_opt(const ctl_args *a, const char *key)
{
	for (int i = a->nopts - 1; i >= 0; i--) {
		if (strcmp(a->opts[i].key, key) == 0)
			return a->opts[i].value ? a->opts[i].value : "";
	}
	return NULL;
}

bool ctl_parse_u64(const char *s, uint64_t *out)
{
	if (s == NULL || *s == '\0' || *s == '-')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
}

/* An optional numeric option: absent leaves *out, malformed is false. */
bool ctl_opt_u64(const ctl_args *a, const char *key, uint64_t *out)
{
	const char *v = ctl_opt(a, key);
	return v == NULL || ctl_parse_u64(v, out);
}

int ctl_open(const ctl_args *a, parley_conn **out, parley_welcome *w)
{
	const char *url = ctl_opt(a, "url"), *tok = ctl_opt(a, "token");
	if (url == NULL)
		url = getenv("PARLEY_URL");
	if (url == NULL)
		url = URL_DEFAULT;
	if (tok == NULL)
		tok = getenv("PARLEY_TOKEN");
	if (tok == NULL || *tok == '\0')
		return ctl_fail(
		    "unauthorized", "no token (--token or PARLEY_TOKEN)");
	/* TLS (tls+tcp://, wss://): verify against --ca or $PARLEY_CA. */
	parley_opts o = {0};
	o.tls_ca_file =
	    ctl_opt(a, "ca") ? ctl_opt(a, "ca") : getenv("PARLEY_CA");
	o.tls_insecure = ctl_opt(a, "insecure") != NULL;
	o.tls_server_name = ctl_opt(a, "server-name")
	                        ? ctl_opt(a, "server-name")
	                        : getenv("PARLEY_TLS_SERVER_NAME");
	parley_conn *c;
	pl_status st = parley_connect(url, CONNECT_TIMEOUT_MS, &o, &c);
	if (st != PL_OK) {
		fprintf(stderr, "error: %s: cannot connect to %s: %s\n",
		    pl_code_name(pl_status_to_code(st)), url, pl_strerror(st));
		return EXIT_FAIL;
	}
	st = parley_hello(c, tok, REQUEST_TIMEOUT_MS, w);
	if (st != PL_OK) {
		int rc = ctl_fail_st(c, st);
		parley_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

typedef struct gw_cmd {
	const char *name;
	const char *opts;
	int npos_min, npos_max;
} gw_cmd;

static const gw_cmd GW_CMDS[] = {
    {"publish", GW_OPTS "id,kind", 2, 2},
    {"subscribe", GW_OPTS "since,count,timeout-ms", 1, 1},
    {"history", GW_OPTS "before,after,limit", 1, 1},
    {"typing", GW_OPTS, 1, 1},
    {"read", GW_OPTS, 2, 2},
    {"presence", GW_OPTS, 1, 1},
    {"status", GW_OPTS "json", 0, 0},
    {"report", GW_OPTS "days,json", 0, 0},
    {"ping", GW_OPTS, 0, 0},
};

static int gw_dispatch(
    const char *cmd, parley_conn *c, const ctl_args *a, uint32_t idle_ms)
{
	if (strcmp(cmd, "publish") == 0)
		return ctl_publish(c, a);
	if (strcmp(cmd, "subscribe") == 0)
		return ctl_subscribe(c, a, idle_ms);
	if (strcmp(cmd, "history") == 0)
		return ctl_history(c, a);
	if (strcmp(cmd, "presence") == 0)
		return ctl_presence(c, a);
	if (strcmp(cmd, "status") == 0)
		return ctl_status(c, a);
	if (strcmp(cmd, "ping") == 0)
		return ctl_ping(c);
	if (strcmp(cmd, "report") == 0)
		return ctl_report(c, a);
	return ctl_typing_read(cmd, c, a);
}

static int cmd_gateway(const char *cmd, const ctl_args *a)
{
	const gw_cmd *g = NULL;
	for (size_t i = 0; i < PL_ARRAY_LEN(GW_CMDS); i++) {
		if (strcmp(GW_CMDS[i].name, cmd) == 0)
			g = &GW_CMDS[i];
	}
	if (g == NULL || !ctl_args_check(a, g->opts, g->npos_min, g->npos_max))
		return ctl_usage();
	parley_conn *c = NULL;
	parley_welcome w;
	int rc = ctl_open(a, &c, &w);
	if (rc != 0)
		return rc;
	rc = gw_dispatch(cmd, c, a, w.idle_ms);
	parley_close(c);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return ctl_usage();
	if (sodium_init() < 0)
		return ctl_fail("internal", "libsodium failed to initialise");
	pl_log_set_level(NULL, PL_LOG_WARN);
	const char *cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
	    strcmp(cmd, "help") == 0) {
		ctl_usage();
		return 0;
	}
	ctl_args a;
	if (!args_parse(argc - 2, argv + 2, &a))
		return ctl_usage();
	if (strcmp(cmd, "keygen") == 0)
		return ctl_keygen(&a);
	if (strcmp(cmd, "token") == 0)
		return ctl_token(&a);
	if (strcmp(cmd, "room") == 0)
		return ctl_room(&a);
	if (strcmp(cmd, "group") == 0 &&
	    (a.npos == 0 || strcmp(a.pos[0], "status") == 0))
		return ctl_group(&a);
	if (strcmp(cmd, "group") == 0 || strcmp(cmd, "cluster") == 0 ||
	    strcmp(cmd, "broker") == 0 || strcmp(cmd, "tenant") == 0 ||
	    strcmp(cmd, "key") == 0 || strcmp(cmd, "replica") == 0 ||
	    strcmp(cmd, "leader") == 0) {
		int rc = ctl_map_cmd(cmd, &a);
		/* The map commands open and close many sockets; nng frees a
		 * closed socket's pipes on its own threads later, so without
		 * this a leak checker counts them at exit. A close that was
		 * abandoned (proto/nng_close.c) would make nng_fini wait for
		 * it forever: then exit without. */
		if (!pl_nng_close_abandoned())
			nng_fini();
		return rc;
	}
	return cmd_gateway(cmd, &a);
}
