/*
 * parleyctl.c - the operator and developer CLI: key and token tools that
 * work offline, and one subcommand per client operation over libparley.
 * Every command exits 0 on success; failures print
 * "error: <code>: <message>" on stderr and exit 1 (2 for usage errors).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "client/parley.h"
#include "proto/token.h"

#define URL_DEFAULT "tcp://127.0.0.1:7100"
#define CONNECT_TIMEOUT_MS 5000
#define REQUEST_TIMEOUT_MS 10000
#define TTL_S_DEFAULT 3600
/* Options per invocation: a handful are ever used; --meta may repeat up
 * to the protocol's bound. */
#define ARGS_MAX (PL_META_ENTRIES_MAX + 16)
#define POS_MAX 4
/* room list follows pages; a tenant listing beyond this is an export. */
#define LIST_PAGES_MAX 1000
#define LIST_PAGE_ROOMS 100

enum { EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef struct kv {
	const char *key;   /* option name without "--" */
	const char *value; /* NULL for flags */
} kv;

typedef struct args {
	const char *pos[POS_MAX];
	int npos;
	kv opts[ARGS_MAX];
	int nopts;
} args;

/* Options that take no value. */
static bool is_flag(const char *name)
{
	return strcmp(name, "json") == 0 || strcmp(name, "insecure") == 0;
}

static int usage(void)
{
	fputs("usage: parleyctl COMMAND [options]\n"
	      "  keygen --tenant T --key-id K --out FILE\n"
	      "  token --key FILE --user U --role R [--ttl S] [--room ID]\n"
	      "  room create [--key IDEMPOTENCY] [--meta k=v]...\n"
	      "  room join|leave|info ROOM [--json]\n"
	      "  room close ROOM [--reason R]\n"
	      "  room list\n"
	      "  publish ROOM TEXT [--id CLIENT_MSG_ID] "
	      "[--kind text|event|system]\n"
	      "  subscribe ROOM [--since N] [--count N] [--timeout-ms MS]\n"
	      "  history ROOM [--before N|--after N] [--limit N]\n"
	      "  typing ROOM | read ROOM SEQ | presence ROOM\n"
	      "  status [--json] | ping\n"
	      "  group status [--json]   (every replica: role, term, "
	      "commit, applied, lag)\n"
	      "  report [--days N] [--json]   (tenant statistics per day)\n"
	      "gateway commands take --url URL (env PARLEY_URL, "
	      "default " URL_DEFAULT ") and --token TOKEN (env PARLEY_TOKEN);\n"
	      "tls+tcp:// and wss:// URLs verify the gateway with --ca FILE "
	      "(env PARLEY_CA) [--server-name NAME] or skip it with "
	      "--insecure\n",
	    stderr);
	return EXIT_USAGE;
}

static int fail(const char *code, const char *msg)
{
	fprintf(stderr, "error: %s: %s\n", code, msg);
	return EXIT_FAIL;
}

/* Reports a failed call on c (may be NULL) with status st. */
static int fail_st(parley_conn *c, pl_status st)
{
	int code = pl_status_to_code(st);
	const char *msg = "";
	if (c != NULL)
		msg = parley_last_error(c, &code);
	if (msg[0] == '\0')
		msg = pl_strerror(st);
	if (code == 0)
		code = pl_status_to_code(st);
	return fail(pl_code_name(code), msg);
}

static bool args_parse(int argc, char **argv, args *a)
{
	*a = (args){0};
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];
		if (strncmp(s, "--", 2) != 0 || s[2] == '\0') {
			if (a->npos == POS_MAX)
				return false;
			a->pos[a->npos++] = s;
			continue;
		}
		if (a->nopts == ARGS_MAX)
			return false;
		kv *o = &a->opts[a->nopts++];
		o->key = s + 2;
		if (!is_flag(o->key)) {
			if (i + 1 >= argc)
				return false;
			o->value = argv[++i];
		}
	}
	return true;
}

/* Every option given must be in allowed ("url,token,json"). */
static bool args_check(
    const args *a, const char *allowed, int npos_min, int npos_max)
{
	if (a->npos < npos_min || a->npos > npos_max)
		return false;
	for (int i = 0; i < a->nopts; i++) {
		const char *p = strstr(allowed, a->opts[i].key);
		size_t n = strlen(a->opts[i].key);
		bool ok = false;
		while (p != NULL && !ok) {
			ok = (p == allowed || p[-1] == ',') &&
			     (p[n] == ',' || p[n] == '\0');
			p = strstr(p + 1, a->opts[i].key);
		}
		if (!ok)
			return false;
	}
	return true;
}

static const char *opt(const args *a, const char *key)
{
	for (int i = a->nopts - 1; i >= 0; i--) {
		if (strcmp(a->opts[i].key, key) == 0)
			return a->opts[i].value ? a->opts[i].value : "";
	}
	return NULL;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	if (s == NULL || *s == '\0' || *s == '-')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
}

/* An optional numeric option: absent leaves *out, malformed is false. */
static bool opt_u64(const args *a, const char *key, uint64_t *out)
{
	const char *v = opt(a, key);
	return v == NULL || parse_u64(v, out);
}

/* ------------------------------------------------------------------ */
/* Formatting. */

static void fmt_ts(int64_t us, char *out, size_t cap)
{
	if (us <= 0) {
		snprintf(out, cap, "-");
		return;
	}
	time_t s = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&s, &tm);
	char d[32];
	strftime(d, sizeof(d), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, cap, "%s.%03dZ", d, (int)(us % 1000000 / 1000));
}

static void fmt_dur(int64_t us, char *out, size_t cap)
{
	if (us <= 0)
		snprintf(out, cap, "-");
	else if (us >= 1000000)
		snprintf(out, cap, "%.3fs", (double)us / 1e6);
	else
		snprintf(out, cap, "%.1fms", (double)us / 1e3);
}

static void json_str(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_cstr(FILE *f, const char *s)
{
	json_str(f, s, strlen(s));
}

/* Bodies are chat text; anything else is shown escaped. */
static void print_body(const ProtobufCBinaryData *b)
{
	for (size_t i = 0; i < b->len; i++) {
		unsigned char ch = b->data[i];
		if (ch >= 0x20 && ch != 0x7f)
			putchar(ch);
		else if (ch == '\n')
			fputs("\\n", stdout);
		else
			printf("\\x%02x", ch);
	}
}

static void print_message(const Parley__Message *m)
{
	char ts[40];
	fmt_ts(m->ts_us, ts, sizeof(ts));
	printf("%" PRIu64 " %s %s(%s): ", m->seq, ts, m->sender,
	    pl_role_name((int)m->role));
	print_body(&m->body);
	putchar('\n');
}

/* ------------------------------------------------------------------ */
/* Offline commands. */

static int cmd_keygen(const args *a)
{
	if (!args_check(a, "tenant,key-id,out", 0, 0))
		return usage();
	const char *tenant = opt(a, "tenant"), *kid = opt(a, "key-id");
	const char *out = opt(a, "out");
	if (tenant == NULL || kid == NULL || out == NULL)
		return usage();
	char pk[128];
	pl_status st = pl_keyfile_generate(out, tenant, kid, pk, sizeof(pk));
	if (st != PL_OK)
		return fail_st(NULL, st);
	printf("key.%s = %s\n", kid, pk);
	return 0;
}

static int mint(const char *keyfile, pl_claims *c, int64_t ttl)
{
	uint8_t sk[64];
	pl_status st = pl_keyfile_load(keyfile, c->tenant, sizeof(c->tenant),
	    c->key_id, sizeof(c->key_id), sk, NULL);
	if (st != PL_OK)
		return fail_st(NULL, st);
	c->exp_s = pl_now_us() / 1000000 + ttl;
	char tok[PL_TOKEN_CHARS_MAX + 1];
	st = pl_token_mint(c, sk, tok, sizeof(tok));
	sodium_memzero(sk, sizeof(sk));
	if (st != PL_OK)
		return fail_st(NULL, st);
	printf("%s\n", tok);
	return 0;
}

static int cmd_token(const args *a)
{
	if (!args_check(a, "key,user,role,ttl,room", 0, 0))
		return usage();
	const char *key = opt(a, "key"), *user = opt(a, "user");
	const char *role = opt(a, "role"), *room = opt(a, "room");
	uint64_t ttl = TTL_S_DEFAULT;
	if (key == NULL || user == NULL || role == NULL ||
	    !opt_u64(a, "ttl", &ttl) || ttl == 0 || ttl > INT32_MAX)
		return usage();
	pl_claims c = {0};
	c.role = pl_role_parse(role);
	if (c.role <= 0)
		return fail("bad_request", "unknown role");
	if (strlen(user) > PL_USER_CHARS_MAX)
		return fail("bad_request", "user id too long");
	snprintf(c.user, sizeof(c.user), "%s", user);
	uint64_t rid;
	if (room != NULL && pl_room_parse(room, &rid) != PL_OK)
		return fail("bad_request", "room id is not 16 hex digits");
	snprintf(c.room, sizeof(c.room), "%s", room ? room : "");
	return mint(key, &c, (int64_t)ttl);
}

/* ------------------------------------------------------------------ */
/* Gateway commands. */

static int ctl_open(const args *a, parley_conn **out, parley_welcome *w)
{
	const char *url = opt(a, "url"), *tok = opt(a, "token");
	if (url == NULL)
		url = getenv("PARLEY_URL");
	if (url == NULL)
		url = URL_DEFAULT;
	if (tok == NULL)
		tok = getenv("PARLEY_TOKEN");
	if (tok == NULL || *tok == '\0')
		return fail(
		    "unauthorized", "no token (--token or PARLEY_TOKEN)");
	/* TLS (tls+tcp://, wss://): verify against --ca or $PARLEY_CA. */
	parley_opts o = {0};
	o.tls_ca_file = opt(a, "ca") ? opt(a, "ca") : getenv("PARLEY_CA");
	o.tls_insecure = opt(a, "insecure") != NULL;
	o.tls_server_name = opt(a, "server-name")
	                        ? opt(a, "server-name")
	                        : getenv("PARLEY_TLS_SERVER_NAME");
	parley_conn *c;
	pl_status st = parley_connect(url, CONNECT_TIMEOUT_MS, &o, &c);
	if (st != PL_OK) {
		fprintf(stderr, "error: %s: cannot connect to %s: %s\n",
		    pl_code_name(pl_status_to_code(st)), url, pl_strerror(st));
		return EXIT_FAIL;
	}
	st = parley_hello(c, tok, REQUEST_TIMEOUT_MS, w);
	if (st != PL_OK) {
		int rc = fail_st(c, st);
		parley_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* Options every gateway command accepts, prefixed to its own. */
#define GW_OPTS "url,token,ca,insecure,server-name,"

static int room_create(parley_conn *c, const args *a)
{
	parley_meta meta[PL_META_ENTRIES_MAX];
	char kbuf[PL_META_ENTRIES_MAX][PL_META_CHARS_MAX + 1];
	size_t n = 0;
	for (int i = 0; i < a->nopts; i++) {
		if (strcmp(a->opts[i].key, "meta") != 0)
			continue;
		const char *v = a->opts[i].value, *eq = strchr(v, '=');
		if (n == PL_META_ENTRIES_MAX || eq == NULL ||
		    (size_t)(eq - v) > PL_META_CHARS_MAX)
			return fail("bad_request", "--meta wants k=v (at most "
			                           "16, keys <= 256 bytes)");
		snprintf(kbuf[n], sizeof(kbuf[n]), "%.*s", (int)(eq - v), v);
		meta[n] = (parley_meta){.key = kbuf[n], .value = eq + 1};
		n++;
	}
	char room[PL_ROOM_ID_CHARS + 1];
	bool existed = false;
	pl_status st = parley_create_room(
	    c, opt(a, "key"), meta, n, REQUEST_TIMEOUT_MS, room, &existed);
	if (st != PL_OK)
		return fail_st(c, st);
	printf("%s\n", room);
	if (existed)
		fprintf(stderr, "note: room existed (same idempotency key)\n");
	return 0;
}

static int room_list(parley_conn *c)
{
	char after[PL_ROOM_ID_CHARS + 1] = "";
	for (int page = 0; page < LIST_PAGES_MAX; page++) {
		Parley__ServerFrame *r = NULL;
		pl_status st = parley_list_rooms(
		    c, LIST_PAGE_ROOMS, after, REQUEST_TIMEOUT_MS, &r);
		if (st != PL_OK)
			return fail_st(c, st);
		const Parley__RoomList *l = r->room_list;
		for (size_t i = 0; i < l->n_rooms; i++)
			printf("%s\n", l->rooms[i]);
		bool more = l->more && l->n_rooms > 0;
		if (more)
			snprintf(after, sizeof(after), "%s",
			    l->rooms[l->n_rooms - 1]);
		parley_frame_free(r);
		if (!more)
			return 0;
	}
	fprintf(
	    stderr, "note: listing stopped after %d pages\n", LIST_PAGES_MAX);
	return 0;
}

static void print_members(Parley__Member **m, size_t n)
{
	printf("  %-24s %-9s %-7s %-7s %s\n", "USER", "ROLE", "JOINED",
	    "ONLINE", "READ");
	for (size_t i = 0; i < n; i++)
		printf("  %-24s %-9s %-7s %-7s %" PRIu64 "\n", m[i]->user,
		    pl_role_name((int)m[i]->role), m[i]->joined ? "yes" : "no",
		    m[i]->online ? "yes" : "no", m[i]->read_seq);
}

static void print_line_ts(const char *label, int64_t us)
{
	char b[40];
	fmt_ts(us, b, sizeof(b));
	printf("  %-18s %s\n", label, b);
}

static void print_line_dur(const char *label, int64_t us)
{
	char b[40];
	fmt_dur(us, b, sizeof(b));
	printf("  %-18s %s\n", label, b);
}

static void print_stats(const Parley__RoomStats *s)
{
	printf("stats\n");
	print_line_ts("created", s->created_us);
	print_line_ts("first customer msg", s->first_customer_msg_us);
	print_line_ts("first agent join", s->first_agent_join_us);
	print_line_ts("first agent msg", s->first_agent_msg_us);
	print_line_ts("closed", s->closed_us);
	print_line_dur("wait", s->wait_us);
	print_line_dur("first response", s->first_response_us);
	print_line_dur("handle", s->handle_us);
	print_line_ts("awaiting answer", s->pending_customer_us);
	printf("  %-18s %u:", "turn responses", s->turns);
	for (size_t i = 0; i < s->n_turn_response_us; i++) {
		char b[40];
		fmt_dur(s->turn_response_us[i], b, sizeof(b));
		printf(" %s", b);
	}
	printf("\n  %-18s customer=%" PRIu64 " agent=%" PRIu64 " bot=%" PRIu64
	       "\n",
	    "messages", s->customer_msgs, s->agent_msgs, s->bot_msgs);
}

static void print_room_info(const Parley__RoomInfo *ri)
{
	printf("room       %s\ntenant     %s\n", ri->room, ri->tenant);
	if (ri->closed)
		printf("state      closed (%s)\n", ri->close_reason);
	else
		printf("state      open\n");
	printf("last_seq   %" PRIu64 "\n", ri->last_seq);
	for (size_t i = 0; i < ri->n_meta; i++)
		printf(
		    "meta       %s=%s\n", ri->meta[i]->key, ri->meta[i]->value);
	printf("members    %zu\n", ri->n_members);
	print_members(ri->members, ri->n_members);
	if (ri->stats != NULL)
		print_stats(ri->stats);
}

static void json_members(Parley__Member **m, size_t n)
{
	printf("\"members\":[");
	for (size_t i = 0; i < n; i++) {
		printf("%s{\"user\":", i ? "," : "");
		json_cstr(stdout, m[i]->user);
		printf(",\"role\":\"%s\",\"joined\":%s,\"online\":%s,"
		       "\"read_seq\":%" PRIu64 "}",
		    pl_role_name((int)m[i]->role),
		    m[i]->joined ? "true" : "false",
		    m[i]->online ? "true" : "false", m[i]->read_seq);
	}
	printf("]");
}

static void json_stats(const Parley__RoomStats *s)
{
	printf(",\"stats\":{\"created_us\":%" PRId64
	       ",\"first_customer_msg_us\":%" PRId64
	       ",\"first_agent_join_us\":%" PRId64
	       ",\"first_agent_msg_us\":%" PRId64 ",\"wait_us\":%" PRId64
	       ",\"first_response_us\":%" PRId64 ",\"turns\":%u",
	    s->created_us, s->first_customer_msg_us, s->first_agent_join_us,
	    s->first_agent_msg_us, s->wait_us, s->first_response_us, s->turns);
	printf(",\"turn_response_us\":[");
	for (size_t i = 0; i < s->n_turn_response_us; i++)
		printf("%s%" PRId64, i ? "," : "", s->turn_response_us[i]);
	printf("],\"customer_msgs\":%" PRIu64 ",\"agent_msgs\":%" PRIu64
	       ",\"bot_msgs\":%" PRIu64 ",\"closed_us\":%" PRId64
	       ",\"handle_us\":%" PRId64 ",\"pending_customer_us\":%" PRId64
	       "}",
	    s->customer_msgs, s->agent_msgs, s->bot_msgs, s->closed_us,
	    s->handle_us, s->pending_customer_us);
}

static void json_room_info(const Parley__RoomInfo *ri)
{
	printf("{\"room\":");
	json_cstr(stdout, ri->room);
	printf(",\"tenant\":");
	json_cstr(stdout, ri->tenant);
	printf(
	    ",\"closed\":%s,\"close_reason\":", ri->closed ? "true" : "false");
	json_cstr(stdout, ri->close_reason);
	printf(",\"last_seq\":%" PRIu64 ",\"meta\":{", ri->last_seq);
	for (size_t i = 0; i < ri->n_meta; i++) {
		printf("%s", i ? "," : "");
		json_cstr(stdout, ri->meta[i]->key);
		putchar(':');
		json_cstr(stdout, ri->meta[i]->value);
	}
	printf("},");
	json_members(ri->members, ri->n_members);
	if (ri->stats != NULL)
		json_stats(ri->stats);
	printf("}\n");
}

static int room_info(parley_conn *c, const args *a)
{
	Parley__ServerFrame *r = NULL;
	pl_status st = parley_room_info(c, a->pos[1], REQUEST_TIMEOUT_MS, &r);
	if (st != PL_OK)
		return fail_st(c, st);
	if (opt(a, "json") != NULL)
		json_room_info(r->room_info);
	else
		print_room_info(r->room_info);
	parley_frame_free(r);
	return 0;
}

static int room_run(parley_conn *c, const args *a)
{
	const char *sub = a->pos[0], *room = a->pos[1];
	pl_status st;
	if (strcmp(sub, "create") == 0)
		return room_create(c, a);
	if (strcmp(sub, "list") == 0)
		return room_list(c);
	if (strcmp(sub, "info") == 0)
		return room_info(c, a);
	if (strcmp(sub, "join") == 0)
		st = parley_join(c, room, REQUEST_TIMEOUT_MS);
	else if (strcmp(sub, "leave") == 0)
		st = parley_leave(c, room, REQUEST_TIMEOUT_MS);
	else
		st = parley_close_room(
		    c, room, opt(a, "reason"), REQUEST_TIMEOUT_MS);
	return st == PL_OK ? 0 : fail_st(c, st);
}

static int cmd_room(const args *a)
{
	const char *sub = a->npos > 0 ? a->pos[0] : "";
	bool ok;
	if (strcmp(sub, "create") == 0)
		ok = args_check(a, GW_OPTS "key,meta", 1, 1);
	else if (strcmp(sub, "list") == 0)
		ok = args_check(a, GW_OPTS, 1, 1);
	else if (strcmp(sub, "info") == 0)
		ok = args_check(a, GW_OPTS "json", 2, 2);
	else if (strcmp(sub, "close") == 0)
		ok = args_check(a, GW_OPTS "reason", 2, 2);
	else if (strcmp(sub, "join") == 0 || strcmp(sub, "leave") == 0)
		ok = args_check(a, GW_OPTS, 2, 2);
	else
		ok = false;
	if (!ok)
		return usage();
	parley_conn *c = NULL;
	int rc = ctl_open(a, &c, NULL);
	if (rc != 0)
		return rc;
	rc = room_run(c, a);
	parley_close(c);
	return rc;
}

static int kind_parse(const char *s)
{
	if (s == NULL || strcmp(s, "text") == 0)
		return PARLEY__KIND__TEXT;
	if (strcmp(s, "event") == 0)
		return PARLEY__KIND__EVENT;
	if (strcmp(s, "system") == 0)
		return PARLEY__KIND__SYSTEM;
	return -1;
}

static int publish_run(parley_conn *c, const args *a)
{
	int kind = kind_parse(opt(a, "kind"));
	if (kind < 0)
		return fail("bad_request", "--kind is text, event or system");
	const char *text = a->pos[1];
	parley_ack ack;
	pl_status st = parley_publish(c, a->pos[0], opt(a, "id"), kind, text,
	    strlen(text), REQUEST_TIMEOUT_MS, &ack);
	if (st != PL_OK)
		return fail_st(c, st);
	printf("%" PRIu64 "\n", ack.seq);
	if (ack.duplicate)
		fprintf(stderr, "note: duplicate of an earlier publish\n");
	return 0;
}

static void print_event(const Parley__Event *e)
{
	switch (e->ev_case) {
	case PARLEY__EVENT__EV_MESSAGE:
		print_message(e->message);
		break;
	case PARLEY__EVENT__EV_TYPING:
		printf("typing %s(%s) %s\n", e->typing->user,
		    pl_role_name((int)e->typing->role),
		    e->typing->active ? "active" : "stopped");
		break;
	case PARLEY__EVENT__EV_READ:
		printf("read %s %" PRIu64 "\n", e->read->user, e->read->seq);
		break;
	case PARLEY__EVENT__EV_PRESENCE: {
		const Parley__PresenceEvent *p = e->presence;
		const char *what = p->left     ? "left"
		                   : p->joined ? "joined"
		                   : p->online ? "online"
		                               : "offline";
		printf("presence %s(%s) %s\n", p->user,
		    pl_role_name((int)p->role), what);
		break;
	}
	case PARLEY__EVENT__EV_CLOSED:
		printf("closed %s\n", e->closed->reason);
		break;
	default:
		break;
	}
	fflush(stdout);
}

/* Prints one pushed frame; returns -1 to go on, else an exit code. A
 * message event counts towards *left (when counting). */
static int tail_one(
    parley_conn *c, const Parley__ServerFrame *f, uint64_t *left)
{
	if (f->body_case == PARLEY__SERVER_FRAME__BODY_GOODBYE) {
		int code = (int)f->goodbye->code;
		return fail(
		    pl_code_name(code ? code : PARLEY__ERROR_CODE__UNAVAILABLE),
		    f->goodbye->reason);
	}
	if (f->body_case != PARLEY__SERVER_FRAME__BODY_EVENT)
		return -1;
	print_event(f->event);
	if (f->event->ev_case == PARLEY__EVENT__EV_MESSAGE && *left > 0 &&
	    --*left == 0)
		return 0;
	return -1;
}

/* How long to wait for the next event (ms, -1 forever): until the end of
 * the tail or the next keepalive ping, whichever comes first. */
static int tail_wait(int64_t end, int64_t next_ping)
{
	int64_t until = end;
	if (next_ping >= 0 && (until < 0 || next_ping < until))
		until = next_ping;
	if (until < 0)
		return -1;
	int64_t rem = (until - pl_mono_us()) / 1000;
	if (rem < 0)
		return 0;
	return rem > INT32_MAX ? INT32_MAX : (int)rem;
}

/* Tails pushed frames until count messages (0: no limit) or timeout_ms
 * (-1: none). A tail only listens, so it pings at half the server's idle
 * limit to keep the connection. */
static int tail(
    parley_conn *c, uint64_t count, int64_t timeout_ms, uint32_t idle_ms)
{
	int64_t end = timeout_ms >= 0 ? pl_mono_us() + timeout_ms * 1000 : -1;
	int64_t ping_us = (int64_t)idle_ms * 500;
	int64_t next_ping = idle_ms ? pl_mono_us() + ping_us : -1;
	uint64_t left = count;
	for (;;) {
		if (end >= 0 && pl_mono_us() >= end)
			return 0;
		if (next_ping >= 0 && pl_mono_us() >= next_ping) {
			pl_status ps =
			    parley_ping(c, REQUEST_TIMEOUT_MS, NULL, NULL);
			if (ps != PL_OK)
				return fail_st(c, ps);
			next_ping = pl_mono_us() + ping_us;
		}
		Parley__ServerFrame *f = NULL;
		pl_status st =
		    parley_next_event(c, tail_wait(end, next_ping), &f);
		if (st == PL_E_TIMEOUT)
			continue;
		if (st == PL_E_BACKPRESSURE) {
			fprintf(stderr, "warning: events dropped (slow "
			                "reader); re-read history\n");
			continue;
		}
		if (st != PL_OK)
			return fail_st(c, st);
		int rc = tail_one(c, f, &left);
		parley_frame_free(f);
		if (rc >= 0)
			return rc;
	}
}

static int subscribe_run(parley_conn *c, const args *a, uint32_t idle_ms)
{
	uint64_t since = 0, count = 0, tmo = 0;
	const char *t = opt(a, "timeout-ms");
	if (!opt_u64(a, "since", &since) || !opt_u64(a, "count", &count) ||
	    !opt_u64(a, "timeout-ms", &tmo) || tmo > INT32_MAX)
		return fail("bad_request", "--since/--count/--timeout-ms "
		                           "want numbers");
	uint64_t last;
	pl_status st =
	    parley_subscribe(c, a->pos[0], since, REQUEST_TIMEOUT_MS, &last);
	if (st != PL_OK)
		return fail_st(c, st);
	fprintf(stderr, "subscribed %s since %" PRIu64 " (head %" PRIu64 ")\n",
	    a->pos[0], since, last);
	return tail(c, count, t ? (int64_t)tmo : -1, idle_ms);
}

static int history_run(parley_conn *c, const args *a)
{
	parley_history_query q = {0};
	uint64_t limit = 0;
	if (!opt_u64(a, "before", &q.before_seq) ||
	    !opt_u64(a, "after", &q.after_seq) ||
	    !opt_u64(a, "limit", &limit) || limit > PL_HISTORY_LIMIT_MAX)
		return fail("bad_request", "--before/--after/--limit want "
		                           "numbers (limit <= 500)");
	if (q.before_seq != 0 && q.after_seq != 0)
		return fail("bad_request", "--before and --after exclude "
		                           "each other");
	q.limit = (uint32_t)limit;
	q.oldest_first = opt(a, "after") != NULL;
	Parley__ServerFrame *r = NULL;
	pl_status st = parley_history(c, a->pos[0], &q, REQUEST_TIMEOUT_MS, &r);
	if (st != PL_OK)
		return fail_st(c, st);
	for (size_t i = 0; i < r->history->n_messages; i++)
		print_message(r->history->messages[i]);
	if (r->history->more)
		fprintf(stderr, "note: more messages\n");
	parley_frame_free(r);
	return 0;
}

static int presence_run(parley_conn *c, const args *a)
{
	Parley__ServerFrame *r = NULL;
	pl_status st = parley_presence(c, a->pos[0], REQUEST_TIMEOUT_MS, &r);
	if (st != PL_OK)
		return fail_st(c, st);
	print_members(r->presence->members, r->presence->n_members);
	parley_frame_free(r);
	return 0;
}

static void json_status(const Parley__StatusReply *s)
{
	printf("{\"node\":");
	json_cstr(stdout, s->node);
	printf(",\"connections\":%u,\"subscriptions\":%u,\"uptime_us\":%" PRId64
	       ",\"groups\":[",
	    s->connections, s->subscriptions, s->uptime_us);
	for (size_t i = 0; i < s->n_groups; i++) {
		const Parley__GroupStatus *g = s->groups[i];
		printf("%s{\"group\":%u,\"address\":", i ? "," : "", g->group);
		json_cstr(stdout, g->address);
		printf(",\"reachable\":%s,\"rooms\":%" PRIu64
		       ",\"last_index\":%" PRIu64 ",\"map_used_bytes\":%" PRIu64
		       ",\"map_size_bytes\":%" PRIu64 ",\"durability\":",
		    g->reachable ? "true" : "false", g->rooms, g->last_index,
		    g->map_used_bytes, g->map_size_bytes);
		json_cstr(stdout, g->durability);
		printf(",\"role\":");
		json_cstr(stdout, g->role);
		printf(",\"node_id\":%" PRIu64 ",\"term\":%" PRIu64
		       ",\"commit\":%" PRIu64 ",\"applied\":%" PRIu64
		       ",\"leader_id\":%" PRIu64 ",\"lag\":%" PRIu64
		       ",\"voters\":%u,\"repairing\":%s}",
		    g->node_id, g->term, g->commit, g->applied, g->leader_id,
		    g->lag, g->voters, g->repairing ? "true" : "false");
	}
	printf("]}\n");
}

static void print_status(const Parley__StatusReply *s)
{
	char up[40];
	fmt_dur(s->uptime_us, up, sizeof(up));
	printf("node          %s\nuptime        %s\nconnections   %u\n"
	       "subscriptions %u\n",
	    s->node, up, s->connections, s->subscriptions);
	printf("%-6s %-24s %-9s %-8s %-10s %-12s %-8s %s\n", "GROUP", "ADDRESS",
	    "REACHABLE", "ROOMS", "LAST_INDEX", "MAP_USED", "DURABLE", "ROLE");
	for (size_t i = 0; i < s->n_groups; i++) {
		const Parley__GroupStatus *g = s->groups[i];
		printf("%-6u %-24s %-9s %-8" PRIu64 " %-10" PRIu64
		       " %-12" PRIu64 " %-8s %s\n",
		    g->group, g->address, g->reachable ? "yes" : "no", g->rooms,
		    g->last_index, g->map_used_bytes, g->durability, g->role);
	}
}

static int status_run(parley_conn *c, const args *a)
{
	Parley__ServerFrame *r = NULL;
	pl_status st = parley_status(c, REQUEST_TIMEOUT_MS, &r);
	if (st != PL_OK)
		return fail_st(c, st);
	if (opt(a, "json") != NULL)
		json_status(r->status);
	else
		print_status(r->status);
	parley_frame_free(r);
	return 0;
}

static bool is_leader(const Parley__GroupStatus *g)
{
	return g->reachable && g->role != NULL &&
	       strcmp(g->role, "leader") == 0;
}

/* One line per replica of every group; '*' marks each group's leader,
 * '!' a replica refusing to vote until its log is repaired. */
static void print_group_status(const Parley__StatusReply *s)
{
	printf("  %-5s %-28s %-5s %-14s %-7s %-10s %-10s %-8s %s\n", "GROUP",
	    "REPLICA", "NODE", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG",
	    "REACHABLE");
	for (size_t i = 0; i < s->n_groups; i++) {
		const Parley__GroupStatus *g = s->groups[i];
		if (!g->reachable) {
			printf("  %-5u %-28s %-5s %-14s %-7s %-10s %-10s %-8s "
			       "no\n",
			    g->group, g->address, "-", "-", "-", "-", "-", "-");
			continue;
		}
		char role[32];
		snprintf(role, sizeof(role), "%s%s",
		    g->role != NULL && g->role[0] ? g->role : "?",
		    g->repairing ? " !" : "");
		printf("%c %-5u %-28s %-5" PRIu64 " %-14s %-7" PRIu64
		       " %-10" PRIu64 " %-10" PRIu64 " %-8" PRIu64 " yes\n",
		    is_leader(g) ? '*' : ' ', g->group, g->address, g->node_id,
		    role, g->term, g->commit, g->applied, g->lag);
	}
	printf("(* leader, ! repairing its log)\n");
}

static void json_group_status(const Parley__StatusReply *s)
{
	printf("{\"replicas\":[");
	for (size_t i = 0; i < s->n_groups; i++) {
		const Parley__GroupStatus *g = s->groups[i];
		printf("%s{\"group\":%u,\"address\":", i ? "," : "", g->group);
		json_cstr(stdout, g->address);
		printf(",\"reachable\":%s,\"leader\":%s,\"role\":",
		    g->reachable ? "true" : "false",
		    is_leader(g) ? "true" : "false");
		json_cstr(stdout, g->role);
		printf(",\"node_id\":%" PRIu64 ",\"term\":%" PRIu64
		       ",\"commit\":%" PRIu64 ",\"applied\":%" PRIu64
		       ",\"lag\":%" PRIu64 ",\"leader_id\":%" PRIu64
		       ",\"voters\":%u,\"repairing\":%s}",
		    g->node_id, g->term, g->commit, g->applied, g->lag,
		    g->leader_id, g->voters, g->repairing ? "true" : "false");
	}
	printf("]}\n");
}

/* parleyctl group status: the gateway asks every replica itself. */
static int cmd_group(const args *a)
{
	const char *sub = a->npos > 0 ? a->pos[0] : "";
	if (strcmp(sub, "status") != 0 || !args_check(a, GW_OPTS "json", 1, 1))
		return usage();
	parley_conn *c = NULL;
	int rc = ctl_open(a, &c, NULL);
	if (rc != 0)
		return rc;
	Parley__ServerFrame *r = NULL;
	pl_status st = parley_status(c, REQUEST_TIMEOUT_MS, &r);
	if (st != PL_OK) {
		rc = fail_st(c, st);
	} else if (opt(a, "json") != NULL) {
		json_group_status(r->status);
	} else {
		print_group_status(r->status);
	}
	parley_frame_free(r);
	parley_close(c);
	return rc;
}

static double avg_ms(int64_t sum_us, uint64_t n)
{
	return n ? (double)sum_us / (double)n / 1e3 : 0.0;
}

static void print_report(const Parley__Report *r, bool json)
{
	if (!json)
		printf("%-10s %-10s %7s %7s %9s %10s %10s %10s\n", "DATE",
		    "TENANT", "OPENED", "CLOSED", "MESSAGES", "WAIT_MS",
		    "FIRST_MS", "HANDLE_MS");
	for (size_t i = 0; i < r->n_days; i++) {
		const Parley__TenantDay *d = r->days[i];
		double w = avg_ms(d->wait_us_sum, d->wait_n);
		double f =
		    avg_ms(d->first_response_us_sum, d->first_response_n);
		double h = avg_ms(d->handle_us_sum, d->handle_n);
		if (json)
			printf("{\"date\":\"%s\",\"tenant\":\"%s\","
			       "\"rooms_created\":%" PRIu64
			       ",\"rooms_closed\":%" PRIu64
			       ",\"messages\":%" PRIu64
			       ",\"wait_avg_ms\":%.1f,\"wait_n\":%" PRIu64
			       ",\"first_response_avg_ms\":%.1f"
			       ",\"first_response_n\":%" PRIu64
			       ",\"handle_avg_ms\":%.1f,\"handle_n\":%" PRIu64
			       "}\n",
			    d->date, d->tenant, d->rooms_created,
			    d->rooms_closed, d->messages, w, d->wait_n, f,
			    d->first_response_n, h, d->handle_n);
		else
			printf("%-10s %-10s %7" PRIu64 " %7" PRIu64 " %9" PRIu64
			       " %10.1f %10.1f %10.1f\n",
			    d->date, d->tenant, d->rooms_created,
			    d->rooms_closed, d->messages, w, f, h);
	}
}

static int report_run(parley_conn *c, const args *a)
{
	uint64_t days = 0;
	if (!opt_u64(a, "days", &days) || days > PL_REPORT_DAYS_MAX)
		return fail("bad_request", "--days wants a number <= 366");
	Parley__ServerFrame *r = NULL;
	pl_status st = parley_report(c, (uint32_t)days, REQUEST_TIMEOUT_MS, &r);
	if (st != PL_OK)
		return fail_st(c, st);
	print_report(r->report, opt(a, "json") != NULL);
	parley_frame_free(r);
	return 0;
}

static int ping_run(parley_conn *c)
{
	int64_t rtt, srv;
	pl_status st = parley_ping(c, REQUEST_TIMEOUT_MS, &rtt, &srv);
	if (st != PL_OK)
		return fail_st(c, st);
	printf("pong rtt=%.3fms\n", (double)rtt / 1e3);
	return 0;
}

static int simple_run(const char *cmd, parley_conn *c, const args *a)
{
	pl_status st;
	if (strcmp(cmd, "typing") == 0) {
		st = parley_typing(c, a->pos[0], true, REQUEST_TIMEOUT_MS);
	} else {
		uint64_t seq;
		if (!parse_u64(a->pos[1], &seq))
			return fail("bad_request", "SEQ is a number");
		st = parley_read(c, a->pos[0], seq, REQUEST_TIMEOUT_MS);
	}
	return st == PL_OK ? 0 : fail_st(c, st);
}

typedef struct gw_cmd {
	const char *name;
	const char *opts;
	int npos_min, npos_max;
} gw_cmd;

static const gw_cmd GW_CMDS[] = {
    {"publish", GW_OPTS "id,kind", 2, 2},
    {"subscribe", GW_OPTS "since,count,timeout-ms", 1, 1},
    {"history", GW_OPTS "before,after,limit", 1, 1},
    {"typing", GW_OPTS, 1, 1},
    {"read", GW_OPTS, 2, 2},
    {"presence", GW_OPTS, 1, 1},
    {"status", GW_OPTS "json", 0, 0},
    {"report", GW_OPTS "days,json", 0, 0},
    {"ping", GW_OPTS, 0, 0},
};

static int gw_dispatch(
    const char *cmd, parley_conn *c, const args *a, uint32_t idle_ms)
{
	if (strcmp(cmd, "publish") == 0)
		return publish_run(c, a);
	if (strcmp(cmd, "subscribe") == 0)
		return subscribe_run(c, a, idle_ms);
	if (strcmp(cmd, "history") == 0)
		return history_run(c, a);
	if (strcmp(cmd, "presence") == 0)
		return presence_run(c, a);
	if (strcmp(cmd, "status") == 0)
		return status_run(c, a);
	if (strcmp(cmd, "ping") == 0)
		return ping_run(c);
	if (strcmp(cmd, "report") == 0)
		return report_run(c, a);
	return simple_run(cmd, c, a);
}

static int cmd_gateway(const char *cmd, const args *a)
{
	const gw_cmd *g = NULL;
	for (size_t i = 0; i < PL_ARRAY_LEN(GW_CMDS); i++) {
		if (strcmp(GW_CMDS[i].name, cmd) == 0)
			g = &GW_CMDS[i];
	}
	if (g == NULL || !args_check(a, g->opts, g->npos_min, g->npos_max))
		return usage();
	parley_conn *c = NULL;
	parley_welcome w;
	int rc = ctl_open(a, &c, &w);
	if (rc != 0)
		return rc;
	rc = gw_dispatch(cmd, c, a, w.idle_ms);
	parley_close(c);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (sodium_init() < 0)
		return fail("internal", "libsodium failed to initialise");
	pl_log_set_level(NULL, PL_LOG_WARN);
	const char *cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
	    strcmp(cmd, "help") == 0) {
		usage();
		return 0;
	}
	args a;
	if (!args_parse(argc - 2, argv + 2, &a))
		return usage();
	if (strcmp(cmd, "keygen") == 0)
		return cmd_keygen(&a);
	if (strcmp(cmd, "token") == 0)
		return cmd_token(&a);
	if (strcmp(cmd, "room") == 0)
		return cmd_room(&a);
	if (strcmp(cmd, "group") == 0)
		return cmd_group(&a);
	return cmd_gateway(cmd, &a);
}
