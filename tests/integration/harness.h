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
#include "cluster.pb-c.h"
#include "proto/map_client.h"

#define HX_GROUPS_MAX 4
/* Replicas per group in a replicated cluster (a Raft group of 3 or 5). */
#define HX_REPLICAS_MAX 5

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
	/* A second gateway in front of the same groups (hx_start_gateway2):
	 * its own id, client port and HTTP port, the same [gateway] extras. */
	hx_proc gateway2;
	int tcp_port2, http_port2;
	char tcp_url2[64], ws_url2[80];
	char gw_extra[1024];     /* extra [gateway] lines */
	char broker_extra[512];  /* extra [broker] lines */
	char broker_env[4][512]; /* NAME=value pairs set for brokers */
	/* Replicated groups (hx_init_replicated): nreplicas > 1 brokers
	 * per group, node ids 1..nreplicas, each with a gateway-facing
	 * listen port, a peer port and an HTTP port, sharing one cluster
	 * secret. broker_port/broker/broker_http above are then unused. */
	int nreplicas;
	int rep_port[HX_GROUPS_MAX + 1][HX_REPLICAS_MAX + 1];
	int rep_peer[HX_GROUPS_MAX + 1][HX_REPLICAS_MAX + 1];
	int rep_http[HX_GROUPS_MAX + 1][HX_REPLICAS_MAX + 1];
	hx_proc rep[HX_GROUPS_MAX + 1][HX_REPLICAS_MAX + 1];
	char secret_file[160];
	/* The meta group (hx_init_meta): nreplicas replicas in slot 0 of
	 * the rep_* arrays, started with hx_start_replica(c, 0, node). */
	bool meta;
	/* Cluster brokers (hx_start_cluster_broker): node r in slot 0,
	 * hosting a meta replica and what the map places on it; gateways
	 * then follow the map (meta = ...) instead of [group.N]. */
	bool cluster;
	/* Cluster brokers 1..nmeta host the meta group (0: all of them). */
	int nmeta;
} hx_cluster;

/* Prepares dir, keys (tenants "acme" and "globex") and ports. */
bool hx_init(hx_cluster *c, int ngroups);
/* Like hx_init with nreplicas broker replicas per group (2 ..
 * HX_REPLICAS_MAX): ports for each, and a secret file (base64 of 32
 * random bytes) they share. Each replica's ini has [broker] id, group,
 * node, listen, peer, http, data, durability, secret_file and
 * broker_extra, then a [replica.N] section (listen, peer) per replica;
 * the gateway's [group.N] broker lists every replica's listen address. */
bool hx_init_replicated(hx_cluster *c, int ngroups, int nreplicas);
/* Starts (or restarts, on the same data) replica `node` of `group`. */
bool hx_start_replica(hx_cluster *c, int group, int node);
/* After hx_init_replicated: ports for a meta group (group 0) of as many
 * replicas, which hx_fini stops with the rest. */
bool hx_init_meta(hx_cluster *c);
/* After hx_init_meta: starts cluster broker `node` ([meta.N] sections
 * for every meta replica; it registers itself in the map). */
bool hx_start_cluster_broker(hx_cluster *c, int node);
hx_proc *hx_replica(hx_cluster *c, int group, int node);
/* "tcp://127.0.0.1:PORT", the replica's listen address (static buffer
 * per call slot, 8 slots, rotating). */
const char *hx_replica_url(hx_cluster *c, int group, int node);
/* The node that the gateway's status names leader of group (asked
 * through conn until timeout_ms passes), 0 when none did. */
int hx_leader(hx_cluster *c, parley_conn *conn, int group, int timeout_ms);
/* SIGSTOP / SIGCONT a process without waiting (a paused replica). */
void hx_pause(hx_proc *p);
void hx_resume(hx_proc *p);
/* Starts every broker, then the gateway; waits until it serves. */
bool hx_start(hx_cluster *c);
bool hx_start_broker(hx_cluster *c, int group);
bool hx_start_gateway(hx_cluster *c);
/* Starts (or restarts) the second gateway, id gw-test-2, on ports of its
 * own (chosen at its first start); waits until it serves. */
bool hx_start_gateway2(hx_cluster *c);
/* A process stops within this long of SIGTERM (the broker's and the
 * gateway's stop deadline, PL_STOP_DEADLINE_MS, plus time to exit). */
#define HX_STOP_US_MAX (2 * 1000 * 1000)
/* Sends sig (SIGKILL: a hard kill; SIGTERM: an orderly stop) and waits
 * for the process; returns the microseconds it took to exit. A process
 * found already dead was not killed by the test: it is reported and
 * fails the binary at hx_fini, as does a SIGTERM stop slower than
 * HX_STOP_US_MAX. */
int64_t hx_kill(hx_proc *p, int sig);
/* The slowest SIGTERM stop so far, in microseconds. */
int64_t hx_stop_us_max(void);
/* Stops everything and removes the dir (kept when the environment has
 * PARLEY_IT_KEEP); on failure the logs' tails are printed. */
void hx_fini(hx_cluster *c, bool failed);

/* Mints a token of tenant ("acme" or "globex") for user/role; ttl in
 * seconds (negative: already expired); room "" for no scope. Returns a
 * static buffer per call slot (8 slots, rotating). */
const char *hx_token(hx_cluster *c, const char *tenant, const char *user,
    int role, int ttl_s, const char *room);

/* Connects over TCP (ws=false) or WebSocket and says hello. */
parley_conn *hx_client(
    hx_cluster *c, bool ws, const char *tenant, const char *user, int role);
/* The same through gateway 1 or 2. */
parley_conn *hx_client_at(hx_cluster *c, int gateway, bool ws,
    const char *tenant, const char *user, int role);

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

/* One unlabelled metric of the /metrics page on http_port (a gateway's or
 * a broker's); -1 when the page or the metric is missing. */
long hx_metric(int http_port, const char *name);

/* Publishes message i to room: client_msg_id "msg-i", body "body i", so
 * a retry of the same i is the same message. a may be NULL. */
pl_status hx_publish_n(parley_conn *c, const char *room, int i, parley_ack *a);

/* A TCP socket connected to the gateway's client port, or -1. */
int hx_raw_connect(hx_cluster *c);

/* harness_map.c: the meta group's addresses (the return is how many);
 * a change signed with the cluster secret; the map; a group of
 * `replicas` added; a tenant (its key file from hx_init) with its key; a
 * cluster broker's replica of group; parleyctl run with args plus --meta
 * and --secret (its output in out, appended to parleyctl.log; its exit
 * code, -1 when it did not run). */
int hx_meta_addrs(hx_cluster *c, const char **out, char (*buf)[64]);
pl_status hx_map_change(
    hx_cluster *c, const Parley__Cluster__Change *ch, pl_map *after);
pl_status hx_map_fetch(hx_cluster *c, pl_map *m);
/* Starts cluster brokers 1..n and waits until the map holds all n; m
 * (initialised here) is the map then. */
bool hx_cluster_up(hx_cluster *c, int n, pl_map *m);
pl_status hx_map_group_add(hx_cluster *c, uint32_t replicas, pl_map *after);
pl_status hx_map_tenant_with_key(
    hx_cluster *c, const char *tenant, pl_map *after);
pl_status hx_replica_info(
    hx_cluster *c, int node, uint32_t group, pl_replica_info *out);
int hx_ctl(hx_cluster *c, const char *args, char *out, size_t cap);

#endif
