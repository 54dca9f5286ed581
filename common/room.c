/*
 * room.c - room ids rendered as 16 lowercase hex digits (16-bit shard
 * group, 48-bit counter; see common.h) and the names of parley.Role.
 * Parsing accepts only the canonical form, so one room has one string and
 * string-keyed tables never hold the same room twice.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

/* parley.Role numbers are the indexes (proto/parley.proto); checked
 * against the generated enum by tests/unit/test_room.c. */
static const char *const role_names[] = {
    "none",
    "customer",
    "agent",
    "bot",
    "observer",
    "service",
};

void pl_room_format(uint64_t room, char *out)
{
	snprintf(out, PL_ROOM_ID_CHARS + 1, "%016" PRIx64, room);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The value of 16 hex digits at s, or a rule they break. */
static const char *room_value(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	if (len == 0)
		return "is empty (16 lowercase hex digits required)";
	if (len != PL_ROOM_ID_CHARS)
		return len < PL_ROOM_ID_CHARS
		           ? "is shorter than 16 lowercase hex digits"
		           : "is longer than 16 lowercase hex digits";
	for (size_t i = 0; i < PL_ROOM_ID_CHARS; i++) {
		int d = hex_digit(s[i]);
		if (d < 0)
			return "must be 16 lowercase hex digits (0-9, a-f)";
		v = v << 4 | (uint64_t)d;
	}
	if (pl_room_group(v) == 0)
		return "names shard group 0 (its first 4 digits must not be 0)";
	if ((v & PL_ROOM_COUNTER_MAX) == 0)
		return "has counter 0 (its last 12 digits must not all be 0)";
	*out = v;
	return NULL;
}

const char *pl_room_rule(const char *s, size_t len)
{
	uint64_t v;
	if (s == NULL)
		return "is missing";
	return room_value(s, len, &v);
}

pl_status pl_room_parse(const char *s, uint64_t *room)
{
	uint64_t v;
	if (s == NULL)
		return PL_E_BAD_REQUEST;
	/* One byte past the digits is enough to see a longer string. */
	size_t len = strnlen(s, PL_ROOM_ID_CHARS + 1);
	if (room_value(s, len, &v) != NULL)
		return PL_E_BAD_REQUEST;
	*room = v;
	return PL_OK;
}

const char *pl_role_name(int role)
{
	if (role < 0 || role >= (int)PL_ARRAY_LEN(role_names))
		return "unknown";
	return role_names[role];
}

int pl_role_parse(const char *s)
{
	for (size_t i = 0; s != NULL && i < PL_ARRAY_LEN(role_names); i++) {
		if (strcmp(s, role_names[i]) == 0)
			return (int)i;
	}
	return -1;
}
