/*
 * test_lane.c - unit tests of the gateway's lanes (lane.c), the queue
 * that keeps one connection's requests to a group in send order through
 * batching and resends (internals.md "Request order"). A seeded model
 * drives several batch slots over a few lanes: batches are answered out
 * of order, some are lost and sent again, some come back with a refused
 * tail; a model broker applies each answered batch in its order. Every
 * lane's applied sequence must be its send order, complete, with no lane
 * ever in two batches at once.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "gateway/lane.h"
#include "gateway/link_int.h"

#define LANES 5
#define PER_LANE 2000
#define SLOTS 8

static gw_req *req_make(uint64_t lane, uint64_t n, uint32_t len)
{
	gw_req *r = calloc(1, sizeof(*r));
	if (r == NULL)
		abort();
	r->lane = lane;
	r->client_id = n;
	r->len = len;
	r->pin = -1;
	return r;
}

/* xorshift64*: the schedule is a function of the seed. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

typedef struct slot {
	bool busy;
	gw_req *reqs[GW_LINK_BATCH_REQS_MAX];
	uint64_t lanes[GW_LINK_BATCH_REQS_MAX];
	uint32_t n;
} slot;

typedef struct model {
	gw_lanes t;
	slot s[SLOTS];
	uint64_t next_sent[LANES + 1];  /* next number to queue */
	uint64_t applied[LANES + 1];    /* numbers applied, in order */
	uint32_t in_batches[LANES + 1]; /* batches holding the lane */
	int bad_order, double_flight;
} model;

static void slot_fill(model *m, slot *s)
{
	s->n = gw_lanes_take(&m->t, s->reqs, GW_LINK_BATCH_REQS_MAX);
	if (s->n == 0)
		return;
	s->busy = true;
	bool seen[LANES + 1] = {false};
	for (uint32_t i = 0; i < s->n; i++) {
		uint64_t l = s->reqs[i]->lane;
		s->lanes[i] = l;
		if (!seen[l]) {
			seen[l] = true;
			if (m->in_batches[l]++ > 0 && l != 0)
				m->double_flight++;
		}
	}
}

/* The broker applied the batch in its order up to `upto` (the rest was
 * refused, or the batch was lost: then the gateway cannot know and
 * sends everything from `again_from` again); publishes are
 * de-duplicated by number, as the broker does by client_msg_id. */
static void slot_settle(model *m, slot *s, uint32_t upto, uint32_t again_from)
{
	gw_req *again[GW_LINK_BATCH_REQS_MAX];
	uint32_t nagain = 0;
	bool seen[LANES + 1] = {false};
	for (uint32_t i = 0; i < s->n; i++) {
		gw_req *r = s->reqs[i];
		uint64_t l = r->lane;
		if (!seen[l]) {
			seen[l] = true;
			m->in_batches[l]--;
		}
		if (i < upto) {
			if (r->client_id < m->applied[l])
				; /* a duplicate of what was applied */
			else if (r->client_id == m->applied[l])
				m->applied[l]++;
			else
				m->bad_order++;
		}
		if (i >= again_from)
			again[nagain++] = r;
		else
			free(r);
	}
	if (gw_lanes_push_front(&m->t, again, nagain) != PL_OK)
		abort();
	gw_lanes_release(&m->t, s->lanes, s->n);
	s->busy = false;
	s->n = 0;
}

static void model_run(model *m, uint64_t seed)
{
	memset(m, 0, sizeof(*m));
	if (gw_lanes_init(&m->t, 64) != PL_OK)
		abort();
	uint64_t st = seed | 1;
	bool more = true;
	/* Far more steps than a correct queue needs: an order broken for
	 * good (a lane waiting for a number that was overtaken) ends the
	 * run instead of looping. */
	for (int step = 0; more && step < 200000; step++) {
		/* Connections pipeline more requests. */
		for (int k = 0; k < 20; k++) {
			uint64_t l = 1 + rnd(&st) % LANES;
			if (m->next_sent[l] < PER_LANE &&
			    gw_lanes_push(&m->t,
			        req_make(l, m->next_sent[l]++, 16)) != PL_OK)
				abort();
		}
		/* Idle slots take batches. */
		for (int i = 0; i < SLOTS; i++)
			if (!m->s[i].busy && rnd(&st) % 2 == 0)
				slot_fill(m, &m->s[i]);
		/* Some batches come back, in any order: answered, lost
		 * (applied in part or not at all), or answered with a
		 * refused tail. */
		for (int i = 0; i < SLOTS; i++) {
			slot *s = &m->s[i];
			if (!s->busy || rnd(&st) % 3 != 0)
				continue;
			uint64_t x = rnd(&st) % 10;
			uint32_t k = (uint32_t)(rnd(&st) % (s->n + 1));
			if (x < 6)
				slot_settle(m, s, s->n, s->n);
			else if (x < 8)
				slot_settle(m, s, k, 0);
			else
				slot_settle(m, s, k, k);
		}
		more = false;
		for (int l = 1; l <= LANES; l++)
			more = more || m->applied[l] < PER_LANE;
	}
	gw_lanes_fini(&m->t);
}

TEST(test_lane_order_kept_through_batches_and_resends)
{
	model m;
	for (uint64_t seed = 1; seed <= 20; seed++) {
		model_run(&m, seed * 7919);
		CHECK_EQ(m.double_flight, 0);
		CHECK_EQ(m.bad_order, 0);
		for (int l = 1; l <= LANES; l++)
			CHECK_EQ(m.applied[l], PER_LANE);
	}
}

TEST(test_lane_busy_until_released)
{
	gw_lanes t;
	gw_req *out[GW_LINK_BATCH_REQS_MAX];
	CHECK_EQ(gw_lanes_init(&t, 16), PL_OK);
	for (uint64_t i = 0; i < 3; i++)
		CHECK_EQ(gw_lanes_push(&t, req_make(7, i, 10)), PL_OK);
	CHECK_EQ(gw_lanes_take(&t, out, 2), 2);
	CHECK_EQ(out[0]->client_id, 0);
	CHECK_EQ(out[1]->client_id, 1);
	/* The third waits while the lane is in a batch. */
	CHECK(!gw_lanes_has_ready(&t));
	CHECK_EQ(gw_lanes_take(&t, out + 2, 2), 0);
	/* The batch lost its second request: it goes back before the
	 * third, and only then is the lane free. */
	uint64_t lanes[2] = {7, 7};
	free(out[0]);
	gw_req *again[1] = {out[1]};
	CHECK_EQ(gw_lanes_push_front(&t, again, 1), PL_OK);
	CHECK(!gw_lanes_has_ready(&t));
	gw_lanes_release(&t, lanes, 2);
	CHECK(gw_lanes_has_ready(&t));
	CHECK_EQ(gw_lanes_take(&t, out, GW_LINK_BATCH_REQS_MAX), 2);
	CHECK_EQ(out[0]->client_id, 1);
	CHECK_EQ(out[1]->client_id, 2);
	gw_lanes_release(&t, lanes, 2);
	free(out[0]);
	free(out[1]);
	CHECK_EQ(t.nlanes, 0);
	gw_lanes_fini(&t);
}

TEST(test_lane_other_lanes_go_while_one_is_busy)
{
	gw_lanes t;
	gw_req *out[GW_LINK_BATCH_REQS_MAX];
	CHECK_EQ(gw_lanes_init(&t, 16), PL_OK);
	CHECK_EQ(gw_lanes_push(&t, req_make(1, 0, 10)), PL_OK);
	CHECK_EQ(gw_lanes_take(&t, out, GW_LINK_BATCH_REQS_MAX), 1);
	CHECK_EQ(gw_lanes_push(&t, req_make(1, 1, 10)), PL_OK);
	CHECK_EQ(gw_lanes_push(&t, req_make(2, 0, 10)), PL_OK);
	gw_req *out2[GW_LINK_BATCH_REQS_MAX];
	CHECK_EQ(gw_lanes_take(&t, out2, GW_LINK_BATCH_REQS_MAX), 1);
	CHECK_EQ(out2[0]->lane, 2);
	uint64_t l1 = 1, l2 = 2;
	gw_lanes_release(&t, &l1, 1);
	gw_lanes_release(&t, &l2, 1);
	free(out[0]);
	free(out2[0]);
	gw_req *rest = gw_lanes_drain(&t);
	CHECK(rest != NULL && rest->lane == 1 && rest->client_id == 1);
	CHECK(rest->next == NULL);
	free(rest);
	gw_lanes_fini(&t);
}

/* Lane 0 (watch changes) promises no order and is never held back. */
TEST(test_lane_zero_never_busy)
{
	gw_lanes t;
	gw_req *a[4], *b[4];
	CHECK_EQ(gw_lanes_init(&t, 16), PL_OK);
	CHECK_EQ(gw_lanes_push(&t, req_make(0, 0, 10)), PL_OK);
	CHECK_EQ(gw_lanes_take(&t, a, 4), 1);
	CHECK_EQ(gw_lanes_push(&t, req_make(0, 1, 10)), PL_OK);
	CHECK_EQ(gw_lanes_take(&t, b, 4), 1);
	uint64_t z[1] = {0};
	gw_lanes_release(&t, z, 1);
	gw_lanes_release(&t, z, 1);
	free(a[0]);
	free(b[0]);
	gw_lanes_fini(&t);
}

/* A batch stops growing at its byte bound, mid-lane; the lane's rest
 * waits for it. */
TEST(test_lane_batch_bytes_bounded)
{
	gw_lanes t;
	static gw_req *out[GW_LINK_BATCH_REQS_MAX];
	CHECK_EQ(gw_lanes_init(&t, 16), PL_OK);
	uint32_t big = GW_BATCH_BYTES_MAX / 3;
	for (uint64_t i = 0; i < 4; i++)
		CHECK_EQ(gw_lanes_push(&t, req_make(3, i, big)), PL_OK);
	uint32_t n = gw_lanes_take(&t, out, GW_LINK_BATCH_REQS_MAX);
	CHECK_EQ(n, 2);
	CHECK(!gw_lanes_has_ready(&t));
	uint64_t lanes[2] = {3, 3};
	gw_lanes_release(&t, lanes, 2);
	free(out[0]);
	free(out[1]);
	CHECK_EQ(gw_lanes_take(&t, out, GW_LINK_BATCH_REQS_MAX), 2);
	CHECK_EQ(out[0]->client_id, 2);
	gw_lanes_release(&t, lanes, 2);
	free(out[0]);
	free(out[1]);
	gw_lanes_fini(&t);
}
