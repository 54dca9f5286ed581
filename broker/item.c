/*
 * item.c - a group's work items. An item carries one gateway batch (from
 * net.c's nng callbacks, with the context to answer on) or one peer
 * message (from peer.c) into the group's queue; the group thread decodes
 * it, answers a batch exactly once (brk_item_reply) and puts the item
 * back. The two free lists are the only state shared with nng's threads
 * (under free_mu).
 */
#include <stdlib.h>

#include "broker/group_internal.h"

static brk_item *item_get(brk_group *g)
{
	pthread_mutex_lock(&g->free_mu);
	brk_item *it = g->free_items;
	if (it != NULL) {
		g->free_items = it->next_free;
	} else if (g->nitems < ITEMS_BOUND &&
	           (it = calloc(1, sizeof(*it))) != NULL) {
		/* Another gateway or parked poll: one more item, kept. */
		brk_arena_init(
		    &it->arena, 64 * 1024, (size_t)PL_FRAME_BYTES_CEIL * 8);
		it->next_extra = g->extra;
		g->extra = it;
		g->nitems++;
	}
	pthread_mutex_unlock(&g->free_mu);
	return it;
}

void brk_item_put(brk_group *g, brk_item *it)
{
	if (it->msg != NULL)
		nng_msg_free(it->msg);
	it->msg = NULL;
	it->batch = NULL;
	it->replies = NULL;
	it->nreplies = 0;
	it->gw = NULL;
	it->epoch[0] = '\0';
	it->npending = 0;
	it->deferred = NULL;
	it->map_reply = NULL;
	it->map_since = 0;
	brk_arena_reset(&it->arena);
	pthread_mutex_lock(&g->free_mu);
	if (it->peer) {
		pl_arena_fini(&it->peer_arena);
		free(it->peer_raw);
		it->peer_raw = NULL;
		it->next_free = g->free_peer;
		g->free_peer = it;
	} else {
		it->next_free = g->free_items;
		g->free_items = it;
	}
	pthread_mutex_unlock(&g->free_mu);
}

pl_status brk_group_submit(void *group, void *ctx, nng_msg *msg)
{
	brk_group *g = group;
	brk_item *it = item_get(g);
	if (it == NULL)
		return PL_E_BACKPRESSURE;
	it->ctx = ctx;
	it->msg = msg;
	pl_status st = pl_queue_push(&g->q, it);
	if (st != PL_OK) {
		it->msg = NULL; /* stays with the caller */
		brk_item_put(g, it);
	}
	return st;
}

pl_status brk_group_submit_peer(void *group, nng_msg *msg)
{
	brk_group *g = group;
	pthread_mutex_lock(&g->free_mu);
	brk_item *it = g->free_peer;
	if (it != NULL)
		g->free_peer = it->next_free;
	pthread_mutex_unlock(&g->free_mu);
	if (it == NULL)
		return PL_E_BACKPRESSURE;
	it->msg = msg;
	pl_status st = pl_queue_push(&g->q, it);
	if (st != PL_OK) {
		it->msg = NULL;
		brk_item_put(g, it);
	}
	return st;
}

/* The leader's gateway-facing address, "" when unknown or self. */
const char *brk_group_leader_hint(brk_group *g)
{
	if (g->lead_id == 0)
		return "";
	brk_replica *r = brk_config_replica(&g->cfg, g->lead_id, false);
	return r != NULL ? r->listen : "";
}

/* Packs a BrokerBatch with the item's replies and sends it; releases it. */
void brk_item_reply(brk_group *g, brk_item *it)
{
	Parley__Internal__BrokerBatch b;
	nng_msg *m;
	parley__internal__broker_batch__init(&b);
	b.replies = it->replies;
	b.n_replies = it->nreplies;
	/* The epoch is the item's copy: a batch waiting for its writes may
	 * outlive its gateway's state (forgotten after a leadership change
	 * or an idle spell). */
	b.epoch = it->epoch[0] != '\0' ? it->epoch : g->epoch;
	b.group = g->cfg.group;
	b.gateways = g->leader ? (uint32_t)g->feeds.n : 0;
	/* A map watch is answered by any replica: not_leader only tells a
	 * change to go to the leader. */
	b.not_leader = !g->leader && (it->map_reply == NULL ||
	                                 it->map_reply->code == PL_E_NOT_LEADER);
	b.leader_hint = (char *)brk_group_leader_hint(g);
	b.map = it->map_reply;
	size_t n = parley__internal__broker_batch__get_packed_size(&b);
	if (nng_msg_alloc(&m, n) == 0) {
		parley__internal__broker_batch__pack(&b, nng_msg_body(m));
		brk_net_reply(g->net, it->ctx, m);
	} else {
		PL_ERROR("group", "event=reply_alloc_failed bytes=%zu", n);
	}
	brk_item_put(g, it);
}

pl_status brk_item_decode(brk_item *it)
{
	Parley__Internal__GwBatch *b;
	pl_status st = pl_gw_batch_decode_with(
	    nng_msg_body(it->msg), nng_msg_len(it->msg), &it->arena.alloc, &b);
	if (st != PL_OK)
		return st;
	it->batch = b;
	return PL_OK;
}
