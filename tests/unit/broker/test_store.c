/*
 * test_store.c - the LMDB store: append and index, history in both
 * directions, de-duplication, idempotent create, compression, CRC
 * mismatch detection, recovery after a crash (kill -9 of a writer) and a
 * full map (writers refused, readers served, nothing corrupted).
 */
#define CHECK_MAIN
#include <lmdb.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker/broker.h"
#include "tests/check.h"
#include "tests/unit/broker/store_writes.h"

typedef struct fixture {
	char dir[64];
	brk_store *s;
	brk_arena a;
	Parley__Internal__Caller svc, cust, other;
} fixture;

static pl_status fx_open(fixture *f, uint64_t map_bytes, uint32_t window)
{
	brk_store_config c = {.dir = f->dir,
	    .map_bytes = map_bytes,
	    .sync = true,
	    .group = 1,
	    .compress_bytes_min = 256,
	    .dedup_window = window};
	return brk_store_open(&c, &f->s);
}

static void fx_init(fixture *f)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/parley-store-XXXXXX");
	PL_ASSERT(mkdtemp(f->dir) != NULL);
	brk_arena_init(&f->a, 64 * 1024, 64u << 20);
	parley__internal__caller__init(&f->svc);
	f->svc.tenant = "acme";
	f->svc.user = "backend";
	f->svc.role = PARLEY__ROLE__SERVICE;
	f->svc.room_scope = "";
	f->cust = f->svc;
	f->cust.user = "cust";
	f->cust.role = PARLEY__ROLE__CUSTOMER;
	f->other = f->svc;
	f->other.tenant = "globex";
}

static void fx_fini(fixture *f)
{
	char cmd[128];
	brk_store_close(f->s);
	brk_arena_fini(&f->a);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", f->dir);
}

static pl_status create(fixture *f, const Parley__Internal__Caller *c,
    const char *key, uint64_t *room)
{
	brk_wtxn *w;
	Parley__CreateRoom cr;
	bool existed;
	parley__create_room__init(&cr);
	cr.idempotency_key = (char *)key;
	pl_status st = brk_wtxn_begin(f->s, true, &w);
	if (st != PL_OK)
		return st;
	st = brk_create_room(w, c, &cr, pl_now_us(), room, &existed);
	if (st == PL_OK)
		return brk_wtxn_commit(w);
	brk_wtxn_abort(w);
	return st;
}

/* Publishes n messages "m<i>" in one round; ids "<prefix><i>". */
static pl_status publish_n(fixture *f, const Parley__Internal__Caller *c,
    uint64_t room, int n, const char *prefix, size_t body_len,
    brk_pub_result *last)
{
	static uint8_t body[64 * 1024];
	brk_wtxn *w;
	pl_status st = brk_wtxn_begin(f->s, true, &w);
	for (int i = 0; i < n && st == PL_OK; i++) {
		char id[32];
		Parley__Publish p;
		parley__publish__init(&p);
		snprintf(id, sizeof(id), "%s%d", prefix, i);
		p.client_msg_id = id;
		memset(body, 'a' + i % 26, sizeof(body));
		snprintf((char *)body, sizeof(body), "m%d", i);
		p.body.data = body;
		p.body.len = body_len ? body_len : strlen((char *)body);
		st = brk_publish(w, c, room, &p, pl_now_us(), last);
	}
	if (st == PL_OK)
		return brk_wtxn_commit(w);
	brk_wtxn_abort(w);
	return st;
}

static pl_status history(fixture *f, uint64_t room, uint64_t before,
    uint64_t after, uint32_t limit, Parley__HistoryPage *page)
{
	brk_wtxn *w;
	Parley__History h;
	parley__history__init(&h);
	h.before_seq = before;
	h.after_seq = after;
	h.limit = limit;
	h.oldest_first = after != 0;
	brk_arena_reset(&f->a);
	pl_status st = brk_wtxn_begin(f->s, false, &w);
	if (st != PL_OK)
		return st;
	st = brk_history(w, room, &h, &f->a, page);
	brk_wtxn_abort(w);
	return st;
}

TEST(test_store_append_and_history_both_directions)
{
	fixture f;
	uint64_t room;
	brk_pub_result r;
	Parley__HistoryPage page;
	fx_init(&f);
	CHECK_EQ(fx_open(&f, 64u << 20, 100), PL_OK);
	CHECK_EQ(create(&f, &f.svc, "", &room), PL_OK);
	CHECK_EQ(pl_room_group(room), 1);
	CHECK_EQ(publish_n(&f, &f.svc, room, 10, "x", 0, &r), PL_OK);
	CHECK_EQ(r.seq, 10);
	CHECK_EQ(history(&f, room, 0, 3, 4, &page), PL_OK);
	CHECK_EQ(page.n_messages, 4);
	CHECK_EQ(page.messages[0]->seq, 4);
	CHECK_EQ(page.messages[3]->seq, 7);
	CHECK(page.more);
	CHECK_EQ(history(&f, room, 5, 0, 10, &page), PL_OK);
	CHECK_EQ(page.n_messages, 4);
	CHECK_EQ(page.messages[0]->seq, 4);
	CHECK_EQ(page.messages[3]->seq, 1);
	CHECK(!page.more);
	CHECK_EQ(history(&f, room, 0, 0, 3, &page), PL_OK);
	CHECK_EQ(page.messages[0]->seq, 10);
	CHECK_EQ(page.messages[0]->body.len, 2);
	CHECK_EQ(memcmp(page.messages[0]->body.data, "m9", 2), 0);
	CHECK_EQ(history(&f, room, 0, 10, 3, &page), PL_OK);
	CHECK_EQ(page.n_messages, 0);
	/* Every entry so far verifies: 1 create + 10 publishes. */
	uint64_t n, bad = 0;
	CHECK_EQ(brk_store_verify(f.s, &n, &bad), PL_OK);
	CHECK_EQ(n, 11);
	fx_fini(&f);
}

TEST(test_store_dedup_returns_original_seq)
{
	fixture f;
	uint64_t room;
	brk_pub_result r;
	fx_init(&f);
	CHECK_EQ(fx_open(&f, 64u << 20, 100), PL_OK);
	CHECK_EQ(create(&f, &f.svc, "", &room), PL_OK);
	CHECK_EQ(publish_n(&f, &f.svc, room, 3, "id", 0, &r), PL_OK);
	uint64_t idx = brk_store_last_index(f.s);
	/* The retry of id1 (seq 2) stores nothing and returns seq 2. */
	brk_wtxn *w;
	Parley__Publish p;
	parley__publish__init(&p);
	p.client_msg_id = "id1";
	p.body.data = (uint8_t *)"again";
	p.body.len = 5;
	CHECK_EQ(brk_wtxn_begin(f.s, true, &w), PL_OK);
	CHECK_EQ(brk_publish(w, &f.svc, room, &p, pl_now_us(), &r), PL_OK);
	CHECK_EQ(brk_wtxn_commit(w), PL_OK);
	CHECK(r.duplicate);
	CHECK_EQ(r.seq, 2);
	CHECK_EQ(brk_store_last_index(f.s), idx);
	fx_fini(&f);
}

TEST(test_store_dedup_in_same_round)
{
	fixture f;
	uint64_t room;
	brk_pub_result r;
	fx_init(&f);
	CHECK_EQ(fx_open(&f, 64u << 20, 100), PL_OK);
	CHECK_EQ(create(&f, &f.svc, "", &room), PL_OK);
	/* Two publishes with the same id ("dup0") in one transaction. */
	brk_wtxn *w;
	Parley__Publish p;
	parley__publish__init(&p);
	p.client_msg_id = "dup0";
	p.body.data = (uint8_t *)"x";
	p.body.len = 1;
	CHECK_EQ(brk_wtxn_begin(f.s, true, &w), PL_OK);
	CHECK_EQ(brk_publish(w, &f.svc, room, &p, 1, &r), PL_OK);
	CHECK_EQ(brk_publish(w, &f.svc, room, &p, 2, &r), PL_OK);
	CHECK_EQ(brk_wtxn_commit(w), PL_OK);
	CHECK(r.duplicate);
	CHECK_EQ(r.seq, 1);
	CHECK_EQ(r.ts_us, 1);
	fx_fini(&f);
}

TEST(test_store_dedup_window_forgets_old_ids)
{
	fixture f;
	uint64_t room;
	brk_pub_result r;
	fx_init(&f);
	CHECK_EQ(fx_open(&f, 64u << 20, 5), PL_OK);
	CHECK_EQ(create(&f, &f.svc, "", &room), PL_OK);
	CHECK_EQ(publish_n(&f, &f.svc, room, 10, "w", 0, &r), PL_OK);
	/* w9 (seq 10) is remembered; w0 (seq 1) fell out of the window. */
	CHECK_EQ(publish_n(&f, &f.svc, room, 1, "w9", 0, &r), PL_OK);
	CHECK_EQ(r.seq, 11); /* "w90" is new: ids are "<prefix><i>" */
	brk_wtxn *w;
	Parley__Publish p;
	parley__publish__init(&p);
	p.body.data = (uint8_t *)"x";
	p.body.len = 1;
	p.client_msg_id = "w9";
	CHECK_EQ(brk_wtxn_begin(f.s, true, &w), PL_OK);
	CHECK_EQ(brk_publish(w, &f.svc, room, &p, 5, &r), PL_OK);
	CHECK(r.duplicate);
	CHECK_EQ(r.seq, 10);
	p.client_msg_id = "w0";
	CHECK_EQ(brk_publish(w, &f.svc, room, &p, 5, &r), PL_OK);
	CHECK(!r.duplicate);
	CHECK_EQ(r.seq, 12);
	CHECK_EQ(brk_wtxn_commit(w), PL_OK);
	fx_fini(&f);
}

TEST(test_store_create_room_idempotent_per_tenant)
{
	fixture f;
	uint64_t a, b, c;
	fx_init(&f);
	CHECK_EQ(fx_open(&f, 64u << 20, 100), PL_OK);
	CHECK_EQ(create(&f, &f.svc, "order-17", &a), PL_OK);
	CHECK_EQ(create(&f, &f.svc, "order-17", &b), PL_OK);
	CHECK_EQ(a, b);
	CHECK_EQ(create(&f, &f.other, "order-17", &c), PL_OK);
	CHECK_NE(a, c);
	fx_fini(&f);
}

TEST(test_store_other_tenant_sees_nothing)
{
	fixture f;
	uint64_t room;
	brk_pub_result r;
	fx_init(&f);
	CHECK_EQ(fx_open(&f, 64u << 20, 100), PL_OK);
	CHECK_EQ(create(&f, &f.svc, "", &room), PL_OK);
	CHECK_EQ(publish_n(&f, &f.other, room, 1, "z", 0, &r), PL_E_NOT_FOUND);
	fx_fini(&f);
}

TEST(test_store_large_body_compressed_roundtrip)
{
	fixture f;
	uint64_t room;
	brk_pub_result r;
	Parley__HistoryPage page;
	fx_init(&f);
	CHECK_EQ(fx_open(&f, 64u << 20, 100), PL_OK);
	CHECK_EQ(create(&f, &f.svc, "", &room), PL_OK);
	CHECK_EQ(publish_n(&f, &f.svc, room, 1, "big", 16000, &r), PL_OK);
	uint64_t used, size, rooms;
	brk_store_usage(f.s, &used, &size, &rooms);
	CHECK_EQ(history(&f, room, 0, 0, 1, &page), PL_OK);
	CHECK_EQ(page.n_messages, 1);
	CHECK_EQ(page.messages[0]->body.len, 16000);
	CHECK_EQ(page.messages[0]->body.data[15999], 'a');
	CHECK_EQ(memcmp(page.messages[0]->body.data, "m0", 3), 0);
	fx_fini(&f);
}

/* Flips one byte of the value of log entry idx, behind the store's back. */
static int corrupt_entry(const char *dir, uint64_t idx)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;
	uint8_t key[8];
	for (int i = 0; i < 8; i++)
		key[i] = (uint8_t)(idx >> (56 - 8 * i));
	k.mv_size = 8;
	k.mv_data = key;
	int rc = mdb_env_create(&env);
	mdb_env_set_maxdbs(env, 16);
	mdb_env_set_mapsize(env, 64u << 20);
	rc = rc ? rc : mdb_env_open(env, dir, 0, 0600);
	rc = rc ? rc : mdb_txn_begin(env, NULL, 0, &txn);
	rc = rc ? rc : mdb_dbi_open(txn, "log", 0, &dbi);
	rc = rc ? rc : mdb_get(txn, dbi, &k, &v);
	if (rc == 0) {
		uint8_t copy[4096];
		memcpy(copy, v.mv_data, v.mv_size);
		copy[v.mv_size - 1] ^= 0x40;
		v.mv_data = copy;
		rc = mdb_put(txn, dbi, &k, &v, 0);
		rc = rc ? rc : mdb_txn_commit(txn);
	}
	mdb_env_close(env);
	return rc;
}

TEST(test_store_crc_mismatch_detected)
{
	fixture f;
	uint64_t room, n, bad = 0;
	brk_pub_result r;
	Parley__HistoryPage page;
	fx_init(&f);
	CHECK_EQ(fx_open(&f, 64u << 20, 100), PL_OK);
	CHECK_EQ(create(&f, &f.svc, "", &room), PL_OK);
	CHECK_EQ(publish_n(&f, &f.svc, room, 5, "c", 0, &r), PL_OK);
	brk_store_close(f.s);
	f.s = NULL;
	CHECK_EQ(corrupt_entry(f.dir, 4), 0); /* entry 4 = seq 3 */
	CHECK_EQ(fx_open(&f, 64u << 20, 100), PL_OK);
	CHECK_EQ(history(&f, room, 0, 2, 1, &page), PL_E_CORRUPT);
	CHECK_EQ(history(&f, room, 0, 3, 2, &page), PL_OK); /* others read */
	CHECK_EQ(brk_store_verify(f.s, &n, &bad), PL_E_CORRUPT);
	CHECK_EQ(bad, 4);
	fx_fini(&f);
}

/* A child publishes in rounds and reports each committed seq on a pipe,
 * then is killed with SIGKILL mid-stream. Every reported seq must be
 * readable after reopening. */
TEST(test_store_reopen_after_kill9_keeps_committed)
{
	fixture f;
	uint64_t room;
	int fds[2];
	fx_init(&f);
	CHECK_EQ(fx_open(&f, 64u << 20, 1000), PL_OK);
	CHECK_EQ(create(&f, &f.svc, "", &room), PL_OK);
	brk_store_close(f.s);
	f.s = NULL;
	CHECK_EQ(pipe(fds), 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		if (fx_open(&f, 64u << 20, 1000) != PL_OK)
			_exit(3);
		for (int round = 0;; round++) {
			brk_pub_result r;
			char prefix[16];
			snprintf(prefix, sizeof(prefix), "r%d-", round);
			if (publish_n(&f, &f.svc, room, 7, prefix, 0, &r) !=
			    PL_OK)
				_exit(4);
			if (write(fds[1], &r.seq, sizeof(r.seq)) < 0)
				_exit(5);
		}
	}
	close(fds[1]);
	uint64_t acked = 0, seq;
	while (acked < 7 * 30 && read(fds[0], &seq, sizeof(seq)) == 8)
		acked = seq;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	while (read(fds[0], &seq, sizeof(seq)) == 8)
		acked = seq; /* acks written before the kill */
	close(fds[0]);
	CHECK_GE(acked, 7 * 30);
	CHECK_EQ(fx_open(&f, 64u << 20, 1000), PL_OK);
	brk_wtxn *w;
	brk_room *r;
	CHECK_EQ(brk_wtxn_begin(f.s, false, &w), PL_OK);
	CHECK_EQ(brk_room_get(w, room, &r), PL_OK);
	uint64_t last = r->last_seq;
	brk_wtxn_abort(w);
	CHECK_GE(last, acked);
	uint64_t n, bad = 0;
	CHECK_EQ(brk_store_verify(f.s, &n, &bad), PL_OK);
	fx_fini(&f);
}

TEST(test_store_map_full_refuses_writes_serves_reads)
{
	fixture f;
	uint64_t room;
	brk_pub_result r;
	Parley__HistoryPage page;
	pl_status st = PL_OK;
	fx_init(&f);
	CHECK_EQ(fx_open(&f, 1u << 20, 100), PL_OK); /* a 1 MiB map */
	CHECK_EQ(create(&f, &f.svc, "", &room), PL_OK);
	int rounds = 0;
	char prefix[16];
	/* 200-byte bodies (below the compression threshold): the map fills
	 * within a few thousand rounds. */
	for (; rounds < 10000 && st == PL_OK; rounds++) {
		snprintf(prefix, sizeof(prefix), "f%d-", rounds);
		st = publish_n(&f, &f.svc, room, 1, prefix, 200, &r);
	}
	CHECK_EQ(st, PL_E_MAP_FULL);
	CHECK_GT(rounds, 2);
	uint64_t stored = (uint64_t)rounds - 1;
	CHECK_EQ(history(&f, room, 0, 0, 5, &page), PL_OK);
	CHECK_EQ(page.messages[0]->seq, stored);
	/* Later writes either fit (LMDB reuses the aborted pages) or fail
	 * cleanly with the same error; nothing in between. */
	int refused = 0;
	for (int i = 0; i < 50; i++) {
		snprintf(prefix, sizeof(prefix), "again%d-", i);
		st = publish_n(&f, &f.svc, room, 1, prefix, 200, &r);
		CHECK(st == PL_OK || st == PL_E_MAP_FULL);
		if (st == PL_OK)
			CHECK_EQ(r.seq, ++stored);
		else
			refused++;
	}
	CHECK_GT(refused, 0);
	brk_store_close(f.s);
	f.s = NULL;
	CHECK_EQ(fx_open(&f, 1u << 20, 100), PL_OK);
	uint64_t n, bad = 0;
	CHECK_EQ(brk_store_verify(f.s, &n, &bad), PL_OK);
	CHECK_EQ(n, stored + 1);
	CHECK_EQ(history(&f, room, 0, 0, 1, &page), PL_OK);
	CHECK_EQ(page.messages[0]->seq, stored);
	fx_fini(&f);
}

/* More rooms than the round's cache in one transaction: rooms evicted
 * (flushed) mid-round are read back intact, fresh ones included. */
TEST(test_store_round_touching_many_rooms)
{
	fixture f;
	fx_init(&f);
	CHECK_EQ(fx_open(&f, 64u << 20, 100), PL_OK);
	brk_wtxn *w;
	uint64_t rooms[3 * ROUND_ROOMS_CACHED_MAX];
	CHECK_EQ(brk_wtxn_begin(f.s, true, &w), PL_OK);
	for (size_t i = 0; i < PL_ARRAY_LEN(rooms); i++) {
		Parley__CreateRoom cr;
		bool existed;
		parley__create_room__init(&cr);
		CHECK_EQ(brk_create_room(w, &f.svc, &cr, 1000 + (int64_t)i,
		             &rooms[i], &existed),
		    PL_OK);
	}
	for (size_t i = 0; i < PL_ARRAY_LEN(rooms); i++) {
		Parley__Publish p;
		brk_pub_result r;
		parley__publish__init(&p);
		p.body.data = (uint8_t *)"x";
		p.body.len = 1;
		CHECK_EQ(brk_publish(w, &f.svc, rooms[i], &p, 5000, &r), PL_OK);
		CHECK_EQ(r.seq, 1);
	}
	CHECK_EQ(brk_wtxn_commit(w), PL_OK);
	fx_fini(&f);
}
