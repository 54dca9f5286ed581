/*
 * bench.h - what parley-bench's files share: the modes (load.c publishes
 * and subscribes, fsync.c measures the disk, idle.c holds connections),
 * token minting from a key file, and the percentile report of a pl_hist.
 * Everything is bounded: counts by *_MAX constants, time by --duration.
 */
#ifndef PARLEY_BENCH_H
#define PARLEY_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "client/parley.h"

/* Loopback load generation: beyond these the client machine, not the
 * broker, is what gets measured. */
#define BENCH_CONNECTIONS_MAX 1024
#define BENCH_ROOMS_MAX 100000
#define BENCH_DURATION_S_MAX 3600
#define BENCH_IDLE_CONNECTIONS_MAX 200000
#define BENCH_FSYNC_COUNT_MAX 1000000
#define BENCH_FSYNC_SIZE_MAX (16u * 1024 * 1024)
/* Body header: magic + intended send time (pl_mono_us), so a subscriber
 * in the same process measures publish->deliver on the same clock. */
#define BENCH_BODY_MAGIC 0x504c4231u /* "PLB1" */
#define BENCH_BODY_HEADER_BYTES 16
#define BENCH_CONNECT_TIMEOUT_MS 5000
#define BENCH_REQUEST_TIMEOUT_MS 10000

/* A signing key loaded from a key file (pl_keyfile_load). */
typedef struct bench_key {
	char tenant[PL_TENANT_CHARS_MAX + 1];
	char key_id[PL_KEY_ID_CHARS_MAX + 1];
	uint8_t sk[64];
} bench_key;

pl_status bench_key_load(const char *path, bench_key *k);
/* A whole decimal number in [lo, hi]; *out written only on success. */
bool bench_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out);
/* Mints a token for user/role valid for ttl_s into out (cap bytes). */
pl_status bench_token(const bench_key *k, const char *user, int role,
    int64_t ttl_s, char *out, size_t cap);
/* Connects and says hello; on success *out is owned by the caller. */
pl_status bench_open(const char *url, const char *token,
    const parley_opts *opts, parley_conn **out, parley_welcome *w);

/* Prints "name p50 p99 p99.9 max count" in milliseconds. */
void bench_hist_row(FILE *f, const char *name, const pl_hist *h);
/* Writes "name":{"p50_us":..,"p99_us":..,"p999_us":..,"max_us":..,
 * "count":..} */
void bench_hist_json(FILE *f, const char *name, const pl_hist *h);

/* Modes; argv starts after the mode word (load: all of argv). */
int bench_load_main(int argc, char **argv);
int bench_fsync_main(int argc, char **argv);
int bench_idle_main(int argc, char **argv);

#endif /* PARLEY_BENCH_H */
