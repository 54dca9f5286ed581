/*
 * multi.c - requests that span every shard group: list_rooms (a merge of
 * each group's page, in room id order, which is group order since the
 * group is the id's prefix), report (each group's tenant days, added up
 * per day), both answered by each group's leader, and status (every
 * replica of every group answers for itself, plus the gateway's own
 * counts). Parts are kept packed until all are in.
 */
#include <stdlib.h>
#include <string.h>

#include "gateway/conn.h"
#include "gateway/link.h"
#include "gateway/multi.h"
#include "gateway/req.h"

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

typedef struct gw_multi gw_multi;

/* list_rooms and report fan out to every group, status to every
 * replica of every group; the parts are merged. */
struct gw_multi {
	pthread_mutex_t mu;
	gw_conn *conn; /* reference held */
	uint64_t client_id;
	uint8_t op;
	uint32_t limit;
	int pending;
	int nparts;
	struct {
		uint16_t group;
		int8_t replica; /* status: which one; -1 otherwise */
		uint8_t
		    *buf; /* packed ServerFrame reply, owned; NULL: failed */
		size_t len;
		int code; /* the group's error code when it answered one */
	} parts[];
};


static void multi_free(gw_multi *m)
{
	for (int i = 0; i < m->nparts; i++)
		free(m->parts[i].buf);
	gw_conn_unref(m->conn);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

static Parley__ServerFrame *part_decode(gw_multi *m, int i, pl_arena *a)
{
	Parley__ServerFrame *f;
	if (m->parts[i].buf == NULL ||
	    pl_server_frame_decode(m->parts[i].buf, m->parts[i].len,
	        PL_FRAME_BYTES_CEIL, a, &f) != PL_OK)
		return NULL;
	return f;
}

static void send_list(gw_multi *m, pl_arena *a)
{
	uint32_t lim = m->limit ? m->limit : LIST_LIMIT_DEFAULT;
	if (lim > LIST_LIMIT_MAX)
		lim = LIST_LIMIT_MAX;
	char **rooms = calloc(lim, sizeof(*rooms));
	Parley__RoomList rl = PARLEY__ROOM_LIST__INIT;
	bool failed = rooms == NULL;
	for (int i = 0; !failed && i < m->nparts && !rl.more; i++) {
		Parley__ServerFrame *f = part_decode(m, i, a);
		if (f == NULL ||
		    f->body_case != PARLEY__SERVER_FRAME__BODY_ROOM_LIST) {
			failed = true; /* an incomplete list would mislead */
			break;
		}
		for (size_t j = 0; j < f->room_list->n_rooms; j++) {
			if (rl.n_rooms == lim) {
				rl.more = true;
				break;
			}
			rooms[rl.n_rooms++] = f->room_list->rooms[j];
		}
		/* A group with more rooms comes before the next group's. */
		rl.more = rl.more || f->room_list->more;
	}
	if (failed) {
		gw_conn_send_error(m->conn, m->client_id,
		    PARLEY__ERROR_CODE__UNAVAILABLE,
		    "a shard group is unavailable");
	} else {
		rl.rooms = rooms;
		Parley__ServerFrame sf = PARLEY__SERVER_FRAME__INIT;
		sf.id = m->client_id;
		sf.body_case = PARLEY__SERVER_FRAME__BODY_ROOM_LIST;
		sf.room_list = &rl;
		(void)gw_conn_send(m->conn, &sf);
	}
	free(rooms);
}

/* The GroupStatus of part i's replica: the entry for its group in the
 * replica's answer, or one saying it is unreachable (in down[i]). The
 * address is always the one configured, which is how leader hints and
 * operators name a replica. */
static Parley__GroupStatus *status_part(
    gw *g, gw_multi *m, int i, pl_arena *a, Parley__GroupStatus *down)
{
	gw_link *l = gw_link_find(g, m->parts[i].group);
	int rep = m->parts[i].replica;
	const char *ra = l != NULL ? gw_link_replica_addr(l, rep) : NULL;
	char *addr = ra != NULL ? (char *)ra : "";
	Parley__ServerFrame *f = part_decode(m, i, a);
	Parley__GroupStatus *gs = NULL;
	if (f != NULL && f->body_case == PARLEY__SERVER_FRAME__BODY_STATUS) {
		for (size_t j = 0; j < f->status->n_groups; j++) {
			if (gs == NULL ||
			    f->status->groups[j]->group == m->parts[i].group)
				gs = f->status->groups[j];
		}
	}
	if (gs == NULL) {
		gs = &down[i];
		parley__group_status__init(gs);
	} else {
		gs->reachable = true;
	}
	gs->group = m->parts[i].group;
	gs->address = addr;
	return gs;
}

/* lag = the group's highest applied index among its reachable replicas
 * minus this replica's (the brokers leave it 0: none sees the others). */
static void status_lag(Parley__GroupStatus **gs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t top = 0;
		for (size_t j = 0; j < n; j++) {
			if (gs[j]->group == gs[i]->group && gs[j]->reachable &&
			    gs[j]->applied > top)
				top = gs[j]->applied;
		}
		gs[i]->lag = gs[i]->reachable && top > gs[i]->applied
		                 ? top - gs[i]->applied
		                 : 0;
	}
}

static void send_status(gw *g, gw_multi *m, pl_arena *a)
{
	size_t n = (size_t)m->nparts;
	Parley__GroupStatus **gs = calloc(n + 1, sizeof(*gs));
	Parley__GroupStatus *down = calloc(n + 1, sizeof(*down));
	if (gs == NULL || down == NULL) {
		gw_conn_send_error(m->conn, m->client_id,
		    PARLEY__ERROR_CODE__INTERNAL, "out of memory");
		free(gs);
		free(down);
		return;
	}
	Parley__StatusReply sr = PARLEY__STATUS_REPLY__INIT;
	for (size_t i = 0; i < n; i++)
		gs[i] = status_part(g, m, (int)i, a, down);
	status_lag(gs, n);
	sr.n_groups = n;
	sr.node = (char *)g->conf->id;
	pthread_mutex_lock(&g->conns_mu);
	sr.connections = g->nconns;
	pthread_mutex_unlock(&g->conns_mu);
	pthread_mutex_lock(&g->subs_mu);
	sr.subscriptions = (uint32_t)g->nsubs;
	pthread_mutex_unlock(&g->subs_mu);
	sr.uptime_us = pl_now_us() - g->start_us;
	sr.groups = gs;
	Parley__ServerFrame sf = PARLEY__SERVER_FRAME__INIT;
	sf.id = m->client_id;
	sf.body_case = PARLEY__SERVER_FRAME__BODY_STATUS;
	sf.status = &sr;
	(void)gw_conn_send(m->conn, &sf);
	free(gs);
	free(down);
}

/* Adds one group's day into the merged report (days sorted, oldest
 * first; at most PL_REPORT_DAYS_MAX of them). */
static void report_add(
    Parley__TenantDay **days, size_t *n, Parley__TenantDay *d)
{
	size_t i = 0;
	while (i < *n && days[i]->day < d->day)
		i++;
	if (i < *n && days[i]->day == d->day) {
		Parley__TenantDay *t = days[i];
		t->rooms_created += d->rooms_created;
		t->rooms_closed += d->rooms_closed;
		t->messages += d->messages;
		t->wait_us_sum += d->wait_us_sum;
		t->wait_n += d->wait_n;
		t->first_response_us_sum += d->first_response_us_sum;
		t->first_response_n += d->first_response_n;
		t->handle_us_sum += d->handle_us_sum;
		t->handle_n += d->handle_n;
		return;
	}
	if (*n == PL_REPORT_DAYS_MAX)
		return;
	memmove(days + i + 1, days + i, (*n - i) * sizeof(*days));
	days[i] = d;
	(*n)++;
}

/* Every group must answer: a report missing a group would under-count.
 * A group's own error (forbidden) is passed on as it is. */
static void send_report(gw_multi *m, pl_arena *a)
{
	Parley__TenantDay *days[PL_REPORT_DAYS_MAX];
	Parley__Report rep = PARLEY__REPORT__INIT;
	size_t n = 0;
	for (int i = 0; i < m->nparts; i++) {
		Parley__ServerFrame *f = part_decode(m, i, a);
		if (f == NULL ||
		    f->body_case != PARLEY__SERVER_FRAME__BODY_REPORT) {
			int code = m->parts[i].code
			               ? m->parts[i].code
			               : PARLEY__ERROR_CODE__UNAVAILABLE;
			gw_conn_send_error(m->conn, m->client_id, code,
			    code == PARLEY__ERROR_CODE__UNAVAILABLE
			        ? "a shard group is unavailable"
			        : pl_strerror(pl_code_to_status(code)));
			return;
		}
		for (size_t j = 0; j < f->report->n_days; j++)
			report_add(days, &n, f->report->days[j]);
	}
	rep.days = days;
	rep.n_days = n;
	Parley__ServerFrame sf = PARLEY__SERVER_FRAME__INIT;
	sf.id = m->client_id;
	sf.body_case = PARLEY__SERVER_FRAME__BODY_REPORT;
	sf.report = &rep;
	(void)gw_conn_send(m->conn, &sf);
}

static void multi_finish(gw *g, gw_multi *m)
{
	size_t bytes = 0;
	for (int i = 0; i < m->nparts; i++)
		bytes += m->parts[i].len;
	pl_arena a = {0};
	if (pl_arena_init(&a, NULL, PL_ARENA_BYTES_FOR(bytes)) != PL_OK) {
		gw_conn_send_error(m->conn, m->client_id,
		    PARLEY__ERROR_CODE__INTERNAL, "out of memory");
	} else if (m->op == PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS) {
		send_list(m, &a);
	} else if (m->op == PARLEY__CLIENT_FRAME__BODY_REPORT) {
		send_report(m, &a);
	} else {
		send_status(g, m, &a);
	}
	pl_arena_fini(&a);
	multi_free(m);
}

/* A part's done (ctx: its gw_multi), with f NULL when it failed. */
static void part_done(gw_req *r, Parley__ServerFrame *f, int code)
{
	(void)code;
	gw_multi *m = r->ctx;
	gw *g = m->conn->g;
	pthread_mutex_lock(&m->mu);
	if (f != NULL && f->body_case == PARLEY__SERVER_FRAME__BODY_ERROR)
		m->parts[r->part].code = (int)f->error->code;
	if (f != NULL && f->body_case != PARLEY__SERVER_FRAME__BODY_ERROR) {
		size_t n = protobuf_c_message_get_packed_size(&f->base);
		uint8_t *buf = malloc(n ? n : 1);
		if (buf != NULL &&
		    pl_pb_encode(&f->base, buf, n, &n) == PL_OK) {
			m->parts[r->part].buf = buf;
			m->parts[r->part].len = n;
		} else {
			free(buf);
		}
	}
	bool done = --m->pending == 0;
	pthread_mutex_unlock(&m->mu);
	if (done)
		multi_finish(g, m);
	gw_req_free(r);
}

/* The child frame of list_rooms for one group: groups before the "after"
 * room's group are skipped, later groups list from their start. */
static bool list_child(
    const Parley__ClientFrame *f, uint16_t group, Parley__ListRooms *lr)
{
	*lr = *f->list_rooms;
	uint64_t after = 0;
	if (lr->after != NULL && lr->after[0] != '\0' &&
	    pl_room_parse(lr->after, &after) == PL_OK) {
		if (group < pl_room_group(after))
			return false;
		if (group > pl_room_group(after))
			lr->after = "";
	}
	return true;
}

/* One part: a request for group's leader, or for one of its replicas
 * when replica >= 0. */
static bool part_add(gw_conn *c, gw_multi *m, const Parley__ClientFrame *f,
    uint16_t group, int replica, gw_req **reqs)
{
	gw_req *r = gw_req_new(c, GW_REQ_PART, f, part_done, m);
	if (r == NULL)
		return false; /* reported as that group being unavailable */
	int n = m->nparts++;
	r->part = (uint16_t)n;
	r->pin = (int8_t)replica;
	m->parts[n].group = group;
	m->parts[n].replica = (int8_t)replica;
	reqs[n] = r;
	return true;
}

/* The parts come from one view of the links (sorted by group, so the
 * merge is in room id order): a map adding a group meanwhile changes
 * nothing here. A status asks every replica slot in use. */
static void parts_make(gw_conn *c, const Parley__ClientFrame *f, gw_multi *m,
    gw_link *const *links, int nlinks, int max, gw_req **reqs)
{
	for (int i = 0; i < nlinks && m->nparts < max; i++) {
		Parley__ClientFrame cf = *f;
		Parley__ListRooms lr;
		gw_link *l = links[i];
		uint16_t group = gw_link_group(l);
		if (f->body_case == PARLEY__CLIENT_FRAME__BODY_STATUS) {
			for (int rep = 0;
			     rep < GW_REPLICAS_MAX && m->nparts < max; rep++) {
				if (gw_link_replica_addr(l, rep) != NULL)
					(void)part_add(c, m, &cf, group, rep, reqs);
			}
			continue;
		}
		if (f->body_case == PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS) {
			if (!list_child(f, group, &lr))
				continue;
			cf.list_rooms = &lr;
		}
		(void)part_add(c, m, &cf, group, -1, reqs);
	}
}

void gw_multi_start(gw_conn *c, const Parley__ClientFrame *f)
{
	gw *g = c->g;
	int nlinks;
	gw_link *const *links = gw_links_view(g, &nlinks);
	if (nlinks == 0 && gw_map_pending(g)) {
		gw_conn_send_retry(c, f->id, PARLEY__ERROR_CODE__UNAVAILABLE,
		    "no cluster map yet: groups are not known", 0);
		return;
	}
	int max = f->body_case == PARLEY__CLIENT_FRAME__BODY_STATUS
	              ? nlinks * GW_REPLICAS_MAX
	              : nlinks;
	gw_multi *m = calloc(1, sizeof(*m) + (size_t)max * sizeof(m->parts[0]));
	gw_req **reqs = calloc((size_t)max + 1, sizeof(*reqs));
	if (m == NULL || reqs == NULL) {
		free(m);
		free(reqs);
		gw_conn_send_error(
		    c, f->id, PARLEY__ERROR_CODE__INTERNAL, "out of memory");
		return;
	}
	pthread_mutex_init(&m->mu, NULL);
	gw_conn_ref(c);
	m->conn = c;
	m->client_id = f->id;
	m->op = (uint8_t)f->body_case;
	if (f->body_case == PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS)
		m->limit = f->list_rooms->limit;
	parts_make(c, f, m, links, nlinks, max, reqs);
	int n = m->nparts;
	/* Counted before the first submit: a reply may come back at once.
	 * The extra one is this function's, dropped last. */
	m->pending = n + 1;
	for (int i = 0; i < n; i++) {
		gw_link *l = gw_link_find(g, m->parts[i].group);
		if (gw_link_submit(l, reqs[i]) != PL_OK)
			part_done(
			    reqs[i], NULL, PARLEY__ERROR_CODE__UNAVAILABLE);
	}
	free(reqs);
	pthread_mutex_lock(&m->mu);
	bool done = --m->pending == 0;
	pthread_mutex_unlock(&m->mu);
	if (done)
		multi_finish(g, m);
}
