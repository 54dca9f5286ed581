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

pl_status pl_room_parse(const char *s, uint64_t *room)
{
	uint64_t v = 0;

	if (s == NULL)
		return PL_E_BAD_REQUEST;
	for (int i = 0; i < PL_ROOM_ID_CHARS; i++) {
		int d = hex_digit(s[i]); /* stops at the NUL: -1 */
		if (d < 0)
			return PL_E_BAD_REQUEST;
		v = v << 4 | (uint64_t)d;
	}
	if (s[PL_ROOM_ID_CHARS] != '\0')
		return PL_E_BAD_REQUEST;
	if (pl_room_group(v) == 0 || (v & PL_ROOM_COUNTER_MAX) == 0)
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
