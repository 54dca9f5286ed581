/*
 * test_map_client.c - the map client (proto/map_client.h) against two
 * fake meta replicas in this process: nng rep0 sockets on loopback
 * ports the kernel picks, answering MapRequests from one pl_map they
 * share. One of them leads and applies changes with pl_map_apply (after
 * checking the MAC); the other answers changes with not_leader and the
 * leader's address, so the client's redirect is exercised. Watches are
 * parked until the map passes since or wait_ms ends, as a replica does.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include <pthread.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "cluster.pb-c.h"
#include "proto/codec.h"
#include "proto/map_client.h"

#define FAKES 2
#define WORKERS 4 /* watches parked at once per fake, plus changes */
#define DEAD_ADDR "ipc:///tmp/parley-test-map-nobody-listens"

typedef struct fake_cluster fake_cluster;

typedef struct fake {
	fake_cluster *c;
	int idx;
	nng_socket sock;
	char addr[64];
	pthread_t th[WORKERS];
	nng_ctx ctx[WORKERS];
	nng_aio *aio[WORKERS];
	int changes; /* change requests it was sent */
	int parked;  /* watches it held before answering */
} fake;

struct fake_cluster {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pl_map map;
	int leader; /* -1: none (an election) */
	uint8_t secret[32];
	bool stopping;
	fake f[FAKES];
};

static const uint8_t SECRET[32] = "the cluster secret, 32 bytes...";

/* ---- the fake replica ---- */

static nng_msg *reply_msg(const Parley__Internal__BrokerBatch *bb)
{
	size_t n = parley__internal__broker_batch__get_packed_size(bb);
	nng_msg *m;
	PL_ASSERT(nng_msg_alloc(&m, n) == 0);
	parley__internal__broker_batch__pack(bb, nng_msg_body(m));
	return m;
}

/* With c->mu held: a MapReply carrying the map. */
static nng_msg *answer_map(fake_cluster *c, int code, const char *why,
    bool changed)
{
	uint8_t *buf;
	size_t len;
	PL_ASSERT(pl_map_encode(&c->map, &buf, &len) == PL_OK);
	Parley__Internal__MapReply r = PARLEY__INTERNAL__MAP_REPLY__INIT;
	r.map.data = buf, r.map.len = len;
	r.version = c->map.version;
	r.code = code;
	r.why = (char *)why;
	r.changed = changed;
	Parley__Internal__BrokerBatch bb = PARLEY__INTERNAL__BROKER_BATCH__INIT;
	bb.map = &r;
	nng_msg *m = reply_msg(&bb);
	free(buf);
	return m;
}

static nng_msg *answer_change(fake *f, const Parley__Internal__MapRequest *q)
{
	fake_cluster *c = f->c;
	pthread_mutex_lock(&c->mu);
	f->changes++;
	if (c->leader != f->idx) {
		Parley__Internal__BrokerBatch bb =
		    PARLEY__INTERNAL__BROKER_BATCH__INIT;
		bb.not_leader = true;
		bb.leader_hint = c->leader >= 0 ? c->f[c->leader].addr : "";
		pthread_mutex_unlock(&c->mu);
		return reply_msg(&bb);
	}
	char why[192] = "";
	bool changed = false;
	int code = PL_E_UNAUTHORIZED;
	if (pl_map_change_mac_ok(c->secret, q->change.data, q->change.len,
	        q->mac.data, q->mac.len))
		code = pl_map_apply(&c->map, q->change.data, q->change.len,
		    &changed, why, sizeof(why));
	else
		snprintf(why, sizeof(why), "bad mac");
	if (changed)
		pthread_cond_broadcast(&c->cv);
	nng_msg *m = answer_map(c, code, why, changed);
	pthread_mutex_unlock(&c->mu);
	return m;
}

static nng_msg *answer_watch(fake *f, const Parley__Internal__MapRequest *q)
{
	fake_cluster *c = f->c;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += q->wait_ms / 1000;
	until.tv_nsec += (long)(q->wait_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000)
		until.tv_sec++, until.tv_nsec -= 1000000000;
	pthread_mutex_lock(&c->mu);
	if (c->map.version <= q->since && q->wait_ms > 0)
		f->parked++;
	while (c->map.version <= q->since && !c->stopping &&
	       pthread_cond_timedwait(&c->cv, &c->mu, &until) == 0)
		;
	nng_msg *m = answer_map(c, 0, "", false);
	pthread_mutex_unlock(&c->mu);
	return m;
}

static nng_msg *answer(fake *f, nng_msg *req)
{
	pl_arena a;
	Parley__Internal__GwBatch *b;
	nng_msg *m = NULL;
	PL_ASSERT(pl_arena_init(&a, NULL, PL_ARENA_BYTES_FOR(nng_msg_len(req))) ==
	          PL_OK);
	if (pl_gw_batch_decode(nng_msg_body(req), nng_msg_len(req), &a, &b) !=
	        PL_OK ||
	    b->group != 0 || b->map == NULL) {
		Parley__Internal__MapReply r = PARLEY__INTERNAL__MAP_REPLY__INIT;
		r.code = PL_E_BAD_REQUEST;
		Parley__Internal__BrokerBatch bb =
		    PARLEY__INTERNAL__BROKER_BATCH__INIT;
		bb.map = &r;
		m = reply_msg(&bb);
	} else if (b->map->change.len > 0) {
		m = answer_change(f, b->map);
	} else {
		m = answer_watch(f, b->map);
	}
	pl_arena_fini(&a);
	return m;
}

typedef struct worker_arg {
	fake *f;
	int w;
} worker_arg;

static void *fake_worker(void *arg)
{
	worker_arg *wa = arg;
	fake *f = wa->f;
	nng_aio *aio = f->aio[wa->w];
	nng_ctx ctx = f->ctx[wa->w];
	free(wa);
	for (;;) {
		nng_ctx_recv(ctx, aio);
		nng_aio_wait(aio);
		if (nng_aio_result(aio) != 0)
			return NULL; /* closed */
		nng_msg *req = nng_aio_get_msg(aio);
		nng_msg *rep = answer(f, req);
		nng_msg_free(req);
		nng_aio_set_msg(aio, rep);
		nng_ctx_send(ctx, aio);
		nng_aio_wait(aio);
		if (nng_aio_result(aio) != 0)
			nng_msg_free(nng_aio_get_msg(aio));
	}
}

static void fake_start(fake_cluster *c, int idx)
{
	fake *f = &c->f[idx];
	f->c = c;
	f->idx = idx;
	nng_listener l;
	int port;
	PL_ASSERT(nng_rep0_open(&f->sock) == 0);
	PL_ASSERT(nng_listen(f->sock, "tcp://127.0.0.1:0", &l, 0) == 0);
	PL_ASSERT(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) == 0);
	snprintf(f->addr, sizeof(f->addr), "tcp://127.0.0.1:%d", port);
	for (int w = 0; w < WORKERS; w++) {
		PL_ASSERT(nng_ctx_open(&f->ctx[w], f->sock) == 0);
		PL_ASSERT(nng_aio_alloc(&f->aio[w], NULL, NULL) == 0);
		worker_arg *wa = malloc(sizeof(*wa));
		wa->f = f, wa->w = w;
		PL_ASSERT(pthread_create(&f->th[w], NULL, fake_worker, wa) == 0);
	}
}

static fake_cluster *cluster_new(int leader)
{
	fake_cluster *c = calloc(1, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	pl_map_init(&c->map);
	memcpy(c->secret, SECRET, 32);
	c->leader = leader;
	for (int i = 0; i < FAKES; i++)
		fake_start(c, i);
	return c;
}

static void cluster_free(fake_cluster *c)
{
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	for (int i = 0; i < FAKES; i++) {
		fake *f = &c->f[i];
		nng_close(f->sock); /* fails every worker's receive */
		for (int w = 0; w < WORKERS; w++) {
			pthread_join(f->th[w], NULL);
			nng_aio_free(f->aio[w]);
		}
	}
	pl_map_fini(&c->map);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static int fake_count(fake_cluster *c, int idx, bool parked)
{
	pthread_mutex_lock(&c->mu);
	int n = parked ? c->f[idx].parked : c->f[idx].changes;
	pthread_mutex_unlock(&c->mu);
	return n;
}

/* ---- changes to send ---- */

typedef struct chg {
	uint8_t b[512];
	size_t n;
} chg;

static chg pack(Parley__Cluster__Change *c)
{
	chg out;
	out.n = parley__cluster__change__get_packed_size(c);
	PL_ASSERT(out.n <= sizeof(out.b));
	parley__cluster__change__pack(c, out.b);
	return out;
}

static chg c_broker(uint64_t n)
{
	char name[32], l[64], p[64];
	snprintf(name, sizeof(name), "broker-%llu", (unsigned long long)n);
	snprintf(l, sizeof(l), "tcp://10.0.0.%llu:7000", (unsigned long long)n);
	snprintf(p, sizeof(p), "tcp://10.0.0.%llu:7100", (unsigned long long)n);
	Parley__Cluster__Broker b = PARLEY__CLUSTER__BROKER__INIT;
	b.node = n, b.name = name, b.listen = l, b.peer = p;
	Parley__Cluster__BrokerAdd a = PARLEY__CLUSTER__BROKER_ADD__INIT;
	a.broker = &b;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_BROKER_ADD, c.broker_add = &a;
	return pack(&c);
}

static chg c_group_add(uint32_t id, uint32_t replicas)
{
	Parley__Cluster__GroupAdd g = PARLEY__CLUSTER__GROUP_ADD__INIT;
	g.id = id, g.replicas = replicas;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_GROUP_ADD, c.group_add = &g;
	return pack(&c);
}

static pl_status send_change(const char *const *addrs, int n, chg c,
    bool *changed, pl_map *after, char *why, size_t why_len)
{
	return pl_map_change(addrs, n, SECRET, c.b, c.n, 3000, changed, after,
	    why, why_len);
}

/* ---- tests ---- */

TEST(test_map_client_mac)
{
	chg c = c_broker(1);
	uint8_t mac[32], other[32];
	pl_map_change_mac(SECRET, c.b, c.n, mac);
	CHECK(pl_map_change_mac_ok(SECRET, c.b, c.n, mac, 32));
	CHECK(!pl_map_change_mac_ok(SECRET, c.b, c.n, mac, 31));
	CHECK(!pl_map_change_mac_ok(SECRET, c.b, c.n, NULL, 0));
	CHECK(!pl_map_change_mac_ok(SECRET, c.b, c.n - 1, mac, 32));
	memcpy(other, SECRET, 32);
	other[0] ^= 1;
	CHECK(!pl_map_change_mac_ok(other, c.b, c.n, mac, 32));
	mac[31] ^= 0x80;
	CHECK(!pl_map_change_mac_ok(SECRET, c.b, c.n, mac, 32));
}

TEST(test_map_client_change_follows_leader_hint)
{
	fake_cluster *c = cluster_new(1);
	const char *addrs[] = {c->f[0].addr, c->f[1].addr};
	bool changed = false;
	pl_map after;
	pl_map_init(&after);
	char why[128];
	CHECK_EQ(send_change(addrs, 2, c_broker(1), &changed, &after, why,
	             sizeof(why)),
	    PL_OK);
	CHECK(changed);
	CHECK_EQ(after.version, 1);
	CHECK(pl_map_broker_find(&after, 1) != NULL);
	CHECK_EQ(fake_count(c, 0, false), 1); /* asked, answered not_leader */
	CHECK_EQ(fake_count(c, 1, false), 1);
	/* sent again: already in effect */
	CHECK_EQ(send_change(addrs, 2, c_broker(1), &changed, &after, why,
	             sizeof(why)),
	    PL_OK);
	CHECK(!changed);
	CHECK_EQ(after.version, 1);
	pl_map_fini(&after);
	cluster_free(c);
}

TEST(test_map_client_change_follows_hint_to_unlisted_replica)
{
	fake_cluster *c = cluster_new(1);
	const char *addrs[] = {c->f[0].addr}; /* the leader is not listed */
	bool changed = false;
	CHECK_EQ(send_change(addrs, 1, c_broker(1), &changed, NULL, NULL, 0),
	    PL_OK);
	CHECK(changed);
	CHECK_EQ(fake_count(c, 1, false), 1);
	cluster_free(c);
}

TEST(test_map_client_change_refused)
{
	fake_cluster *c = cluster_new(0);
	const char *addrs[] = {c->f[0].addr, c->f[1].addr};
	char why[128] = "";
	bool changed = true;
	pl_map after;
	pl_map_init(&after);
	CHECK_EQ(send_change(addrs, 2, c_group_add(1, 3), &changed, &after, why,
	             sizeof(why)),
	    PL_E_FORBIDDEN); /* no brokers to place on */
	CHECK(strstr(why, "active brokers") != NULL);
	CHECK(changed); /* written on success only */
	CHECK_EQ(after.version, 0);
	CHECK_EQ(send_change(addrs, 2, c_group_add(1, 2), NULL, NULL, why,
	             sizeof(why)),
	    PL_E_BAD_REQUEST);
	pl_map_fini(&after);
	cluster_free(c);
}

TEST(test_map_client_change_needs_the_secret)
{
	fake_cluster *c = cluster_new(0);
	const char *addrs[] = {c->f[0].addr};
	uint8_t wrong[32] = {0};
	chg ch = c_broker(1);
	char why[64];
	CHECK_EQ(pl_map_change(addrs, 1, wrong, ch.b, ch.n, 2000, NULL, NULL,
	             why, sizeof(why)),
	    PL_E_UNAUTHORIZED);
	CHECK_EQ(c->map.version, 0);
	cluster_free(c);
}

TEST(test_map_client_change_without_leader)
{
	fake_cluster *c = cluster_new(-1);
	const char *addrs[] = {c->f[0].addr, c->f[1].addr};
	chg ch = c_broker(1);
	int64_t t0 = pl_mono_us();
	CHECK_EQ(pl_map_change(addrs, 2, SECRET, ch.b, ch.n, 300, NULL, NULL,
	             NULL, 0),
	    PL_E_UNAVAILABLE);
	CHECK_LT(pl_mono_us() - t0, 1000 * 1000);
	CHECK_GT(fake_count(c, 0, false) + fake_count(c, 1, false), 2);
	const char *dead[] = {DEAD_ADDR};
	CHECK_EQ(pl_map_change(dead, 1, SECRET, ch.b, ch.n, 300, NULL, NULL,
	             NULL, 0),
	    PL_E_TIMEOUT);
	CHECK_EQ(pl_map_change(addrs, 0, SECRET, ch.b, ch.n, 300, NULL, NULL,
	             NULL, 0),
	    PL_E_BAD_REQUEST);
	cluster_free(c);
}

TEST(test_map_client_fetch)
{
	fake_cluster *c = cluster_new(0);
	const char *addrs[] = {c->f[1].addr, DEAD_ADDR};
	const char *leader[] = {c->f[0].addr};
	CHECK_EQ(send_change(leader, 1, c_broker(1), NULL, NULL, NULL, 0),
	    PL_OK);
	CHECK_EQ(send_change(leader, 1, c_broker(2), NULL, NULL, NULL, 0),
	    PL_OK);
	pl_map m;
	pl_map_init(&m);
	CHECK_EQ(pl_map_fetch(addrs, 2, 2000, &m), PL_OK);
	CHECK_EQ(m.version, 2);
	CHECK_EQ(m.nbrokers, 2);
	pl_map_fini(&m);
	pl_map_init(&m);
	const char *dead[] = {DEAD_ADDR};
	CHECK_EQ(pl_map_fetch(dead, 1, 200, &m), PL_E_TIMEOUT);
	cluster_free(c);
}

/* What the watcher reported. */
typedef struct seen {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int calls;
	uint64_t last;
	bool out_of_order;
	pl_map map;
} seen;

static void seen_init(seen *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pl_map_init(&s->map);
}

static void seen_fini(seen *s)
{
	pl_map_fini(&s->map);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
}

static void on_map(void *ctx, const pl_map *m)
{
	seen *s = ctx;
	pthread_mutex_lock(&s->mu);
	s->calls++;
	if (m->version <= s->last)
		s->out_of_order = true;
	s->last = m->version;
	pl_map_fini(&s->map);
	PL_ASSERT(pl_map_copy(&s->map, m) == PL_OK);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Waits up to ms for the watcher to report version v. */
static bool seen_wait(seen *s, uint64_t v, int ms)
{
	int64_t end = pl_mono_us() + (int64_t)ms * 1000;
	pthread_mutex_lock(&s->mu);
	while (s->last < v && pl_mono_us() < end) {
		pthread_mutex_unlock(&s->mu);
		usleep(5000);
		pthread_mutex_lock(&s->mu);
	}
	bool ok = s->last >= v;
	pthread_mutex_unlock(&s->mu);
	return ok;
}

TEST(test_map_client_watch_reports_each_newer_map)
{
	fake_cluster *c = cluster_new(1);
	const char *addrs[] = {c->f[0].addr, c->f[1].addr};
	seen s;
	seen_init(&s);
	pl_map_watch *w;
	CHECK_EQ(pl_map_watch_start(addrs, 2, 0, on_map, &s, &w), PL_OK);
	/* version 0 is not newer than since 0: the watch is parked */
	for (int i = 0; i < 100 && fake_count(c, 0, true) == 0; i++)
		usleep(10000);
	CHECK_GT(fake_count(c, 0, true), 0);
	CHECK_EQ(s.calls, 0);
	for (uint64_t b = 1; b <= 3; b++) {
		CHECK_EQ(send_change(addrs, 2, c_broker(b), NULL, NULL, NULL, 0),
		    PL_OK);
		/* a parked watch answers at once, not at its wait's end */
		CHECK(seen_wait(&s, b, 500));
	}
	CHECK_EQ(pl_map_watch_version(w), 3);
	pl_map_watch_stop(w);
	CHECK(!s.out_of_order);
	CHECK_EQ(s.map.nbrokers, 3);
	CHECK_EQ(s.calls, 3);
	seen_fini(&s);
	cluster_free(c);
}

TEST(test_map_client_watch_from_a_version)
{
	fake_cluster *c = cluster_new(0);
	const char *leader[] = {c->f[0].addr};
	for (uint64_t b = 1; b <= 2; b++)
		CHECK_EQ(send_change(leader, 1, c_broker(b), NULL, NULL, NULL, 0),
		    PL_OK);
	seen s;
	seen_init(&s);
	pl_map_watch *w;
	/* the caller holds version 2: nothing to report until 3 */
	CHECK_EQ(pl_map_watch_start(leader, 1, 2, on_map, &s, &w), PL_OK);
	usleep(100 * 1000);
	CHECK_EQ(s.calls, 0);
	CHECK_EQ(send_change(leader, 1, c_broker(3), NULL, NULL, NULL, 0),
	    PL_OK);
	CHECK(seen_wait(&s, 3, 1000));
	pl_map_watch_stop(w);
	CHECK_EQ(s.calls, 1);
	seen_fini(&s);
	cluster_free(c);
}

TEST(test_map_client_watch_moves_past_a_dead_replica)
{
	fake_cluster *c = cluster_new(0);
	const char *leader[] = {c->f[0].addr};
	CHECK_EQ(send_change(leader, 1, c_broker(1), NULL, NULL, NULL, 0),
	    PL_OK);
	const char *addrs[] = {DEAD_ADDR, c->f[1].addr};
	seen s;
	seen_init(&s);
	pl_map_watch *w;
	CHECK_EQ(pl_map_watch_start(addrs, 2, 0, on_map, &s, &w), PL_OK);
	/* the dead one is left after twice the wait */
	CHECK(seen_wait(&s, 1, 2 * PL_MAP_WATCH_WAIT_MS + 1500));
	pl_map_watch_stop(w);
	seen_fini(&s);
	cluster_free(c);
}

TEST(test_map_client_watch_stops_promptly)
{
	fake_cluster *c = cluster_new(0);
	const char *addrs[] = {c->f[0].addr};
	seen s;
	seen_init(&s);
	pl_map_watch *w;
	CHECK_EQ(pl_map_watch_start(addrs, 1, 0, on_map, &s, &w), PL_OK);
	for (int i = 0; i < 100 && fake_count(c, 0, true) == 0; i++)
		usleep(10000);
	int64_t t0 = pl_mono_us();
	pl_map_watch_stop(w); /* while parked at the replica */
	CHECK_LT(pl_mono_us() - t0, 600 * 1000);
	/* nothing is called after stop */
	CHECK_EQ(send_change(addrs, 1, c_broker(1), NULL, NULL, NULL, 0),
	    PL_OK);
	usleep(50 * 1000);
	CHECK_EQ(s.calls, 0);
	pl_map_watch_stop(NULL);
	seen_fini(&s);
	cluster_free(c);
}
