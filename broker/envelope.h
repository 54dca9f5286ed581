/*
 * envelope.h - what one broker sends another: a PeerBatch (the Raft
 * messages, snapshot chunks and acks of one group for one peer), packed,
 * zstd-compressed when large, and sealed (auth.c). Its layout:
 *
 *   seal( 0x00 PeerBatch )                                   small
 *   seal( 0x01 raw_len:u32be zstd(PeerBatch) )               compressed
 *
 * Opening checks, in order: the seal (MAC and replay), the sender's group,
 * the flag, the declared size (at most the frame ceiling), that zstd gives
 * exactly that many bytes, and the PeerBatch through the codec
 * (pl_peer_batch_decode) with its group. Every byte that arrives from a
 * peer goes through brk_envelope_open; tests/fuzz/fuzz_envelope.c feeds it.
 */
#ifndef PARLEY_BROKER_ENVELOPE_H
#define PARLEY_BROKER_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include <zstd.h>

#include "broker/auth.h"
#include "proto/codec.h"

/* Batches of this size or more are compressed (when it makes them
 * shorter): appends of chat text compress well, small control messages
 * are not worth it. */
#define BRK_ENVELOPE_COMPRESS_BYTES 4096
/* Flag and size in front of a compressed batch. */
#define BRK_ENVELOPE_HEADER_BYTES 5
#define BRK_ENVELOPE_OVERHEAD_BYTES                                            \
	(BRK_ENVELOPE_HEADER_BYTES + BRK_AUTH_OVERHEAD)

typedef struct brk_envelope {
	uint8_t *buf;  /* flag + packed batch */
	uint8_t *zbuf; /* header + compressed batch */
	size_t zcap;
	const uint8_t *out; /* the packed payload: buf or zbuf */
	size_t out_len;
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
} brk_envelope;

pl_status brk_envelope_init(brk_envelope *e);
void brk_envelope_fini(brk_envelope *e); /* accepts a zeroed one */

/* Packs b (compressing it when large) into e. *sealed_len: the bytes the
 * sealed message will take. PL_E_TOO_LARGE past the frame ceiling. */
pl_status brk_envelope_pack(
    brk_envelope *e, const Parley__Internal__PeerBatch *b, size_t *sealed_len);
/* Seals what the last pack left in e into out (cap bytes). */
pl_status brk_envelope_seal(
    brk_envelope *e, brk_auth *auth, uint8_t *out, size_t cap, size_t *n);

/* Opens a sealed message of n bytes from a replica of group. On success
 * *b is the decoded batch, *sender the sealed sender id ((group << 16) |
 * node); a (initialised here, owned: the caller calls pl_arena_fini) and
 * *raw (a decompression buffer or NULL; the caller frees it) hold it.
 * On failure nothing is left to free. PL_E_UNAUTHORIZED: bad seal or
 * replay; PL_E_PROTO: anything else wrong. */
pl_status brk_envelope_open(brk_envelope *e, brk_auth *auth, uint32_t group,
    const uint8_t *msg, size_t n, pl_arena *a, uint8_t **raw, uint64_t *sender,
    Parley__Internal__PeerBatch **b);

#endif
