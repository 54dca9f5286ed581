/*
 * link_poll.c - a link's live feed: one poll in flight at the leader on
 * its own context, parked by the broker up to GW_POLL_WAIT_MS. Replies
 * are handed to the feed (gw_link_feed.on_events) in the order the
 * broker sent them, under feed_mu; an epoch change (the broker restarted
 * and forgot the watches) is told through on_epoch.
 */
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>

#include "gateway/link_int.h"

enum { POLL_SEND, POLL_RECV };

/* Checks a reply's epoch; a change means the broker restarted and forgot
 * our watches. True on a change (not on the first sighting). */
static bool epoch_update(gw_link *l, const char *epoch)
{
	if (epoch == NULL || epoch[0] == '\0' ||
	    strncmp(l->epoch, epoch, sizeof(l->epoch) - 1) == 0)
		return false;
	bool changed = l->epoch[0] != '\0';
	PL_INFO(GW_MOD, "event=broker_epoch group=%u epoch=%s previous=%s",
	    (unsigned)l->id, epoch, changed ? l->epoch : "-");
	snprintf(l->epoch, sizeof(l->epoch), "%s", epoch);
	return changed;
}

void gw_link_batch_epoch(gw_link *l, const char *epoch)
{
	pthread_mutex_lock(&l->feed_mu);
	bool changed = epoch_update(l, epoch);
	pthread_mutex_unlock(&l->feed_mu);
	if (changed)
		l->feed.on_epoch(l->feed.ctx, l->id);
}

/* The wait between polls has its own aio: nng 1.5 leaves an aio that
 * once slept marked as sleeping, and a later timeout on it would then
 * complete as a success without a message. */
static void poll_sleep(gw_link *l, int64_t ms)
{
	nng_sleep_aio((nng_duration)ms, l->psaio);
}

void gw_link_poll_sleep_cb(void *arg)
{
	gw_link *l = arg;
	if (nng_aio_result(l->psaio) == 0)
		gw_link_poll_send(l); /* cancelled only by gw_link_stop */
}

/* After a failed poll, wait before polling again: no busy loop while a
 * broker is down. With several replicas the link has moved on already,
 * so only the leader backoff is waited. */
static void poll_retry_later(gw_link *l)
{
	poll_sleep(l, atomic_load(&l->nrep) > 1 ? GW_LEADER_BACKOFF_MS
	                                        : GW_POLL_RETRY_MS);
}

void gw_link_poll_send(gw_link *l)
{
	Parley__Internal__GwBatch gb = PARLEY__INTERNAL__GW_BATCH__INIT;
	gb.gateway = (char *)l->g->conf->id;
	gb.group = l->id; /* the broker parks a poll per group */
	gb.poll = true;
	gb.wait_ms = GW_POLL_WAIT_MS;
	uint8_t buf[GW_ID_CHARS_MAX + 32];
	size_t n;
	nng_msg *m;
	if (pl_pb_encode(&gb.base, buf, sizeof(buf), &n) != PL_OK ||
	    nng_msg_alloc(&m, n) != 0) {
		poll_retry_later(l);
		return;
	}
	memcpy(nng_msg_body(m), buf, n);
	/* Started under mu, after checking stopping: gw_link_stop sets
	 * stopping under mu before it stops the aio, so an operation is
	 * either fully started (and then cancelled, its callback freeing
	 * the message) or never started (and the message freed here). */
	pthread_mutex_lock(&l->mu);
	if (l->stopping) {
		pthread_mutex_unlock(&l->mu);
		nng_msg_free(m);
		return;
	}
	int64_t now = pl_mono_us();
	if (now < l->hold_until_us) {
		/* No leader known yet: ask again when the hold ends. */
		poll_sleep(l, (l->hold_until_us - now) / 1000 + 1);
		pthread_mutex_unlock(&l->mu);
		nng_msg_free(m);
		return;
	}
	l->poll_rep = gw_link_leader_dest_locked(l);
	nng_aio_set_msg(l->paio, m);
	nng_aio_set_timeout(l->paio,
	    (nng_duration)(GW_POLL_WAIT_MS + atomic_load(&l->timeout_ms)));
	l->poll_phase = POLL_SEND;
	l->poll_ctx = l->reps[l->poll_rep].pctx;
	nng_ctx_send(l->poll_ctx, l->paio);
	pthread_mutex_unlock(&l->mu);
}

static bool link_stopping(gw_link *l)
{
	pthread_mutex_lock(&l->mu);
	bool s = l->stopping;
	pthread_mutex_unlock(&l->mu);
	return s;
}

/* A poll reply: the next poll goes out before its events are processed
 * (so the broker can park it meanwhile), but feed_mu is taken first, so
 * the next reply waits until this one's events are delivered: replies
 * are processed in the order the broker sent them. A replica that does
 * not lead answers at once with no events: the link moves (see
 * gw_link_leader_moved_locked) before the next poll is sent. */
static void poll_reply(gw_link *l)
{
	pthread_mutex_lock(&l->feed_mu);
	nng_msg *m = nng_aio_get_msg(l->paio);
	nng_aio_set_msg(l->paio, NULL);
	pl_arena a = {0};
	Parley__Internal__BrokerBatch *bb = gw_link_reply_decode(l, m, &a);
	pthread_mutex_lock(&l->mu);
	int from = l->poll_rep;
	if (bb != NULL && bb->not_leader)
		gw_link_leader_moved_locked(l, from, bb->leader_hint);
	bool current = from == atomic_load(&l->cur);
	pthread_mutex_unlock(&l->mu);
	gw_link_poll_send(l);
	bool changed = false;
	if (bb != NULL && !bb->not_leader) {
		atomic_store(&l->last_ok_us, pl_mono_us());
		/* A replica left behind may still answer once: its events
		 * are real, its epoch is not the feed's any more. */
		if (current)
			changed = epoch_update(l, bb->epoch);
		l->feed.on_events(l->feed.ctx, l->id, bb);
	}
	pthread_mutex_unlock(&l->feed_mu);
	if (changed)
		l->feed.on_epoch(l->feed.ctx, l->id);
	pl_arena_fini(&a);
	nng_msg_free(m);
}

void gw_link_poll_cb(void *arg)
{
	gw_link *l = arg;
	int rv = nng_aio_result(l->paio);
	int phase = l->poll_phase;
	if (rv != 0 && phase == POLL_SEND) {
		/* A failed send still owns its message. */
		nng_msg_free(nng_aio_get_msg(l->paio));
		nng_aio_set_msg(l->paio, NULL);
	}
	if (link_stopping(l)) {
		if (rv == 0 && phase == POLL_RECV) {
			nng_msg_free(nng_aio_get_msg(l->paio));
			nng_aio_set_msg(l->paio, NULL);
		}
		return;
	}
	if (rv == 0 && phase == POLL_RECV && nng_aio_get_msg(l->paio) == NULL)
		rv = NNG_EINTERNAL; /* never seen since psaio; not trusted */
	if (rv != 0) {
		/* The broker may be down: another replica may lead. */
		PL_DEBUG(GW_MOD, "event=poll_failed group=%u err=\"%s\"",
		    (unsigned)l->id, nng_strerror(rv));
		pthread_mutex_lock(&l->mu);
		gw_link_leader_lost_locked(l, l->poll_rep);
		pthread_mutex_unlock(&l->mu);
		poll_retry_later(l);
	} else if (phase == POLL_SEND) {
		l->poll_phase = POLL_RECV;
		nng_ctx_recv(l->poll_ctx, l->paio);
	} else {
		poll_reply(l);
	}
}
