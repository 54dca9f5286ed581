/*
 * round.c - one commit round over the gateway batches taken together:
 * a first pass answers what any replica answers at once (status),
 * refuses what a follower cannot do, proposes writes and marks reads; one
 * drive writes the proposals (with whatever the core has ready) in one
 * transaction; a second pass answers the reads from the applied state;
 * then the round's watch changes and ephemeral events take effect. A
 * batch is answered when its last write applied.
 */
#include "broker/group_internal.h"

/* A leader may serve reads once it has applied an entry of its term:
 * then its applied state holds every entry committed before it led. The
 * check-quorum lease (a leader that loses its majority steps down within
 * an election timeout) keeps a deposed leader from serving for longer. */
static bool reads_ready(brk_group *g)
{
	return g->leader && brk_store_applied(g->store) >= g->lead_index;
}

/* First pass over a gateway batch: status is answered at once, writes
 * are proposed, reads wait for the end of the round (deferred). */
static void handle_item(brk_group *g, brk_item *it, round *rd, size_t *reads)
{
	Parley__Internal__GwBatch *b = it->batch;
	rd->a = &it->arena;
	it->nreplies = 0;
	it->npending = 1; /* held until this pass ends */
	it->replies = ralloc(rd, sizeof(*it->replies) * (b->n_reqs + 1));
	it->deferred = ralloc(rd, b->n_reqs + 1);
	lane_block lb = {.cap = b->n_reqs};
	lb.lane = ralloc(rd, sizeof(*lb.lane) * (b->n_reqs + 1));
	lb.st = ralloc(rd, sizeof(*lb.st) * (b->n_reqs + 1));
	if (it->replies == NULL || it->deferred == NULL || lb.lane == NULL ||
	    lb.st == NULL)
		return; /* empty reply: the gateway answers unavailable */
	for (size_t i = 0; i < b->n_reqs; i++) {
		Parley__ServerFrame *rep = ralloc(rd, sizeof(*rep));
		if (rep == NULL)
			break;
		parley__server_frame__init(rep);
		const Parley__Internal__GwRequest *rq = b->reqs[i];
		rep->id = rq->id;
		it->replies[it->nreplies++] = rep;
		const Parley__ClientFrame *f = rq->frame;
		pl_status st = PL_OK;
		if (f == NULL || rq->caller == NULL ||
		    rq->caller->tenant == NULL ||
		    rq->caller->tenant[0] == '\0' ||
		    pl_client_frame_validate(f) != PL_OK) {
			st = PL_E_BAD_REQUEST;
		} else if (brk_op_at_once((int)f->body_case)) {
			st = brk_dispatch(rd, it, rq, rep);
		} else if (!g->leader) {
			brk_rep_fail(&it->arena, rep, PL_E_NOT_LEADER, true,
			    brk_group_leader_hint(g));
			continue;
		} else if (!brk_op_is_write((int)f->body_case)) {
			if (reads_ready(g)) {
				it->deferred[i] = 1;
				(*reads)++;
				continue;
			}
			st = PL_E_UNAVAILABLE; /* a new leader catching up */
		} else {
			st = brk_write_propose(g, it, rq, rep, &lb);
		}
		if (st == PL_E_NOT_LEADER) {
			brk_rep_fail(&it->arena, rep, st, true,
			    brk_group_leader_hint(g));
			continue;
		}
		if (st != PL_OK)
			brk_rep_fail(&it->arena, rep, st, true, NULL);
	}
}

/* Second pass: the deferred reads, from the applied state. */
static void serve_reads(brk_group *g, round *rd, brk_item **items, size_t n)
{
	if (brk_wtxn_begin(g->store, false, &rd->w) != PL_OK) {
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; items[i]->deferred != NULL &&
			                   j < items[i]->nreplies;
			     j++)
				if (items[i]->deferred[j])
					brk_rep_fail(&items[i]->arena,
					    items[i]->replies[j], PL_E_IO, true,
					    NULL);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		brk_item *it = items[i];
		rd->a = &it->arena;
		for (size_t j = 0; it->deferred != NULL && j < it->nreplies;
		     j++) {
			if (!it->deferred[j])
				continue;
			Parley__ServerFrame *rep = it->replies[j];
			pl_status st =
			    brk_dispatch(rd, it, it->batch->reqs[j], rep);
			if (st != PL_OK)
				/* reads change nothing: not applied */
				brk_rep_fail(rd->a, rep, st, true, NULL);
		}
	}
	brk_wtxn_abort(rd->w);
	rd->w = NULL;
}

static void round_apply(brk_group *g, round *rd)
{
	for (size_t i = 0; i < rd->nwatches; i++) {
		round_watch *w = &rd->watches[i];
		if (!w->on)
			brk_watch_off(
			    &g->watches, w->gw, w->room, w->caller->user);
		else if (brk_watch_on(&g->watches, w->gw, w->room,
		             w->caller->user, w->caller->role) != PL_OK)
			pl_metric_inc(g->m.watch_failed, 1);
	}
	for (size_t i = 0; i < rd->nevents; i++)
		brk_fanout(g, rd->events[i].room, rd->events[i].ev);
}

void brk_run_round(brk_group *g, brk_item **items, size_t n)
{
	size_t reqs = 0, reads = 0;
	for (size_t i = 0; i < n; i++)
		reqs += items[i]->batch->n_reqs;
	round rd;
	memset(&rd, 0, sizeof(rd));
	rd.g = g;
	int64_t now = pl_now_us();
	rd.ts_us = now > g->last_ts_us ? now : g->last_ts_us + 1;
	rd.events = g->events_buf;
	rd.events_cap = reqs;
	rd.watches = g->watches_buf;
	rd.watches_cap = reqs;
	if (g->stalled) {
		/* Requests are waiting: try the held write now rather than
		 * refuse them if the disk has room again. */
		g->stall_retry_us = 0;
		brk_drive(g);
	}
	for (size_t i = 0; i < n; i++)
		handle_item(g, items[i], &rd, &reads);
	brk_drive(g);
	if (reads > 0)
		serve_reads(g, &rd, items, n);
	pl_metric_inc(g->m.requests, (int64_t)reqs);
	pl_hist_record(g->m.round_reqs->hist, reqs);
	round_apply(g, &rd);
	for (size_t i = 0; i < n; i++)
		brk_item_done(g, items[i]); /* the first pass's hold */
}
