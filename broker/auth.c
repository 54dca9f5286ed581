/*
 * auth.c - proof of cluster membership for broker-to-broker messages
 * (docs/replication.md, "Transport between brokers"). Every message is
 * sealed with the sender's id, a counter that only grows, and an
 * HMAC-SHA-512-256 (libsodium crypto_auth) keyed with the cluster secret
 * over both and the payload. A receiver accepts a message only if the MAC
 * verifies and the counter is above the last one it accepted from that
 * sender, so a process without the secret cannot vote, append or be
 * counted, and a recorded message cannot be played again.
 *
 * Counters start at (wall-clock seconds at start) << 24, so a restarted
 * broker continues above what its peers saw from its previous run as long
 * as it sends fewer than 2^24 messages per second of uptime and the clock
 * does not step back by more than its downtime.
 */
#include <string.h>

#include <sodium.h>

#include "broker/auth.h"

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

pl_status brk_auth_init(brk_auth *a, const uint8_t secret[BRK_SECRET_BYTES],
    uint64_t self_id, int64_t now_s)
{
	if (self_id == 0 || now_s <= 0 || sodium_init() < 0)
		return PL_E_CONFIG;
	memset(a, 0, sizeof(*a));
	memcpy(a->key, secret, BRK_SECRET_BYTES);
	a->self = self_id;
	a->counter = (uint64_t)now_s << 24;
	return PL_OK;
}

void brk_auth_fini(brk_auth *a)
{
	if (a != NULL)
		sodium_memzero(a, sizeof(*a));
}

static void mac(const brk_auth *a, const uint8_t *hdr, const uint8_t *p,
    size_t n, uint8_t out[crypto_auth_BYTES])
{
	crypto_auth_hmacsha512256_state st;
	crypto_auth_hmacsha512256_init(&st, a->key, BRK_SECRET_BYTES);
	crypto_auth_hmacsha512256_update(&st, hdr, 16);
	crypto_auth_hmacsha512256_update(&st, p, n);
	crypto_auth_hmacsha512256_final(&st, out);
}

pl_status brk_auth_seal(brk_auth *a, const uint8_t *payload, size_t n,
    uint8_t *out, size_t cap, size_t *len)
{
	if (cap < BRK_AUTH_OVERHEAD || n > cap - BRK_AUTH_OVERHEAD)
		return PL_E_TOO_LARGE;
	put_u64(out, a->self);
	put_u64(out + 8, ++a->counter);
	mac(a, out, payload, n, out + 16);
	memcpy(out + BRK_AUTH_OVERHEAD, payload, n);
	*len = BRK_AUTH_OVERHEAD + n;
	return PL_OK;
}

static brk_auth_peer *peer_slot(brk_auth *a, uint64_t id)
{
	for (int i = 0; i < a->npeers; i++)
		if (a->peers[i].id == id)
			return &a->peers[i];
	if (a->npeers == BRK_AUTH_PEERS_MAX)
		return NULL;
	brk_auth_peer *p = &a->peers[a->npeers++];
	p->id = id;
	p->last = 0;
	return p;
}

pl_status brk_auth_open(brk_auth *a, const uint8_t *msg, size_t n,
    uint64_t *sender, const uint8_t **payload, size_t *plen)
{
	uint8_t want[crypto_auth_BYTES];
	if (n < BRK_AUTH_OVERHEAD)
		return PL_E_UNAUTHORIZED;
	uint64_t id = get_u64(msg), counter = get_u64(msg + 8);
	mac(a, msg, msg + BRK_AUTH_OVERHEAD, n - BRK_AUTH_OVERHEAD, want);
	if (sodium_memcmp(want, msg + 16, crypto_auth_BYTES) != 0)
		return PL_E_UNAUTHORIZED;
	if (id == 0 || id == a->self)
		return PL_E_UNAUTHORIZED; /* a reflected message of our own */
	brk_auth_peer *p = peer_slot(a, id);
	if (p == NULL)
		return PL_E_BACKPRESSURE;
	if (counter <= p->last)
		return PL_E_UNAUTHORIZED; /* a replay */
	p->last = counter;
	*sender = id;
	*payload = msg + BRK_AUTH_OVERHEAD;
	*plen = n - BRK_AUTH_OVERHEAD;
	return PL_OK;
}

pl_status brk_secret_parse(const char *b64, uint8_t out[BRK_SECRET_BYTES])
{
	uint8_t tmp[BRK_SECRET_BYTES];
	size_t n = 0;
	if (b64 == NULL ||
	    sodium_base642bin(tmp, sizeof(tmp), b64, strlen(b64), " \t\r\n", &n,
	        NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    n != BRK_SECRET_BYTES)
		return PL_E_CONFIG;
	memcpy(out, tmp, BRK_SECRET_BYTES);
	sodium_memzero(tmp, sizeof(tmp));
	return PL_OK;
}
