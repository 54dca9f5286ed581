/*
 * test_crash.c - durability with real processes.
 *   fault: kill -9 of the broker right after a stream of acks;
 *   invariant: after restart every acknowledged message is readable, in
 *   order, exactly once.
 *   fault: the broker's LMDB map fills up;
 *   invariant: writers get `overloaded`, readers are still served, and
 *   nothing stored is damaged.
 */
#define CHECK_MAIN
#include <signal.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 3000

TEST(test_crash_kill9_broker_after_acks_loses_nothing)
{
	hx_cluster c;
	char room[17];
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	CHECK_EQ(parley_create_room(svc, NULL, NULL, 0, T, room, NULL), PL_OK);
	/* Pipelined publishes; the broker dies once 100 acks came back, while
	 * the rest are in flight. */
	uint64_t acked_max = 0;
	int acked = 0;
	for (int i = 0; i < 300; i++) {
		char id[16], b[16];
		uint64_t rid;
		snprintf(id, sizeof(id), "k%d", i);
		int n = snprintf(b, sizeof(b), "k%d", i);
		CHECK_EQ(parley_publish_send(svc, room, id, PARLEY__KIND__TEXT,
		             b, (size_t)n, (uint64_t)i, &rid),
		    PL_OK);
	}
	static char acked_ids[300];
	for (int i = 0; i < 300; i++) {
		parley_completion comp;
		if (parley_collect(svc, 10000000, &comp) != PL_OK)
			break;
		if (comp.status == PL_OK) {
			parley_ack a;
			CHECK_EQ(parley_ack_from(comp.reply, &a), PL_OK);
			acked_ids[comp.tag] = 1;
			acked++;
			if (a.seq > acked_max)
				acked_max = a.seq;
		}
		parley_frame_free(comp.reply);
		if (acked == 100)
			hx_kill(&c.broker[1], SIGKILL);
	}
	CHECK_GT(acked, 0);
	CHECK(hx_start_broker(&c, 1));
	/* Every acked message is there, once, in seq order. */
	Parley__ServerFrame *f = NULL;
	static char found[300];
	uint64_t next = 1;
	for (int pages = 0; pages < 50; pages++) {
		parley_history_query q = {
		    .after_seq = next - 1, .oldest_first = true, .limit = 500};
		CHECK_EQ(hx_history_retry(svc, room, &q, &f), PL_OK);
		for (size_t i = 0; i < f->history->n_messages; i++) {
			Parley__Message *m = f->history->messages[i];
			CHECK_EQ(m->seq, next);
			next++;
			int k = atoi(m->client_msg_id + 1);
			CHECK(k >= 0 && k < 300);
			CHECK_EQ(found[k], 0);
			found[k] = 1;
		}
		bool more = f->history->more;
		parley_frame_free(f);
		if (!more)
			break;
	}
	CHECK_GE(next - 1, acked_max);
	for (int i = 0; i < 300; i++)
		if (acked_ids[i])
			CHECK_EQ(found[i], 1);
	parley_close(svc);
	hx_fini(&c, false);
}

TEST(test_crash_map_full_overloaded_reads_continue)
{
	hx_cluster c;
	char room[17];
	static char body[8000];
	CHECK(hx_init(&c, 1));
	snprintf(c.broker_extra, sizeof(c.broker_extra),
	    "map_size_mb = 1\ncompress_bytes_min = 0\n");
	snprintf(c.gw_extra, sizeof(c.gw_extra), "publish_per_sec = 100000\n");
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	CHECK_EQ(parley_create_room(svc, NULL, NULL, 0, T, room, NULL), PL_OK);
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (char)(i * 7919 % 251);
	pl_status st = PL_OK;
	uint64_t last = 0;
	int i = 0;
	for (; i < 1000 && st == PL_OK; i++) {
		char id[16];
		parley_ack a;
		snprintf(id, sizeof(id), "m%d", i);
		st = parley_publish(svc, room, id, PARLEY__KIND__TEXT, body,
		    sizeof(body), T, &a);
		if (st == PL_OK)
			last = a.seq;
	}
	CHECK(st != PL_OK);
	int code = 0;
	parley_last_error(svc, &code);
	CHECK_EQ(code, PARLEY__ERROR_CODE__OVERLOADED);
	CHECK_GT(last, 10);
	Parley__ServerFrame *f;
	parley_history_query q = {.limit = 5};
	CHECK_EQ(parley_history(svc, room, &q, T, &f), PL_OK);
	CHECK_EQ(f->history->messages[0]->seq, last);
	CHECK_EQ(f->history->messages[0]->body.len, sizeof(body));
	parley_frame_free(f);
	parley_close(svc);
	hx_fini(&c, false);
}

/* fault: the broker of a room's group is down;
 * invariant: requests for it fail with the retryable `unavailable` within
 * the gateway's broker timeout, other groups keep serving, and once the
 * broker is back the same connection works again. */
TEST(test_crash_broker_down_is_unavailable_then_recovers)
{
	hx_cluster c;
	char room1[17], room2[17];
	CHECK(hx_init(&c, 2));
	snprintf(c.gw_extra, sizeof(c.gw_extra), "broker_timeout_ms = 500\n");
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	/* One room in each group. */
	room1[0] = room2[0] = '\0';
	for (int i = 0; i < 40 && (!room1[0] || !room2[0]); i++) {
		char r[17];
		uint64_t id;
		CHECK_EQ(
		    parley_create_room(svc, NULL, NULL, 0, T, r, NULL), PL_OK);
		CHECK_EQ(pl_room_parse(r, &id), PL_OK);
		snprintf(pl_room_group(id) == 1 ? room1 : room2, 17, "%s", r);
	}
	CHECK(room1[0] && room2[0]);
	hx_kill(&c.broker[1], SIGKILL);
	parley_ack a;
	pl_status st =
	    parley_publish(svc, room1, "d1", PARLEY__KIND__TEXT, "x", 1, T, &a);
	CHECK_EQ(st, PL_E_UNAVAILABLE);
	int code = 0;
	parley_last_error(svc, &code);
	CHECK_EQ(code, PARLEY__ERROR_CODE__UNAVAILABLE);
	CHECK_EQ(
	    parley_publish(svc, room2, "d2", PARLEY__KIND__TEXT, "y", 1, T, &a),
	    PL_OK);
	CHECK(hx_start_broker(&c, 1));
	/* The retry with the same id succeeds once the broker is back. */
	for (int i = 0; i < 50; i++) {
		st = parley_publish(
		    svc, room1, "d1", PARLEY__KIND__TEXT, "x", 1, T, &a);
		if (st != PL_E_UNAVAILABLE)
			break;
		usleep(100000);
	}
	CHECK_EQ(st, PL_OK);
	CHECK_EQ(a.seq, 1);
	parley_close(svc);
	hx_fini(&c, false);
}

/* operation: a hot copy of a running broker's LMDB environment with
 * mdb_copy, restored by starting a broker on the copy;
 * invariant: every message acknowledged before the copy is in it. */
TEST(test_crash_hot_backup_restores)
{
	hx_cluster c;
	char room[17], cmd[600];
	CHECK(hx_init(&c, 1));
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	CHECK_EQ(parley_create_room(svc, NULL, NULL, 0, T, room, NULL), PL_OK);
	for (int i = 0; i < 50; i++) {
		char id[16];
		snprintf(id, sizeof(id), "b%d", i);
		CHECK_EQ(parley_publish(svc, room, id, PARLEY__KIND__TEXT, id,
		             strlen(id), T, NULL),
		    PL_OK);
	}
	/* Copy while the broker runs, then lose the original. */
	snprintf(cmd, sizeof(cmd),
	    "mkdir -p %s/backup && mdb_copy %s/data-1 "
	    "%s/backup",
	    c.dir, c.dir, c.dir);
	CHECK_EQ(system(cmd), 0);
	hx_kill(&c.broker[1], SIGKILL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s/data-1 && mv %s/backup %s/data-1",
	    c.dir, c.dir, c.dir);
	CHECK_EQ(system(cmd), 0);
	CHECK(hx_start_broker(&c, 1));
	Parley__ServerFrame *f = NULL;
	parley_history_query q = {
	    .after_seq = 0, .oldest_first = true, .limit = 100};
	CHECK_EQ(hx_history_retry(svc, room, &q, &f), PL_OK);
	CHECK_EQ(f->history->n_messages, 50);
	CHECK_EQ(f->history->messages[49]->seq, 50);
	parley_frame_free(f);
	parley_close(svc);
	hx_fini(&c, false);
}

/* fault: the broker's disk fills up (writes to its LMDB files fail with
 * ENOSPC, injected by faultfs) and later has room again;
 * invariant: writers get `overloaded` while it is full, readers are
 * served, and every message acknowledged before, during and after is
 * readable once, in order. */
TEST(test_crash_disk_full_refuses_writes_then_recovers)
{
	hx_cluster c;
	char room[17], flag[200];
	CHECK(hx_init(&c, 1));
	snprintf(flag, sizeof(flag), "%s/disk-full", c.dir);
	snprintf(c.broker_env[0], sizeof(c.broker_env[0]), "LD_PRELOAD=%s",
	    PARLEY_FAULTFS_LIB);
	snprintf(c.broker_env[1], sizeof(c.broker_env[1]),
	    "PARLEY_FAULT_DISK_FULL=%s", flag);
	/* A sanitizer build wants its runtime first; the shim goes before. */
	snprintf(c.broker_env[2], sizeof(c.broker_env[2]),
	    "ASAN_OPTIONS=verify_asan_link_order=0");
	CHECK(hx_start(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "backend", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	CHECK_EQ(parley_create_room(svc, NULL, NULL, 0, T, room, NULL), PL_OK);
	parley_ack a;
	CHECK_EQ(parley_publish(
	             svc, room, "before", PARLEY__KIND__TEXT, "1", 1, T, &a),
	    PL_OK);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "touch %s", flag);
	CHECK_EQ(system(cmd), 0);
	pl_status st = parley_publish(
	    svc, room, "during", PARLEY__KIND__TEXT, "2", 1, T, &a);
	CHECK(st != PL_OK);
	int code = 0;
	parley_last_error(svc, &code);
	CHECK_EQ(code, PARLEY__ERROR_CODE__OVERLOADED);
	Parley__ServerFrame *f;
	parley_history_query q = {
	    .after_seq = 0, .oldest_first = true, .limit = 10};
	CHECK_EQ(parley_history(svc, room, &q, T, &f), PL_OK);
	CHECK_EQ(f->history->n_messages, 1);
	parley_frame_free(f);
	unlink(flag);
	/* The refused publish is retried by id and lands once. */
	CHECK_EQ(parley_publish(
	             svc, room, "during", PARLEY__KIND__TEXT, "2", 1, T, &a),
	    PL_OK);
	CHECK_EQ(a.seq, 2);
	CHECK_EQ(parley_publish(
	             svc, room, "after", PARLEY__KIND__TEXT, "3", 1, T, &a),
	    PL_OK);
	CHECK_EQ(a.seq, 3);
	/* Restart: everything acknowledged is on disk, in order. */
	hx_kill(&c.broker[1], SIGKILL);
	CHECK(hx_start_broker(&c, 1));
	CHECK_EQ(hx_history_retry(svc, room, &q, &f), PL_OK);
	CHECK_EQ(f->history->n_messages, 3);
	for (size_t i = 0; i < 3; i++)
		CHECK_EQ(f->history->messages[i]->seq, i + 1);
	parley_frame_free(f);
	parley_close(svc);
	hx_fini(&c, false);
}
