/*
 * clock.c - wall and monotonic clocks in microseconds. Wall time stamps
 * messages and tokens; monotonic time measures latency and timeouts, so a
 * clock step never fires a timer early or makes a latency negative.
 */
#include <time.h>

#include "common/common.h"

static int64_t clock_us(clockid_t id)
{
	struct timespec ts;
	/* Both clocks exist on every system Parley supports. */
	PL_ASSERT(clock_gettime(id, &ts) == 0);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t pl_now_us(void)
{
	return clock_us(CLOCK_REALTIME);
}

int64_t pl_mono_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}
