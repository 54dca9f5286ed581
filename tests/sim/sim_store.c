/*
 * sim_store.c - the simulation's log store (see sim_store.h): three images
 * of the log (written, durable, captured by a sync), a CRC32C per entry
 * checked on every read, a durable sync mark, torn writes, bit flips and a
 * scrubber. The invariant the model keeps and asserts: the written and
 * durable images hold the same records (same write) up to the mark.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "tests/sim/sim_store.h"

#define CHUNK_BYTES (64 * 1024)

struct sstore_chunk {
	sstore_chunk *next;
	size_t used, cap;
	uint8_t buf[];
};

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL) {
		fprintf(stderr, "raft_sim: out of memory\n");
		abort();
	}
	return q;
}

static uint8_t *store_alloc(sstore *s, size_t n)
{
	sstore_chunk *c = s->arena;
	if (c == NULL || c->used + n > c->cap) {
		size_t cap = n > CHUNK_BYTES ? n : CHUNK_BYTES;
		c = xrealloc(NULL, sizeof *c + cap);
		c->next = s->arena;
		c->used = 0;
		c->cap = cap;
		s->arena = c;
	}
	uint8_t *p = c->buf + c->used;
	c->used += (n + 7) & ~(size_t)7;
	return p;
}

static void vec_push(srec_vec *v, const srec *r)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? 2 * v->cap : 64;
		v->r = xrealloc(v->r, sizeof(srec) * v->cap);
	}
	v->r[v->n++] = *r;
}

static void vec_copy(srec_vec *dst, const srec_vec *src)
{
	if (dst->cap < src->n) {
		dst->cap = src->n;
		dst->r = xrealloc(dst->r, sizeof(srec) * dst->cap);
	}
	if (src->n > 0)
		memcpy(dst->r, src->r, sizeof(srec) * src->n);
	dst->n = src->n;
}

static void vec_cut(srec_vec *v, uint64_t keep)
{
	if (v->n > keep)
		v->n = (size_t)keep;
}

void sstore_fini(sstore *s)
{
	free(s->cur.r);
	free(s->dur.r);
	free(s->img.r);
	while (s->arena != NULL) {
		sstore_chunk *c = s->arena;
		s->arena = c->next;
		free(c);
	}
	memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------ */
/* Records. */

/* CRC32C over index and term (little-endian), type, then the payload:
 * what the broker's log covers with its per-entry CRC. */
static uint32_t rec_crc(const raft_entry *e)
{
	uint8_t h[17];
	for (int i = 0; i < 8; i++) {
		h[i] = (uint8_t)(e->index >> (8 * i));
		h[8 + i] = (uint8_t)(e->term >> (8 * i));
	}
	h[16] = e->type;
	uint32_t c = pl_crc32c(0, h, sizeof h);
	return e->len > 0 ? pl_crc32c(c, e->data, e->len) : c;
}

bool sstore_rec_ok(srec *r, uint64_t index)
{
	if (r->chk == 0)
		r->chk =
		    r->e.index == index && r->crc == rec_crc(&r->e) ? 1 : 2;
	return r->chk == 1;
}

static void note_bad(sstore *s, uint64_t index)
{
	if (s->bad_at == 0 || index < s->bad_at)
		s->bad_at = index;
}

/* Flips one bit of a stored record (payload copied first: the old bytes
 * may still be lent to the core or to the checks). */
static void rec_flip(sstore *s, srec *r, unsigned field, uint32_t bit)
{
	if (field == 0 && r->e.len == 0)
		field = 1 + bit % 4;
	switch (field) {
	case 0: {
		uint8_t *p = store_alloc(s, r->e.len);
		memcpy(p, r->e.data, r->e.len);
		uint32_t b = bit % (uint32_t)(8 * r->e.len);
		p[b / 8] ^= (uint8_t)(1u << (b % 8));
		r->e.data = p;
		break;
	}
	case 1:
		r->e.term ^= UINT64_C(1) << (bit % 64);
		break;
	case 2:
		r->e.index ^= UINT64_C(1) << (bit % 64);
		break;
	case 3:
		r->e.type ^= (uint8_t)(1u << (bit % 8));
		break;
	default:
		r->crc ^= UINT32_C(1) << (bit % 32);
		break;
	}
	r->chk = 0;
	r->taint = 1;
}

/* ------------------------------------------------------------------ */
/* The storage callbacks (raft.h): reads check every CRC. */

static pl_status st_load(void *ctx, raft_hard_state *hs, uint64_t *si,
    uint64_t *sterm, raft_conf *conf)
{
	sstore *s = ctx;
	*hs = s->hsd;
	*si = 0;
	*sterm = 0;
	*conf = s->boot;
	return PL_OK;
}

static uint64_t st_first(void *ctx)
{
	(void)ctx;
	return 1;
}

static uint64_t st_last(void *ctx)
{
	return ((sstore *)ctx)->cur.n;
}

static pl_status st_term(void *ctx, uint64_t i, uint64_t *t)
{
	sstore *s = ctx;
	if (i == 0) {
		*t = 0;
		return PL_OK;
	}
	if (i > s->cur.n)
		return PL_E_NOT_FOUND;
	srec *r = &s->cur.r[i - 1];
	if (!sstore_rec_ok(r, i)) {
		note_bad(s, i);
		return PL_E_CORRUPT;
	}
	*t = r->e.term;
	return PL_OK;
}

static pl_status st_entries(void *ctx, uint64_t lo, uint64_t hi,
    size_t max_bytes, raft_entry *out, size_t cap, size_t *n)
{
	sstore *s = ctx;
	if (lo < 1 || hi > s->cur.n + 1 || lo >= hi)
		return PL_E_NOT_FOUND;
	size_t k = 0, bytes = 0;
	for (uint64_t i = lo; i < hi && k < cap; i++) {
		srec *r = &s->cur.r[i - 1];
		if (!sstore_rec_ok(r, i)) {
			note_bad(s, i);
			if (k == 0)
				return PL_E_CORRUPT;
			break; /* the good prefix */
		}
		if (k > 0 && bytes + r->e.len > max_bytes)
			break;
		bytes += r->e.len;
		out[k++] = r->e;
	}
	*n = k;
	return PL_OK;
}

const raft_storage sstore_storage = {
    .load = st_load,
    .first_index = st_first,
    .last_index = st_last,
    .term_at = st_term,
    .entries = st_entries,
};

/* ------------------------------------------------------------------ */
/* Writes, syncs, crashes. */

static void mark_lower(sstore *s, uint64_t keep)
{
	if (s->mark <= keep)
		return;
	s->mark = keep;
	s->mark_term = keep > 0 ? s->cur.r[keep - 1].term0 : 0;
}

srec *sstore_write(sstore *s, const raft_entry *e, size_t n)
{
	uint64_t from = e[0].index;
	PL_ASSERT(n > 0 && from >= 1 && from <= s->cur.n + 1);
	mark_lower(s, from - 1);
	if (s->dirty_from == 0 || from < s->dirty_from)
		s->dirty_from = from;
	s->cur.n = (size_t)(from - 1);
	for (size_t i = 0; i < n; i++) {
		srec r = {.e = e[i],
		    .chk = 1,
		    .term0 = e[i].term,
		    .wid = ++s->next_wid};
		if (r.e.len > 0) {
			uint8_t *p = store_alloc(s, r.e.len);
			memcpy(p, e[i].data, r.e.len);
			r.e.data = p;
		}
		r.crc = rec_crc(&r.e);
		vec_push(&s->cur, &r);
	}
	s->dirty = true;
	return &s->cur.r[from - 1];
}

void sstore_truncate(sstore *s, uint64_t keep)
{
	mark_lower(s, keep);
	vec_cut(&s->cur, keep);
	vec_cut(&s->dur, keep);
	vec_cut(&s->img, keep);
	if (s->hsd.commit > keep)
		s->hsd.commit = keep;
	if (s->hs.commit > keep)
		s->hs.commit = keep;
	s->syncing = false;
	s->dirty = true;
	if (s->scrub_at > keep)
		s->scrub_at = 0;
}

void sstore_sync_start(sstore *s)
{
	vec_copy(&s->img, &s->cur);
	s->sync_index = s->cur.n;
	s->sync_term = s->cur.n ? s->cur.r[s->cur.n - 1].term0 : 0;
	s->sync_commit = s->hs.commit;
	s->syncing = true;
	s->dirty = false;
	s->dirty_from = 0;
}

void sstore_sync_done(sstore *s, uint64_t *index, uint64_t *term)
{
	PL_ASSERT(s->syncing);
	s->syncing = false;
	vec_copy(&s->dur, &s->img);
	s->hsd.commit = s->sync_commit;
	/* The mark covers what the sync made durable, short of what was
	 * written over since the capture. */
	s->mark = s->sync_index;
	s->mark_term = s->sync_term;
	if (s->dirty_from != 0 && s->dirty_from <= s->mark) {
		s->mark = s->dirty_from - 1;
		s->mark_term = s->mark > 0 ? s->dur.r[s->mark - 1].term0 : 0;
	}
	*index = s->sync_index;
	*term = s->sync_term;
}

size_t sstore_crash(sstore *s, size_t tear_n, uint32_t tear_bit, bool tear_cut)
{
	size_t torn = 0;
	if (tear_n > 0) {
		/* The unsynced writes start where the images part. */
		size_t k = 0;
		size_t lim = s->cur.n < s->dur.n ? s->cur.n : s->dur.n;
		while (k < lim && s->cur.r[k].wid == s->dur.r[k].wid)
			k++;
		PL_ASSERT(k >= s->mark);
		if (k < s->cur.n) {
			torn = s->cur.n - k < tear_n ? s->cur.n - k : tear_n;
			s->dur.n = k;
			for (size_t j = 0; j < torn; j++)
				vec_push(&s->dur, &s->cur.r[k + j]);
		}
		srec *last = torn > 0 ? &s->dur.r[s->dur.n - 1] : NULL;
		if (last != NULL && tear_bit != UINT32_MAX) {
			if (tear_cut && last->e.len > 0) {
				/* A torn sector: the payload stops short. */
				last->e.len = tear_bit % last->e.len;
			} else {
				rec_flip(s, last, tear_bit % 5, tear_bit / 5);
			}
			last->chk = 0;
			last->taint = 2;
		}
	}
	vec_copy(&s->cur, &s->dur);
	s->hs = s->hsd;
	s->syncing = false;
	s->dirty = false;
	s->dirty_from = 0;
	s->bad_at = 0;
	s->scrub_at = 0;
	return torn;
}

sstore_found sstore_recover(sstore *s, uint64_t *bad)
{
	sstore_found found = SSTORE_CLEAN;
	size_t good = 0;
	while (good < s->dur.n && sstore_rec_ok(&s->dur.r[good], good + 1))
		good++;
	if (good < s->dur.n) {
		*bad = good + 1;
		if (good + 1 <= s->mark) {
			raft_repair_note(&s->rep, s->mark, s->mark_term);
			found = SSTORE_DAMAGED;
		} else {
			found = SSTORE_TORN;
		}
		s->dur.n = good;
		if (s->hsd.commit > good)
			s->hsd.commit = good;
	}
	/* What the disk holds now is durable: a sync at start. */
	s->mark = s->dur.n;
	s->mark_term = s->dur.n ? s->dur.r[s->dur.n - 1].term0 : 0;
	vec_copy(&s->cur, &s->dur);
	s->hs = s->hsd;
	return found;
}

void sstore_flip(sstore *s, uint64_t index, unsigned field, uint32_t bit)
{
	PL_ASSERT(index >= 1 && index <= s->mark && index <= s->dur.n);
	srec *d = &s->dur.r[index - 1];
	uint64_t wid = d->wid;
	rec_flip(s, d, field, bit);
	/* The same record on disk is what the written image reads (they
	 * agree up to the mark), and what a sync under way keeps. */
	if (index <= s->cur.n) {
		PL_ASSERT(s->cur.r[index - 1].wid == wid);
		s->cur.r[index - 1] = *d;
	}
	if (s->syncing && index <= s->img.n && s->img.r[index - 1].wid == wid)
		s->img.r[index - 1] = *d;
}

void sstore_scrub(sstore *s, size_t n)
{
	if (s->cur.n == 0)
		return;
	if (n == SIZE_MAX) {
		for (size_t i = 0; i < s->cur.n; i++)
			if (!sstore_rec_ok(&s->cur.r[i], i + 1))
				note_bad(s, i + 1);
		return;
	}
	for (size_t k = 0; k < n; k++) {
		if (s->scrub_at >= s->cur.n)
			s->scrub_at = 0;
		uint64_t i = s->scrub_at++;
		if (!sstore_rec_ok(&s->cur.r[i], i + 1))
			note_bad(s, i + 1);
	}
}

static bool vec_tainted(const srec_vec *v)
{
	for (size_t i = 0; i < v->n; i++)
		if (v->r[i].taint == 1)
			return true;
	return false;
}

bool sstore_tainted(const sstore *s)
{
	return vec_tainted(&s->cur) || vec_tainted(&s->dur) ||
	       (s->syncing && vec_tainted(&s->img));
}
