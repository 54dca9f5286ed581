/*
 * test_gw_failover.c - the gateway's side of "Gateways follow
 * leadership" (docs/replication.md), against fake broker replicas that
 * this process runs on nng rep0 sockets: a real parley-gateway, a real
 * client, and replicas whose leadership the test decides. The real
 * replicated broker is tested by test_failover.c.
 *   fault: the replica the gateway asks first does not lead;
 *   invariant: requests follow the leader_hint; the client sees acks.
 *   fault: an election (no leader known, then another replica leads);
 *   invariant: every publish is acked and stored once.
 *   fault: the leader's socket goes away (a killed leader);
 *   invariant: every publish is acked, stored once, and a live
 *   subscriber sees every seq once, in order.
 *   fault: a leader applies a request and loses leadership before it
 *   answers (unavailable without not_applied);
 *   invariant: a publish is re-sent and de-duplicated; a close_room is
 *   not re-sent (the client hears unavailable).
 *   operation: status; invariant: one entry per replica, lag computed.
 */
#define CHECK_MAIN
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "proto/nng_close.h"
#include "tests/check.h"
#include "tests/integration/harness.h"

#define T 15000
#define FAKES 3
#define MSGS_MAX 4096
#define ROOM "0001000000000001"

typedef struct fake_msg {
	uint64_t seq;
	char id[PL_CLIENT_MSG_ID_CHARS_MAX + 1];
	char body[32];
} fake_msg;

typedef struct fake {
	pthread_mutex_t mu;
	int leader;        /* 1..FAKES; 0: none */
	int hint;          /* the leader followers name; 0: none */
	bool lose_publish; /* leader: apply the next publish, then answer
	                      unavailable without not_applied */
	bool lose_close;   /* the same for the next close_room */
	uint32_t closes;   /* close_room requests the leader saw */
	uint32_t refused;  /* not_leader answers given */
	fake_msg msgs[MSGS_MAX];
	uint32_t n;
	uint32_t feed[FAKES + 1]; /* per replica: next msg for its feed */
	int epoch[FAKES + 1];     /* bumped when a replica takes over */
	bool stop[FAKES + 1];     /* the replica closes its socket */
	bool running[FAKES + 1];
	pthread_t th[FAKES + 1];
	char url[FAKES + 1][64];
} fake;

typedef struct fake_arg {
	fake *f;
	int node;
} fake_arg;

/* Reply objects of one answer, freed after it is encoded. */
typedef struct pool {
	void *p[4 * MSGS_MAX];
	int n;
} pool;

static void *palloc(pool *pl, size_t size)
{
	void *p = calloc(1, size);
	if (p != NULL && pl->n < (int)PL_ARRAY_LEN(pl->p))
		pl->p[pl->n++] = p;
	return p;
}

static void pool_free(pool *pl)
{
	for (int i = 0; i < pl->n; i++)
		free(pl->p[i]);
	pl->n = 0;
}

static Parley__Message *msg_of(pool *pl, const fake_msg *fm)
{
	Parley__Message *m = palloc(pl, sizeof(*m));
	parley__message__init(m);
	m->room = ROOM;
	m->seq = fm->seq;
	m->ts_us = pl_now_us();
	m->sender = "svc";
	m->kind = PARLEY__KIND__TEXT;
	m->body.data = (uint8_t *)fm->body;
	m->body.len = strlen(fm->body);
	m->client_msg_id = (char *)fm->id;
	return m;
}

static void rep_error(pool *pl, Parley__ServerFrame *r, int code,
    const char *msg, const char *hint, bool not_applied)
{
	Parley__Error *e = palloc(pl, sizeof(*e));
	parley__error__init(e);
	e->code = code;
	e->message = (char *)msg;
	e->leader_hint = (char *)hint;
	e->not_applied = not_applied;
	r->body_case = PARLEY__SERVER_FRAME__BODY_ERROR;
	r->error = e;
}

static void rep_status(fake *f, int node, pool *pl, Parley__ServerFrame *r)
{
	Parley__StatusReply *s = palloc(pl, sizeof(*s));
	Parley__GroupStatus *gs = palloc(pl, sizeof(*gs));
	Parley__GroupStatus **gp = palloc(pl, sizeof(*gp));
	parley__status_reply__init(s);
	parley__group_status__init(gs);
	gs->group = 1;
	gs->address = f->url[node];
	gs->reachable = true;
	gs->role = f->leader == node ? "leader" : "follower";
	gs->node_id = (uint64_t)node;
	gs->term = 7;
	/* Followers trail by their node id, so lag is easy to check. */
	gs->applied = f->leader == node ? 100 : 100 - (uint64_t)node;
	gs->commit = 100;
	gs->leader_id = (uint64_t)f->leader;
	gp[0] = gs;
	s->node = "fake";
	s->groups = gp;
	s->n_groups = 1;
	r->body_case = PARLEY__SERVER_FRAME__BODY_STATUS;
	r->status = s;
}

static void rep_publish(
    fake *f, pool *pl, const Parley__Publish *p, Parley__ServerFrame *r)
{
	Parley__Ack *a = palloc(pl, sizeof(*a));
	parley__ack__init(a);
	a->room = ROOM;
	for (uint32_t i = 0; p->client_msg_id[0] && i < f->n; i++) {
		if (strcmp(f->msgs[i].id, p->client_msg_id) == 0) {
			a->seq = f->msgs[i].seq;
			a->duplicate = true;
		}
	}
	if (a->seq == 0 && f->n < MSGS_MAX) {
		fake_msg *m = &f->msgs[f->n++];
		m->seq = f->n;
		snprintf(m->id, sizeof(m->id), "%s", p->client_msg_id);
		snprintf(m->body, sizeof(m->body), "%.*s", (int)p->body.len,
		    (const char *)p->body.data);
		a->seq = m->seq;
	}
	r->body_case = PARLEY__SERVER_FRAME__BODY_ACK;
	r->ack = a;
	if (f->lose_publish) {
		/* Stored, but the answer says the outcome is unknown. */
		f->lose_publish = false;
		rep_error(pl, r, PARLEY__ERROR_CODE__UNAVAILABLE,
		    "leadership lost", "", false);
	}
}

static void rep_history(
    fake *f, pool *pl, const Parley__History *h, Parley__ServerFrame *r)
{
	Parley__HistoryPage *p = palloc(pl, sizeof(*p));
	parley__history_page__init(p);
	uint32_t lim = h->limit ? h->limit : 50;
	p->room = ROOM;
	p->messages = palloc(pl, sizeof(*p->messages) * (lim + 1));
	for (uint32_t i = (uint32_t)h->after_seq; i < f->n; i++) {
		if (p->n_messages == lim) {
			p->more = true;
			break;
		}
		p->messages[p->n_messages++] = msg_of(pl, &f->msgs[i]);
	}
	r->body_case = PARLEY__SERVER_FRAME__BODY_HISTORY;
	r->history = p;
}

static void rep_leader(
    fake *f, pool *pl, const Parley__ClientFrame *cf, Parley__ServerFrame *r)
{
	switch (cf->body_case) {
	case PARLEY__CLIENT_FRAME__BODY_PUBLISH:
		rep_publish(f, pl, cf->publish, r);
		return;
	case PARLEY__CLIENT_FRAME__BODY_HISTORY:
		rep_history(f, pl, cf->history, r);
		return;
	case PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE: {
		Parley__Subscribed *s = palloc(pl, sizeof(*s));
		parley__subscribed__init(s);
		s->room = ROOM;
		s->last_seq = f->n;
		r->body_case = PARLEY__SERVER_FRAME__BODY_SUBSCRIBED;
		r->subscribed = s;
		return;
	}
	case PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM: {
		Parley__RoomCreated *c = palloc(pl, sizeof(*c));
		parley__room_created__init(c);
		c->room = ROOM;
		r->body_case = PARLEY__SERVER_FRAME__BODY_ROOM_CREATED;
		r->room_created = c;
		return;
	}
	default:
		break;
	}
	Parley__Ok *ok = palloc(pl, sizeof(*ok));
	parley__ok__init(ok);
	r->body_case = PARLEY__SERVER_FRAME__BODY_OK;
	r->ok = ok;
	if (cf->body_case == PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM) {
		f->closes++;
		if (f->lose_close) {
			f->lose_close = false;
			rep_error(pl, r, PARLEY__ERROR_CODE__UNAVAILABLE,
			    "leadership lost", "", false);
		}
	}
}

/* With f->mu held: the answer to one batch. */
static void answer(fake *f, int node, const Parley__Internal__GwBatch *gb,
    pool *pl, Parley__Internal__BrokerBatch *bb)
{
	bool leads = f->leader == node;
	bb->group = 1;
	bb->replies = palloc(pl, sizeof(*bb->replies) * (gb->n_reqs + 1));
	if (!leads) {
		bb->not_leader = true;
		bb->leader_hint = f->hint ? f->url[f->hint] : "";
	} else {
		char *ep = palloc(pl, 32);
		snprintf(ep, 32, "fake%d.%d", node, f->epoch[node]);
		bb->epoch = ep;
	}
	for (size_t i = 0; i < gb->n_reqs; i++) {
		Parley__ServerFrame *r = palloc(pl, sizeof(*r));
		parley__server_frame__init(r);
		r->id = gb->reqs[i]->id;
		const Parley__ClientFrame *cf = gb->reqs[i]->frame;
		if (cf->body_case == PARLEY__CLIENT_FRAME__BODY_STATUS) {
			rep_status(f, node, pl, r);
		} else if (!leads) {
			f->refused++;
			rep_error(pl, r, PARLEY__ERROR_CODE__UNAVAILABLE,
			    "not leader", bb->leader_hint, true);
		} else {
			rep_leader(f, pl, cf, r);
		}
		bb->replies[bb->n_replies++] = r;
	}
	if (!leads || !gb->poll)
		return;
	uint32_t from = f->feed[node], n = f->n - from;
	if (n > 256)
		n = 256;
	bb->events = palloc(pl, sizeof(*bb->events) * (n + 1));
	for (uint32_t i = 0; i < n; i++) {
		Parley__Event *ev = palloc(pl, sizeof(*ev));
		parley__event__init(ev);
		ev->room = ROOM;
		ev->ev_case = PARLEY__EVENT__EV_MESSAGE;
		ev->message = msg_of(pl, &f->msgs[from + i]);
		bb->events[bb->n_events++] = ev;
	}
	f->feed[node] = from + n;
}

/* The reply to one batch (NULL: none). Its message goes to nng_sendmsg;
 * tests/lsan.supp says why a leak of it is nng's (fake_reply). */
static nng_msg *fake_reply(fake *f, int node, nng_msg *in)
{
	pl_arena a = {0};
	static __thread pool pl;
	Parley__Internal__GwBatch *gb;
	Parley__Internal__BrokerBatch bb = PARLEY__INTERNAL__BROKER_BATCH__INIT;
	nng_msg *out = NULL;
	if (pl_arena_init(&a, NULL, PL_ARENA_BYTES_FOR(nng_msg_len(in))) !=
	        PL_OK ||
	    pl_gw_batch_decode(nng_msg_body(in), nng_msg_len(in), &a, &gb) !=
	        PL_OK) {
		pl_arena_fini(&a);
		return NULL;
	}
	/* A leader parks an empty poll a little (not long: this replica
	 * serves one request at a time). */
	for (int i = 0; gb->poll && i < 10; i++) {
		pthread_mutex_lock(&f->mu);
		bool wait = f->leader == node && f->feed[node] == f->n;
		pthread_mutex_unlock(&f->mu);
		if (!wait)
			break;
		usleep(2000);
	}
	pthread_mutex_lock(&f->mu);
	answer(f, node, gb, &pl, &bb);
	pthread_mutex_unlock(&f->mu);
	size_t n = protobuf_c_message_get_packed_size(&bb.base);
	if (nng_msg_alloc(&out, n) == 0 &&
	    pl_pb_encode(&bb.base, nng_msg_body(out), n, &n) != PL_OK) {
		nng_msg_free(out);
		out = NULL;
	}
	pool_free(&pl);
	pl_arena_fini(&a);
	return out;
}

static void *replica_main(void *arg)
{
	fake_arg *fa = arg;
	fake *f = fa->f;
	int node = fa->node;
	nng_socket s;
	if (nng_rep0_open(&s) != 0)
		return NULL;
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 20);
	nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, PL_FRAME_BYTES_CEIL);
	for (int i = 0; i < 100 && nng_listen(s, f->url[node], NULL, 0); i++)
		usleep(20000); /* the old listener's port may linger */
	for (;;) {
		pthread_mutex_lock(&f->mu);
		bool stop = f->stop[node];
		pthread_mutex_unlock(&f->mu);
		if (stop)
			break;
		nng_msg *m;
		int rv = nng_recvmsg(s, &m, 0);
		if (rv == NNG_ETIMEDOUT)
			continue;
		if (rv != 0)
			break;
		nng_msg *r = fake_reply(f, node, m);
		nng_msg_free(m);
		if (r != NULL && nng_sendmsg(s, r, 0) != 0)
			nng_msg_free(r);
	}
	/* Closed under the bound the broker's own sockets close under: a
	 * close while the gateway's requests stream in can wait forever in
	 * nng 1.5.2 (docs/internals.md, "Bounds and stopping"). */
	(void)pl_nng_close_bounded(&s, 1, "fake", PL_NNG_CLOSE_MS);
	return NULL;
}

static fake_arg args[FAKES + 1];

static bool fake_start(fake *f, int node)
{
	f->stop[node] = false;
	args[node] = (fake_arg){f, node};
	f->running[node] =
	    pthread_create(&f->th[node], NULL, replica_main, &args[node]) == 0;
	return f->running[node];
}

/* Closes the replica's socket, as a killed process would. */
static void fake_kill(fake *f, int node)
{
	pthread_mutex_lock(&f->mu);
	f->stop[node] = true;
	pthread_mutex_unlock(&f->mu);
	if (f->running[node])
		pthread_join(f->th[node], NULL);
	f->running[node] = false;
}

static void fake_lead(fake *f, int leader, int hint)
{
	pthread_mutex_lock(&f->mu);
	if (leader != 0 && leader != f->leader) {
		f->epoch[leader]++;
		f->feed[leader] = f->n; /* a new leader's feed starts empty */
	}
	f->leader = leader;
	f->hint = hint;
	pthread_mutex_unlock(&f->mu);
}

/* Sets one of the fake's flags under its lock. */
static void fake_set(fake *f, bool *flag)
{
	pthread_mutex_lock(&f->mu);
	*flag = true;
	pthread_mutex_unlock(&f->mu);
}

static uint32_t fake_get(fake *f, const uint32_t *counter)
{
	pthread_mutex_lock(&f->mu);
	uint32_t v = *counter;
	pthread_mutex_unlock(&f->mu);
	return v;
}

static fake *fakes_start(hx_cluster *c)
{
	fake *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return NULL;
	pthread_mutex_init(&f->mu, NULL);
	for (int n = 1; n <= FAKES; n++) {
		snprintf(f->url[n], sizeof(f->url[n]), "%s",
		    hx_replica_url(c, 1, n));
		if (!fake_start(f, n))
			return NULL;
	}
	return f;
}

static void fakes_stop(fake *f)
{
	for (int n = 1; n <= FAKES; n++)
		fake_kill(f, n);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

/* A cluster of one replicated group served by fakes, replica 3 leading
 * (the gateway starts at the first one listed). */
static bool setup(hx_cluster *c, fake **f)
{
	if (!hx_init_replicated(c, 1, FAKES))
		return false;
	snprintf(c->gw_extra, sizeof(c->gw_extra),
	    "publish_per_sec = 100000\nreplica_timeout_ms = 500\n");
	if ((*f = fakes_start(c)) == NULL)
		return false;
	fake_lead(*f, 3, 3);
	return hx_start_gateway(c);
}

static pl_status pub(parley_conn *conn, int i, bool with_id, parley_ack *a)
{
	char id[32], body[32];
	snprintf(id, sizeof(id), "m%d", i);
	int n = snprintf(body, sizeof(body), "b%d", i);
	return parley_publish(conn, ROOM, with_id ? id : NULL,
	    PARLEY__KIND__TEXT, body, (size_t)n, T, a);
}

/* Every stored message once: ids distinct (none empty) and bodies
 * b0..b(n-1) each once. */
static bool stored_once(fake *f, uint32_t want)
{
	static char seen[MSGS_MAX];
	bool ok = true;
	memset(seen, 0, sizeof(seen));
	pthread_mutex_lock(&f->mu);
	ok = f->n == want;
	for (uint32_t i = 0; ok && i < f->n; i++) {
		int b = atoi(f->msgs[i].body + 1);
		ok = f->msgs[i].id[0] != '\0' && b >= 0 && b < MSGS_MAX &&
		     !seen[b];
		if (ok)
			seen[b] = 1;
	}
	if (!ok)
		fprintf(stderr, "  stored %u, want %u\n", f->n, want);
	pthread_mutex_unlock(&f->mu);
	return ok;
}

TEST(test_gw_failover_follows_leader_hint)
{
	hx_cluster c;
	fake *f;
	CHECK(setup(&c, &f));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "svc", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	parley_ack a;
	for (int i = 0; i < 20; i++) {
		CHECK_EQ(pub(svc, i, i % 2 == 0, &a), PL_OK);
		CHECK_EQ(a.seq, (uint64_t)i + 1);
		CHECK(!a.duplicate);
	}
	CHECK(stored_once(f, 20));
	/* Publishes without an id got one from the gateway. */
	pthread_mutex_lock(&f->mu);
	bool gen = strncmp(f->msgs[1].id, "g:gw-test:", 10) == 0;
	pthread_mutex_unlock(&f->mu);
	CHECK(gen);
	/* Only the first batches went to a follower. */
	CHECK_LE(fake_get(f, &f->refused), 4);
	parley_close(svc);
	hx_fini(&c, false);
	fakes_stop(f);
}

/* A publisher thread: publishes until told to stop, each must be
 * acked; counts them. */
typedef struct pubber {
	parley_conn *conn;
	_Atomic bool stop;
	int sent;
	int max_ms;
	pl_status failed;
} pubber;

static void *pub_main(void *arg)
{
	pubber *p = arg;
	while (!atomic_load(&p->stop)) {
		int64_t t0 = pl_mono_us();
		parley_ack a;
		pl_status st = pub(p->conn, p->sent, p->sent % 3 != 0, &a);
		if (st != PL_OK) {
			p->failed = st;
			return NULL;
		}
		int ms = (int)((pl_mono_us() - t0) / 1000);
		if (ms > p->max_ms)
			p->max_ms = ms;
		p->sent++;
	}
	return NULL;
}

TEST(test_gw_failover_election_no_error_no_duplicate)
{
	hx_cluster c;
	fake *f;
	pubber p = {0};
	pthread_t th;
	CHECK(setup(&c, &f));
	p.conn = hx_client(&c, false, "acme", "svc", PARLEY__ROLE__SERVICE);
	CHECK(p.conn != NULL);
	CHECK_EQ(pthread_create(&th, NULL, pub_main, &p), 0);
	usleep(300000);
	/* Leader 3 steps down; nobody leads for 400 ms, followers first
	 * name the old leader, then nobody; then replica 1 leads. */
	fake_lead(f, 0, 3);
	usleep(200000);
	fake_lead(f, 0, 0);
	usleep(200000);
	fake_lead(f, 1, 1);
	usleep(300000);
	atomic_store(&p.stop, true);
	pthread_join(th, NULL);
	CHECK_EQ(p.failed, PL_OK);
	CHECK_GT(p.sent, 20);
	fprintf(stderr, "  %d publishes, longest %d ms\n", p.sent, p.max_ms);
	CHECK_LT(p.max_ms, 2000);
	CHECK(stored_once(f, (uint32_t)p.sent));
	parley_close(p.conn);
	hx_fini(&c, false);
	fakes_stop(f);
}

TEST(test_gw_failover_leader_killed_subscriber_sees_every_seq_once)
{
	hx_cluster c;
	fake *f;
	pubber p = {0};
	pthread_t th;
	CHECK(setup(&c, &f));
	parley_conn *sub =
	    hx_client(&c, true, "acme", "agent", PARLEY__ROLE__AGENT);
	p.conn = hx_client(&c, false, "acme", "svc", PARLEY__ROLE__SERVICE);
	CHECK(sub != NULL && p.conn != NULL);
	CHECK_EQ(parley_subscribe(sub, ROOM, 0, T, NULL), PL_OK);
	CHECK_EQ(pthread_create(&th, NULL, pub_main, &p), 0);
	usleep(300000);
	/* Kill leader 3: the others still name it for 300 ms. */
	fake_lead(f, 0, 3);
	fake_kill(f, 3);
	usleep(300000);
	fake_lead(f, 2, 2);
	usleep(300000);
	atomic_store(&p.stop, true);
	pthread_join(th, NULL);
	CHECK_EQ(p.failed, PL_OK);
	fprintf(stderr, "  %d publishes, longest %d ms\n", p.sent, p.max_ms);
	CHECK_LT(p.max_ms, 2000);
	CHECK(stored_once(f, (uint32_t)p.sent));
	for (uint64_t want = 1; want <= (uint64_t)p.sent; want++)
		CHECK_EQ(hx_next_message(sub, ROOM, 5000, NULL, 0), want);
	CHECK_EQ(hx_next_message(sub, ROOM, 300, NULL, 0), 0);
	/* The killed replica comes back as a follower. */
	CHECK(fake_start(f, 3));
	parley_ack a;
	CHECK_EQ(pub(p.conn, p.sent, true, &a), PL_OK);
	CHECK_EQ(a.seq, (uint64_t)p.sent + 1);
	CHECK_EQ(hx_next_message(sub, ROOM, 5000, NULL, 0), a.seq);
	parley_close(sub);
	parley_close(p.conn);
	hx_fini(&c, false);
	fakes_stop(f);
}

TEST(test_gw_failover_unknown_outcome_resends_only_safe_requests)
{
	hx_cluster c;
	fake *f;
	CHECK(setup(&c, &f));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "svc", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	parley_ack a;
	CHECK_EQ(pub(svc, 0, true, &a), PL_OK);
	/* The client's own id: the re-sent publish is a duplicate of the
	 * stored one, and says so. */
	fake_set(f, &f->lose_publish);
	CHECK_EQ(pub(svc, 1, true, &a), PL_OK);
	CHECK_EQ(a.seq, 2);
	CHECK(a.duplicate);
	/* No id: the gateway's own; its earlier attempt is no duplicate
	 * to the client. */
	fake_set(f, &f->lose_publish);
	CHECK_EQ(pub(svc, 2, false, &a), PL_OK);
	CHECK_EQ(a.seq, 3);
	CHECK(!a.duplicate);
	CHECK(stored_once(f, 3));
	/* A close is not re-sent: unavailable, and it ran once. */
	fake_set(f, &f->lose_close);
	CHECK_EQ(parley_close_room(svc, ROOM, "done", T), PL_E_UNAVAILABLE);
	CHECK_EQ(fake_get(f, &f->closes), 1);
	CHECK_EQ(parley_close_room(svc, ROOM, "done", T), PL_OK);
	CHECK_EQ(fake_get(f, &f->closes), 2);
	parley_close(svc);
	hx_fini(&c, false);
	fakes_stop(f);
}

TEST(test_gw_failover_gives_up_after_failover_ms)
{
	hx_cluster c;
	fake *f;
	CHECK(hx_init_replicated(&c, 1, FAKES));
	snprintf(c.gw_extra, sizeof(c.gw_extra), "failover_ms = 600\n");
	CHECK((f = fakes_start(&c)) != NULL);
	fake_lead(f, 0, 0); /* nobody leads, ever */
	CHECK(hx_start_gateway(&c));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "svc", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	int64_t t0 = pl_mono_us();
	parley_ack a;
	CHECK_EQ(pub(svc, 0, true, &a), PL_E_UNAVAILABLE);
	int ms = (int)((pl_mono_us() - t0) / 1000);
	CHECK_GE(ms, 500);
	CHECK_LT(ms, 3000);
	/* Asked around with pauses, not in a busy loop. */
	uint32_t refused = fake_get(f, &f->refused);
	fprintf(stderr, "  %u refusals in %d ms\n", refused, ms);
	CHECK_LT(refused, 100);
	parley_close(svc);
	hx_fini(&c, false);
	fakes_stop(f);
}

TEST(test_gw_failover_status_lists_every_replica_with_lag)
{
	hx_cluster c;
	fake *f;
	CHECK(setup(&c, &f));
	parley_conn *svc =
	    hx_client(&c, false, "acme", "ops", PARLEY__ROLE__SERVICE);
	CHECK(svc != NULL);
	CHECK_EQ(hx_leader(&c, svc, 1, T), 3);
	fake_kill(f, 2);
	/* The gateway notices the lost connection in its own time: ask
	 * until it does (bounded), then check the whole answer. */
	Parley__ServerFrame *r = NULL;
	for (int i = 0; i < 100; i++) {
		CHECK_EQ(parley_status(svc, T, &r), PL_OK);
		CHECK_EQ(r->status->n_groups, FAKES);
		if (!r->status->groups[1]->reachable)
			break;
		parley_frame_free(r);
		r = NULL;
		usleep(100000);
	}
	CHECK(r != NULL);
	for (int n = 1; n <= FAKES; n++) {
		const Parley__GroupStatus *gs = r->status->groups[n - 1];
		CHECK_EQ(gs->group, 1);
		CHECK_STR_EQ(gs->address, hx_replica_url(&c, 1, n));
		CHECK_EQ(gs->reachable, n != 2);
		if (n == 2)
			continue;
		CHECK_EQ(gs->node_id, (uint64_t)n);
		CHECK_STR_EQ(gs->role, n == 3 ? "leader" : "follower");
		CHECK_EQ(gs->lag, n == 3 ? 0 : (uint64_t)n);
	}
	parley_frame_free(r);
	parley_close(svc);
	hx_fini(&c, false);
	fakes_stop(f);
}
