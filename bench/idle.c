/*
 * idle.c - `parley-bench idle`: opens N connections that say hello and
 * subscribe to nothing, and holds them for --hold seconds, so the
 * gateway's memory per idle connection can be read (--gateway-pid reads
 * its VmRSS before and after). Pings keep connections under the server's
 * idle limit. Raises RLIMIT_NOFILE to what the hard limit allows.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench/bench.h"

#define IDLE_THREADS 8      /* parallel dialers; hello is a round trip */
#define IDLE_FDS_SPARE 64   /* stdio, nng's own descriptors */
#define IDLE_SETTLE_MS 1000 /* let the gateway finish accepting */
#define TOKEN_TTL_S (BENCH_DURATION_S_MAX * 2)

typedef struct idle_cfg {
	const char *url, *keyfile;
	uint32_t connections;
	uint32_t hold_s;
	long gateway_pid;
	bool json;
} idle_cfg;

typedef struct idle_run {
	const idle_cfg *cfg;
	bench_key key;
	parley_conn **conns;
	int64_t hold_end; /* pl_mono_us; set before holders start */
	uint32_t ping_ms; /* 0: no keepalive needed */
	_Atomic uint32_t opened, failed;
	_Atomic uint32_t idle_ms; /* from a welcome */
} idle_run;

typedef struct idle_thread {
	idle_run *run;
	uint32_t index;
	pthread_t thread;
} idle_thread;

static const struct option IDLE_OPTS[] = {
    {"url", required_argument, NULL, 'u'},
    {"key", required_argument, NULL, 'k'},
    {"connections", required_argument, NULL, 'c'},
    {"hold", required_argument, NULL, 'h'},
    {"gateway-pid", required_argument, NULL, 'p'},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
};

static bool idle_opt(idle_cfg *c, int ch, const char *v)
{
	uint32_t n = 0;
	switch (ch) {
	case 'u':
		c->url = v;
		return true;
	case 'k':
		c->keyfile = v;
		return true;
	case 'j':
		c->json = true;
		return true;
	case 'c':
		if (!bench_parse_u32(v, 1, BENCH_IDLE_CONNECTIONS_MAX, &n))
			return false;
		c->connections = n;
		return true;
	case 'h':
		if (!bench_parse_u32(v, 0, BENCH_DURATION_S_MAX, &n))
			return false;
		c->hold_s = n;
		return true;
	case 'p':
		if (!bench_parse_u32(v, 1, 1u << 22, &n))
			return false;
		c->gateway_pid = (long)n;
		return true;
	default:
		return false;
	}
}

static bool idle_parse(int argc, char **argv, idle_cfg *c)
{
	*c = (idle_cfg){.connections = 1000, .hold_s = 10};
	optind = 1;
	int ch;
	while ((ch = getopt_long(argc, argv, "", IDLE_OPTS, NULL)) != -1) {
		if (!idle_opt(c, ch, optarg))
			return false;
	}
	return optind == argc && c->url != NULL && c->keyfile != NULL;
}

/* Raises the soft descriptor limit; returns how many connections fit. */
static uint32_t raise_nofile(uint32_t want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return want;
	rlim_t need = (rlim_t)want + IDLE_FDS_SPARE;
	if (rl.rlim_cur < need) {
		rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur >= need)
		return want;
	uint64_t fit =
	    rl.rlim_cur > IDLE_FDS_SPARE ? rl.rlim_cur - IDLE_FDS_SPARE : 0;
	fprintf(stderr,
	    "warning: RLIMIT_NOFILE allows %" PRIu64 " connections, not %u\n",
	    fit, want);
	return (uint32_t)fit;
}

/* VmRSS of pid in KiB, or -1. */
static long rss_kib(long pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	FILE *f = fopen(path, "r");
	long kib = -1;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			kib = strtol(line + 6, NULL, 10);
	}
	fclose(f);
	return kib;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static void *idle_open_main(void *arg)
{
	idle_thread *t = arg;
	idle_run *r = t->run;
	for (uint32_t i = t->index; i < r->cfg->connections;
	     i += IDLE_THREADS) {
		char user[48], tok[PL_TOKEN_CHARS_MAX + 1];
		snprintf(user, sizeof(user), "idle-%u", i);
		parley_welcome w;
		pl_status st = bench_token(&r->key, user,
		    PARLEY__ROLE__CUSTOMER, TOKEN_TTL_S, tok, sizeof(tok));
		if (st == PL_OK)
			st = bench_open(
			    r->cfg->url, tok, NULL, &r->conns[i], &w);
		if (st != PL_OK) {
			atomic_fetch_add(&r->failed, 1);
			continue;
		}
		atomic_store(&r->idle_ms, w.idle_ms);
		atomic_fetch_add(&r->opened, 1);
	}
	return NULL;
}

/* Holds this thread's share, pinging often enough to stay under the
 * server's idle limit. */
static void *idle_hold_main(void *arg)
{
	idle_thread *t = arg;
	idle_run *r = t->run;
	for (;;) {
		int64_t left = (r->hold_end - pl_mono_us()) / 1000;
		if (left <= 0)
			return NULL;
		if (r->ping_ms == 0) {
			sleep_ms(left);
			continue;
		}
		for (uint32_t i = t->index; i < r->cfg->connections;
		     i += IDLE_THREADS) {
			if (r->conns[i] != NULL)
				(void)parley_ping(r->conns[i],
				    BENCH_REQUEST_TIMEOUT_MS, NULL, NULL);
		}
		left = (r->hold_end - pl_mono_us()) / 1000;
		sleep_ms(
		    left < r->ping_ms ? (left > 0 ? left : 0) : r->ping_ms);
	}
}

static void idle_threads(idle_run *r, void *(*fn)(void *))
{
	idle_thread th[IDLE_THREADS];
	for (uint32_t i = 0; i < IDLE_THREADS; i++) {
		th[i] = (idle_thread){.run = r, .index = i};
		if (pthread_create(&th[i].thread, NULL, fn, &th[i]) != 0)
			PL_ASSERT(!"thread creation at start-up");
	}
	for (uint32_t i = 0; i < IDLE_THREADS; i++)
		pthread_join(th[i].thread, NULL);
}

static void idle_report(
    const idle_run *r, double open_s, long before, long after, uint32_t closed)
{
	const idle_cfg *c = r->cfg;
	uint32_t n = atomic_load(&r->opened);
	double per = (before >= 0 && after >= 0 && n > 0)
	                 ? (double)(after - before) * 1024.0 / n
	                 : -1;
	if (c->json) {
		printf("{\"mode\":\"idle\",\"url\":\"%s\",\"requested\":%u,"
		       "\"opened\":%u,\"failed\":%u,\"open_s\":%.3f,"
		       "\"hold_s\":%u,\"closed_during_hold\":%u,"
		       "\"gateway_rss_kib_before\":%ld,"
		       "\"gateway_rss_kib_after\":%ld,"
		       "\"gateway_bytes_per_conn\":%.0f}\n",
		    c->url, c->connections, n, atomic_load(&r->failed), open_s,
		    c->hold_s, closed, before, after, per);
		return;
	}
	printf("parley-bench idle %s: opened %u of %u (failed %u) in %.2fs, "
	       "held %us, closed by server during hold: %u\n",
	    c->url, n, c->connections, atomic_load(&r->failed), open_s,
	    c->hold_s, closed);
	if (per >= 0)
		printf("gateway RSS %ld KiB -> %ld KiB: %.0f bytes per "
		       "connection\n",
		    before, after, per);
}

static void idle_execute(idle_run *r)
{
	const idle_cfg *c = r->cfg;
	long before = c->gateway_pid ? rss_kib(c->gateway_pid) : -1;
	int64_t t0 = pl_mono_us();
	idle_threads(r, idle_open_main);
	double open_s = (double)(pl_mono_us() - t0) / 1e6;
	uint32_t idle_ms = atomic_load(&r->idle_ms);
	r->ping_ms = idle_ms / 2;
	/* Settle, but not for so long that the server's idle limit fires
	 * before the first keepalive. */
	int64_t settle = IDLE_SETTLE_MS;
	if (r->ping_ms != 0 && settle > r->ping_ms / 2)
		settle = r->ping_ms / 2;
	sleep_ms(settle);
	long after = c->gateway_pid ? rss_kib(c->gateway_pid) : -1;
	r->hold_end = pl_mono_us() + (int64_t)c->hold_s * 1000000;
	idle_threads(r, idle_hold_main);
	uint32_t closed = 0;
	for (uint32_t i = 0; i < c->connections; i++) {
		if (r->conns[i] != NULL && parley_is_closed(r->conns[i]))
			closed++;
	}
	idle_report(r, open_s, before, after, closed);
}

int bench_idle_main(int argc, char **argv)
{
	idle_cfg c;
	if (!idle_parse(argc, argv, &c)) {
		fprintf(stderr, "usage: parley-bench idle --url URL --key "
		                "KEYFILE --connections N --hold S "
		                "[--gateway-pid PID] [--json]\n");
		return 2;
	}
	c.connections = raise_nofile(c.connections);
	idle_run *r = calloc(1, sizeof(*r));
	if (r == NULL || c.connections == 0)
		return 1;
	r->cfg = &c;
	r->conns = calloc(c.connections, sizeof(*r->conns));
	pl_status st =
	    r->conns ? bench_key_load(c.keyfile, &r->key) : PL_E_NOMEM;
	if (st == PL_OK)
		idle_execute(r);
	else
		fprintf(stderr, "error: %s: %s\n",
		    pl_code_name(pl_status_to_code(st)), pl_strerror(st));
	for (uint32_t i = 0; r->conns && i < c.connections; i++)
		parley_close(r->conns[i]);
	int rc = (st == PL_OK && atomic_load(&r->opened) > 0) ? 0 : 1;
	free(r->conns);
	free(r);
	return rc;
}
