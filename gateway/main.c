/*
 * main.c - parley-gateway's command line: reads the INI file, applies
 * flag overrides, starts the gateway and stops it cleanly on SIGINT or
 * SIGTERM. Signals are blocked in every thread and taken with sigwait,
 * so no handler runs inside nng or the gateway.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "proto/nng_close.h"
#include "gateway/gateway.h"

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: parley-gateway [-c FILE] [options]\n"
	    "  -c, --config FILE     INI file ([gateway], [group.N], "
	    "[tenant.ID], [log])\n"
	    "  -i, --id ID           gateway instance id\n"
	    "  -t, --tcp URL         TCP listener, e.g. tcp://127.0.0.1:7100 "
	    "(\"\" disables)\n"
	    "  -H, --http HOST:PORT  HTTP + WebSocket (/ws) listener "
	    "(\"\" disables)\n"
	    "  -w, --web-root DIR    serve static files from DIR\n"
	    "  -l, --log-level LVL   debug | info | warn | error\n"
	    "  -h, --help\n");
}

static bool set_flag(char *dst, size_t cap, const char *v)
{
	if (strlen(v) >= cap)
		return false;
	strcpy(dst, v);
	return true;
}

/* Flags override the file, so the file is read first, then the flags. */
static pl_status parse_args(int argc, char **argv, gw_config *c)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"id", required_argument, NULL, 'i'},
	    {"tcp", required_argument, NULL, 't'},
	    {"http", required_argument, NULL, 'H'},
	    {"web-root", required_argument, NULL, 'w'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *spec = "c:i:t:H:w:l:h";
	int o;
	while ((o = getopt_long(argc, argv, spec, opts, NULL)) != -1) {
		if (o == 'c' && gw_config_load(c, optarg) != PL_OK)
			return PL_E_CONFIG;
		if (o == 'h') {
			usage(stdout);
			exit(0);
		}
		if (o == '?')
			return PL_E_CONFIG;
	}
	optind = 1;
	bool ok = true;
	while ((o = getopt_long(argc, argv, spec, opts, NULL)) != -1) {
		int lvl;
		switch (o) {
		case 'i':
			ok = ok && optarg[0] != '\0' &&
			     set_flag(c->id, sizeof(c->id), optarg);
			break;
		case 't':
			ok = ok && set_flag(c->tcp, sizeof(c->tcp), optarg);
			break;
		case 'H':
			ok = ok && set_flag(c->http, sizeof(c->http), optarg);
			break;
		case 'w':
			ok = ok &&
			     set_flag(c->web_root, sizeof(c->web_root), optarg);
			break;
		case 'l':
			lvl = pl_log_level_parse(optarg);
			ok = ok && lvl >= 0;
			if (lvl >= 0)
				pl_log_set_level(NULL, (pl_log_level)lvl);
			break;
		default:
			break;
		}
	}
	return ok ? PL_OK : PL_E_CONFIG;
}

static int run(const gw_config *conf, sigset_t *sigs)
{
	gw *g;
	if (gw_new(conf, &g) != PL_OK) {
		PL_ERROR(GW_MOD, "event=start_failed reason=nomem");
		return 1;
	}
	pl_status st = gw_start(g);
	if (st == PL_OK) {
		int sig = 0;
		sigwait(sigs, &sig);
		PL_INFO(GW_MOD, "event=stopping signal=%d", sig);
		pl_stop_deadline_arm(GW_MOD, PL_STOP_DEADLINE_MS);
	} else {
		PL_ERROR(GW_MOD, "event=start_failed reason=\"%s\"",
		    pl_strerror(st));
	}
	gw_stop(g);
	gw_free(g);
	if (st == PL_OK)
		PL_INFO(GW_MOD, "event=stopped");
	if (pl_nng_close_abandoned()) {
		fflush(NULL);
		_exit(st == PL_OK ? 0 : 1);
	}
	return st == PL_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
	gw_config conf;
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	/* Before any thread exists, so every thread inherits the mask. */
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	pl_crash_install();
	if (sodium_init() < 0 || gw_config_init(&conf) != PL_OK) {
		fprintf(stderr, "parley-gateway: initialisation failed\n");
		return 1;
	}
	if (parse_args(argc, argv, &conf) != PL_OK ||
	    gw_config_check(&conf) != PL_OK) {
		usage(stderr);
		gw_config_fini(&conf);
		return 2;
	}
	int rc = run(&conf, &sigs);
	gw_config_fini(&conf);
	nng_fini();
	return rc;
}
