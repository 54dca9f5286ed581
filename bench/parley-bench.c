/*
 * parley-bench.c - entry point and shared helpers of the load generator:
 * picks the mode (publish/subscribe load by default, `fsync`, `idle`),
 * loads keys, mints tokens and prints percentile rows.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bench/bench.h"
#include "proto/token.h"

pl_status bench_key_load(const char *path, bench_key *k)
{
	bench_key r = {0};
	pl_status st = pl_keyfile_load(path, r.tenant, sizeof(r.tenant),
	    r.key_id, sizeof(r.key_id), r.sk, NULL);
	if (st != PL_OK)
		return st;
	*k = r;
	sodium_memzero(r.sk, sizeof(r.sk));
	return PL_OK;
}

pl_status bench_token(const bench_key *k, const char *user, int role,
    int64_t ttl_s, char *out, size_t cap)
{
	pl_claims c = {0};
	snprintf(c.tenant, sizeof(c.tenant), "%s", k->tenant);
	snprintf(c.key_id, sizeof(c.key_id), "%s", k->key_id);
	snprintf(c.user, sizeof(c.user), "%s", user);
	c.role = role;
	c.exp_s = pl_now_us() / 1000000 + ttl_s;
	return pl_token_mint(&c, k->sk, out, cap);
}

bool bench_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || s[0] == '-' || v < lo ||
	    v > hi)
		return false;
	*out = (uint32_t)v;
	return true;
}

pl_status bench_open(const char *url, const char *token,
    const parley_opts *opts, parley_conn **out, parley_welcome *w)
{
	/* TLS URLs (tls+tcp://, wss://) verify the gateway as parleyctl
	 * does: PARLEY_CA and PARLEY_TLS_SERVER_NAME from the environment. */
	parley_opts o = opts != NULL ? *opts : (parley_opts){0};
	o.tls_ca_file = getenv("PARLEY_CA");
	o.tls_server_name = getenv("PARLEY_TLS_SERVER_NAME");
	parley_conn *c;
	pl_status st = parley_connect(url, BENCH_CONNECT_TIMEOUT_MS, &o, &c);
	if (st != PL_OK)
		return st;
	st = parley_hello(c, token, BENCH_REQUEST_TIMEOUT_MS, w);
	if (st != PL_OK) {
		fprintf(stderr, "error: %s: hello: %s\n",
		    pl_code_name(pl_status_to_code(st)),
		    parley_last_error(c, NULL));
		parley_close(c);
		return st;
	}
	*out = c;
	return PL_OK;
}

/* Percentiles are bucket upper bounds; never report one above the max. */
static uint64_t pct(const pl_hist *h, double p)
{
	uint64_t v = pl_hist_percentile(h, p);
	uint64_t mx = atomic_load(&h->max);
	return v < mx ? v : mx;
}

void bench_hist_row(FILE *f, const char *name, const pl_hist *h)
{
	uint64_t n = pl_hist_count(h);
	if (n == 0) {
		fprintf(f, "%-18s %10s %10s %10s %10s %10d\n", name, "-", "-",
		    "-", "-", 0);
		return;
	}
	fprintf(f, "%-18s %10.3f %10.3f %10.3f %10.3f %10llu\n", name,
	    (double)pct(h, 50) / 1e3, (double)pct(h, 99) / 1e3,
	    (double)pct(h, 99.9) / 1e3, (double)atomic_load(&h->max) / 1e3,
	    (unsigned long long)n);
}

void bench_hist_json(FILE *f, const char *name, const pl_hist *h)
{
	fprintf(f,
	    "\"%s\":{\"p50_us\":%llu,\"p99_us\":%llu,\"p999_us\":%llu,"
	    "\"max_us\":%llu,\"count\":%llu}",
	    name, (unsigned long long)pct(h, 50),
	    (unsigned long long)pct(h, 99), (unsigned long long)pct(h, 99.9),
	    (unsigned long long)atomic_load(&h->max),
	    (unsigned long long)pl_hist_count(h));
}

static int usage(void)
{
	fputs("usage:\n"
	      "  parley-bench --url URL --key KEYFILE [--connections N] "
	      "[--rooms R]\n"
	      "      [--size BYTES] [--rate MSGS_PER_SEC] [--duration S] "
	      "[--warmup S]\n"
	      "      [--subscribers|--no-subscribers] [--rooms-per-sub N] "
	      "[--inflight K] [--json]\n"
	      "  parley-bench fsync --dir DIR [--count N] [--size BYTES] "
	      "[--json]\n"
	      "  parley-bench idle --url URL --key KEYFILE --connections N "
	      "--hold S\n"
	      "      [--gateway-pid PID] [--json]\n",
	    stderr);
	return 2;
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0) {
		fprintf(stderr, "error: internal: libsodium init failed\n");
		return 1;
	}
	pl_log_set_level(NULL, PL_LOG_WARN);
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage();
		return 0;
	}
	if (strcmp(argv[1], "fsync") == 0)
		return bench_fsync_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "idle") == 0)
		return bench_idle_main(argc - 1, argv + 1);
	if (argv[1][0] != '-')
		return usage();
	return bench_load_main(argc, argv);
}
