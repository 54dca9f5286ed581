/*
 * cmd.c - the command a client write request becomes (brk_cmd_build):
 * the Command a leader proposes and every replica applies. A publish
 * body at least compress_bytes_min long is zstd-compressed here, once,
 * when that makes it shorter, so the log stores the compressed bytes.
 *
 * Invariants: a built command borrows every string from the request (no
 * copy); a compressed body points into the store's zbuf, valid until the
 * next build; a body over BODY_BYTES_MAX is refused before compression.
 *
 * Entry point: brk_cmd_build (store.h).
 */
#include <zstd.h>

#include "broker/store/store_internal.h"

#define ZSTD_LEVEL 1 /* chat text: speed over ratio */

static pl_status body_encode(brk_store *s, Parley__Internal__PublishCmd *op,
    const ProtobufCBinaryData *body)
{
	op->body = *body;
	if (body->len > BODY_BYTES_MAX)
		return PL_E_TOO_LARGE;
	if (s->cfg.compress_bytes_min == 0 ||
	    body->len < s->cfg.compress_bytes_min)
		return PL_OK;
	size_t z = ZSTD_compressCCtx(
	    s->zc, s->zbuf, s->zbuf_cap, body->data, body->len, ZSTD_LEVEL);
	if (ZSTD_isError(z) || z >= body->len)
		return PL_OK;
	op->body.data = s->zbuf;
	op->body.len = z;
	op->compressed = true;
	op->raw_len = (uint32_t)body->len;
	return PL_OK;
}

pl_status brk_cmd_build(brk_store *s, const Parley__Internal__Caller *c,
    const Parley__ClientFrame *f, uint64_t room, int64_t ts, brk_cmd *out)
{
	Parley__Internal__Command *cmd = &out->cmd;
	parley__internal__command__init(cmd);
	cmd->ts_us = ts;
	cmd->caller = (Parley__Internal__Caller *)c;
	switch (f->body_case) {
	case PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM: {
		Parley__Internal__CreateRoomCmd *op = &out->op.create_room;
		parley__internal__create_room_cmd__init(op);
		op->idempotency_key = f->create_room->idempotency_key;
		op->n_meta = f->create_room->n_meta;
		op->meta = f->create_room->meta;
		cmd->op_case = PARLEY__INTERNAL__COMMAND__OP_CREATE_ROOM;
		cmd->create_room = op;
		return PL_OK;
	}
	case PARLEY__CLIENT_FRAME__BODY_JOIN:
	case PARLEY__CLIENT_FRAME__BODY_LEAVE: {
		/* JoinCmd and LeaveCmd carry the room alone. */
		bool join = f->body_case == PARLEY__CLIENT_FRAME__BODY_JOIN;
		if (join) {
			parley__internal__join_cmd__init(&out->op.join);
			out->op.join.room = room;
			cmd->op_case = PARLEY__INTERNAL__COMMAND__OP_JOIN;
			cmd->join = &out->op.join;
		} else {
			parley__internal__leave_cmd__init(&out->op.leave);
			out->op.leave.room = room;
			cmd->op_case = PARLEY__INTERNAL__COMMAND__OP_LEAVE;
			cmd->leave = &out->op.leave;
		}
		return PL_OK;
	}
	case PARLEY__CLIENT_FRAME__BODY_PUBLISH: {
		const Parley__Publish *p = f->publish;
		Parley__Internal__PublishCmd *op = &out->op.publish;
		parley__internal__publish_cmd__init(op);
		op->room = room;
		op->client_msg_id = p->client_msg_id ? p->client_msg_id : "";
		op->kind = p->kind;
		op->n_meta = p->n_meta;
		op->meta = p->meta;
		cmd->op_case = PARLEY__INTERNAL__COMMAND__OP_PUBLISH;
		cmd->publish = op;
		return body_encode(s, op, &p->body);
	}
	case PARLEY__CLIENT_FRAME__BODY_READ: {
		Parley__Internal__ReadCmd *op = &out->op.read;
		parley__internal__read_cmd__init(op);
		op->room = room;
		op->seq = f->read->seq;
		cmd->op_case = PARLEY__INTERNAL__COMMAND__OP_READ;
		cmd->read = op;
		return PL_OK;
	}
	case PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM: {
		Parley__Internal__CloseCmd *op = &out->op.close;
		parley__internal__close_cmd__init(op);
		op->room = room;
		op->reason = f->close_room->reason ? f->close_room->reason : "";
		cmd->op_case = PARLEY__INTERNAL__COMMAND__OP_CLOSE;
		cmd->close = op;
		return PL_OK;
	}
	default:
		return PL_E_BAD_REQUEST;
	}
}
