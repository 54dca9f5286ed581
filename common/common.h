/*
 * common.h - the contract of Parley's shared C code: status codes, logging,
 * clocks, CRC32C, room ids and roles, Ed25519 tokens, metrics (counters,
 * gauges, HDR-style histograms rendered as Prometheus text) and a bounded
 * multi-producer queue. Everything here is thread-safe unless it says not.
 */
#ifndef PARLEY_COMMON_H
#define PARLEY_COMMON_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

/* ------------------------------------------------------------------ */
/* Status codes: one code space for the whole project.                 */

typedef enum pl_status {
	PL_OK = 0,
	PL_E_NOMEM = -1,
	PL_E_PROTO = -2,        /* malformed frame or record */
	PL_E_TOO_LARGE = -3,    /* over a size limit */
	PL_E_NOT_FOUND = -4,
	PL_E_EXISTS = -5,
	PL_E_UNAUTHORIZED = -6, /* no, bad or expired token */
	PL_E_FORBIDDEN = -7,    /* valid token, not allowed */
	PL_E_ROOM_CLOSED = -8,
	PL_E_RATE_LIMITED = -9,
	PL_E_BACKPRESSURE = -10, /* a bounded queue is full */
	PL_E_UNAVAILABLE = -11,  /* retryable: peer down, timeout */
	PL_E_NOT_LEADER = -12,
	PL_E_CORRUPT = -13,      /* CRC mismatch or undecodable record */
	PL_E_MAP_FULL = -14,     /* LMDB map full */
	PL_E_DISK_FULL = -15,
	PL_E_IO = -16,
	PL_E_CONFIG = -17,
	PL_E_TIMEOUT = -18,
	PL_E_INTERNAL = -19,
	PL_E_BAD_REQUEST = -20,
	PL_E_AGAIN = -21,        /* need more bytes / try later */
	PL_E_CLOSED = -22,       /* connection or queue closed */
} pl_status;

/* pl_strerror returns a static, human-readable text for a status. */
const char *pl_strerror(pl_status st);

/*
 * Client-visible error codes are parley.ErrorCode (proto/parley.proto).
 * pl_status_to_code maps a status onto one (PL_OK -> 0); pl_code_name gives
 * its wire name ("bad_request", "unavailable", ...); pl_code_to_status is
 * the reverse mapping used by clients.
 */
int pl_status_to_code(pl_status st);
const char *pl_code_name(int code);
pl_status pl_code_to_status(int code);

/* ------------------------------------------------------------------ */
/* Assertions: for programmer errors and invariants only, never for bytes
 * from a socket or disk. PL_ASSERT is always on. */

void pl_assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn));
#define PL_ASSERT(e) ((e) ? (void)0 : pl_assert_fail(#e, __FILE__, __LINE__))
#ifdef PARLEY_DEBUG
#define PL_DEBUG_ASSERT(e) PL_ASSERT(e)
#else
#define PL_DEBUG_ASSERT(e) ((void)0)
#endif

#define PL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* Logging: one line per event, key=value, to stderr.
 *   ts=2026-11-21T10:00:00.123Z level=info mod=broker event=... k=v
 * Levels can be set per module. The level table is the one process-wide
 * setting in Parley; set it at start-up, before threads exist. */

typedef enum pl_log_level {
	PL_LOG_DEBUG = 0,
	PL_LOG_INFO = 1,
	PL_LOG_WARN = 2,
	PL_LOG_ERROR = 3,
	PL_LOG_OFF = 4,
} pl_log_level;

/* "debug" | "info" | "warn" | "error" | "off" -> level; -1 if unknown. */
int pl_log_level_parse(const char *s);
/* module NULL sets the default level. At most 32 modules. */
void pl_log_set_level(const char *module, pl_log_level lvl);
bool pl_log_enabled(const char *module, pl_log_level lvl);
void pl_log(pl_log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Applies a spec such as "info,broker=debug,raft=warn" (the PARLEY_LOG
 * environment variable): a bare level sets the default, module=level one
 * module. NULL or "" changes nothing; bad items are reported on stderr and
 * skipped. Call at start-up, like pl_log_set_level. */
void pl_log_configure(const char *spec);

#define PL_DEBUG(mod, ...) pl_log(PL_LOG_DEBUG, mod, __VA_ARGS__)
#define PL_INFO(mod, ...) pl_log(PL_LOG_INFO, mod, __VA_ARGS__)
#define PL_WARN(mod, ...) pl_log(PL_LOG_WARN, mod, __VA_ARGS__)
#define PL_ERROR(mod, ...) pl_log(PL_LOG_ERROR, mod, __VA_ARGS__)

/* ------------------------------------------------------------------ */
/* Crashes. */

/* Makes a crash leave evidence: raises the core file limit to its hard
 * limit and installs a handler for SIGSEGV, SIGBUS, SIGILL, SIGFPE and
 * SIGABRT that writes a backtrace to stderr (the log) and re-raises.
 * Call once, early in main, before threads start. */
void pl_crash_install(void);

/* A process stops within this long of SIGTERM or SIGINT, whatever its
 * sockets do: below the 2 s an operator's rolling restart allows, above
 * an orderly stop's usual tens of milliseconds. */
#define PL_STOP_DEADLINE_MS 1500
/* Arms the stop deadline (call when the orderly stop begins): if the
 * process is still running ms later it logs event=stop_deadline and
 * leaves with _exit(0). See common/deadline.c for why that is safe. */
void pl_stop_deadline_arm(const char *module, int ms);

/* ------------------------------------------------------------------ */
/* Clocks. */

int64_t pl_now_us(void);  /* wall clock, microseconds since the epoch */
int64_t pl_mono_us(void); /* monotonic, microseconds */

/* ------------------------------------------------------------------ */
/* CRC32C (Castagnoli), as used by every stored log entry.
 * Start with crc = 0; chain calls to cover several buffers. */
uint32_t pl_crc32c(uint32_t crc, const void *buf, size_t len);

/* ------------------------------------------------------------------ */
/* Room ids: 16-bit shard group id, 48-bit per-group counter. Rendered in
 * APIs as 16 lowercase hex digits, e.g. "0001000000000007". */

#define PL_ROOM_ID_CHARS 16
#define PL_ROOM_COUNTER_MAX ((UINT64_C(1) << 48) - 1)

static inline uint64_t pl_room_make(uint16_t group, uint64_t counter)
{
	return ((uint64_t)group << 48) | (counter & PL_ROOM_COUNTER_MAX);
}
static inline uint16_t pl_room_group(uint64_t room)
{
	return (uint16_t)(room >> 48);
}
/* out must hold PL_ROOM_ID_CHARS + 1 bytes. */
void pl_room_format(uint64_t room, char *out);
/* Exactly 16 lowercase hex digits, group != 0, counter != 0; else
 * PL_E_BAD_REQUEST. *room is written only on success. */
pl_status pl_room_parse(const char *s, uint64_t *room);
/* The rule the len bytes at s break as a room id ("must be 16 lowercase
 * hex digits, not 4 bytes", "has shard group 0", ...; a static text), or
 * NULL when they are a room id. Reads exactly len bytes: a NUL is just a
 * byte that is not a hex digit. */
const char *pl_room_rule(const char *s, size_t len);

/* ------------------------------------------------------------------ */
/* Text: every string from a socket or a token is UTF-8 without NUL. */

typedef enum pl_text_verdict {
	PL_TEXT_OK = 0,
	PL_TEXT_NUL = 1,      /* a NUL byte inside */
	PL_TEXT_BAD_UTF8 = 2, /* not well-formed UTF-8 (RFC 3629) */
} pl_text_verdict;

/* Checks the n bytes at s (no terminator needed). */
pl_text_verdict pl_text_check(const void *s, size_t n);
/* "contains a NUL byte", "is not valid UTF-8" (static). */
const char *pl_text_verdict_name(pl_text_verdict v);

/* Roles are parley.Role values. */
const char *pl_role_name(int role); /* "customer", "agent", ... */
int pl_role_parse(const char *s);   /* -1 if unknown */

/* ------------------------------------------------------------------ */
/* Tenants, their keys and key files. Tokens themselves (base64url(Claims
 * protobuf) "." base64url(Ed25519 signature)) are minted and verified by
 * proto/token.h, which needs the Claims encoding. */

#define PL_TENANT_CHARS_MAX 63  /* tenant ids are short slugs */
#define PL_USER_CHARS_MAX 127
#define PL_KEY_ID_CHARS_MAX 31
#define PL_TOKEN_CHARS_MAX 1024 /* claims are small; bounds parsing */
#define PL_KEYS_PER_TENANT_MAX 4 /* enough for overlapping rotation */
#define PL_TENANTS_MAX 1024

typedef struct pl_claims {
	char tenant[PL_TENANT_CHARS_MAX + 1];
	char user[PL_USER_CHARS_MAX + 1];
	int role;     /* parley.Role */
	int64_t exp_s;
	char room[PL_ROOM_ID_CHARS + 1]; /* "" = any room of the tenant */
	char key_id[PL_KEY_ID_CHARS_MAX + 1];
} pl_claims;

typedef struct pl_tenant_key {
	char key_id[PL_KEY_ID_CHARS_MAX + 1];
	uint8_t pk[32];
} pl_tenant_key;

typedef struct pl_tenant {
	char id[PL_TENANT_CHARS_MAX + 1];
	pl_tenant_key keys[PL_KEYS_PER_TENANT_MAX];
	int nkeys;
} pl_tenant;

/* The tenants a node knows, with their public keys. Filled at start-up,
 * read-only afterwards (so readers need no lock). */
typedef struct pl_keyring {
	pl_tenant tenants[PL_TENANTS_MAX];
	int ntenants;
} pl_keyring;

/* Adds a public key (32 raw bytes) for tenant under key_id.
 * PL_E_TOO_LARGE when a table is full, PL_E_BAD_REQUEST for bad names
 * (tenant and key ids are slugs of [A-Za-z0-9._-]), PL_E_EXISTS when the
 * tenant already has that key_id. */
pl_status pl_keyring_add(pl_keyring *kr, const char *tenant,
    const char *key_id, const uint8_t pk[32]);
const pl_tenant *pl_keyring_find(const pl_keyring *kr, const char *tenant);

/* True when s is a slug of [A-Za-z0-9._-] of 1..max bytes (tenant and key
 * ids: they appear in config keys, log lines and LMDB keys). */
bool pl_slug_ok(const char *s, size_t max);

/* Initialises libsodium once per process (safe from any thread). */
void pl_crypto_ready(void);

/*
 * Key files: text, key=value lines:
 *   tenant=acme
 *   key_id=k1
 *   secret=<base64 of the 64-byte secret key>
 *   public=<base64 of the 32-byte public key>
 * pl_keyfile_generate makes a new pair and writes it (mode 0600); it never
 * overwrites a file (PL_E_EXISTS); pk_b64_out may be NULL, else it needs
 * 45 bytes. pl_keyfile_load reads one; pk may be NULL; the public line is
 * optional and, if present, must match the secret. Errors: PL_E_NOT_FOUND,
 * PL_E_IO, PL_E_CONFIG (bad content), PL_E_TOO_LARGE (a cap too small),
 * PL_E_BAD_REQUEST (tenant or key id not a slug of [A-Za-z0-9._-]).
 */
pl_status pl_keyfile_generate(const char *path, const char *tenant,
    const char *key_id, char *pk_b64_out, size_t pk_b64_cap);
pl_status pl_keyfile_load(const char *path, char *tenant, size_t tenant_cap,
    char *key_id, size_t key_id_cap, uint8_t sk[64], uint8_t pk[32]);

/* The cluster secret file: standard base64 of 32 bytes (whitespace
 * ignored), as every broker, parleyctl and the tests read it; the text is
 * wiped after use. PL_E_NOT_FOUND (unreadable), PL_E_CONFIG (content). */
#define PL_SECRET_BYTES 32
pl_status pl_secret_file_load(const char *path, uint8_t out[PL_SECRET_BYTES]);

/* Standard base64 (with padding) of a 32-byte public key, as used in config
 * files ("key.k1 = <b64>"), and its decoder: the text must decode to
 * exactly outlen (at most 64) bytes, else PL_E_BAD_REQUEST. */
pl_status pl_b64_decode_key(const char *b64, uint8_t *out, size_t outlen);

/* ------------------------------------------------------------------ */
/* SHA-1, only for the WebSocket handshake (RFC 6455 needs it; it is not
 * collision resistant and is used for nothing else). Streaming: init,
 * update any number of times, final. */

#define PL_SHA1_BYTES 20

typedef struct pl_sha1 {
	uint32_t h[5];
	uint64_t bytes;
	uint8_t block[64];
	uint32_t blen;
} pl_sha1;

void pl_sha1_init(pl_sha1 *s);
void pl_sha1_update(pl_sha1 *s, const void *buf, size_t len);
void pl_sha1_final(pl_sha1 *s, uint8_t out[PL_SHA1_BYTES]);

/* ------------------------------------------------------------------ */
/* HDR-style histogram of microsecond values: log-linear buckets with 16
 * sub-buckets per power of two (relative error < 6.25%), values up to
 * 2^40 us. Lock-free: record from any thread. */

#define PL_HIST_SUB_BITS 4
#define PL_HIST_EXP_MAX 40
#define PL_HIST_BUCKETS ((PL_HIST_EXP_MAX + 1) << PL_HIST_SUB_BITS)

typedef struct pl_hist {
	_Atomic uint64_t counts[PL_HIST_BUCKETS];
	_Atomic uint64_t total;
	_Atomic uint64_t sum;
	_Atomic uint64_t max;
} pl_hist;

void pl_hist_reset(pl_hist *h);
void pl_hist_record(pl_hist *h, uint64_t value);
/* p in [0, 100]; returns the upper bound of the bucket holding the p-th
 * percentile value (0 when empty). */
uint64_t pl_hist_percentile(const pl_hist *h, double p);
uint64_t pl_hist_count(const pl_hist *h);
/* Values recorded in the buckets up to and including the one holding v:
 * the count of values <= v, give or take v's bucket. Used to render
 * Prometheus "le" buckets. */
uint64_t pl_hist_count_le(const pl_hist *h, uint64_t v);
/* dst += src */
void pl_hist_merge(pl_hist *dst, const pl_hist *src);

/* ------------------------------------------------------------------ */
/* Metrics registry, rendered in the Prometheus text format. Metrics are
 * registered from any thread (a broker registers a group's when it
 * starts hosting it) and updated from any thread; a registered metric
 * never moves (chunks of PL_METRICS_CHUNK). */

#define PL_METRICS_CHUNK 256
#define PL_METRICS_MAX (PL_METRICS_CHUNK * 64)
#define PL_METRIC_NAME_MAX 95

typedef enum pl_metric_kind {
	PL_METRIC_COUNTER,
	PL_METRIC_GAUGE,
	PL_METRIC_HIST, /* rendered as a Prometheus histogram in seconds */
} pl_metric_kind;

typedef struct pl_metric {
	char name[PL_METRIC_NAME_MAX + 1];  /* may include {labels} */
	const char *help;
	pl_metric_kind kind;
	_Atomic int64_t value;
	pl_hist *hist; /* PL_METRIC_HIST: owned by the registry */
} pl_metric;

typedef struct pl_metrics {
	pthread_mutex_t mu; /* registration and rendering */
	pl_metric *chunks[PL_METRICS_MAX / PL_METRICS_CHUNK];
	_Atomic int n;
} pl_metrics;

void pl_metrics_init(pl_metrics *r);
void pl_metrics_fini(pl_metrics *r);
/* Returns a registered metric; name like "parley_publish_total" or
 * "parley_errors_total{code=\"too_large\"}". NULL when out of memory or
 * past PL_METRICS_MAX (callers of a runtime registration check). */
pl_metric *pl_metrics_add(pl_metrics *r, pl_metric_kind kind,
    const char *name, const char *help);
static inline void pl_metric_inc(pl_metric *m, int64_t d)
{
	atomic_fetch_add_explicit(&m->value, d, memory_order_relaxed);
}
static inline void pl_metric_set(pl_metric *m, int64_t v)
{
	atomic_store_explicit(&m->value, v, memory_order_relaxed);
}
/* Renders all metrics into a malloc'd NUL-terminated buffer (returned
 * owned; *len set). NULL on out-of-memory. */
char *pl_metrics_render(pl_metrics *r, size_t *len);
/* The i-th registered metric, 0 <= i < n (tests look metrics up). */
pl_metric *pl_metrics_at(pl_metrics *r, int i);

/* ------------------------------------------------------------------ */
/* Bounded queue of pointers, many producers and consumers (mutex and
 * condition variables). A full queue refuses: PL_E_BACKPRESSURE. */

typedef struct pl_queue {
	pthread_mutex_t mu;
	pthread_cond_t nonempty;
	void **items;
	size_t cap, head, len;
	bool closed;
} pl_queue;

pl_status pl_queue_init(pl_queue *q, size_t cap);
void pl_queue_fini(pl_queue *q); /* accepts a zeroed queue */
/* PL_E_BACKPRESSURE when full, PL_E_CLOSED after close. */
pl_status pl_queue_push(pl_queue *q, void *item);
/* Pops up to max items into out; waits up to timeout_us (0: no wait,
 * <0: forever) for the first. Returns the count; 0 on timeout or close. */
size_t pl_queue_pop_many(pl_queue *q, void **out, size_t max,
    int64_t timeout_us);
void pl_queue_close(pl_queue *q);

#endif /* PARLEY_COMMON_H */
