/*
 * splice.c - spliced GwBatch and BrokerBatch records (see splice.h).
 */
#include <string.h>

#include "proto/splice.h"

#define WIRE_VARINT 0
#define WIRE_LEN 2
#define KEY(field, wire) ((uint8_t)(((field) << 3) | (wire)))

_Static_assert(
    PL_FIELD_BROKER_BATCH_GROUP < 16, "every spliced field's key is one byte");

size_t pl_varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

size_t pl_varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* A length-delimited field: key, length, bytes. */
static size_t put_bytes(uint8_t *p, int field, const void *b, size_t n)
{
	size_t k = 0;
	p[k++] = KEY(field, WIRE_LEN);
	k += pl_varint_put(p + k, n);
	memcpy(p + k, b, n);
	return k + n;
}

size_t pl_splice_gw_batch_gateway_len(const char *gateway)
{
	size_t n = strlen(gateway);
	return 1 + pl_varint_len(n) + n;
}

size_t pl_splice_gw_batch_gateway(uint8_t *p, const char *gateway)
{
	return put_bytes(
	    p, PL_FIELD_GW_BATCH_GATEWAY, gateway, strlen(gateway));
}

size_t pl_splice_gw_batch_group(uint8_t *p, uint32_t group)
{
	if (group == 0)
		return 0;
	p[0] = KEY(PL_FIELD_GW_BATCH_GROUP, WIRE_VARINT);
	return 1 + pl_varint_put(p + 1, group);
}

/* Reads a varint at b[*at..n); false when it runs off the end or is
 * longer than ten bytes. */
static bool get_varint(const uint8_t *b, size_t n, size_t *at, uint64_t *v)
{
	uint64_t x = 0;
	for (int shift = 0; shift < 70 && *at < n; shift += 7) {
		uint8_t c = b[(*at)++];
		x |= (uint64_t)(c & 0x7f) << shift;
		if ((c & 0x80) == 0) {
			*v = x;
			return true;
		}
	}
	return false;
}

pl_status pl_splice_gw_batch_group_peek(
    const uint8_t *b, size_t n, uint32_t *group)
{
	size_t at = 0;
	uint64_t g = 0;
	while (at < n) {
		uint64_t key, v;
		if (!get_varint(b, n, &at, &key))
			return PL_E_PROTO;
		switch (key & 7) {
		case WIRE_VARINT:
			if (!get_varint(b, n, &at, &v))
				return PL_E_PROTO;
			if ((key >> 3) == PL_FIELD_GW_BATCH_GROUP)
				g = v;
			break;
		case WIRE_LEN:
			if (!get_varint(b, n, &at, &v) || v > n - at)
				return PL_E_PROTO;
			at += (size_t)v;
			break;
		case 1: /* 64-bit */
			if (n - at < 8)
				return PL_E_PROTO;
			at += 8;
			break;
		case 5: /* 32-bit */
			if (n - at < 4)
				return PL_E_PROTO;
			at += 4;
			break;
		default:
			return PL_E_PROTO;
		}
		if ((key >> 3) == 0)
			return PL_E_PROTO;
	}
	if (g > UINT16_MAX)
		return PL_E_PROTO;
	*group = (uint32_t)g;
	return PL_OK;
}

size_t pl_splice_gw_request_len(uint64_t id, size_t n)
{
	size_t inner = 1 + pl_varint_len(id) + n;
	return 1 + pl_varint_len(inner) + inner;
}

size_t pl_splice_gw_request(
    uint8_t *p, uint64_t id, const uint8_t *body, size_t n)
{
	size_t k = 0;
	p[k++] = KEY(PL_FIELD_GW_BATCH_REQS, WIRE_LEN);
	k += pl_varint_put(p + k, 1 + pl_varint_len(id) + n);
	p[k++] = KEY(PL_FIELD_GW_REQUEST_ID, WIRE_VARINT);
	k += pl_varint_put(p + k, id);
	memcpy(p + k, body, n);
	return k + n;
}

size_t pl_splice_event_header(uint8_t hdr[PL_SPLICE_HEADER_BYTES_MAX], size_t n)
{
	hdr[0] = KEY(PL_FIELD_BROKER_BATCH_EVENTS, WIRE_LEN);
	return 1 + pl_varint_put(hdr + 1, n);
}

size_t pl_splice_feed_tail(
    uint8_t *p, const char *epoch, bool overflow, uint32_t group)
{
	size_t k =
	    put_bytes(p, PL_FIELD_BROKER_BATCH_EPOCH, epoch, strlen(epoch));
	if (overflow) {
		p[k++] = KEY(PL_FIELD_BROKER_BATCH_OVERFLOW, WIRE_VARINT);
		p[k++] = 1;
	}
	p[k++] = KEY(PL_FIELD_BROKER_BATCH_GROUP, WIRE_VARINT);
	k += pl_varint_put(p + k, group);
	return k;
}
