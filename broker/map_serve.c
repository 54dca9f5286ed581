/*
 * map_serve.c - the cluster map over the meta group's gateway port
 * (docs/cluster.md). A batch carrying a MapRequest is a watch or a
 * change, never client requests:
 *
 *  - a watch is answered by any replica, leader or not, from its applied
 *    map: at once when that is newer than the watcher's `since`, else
 *    parked until a newer map applies or the wait ends (then answered
 *    with the map it has, so a watcher learns the replica is alive). A
 *    replica cut off from its quorum keeps answering with its last map:
 *    nodes keep serving on it, only changes wait.
 *  - a change must carry the HMAC of its bytes under the cluster secret;
 *    the leader proposes it as a MapCmd and answers once it is applied,
 *    with the outcome every replica computed (pl_map_apply is pure and
 *    deterministic) and the map after it. A follower answers not_leader
 *    with the leader's address, as for any write.
 *
 * Invariant: g->map_version only grows (entries apply in order and each
 * changed map is version + 1); a watch is answered exactly once.
 */
#include <stdlib.h>
#include <string.h>

#include "broker/group_internal.h"
#include "proto/map_client.h"

/* Watches parked at once: one per gateway and broker, a few for
 * operators; past it the oldest is answered early (it asks again). */
#define MAP_WATCHES_MAX 4096

void brk_group_set_map_hook(brk_group *g, brk_map_hook_fn fn, void *ctx)
{
	g->map_hook = fn;
	g->map_hook_ctx = ctx;
}

static Parley__Internal__MapReply *reply_of(brk_item *it)
{
	if (it->map_reply == NULL) {
		it->map_reply = brk_arena_alloc(&it->arena, sizeof(*it->map_reply));
		if (it->map_reply != NULL)
			parley__internal__map_reply__init(it->map_reply);
	}
	return it->map_reply;
}

/* Puts the current map into the reply (borrowed: g->map_buf outlives
 * the reply, which is packed before the group thread goes on). */
static void reply_map(brk_group *g, brk_item *it)
{
	Parley__Internal__MapReply *r = reply_of(it);
	if (r == NULL)
		return; /* empty reply: the watcher asks again */
	r->map.data = g->map_buf;
	r->map.len = g->map_len;
	r->version = g->map_version;
}

static void answer_code(brk_group *g, brk_item *it, pl_status st,
    const char *why)
{
	Parley__Internal__MapReply *r = reply_of(it);
	if (r != NULL) {
		r->code = st;
		if (why != NULL && why[0] != '\0') {
			size_t n = strlen(why) + 1;
			char *w = brk_arena_alloc(&it->arena, n);
			if (w != NULL) {
				memcpy(w, why, n);
				r->why = w;
			}
		}
	}
	reply_map(g, it);
	brk_item_reply(g, it);
}

static void watch_park(brk_group *g, brk_item *it, int64_t now_us)
{
	uint32_t wait = it->batch->map->wait_ms;
	if (wait > POLL_WAIT_MS_MAX)
		wait = POLL_WAIT_MS_MAX;
	if (g->nmap_watches == MAP_WATCHES_MAX) {
		reply_map(g, g->map_watches[0]);
		brk_item_reply(g, g->map_watches[0]);
		memmove(g->map_watches, g->map_watches + 1,
		    (g->nmap_watches - 1) * sizeof(*g->map_watches));
		g->nmap_watches--;
	}
	if (g->nmap_watches == g->map_watches_cap) {
		size_t cap = g->map_watches_cap ? 2 * g->map_watches_cap : 16;
		brk_item **n = realloc(g->map_watches, cap * sizeof(*n));
		if (n == NULL) {
			reply_map(g, it);
			brk_item_reply(g, it);
			return;
		}
		g->map_watches = n;
		g->map_watches_cap = cap;
	}
	it->map_since = it->batch->map->since;
	it->deadline_us = now_us + (int64_t)wait * 1000;
	g->map_watches[g->nmap_watches++] = it;
}

static void change_propose(brk_group *g, brk_item *it)
{
	const Parley__Internal__MapRequest *rq = it->batch->map;
	if (!g->auth_on ||
	    !pl_map_change_mac_ok(g->auth.key, rq->change.data,
	        rq->change.len, rq->mac.data, rq->mac.len)) {
		PL_WARN("meta", "event=map_change_refused reason=bad_mac");
		answer_code(g, it, PL_E_UNAUTHORIZED,
		    "the change is not signed with the cluster secret");
		return;
	}
	if (!g->leader) {
		answer_code(g, it, PL_E_NOT_LEADER, NULL);
		return;
	}
	Parley__Internal__Command cmd;
	Parley__Internal__MapCmd mc;
	parley__internal__command__init(&cmd);
	parley__internal__map_cmd__init(&mc);
	mc.change = rq->change;
	cmd.op_case = PARLEY__INTERNAL__COMMAND__OP_MAP;
	cmd.map = &mc;
	cmd.ts_us = pl_now_us();
	it->npending = 1; /* the batch is answered when it reaches 0 */
	pl_status st = brk_propose_cmd(g, &cmd, it, NULL, BRK_OP_MAP);
	if (st != PL_OK) {
		it->npending = 0;
		answer_code(g, it, st, NULL);
		return;
	}
	brk_item_done(g, it); /* the proposal's own count remains */
}

void brk_map_serve(brk_group *g, brk_item *it, int64_t now_us)
{
	const Parley__Internal__MapRequest *rq = it->batch->map;
	if (rq->status) {
		/* Any group, any replica: an operator's look at it. */
		Parley__Internal__MapReply *r = reply_of(it);
		Parley__GroupStatus *gs =
		    r != NULL ? brk_arena_alloc(&it->arena, sizeof(*gs)) : NULL;
		if (gs != NULL && brk_status_fill(g, &it->arena, gs) == PL_OK)
			r->status = gs;
		brk_item_reply(g, it);
		return;
	}
	if (g->cfg.group != 0) {
		answer_code(g, it, PL_E_BAD_REQUEST,
		    "the cluster map is served by the meta group");
		return;
	}
	if (rq->change.len > 0) {
		change_propose(g, it);
		return;
	}
	if (g->map_version > rq->since) {
		reply_map(g, it);
		brk_item_reply(g, it);
		return;
	}
	watch_park(g, it, now_us);
}

void brk_map_applied(brk_group *g, brk_item *it, const brk_applied *res)
{
	Parley__Internal__MapReply *r = reply_of(it);
	if (r == NULL)
		return;
	r->code = res->st;
	r->changed = res->changed;
	if (res->why[0] != '\0') {
		size_t n = strlen(res->why) + 1;
		char *w = brk_arena_alloc(&it->arena, n);
		if (w != NULL) {
			memcpy(w, res->why, n);
			r->why = w;
		}
	}
	reply_map(g, it);
}

void brk_map_failed(brk_group *g, brk_item *it, pl_status st)
{
	(void)g;
	Parley__Internal__MapReply *r = reply_of(it);
	if (r != NULL)
		r->code = st;
}

void brk_map_expire(brk_group *g, int64_t now_us, bool all)
{
	size_t k = 0;
	for (size_t i = 0; i < g->nmap_watches; i++) {
		brk_item *it = g->map_watches[i];
		if (all || now_us >= it->deadline_us ||
		    g->map_version > it->map_since) {
			reply_map(g, it);
			brk_item_reply(g, it);
		} else {
			g->map_watches[k++] = it;
		}
	}
	g->nmap_watches = k;
}

void brk_map_refresh(brk_group *g)
{
	if (g->cfg.group != 0)
		return;
	uint8_t *buf;
	size_t len;
	uint64_t version;
	pl_status st = brk_store_map_read(g->store, &buf, &len, &version);
	if (st != PL_OK) {
		PL_ERROR("meta", "event=map_read_failed err=\"%s\"",
		    pl_strerror(st));
		return;
	}
	if (version <= g->map_version && g->map_buf != NULL) {
		free(buf);
		return;
	}
	free(g->map_buf);
	g->map_buf = buf;
	g->map_len = len;
	g->map_version = version;
	PL_INFO("meta", "event=map_applied version=%llu bytes=%zu",
	    (unsigned long long)version, len);
	brk_map_expire(g, pl_now_us(), false);
	if (g->map_hook != NULL && buf != NULL)
		g->map_hook(g->map_hook_ctx, buf, len, version);
}
