/*
 * room.c - the room model: membership, read positions and consultation
 * statistics, computed when a command is applied so that every replica
 * that applies the same log computes the same numbers. Also converts room
 * records between their stored protobuf form and plain structs.
 *
 * Statistics definitions (documented in README "Consultation statistics"):
 *   wait            first agent join - first customer message (or room
 *                   creation when the agent joined before any message)
 *   first response  first agent text - first customer text
 *   turn response   agent text - oldest unanswered customer text
 *   handle time     close - first agent join
 */
#include <string.h>

#include "broker/room.h"

static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strlen(src) : 0;
	if (n >= cap)
		n = cap - 1;
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

void brk_day_delta_init(brk_day_delta *d, int64_t ts)
{
	memset(d, 0, sizeof(*d));
	d->day_ts_us = ts;
	d->wait_us = -1;
	d->first_response_us = -1;
	d->handle_us = -1;
}

brk_member *brk_room_member(brk_room *r, const char *user)
{
	for (int i = 0; i < r->nmembers; i++)
		if (strcmp(r->members[i].user, user) == 0)
			return &r->members[i];
	return NULL;
}

static void on_agent_join(brk_room *r, int64_t ts, brk_day_delta *d)
{
	brk_stats *s = &r->stats;
	if (s->first_agent_join_us != 0)
		return;
	s->first_agent_join_us = ts;
	int64_t from =
	    s->first_customer_msg_us ? s->first_customer_msg_us : s->created_us;
	s->wait_us = ts > from ? ts - from : 0;
	d->wait_us = s->wait_us;
}

pl_status brk_room_join(
    brk_room *r, const char *user, int role, int64_t ts, brk_day_delta *d)
{
	brk_member *m = brk_room_member(r, user);
	if (m == NULL) {
		if (r->nmembers >= ROOM_MEMBERS_MAX)
			return PL_E_TOO_LARGE;
		m = &r->members[r->nmembers++];
		memset(m, 0, sizeof(*m));
		copy_str(m->user, sizeof(m->user), user);
	}
	m->role = role;
	if (!m->joined)
		m->joined_us = ts;
	m->joined = true;
	if (role == PARLEY__ROLE__AGENT)
		on_agent_join(r, ts, d);
	return PL_OK;
}

void brk_room_leave(brk_room *r, const char *user)
{
	brk_member *m = brk_room_member(r, user);
	if (m != NULL)
		m->joined = false;
}

static void on_customer_text(brk_stats *s, int64_t ts)
{
	s->customer_msgs++;
	if (s->first_customer_msg_us == 0)
		s->first_customer_msg_us = ts;
	if (s->pending_customer_us == 0)
		s->pending_customer_us = ts;
}

static void on_agent_text(brk_stats *s, int64_t ts, brk_day_delta *d)
{
	s->agent_msgs++;
	if (s->first_agent_msg_us == 0) {
		s->first_agent_msg_us = ts;
		if (s->first_customer_msg_us != 0) {
			s->first_response_us = ts - s->first_customer_msg_us;
			d->first_response_us = s->first_response_us;
		}
	}
	if (s->pending_customer_us != 0) {
		if (s->turns < ROOM_TURNS_TRACKED_MAX)
			s->turn_us[s->turns] = ts - s->pending_customer_us;
		s->turns++;
		s->pending_customer_us = 0;
	}
}

void brk_room_on_message(
    brk_room *r, int role, int kind, int64_t ts, brk_day_delta *d)
{
	d->messages++;
	if (kind != PARLEY__KIND__TEXT)
		return; /* events and system notes are not conversation turns */
	switch (role) {
	case PARLEY__ROLE__CUSTOMER:
		on_customer_text(&r->stats, ts);
		break;
	case PARLEY__ROLE__AGENT:
		on_agent_text(&r->stats, ts, d);
		break;
	case PARLEY__ROLE__BOT:
		r->stats.bot_msgs++;
		break;
	default:
		break;
	}
}

void brk_room_close(
    brk_room *r, const char *reason, int64_t ts, brk_day_delta *d)
{
	r->closed = true;
	copy_str(r->close_reason, sizeof(r->close_reason), reason);
	r->stats.closed_us = ts;
	d->rooms_closed = 1;
	if (r->stats.first_agent_join_us != 0) {
		r->stats.handle_us = ts - r->stats.first_agent_join_us;
		d->handle_us = r->stats.handle_us;
	}
}

/* ---- record conversion ---- */

static void stats_from_pb(brk_stats *s, const Parley__RoomStats *p)
{
	s->created_us = p->created_us;
	s->first_customer_msg_us = p->first_customer_msg_us;
	s->first_agent_join_us = p->first_agent_join_us;
	s->first_agent_msg_us = p->first_agent_msg_us;
	s->wait_us = p->wait_us;
	s->first_response_us = p->first_response_us;
	s->pending_customer_us = p->pending_customer_us;
	s->turns = p->turns;
	size_t n = p->n_turn_response_us;
	if (n > ROOM_TURNS_TRACKED_MAX)
		n = ROOM_TURNS_TRACKED_MAX;
	for (size_t i = 0; i < n; i++)
		s->turn_us[i] = p->turn_response_us[i];
	s->customer_msgs = p->customer_msgs;
	s->agent_msgs = p->agent_msgs;
	s->bot_msgs = p->bot_msgs;
	s->closed_us = p->closed_us;
	s->handle_us = p->handle_us;
}

/* Fills p from s; turn_us is borrowed (int64_t, as protobuf-c wants). */
static void stats_to_pb(const brk_stats *s, Parley__RoomStats *p)
{
	parley__room_stats__init(p);
	p->created_us = s->created_us;
	p->first_customer_msg_us = s->first_customer_msg_us;
	p->first_agent_join_us = s->first_agent_join_us;
	p->first_agent_msg_us = s->first_agent_msg_us;
	p->wait_us = s->wait_us;
	p->first_response_us = s->first_response_us;
	p->pending_customer_us = s->pending_customer_us;
	p->turns = s->turns;
	p->n_turn_response_us = s->turns < ROOM_TURNS_TRACKED_MAX
	                            ? s->turns
	                            : ROOM_TURNS_TRACKED_MAX;
	p->turn_response_us = (int64_t *)s->turn_us;
	p->customer_msgs = s->customer_msgs;
	p->agent_msgs = s->agent_msgs;
	p->bot_msgs = s->bot_msgs;
	p->closed_us = s->closed_us;
	p->handle_us = s->handle_us;
}

static pl_status room_from_pb(brk_room *r, const Parley__Internal__RoomRec *p)
{
	if (p->n_members > ROOM_MEMBERS_MAX || p->n_meta > PL_META_ENTRIES_MAX)
		return PL_E_CORRUPT;
	memset(r, 0, sizeof(*r));
	r->id = p->room;
	copy_str(r->tenant, sizeof(r->tenant), p->tenant);
	r->closed = p->closed;
	r->last_seq = p->last_seq;
	copy_str(r->close_reason, sizeof(r->close_reason), p->close_reason);
	for (size_t i = 0; i < p->n_members; i++) {
		brk_member *m = &r->members[i];
		const Parley__Internal__MemberRec *pm = p->members[i];
		copy_str(m->user, sizeof(m->user), pm->user);
		m->role = pm->role;
		m->joined = pm->joined;
		m->read_seq = pm->read_seq;
		m->joined_us = pm->joined_us;
	}
	r->nmembers = (int)p->n_members;
	for (size_t i = 0; i < p->n_meta; i++) {
		copy_str(
		    r->meta[i].key, sizeof(r->meta[i].key), p->meta[i]->key);
		copy_str(r->meta[i].value, sizeof(r->meta[i].value),
		    p->meta[i]->value);
	}
	r->nmeta = (int)p->n_meta;
	if (p->stats != NULL)
		stats_from_pb(&r->stats, p->stats);
	return PL_OK;
}

pl_status brk_room_decode(
    const uint8_t *buf, size_t len, pl_arena *scratch, brk_room *r)
{
	Parley__Internal__RoomRec *p;
	if (len > ROOM_REC_BYTES_MAX)
		return PL_E_CORRUPT;
	pl_arena_reset(scratch);
	pl_status st = pl_room_rec_decode(buf, len, scratch, &p);
	if (st == PL_OK)
		st = room_from_pb(r, p);
	return st == PL_E_PROTO ? PL_E_CORRUPT : st;
}

pl_status brk_room_encode(
    const brk_room *r, uint8_t *out, size_t cap, size_t *n)
{
	Parley__Internal__RoomRec p;
	Parley__Internal__MemberRec mrec[ROOM_MEMBERS_MAX];
	Parley__Internal__MemberRec *mptr[ROOM_MEMBERS_MAX];
	Parley__MetaEntry meta[PL_META_ENTRIES_MAX];
	Parley__MetaEntry *metap[PL_META_ENTRIES_MAX];
	Parley__RoomStats stats;

	parley__internal__room_rec__init(&p);
	p.room = r->id;
	p.tenant = (char *)r->tenant;
	p.closed = r->closed;
	p.last_seq = r->last_seq;
	p.close_reason = (char *)r->close_reason;
	for (int i = 0; i < r->nmembers; i++) {
		parley__internal__member_rec__init(&mrec[i]);
		mrec[i].user = (char *)r->members[i].user;
		mrec[i].role = r->members[i].role;
		mrec[i].joined = r->members[i].joined;
		mrec[i].read_seq = r->members[i].read_seq;
		mrec[i].joined_us = r->members[i].joined_us;
		mptr[i] = &mrec[i];
	}
	p.n_members = (size_t)r->nmembers;
	p.members = mptr;
	for (int i = 0; i < r->nmeta; i++) {
		parley__meta_entry__init(&meta[i]);
		meta[i].key = (char *)r->meta[i].key;
		meta[i].value = (char *)r->meta[i].value;
		metap[i] = &meta[i];
	}
	p.n_meta = (size_t)r->nmeta;
	p.meta = metap;
	stats_to_pb(&r->stats, &stats);
	p.stats = &stats;
	return pl_pb_encode(&p.base, out, cap, n);
}

static void *arena_calloc(ProtobufCAllocator *alloc, size_t n)
{
	void *p = alloc->alloc(alloc->allocator_data, n);
	if (p != NULL)
		memset(p, 0, n);
	return p;
}

pl_status brk_room_info(
    const brk_room *r, ProtobufCAllocator *alloc, Parley__RoomInfo *out)
{
	char *id = arena_calloc(alloc, PL_ROOM_ID_CHARS + 1);
	Parley__Member *mem =
	    arena_calloc(alloc, sizeof(*mem) * (size_t)(r->nmembers + 1));
	Parley__Member **memp =
	    arena_calloc(alloc, sizeof(*memp) * (size_t)(r->nmembers + 1));
	Parley__RoomStats *st = arena_calloc(alloc, sizeof(*st));
	Parley__MetaEntry *meta =
	    arena_calloc(alloc, sizeof(*meta) * (size_t)(r->nmeta + 1));
	Parley__MetaEntry **metap =
	    arena_calloc(alloc, sizeof(*metap) * (size_t)(r->nmeta + 1));
	int64_t *turns = arena_calloc(alloc, sizeof(r->stats.turn_us));
	if (!id || !mem || !memp || !st || !meta || !metap || !turns)
		return PL_E_NOMEM;
	parley__room_info__init(out);
	pl_room_format(r->id, id);
	out->room = id;
	out->tenant = (char *)r->tenant;
	out->closed = r->closed;
	out->last_seq = r->last_seq;
	out->close_reason = (char *)r->close_reason;
	for (int i = 0; i < r->nmembers; i++) {
		parley__member__init(&mem[i]);
		mem[i].user = (char *)r->members[i].user;
		mem[i].role = r->members[i].role;
		mem[i].read_seq = r->members[i].read_seq;
		mem[i].joined = r->members[i].joined;
		memp[i] = &mem[i];
	}
	out->n_members = (size_t)r->nmembers;
	out->members = memp;
	for (int i = 0; i < r->nmeta; i++) {
		parley__meta_entry__init(&meta[i]);
		meta[i].key = (char *)r->meta[i].key;
		meta[i].value = (char *)r->meta[i].value;
		metap[i] = &meta[i];
	}
	out->n_meta = (size_t)r->nmeta;
	out->meta = metap;
	stats_to_pb(&r->stats, st);
	memcpy(turns, r->stats.turn_us, sizeof(r->stats.turn_us));
	st->turn_response_us = turns;
	out->stats = st;
	return PL_OK;
}
