/*
 * http.c - the routes of the gateway's HTTP port (httpd.c serves it):
 * /healthz (200 when a broker answered recently), /metrics (Prometheus
 * text) and the demo pages from web_root. Each route fills a reply; the
 * server writes it. /ws is the server's own (the WebSocket upgrade).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/http.h"
#include "gateway/link.h"

/* The demo pages are small; anything bigger is not ours to serve. */
#define STATIC_BYTES_MAX (4u * 1024 * 1024)

static void reply(
    gw_http_res *res, int status, const char *ctype, const char *text)
{
	*res = (gw_http_res){.status = status,
	    .ctype = ctype,
	    .body = (uint8_t *)text,
	    .len = strlen(text)};
}

static void health(gw *g, gw_http_res *res)
{
	int64_t now = pl_mono_us();
	int up = 0, nlinks;
	gw_link *const *links = gw_links_view(g, &nlinks);
	for (int i = 0; i < nlinks; i++) {
		int64_t ok = gw_link_last_ok_us(links[i]);
		if (ok != 0 && now - ok <= (int64_t)GW_HEALTHY_MS * 1000)
			up++;
	}
	if (up > 0) {
		reply(res, 200, "text/plain", "ok\n");
		return;
	}
	char *body = malloc(160);
	if (body == NULL) {
		reply(res, 503, "text/plain", "unavailable\n");
		return;
	}
	int n = snprintf(body, 160,
	    "unavailable: no broker answered in the last %d ms (%d groups)\n",
	    GW_HEALTHY_MS, nlinks);
	*res = (gw_http_res){.status = 503,
	    .ctype = "text/plain",
	    .body = (uint8_t *)body,
	    .len = (size_t)n,
	    .owned = true};
}

static void metrics(gw *g, gw_http_res *res)
{
	size_t len;
	char *text = pl_metrics_render(&g->metrics, &len);
	if (text == NULL) {
		reply(res, 500, "text/plain", "out of memory\n");
		return;
	}
	*res = (gw_http_res){.status = 200,
	    .ctype = "text/plain; version=0.0.4",
	    .body = (uint8_t *)text,
	    .len = len,
	    .owned = true};
}

/* ---- static files ---- */

static const char *content_type(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
	    {".html", "text/html; charset=utf-8"},
	    {".js", "text/javascript; charset=utf-8"},
	    {".mjs", "text/javascript; charset=utf-8"},
	    {".css", "text/css; charset=utf-8"},
	    {".json", "application/json"},
	    {".svg", "image/svg+xml"},
	    {".png", "image/png"},
	    {".ico", "image/x-icon"},
	};
	size_t n = strlen(path);
	for (size_t i = 0; i < PL_ARRAY_LEN(types); i++) {
		size_t e = strlen(types[i].ext);
		if (n >= e && strcmp(path + n - e, types[i].ext) == 0)
			return types[i].type;
	}
	return "application/octet-stream";
}

/* Reads a regular file of at most STATIC_BYTES_MAX. Returns owned bytes
 * or NULL. */
static void *file_read(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return NULL;
	char *buf = NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    (size_t)st.st_size <= STATIC_BYTES_MAX &&
	    (buf = malloc((size_t)st.st_size + 1)) != NULL) {
		ssize_t r = read(fd, buf, (size_t)st.st_size);
		if (r != st.st_size) {
			free(buf);
			buf = NULL;
		} else {
			*len = (size_t)r;
		}
	}
	close(fd);
	return buf;
}

/* Maps the request path under web_root. Refuses "..", so a request never
 * leaves the directory. */
static bool static_path(const gw *g, const char *uri, char *out, size_t cap)
{
	size_t n = strcspn(uri, "?#");
	if (n == 0 || uri[0] != '/')
		return false;
	for (size_t i = 0; i + 1 < n; i++) {
		if (uri[i] == '.' && uri[i + 1] == '.')
			return false;
	}
	const char *index = uri[n - 1] == '/' ? "index.html" : "";
	int w = snprintf(
	    out, cap, "%s%.*s%s", g->conf->web_root, (int)n, uri, index);
	return w > 0 && (size_t)w < cap;
}

static void static_file(gw *g, const char *uri, gw_http_res *res)
{
	char path[GW_PATH_CHARS_MAX + 256];
	size_t len = 0;
	void *body = NULL;
	if (g->conf->web_root[0] != '\0' &&
	    static_path(g, uri, path, sizeof(path)))
		body = file_read(path, &len);
	if (body == NULL) {
		reply(res, 404, "text/plain", "not found\n");
		return;
	}
	*res = (gw_http_res){.status = 200,
	    .ctype = content_type(path),
	    .body = body,
	    .len = len,
	    .owned = true};
}

void gw_http_route(gw *g, const gw_http_req *req, gw_http_res *res)
{
	if (strcmp(req->path, "/healthz") == 0)
		health(g, res);
	else if (strcmp(req->path, "/metrics") == 0)
		metrics(g, res);
	else
		static_file(g, req->path, res);
}
