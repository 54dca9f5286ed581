/*
 * raft_msgs.c - Raft messages between the replicas of a group: a ready's
 * messages become one PeerBatch per peer, in the core's order, sealed in
 * the peer envelope (envelope.h) and handed to peer.c; a received batch
 * is opened, each message checked against its sender (a replica may only
 * speak for itself, to this replica) and stepped into the core. Anything
 * wrong drops the batch whole and is counted: Raft resends what matters.
 */
#include "broker/group_internal.h"

static Parley__Internal__RaftMsg *msg_to_pb(brk_arena *a, const raft_msg *m)
{
	Parley__Internal__RaftMsg *pm = brk_arena_alloc(a, sizeof(*pm));
	if (pm == NULL)
		return NULL;
	parley__internal__raft_msg__init(pm);
	pm->type = m->type;
	pm->reject = m->reject;
	pm->force = m->force;
	pm->from = m->from;
	pm->to = m->to;
	pm->term = m->term;
	pm->index = m->index;
	pm->log_term = m->log_term;
	pm->commit = m->commit;
	pm->hint = m->hint;
	if (m->n_ents == 0)
		return pm;
	Parley__Internal__RaftEntry *e =
	    brk_arena_alloc(a, m->n_ents * sizeof(*e));
	pm->ents = brk_arena_alloc(a, m->n_ents * sizeof(*pm->ents));
	if (e == NULL || pm->ents == NULL)
		return NULL;
	for (size_t i = 0; i < m->n_ents; i++) {
		parley__internal__raft_entry__init(&e[i]);
		e[i].term = m->ents[i].term;
		e[i].index = m->ents[i].index;
		e[i].type = m->ents[i].type;
		e[i].data.data = (uint8_t *)m->ents[i].data;
		e[i].data.len = m->ents[i].len;
		pm->ents[i] = &e[i];
	}
	pm->n_ents = m->n_ents;
	return pm;
}

static void peer_send_batch(
    brk_group *g, uint64_t to, Parley__Internal__RaftMsg **msgs, size_t n)
{
	Parley__Internal__PeerBatch b;
	parley__internal__peer_batch__init(&b);
	b.msgs = msgs;
	b.n_msgs = n;
	brk_peer_send(g, to, &b);
}

void brk_peer_send(brk_group *g, uint64_t to, Parley__Internal__PeerBatch *bp)
{
	Parley__Internal__PeerBatch b = *bp;
	b.group = g->cfg.group;
	size_t len;
	nng_msg *m = NULL;
	size_t sealed;
	pl_status st = brk_envelope_pack(&g->env, &b, &len);
	if (st == PL_OK && nng_msg_alloc(&m, len) != 0)
		st = PL_E_NOMEM;
	if (st == PL_OK)
		st = brk_envelope_seal(
		    &g->env, &g->auth, nng_msg_body(m), len, &sealed);
	if (st != PL_OK) {
		/* Lost like a dropped send: the core sends again. */
		nng_msg_free(m);
		pl_metric_inc(g->m.peer_send_failed, 1);
		PL_WARN("group", "event=peer_send_failed to=%llu err=\"%s\"",
		    (unsigned long long)to, pl_strerror(st));
		return;
	}
	PL_ASSERT(sealed == len);
	pl_metric_inc(g->m.peer_out, 1);
	brk_peers_send(g->peers, to, m);
}

/* Sends a ready's messages: one PeerBatch per peer, in the core's order.
 * Snapshot requests (a follower behind the log's first index, after the
 * log was compacted: brk_compact) are returned in snap[] for
 * snapshot.c. */
size_t brk_send_msgs(brk_group *g, const raft_ready *rd, uint64_t *snap)
{
	size_t nsnap = 0;
	if (g->peers == NULL || rd->n_msgs == 0)
		return 0;
	uint64_t done[RAFT_PEERS_MAX];
	size_t ndone = 0;
	Parley__Internal__RaftMsg **batch =
	    brk_arena_alloc(&g->send_arena, rd->n_msgs * sizeof(*batch));
	if (batch == NULL)
		return 0;
	for (size_t i = 0; i < rd->n_msgs; i++) {
		uint64_t to = rd->msgs[i].to;
		if (rd->msgs[i].type == RAFT_MSG_SNAP) {
			if (nsnap < RAFT_PEERS_MAX)
				snap[nsnap++] = to;
			continue;
		}
		bool seen = false;
		for (size_t k = 0; k < ndone && !seen; k++)
			seen = done[k] == to;
		if (seen || ndone == RAFT_PEERS_MAX)
			continue;
		done[ndone++] = to;
		size_t n = 0;
		for (size_t j = i; j < rd->n_msgs; j++) {
			const raft_msg *m = &rd->msgs[j];
			if (m->to != to || m->type == RAFT_MSG_SNAP)
				continue;
			Parley__Internal__RaftMsg *pm =
			    msg_to_pb(&g->send_arena, m);
			if (pm != NULL)
				batch[n++] = pm;
		}
		peer_send_batch(g, to, batch, n);
	}
	brk_arena_reset(&g->send_arena);
	return nsnap;
}

/* Opens, checks and steps one received PeerBatch. Anything wrong with it
 * (bad MAC, replay, wrong group, a sender claiming another's id, bytes
 * that do not decode) drops it whole: Raft resends what matters. */
void brk_peer_receive(brk_group *g, brk_item *it)
{
	uint64_t sender;
	Parley__Internal__PeerBatch *b;
	if (!g->auth_on ||
	    brk_envelope_open(&g->env, &g->auth, g->cfg.group,
	        nng_msg_body(it->msg), nng_msg_len(it->msg), &it->peer_arena,
	        &it->peer_raw, &sender, &b) != PL_OK) {
		pl_metric_inc(g->m.peer_bad, 1);
		return;
	}
	pl_metric_inc(g->m.peer_in, 1);
	for (size_t i = 0; i < b->n_msgs; i++) {
		const Parley__Internal__RaftMsg *pm = b->msgs[i];
		if (pm->from != (sender & 0xffff) || pm->to != g->cfg.node ||
		    pm->n_ents > RAFT_MSG_ENTRIES_MAX)
			goto bad;
		raft_entry *ents = NULL;
		if (pm->n_ents > 0) {
			ents = brk_arena_alloc(
			    &it->arena, pm->n_ents * sizeof(*ents));
			if (ents == NULL)
				goto bad;
		}
		for (size_t j = 0; j < pm->n_ents; j++) {
			const Parley__Internal__RaftEntry *e = pm->ents[j];
			ents[j] = (raft_entry){.term = e->term,
			    .index = e->index,
			    .type = (uint8_t)e->type,
			    .data = e->data.data,
			    .len = e->data.len};
		}
		raft_msg m = {.type = (uint8_t)pm->type,
		    .reject = pm->reject,
		    .force = pm->force,
		    .from = pm->from,
		    .to = pm->to,
		    .term = pm->term,
		    .index = pm->index,
		    .log_term = pm->log_term,
		    .commit = pm->commit,
		    .hint = pm->hint,
		    .ents = ents,
		    .n_ents = pm->n_ents};
		if (raft_step(g->raft, &m) != PL_OK)
			PL_DEBUG("group",
			    "event=peer_msg_refused type=%s from=%llu "
			    "term=%llu",
			    raft_msg_type_name(m.type),
			    (unsigned long long)m.from,
			    (unsigned long long)m.term);
	}
	/* A quiet replica wakes when stepping these gave its core work (the
	 * driver looks before each ready), not on any message: the answers
	 * to the last heartbeats before a leader went quiet change
	 * nothing. */
	if (b->quiet != NULL)
		brk_quiet_on_beat(g, sender & 0xffff, b->quiet);
	for (size_t i = 0; i < b->n_chunks; i++)
		brk_snap_on_chunk(g, sender & 0xffff, b->chunks[i]);
	for (size_t i = 0; i < b->n_acks; i++)
		brk_snap_on_ack(g, sender & 0xffff, b->acks[i]);
	return;
bad:
	pl_metric_inc(g->m.peer_bad, 1);
}
