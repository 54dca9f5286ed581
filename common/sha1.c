/*
 * sha1.c - SHA-1 (FIPS 180-4) for the one place the protocol demands it:
 * the WebSocket handshake's Sec-WebSocket-Accept (RFC 6455 section 4.2.2).
 * Not for anything that needs collision resistance; libsodium has no SHA-1.
 * Tested against the vectors of RFC 3174 and the handshake of RFC 6455.
 */
#include <string.h>

#include "common/common.h"

static uint32_t rol(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

/* One 64-byte block into the state h. */
static void sha1_block(uint32_t h[5], const uint8_t *p)
{
	uint32_t w[80];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
	for (int i = 0; i < 80; i++) {
		uint32_t f, k;
		if (i < 20) {
			f = (b & c) | (~b & d);
			k = 0x5A827999u;
		} else if (i < 40) {
			f = b ^ c ^ d;
			k = 0x6ED9EBA1u;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8F1BBCDCu;
		} else {
			f = b ^ c ^ d;
			k = 0xCA62C1D6u;
		}
		uint32_t t = rol(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = rol(b, 30);
		b = a;
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

void pl_sha1_init(pl_sha1 *s)
{
	static const uint32_t h0[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu,
	    0x10325476u, 0xC3D2E1F0u};
	memcpy(s->h, h0, sizeof(h0));
	s->bytes = 0;
	s->blen = 0;
}

void pl_sha1_update(pl_sha1 *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	s->bytes += len;
	while (len > 0) {
		size_t n = sizeof(s->block) - s->blen;
		if (n > len)
			n = len;
		memcpy(s->block + s->blen, p, n);
		s->blen += (uint32_t)n;
		p += n;
		len -= n;
		if (s->blen == sizeof(s->block)) {
			sha1_block(s->h, s->block);
			s->blen = 0;
		}
	}
}

void pl_sha1_final(pl_sha1 *s, uint8_t out[PL_SHA1_BYTES])
{
	uint64_t bits = s->bytes * 8;
	uint8_t pad[72] = {0x80};
	/* 0x80, zeros up to 56 mod 64, then the 64-bit length. */
	size_t n = (s->blen < 56 ? 56 : 120) - s->blen;
	for (int i = 0; i < 8; i++)
		pad[n + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
	pl_sha1_update(s, pad, n + 8);
	for (int i = 0; i < 5; i++) {
		out[4 * i] = (uint8_t)(s->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)s->h[i];
	}
}
