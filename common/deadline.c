/*
 * deadline.c - a bound on how long a process may take to stop. Once a
 * process starts its orderly stop it arms the deadline; if the stop has
 * not finished when the deadline passes (a close inside nng 1.5.2 waiting
 * on a pipe or poller that never completes, a connection that never
 * drains), the process logs it and leaves with _exit. That is safe by
 * construction: an acknowledged write is already durable (sync mode) or
 * in the page cache (relaxed mode, whose risk is a machine crash, not a
 * process exit), LMDB needs no close to stay consistent, and every peer
 * treats a vanished process like a crashed one. A rolling restart must
 * never wait on a stuck close.
 */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"

typedef struct deadline {
	const char *module;
	int ms;
} deadline;

static void *deadline_main(void *arg)
{
	const deadline *d = arg;
	struct timespec ts = {
	    .tv_sec = d->ms / 1000, .tv_nsec = (long)(d->ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0)
		;
	PL_WARN(d->module,
	    "event=stop_deadline ms=%d action=exit detail=\"orderly stop "
	    "unfinished; acknowledged data is durable\"",
	    d->ms);
	_exit(0);
	return NULL;
}

void pl_stop_deadline_arm(const char *module, int ms)
{
	static deadline d; /* one per process: armed once, at stop */
	d.module = module;
	d.ms = ms;
	pthread_attr_t attr;
	pthread_t th;
	if (pthread_attr_init(&attr) != 0)
		return;
	(void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, deadline_main, &d) != 0)
		PL_WARN(module, "event=stop_deadline_unarmed");
	pthread_attr_destroy(&attr);
}
