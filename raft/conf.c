/*
 * conf.c - configurations: who votes and who learns, the wire encoding of a
 * configuration entry and the single-server change a proposal makes; and
 * the small queries the other raft files ask of the configuration in force
 * (the latest in the log; see the membership rule at the top of raft.c):
 * its quorum, a member's progress, whether this replica may campaign, and
 * whether it is repairing a damaged log.
 */
#include <string.h>

#include "raft/raft_internal.h"

/* ------------------------------------------------------------------ */
/* Configurations. */

bool raft_conf_is_voter(const raft_conf *c, uint64_t id)
{
	for (int i = 0; i < c->n_voters; i++)
		if (c->voters[i] == id)
			return true;
	return false;
}

bool raft_conf_is_learner(const raft_conf *c, uint64_t id)
{
	for (int i = 0; i < c->n_learners; i++)
		if (c->learners[i] == id)
			return true;
	return false;
}

bool rf_conf_valid(const raft_conf *c)
{
	if (c->n_voters < 1 || c->n_voters + c->n_learners > RAFT_PEERS_MAX)
		return false;
	uint64_t ids[RAFT_PEERS_MAX];
	int n = 0;
	for (int i = 0; i < c->n_voters; i++)
		ids[n++] = c->voters[i];
	for (int i = 0; i < c->n_learners; i++)
		ids[n++] = c->learners[i];
	for (int i = 0; i < n; i++) {
		if (ids[i] == 0)
			return false;
		for (int j = 0; j < i; j++)
			if (ids[i] == ids[j])
				return false;
	}
	return true;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

size_t raft_conf_encode(const raft_conf *c, uint8_t out[RAFT_CONF_BYTES_MAX])
{
	PL_ASSERT(rf_conf_valid(c));
	size_t n = 0;
	out[n++] = 1; /* version */
	out[n++] = c->n_voters;
	out[n++] = c->n_learners;
	for (int i = 0; i < c->n_voters; i++, n += 8)
		put_u64(out + n, c->voters[i]);
	for (int i = 0; i < c->n_learners; i++, n += 8)
		put_u64(out + n, c->learners[i]);
	return n;
}

pl_status raft_conf_decode(const uint8_t *p, size_t len, raft_conf *c)
{
	if (p == NULL || len < 3 || p[0] != 1)
		return PL_E_PROTO;
	size_t nv = p[1], nl = p[2];
	if (nv + nl > RAFT_PEERS_MAX || len != 3 + 8 * (nv + nl))
		return PL_E_PROTO;
	raft_conf t;
	memset(&t, 0, sizeof t);
	t.n_voters = (uint8_t)nv;
	t.n_learners = (uint8_t)nl;
	for (size_t i = 0; i < nv; i++)
		t.voters[i] = get_u64(p + 3 + 8 * i);
	for (size_t i = 0; i < nl; i++)
		t.learners[i] = get_u64(p + 3 + 8 * (nv + i));
	if (!rf_conf_valid(&t))
		return PL_E_PROTO;
	*c = t;
	return PL_OK;
}

const raft_conf *rf_conf_cur(const raft *r)
{
	return &r->conf;
}

int rf_quorum(const raft *r)
{
	return rf_conf_cur(r)->n_voters / 2 + 1;
}

progress *rf_pr_find(raft *r, uint64_t id)
{
	for (int i = 0; i < r->n_prs; i++)
		if (r->prs[i].id == id)
			return &r->prs[i];
	return NULL;
}

bool rf_promotable(const raft *r)
{
	return raft_conf_is_voter(rf_conf_cur(r), r->id);
}

/* A voter of its configuration, or one the latest configuration entry
 * removed while it does not know that entry committed: it may be needed
 * to elect anyone until then (it may hold the only up-to-date log). Its
 * own vote counts only as a voter of its configuration. */
bool rf_may_campaign(const raft *r)
{
	return rf_promotable(r) || (r->left_voter && r->conf_index > r->commit);
}

bool rf_repairing(const raft *r)
{
	return r->repair.to > 0;
}

/* The configuration a single-server change leads to, into *out. */
pl_status rf_conf_change(
    const raft_conf *c, raft_conf_op op, uint64_t node, raft_conf *out)
{
	raft_conf t = *c;
	bool voter = raft_conf_is_voter(c, node);
	bool learner = raft_conf_is_learner(c, node);
	switch (op) {
	case RAFT_CONF_ADD_VOTER:
	case RAFT_CONF_ADD_LEARNER:
		if (node == 0 || voter || learner ||
		    t.n_voters + t.n_learners >= RAFT_PEERS_MAX)
			return PL_E_BAD_REQUEST;
		if (op == RAFT_CONF_ADD_VOTER)
			t.voters[t.n_voters++] = node;
		else
			t.learners[t.n_learners++] = node;
		break;
	case RAFT_CONF_PROMOTE:
	case RAFT_CONF_REMOVE:
		if (!learner && !(voter && op == RAFT_CONF_REMOVE))
			return PL_E_BAD_REQUEST;
		if (voter && t.n_voters == 1)
			return PL_E_BAD_REQUEST; /* the last voter stays */
		t.n_voters = t.n_learners = 0;
		for (int i = 0; i < c->n_voters; i++)
			if (c->voters[i] != node)
				t.voters[t.n_voters++] = c->voters[i];
		for (int i = 0; i < c->n_learners; i++)
			if (c->learners[i] != node)
				t.learners[t.n_learners++] = c->learners[i];
		if (op == RAFT_CONF_PROMOTE)
			t.voters[t.n_voters++] = node;
		break;
	default:
		return PL_E_BAD_REQUEST;
	}
	PL_ASSERT(rf_conf_valid(&t));
	*out = t;
	return PL_OK;
}
