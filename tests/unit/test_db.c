/* test_db.c: the libpq connection pool on a real loop against a real PostgreSQL.
 *
 * Every test skips without MOTCUA_TEST_DATABASE_URL. Setup creates a schema of its
 * own (ut_db_<pid>_<n>) and a blocking "admin" connection, used to prepare tables,
 * check results behind the pool's back, NOTIFY, and terminate the pool's backends.
 * The pool connects with application_name set to the schema's name, so the admin
 * connection can find exactly this test's backends in pg_stat_activity. Each test
 * destroys its pool, runs the loop until every handle is closed and requires
 * uv_loop_close() to succeed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <uv.h>

#include "db.h"
#include "error.h"
#include "mc.h"
#include "unit.h"

/* ------------------------------------------------------------------ */
/* Fixture                                                            */

typedef struct {
    uv_loop_t loop;
    PGconn *admin;
    int loop_closed;
    char schema[40];
    char url[1024]; /* the test URL with application_name=<schema> */
} fx_t;

static int fx_setup(void **state)
{
    static int counter;
    const char *base = mc_test_db_url();
    *state = NULL;
    if (!base)
        return 0;
    fx_t *fx = mc_new(fx_t);
    snprintf(fx->schema, sizeof fx->schema, "ut_db_%d_%d", (int)getpid(), ++counter);
    if (strncmp(base, "postgres://", 11) == 0 || strncmp(base, "postgresql://", 13) == 0)
        snprintf(fx->url, sizeof fx->url, "%s%sapplication_name=%s", base,
                 strchr(base, '?') ? "&" : "?", fx->schema);
    else
        snprintf(fx->url, sizeof fx->url, "%s application_name=%s", base, fx->schema);
    fx->admin = PQconnectdb(base);
    if (PQstatus(fx->admin) != CONNECTION_OK) {
        fprintf(stderr, "test_db: cannot connect: %s", PQerrorMessage(fx->admin));
        PQfinish(fx->admin);
        free(fx);
        return -1;
    }
    PQclear(PQexec(fx->admin, "SET client_min_messages = warning"));
    char sql[256];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", fx->schema,
             fx->schema);
    PGresult *r = PQexec(fx->admin, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        PQfinish(fx->admin);
        free(fx);
        return -1;
    }
    uv_loop_init(&fx->loop);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return 0;
    /* After a failed test the loop may still be open: try, for a cleaner report. */
    if (!fx->loop_closed && uv_run(&fx->loop, UV_RUN_NOWAIT) == 0)
        uv_loop_close(&fx->loop);
    char sql[128];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", fx->schema);
    PQclear(PQexec(fx->admin, sql));
    PQfinish(fx->admin);
    free(fx);
    return 0;
}

#define NEED_DB(fx) MC_NEED_DB(fx_t, fx)

/* Run sql (with "@s@" standing for the schema) on the admin connection. */
static void admin_exec(fx_t *fx, const char *sql)
{
    char text[2048];
    const char *p = sql;
    size_t o = 0;
    while (*p && o + 64 < sizeof text) {
        if (strncmp(p, "@s@", 3) == 0) {
            o += (size_t)snprintf(text + o, sizeof text - o, "%s", fx->schema);
            p += 3;
        } else {
            text[o++] = *p++;
        }
    }
    text[o] = '\0';
    PGresult *r = PQexec(fx->admin, text);
    int st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fprintf(stderr, "admin: %s: %s", text, PQresultErrorMessage(r));
    PQclear(r);
    assert_true(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
}

/* The first value of a query on the admin connection, as a long. */
static long admin_long(fx_t *fx, const char *fmt, const char *arg)
{
    char sql[1024];
    snprintf(sql, sizeof sql, fmt, arg);
    PGresult *r = PQexec(fx->admin, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    long v = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* sql with "@s@" replaced by the schema, in buf. */
static const char *S(fx_t *fx, char *buf, size_t len, const char *sql)
{
    size_t o = 0;
    for (const char *p = sql; *p && o + 1 < len;) {
        if (strncmp(p, "@s@", 3) == 0) {
            o += (size_t)snprintf(buf + o, len - o, "%s", fx->schema);
            if (o >= len)
                o = len - 1;
            p += 3;
        } else {
            buf[o++] = *p++;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* ------------------------------------------------------------------ */
/* Loop helpers                                                       */

static void on_wake(uv_timer_t *t)
{
    (void)t;
}

static int run_until(uv_loop_t *loop, const int *flag, uint64_t ms)
{
    uv_timer_t wake;
    uv_timer_init(loop, &wake);
    uv_timer_start(&wake, on_wake, 5, 5);
    uint64_t deadline = mc_now_ms() + ms;
    while (!*flag && mc_now_ms() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

static void run_for(uv_loop_t *loop, uint64_t ms)
{
    int never = 0;
    run_until(loop, &never, ms);
}

/* Run the loop until *counter reaches target or ms have passed. */
static int run_until_count(uv_loop_t *loop, const int *counter, int target, uint64_t ms)
{
    uint64_t deadline = mc_now_ms() + ms;
    while (*counter < target && mc_now_ms() < deadline)
        run_for(loop, 5);
    return *counter >= target;
}

static int close_loop_(uv_loop_t *loop)
{
    uint64_t deadline = mc_now_ms() + 5000;
    while (uv_run(loop, UV_RUN_NOWAIT) && mc_now_ms() < deadline)
        usleep(1000);
    return uv_loop_close(loop);
}

static int close_loop(fx_t *fx)
{
    fx->loop_closed = 1;
    return close_loop_(&fx->loop);
}

/* ------------------------------------------------------------------ */
/* Results                                                            */

typedef struct {
    int done;
    int status;
    int conn_null; /* the callback's conn argument was NULL (mc_db_exec) */
    char sqlstate[8];
    char message[256];
    int ntuples;
    char value[256]; /* first column of the first row, NUL-terminated */
    int length;      /* its length as PostgreSQL gave it */
} res_t;

static void on_res(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    res_t *r = arg;
    r->done++;
    r->status = status;
    r->conn_null = conn == NULL;
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", mc_db_sqlstate(res));
    snprintf(r->message, sizeof r->message, "%s", res ? PQresultErrorMessage(res) : "");
    if (status == MC_OK && res && PQresultStatus(res) == PGRES_TUPLES_OK) {
        r->ntuples = PQntuples(res);
        if (r->ntuples > 0 && PQnfields(res) > 0) {
            r->length = PQgetlength(res, 0, 0);
            size_t n =
                (size_t)r->length < sizeof r->value - 1 ? (size_t)r->length : sizeof r->value - 1;
            memcpy(r->value, PQgetvalue(res, 0, 0), n);
            r->value[n] = '\0';
        }
    }
}

/* Run one statement through the pool and wait for it. */
static void exec_wait(fx_t *fx, mc_db_t *db, const char *sql, const mc_db_params_t *p, int binary,
                      res_t *r)
{
    char text[1024];
    memset(r, 0, sizeof *r);
    mc_db_exec(db, S(fx, text, sizeof text, sql), p, binary, on_res, r);
    assert_true(run_until(&fx->loop, &r->done, 5000));
}

/* A script: acquire, run statements in order on the held connection, release. */
typedef struct {
    mc_db_t *db;
    char sql[8][256];
    int n, i;
    int acquired;
    mc_db_conn_t *conn;
    res_t res[8];
    int pause_at; /* > 0: stop before statement pause_at until resumed */
    int paused;
    int done;
} script_t;

static void script_step(script_t *s);

static void script_on_res(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    script_t *s = arg;
    on_res(conn, res, status, &s->res[s->i]);
    s->i++;
    script_step(s);
}

static void script_step(script_t *s)
{
    if (s->pause_at && s->i == s->pause_at && !s->paused) {
        s->paused = 1; /* the test calls script_step again to go on */
        return;
    }
    if (s->i < s->n) {
        mc_db_query(s->conn, s->sql[s->i], NULL, 0, script_on_res, s);
        return;
    }
    mc_db_release(s->conn); /* whatever state the transaction is in */
    s->conn = NULL;
    s->done = 1;
}

static void script_on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    script_t *s = arg;
    s->acquired = status == MC_OK ? 1 : status;
    if (status != MC_OK) {
        s->done = 1;
        return;
    }
    s->conn = conn;
    script_step(s);
}

/* Statements with "@s@" expanded. */
static void script_init(script_t *s, fx_t *fx, mc_db_t *db, const char *const *sql, int n)
{
    memset(s, 0, sizeof *s);
    assert_true(n <= 8);
    for (int i = 0; i < n; i++)
        S(fx, s->sql[i], sizeof s->sql[i], sql[i]);
    s->db = db;
    s->n = n;
}

/* ------------------------------------------------------------------ */
/* Statements and parameters                                          */

static void exec_params_round_trip(void **state)
{
    NEED_DB(fx);
    admin_exec(fx, "CREATE TABLE @s@.files (id int PRIMARY KEY, name text, note text, data bytea)");
    mc_db_t *db = mc_db_new(&fx->loop, fx->url, 2);
    assert_int_equal(mc_db_size(db), 2);

    char name[] = "Giấy khai sinh 'bản sao'";
    uint8_t data[300];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7); /* zeros and high bytes included */
    mc_db_params_t p = {0};
    mc_db_param_int(&p, 1);
    mc_db_param_text(&p, name);
    mc_db_param_text(&p, NULL);
    mc_db_param_bytes(&p, data, sizeof data);
    char sql[256];
    res_t ins = {0};
    mc_db_exec(db, S(fx, sql, sizeof sql, "INSERT INTO @s@.files VALUES ($1::int, $2, $3, $4)"), &p,
               0, on_res, &ins);
    /* mc_db_exec copied everything: clobbering the caller's storage changes nothing. */
    memset(name, 'X', sizeof name - 1);
    memset(data, 0xAA, sizeof data);
    memset(&p, 0x5A, sizeof p);
    memset(sql, 0, sizeof sql);
    assert_true(run_until(&fx->loop, &ins.done, 5000));
    assert_int_equal(ins.status, MC_OK);
    assert_true(ins.conn_null);

    /* Binary result: the bytea comes back as raw bytes. */
    uint8_t want[300];
    for (size_t i = 0; i < sizeof want; i++)
        want[i] = (uint8_t)(i * 7);
    mc_db_params_t q = {0};
    mc_db_param_int(&q, 1);
    res_t got;
    exec_wait(fx, db, "SELECT data FROM @s@.files WHERE id = $1::int", &q, 1, &got);
    assert_int_equal(got.status, MC_OK);
    assert_int_equal(got.ntuples, 1);
    assert_int_equal(got.length, 300);
    /* res_t keeps 255 bytes of the value */
    assert_memory_equal(got.value, want, 255);

    exec_wait(fx, db, "SELECT name FROM @s@.files WHERE id = $1::int", &q, 0, &got);
    assert_string_equal(got.value, "Giấy khai sinh 'bản sao'");
    exec_wait(fx, db, "SELECT note IS NULL FROM @s@.files WHERE id = $1::int", &q, 0, &got);
    assert_string_equal(got.value, "t");
    exec_wait(fx, db,
              "SELECT md5(data) = md5(decode(string_agg(lpad(to_hex((g * 7) % 256), 2, "
              "'0'), '' ORDER BY g), 'hex')) FROM @s@.files, generate_series(0, 299) g "
              "WHERE id = 1 GROUP BY data",
              NULL, 0, &got);
    assert_string_equal(got.value, "t");

    /* Text result of the same bytea: hex form. */
    exec_wait(fx, db, "SELECT data FROM @s@.files WHERE id = 1", NULL, 0, &got);
    assert_memory_equal(got.value, "\\x00070e15", 10);

    /* An empty binary parameter is an empty bytea, not NULL. */
    mc_db_params_t e = {0};
    mc_db_param_bytes(&e, "", 0);
    exec_wait(fx, db, "SELECT length($1::bytea)", &e, 0, &got);
    assert_int_equal(got.status, MC_OK);
    assert_string_equal(got.value, "0");

    mc_db_destroy(&db);
    assert_null(db);
    mc_db_destroy(&db); /* safe twice */
    assert_int_equal(close_loop(fx), 0);
}

static void sql_error_has_sqlstate(void **state)
{
    NEED_DB(fx);
    admin_exec(fx, "CREATE TABLE @s@.t (id int PRIMARY KEY)");
    admin_exec(fx, "INSERT INTO @s@.t VALUES (1)");
    mc_db_t *db = mc_db_new(&fx->loop, fx->url, 1);
    res_t r;
    exec_wait(fx, db, "SELECT 1/0", NULL, 0, &r);
    assert_int_equal(r.status, MC_EDB);
    assert_string_equal(r.sqlstate, "22012");
    assert_non_null(strstr(r.message, "division by zero"));

    exec_wait(fx, db, "SELECT * FROM @s@.no_such_table", NULL, 0, &r);
    assert_int_equal(r.status, MC_EDB);
    assert_string_equal(r.sqlstate, "42P01");

    mc_db_params_t p = {0};
    mc_db_param_int(&p, 1);
    exec_wait(fx, db, "INSERT INTO @s@.t VALUES ($1::int)", &p, 0, &r);
    assert_int_equal(r.status, MC_EDB);
    assert_string_equal(r.sqlstate, "23505");

    /* Several statements: the first error wins over later successes. */
    exec_wait(fx, db, "SELECT 1; SELECT 1/0; SELECT 3", NULL, 0, &r);
    assert_int_equal(r.status, MC_EDB);
    assert_string_equal(r.sqlstate, "22012");

    /* The (only) connection is still good afterwards. */
    exec_wait(fx, db, "SELECT 40 + 2", NULL, 0, &r);
    assert_int_equal(r.status, MC_OK);
    assert_string_equal(r.value, "42");
    assert_string_equal(r.sqlstate, "");
    assert_int_equal(mc_db_connected(db), 1);

    mc_db_destroy(&db);
    assert_int_equal(close_loop(fx), 0);
}

/* ------------------------------------------------------------------ */
/* Held connections and transactions                                  */

static void held_connection_transaction(void **state)
{
    NEED_DB(fx);
    admin_exec(fx, "CREATE TABLE @s@.t (id int PRIMARY KEY)");
    mc_db_t *db = mc_db_new(&fx->loop, fx->url, 1);
    static const char *const sql[] = {
        "BEGIN",
        "INSERT INTO @s@.t VALUES (1), (2)",
        "SELECT pg_current_xact_id_if_assigned() IS NOT NULL",
        "SELECT count(*) FROM @s@.t",
        "COMMIT",
        "SELECT pg_current_xact_id_if_assigned() IS NULL",
    };
    script_t s;
    script_init(&s, fx, db, sql, (int)MC_COUNT(sql));
    mc_db_acquire(db, script_on_conn, &s);
    assert_true(run_until(&fx->loop, &s.done, 5000));
    assert_int_equal(s.acquired, 1);
    for (int i = 0; i < s.n; i++)
        assert_int_equal(s.res[i].status, MC_OK);
    assert_string_equal(s.res[2].value, "t"); /* inside a transaction */
    assert_string_equal(s.res[3].value, "2");
    assert_string_equal(s.res[5].value, "t"); /* and out of it after COMMIT */
    assert_false(s.res[0].conn_null);
    assert_int_equal(admin_long(fx, "SELECT count(*) FROM %s.t", fx->schema), 2);

    mc_db_destroy(&db);
    assert_int_equal(close_loop(fx), 0);
}

static void release_mid_transaction_rolls_back(void **state)
{
    NEED_DB(fx);
    admin_exec(fx, "CREATE TABLE @s@.t (id int PRIMARY KEY)");
    mc_db_t *db = mc_db_new(&fx->loop, fx->url, 1);
    static const char *const first[] = {
        "SELECT pg_backend_pid()",
        "BEGIN",
        "INSERT INTO @s@.t VALUES (7)",
        "SELECT count(*) FROM @s@.t",
    }; /* released without COMMIT */
    static const char *const second[] = {
        "SELECT pg_backend_pid()",
        "SELECT pg_current_xact_id_if_assigned() IS NULL",
        "SELECT count(*) FROM @s@.t",
        "BEGIN",
        "SELECT 1/0",
    }; /* released in a failed transaction */
    static const char *const third[] = {
        "SELECT pg_backend_pid()",
        "SELECT 'usable'",
    };
    static script_t a, b, c;
    script_init(&a, fx, db, first, (int)MC_COUNT(first));
    script_init(&b, fx, db, second, (int)MC_COUNT(second));
    script_init(&c, fx, db, third, (int)MC_COUNT(third));
    /* One connection: b and c wait and get it, one after the other, after a. */
    mc_db_acquire(db, script_on_conn, &a);
    mc_db_acquire(db, script_on_conn, &b);
    mc_db_acquire(db, script_on_conn, &c);
    assert_true(run_until(&fx->loop, &c.done, 5000));
    assert_true(a.done && b.done);
    for (int i = 0; i < a.n; i++)
        assert_int_equal(a.res[i].status, MC_OK);
    assert_string_equal(a.res[3].value, "1"); /* a saw its own row */
    /* b runs on the same backend, outside any transaction, and the row is gone. */
    assert_string_equal(b.res[0].value, a.res[0].value);
    assert_string_equal(b.res[1].value, "t");
    assert_string_equal(b.res[2].value, "0");
    assert_int_equal(b.res[4].status, MC_EDB);
    assert_string_equal(c.res[0].value, a.res[0].value);
    assert_int_equal(c.res[1].status, MC_OK);
    assert_string_equal(c.res[1].value, "usable");
    assert_int_equal(admin_long(fx, "SELECT count(*) FROM %s.t", fx->schema), 0);

    mc_db_destroy(&db);
    assert_int_equal(close_loop(fx), 0);
}

/* ------------------------------------------------------------------ */
/* Waiters                                                            */

enum { WAITERS = 12 };

typedef struct fifo fifo_t;
typedef struct {
    fifo_t *f;
    int index;
    mc_db_conn_t *conn;
} fifo_waiter_t;

struct fifo {
    fifo_waiter_t w[WAITERS];
    int order[WAITERS];
    int served;
    int held, max_held;
    int finished;
    int done;
    int errors;
};

static void fifo_on_res(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)res;
    fifo_waiter_t *w = arg;
    if (status != MC_OK)
        w->f->errors++;
    w->f->held--;
    mc_db_release(conn); /* serves the next waiter from inside this call */
    if (++w->f->finished == WAITERS)
        w->f->done = 1;
}

static void fifo_on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    fifo_waiter_t *w = arg;
    fifo_t *f = w->f;
    if (status != MC_OK) {
        f->errors++;
        return;
    }
    f->order[f->served++] = w->index;
    if (++f->held > f->max_held)
        f->max_held = f->held;
    w->conn = conn;
    mc_db_query(conn, "SELECT pg_sleep(0.01)", NULL, 0, fifo_on_res, w);
}

static void waiters_served_fifo(void **state)
{
    NEED_DB(fx);
    mc_db_t *db = mc_db_new(&fx->loop, fx->url, 3);
    static fifo_t f;
    memset(&f, 0, sizeof f);
    for (int i = 0; i < WAITERS; i++) {
        f.w[i].f = &f;
        f.w[i].index = i;
        mc_db_acquire(db, fifo_on_conn, &f.w[i]);
    }
    /* Nothing is connected before the loop runs: everyone waits. */
    int waiting_before = mc_db_waiting(db);
    assert_true(run_until(&fx->loop, &f.done, 10000));
    int waiting_after = mc_db_waiting(db);
    mc_db_destroy(&db);
    assert_int_equal(close_loop(fx), 0);

    assert_int_equal(waiting_before, WAITERS);
    assert_int_equal(waiting_after, 0);
    assert_int_equal(f.errors, 0);
    assert_int_equal(f.served, WAITERS);
    for (int i = 0; i < WAITERS; i++)
        assert_int_equal(f.order[i], i);
    assert_true(f.max_held <= 3);
    assert_true(f.max_held >= 2); /* the pool was really used in parallel */
}

/* ------------------------------------------------------------------ */
/* LISTEN / NOTIFY                                                    */

typedef struct {
    char channel[64], channel2[64];
    int nulls, nulls2; /* (channel, NULL) calls: connected, look for work */
    int payloads;
    char last_payload[128];
    char last_channel[64];
    int other; /* anything on a channel we did not listen to */
} listen_t;

static void on_notify(const char *channel, const char *payload, void *arg)
{
    listen_t *l = arg;
    int one = strcmp(channel, l->channel) == 0, two = strcmp(channel, l->channel2) == 0;
    if (!one && !two) {
        l->other++;
        return;
    }
    if (!payload) {
        if (one)
            l->nulls++;
        else
            l->nulls2++;
        return;
    }
    l->payloads++;
    snprintf(l->last_payload, sizeof l->last_payload, "%s", payload);
    snprintf(l->last_channel, sizeof l->last_channel, "%s", channel);
}

static void listen_then_notify(void **state)
{
    NEED_DB(fx);
    mc_db_t *db = mc_db_new(&fx->loop, fx->url, 1);
    listen_t l = {0};
    snprintf(l.channel, sizeof l.channel, "%s_outbox", fx->schema);
    snprintf(l.channel2, sizeof l.channel2, "%s_second", fx->schema);
    mc_db_listen(db, l.channel, on_notify, &l);
    assert_true(run_until(&fx->loop, &l.nulls, 5000));
    assert_int_equal(l.payloads, 0);

    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT pg_notify('%s_other', 'not for us'), pg_notify('%s', "
             "'dossier G09-0001')",
             fx->schema, l.channel);
    admin_exec(fx, sql);
    assert_true(run_until(&fx->loop, &l.payloads, 5000));
    assert_string_equal(l.last_channel, l.channel);
    assert_string_equal(l.last_payload, "dossier G09-0001");
    assert_int_equal(l.other, 0);

    /* A second channel on the live listener: its own NULL call, then its payloads. */
    mc_db_listen(db, l.channel2, on_notify, &l);
    assert_true(run_until(&fx->loop, &l.nulls2, 5000));
    snprintf(sql, sizeof sql, "NOTIFY %s, 'two'", l.channel2);
    admin_exec(fx, sql);
    assert_true(run_until_count(&fx->loop, &l.payloads, 2, 5000));
    assert_int_equal(l.payloads, 2);
    assert_string_equal(l.last_channel, l.channel2);
    assert_string_equal(l.last_payload, "two");

    mc_db_destroy(&db);
    assert_int_equal(close_loop(fx), 0);
}

/* ------------------------------------------------------------------ */
/* Reconnect                                                          */

typedef struct {
    mc_db_t *db;
    uv_timer_t timer;
    res_t probe;
    int in_flight;
    int ok_after; /* a probe succeeded with the whole pool connected */
    int probes;
} poller_t;

static void poll_on_res(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    poller_t *p = arg;
    on_res(conn, res, status, &p->probe);
    p->in_flight = 0;
    if (status == MC_OK && p->db && mc_db_connected(p->db) == mc_db_size(p->db))
        p->ok_after = 1;
}

static void poll_tick(uv_timer_t *t)
{
    poller_t *p = mc_container_of(t, poller_t, timer);
    if (p->in_flight || p->ok_after)
        return;
    p->in_flight = 1;
    p->probes++;
    mc_db_exec(p->db, "SELECT 1", NULL, 0, poll_on_res, p);
}

/* Terminate every backend of this test's pool; returns how many. */
static long terminate_pool(fx_t *fx)
{
    return admin_long(fx,
                      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                      "AND application_name = '%s'",
                      fx->schema);
}

static int pool_ready(mc_db_t *db, listen_t *l, int nulls)
{
    return mc_db_connected(db) == mc_db_size(db) && l->nulls >= nulls;
}

static void reconnect_after_backends_killed(void **state)
{
    NEED_DB(fx);
    mc_db_t *db = mc_db_new(&fx->loop, fx->url, 2);
    listen_t l = {0};
    snprintf(l.channel, sizeof l.channel, "%s_outbox", fx->schema);
    mc_db_listen(db, l.channel, on_notify, &l);
    uint64_t deadline = mc_now_ms() + 5000;
    while (!pool_ready(db, &l, 1) && mc_now_ms() < deadline)
        run_for(&fx->loop, 10);
    assert_int_equal(mc_db_connected(db), 2);
    res_t before;
    exec_wait(fx, db, "SELECT pg_backend_pid()", NULL, 0, &before);
    assert_int_equal(before.status, MC_OK);

    /* A long statement in flight when the backends go: it must end, not hang. */
    res_t sleeping = {0};
    mc_db_exec(db, "SELECT pg_sleep(30)", NULL, 0, on_res, &sleeping);
    run_for(&fx->loop, 50);
    assert_int_equal(terminate_pool(fx), 3); /* two pool connections and the listener */

    /* The next statement may fail or succeed; it must finish either way. */
    res_t next;
    memset(&next, 0, sizeof next);
    mc_db_exec(db, "SELECT 1", NULL, 0, on_res, &next);
    assert_true(run_until(&fx->loop, &sleeping.done, 3000));
    assert_int_not_equal(sleeping.status, MC_OK);
    assert_true(run_until(&fx->loop, &next.done, 5000));
    assert_true(next.status == MC_OK || next.status == MC_EUNAVAIL);

    /* Within a few seconds statements succeed again on a full pool. */
    poller_t p = {0};
    p.db = db;
    uv_timer_init(&fx->loop, &p.timer);
    uv_timer_start(&p.timer, poll_tick, 0, 50);
    int ok = run_until(&fx->loop, &p.ok_after, 5000);
    uv_timer_stop(&p.timer);
    uv_close((uv_handle_t *)&p.timer, NULL);
    if (!ok)
        fprintf(stderr, "reconnect: %d probes, last status %d, connected %d\n", p.probes,
                p.probe.status, mc_db_connected(db));
    assert_true(ok);
    assert_int_equal(mc_db_connected(db), 2);

    res_t after;
    exec_wait(fx, db, "SELECT pg_backend_pid()", NULL, 0, &after);
    assert_int_equal(after.status, MC_OK);
    assert_string_not_equal(after.value, before.value); /* a new backend */

    /* The listener came back too: a NULL call (look for work), then payloads. */
    assert_true(run_until_count(&fx->loop, &l.nulls, 2, 5000));
    assert_int_equal(l.nulls, 2);
    char sql[256];
    snprintf(sql, sizeof sql, "NOTIFY %s, 'after'", l.channel);
    admin_exec(fx, sql);
    assert_true(run_until(&fx->loop, &l.payloads, 5000));
    assert_string_equal(l.last_payload, "after");
    assert_int_equal(admin_long(fx,
                                "SELECT count(*) FROM pg_stat_activity WHERE application_name "
                                "= '%s'",
                                fx->schema),
                     3);

    p.db = NULL;
    mc_db_destroy(&db);
    assert_int_equal(close_loop(fx), 0);
}

/* A held connection whose backend dies in the middle of a transaction must not be
 * quietly replaced: the statements after the break would run outside the caller's
 * transaction (autocommit on a new session) while those before it were rolled back.
 * The caller must see MC_EUNAVAIL until it releases the connection. */
static void broken_transaction_not_resumed(void **state)
{
    NEED_DB(fx);
    admin_exec(fx, "CREATE TABLE @s@.t (id int PRIMARY KEY)");
    mc_db_t *db = mc_db_new(&fx->loop, fx->url, 1);
    static const char *const sql[] = {
        "BEGIN",
        "INSERT INTO @s@.t VALUES (1)",
        "INSERT INTO @s@.t VALUES (2)", /* after the break */
        "COMMIT",
    };
    static script_t s;
    script_init(&s, fx, db, sql, (int)MC_COUNT(sql));
    s.pause_at = 2;
    mc_db_acquire(db, script_on_conn, &s);
    assert_true(run_until(&fx->loop, &s.paused, 5000));
    assert_int_equal(s.res[1].status, MC_OK);
    assert_int_equal(terminate_pool(fx), 1);
    /* Give the pool time to notice and (wrongly) to reconnect behind the caller. */
    uint64_t deadline = mc_now_ms() + 600;
    while (mc_now_ms() < deadline)
        run_for(&fx->loop, 20);
    script_step(&s);
    assert_true(run_until(&fx->loop, &s.done, 5000));
    long rows = admin_long(fx, "SELECT count(*) FROM %s.t", fx->schema);
    int insert2 = s.res[2].status;

    /* After release the pool comes back by itself. */
    res_t r;
    memset(&r, 0, sizeof r);
    deadline = mc_now_ms() + 5000;
    for (;;) {
        exec_wait(fx, db, "SELECT 1", NULL, 0, &r);
        if (r.status == MC_OK || mc_now_ms() >= deadline)
            break;
        run_for(&fx->loop, 50);
    }
    mc_db_destroy(&db);
    assert_int_equal(close_loop(fx), 0);
    assert_int_equal(r.status, MC_OK);

    if (rows == 1)
        fprintf(stderr,
                "broken_transaction_not_resumed: only the statement after the break "
                "was committed (INSERT 2 returned %d)\n",
                insert2);
    assert_true(rows == 0 || rows == 2); /* all or nothing */
    assert_int_not_equal(insert2, MC_OK);
}

/* ------------------------------------------------------------------ */
/* Shutdown                                                           */

typedef struct {
    int calls;
    int status;
    int conn_null;
    int order;
} closed_t;

static int close_order;

static void on_conn_closed(mc_db_conn_t *conn, int status, void *arg)
{
    closed_t *c = arg;
    c->calls++;
    c->status = status;
    c->conn_null = conn == NULL;
    c->order = ++close_order;
}

static void on_res_closed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)res;
    closed_t *c = arg;
    c->calls++;
    c->status = status;
    c->conn_null = conn == NULL;
    c->order = ++close_order;
}

typedef struct {
    mc_db_conn_t *conn;
    int acquired;
    closed_t query;
} holder_t;

static void holder_on_res(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    holder_t *h = arg;
    on_res_closed(conn, res, status, &h->query);
    mc_db_release(conn); /* during shutdown: must be harmless */
    h->conn = NULL;
}

static void holder_on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    holder_t *h = arg;
    if (status != MC_OK)
        return;
    h->conn = conn;
    h->acquired = 1;
    mc_db_query(conn, "SELECT pg_sleep(30)", NULL, 0, holder_on_res, h);
}

static void destroy_with_waiters_closed(void **state)
{
    NEED_DB(fx);
    mc_db_t *db = mc_db_new(&fx->loop, fx->url, 1);
    holder_t h = {0};
    mc_db_acquire(db, holder_on_conn, &h);
    assert_true(run_until(&fx->loop, &h.acquired, 5000)); /* held, statement sent */
    closed_t b = {0}, e = {0}, c = {0};
    close_order = 0;
    mc_db_acquire(db, on_conn_closed, &b);
    mc_db_exec(db, "SELECT 1", NULL, 0, on_res_closed, &e);
    mc_db_acquire(db, on_conn_closed, &c);
    run_for(&fx->loop, 50);
    assert_int_equal(mc_db_waiting(db), 3);
    assert_int_equal(b.calls + e.calls + c.calls, 0);

    uint64_t t0 = mc_now_ms();
    mc_db_destroy(&db);
    /* Waiters hear at once, in their order; the statement in flight too. */
    assert_int_equal(b.calls, 1);
    assert_int_equal(e.calls, 1);
    assert_int_equal(c.calls, 1);
    assert_int_equal(h.query.calls, 1);
    assert_int_equal(b.status, MC_ECLOSED);
    assert_int_equal(e.status, MC_ECLOSED);
    assert_int_equal(c.status, MC_ECLOSED);
    assert_int_equal(h.query.status, MC_ECLOSED);
    assert_true(b.conn_null && e.conn_null && c.conn_null);
    assert_true(b.order < e.order && e.order < c.order);
    assert_int_equal(close_loop(fx), 0);
    assert_true(mc_now_ms() - t0 < 3000); /* the 30 s statement did not hold it up */
    assert_int_equal(h.query.calls, 1);
}

/* Destroying the pool right after creating it, while connections are still being
 * opened in the thread pool. */
static void destroy_while_connecting(void **state)
{
    NEED_DB(fx);
    mc_db_t *db = mc_db_new(&fx->loop, fx->url, 4);
    listen_t l = {0};
    snprintf(l.channel, sizeof l.channel, "%s_x", fx->schema);
    mc_db_listen(db, l.channel, on_notify, &l);
    closed_t w = {0};
    mc_db_acquire(db, on_conn_closed, &w);
    assert_int_equal(mc_db_connected(db), 0);
    mc_db_destroy(&db);
    assert_int_equal(w.status, MC_ECLOSED);
    assert_int_equal(close_loop(fx), 0);
    assert_int_equal(l.nulls, 0);
}

/* A pool whose database is unreachable keeps waiters waiting (no broken
 * connection is handed out) and still shuts down cleanly. */
static void unreachable_database(void **state)
{
    NEED_DB(fx);
    mc_db_t *db = mc_db_new(&fx->loop, "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", 2);
    closed_t w = {0};
    mc_db_acquire(db, on_conn_closed, &w);
    run_for(&fx->loop, 300);
    assert_int_equal(w.calls, 0);
    assert_int_equal(mc_db_connected(db), 0);
    assert_int_equal(mc_db_waiting(db), 1);
    mc_db_destroy(&db);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, MC_ECLOSED);
    assert_int_equal(close_loop(fx), 0);
}

/* A caller that shuts the pool down from the callback that tells it the connection
 * was lost (a service giving up on its database). Run in a child process: a crash
 * there fails this test instead of ending the whole run. */
typedef struct {
    mc_db_t *db;
    int status;
    int done;
} quitter_t;

static void quit_on_loss(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    (void)res;
    quitter_t *q = arg;
    q->status = status;
    q->done = 1;
    if (status != MC_OK)
        mc_db_destroy(&q->db);
}

static void destroy_from_lost_connection_callback(void **state)
{
    NEED_DB(fx);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The child: no cmocka assertions, only an exit status. */
        uv_loop_t loop;
        uv_loop_init(&loop);
        quitter_t q = {0};
        q.db = mc_db_new(&loop, fx->url, 1);
        uint64_t deadline = mc_now_ms() + 5000;
        while (mc_db_connected(q.db) < 1 && mc_now_ms() < deadline)
            run_for(&loop, 10);
        if (mc_db_connected(q.db) < 1)
            _exit(10);
        mc_db_exec(q.db, "SELECT pg_sleep(30)", NULL, 0, quit_on_loss, &q);
        run_for(&loop, 100);
        PGconn *admin = PQconnectdb(mc_test_db_url());
        char sql[512];
        snprintf(sql, sizeof sql,
                 "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                 "application_name = '%s' AND pid <> pg_backend_pid()",
                 fx->schema);
        PQclear(PQexec(admin, sql));
        PQfinish(admin);
        run_until(&loop, &q.done, 5000);
        if (!q.done)
            _exit(11);
        if (q.db)
            _exit(12); /* the statement ended well?! */
        if (close_loop_(&loop) != 0)
            _exit(13);
        _exit(0);
    }
    int wstatus = 0;
    assert_int_equal(waitpid(pid, &wstatus, 0), pid);
    assert_int_equal(close_loop(fx), 0); /* ours, unused: the child had its own */
    if (WIFSIGNALED(wstatus))
        fprintf(stderr, "child killed by signal %d\n", WTERMSIG(wstatus));
    assert_true(WIFEXITED(wstatus));
    assert_int_equal(WEXITSTATUS(wstatus), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
static const struct CMUnitTest tests[] = {
    T(exec_params_round_trip),
    T(sql_error_has_sqlstate),
    T(held_connection_transaction),
    T(release_mid_transaction_rolls_back),
    T(waiters_served_fifo),
    T(listen_then_notify),
    T(reconnect_after_backends_killed),
    T(broken_transaction_not_resumed),
    T(destroy_with_waiters_closed),
    T(destroy_while_connecting),
    T(unreachable_database),
    T(destroy_from_lost_connection_callback),
};
MC_TEST_GROUP(db, tests, NULL, NULL);
