/*
 * token.c - Ed25519 tenant tokens. A token is base64url(Claims protobuf)
 * "." base64url(signature over those bytes), both unpadded;
 * pl_token_verify trusts nothing in a token until the signature of a key
 * the keyring holds for its tenant has checked out.
 */
#include <string.h>

#include <sodium.h>

#include "proto/codec.h"
#include "proto/token.h"

#define SIG_BYTES crypto_sign_BYTES
/* Packed claims: strings at their bounds plus tags fit in 512 bytes. */
#define CLAIMS_BYTES_MAX 512
#define B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING

/* ---- mint ---- */

static void claims_to_pb(const pl_claims *c, Parley__Internal__Claims *pb)
{
	parley__internal__claims__init(pb);
	pb->tenant = (char *)c->tenant;
	pb->user = (char *)c->user;
	pb->role = (Parley__Role)c->role;
	pb->exp_s = c->exp_s;
	pb->room = (char *)c->room;
	pb->key_id = (char *)c->key_id;
}

pl_status pl_token_mint(
    const pl_claims *c, const uint8_t sk[64], char *out, size_t cap)
{
	Parley__Internal__Claims pb;
	uint8_t body[CLAIMS_BYTES_MAX];
	uint8_t sig[SIG_BYTES];
	size_t n;

	pl_crypto_ready();
	claims_to_pb(c, &pb);
	if (pl_pb_encode(&pb.base, body, sizeof(body), &n) != PL_OK)
		return PL_E_TOO_LARGE;
	crypto_sign_detached(sig, NULL, body, n, sk);
	size_t blen = sodium_base64_ENCODED_LEN(n, B64URL) - 1;
	size_t slen = sodium_base64_ENCODED_LEN(SIG_BYTES, B64URL) - 1;
	if (blen + 1 + slen + 1 > cap)
		return PL_E_TOO_LARGE;
	sodium_bin2base64(out, blen + 1, body, n, B64URL);
	out[blen] = '.';
	sodium_bin2base64(out + blen + 1, slen + 1, sig, SIG_BYTES, B64URL);
	return PL_OK;
}

/* ---- verify ---- */

/* Decodes len base64url chars; every char must be consumed. */
static bool b64url_decode(
    const char *s, size_t len, uint8_t *out, size_t cap, size_t *n)
{
	return len > 0 &&
	       sodium_base642bin(out, cap, s, len, NULL, n, NULL, B64URL) == 0;
}

/* The claims' strings passed pl_text_check on the wire (pl_claims_decode),
 * so each C string is the whole signed value and lengths are exact. NULL
 * when the claims are usable, else what is wrong with them. */
static const char *claims_fields_rule(const Parley__Internal__Claims *pb)
{
	int role = (int)pb->role;
	if (role <= PARLEY__ROLE__ROLE_NONE || role > PARLEY__ROLE__SERVICE)
		return "token role is not a role";
	if (!pl_slug_ok(pb->tenant, PL_TENANT_CHARS_MAX))
		return "token tenant is not a slug of [A-Za-z0-9._-] of 1-63 "
		       "bytes";
	if (strnlen(pb->key_id, PL_KEY_ID_CHARS_MAX + 1) > PL_KEY_ID_CHARS_MAX)
		return "token key id exceeds 31 bytes";
	size_t ulen = strnlen(pb->user, PL_USER_CHARS_MAX + 1);
	if (ulen == 0 || ulen > PL_USER_CHARS_MAX)
		return "token user must be 1-127 bytes";
	if (pb->room[0] != '\0' &&
	    pl_room_rule(pb->room, strnlen(pb->room, PL_ROOM_ID_CHARS + 1)) !=
	        NULL)
		return "token room scope is not a room id";
	return NULL;
}

/* An empty key_id means "any key of the tenant": tokens minted before the
 * tenant had a second key still verify during a rotation. */
static bool signature_ok(const pl_tenant *t, const char *key_id,
    const uint8_t *sig, const uint8_t *body, size_t n)
{
	for (int i = 0; i < t->nkeys; i++) {
		if (key_id[0] != '\0' && strcmp(t->keys[i].key_id, key_id) != 0)
			continue;
		if (crypto_sign_verify_detached(sig, body, n, t->keys[i].pk) ==
		    0)
			return true;
	}
	return false;
}

static void claims_from_pb(const Parley__Internal__Claims *pb, pl_claims *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->tenant, pb->tenant); /* lengths checked by claims_fields_ok */
	strcpy(c->user, pb->user);
	c->role = (int)pb->role;
	c->exp_s = pb->exp_s;
	strcpy(c->room, pb->room);
	strcpy(c->key_id, pb->key_id);
}

/* Sets *why (when why is not NULL) and answers unauthorized. */
static pl_status refuse(const char **why, const char *text)
{
	if (why != NULL)
		*why = text;
	return PL_E_UNAUTHORIZED;
}

pl_status pl_token_verify(
    const pl_keyring *kr, const char *token, int64_t now_s, pl_claims *out)
{
	return pl_token_verify_why(kr, token, now_s, out, NULL);
}

pl_status pl_token_verify_why(const pl_keyring *kr, const char *token,
    int64_t now_s, pl_claims *out, const char **why)
{
	uint8_t body[PL_TOKEN_CHARS_MAX], sig[SIG_BYTES + 1];
	uint8_t arena_buf[PL_ARENA_BYTES_FOR(PL_TOKEN_CHARS_MAX)];
	size_t blen, slen;
	pl_arena a;
	Parley__Internal__Claims *pb;

	pl_crypto_ready();
	size_t len = token != NULL ? strnlen(token, PL_TOKEN_CHARS_MAX + 1) : 0;
	const char *dot = len > 0 ? memchr(token, '.', len) : NULL;
	if (len == 0)
		return refuse(why, "no token");
	if (len > PL_TOKEN_CHARS_MAX)
		return refuse(why, "token exceeds 1024 bytes");
	if (dot == NULL)
		return refuse(why, "token is not claims.signature");
	size_t dpos = (size_t)(dot - token);
	if (!b64url_decode(token, dpos, body, sizeof(body), &blen) ||
	    !b64url_decode(dot + 1, len - dpos - 1, sig, sizeof(sig), &slen) ||
	    slen != SIG_BYTES)
		return refuse(why, "token is not base64url claims.signature");
	PL_ASSERT(pl_arena_init(&a, arena_buf, sizeof(arena_buf)) == PL_OK);
	if (pl_claims_decode(body, blen, &a, &pb) != PL_OK)
		return refuse(why, "token claims are undecodable or hold a "
		                   "string that is not UTF-8 without NUL");
	const char *rule = claims_fields_rule(pb);
	if (rule != NULL)
		return refuse(why, rule);
	const pl_tenant *t = pl_keyring_find(kr, pb->tenant);
	/* One answer for both: which tenants exist is not a client's business.
	 */
	if (t == NULL || !signature_ok(t, pb->key_id, sig, body, blen))
		return refuse(why, "token signature does not verify with the "
		                   "tenant's keys");
	if (pb->exp_s <= now_s)
		return refuse(why, "token expired");
	claims_from_pb(pb, out);
	return PL_OK;
}
