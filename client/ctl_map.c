/*
 * ctl_map.c - parleyctl's cluster map commands, against the meta group
 * (docs/cluster.md): `cluster map` prints the map any meta replica
 * serves; the others build one parley.cluster.Change, sign it with the
 * cluster secret and send it to the meta leader (proto/map_client.h).
 * Every change is idempotent: "unchanged" means it was already in effect
 * (a retry after a lost reply), and an unsafe one is refused with the
 * meta group's reason.
 *
 * Options: --meta ADDR[,ADDR...] (env PARLEY_META), the meta replicas'
 * gateway-facing addresses; --secret FILE (env PARLEY_SECRET_FILE), the
 * cluster secret (base64 of 32 bytes) changes are signed with.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "client/ctl.h"
#include "cluster.pb-c.h"
#include "proto/map_client.h"

#define CHANGE_BYTES_MAX 4096

bool ctl_meta_addrs(const ctl_args *a, ctl_meta *m)
{
	const char *v = ctl_opt(a, "meta");
	if (v == NULL)
		v = getenv("PARLEY_META");
	m->n = 0;
	if (v == NULL || v[0] == '\0')
		return false;
	while (*v != '\0' && m->n < PL_META_ADDRS_MAX) {
		while (*v == ' ' || *v == ',')
			v++;
		size_t len = strcspn(v, ", ");
		if (len == 0)
			break;
		if (len > PL_MAP_ADDR_CHARS_MAX)
			return false;
		memcpy(m->buf[m->n], v, len);
		m->buf[m->n][len] = '\0';
		m->p[m->n] = m->buf[m->n];
		m->n++;
		v += len;
	}
	return m->n > 0;
}

static bool secret_load(const ctl_args *a, uint8_t out[32])
{
	const char *path = ctl_opt(a, "secret");
	if (path == NULL)
		path = getenv("PARLEY_SECRET_FILE");
	if (path == NULL)
		return false;
	return pl_secret_file_load(path, out) == PL_OK;
}

static void map_print(const pl_map *m)
{
	printf("version %llu\n", (unsigned long long)m->version);
	for (size_t i = 0; i < m->nbrokers; i++) {
		const pl_map_broker *b = &m->brokers[i];
		printf("broker %llu %s %s listen=%s peer=%s replicas=%d\n",
		    (unsigned long long)b->node, b->name, pl_map_broker_state_name(b->state),
		    b->listen, b->peer, pl_map_replicas_on(m, b->node));
	}
	for (size_t i = 0; i < m->ngroups; i++) {
		const pl_map_group *g = &m->groups[i];
		printf("group %u weight=%u%s%s leader=%llu replicas=", g->id,
		    g->weight, g->draining ? " draining" : "",
		    g->removed ? " removed" : "", (unsigned long long)g->leader);
		for (int r = 0; r < g->nreplicas; r++)
			printf("%s%llu%s%s", r ? "," : "",
			    (unsigned long long)g->replicas[r].node,
			    g->replicas[r].learner ? "(learner)" : "",
			    g->replicas[r].leaving ? "(leaving)" : "");
		printf("\n");
	}
	for (size_t i = 0; i < m->ntenants; i++) {
		const pl_map_tenant *t = &m->tenants[i];
		printf("tenant %s retention_days=%u keys=", t->name,
		    t->retention_days);
		for (int k = 0; k < t->nkeys; k++)
			printf("%s%s%s", k ? "," : "", t->keys[k].id,
			    t->keys[k].revoked ? "(revoked)" : "");
		printf("\n");
	}
}

/* Signs and sends one change; prints the outcome and the new version. */
int ctl_change_send(const ctl_args *a, const Parley__Cluster__Change *c)
{
	ctl_meta ma;
	uint8_t secret[32];
	if (!ctl_meta_addrs(a, &ma))
		return ctl_fail("bad_request",
		    "--meta ADDR[,ADDR...] (or PARLEY_META) names the meta "
		    "replicas");
	if (!secret_load(a, secret))
		return ctl_fail("bad_request",
		    "--secret FILE (or PARLEY_SECRET_FILE): the cluster "
		    "secret, base64 of 32 bytes");
	uint8_t buf[CHANGE_BYTES_MAX];
	if (parley__cluster__change__get_packed_size(c) > sizeof(buf))
		return ctl_fail("too_large", "change too large");
	size_t n = parley__cluster__change__pack(c, buf);
	bool changed = false;
	char why[256] = "";
	pl_map after;
	pl_map_init(&after);
	pl_status st = pl_map_change(ma.p, ma.n, secret, buf, n, CTL_MAP_TIMEOUT_MS,
	    &changed, &after, why, sizeof(why));
	sodium_memzero(secret, sizeof(secret));
	if (st != PL_OK) {
		pl_map_fini(&after);
		return ctl_fail(pl_code_name(pl_status_to_code(st)),
		    why[0] != '\0' ? why : pl_strerror(st));
	}
	printf("%s, map version %llu\n", changed ? "changed" : "unchanged",
	    (unsigned long long)after.version);
	pl_map_fini(&after);
	return 0;
}

static bool u32_opt(const ctl_args *a, const char *k, uint32_t *out)
{
	uint64_t v = *out;
	if (!ctl_opt_u64(a, k, &v) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

int ctl_map_get(const ctl_args *a, pl_map *m)
{
	ctl_meta ma;
	if (!ctl_meta_addrs(a, &ma))
		return ctl_fail("bad_request",
		    "--meta ADDR[,ADDR...] (or PARLEY_META) names the meta "
		    "replicas");
	pl_map_init(m);
	pl_status st = pl_map_fetch(ma.p, ma.n, CTL_MAP_TIMEOUT_MS, m);
	if (st != PL_OK)
		return ctl_fail(pl_code_name(pl_status_to_code(st)),
		    "no meta replica answered");
	return 0;
}

static int cluster_map(const ctl_args *a)
{
	pl_map m;
	if (!ctl_args_check(a, "meta,secret", 1, 1))
		return ctl_usage();
	int rc = ctl_map_get(a, &m);
	if (rc != 0)
		return rc;
	map_print(&m);
	pl_map_fini(&m);
	return 0;
}

/* broker add --node N --name NAME --listen ADDR --peer ADDR */
static int broker_cmd(const ctl_args *a)
{
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	const char *sub = a->npos > 0 ? a->pos[0] : "";
	uint64_t node = 0;
	if (!ctl_opt_u64(a, "node", &node) || node == 0)
		return ctl_usage();
	if (strcmp(sub, "add") == 0) {
		if (!ctl_args_check(a, "meta,secret,node,name,listen,peer", 1, 1))
			return ctl_usage();
		Parley__Cluster__Broker b = PARLEY__CLUSTER__BROKER__INIT;
		Parley__Cluster__BrokerAdd ba = PARLEY__CLUSTER__BROKER_ADD__INIT;
		b.node = node;
		b.name = (char *)ctl_opt(a, "name");
		b.listen = (char *)ctl_opt(a, "listen");
		b.peer = (char *)ctl_opt(a, "peer");
		if (b.name == NULL || b.listen == NULL || b.peer == NULL)
			return ctl_usage();
		ba.broker = &b;
		c.op_case = PARLEY__CLUSTER__CHANGE__OP_BROKER_ADD;
		c.broker_add = &ba;
		return ctl_change_send(a, &c);
	}
	if (strcmp(sub, "drain") == 0)
		return ctl_broker_drain(a, node);
	if (strcmp(sub, "prepare-restart") == 0)
		return ctl_broker_prepare_restart(a, node);
	Parley__Cluster__BrokerSetState bs =
	    PARLEY__CLUSTER__BROKER_SET_STATE__INIT;
	bs.node = node;
	if (strcmp(sub, "activate") == 0)
		bs.state = PARLEY__CLUSTER__BROKER_STATE__BROKER_ACTIVE;
	else if (strcmp(sub, "remove") == 0)
		bs.state = PARLEY__CLUSTER__BROKER_STATE__BROKER_REMOVED;
	else
		return ctl_usage();
	if (!ctl_args_check(a, "meta,secret,node", 1, 1))
		return ctl_usage();
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_BROKER_STATE;
	c.broker_state = &bs;
	return ctl_change_send(a, &c);
}

/* group add [--id N] --replicas R [--weight W]; group drain|undrain ID
 * [--weight W]; group remove ID */
static int group_map_cmd(const ctl_args *a)
{
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	const char *sub = a->pos[0];
	if (strcmp(sub, "add") == 0) {
		Parley__Cluster__GroupAdd ga = PARLEY__CLUSTER__GROUP_ADD__INIT;
		ga.replicas = 3;
		ga.weight = 1;
		if (!ctl_args_check(a, "meta,secret,id,replicas,weight", 1, 1) ||
		    !u32_opt(a, "id", &ga.id) ||
		    !u32_opt(a, "replicas", &ga.replicas) ||
		    !u32_opt(a, "weight", &ga.weight))
			return ctl_usage();
		c.op_case = PARLEY__CLUSTER__CHANGE__OP_GROUP_ADD;
		c.group_add = &ga;
		return ctl_change_send(a, &c);
	}
	uint64_t id;
	if (a->npos < 2 || !ctl_parse_u64(a->pos[1], &id) || id == 0 ||
	    id > 65535)
		return ctl_usage();
	if (strcmp(sub, "remove") == 0) {
		Parley__Cluster__GroupRemove gr =
		    PARLEY__CLUSTER__GROUP_REMOVE__INIT;
		if (!ctl_args_check(a, "meta,secret", 2, 2))
			return ctl_usage();
		gr.id = (uint32_t)id;
		c.op_case = PARLEY__CLUSTER__CHANGE__OP_GROUP_REMOVE;
		c.group_remove = &gr;
		return ctl_change_send(a, &c);
	}
	Parley__Cluster__GroupSet gs = PARLEY__CLUSTER__GROUP_SET__INIT;
	gs.id = (uint32_t)id;
	gs.weight = 1;
	if (strcmp(sub, "drain") == 0)
		gs.draining = true;
	else if (strcmp(sub, "undrain") != 0)
		return ctl_usage();
	if (!ctl_args_check(a, "meta,secret,weight", 2, 2) ||
	    !u32_opt(a, "weight", &gs.weight))
		return ctl_usage();
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_GROUP_SET;
	c.group_set = &gs;
	return ctl_change_send(a, &c);
}

/* tenant add NAME [--retention-days D] [--connections-max N]
 * [--publish-per-sec N] [--rooms-open-max N] */
static int tenant_cmd(const ctl_args *a)
{
	if (a->npos != 2 || strcmp(a->pos[0], "add") != 0 ||
	    !ctl_args_check(a,
	        "meta,secret,retention-days,connections-max,publish-per-sec,"
	        "rooms-open-max",
	        2, 2))
		return ctl_usage();
	Parley__Cluster__TenantSet ts = PARLEY__CLUSTER__TENANT_SET__INIT;
	Parley__Cluster__Limits l = PARLEY__CLUSTER__LIMITS__INIT;
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	ts.name = (char *)a->pos[1];
	ts.limits = &l;
	if (!u32_opt(a, "retention-days", &ts.retention_days) ||
	    !u32_opt(a, "connections-max", &l.connections_max) ||
	    !u32_opt(a, "publish-per-sec", &l.publish_per_sec) ||
	    !u32_opt(a, "rooms-open-max", &l.rooms_open_max))
		return ctl_usage();
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_TENANT_SET;
	c.tenant_set = &ts;
	return ctl_change_send(a, &c);
}

/* key add TENANT --key-id K --public B64 (as keygen prints it); key
 * revoke TENANT KEY_ID */
static int key_cmd(const ctl_args *a)
{
	Parley__Cluster__Change c = PARLEY__CLUSTER__CHANGE__INIT;
	if (a->npos == 3 && strcmp(a->pos[0], "revoke") == 0) {
		if (!ctl_args_check(a, "meta,secret", 3, 3))
			return ctl_usage();
		Parley__Cluster__KeyRevoke kr = PARLEY__CLUSTER__KEY_REVOKE__INIT;
		kr.tenant = (char *)a->pos[1];
		kr.key_id = (char *)a->pos[2];
		c.op_case = PARLEY__CLUSTER__CHANGE__OP_KEY_REVOKE;
		c.key_revoke = &kr;
		return ctl_change_send(a, &c);
	}
	if (a->npos != 2 || strcmp(a->pos[0], "add") != 0 ||
	    !ctl_args_check(a, "meta,secret,key-id,public", 2, 2))
		return ctl_usage();
	const char *kid = ctl_opt(a, "key-id"), *b64 = ctl_opt(a, "public");
	uint8_t pk[32];
	size_t len = 0;
	if (kid == NULL || b64 == NULL ||
	    sodium_base642bin(pk, sizeof(pk), b64, strlen(b64), NULL, &len,
	        NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    len != sizeof(pk))
		return ctl_fail("bad_request",
		    "--key-id K --public BASE64 (32-byte Ed25519 public key, "
		    "as keygen prints it)");
	Parley__Cluster__Key k = PARLEY__CLUSTER__KEY__INIT;
	Parley__Cluster__KeyAdd ka = PARLEY__CLUSTER__KEY_ADD__INIT;
	k.id = (char *)kid;
	k.public_key.data = pk;
	k.public_key.len = sizeof(pk);
	ka.tenant = (char *)a->pos[1];
	ka.key = &k;
	c.op_case = PARLEY__CLUSTER__CHANGE__OP_KEY_ADD;
	c.key_add = &ka;
	return ctl_change_send(a, &c);
}

int ctl_map_cmd(const char *cmd, const ctl_args *a)
{
	if (strcmp(cmd, "cluster") == 0) {
		if (a->npos == 1 && strcmp(a->pos[0], "map") == 0)
			return cluster_map(a);
		if (a->npos == 1 && strcmp(a->pos[0], "status") == 0)
			return ctl_cluster_status(a);
		return ctl_usage();
	}
	if (a->npos < 1)
		return ctl_usage();
	if (strcmp(cmd, "broker") == 0)
		return broker_cmd(a);
	if (strcmp(cmd, "group") == 0)
		return group_map_cmd(a);
	if (strcmp(cmd, "tenant") == 0)
		return tenant_cmd(a);
	if (strcmp(cmd, "key") == 0)
		return key_cmd(a);
	if (strcmp(cmd, "replica") == 0)
		return ctl_replica(a);
	if (strcmp(cmd, "leader") == 0)
		return ctl_leader(a);
	return ctl_usage();
}
