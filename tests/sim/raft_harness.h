/*
 * raft_harness.h - the small harness of the Raft core's focused tests
 * (test_raft_*.c, one binary: unit_raft). It runs cores over a lossless,
 * ordered network with storage that persists at once, unless a test says
 * otherwise. Nodes are numbered 1..count; N(w, id) is node id, st(w, id)
 * its status. test_raft_election.c defines CHECK_MAIN.
 */
#ifndef PARLEY_RAFT_HARNESS_H
#define PARLEY_RAFT_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "raft/raft.h"

#define TN_MAX 5
#define TLOG_MAX 256
#define TQUEUE_MAX 4096

typedef struct tnode {
	uint64_t id;
	raft *r;
	raft_entry log[TLOG_MAX]; /* log[i] = entry first + i */
	uint8_t data[TLOG_MAX][64];
	uint64_t first; /* first index (snapshot index + 1) */
	uint64_t last;
	uint64_t snap_term;
	raft_hard_state hs;
	raft_conf conf;
	bool sync_off; /* do not report persistence */
	uint64_t bad;  /* reads of this entry fail their CRC (0: none) */
	uint64_t applied;
	raft_repair rep; /* stored repair record (raft_log_damaged) */
} tnode;

typedef struct tnet {
	tnode n[TN_MAX];
	int count;
	bool cut[TN_MAX + 1][TN_MAX + 1]; /* cut[a][b]: a -> b lost */
	raft_msg q[TQUEUE_MAX];
	raft_entry qe[TQUEUE_MAX][RAFT_MSG_ENTRIES_MAX];
	uint8_t qd[TQUEUE_MAX][RAFT_MSG_ENTRIES_MAX][64];
	size_t head, tail;
	int snap_msgs;
	bool drop_apps;
} tnet;

/* The storage callbacks over a tnode (its ctx). */
extern const raft_storage tstorage;

void tlog_put(tnode *t, const raft_entry *e);
/* Seeds node t's log with entries of the given terms (1-based). */
void tlog_seed(tnode *t, const uint64_t *terms, size_t n);
void tnode_start(tnode *t, uint64_t seed);
/* A group of `voters` voters and `learners` learners, ids 1.. */
tnet *tnet_new(int voters, int learners);
void tnet_start(tnet *w);
void tnet_free(tnet *w);
/* Handles node t's readies: persist (at once unless sync_off), send. */
void tdrain(tnet *w, tnode *t);
tnode *N(tnet *w, uint64_t id);
/* Delivers queued messages until none are left (bounded). */
void tdeliver(tnet *w);
void ttick(tnet *w, uint64_t id, int ticks);
void ttick_all(tnet *w, int ticks);
raft_status st(tnet *w, uint64_t id);
/* Makes `id` campaign now (a timeout elapses on it alone). */
void elect(tnet *w, uint64_t id);
void isolate(tnet *w, uint64_t id, bool cut);
pl_status propose_str(tnet *w, uint64_t id, const char *s);
int leaders(tnet *w);

#endif /* PARLEY_RAFT_HARNESS_H */
