/*
 * dial.c - the transport of a libparley connection: an nng stream dialer
 * for the URL (tcp://, ws://, and over TLS tls+tcp://, wss://), its TLS
 * configuration and socket options, and the dial itself.
 */
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "client/conn.h"

static pl_status dial_status(int rv)
{
	switch (rv) {
	case NNG_ETIMEDOUT:
		return PL_E_TIMEOUT;
	case NNG_ENOMEM:
		return PL_E_NOMEM;
	case NNG_EADDRINVAL:
	case NNG_ENOTSUP:
	case NNG_EINVAL:
		return PL_E_BAD_REQUEST;
	default:
		return PL_E_UNAVAILABLE;
	}
}

static bool url_is_tls(const char *url)
{
	return strncmp(url, "tls+tcp://", 10) == 0 ||
	       strncmp(url, "wss://", 6) == 0;
}

/* Verification against a CA file (and the URL's host name), or none when
 * asked for explicitly; a TLS URL with neither is refused rather than
 * silently unverified. The dialer keeps its own hold on the config. */
static int tls_setup(
    nng_stream_dialer *d, const char *url, const parley_opts *o)
{
	bool ca = o != NULL && o->tls_ca_file != NULL && o->tls_ca_file[0];
	if (!ca && (o == NULL || !o->tls_insecure))
		return NNG_EINVAL;
	nng_url *u = NULL;
	nng_tls_config *cfg = NULL;
	int rv = nng_url_parse(&u, url);
	if (rv == 0)
		rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT);
	if (rv == 0 && ca)
		rv = nng_tls_config_ca_file(cfg, o->tls_ca_file);
	if (rv == 0 && ca)
		rv = nng_tls_config_server_name(cfg,
		    o->tls_server_name ? o->tls_server_name : u->u_hostname);
	if (rv == 0)
		rv = nng_tls_config_auth_mode(cfg,
		    ca ? NNG_TLS_AUTH_MODE_REQUIRED : NNG_TLS_AUTH_MODE_NONE);
	if (rv == 0)
		rv = nng_stream_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
	if (cfg != NULL)
		nng_tls_config_free(cfg);
	if (u != NULL)
		nng_url_free(u);
	return rv;
}

pl_status parley_dial(
    parley_conn *c, const char *url, int timeout_ms, const parley_opts *opts)
{
	int rv = nng_stream_dialer_alloc(&c->dialer, url);
	if (rv != 0)
		return dial_status(rv);
	if (url_is_tls(url) && (rv = tls_setup(c->dialer, url, opts)) != 0)
		return PL_E_BAD_REQUEST;
	/* Chat frames are small: no Nagle delay (ignored where unknown). */
	(void)nng_stream_dialer_set_bool(c->dialer, NNG_OPT_TCP_NODELAY, true);
	/* ws only; tcp answers ENOTSUP, which is fine. A history page may
	 * arrive as one WebSocket frame. */
	(void)nng_stream_dialer_set_size(c->dialer, NNG_OPT_WS_RECVMAXFRAME,
	    (size_t)c->recv_max + PL_FRAME_HEADER_BYTES);
	nng_aio_set_timeout(
	    c->send_aio, timeout_ms < 0 ? NNG_DURATION_INFINITE : timeout_ms);
	nng_stream_dialer_dial(c->dialer, c->send_aio);
	nng_aio_wait(c->send_aio);
	rv = nng_aio_result(c->send_aio);
	if (rv != 0)
		return dial_status(rv);
	c->stream = nng_aio_get_output(c->send_aio, 0);
	return PL_OK;
}
