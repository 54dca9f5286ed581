/*
 * envelope.c - the peer envelope (envelope.h).
 */
#include <stdlib.h>
#include <string.h>

#include "broker/envelope.h"

pl_status brk_envelope_init(brk_envelope *e)
{
	memset(e, 0, sizeof(*e));
	e->buf = malloc(PL_FRAME_BYTES_CEIL);
	e->zcap =
	    ZSTD_compressBound(PL_FRAME_BYTES_CEIL) + BRK_ENVELOPE_HEADER_BYTES;
	e->zbuf = malloc(e->zcap);
	e->zc = ZSTD_createCCtx();
	e->zd = ZSTD_createDCtx();
	if (e->buf == NULL || e->zbuf == NULL || e->zc == NULL ||
	    e->zd == NULL) {
		brk_envelope_fini(e);
		return PL_E_NOMEM;
	}
	return PL_OK;
}

void brk_envelope_fini(brk_envelope *e)
{
	free(e->buf);
	free(e->zbuf);
	ZSTD_freeCCtx(e->zc);
	ZSTD_freeDCtx(e->zd);
	memset(e, 0, sizeof(*e));
}

pl_status brk_envelope_pack(
    brk_envelope *e, const Parley__Internal__PeerBatch *b, size_t *sealed_len)
{
	size_t len = parley__internal__peer_batch__get_packed_size(b);
	if (len + BRK_ENVELOPE_OVERHEAD_BYTES > PL_FRAME_BYTES_CEIL)
		return PL_E_TOO_LARGE;
	e->buf[0] = 0;
	PL_ASSERT(parley__internal__peer_batch__pack(b, e->buf + 1) == len);
	e->out = e->buf;
	e->out_len = len + 1;
	if (len >= BRK_ENVELOPE_COMPRESS_BYTES) {
		uint8_t *z = e->zbuf;
		size_t zn = ZSTD_compressCCtx(e->zc,
		    z + BRK_ENVELOPE_HEADER_BYTES,
		    e->zcap - BRK_ENVELOPE_HEADER_BYTES, e->buf + 1, len, 1);
		if (!ZSTD_isError(zn) &&
		    zn + BRK_ENVELOPE_HEADER_BYTES < e->out_len) {
			z[0] = 1;
			z[1] = (uint8_t)(len >> 24);
			z[2] = (uint8_t)(len >> 16);
			z[3] = (uint8_t)(len >> 8);
			z[4] = (uint8_t)len;
			e->out = z;
			e->out_len = zn + BRK_ENVELOPE_HEADER_BYTES;
		}
	}
	*sealed_len = e->out_len + BRK_AUTH_OVERHEAD;
	return PL_OK;
}

pl_status brk_envelope_seal(
    brk_envelope *e, brk_auth *auth, uint8_t *out, size_t cap, size_t *n)
{
	PL_ASSERT(e->out != NULL);
	return brk_auth_seal(auth, e->out, e->out_len, out, cap, n);
}

pl_status brk_envelope_open(brk_envelope *e, brk_auth *auth, uint32_t group,
    const uint8_t *msg, size_t n, pl_arena *a, uint8_t **raw, uint64_t *sender,
    Parley__Internal__PeerBatch **b)
{
	uint64_t from;
	const uint8_t *p;
	size_t len;
	uint8_t *dec = NULL;
	if (brk_auth_open(auth, msg, n, &from, &p, &len) != PL_OK)
		return PL_E_UNAUTHORIZED;
	if (len < 1 || (from >> 16) != group)
		return PL_E_PROTO;
	if (p[0] == 1) {
		if (len < BRK_ENVELOPE_HEADER_BYTES)
			return PL_E_PROTO;
		size_t want = (size_t)p[1] << 24 | (size_t)p[2] << 16 |
		              (size_t)p[3] << 8 | p[4];
		if (want > PL_FRAME_BYTES_CEIL ||
		    (dec = malloc(want ? want : 1)) == NULL)
			return PL_E_PROTO;
		size_t got = ZSTD_decompressDCtx(e->zd, dec, want,
		    p + BRK_ENVELOPE_HEADER_BYTES,
		    len - BRK_ENVELOPE_HEADER_BYTES);
		if (ZSTD_isError(got) || got != want) {
			free(dec);
			return PL_E_PROTO;
		}
		p = dec;
		len = want;
	} else if (p[0] == 0) {
		p++;
		len--;
	} else {
		return PL_E_PROTO;
	}
	Parley__Internal__PeerBatch *pb;
	if (pl_arena_init(a, NULL, PL_ARENA_BYTES_FOR(len)) != PL_OK) {
		free(dec);
		return PL_E_PROTO;
	}
	if (pl_peer_batch_decode(p, len, a, &pb) != PL_OK ||
	    pb->group != group) {
		pl_arena_fini(a);
		free(dec);
		return PL_E_PROTO;
	}
	*raw = dec;
	*sender = from;
	*b = pb;
	return PL_OK;
}
