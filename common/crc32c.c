/*
 * crc32c.c - CRC32C (Castagnoli, reflected polynomial 0x82F63B78) in
 * software, slicing-by-8: eight table lookups per 8 input bytes. Every
 * stored log entry carries one and is checked on every read, so speed
 * matters; the check value crc32c("123456789") = 0xE3069283 is tested.
 */
#include <pthread.h>
#include <string.h>

#include "common/common.h"

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* Table k maps a byte to its CRC contribution k bytes further along. */
static void crc_table_build(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1u)));
		crc_table[0][n] = c;
	}
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = crc_table[0][n];
		for (int k = 1; k < 8; k++) {
			c = crc_table[0][c & 0xff] ^ (c >> 8);
			crc_table[k][n] = c;
		}
	}
}

static uint32_t load_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint32_t crc_slice8(uint32_t c, const uint8_t *p)
{
	uint32_t lo = load_le32(p) ^ c;
	uint32_t hi = load_le32(p + 4);
	return crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
	       crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
	       crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
	       crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
}

uint32_t pl_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;

	pthread_once(&crc_once, crc_table_build);
	for (; len >= 8; len -= 8, p += 8)
		c = crc_slice8(c, p);
	for (; len > 0; len--, p++)
		c = crc_table[0][(c ^ *p) & 0xff] ^ (c >> 8);
	return ~c;
}
