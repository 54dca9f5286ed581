/*
 * test_status.c - the status -> client error code table of common/status.c
 * and the wire names of proto/parley.proto, checked against the generated
 * parley.ErrorCode so the table cannot drift from the schema.
 */
#define CHECK_MAIN
#include "tests/check.h"

#include "common/common.h"
#include "proto/codec.h"

static const struct {
	pl_status st;
	int code;
	const char *name;
} status_cases[] = {
    {PL_OK, PARLEY__ERROR_CODE__E_NONE, "none"},
    {PL_E_NOMEM, PARLEY__ERROR_CODE__OVERLOADED, "overloaded"},
    {PL_E_PROTO, PARLEY__ERROR_CODE__BAD_REQUEST, "bad_request"},
    {PL_E_BAD_REQUEST, PARLEY__ERROR_CODE__BAD_REQUEST, "bad_request"},
    {PL_E_EXISTS, PARLEY__ERROR_CODE__BAD_REQUEST, "bad_request"},
    {PL_E_TOO_LARGE, PARLEY__ERROR_CODE__TOO_LARGE, "too_large"},
    {PL_E_NOT_FOUND, PARLEY__ERROR_CODE__NOT_FOUND, "not_found"},
    {PL_E_UNAUTHORIZED, PARLEY__ERROR_CODE__UNAUTHORIZED, "unauthorized"},
    {PL_E_FORBIDDEN, PARLEY__ERROR_CODE__FORBIDDEN, "forbidden"},
    {PL_E_ROOM_CLOSED, PARLEY__ERROR_CODE__ROOM_CLOSED, "room_closed"},
    {PL_E_RATE_LIMITED, PARLEY__ERROR_CODE__RATE_LIMITED, "rate_limited"},
    {PL_E_BACKPRESSURE, PARLEY__ERROR_CODE__OVERLOADED, "overloaded"},
    {PL_E_MAP_FULL, PARLEY__ERROR_CODE__OVERLOADED, "overloaded"},
    {PL_E_DISK_FULL, PARLEY__ERROR_CODE__OVERLOADED, "overloaded"},
    {PL_E_UNAVAILABLE, PARLEY__ERROR_CODE__UNAVAILABLE, "unavailable"},
    {PL_E_TIMEOUT, PARLEY__ERROR_CODE__UNAVAILABLE, "unavailable"},
    {PL_E_NOT_LEADER, PARLEY__ERROR_CODE__UNAVAILABLE, "unavailable"},
    {PL_E_CLOSED, PARLEY__ERROR_CODE__UNAVAILABLE, "unavailable"},
    {PL_E_AGAIN, PARLEY__ERROR_CODE__UNAVAILABLE, "unavailable"},
    {PL_E_CORRUPT, PARLEY__ERROR_CODE__INTERNAL, "internal"},
    {PL_E_IO, PARLEY__ERROR_CODE__INTERNAL, "internal"},
    {PL_E_CONFIG, PARLEY__ERROR_CODE__INTERNAL, "internal"},
    {PL_E_INTERNAL, PARLEY__ERROR_CODE__INTERNAL, "internal"},
    {(pl_status)-999, PARLEY__ERROR_CODE__INTERNAL, "internal"},
};

TEST(test_status_maps_to_code)
{
	for (size_t i = 0; i < PL_ARRAY_LEN(status_cases); i++) {
		int code = pl_status_to_code(status_cases[i].st);
		if (code != status_cases[i].code)
			fprintf(stderr, "  case %zu: %s\n", i,
			    pl_strerror(status_cases[i].st));
		CHECK_EQ(code, status_cases[i].code);
		CHECK_STR_EQ(pl_code_name(code), status_cases[i].name);
	}
}

/* Every code maps back to a status that maps forward to the same code. */
TEST(test_status_code_round_trip)
{
	for (int code = PARLEY__ERROR_CODE__E_NONE;
	     code <= PARLEY__ERROR_CODE__INTERNAL; code++)
		CHECK_EQ(pl_status_to_code(pl_code_to_status(code)), code);
}

TEST(test_status_code_names_are_wire_names)
{
	static const char *const names[] = {"none", "bad_request",
	    "unauthorized", "forbidden", "not_found", "room_closed",
	    "too_large", "rate_limited", "overloaded", "unavailable",
	    "internal"};
	CHECK_EQ(PL_ARRAY_LEN(names), PARLEY__ERROR_CODE__INTERNAL + 1);
	for (int i = 0; i < (int)PL_ARRAY_LEN(names); i++)
		CHECK_STR_EQ(pl_code_name(i), names[i]);
}

TEST(test_status_unknown_code)
{
	CHECK_STR_EQ(pl_code_name(-1), "unknown");
	CHECK_STR_EQ(pl_code_name(PARLEY__ERROR_CODE__INTERNAL + 1), "unknown");
	CHECK_EQ(pl_code_to_status(99), PL_E_INTERNAL);
}

TEST(test_status_strerror_distinct)
{
	for (int a = PL_E_CLOSED; a <= PL_OK; a++) {
		CHECK(strcmp(pl_strerror((pl_status)a), "unknown status") != 0);
		for (int b = a + 1; b <= PL_OK; b++)
			CHECK(strcmp(pl_strerror((pl_status)a),
			          pl_strerror((pl_status)b)) != 0);
	}
	CHECK_STR_EQ(pl_strerror((pl_status)-999), "unknown status");
}
