/* A tiny unit-test frame: each CHECK prints one PASS/FAIL line that tests/run.sh counts. */
#ifndef TRACKTLS_CHECK_H
#define TRACKTLS_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(cond, name)                                                                  \
	do {                                                                               \
		if (cond) {                                                                \
			printf("PASS: %s\n", name);                                        \
		} else {                                                                   \
			printf("FAIL: %s (%s:%d: %s)\n", name, __FILE__, __LINE__, #cond); \
			check_failures++;                                                  \
		}                                                                          \
		fflush(stdout);                                                            \
	} while (0)

/* For a test that needs a PostgreSQL: tests/run.sh exports a connection string to an empty
 * database per test binary in TRACKTLS_TEST_DB. */
static inline const char *check_test_db(void)
{
	const char *db = getenv("TRACKTLS_TEST_DB");
	if (!db || !*db) {
		printf("FAIL: TRACKTLS_TEST_DB is not set (run through tests/run.sh)\n");
		exit(1);
	}
	return db;
}

#define CHECK_DONE() return check_failures ? 1 : 0
#endif
