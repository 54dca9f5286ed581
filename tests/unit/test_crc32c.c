/*
 * test_crc32c.c - CRC32C against published vectors (the check value and
 * the iSCSI vectors of RFC 3720 B.4) and chaining over split buffers at
 * every split point and alignment.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "common/common.h"

TEST(test_crc32c_known_vectors)
{
	uint8_t zeros[32], ones[32], inc[32], dec[32];
	for (int i = 0; i < 32; i++) {
		zeros[i] = 0;
		ones[i] = 0xff;
		inc[i] = (uint8_t)i;
		dec[i] = (uint8_t)(31 - i);
	}
	const struct {
		const void *buf;
		size_t len;
		uint32_t want;
	} cases[] = {
	    {"", 0, 0},
	    {"a", 1, 0xC1D04330u},
	    {"123456789", 9, 0xE3069283u},
	    {zeros, 32, 0x8A9136AAu},
	    {ones, 32, 0x62A8AB43u},
	    {inc, 32, 0x46DD794Eu},
	    {dec, 32, 0x113FDB5Cu},
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++)
		CHECK_EQ(
		    pl_crc32c(0, cases[i].buf, cases[i].len), cases[i].want);
}

TEST(test_crc32c_chaining_any_split)
{
	uint8_t buf[100];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 37 + 11);
	uint32_t whole = pl_crc32c(0, buf, sizeof(buf));
	for (size_t cut = 0; cut <= sizeof(buf); cut++) {
		uint32_t c = pl_crc32c(0, buf, cut);
		c = pl_crc32c(c, buf + cut, sizeof(buf) - cut);
		CHECK_EQ(c, whole);
	}
}

/* The slicing loop reads 8 bytes at a time: any start offset must agree
 * with the byte-at-a-time tail. */
TEST(test_crc32c_unaligned_start)
{
	uint8_t buf[64 + 8];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i ^ 0x5a);
	for (size_t off = 0; off < 8; off++) {
		uint32_t whole = pl_crc32c(0, buf + off, 64);
		uint32_t bytewise = 0;
		for (size_t i = 0; i < 64; i++)
			bytewise = pl_crc32c(bytewise, buf + off + i, 1);
		CHECK_EQ(whole, bytewise);
	}
}
