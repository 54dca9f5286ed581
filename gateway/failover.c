/*
 * failover.c - the gateway's failover policy, kept pure so a table can
 * test it: which requests may be sent again when their outcome is
 * unknown, how long the gateway keeps trying, and which replica a
 * leader_hint names. link_batch.c applies it; docs/replication.md ("Gateways
 * follow leadership") is the behaviour it implements.
 */
#include <string.h>

#include "gateway/gateway.h"
#include "proto/codec.h"

bool gw_resend_safe(int op, bool has_msg_id, bool has_idem_key)
{
	switch (op) {
	case PARLEY__CLIENT_FRAME__BODY_PUBLISH:
		return has_msg_id; /* the broker de-duplicates it */
	case PARLEY__CLIENT_FRAME__BODY_CREATE_ROOM:
		return has_idem_key; /* a retry returns the same room */
	case PARLEY__CLIENT_FRAME__BODY_JOIN:
	case PARLEY__CLIENT_FRAME__BODY_LEAVE:
	case PARLEY__CLIENT_FRAME__BODY_READ:
	case PARLEY__CLIENT_FRAME__BODY_TYPING:
	case PARLEY__CLIENT_FRAME__BODY_SUBSCRIBE:
	case PARLEY__CLIENT_FRAME__BODY_UNSUBSCRIBE:
	case PARLEY__CLIENT_FRAME__BODY_HISTORY:
	case PARLEY__CLIENT_FRAME__BODY_ROOM_INFO:
	case PARLEY__CLIENT_FRAME__BODY_PRESENCE:
	case PARLEY__CLIENT_FRAME__BODY_LIST_ROOMS:
	case PARLEY__CLIENT_FRAME__BODY_REPORT:
	case PARLEY__CLIENT_FRAME__BODY_STATUS:
		/* Reads, and writes whose repetition lands in the same
		 * state (joined, left, a read position, a typing signal). */
		return true;
	default:
		/* close_room: a second close answers room_closed to a
		 * close that worked. Anything new is unsafe until shown
		 * otherwise. */
		return false;
	}
}

gw_retry_act gw_retry_decide(gw_outcome o, bool resend_safe, int nreplicas,
    int64_t now_us, int64_t deadline_us)
{
	if (now_us >= deadline_us)
		return GW_RETRY_FAIL;
	switch (o) {
	case GW_OUT_NOT_APPLIED:
		return GW_RETRY_RESEND;
	case GW_OUT_UNKNOWN:
		return resend_safe ? GW_RETRY_RESEND : GW_RETRY_FAIL;
	case GW_OUT_LOST:
		return resend_safe && nreplicas > 1 ? GW_RETRY_RESEND
		                                    : GW_RETRY_FAIL;
	}
	return GW_RETRY_FAIL;
}

int gw_replica_match(const gw_group_conf *gc, const char *hint)
{
	if (hint == NULL || hint[0] == '\0')
		return -1;
	for (int i = 0; i < gc->nbrokers; i++) {
		if (strcmp(gc->brokers[i], hint) == 0)
			return i;
	}
	return -1;
}
