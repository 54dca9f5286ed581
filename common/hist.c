/*
 * hist.c - log-linear (HDR-style) histogram of microsecond values. Bucket
 * group 0 holds 0..15 exactly; group g >= 1 holds [2^(g+3), 2^(g+4)) in 16
 * sub-buckets of width 2^(g-1), so a bucket's width is at most 1/16 of its
 * values (the 6.25% error promised by common.h). Counters are relaxed
 * atomics: readers see a slightly stale but never torn histogram.
 */
#include "common/common.h"

#define SUB_COUNT (1u << PL_HIST_SUB_BITS)

static unsigned hist_index(uint64_t v)
{
	if (v < SUB_COUNT)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned group = msb - PL_HIST_SUB_BITS + 1;
	if (group > PL_HIST_EXP_MAX)
		return PL_HIST_BUCKETS - 1; /* beyond 2^44 us: clamp */
	unsigned sub =
	    (unsigned)(v >> (msb - PL_HIST_SUB_BITS)) & (SUB_COUNT - 1);
	return group << PL_HIST_SUB_BITS | sub;
}

/* Largest value that falls into bucket i. */
static uint64_t hist_upper(unsigned i)
{
	unsigned group = i >> PL_HIST_SUB_BITS;
	uint64_t sub = i & (SUB_COUNT - 1);
	if (group == 0)
		return sub;
	uint64_t width = UINT64_C(1) << (group - 1);
	return ((SUB_COUNT + sub) << (group - 1)) + width - 1;
}

void pl_hist_reset(pl_hist *h)
{
	for (unsigned i = 0; i < PL_HIST_BUCKETS; i++)
		atomic_store_explicit(&h->counts[i], 0, memory_order_relaxed);
	atomic_store_explicit(&h->total, 0, memory_order_relaxed);
	atomic_store_explicit(&h->sum, 0, memory_order_relaxed);
	atomic_store_explicit(&h->max, 0, memory_order_relaxed);
}

static void hist_raise_max(pl_hist *h, uint64_t v)
{
	uint64_t cur = atomic_load_explicit(&h->max, memory_order_relaxed);
	while (v > cur && !atomic_compare_exchange_weak_explicit(&h->max, &cur,
	                      v, memory_order_relaxed, memory_order_relaxed))
		;
}

void pl_hist_record(pl_hist *h, uint64_t value)
{
	atomic_fetch_add_explicit(
	    &h->counts[hist_index(value)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->total, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, value, memory_order_relaxed);
	hist_raise_max(h, value);
}

uint64_t pl_hist_count(const pl_hist *h)
{
	return atomic_load_explicit(&h->total, memory_order_relaxed);
}

/* The rank is taken against the sum of the buckets read, not h->total, so
 * a record racing with this walk cannot push the rank past the end. */
uint64_t pl_hist_percentile(const pl_hist *h, double p)
{
	uint64_t counts[PL_HIST_BUCKETS];
	uint64_t total = 0;

	for (unsigned i = 0; i < PL_HIST_BUCKETS; i++) {
		counts[i] =
		    atomic_load_explicit(&h->counts[i], memory_order_relaxed);
		total += counts[i];
	}
	if (total == 0)
		return 0;
	if (!(p > 0)) /* also catches NaN */
		p = 0;
	if (p > 100)
		p = 100;
	double want = p / 100.0 * (double)total;
	uint64_t rank = (uint64_t)want;
	if ((double)rank < want || rank == 0)
		rank++; /* ceil, and p = 0 means the smallest value */
	uint64_t seen = 0;
	for (unsigned i = 0; i < PL_HIST_BUCKETS; i++) {
		seen += counts[i];
		if (seen >= rank)
			return hist_upper(i);
	}
	return hist_upper(PL_HIST_BUCKETS - 1);
}

uint64_t pl_hist_count_le(const pl_hist *h, uint64_t v)
{
	uint64_t n = 0;
	for (unsigned i = 0; i <= hist_index(v); i++)
		n += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
	return n;
}

void pl_hist_merge(pl_hist *dst, const pl_hist *src)
{
	for (unsigned i = 0; i < PL_HIST_BUCKETS; i++) {
		uint64_t c =
		    atomic_load_explicit(&src->counts[i], memory_order_relaxed);
		if (c != 0)
			atomic_fetch_add_explicit(
			    &dst->counts[i], c, memory_order_relaxed);
	}
	atomic_fetch_add_explicit(&dst->total,
	    atomic_load_explicit(&src->total, memory_order_relaxed),
	    memory_order_relaxed);
	atomic_fetch_add_explicit(&dst->sum,
	    atomic_load_explicit(&src->sum, memory_order_relaxed),
	    memory_order_relaxed);
	hist_raise_max(
	    dst, atomic_load_explicit(&src->max, memory_order_relaxed));
}
