/*
 * text.c - the one check every string from a socket or a token passes:
 * well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF) with no NUL byte. C strings end at a NUL, so a NUL
 * inside a value would make two different wire values one identity.
 */
#include "common/common.h"

/* Length of the sequence that starts with lead byte b, 0 if b cannot
 * start one. */
static int seq_len(uint8_t b)
{
	if (b < 0x80)
		return 1;
	if (b >= 0xc2 && b <= 0xdf)
		return 2;
	if (b >= 0xe0 && b <= 0xef)
		return 3;
	if (b >= 0xf0 && b <= 0xf4)
		return 4;
	return 0;
}

/* The second byte's range depends on the lead (RFC 3629, table 3-7):
 * that is where overlongs, surrogates and > U+10FFFF are excluded. */
static bool second_ok(uint8_t lead, uint8_t b)
{
	uint8_t lo = 0x80, hi = 0xbf;
	if (lead == 0xe0)
		lo = 0xa0;
	else if (lead == 0xed)
		hi = 0x9f;
	else if (lead == 0xf0)
		lo = 0x90;
	else if (lead == 0xf4)
		hi = 0x8f;
	return b >= lo && b <= hi;
}

pl_text_verdict pl_text_check(const void *s, size_t n)
{
	const uint8_t *p = s;
	size_t i = 0;
	while (i < n) {
		uint8_t b = p[i];
		if (b == 0)
			return PL_TEXT_NUL;
		int k = seq_len(b);
		if (k == 0 || (size_t)k > n - i)
			return PL_TEXT_BAD_UTF8;
		if (k > 1 && !second_ok(b, p[i + 1]))
			return PL_TEXT_BAD_UTF8;
		for (int j = 2; j < k; j++) {
			if ((p[i + (size_t)j] & 0xc0) != 0x80)
				return PL_TEXT_BAD_UTF8;
		}
		i += (size_t)k;
	}
	return PL_TEXT_OK;
}

const char *pl_text_verdict_name(pl_text_verdict v)
{
	switch (v) {
	case PL_TEXT_OK:
		return "ok";
	case PL_TEXT_NUL:
		return "contains a NUL byte";
	default:
		return "is not valid UTF-8";
	}
}
