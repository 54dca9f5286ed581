/*
 * query.c - the store's reads: one stored message, history pages in
 * either direction, room lists (of a tenant, of a member) and day
 * reports. A message is rebuilt from its log entry (CRC verified, body
 * decompressed) into the caller's arena.
 *
 * Invariants: nothing read from the map outlives its transaction: every
 * string and body is copied into the caller's arena; a page stops at its
 * limit or its byte budget and then says more = true; a seq at or below
 * last_seq that cannot be read is PL_E_CORRUPT, never skipped.
 *
 * Entry points: brk_message_get, brk_history, brk_list_rooms,
 * brk_list_user_rooms, brk_report (store.h); brk_message_build
 * (store_internal.h, for apply.c's live feed).
 */
#include <lmdb.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "broker/store/store_internal.h"

#define HISTORY_LIMIT_DEFAULT 50
#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

static pl_status body_copy(brk_store *s, const Parley__Internal__PublishCmd *op,
    brk_arena *a, ProtobufCBinaryData *out)
{
	size_t n = op->compressed ? op->raw_len : op->body.len;
	if (n > BODY_BYTES_MAX)
		return PL_E_CORRUPT;
	uint8_t *p = brk_arena_alloc(a, n ? n : 1);
	if (p == NULL)
		return PL_E_NOMEM;
	if (!op->compressed) {
		memcpy(p, op->body.data, n);
	} else {
		size_t got = ZSTD_decompressDCtx(
		    s->zd, p, n, op->body.data, op->body.len);
		if (ZSTD_isError(got) || got != n)
			return PL_E_CORRUPT;
	}
	out->data = p;
	out->len = n;
	return PL_OK;
}

static pl_status meta_copy(
    Parley__MetaEntry **src, size_t n, brk_arena *a, Parley__Message *m)
{
	if (n == 0)
		return PL_OK;
	Parley__MetaEntry *e = brk_arena_alloc(a, n * sizeof(*e));
	Parley__MetaEntry **ep = brk_arena_alloc(a, n * sizeof(*ep));
	if (e == NULL || ep == NULL)
		return PL_E_NOMEM;
	for (size_t i = 0; i < n; i++) {
		parley__meta_entry__init(&e[i]);
		e[i].key = brk_arena_strdup(a, src[i]->key);
		e[i].value = brk_arena_strdup(a, src[i]->value);
		if (e[i].key == NULL || e[i].value == NULL)
			return PL_E_NOMEM;
		ep[i] = &e[i];
	}
	m->n_meta = n;
	m->meta = ep;
	return PL_OK;
}

/* Builds m (in a) from a verified publish command stored as seq. */
pl_status brk_message_build(brk_store *s, const Parley__Internal__Command *c,
    uint64_t room, uint64_t seq, brk_arena *a, Parley__Message *m)
{
	const Parley__Internal__PublishCmd *op = c->publish;
	if (c->op_case != PARLEY__INTERNAL__COMMAND__OP_PUBLISH ||
	    op->room != room || c->caller == NULL)
		return PL_E_CORRUPT;
	parley__message__init(m);
	char *id = brk_arena_alloc(a, PL_ROOM_ID_CHARS + 1);
	if (id == NULL)
		return PL_E_NOMEM;
	pl_room_format(room, id);
	m->room = id;
	m->seq = seq;
	m->ts_us = c->ts_us;
	m->sender = brk_arena_strdup(a, c->caller->user);
	m->role = c->caller->role;
	m->kind = op->kind;
	m->client_msg_id = brk_arena_strdup(a, op->client_msg_id);
	if (m->sender == NULL || m->client_msg_id == NULL)
		return PL_E_NOMEM;
	pl_status st = body_copy(s, op, a, &m->body);
	if (st == PL_OK)
		st = meta_copy(op->meta, op->n_meta, a, m);
	return st;
}

pl_status brk_message_get(brk_wtxn *w, uint64_t room, uint64_t seq,
    brk_arena *a, Parley__Message *out)
{
	uint8_t k[16];
	MDB_val v;
	Parley__Internal__Command *c;
	put_be64(k, room);
	put_be64(k + 8, seq);
	pl_status st = brk_wtxn_get(w, w->s->seq, k, 16, &v);
	if (st != PL_OK)
		return st;
	if (v.mv_size < 8)
		return PL_E_CORRUPT;
	if ((st = brk_log_cmd_read(w, get_be64(v.mv_data), &c)) != PL_OK)
		return st;
	return brk_message_build(w->s, c, room, seq, a, out);
}

/* The page's seq range: first seq and direction. */
static bool history_range(
    const brk_room *r, const Parley__History *h, uint64_t *first, int *dir)
{
	if (h->before_seq != 0) {
		uint64_t b = h->before_seq > r->last_seq + 1 ? r->last_seq + 1
		                                             : h->before_seq;
		*first = b - 1;
		*dir = -1;
		return b > 1;
	}
	if (h->after_seq != 0 || h->oldest_first) {
		*first = h->after_seq + 1;
		*dir = 1;
		return *first <= r->last_seq;
	}
	*first = r->last_seq;
	*dir = -1;
	return r->last_seq > 0;
}

pl_status brk_history(brk_wtxn *w, uint64_t room, const Parley__History *h,
    brk_arena *a, Parley__HistoryPage *out)
{
	brk_room *r;
	pl_status st = brk_room_get(w, room, &r);
	if (st != PL_OK)
		return st;
	uint64_t last = r->last_seq, seq;
	int dir;
	uint32_t limit = h->limit ? h->limit : HISTORY_LIMIT_DEFAULT;
	if (limit > PL_HISTORY_LIMIT_MAX)
		limit = PL_HISTORY_LIMIT_MAX;
	parley__history_page__init(out);
	out->room = brk_arena_alloc(a, PL_ROOM_ID_CHARS + 1);
	out->messages = brk_arena_alloc(a, limit * sizeof(*out->messages));
	if (out->room == NULL || out->messages == NULL)
		return PL_E_NOMEM;
	pl_room_format(room, out->room);
	if (!history_range(r, h, &seq, &dir))
		return PL_OK;
	size_t bytes = 0, budget = HISTORY_PAGE_BYTES_MAX;
	if (h->max_bytes != 0 && h->max_bytes < budget)
		budget = h->max_bytes;
	while (seq >= 1 && seq <= last) {
		if (out->n_messages == limit || bytes >= budget) {
			out->more = true;
			break;
		}
		Parley__Message *m = brk_arena_alloc(a, sizeof(*m));
		if (m == NULL)
			return PL_E_NOMEM;
		if ((st = brk_message_get(w, room, seq, a, m)) != PL_OK)
			return st == PL_E_NOT_FOUND ? PL_E_CORRUPT : st;
		bytes += m->body.len;
		out->messages[out->n_messages++] = m;
		seq = dir > 0 ? seq + 1 : seq - 1;
	}
	return PL_OK;
}

/* A page of rooms from an index whose keys are a prefix and a big-endian
 * room id (the last 8 of kl bytes): from the key k on, at most limit. */
static pl_status list_rooms_from(brk_wtxn *w, MDB_dbi dbi, const uint8_t *k,
    size_t kl, uint32_t limit, brk_arena *a, Parley__RoomList *out)
{
	MDB_cursor *cur;
	MDB_val key, val;
	if (limit == 0 || limit > LIST_LIMIT_MAX)
		limit = limit ? LIST_LIMIT_MAX : LIST_LIMIT_DEFAULT;
	parley__room_list__init(out);
	out->rooms = brk_arena_alloc(a, limit * sizeof(char *));
	if (kl == 0 || out->rooms == NULL)
		return kl == 0 ? PL_E_BAD_REQUEST : PL_E_NOMEM;
	if (mdb_cursor_open(w->txn, dbi, &cur) != MDB_SUCCESS)
		return PL_E_IO;
	key.mv_size = kl;
	key.mv_data = (void *)k;
	int rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	pl_status st = PL_OK;
	while (rc == MDB_SUCCESS && key.mv_size == kl &&
	       memcmp(key.mv_data, k, kl - 8) == 0) {
		if (out->n_rooms == limit) {
			out->more = true;
			break;
		}
		char *id = brk_arena_alloc(a, PL_ROOM_ID_CHARS + 1);
		if (id == NULL) {
			st = PL_E_NOMEM;
			break;
		}
		pl_room_format(get_be64((uint8_t *)key.mv_data + kl - 8), id);
		out->rooms[out->n_rooms++] = id;
		rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return st;
}

pl_status brk_list_rooms(brk_wtxn *w, const char *tenant, uint64_t after,
    uint32_t limit, brk_arena *a, Parley__RoomList *out)
{
	uint8_t k[PL_TENANT_CHARS_MAX + 10], start[8];
	put_be64(start, after + 1);
	size_t kl = tenant_key(k, sizeof(k), tenant, start, 8);
	return list_rooms_from(w, w->s->tenant_rooms, k, kl, limit, a, out);
}

pl_status brk_list_user_rooms(brk_wtxn *w, const char *tenant, const char *user,
    uint64_t after, uint32_t limit, brk_arena *a, Parley__RoomList *out)
{
	uint8_t k[PL_TENANT_CHARS_MAX + PL_USER_CHARS_MAX + 10];
	size_t kl = user_room_key(k, sizeof(k), tenant, user, after + 1);
	return list_rooms_from(w, w->s->user_rooms, k, kl, limit, a, out);
}

static void day_date(uint32_t day, char *out, size_t cap)
{
	time_t t = (time_t)day * 86400;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%d", &tm);
}

static pl_status day_to_pb(const Parley__Internal__TenantDayRec *r,
    uint32_t day, const char *tenant, brk_arena *a, Parley__TenantDay *d)
{
	char *date = brk_arena_alloc(a, 16);
	char *t = brk_arena_strdup(a, tenant);
	if (date == NULL || t == NULL)
		return PL_E_NOMEM;
	day_date(day, date, 16);
	parley__tenant_day__init(d);
	d->tenant = t;
	d->day = day;
	d->date = date;
	d->rooms_created = r->rooms_created;
	d->rooms_closed = r->rooms_closed;
	d->messages = r->messages;
	d->wait_us_sum = r->wait_us_sum;
	d->wait_n = r->wait_n;
	d->first_response_us_sum = r->first_response_us_sum;
	d->first_response_n = r->first_response_n;
	d->handle_us_sum = r->handle_us_sum;
	d->handle_n = r->handle_n;
	return PL_OK;
}

pl_status brk_report(brk_wtxn *w, const char *tenant, uint32_t first_day,
    uint32_t last_day, brk_arena *a, Parley__Report *out)
{
	if (last_day < first_day || last_day - first_day >= PL_REPORT_DAYS_MAX)
		return PL_E_BAD_REQUEST;
	pl_status st = brk_days_flush(w); /* the round's own days count too */
	if (st != PL_OK && st != PL_E_MAP_FULL)
		return st;
	size_t n = last_day - first_day + 1;
	parley__report__init(out);
	out->days = brk_arena_alloc(a, n * sizeof(*out->days));
	if (out->days == NULL)
		return PL_E_NOMEM;
	for (uint32_t day = first_day; day <= last_day; day++) {
		uint8_t key[PL_TENANT_CHARS_MAX + 8];
		size_t kl = brk_days_key(key, sizeof(key), tenant, day);
		MDB_val v;
		if (kl == 0 ||
		    brk_wtxn_get(w, w->s->days, key, kl, &v) != PL_OK)
			continue;
		uint8_t buf[PL_ARENA_BYTES_FOR(PL_TENANT_DAY_REC_BYTES_MAX)];
		pl_arena ra;
		Parley__Internal__TenantDayRec *r;
		PL_ASSERT(pl_arena_init(&ra, buf, sizeof(buf)) == PL_OK);
		if (pl_tenant_day_rec_decode(v.mv_data, v.mv_size, &ra, &r) !=
		    PL_OK)
			return PL_E_CORRUPT;
		Parley__TenantDay *d = brk_arena_alloc(a, sizeof(*d));
		st = d != NULL ? day_to_pb(r, day, tenant, a, d) : PL_E_NOMEM;
		if (st != PL_OK)
			return st;
		out->days[out->n_days++] = d;
	}
	return PL_OK;
}
