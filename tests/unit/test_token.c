/*
 * test_token.c - Ed25519 tokens: a table of valid and forged tokens with
 * the status pl_token_verify must give, key rotation with two keys, the
 * keyring's limits, and key files written and read back.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "proto/token.h"

#define NOW_S 1800000000
#define TOKEN_CAP 2048

struct keypair {
	uint8_t pk[32], sk[64];
};

/* Keys of the fixture: acme has k1 and k2, globex has g1; stranger's key
 * is in no keyring. */
static struct keypair acme_k1, acme_k2, globex_g1, stranger;
static pl_keyring *ring;

static void fixture_setup(void)
{
	if (ring != NULL)
		return;
	PL_ASSERT(sodium_init() >= 0);
	crypto_sign_keypair(acme_k1.pk, acme_k1.sk);
	crypto_sign_keypair(acme_k2.pk, acme_k2.sk);
	crypto_sign_keypair(globex_g1.pk, globex_g1.sk);
	crypto_sign_keypair(stranger.pk, stranger.sk);
	ring = calloc(1, sizeof(*ring));
	PL_ASSERT(pl_keyring_add(ring, "acme", "k1", acme_k1.pk) == PL_OK);
	PL_ASSERT(pl_keyring_add(ring, "acme", "k2", acme_k2.pk) == PL_OK);
	PL_ASSERT(pl_keyring_add(ring, "globex", "g1", globex_g1.pk) == PL_OK);
}

static pl_claims claims_base(void)
{
	pl_claims c;
	memset(&c, 0, sizeof(c));
	strcpy(c.tenant, "acme");
	strcpy(c.user, "alice");
	c.role = 2; /* agent */
	c.exp_s = NOW_S + 3600;
	strcpy(c.key_id, "k1");
	return c;
}

/* What each case does to the claims, the key, or the token text. */
enum mutation {
	M_NONE,
	M_EXPIRED,
	M_EXPIRES_NOW,
	M_WRONG_KEY,    /* acme/k1 claims signed with globex's key */
	M_STRANGER_KEY, /* signed with a key nobody registered */
	M_UNKNOWN_TENANT,
	M_UNKNOWN_KEY_ID,
	M_EMPTY_KEY_ID,        /* signer's key found by trying all of acme's */
	M_OTHER_TENANT_KEY_ID, /* acme claims naming globex's key id */
	M_TAMPER_CLAIMS,
	M_TAMPER_SIG,
	M_TRUNCATE_HALF,
	M_TRUNCATE_ONE,
	M_NOT_BASE64,
	M_NO_DOT,
	M_TWO_DOTS,
	M_PADDED,
	M_EMPTY,
	M_OVERLONG,
	M_ROLE_NONE,
	M_ROLE_UNKNOWN,
	M_EMPTY_USER,
	M_ROOM_SCOPE,
	M_BAD_ROOM_SCOPE,
};

static const struct {
	const char *name;
	enum mutation m;
	pl_status want;
} token_cases[] = {
    {"valid", M_NONE, PL_OK},
    {"expired", M_EXPIRED, PL_E_UNAUTHORIZED},
    {"expires now", M_EXPIRES_NOW, PL_E_UNAUTHORIZED},
    {"wrong key", M_WRONG_KEY, PL_E_UNAUTHORIZED},
    {"stranger key", M_STRANGER_KEY, PL_E_UNAUTHORIZED},
    {"unknown tenant", M_UNKNOWN_TENANT, PL_E_UNAUTHORIZED},
    {"unknown key id", M_UNKNOWN_KEY_ID, PL_E_UNAUTHORIZED},
    {"empty key id", M_EMPTY_KEY_ID, PL_OK},
    {"other tenant key id", M_OTHER_TENANT_KEY_ID, PL_E_UNAUTHORIZED},
    {"tampered claims", M_TAMPER_CLAIMS, PL_E_UNAUTHORIZED},
    {"tampered signature", M_TAMPER_SIG, PL_E_UNAUTHORIZED},
    {"truncated half", M_TRUNCATE_HALF, PL_E_UNAUTHORIZED},
    {"truncated one char", M_TRUNCATE_ONE, PL_E_UNAUTHORIZED},
    {"not base64", M_NOT_BASE64, PL_E_UNAUTHORIZED},
    {"no dot", M_NO_DOT, PL_E_UNAUTHORIZED},
    {"two dots", M_TWO_DOTS, PL_E_UNAUTHORIZED},
    {"padded", M_PADDED, PL_E_UNAUTHORIZED},
    {"empty", M_EMPTY, PL_E_UNAUTHORIZED},
    {"overlong", M_OVERLONG, PL_E_UNAUTHORIZED},
    {"role none", M_ROLE_NONE, PL_E_UNAUTHORIZED},
    {"role unknown", M_ROLE_UNKNOWN, PL_E_UNAUTHORIZED},
    {"empty user", M_EMPTY_USER, PL_E_UNAUTHORIZED},
    {"room scope", M_ROOM_SCOPE, PL_OK},
    {"bad room scope", M_BAD_ROOM_SCOPE, PL_E_UNAUTHORIZED},
};

static void mutate_claims(enum mutation m, pl_claims *c, const uint8_t **sk)
{
	*sk = acme_k1.sk;
	switch (m) {
	case M_EXPIRED:
		c->exp_s = NOW_S - 1;
		break;
	case M_EXPIRES_NOW:
		c->exp_s = NOW_S;
		break;
	case M_WRONG_KEY:
		*sk = globex_g1.sk;
		break;
	case M_STRANGER_KEY:
		*sk = stranger.sk;
		break;
	case M_UNKNOWN_TENANT:
		strcpy(c->tenant, "initech");
		break;
	case M_UNKNOWN_KEY_ID:
		strcpy(c->key_id, "k9");
		break;
	case M_EMPTY_KEY_ID:
		c->key_id[0] = '\0';
		*sk = acme_k2.sk;
		break;
	case M_OTHER_TENANT_KEY_ID:
		strcpy(c->key_id, "g1");
		break;
	case M_ROLE_NONE:
		c->role = 0;
		break;
	case M_ROLE_UNKNOWN:
		c->role = 9;
		break;
	case M_EMPTY_USER:
		c->user[0] = '\0';
		break;
	case M_ROOM_SCOPE:
		strcpy(c->room, "0001000000000007");
		break;
	case M_BAD_ROOM_SCOPE:
		strcpy(c->room, "0000000000000007");
		break;
	default:
		break;
	}
}

static int claims_equal(const pl_claims *a, const pl_claims *b)
{
	return strcmp(a->tenant, b->tenant) == 0 &&
	       strcmp(a->user, b->user) == 0 && a->role == b->role &&
	       a->exp_s == b->exp_s && strcmp(a->room, b->room) == 0 &&
	       strcmp(a->key_id, b->key_id) == 0;
}

/* Flips one base64url char to another valid one. */
static void flip_char(char *p)
{
	*p = *p == 'A' ? 'B' : 'A';
}

static void mutate_text(enum mutation m, char *tok)
{
	char *dot = strchr(tok, '.');
	size_t len = strlen(tok);
	switch (m) {
	case M_TAMPER_CLAIMS:
		flip_char(tok + 3);
		break;
	case M_TAMPER_SIG:
		flip_char(dot + 5);
		break;
	case M_TRUNCATE_HALF:
		tok[len / 2] = '\0';
		break;
	case M_TRUNCATE_ONE:
		tok[len - 1] = '\0';
		break;
	case M_NOT_BASE64:
		tok[2] = '*';
		break;
	case M_NO_DOT:
		*dot = 'A';
		break;
	case M_TWO_DOTS:
		tok[len] = '.';
		tok[len + 1] = '\0';
		break;
	case M_PADDED:
		strcat(tok, "==");
		break;
	case M_EMPTY:
		tok[0] = '\0';
		break;
	case M_OVERLONG:
		memset(tok + len, 'A', PL_TOKEN_CHARS_MAX + 1 - len);
		tok[PL_TOKEN_CHARS_MAX + 1] = '\0';
		break;
	default:
		break;
	}
}

TEST(test_token_verify_table)
{
	fixture_setup();
	for (size_t i = 0; i < PL_ARRAY_LEN(token_cases); i++) {
		char tok[TOKEN_CAP];
		const uint8_t *sk;
		pl_claims c = claims_base(), got;
		memset(&got, 0x55, sizeof(got));
		mutate_claims(token_cases[i].m, &c, &sk);
		CHECK_EQ(pl_token_mint(&c, sk, tok, sizeof(tok)), PL_OK);
		mutate_text(token_cases[i].m, tok);
		pl_status st = pl_token_verify(ring, tok, NOW_S, &got);
		if (st != token_cases[i].want)
			fprintf(stderr, "  case \"%s\"\n", token_cases[i].name);
		CHECK_EQ(st, token_cases[i].want);
		if (st == PL_OK)
			CHECK(claims_equal(&got, &c));
		else
			CHECK_EQ(((uint8_t *)&got)[0], 0x55); /* untouched */
	}
}

TEST(test_token_claims_round_trip)
{
	fixture_setup();
	char tok[TOKEN_CAP];
	pl_claims c = claims_base(), got;
	strcpy(c.room, "00020000000000ff");
	c.role = 1;
	CHECK_EQ(pl_token_mint(&c, acme_k1.sk, tok, sizeof(tok)), PL_OK);
	CHECK(strchr(tok, '=') == NULL); /* unpadded */
	CHECK_EQ(pl_token_verify(ring, tok, NOW_S, &got), PL_OK);
	CHECK_STR_EQ(got.tenant, "acme");
	CHECK_STR_EQ(got.user, "alice");
	CHECK_STR_EQ(got.room, "00020000000000ff");
	CHECK_STR_EQ(got.key_id, "k1");
	CHECK_EQ(got.role, 1);
	CHECK_EQ(got.exp_s, NOW_S + 3600);
}

/* During a rotation a tenant has the old and the new key: tokens of both
 * verify, and removing neither breaks the other. */
TEST(test_token_rotation_two_keys)
{
	fixture_setup();
	char tok[TOKEN_CAP];
	pl_claims c = claims_base(), got;
	CHECK_EQ(pl_token_mint(&c, acme_k1.sk, tok, sizeof(tok)), PL_OK);
	CHECK_EQ(pl_token_verify(ring, tok, NOW_S, &got), PL_OK);
	strcpy(c.key_id, "k2");
	CHECK_EQ(pl_token_mint(&c, acme_k2.sk, tok, sizeof(tok)), PL_OK);
	CHECK_EQ(pl_token_verify(ring, tok, NOW_S, &got), PL_OK);
	/* The key id names the key: k2's claims signed by k1 fail. */
	CHECK_EQ(pl_token_mint(&c, acme_k1.sk, tok, sizeof(tok)), PL_OK);
	CHECK_EQ(pl_token_verify(ring, tok, NOW_S, &got), PL_E_UNAUTHORIZED);
}

TEST(test_token_tenant_isolation)
{
	fixture_setup();
	char tok[TOKEN_CAP];
	pl_claims c = claims_base(), got;
	strcpy(c.tenant, "globex");
	strcpy(c.key_id, "g1");
	/* A tenant can only mint for itself: acme's key cannot sign globex. */
	CHECK_EQ(pl_token_mint(&c, acme_k1.sk, tok, sizeof(tok)), PL_OK);
	CHECK_EQ(pl_token_verify(ring, tok, NOW_S, &got), PL_E_UNAUTHORIZED);
	CHECK_EQ(pl_token_mint(&c, globex_g1.sk, tok, sizeof(tok)), PL_OK);
	CHECK_EQ(pl_token_verify(ring, tok, NOW_S, &got), PL_OK);
	CHECK_STR_EQ(got.tenant, "globex");
}

TEST(test_token_mint_too_small)
{
	fixture_setup();
	char tok[64];
	pl_claims c = claims_base();
	CHECK_EQ(
	    pl_token_mint(&c, acme_k1.sk, tok, sizeof(tok)), PL_E_TOO_LARGE);
}

TEST(test_token_verify_null)
{
	fixture_setup();
	pl_claims got;
	CHECK_EQ(pl_token_verify(ring, NULL, NOW_S, &got), PL_E_UNAUTHORIZED);
}

TEST(test_token_keyring_limits)
{
	uint8_t pk[32] = {1};
	pl_keyring *kr = calloc(1, sizeof(*kr));
	static const struct {
		const char *tenant, *key_id;
		pl_status want;
	} cases[] = {
	    {"t", "k1", PL_OK},
	    {"t", "k1", PL_E_EXISTS},
	    {"t", "k2", PL_OK},
	    {"t", "k3", PL_OK},
	    {"t", "k4", PL_OK},
	    {"t", "k5", PL_E_TOO_LARGE},
	    {"", "k1", PL_E_BAD_REQUEST},
	    {"a b", "k1", PL_E_BAD_REQUEST},
	    {"t2", "", PL_E_BAD_REQUEST},
	    {"t2", "k=1", PL_E_BAD_REQUEST},
	    {"t2", "0123456789012345678901234567890123", PL_E_BAD_REQUEST},
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++)
		CHECK_EQ(
		    pl_keyring_add(kr, cases[i].tenant, cases[i].key_id, pk),
		    cases[i].want);
	CHECK(pl_keyring_find(kr, "t") != NULL);
	CHECK(pl_keyring_find(kr, "t2") == NULL);
	free(kr);
}

TEST(test_token_keyring_full)
{
	uint8_t pk[32] = {1};
	char name[16];
	pl_keyring *kr = calloc(1, sizeof(*kr));
	for (int i = 0; i < PL_TENANTS_MAX; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		CHECK_EQ(pl_keyring_add(kr, name, "k", pk), PL_OK);
	}
	CHECK_EQ(pl_keyring_add(kr, "one-more", "k", pk), PL_E_TOO_LARGE);
	free(kr);
}

/* A key file written by generate loads back, and its keys sign tokens
 * that a keyring built from the printed public key accepts. */
TEST(test_token_keyfile_round_trip)
{
	char dir[] = "/tmp/parley-test-XXXXXX", path[64], tok[TOKEN_CAP];
	char pk_b64[64], tenant[64], key_id[32];
	uint8_t sk[64], pk[32], pk2[32];
	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/acme.key", dir);
	CHECK_EQ(
	    pl_keyfile_generate(path, "acme", "k7", pk_b64, sizeof(pk_b64)),
	    PL_OK);
	struct stat sb;
	CHECK_EQ(stat(path, &sb), 0);
	CHECK_EQ(sb.st_mode & 0777, 0600);
	CHECK_EQ(pl_keyfile_generate(path, "acme", "k7", NULL, 0), PL_E_EXISTS);
	CHECK_EQ(pl_keyfile_load(path, tenant, sizeof(tenant), key_id,
	             sizeof(key_id), sk, pk),
	    PL_OK);
	CHECK_STR_EQ(tenant, "acme");
	CHECK_STR_EQ(key_id, "k7");
	CHECK_EQ(pl_b64_decode_key(pk_b64, pk2, 32), PL_OK);
	CHECK(memcmp(pk, pk2, 32) == 0);

	pl_keyring *kr = calloc(1, sizeof(*kr));
	CHECK_EQ(pl_keyring_add(kr, "acme", "k7", pk2), PL_OK);
	pl_claims c = claims_base(), got;
	strcpy(c.key_id, "k7");
	CHECK_EQ(pl_token_mint(&c, sk, tok, sizeof(tok)), PL_OK);
	CHECK_EQ(pl_token_verify(kr, tok, NOW_S, &got), PL_OK);
	free(kr);
	unlink(path);
	rmdir(dir);
}

static pl_status load_text(const char *text)
{
	char dir[] = "/tmp/parley-test-XXXXXX", path[64], t[64], k[32];
	uint8_t sk[64];
	PL_ASSERT(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/x.key", dir);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	pl_status st =
	    pl_keyfile_load(path, t, sizeof(t), k, sizeof(k), sk, NULL);
	unlink(path);
	rmdir(dir);
	return st;
}

TEST(test_token_keyfile_bad)
{
	uint8_t pk[32], sk[64];
	char sk_b64[128], pk_b64[64], text[512];
	crypto_sign_keypair(pk, sk);
	sodium_bin2base64(
	    sk_b64, sizeof(sk_b64), sk, 64, sodium_base64_VARIANT_ORIGINAL);
	pk[0] ^= 1; /* a public key that does not match the secret */
	sodium_bin2base64(
	    pk_b64, sizeof(pk_b64), pk, 32, sodium_base64_VARIANT_ORIGINAL);
	snprintf(text, sizeof(text), "# ok\ntenant = a\nkey_id=k\nsecret=%s\n",
	    sk_b64);
	CHECK_EQ(load_text(text), PL_OK);
	snprintf(text, sizeof(text),
	    "tenant=a\nkey_id=k\nsecret=%s\n"
	    "public=%s\n",
	    sk_b64, pk_b64);
	CHECK_EQ(load_text(text), PL_E_CONFIG);
	CHECK_EQ(load_text("tenant=a\nkey_id=k\n"), PL_E_CONFIG);
	CHECK_EQ(load_text("tenant=a\nkey_id=k\nsecret=abc\n"), PL_E_CONFIG);
	CHECK_EQ(load_text("tenant=a\nwhat=1\n"), PL_E_CONFIG);
	char t[8], k[8];
	CHECK_EQ(pl_keyfile_load("/nonexistent/x.key", t, 8, k, 8, sk, NULL),
	    PL_E_NOT_FOUND);
}

TEST(test_token_b64_decode_key)
{
	uint8_t out[32];
	/* 32 zero bytes in standard base64. */
	CHECK_EQ(pl_b64_decode_key(
	             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", out, 32),
	    PL_OK);
	CHECK_EQ(pl_b64_decode_key("AAAA", out, 32), PL_E_BAD_REQUEST);
	CHECK_EQ(pl_b64_decode_key(
	             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", out, 32),
	    PL_E_BAD_REQUEST); /* padding required */
	CHECK_EQ(pl_b64_decode_key("not base64!", out, 32), PL_E_BAD_REQUEST);
	CHECK_EQ(pl_b64_decode_key(NULL, out, 32), PL_E_BAD_REQUEST);
}

/* Signs exactly the claims bytes given (n <= 200) with sk. */
static void token_over(
    const uint8_t *claims, size_t n, const uint8_t *sk, char *out, size_t cap)
{
	uint8_t sig[crypto_sign_BYTES];
	const int v = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
	crypto_sign_detached(sig, NULL, claims, n, sk);
	size_t bl = sodium_base64_ENCODED_LEN(n, v);
	PL_ASSERT(bl + sodium_base64_ENCODED_LEN(sizeof(sig), v) <= cap);
	sodium_bin2base64(out, bl, claims, n, v);
	out[bl - 1] = '.';
	sodium_bin2base64(out + bl, cap - bl, sig, sizeof(sig), v);
}

/* Claims{tenant, user, role agent, exp, key_id} with exact bytes. */
static size_t claims_bytes(uint8_t *b, const char *t, size_t tn, const char *u,
    size_t un, const char *k, size_t kn)
{
	size_t n = 0;
	b[n++] = 0x0a;
	b[n++] = (uint8_t)tn;
	memcpy(b + n, t, tn);
	n += tn;
	b[n++] = 0x12;
	b[n++] = (uint8_t)un;
	memcpy(b + n, u, un);
	n += un;
	b[n++] = 0x18;
	b[n++] = 2;
	uint64_t exp = NOW_S + 3600;
	b[n++] = 0x20;
	while (exp >= 0x80) {
		b[n++] = (uint8_t)(exp | 0x80);
		exp >>= 7;
	}
	b[n++] = (uint8_t)exp;
	b[n++] = 0x32;
	b[n++] = (uint8_t)kn;
	memcpy(b + n, k, kn);
	return n + kn;
}

/* A validly signed claim holding a NUL (or invalid UTF-8) is refused:
 * the identity used must be the one signed, not its prefix. */
TEST(test_token_claims_with_nul_or_bad_utf8_refused)
{
	fixture_setup();
	static const struct {
		const char *name;
		const char *t, *u, *k;
		size_t tn, un, kn;
		pl_status want;
	} cases[] = {
	    {"clean", "acme", "ann", "k1", 4, 3, 2, PL_OK},
	    {"user NUL", "acme", "ann\0x", "k1", 4, 5, 2, PL_E_UNAUTHORIZED},
	    {"tenant NUL", "acme\0beta", "ann", "k1", 9, 3, 2,
	        PL_E_UNAUTHORIZED},
	    {"key id NUL", "acme", "ann", "k1\0zz", 4, 3, 5, PL_E_UNAUTHORIZED},
	    {"user bad UTF-8", "acme", "ann\xff", "k1", 4, 4, 2,
	        PL_E_UNAUTHORIZED},
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
		uint8_t b[256];
		char tok[TOKEN_CAP];
		size_t n = claims_bytes(b, cases[i].t, cases[i].tn, cases[i].u,
		    cases[i].un, cases[i].k, cases[i].kn);
		token_over(b, n, acme_k1.sk, tok, sizeof(tok));
		pl_claims got;
		const char *why = NULL;
		pl_status st =
		    pl_token_verify_why(ring, tok, NOW_S, &got, &why);
		if (st != cases[i].want)
			fprintf(stderr, "  case \"%s\": %s\n", cases[i].name,
			    why ? why : "-");
		CHECK_EQ(st, cases[i].want);
		if (st == PL_OK) {
			CHECK_STR_EQ(got.user, "ann");
		} else {
			CHECK(why != NULL && strstr(why, "NUL") != NULL);
		}
	}
}
