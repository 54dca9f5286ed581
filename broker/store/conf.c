/*
 * conf.c - the group's Raft configuration in its store: one record in
 * `meta` ("raft_conf", the encoded raft_conf of the last configuration
 * entry applied), written in the transaction that applies the entry.
 *
 * Why it is stored: Raft needs the configuration as of its snapshot point
 * (raft_storage.load) once compaction has dropped the entry that set it,
 * and a replica receiving a snapshot must learn the configuration with
 * the data. The snapshot point is always at or below applied, and every
 * configuration entry between the two is still in the log, so the
 * configuration as of applied serves as the snapshot's: the core takes
 * the latest entry of its log over it, and a truncation removes only
 * entries above commit (>= applied). A copy of the store sent as a
 * snapshot carries the record of its own applied index.
 *
 * A group that never changed its membership has no record: its
 * configuration is still the bootstrap one from the node's config.
 */
#include <string.h>

#include "broker/store/store_internal.h"

#define CONF_KEY "raft_conf"

pl_status brk_apply_conf(brk_wtxn *w, const raft_entry *e)
{
	raft_conf c;
	/* The core validated it when it was appended; one that does not
	 * decode here is damage of the log, found the same way on every
	 * replica that applies it. */
	if (raft_conf_decode(e->data, e->len, &c) != PL_OK)
		return PL_E_CORRUPT;
	return brk_wtxn_put(
	    w, w->s->meta, CONF_KEY, strlen(CONF_KEY), e->data, e->len);
}

pl_status brk_store_conf(brk_store *s, raft_conf *out)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != MDB_SUCCESS)
		return brk_mdb_status(rc);
	MDB_val k = {strlen(CONF_KEY), (void *)CONF_KEY}, v;
	pl_status st;
	rc = mdb_get(txn, s->meta, &k, &v);
	if (rc == MDB_SUCCESS)
		st = raft_conf_decode(v.mv_data, v.mv_size, out) == PL_OK
		         ? PL_OK
		         : PL_E_CORRUPT;
	else
		st = rc == MDB_NOTFOUND ? PL_E_NOT_FOUND : brk_mdb_status(rc);
	mdb_txn_abort(txn);
	return st;
}
