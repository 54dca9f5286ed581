/*
 * token.c - Ed25519 tenant tokens and key files. A token is
 * base64url(Claims protobuf) "." base64url(signature over those bytes),
 * both unpadded; pl_token_verify trusts nothing in a token until the
 * signature of a key the keyring holds for its tenant has checked out.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "common/common.h"
#include "proto/codec.h"

#define SIG_BYTES crypto_sign_BYTES
/* Packed claims: strings at their bounds plus tags fit in 512 bytes. */
#define CLAIMS_BYTES_MAX 512
#define B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define B64STD sodium_base64_VARIANT_ORIGINAL
#define KEYFILE_LINE_CHARS_MAX 255

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_init_once(void)
{
	/* Fails only when the system has no randomness source at all. */
	PL_ASSERT(sodium_init() >= 0);
}

static void crypto_ready(void)
{
	pthread_once(&sodium_once, sodium_init_once);
}

/* ---- keyring ---- */

/* Tenant ids and key ids are slugs: they appear in config keys, log lines
 * and LMDB keys (tenant NUL ...), so no separators or controls. */
static bool slug_ok(const char *s, size_t max)
{
	size_t n = s != NULL ? strnlen(s, max + 1) : 0;
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		          c == '.';
		if (!ok)
			return false;
	}
	return true;
}

const pl_tenant *pl_keyring_find(const pl_keyring *kr, const char *tenant)
{
	for (int i = 0; i < kr->ntenants; i++) {
		if (strcmp(kr->tenants[i].id, tenant) == 0)
			return &kr->tenants[i];
	}
	return NULL;
}

pl_status pl_keyring_add(pl_keyring *kr, const char *tenant, const char *key_id,
    const uint8_t pk[32])
{
	if (!slug_ok(tenant, PL_TENANT_CHARS_MAX) ||
	    !slug_ok(key_id, PL_KEY_ID_CHARS_MAX))
		return PL_E_BAD_REQUEST;
	pl_tenant *t = (pl_tenant *)pl_keyring_find(kr, tenant);
	if (t == NULL) {
		if (kr->ntenants >= PL_TENANTS_MAX)
			return PL_E_TOO_LARGE;
		t = &kr->tenants[kr->ntenants++];
		memset(t, 0, sizeof(*t));
		strcpy(t->id, tenant);
	}
	for (int i = 0; i < t->nkeys; i++) {
		if (strcmp(t->keys[i].key_id, key_id) == 0)
			return PL_E_EXISTS;
	}
	if (t->nkeys >= PL_KEYS_PER_TENANT_MAX)
		return PL_E_TOO_LARGE;
	pl_tenant_key *k = &t->keys[t->nkeys++];
	strcpy(k->key_id, key_id);
	memcpy(k->pk, pk, sizeof(k->pk));
	return PL_OK;
}

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

	crypto_ready();
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
	if (!slug_ok(pb->tenant, PL_TENANT_CHARS_MAX))
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

	crypto_ready();
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

/* ---- keys in base64 ---- */

pl_status pl_b64_decode_key(const char *b64, uint8_t *out, size_t outlen)
{
	uint8_t buf[64];
	size_t n;
	if (b64 == NULL || outlen > sizeof(buf) ||
	    sodium_base642bin(buf, sizeof(buf), b64, strlen(b64), NULL, &n,
	        NULL, B64STD) != 0 ||
	    n != outlen)
		return PL_E_BAD_REQUEST;
	memcpy(out, buf, outlen);
	sodium_memzero(buf, sizeof(buf));
	return PL_OK;
}

/* ---- key files ---- */

static pl_status keyfile_write(const char *path, const char *text)
{
	/* O_EXCL: never overwrite a secret key someone still relies on. */
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno == EEXIST ? PL_E_EXISTS : PL_E_IO;
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	bool ok = off == len && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok)
		unlink(path);
	return ok ? PL_OK : PL_E_IO;
}

pl_status pl_keyfile_generate(const char *path, const char *tenant,
    const char *key_id, char *pk_b64_out, size_t pk_b64_cap)
{
	uint8_t pk[32], sk[64];
	char pk_b64[sodium_base64_ENCODED_LEN(32, B64STD)];
	char sk_b64[sodium_base64_ENCODED_LEN(64, B64STD)];
	char text[KEYFILE_LINE_CHARS_MAX * 4];

	crypto_ready();
	if (!slug_ok(tenant, PL_TENANT_CHARS_MAX) ||
	    !slug_ok(key_id, PL_KEY_ID_CHARS_MAX))
		return PL_E_BAD_REQUEST;
	if (pk_b64_out != NULL && pk_b64_cap < sizeof(pk_b64))
		return PL_E_TOO_LARGE;
	crypto_sign_keypair(pk, sk);
	sodium_bin2base64(pk_b64, sizeof(pk_b64), pk, sizeof(pk), B64STD);
	sodium_bin2base64(sk_b64, sizeof(sk_b64), sk, sizeof(sk), B64STD);
	snprintf(text, sizeof(text),
	    "tenant=%s\nkey_id=%s\nsecret=%s\n"
	    "public=%s\n",
	    tenant, key_id, sk_b64, pk_b64);
	pl_status st = keyfile_write(path, text);
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(sk_b64, sizeof(sk_b64));
	sodium_memzero(text, sizeof(text));
	if (st == PL_OK && pk_b64_out != NULL)
		strcpy(pk_b64_out, pk_b64);
	return st;
}

struct keyfile {
	char tenant[PL_TENANT_CHARS_MAX + 1];
	char key_id[PL_KEY_ID_CHARS_MAX + 1];
	uint8_t sk[64], pk[32];
	bool has_tenant, has_key_id, has_sk, has_pk;
};

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && strchr(" \t\r\n", s[n - 1]) != NULL)
		s[--n] = '\0';
	return s;
}

/* One "key=value" line; blank lines and '#' comments are skipped. */
static pl_status keyfile_line(struct keyfile *kf, char *line)
{
	char *eq = strchr(line, '=');
	char *k = trim(line);
	if (*k == '\0' || *k == '#')
		return PL_OK;
	if (eq == NULL)
		return PL_E_CONFIG;
	*eq = '\0';
	k = trim(k);
	char *v = trim(eq + 1);
	if (strcmp(k, "tenant") == 0 && slug_ok(v, PL_TENANT_CHARS_MAX)) {
		strcpy(kf->tenant, v);
		kf->has_tenant = true;
	} else if (strcmp(k, "key_id") == 0 &&
	           slug_ok(v, PL_KEY_ID_CHARS_MAX)) {
		strcpy(kf->key_id, v);
		kf->has_key_id = true;
	} else if (strcmp(k, "secret") == 0) {
		kf->has_sk = pl_b64_decode_key(v, kf->sk, 64) == PL_OK;
		return kf->has_sk ? PL_OK : PL_E_CONFIG;
	} else if (strcmp(k, "public") == 0) {
		kf->has_pk = pl_b64_decode_key(v, kf->pk, 32) == PL_OK;
		return kf->has_pk ? PL_OK : PL_E_CONFIG;
	} else {
		return PL_E_CONFIG;
	}
	return PL_OK;
}

static pl_status keyfile_parse(FILE *f, struct keyfile *kf)
{
	char line[KEYFILE_LINE_CHARS_MAX + 2];
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strchr(line, '\n') == NULL && !feof(f))
			return PL_E_CONFIG; /* over-long line */
		pl_status st = keyfile_line(kf, line);
		if (st != PL_OK)
			return st;
	}
	if (ferror(f))
		return PL_E_IO;
	if (!kf->has_tenant || !kf->has_key_id || !kf->has_sk)
		return PL_E_CONFIG;
	/* The public half is derivable; when present it must agree. */
	uint8_t derived[32];
	crypto_sign_ed25519_sk_to_pk(derived, kf->sk);
	if (kf->has_pk && sodium_memcmp(derived, kf->pk, 32) != 0)
		return PL_E_CONFIG;
	memcpy(kf->pk, derived, 32);
	return PL_OK;
}

pl_status pl_keyfile_load(const char *path, char *tenant, size_t tenant_cap,
    char *key_id, size_t key_id_cap, uint8_t sk[64], uint8_t pk[32])
{
	struct keyfile kf;

	crypto_ready();
	memset(&kf, 0, sizeof(kf));
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return errno == ENOENT ? PL_E_NOT_FOUND : PL_E_IO;
	pl_status st = keyfile_parse(f, &kf);
	fclose(f);
	if (st == PL_OK && (strlen(kf.tenant) >= tenant_cap ||
	                       strlen(kf.key_id) >= key_id_cap))
		st = PL_E_TOO_LARGE;
	if (st == PL_OK) {
		strcpy(tenant, kf.tenant);
		strcpy(key_id, kf.key_id);
		memcpy(sk, kf.sk, 64);
		if (pk != NULL)
			memcpy(pk, kf.pk, 32);
	}
	sodium_memzero(&kf, sizeof(kf));
	return st;
}
