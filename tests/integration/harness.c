/*
 * harness.c - see harness.h. Processes are started with fork/exec, their
 * output goes to a log file per process in the cluster's dir, and an
 * atexit hook kills whatever is still running.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "tests/integration/harness.h"
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#include <sanitizer/common_interface_defs.h>
#endif
#include "proto/token.h"

#define LIVE_MAX 32
static pid_t live[LIVE_MAX];

static void kill_all(void)
{
	for (int i = 0; i < LIVE_MAX; i++)
		if (live[i] > 0)
			kill(live[i], SIGKILL);
}

/* A test that dies (an abort, a sanitizer's report) skips atexit: its
 * servers would outlive it and load every later test. kill() is safe in
 * a signal handler; the signal is raised again with its default action. */
static void kill_all_on_signal(int sig)
{
	kill_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void live_add(pid_t pid)
{
	static bool hooked;
	if (!hooked) {
		atexit(kill_all);
		signal(SIGABRT, kill_all_on_signal);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
		__sanitizer_set_death_callback(kill_all);
#endif
		hooked = true;
	}
	for (int i = 0; i < LIVE_MAX; i++)
		if (live[i] == 0) {
			live[i] = pid;
			return;
		}
}

static void live_del(pid_t pid)
{
	for (int i = 0; i < LIVE_MAX; i++)
		if (live[i] == pid)
			live[i] = 0;
}

/* Ports are taken below the kernel's ephemeral range (32768-60999 by
 * default): a port from that range, left free while its server is down
 * for a restart, can become the local port of some outgoing connection
 * (a peer redialing, a client) and the restart then cannot bind it.
 * Outside the range only another test's choice can collide; the start
 * is random per process and every port is checked free by binding it. */
#define PORT_LOW 12000
#define PORT_HIGH 32767

/* A loopback port below the ephemeral range that was free a moment ago,
 * -1 when none was found. */
static int free_port(void)
{
	static unsigned next;
	if (next == 0)
		next = (unsigned)getpid() * 7919u + (unsigned)time(NULL);
	for (int tries = 0; tries < 500; tries++) {
		next = next * 1103515245u + 12345u;
		int port =
		    PORT_LOW + (int)((next >> 8) % (PORT_HIGH - PORT_LOW + 1));
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0)
			return -1;
		struct sockaddr_in a = {
		    .sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int ok = bind(s, (struct sockaddr *)&a, sizeof(a)) == 0;
		close(s);
		if (ok)
			return port;
	}
	return -1;
}

static bool write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return false;
	fputs(text, f);
	return fclose(f) == 0;
}

/* n distinct loopback ports that were free a moment ago. */
static bool ports_alloc(int *ports, int n)
{
	for (int i = 0; i < n; i++) {
		ports[i] = free_port();
		for (int j = 0; j < i; j++)
			if (ports[j] == ports[i])
				ports[i--] = -1; /* retry on a repeat */
		if (i >= 0 && ports[i] < 0)
			return false;
	}
	return true;
}

/* The dir, the tenant keys and the gateway's ports (ports[0..1]; the
 * caller allocated all its ports at once, so none repeats). */
static bool cluster_prepare(hx_cluster *c, int ngroups, const int *ports)
{
	memset(c, 0, sizeof(*c));
	signal(SIGPIPE, SIG_IGN);
	snprintf(c->dir, sizeof(c->dir), "/tmp/parley-it-XXXXXX");
	if (mkdtemp(c->dir) == NULL || ngroups < 1 || ngroups > HX_GROUPS_MAX)
		return false;
	c->ngroups = ngroups;
	c->nreplicas = 1;
	fprintf(stderr, "  cluster dir: %s\n", c->dir);
	c->tcp_port = ports[0];
	c->http_port = ports[1];
	snprintf(
	    c->tcp_url, sizeof(c->tcp_url), "tcp://127.0.0.1:%d", c->tcp_port);
	snprintf(
	    c->ws_url, sizeof(c->ws_url), "ws://127.0.0.1:%d/ws", c->http_port);
	const char *tenants[] = {"acme", "globex"};
	for (int i = 0; i < 2; i++) {
		char path[256], pk[128];
		snprintf(path, sizeof(path), "%s/%s.key", c->dir, tenants[i]);
		if (pl_keyfile_generate(
		        path, tenants[i], "k1", pk, sizeof(pk)) != PL_OK)
			return false;
	}
	return true;
}

bool hx_init(hx_cluster *c, int ngroups)
{
	int ports[2 + 2 * HX_GROUPS_MAX];
	if (ngroups < 1 || ngroups > HX_GROUPS_MAX ||
	    !ports_alloc(ports, 2 + 2 * ngroups) ||
	    !cluster_prepare(c, ngroups, ports))
		return false;
	for (int g = 1; g <= ngroups; g++) {
		c->broker_port[g] = ports[2 * g];
		c->broker_http[g] = ports[2 * g + 1];
	}
	return true;
}

/* The cluster secret: base64 of 32 random bytes, readable by us only. */
static bool secret_write(hx_cluster *c)
{
	uint8_t key[32];
	char b64[64];
	randombytes_buf(key, sizeof(key));
	sodium_bin2base64(
	    b64, sizeof(b64), key, sizeof(key), sodium_base64_VARIANT_ORIGINAL);
	snprintf(c->secret_file, sizeof(c->secret_file), "%s/secret", c->dir);
	int fd = open(c->secret_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return false;
	size_t n = strlen(b64);
	bool ok = write(fd, b64, n) == (ssize_t)n && write(fd, "\n", 1) == 1;
	return close(fd) == 0 && ok;
}

bool hx_init_replicated(hx_cluster *c, int ngroups, int nreplicas)
{
	int ports[2 + 3 * HX_GROUPS_MAX * HX_REPLICAS_MAX];
	if (ngroups < 1 || ngroups > HX_GROUPS_MAX || nreplicas < 2 ||
	    nreplicas > HX_REPLICAS_MAX ||
	    !ports_alloc(ports, 2 + 3 * ngroups * nreplicas) ||
	    !cluster_prepare(c, ngroups, ports) || !secret_write(c))
		return false;
	c->nreplicas = nreplicas;
	int k = 2;
	for (int g = 1; g <= ngroups; g++) {
		for (int n = 1; n <= nreplicas; n++) {
			c->rep_port[g][n] = ports[k++];
			c->rep_peer[g][n] = ports[k++];
			c->rep_http[g][n] = ports[k++];
		}
	}
	return true;
}

bool hx_init_meta(hx_cluster *c)
{
	int ports[3 * HX_REPLICAS_MAX];
	if (c->nreplicas < 2 || !ports_alloc(ports, 3 * c->nreplicas))
		return false;
	/* Drawn apart from the groups' ports: none may repeat one. */
	for (int i = 0; i < 3 * c->nreplicas; i++) {
		bool taken = ports[i] == c->tcp_port || ports[i] == c->http_port;
		for (int g = 1; g <= c->ngroups; g++)
			for (int r = 1; r <= c->nreplicas; r++)
				taken = taken || ports[i] == c->rep_port[g][r] ||
				        ports[i] == c->rep_peer[g][r] ||
				        ports[i] == c->rep_http[g][r];
		if (taken)
			return hx_init_meta(c);
	}
	int k = 0;
	for (int n = 1; n <= c->nreplicas; n++) {
		c->rep_port[0][n] = ports[k++];
		c->rep_peer[0][n] = ports[k++];
		c->rep_http[0][n] = ports[k++];
	}
	c->meta = true;
	return true;
}

static pid_t spawn(hx_proc *p, const char *name, const char *dir,
    char *const argv[], char (*env)[512], int nenv)
{
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->log, sizeof(p->log), "%s/%s.log", dir, name);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		for (int i = 0; i < nenv; i++)
			if (env[i][0] != '\0')
				putenv(env[i]);
		execv(argv[0], argv);
		_exit(127);
	}
	p->pid = pid;
	if (pid > 0)
		live_add(pid);
	return pid;
}

static bool port_open(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {
	    .sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bool ok = s >= 0 && connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (s >= 0)
		close(s);
	return ok;
}

static void dump_log(const hx_proc *p);

static bool wait_port(hx_proc *p, int port)
{
	for (int i = 0; i < 200; i++) {
		if (port_open(port))
			return true;
		if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
			live_del(p->pid);
			fprintf(stderr, "  %s exited at start; see %s\n",
			    p->name, p->log);
			p->pid = 0;
			return false;
		}
		usleep(25000);
	}
	fprintf(stderr, "  %s (pid %d) did not open port %d within 5 s\n",
	    p->name, (int)p->pid, port);
	dump_log(p);
	return false;
}

bool hx_start_broker(hx_cluster *c, int g)
{
	char ini[256], text[2048], name[32];
	snprintf(ini, sizeof(ini), "%s/broker-%d.ini", c->dir, g);
	snprintf(text, sizeof(text),
	    "[broker]\nid = broker-%d\ngroup = %d\n"
	    "listen = tcp://127.0.0.1:%d\nhttp = 127.0.0.1:%d\n"
	    "data = %s/data-%d\ndurability = sync\n%s\n",
	    g, g, c->broker_port[g], c->broker_http[g], c->dir, g,
	    c->broker_extra);
	if (!write_file(ini, text))
		return false;
	snprintf(name, sizeof(name), "broker-%d", g);
	char *argv[] = {PARLEY_BROKER_BIN, "-c", ini, NULL};
	if (spawn(&c->broker[g], name, c->dir, argv, c->broker_env,
	        (int)PL_ARRAY_LEN(c->broker_env)) <= 0)
		return false;
	return wait_port(&c->broker[g], c->broker_http[g]);
}

hx_proc *hx_replica(hx_cluster *c, int group, int node)
{
	return &c->rep[group][node];
}

const char *hx_replica_url(hx_cluster *c, int group, int node)
{
	static char slots[8][64];
	static int next;
	char *out = slots[next++ % 8];
	snprintf(out, 64, "tcp://127.0.0.1:%d", c->rep_port[group][node]);
	return out;
}

/* The layout of docs/replication.md: [broker] keys, then one
 * [replica.N] section per replica of the group, itself included. */
static bool replica_config(hx_cluster *c, int g, int node, const char *ini)
{
	char text[8192];
	size_t n = (size_t)snprintf(text, sizeof(text),
	    "[broker]\nid = broker-%d-%d\ngroup = %d\nnode = %d\n"
	    "listen = tcp://127.0.0.1:%d\npeer = tcp://127.0.0.1:%d\n"
	    "http = 127.0.0.1:%d\ndata = %s/data-%d-%d\n"
	    "durability = sync\nsecret_file = %s\n%s\n",
	    g, node, g, node, c->rep_port[g][node], c->rep_peer[g][node],
	    c->rep_http[g][node], c->dir, g, node, c->secret_file,
	    c->broker_extra);
	for (int r = 1; r <= c->nreplicas && n < sizeof(text); r++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "[replica.%d]\nlisten = tcp://127.0.0.1:%d\n"
		    "peer = tcp://127.0.0.1:%d\n",
		    r, c->rep_port[g][r], c->rep_peer[g][r]);
	return n < sizeof(text) && write_file(ini, text);
}

bool hx_start_cluster_broker(hx_cluster *c, int node)
{
	char ini[256], name[32], text[8192];
	snprintf(ini, sizeof(ini), "%s/cbroker-%d.ini", c->dir, node);
	size_t n = (size_t)snprintf(text, sizeof(text),
	    "[broker]\nid = broker-%d\nnode = %d\n"
	    "listen = tcp://127.0.0.1:%d\npeer = tcp://127.0.0.1:%d\n"
	    "http = 127.0.0.1:%d\ndata = %s/cdata-%d\n"
	    "durability = sync\nsecret_file = %s\n%s\n",
	    node, node, c->rep_port[0][node], c->rep_peer[0][node],
	    c->rep_http[0][node], c->dir, node, c->secret_file,
	    c->broker_extra);
	int nmeta = c->nmeta > 0 ? c->nmeta : c->nreplicas;
	for (int r = 1; r <= nmeta && n < sizeof(text); r++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "[meta.%d]\nlisten = tcp://127.0.0.1:%d\n"
		    "peer = tcp://127.0.0.1:%d\n",
		    r, c->rep_port[0][r], c->rep_peer[0][r]);
	if (n >= sizeof(text) || !write_file(ini, text))
		return false;
	c->cluster = true;
	snprintf(name, sizeof(name), "broker-%d", node);
	char *argv[] = {PARLEY_BROKER_BIN, "-c", ini, NULL};
	if (spawn(&c->rep[0][node], name, c->dir, argv, c->broker_env,
	        (int)PL_ARRAY_LEN(c->broker_env)) <= 0)
		return false;
	return wait_port(&c->rep[0][node], c->rep_http[0][node]);
}

bool hx_start_replica(hx_cluster *c, int g, int node)
{
	char ini[256], name[32];
	snprintf(ini, sizeof(ini), "%s/broker-%d-%d.ini", c->dir, g, node);
	if (!replica_config(c, g, node, ini))
		return false;
	snprintf(name, sizeof(name), "broker-%d-%d", g, node);
	char *argv[] = {PARLEY_BROKER_BIN, "-c", ini, NULL};
	if (spawn(&c->rep[g][node], name, c->dir, argv, c->broker_env,
	        (int)PL_ARRAY_LEN(c->broker_env)) <= 0)
		return false;
	return wait_port(&c->rep[g][node], c->rep_http[g][node]);
}

/* [group.N] broker: the broker's address, or every replica's. */
static size_t group_brokers(hx_cluster *c, int g, char *out, size_t cap)
{
	if (c->nreplicas <= 1)
		return (size_t)snprintf(
		    out, cap, "tcp://127.0.0.1:%d", c->broker_port[g]);
	size_t n = 0;
	for (int r = 1; r <= c->nreplicas && n < cap; r++)
		n += (size_t)snprintf(out + n, cap - n, "%stcp://127.0.0.1:%d",
		    r > 1 ? ", " : "", c->rep_port[g][r]);
	return n;
}

static bool gateway_config(hx_cluster *c, const char *ini, const char *id,
    const char *tcp_url, int http_port)
{
	char text[8192], pub[512], list[512];
	size_t n = (size_t)snprintf(text, sizeof(text),
	    "[gateway]\nid = %s\ntcp = %s\nhttp = 127.0.0.1:%d\n%s\n", id,
	    tcp_url, http_port, c->gw_extra);
	if (c->cluster) {
		/* Groups come from the map the meta group serves. */
		n += (size_t)snprintf(text + n, sizeof(text) - n, "meta = ");
		int nmeta = c->nmeta > 0 ? c->nmeta : c->nreplicas;
		for (int r = 1; r <= nmeta; r++)
			n += (size_t)snprintf(text + n, sizeof(text) - n,
			    "%stcp://127.0.0.1:%d", r > 1 ? ", " : "",
			    c->rep_port[0][r]);
		n += (size_t)snprintf(text + n, sizeof(text) - n, "\n");
	}
	for (int g = 1; !c->cluster && g <= c->ngroups; g++) {
		if (group_brokers(c, g, list, sizeof(list)) >= sizeof(list))
			return false;
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "[group.%d]\nbroker = %s\nweight = 1\n", g, list);
	}
	const char *tenants[] = {"acme", "globex"};
	for (int i = 0; i < 2; i++) {
		char path[256], t[64], kid[32];
		uint8_t sk[64], pk[32];
		snprintf(path, sizeof(path), "%s/%s.key", c->dir, tenants[i]);
		if (pl_keyfile_load(
		        path, t, sizeof(t), kid, sizeof(kid), sk, pk) != PL_OK)
			return false;
		char b64[64];
		sodium_bin2base64(
		    b64, sizeof(b64), pk, 32, sodium_base64_VARIANT_ORIGINAL);
		snprintf(pub, sizeof(pub), "[tenant.%s]\nkey.%s = %s\n", t, kid,
		    b64);
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%s", pub);
	}
	return n < sizeof(text) && write_file(ini, text);
}

bool hx_start_gateway(hx_cluster *c)
{
	char ini[256];
	snprintf(ini, sizeof(ini), "%s/gateway.ini", c->dir);
	if (!gateway_config(c, ini, "gw-test", c->tcp_url, c->http_port))
		return false;
	char *argv[] = {PARLEY_GATEWAY_BIN, "-c", ini, NULL};
	if (spawn(&c->gateway, "gateway", c->dir, argv, NULL, 0) <= 0)
		return false;
	return wait_port(&c->gateway, c->tcp_port) &&
	       wait_port(&c->gateway, c->http_port);
}

bool hx_start_gateway2(hx_cluster *c)
{
	if (c->tcp_port2 == 0) {
		int p[2];
		do {
			if (!ports_alloc(p, 2))
				return false;
		} while (p[0] == c->tcp_port || p[0] == c->http_port ||
		         p[1] == c->tcp_port || p[1] == c->http_port);
		c->tcp_port2 = p[0];
		c->http_port2 = p[1];
		snprintf(c->tcp_url2, sizeof(c->tcp_url2), "tcp://127.0.0.1:%d",
		    c->tcp_port2);
		snprintf(c->ws_url2, sizeof(c->ws_url2), "ws://127.0.0.1:%d/ws",
		    c->http_port2);
	}
	char ini[256];
	snprintf(ini, sizeof(ini), "%s/gateway2.ini", c->dir);
	if (!gateway_config(c, ini, "gw-test-2", c->tcp_url2, c->http_port2))
		return false;
	char *argv[] = {PARLEY_GATEWAY_BIN, "-c", ini, NULL};
	if (spawn(&c->gateway2, "gateway2", c->dir, argv, NULL, 0) <= 0)
		return false;
	return wait_port(&c->gateway2, c->tcp_port2) &&
	       wait_port(&c->gateway2, c->http_port2);
}

bool hx_start(hx_cluster *c)
{
	for (int g = 1; g <= c->ngroups; g++) {
		for (int r = 1; c->nreplicas > 1 && r <= c->nreplicas; r++)
			if (!hx_start_replica(c, g, r))
				return false;
		if (c->nreplicas <= 1 && !hx_start_broker(c, g))
			return false;
	}
	return hx_start_gateway(c);
}

void hx_pause(hx_proc *p)
{
	if (p->pid > 0)
		kill(p->pid, SIGSTOP);
}

void hx_resume(hx_proc *p)
{
	if (p->pid > 0)
		kill(p->pid, SIGCONT);
}

/* Processes of this test binary that died without being asked (found
 * when the test stops them), and SIGTERM stops that took too long: each
 * fails the binary in hx_fini, like a sanitizer report. */
static int unasked_deaths, slow_stops;
static int64_t stop_us_max;

static void describe_status(char *out, size_t cap, int status)
{
	if (WIFSIGNALED(status))
		snprintf(out, cap, "killed by signal %d", WTERMSIG(status));
	else if (WIFEXITED(status))
		snprintf(
		    out, cap, "exited with status %d", WEXITSTATUS(status));
	else
		snprintf(out, cap, "status %d", status);
}

int64_t hx_kill(hx_proc *p, int sig)
{
	if (p->pid <= 0)
		return 0;
	int status = 0;
	if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
		char why[64];
		describe_status(why, sizeof(why), status);
		fprintf(stderr, "  %s (pid %d) died unasked: %s; see %s\n",
		    p->name, (int)p->pid, why, p->log);
		unasked_deaths++;
		live_del(p->pid);
		p->pid = 0;
		return 0;
	}
	int64_t t0 = pl_mono_us(), took = -1;
	kill(p->pid, sig);
	kill(p->pid, SIGCONT); /* a paused process takes its signal */
	for (int i = 0; i < 400; i++) {
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			took = pl_mono_us() - t0;
			break;
		}
		if (i == 250)
			kill(p->pid, SIGKILL);
		usleep(i < 50 ? 2000 : 20000);
	}
	if (sig == SIGTERM) {
		if (took < 0 || took > HX_STOP_US_MAX) {
			fprintf(stderr,
			    "  %s did not stop within %d ms of SIGTERM "
			    "(%s)\n",
			    p->name, HX_STOP_US_MAX / 1000,
			    took < 0 ? "needed SIGKILL" : "late");
			slow_stops++;
		}
		if (took > stop_us_max)
			stop_us_max = took;
	}
	live_del(p->pid);
	p->pid = 0;
	return took;
}

int64_t hx_stop_us_max(void)
{
	return stop_us_max;
}

static void dump_log(const hx_proc *p)
{
	if (p->log[0] == '\0')
		return; /* never started */
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "echo '--- %s'; tail -n 30 %s 1>&2", p->name,
	    p->log);
	if (system(cmd) != 0)
		fprintf(stderr, "  (no log for %s)\n", p->name);
}

/* True when a process log holds a sanitizer report (a sanitizer build of
 * the servers writes them there, not to the test's output). */
static bool log_has_sanitizer_report(const hx_proc *p)
{
	char line[512];
	bool found = false;
	FILE *f = fopen(p->log, "r");
	while (f != NULL && !found && fgets(line, sizeof(line), f) != NULL)
		found = strstr(line, "ERROR: AddressSanitizer") != NULL ||
		        strstr(line, "ERROR: LeakSanitizer") != NULL ||
		        strstr(line, "runtime error:") != NULL;
	if (f != NULL)
		fclose(f);
	return found;
}

/* Every broker process of the cluster: plain brokers or replicas. */
static int brokers_list(hx_cluster *c, hx_proc **out)
{
	int n = 0;
	for (int r = 1; c->meta && r <= c->nreplicas; r++)
		out[n++] = &c->rep[0][r];
	for (int g = 1; g <= c->ngroups; g++) {
		if (c->nreplicas <= 1)
			out[n++] = &c->broker[g];
		for (int r = 1; c->nreplicas > 1 && r <= c->nreplicas; r++)
			out[n++] = &c->rep[g][r];
	}
	return n;
}

void hx_fini(hx_cluster *c, bool failed)
{
	hx_proc *brokers[(HX_GROUPS_MAX + 1) * HX_REPLICAS_MAX];
	int nb = brokers_list(c, brokers);
	hx_kill(&c->gateway, SIGTERM);
	hx_kill(&c->gateway2, SIGTERM);
	for (int i = 0; i < nb; i++)
		hx_kill(brokers[i], SIGTERM);
	bool dirty = log_has_sanitizer_report(&c->gateway) ||
	             log_has_sanitizer_report(&c->gateway2);
	for (int i = 0; i < nb; i++)
		dirty = dirty || log_has_sanitizer_report(brokers[i]);
	if (dirty || unasked_deaths > 0 || slow_stops > 0) {
		/* Fail the test binary and keep the logs for reading. */
		fprintf(stderr,
		    "  %s%d processes died unasked, %d stopped slowly; logs "
		    "in %s/*.log\n",
		    dirty ? "sanitizer report; " : "", unasked_deaths,
		    slow_stops, c->dir);
		exit(1);
	}
	if (failed) {
		dump_log(&c->gateway);
		dump_log(&c->gateway2);
		for (int i = 0; i < nb; i++)
			dump_log(brokers[i]);
	}
	if (getenv("PARLEY_IT_KEEP") != NULL) {
		fprintf(stderr, "  kept %s (PARLEY_IT_KEEP)\n", c->dir);
		return;
	}
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "  cleanup of %s failed\n", c->dir);
}

const char *hx_token(hx_cluster *c, const char *tenant, const char *user,
    int role, int ttl_s, const char *room)
{
	static char slots[8][PL_TOKEN_CHARS_MAX + 1];
	static int next;
	char path[256], kid[32], t[64];
	uint8_t sk[64], pk[32];
	pl_claims cl;
	char *out = slots[next++ % 8];
	memset(&cl, 0, sizeof(cl));
	snprintf(path, sizeof(path), "%s/%s.key", c->dir, tenant);
	if (pl_keyfile_load(path, t, sizeof(t), kid, sizeof(kid), sk, pk) !=
	    PL_OK)
		return "";
	snprintf(cl.tenant, sizeof(cl.tenant), "%s", t);
	snprintf(cl.user, sizeof(cl.user), "%s", user);
	snprintf(cl.key_id, sizeof(cl.key_id), "%s", kid);
	snprintf(cl.room, sizeof(cl.room), "%s", room ? room : "");
	cl.role = role;
	cl.exp_s = pl_now_us() / 1000000 + ttl_s;
	if (pl_token_mint(&cl, sk, out, PL_TOKEN_CHARS_MAX + 1) != PL_OK)
		return "";
	return out;
}

parley_conn *hx_client(
    hx_cluster *c, bool ws, const char *tenant, const char *user, int role)
{
	return hx_client_at(c, 1, ws, tenant, user, role);
}

parley_conn *hx_client_at(hx_cluster *c, int gateway, bool ws,
    const char *tenant, const char *user, int role)
{
	parley_conn *conn;
	const char *url = gateway == 2 ? (ws ? c->ws_url2 : c->tcp_url2)
	                               : (ws ? c->ws_url : c->tcp_url);
	if (parley_connect(url, 3000, NULL, &conn) != PL_OK)
		return NULL;
	const char *tok = hx_token(c, tenant, user, role, 3600, "");
	if (parley_hello(conn, tok, 3000, NULL) != PL_OK) {
		parley_close(conn);
		return NULL;
	}
	return conn;
}

uint64_t hx_next_message(
    parley_conn *conn, const char *room, int timeout_ms, char *body, size_t cap)
{
	int64_t end = pl_mono_us() + (int64_t)timeout_ms * 1000;
	while (pl_mono_us() < end) {
		Parley__ServerFrame *f;
		int left = (int)((end - pl_mono_us()) / 1000) + 1;
		pl_status st = parley_next_event(conn, left, &f);
		if (st == PL_E_BACKPRESSURE)
			continue;
		if (st != PL_OK)
			return 0;
		uint64_t seq = 0;
		if (f->body_case == PARLEY__SERVER_FRAME__BODY_EVENT &&
		    f->event->ev_case == PARLEY__EVENT__EV_MESSAGE &&
		    strcmp(f->event->room, room) == 0) {
			Parley__Message *m = f->event->message;
			seq = m->seq;
			if (body != NULL && cap > 0) {
				size_t n = m->body.len < cap - 1 ? m->body.len
				                                 : cap - 1;
				memcpy(body, m->body.data, n);
				body[n] = '\0';
			}
		}
		parley_frame_free(f);
		if (seq != 0)
			return seq;
	}
	return 0;
}

pl_status hx_history_retry(parley_conn *conn, const char *room,
    const parley_history_query *q, Parley__ServerFrame **reply)
{
	pl_status st = PL_E_UNAVAILABLE;
	for (int i = 0; i < 50; i++) {
		st = parley_history(conn, room, q, 3000, reply);
		if (st != PL_E_UNAVAILABLE && st != PL_E_TIMEOUT)
			break;
		usleep(100000);
	}
	return st;
}

int hx_http_get(int port, const char *path, char *out, size_t cap)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {
	    .sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
		if (s >= 0)
			close(s);
		return -1;
	}
	char req[256];
	int n = snprintf(req, sizeof(req),
	    "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
	    path);
	if (write(s, req, (size_t)n) != n) {
		close(s);
		return -1;
	}
	/* Read until the body announced by Content-Length is complete: the
	 * server may keep the connection open despite "Connection: close". */
	size_t got = 0, want = 0;
	ssize_t r;
	while (got + 1 < cap && (want == 0 || got < want) &&
	       (r = read(s, out + got, cap - 1 - got)) > 0) {
		got += (size_t)r;
		out[got] = '\0';
		const char *end = strstr(out, "\r\n\r\n");
		const char *cl = strstr(out, "Content-Length:");
		if (cl == NULL)
			cl = strstr(out, "content-length:");
		if (want == 0 && end != NULL && cl != NULL && cl < end)
			want = (size_t)(end + 4 - out) +
			       strtoul(cl + 15, NULL, 10);
	}
	out[got] = '\0';
	close(s);
	int status = -1;
	if (sscanf(out, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	return status;
}

int hx_raw_connect(hx_cluster *c)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {
	    .sin_family = AF_INET, .sin_port = htons((uint16_t)c->tcp_port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
		if (s >= 0)
			close(s);
		return -1;
	}
	return s;
}

/* The leader status names for group, or 0. */
static int leader_once(hx_cluster *c, parley_conn *conn, int group)
{
	Parley__ServerFrame *f;
	int leader = 0;
	if (parley_status(conn, 3000, &f) != PL_OK)
		return 0;
	for (size_t i = 0; i < f->status->n_groups; i++) {
		const Parley__GroupStatus *gs = f->status->groups[i];
		if ((int)gs->group != group || !gs->reachable ||
		    strcmp(gs->role, "leader") != 0)
			continue;
		for (int r = 1; r <= c->nreplicas; r++)
			if (strcmp(gs->address, hx_replica_url(c, group, r)) ==
			    0)
				leader = r;
	}
	parley_frame_free(f);
	return leader;
}

int hx_leader(hx_cluster *c, parley_conn *conn, int group, int timeout_ms)
{
	int64_t end = pl_mono_us() + (int64_t)timeout_ms * 1000;
	do {
		int leader = leader_once(c, conn, group);
		if (leader > 0)
			return leader;
		usleep(50000);
	} while (pl_mono_us() < end);
	return 0;
}

long hx_metric(int http_port, const char *name)
{
	static char text[1 << 17];
	if (hx_http_get(http_port, "/metrics", text, sizeof(text)) != 200)
		return -1;
	char key[128];
	snprintf(key, sizeof(key), "\n%s ", name);
	const char *m = strstr(text, key);
	return m != NULL ? strtol(m + strlen(key), NULL, 10) : -1;
}

pl_status hx_publish_n(parley_conn *c, const char *room, int i, parley_ack *a)
{
	char id[32], body[32];
	snprintf(id, sizeof(id), "msg-%d", i);
	int n = snprintf(body, sizeof(body), "body %d", i);
	return parley_publish(
	    c, room, id, PARLEY__KIND__TEXT, body, (size_t)n, 3000, a);
}
