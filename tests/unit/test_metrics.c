/*
 * test_metrics.c - Prometheus text rendering: one # HELP / # TYPE per
 * family with its samples together, labels carried from the name, and
 * histograms in seconds whose le buckets are cumulative and end at _count.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "common/common.h"

static pl_metrics *registry_new(void)
{
	pl_metrics *r = malloc(sizeof(*r));
	pl_metrics_init(r);
	return r;
}

static void registry_free(pl_metrics *r)
{
	pl_metrics_fini(r);
	free(r);
}

static int count_substr(const char *s, const char *sub)
{
	int n = 0;
	for (const char *p = strstr(s, sub); p != NULL; p = strstr(p + 1, sub))
		n++;
	return n;
}

TEST(test_metrics_render_counter_and_gauge)
{
	pl_metrics *r = registry_new();
	pl_metric *c = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_publish_total", "Messages published.");
	pl_metric *g = pl_metrics_add(r, PL_METRIC_GAUGE, "parley_connections",
	    "Open client connections.");
	pl_metric_inc(c, 3);
	pl_metric_inc(c, 2);
	pl_metric_set(g, -4);
	size_t len = 0;
	char *text = pl_metrics_render(r, &len);
	CHECK(text != NULL);
	CHECK_EQ(len, strlen(text));
	CHECK(strstr(text, "# HELP parley_publish_total Messages published.\n"
	                   "# TYPE parley_publish_total counter\n"
	                   "parley_publish_total 5\n") != NULL);
	CHECK(strstr(text, "# TYPE parley_connections gauge\n"
	                   "parley_connections -4\n") != NULL);
	free(text);
	registry_free(r);
}

/* Labelled samples of one family registered apart are rendered together
 * under one header. */
TEST(test_metrics_render_family_once)
{
	pl_metrics *r = registry_new();
	pl_metric *a = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_errors_total{code=\"too_large\"}", "Errors by code.");
	pl_metrics_add(r, PL_METRIC_GAUGE, "parley_rooms", "Open rooms.");
	pl_metric *b = pl_metrics_add(r, PL_METRIC_COUNTER,
	    "parley_errors_total{code=\"forbidden\"}", "Errors by code.");
	pl_metric_inc(a, 1);
	pl_metric_inc(b, 7);
	size_t len;
	char *text = pl_metrics_render(r, &len);
	CHECK(text != NULL);
	CHECK_EQ(count_substr(text, "# TYPE parley_errors_total counter"), 1);
	CHECK_EQ(count_substr(text, "# HELP parley_errors_total "), 1);
	CHECK(strstr(text,
	          "parley_errors_total{code=\"too_large\"} 1\n"
	          "parley_errors_total{code=\"forbidden\"} 7\n") != NULL);
	free(text);
	registry_free(r);
}

/* Parses every "<prefix>{...le=...} N" line in order; checks the series
 * is cumulative and its +Inf bucket equals count. */
static int buckets_cumulative(
    const char *text, const char *prefix, uint64_t *inf)
{
	uint64_t prev = 0;
	int n = 0;
	for (const char *p = strstr(text, prefix); p != NULL;
	     p = strstr(p + 1, prefix)) {
		const char *sp = strchr(p, ' ');
		uint64_t v = strtoull(sp + 1, NULL, 10);
		if (v < prev)
			return -1;
		prev = v;
		n++;
	}
	*inf = prev;
	return n;
}

TEST(test_metrics_render_histogram)
{
	pl_metrics *r = registry_new();
	pl_metric *h = pl_metrics_add(r, PL_METRIC_HIST,
	    "parley_deliver_seconds{op=\"publish\"}", "Publish to deliver.");
	CHECK(h != NULL && h->hist != NULL);
	const uint64_t us[] = {50, 100, 900, 1000, 40000, 2000000, 30000000};
	for (size_t i = 0; i < PL_ARRAY_LEN(us); i++)
		pl_hist_record(h->hist, us[i]);
	size_t len;
	char *text = pl_metrics_render(r, &len);
	CHECK(text != NULL);
	CHECK_EQ(
	    count_substr(text, "# TYPE parley_deliver_seconds histogram"), 1);
	CHECK(strstr(text, "parley_deliver_seconds_bucket{op=\"publish\","
	                   "le=\"0.0001\"} 2\n") != NULL);
	CHECK(strstr(text, "parley_deliver_seconds_bucket{op=\"publish\","
	                   "le=\"0.001\"} 4\n") != NULL);
	CHECK(strstr(text, "parley_deliver_seconds_bucket{op=\"publish\","
	                   "le=\"10\"} 6\n") != NULL);
	CHECK(strstr(text, "parley_deliver_seconds_bucket{op=\"publish\","
	                   "le=\"+Inf\"} 7\n") != NULL);
	CHECK(strstr(text, "parley_deliver_seconds_sum{op=\"publish\"} "
	                   "32.042050\n") != NULL);
	CHECK(strstr(text,
	          "parley_deliver_seconds_count{op=\"publish\"} 7\n") != NULL);
	uint64_t inf = 0;
	CHECK_EQ(
	    buckets_cumulative(text, "parley_deliver_seconds_bucket", &inf),
	    17);
	CHECK_EQ(inf, 7);
	free(text);
	registry_free(r);
}

TEST(test_metrics_render_histogram_without_labels)
{
	pl_metrics *r = registry_new();
	pl_metric *h =
	    pl_metrics_add(r, PL_METRIC_HIST, "parley_commit_seconds", NULL);
	pl_hist_record(h->hist, 3000);
	size_t len;
	char *text = pl_metrics_render(r, &len);
	CHECK(text != NULL);
	CHECK(strstr(text, "# HELP") == NULL);
	CHECK(strstr(text, "parley_commit_seconds_bucket{le=\"0.0025\"} 0\n") !=
	      NULL);
	CHECK(strstr(text, "parley_commit_seconds_bucket{le=\"0.005\"} 1\n") !=
	      NULL);
	CHECK(strstr(text, "parley_commit_seconds_sum 0.003000\n") != NULL);
	CHECK(strstr(text, "parley_commit_seconds_count 1\n") != NULL);
	free(text);
	registry_free(r);
}

TEST(test_metrics_help_escaped)
{
	pl_metrics *r = registry_new();
	pl_metrics_add(r, PL_METRIC_COUNTER, "x_total", "a\\b\nc");
	size_t len;
	char *text = pl_metrics_render(r, &len);
	CHECK(text != NULL);
	CHECK(strstr(text, "# HELP x_total a\\\\b\\nc\n") != NULL);
	free(text);
	registry_free(r);
}

TEST(test_metrics_empty_registry)
{
	pl_metrics *r = registry_new();
	size_t len = 99;
	char *text = pl_metrics_render(r, &len);
	CHECK(text != NULL);
	CHECK_EQ(len, 0);
	CHECK_STR_EQ(text, "");
	free(text);
	registry_free(r);
}
