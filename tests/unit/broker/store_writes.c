/*
 * store_writes.c - single-replica writes for the store's tests: each
 * builds the command of a request, appends it as the next log entry and
 * applies it at once, without Raft, the way a group of one would after
 * committing it. Test support only: the broker proposes through Raft and
 * applies with brk_apply (broker/driver.c); nothing in broker/ calls these.
 *
 * It reaches into the round (applied, last_index, the term) through
 * broker/store/store_internal.h, which is why it lives beside the tests
 * and not behind store.h.
 */
#include <string.h>

#include "broker/store/store_internal.h"
#include "tests/unit/broker/store_writes.h"

/* Builds the command of f, appends it as the next entry and applies it. */
static pl_status local_apply(brk_wtxn *w, const Parley__Internal__Caller *c,
    const Parley__ClientFrame *f, uint64_t room, int64_t ts, brk_applied *res)
{
	static uint8_t buf[ENTRY_BYTES_MAX]; /* the encoded command */
	brk_cmd bc;
	size_t n;
	if (w->applied != w->last_index)
		return PL_E_AGAIN;
	pl_status st = brk_cmd_build(w->s, c, f, room, ts, &bc);
	if (st == PL_OK)
		st = pl_pb_encode(&bc.cmd.base, buf, sizeof(buf), &n);
	if (st != PL_OK)
		return st;
	raft_entry e = {.term = w->hs.term ? w->hs.term : 1,
	    .index = w->last_index + 1,
	    .type = RAFT_ENTRY_NORMAL,
	    .data = buf,
	    .len = n};
	if ((st = brk_log_append(w, &e, 1)) != PL_OK)
		return st;
	if ((st = brk_apply(w, &e, NULL, res)) != PL_OK)
		return st;
	return res->st;
}

pl_status brk_create_room(brk_wtxn *w, const Parley__Internal__Caller *c,
    const Parley__CreateRoom *cr, int64_t ts, uint64_t *room, bool *existed)
{
	Parley__ClientFrame f = PARLEY__CLIENT_FRAME__INIT;
	brk_applied res;
	f.body_case = PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM;
	f.create_room = (Parley__CreateRoom *)cr;
	pl_status st = local_apply(w, c, &f, 0, ts, &res);
	if (st == PL_OK) {
		*room = res.room;
		*existed = res.existed;
	}
	return st;
}

pl_status brk_publish(brk_wtxn *w, const Parley__Internal__Caller *c,
    uint64_t room, const Parley__Publish *p, int64_t ts, brk_pub_result *r)
{
	Parley__ClientFrame f = PARLEY__CLIENT_FRAME__INIT;
	brk_applied res;
	memset(&res, 0, sizeof(res));
	f.body_case = PARLEY__CLIENT_FRAME__BODY_PUBLISH;
	f.publish = (Parley__Publish *)p;
	/* A retry is answered from the dedup table without a log entry. */
	pl_status st = brk_apply_dedup_find(w, room, p->client_msg_id, 0, &res);
	if (st != PL_OK &&
	    (st = local_apply(w, c, &f, room, ts, &res)) != PL_OK)
		return st;
	r->seq = res.seq;
	r->ts_us = res.ts_us;
	r->duplicate = res.duplicate;
	return PL_OK;
}
