/*
 * fsync.c - `parley-bench fsync`: the disk's own append + fdatasync
 * latency, the floor under a durable publish (the broker acks only after
 * its group commit's fsync). Appends --count blocks of --size bytes to a
 * scratch file in --dir, syncing each, then removes the file.
 */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"

#define FSYNC_COUNT_DEFAULT 1000
#define FSYNC_SIZE_DEFAULT 4096

typedef struct fsync_cfg {
	const char *dir;
	uint32_t count, size;
	bool json;
} fsync_cfg;

static const struct option FSYNC_OPTS[] = {
    {"dir", required_argument, NULL, 'd'},
    {"count", required_argument, NULL, 'c'},
    {"size", required_argument, NULL, 's'},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
};

static bool parse_bounded(
    const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (end == s || *end != '\0' || v < lo || v > hi)
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool fsync_parse(int argc, char **argv, fsync_cfg *c)
{
	*c = (fsync_cfg){
	    .count = FSYNC_COUNT_DEFAULT, .size = FSYNC_SIZE_DEFAULT};
	optind = 1;
	int ch;
	while ((ch = getopt_long(argc, argv, "", FSYNC_OPTS, NULL)) != -1) {
		bool ok = true;
		if (ch == 'd')
			c->dir = optarg;
		else if (ch == 'c')
			ok = parse_bounded(
			    optarg, 1, BENCH_FSYNC_COUNT_MAX, &c->count);
		else if (ch == 's')
			ok = parse_bounded(
			    optarg, 1, BENCH_FSYNC_SIZE_MAX, &c->size);
		else if (ch == 'j')
			c->json = true;
		else
			ok = false;
		if (!ok)
			return false;
	}
	return optind == argc && c->dir != NULL;
}

/* Appends and syncs count blocks; records each write+fdatasync. */
static pl_status fsync_loop(
    int fd, const fsync_cfg *c, const uint8_t *buf, pl_hist *h)
{
	for (uint32_t i = 0; i < c->count; i++) {
		int64_t t0 = pl_mono_us();
		off_t off = (off_t)i * c->size;
		size_t done = 0;
		while (done < c->size) {
			ssize_t n = pwrite(
			    fd, buf + done, c->size - done, off + (off_t)done);
			if (n <= 0)
				return PL_E_IO;
			done += (size_t)n;
		}
		if (fdatasync(fd) != 0)
			return PL_E_IO;
		pl_hist_record(h, (uint64_t)(pl_mono_us() - t0));
	}
	return PL_OK;
}

static void fsync_report(const fsync_cfg *c, const pl_hist *h, double secs)
{
	if (c->json) {
		printf("{\"mode\":\"fsync\",\"dir\":\"%s\",\"count\":%u,"
		       "\"size\":%u,\"syncs_per_s\":%.1f,",
		    c->dir, c->count, c->size, c->count / secs);
		bench_hist_json(stdout, "write_fdatasync", h);
		printf("}\n");
		return;
	}
	printf("parley-bench fsync dir=%s count=%u size=%u (%.1f syncs/s)\n",
	    c->dir, c->count, c->size, c->count / secs);
	printf("%-18s %10s %10s %10s %10s %10s\n", "latency (ms)", "p50", "p99",
	    "p99.9", "max", "count");
	bench_hist_row(stdout, "write+fdatasync", h);
}

int bench_fsync_main(int argc, char **argv)
{
	fsync_cfg c;
	if (!fsync_parse(argc, argv, &c)) {
		fprintf(stderr, "usage: parley-bench fsync --dir DIR "
		                "[--count N] [--size BYTES] [--json]\n");
		return 2;
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/parley-bench-fsync.%ld", c.dir,
	    (long)getpid());
	uint8_t *buf = malloc(c.size);
	pl_hist *h = calloc(1, sizeof(*h));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	pl_status st = (buf && h) ? PL_OK : PL_E_NOMEM;
	if (st == PL_OK && fd < 0)
		st = PL_E_IO;
	if (st == PL_OK) {
		memset(buf, 0xa5, c.size);
		int64_t t0 = pl_mono_us();
		st = fsync_loop(fd, &c, buf, h);
		if (st == PL_OK)
			fsync_report(&c, h, (double)(pl_mono_us() - t0) / 1e6);
	}
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	if (st != PL_OK)
		fprintf(stderr, "error: %s: %s: %s\n",
		    pl_code_name(pl_status_to_code(st)), path, pl_strerror(st));
	free(buf);
	free(h);
	return st == PL_OK ? 0 : 1;
}
