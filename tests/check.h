/*
 * check.h - Parley's minimal unit test harness. Tests register themselves
 * with TEST(name) (a constructor adds them to a list), so the list that
 * runs cannot drift from the tests that exist. Assertion macros print both
 * operands. A test binary runs all its tests, or those whose names contain
 * argv[1], and ends with the line "N passed, M failed".
 */
#ifndef PARLEY_CHECK_H
#define PARLEY_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*check_fn)(int *failed);
struct check_case {
	const char *name;
	check_fn fn;
	struct check_case *next;
};
extern struct check_case *check_cases;

#define TEST(name)                                                          \
	static void name(int *check_failed_);                               \
	static struct check_case name##_case_ = {#name, name, NULL};        \
	__attribute__((constructor)) static void name##_register_(void)     \
	{                                                                   \
		name##_case_.next = check_cases;                            \
		check_cases = &name##_case_;                                \
	}                                                                   \
	static void name(int *check_failed_)

#define CHECK_FAIL_(...)                                                    \
	do {                                                                \
		fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);           \
		fprintf(stderr, __VA_ARGS__);                               \
		fputc('\n', stderr);                                        \
		*check_failed_ = 1;                                         \
	} while (0)

#define CHECK(e)                                                            \
	do {                                                                \
		if (!(e)) {                                                 \
			CHECK_FAIL_("CHECK(%s) failed", #e);                \
			return;                                             \
		}                                                           \
	} while (0)

#define CHECK_INT_(a, op, b)                                                \
	do {                                                                \
		long long a_ = (long long)(a), b_ = (long long)(b);         \
		if (!(a_ op b_)) {                                          \
			CHECK_FAIL_("%s %s %s: %lld vs %lld", #a, #op, #b,  \
			    a_, b_);                                        \
			return;                                             \
		}                                                           \
	} while (0)
#define CHECK_EQ(a, b) CHECK_INT_(a, ==, b)
#define CHECK_NE(a, b) CHECK_INT_(a, !=, b)
#define CHECK_LT(a, b) CHECK_INT_(a, <, b)
#define CHECK_LE(a, b) CHECK_INT_(a, <=, b)
#define CHECK_GT(a, b) CHECK_INT_(a, >, b)
#define CHECK_GE(a, b) CHECK_INT_(a, >=, b)

#define CHECK_STR_EQ(a, b)                                                  \
	do {                                                                \
		const char *a_ = (a), *b_ = (b);                            \
		if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {      \
			CHECK_FAIL_("%s == %s: \"%s\" vs \"%s\"", #a, #b,   \
			    a_ ? a_ : "(null)", b_ ? b_ : "(null)");        \
			return;                                             \
		}                                                           \
	} while (0)

/* Define CHECK_MAIN in exactly one file per test binary. */
#ifdef CHECK_MAIN
struct check_case *check_cases;
int main(int argc, char **argv)
{
	int passed = 0, failed = 0;
	/* Constructors run in reverse order of definition: reverse again. */
	struct check_case *rev = NULL;
	while (check_cases != NULL) {
		struct check_case *c = check_cases;
		check_cases = c->next;
		c->next = rev;
		rev = c;
	}
	for (struct check_case *c = rev; c != NULL; c = c->next) {
		if (argc > 1 && strstr(c->name, argv[1]) == NULL)
			continue;
		int f = 0;
		c->fn(&f);
		printf("%s %s\n", f ? "FAIL" : "ok  ", c->name);
		fflush(stdout);
		if (f)
			failed++;
		else
			passed++;
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
#endif

#endif /* PARLEY_CHECK_H */
