/*
 * keyring.c - the tenants' public keys a node knows, and key files
 * (Ed25519 pairs in key=value text). Minting and verifying tokens needs
 * the Claims encoding and lives in proto/token.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "common/common.h"

#define B64STD sodium_base64_VARIANT_ORIGINAL
#define KEYFILE_LINE_CHARS_MAX 255

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_init_once(void)
{
	/* Fails only when the system has no randomness source at all. */
	PL_ASSERT(sodium_init() >= 0);
}

void pl_crypto_ready(void)
{
	pthread_once(&sodium_once, sodium_init_once);
}

/* ---- keyring ---- */

/* Tenant ids and key ids are slugs: they appear in config keys, log lines
 * and LMDB keys (tenant NUL ...), so no separators or controls. */
bool pl_slug_ok(const char *s, size_t max)
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
	if (!pl_slug_ok(tenant, PL_TENANT_CHARS_MAX) ||
	    !pl_slug_ok(key_id, PL_KEY_ID_CHARS_MAX))
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

	pl_crypto_ready();
	if (!pl_slug_ok(tenant, PL_TENANT_CHARS_MAX) ||
	    !pl_slug_ok(key_id, PL_KEY_ID_CHARS_MAX))
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
	if (strcmp(k, "tenant") == 0 && pl_slug_ok(v, PL_TENANT_CHARS_MAX)) {
		strcpy(kf->tenant, v);
		kf->has_tenant = true;
	} else if (strcmp(k, "key_id") == 0 &&
	           pl_slug_ok(v, PL_KEY_ID_CHARS_MAX)) {
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

	pl_crypto_ready();
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

pl_status pl_secret_file_load(const char *path, uint8_t out[PL_SECRET_BYTES])
{
	char text[256];
	FILE *f = path != NULL ? fopen(path, "r") : NULL;
	if (f == NULL)
		return PL_E_NOT_FOUND;
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	uint8_t tmp[PL_SECRET_BYTES];
	size_t len = 0;
	int rc = sodium_base642bin(tmp, sizeof(tmp), text, n, " \t\r\n", &len,
	    NULL, sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(text, sizeof(text));
	if (rc != 0 || len != PL_SECRET_BYTES) {
		sodium_memzero(tmp, sizeof(tmp));
		return PL_E_CONFIG;
	}
	memcpy(out, tmp, PL_SECRET_BYTES);
	sodium_memzero(tmp, sizeof(tmp));
	return PL_OK;
}
