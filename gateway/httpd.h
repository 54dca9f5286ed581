/*
 * httpd.h - private to gateway/: the pure parts of the HTTP port, kept
 * free of sockets so they can be unit-tested with any bytes: the HTTP/1.1
 * request reader (http_parse.c), the WebSocket handshake and RFC 6455
 * framing (ws.c). The server that drives them is httpd.c; the routes are
 * http.c.
 */
#ifndef PARLEY_GW_HTTPD_H
#define PARLEY_GW_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ */
/* HTTP/1.1 request reader.                                            */

/* The path a request may name; longer targets answer 414 as 431 does:
 * nothing the gateway serves has a longer name. */
#define GW_HTTP_PATH_CHARS_MAX 1023
/* Sec-WebSocket-Key is the base64 of 16 bytes: 24 characters. */
#define GW_WS_KEY_CHARS 24

typedef enum gw_http_method {
	GW_HTTP_GET = 0,
	GW_HTTP_HEAD,
	GW_HTTP_OTHER, /* parsed, answered 405 */
} gw_http_method;

/* A request head: only what the gateway acts on. */
typedef struct gw_http_req {
	gw_http_method method;
	/* The target's path, query cut off; NUL-terminated. */
	char path[GW_HTTP_PATH_CHARS_MAX + 1];
	bool http11;     /* HTTP/1.1 (else 1.0) */
	bool keep_alive; /* after Connection and the version's default */
	bool upgrade_ws; /* Upgrade: websocket */
	bool conn_upgrade; /* Connection lists "upgrade" */
	bool has_body;   /* Content-Length > 0 or Transfer-Encoding */
	int ws_version;  /* Sec-WebSocket-Version, 0 when absent */
	char ws_key[GW_WS_KEY_CHARS + 1]; /* "" when absent or malformed */
	size_t head_bytes; /* bytes of the head, final blank line included */
} gw_http_req;

/* Reads a request head from buf[0..len). Returns 0 when the head is
 * complete (*req filled, req->head_bytes consumed), -1 when more bytes
 * are needed (and fewer than max are there), or the HTTP status that
 * refuses it: 400 (malformed: bad request line, control bytes, a header
 * line without a colon, a version that is not 1.0/1.1), 431 (the head
 * does not end within max bytes), 414 (the target is longer than
 * GW_HTTP_PATH_CHARS_MAX). Never reads past len. */
int gw_http_parse(const uint8_t *buf, size_t len, size_t max,
    gw_http_req *req);

/* A reply of the routes (http.c) for httpd.c to write: a status, a
 * content type, a body (owned: httpd.c frees it) and extra header lines
 * ("Name: value\r\n" each, or NULL). */
typedef struct gw_http_res {
	int status;
	const char *ctype;
	uint8_t *body;
	size_t len;
	bool owned;
	const char *extra;
} gw_http_res;

/* The reason phrase of a status code ("Not Found"); "Error" if unknown. */
const char *gw_http_reason(int status);

/* ------------------------------------------------------------------ */
/* WebSocket (RFC 6455), the server side.                              */

#define GW_WS_OP_CONT 0x0
#define GW_WS_OP_TEXT 0x1
#define GW_WS_OP_BINARY 0x2
#define GW_WS_OP_CLOSE 0x8
#define GW_WS_OP_PING 0x9
#define GW_WS_OP_PONG 0xA

#define GW_WS_CLOSE_NORMAL 1000
#define GW_WS_CLOSE_GOING_AWAY 1001
#define GW_WS_CLOSE_PROTOCOL 1002
#define GW_WS_CLOSE_UNSUPPORTED 1003
#define GW_WS_CLOSE_TOO_BIG 1009

/* A server frame's header: unmasked, at most a 64-bit length. */
#define GW_WS_HDR_BYTES_MAX 10
/* A client frame's header: masked, so 4 bytes more. */
#define GW_WS_RX_HDR_BYTES_MAX 14
/* RFC 6455 5.5: control frames carry at most 125 bytes. */
#define GW_WS_CTL_BYTES_MAX 125
/* Sec-WebSocket-Accept: base64 of a SHA-1, 28 characters. */
#define GW_WS_ACCEPT_CHARS 28

/* Sec-WebSocket-Accept for key (RFC 6455 4.2.2): base64(SHA-1(key +
 * GUID)), written with its NUL into out. */
void gw_ws_accept(const char *key, char out[GW_WS_ACCEPT_CHARS + 1]);

/* Header bytes of a server frame carrying len payload bytes. */
size_t gw_ws_hdr_len(size_t len);
/* Writes the header of a final (FIN) frame of opcode op and len bytes;
 * returns its length (gw_ws_hdr_len(len)). */
size_t gw_ws_hdr_write(uint8_t *out, int op, size_t len);

typedef enum gw_ws_ev {
	GW_WS_EV_NONE = 0, /* input used up; maybe a partial header left */
	GW_WS_EV_PING,     /* answer with a pong carrying ctl[0..ctl_len) */
	GW_WS_EV_PONG,     /* nothing to do */
	GW_WS_EV_CLOSE,    /* the client closes with close_code */
	GW_WS_EV_ERROR,    /* protocol error: close with close_code */
} gw_ws_ev;

/* The receive side of one connection: data frames are unmasked in place
 * as their bytes arrive (a frame need not be whole to be used), control
 * frames are collected whole. */
typedef struct gw_ws_rx {
	uint64_t msg_max;   /* bytes a data message may carry */
	uint64_t msg_bytes; /* of the message being received */
	uint64_t left;      /* payload bytes of the current frame to come */
	uint64_t pos;       /* payload bytes of the current frame so far */
	uint8_t mask[4];
	uint8_t op;         /* the current frame's opcode */
	bool fin;
	bool in_frame;
	bool in_msg; /* a data message waits for continuation frames */
	uint8_t ctl[GW_WS_CTL_BYTES_MAX];
	uint8_t ctl_len;
	uint16_t close_code; /* CLOSE: the client's; ERROR: the one to send */
	const char *error;   /* ERROR: what was wrong */
} gw_ws_rx;

void gw_ws_rx_init(gw_ws_rx *rx, uint64_t msg_max);

/* Decodes buf[*r .. end): application bytes of data frames are written,
 * unmasked, at buf[*w ..] (w <= r always, so in place is safe); *w and
 * *r advance. Returns at each control frame (PING, PONG, CLOSE), at the
 * first protocol error (ERROR, and nothing is to be read after it), or
 * when the input is used up (NONE; buf[*r .. end) is then a partial
 * frame header, fewer than GW_WS_RX_HDR_BYTES_MAX bytes, to be kept and
 * completed by the next bytes). Errors: an unmasked frame, reserved
 * bits, an unknown opcode, a fragmented or oversize control frame, a
 * continuation without a message, a new message inside one (1002); a
 * text message (1003); a message over msg_max (1009). */
gw_ws_ev gw_ws_rx_step(
    gw_ws_rx *rx, uint8_t *buf, size_t *w, size_t *r, size_t end);

#endif /* PARLEY_GW_HTTPD_H */
