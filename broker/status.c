/*
 * status.c - one replica's status (parley.GroupStatus): its role, term,
 * commit and applied indexes, leader, Raft configuration and store
 * usage. Asked for by gateways (`status` requests, `parleyctl group
 * status`) and by operators' tools directly (MapRequest.status, any
 * group, any replica: `parleyctl cluster status` and the waits of a
 * replica move).
 */
#include "broker/group_internal.h"

pl_status brk_status_fill(brk_group *g, brk_arena *a, Parley__GroupStatus *gs)
{
	raft_status st;
	raft_status_get(g->raft, &st);
	parley__group_status__init(gs);
	gs->group = g->cfg.group;
	gs->address = g->cfg.listen;
	gs->reachable = true;
	brk_store_usage(
	    g->store, &gs->map_used_bytes, &gs->map_size_bytes, &gs->rooms);
	gs->last_index = brk_store_last_index(g->store);
	gs->durability = g->cfg.sync ? "sync" : "relaxed";
	gs->role = (char *)raft_role_name(st.role);
	gs->node_id = g->cfg.node;
	gs->term = st.term;
	gs->commit = st.commit;
	gs->applied = brk_store_applied(g->store);
	gs->leader_id = st.lead;
	gs->voters = st.conf.n_voters;
	gs->repairing = st.repairing;
	size_t nv = st.conf.n_voters, nl = st.conf.n_learners;
	uint64_t *ids = brk_arena_alloc(a, (nv + nl + 1) * sizeof(*ids));
	if (ids == NULL)
		return PL_E_NOMEM;
	memcpy(ids, st.conf.voters, nv * sizeof(*ids));
	memcpy(ids + nv, st.conf.learners, nl * sizeof(*ids));
	gs->conf_voters = ids;
	gs->n_conf_voters = nv;
	gs->conf_learners = ids + nv;
	gs->n_conf_learners = nl;
	return PL_OK;
}
