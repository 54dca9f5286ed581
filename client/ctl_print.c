/*
 * ctl_print.c - parleyctl's output: replies and events as text for people
 * and as JSON for scripts, on stdout. Times are UTC ISO 8601 with
 * milliseconds; message bodies are printed with control bytes escaped.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "client/ctl.h"

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

void ctl_print_message(const Parley__Message *m)
{
	char ts[40];
	fmt_ts(m->ts_us, ts, sizeof(ts));
	printf("%" PRIu64 " %s %s(%s): ", m->seq, ts, m->sender,
	    pl_role_name((int)m->role));
	print_body(&m->body);
	putchar('\n');
}

/* ------------------------------------------------------------------ */
/* Rooms. */

void ctl_print_members(Parley__Member **m, size_t n)
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

void ctl_print_room_info(const Parley__RoomInfo *ri)
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
	ctl_print_members(ri->members, ri->n_members);
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

void ctl_json_room_info(const Parley__RoomInfo *ri)
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

void ctl_print_event(const Parley__Event *e)
{
	switch (e->ev_case) {
	case PARLEY__EVENT__EV_MESSAGE:
		ctl_print_message(e->message);
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

/* ------------------------------------------------------------------ */
/* Status, groups, reports. */

void ctl_json_status(const Parley__StatusReply *s)
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

void ctl_print_status(const Parley__StatusReply *s)
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

static bool is_leader(const Parley__GroupStatus *g)
{
	return g->reachable && g->role != NULL &&
	       strcmp(g->role, "leader") == 0;
}

/* One line per replica of every group; '*' marks each group's leader,
 * '!' a replica refusing to vote until its log is repaired. */
void ctl_print_group_status(const Parley__StatusReply *s)
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

void ctl_json_group_status(const Parley__StatusReply *s)
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

static double avg_ms(int64_t sum_us, uint64_t n)
{
	return n ? (double)sum_us / (double)n / 1e3 : 0.0;
}

void ctl_print_report(const Parley__Report *r, bool json)
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
