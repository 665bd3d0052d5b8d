/* unit.h: the table of unit-test groups (libuv test-list.h style).
 *
 * Each tests/unit/test_<module>.c defines one group with MC_TEST_GROUP and
 * lists it in MC_TEST_GROUPS below. `unit-tests --list` prints every test;
 * `unit-tests GROUP` or `unit-tests GROUP/TEST` runs a subset. */
#ifndef MC_UNIT_H
#define MC_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

typedef struct {
    const char *name;
    const struct CMUnitTest *tests;
    size_t count;
    CMFixtureFunction setup;    /* may be NULL */
    CMFixtureFunction teardown; /* may be NULL */
} mc_test_group_t;

#define MC_TEST_GROUP(gname, tests_array, setup_fn, teardown_fn)                                   \
    const mc_test_group_t mc_test_group_##gname = {                                                \
        #gname, tests_array, sizeof(tests_array) / sizeof(tests_array[0]), setup_fn, teardown_fn}

/* The list of groups: add a line per new test file. */
#define MC_TEST_GROUPS(X)                                                                          \
    X(mc)                                                                                          \
    X(dossier_state)                                                                               \
    X(config)                                                                                      \
    X(log)                                                                                         \
    X(zsock)                                                                                       \
    X(db)                                                                                          \
    X(migrate)                                                                                     \
    X(http)                                                                                        \
    X(metrics)                                                                                     \
    X(envelope)                                                                                    \
    X(calendar)                                                                                    \
    X(auth)                                                                                        \
    X(bus)                                                                                         \
    X(fetch)

#define MC_DECLARE_GROUP(g) extern const mc_test_group_t mc_test_group_##g;
MC_TEST_GROUPS(MC_DECLARE_GROUP)

/* Tests skipped so far (the runner reports them apart from the passed ones). */
extern int mc_test_skipped;

/* In a test whose group setup made a database fixture in *state (NULL when there is
 * no test database): declare `type *name` from it, or skip the test. */
#define MC_NEED_DB(type, name)                                                                     \
    type *name = *state;                                                                           \
    if (!name) {                                                                                   \
        mc_test_skipped++;                                                                         \
        skip();                                                                                    \
    }

/* Connection string of the test PostgreSQL (MOTCUA_TEST_DATABASE_URL), or NULL:
 * tests that need a database skip when it is unset. */
const char *mc_test_db_url(void);

#endif
