/*
 * test_queue.c - the bounded queue: FIFO order, refusal when full, close
 * semantics (drain then 0), timeouts, and many producers racing one
 * consumer with every item delivered once and in per-producer order.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "common/common.h"

TEST(test_queue_fifo)
{
	pl_queue q;
	int v[5];
	void *out[8];
	CHECK_EQ(pl_queue_init(&q, 5), PL_OK);
	for (int round = 0; round < 3; round++) { /* wraps the ring */
		for (int i = 0; i < 5; i++)
			CHECK_EQ(pl_queue_push(&q, &v[i]), PL_OK);
		CHECK_EQ(pl_queue_pop_many(&q, out, 2, 0), 2);
		CHECK(out[0] == &v[0] && out[1] == &v[1]);
		CHECK_EQ(pl_queue_pop_many(&q, out, 8, 0), 3);
		CHECK(out[0] == &v[2] && out[2] == &v[4]);
	}
	pl_queue_fini(&q);
}

TEST(test_queue_full_backpressure)
{
	pl_queue q;
	int v;
	void *out[1];
	CHECK_EQ(pl_queue_init(&q, 2), PL_OK);
	CHECK_EQ(pl_queue_push(&q, &v), PL_OK);
	CHECK_EQ(pl_queue_push(&q, &v), PL_OK);
	CHECK_EQ(pl_queue_push(&q, &v), PL_E_BACKPRESSURE);
	CHECK_EQ(q.len, 2); /* never grows */
	CHECK_EQ(pl_queue_pop_many(&q, out, 1, 0), 1);
	CHECK_EQ(pl_queue_push(&q, &v), PL_OK);
	pl_queue_fini(&q);
}

TEST(test_queue_close_drains_then_refuses)
{
	pl_queue q;
	int v[2];
	void *out[4];
	CHECK_EQ(pl_queue_init(&q, 4), PL_OK);
	CHECK_EQ(pl_queue_push(&q, &v[0]), PL_OK);
	CHECK_EQ(pl_queue_push(&q, &v[1]), PL_OK);
	pl_queue_close(&q);
	CHECK_EQ(pl_queue_push(&q, &v[0]), PL_E_CLOSED);
	CHECK_EQ(pl_queue_pop_many(&q, out, 4, -1), 2);
	CHECK_EQ(pl_queue_pop_many(&q, out, 4, -1), 0); /* no wait */
	pl_queue_fini(&q);
}

TEST(test_queue_pop_timeout)
{
	pl_queue q;
	void *out[1];
	CHECK_EQ(pl_queue_init(&q, 1), PL_OK);
	int64_t t0 = pl_mono_us();
	CHECK_EQ(pl_queue_pop_many(&q, out, 1, 20000), 0);
	int64_t waited = pl_mono_us() - t0;
	CHECK_GE(waited, 20000);
	CHECK_EQ(pl_queue_pop_many(&q, out, 1, 0), 0);
	pl_queue_fini(&q);
}

TEST(test_queue_fini_zeroed)
{
	pl_queue q;
	memset(&q, 0, sizeof(q));
	pl_queue_fini(&q);
	pl_queue_fini(NULL);
}

static void *closer(void *arg)
{
	usleep(10000);
	pl_queue_close(arg);
	return NULL;
}

TEST(test_queue_close_wakes_waiter)
{
	pl_queue q;
	pthread_t t;
	void *out[1];
	CHECK_EQ(pl_queue_init(&q, 1), PL_OK);
	CHECK_EQ(pthread_create(&t, NULL, closer, &q), 0);
	CHECK_EQ(pl_queue_pop_many(&q, out, 1, -1), 0);
	pthread_join(t, NULL);
	pl_queue_fini(&q);
}

#define PRODUCERS 4
#define ITEMS_PER_PRODUCER 20000

struct producer {
	pl_queue *q;
	uintptr_t id;
	uint64_t refused;
};

/* Items encode (producer, n) so the consumer can check order. */
static void *produce(void *arg)
{
	struct producer *p = arg;
	for (uintptr_t n = 1; n <= ITEMS_PER_PRODUCER; n++) {
		void *item = (void *)(p->id << 32 | n);
		while (pl_queue_push(p->q, item) == PL_E_BACKPRESSURE) {
			p->refused++;
			sched_yield();
		}
	}
	return NULL;
}

TEST(test_queue_multi_thread_producers)
{
	pl_queue q;
	pthread_t t[PRODUCERS];
	struct producer p[PRODUCERS];
	uintptr_t next[PRODUCERS];
	void *out[32];
	CHECK_EQ(pl_queue_init(&q, 64), PL_OK);
	for (int i = 0; i < PRODUCERS; i++) {
		p[i] = (struct producer){&q, (uintptr_t)i, 0};
		next[i] = 1;
		CHECK_EQ(pthread_create(&t[i], NULL, produce, &p[i]), 0);
	}
	size_t got = 0;
	while (got < PRODUCERS * ITEMS_PER_PRODUCER) {
		size_t n = pl_queue_pop_many(&q, out, 32, 1000000);
		CHECK_GT(n, 0);
		for (size_t k = 0; k < n; k++) {
			uintptr_t v = (uintptr_t)out[k];
			uintptr_t id = v >> 32, seq = v & 0xffffffffu;
			CHECK_LT(id, PRODUCERS);
			CHECK_EQ(seq, next[id]);
			next[id]++;
		}
		got += n;
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(pl_queue_pop_many(&q, out, 32, 0), 0);
	pl_queue_fini(&q);
}
