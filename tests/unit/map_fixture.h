/*
 * map_fixture.h - what the cluster map's tests share (test_map_codec.c,
 * _brokers_groups.c, _replicas.c, _tenants.c and _walk.c in tests/unit/,
 * one binary each): builders of encoded Changes, app()
 * with the APPLY, NOOP and REFUSE checks, which hold every apply to the
 * properties of docs/cluster.md (a refusal or a no-op leaves the map
 * byte-identical, a change adds 1 to version, a refusal says why), the
 * invariants written again independently of proto/map*.c, and a seeded
 * generator. Defined in map_fixture.c; include it after tests/check.h.
 */
#ifndef PARLEY_TEST_MAP_FIXTURE_H
#define PARLEY_TEST_MAP_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.pb-c.h"
#include "proto/map.h"

/* What app() returns when a property of every apply is broken. */
#define BROKEN 999
#define CHG_BYTES 2048

typedef struct chg {
	uint8_t b[CHG_BYTES];
	size_t n;
} chg;

/* The reason of the last refusal app() saw. */
extern char why[256];

/* ---- changes ---- */

chg pack(Parley__Cluster__Change *c);
chg c_broker_add(
    uint64_t node, const char *name, const char *listen, const char *peer);
/* broker n with addresses derived from n */
chg c_broker(uint64_t n);
chg c_broker_state(uint64_t node, int state);
chg c_group_add(uint32_t id, uint32_t replicas, uint32_t weight);
chg c_group_set(uint32_t id, bool draining, uint32_t weight);
chg c_group_remove(uint32_t id);
enum { R_ADD, R_PROMOTE, R_REMOVE };
chg c_replica(int op, uint32_t group, uint64_t node);
chg c_tenant_set(const char *name, uint32_t conns, uint32_t days);
chg c_key_add(const char *tenant, const char *id, uint8_t fill, size_t pklen);
chg c_key_revoke(const char *tenant, const char *id);
chg c_defaults(uint32_t conns, uint32_t days);
chg c_rebalance(const uint64_t *avoid, size_t n);

/* ---- the invariants, written again here (not proto/map*.c's) ---- */

/* a and b encode to the same bytes */
bool same_bytes(const pl_map *a, const pl_map *b);
/* NULL, or the invariant m breaks; a map that holds them round-trips. */
const char *invariants(const pl_map *m);

/* ---- applying ---- */

/* pl_map_apply, checking what every apply must do: a refusal or a
 * no-op leaves the map byte-identical, a change adds 1 to version, and
 * the invariants hold after it. BROKEN when one of those fails. */
pl_status app(pl_map *m, chg c, bool *changed_out);

/* Applies c, which must change m. */
#define APPLY(m, c)                                                            \
	do {                                                                   \
		bool ch_ = false;                                              \
		pl_status st_ = app(m, c, &ch_);                               \
		if (st_ != PL_OK)                                              \
			fprintf(stderr, "  why: %s\n", why);                   \
		CHECK_EQ(st_, PL_OK);                                          \
		CHECK(ch_);                                                    \
	} while (0)
/* Applies c, which must be already in effect. */
#define NOOP(m, c)                                                             \
	do {                                                                   \
		bool ch_ = true;                                               \
		CHECK_EQ(app(m, c, &ch_), PL_OK);                              \
		CHECK(!ch_);                                                   \
	} while (0)
/* Applies c, which must be refused with st. */
#define REFUSE(m, c, st)                                                       \
	do {                                                                   \
		CHECK_EQ(app(m, c, NULL), st);                                 \
	} while (0)

/* Adds brokers 1..n (c_broker), each a change. */
bool add_brokers(pl_map *m, int n);

/* ---- a seeded generator (xorshift64) ---- */

/* Its state: a test that needs its own sequence seeds it. */
extern uint64_t rng_state;
uint64_t rnd(void);
/* A number below n. */
uint32_t rnd_n(uint32_t n);

#endif /* PARLEY_TEST_MAP_FIXTURE_H */
