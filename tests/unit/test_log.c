/*
 * test_log.c - log level parsing, per-module levels from a PARLEY_LOG
 * style spec, and the shape of a log line (captured by pointing stderr at
 * a temporary file).
 */
#define CHECK_MAIN
#include "tests/check.h"

#include <unistd.h>

#include "common/common.h"

TEST(test_log_level_parse)
{
	static const struct {
		const char *s;
		int want;
	} cases[] = {
	    {"debug", PL_LOG_DEBUG},
	    {"info", PL_LOG_INFO},
	    {"warn", PL_LOG_WARN},
	    {"error", PL_LOG_ERROR},
	    {"off", PL_LOG_OFF},
	    {"INFO", -1},
	    {"", -1},
	    {NULL, -1},
	};
	for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++)
		CHECK_EQ(pl_log_level_parse(cases[i].s), cases[i].want);
}

TEST(test_log_configure_spec)
{
	pl_log_configure("warn,broker=debug,raft=off,bogus,gw=loud");
	CHECK(!pl_log_enabled("gateway", PL_LOG_INFO));
	CHECK(pl_log_enabled("gateway", PL_LOG_WARN));
	CHECK(pl_log_enabled("broker", PL_LOG_DEBUG));
	CHECK(!pl_log_enabled("raft", PL_LOG_ERROR));
	CHECK(!pl_log_enabled("gw", PL_LOG_INFO)); /* bad item skipped */
	CHECK(!pl_log_enabled(NULL, PL_LOG_INFO));
	pl_log_configure(NULL);
	pl_log_configure("");
	CHECK(pl_log_enabled("broker", PL_LOG_DEBUG));
	pl_log_configure("info,broker=info,raft=info");
	CHECK(pl_log_enabled("raft", PL_LOG_INFO));
	CHECK(!pl_log_enabled("broker", PL_LOG_DEBUG));
}

/* Runs one pl_log call with stderr redirected; returns the text. */
static void log_capture(char *out, size_t cap)
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	fflush(stderr);
	dup2(fileno(tmp), STDERR_FILENO);
	PL_INFO("test", "event=hello n=%d", 42);
	PL_DEBUG("test", "event=hidden");
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	size_t n = fread(out, 1, cap - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
}

TEST(test_log_line_format)
{
	char line[512];
	pl_log_set_level(NULL, PL_LOG_INFO);
	pl_log_set_level("test", PL_LOG_INFO);
	log_capture(line, sizeof(line));
	/* ts=2026-11-21T10:00:00.123Z level=info mod=test event=hello n=42 */
	CHECK(strncmp(line, "ts=", 3) == 0);
	const char *ts = line + 3;
	CHECK(ts[4] == '-' && ts[7] == '-' && ts[10] == 'T' && ts[13] == ':');
	CHECK(ts[16] == ':' && ts[19] == '.' && ts[23] == 'Z');
	CHECK_STR_EQ(ts + 24, " level=info mod=test event=hello n=42\n");
}
