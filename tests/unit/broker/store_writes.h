/*
 * store_writes.h - single-replica store writes for tests (store_writes.c,
 * linked only into test binaries): each builds the command, appends it as
 * the next entry and applies it at once (requires applied == last_index,
 * else PL_E_AGAIN). A replicated group proposes through Raft and applies
 * with brk_apply instead. A retried client_msg_id returns the original seq
 * without a new entry.
 */
#ifndef PARLEY_TESTS_STORE_WRITES_H
#define PARLEY_TESTS_STORE_WRITES_H

#include "broker/broker.h"

typedef struct brk_pub_result {
	uint64_t seq;
	int64_t ts_us;
	bool duplicate;
} brk_pub_result;

/* Creates a room as c; *room and *existed (the idempotency key was
 * known) are written on success. The command's outcome is returned
 * (PL_E_FORBIDDEN, ...). */
pl_status brk_create_room(brk_wtxn *w, const Parley__Internal__Caller *c,
    const Parley__CreateRoom *cr, int64_t ts, uint64_t *room, bool *existed);
/* Publishes p in room as c; *r written on success. */
pl_status brk_publish(brk_wtxn *w, const Parley__Internal__Caller *c,
    uint64_t room, const Parley__Publish *p, int64_t ts, brk_pub_result *r);

#endif /* PARLEY_TESTS_STORE_WRITES_H */
