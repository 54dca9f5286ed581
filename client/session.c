/*
 * session.c - a libparley connection's session: hello (which adopts the
 * server's frame limit and arms the token refresher) and refresh (which
 * tells the refresher of the new expiry).
 */
#include <stdio.h>

#include "client/conn.h"

static void welcome_copy(const Parley__Welcome *w, parley_welcome *out)
{
	parley_welcome r = {0};
	snprintf(r.session, sizeof(r.session), "%s", w->session);
	r.server_time_us = w->server_time_us;
	if (w->limits != NULL) {
		r.frame_bytes_max = w->limits->frame_bytes_max;
		r.body_bytes_max = w->limits->body_bytes_max;
		r.publish_per_sec = w->limits->publish_per_sec;
		r.subscriptions_max = w->limits->subscriptions_max;
		r.idle_ms = w->limits->idle_ms;
		r.history_limit_max = w->limits->history_limit_max;
		r.send_queue_bytes_max = w->limits->send_queue_bytes_max;
	}
	r.token_exp_s = w->token_exp_s;
	snprintf(r.tenant, sizeof(r.tenant), "%s", w->tenant);
	snprintf(r.user, sizeof(r.user), "%s", w->user);
	r.role = (int)w->role;
	*out = r;
}

/* Starts the token refresher after the first welcome that names an
 * expiry, when the application gave a callback. */
static pl_status refresher_arm(parley_conn *c, int64_t exp_s)
{
	if (c->token_fn == NULL || exp_s <= 0)
		return PL_OK;
	pl_status st = PL_OK;
	pthread_mutex_lock(&c->mu);
	if (c->refresher == NULL)
		st = parley_refresher_start(c, c->token_fn, c->token_arg,
		    c->refresh_ahead_s, exp_s, &c->refresher);
	pthread_mutex_unlock(&c->mu);
	return st == PL_OK ? PL_OK : parley_local_error(c, st, NULL);
}

pl_status parley_hello(
    parley_conn *c, const char *token, int timeout_ms, parley_welcome *out)
{
	Parley__Hello h = PARLEY__HELLO__INIT;
	h.token = (char *)(token ? token : "");
	h.client = "libparley/0.1";
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_HELLO;
	req.hello = &h;
	Parley__ServerFrame *rep = NULL;
	pl_status st = parley_request(c, &req, timeout_ms, &rep);
	if (st != PL_OK)
		return st;
	if (rep->body_case != PARLEY__SERVER_FRAME__BODY_WELCOME) {
		parley_frame_free(rep);
		return parley_local_error(
		    c, PL_E_PROTO, "hello: reply is no welcome");
	}
	const Parley__Limits *l = rep->welcome->limits;
	if (l != NULL && l->frame_bytes_max != 0) {
		pthread_mutex_lock(&c->send_mu);
		if (l->frame_bytes_max < c->send_max)
			c->send_max = l->frame_bytes_max;
		pthread_mutex_unlock(&c->send_mu);
	}
	int64_t exp = rep->welcome->token_exp_s;
	if (out != NULL)
		welcome_copy(rep->welcome, out);
	parley_frame_free(rep);
	return refresher_arm(c, exp);
}

pl_status parley_refresh(
    parley_conn *c, const char *token, int timeout_ms, int64_t *exp_s)
{
	Parley__Refresh r = PARLEY__REFRESH__INIT;
	r.token = (char *)(token ? token : "");
	Parley__ClientFrame req = PARLEY__CLIENT_FRAME__INIT;
	req.body_case = PARLEY__CLIENT_FRAME__BODY_REFRESH;
	req.refresh = &r;
	Parley__ServerFrame *rep = NULL;
	pl_status st = parley_request(c, &req, timeout_ms, &rep);
	if (st != PL_OK)
		return st;
	if (rep->body_case != PARLEY__SERVER_FRAME__BODY_REFRESHED) {
		parley_frame_free(rep);
		return parley_local_error(
		    c, PL_E_PROTO, "refresh: reply is no refreshed");
	}
	int64_t exp = rep->refreshed->token_exp_s;
	parley_frame_free(rep);
	/* Set once and freed only by parley_close; noted without c->mu,
	 * which the refresher takes under its own lock. */
	pthread_mutex_lock(&c->mu);
	parley_refresher *rf = c->refresher;
	pthread_mutex_unlock(&c->mu);
	parley_refresher_note(rf, exp);
	if (exp_s != NULL)
		*exp_s = exp;
	return PL_OK;
}
