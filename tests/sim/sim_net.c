/*
 * sim_net.c - the simulated network between replicas (sim_internal.h).
 */
#include "tests/sim/sim_internal.h"

/* Network: every message gets a random delay (so reordering), may be
 * dropped or duplicated, and is lost on a blocked link or a down node. */

static void net_enqueue(sim *w, const raft_msg *m, uint64_t delay)
{
	netmsg nm = {.m = *m, .at = w->now + delay};
	if (m->n_ents > 0) {
		/* Serialize, as a wire would: the core lends entries and
		 * payloads only until raft_advance. One block per message. */
		size_t bytes = sizeof(raft_entry) * m->n_ents;
		for (size_t i = 0; i < m->n_ents; i++)
			bytes += m->ents[i].len;
		nm.ents = xrealloc(NULL, bytes);
		uint8_t *p = (uint8_t *)(nm.ents + m->n_ents);
		for (size_t i = 0; i < m->n_ents; i++) {
			nm.ents[i] = m->ents[i];
			if (m->ents[i].len > 0)
				memcpy(p, m->ents[i].data, m->ents[i].len);
			nm.ents[i].data = p;
			p += m->ents[i].len;
		}
		nm.m.ents = nm.ents;
	}
	VEC_PUSH(w->net, w->n_net, w->cap_net, nm);
}

/* Links are mostly FIFO, as a stream between two replicas is; a few
 * messages take a random path and overtake or fall behind others. */
static uint64_t net_delay(sim *w, const raft_msg *m)
{
	uint64_t d = 1 + rnd_below(w, w->delay_max);
	if (chance_pm(w, w->reorder_pm))
		return chance_pm(w, 100) ? d * 10 : d;
	uint64_t *last =
	    &w->link_at[m->from % (NODES_MAX + 1)][m->to % (NODES_MAX + 1)];
	if (w->now + d < *last)
		d = *last - w->now;
	*last = w->now + d;
	return d;
}

static void snap_requested(sim *w, const raft_msg *m)
{
	/* The simulated storage never compacts, so no follower can be
	 * behind the first index: a snapshot request is a bug. */
	fail(w, "node %" PRIu64 " asks for a snapshot to %" PRIu64, m->from,
	    m->to);
}

void sim_net_send(sim *w, const raft_msg *m)
{
	if (m->type == RAFT_MSG_SNAP) {
		snap_requested(w, m);
		return;
	}
	snode *from = &w->nodes[m->from - 1];
	if (m->type == RAFT_MSG_APP_RESP && !m->reject)
		sim_note_ack(from, m->term, m->index);
	if ((m->type == RAFT_MSG_VOTE_RESP ||
	        m->type == RAFT_MSG_PREVOTE_RESP) &&
	    !m->reject)
		sim_check_voter(w, from);
	if (!w->healed && chance_pm(w, w->drop_pm))
		return;
	net_enqueue(w, m, net_delay(w, m));
	if (chance_pm(w, w->dup_pm))
		net_enqueue(w, m, net_delay(w, m));
}

static void net_deliver_one(sim *w, netmsg *nm)
{
	const raft_msg *m = &nm->m;
	if (m->to < 1 || m->to > (uint64_t)w->n_all)
		return;
	snode *s = &w->nodes[m->to - 1];
	if (!s->up || w->blocked[m->from][m->to])
		return;
	if (w->o.verbose)
		trace(w,
		    "deliver %s %" PRIu64 "->%" PRIu64 " term %" PRIu64
		    " index %" PRIu64 " log_term %" PRIu64 " commit %" PRIu64
		    " n %zu%s",
		    raft_msg_type_name(m->type), m->from, m->to, m->term,
		    m->index, m->log_term, m->commit, m->n_ents,
		    m->reject ? " reject" : "");
	pl_status st = raft_step(s->r, m);
	if (st != PL_OK && w->o.verbose) {
		fprintf(stderr,
		    "bad msg type=%d term=%" PRIu64 " index=%" PRIu64
		    " log_term=%" PRIu64 " n=%zu\n",
		    m->type, m->term, m->index, m->log_term, m->n_ents);
		for (size_t i = 0; i < m->n_ents; i++)
			fprintf(stderr,
			    "  ent %" PRIu64 "/%" PRIu64 " type=%d len=%zu\n",
			    m->ents[i].index, m->ents[i].term, m->ents[i].type,
			    m->ents[i].len);
	}
	if (st != PL_OK)
		fail(w, "node %" PRIu64 " refused a %s from %" PRIu64 ": %s",
		    s->id, raft_msg_type_name(m->type), m->from,
		    pl_strerror(st));
	sim_drain(w, s);
}

/* Delivers the messages due now. */
void sim_net_deliver(sim *w)
{
	size_t due[256];
	size_t n = 0;
	for (size_t i = 0; i < w->n_net && n < PL_ARRAY_LEN(due); i++)
		if (w->net[i].at <= w->now)
			due[n++] = i;
	/* Earliest first, ties in sending order: a FIFO link stays FIFO
	 * (reordering comes from the delays net_delay draws). */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i;
		     j > 0 && w->net[due[j]].at < w->net[due[j - 1]].at; j--) {
			size_t t = due[j];
			due[j] = due[j - 1];
			due[j - 1] = t;
		}
	/* Take them out first: delivering may send (and grow w->net). */
	netmsg batch[256];
	for (size_t i = 0; i < n; i++) {
		batch[i] = w->net[due[i]];
		w->net[due[i]].at = UINT64_MAX; /* mark taken */
	}
	size_t k = 0;
	for (size_t i = 0; i < w->n_net; i++)
		if (w->net[i].at != UINT64_MAX)
			w->net[k++] = w->net[i];
	w->n_net = k;
	for (size_t i = 0; i < n; i++) {
		if (!w->failed)
			net_deliver_one(w, &batch[i]);
		free(batch[i].ents);
	}
}
