/* test_migrate.c: ordered, idempotent migrations against a real PostgreSQL.
 *
 * Every test skips without MOTCUA_TEST_DATABASE_URL, works in a schema of its own
 * (ut_mig_<pid>_<n>, dropped in teardown) through a blocking connection, and checks
 * the catalog behind mc_migrate's back. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "error.h"
#include "log.h"
#include "migrate.h"
#include "unit.h"

typedef struct {
    PGconn *conn;
    char schema[40];
} fx_t;

static int fx_setup(void **state)
{
    static int counter;
    *state = NULL;
    if (!mc_test_db_url())
        return 0;
    fx_t *fx = mc_new(fx_t);
    snprintf(fx->schema, sizeof fx->schema, "ut_mig_%d_%d", (int)getpid(), ++counter);
    fx->conn = PQconnectdb(mc_test_db_url());
    if (PQstatus(fx->conn) != CONNECTION_OK) {
        fprintf(stderr, "test_migrate: %s", PQerrorMessage(fx->conn));
        PQfinish(fx->conn);
        free(fx);
        return -1;
    }
    PQclear(PQexec(fx->conn, "SET client_min_messages = warning"));
    mc_log_init(NULL, MC_LOG_WARN, 0); /* no "applied" lines in the test output */
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return 0;
    char sql[128];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", fx->schema);
    PQclear(PQexec(fx->conn, sql));
    /* What a lax name check may have let mc_migrate create (invalid_schema_names). */
    PQclear(PQexec(fx->conn, "DROP SCHEMA IF EXISTS \"9lives\" CASCADE"));
    PQfinish(fx->conn);
    free(fx);
    mc_log_init(NULL, MC_LOG_INFO, 0);
    return 0;
}

#define NEED_DB(fx) MC_NEED_DB(fx_t, fx)

/* First value of a query with %s standing for the schema, or "" if no row. */
static char *scalar(fx_t *fx, const char *fmt)
{
    static char value[256];
    char sql[1024];
    snprintf(sql, sizeof sql, fmt, fx->schema, fx->schema, fx->schema);
    PGresult *r = PQexec(fx->conn, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(value, sizeof value, "%s", PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return value;
}

static int table_exists(fx_t *fx, const char *table)
{
    char fmt[256];
    snprintf(fmt, sizeof fmt, "SELECT to_regclass('%%s.%s') IS NOT NULL", table);
    return strcmp(scalar(fx, fmt), "t") == 0;
}

/* Versions recorded for a component, e.g. "1,2". */
static char *recorded(fx_t *fx, const char *component)
{
    char fmt[256];
    snprintf(fmt, sizeof fmt,
             "SELECT coalesce(string_agg(version::text || ':' || name, ',' ORDER BY version), '') "
             "FROM %%s.schema_migrations WHERE component = '%s'",
             component);
    return scalar(fx, fmt);
}

static const mc_migration_t three[] = {
    {1, "001_cases",
     "CREATE TABLE @schema@.cases (id int PRIMARY KEY, code text NOT NULL);\n"
     "CREATE INDEX cases_code ON @schema@.cases (code);\n"},
    {2, "002_steps",
     "CREATE TABLE @schema@.steps (case_id int REFERENCES @schema@.cases (id));\n"
     "INSERT INTO @schema@.cases VALUES (1, 'G09-0001');\n"},
    {3, "003_note", "ALTER TABLE @schema@.cases ADD COLUMN note text DEFAULT 'x';\n"},
};

static void applies_each_once(void **state)
{
    NEED_DB(fx);
    char err[512] = "";
    assert_int_equal(mc_migrate(fx->conn, fx->schema, "ut", three, 2, err, sizeof err), 2);
    assert_true(table_exists(fx, "cases"));
    assert_true(table_exists(fx, "steps"));
    assert_false(table_exists(fx, "public_cases"));
    assert_string_equal(recorded(fx, "ut"), "1:001_cases,2:002_steps");
    assert_string_equal(scalar(fx, "SELECT count(*) FROM %s.cases"), "1");

    /* Again: nothing to do, nothing run twice (the INSERT would fail on its key). */
    assert_int_equal(mc_migrate(fx->conn, fx->schema, "ut", three, 2, err, sizeof err), 0);
    assert_string_equal(scalar(fx, "SELECT count(*) FROM %s.cases"), "1");

    /* A third one is added: only it runs. */
    assert_int_equal(mc_migrate(fx->conn, fx->schema, "ut", three, 3, err, sizeof err), 1);
    assert_string_equal(recorded(fx, "ut"), "1:001_cases,2:002_steps,3:003_note");
    assert_string_equal(scalar(fx, "SELECT note FROM %s.cases"), "x");
    assert_int_equal(mc_migrate(fx->conn, fx->schema, "ut", three, 3, err, sizeof err), 0);

    /* Versions are per component: another component in the same schema starts afresh. */
    static const mc_migration_t other[] = {
        {1, "001_other", "CREATE TABLE @schema@.other (x int);"},
    };
    assert_int_equal(mc_migrate(fx->conn, fx->schema, "other", other, 1, err, sizeof err), 1);
    assert_string_equal(recorded(fx, "other"), "1:001_other");
    assert_string_equal(recorded(fx, "ut"), "1:001_cases,2:002_steps,3:003_note");
    /* The advisory lock was let go. */
    assert_string_equal(scalar(fx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                   "AND pid = pg_backend_pid() AND '%s' <> ''"),
                        "0");
}

static void schema_placeholder_expanded(void **state)
{
    NEED_DB(fx);
    static const mc_migration_t m[] = {
        {1, "001_names",
         "CREATE TABLE @schema@.names (s text DEFAULT '@schema@', t text DEFAULT "
         "'@schema@@schema@');\nINSERT INTO @schema@.names DEFAULT VALUES;"},
    };
    char err[512] = "";
    assert_int_equal(mc_migrate(fx->conn, fx->schema, "ut", m, 1, err, sizeof err), 1);
    char want[128];
    assert_string_equal(scalar(fx, "SELECT s FROM %s.names"), fx->schema);
    snprintf(want, sizeof want, "%s%s", fx->schema, fx->schema);
    assert_string_equal(scalar(fx, "SELECT t FROM %s.names"), want);
    assert_string_equal(scalar(fx, "SELECT count(*) FROM %s.names WHERE s NOT LIKE '%%@%%'"), "1");
}

static void failing_migration_leaves_nothing(void **state)
{
    NEED_DB(fx);
    static const mc_migration_t m[] = {
        {1, "001_cases", "CREATE TABLE @schema@.cases (id int PRIMARY KEY);"},
        {2, "002_half",
         "CREATE TABLE @schema@.half (x int);\n"
         "INSERT INTO @schema@.cases VALUES (1);\n"
         "INSERT INTO @schema@.no_such_table VALUES (1);\n"},
        {3, "003_after", "CREATE TABLE @schema@.after (x int);"},
    };
    char err[512] = "";
    assert_int_equal(mc_migrate(fx->conn, fx->schema, "ut", m, 3, err, sizeof err), MC_EDB);
    assert_non_null(strstr(err, "002_half"));
    assert_non_null(strstr(err, "no_such_table"));
    /* The one before stays; the failed one left neither effect nor record; the one
     * after did not run. */
    assert_true(table_exists(fx, "cases"));
    assert_false(table_exists(fx, "half"));
    assert_string_equal(scalar(fx, "SELECT count(*) FROM %s.cases"), "0");
    assert_false(table_exists(fx, "after"));
    assert_string_equal(recorded(fx, "ut"), "1:001_cases");
    /* The connection is usable and not left in a transaction. */
    assert_int_equal(PQtransactionStatus(fx->conn), PQTRANS_IDLE);

    /* Fixed, it goes through with the rest. */
    static const mc_migration_t fixed[] = {
        {1, "001_cases", "CREATE TABLE @schema@.cases (id int PRIMARY KEY);"},
        {2, "002_half", "CREATE TABLE @schema@.half (x int);"},
        {3, "003_after", "CREATE TABLE @schema@.after (x int);"},
    };
    assert_int_equal(mc_migrate(fx->conn, fx->schema, "ut", fixed, 3, err, sizeof err), 2);
    assert_string_equal(recorded(fx, "ut"), "1:001_cases,2:002_half,3:003_after");
}

static void invalid_schema_names(void **state)
{
    NEED_DB(fx);
    static const char *const bad[] = {
        "Intake", "intake-2", "intake;drop", "x\"y", "a b", "", "9lives",
    };
    int wrong = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[512] = "";
        int rc = mc_migrate(fx->conn, bad[i], "ut", three, 1, err, sizeof err);
        if (rc != MC_EINVAL || !err[0]) {
            fprintf(stderr, "schema '%s': got %d (%s)\n", bad[i], rc, err);
            wrong++;
        }
    }
    assert_int_equal(wrong, 0);
    char sql[256];
    snprintf(sql, sizeof sql, "%s",
             "SELECT count(*) FROM pg_namespace WHERE nspname IN "
             "('Intake', 'intake-2', '9lives', '') AND '%s' <> ''");
    assert_string_equal(scalar(fx, sql), "0");
    /* A good name is accepted. */
    char err[512] = "";
    assert_int_equal(mc_migrate(fx->conn, fx->schema, "ut", three, 1, err, sizeof err), 1);
}

/* Two replicas starting together: each migration is applied once in all. */
typedef struct {
    const char *schema;
    int rc;
    char err[512];
} racer_t;

static void *race(void *arg)
{
    racer_t *r = arg;
    PGconn *c = PQconnectdb(mc_test_db_url());
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    r->rc = mc_migrate(c, r->schema, "ut", three, 3, r->err, sizeof r->err);
    PQfinish(c);
    return NULL;
}

static void concurrent_replicas_apply_once(void **state)
{
    NEED_DB(fx);
    enum { N = 4 };
    racer_t r[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].schema = fx->schema;
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        if (r[i].rc < 0)
            fprintf(stderr, "racer %d: %s\n", i, r[i].err);
        assert_true(r[i].rc >= 0);
        total += r[i].rc;
    }
    assert_int_equal(total, 3);
    assert_string_equal(recorded(fx, "ut"), "1:001_cases,2:002_steps,3:003_note");
}

static void service_gets_bus_tables(void **state)
{
    NEED_DB(fx);
    char err[512] = "";
    int rc = mc_migrate_service(mc_test_db_url(), fx->schema, three, 1, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, mc_sql_common_count + 1);
    assert_true(table_exists(fx, "outbox"));
    assert_true(table_exists(fx, "inbox"));
    assert_true(table_exists(fx, "dead_letters"));
    assert_true(table_exists(fx, "cases"));
    /* Own migrations are recorded under the schema's name, the bus's under "bus". */
    assert_string_equal(recorded(fx, fx->schema), "1:001_cases");
    char want[16];
    snprintf(want, sizeof want, "%d", mc_sql_common_count);
    assert_string_equal(scalar(fx, "SELECT count(*) FROM %s.schema_migrations WHERE component "
                                   "= 'bus'"),
                        want);
    assert_int_equal(mc_migrate_service(mc_test_db_url(), fx->schema, three, 2, err, sizeof err),
                     1);

    rc = mc_migrate_service("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", fx->schema,
                            three, 1, err, sizeof err);
    assert_int_equal(rc, MC_EUNAVAIL);
    assert_non_null(strstr(err, "cannot connect"));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
static const struct CMUnitTest tests[] = {
    T(applies_each_once),    T(schema_placeholder_expanded),    T(failing_migration_leaves_nothing),
    T(invalid_schema_names), T(concurrent_replicas_apply_once), T(service_gets_bus_tables),
};
MC_TEST_GROUP(migrate, tests, NULL, NULL);
