/*
 * main.c - parley-broker: reads the node's config (INI file, then flags),
 * opens the shard group's store, serves gateways until SIGINT or SIGTERM.
 */
#include <getopt.h>
#include <ini.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>

#include "broker/broker.h"

void brk_config_defaults(brk_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "broker-1");
	snprintf(c->listen, sizeof(c->listen), "tcp://127.0.0.1:7401");
	snprintf(c->http, sizeof(c->http), "127.0.0.1:7402");
	snprintf(c->data_dir, sizeof(c->data_dir), "./data/broker-1");
	c->group = 1;
	c->map_bytes = 1ull << 30;
	c->sync = true;
	c->sync_interval_ms = 100;
	c->compress_bytes_min = 512;
	c->dedup_window = 10000;
	c->gateway_events_max = 65536;
	c->gateway_idle_ms = 30000;
}

static pl_status set_u64(const char *v, uint64_t min, uint64_t max,
    uint64_t *out)
{
	char *end;
	unsigned long long x = strtoull(v, &end, 10);
	if (*v == '\0' || *end != '\0' || x < min || x > max)
		return PL_E_CONFIG;
	*out = x;
	return PL_OK;
}

/* One key of [broker]; strings bounded by their fields. */
static pl_status config_set(brk_config *c, const char *k, const char *v)
{
	uint64_t x = 0;
	pl_status st = PL_OK;
	if (strcmp(k, "id") == 0)
		snprintf(c->id, sizeof(c->id), "%s", v);
	else if (strcmp(k, "listen") == 0)
		snprintf(c->listen, sizeof(c->listen), "%s", v);
	else if (strcmp(k, "http") == 0)
		snprintf(c->http, sizeof(c->http), "%s", v);
	else if (strcmp(k, "data") == 0)
		snprintf(c->data_dir, sizeof(c->data_dir), "%s", v);
	else if (strcmp(k, "durability") == 0) {
		if (strcmp(v, "sync") != 0 && strcmp(v, "relaxed") != 0)
			return PL_E_CONFIG;
		c->sync = strcmp(v, "sync") == 0;
	} else if (strcmp(k, "group") == 0) {
		if ((st = set_u64(v, 1, 65535, &x)) == PL_OK)
			c->group = (uint16_t)x;
	} else if (strcmp(k, "map_size_mb") == 0) {
		if ((st = set_u64(v, 1, 1u << 24, &x)) == PL_OK)
			c->map_bytes = x << 20;
	} else if (strcmp(k, "sync_interval_ms") == 0) {
		if ((st = set_u64(v, 1, 60000, &x)) == PL_OK)
			c->sync_interval_ms = (uint32_t)x;
	} else if (strcmp(k, "compress_bytes_min") == 0) {
		if ((st = set_u64(v, 0, 1u << 20, &x)) == PL_OK)
			c->compress_bytes_min = (uint32_t)x;
	} else if (strcmp(k, "dedup_window") == 0) {
		if ((st = set_u64(v, 0, 1u << 24, &x)) == PL_OK)
			c->dedup_window = (uint32_t)x;
	} else if (strcmp(k, "gateway_events_max") == 0) {
		if ((st = set_u64(v, 16, 1u << 24, &x)) == PL_OK)
			c->gateway_events_max = (uint32_t)x;
	} else if (strcmp(k, "gateway_idle_ms") == 0) {
		if ((st = set_u64(v, 100, 3600000, &x)) == PL_OK)
			c->gateway_idle_ms = (uint32_t)x;
	} else {
		return PL_E_CONFIG;
	}
	return st;
}

static int ini_cb(void *user, const char *section, const char *name,
    const char *value)
{
	brk_config *c = user;
	if (strcmp(section, "log") == 0) {
		int lvl = pl_log_level_parse(value);
		if (lvl < 0)
			return 0;
		pl_log_set_level(strcmp(name, "level") == 0 ? NULL : name, lvl);
		return 1;
	}
	if (strcmp(section, "broker") != 0)
		return 1; /* other sections belong to other components */
	if (config_set(c, name, value) != PL_OK) {
		PL_ERROR("broker", "event=bad_config key=%s value=\"%s\"", name,
		    value);
		return 0;
	}
	return 1;
}

pl_status brk_config_load(brk_config *c, const char *path)
{
	int rc = ini_parse(path, ini_cb, c);
	if (rc != 0) {
		PL_ERROR("broker", "event=config_failed file=%s line=%d", path,
		    rc);
		return PL_E_CONFIG;
	}
	return PL_OK;
}

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
			if (config_set(c, key, eq + 1) != PL_OK) {
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
	sigset_t sigs;
	int sig;

	const char *spec = getenv("PARLEY_LOG");
	if (spec != NULL)
		pl_log_configure(spec);
	brk_config_defaults(&cfg);
	if (metrics == NULL || parse_args(&cfg, argc, argv) != PL_OK)
		return 2;
	/* Signals are taken synchronously by main; every other thread
	 * (group, nng's) inherits the blocked mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	pl_metrics_init(metrics);
	pl_status st = brk_group_new(&cfg, metrics, &g);
	if (st == PL_OK)
		st = brk_net_start(&cfg, g, metrics, &net);
	if (st == PL_OK)
		st = brk_group_start(g, net);
	if (st != PL_OK) {
		PL_ERROR("broker", "event=start_failed err=\"%s\"",
		    pl_strerror(st));
		brk_net_stop(net);
		brk_group_free(g);
		pl_metrics_fini(metrics);
		free(metrics);
		return 1;
	}
	PL_INFO("broker", "event=started id=%s group=%u pid=%d", cfg.id,
	    cfg.group, (int)getpid());
	sigwait(&sigs, &sig);
	PL_INFO("broker", "event=stopping signal=%d", sig);
	brk_group_stop(g); /* no more replies through net */
	brk_net_stop(net);  /* no more submissions to the group */
	brk_group_free(g);
	pl_metrics_fini(metrics);
	free(metrics);
	return 0;
}
