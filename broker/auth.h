/*
 * auth.h - proof of cluster membership for broker-to-broker messages
 * (auth.c).
 */
#ifndef PARLEY_BROKER_AUTH_H
#define PARLEY_BROKER_AUTH_H

#include <stdint.h>

#include "common/common.h"

/* Cluster membership proof for broker-to-broker messages (auth.c): a
 * message is [sender u64][counter u64][HMAC-SHA-512-256 (32)][payload],
 * keyed with the cluster secret. Not thread-safe: one per sending and
 * receiving thread (the group thread). */

#define BRK_SECRET_BYTES 32
#define BRK_AUTH_OVERHEAD (8 + 8 + 32)
/* Peers a broker hears from: the replicas of every group it hosts. */
#define BRK_AUTH_PEERS_MAX 64

typedef struct brk_auth_peer {
	uint64_t id;
	uint64_t last; /* highest counter accepted */
} brk_auth_peer;

typedef struct brk_auth {
	uint8_t key[BRK_SECRET_BYTES];
	uint64_t self;
	uint64_t counter;
	brk_auth_peer peers[BRK_AUTH_PEERS_MAX];
	int npeers;
} brk_auth;

/* self_id != 0; now_s seeds the counter (see auth.c). PL_E_CONFIG. */
pl_status brk_auth_init(brk_auth *a, const uint8_t secret[BRK_SECRET_BYTES],
    uint64_t self_id, int64_t now_s);
void brk_auth_fini(brk_auth *a); /* wipes the key; accepts NULL */
/* Writes the sealed message into out; payload is borrowed and must not
 * overlap out. PL_E_TOO_LARGE
 * when cap is short. */
pl_status brk_auth_seal(brk_auth *a, const uint8_t *payload, size_t n,
    uint8_t *out, size_t cap, size_t *len);
/* Verifies msg (borrowed); on success *payload points into msg.
 * PL_E_UNAUTHORIZED: short, bad MAC, replayed or reflected;
 * PL_E_BACKPRESSURE: more distinct senders than BRK_AUTH_PEERS_MAX. */
pl_status brk_auth_open(brk_auth *a, const uint8_t *msg, size_t n,
    uint64_t *sender, const uint8_t **payload, size_t *plen);
/* A cluster secret as standard base64 of 32 bytes (whitespace ignored). */
pl_status brk_secret_parse(const char *b64, uint8_t out[BRK_SECRET_BYTES]);

#endif
