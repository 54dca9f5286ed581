/*
 * apply.c - the state machine: brk_apply applies one committed log entry
 * to the rooms, the per-room seq index, the dedup and idempotency tables,
 * the room indexes (tenant_rooms, user_rooms) and the day aggregates, all
 * in the round's transaction. Every replica applies the same entries in
 * the same order and gets the same state and the same outcomes: nothing
 * here reads the clock, the configuration beyond the store's own
 * (group, dedup_window) or anything but the entry and the stored state.
 *
 * Invariants:
 *  - entries apply in order, each once: e->index == applied + 1;
 *  - a command's outcome (refused: forbidden, room closed, full, ...) is
 *    res->st and changes nothing; the return value is a failure of the
 *    store itself, which fails the round;
 *  - who may do what is decided by brk_access (access.c), the one table;
 *  - a publish takes seq last_seq + 1 (seqs stay gap-free) and its
 *    client_msg_id is remembered for the last dedup_window seqs.
 *
 * Entry points: brk_apply (store.h); brk_apply_dedup_find
 * (store_internal.h).
 */
#include <lmdb.h>
#include <stdio.h>
#include <string.h>

#include "broker/store/store_internal.h"

/* Indexes room under its new member (list_rooms of members). */
static pl_status user_room_add(
    brk_wtxn *w, const char *tenant, const char *user, uint64_t room)
{
	uint8_t k[PL_TENANT_CHARS_MAX + PL_USER_CHARS_MAX + 10];
	size_t kl = user_room_key(k, sizeof(k), tenant, user, room);
	if (kl == 0)
		return PL_E_BAD_REQUEST;
	return brk_wtxn_put(w, w->s->user_rooms, k, kl, "", 0);
}

static pl_status room_insert(brk_wtxn *w, const Parley__Internal__Caller *c,
    Parley__MetaEntry **meta, size_t n_meta, int64_t ts, uint64_t room)
{
	brk_room *r;
	int i;
	pl_status st = brk_room_cache_slot(w, &i);
	if (st != PL_OK)
		return st;
	r = &w->s->cache[i];
	memset(r, 0, sizeof(*r));
	r->id = room;
	snprintf(r->tenant, sizeof(r->tenant), "%s", c->tenant);
	r->stats.created_us = ts;
	for (size_t m = 0; m < n_meta && m < PL_META_ENTRIES_MAX; m++) {
		snprintf(
		    r->meta[m].key, sizeof(r->meta[m].key), "%s", meta[m]->key);
		snprintf(r->meta[m].value, sizeof(r->meta[m].value), "%s",
		    meta[m]->value);
		r->nmeta++;
	}
	brk_day_delta d;
	brk_day_delta_init(&d, ts);
	d.rooms_created = 1;
	if (c->role != PARLEY__ROLE__SERVICE &&
	    ((st = brk_room_join(r, c->user, c->role, ts, &d)) != PL_OK ||
	        (st = user_room_add(w, c->tenant, c->user, room)) != PL_OK))
		return st;
	w->dirty[i] = true;
	return brk_days_add(w, c->tenant, &d);
}

static size_t idem_key(
    uint8_t *out, size_t cap, const char *tenant, const char *key)
{
	return tenant_key(out, cap, tenant, key, strlen(key));
}

static pl_status ap_create(
    brk_wtxn *w, const Parley__Internal__Command *cmd, brk_applied *res)
{
	brk_store *s = w->s;
	const Parley__Internal__Caller *c = cmd->caller;
	const Parley__Internal__CreateRoomCmd *op = cmd->create_room;
	uint8_t ik[PL_TENANT_CHARS_MAX + PL_IDEMPOTENCY_KEY_CHARS_MAX + 2];
	size_t ikl = 0;
	MDB_val v;
	pl_status ast =
	    brk_access(NULL, c, PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM);
	if (ast != PL_OK)
		return ast;
	if (op->idempotency_key != NULL && op->idempotency_key[0] != '\0') {
		ikl = idem_key(ik, sizeof(ik), c->tenant, op->idempotency_key);
		if (ikl == 0)
			return PL_E_BAD_REQUEST;
		if (brk_wtxn_get(w, s->idem, ik, ikl, &v) == PL_OK &&
		    v.mv_size == 8) {
			res->room = get_be64(v.mv_data);
			res->existed = true;
			return PL_OK;
		}
	}
	if (w->room_counter >= PL_ROOM_COUNTER_MAX)
		return PL_E_TOO_LARGE;
	uint64_t id = pl_room_make(s->cfg.group, w->room_counter + 1);
	uint8_t rk[8];
	put_be64(rk, id);
	uint8_t tk[PL_TENANT_CHARS_MAX + 10];
	size_t tkl = tenant_key(tk, sizeof(tk), c->tenant, rk, 8);
	pl_status st = brk_wtxn_put(w, s->tenant_rooms, tk, tkl, "", 0);
	if (st == PL_OK && ikl != 0)
		st = brk_wtxn_put(w, s->idem, ik, ikl, rk, 8);
	if (st == PL_OK)
		st = room_insert(w, c, op->meta, op->n_meta, cmd->ts_us, id);
	if (st != PL_OK)
		return st;
	w->room_counter++;
	res->room = id;
	return PL_OK;
}

/* Loads a room for a write: tenant and access checked, open required. */
static pl_status room_for_write(brk_wtxn *w, const Parley__Internal__Caller *c,
    uint64_t room, int op, brk_room **out)
{
	brk_room *r;
	pl_status st = brk_room_get(w, room, &r);
	if (st != PL_OK)
		return st;
	if ((st = brk_access(r, c, op)) != PL_OK)
		return st;
	if (r->closed)
		return PL_E_ROOM_CLOSED;
	*out = r;
	return PL_OK;
}

static pl_status ap_join(brk_wtxn *w, const Parley__Internal__Command *cmd,
    uint64_t room, brk_applied *res)
{
	const Parley__Internal__Caller *c = cmd->caller;
	brk_room *r;
	pl_status st =
	    room_for_write(w, c, room, PARLEY__CLIENT_FRAME__BODY_JOIN, &r);
	if (st != PL_OK)
		return st;
	brk_member *m = brk_room_member(r, c->user);
	if (m != NULL && m->joined && m->role == (int)c->role)
		return PL_OK; /* already joined */
	brk_day_delta d;
	brk_day_delta_init(&d, cmd->ts_us);
	brk_room probe = *r; /* capacity first: nothing half-done */
	if ((st = brk_room_join(&probe, c->user, c->role, cmd->ts_us, &d)) !=
	        PL_OK ||
	    (m == NULL &&
	        (st = user_room_add(w, c->tenant, c->user, room)) != PL_OK))
		return st;
	*r = probe;
	brk_room_cache_dirty(w, r);
	res->changed = true;
	return brk_days_add(w, c->tenant, &d);
}

static pl_status ap_leave(brk_wtxn *w, const Parley__Internal__Command *cmd,
    uint64_t room, brk_applied *res)
{
	const Parley__Internal__Caller *c = cmd->caller;
	brk_room *r;
	pl_status st = brk_room_get(w, room, &r);
	if (st != PL_OK)
		return st;
	if ((st = brk_access(r, c, PARLEY__CLIENT_FRAME__BODY_LEAVE)) != PL_OK)
		return st;
	brk_member *m = brk_room_member(r, c->user);
	if (m == NULL || !m->joined)
		return PL_OK;
	brk_room_leave(r, c->user);
	brk_room_cache_dirty(w, r);
	res->changed = true;
	return PL_OK;
}

static size_t dedup_key(uint8_t *out, uint64_t room, const char *cmid)
{
	size_t n = strlen(cmid);
	put_be64(out, room);
	memcpy(out + 8, cmid, n);
	return 8 + n;
}

/* A dedup record is seq | ts | origin (origin since resends were told
 * apart; older records of 16 bytes have none). A hit is the client's
 * duplicate unless the stored message came from this very request
 * (origin, non-zero, equal): then the gateway resent it after a
 * failover and the client sent it once. */
#define DEDUP_VALUE_BYTES 24
#define DEDUP_VALUE_BYTES_V1 16

pl_status brk_apply_dedup_find(brk_wtxn *w, uint64_t room, const char *cmid,
    uint64_t origin, brk_applied *res)
{
	uint8_t k[8 + PL_CLIENT_MSG_ID_CHARS_MAX];
	MDB_val v;
	if (cmid == NULL || cmid[0] == '\0' ||
	    strlen(cmid) > PL_CLIENT_MSG_ID_CHARS_MAX)
		return PL_E_NOT_FOUND;
	pl_status st =
	    brk_wtxn_get(w, w->s->dedup, k, dedup_key(k, room, cmid), &v);
	if (st != PL_OK || (v.mv_size != DEDUP_VALUE_BYTES &&
	                       v.mv_size != DEDUP_VALUE_BYTES_V1))
		return PL_E_NOT_FOUND;
	uint64_t stored = v.mv_size == DEDUP_VALUE_BYTES
	                      ? get_be64((uint8_t *)v.mv_data + 16)
	                      : 0;
	res->room = room;
	res->seq = get_be64(v.mv_data);
	res->ts_us = (int64_t)get_be64((uint8_t *)v.mv_data + 8);
	res->duplicate = stored == 0 || stored != origin;
	return PL_OK;
}

/* Forgets the client_msg_id of seq (dedup window pruning). */
static pl_status dedup_forget(brk_wtxn *w, uint64_t room, uint64_t seq)
{
	uint8_t k[16];
	MDB_val v;
	put_be64(k, room);
	put_be64(k + 8, seq);
	if (brk_wtxn_get(w, w->s->seq, k, 16, &v) != PL_OK || v.mv_size <= 8)
		return PL_OK;
	uint8_t dk[8 + PL_CLIENT_MSG_ID_CHARS_MAX];
	size_t n = v.mv_size - 8;
	if (n > PL_CLIENT_MSG_ID_CHARS_MAX)
		return PL_E_CORRUPT;
	put_be64(dk, room);
	memcpy(dk + 8, (uint8_t *)v.mv_data + 8, n);
	return brk_wtxn_del(w, w->s->dedup, dk, 8 + n);
}

/* Writes the seq index (-> log index + client_msg_id) and dedup entry. */
static pl_status index_message(brk_wtxn *w, uint64_t room, uint64_t seq,
    const char *cmid, uint64_t origin, int64_t ts, uint64_t index)
{
	brk_store *s = w->s;
	uint8_t k[16], v[8 + PL_CLIENT_MSG_ID_CHARS_MAX];
	size_t cl = cmid ? strlen(cmid) : 0;
	if (cl > PL_CLIENT_MSG_ID_CHARS_MAX)
		return PL_E_BAD_REQUEST;
	put_be64(k, room);
	put_be64(k + 8, seq);
	put_be64(v, index);
	memcpy(v + 8, cmid, cl);
	pl_status st = brk_wtxn_put(w, s->seq, k, 16, v, 8 + cl);
	if (st != PL_OK || cl == 0)
		return st;
	uint8_t dk[8 + PL_CLIENT_MSG_ID_CHARS_MAX], dv[DEDUP_VALUE_BYTES];
	put_be64(dv, seq);
	put_be64(dv + 8, (uint64_t)ts);
	put_be64(dv + 16, origin);
	st = brk_wtxn_put(
	    w, s->dedup, dk, dedup_key(dk, room, cmid), dv, sizeof(dv));
	if (st == PL_OK && s->cfg.dedup_window && seq > s->cfg.dedup_window)
		st = dedup_forget(w, room, seq - s->cfg.dedup_window);
	return st;
}

static pl_status ap_publish(brk_wtxn *w, const Parley__Internal__Command *cmd,
    uint64_t index, brk_arena *a, brk_applied *res)
{
	const Parley__Internal__Caller *c = cmd->caller;
	const Parley__Internal__PublishCmd *op = cmd->publish;
	uint64_t room = op->room;
	brk_room *r;
	size_t raw = op->compressed ? op->raw_len : op->body.len;
	if (raw > BODY_BYTES_MAX)
		return PL_E_TOO_LARGE;
	/* The kind before the room: a system message from anyone but a
	 * service is forbidden whatever the room. */
	if (brk_access_kind(c, op->kind) != PL_OK)
		return PL_E_FORBIDDEN;
	pl_status st =
	    room_for_write(w, c, room, PARLEY__CLIENT_FRAME__BODY_PUBLISH, &r);
	if (st != PL_OK)
		return st;
	const char *cmid = op->client_msg_id ? op->client_msg_id : "";
	if (brk_apply_dedup_find(w, room, cmid, op->origin, res) == PL_OK)
		return PL_OK;
	uint64_t seq = r->last_seq + 1;
	if ((st = index_message(
	         w, room, seq, cmid, op->origin, cmd->ts_us, index)) != PL_OK)
		return st;
	brk_day_delta d;
	brk_day_delta_init(&d, cmd->ts_us);
	r->last_seq = seq;
	brk_room_on_message(r, c->role, op->kind, cmd->ts_us, &d);
	brk_room_cache_dirty(w, r);
	res->room = room;
	res->seq = seq;
	res->ts_us = cmd->ts_us;
	if ((st = brk_days_add(w, r->tenant, &d)) != PL_OK)
		return st;
	if (a == NULL)
		return PL_OK;
	Parley__Message *m = brk_arena_alloc(a, sizeof(*m));
	if (m == NULL || brk_message_build(w->s, cmd, room, seq, a, m) != PL_OK)
		return PL_OK; /* the event is best effort: history has it */
	res->msg = m;
	return PL_OK;
}

static pl_status ap_read(brk_wtxn *w, const Parley__Internal__Command *cmd,
    uint64_t room, brk_applied *res)
{
	const Parley__Internal__Caller *c = cmd->caller;
	uint64_t seq = cmd->read->seq;
	brk_room *r;
	pl_status st = brk_room_get(w, room, &r);
	if (st != PL_OK)
		return st;
	if ((st = brk_access(r, c, PARLEY__CLIENT_FRAME__BODY_READ)) != PL_OK)
		return st;
	brk_member *m = brk_room_member(r, c->user);
	if (seq > r->last_seq)
		seq = r->last_seq;
	if (m == NULL)
		return PL_OK;
	res->seq = m->read_seq;
	if (seq <= m->read_seq)
		return PL_OK; /* positions only move forward */
	m->read_seq = seq;
	res->seq = seq;
	res->changed = true;
	brk_room_cache_dirty(w, r);
	return PL_OK;
}

static pl_status ap_close(brk_wtxn *w, const Parley__Internal__Command *cmd,
    uint64_t room, brk_applied *res)
{
	brk_room *r;
	pl_status st = room_for_write(
	    w, cmd->caller, room, PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM, &r);
	if (st != PL_OK)
		return st;
	const char *reason = cmd->close->reason ? cmd->close->reason : "";
	brk_day_delta d;
	brk_day_delta_init(&d, cmd->ts_us);
	brk_room_close(r, reason, cmd->ts_us, &d);
	brk_room_cache_dirty(w, r);
	res->changed = true;
	return brk_days_add(w, r->tenant, &d);
}

/* Failures of the store itself, as opposed to a command's outcome: they
 * fail the whole round. */
static bool storage_failure(pl_status st)
{
	return st == PL_E_MAP_FULL || st == PL_E_DISK_FULL || st == PL_E_IO ||
	       st == PL_E_NOMEM || st == PL_E_CORRUPT;
}

static pl_status apply_cmd(brk_wtxn *w, const Parley__Internal__Command *cmd,
    uint64_t index, brk_arena *a, brk_applied *res)
{
	switch (cmd->op_case) {
	case PARLEY__INTERNAL__COMMAND__OP_CREATE_ROOM:
		return ap_create(w, cmd, res);
	case PARLEY__INTERNAL__COMMAND__OP_JOIN:
		res->room = cmd->join->room;
		return ap_join(w, cmd, cmd->join->room, res);
	case PARLEY__INTERNAL__COMMAND__OP_LEAVE:
		res->room = cmd->leave->room;
		return ap_leave(w, cmd, cmd->leave->room, res);
	case PARLEY__INTERNAL__COMMAND__OP_PUBLISH:
		res->room = cmd->publish->room;
		return ap_publish(w, cmd, index, a, res);
	case PARLEY__INTERNAL__COMMAND__OP_READ:
		res->room = cmd->read->room;
		return ap_read(w, cmd, cmd->read->room, res);
	case PARLEY__INTERNAL__COMMAND__OP_CLOSE:
		res->room = cmd->close->room;
		return ap_close(w, cmd, cmd->close->room, res);
	case PARLEY__INTERNAL__COMMAND__OP_MAP:
		return brk_apply_map(w, cmd->map, res);
	default:
		return PL_E_BAD_REQUEST;
	}
}

pl_status brk_apply(
    brk_wtxn *w, const raft_entry *e, brk_arena *a, brk_applied *res)
{
	memset(res, 0, sizeof(*res));
	if (e->index != w->applied + 1)
		return PL_E_CORRUPT; /* applying out of order */
	if (!w->write)
		return PL_E_MAP_FULL;
	res->index = e->index;
	if (e->type == RAFT_ENTRY_NORMAL && e->len > 0) {
		Parley__Internal__Command *cmd;
		pl_arena_reset(&w->s->cmd_scratch);
		pl_status st = pl_command_decode(
		    e->data, e->len, &w->s->cmd_scratch, &cmd);
		if (st != PL_OK) {
			/* A leader encodes what it proposes; a command that
			 * does not decode is refused the same way on every
			 * replica. */
			res->st = PL_E_BAD_REQUEST;
		} else {
			res->cmd = cmd;
			st = apply_cmd(w, cmd, e->index, a, res);
			if (storage_failure(st)) {
				PL_ERROR("store",
				    "event=apply_failed index=%llu op=%d "
				    "err=\"%s\"",
				    (unsigned long long)e->index,
				    (int)cmd->op_case, pl_strerror(st));
				return st;
			}
			res->st = st;
		}
	} else if (e->type == RAFT_ENTRY_CONF) {
		pl_status st = brk_apply_conf(w, e);
		if (st != PL_OK)
			return st;
	}
	w->applied = e->index;
	return PL_OK;
}
