/*
 * main.c - parley-broker: reads the node's config (INI file, then flags),
 * starts the host (host.h: the groups it serves, their transports) and
 * serves until SIGINT or SIGTERM.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>

#include "broker/broker.h"
#include "proto/nng_close.h"

static void usage(void)
{
	fprintf(stderr,
	    "usage: parley-broker [-c FILE] [--KEY=VALUE ...]\n"
	    "  keys of [broker]: id listen http data group durability\n"
	    "  map_size_mb sync_interval_ms compress_bytes_min dedup_window\n"
	    "  gateway_events_max gateway_idle_ms\n");
}

/* Flags: -c FILE, then --key=value for any [broker] key. */
static pl_status parse_args(brk_config *c, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-c") == 0 && i + 1 < argc) {
			if (brk_config_load(c, argv[++i]) != PL_OK)
				return PL_E_CONFIG;
		} else if (strncmp(a, "--", 2) == 0 && strchr(a, '=') != NULL) {
			char key[64];
			const char *eq = strchr(a, '=');
			size_t kl = (size_t)(eq - a - 2);
			if (kl >= sizeof(key))
				return PL_E_CONFIG;
			memcpy(key, a + 2, kl);
			key[kl] = '\0';
			for (char *p = key; *p; p++)
				if (*p == '-')
					*p = '_';
			if (brk_config_set(c, key, eq + 1) != PL_OK) {
				fprintf(stderr, "bad option %s\n", a);
				return PL_E_CONFIG;
			}
		} else {
			usage();
			return PL_E_CONFIG;
		}
	}
	return PL_OK;
}

int main(int argc, char **argv)
{
	brk_config cfg;
	pl_metrics *metrics = calloc(1, sizeof(*metrics));
	sigset_t sigs;
	int sig;

	const char *spec = getenv("PARLEY_LOG");
	if (spec != NULL)
		pl_log_configure(spec);
	brk_config_defaults(&cfg);
	if (metrics == NULL || parse_args(&cfg, argc, argv) != PL_OK ||
	    brk_config_check(&cfg) != PL_OK) {
		free(metrics);
		return 2;
	}
	/* Signals are taken synchronously by main; every other thread
	 * (group, nng's) inherits the blocked mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	pl_crash_install();
	pl_metrics_init(metrics);
	brk_host *h = NULL;
	pl_status st = brk_host_start(&cfg, metrics, &h);
	if (st != PL_OK) {
		PL_ERROR(
		    "broker", "event=start_failed err=\"%s\"", pl_strerror(st));
		pl_metrics_fini(metrics);
		free(metrics);
		return 1;
	}
	PL_INFO("broker",
	    "event=started id=%s group=%u node=%llu replicas=%d meta=%d "
	    "pid=%d",
	    cfg.id, cfg.group, (unsigned long long)cfg.node, cfg.nreplicas,
	    cfg.nmeta, (int)getpid());
	sigwait(&sigs, &sig);
	PL_INFO("broker", "event=stopping signal=%d", sig);
	pl_stop_deadline_arm("broker", PL_STOP_DEADLINE_MS);
	/* Leaderships first (bounded well inside the deadline), then the
	 * orderly stop. */
	brk_host_handoff(h);
	brk_host_stop(h);
	pl_metrics_fini(metrics);
	free(metrics);
	PL_INFO("broker", "event=stopped");
	if (pl_nng_close_abandoned()) {
		fflush(NULL);
		_exit(0);
	}
	return 0;
}
