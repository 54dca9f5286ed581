/*
 * metrics.c - the metrics registry and its Prometheus text rendering.
 * Samples of one family (same base name, different {labels}) are rendered
 * together under a single # HELP / # TYPE, as the text format requires.
 * Histograms record microseconds and are exposed in seconds with a fixed
 * set of "le" buckets covering chat latencies from 100 us to 10 s.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

static const struct {
	uint64_t us;
	const char *le;
} le_buckets[] = {
    {100, "0.0001"},
    {250, "0.00025"},
    {500, "0.0005"},
    {1000, "0.001"},
    {2500, "0.0025"},
    {5000, "0.005"},
    {10000, "0.01"},
    {25000, "0.025"},
    {50000, "0.05"},
    {100000, "0.1"},
    {250000, "0.25"},
    {500000, "0.5"},
    {1000000, "1"},
    {2500000, "2.5"},
    {5000000, "5"},
    {10000000, "10"},
};

/* A growing output buffer; once an allocation fails it stays failed. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static bool sb_reserve(struct sbuf *b, size_t more)
{
	if (b->oom)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (p == NULL) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !sb_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void pl_metrics_init(pl_metrics *r)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
}

pl_metric *pl_metrics_at(pl_metrics *r, int i)
{
	return &r->chunks[i / PL_METRICS_CHUNK][i % PL_METRICS_CHUNK];
}

void pl_metrics_fini(pl_metrics *r)
{
	if (r == NULL)
		return;
	int n = atomic_load(&r->n);
	for (int i = 0; i < n; i++) {
		free(pl_metrics_at(r, i)->hist);
		pl_metrics_at(r, i)->hist = NULL;
	}
	for (size_t c = 0; c < PL_ARRAY_LEN(r->chunks); c++) {
		free(r->chunks[c]);
		r->chunks[c] = NULL;
	}
	atomic_store(&r->n, 0);
	pthread_mutex_destroy(&r->mu);
}

pl_metric *pl_metrics_add(
    pl_metrics *r, pl_metric_kind kind, const char *name, const char *help)
{
	PL_ASSERT(strlen(name) <= PL_METRIC_NAME_MAX);
	pl_metric *m = NULL;
	pthread_mutex_lock(&r->mu);
	int n = atomic_load(&r->n);
	int c = n / PL_METRICS_CHUNK;
	if (n == PL_METRICS_MAX)
		goto out;
	if (r->chunks[c] == NULL) {
		r->chunks[c] = calloc(PL_METRICS_CHUNK, sizeof(pl_metric));
		if (r->chunks[c] == NULL)
			goto out;
	}
	m = pl_metrics_at(r, n);
	memset(m, 0, sizeof(*m));
	if (kind == PL_METRIC_HIST) {
		m->hist = calloc(1, sizeof(*m->hist));
		if (m->hist == NULL) {
			m = NULL;
			goto out;
		}
	}
	strcpy(m->name, name);
	m->help = help;
	m->kind = kind;
	atomic_store(&r->n, n + 1);
out:
	pthread_mutex_unlock(&r->mu);
	return m;
}

/* Length of the family name: the name without its {labels}. */
static size_t base_len(const char *name)
{
	return strcspn(name, "{");
}

static bool same_family(const pl_metric *a, const pl_metric *b)
{
	size_t n = base_len(a->name);
	return n == base_len(b->name) && memcmp(a->name, b->name, n) == 0;
}

static void render_help_text(struct sbuf *b, const char *help)
{
	/* Help strings escape backslash and newline in the text format. */
	for (const char *c = help; *c != '\0'; c++) {
		if (*c == '\\')
			sb_printf(b, "\\\\");
		else if (*c == '\n')
			sb_printf(b, "\\n");
		else
			sb_printf(b, "%c", *c);
	}
}

static void render_header(struct sbuf *b, const pl_metric *m)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};
	int n = (int)base_len(m->name);
	if (m->help != NULL) {
		sb_printf(b, "# HELP %.*s ", n, m->name);
		render_help_text(b, m->help);
		sb_printf(b, "\n");
	}
	sb_printf(b, "# TYPE %.*s %s\n", n, m->name, types[m->kind]);
}

/* name_suffix{labels,extra} where labels come from the metric's name. */
static void render_series(
    struct sbuf *b, const pl_metric *m, const char *suffix, const char *extra)
{
	int n = (int)base_len(m->name);
	const char *labels = m->name + n; /* "" or "{...}" */
	int ln = *labels ? (int)strlen(labels) - 2 : 0;
	sb_printf(b, "%.*s%s", n, m->name, suffix);
	if (ln <= 0 && extra == NULL) {
		sb_printf(b, " ");
		return;
	}
	sb_printf(b, "{");
	if (ln > 0)
		sb_printf(b, "%.*s%s", ln, labels + 1, extra ? "," : "");
	sb_printf(b, "%s} ", extra ? extra : "");
}

static void render_hist(struct sbuf *b, const pl_metric *m)
{
	char le[48];
	/* Each bucket is read after the one before it and covers more
	 * buckets, so the series stays cumulative while records race. */
	for (size_t i = 0; i < PL_ARRAY_LEN(le_buckets); i++) {
		snprintf(le, sizeof(le), "le=\"%s\"", le_buckets[i].le);
		render_series(b, m, "_bucket", le);
		sb_printf(b, "%" PRIu64 "\n",
		    pl_hist_count_le(m->hist, le_buckets[i].us));
	}
	uint64_t count = pl_hist_count_le(m->hist, UINT64_MAX);
	render_series(b, m, "_bucket", "le=\"+Inf\"");
	sb_printf(b, "%" PRIu64 "\n", count);
	uint64_t sum =
	    atomic_load_explicit(&m->hist->sum, memory_order_relaxed);
	render_series(b, m, "_sum", NULL);
	sb_printf(b, "%.6f\n", (double)sum / 1e6);
	render_series(b, m, "_count", NULL);
	sb_printf(b, "%" PRIu64 "\n", count);
}

static void render_metric(struct sbuf *b, const pl_metric *m)
{
	if (m->kind == PL_METRIC_HIST) {
		render_hist(b, m);
		return;
	}
	render_series(b, m, "", NULL);
	sb_printf(b, "%" PRId64 "\n",
	    atomic_load_explicit(&m->value, memory_order_relaxed));
}

char *pl_metrics_render(pl_metrics *r, size_t *len)
{
	struct sbuf b = {0};
	if (!sb_reserve(&b, 0))
		return NULL;
	b.p[0] = '\0';
	pthread_mutex_lock(&r->mu);
	int n = atomic_load(&r->n);
	for (int i = 0; i < n; i++) {
		const pl_metric *mi = pl_metrics_at(r, i);
		bool seen = false;
		for (int j = 0; j < i && !seen; j++)
			seen = same_family(pl_metrics_at(r, j), mi);
		if (seen)
			continue; /* rendered with the first of its family */
		render_header(&b, mi);
		for (int j = i; j < n; j++) {
			if (same_family(pl_metrics_at(r, j), mi))
				render_metric(&b, pl_metrics_at(r, j));
		}
	}
	pthread_mutex_unlock(&r->mu);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}
