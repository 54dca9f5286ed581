/*
 * main.c - parley-broker: reads the node's config (INI file, then flags),
 * opens the shard group's store, serves gateways until SIGINT or SIGTERM.
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
	brk_group *g = NULL;
	brk_net *net = NULL;
	brk_peers *peers = NULL;
	sigset_t sigs;
	int sig;

	const char *spec = getenv("PARLEY_LOG");
	if (spec != NULL)
		pl_log_configure(spec);
	brk_config_defaults(&cfg);
	if (metrics == NULL || parse_args(&cfg, argc, argv) != PL_OK ||
	    brk_config_check(&cfg) != PL_OK)
		return 2;
	/* Signals are taken synchronously by main; every other thread
	 * (group, nng's) inherits the blocked mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	pl_crash_install();
	pl_metrics_init(metrics);
	pl_status st = brk_group_new(&cfg, metrics, &g);
	if (st == PL_OK)
		st = brk_net_start(&cfg, brk_group_submit, g, metrics, &net);
	if (st == PL_OK && cfg.nreplicas > 1)
		st = brk_peers_start(&cfg, brk_group_submit_peer, g, &peers);
	if (st == PL_OK)
		st = brk_group_start(g, net, peers);
	if (st != PL_OK) {
		PL_ERROR(
		    "broker", "event=start_failed err=\"%s\"", pl_strerror(st));
		brk_peers_stop(peers);
		brk_net_stop(net);
		brk_group_free(g);
		pl_metrics_fini(metrics);
		free(metrics);
		return 1;
	}
	PL_INFO("broker",
	    "event=started id=%s group=%u node=%llu replicas=%d pid=%d", cfg.id,
	    cfg.group, (unsigned long long)cfg.node, cfg.nreplicas,
	    (int)getpid());
	sigwait(&sigs, &sig);
	PL_INFO("broker", "event=stopping signal=%d", sig);
	pl_stop_deadline_arm("broker", PL_STOP_DEADLINE_MS);
	brk_group_stop(g); /* no more replies through net, no more sends */
	brk_peers_stop(peers);
	brk_net_stop(net); /* no more submissions to the group */
	brk_group_free(g);
	pl_metrics_fini(metrics);
	free(metrics);
	PL_INFO("broker", "event=stopped");
	if (pl_nng_close_abandoned()) {
		fflush(NULL);
		_exit(0);
	}
	return 0;
}
