/*
 * test_hist.c - the log-linear histogram: exact small values, percentiles
 * of known distributions within the 1/16 bucket error, clamping of huge
 * values, merging, and the cumulative counts used for Prometheus buckets.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "common/common.h"

static pl_hist *hist_new(void)
{
	pl_hist *h = calloc(1, sizeof(*h));
	pl_hist_reset(h);
	return h;
}

/* got is the upper bound of want's bucket: >= want, within 1/16. */
static int within_bucket(uint64_t got, uint64_t want)
{
	return got >= want && (got - want) * 16 <= want;
}

TEST(test_hist_empty)
{
	pl_hist *h = hist_new();
	CHECK_EQ(pl_hist_count(h), 0);
	CHECK_EQ(pl_hist_percentile(h, 50), 0);
	CHECK_EQ(pl_hist_percentile(h, 100), 0);
	free(h);
}

TEST(test_hist_small_values_exact)
{
	pl_hist *h = hist_new();
	for (uint64_t v = 0; v < 32; v++)
		pl_hist_record(h, v);
	CHECK_EQ(pl_hist_count(h), 32);
	CHECK_EQ(pl_hist_percentile(h, 0), 0);
	CHECK_EQ(pl_hist_percentile(h, 50), 15);
	CHECK_EQ(pl_hist_percentile(h, 100), 31);
	free(h);
}

/* A single value anywhere in range lands in a bucket whose upper bound
 * is within the promised relative error. */
TEST(test_hist_bucket_error_bound)
{
	pl_hist *h = hist_new();
	for (int e = 4; e < 44; e++) {
		const uint64_t base = UINT64_C(1) << e;
		const uint64_t vals[] = {base, base + base / 3, 2 * base - 1};
		for (size_t i = 0; i < PL_ARRAY_LEN(vals); i++) {
			pl_hist_reset(h);
			pl_hist_record(h, vals[i]);
			uint64_t got = pl_hist_percentile(h, 50);
			if (!within_bucket(got, vals[i]))
				fprintf(stderr,
				    "  v=%" PRIu64 " got=%" PRIu64 "\n",
				    vals[i], got);
			CHECK(within_bucket(got, vals[i]));
		}
	}
	free(h);
}

TEST(test_hist_uniform_percentiles)
{
	pl_hist *h = hist_new();
	for (uint64_t v = 1; v <= 100000; v++)
		pl_hist_record(h, v);
	static const struct {
		double p;
		uint64_t want;
	} cases[] = {{50, 50000}, {90, 90000}, {99, 99000}, {99.9, 99900},
	    {100, 100000}};
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++)
		CHECK(within_bucket(
		    pl_hist_percentile(h, cases[i].p), cases[i].want));
	CHECK_EQ(atomic_load(&h->max), 100000);
	CHECK_EQ(atomic_load(&h->sum), UINT64_C(5000050000));
	free(h);
}

/* 90% fast, 10% slow: p50 is fast, p95 is slow. */
TEST(test_hist_bimodal_percentiles)
{
	pl_hist *h = hist_new();
	for (int i = 0; i < 900; i++)
		pl_hist_record(h, 1200);
	for (int i = 0; i < 100; i++)
		pl_hist_record(h, 250000);
	CHECK(within_bucket(pl_hist_percentile(h, 50), 1200));
	CHECK(within_bucket(pl_hist_percentile(h, 90), 1200));
	CHECK(within_bucket(pl_hist_percentile(h, 90.1), 250000));
	CHECK(within_bucket(pl_hist_percentile(h, 99), 250000));
	free(h);
}

TEST(test_hist_huge_values_clamp)
{
	pl_hist *h = hist_new();
	pl_hist_record(h, UINT64_MAX);
	pl_hist_record(h, UINT64_C(1) << 50);
	CHECK_EQ(pl_hist_count(h), 2);
	CHECK_GE(pl_hist_percentile(h, 100), UINT64_C(1) << 43);
	CHECK_EQ(atomic_load(&h->max), UINT64_MAX);
	free(h);
}

TEST(test_hist_merge)
{
	pl_hist *a = hist_new(), *b = hist_new(), *both = hist_new();
	for (uint64_t v = 1; v <= 5000; v++) {
		pl_hist_record(v % 2 ? a : b, v * 7);
		pl_hist_record(both, v * 7);
	}
	pl_hist_merge(a, b);
	CHECK_EQ(pl_hist_count(a), 5000);
	CHECK_EQ(atomic_load(&a->sum), atomic_load(&both->sum));
	CHECK_EQ(atomic_load(&a->max), 35000);
	for (double p = 0; p <= 100; p += 12.5)
		CHECK_EQ(pl_hist_percentile(a, p), pl_hist_percentile(both, p));
	free(a);
	free(b);
	free(both);
}

TEST(test_hist_count_le)
{
	pl_hist *h = hist_new();
	for (uint64_t v = 1; v <= 1000; v++)
		pl_hist_record(h, v);
	CHECK_EQ(pl_hist_count_le(h, 0), 0);
	CHECK_EQ(pl_hist_count_le(h, 15), 15);
	CHECK_EQ(pl_hist_count_le(h, UINT64_MAX), 1000);
	uint64_t n = pl_hist_count_le(h, 500);
	CHECK(n >= 500 && n <= 500 + 500 / 16);
	free(h);
}
