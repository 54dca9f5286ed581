/*
 * refresh.c - keeps a connection's token fresh: a thread per connection
 * that has a token_refresh callback sleeps until shortly before the
 * token's expiry, asks the application for a new token and sends it with
 * parley_refresh. The thread is the only caller of the callback; it is
 * stopped and joined by parley_close before anything is freed.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/internal.h"

/* A refused or failed refresh is tried again this much later (a gateway
 * restarting, a token service down), while the token still lasts. */
#define REFRESH_RETRY_S 1
#define REFRESH_TIMEOUT_MS 10000

struct parley_refresher {
	parley_conn *c; /* borrowed: outlived by the connection */
	parley_token_fn fn;
	void *arg;
	uint32_t ahead_s;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_REALTIME: expiries are wall-clock */
	bool stop;
	int64_t exp_s;
	int64_t due_s; /* when to ask next: set with each new exp_s */
	pthread_t thread;
	char token[PL_TOKEN_CHARS_MAX + 1];
};

/* A new expiry (under mu): ask ahead_s before it, but never earlier
 * than half the time left, so a short-lived token is not refreshed in a
 * loop. Fixed once per expiry: recomputed as time passes, half the time
 * left would never arrive. */
static void schedule_locked(parley_refresher *r, int64_t exp_s)
{
	int64_t left = exp_s - pl_now_us() / 1000000;
	int64_t lead = r->ahead_s;
	if (lead > left / 2)
		lead = left / 2;
	r->exp_s = exp_s;
	r->due_s = exp_s - lead;
}

/* One refresh, without r->mu held: the callback and the request may take
 * their time. */
static void refresh_once(parley_refresher *r)
{
	int64_t exp = 0;
	bool ok = r->fn(r->arg, r->token, sizeof(r->token));
	r->token[sizeof(r->token) - 1] = '\0';
	if (ok)
		ok = parley_refresh(r->c, r->token, REFRESH_TIMEOUT_MS, &exp) ==
		     PL_OK;
	pthread_mutex_lock(&r->mu);
	if (ok && exp > r->exp_s)
		schedule_locked(r, exp);
	else if (r->due_s <= pl_now_us() / 1000000)
		r->due_s = pl_now_us() / 1000000 + REFRESH_RETRY_S;
	pthread_mutex_unlock(&r->mu);
}

static void *refresher_main(void *arg)
{
	parley_refresher *r = arg;
	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		int64_t now = pl_now_us() / 1000000;
		if (now >= r->exp_s || parley_is_closed(r->c))
			break; /* expired: the server says goodbye */
		if (now < r->due_s) {
			struct timespec ts = {.tv_sec = (time_t)r->due_s};
			pthread_cond_timedwait(&r->cv, &r->mu, &ts);
			continue;
		}
		pthread_mutex_unlock(&r->mu);
		refresh_once(r);
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

pl_status parley_refresher_start(parley_conn *c, parley_token_fn fn, void *arg,
    uint32_t ahead_s, int64_t exp_s, parley_refresher **out)
{
	parley_refresher *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return PL_E_NOMEM;
	r->c = c;
	r->fn = fn;
	r->arg = arg;
	r->ahead_s = ahead_s;
	schedule_locked(r, exp_s); /* not shared yet */
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	if (pthread_create(&r->thread, NULL, refresher_main, r) != 0) {
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return PL_E_NOMEM;
	}
	*out = r;
	return PL_OK;
}

void parley_refresher_note(parley_refresher *r, int64_t exp_s)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	if (exp_s > r->exp_s)
		schedule_locked(r, exp_s);
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

void parley_refresher_stop(parley_refresher *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	memset(r->token, 0, sizeof(r->token));
	free(r);
}
