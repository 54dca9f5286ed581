/*
 * status.c - texts for pl_status and the one table that maps statuses onto
 * the client-visible parley.ErrorCode values (proto/parley.proto). The numbers of
 * the wire enum are repeated here (common/ does not include generated
 * code); tests/unit/test_status.c checks them against parley.pb-c.h.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/common.h"

/* parley.ErrorCode, proto/parley.proto. */
enum {
	CODE_NONE = 0,
	CODE_BAD_REQUEST = 1,
	CODE_UNAUTHORIZED = 2,
	CODE_FORBIDDEN = 3,
	CODE_NOT_FOUND = 4,
	CODE_ROOM_CLOSED = 5,
	CODE_TOO_LARGE = 6,
	CODE_RATE_LIMITED = 7,
	CODE_OVERLOADED = 8,
	CODE_UNAVAILABLE = 9,
	CODE_INTERNAL = 10,
	CODE_COUNT
};

struct status_row {
	pl_status st;
	const char *text;
	int code;
};

/* Statuses the client must not retry map to their own code; resource
 * exhaustion is "overloaded" (back off), a peer or leader that is away is
 * "unavailable" (retry), anything the client cannot fix is "internal". */
static const struct status_row status_table[] = {
    {PL_OK, "ok", CODE_NONE},
    {PL_E_NOMEM, "out of memory", CODE_OVERLOADED},
    {PL_E_PROTO, "malformed frame or record", CODE_BAD_REQUEST},
    {PL_E_TOO_LARGE, "too large", CODE_TOO_LARGE},
    {PL_E_NOT_FOUND, "not found", CODE_NOT_FOUND},
    {PL_E_EXISTS, "already exists", CODE_BAD_REQUEST},
    {PL_E_UNAUTHORIZED, "unauthorized", CODE_UNAUTHORIZED},
    {PL_E_FORBIDDEN, "forbidden", CODE_FORBIDDEN},
    {PL_E_ROOM_CLOSED, "room closed", CODE_ROOM_CLOSED},
    {PL_E_RATE_LIMITED, "rate limited", CODE_RATE_LIMITED},
    {PL_E_BACKPRESSURE, "queue full", CODE_OVERLOADED},
    {PL_E_UNAVAILABLE, "unavailable", CODE_UNAVAILABLE},
    {PL_E_NOT_LEADER, "not the leader", CODE_UNAVAILABLE},
    {PL_E_CORRUPT, "corrupt record", CODE_INTERNAL},
    {PL_E_MAP_FULL, "storage map full", CODE_OVERLOADED},
    {PL_E_DISK_FULL, "disk full", CODE_OVERLOADED},
    {PL_E_IO, "i/o error", CODE_INTERNAL},
    {PL_E_CONFIG, "bad configuration", CODE_INTERNAL},
    {PL_E_TIMEOUT, "timed out", CODE_UNAVAILABLE},
    {PL_E_INTERNAL, "internal error", CODE_INTERNAL},
    {PL_E_BAD_REQUEST, "bad request", CODE_BAD_REQUEST},
    {PL_E_AGAIN, "try again", CODE_UNAVAILABLE},
    {PL_E_CLOSED, "closed", CODE_UNAVAILABLE},
};

/* Wire names and the status a client sees for each code. */
static const struct {
	const char *name;
	pl_status st;
} code_table[CODE_COUNT] = {
    [CODE_NONE] = {"none", PL_OK},
    [CODE_BAD_REQUEST] = {"bad_request", PL_E_BAD_REQUEST},
    [CODE_UNAUTHORIZED] = {"unauthorized", PL_E_UNAUTHORIZED},
    [CODE_FORBIDDEN] = {"forbidden", PL_E_FORBIDDEN},
    [CODE_NOT_FOUND] = {"not_found", PL_E_NOT_FOUND},
    [CODE_ROOM_CLOSED] = {"room_closed", PL_E_ROOM_CLOSED},
    [CODE_TOO_LARGE] = {"too_large", PL_E_TOO_LARGE},
    [CODE_RATE_LIMITED] = {"rate_limited", PL_E_RATE_LIMITED},
    [CODE_OVERLOADED] = {"overloaded", PL_E_BACKPRESSURE},
    [CODE_UNAVAILABLE] = {"unavailable", PL_E_UNAVAILABLE},
    [CODE_INTERNAL] = {"internal", PL_E_INTERNAL},
};

static const struct status_row *status_find(pl_status st)
{
	for (size_t i = 0; i < PL_ARRAY_LEN(status_table); i++) {
		if (status_table[i].st == st)
			return &status_table[i];
	}
	return NULL;
}

const char *pl_strerror(pl_status st)
{
	const struct status_row *r = status_find(st);
	return r != NULL ? r->text : "unknown status";
}

int pl_status_to_code(pl_status st)
{
	const struct status_row *r = status_find(st);
	return r != NULL ? r->code : CODE_INTERNAL;
}

const char *pl_code_name(int code)
{
	if (code < 0 || code >= CODE_COUNT)
		return "unknown";
	return code_table[code].name;
}

/* A code from a newer server that this client does not know is treated as
 * internal: the client cannot act on it. */
pl_status pl_code_to_status(int code)
{
	if (code < 0 || code >= CODE_COUNT)
		return PL_E_INTERNAL;
	return code_table[code].st;
}

void pl_assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr,
	    "level=error mod=assert event=assert_failed expr=\"%s\" "
	    "at=%s:%d\n",
	    expr, file, line);
	fflush(stderr);
	abort();
}
