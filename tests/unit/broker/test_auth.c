/*
 * test_auth.c - cluster membership proof for broker-to-broker messages:
 * a sealed message opens with the same secret; a different secret, a
 * flipped bit anywhere, a replay, a reflected message and truncation are
 * refused (table-driven where the cases are many).
 */
#define CHECK_MAIN
#include <sodium.h>

#include "broker/broker.h"
#include "tests/check.h"

static const uint8_t SECRET[BRK_SECRET_BYTES] =
    "0123456789abcdef0123456789abcde";
static const uint8_t OTHER[BRK_SECRET_BYTES] =
    "fedcba9876543210fedcba987654321";

TEST(test_auth_seal_open_roundtrip)
{
	brk_auth a, b;
	uint8_t msg[128];
	size_t n, plen;
	uint64_t from;
	const uint8_t *p;
	CHECK_EQ(brk_auth_init(&a, SECRET, 1, 1000), PL_OK);
	CHECK_EQ(brk_auth_init(&b, SECRET, 2, 1000), PL_OK);
	CHECK_EQ(brk_auth_seal(
	             &a, (const uint8_t *)"append", 6, msg, sizeof(msg), &n),
	    PL_OK);
	CHECK_EQ(n, BRK_AUTH_OVERHEAD + 6);
	CHECK_EQ(brk_auth_open(&b, msg, n, &from, &p, &plen), PL_OK);
	CHECK_EQ(from, 1);
	CHECK_EQ(plen, 6);
	CHECK_EQ(memcmp(p, "append", 6), 0);
	brk_auth_fini(&a);
	brk_auth_fini(&b);
}

TEST(test_auth_refusals_table)
{
	brk_auth a, b, eve;
	uint8_t msg[128], bad[128];
	size_t n, plen;
	uint64_t from;
	const uint8_t *p;
	CHECK_EQ(brk_auth_init(&a, SECRET, 1, 1000), PL_OK);
	CHECK_EQ(brk_auth_init(&b, SECRET, 2, 1000), PL_OK);
	CHECK_EQ(brk_auth_init(&eve, OTHER, 1, 1000), PL_OK);
	CHECK_EQ(brk_auth_seal(&a, (const uint8_t *)"vote-for-me", 11, msg,
	             sizeof(msg), &n),
	    PL_OK);
	/* Every single flipped bit (header, MAC or payload) is refused. */
	for (size_t bit = 0; bit < n * 8; bit++) {
		memcpy(bad, msg, n);
		bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		if (brk_auth_open(&b, bad, n, &from, &p, &plen) !=
		    PL_E_UNAUTHORIZED)
			fprintf(stderr, "  bit %zu accepted\n", bit);
		CHECK_EQ(brk_auth_open(&b, bad, n, &from, &p, &plen),
		    PL_E_UNAUTHORIZED);
	}
	/* Truncated, at every length. */
	for (size_t k = 0; k < n; k++)
		CHECK_EQ(brk_auth_open(&b, msg, k, &from, &p, &plen),
		    PL_E_UNAUTHORIZED);
	/* Without the secret. */
	CHECK_EQ(brk_auth_seal(
	             &eve, (const uint8_t *)"x", 1, bad, sizeof(bad), &plen),
	    PL_OK);
	CHECK_EQ(
	    brk_auth_open(&b, bad, plen, &from, &p, &plen), PL_E_UNAUTHORIZED);
	/* Accepted once, then a replay. */
	CHECK_EQ(brk_auth_open(&b, msg, n, &from, &p, &plen), PL_OK);
	CHECK_EQ(
	    brk_auth_open(&b, msg, n, &from, &p, &plen), PL_E_UNAUTHORIZED);
	/* Our own message coming back. */
	CHECK_EQ(
	    brk_auth_seal(&b, (const uint8_t *)"y", 1, bad, sizeof(bad), &plen),
	    PL_OK);
	CHECK_EQ(
	    brk_auth_open(&b, bad, plen, &from, &p, &plen), PL_E_UNAUTHORIZED);
	brk_auth_fini(&a);
	brk_auth_fini(&b);
	brk_auth_fini(&eve);
}

TEST(test_auth_restart_continues_above_old_counters)
{
	brk_auth a, b;
	uint8_t msg[64];
	size_t n, plen;
	uint64_t from;
	const uint8_t *p;
	CHECK_EQ(brk_auth_init(&b, SECRET, 2, 1000), PL_OK);
	CHECK_EQ(brk_auth_init(&a, SECRET, 1, 1000), PL_OK);
	for (int i = 0; i < 100; i++) {
		CHECK_EQ(brk_auth_seal(
		             &a, (const uint8_t *)"h", 1, msg, sizeof(msg), &n),
		    PL_OK);
		CHECK_EQ(brk_auth_open(&b, msg, n, &from, &p, &plen), PL_OK);
	}
	/* The sender restarts a second later: still accepted. */
	CHECK_EQ(brk_auth_init(&a, SECRET, 1, 1001), PL_OK);
	CHECK_EQ(
	    brk_auth_seal(&a, (const uint8_t *)"h", 1, msg, sizeof(msg), &n),
	    PL_OK);
	CHECK_EQ(brk_auth_open(&b, msg, n, &from, &p, &plen), PL_OK);
}

TEST(test_auth_secret_parse_table)
{
	uint8_t key[BRK_SECRET_BYTES];
	char good[64];
	sodium_bin2base64(good, sizeof(good), SECRET, sizeof(SECRET),
	    sodium_base64_VARIANT_ORIGINAL);
	CHECK_EQ(brk_secret_parse(good, key), PL_OK);
	CHECK_EQ(memcmp(key, SECRET, sizeof(key)), 0);
	const char *bad[] = {"", "not base64!", "AAAA", NULL};
	for (int i = 0; bad[i] != NULL; i++)
		CHECK_EQ(brk_secret_parse(bad[i], key), PL_E_CONFIG);
	CHECK_EQ(brk_secret_parse(NULL, key), PL_E_CONFIG);
}

TEST(test_auth_seal_too_small_buffer)
{
	brk_auth a;
	uint8_t out[BRK_AUTH_OVERHEAD + 2];
	size_t n;
	CHECK_EQ(brk_auth_init(&a, SECRET, 1, 1000), PL_OK);
	CHECK_EQ(
	    brk_auth_seal(&a, (const uint8_t *)"abc", 3, out, sizeof(out), &n),
	    PL_E_TOO_LARGE);
}
