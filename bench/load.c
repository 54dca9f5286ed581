/*
 * load.c - parley-bench's publish/subscribe load. N publishing connections
 * (role service) spread over R rooms keep up to --inflight publishes in
 * flight each; with --rate the schedule is open-loop: message k of a
 * connection is due at start + k * interval and its latency is measured
 * from that intended time, so a stalled server cannot hide its stall
 * (no coordinated omission). Subscriber connections (role agent, one per
 * --rooms-per-sub rooms) receive the live feed; each body carries its
 * intended send time, so publish->deliver is measured on one clock.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"

#define TOKEN_TTL_S (BENCH_DURATION_S_MAX * 2)
#define ROOMS_PER_SUB_DEFAULT 16
#define SUB_EVENTS_MAX (256u * 1024) /* absorbs bursts; drops are counted */
#define DRAIN_US (5 * 1000000)       /* wait for late acks at the end */
#define DELIVER_GRACE_US (2 * 1000000)
#define ERROR_CODES 16 /* parley.ErrorCode values fit below this */

typedef struct load_cfg {
	const char *url;
	const char *keyfile;
	uint32_t connections, rooms, size, inflight, rooms_per_sub;
	double rate; /* messages/s over all connections; 0 = max */
	double duration_s, warmup_s;
	bool subscribers, json;
} load_cfg;

typedef struct load_stats {
	pl_hist ack;
	pl_hist deliver;
	_Atomic uint64_t sent;      /* intended in the measured window */
	_Atomic uint64_t acked;     /* acked, intended in the window */
	_Atomic uint64_t delivered; /* delivered, intended in the window */
	_Atomic uint64_t dropped;   /* events dropped by full queues */
	_Atomic uint64_t lost_inflight;
	_Atomic uint64_t errors[ERROR_CODES];
} load_stats;

typedef struct load_run {
	const load_cfg *cfg;
	bench_key key;
	char (*rooms)[PL_ROOM_ID_CHARS + 1];
	load_stats *stats;
	int64_t t_start, t_warm, t_end; /* pl_mono_us */
	_Atomic bool subs_stop;
} load_run;

typedef struct worker {
	load_run *run;
	uint32_t index;
	parley_conn *conn;
	pthread_t thread;
	bool started;
} worker;

static void count_error(load_stats *s, int code)
{
	if (code <= 0 || code >= ERROR_CODES)
		code = PARLEY__ERROR_CODE__INTERNAL;
	atomic_fetch_add(&s->errors[code], 1);
}

/* ------------------------------------------------------------------ */
/* Publishers. */

static void body_stamp(uint8_t *body, int64_t intended)
{
	uint32_t magic = BENCH_BODY_MAGIC;
	memcpy(body, &magic, 4);
	memset(body + 4, 0, 4);
	memcpy(body + 8, &intended, 8);
}

static void pub_record(worker *w, const parley_completion *c)
{
	load_stats *s = w->run->stats;
	bool in_window = (int64_t)c->tag >= w->run->t_warm;
	if (c->status != PL_OK) {
		if (in_window)
			count_error(s, c->code);
		return;
	}
	parley_frame_free(c->reply);
	if (!in_window)
		return;
	atomic_fetch_add(&s->acked, 1);
	int64_t lat = c->recv_us - (int64_t)c->tag;
	pl_hist_record(&s->ack, lat > 0 ? (uint64_t)lat : 0);
}

/* Collects completions for up to wait_us (the first) then whatever else
 * is ready. Returns false once the connection is closed. */
static bool pub_collect(worker *w, int64_t wait_us)
{
	parley_completion c;
	pl_status st = parley_collect(w->conn, wait_us, &c);
	while (st == PL_OK) {
		pub_record(w, &c);
		st = parley_collect(w->conn, 0, &c);
	}
	return st != PL_E_CLOSED;
}

/* Sends one publish intended at `intended`. False on a closed socket. */
static bool pub_send(worker *w, uint8_t *body, uint64_t k, int64_t intended)
{
	const load_cfg *cfg = w->run->cfg;
	char cmid[48];
	snprintf(cmid, sizeof(cmid), "b%u-%" PRIu64, w->index, k);
	body_stamp(body, intended);
	/* Connection i cycles over rooms i, i + N, i + 2N, ... */
	const char *room =
	    w->run->rooms[(w->index + k * cfg->connections) % cfg->rooms];
	uint64_t id;
	pl_status st = parley_publish_send(w->conn, room, cmid,
	    PARLEY__KIND__TEXT, body, cfg->size, (uint64_t)intended, &id);
	if (intended >= w->run->t_warm)
		atomic_fetch_add(&w->run->stats->sent, 1);
	if (st != PL_OK && intended >= w->run->t_warm)
		count_error(w->run->stats, pl_status_to_code(st));
	return st != PL_E_CLOSED;
}

static void pub_drain(worker *w)
{
	int64_t until = pl_mono_us() + DRAIN_US;
	while (parley_inflight(w->conn) > 0 && pl_mono_us() < until) {
		if (!pub_collect(w, 100000))
			break;
	}
	atomic_fetch_add(
	    &w->run->stats->lost_inflight, parley_inflight(w->conn));
}

/* Sends every publish that is due (all of them up to --inflight when
 * there is no rate). Returns false once the connection is closed. */
static bool pub_send_due(
    worker *w, uint8_t *body, double iv, int64_t base, uint64_t *k)
{
	load_run *r = w->run;
	for (;;) {
		int64_t now = pl_mono_us();
		int64_t intended =
		    iv > 0 ? base + (int64_t)(iv * (double)*k) : now;
		if (intended > now || intended >= r->t_end ||
		    parley_inflight(w->conn) >= r->cfg->inflight)
			return true;
		if (!pub_send(w, body, (*k)++, intended))
			return false;
	}
}

static void *pub_main(void *arg)
{
	worker *w = arg;
	load_run *r = w->run;
	const load_cfg *cfg = r->cfg;
	uint8_t *body = calloc(1, cfg->size);
	if (body == NULL)
		return NULL;
	memset(body + BENCH_BODY_HEADER_BYTES, 'x',
	    cfg->size - BENCH_BODY_HEADER_BYTES);
	/* Per-connection schedule, staggered so connections interleave. */
	double iv = cfg->rate > 0 ? cfg->connections * 1e6 / cfg->rate : 0;
	int64_t base = r->t_start + (int64_t)(iv * w->index / cfg->connections);
	uint64_t k = 0;
	bool open = true;
	while (open && pl_mono_us() < r->t_end) {
		open = pub_send_due(w, body, iv, base, &k);
		int64_t wait = 0;
		if (parley_inflight(w->conn) >= cfg->inflight)
			wait = 100000; /* woken by the first ack */
		else if (iv > 0)
			wait = base + (int64_t)(iv * (double)k) - pl_mono_us();
		int64_t left = r->t_end - pl_mono_us();
		if (wait > left)
			wait = left;
		if (open)
			open = pub_collect(w, wait > 0 ? wait : 0);
	}
	pub_drain(w);
	free(body);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Subscribers. */

static void sub_record(load_run *r, const Parley__ServerFrame *f)
{
	if (f->body_case != PARLEY__SERVER_FRAME__BODY_EVENT ||
	    f->event->ev_case != PARLEY__EVENT__EV_MESSAGE)
		return;
	const ProtobufCBinaryData *b = &f->event->message->body;
	uint32_t magic;
	int64_t intended;
	if (b->len < BENCH_BODY_HEADER_BYTES)
		return;
	memcpy(&magic, b->data, 4);
	memcpy(&intended, b->data + 8, 8);
	if (magic != BENCH_BODY_MAGIC || intended < r->t_warm)
		return;
	atomic_fetch_add(&r->stats->delivered, 1);
	int64_t lat = parley_frame_recv_us(f) - intended;
	pl_hist_record(&r->stats->deliver, lat > 0 ? (uint64_t)lat : 0);
}

static void *sub_main(void *arg)
{
	worker *w = arg;
	load_run *r = w->run;
	while (!atomic_load(&r->subs_stop)) {
		Parley__ServerFrame *f = NULL;
		pl_status st = parley_next_event(w->conn, 100, &f);
		if (st == PL_E_BACKPRESSURE)
			continue;
		if (st == PL_E_CLOSED)
			break;
		if (st != PL_OK)
			continue;
		sub_record(r, f);
		parley_frame_free(f);
	}
	atomic_fetch_add(&r->stats->dropped, parley_events_dropped(w->conn));
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Set-up. */

static pl_status create_rooms(load_run *r)
{
	char tok[PL_TOKEN_CHARS_MAX + 1];
	pl_status st = bench_token(&r->key, "bench-admin",
	    PARLEY__ROLE__SERVICE, TOKEN_TTL_S, tok, sizeof(tok));
	parley_conn *c = NULL;
	if (st == PL_OK)
		st = bench_open(r->cfg->url, tok, NULL, &c, NULL);
	if (st != PL_OK)
		return st;
	uint64_t run_id = (uint64_t)pl_now_us();
	for (uint32_t i = 0; i < r->cfg->rooms && st == PL_OK; i++) {
		char key[64];
		snprintf(key, sizeof(key), "bench-%" PRIu64 "-%u", run_id, i);
		parley_meta m = {.key = "source", .value = "parley-bench"};
		st = parley_create_room(
		    c, key, &m, 1, BENCH_REQUEST_TIMEOUT_MS, r->rooms[i], NULL);
		if (st != PL_OK)
			fprintf(stderr, "error: %s: create room: %s\n",
			    pl_code_name(pl_status_to_code(st)),
			    parley_last_error(c, NULL));
	}
	parley_close(c);
	return st;
}

static pl_status open_worker(load_run *r, worker *w, uint32_t i, bool sub)
{
	char user[64], tok[PL_TOKEN_CHARS_MAX + 1];
	snprintf(user, sizeof(user), "bench-%s-%u", sub ? "sub" : "pub", i);
	int role = sub ? PARLEY__ROLE__AGENT : PARLEY__ROLE__SERVICE;
	pl_status st =
	    bench_token(&r->key, user, role, TOKEN_TTL_S, tok, sizeof(tok));
	if (st != PL_OK)
		return st;
	parley_opts o = {.events_max = sub ? SUB_EVENTS_MAX : 0};
	*w = (worker){.run = r, .index = i};
	return bench_open(r->cfg->url, tok, &o, &w->conn, NULL);
}

static pl_status sub_subscribe(load_run *r, worker *w)
{
	uint32_t per = r->cfg->rooms_per_sub;
	for (uint32_t j = w->index * per;
	     j < (w->index + 1) * per && j < r->cfg->rooms; j++) {
		pl_status st = parley_subscribe(
		    w->conn, r->rooms[j], 0, BENCH_REQUEST_TIMEOUT_MS, NULL);
		if (st != PL_OK) {
			fprintf(stderr, "error: %s: subscribe: %s\n",
			    pl_code_name(pl_status_to_code(st)),
			    parley_last_error(w->conn, NULL));
			return st;
		}
	}
	return PL_OK;
}

static uint32_t sub_count(const load_cfg *cfg)
{
	if (!cfg->subscribers)
		return 0;
	return (cfg->rooms + cfg->rooms_per_sub - 1) / cfg->rooms_per_sub;
}

static pl_status open_all(load_run *r, worker *pubs, worker *subs)
{
	pl_status st = PL_OK;
	for (uint32_t i = 0; i < sub_count(r->cfg) && st == PL_OK; i++) {
		st = open_worker(r, &subs[i], i, true);
		if (st == PL_OK)
			st = sub_subscribe(r, &subs[i]);
	}
	for (uint32_t i = 0; i < r->cfg->connections && st == PL_OK; i++)
		st = open_worker(r, &pubs[i], i, false);
	return st;
}

static void start_all(load_run *r, worker *ws, uint32_t n, bool sub)
{
	for (uint32_t i = 0; i < n; i++) {
		if (ws[i].conn == NULL)
			continue;
		ws[i].started = pthread_create(&ws[i].thread, NULL,
		                    sub ? sub_main : pub_main, &ws[i]) == 0;
	}
}

static void join_all(worker *ws, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		if (ws[i].started)
			pthread_join(ws[i].thread, NULL);
		ws[i].started = false;
	}
}

static void close_all(worker *ws, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		parley_close(ws[i].conn);
		ws[i].conn = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* Report. */

static void report_errors(FILE *f, const load_stats *s, bool json)
{
	bool any = false;
	for (int c = 1; c < ERROR_CODES; c++) {
		uint64_t n = atomic_load(&s->errors[c]);
		if (n == 0)
			continue;
		if (json)
			fprintf(f, "%s\"%s\":%" PRIu64, any ? "," : "",
			    pl_code_name(c), n);
		else
			fprintf(f, " %s=%" PRIu64, pl_code_name(c), n);
		any = true;
	}
	if (!any && !json)
		fprintf(f, " none");
}

static void report_table(const load_run *r)
{
	const load_cfg *c = r->cfg;
	const load_stats *s = r->stats;
	double achieved = (double)atomic_load(&s->acked) / c->duration_s;
	printf("parley-bench %s connections=%u rooms=%u size=%u inflight=%u "
	       "duration=%gs warmup=%gs\n",
	    c->url, c->connections, c->rooms, c->size, c->inflight,
	    c->duration_s, c->warmup_s);
	if (c->rate > 0)
		printf("offered  %12.1f msgs/s\n", c->rate);
	else
		printf("offered  %12s msgs/s\n", "max");
	printf("achieved %12.1f msgs/s (sent %" PRIu64 ", acked %" PRIu64
	       ", delivered %" PRIu64 ")\n",
	    achieved, atomic_load(&s->sent), atomic_load(&s->acked),
	    atomic_load(&s->delivered));
	printf("%-18s %10s %10s %10s %10s %10s\n", "latency (ms)", "p50", "p99",
	    "p99.9", "max", "count");
	bench_hist_row(stdout, "publish->ack", &s->ack);
	bench_hist_row(stdout, "publish->deliver", &s->deliver);
	printf("errors:");
	report_errors(stdout, s, false);
	printf("\nevents dropped: %" PRIu64 ", unacked at end: %" PRIu64 "\n",
	    atomic_load(&s->dropped), atomic_load(&s->lost_inflight));
}

static void report_json(const load_run *r)
{
	const load_cfg *c = r->cfg;
	const load_stats *s = r->stats;
	printf("{\"mode\":\"load\",\"url\":\"%s\",\"connections\":%u,"
	       "\"rooms\":%u,\"size\":%u,\"inflight\":%u,\"duration_s\":%.3f,"
	       "\"warmup_s\":%.3f,\"subscribers\":%s,\"offered_per_s\":%.1f,"
	       "\"achieved_per_s\":%.1f,\"sent\":%" PRIu64 ",\"acked\":%" PRIu64
	       ",\"delivered\":%" PRIu64 ",\"events_dropped\":%" PRIu64
	       ",\"unacked\":%" PRIu64 ",",
	    c->url, c->connections, c->rooms, c->size, c->inflight,
	    c->duration_s, c->warmup_s, c->subscribers ? "true" : "false",
	    c->rate, (double)atomic_load(&s->acked) / c->duration_s,
	    atomic_load(&s->sent), atomic_load(&s->acked),
	    atomic_load(&s->delivered), atomic_load(&s->dropped),
	    atomic_load(&s->lost_inflight));
	bench_hist_json(stdout, "ack", &s->ack);
	putchar(',');
	bench_hist_json(stdout, "deliver", &s->deliver);
	printf(",\"errors\":{");
	report_errors(stdout, s, true);
	printf("}}\n");
}

/* ------------------------------------------------------------------ */
/* Options. */

static bool parse_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end != '\0' || !(v >= lo && v <= hi))
		return false;
	*out = v;
	return true;
}

static const struct option LOAD_OPTS[] = {
    {"url", required_argument, NULL, 'u'},
    {"key", required_argument, NULL, 'k'},
    {"connections", required_argument, NULL, 'c'},
    {"rooms", required_argument, NULL, 'r'},
    {"size", required_argument, NULL, 's'},
    {"rate", required_argument, NULL, 'R'},
    {"duration", required_argument, NULL, 'd'},
    {"warmup", required_argument, NULL, 'w'},
    {"subscribers", no_argument, NULL, 'S'},
    {"no-subscribers", no_argument, NULL, 'N'},
    {"rooms-per-sub", required_argument, NULL, 'p'},
    {"inflight", required_argument, NULL, 'i'},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
};

static bool load_opt(load_cfg *c, int ch, const char *v)
{
	switch (ch) {
	case 'u':
		c->url = v;
		return true;
	case 'k':
		c->keyfile = v;
		return true;
	case 'c':
		return bench_parse_u32(
		    v, 1, BENCH_CONNECTIONS_MAX, &c->connections);
	case 'r':
		return bench_parse_u32(v, 1, BENCH_ROOMS_MAX, &c->rooms);
	case 's':
		return bench_parse_u32(v, BENCH_BODY_HEADER_BYTES,
		    PL_FRAME_BYTES_CEIL / 2, &c->size);
	case 'R':
		return parse_num(v, 0, 1e8, &c->rate);
	case 'd':
		return parse_num(v, 0.1, BENCH_DURATION_S_MAX, &c->duration_s);
	case 'w':
		return parse_num(v, 0, BENCH_DURATION_S_MAX, &c->warmup_s);
	case 'S':
		c->subscribers = true;
		return true;
	case 'N':
		c->subscribers = false;
		return true;
	case 'p':
		return bench_parse_u32(
		    v, 1, BENCH_ROOMS_MAX, &c->rooms_per_sub);
	case 'i':
		return bench_parse_u32(v, 1, PARLEY_INFLIGHT_MAX, &c->inflight);
	case 'j':
		c->json = true;
		return true;
	default:
		return false;
	}
}

static bool load_parse(int argc, char **argv, load_cfg *c)
{
	*c = (load_cfg){.connections = 4,
	    .rooms = 16,
	    .size = 256,
	    .inflight = 64,
	    .rooms_per_sub = ROOMS_PER_SUB_DEFAULT,
	    .duration_s = 10,
	    .warmup_s = 2,
	    .subscribers = true};
	optind = 1;
	int ch;
	while ((ch = getopt_long(argc, argv, "", LOAD_OPTS, NULL)) != -1) {
		if (!load_opt(c, ch, optarg)) {
			fprintf(stderr,
			    "error: bad_request: bad value for "
			    "option %s\n",
			    argv[optind - 1]);
			return false;
		}
	}
	if (optind != argc || c->url == NULL || c->keyfile == NULL) {
		fprintf(stderr, "error: bad_request: --url and --key are "
		                "required; no positional arguments\n");
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */

static void run_phase(load_run *r, worker *pubs, worker *subs)
{
	const load_cfg *c = r->cfg;
	uint32_t nsub = sub_count(c);
	r->t_start = pl_mono_us() + 100000;
	r->t_warm = r->t_start + (int64_t)(c->warmup_s * 1e6);
	r->t_end = r->t_warm + (int64_t)(c->duration_s * 1e6);
	start_all(r, subs, nsub, true);
	start_all(r, pubs, c->connections, false);
	join_all(pubs, c->connections);
	/* Let the feed catch up with what was acked, within a bound. */
	int64_t until = pl_mono_us() + DELIVER_GRACE_US;
	while (
	    nsub > 0 && pl_mono_us() < until &&
	    atomic_load(&r->stats->delivered) < atomic_load(&r->stats->acked)) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	atomic_store(&r->subs_stop, true);
	join_all(subs, nsub);
}

static int load_execute(load_run *r)
{
	const load_cfg *c = r->cfg;
	uint32_t nsub = sub_count(c);
	worker *pubs = calloc(c->connections, sizeof(*pubs));
	worker *subs = calloc(nsub ? nsub : 1, sizeof(*subs));
	pl_status st = pubs && subs ? create_rooms(r) : PL_E_NOMEM;
	if (st == PL_OK)
		st = open_all(r, pubs, subs);
	if (st == PL_OK) {
		run_phase(r, pubs, subs);
		if (c->json)
			report_json(r);
		else
			report_table(r);
	} else {
		fprintf(stderr, "error: %s: set-up failed: %s\n",
		    pl_code_name(pl_status_to_code(st)), pl_strerror(st));
	}
	if (pubs != NULL)
		close_all(pubs, c->connections);
	if (subs != NULL)
		close_all(subs, nsub);
	free(pubs);
	free(subs);
	return st == PL_OK ? 0 : 1;
}

int bench_load_main(int argc, char **argv)
{
	load_cfg cfg;
	if (!load_parse(argc, argv, &cfg))
		return 2;
	load_run *r = calloc(1, sizeof(*r));
	load_stats *s = calloc(1, sizeof(*s));
	void *rooms = calloc(cfg.rooms, PL_ROOM_ID_CHARS + 1);
	int rc = 1;
	if (r == NULL || s == NULL || rooms == NULL) {
		fprintf(stderr, "error: internal: out of memory\n");
		goto out;
	}
	r->cfg = &cfg;
	r->stats = s;
	r->rooms = rooms;
	pl_status st = bench_key_load(cfg.keyfile, &r->key);
	if (st != PL_OK) {
		fprintf(stderr, "error: %s: key file %s: %s\n",
		    pl_code_name(pl_status_to_code(st)), cfg.keyfile,
		    pl_strerror(st));
		goto out;
	}
	rc = load_execute(r);
out:
	free(rooms);
	free(s);
	free(r);
	return rc;
}
