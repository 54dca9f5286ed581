/*
 * ctl.h - what parleyctl's files share: the parsed command line, the
 * options and exit codes every command uses, and each file's entry
 * points. parleyctl is its own executable over libparley; nothing here is
 * part of the library.
 *
 *   ctl_main.c   main, argument parsing, errors, connecting, dispatch
 *   ctl_print.c  text and JSON output of replies and events
 *   ctl_room.c   rooms, publish, subscribe (tail), history, presence,
 *                typing and read
 *   ctl_ops.c    keygen and token (offline), status, group status,
 *                report, ping
 *   ctl_map.c    the cluster map: show it, and changes through the meta
 *                group (brokers, groups, tenants, keys)
 *   ctl_cluster.c operations that watch the groups follow the map:
 *                cluster status, replica move, broker drain, leader
 *                rebalance, broker prepare-restart
 */
#ifndef PARLEY_CLIENT_CTL_H
#define PARLEY_CLIENT_CTL_H

#include <stdbool.h>
#include <stdint.h>

#include "client/parley.h"
#include "cluster.pb-c.h"
#include "proto/map_client.h"

#define REQUEST_TIMEOUT_MS 10000
/* Options per invocation: a handful are ever used; --meta may repeat up
 * to the protocol's bound. */
#define ARGS_MAX (PL_META_ENTRIES_MAX + 16)
#define POS_MAX 4

enum { EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef struct ctl_kv {
	const char *key;   /* option name without "--" */
	const char *value; /* NULL for flags */
} ctl_kv;

typedef struct ctl_args {
	const char *pos[POS_MAX];
	int npos;
	ctl_kv opts[ARGS_MAX];
	int nopts;
} ctl_args;

/* Options every gateway command accepts, prefixed to its own. */
#define GW_OPTS "url,token,ca,insecure,server-name,"

/* ctl_main.c */

/* Prints the usage text on stderr; returns EXIT_USAGE. */
int ctl_usage(void);
/* Prints "error: code: msg" on stderr; returns EXIT_FAIL. */
int ctl_fail(const char *code, const char *msg);
/* Reports a failed call on c (may be NULL) with status st. */
int ctl_fail_st(parley_conn *c, pl_status st);
/* Every option given must be in allowed ("url,token,json"). */
bool ctl_args_check(
    const ctl_args *a, const char *allowed, int npos_min, int npos_max);
/* The last value of option key ("" for a flag), NULL when absent. */
const char *ctl_opt(const ctl_args *a, const char *key);
/* A decimal uint64 with nothing around it. */
bool ctl_parse_u64(const char *s, uint64_t *out);
/* An optional numeric option: absent leaves *out, malformed is false. */
bool ctl_opt_u64(const ctl_args *a, const char *key, uint64_t *out);
/* Connects to the gateway the options name and says hello with the
 * token; on 0 *out is owned by the caller and *w (may be NULL) holds the
 * welcome, else the error is printed and the exit code returned. */
int ctl_open(const ctl_args *a, parley_conn **out, parley_welcome *w);

/* ctl_print.c: each prints one reply or event on stdout. */
void ctl_print_message(const Parley__Message *m);
void ctl_print_members(Parley__Member **m, size_t n);
void ctl_print_room_info(const Parley__RoomInfo *ri);
void ctl_json_room_info(const Parley__RoomInfo *ri);
void ctl_print_event(const Parley__Event *e);
void ctl_print_status(const Parley__StatusReply *s);
void ctl_json_status(const Parley__StatusReply *s);
void ctl_print_group_status(const Parley__StatusReply *s);
void ctl_json_group_status(const Parley__StatusReply *s);
void ctl_print_report(const Parley__Report *r, bool json);

/* ctl_room.c and ctl_ops.c: the commands. Each returns the exit code;
 * the ones given c borrow a connection ctl_main.c opened and closes. */
int ctl_room(const ctl_args *a);
int ctl_publish(parley_conn *c, const ctl_args *a);
int ctl_subscribe(parley_conn *c, const ctl_args *a, uint32_t idle_ms);
int ctl_history(parley_conn *c, const ctl_args *a);
int ctl_presence(parley_conn *c, const ctl_args *a);
int ctl_typing_read(const char *cmd, parley_conn *c, const ctl_args *a);
int ctl_keygen(const ctl_args *a);
int ctl_token(const ctl_args *a);
int ctl_group(const ctl_args *a);
int ctl_status(parley_conn *c, const ctl_args *a);
int ctl_report(parley_conn *c, const ctl_args *a);
int ctl_ping(parley_conn *c);
/* cluster, broker, group (but status), tenant and key commands. */
int ctl_map_cmd(const char *cmd, const ctl_args *a);

/* ctl_map.c, shared with ctl_cluster.c: the meta replicas of --meta or
 * PARLEY_META; one change signed and sent (prints changed/unchanged and
 * the version; the exit code); the current map (initialised by the
 * call; the exit code, the map valid when 0). */
#define CTL_MAP_TIMEOUT_MS 10000
typedef struct ctl_meta {
	char buf[PL_META_ADDRS_MAX][PL_MAP_ADDR_CHARS_MAX + 1];
	const char *p[PL_META_ADDRS_MAX];
	int n;
} ctl_meta;
bool ctl_meta_addrs(const ctl_args *a, ctl_meta *m);
int ctl_change_send(const ctl_args *a, const Parley__Cluster__Change *c);
int ctl_map_get(const ctl_args *a, pl_map *m);

/* ctl_cluster.c: operations that watch the groups follow the map:
 * cluster status, replica move, broker drain (moving replicas off),
 * leader rebalance, broker prepare-restart. */
int ctl_cluster_status(const ctl_args *a);
int ctl_replica(const ctl_args *a);
int ctl_broker_drain(const ctl_args *a, uint64_t node);
int ctl_leader(const ctl_args *a);
int ctl_broker_prepare_restart(const ctl_args *a, uint64_t node);

#endif /* PARLEY_CLIENT_CTL_H */
