/*
 * days.c - the tenant day aggregates (the README's
 * "Consultation statistics", per tenant per day) as a round moves them:
 * applying a command adds its brk_day_delta to the day of the command's
 * timestamp, in a cache of ROUND_DAYS_CACHED_MAX (tenant, day) slots that is
 * written to the `days` DBI when the round commits, when the cache is full, and
 * before a report reads the DBI.
 *
 * Invariants: a slot is loaded from the DBI before it is first changed,
 * so a flush writes the whole day; the slots written are exactly
 * days_cache[0, ndays), and ndays is 0 after a flush.
 *
 * Entry points (store_internal.h): brk_days_add, brk_days_flush,
 * brk_days_key.
 */
#include <stdio.h>
#include <string.h>

#include "broker/store/store_internal.h"

size_t brk_days_key(uint8_t *out, size_t cap, const char *tenant, uint32_t day)
{
	uint8_t dk[4] = {(uint8_t)(day >> 24), (uint8_t)(day >> 16),
	    (uint8_t)(day >> 8), (uint8_t)day};
	return tenant_key(out, cap, tenant, dk, 4);
}

static pl_status day_slot_get(
    brk_wtxn *w, const char *tenant, uint32_t day, day_slot **out)
{
	brk_store *s = w->s;
	for (int i = 0; i < w->ndays; i++) {
		day_slot *d = &s->days_cache[i];
		if (d->day == day && strcmp(d->tenant, tenant) == 0) {
			*out = d;
			return PL_OK;
		}
	}
	if (w->ndays == ROUND_DAYS_CACHED_MAX) {
		pl_status st = brk_days_flush(w);
		if (st != PL_OK)
			return st;
	}
	PL_ASSERT(w->ndays < ROUND_DAYS_CACHED_MAX);
	day_slot *d = &s->days_cache[w->ndays];
	memset(d, 0, sizeof(*d));
	snprintf(d->tenant, sizeof(d->tenant), "%s", tenant);
	d->day = day;
	parley__internal__tenant_day_rec__init(&d->rec);
	uint8_t key[PL_TENANT_CHARS_MAX + 8];
	size_t kl = brk_days_key(key, sizeof(key), tenant, day);
	MDB_val v;
	if (kl != 0 && brk_wtxn_get(w, s->days, key, kl, &v) == PL_OK) {
		uint8_t buf[PL_ARENA_BYTES_FOR(PL_TENANT_DAY_REC_BYTES_MAX)];
		pl_arena a;
		Parley__Internal__TenantDayRec *r;
		PL_ASSERT(pl_arena_init(&a, buf, sizeof(buf)) == PL_OK);
		if (pl_tenant_day_rec_decode(v.mv_data, v.mv_size, &a, &r) ==
		    PL_OK) {
			/* Counters only: the tenant is set below, and nothing
			 * may point into the arena past this block. */
			d->rec = *r;
			d->rec.tenant = NULL;
			d->rec.base.n_unknown_fields = 0;
			d->rec.base.unknown_fields = NULL;
		}
	}
	d->rec.tenant = d->tenant;
	d->rec.day = day;
	w->ndays++;
	*out = d;
	return PL_OK;
}

pl_status brk_days_add(brk_wtxn *w, const char *tenant, const brk_day_delta *dd)
{
	day_slot *d;
	uint32_t day = (uint32_t)(dd->day_ts_us / (86400LL * 1000000));
	pl_status st = day_slot_get(w, tenant, day, &d);
	if (st != PL_OK)
		return st;
	Parley__Internal__TenantDayRec *r = &d->rec;
	r->rooms_created += dd->rooms_created;
	r->rooms_closed += dd->rooms_closed;
	r->messages += dd->messages;
	if (dd->wait_us >= 0) {
		r->wait_us_sum += dd->wait_us;
		r->wait_n++;
	}
	if (dd->first_response_us >= 0) {
		r->first_response_us_sum += dd->first_response_us;
		r->first_response_n++;
	}
	if (dd->handle_us >= 0) {
		r->handle_us_sum += dd->handle_us;
		r->handle_n++;
	}
	return PL_OK;
}

pl_status brk_days_flush(brk_wtxn *w)
{
	brk_store *s = w->s;
	for (int i = 0; i < w->ndays; i++) {
		day_slot *d = &s->days_cache[i];
		uint8_t key[PL_TENANT_CHARS_MAX + 8];
		size_t n;
		size_t kl = brk_days_key(key, sizeof(key), d->tenant, d->day);
		pl_status st =
		    pl_pb_encode(&d->rec.base, s->buf, ENTRY_BYTES_MAX, &n);
		if (st == PL_OK)
			st = brk_wtxn_put(w, s->days, key, kl, s->buf, n);
		if (st != PL_OK)
			return st;
	}
	w->ndays = 0;
	return PL_OK;
}
