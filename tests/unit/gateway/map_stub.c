/*
 * map_stub.c - stands in for proto/map_client.c's watcher until that
 * file lands (gateway/CMakeLists.txt links this only while it is
 * missing): a watcher that never reports a map, so the gateway builds,
 * starts with `meta` set and serves its static groups. Unit tests apply
 * maps by hand with gw_map_apply. Delete once proto/map_client.c exists.
 */
#include <stdlib.h>

#include "proto/map_client.h"

struct pl_map_watch {
	uint64_t since;
};

pl_status pl_map_watch_start(const char *const *addrs, int naddrs,
    uint64_t since, pl_map_watch_fn fn, void *ctx, pl_map_watch **out)
{
	(void)addrs;
	(void)fn;
	(void)ctx;
	if (naddrs <= 0 || naddrs > PL_META_ADDRS_MAX)
		return PL_E_BAD_REQUEST;
	pl_map_watch *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return PL_E_NOMEM;
	w->since = since;
	PL_WARN("gateway", "event=map_watch_stub reason=%s",
	    "built without proto/map_client.c: no map will arrive");
	*out = w;
	return PL_OK;
}

uint64_t pl_map_watch_version(const pl_map_watch *w)
{
	return w->since;
}

void pl_map_watch_stop(pl_map_watch *w)
{
	free(w);
}
