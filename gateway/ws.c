/*
 * ws.c - WebSocket (RFC 6455) for the gateway's side of a connection: the
 * handshake's accept key, the header of the frames it sends (one final
 * binary frame per queued client frame, unmasked) and the receive-side
 * decoder of client frames (masked; data may be fragmented; ping, pong
 * and close between fragments). Pure: conn.c feeds it the bytes it read.
 */
#include <string.h>

#include <sodium.h>

#include "common/common.h"
#include "gateway/httpd.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void gw_ws_accept(const char *key, char out[GW_WS_ACCEPT_CHARS + 1])
{
	pl_sha1 s;
	uint8_t d[PL_SHA1_BYTES];
	pl_sha1_init(&s);
	pl_sha1_update(&s, key, strlen(key));
	pl_sha1_update(&s, WS_GUID, sizeof(WS_GUID) - 1);
	pl_sha1_final(&s, d);
	sodium_bin2base64(out, GW_WS_ACCEPT_CHARS + 1, d, sizeof(d),
	    sodium_base64_VARIANT_ORIGINAL);
}

size_t gw_ws_hdr_len(size_t len)
{
	return len < 126 ? 2 : len < 65536 ? 4 : 10;
}

size_t gw_ws_hdr_write(uint8_t *out, int op, size_t len)
{
	out[0] = (uint8_t)(0x80 | (op & 0x0f));
	if (len < 126) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len < 65536) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
	return 10;
}

void gw_ws_rx_init(gw_ws_rx *rx, uint64_t msg_max)
{
	memset(rx, 0, sizeof(*rx));
	rx->msg_max = msg_max;
}

static gw_ws_ev rx_fail(gw_ws_rx *rx, uint16_t code, const char *why)
{
	rx->close_code = code;
	rx->error = why;
	return GW_WS_EV_ERROR;
}

/* Checks a frame's opcode and flags against the message state. */
static gw_ws_ev rx_frame_check(gw_ws_rx *rx, uint8_t b0, uint64_t len)
{
	uint8_t op = b0 & 0x0f;
	bool fin = (b0 & 0x80) != 0;
	if ((b0 & 0x70) != 0)
		return rx_fail(rx, GW_WS_CLOSE_PROTOCOL, "reserved bits set");
	if (op >= GW_WS_OP_CLOSE) {
		if (op > GW_WS_OP_PONG)
			return rx_fail(
			    rx, GW_WS_CLOSE_PROTOCOL, "unknown opcode");
		if (!fin || len > GW_WS_CTL_BYTES_MAX)
			return rx_fail(rx, GW_WS_CLOSE_PROTOCOL,
			    "fragmented or oversize control frame");
		return GW_WS_EV_NONE;
	}
	if (op == GW_WS_OP_CONT && !rx->in_msg)
		return rx_fail(rx, GW_WS_CLOSE_PROTOCOL,
		    "continuation frame without a message");
	if (op != GW_WS_OP_CONT && rx->in_msg)
		return rx_fail(rx, GW_WS_CLOSE_PROTOCOL,
		    "new message inside a fragmented one");
	if (op == GW_WS_OP_TEXT)
		return rx_fail(rx, GW_WS_CLOSE_UNSUPPORTED,
		    "text message; the protocol is binary");
	if (op != GW_WS_OP_CONT && op != GW_WS_OP_BINARY)
		return rx_fail(rx, GW_WS_CLOSE_PROTOCOL, "unknown opcode");
	if (op == GW_WS_OP_BINARY)
		rx->msg_bytes = 0;
	if (len > rx->msg_max - rx->msg_bytes)
		return rx_fail(rx, GW_WS_CLOSE_TOO_BIG, "message too large");
	rx->msg_bytes += len;
	rx->in_msg = !fin;
	return GW_WS_EV_NONE;
}

/* Parses a frame header at p[0..n). 0: incomplete; else its length. */
static size_t rx_header(gw_ws_rx *rx, const uint8_t *p, size_t n,
    gw_ws_ev *ev)
{
	*ev = GW_WS_EV_NONE;
	if (n < 2)
		return 0;
	if ((p[1] & 0x80) == 0) {
		*ev = rx_fail(rx, GW_WS_CLOSE_PROTOCOL, "unmasked client frame");
		return 0;
	}
	uint64_t len = p[1] & 0x7f;
	size_t h = 2;
	if (len == 126) {
		if (n < 4)
			return 0;
		len = (uint64_t)p[2] << 8 | p[3];
		h = 4;
	} else if (len == 127) {
		if (n < 10)
			return 0;
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | p[2 + i];
		h = 10;
		if (len >> 63) {
			*ev = rx_fail(
			    rx, GW_WS_CLOSE_PROTOCOL, "frame length too large");
			return 0;
		}
	}
	if (n < h + 4)
		return 0;
	if ((*ev = rx_frame_check(rx, p[0], len)) != GW_WS_EV_NONE)
		return 0;
	memcpy(rx->mask, p + h, 4);
	rx->op = p[0] & 0x0f;
	rx->fin = (p[0] & 0x80) != 0;
	rx->left = len;
	rx->pos = 0;
	rx->ctl_len = 0;
	rx->in_frame = true;
	return h + 4;
}

/* A whole control frame has arrived. */
static gw_ws_ev rx_control(gw_ws_rx *rx)
{
	switch (rx->op) {
	case GW_WS_OP_PING:
		return GW_WS_EV_PING;
	case GW_WS_OP_PONG:
		return GW_WS_EV_PONG;
	default: /* close: an optional 2-byte code, then a reason */
		if (rx->ctl_len == 1)
			return rx_fail(
			    rx, GW_WS_CLOSE_PROTOCOL, "close frame of 1 byte");
		rx->close_code = rx->ctl_len >= 2
		                     ? (uint16_t)(rx->ctl[0] << 8 | rx->ctl[1])
		                     : GW_WS_CLOSE_NORMAL;
		return GW_WS_EV_CLOSE;
	}
}

gw_ws_ev gw_ws_rx_step(
    gw_ws_rx *rx, uint8_t *buf, size_t *w, size_t *r, size_t end)
{
	while (*r < end || (rx->in_frame && rx->left == 0)) {
		if (!rx->in_frame) {
			gw_ws_ev ev;
			size_t h = rx_header(rx, buf + *r, end - *r, &ev);
			if (ev != GW_WS_EV_NONE)
				return ev;
			if (h == 0)
				return GW_WS_EV_NONE; /* partial header */
			*r += h;
			continue;
		}
		size_t k = end - *r;
		if (k > rx->left)
			k = (size_t)rx->left;
		bool ctl = rx->op >= GW_WS_OP_CLOSE;
		for (size_t i = 0; i < k; i++) {
			uint8_t b = buf[*r + i] ^ rx->mask[(rx->pos + i) & 3];
			if (ctl)
				rx->ctl[rx->ctl_len++] = b;
			else
				buf[*w + i] = b;
		}
		*r += k;
		if (!ctl)
			*w += k;
		rx->pos += k;
		rx->left -= k;
		if (rx->left > 0)
			break;
		rx->in_frame = false;
		if (ctl)
			return rx_control(rx);
	}
	return GW_WS_EV_NONE;
}
