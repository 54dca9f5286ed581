/*
 * writes.c - proposing writes. A write request becomes a Command (built
 * by the store from the applied state: ids, timestamps, checks that need
 * no log) packed into the proposal arena and proposed to the core; it is
 * answered when its entry applies (pending.c).
 *
 * Lanes (docs/internals.md "Request order"): a write refused before
 * entering the log, for a reason that passes (backpressure, a stalled
 * disk, no leadership), makes every later write of its lane in the batch
 * refused with the same answer, so that on the retry a later write cannot
 * land before the earlier one. A lane of 0 is no lane.
 */
#include "broker/group_internal.h"

/* Builds the command of a write request and proposes it. */
static pl_status propose(brk_group *g, brk_item *it,
    const Parley__Internal__GwRequest *rq, Parley__ServerFrame *rep)
{
	const Parley__ClientFrame *f = rq->frame;
	brk_cmd bc;
	uint64_t room = 0;
	int64_t now = pl_now_us();
	int64_t ts = now > g->last_ts_us ? now : g->last_ts_us + 1;
	g->last_ts_us = ts;
	if (f->body_case != PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM) {
		const char *rs = pl_client_frame_room(f);
		if (rs == NULL || pl_room_parse(rs, &room) != PL_OK ||
		    pl_room_group(room) != g->cfg.group)
			return PL_E_NOT_FOUND;
	}
	pl_status bst = brk_cmd_build(g->store, rq->caller, f, room, ts, &bc);
	if (bst != PL_OK)
		return bst;
	if (bc.cmd.op_case == PARLEY__INTERNAL__COMMAND__OP_PUBLISH)
		bc.cmd.publish->origin = rq->origin;
	return brk_propose_cmd(g, &bc.cmd, it, rep, f->body_case);
}

pl_status brk_propose_cmd(brk_group *g, Parley__Internal__Command *cmd,
    brk_item *it, Parley__ServerFrame *rep, int op)
{
	if (g->npend == PENDING_MAX)
		return PL_E_BACKPRESSURE;
	if (raft_unstable_count(g->raft) >= RAFT_UNSTABLE_MAX) {
		/* Write out what is queued first. The drive resets the
		 * proposal arena, so the command is packed after it. */
		brk_drive(g);
		if (g->stalled || !g->leader)
			return g->stalled ? g->stall_err : PL_E_NOT_LEADER;
	}
	size_t n = parley__internal__command__get_packed_size(cmd);
	uint8_t *buf = brk_arena_alloc(&g->prop_arena, n ? n : 1);
	if (buf == NULL)
		return PL_E_BACKPRESSURE;
	parley__internal__command__pack(cmd, buf);
	uint64_t index, term;
	pl_status st = raft_propose(g->raft, buf, n, &index, &term);
	if (st != PL_OK)
		return st;
	pl_metric_inc(g->m.proposals, 1);
	brk_pend_push(g, index, term, it, rep, op);
	return PL_OK;
}

static bool refusal_passes(pl_status st)
{
	int code = pl_status_to_code(st);
	return code == PARLEY__ERROR_CODE__OVERLOADED ||
	       code == PARLEY__ERROR_CODE__UNAVAILABLE ||
	       code == PARLEY__ERROR_CODE__RATE_LIMITED ||
	       code == PARLEY__ERROR_CODE__INTERNAL;
}

static pl_status lane_blocked(const lane_block *lb, uint64_t lane)
{
	for (size_t i = 0; lane != 0 && i < lb->n; i++)
		if (lb->lane[i] == lane)
			return lb->st[i];
	return PL_OK;
}

static void lane_block_add(lane_block *lb, uint64_t lane, pl_status st)
{
	if (lane == 0 || !refusal_passes(st) || lb->n == lb->cap ||
	    lane_blocked(lb, lane) != PL_OK)
		return;
	lb->lane[lb->n] = lane;
	lb->st[lb->n] = st;
	lb->n++;
}

/* A write of rq: proposed, or refused as its lane already is. */
pl_status brk_write_propose(brk_group *g, brk_item *it,
    const Parley__Internal__GwRequest *rq, Parley__ServerFrame *rep,
    lane_block *lb)
{
	pl_status st = lane_blocked(lb, rq->lane);
	if (st != PL_OK)
		return st;
	st = g->stalled ? g->stall_err : propose(g, it, rq, rep);
	if (st != PL_OK)
		lane_block_add(lb, rq->lane, st);
	return st;
}
