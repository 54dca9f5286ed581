/*
 * sim_store.h - the simulation's model of one replica's log store, faithful
 * to the broker's LMDB log in what matters for safety: every entry is
 * stored with a CRC32C over index, term, type and payload and checked on
 * every read; writes are readable at once but durable only after a sync;
 * a crash loses what was not synced, and may leave a torn tail (a prefix
 * of the unsynced writes, the last one possibly damaged); bit flips strike
 * synced entries. A "sync mark" records (index, term) of the last entry a
 * completed sync covered; it is lowered before synced entries are
 * rewritten, so at restart a bad CRC at or below it is damage (repair)
 * and above it a torn tail (truncate). The model is deterministic: the
 * simulation draws every random choice and passes it in.
 */
#ifndef PARLEY_SIM_STORE_H
#define PARLEY_SIM_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "raft/raft.h"

/* One stored entry: the bytes as on disk, and the model's bookkeeping. */
typedef struct srec {
	raft_entry e;   /* as stored: any field may be damaged */
	uint32_t crc;   /* as stored: CRC32C of index, term, type, payload */
	uint8_t chk;    /* cached check of these bytes: 0 not yet, 1, 2 bad */
	uint8_t taint;  /* a fault's damage: 0 none, 1 flip, 2 torn write
	                 * (bookkeeping, never read by the driver) */
	uint64_t term0; /* term as written: the driver's in-memory copy */
	uint64_t wid;   /* the write that stored it: same wid, same bytes */
} srec;

typedef struct srec_vec {
	srec *r; /* r[i] = entry i + 1 */
	size_t n, cap;
} srec_vec;

typedef struct sstore_chunk sstore_chunk;

typedef struct sstore {
	srec_vec cur; /* written: what reads see */
	srec_vec dur; /* durable: what a crash leaves */
	srec_vec img; /* captured by the sync under way */
	raft_conf boot;
	raft_hard_state hs; /* last written */
	raft_hard_state
	    hsd;         /* durable (term and vote at once, commit at sync) */
	raft_repair rep; /* durable repair record (raft_log_damaged) */
	uint64_t mark, mark_term; /* durable: last entry a sync covered */
	bool dirty;               /* written since the last sync capture */
	bool syncing;
	uint64_t sync_index, sync_term, sync_commit;
	uint64_t dirty_from; /* lowest index written since the capture */
	uint64_t bad_at;     /* lowest index a read found bad, not reported */
	uint64_t scrub_at;   /* rolling scrub cursor (0-based) */
	uint64_t next_wid;
	sstore_chunk *arena; /* payload copies, freed by sstore_fini */
} sstore;

/* What sstore_recover found. */
typedef enum sstore_found {
	SSTORE_CLEAN = 0,
	SSTORE_TORN,    /* bad entry above the mark: unsynced, dropped */
	SSTORE_DAMAGED, /* bad entry at or below the mark: repair noted */
} sstore_found;

/* The storage callbacks; ctx is the sstore. */
extern const raft_storage sstore_storage;

void sstore_fini(sstore *s);

/* Checks record r (entry `index`): its CRC and its key. Cached. */
bool sstore_rec_ok(srec *r, uint64_t index);

/* Writes entries e[0..n) at e[0].index (<= last + 1), replacing any at
 * or above it: copies the payloads, computes the CRCs. A write below the
 * mark lowers it first (the driver makes that durable before the batch,
 * one extra sync on the rare conflict truncation). Returns the first new
 * record. */
srec *sstore_write(sstore *s, const raft_entry *e, size_t n);

/* Damage found: truncates every image to keep entries, durably, lowers
 * the stored commit and the mark, and abandons the sync under way (its
 * report could name entries written again since). */
void sstore_truncate(sstore *s, uint64_t keep);

/* A sync captures the written log and hard state now; sstore_sync_done
 * makes the capture durable and returns the (index, term) to report. */
void sstore_sync_start(sstore *s);
void sstore_sync_done(sstore *s, uint64_t *index, uint64_t *term);

/* A crash: unsynced writes are lost. When tear_n > 0, the first tear_n
 * of the unsynced entries (at most all of them) reached the disk anyway,
 * and when tear_bit is not UINT32_MAX the last of them is damaged:
 * tear_bit selects a bit to flip or, for tear_cut, a payload cut. Returns
 * the number of torn entries written. */
size_t sstore_crash(sstore *s, size_t tear_n, uint32_t tear_bit, bool tear_cut);

/* At restart, before raft_new: checks every durable entry, truncates at
 * the first bad one and tells torn tails from damage by the mark; for
 * damage, notes the repair (raft_repair_note) and lowers the stored
 * commit. Everything left counts as synced. *bad gets the bad index. */
sstore_found sstore_recover(sstore *s, uint64_t *bad);

/* A bit flip in synced entry `index` (1 <= index <= mark): in the durable
 * image, and in the written and captured ones where they hold the same
 * record. field: 0 payload, 1 term, 2 index, 3 type, 4 crc. */
void sstore_flip(sstore *s, uint64_t index, unsigned field, uint32_t bit);

/* Checks the next n written entries (a background scrubber), noting the
 * first bad one in bad_at. n == SIZE_MAX: the whole log. */
void sstore_scrub(sstore *s, size_t n);

/* True when any image holds an entry damaged by a bit flip (a torn
 * tail is a crash's ordinary loss, not damage). */
bool sstore_tainted(const sstore *s);

#endif /* PARLEY_SIM_STORE_H */
