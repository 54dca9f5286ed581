/*
 * map.c - the cluster map in the meta group's store: one record in
 * `meta` ("cluster_map", an encoded parley.cluster.Map) that every
 * replica changes the same way, by applying MapCmd entries in log order
 * with proto/map.h's pure pl_map_apply. A refused change is an outcome
 * (the map unchanged, the reason in the result), not a store failure.
 * The record travels in snapshots like every other, so a new meta
 * replica receives the map it has to serve.
 */
#include <stdlib.h>
#include <string.h>

#include "broker/store/store_internal.h"
#include "proto/map.h"

#define MAP_KEY "cluster_map"

/* The stored map, decoded into m (initialised and empty when none). */
static pl_status map_load(brk_wtxn *w, pl_map *m)
{
	MDB_val v;
	pl_map_init(m);
	pl_status st = brk_wtxn_get(w, w->s->meta, MAP_KEY, strlen(MAP_KEY), &v);
	if (st == PL_E_NOT_FOUND)
		return PL_OK;
	if (st != PL_OK)
		return st;
	/* The replica wrote it: one that does not decode is damage. */
	return pl_map_decode(m, v.mv_data, v.mv_size) == PL_OK ? PL_OK
	                                                       : PL_E_CORRUPT;
}

pl_status brk_apply_map(
    brk_wtxn *w, const Parley__Internal__MapCmd *cmd, brk_applied *res)
{
	pl_map m;
	pl_status st = map_load(w, &m);
	if (st != PL_OK) {
		pl_map_fini(&m);
		return st;
	}
	bool changed = false;
	res->why[0] = '\0';
	pl_status out = pl_map_apply(&m, cmd->change.data, cmd->change.len,
	    &changed, res->why, sizeof(res->why));
	res->changed = out == PL_OK && changed;
	res->map_version = m.version;
	if (res->changed) {
		uint8_t *buf;
		size_t len;
		st = pl_map_encode(&m, &buf, &len);
		if (st == PL_OK) {
			st = brk_wtxn_put(w, w->s->meta, MAP_KEY,
			    strlen(MAP_KEY), buf, len);
			free(buf);
		}
	}
	pl_map_fini(&m);
	if (st != PL_OK)
		return st; /* the store's failure: the round fails */
	return out;
}

pl_status brk_store_map_read(
    brk_store *s, uint8_t **out, size_t *len, uint64_t *version)
{
	MDB_txn *txn;
	*out = NULL;
	*len = 0;
	*version = 0;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != MDB_SUCCESS)
		return brk_mdb_status(rc);
	MDB_val k = {strlen(MAP_KEY), (void *)MAP_KEY}, v;
	pl_status st = PL_OK;
	rc = mdb_get(txn, s->meta, &k, &v);
	if (rc == MDB_SUCCESS) {
		pl_map m;
		if (pl_map_decode(&m, v.mv_data, v.mv_size) != PL_OK) {
			st = PL_E_CORRUPT;
		} else {
			*version = m.version;
			*out = malloc(v.mv_size ? v.mv_size : 1);
			if (*out == NULL) {
				st = PL_E_NOMEM;
			} else {
				memcpy(*out, v.mv_data, v.mv_size);
				*len = v.mv_size;
			}
		}
		pl_map_fini(&m);
	} else if (rc != MDB_NOTFOUND) {
		st = brk_mdb_status(rc);
	}
	mdb_txn_abort(txn);
	return st;
}
