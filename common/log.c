/*
 * log.c - structured logging: one key=value line per event on stderr,
 * prefixed with an ISO 8601 UTC timestamp (milliseconds), level and module.
 * The per-module level table is the one process-wide setting in Parley: it
 * is written at start-up, before threads exist, and only read afterwards.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/common.h"

#define LOG_MODULES_MAX 32 /* promised by common.h */
#define LOG_MODULE_CHARS_MAX 31
#define LOG_LINE_BYTES_MAX 2048 /* longer lines are cut, never split */

struct log_module {
	char name[LOG_MODULE_CHARS_MAX + 1];
	pl_log_level level;
};

static struct {
	pl_log_level dflt;
	struct log_module mods[LOG_MODULES_MAX];
	int nmods;
} log_cfg = {.dflt = PL_LOG_INFO};

static const char *const level_names[] = {
    "debug",
    "info",
    "warn",
    "error",
    "off",
};

int pl_log_level_parse(const char *s)
{
	for (size_t i = 0; s != NULL && i < PL_ARRAY_LEN(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0)
			return (int)i;
	}
	return -1;
}

static struct log_module *log_module_find(const char *module)
{
	for (int i = 0; i < log_cfg.nmods; i++) {
		if (strcmp(log_cfg.mods[i].name, module) == 0)
			return &log_cfg.mods[i];
	}
	return NULL;
}

void pl_log_set_level(const char *module, pl_log_level lvl)
{
	if (module == NULL) {
		log_cfg.dflt = lvl;
		return;
	}
	struct log_module *m = log_module_find(module);
	if (m == NULL) {
		/* Module names are chosen by programmers, not users. */
		PL_ASSERT(log_cfg.nmods < LOG_MODULES_MAX);
		PL_ASSERT(strlen(module) <= LOG_MODULE_CHARS_MAX);
		m = &log_cfg.mods[log_cfg.nmods++];
		strcpy(m->name, module);
	}
	m->level = lvl;
}

bool pl_log_enabled(const char *module, pl_log_level lvl)
{
	const struct log_module *m = module ? log_module_find(module) : NULL;
	return lvl >= (m != NULL ? m->level : log_cfg.dflt) && lvl < PL_LOG_OFF;
}

/* A module a spec may name: set_level would accept it without asserting. */
static bool log_module_ok(const char *module)
{
	size_t n = strlen(module);
	return n > 0 && n <= LOG_MODULE_CHARS_MAX &&
	       (log_module_find(module) != NULL ||
	           log_cfg.nmods < LOG_MODULES_MAX);
}

/* One item of a spec: "level" or "module=level". Bad items are reported
 * and skipped so that a typo in PARLEY_LOG never stops a node. */
static void log_configure_item(const char *item, size_t len)
{
	char buf[64];
	const char *module = NULL, *lvl_s = buf;

	if (len == 0)
		return;
	if (len >= sizeof(buf)) {
		fprintf(stderr, "level=warn mod=log event=bad_log_spec\n");
		return;
	}
	memcpy(buf, item, len);
	buf[len] = '\0';
	char *eq = strchr(buf, '=');
	if (eq != NULL) {
		*eq = '\0';
		module = buf;
		lvl_s = eq + 1;
	}
	int lvl = pl_log_level_parse(lvl_s);
	if (lvl < 0 || (module != NULL && !log_module_ok(module))) {
		fprintf(stderr,
		    "level=warn mod=log event=bad_log_spec "
		    "item=\"%.*s\"\n",
		    (int)len, item);
		return;
	}
	pl_log_set_level(module, (pl_log_level)lvl);
}

void pl_log_configure(const char *spec)
{
	while (spec != NULL && *spec != '\0') {
		size_t len = strcspn(spec, ",");
		log_configure_item(spec, len);
		spec += len;
		if (*spec == ',')
			spec++;
	}
}

/* "2026-11-21T10:00:00.123Z" into out (at least 25 bytes). */
static void log_timestamp(char *out, size_t cap)
{
	int64_t us = pl_now_us();
	time_t s = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&s, &tm);
	size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, cap - n, ".%03dZ", (int)(us / 1000 % 1000));
}

void pl_log(pl_log_level lvl, const char *module, const char *fmt, ...)
{
	char line[LOG_LINE_BYTES_MAX];
	char ts[32];
	va_list ap;

	if (!pl_log_enabled(module, lvl))
		return;
	log_timestamp(ts, sizeof(ts));
	int n = snprintf(line, sizeof(line), "ts=%s level=%s mod=%s ", ts,
	    level_names[lvl], module != NULL ? module : "-");
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2; /* cut, keep room for the newline */
	line[len++] = '\n';
	/* One write per line so lines of concurrent threads never mix. */
	fwrite(line, 1, len, stderr);
}
