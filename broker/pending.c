/*
 * pending.c - writes waiting for their entry to be applied: a ring in
 * log-index order (proposals of one leadership get increasing indexes;
 * a lost leadership fails them all). When a ready's entries are applied
 * their results are matched against the ring's head: the same index and
 * term is this write's outcome, a lower index left behind or another
 * term means another leader's entry took its place (unavailable: the
 * outcome of the write is unknown to the client, who may retry an
 * idempotent request).
 */
#include "broker/group_internal.h"

void brk_item_done(brk_group *g, brk_item *it)
{
	PL_ASSERT(it->npending > 0);
	if (--it->npending == 0)
		brk_item_reply(g, it);
}

void brk_pend_push(brk_group *g, uint64_t index, uint64_t term, brk_item *it,
    Parley__ServerFrame *rep, int op)
{
	/* propose() refuses when the ring is full; a leadership proposes
	 * at increasing indexes, and a lost one empties the ring. */
	PL_ASSERT(g->npend < PENDING_MAX);
	PL_ASSERT(
	    g->npend == 0 ||
	    g->pend[(g->pend_head + g->npend - 1) % PENDING_MAX].index < index);
	pending *p = &g->pend[(g->pend_head + g->npend) % PENDING_MAX];
	g->npend++;
	p->index = index;
	p->term = term;
	p->it = it;
	p->rep = rep;
	p->op = op;
	it->npending++;
}

static pending *pend_pop(brk_group *g)
{
	PL_ASSERT(g->npend > 0);
	pending *p = &g->pend[g->pend_head];
	g->pend_head = (g->pend_head + 1) % PENDING_MAX;
	g->npend--;
	return p;
}

/* A write whose outcome is unknown (not applied as proposed). */
static void pend_fail(brk_group *g, pending *p, pl_status st)
{
	if (p->op == BRK_OP_MAP)
		brk_map_failed(g, p->it, st);
	else
		brk_rep_fail(
		    &p->it->arena, p->rep, st, false, brk_group_leader_hint(g));
	brk_item_done(g, p->it);
}

/* Every write in flight fails: leadership lost (outcome unknown). */
void brk_pend_fail_all(brk_group *g, pl_status st)
{
	while (g->npend > 0)
		pend_fail(g, pend_pop(g), st);
}

void brk_results_complete(brk_group *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const brk_applied *res = &g->res[i];
		/* Results come in log order: the ring is matched in one pass.
		 */
		PL_ASSERT(i == 0 || g->res[i - 1].index < res->index);
		while (
		    g->npend > 0 && g->pend[g->pend_head].index <= res->index) {
			pending *p = pend_pop(g);
			if (p->index != res->index ||
			    p->term != g->res_term[i]) {
				/* overwritten by another leader's entry */
				pend_fail(g, p, PL_E_UNAVAILABLE);
				continue;
			}
			if (p->op == BRK_OP_MAP)
				brk_map_applied(g, p->it, res);
			else
				brk_rep_applied(
				    &p->it->arena, p->rep, res, p->op);
			brk_item_done(g, p->it);
		}
	}
}
