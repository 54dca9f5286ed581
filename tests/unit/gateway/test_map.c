/*
 * test_map.c - unit tests of the gateway following the cluster map: the
 * map -> group table conversion (config.c), maps applied at runtime to a
 * gateway with no real brokers (new groups while other threads route,
 * weight and draining, replicas moving, removed groups), the keyring
 * swapped while threads verify tokens, one socket per broker address,
 * and the group every GwBatch names (read by a fake rep0 broker).
 * Maps are built by hand: proto/map.h's structs are public.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include <pthread.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <sodium.h>

#include "gateway/core.h"
#include "gateway/link.h"
#include "proto/codec.h"
#include "proto/map.h"
#include "proto/splice.h"
#include "proto/token.h"

/* Addresses nothing listens on: links dial them and keep retrying. */
#define ADDR_A "tcp://127.0.0.1:1"
#define ADDR_B "tcp://127.0.0.1:2"
#define ADDR_C "tcp://127.0.0.1:3"

static pl_map_broker brokers3[] = {
    {.node = 1, .listen = ADDR_A},
    {.node = 2, .listen = ADDR_B},
    {.node = 3, .listen = ADDR_C},
};

static void map_set(pl_map *m, uint64_t version, pl_map_group *groups,
    size_t ngroups, pl_map_tenant *tenants, size_t ntenants)
{
	*m = (pl_map){.version = version,
	    .brokers = brokers3,
	    .nbrokers = PL_ARRAY_LEN(brokers3),
	    .groups = groups,
	    .ngroups = ngroups,
	    .tenants = tenants,
	    .ntenants = ntenants};
}

static pl_map_group group1(uint32_t id, uint64_t node, uint32_t weight)
{
	return (pl_map_group){.id = id,
	    .replicas = {{.node = node}},
	    .nreplicas = 1,
	    .weight = weight};
}

TEST(test_map_table_replicas_from_brokers)
{
	pl_map_group groups[] = {
	    {.id = 1,
	        .replicas = {{.node = 1}, {.node = 2}, {.node = 3, .learner = true}},
	        .nreplicas = 3,
	        .weight = 5},
	    {.id = 2, .replicas = {{.node = 2}}, .nreplicas = 1, .removed = true},
	    {.id = 3,
	        .replicas = {{.node = 3, .leaving = true}, {.node = 9}},
	        .nreplicas = 2,
	        .weight = 1,
	        .draining = true},
	    {.id = 70000, .replicas = {{.node = 1}}, .nreplicas = 1},
	};
	pl_map m;
	map_set(&m, 7, groups, PL_ARRAY_LEN(groups), NULL, 0);
	gw_map_table t;
	CHECK_EQ(gw_map_table_init(&t), PL_OK);
	gw_map_table_from(&t, &m);
	CHECK_EQ(t.version, 7);
	CHECK_EQ(t.ngroups, 2); /* 2 removed, 70000 not a group id */
	CHECK_EQ(t.groups[0].id, 1);
	CHECK_EQ(t.groups[0].nbrokers, 3);
	CHECK_STR_EQ(t.groups[0].brokers[0], ADDR_A);
	CHECK_STR_EQ(t.groups[0].brokers[1], ADDR_B);
	/* A learner cannot lead, but it answers and hints name it. */
	CHECK_STR_EQ(t.groups[0].brokers[2], ADDR_C);
	CHECK_EQ(t.groups[0].weight, 5);
	CHECK(!t.groups[0].draining);
	CHECK_EQ(t.groups[1].id, 3);
	CHECK_EQ(t.groups[1].nbrokers, 1); /* node 9 is no broker */
	CHECK_STR_EQ(t.groups[1].brokers[0], ADDR_C);
	CHECK(t.groups[1].draining);
	CHECK_EQ(t.skipped, 2);
	gw_map_table_fini(&t);
}

TEST(test_map_table_revoked_keys_left_out)
{
	pl_map_tenant tenants[2] = {
	    {.name = "acme",
	        .keys = {{.id = "k1", .pk = {1}},
	            {.id = "k2", .pk = {2}, .revoked = true}},
	        .nkeys = 2},
	    {.name = "gone", .keys = {{.id = "k1", .revoked = true}}, .nkeys = 1},
	};
	pl_map m;
	map_set(&m, 3, NULL, 0, tenants, 2);
	gw_map_table t;
	CHECK_EQ(gw_map_table_init(&t), PL_OK);
	gw_map_table_from(&t, &m);
	const pl_tenant *acme = pl_keyring_find(t.keys, "acme");
	CHECK(acme != NULL);
	if (acme != NULL) {
		CHECK_EQ(acme->nkeys, 1);
		CHECK_STR_EQ(acme->keys[0].key_id, "k1");
	}
	CHECK(pl_keyring_find(t.keys, "gone") == NULL);
	gw_map_table_fini(&t);
}

TEST(test_map_config_meta_list)
{
	gw_config c;
	CHECK_EQ(gw_config_init(&c), PL_OK);
	CHECK(gw_config_meta_parse(&c, "tcp://m1:1, tcp://m2:1,tcp://m3:1"));
	CHECK_EQ(c.nmeta, 3);
	CHECK_STR_EQ(c.meta[1], "tcp://m2:1");
	CHECK(!gw_config_meta_parse(&c, "tcp://m1:1,,tcp://m3:1"));
	CHECK_EQ(c.nmeta, 3);
	CHECK_EQ(c.ngroups, 0);
	CHECK_EQ(gw_config_check(&c), PL_OK); /* no groups: the map has them */
	gw_config_fini(&c);
}

/* ---- a gateway without listeners ---- */

static void conf_make(gw_config *c)
{
	PL_ASSERT(gw_config_init(c) == PL_OK);
	c->tcp[0] = '\0';
	c->http[0] = '\0';
	c->broker_contexts = 2;
	c->broker_timeout_ms = 300;
	c->replica_timeout_ms = 100;
}

static gw *gw_up(gw_config *c)
{
	gw *g = NULL;
	PL_ASSERT(gw_new(c, &g) == PL_OK);
	PL_ASSERT(gw_start(g) == PL_OK);
	return g;
}

static void gw_down(gw *g, gw_config *c)
{
	gw_stop(g);
	gw_free(g);
	gw_config_fini(c);
}

TEST(test_map_pending_until_first_map)
{
	gw_config c;
	conf_make(&c);
	CHECK(gw_config_meta_parse(&c, "tcp://127.0.0.1:4"));
	gw *g = gw_up(&c);
	CHECK(gw_map_pending(g));
	CHECK(gw_link_pick(g, "acme", NULL) == NULL);
	pl_map_group groups[] = {group1(1, 1, 1)};
	pl_map m;
	map_set(&m, 1, groups, 1, NULL, 0);
	CHECK_EQ(gw_map_apply(g, &m), PL_OK);
	CHECK(!gw_map_pending(g));
	CHECK(gw_link_pick(g, "acme", NULL) == gw_link_find(g, 1));
	gw_down(g, &c);
}

struct hammer {
	gw *g;
	_Atomic bool stop;
	_Atomic long seen2;
	_Atomic long bad;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	while (!atomic_load(&h->stop)) {
		gw_link *l1 = gw_link_find(h->g, 1);
		gw_link *l2 = gw_link_find(h->g, 2);
		gw_link *p = gw_link_pick(h->g, "acme", NULL);
		/* p may be group 2 added after l2 was read: by group. */
		if (l1 == NULL || p == NULL ||
		    (gw_link_group(p) != 1 && gw_link_group(p) != 2) ||
		    (l2 != NULL && gw_link_find(h->g, 2) != l2))
			atomic_fetch_add(&h->bad, 1);
		if (l2 != NULL)
			atomic_fetch_add(&h->seen2, 1);
		int n;
		gw_link *const *v = gw_links_view(h->g, &n);
		for (int i = 1; i < n; i++) {
			if (gw_link_group(v[i - 1]) >= gw_link_group(v[i]))
				atomic_fetch_add(&h->bad, 1);
		}
	}
	return NULL;
}

TEST(test_map_group_added_while_routing)
{
	gw_config c;
	conf_make(&c);
	c.ngroups = 1;
	c.groups[0] = (gw_group_conf){.id = 5, .weight = 1};
	CHECK(gw_config_brokers_parse(&c.groups[0], ADDR_C));
	c.groups[0].draining = true; /* pick only chooses 1 or 2 */
	/* Static group 5 first, then 1 (below it): the view stays sorted. */
	gw *g = gw_up(&c);
	pl_map_group groups[] = {group1(1, 1, 1)};
	pl_map m;
	map_set(&m, 1, groups, 1, NULL, 0);
	CHECK_EQ(gw_map_apply(g, &m), PL_OK);
	struct hammer h = {.g = g};
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, hammer_main, &h), 0);
	usleep(20000);
	pl_map_group groups2[] = {group1(1, 1, 1), group1(2, 2, 1)};
	map_set(&m, 2, groups2, 2, NULL, 0);
	CHECK_EQ(gw_map_apply(g, &m), PL_OK);
	usleep(20000);
	atomic_store(&h.stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(atomic_load(&h.bad), 0);
	CHECK_GT(atomic_load(&h.seen2), 0);
	int n;
	gw_link *const *v = gw_links_view(g, &n);
	CHECK_EQ(n, 3);
	CHECK_EQ(gw_link_group(v[0]), 1);
	CHECK_EQ(gw_link_group(v[1]), 2);
	CHECK_EQ(gw_link_group(v[2]), 5);
	/* Group 5 is not in the map: retired, its link still there. */
	CHECK(gw_link_draining(gw_link_find(g, 5)));
	gw_down(g, &c);
}

TEST(test_map_weight_draining_removed)
{
	gw_config c;
	conf_make(&c);
	gw *g = gw_up(&c);
	pl_map_group groups[] = {group1(1, 1, 3), group1(2, 2, 1)};
	pl_map m;
	map_set(&m, 1, groups, 2, NULL, 0);
	CHECK_EQ(gw_map_apply(g, &m), PL_OK);
	gw_link *l1 = gw_link_find(g, 1), *l2 = gw_link_find(g, 2);
	CHECK(l1 != NULL && l2 != NULL);
	CHECK_EQ(gw_link_weight(l1), 3);
	groups[0].draining = true;
	groups[1].weight = 9;
	map_set(&m, 2, groups, 2, NULL, 0);
	CHECK_EQ(gw_map_apply(g, &m), PL_OK);
	CHECK(gw_link_draining(l1));
	CHECK_EQ(gw_link_weight(l2), 9);
	for (int i = 0; i < 100; i++)
		CHECK(gw_link_pick(g, "acme", NULL) == l2);
	/* An old map changes nothing. */
	groups[0].draining = false;
	map_set(&m, 1, groups, 2, NULL, 0);
	CHECK_EQ(gw_map_apply(g, &m), PL_OK);
	CHECK(gw_link_draining(l1));
	/* Removed: no new rooms, the link stays for its rooms. */
	groups[0].draining = false;
	groups[1].removed = true;
	map_set(&m, 3, groups, 2, NULL, 0);
	CHECK_EQ(gw_map_apply(g, &m), PL_OK);
	CHECK(gw_link_find(g, 2) == l2);
	CHECK(gw_link_draining(l2));
	CHECK(gw_link_pick(g, "acme", "key") == l1);
	CHECK_EQ(atomic_load(&g->map_version), 3);
	gw_down(g, &c);
}

static bool has_addr(gw_link *l, const char *addr)
{
	for (int i = 0; i < GW_REPLICAS_MAX; i++) {
		const char *a = gw_link_replica_addr(l, i);
		if (a != NULL && strcmp(a, addr) == 0)
			return true;
	}
	return false;
}

TEST(test_map_replica_moves_to_another_broker)
{
	gw_config c;
	conf_make(&c);
	gw *g = gw_up(&c);
	pl_map_group groups[] = {{.id = 1,
	    .replicas = {{.node = 1}, {.node = 2}},
	    .nreplicas = 2,
	    .weight = 1}};
	pl_map m;
	map_set(&m, 1, groups, 1, NULL, 0);
	CHECK_EQ(gw_map_apply(g, &m), PL_OK);
	gw_link *l = gw_link_find(g, 1);
	CHECK_EQ(gw_link_replicas(l), 2);
	CHECK_EQ(gw_link_sockets(g), 2);
	/* The replica on broker 2 moves to broker 3. */
	groups[0].replicas[1].node = 3;
	map_set(&m, 2, groups, 1, NULL, 0);
	CHECK_EQ(gw_map_apply(g, &m), PL_OK);
	CHECK_EQ(gw_link_replicas(l), 2);
	CHECK(has_addr(l, ADDR_A));
	CHECK(!has_addr(l, ADDR_B));
	CHECK(has_addr(l, ADDR_C));
	CHECK_EQ(gw_link_sockets(g), 2); /* B's socket closed with its last user */
	/* Down to one replica, then a whole new set. */
	groups[0].nreplicas = 1;
	groups[0].replicas[0].node = 2;
	map_set(&m, 3, groups, 1, NULL, 0);
	CHECK_EQ(gw_map_apply(g, &m), PL_OK);
	CHECK_EQ(gw_link_replicas(l), 1);
	CHECK(has_addr(l, ADDR_B));
	CHECK_EQ(gw_link_sockets(g), 1);
	gw_down(g, &c);
}

TEST(test_map_one_socket_per_broker)
{
	gw_config c;
	conf_make(&c);
	gw *g = gw_up(&c);
	/* Three groups, five replicas, on three brokers. */
	pl_map_group groups[] = {
	    {.id = 1, .replicas = {{.node = 1}, {.node = 2}}, .nreplicas = 2},
	    {.id = 2, .replicas = {{.node = 2}, {.node = 3}}, .nreplicas = 2},
	    {.id = 3, .replicas = {{.node = 1}}, .nreplicas = 1},
	};
	pl_map m;
	map_set(&m, 1, groups, 3, NULL, 0);
	CHECK_EQ(gw_map_apply(g, &m), PL_OK);
	CHECK_EQ(gw_link_sockets(g), 3);
	gw_stop(g);
	gw_free(g);
	/* Static config shares the same way. */
	c.ngroups = 2;
	c.groups[0] = (gw_group_conf){.id = 1, .weight = 1};
	c.groups[1] = (gw_group_conf){.id = 2, .weight = 1};
	CHECK(gw_config_brokers_parse(&c.groups[0], ADDR_A "," ADDR_B));
	CHECK(gw_config_brokers_parse(&c.groups[1], ADDR_B));
	g = gw_up(&c);
	CHECK_EQ(gw_link_sockets(g), 2);
	gw_down(g, &c);
	CHECK_EQ(0, 0);
}

/* ---- tenant keys swapped under readers ---- */

struct verifier {
	gw *g;
	const char *tok1, *tok2;
	_Atomic bool stop;
	_Atomic long runs;
	_Atomic long bad; /* neither old nor new outcome */
};

static void *verify_main(void *arg)
{
	struct verifier *v = arg;
	while (!atomic_load(&v->stop)) {
		pl_claims cl;
		const char *why;
		int64_t now = pl_now_us() / 1000000;
		bool ok1 = gw_token_verify(v->g, v->tok1, now, &cl, &why) == PL_OK;
		bool ok2 = gw_token_verify(v->g, v->tok2, now, &cl, &why) == PL_OK;
		/* Keyrings alternate {k1} and {k1, k2}: k1 always passes. */
		if (!ok1)
			atomic_fetch_add(&v->bad, 1);
		(void)ok2;
		atomic_fetch_add(&v->runs, 1);
	}
	return NULL;
}

static void mint(const char *kid, const uint8_t sk[64], char *out, size_t cap)
{
	pl_claims cl = {.tenant = "acme", .user = "u1", .role = 2};
	snprintf(cl.key_id, sizeof(cl.key_id), "%s", kid);
	cl.exp_s = pl_now_us() / 1000000 + 3600;
	PL_ASSERT(pl_token_mint(&cl, sk, out, cap) == PL_OK);
}

TEST(test_map_keyring_swap_under_verifiers)
{
	PL_ASSERT(sodium_init() >= 0);
	uint8_t pk1[32], sk1[64], pk2[32], sk2[64];
	crypto_sign_keypair(pk1, sk1);
	crypto_sign_keypair(pk2, sk2);
	char tok1[PL_TOKEN_CHARS_MAX + 1], tok2[PL_TOKEN_CHARS_MAX + 1];
	mint("k1", sk1, tok1, sizeof(tok1));
	mint("k2", sk2, tok2, sizeof(tok2));
	gw_config c;
	conf_make(&c);
	CHECK_EQ(pl_keyring_add(c.keys, "acme", "k1", pk1), PL_OK);
	gw *g = gw_up(&c);
	struct verifier v = {.g = g, .tok1 = tok1, .tok2 = tok2};
	pl_map_tenant t = {.name = "acme", .nkeys = 2};
	snprintf(t.keys[0].id, sizeof(t.keys[0].id), "k1");
	memcpy(t.keys[0].pk, pk1, 32);
	snprintf(t.keys[1].id, sizeof(t.keys[1].id), "k2");
	memcpy(t.keys[1].pk, pk2, 32);
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, verify_main, &v), 0);
	pl_map m;
	for (uint64_t ver = 1; ver <= 200; ver++) {
		t.keys[1].revoked = ver % 2 == 0;
		map_set(&m, ver, NULL, 0, &t, 1);
		CHECK_EQ(gw_map_apply(g, &m), PL_OK);
	}
	atomic_store(&v.stop, true);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(atomic_load(&v.bad), 0);
	CHECK_GT(atomic_load(&v.runs), 0);
	/* Last map: k2 revoked; then k1 revoked too, k2 back. */
	pl_claims cl;
	const char *why;
	int64_t now = pl_now_us() / 1000000;
	CHECK_NE(gw_token_verify(g, tok2, now, &cl, &why), PL_OK);
	t.keys[0].revoked = true;
	t.keys[1].revoked = false;
	map_set(&m, 201, NULL, 0, &t, 1);
	CHECK_EQ(gw_map_apply(g, &m), PL_OK);
	CHECK_NE(gw_token_verify(g, tok1, now, &cl, &why), PL_OK);
	CHECK_EQ(gw_token_verify(g, tok2, now, &cl, &why), PL_OK);
	gw_down(g, &c);
}

/* ---- GwBatch names its group: a fake rep0 broker reads them ---- */

static void req_done(gw_req *r, Parley__ServerFrame *f, int code)
{
	(void)f;
	(void)code;
	free(r);
}

/* Receives GwBatches until one with requests and one poll were seen;
 * checks both name group 7. */
static void broker_read(nng_socket s, int *failed_out)
{
	int *check_failed_ = failed_out;
	bool saw_poll = false, saw_reqs = false;
	for (int i = 0; i < 20 && !(saw_poll && saw_reqs); i++) {
		nng_msg *msg;
		if (nng_recvmsg(s, &msg, 0) != 0)
			break;
		pl_arena a;
		Parley__Internal__GwBatch *b;
		CHECK_EQ(pl_arena_init(&a, NULL, 65536), PL_OK);
		if (pl_gw_batch_decode(nng_msg_body(msg), nng_msg_len(msg), &a,
		        &b) == PL_OK) {
			CHECK_EQ(b->group, 7);
			uint32_t peek = 0;
			CHECK_EQ(pl_splice_gw_batch_group_peek(nng_msg_body(msg),
			             nng_msg_len(msg), &peek),
			    PL_OK);
			CHECK_EQ(peek, 7);
			if (b->poll)
				saw_poll = true;
			if (b->n_reqs > 0)
				saw_reqs = true;
		}
		pl_arena_fini(&a);
		/* An empty BrokerBatch answers it (requests end unmatched). */
		nng_msg_clear(msg);
		CHECK_EQ(nng_sendmsg(s, msg, 0), 0);
	}
	CHECK(saw_poll);
	CHECK(saw_reqs);
}

TEST(test_map_gw_batch_names_group)
{
	nng_socket rep;
	CHECK_EQ(nng_rep0_open(&rep), 0);
	CHECK_EQ(nng_socket_set_ms(rep, NNG_OPT_RECVTIMEO, 3000), 0);
	const char *addr = "tcp://127.0.0.1:17931";
	CHECK_EQ(nng_listen(rep, addr, NULL, 0), 0);
	gw_config c;
	conf_make(&c);
	c.ngroups = 1;
	c.groups[0] = (gw_group_conf){.id = 7, .weight = 1};
	CHECK(gw_config_brokers_parse(&c.groups[0], addr));
	gw *g = gw_up(&c);
	gw_link *l = gw_link_find(g, 7);
	CHECK(l != NULL);
	/* A ping frame, packed as the queue holds it (a GwRequest without
	 * its id): the codec checks it as a broker does. */
	Parley__Ping ping = PARLEY__PING__INIT;
	Parley__ClientFrame f = PARLEY__CLIENT_FRAME__INIT;
	f.body_case = PARLEY__CLIENT_FRAME__BODY_PING;
	f.ping = &ping;
	Parley__Internal__GwRequest gr = PARLEY__INTERNAL__GW_REQUEST__INIT;
	gr.frame = &f;
	uint8_t body[256];
	size_t blen;
	CHECK_EQ(pl_pb_encode(&gr.base, body, sizeof(body), &blen), PL_OK);
	gw_req *r = calloc(1, sizeof(*r) + blen);
	memcpy(r->body, body, blen);
	r->len = (uint32_t)blen;
	r->done = req_done;
	r->pin = -1;
	r->lane = 1;
	r->deadline_us = pl_mono_us() + 1000000;
	CHECK_EQ(gw_link_submit(l, r), PL_OK);
	int failed = 0;
	broker_read(rep, &failed);
	CHECK_EQ(failed, 0);
	gw_down(g, &c);
	nng_close(rep);
}
