/*
 * test_map_tenants.c - the cluster map's tenants, keys and defaults
 * (proto/map_apply.c): tenants set and bounded by slug rules, keys added,
 * revoked for good and rotated through revoked slots, defaults set.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "tests/unit/map_fixture.h"

/* ---- tenants ---- */

TEST(test_map_tenant_set)
{
	pl_map m;
	pl_map_init(&m);
	APPLY(&m, c_tenant_set("zeta", 5, 0));
	APPLY(&m, c_tenant_set("acme", 0, 30));
	NOOP(&m, c_tenant_set("acme", 0, 30));
	APPLY(&m, c_tenant_set("acme", 100, 30));
	CHECK_EQ(m.ntenants, 2);
	CHECK_STR_EQ(m.tenants[0].name, "acme");
	CHECK_EQ(pl_map_tenant_find(&m, "acme")->limits.connections_max, 100);
	CHECK_EQ(pl_map_tenant_find(&m, "zeta")->limits.connections_max, 5);
	CHECK(pl_map_tenant_find(&m, "nope") == NULL);
	REFUSE(&m, c_tenant_set("", 0, 0), PL_E_BAD_REQUEST);
	REFUSE(&m, c_tenant_set("a/b", 0, 0), PL_E_BAD_REQUEST);
	char longname[PL_TENANT_CHARS_MAX + 2];
	memset(longname, 't', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	REFUSE(&m, c_tenant_set(longname, 0, 0), PL_E_TOO_LARGE);
	pl_map_fini(&m);
}

TEST(test_map_key_add)
{
	pl_map m;
	pl_map_init(&m);
	REFUSE(&m, c_key_add("acme", "k1", 1, 32), PL_E_NOT_FOUND);
	APPLY(&m, c_tenant_set("acme", 0, 0));
	APPLY(&m, c_key_add("acme", "k1", 1, 32));
	NOOP(&m, c_key_add("acme", "k1", 1, 32));
	REFUSE(&m, c_key_add("acme", "k1", 2, 32), PL_E_FORBIDDEN);
	REFUSE(&m, c_key_add("acme", "k2", 2, 31), PL_E_BAD_REQUEST);
	REFUSE(&m, c_key_add("acme", "k2", 2, 33), PL_E_BAD_REQUEST);
	REFUSE(&m, c_key_add("acme", "k 2", 2, 32), PL_E_BAD_REQUEST);
	REFUSE(&m, c_key_add("acme", "", 2, 32), PL_E_BAD_REQUEST);
	APPLY(&m, c_key_add("acme", "k2", 2, 32));
	APPLY(&m, c_key_add("acme", "k3", 3, 32));
	APPLY(&m, c_key_add("acme", "k4", 4, 32));
	REFUSE(&m, c_key_add("acme", "k5", 5, 32), PL_E_TOO_LARGE);
	CHECK_EQ(m.tenants[0].nkeys, PL_KEYS_PER_TENANT_MAX);
	pl_map_fini(&m);
}

TEST(test_map_key_revoke)
{
	pl_map m;
	pl_map_init(&m);
	APPLY(&m, c_tenant_set("acme", 0, 0));
	REFUSE(&m, c_key_revoke("acme", "k1"), PL_E_NOT_FOUND);
	REFUSE(&m, c_key_revoke("nope", "k1"), PL_E_NOT_FOUND);
	APPLY(&m, c_key_add("acme", "k1", 1, 32));
	/* the last valid key may go: the tenant then has none */
	APPLY(&m, c_key_revoke("acme", "k1"));
	NOOP(&m, c_key_revoke("acme", "k1"));
	CHECK(m.tenants[0].keys[0].revoked);
	/* revocation is final: re-adding it changes nothing */
	NOOP(&m, c_key_add("acme", "k1", 1, 32));
	CHECK(m.tenants[0].keys[0].revoked);
	pl_map_fini(&m);
}

TEST(test_map_key_rotation_reuses_revoked_slots)
{
	pl_map m;
	pl_map_init(&m);
	APPLY(&m, c_tenant_set("acme", 0, 0));
	char id[8];
	for (int i = 0; i < 4; i++) {
		snprintf(id, sizeof(id), "k%d", i);
		APPLY(&m, c_key_add("acme", id, (uint8_t)i, 32));
	}
	APPLY(&m, c_key_revoke("acme", "k2"));
	APPLY(&m, c_key_revoke("acme", "k0"));
	/* the oldest revoked slot first */
	APPLY(&m, c_key_add("acme", "k4", 4, 32));
	CHECK_STR_EQ(m.tenants[0].keys[0].id, "k4");
	APPLY(&m, c_key_add("acme", "k5", 5, 32));
	CHECK_STR_EQ(m.tenants[0].keys[2].id, "k5");
	REFUSE(&m, c_key_add("acme", "k6", 6, 32), PL_E_TOO_LARGE);
	pl_map_fini(&m);
}

TEST(test_map_defaults_set)
{
	pl_map m;
	pl_map_init(&m);
	APPLY(&m, c_defaults(100, 30));
	NOOP(&m, c_defaults(100, 30));
	CHECK_EQ(m.limits.connections_max, 100);
	CHECK_EQ(m.retention_days, 30);
	APPLY(&m, c_defaults(0, 0));
	CHECK_EQ(m.version, 2);
	pl_map_fini(&m);
}
