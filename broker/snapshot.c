/*
 * snapshot.c - a follower behind the leader's log start gets a copy of
 * the leader's environment: copied by a thread of its own (mdb_env_copy2
 * with compaction, the group goes on), then streamed in chunks of snapshot_chunk_bytes
 * with a window of acknowledgements, resent from the last ack when
 * progress stops, abandoned after SNAP_GIVEUP_US. The follower writes the
 * chunks in order, fsyncs, checks the copy is newer than what it has
 * committed, swaps it in for its store and tells the core
 * (docs/replication.md "Snapshots").
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/group_internal.h"

/* Chunks in flight, unacknowledged (each at most snapshot_chunk_bytes,
 * 1 MiB by default). */
#define SNAP_WINDOW_CHUNKS 4
/* No acknowledged progress for this long: send again from the last ack;
 * for SNAP_GIVEUP_US: give up (Raft asks again later). */
#define SNAP_RESEND_US 2000000
#define SNAP_GIVEUP_US 120000000

static void *snap_copy_main(void *arg)
{
	snap_out *o = arg;
	pl_status st = brk_store_copy(o->g->store, o->dir);
	atomic_store(&o->state, st == PL_OK ? SNAP_READY : SNAP_FAILED);
	return NULL;
}

static void rm_dir(const char *dir)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
}

static void snap_out_end(brk_group *g, snap_out *o, bool ok, bool tell)
{
	if (o->thread_on)
		pthread_join(o->th, NULL);
	o->thread_on = false;
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	rm_dir(o->dir);
	if (tell && g->leader)
		raft_snapshot_done(g->raft, o->peer, ok);
	if (ok)
		pl_metric_inc(g->m.snaps_sent, 1);
	PL_INFO("group", "event=snapshot_%s peer=%llu bytes=%llu",
	    ok ? "sent" : "abandoned", (unsigned long long)o->peer,
	    (unsigned long long)o->total);
	o->active = false;
}

/* Raft asks for a snapshot to peer: copy the environment (in a thread,
 * the group goes on), then stream it. */
void brk_snap_out_start(brk_group *g, uint64_t peer)
{
	snap_out *o = NULL;
	for (int i = 0; i < RAFT_PEERS_MAX; i++) {
		if (g->sout[i].active && g->sout[i].peer == peer)
			return; /* already under way */
		if (!g->sout[i].active && o == NULL)
			o = &g->sout[i];
	}
	if (o == NULL)
		return;
	memset(o, 0, sizeof(*o));
	o->g = g;
	o->fd = -1;
	o->peer = peer;
	o->xfer = ++g->xfer_ids;
	o->term = g->term;
	o->started_us = o->progress_us = pl_mono_us();
	snprintf(o->dir, sizeof(o->dir), "%s.snap-out-%llu", g->cfg.data_dir,
	    (unsigned long long)peer);
	rm_dir(o->dir);
	atomic_store(&o->state, SNAP_COPYING);
	o->active = true;
	if (pthread_create(&o->th, NULL, snap_copy_main, o) != 0) {
		o->active = false;
		raft_snapshot_done(g->raft, peer, false);
		return;
	}
	o->thread_on = true;
	PL_INFO("group", "event=snapshot_start peer=%llu xfer=%llu",
	    (unsigned long long)peer, (unsigned long long)o->xfer);
}

/* Sends what the window allows of every transfer whose copy is ready. */
void brk_snap_pump(brk_group *g)
{
	int64_t now = pl_mono_us();
	for (int i = 0; i < RAFT_PEERS_MAX; i++) {
		snap_out *o = &g->sout[i];
		if (!o->active)
			continue;
		if (!g->leader || o->term != g->term) {
			snap_out_end(g, o, false, false);
			continue;
		}
		int state = atomic_load(&o->state);
		if (state == SNAP_COPYING)
			continue;
		if (state == SNAP_FAILED ||
		    now - o->started_us > SNAP_GIVEUP_US) {
			snap_out_end(g, o, false, true);
			continue;
		}
		if (o->fd < 0) {
			char path[700];
			struct stat sb;
			snprintf(path, sizeof(path), "%s/data.mdb", o->dir);
			o->fd = open(path, O_RDONLY);
			if (o->fd < 0 || fstat(o->fd, &sb) != 0) {
				snap_out_end(g, o, false, true);
				continue;
			}
			o->total = (uint64_t)sb.st_size;
			PL_INFO("group",
			    "event=snapshot_copied peer=%llu bytes=%llu",
			    (unsigned long long)o->peer,
			    (unsigned long long)o->total);
		}
		if (now - o->progress_us > SNAP_RESEND_US) {
			o->sent = o->acked; /* go back to what arrived */
			o->progress_us = now;
		}
		uint64_t chunk = g->cfg.snapshot_chunk_bytes;
		while (o->sent < o->total &&
		       o->sent - o->acked < SNAP_WINDOW_CHUNKS * chunk) {
			size_t n = o->total - o->sent < chunk
			               ? (size_t)(o->total - o->sent)
			               : (size_t)chunk;
			ssize_t got =
			    pread(o->fd, g->snap_buf, n, (off_t)o->sent);
			if (got != (ssize_t)n) {
				snap_out_end(g, o, false, true);
				break;
			}
			Parley__Internal__SnapChunk c, *cp = &c;
			Parley__Internal__PeerBatch b;
			parley__internal__snap_chunk__init(&c);
			parley__internal__peer_batch__init(&b);
			c.xfer = o->xfer;
			c.term = o->term;
			c.offset = o->sent;
			c.total = o->total;
			c.data.data = g->snap_buf;
			c.data.len = n;
			b.chunks = &cp;
			b.n_chunks = 1;
			brk_peer_send(g, o->peer, &b);
			o->sent += n;
		}
	}
}

void brk_snap_on_ack(
    brk_group *g, uint64_t from, const Parley__Internal__SnapAck *a)
{
	for (int i = 0; i < RAFT_PEERS_MAX; i++) {
		snap_out *o = &g->sout[i];
		if (!o->active || o->peer != from || o->xfer != a->xfer)
			continue;
		if (a->offset > o->acked && a->offset <= o->total) {
			o->acked = a->offset;
			o->progress_us = pl_mono_us();
		}
		if (a->done)
			snap_out_end(g, o, true, true);
		return;
	}
}

static void snap_ack(
    brk_group *g, uint64_t to, uint64_t xfer, uint64_t offset, bool done)
{
	Parley__Internal__SnapAck a, *ap = &a;
	Parley__Internal__PeerBatch b;
	parley__internal__snap_ack__init(&a);
	parley__internal__peer_batch__init(&b);
	a.xfer = xfer;
	a.offset = offset;
	a.done = done;
	b.acks = &ap;
	b.n_acks = 1;
	brk_peer_send(g, to, &b);
}

/* Swaps the received copy in for this replica's store and tells the
 * core. The copy is opened first to check it is newer than what this
 * replica has committed; the old environment is kept until the new one
 * is open. */
static pl_status snap_install(brk_group *g, snap_in *in)
{
	char path[700], cur[700], old[700], lock[700];
	raft_status rs;
	raft_status_get(g->raft, &rs);
	brk_store_config sc = g->sc;
	sc.dir = in->dir;
	brk_store *probe;
	pl_status st = brk_store_open(&sc, &probe);
	if (st != PL_OK)
		return st;
	uint64_t a = brk_store_applied(probe);
	brk_store_close(probe);
	if (a <= rs.commit)
		return PL_E_AGAIN; /* nothing new in it */
	raft_hard_state hs;
	uint64_t applied;
	brk_store_raft(g->store, &hs, &applied);
	snprintf(path, sizeof(path), "%s/data.mdb", in->dir);
	snprintf(cur, sizeof(cur), "%s/data.mdb", g->cfg.data_dir);
	snprintf(old, sizeof(old), "%s/data.mdb.old", g->cfg.data_dir);
	snprintf(lock, sizeof(lock), "%s/lock.mdb", g->cfg.data_dir);
	brk_store_close(g->store);
	g->store = NULL;
	unlink(lock);
	if (rename(cur, old) != 0 || rename(path, cur) != 0) {
		rename(old, cur);
		st = PL_E_IO;
	}
	if (st == PL_OK && (st = brk_store_open(&g->sc, &g->store)) != PL_OK) {
		unlink(lock);
		rename(old, cur);
	}
	if (g->store == NULL) {
		pl_status st2 = brk_store_open(&g->sc, &g->store);
		if (st2 != PL_OK) {
			PL_ERROR("group", "event=store_lost err=\"%s\"",
			    pl_strerror(st2));
			abort(); /* no store to run on: restart from disk */
		}
		return st;
	}
	uint64_t index, term;
	st = brk_store_snapshot_adopt(g->store, &hs, &index, &term);
	if (st == PL_OK) {
		/* The configuration as of the copy's applied index came with
		 * it (store/conf.c). */
		raft_conf conf;
		st = brk_conf_base(g, &conf);
		if (st == PL_OK)
			st = raft_snapshot_restore(
			    g->raft, in->from, in->term, index, term, &conf);
	}
	brk_log_release(g->store);
	if (st == PL_OK) {
		unlink(old);
		pl_metric_inc(g->m.snaps_installed, 1);
		brk_map_refresh(g); /* the map came with it (meta group) */
		PL_INFO("group",
		    "event=snapshot_installed index=%llu term=%llu",
		    (unsigned long long)index, (unsigned long long)term);
	} else {
		PL_ERROR("group", "event=snapshot_install_failed err=\"%s\"",
		    pl_strerror(st));
	}
	return st;
}

/* A chunk from the leader: written in order, acknowledged with what is
 * held; the last one installs the snapshot. */
void brk_snap_on_chunk(
    brk_group *g, uint64_t from, const Parley__Internal__SnapChunk *c)
{
	snap_in *in = &g->sin;
	if (g->leader || c->total == 0 || c->total > g->cfg.map_bytes ||
	    c->offset + c->data.len > c->total)
		return;
	if (!in->active || in->xfer != c->xfer || in->from != from) {
		if (c->offset != 0)
			return; /* a stale stream: its sender starts over */
		if (in->fd >= 0)
			close(in->fd);
		memset(in, 0, sizeof(*in));
		snprintf(
		    in->dir, sizeof(in->dir), "%s.snap-in", g->cfg.data_dir);
		rm_dir(in->dir);
		char path[700];
		snprintf(path, sizeof(path), "%s/data.mdb", in->dir);
		if (mkdir(in->dir, 0700) != 0 ||
		    (in->fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600)) <
		        0) {
			in->fd = -1;
			return;
		}
		in->active = true;
		in->xfer = c->xfer;
		in->from = from;
		in->term = c->term;
		in->total = c->total;
		PL_INFO("group",
		    "event=snapshot_receiving from=%llu bytes=%llu",
		    (unsigned long long)from, (unsigned long long)c->total);
	}
	if (c->offset == in->got && c->data.len > 0) {
		if (pwrite(in->fd, c->data.data, c->data.len,
		        (off_t)c->offset) != (ssize_t)c->data.len) {
			in->active = false;
			return;
		}
		in->got += c->data.len;
	}
	bool done = false;
	if (in->got == in->total) {
		bool synced = fsync(in->fd) == 0;
		close(in->fd);
		in->fd = -1;
		in->active = false;
		pl_status st = synced ? snap_install(g, in) : PL_E_IO;
		rm_dir(in->dir);
		done = st == PL_OK || st == PL_E_AGAIN;
	}
	snap_ack(g, from, in->xfer, in->got, done);
}

void brk_snap_fini(brk_group *g)
{
	for (int i = 0; i < RAFT_PEERS_MAX; i++)
		if (g->sout[i].active)
			snap_out_end(g, &g->sout[i], false, false);
	if (g->sin.fd >= 0)
		close(g->sin.fd);
	g->sin.fd = -1;
}
