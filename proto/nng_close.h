/*
 * nng_close.h - a bounded nng_close (see nng_close.c for why).
 */
#ifndef PARLEY_NNG_CLOSE_H
#define PARLEY_NNG_CLOSE_H

#include <stdbool.h>

#include <nng/nng.h>

/* How long one socket's close may take before it is abandoned: far above
 * an orderly close (well under 10 ms), far below the stop deadline. */
#define PL_NNG_CLOSE_MS 400

/* Sockets one call closes at most (the rest are not closed). */
#define PL_NNG_CLOSE_MANY_MAX 16

/* Closes the n sockets at once, waiting at most ms for all of them. Call
 * only after their aios are stopped and their dialers and listeners
 * closed. Returns false when a close was abandoned (logged as
 * event=close_abandoned by module); the caller may then free everything
 * of its own, except what nng callbacks registered on those sockets
 * could still reach. */
bool pl_nng_close_bounded(
    const nng_socket *socks, int n, const char *module, int ms);

/* True once any close was abandoned. The process must then leave with
 * _exit: exit() runs nng's own teardown, which waits for the same pipe. */
bool pl_nng_close_abandoned(void);

#endif
