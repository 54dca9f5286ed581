/*
 * http_parse.c - the HTTP/1.1 request reader of the gateway's HTTP port:
 * a request line and header lines (CRLF or bare LF), bounded in bytes,
 * read into the few facts the routes and the WebSocket upgrade need.
 * Pure and allocation-free; every byte is checked, none read past len.
 */
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "gateway/httpd.h"

/* Bytes of the line starting at p (without its LF, and without a CR
 * before it) or -1 when no LF is in p[0..n). *next is past the LF. */
static long line_len(const uint8_t *p, size_t n, size_t *next)
{
	const uint8_t *lf = memchr(p, '\n', n);
	if (lf == NULL)
		return -1;
	size_t l = (size_t)(lf - p);
	*next = l + 1;
	if (l > 0 && p[l - 1] == '\r')
		l--;
	return (long)l;
}

/* Visible ASCII, space and tab only: no NUL, no other control byte. */
static bool text_ok(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
			return false;
	}
	return true;
}

static bool eq_ci(const uint8_t *p, size_t n, const char *s)
{
	return strlen(s) == n && strncasecmp((const char *)p, s, n) == 0;
}

/* Whether the comma-separated list p[0..n) holds token (any case). */
static bool list_has(const uint8_t *p, size_t n, const char *token)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && p[j] != ',')
			j++;
		size_t a = i, b = j;
		while (a < b && (p[a] == ' ' || p[a] == '\t'))
			a++;
		while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t'))
			b--;
		if (eq_ci(p + a, b - a, token))
			return true;
		i = j + 1;
	}
	return false;
}

/* METHOD SP target SP HTTP/1.x */
static int request_line(const uint8_t *p, size_t n, gw_http_req *req)
{
	const uint8_t *sp1 = memchr(p, ' ', n);
	if (sp1 == NULL || sp1 == p)
		return 400;
	size_t ml = (size_t)(sp1 - p);
	const uint8_t *t = sp1 + 1;
	size_t rest = n - ml - 1;
	const uint8_t *sp2 = memchr(t, ' ', rest);
	if (sp2 == NULL || sp2 == t)
		return 400;
	size_t tl = (size_t)(sp2 - t);
	const uint8_t *v = sp2 + 1;
	size_t vl = rest - tl - 1;
	if (vl == 8 && memcmp(v, "HTTP/1.1", 8) == 0)
		req->http11 = true;
	else if (!(vl == 8 && memcmp(v, "HTTP/1.0", 8) == 0))
		return 400;
	if (ml == 3 && memcmp(p, "GET", 3) == 0)
		req->method = GW_HTTP_GET;
	else if (ml == 4 && memcmp(p, "HEAD", 4) == 0)
		req->method = GW_HTTP_HEAD;
	else
		req->method = GW_HTTP_OTHER;
	/* origin-form only: "/path[?query]" */
	if (t[0] != '/')
		return 400;
	size_t pl = 0;
	while (pl < tl && t[pl] != '?' && t[pl] != '#')
		pl++;
	if (pl > GW_HTTP_PATH_CHARS_MAX)
		return 414;
	for (size_t i = 0; i < tl; i++) {
		if (t[i] <= 0x20 || t[i] >= 0x7f)
			return 400;
	}
	memcpy(req->path, t, pl);
	req->path[pl] = '\0';
	req->keep_alive = req->http11;
	return 0;
}

static void ws_key_set(gw_http_req *req, const uint8_t *v, size_t n)
{
	if (n != GW_WS_KEY_CHARS || v[22] != '=' || v[23] != '=')
		return;
	for (size_t i = 0; i < 22; i++) {
		uint8_t c = v[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		        (c >= '0' && c <= '9') || c == '+' || c == '/'))
			return;
	}
	memcpy(req->ws_key, v, n);
	req->ws_key[n] = '\0';
}

static int header_line(const uint8_t *p, size_t n, gw_http_req *req)
{
	const uint8_t *colon = memchr(p, ':', n);
	if (colon == NULL || colon == p)
		return 400;
	size_t nl = (size_t)(colon - p);
	for (size_t i = 0; i < nl; i++) {
		if (p[i] <= 0x20 || p[i] >= 0x7f)
			return 400; /* no blank before the colon (RFC 9112 5.1) */
	}
	const uint8_t *v = colon + 1;
	size_t vl = n - nl - 1;
	while (vl > 0 && (v[0] == ' ' || v[0] == '\t')) {
		v++;
		vl--;
	}
	while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		vl--;
	if (eq_ci(p, nl, "Connection")) {
		if (list_has(v, vl, "close"))
			req->keep_alive = false;
		else if (list_has(v, vl, "keep-alive"))
			req->keep_alive = true;
		if (list_has(v, vl, "upgrade"))
			req->conn_upgrade = true;
	} else if (eq_ci(p, nl, "Upgrade")) {
		req->upgrade_ws = list_has(v, vl, "websocket");
	} else if (eq_ci(p, nl, "Sec-WebSocket-Key")) {
		ws_key_set(req, v, vl);
	} else if (eq_ci(p, nl, "Sec-WebSocket-Version")) {
		req->ws_version = eq_ci(v, vl, "13") ? 13 : -1;
	} else if (eq_ci(p, nl, "Content-Length")) {
		if (vl == 0)
			return 400;
		for (size_t i = 0; i < vl; i++) {
			if (v[i] < '0' || v[i] > '9')
				return 400;
			if (v[i] != '0')
				req->has_body = true;
		}
	} else if (eq_ci(p, nl, "Transfer-Encoding")) {
		req->has_body = true;
	}
	return 0;
}

int gw_http_parse(const uint8_t *buf, size_t len, size_t max,
    gw_http_req *req)
{
	memset(req, 0, sizeof(*req));
	size_t scan = len < max ? len : max;
	size_t off = 0, next;
	/* RFC 9112 2.2: empty lines before the request line are ignored. */
	long l;
	while ((l = line_len(buf + off, scan - off, &next)) == 0)
		off += next;
	if (l < 0)
		return len >= max ? 431 : -1;
	if (!text_ok(buf + off, (size_t)l))
		return 400;
	int st = request_line(buf + off, (size_t)l, req);
	if (st != 0)
		return st;
	off += next;
	for (;;) {
		l = line_len(buf + off, scan - off, &next);
		if (l < 0)
			return len >= max ? 431 : -1;
		if (l == 0)
			break;
		if (!text_ok(buf + off, (size_t)l))
			return 400;
		if ((st = header_line(buf + off, (size_t)l, req)) != 0)
			return st;
		off += next;
	}
	req->head_bytes = off + next;
	return 0;
}

const char *gw_http_reason(int status)
{
	switch (status) {
	case 101:
		return "Switching Protocols";
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 426:
		return "Upgrade Required";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}
