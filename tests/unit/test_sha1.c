/*
 * test_sha1.c - SHA-1 against the test vectors of RFC 3174 section 7.3
 * (and the empty message), fed whole and in pieces at every split.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "common/common.h"

static void hex(const uint8_t *d, char *out)
{
	for (int i = 0; i < PL_SHA1_BYTES; i++)
		snprintf(out + 2 * i, 3, "%02X", d[i]);
}

/* The digest of text repeated reps times, fed in chunks of step bytes. */
static void digest(const char *text, int reps, size_t step, char *out)
{
	pl_sha1 s;
	uint8_t d[PL_SHA1_BYTES];
	size_t n = strlen(text);
	pl_sha1_init(&s);
	for (int r = 0; r < reps; r++) {
		for (size_t off = 0; off < n; off += step)
			pl_sha1_update(&s, text + off,
			    n - off < step ? n - off : step);
	}
	pl_sha1_final(&s, d);
	hex(d, out);
}

static const struct {
	const char *text;
	int reps;
	const char *want;
} vectors[] = {
    {"abc", 1, "A9993E364706816ABA3E25717850C26C9CD0D89D"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
        "84983E441C3BD26EBAAE4AA1F95129E5E54670F1"},
    {"a", 1000000, "34AA973CD4C4DAA4F61EEB2BDBAD27316534016F"},
    {"01234567012345670123456701234567"
     "01234567012345670123456701234567",
        10, "DEA356A2CDDD90C7A7ECEDC5EBB563934F460452"},
    {"", 1, "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709"},
};

TEST(test_sha1_rfc3174_vectors)
{
	char got[2 * PL_SHA1_BYTES + 1];
	for (size_t i = 0; i < PL_ARRAY_LEN(vectors); i++) {
		digest(vectors[i].text, vectors[i].reps, 64, got);
		CHECK_STR_EQ(got, vectors[i].want);
	}
}

TEST(test_sha1_any_split_same_digest)
{
	char got[2 * PL_SHA1_BYTES + 1];
	for (size_t step = 1; step <= 70; step++) {
		digest(vectors[1].text, 1, step, got);
		CHECK_STR_EQ(got, vectors[1].want);
		digest(vectors[3].text, 10, step, got);
		CHECK_STR_EQ(got, vectors[3].want);
	}
}
