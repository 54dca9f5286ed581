/*
 * harness_map.c - what the cluster-map tests do against the meta group:
 * signed changes (pl_map_change with the cluster's secret), a tenant with
 * its key, a group added, a replica's status, and parleyctl run as an
 * operator runs it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/harness.h"

#define MAP_T_MS 8000

int hx_meta_addrs(hx_cluster *c, const char **out, char (*buf)[64])
{
	int n = c->nmeta > 0 ? c->nmeta : c->nreplicas;
	for (int r = 1; r <= n; r++) {
		snprintf(buf[r - 1], 64, "tcp://127.0.0.1:%d", c->rep_port[0][r]);
		out[r - 1] = buf[r - 1];
	}
	return n;
}

pl_status hx_map_change(
    hx_cluster *c, const Parley__Cluster__Change *ch, pl_map *after)
{
	const char *addrs[HX_REPLICAS_MAX];
	char buf[HX_REPLICAS_MAX][64];
	int n = hx_meta_addrs(c, addrs, buf);
	uint8_t secret[32], bytes[1024];
	if (pl_secret_file_load(c->secret_file, secret) != PL_OK ||
	    parley__cluster__change__get_packed_size(ch) > sizeof(bytes))
		return PL_E_IO;
	size_t len = parley__cluster__change__pack(ch, bytes);
	bool changed;
	char why[200] = "";
	pl_status st = pl_map_change(addrs, n, secret, bytes, len, MAP_T_MS,
	    &changed, after, why, sizeof(why));
	if (st != PL_OK)
		fprintf(stderr, "  change refused: %s (%s)\n", pl_strerror(st),
		    why);
	return st;
}

pl_status hx_map_fetch(hx_cluster *c, pl_map *m)
{
	const char *addrs[HX_REPLICAS_MAX];
	char buf[HX_REPLICAS_MAX][64];
	int n = hx_meta_addrs(c, addrs, buf);
	return pl_map_fetch(addrs, n, MAP_T_MS, m);
}

bool hx_cluster_up(hx_cluster *c, int n, pl_map *m)
{
	for (int node = 1; node <= n; node++)
		if (!hx_start_cluster_broker(c, node))
			return false;
	pl_map_init(m);
	/* Under a loaded sanitizer run registering takes seconds. */
	for (int i = 0; i < 400 && m->nbrokers < (size_t)n; i++) {
		usleep(50000);
		(void)hx_map_fetch(c, m);
	}
	return m->nbrokers == (size_t)n;
}

pl_status hx_map_group_add(hx_cluster *c, uint32_t replicas, pl_map *after)
{
	Parley__Cluster__GroupAdd ga = PARLEY__CLUSTER__GROUP_ADD__INIT;
	Parley__Cluster__Change ch = PARLEY__CLUSTER__CHANGE__INIT;
	ga.replicas = replicas;
	ga.weight = 1;
	ch.op_case = PARLEY__CLUSTER__CHANGE__OP_GROUP_ADD;
	ch.group_add = &ga;
	return hx_map_change(c, &ch, after);
}

pl_status hx_map_tenant_with_key(
    hx_cluster *c, const char *tenant, pl_map *after)
{
	Parley__Cluster__TenantSet ts = PARLEY__CLUSTER__TENANT_SET__INIT;
	Parley__Cluster__Change ch = PARLEY__CLUSTER__CHANGE__INIT;
	ts.name = (char *)tenant;
	ch.op_case = PARLEY__CLUSTER__CHANGE__OP_TENANT_SET;
	ch.tenant_set = &ts;
	pl_status st = hx_map_change(c, &ch, after);
	if (st != PL_OK)
		return st;
	char path[256], t[64], kid[32];
	uint8_t sk[64], pk[32];
	snprintf(path, sizeof(path), "%s/%s.key", c->dir, tenant);
	if (pl_keyfile_load(path, t, sizeof(t), kid, sizeof(kid), sk, pk) !=
	    PL_OK)
		return PL_E_IO;
	Parley__Cluster__Key k = PARLEY__CLUSTER__KEY__INIT;
	Parley__Cluster__KeyAdd ka = PARLEY__CLUSTER__KEY_ADD__INIT;
	k.id = kid;
	k.public_key.data = pk;
	k.public_key.len = sizeof(pk);
	ka.tenant = (char *)tenant;
	ka.key = &k;
	Parley__Cluster__Change c2 = PARLEY__CLUSTER__CHANGE__INIT;
	c2.op_case = PARLEY__CLUSTER__CHANGE__OP_KEY_ADD;
	c2.key_add = &ka;
	return hx_map_change(c, &c2, after);
}

pl_status hx_replica_info(
    hx_cluster *c, int node, uint32_t group, pl_replica_info *out)
{
	char addr[64];
	snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", c->rep_port[0][node]);
	return pl_replica_status(addr, group, 1000, out);
}

int hx_ctl(hx_cluster *c, const char *args, char *out, size_t cap)
{
	const char *addrs[HX_REPLICAS_MAX];
	char buf[HX_REPLICAS_MAX][64], meta[512] = "";
	int n = hx_meta_addrs(c, addrs, buf);
	for (int i = 0; i < n; i++)
		snprintf(meta + strlen(meta), sizeof(meta) - strlen(meta),
		    "%s%s", i ? "," : "", addrs[i]);
	char cmd[2048], log[256];
	snprintf(cmd, sizeof(cmd), "%s %s --meta %s --secret %s 2>&1",
	    PARLEY_CTL_BIN, args, meta, c->secret_file);
	snprintf(log, sizeof(log), "%s/parleyctl.log", c->dir);
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		return -1;
	FILE *lf = fopen(log, "a");
	if (lf != NULL)
		fprintf(lf, "$ parleyctl %s\n", args);
	size_t got = 0;
	char chunk[4096];
	size_t k;
	while ((k = fread(chunk, 1, sizeof(chunk), p)) > 0) {
		if (lf != NULL)
			fwrite(chunk, 1, k, lf);
		if (out != NULL && got + 1 < cap) {
			size_t take = k < cap - 1 - got ? k : cap - 1 - got;
			memcpy(out + got, chunk, take);
			got += take;
		}
	}
	if (out != NULL && cap > 0)
		out[got] = '\0';
	if (lf != NULL)
		fclose(lf);
	int rc = pclose(p);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}
