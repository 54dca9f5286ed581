/*
 * harness.h - real-process test harness: starts parley-broker and
 * parley-gateway on loopback ports it picks free, with configs and tenant
 * keys in a fresh temp dir, mints tokens, and stops processes by PID.
 * Every process is killed when the test binary exits.
 */
#ifndef PARLEY_HARNESS_H
#define PARLEY_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

#include "client/parley.h"

#define HX_GROUPS_MAX 4

typedef struct hx_proc {
	pid_t pid;
	char name[32];
	char log[256];
} hx_proc;

typedef struct hx_cluster {
	char dir[128];
	int ngroups;
	int broker_port[HX_GROUPS_MAX + 1];
	int broker_http[HX_GROUPS_MAX + 1];
	int tcp_port, http_port;
	char tcp_url[64], ws_url[80];
	hx_proc broker[HX_GROUPS_MAX + 1];
	hx_proc gateway;
	char gw_extra[1024];     /* extra [gateway] lines */
	char broker_extra[512];  /* extra [broker] lines */
	char broker_env[4][512]; /* NAME=value pairs set for brokers */
} hx_cluster;

/* Prepares dir, keys (tenants "acme" and "globex") and ports. */
bool hx_init(hx_cluster *c, int ngroups);
/* Starts every broker, then the gateway; waits until it serves. */
bool hx_start(hx_cluster *c);
bool hx_start_broker(hx_cluster *c, int group);
bool hx_start_gateway(hx_cluster *c);
/* SIGKILL (hard) or SIGTERM and wait. */
void hx_kill(hx_proc *p, int sig);
/* Stops everything and removes the dir (keeps it if keep_on_failure and
 * failed). */
void hx_fini(hx_cluster *c, bool failed);

/* Mints a token of tenant ("acme" or "globex") for user/role; ttl in
 * seconds (negative: already expired); room "" for no scope. Returns a
 * static buffer per call slot (8 slots, rotating). */
const char *hx_token(hx_cluster *c, const char *tenant, const char *user,
    int role, int ttl_s, const char *room);

/* Connects over TCP (ws=false) or WebSocket and says hello. */
parley_conn *hx_client(
    hx_cluster *c, bool ws, const char *tenant, const char *user, int role);

/* Waits for the next message event of room; skips other events.
 * Returns its seq, 0 on timeout. *body (may be NULL) gets a copy. */
uint64_t hx_next_message(parley_conn *conn, const char *room, int timeout_ms,
    char *body, size_t cap);

/* history() that waits (up to 5 s) for a restarted broker: retries while
 * the answer is unavailable or a timeout. On PL_OK *reply is owned. */
pl_status hx_history_retry(parley_conn *conn, const char *room,
    const parley_history_query *q, Parley__ServerFrame **reply);

/* GET http://127.0.0.1:port/path; returns the status, body in out. */
int hx_http_get(int port, const char *path, char *out, size_t cap);

/* A TCP socket connected to the gateway's client port, or -1. */
int hx_raw_connect(hx_cluster *c);

#endif
