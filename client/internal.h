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

#endif /* PARLEY_CLIENT_INTERNAL_H */
