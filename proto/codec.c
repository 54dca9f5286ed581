/*
 * codec.c - frames (4-byte big-endian length + protobuf) and the checked
 * decoders of every record that arrives from a socket or a disk. A length
 * is checked against its maximum before unpacking, unpacking allocates
 * from a pl_arena, and validation bounds every field the rest of Parley
 * reads; the rules are listed with pl_client_frame_validate in codec.h.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/codec.h"

/* Hello.client names the SDK and its version, e.g. "parley-js/1.2.0". */
#define CLIENT_NAME_CHARS_MAX 128

/* ---- arena ---- */

static void *arena_alloc(void *data, size_t size)
{
	pl_arena *a = data;
	uintptr_t start = (uintptr_t)a->base;
	size_t off = (size_t)(((start + a->used + 7) & ~(uintptr_t)7) - start);
	if (off > a->cap || size > a->cap - off) {
		a->exhausted = true;
		return NULL;
	}
	a->used = off + size;
	return a->base + off;
}

static void arena_free(void *data, void *ptr)
{
	/* Everything goes at once, on reset. */
}

pl_status pl_arena_init(pl_arena *a, void *buf, size_t cap)
{
	memset(a, 0, sizeof(*a));
	if (buf == NULL) {
		buf = malloc(cap);
		if (buf == NULL)
			return PL_E_NOMEM;
		a->owned = true;
	}
	a->alloc.alloc = arena_alloc;
	a->alloc.free = arena_free;
	a->alloc.allocator_data = a;
	a->base = buf;
	a->cap = cap;
	return PL_OK;
}

void pl_arena_fini(pl_arena *a)
{
	if (a == NULL)
		return;
	if (a->owned)
		free(a->base);
	memset(a, 0, sizeof(*a));
}

void pl_arena_reset(pl_arena *a)
{
	a->used = 0;
	a->exhausted = false;
}

/* ---- framing and encoding ---- */

pl_status pl_frame_peek(
    const uint8_t *buf, size_t len, size_t max, size_t *payload_len)
{
	if (len < PL_FRAME_HEADER_BYTES)
		return PL_E_AGAIN;
	size_t n = (size_t)buf[0] << 24 | (size_t)buf[1] << 16 |
	           (size_t)buf[2] << 8 | (size_t)buf[3];
	if (n == 0)
		return PL_E_PROTO;
	if (n > max)
		return PL_E_TOO_LARGE;
	if (len - PL_FRAME_HEADER_BYTES < n)
		return PL_E_AGAIN;
	*payload_len = n;
	return PL_OK;
}

void pl_frame_put_header(uint8_t *out, uint32_t payload_len)
{
	out[0] = (uint8_t)(payload_len >> 24);
	out[1] = (uint8_t)(payload_len >> 16);
	out[2] = (uint8_t)(payload_len >> 8);
	out[3] = (uint8_t)payload_len;
}

pl_status pl_pb_encode(
    const ProtobufCMessage *m, uint8_t *out, size_t cap, size_t *n)
{
	size_t size = protobuf_c_message_get_packed_size(m);
	if (size > cap)
		return PL_E_TOO_LARGE;
	size_t packed = protobuf_c_message_pack(m, out);
	PL_ASSERT(packed == size);
	*n = packed;
	return PL_OK;
}

/* An empty payload is refused on decode (pl_frame_peek), so it is refused
 * on encode too: it can only come from a frame with nothing set. */
pl_status pl_frame_encode(
    const ProtobufCMessage *m, uint8_t *out, size_t cap, size_t *n)
{
	size_t size = protobuf_c_message_get_packed_size(m);
	if (size == 0)
		return PL_E_PROTO;
	if (size > PL_FRAME_BYTES_CEIL || cap < PL_FRAME_HEADER_BYTES ||
	    size > cap - PL_FRAME_HEADER_BYTES)
		return PL_E_TOO_LARGE;
	size_t packed = protobuf_c_message_pack(m, out + PL_FRAME_HEADER_BYTES);
	PL_ASSERT(packed == size);
	pl_frame_put_header(out, (uint32_t)packed);
	*n = PL_FRAME_HEADER_BYTES + packed;
	return PL_OK;
}

/* ---- strings on the wire ---- */

#include <stdarg.h>
#include <stdio.h>

/* Why a check failed; st returned for the caller's convenience. */
static pl_status say(pl_why *why, pl_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static pl_status say(pl_why *why, pl_status st, const char *fmt, ...)
{
	if (why != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why->text, sizeof(why->text), fmt, ap);
		va_end(ap);
	}
	return st;
}

/* A varint at *p (below end); false when it runs past end or 10 bytes. */
static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;
	for (int i = 0; i < 10 && *p < end; i++) {
		uint8_t b = *(*p)++;
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if ((b & 0x80) == 0) {
			*v = x;
			return true;
		}
	}
	return false;
}

/* The fields a walk is in, outermost first: the schemas are not
 * recursive, and the deepest path is reqs.frame.publish.meta.key. */
#define WIRE_DEPTH_MAX 8
typedef struct wire_path {
	const ProtobufCFieldDescriptor *fd[WIRE_DEPTH_MAX];
	int depth;
} wire_path;

/* "reqs.frame.publish.meta.key contains a NUL byte": built only when a
 * string is refused, so a good frame costs no formatting. */
static pl_status wire_refuse(
    const wire_path *wp, pl_text_verdict v, pl_why *why)
{
	if (why != NULL) {
		size_t off = 0;
		why->text[0] = '\0';
		for (int i = 0; i < wp->depth && off < sizeof(why->text); i++) {
			int w =
			    snprintf(why->text + off, sizeof(why->text) - off,
			        "%s%s", i > 0 ? "." : "", wp->fd[i]->name);
			off += w > 0 ? (size_t)w : 0;
		}
		if (off < sizeof(why->text))
			snprintf(why->text + off, sizeof(why->text) - off,
			    " %s", pl_text_verdict_name(v));
	}
	return PL_E_BAD_REQUEST;
}

static pl_status wire_walk(const ProtobufCMessageDescriptor *d,
    const uint8_t *p, const uint8_t *end, wire_path *wp, pl_why *why);

/* One length-delimited field of d: a string is checked, a message is
 * walked, anything else (bytes, packed numbers, unknown) is skipped. */
static pl_status wire_len_field(const ProtobufCMessageDescriptor *d,
    uint32_t num, const uint8_t *p, size_t n, wire_path *wp, pl_why *why)
{
	const ProtobufCFieldDescriptor *fd =
	    protobuf_c_message_descriptor_get_field(d, num);
	if (fd == NULL || (fd->type != PROTOBUF_C_TYPE_STRING &&
	                      fd->type != PROTOBUF_C_TYPE_MESSAGE))
		return PL_OK;
	if (wp->depth == WIRE_DEPTH_MAX)
		return PL_E_PROTO;
	wp->fd[wp->depth++] = fd;
	pl_status st = PL_OK;
	if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
		st = wire_walk(fd->descriptor, p, p + n, wp, why);
	} else {
		pl_text_verdict v = pl_text_check(p, n);
		if (v != PL_TEXT_OK)
			st = wire_refuse(wp, v, why);
	}
	wp->depth--;
	return st;
}

static pl_status wire_walk(const ProtobufCMessageDescriptor *d,
    const uint8_t *p, const uint8_t *end, wire_path *wp, pl_why *why)
{
	while (p < end) {
		uint64_t key, n;
		if (!wire_varint(&p, end, &key) || (key >> 3) == 0 ||
		    (key >> 3) > UINT32_MAX)
			return PL_E_PROTO;
		switch (key & 7) {
		case 0:
			if (!wire_varint(&p, end, &n))
				return PL_E_PROTO;
			break;
		case 1:
		case 5: {
			size_t k = (key & 7) == 1 ? 8 : 4;
			if ((size_t)(end - p) < k)
				return PL_E_PROTO;
			p += k;
			break;
		}
		case 2: {
			if (!wire_varint(&p, end, &n) ||
			    n > (uint64_t)(end - p))
				return PL_E_PROTO;
			pl_status st = wire_len_field(
			    d, (uint32_t)(key >> 3), p, (size_t)n, wp, why);
			if (st != PL_OK)
				return st;
			p += n;
			break;
		}
		default:
			return PL_E_PROTO; /* groups: not in our schemas */
		}
	}
	return PL_OK;
}

pl_status pl_wire_strings_check(const ProtobufCMessageDescriptor *d,
    const uint8_t *buf, size_t len, pl_why *why)
{
	wire_path wp = {.depth = 0};
	return wire_walk(d, buf, buf + len, &wp, why);
}

/* ---- field checks ---- */

/* A string within max bytes (UTF-8 and NUL were checked on the wire). */
static pl_status check_chars(
    const char *s, size_t max, const char *name, pl_why *why)
{
	if (s == NULL)
		return PL_OK; /* a hand-built message may leave strings NULL */
	if (strnlen(s, max + 1) <= max)
		return PL_OK;
	/* Bounded by the frame it came in. */
	return say(why, PL_E_TOO_LARGE, "%s of %zu bytes exceeds %zu", name,
	    strlen(s), max);
}

static pl_status check_room(const char *s, const char *name, pl_why *why)
{
	const char *rule =
	    pl_room_rule(s, s != NULL ? strnlen(s, PL_ROOM_ID_CHARS + 1) : 0);
	if (rule == NULL)
		return PL_OK;
	return say(why, PL_E_BAD_REQUEST, "%s: room id %s", name, rule);
}

static pl_status check_room_opt(const char *s, const char *name, pl_why *why)
{
	return s == NULL || s[0] == '\0' ? PL_OK : check_room(s, name, why);
}

static bool enum_ok(int v, int max)
{
	return v >= 0 && v <= max;
}

static pl_status check_meta(
    const char *op, size_t n, Parley__MetaEntry *const *meta, pl_why *why)
{
	if (n > PL_META_ENTRIES_MAX)
		return say(why, PL_E_TOO_LARGE,
		    "%s.meta has %zu entries, limit %d", op, n,
		    PL_META_ENTRIES_MAX);
	for (size_t i = 0; i < n; i++) {
		if (meta[i] == NULL)
			return say(
			    why, PL_E_PROTO, "%s.meta has an empty entry", op);
		char key[48], value[48];
		snprintf(key, sizeof(key), "%s.meta.key", op);
		snprintf(value, sizeof(value), "%s.meta.value", op);
		pl_status st =
		    check_chars(meta[i]->key, PL_META_CHARS_MAX, key, why);
		if (st == PL_OK)
			st = check_chars(
			    meta[i]->value, PL_META_CHARS_MAX, value, why);
		if (st != PL_OK)
			return st;
	}
	return PL_OK;
}

/* ---- client frames ---- */

static pl_status check_hello(const Parley__Hello *h, pl_why *why)
{
	pl_status st =
	    check_chars(h->token, PL_TOKEN_CHARS_MAX, "hello.token", why);
	return st != PL_OK ? st
	                   : check_chars(h->client, CLIENT_NAME_CHARS_MAX,
	                         "hello.client", why);
}

static pl_status check_create_room(const Parley__CreateRoom *c, pl_why *why)
{
	pl_status st = check_chars(c->idempotency_key,
	    PL_IDEMPOTENCY_KEY_CHARS_MAX, "create_room.idempotency_key", why);
	return st != PL_OK ? st
	                   : check_meta("create_room", c->n_meta, c->meta, why);
}

static pl_status check_publish(const Parley__Publish *p, pl_why *why)
{
	pl_status st = check_room(p->room, "publish.room", why);
	if (st == PL_OK)
		st = check_chars(p->client_msg_id, PL_CLIENT_MSG_ID_CHARS_MAX,
		    "publish.client_msg_id", why);
	if (st == PL_OK && !enum_ok((int)p->kind, PARLEY__KIND__SYSTEM))
		st = say(why, PL_E_BAD_REQUEST,
		    "publish.kind %d is not a kind (0 text, 1 event, 2 system)",
		    (int)p->kind);
	return st != PL_OK ? st
	                   : check_meta("publish", p->n_meta, p->meta, why);
}

static pl_status check_history(const Parley__History *h, pl_why *why)
{
	pl_status st = check_room(h->room, "history.room", why);
	if (st == PL_OK && h->limit > PL_HISTORY_LIMIT_MAX)
		st = say(why, PL_E_BAD_REQUEST, "history limit %u exceeds %d",
		    h->limit, PL_HISTORY_LIMIT_MAX);
	return st;
}

static pl_status check_close_room(const Parley__CloseRoom *c, pl_why *why)
{
	pl_status st = check_room(c->room, "close_room.room", why);
	return st != PL_OK ? st
	                   : check_chars(c->reason, PL_REASON_CHARS_MAX,
	                         "close_room.reason", why);
}

static pl_status check_report(const Parley__ReportRequest *r, pl_why *why)
{
	if (r->days <= PL_REPORT_DAYS_MAX)
		return PL_OK;
	return say(why, PL_E_BAD_REQUEST, "report days %u exceeds %d", r->days,
	    PL_REPORT_DAYS_MAX);
}

const char *pl_client_frame_room(const Parley__ClientFrame *f)
{
	switch (f->body_case) {
	case PARLEY__CLIENT_FRAME__BODY_JOIN:
		return f->join->room;
	case PARLEY__CLIENT_FRAME__BODY_LEAVE:
		return f->leave->room;
	case PARLEY__CLIENT_FRAME__BODY_PUBLISH:
		return f->publish->room;
	case PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE:
		return f->subscribe->room;
	case PARLEY__CLIENT_FRAME__BODY_UNSUBSCRIBE:
		return f->unsubscribe->room;
	case PARLEY__CLIENT_FRAME__BODY_HISTORY:
		return f->history->room;
	case PARLEY__CLIENT_FRAME__BODY_TYPING:
		return f->typing->room;
	case PARLEY__CLIENT_FRAME__BODY_READ:
		return f->read->room;
	case PARLEY__CLIENT_FRAME__BODY_PRESENCE:
		return f->presence->room;
	case PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM:
		return f->close_room->room;
	case PARLEY__CLIENT_FRAME__BODY_ROOM_INFO:
		return f->room_info->room;
	default:
		return NULL;
	}
}

/* The op's name as in the schema ("publish"), for error texts. */
static const char *op_name(const Parley__ClientFrame *f)
{
	const ProtobufCFieldDescriptor *fd =
	    protobuf_c_message_descriptor_get_field(
	        &parley__client_frame__descriptor, (unsigned)f->body_case);
	return fd != NULL ? fd->name : "request";
}

/* Every oneof member is a pointer in the same union: one check covers the
 * body whichever op is set. */
static bool client_frame_has_body(const Parley__ClientFrame *f)
{
	return f->body_case != PARLEY__CLIENT_FRAME__BODY__NOT_SET &&
	       f->hello != NULL;
}

pl_status pl_client_frame_check(const Parley__ClientFrame *f, pl_why *why)
{
	if (f == NULL || !client_frame_has_body(f))
		return say(why, PL_E_PROTO, "frame has no request set");
	switch (f->body_case) {
	case PARLEY__CLIENT_FRAME__BODY_HELLO:
		return check_hello(f->hello, why);
	case PARLEY__CLIENT_FRAME__BODY_REFRESH:
		return check_chars(f->refresh->token, PL_TOKEN_CHARS_MAX,
		    "refresh.token", why);
	case PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM:
		return check_create_room(f->create_room, why);
	case PARLEY__CLIENT_FRAME__BODY_PUBLISH:
		return check_publish(f->publish, why);
	case PARLEY__CLIENT_FRAME__BODY_HISTORY:
		return check_history(f->history, why);
	case PARLEY__CLIENT_FRAME__BODY_CLOSE_ROOM:
		return check_close_room(f->close_room, why);
	case PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS:
		return check_room_opt(
		    f->list_rooms->after, "list_rooms.after", why);
	case PARLEY__CLIENT_FRAME__BODY_PING:
	case PARLEY__CLIENT_FRAME__BODY_STATUS:
		return PL_OK;
	case PARLEY__CLIENT_FRAME__BODY_REPORT:
		return check_report(f->report, why);
	default:
		break;
	}
	/* The ops whose only string is their room id. */
	const char *room = pl_client_frame_room(f);
	if (room != NULL) {
		char name[48];
		snprintf(name, sizeof(name), "%s.room", op_name(f));
		return check_room(room, name, why);
	}
	/* A body_case protobuf-c set that nothing here knows: the schema
	 * grew without this validator. */
	return say(why, PL_E_PROTO, "unknown request");
}

pl_status pl_client_frame_validate(const Parley__ClientFrame *f)
{
	return pl_client_frame_check(f, NULL);
}

/* ---- server frames and internal records: structure only ---- */

static pl_status check_event(const Parley__Event *e)
{
	if (e == NULL || e->ev_case == PARLEY__EVENT__EV__NOT_SET ||
	    e->message == NULL)
		return PL_E_PROTO;
	return PL_OK;
}

static pl_status check_server_frame(const Parley__ServerFrame *f)
{
	if (f == NULL || f->body_case == PARLEY__SERVER_FRAME__BODY__NOT_SET ||
	    f->welcome == NULL)
		return PL_E_PROTO;
	if (f->body_case == PARLEY__SERVER_FRAME__BODY_EVENT)
		return check_event(f->event);
	return PL_OK;
}

static pl_status check_caller(const Parley__Internal__Caller *c)
{
	if (c == NULL)
		return PL_OK;
	if (!enum_ok((int)c->role, PARLEY__ROLE__SERVICE) ||
	    check_chars(c->tenant, PL_TENANT_CHARS_MAX, "tenant", NULL) !=
	        PL_OK ||
	    check_chars(c->user, PL_USER_CHARS_MAX, "user", NULL) != PL_OK ||
	    check_room_opt(c->room_scope, "room_scope", NULL) != PL_OK)
		return PL_E_PROTO;
	return PL_OK;
}

static pl_status check_gw_request(const Parley__Internal__GwRequest *r)
{
	if (r == NULL || r->frame == NULL || check_caller(r->caller) != PL_OK ||
	    pl_client_frame_validate(r->frame) != PL_OK)
		return PL_E_PROTO;
	return PL_OK;
}

static pl_status check_gw_batch(const Parley__Internal__GwBatch *b)
{
	if (b->gateway == NULL || b->gateway[0] == '\0' ||
	    b->n_reqs > PL_GW_BATCH_REQS_MAX)
		return PL_E_PROTO;
	for (size_t i = 0; i < b->n_reqs; i++) {
		if (check_gw_request(b->reqs[i]) != PL_OK)
			return PL_E_PROTO;
	}
	return PL_OK;
}

static pl_status check_broker_batch(const Parley__Internal__BrokerBatch *b)
{
	for (size_t i = 0; i < b->n_replies; i++) {
		if (check_server_frame(b->replies[i]) != PL_OK)
			return PL_E_PROTO;
	}
	for (size_t i = 0; i < b->n_events; i++) {
		if (check_event(b->events[i]) != PL_OK)
			return PL_E_PROTO;
	}
	return PL_OK;
}

static pl_status check_command(const Parley__Internal__Command *c)
{
	if (c->op_case == PARLEY__INTERNAL__COMMAND__OP__NOT_SET ||
	    c->create_room == NULL)
		return PL_E_PROTO;
	if (c->op_case == PARLEY__INTERNAL__COMMAND__OP_PUBLISH &&
	    !enum_ok((int)c->publish->kind, PARLEY__KIND__SYSTEM))
		return PL_E_PROTO;
	return check_caller(c->caller);
}

static pl_status check_room_rec(const Parley__Internal__RoomRec *r)
{
	if (check_chars(r->tenant, PL_TENANT_CHARS_MAX, "tenant", NULL) !=
	        PL_OK ||
	    !enum_ok((int)r->last_role, PARLEY__ROLE__SERVICE))
		return PL_E_PROTO;
	for (size_t i = 0; i < r->n_members; i++) {
		const Parley__Internal__MemberRec *m = r->members[i];
		if (m == NULL || !enum_ok((int)m->role, PARLEY__ROLE__SERVICE))
			return PL_E_PROTO;
	}
	return PL_OK;
}

/* ---- decoders ---- */

/* The sub-message that field fd of m holds, or NULL; i-th if repeated. */
static const ProtobufCMessage *sub_message(
    const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd, size_t i)
{
	const char *base = (const char *)m;
	if (fd->label == PROTOBUF_C_LABEL_REPEATED)
		return (
		    *(ProtobufCMessage *const *const *)(base + fd->offset))[i];
	if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
	    *(const uint32_t *)(base + fd->quantifier_offset) != fd->id)
		return NULL;
	return *(ProtobufCMessage *const *)(base + fd->offset);
}

/*
 * protobuf-c keeps an unknown field whose tag is 0 when the tag comes as
 * a multi-byte varint, but refuses the same field re-encoded in one byte:
 * a frame we forwarded would then be refused downstream. Field 0 is never
 * valid, so such a record is malformed wherever it hides. The schemas are
 * not recursive, so the depth of this walk is bounded by them.
 */
static bool tags_valid(const ProtobufCMessage *m)
{
	for (unsigned i = 0; i < m->n_unknown_fields; i++) {
		if (m->unknown_fields[i].tag == 0)
			return false;
	}
	const ProtobufCMessageDescriptor *d = m->descriptor;
	for (unsigned f = 0; f < d->n_fields; f++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[f];
		if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		size_t n = fd->label == PROTOBUF_C_LABEL_REPEATED
		               ? *(const size_t *)((const char *)m +
		                                   fd->quantifier_offset)
		               : 1;
		for (size_t i = 0; i < n; i++) {
			const ProtobufCMessage *sub = sub_message(m, fd, i);
			if (sub != NULL && !tags_valid(sub))
				return false;
		}
	}
	return true;
}

static pl_status unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf,
    size_t len, size_t max, pl_arena *a, ProtobufCMessage **out)
{
	if (len > max || len > PL_FRAME_BYTES_CEIL)
		return PL_E_TOO_LARGE;
	a->exhausted = false;
	ProtobufCMessage *m = protobuf_c_message_unpack(d, &a->alloc, len, buf);
	if (m == NULL)
		return a->exhausted ? PL_E_TOO_LARGE : PL_E_PROTO;
	if (!tags_valid(m))
		return PL_E_PROTO;
	*out = m;
	return PL_OK;
}

/* Unpacks into a local and runs check; *out is written only on success. */
#define DECODE(desc, type, check, buf, len, max, a, out)                       \
	do {                                                                   \
		ProtobufCMessage *m_;                                          \
		pl_status st_ = unpack(&(desc), buf, len, max, a, &m_);        \
		if (st_ == PL_OK)                                              \
			st_ = check((const type *)m_);                         \
		if (st_ == PL_OK)                                              \
			*(out) = (type *)m_;                                   \
		return st_;                                                    \
	} while (0)

static pl_status check_none(const void *m)
{
	return PL_OK; /* token.c checks claims against its own rules */
}

pl_status pl_client_frame_decode_why(const uint8_t *buf, size_t len, size_t max,
    pl_arena *a, Parley__ClientFrame **out, pl_why *why)
{
	ProtobufCMessage *m;
	pl_status st =
	    unpack(&parley__client_frame__descriptor, buf, len, max, a, &m);
	if (st != PL_OK)
		return say(why, st,
		    st == PL_E_TOO_LARGE ? "frame of %zu bytes exceeds %zu"
		                         : "undecodable frame (%zu bytes, "
		                           "limit %zu): not a ClientFrame",
		    len, max);
	st = pl_wire_strings_check(
	    &parley__client_frame__descriptor, buf, len, why);
	if (st == PL_E_PROTO) /* protobuf-c took what the walk cannot read */
		return say(why, st, "undecodable frame: a field is malformed");
	if (st == PL_OK)
		st = pl_client_frame_check((const Parley__ClientFrame *)m, why);
	if (st == PL_OK)
		*out = (Parley__ClientFrame *)m;
	return st;
}

pl_status pl_client_frame_decode(const uint8_t *buf, size_t len, size_t max,
    pl_arena *a, Parley__ClientFrame **out)
{
	return pl_client_frame_decode_why(buf, len, max, a, out, NULL);
}

/* The record's strings checked on the wire, then check(record). */
#define DECODE_TEXT(desc, type, check, buf, len, max, a, out)                  \
	do {                                                                   \
		ProtobufCMessage *m_;                                          \
		pl_status st_ = unpack(&(desc), buf, len, max, a, &m_);        \
		if (st_ == PL_OK &&                                            \
		    pl_wire_strings_check(&(desc), buf, len, NULL) != PL_OK)   \
			st_ = PL_E_PROTO;                                      \
		if (st_ == PL_OK)                                              \
			st_ = check((const type *)m_);                         \
		if (st_ == PL_OK)                                              \
			*(out) = (type *)m_;                                   \
		return st_;                                                    \
	} while (0)

pl_status pl_server_frame_decode(const uint8_t *buf, size_t len, size_t max,
    pl_arena *a, Parley__ServerFrame **out)
{
	DECODE(parley__server_frame__descriptor, Parley__ServerFrame,
	    check_server_frame, buf, len, max, a, out);
}

pl_status pl_gw_batch_decode(const uint8_t *buf, size_t len, pl_arena *a,
    Parley__Internal__GwBatch **out)
{
	DECODE_TEXT(parley__internal__gw_batch__descriptor,
	    Parley__Internal__GwBatch, check_gw_batch, buf, len,
	    PL_FRAME_BYTES_CEIL, a, out);
}

/* The same decode and checks as pl_gw_batch_decode, into the caller's
 * allocator (the broker's growing per-batch arena, which also holds the
 * batch's replies). An allocator that runs out shows as PL_E_PROTO. */
pl_status pl_gw_batch_decode_with(const uint8_t *buf, size_t len,
    ProtobufCAllocator *alloc, Parley__Internal__GwBatch **out)
{
	const ProtobufCMessageDescriptor *d =
	    &parley__internal__gw_batch__descriptor;
	if (len > PL_FRAME_BYTES_CEIL)
		return PL_E_TOO_LARGE;
	ProtobufCMessage *m = protobuf_c_message_unpack(d, alloc, len, buf);
	if (m == NULL)
		return PL_E_PROTO;
	if (!tags_valid(m) ||
	    pl_wire_strings_check(d, buf, len, NULL) != PL_OK ||
	    check_gw_batch((const Parley__Internal__GwBatch *)m) != PL_OK) {
		protobuf_c_message_free_unpacked(m, alloc);
		return PL_E_PROTO;
	}
	*out = (Parley__Internal__GwBatch *)m;
	return PL_OK;
}

pl_status pl_broker_batch_decode(const uint8_t *buf, size_t len, pl_arena *a,
    Parley__Internal__BrokerBatch **out)
{
	DECODE(parley__internal__broker_batch__descriptor,
	    Parley__Internal__BrokerBatch, check_broker_batch, buf, len,
	    PL_FRAME_BYTES_CEIL, a, out);
}

pl_status pl_command_decode(const uint8_t *buf, size_t len, pl_arena *a,
    Parley__Internal__Command **out)
{
	DECODE(parley__internal__command__descriptor, Parley__Internal__Command,
	    check_command, buf, len, PL_FRAME_BYTES_CEIL, a, out);
}

/* Shapes only: the Raft core validates what the fields mean. */
static pl_status check_peer_batch(const Parley__Internal__PeerBatch *b)
{
	for (size_t i = 0; i < b->n_msgs; i++) {
		const Parley__Internal__RaftMsg *m = b->msgs[i];
		if (m == NULL || m->type == 0 || m->type > 64)
			return PL_E_PROTO;
		for (size_t j = 0; j < m->n_ents; j++) {
			if (m->ents[j] == NULL || m->ents[j]->type > 1)
				return PL_E_PROTO;
		}
	}
	return PL_OK;
}

pl_status pl_peer_batch_decode(const uint8_t *buf, size_t len, pl_arena *a,
    Parley__Internal__PeerBatch **out)
{
	DECODE(parley__internal__peer_batch__descriptor,
	    Parley__Internal__PeerBatch, check_peer_batch, buf, len,
	    PL_FRAME_BYTES_CEIL, a, out);
}

pl_status pl_room_rec_decode(const uint8_t *buf, size_t len, pl_arena *a,
    Parley__Internal__RoomRec **out)
{
	DECODE(parley__internal__room_rec__descriptor,
	    Parley__Internal__RoomRec, check_room_rec, buf, len,
	    PL_FRAME_BYTES_CEIL, a, out);
}

/* A day's totals are counters; the tenant is the record's key. */
static pl_status check_tenant_day_rec(const Parley__Internal__TenantDayRec *r)
{
	return r->wait_us_sum >= 0 && r->first_response_us_sum >= 0 &&
	               r->handle_us_sum >= 0
	           ? PL_OK
	           : PL_E_PROTO;
}

pl_status pl_tenant_day_rec_decode(const uint8_t *buf, size_t len, pl_arena *a,
    Parley__Internal__TenantDayRec **out)
{
	DECODE(parley__internal__tenant_day_rec__descriptor,
	    Parley__Internal__TenantDayRec, check_tenant_day_rec, buf, len,
	    PL_TENANT_DAY_REC_BYTES_MAX, a, out);
}

pl_status pl_claims_decode(
    const uint8_t *buf, size_t len, pl_arena *a, Parley__Internal__Claims **out)
{
	DECODE_TEXT(parley__internal__claims__descriptor,
	    Parley__Internal__Claims, check_none, buf, len, PL_FRAME_BYTES_CEIL,
	    a, out);
}
