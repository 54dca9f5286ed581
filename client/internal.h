/*
 * internal.h - what libparley's own files share beyond parley.h. Not
 * installed, not for applications.
 */
#ifndef PARLEY_CLIENT_INTERNAL_H
#define PARLEY_CLIENT_INTERNAL_H

#include "client/parley.h"

/* Records a local failure (st and a description, NULL for pl_strerror) as
 * the connection's last error and returns st. */
pl_status parley_local_error(parley_conn *c, pl_status st, const char *what);

/* refresh.c: the thread that refreshes a connection's token through the
 * application's callback ahead of exp_s. start returns it owned (stop
 * joins and frees it; NULL accepted); note tells it of a new expiry.
 * Stop only after the connection's socket is closed or no request of the
 * thread can block. */
typedef struct parley_refresher parley_refresher;
pl_status parley_refresher_start(parley_conn *c, parley_token_fn fn, void *arg,
    uint32_t ahead_s, int64_t exp_s, parley_refresher **out);
void parley_refresher_note(parley_refresher *r, int64_t exp_s);
void parley_refresher_stop(parley_refresher *r);

#endif /* PARLEY_CLIENT_INTERNAL_H */
