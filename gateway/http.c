/*
 * http.c - the gateway's HTTP endpoints on the WebSocket port: /healthz
 * (200 when a broker answered recently), /metrics (Prometheus text) and
 * the demo pages from web_root. Handlers are added to the server nng's
 * WebSocket listener created (nng_http_server_hold returns that same
 * server for the same address), which owns them once added.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/gw_internal.h"

/* The demo pages are small; anything bigger is not ours to serve. */
#define STATIC_BYTES_MAX (4u * 1024 * 1024)

static gw *handler_gw(nng_aio *aio)
{
	return nng_http_handler_get_data(nng_aio_get_input(aio, 1));
}

static void reply(nng_aio *aio, uint16_t status, const char *ctype,
    const void *body, size_t len)
{
	nng_http_res *res;
	int rv;
	if ((rv = nng_http_res_alloc(&res)) != 0) {
		nng_aio_finish(aio, rv);
		return;
	}
	if ((rv = nng_http_res_set_status(res, status)) != 0 ||
	    (rv = nng_http_res_set_header(res, "Content-Type", ctype)) != 0 ||
	    (rv = nng_http_res_copy_data(res, body, len)) != 0) {
		nng_http_res_free(res);
		nng_aio_finish(aio, rv);
		return;
	}
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static void health_cb(nng_aio *aio)
{
	gw *g = handler_gw(aio);
	int64_t now = pl_mono_us();
	int up = 0;
	for (int i = 0; i < g->nlinks; i++) {
		int64_t ok = atomic_load(&g->links[i]->last_ok_us);
		if (ok != 0 && now - ok <= (int64_t)GW_HEALTHY_MS * 1000)
			up++;
	}
	char body[160];
	if (up > 0) {
		reply(aio, 200, "text/plain", "ok\n", 3);
		return;
	}
	int n = snprintf(body, sizeof(body),
	    "unavailable: no broker answered in the last %d ms (%d groups)\n",
	    GW_HEALTHY_MS, g->nlinks);
	reply(aio, 503, "text/plain", body, (size_t)n);
}

static void metrics_cb(nng_aio *aio)
{
	gw *g = handler_gw(aio);
	size_t len;
	char *text = pl_metrics_render(&g->metrics, &len);
	if (text == NULL) {
		reply(aio, 500, "text/plain", "out of memory\n", 14);
		return;
	}
	reply(aio, 200, "text/plain; version=0.0.4", text, len);
	free(text);
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

static void static_cb(nng_aio *aio)
{
	gw *g = handler_gw(aio);
	nng_http_req *req = nng_aio_get_input(aio, 0);
	char path[GW_PATH_CHARS_MAX + 256];
	size_t len = 0;
	void *body = NULL;
	if (static_path(g, nng_http_req_get_uri(req), path, sizeof(path)))
		body = file_read(path, &len);
	if (body == NULL) {
		reply(aio, 404, "text/plain", "not found\n", 10);
		return;
	}
	reply(aio, 200, content_type(path), body, len);
	free(body);
}

/* ---- setup ---- */

static pl_status handler_add(
    gw *g, const char *uri, void (*cb)(nng_aio *), bool tree)
{
	nng_http_handler *h;
	int rv = nng_http_handler_alloc(&h, uri, cb);
	if (rv != 0)
		goto fail;
	if ((rv = nng_http_handler_set_data(h, g, NULL)) != 0 ||
	    (tree && (rv = nng_http_handler_set_tree(h)) != 0) ||
	    (rv = nng_http_server_add_handler(g->http, h)) != 0) {
		nng_http_handler_free(h);
		goto fail;
	}
	return PL_OK; /* the server owns h now */
fail:
	PL_ERROR(GW_MOD, "event=http_handler_failed uri=%s err=\"%s\"", uri,
	    nng_strerror(rv));
	return PL_E_IO;
}

pl_status gw_http_start(gw *g)
{
	char url[GW_URL_CHARS_MAX + 16];
	nng_url *u;
	/* The same server the WebSocket listener made: https with TLS. */
	snprintf(url, sizeof(url), "%s://%s",
	    g->conf->tls_cert_key[0] != '\0' ? "https" : "http", g->conf->http);
	int rv = nng_url_parse(&u, url);
	if (rv == 0) {
		rv = nng_http_server_hold(&g->http, u);
		nng_url_free(u);
	}
	if (rv != 0) {
		PL_ERROR(GW_MOD, "event=http_failed url=%s err=\"%s\"", url,
		    nng_strerror(rv));
		return PL_E_IO;
	}
	pl_status st = handler_add(g, "/healthz", health_cb, false);
	if (st == PL_OK)
		st = handler_add(g, "/metrics", metrics_cb, false);
	/* Non-exclusive tree: /ws, /healthz and /metrics are matched first
	 * (nng tries longer paths first). */
	if (st == PL_OK && g->conf->web_root[0] != '\0')
		st = handler_add(g, "/", static_cb, true);
	return st;
}

void gw_http_stop(gw *g)
{
	if (g->http != NULL)
		nng_http_server_release(g->http);
	g->http = NULL;
}
