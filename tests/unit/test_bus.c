/* test_bus.c: the durable bus between two services, in one process on one loop.
 *
 * Setup makes two fresh service schemas (a sender playing intake, a receiver playing
 * routing; names are made unique per process, ut<pid>_intake and ut<pid>_routing, so
 * a shared database is never touched outside them), migrates both with
 * mc_migrate_service (the bus tables of mc_sql_common), adds the receiver's
 * probe_log table with plain SQL, and starts a pool and a bus for each on tcp
 * loopback ports. The receiver's BusProbe handler writes probe_log inside the inbox
 * transaction; its behaviour (commit, rule violation, unavailable once, answer
 * later) is chosen per test. A blocking admin connection checks the tables behind
 * the buses' backs. Every test ends by stopping both buses, destroying everything
 * and requiring uv_loop_close() to succeed. The bus's own log lines are hidden
 * (errors only); set MC_UT_BUS_LOG=1 to see them all when a test fails. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <uv.h>

#include "bus.h"
#include "db.h"
#include "error.h"
#include "log.h"
#include "migrate.h"
#include "unit.h"

#define LEASE_MS 200

typedef enum { H_COMMIT, H_RULE, H_UNAVAIL_ONCE, H_LATER } handler_mode_t;

typedef struct {
    uv_loop_t loop;
    int loop_closed;
    PGconn *admin;
    char a[40], b[40]; /* sender and receiver: service names and schemas */
    char ep_a[64], ep_b[64];
    mc_db_t *db_a, *db_b;
    mc_bus_t *bus_a, *bus_b;
    mc_bus_peer_t peers_a[1], peers_b[1];
    mc_bus_handler_t handlers[1];
    /* the receiver's handler */
    handler_mode_t mode;
    int calls;        /* handler invocations */
    int logged;       /* probe_log inserts that reached mc_bus_done(MC_OK) */
    uv_timer_t later; /* H_LATER: answers after a while */
    mc_bus_msg_t *pending;
    int answered;
    char last_trace[64];
} fx_t;

static fx_t *g_fx; /* for the callbacks that only get a message */

/* ------------------------------------------------------------------ */
/* Loop and SQL helpers                                               */

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

/* sql with @a@ and @b@ replaced by the two schemas. */
static void expand(const fx_t *fx, const char *sql, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = sql; *p && o + 1 < len;) {
        const char *with = strncmp(p, "@a@", 3) == 0   ? fx->a
                           : strncmp(p, "@b@", 3) == 0 ? fx->b
                                                       : NULL;
        if (with) {
            int n = snprintf(out + o, len - o, "%s", with);
            o = o + (size_t)n < len ? o + (size_t)n : len - 1;
            p += 3;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

static void admin_exec(fx_t *fx, const char *sql)
{
    char text[2048];
    expand(fx, sql, text, sizeof text);
    PGresult *r = PQexec(fx->admin, text);
    int st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fprintf(stderr, "admin: %s: %s", text, PQresultErrorMessage(r));
    PQclear(r);
    assert_true(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
}

/* First value of the first row ("" if none), in a static buffer. */
static const char *admin_value(fx_t *fx, const char *sql)
{
    static char value[1024];
    char text[2048];
    expand(fx, sql, text, sizeof text);
    PGresult *r = PQexec(fx->admin, text);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "admin: %s: %s", text, PQresultErrorMessage(r));
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(value, sizeof value, "%s", PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return value;
}

/* Run the loop until the admin query returns want, at most ms. */
static int wait_value(fx_t *fx, const char *sql, const char *want, uint64_t ms)
{
    uint64_t deadline = mc_now_ms() + ms;
    for (;;) {
        if (strcmp(admin_value(fx, sql), want) == 0)
            return 1;
        if (mc_now_ms() >= deadline)
            return 0;
        run_for(&fx->loop, 20);
    }
}

static int unused_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* ------------------------------------------------------------------ */
/* The receiver's handler                                             */

static void on_logged(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_msg_t *msg = arg;
    if (status != MC_OK) {
        mc_bus_done(msg, status, res ? PQresultErrorMessage(res) : "probe_log");
        return;
    }
    const char *stream = mc_bus_msg_envelope(msg)->bus_probe->stream;
    if (g_fx->mode == H_RULE || strncmp(stream, "BAD", 3) == 0) {
        mc_bus_done(msg, MC_ERULE, "procedure closed"); /* the insert is rolled back */
        return;
    }
    g_fx->logged++;
    mc_bus_done(msg, MC_OK, NULL);
}

/* Record the probe in probe_log, in the inbox transaction, with whether it came
 * right after the previous seq of its stream. */
static void log_probe(mc_bus_msg_t *msg)
{
    const mc_envelope_t *env = mc_bus_msg_envelope(msg);
    char *sql = mc_sprintf("INSERT INTO %s.probe_log (stream, seq, message_id, in_order) "
                           "VALUES ($1, $2::bigint, $3::uuid, $2::bigint = coalesce((SELECT "
                           "max(seq) FROM %s.probe_log WHERE stream = $1), 0) + 1)",
                           g_fx->b, g_fx->b);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, env->bus_probe->stream);
    mc_db_param_int(&p, (long long)env->bus_probe->seq);
    mc_db_param_text(&p, env->message_id);
    mc_db_query(mc_bus_msg_conn(msg), sql, &p, 0, on_logged, msg);
    free(sql);
}

static void on_later(uv_timer_t *t)
{
    fx_t *fx = mc_container_of(t, fx_t, later);
    mc_bus_msg_t *msg = fx->pending;
    fx->pending = NULL;
    fx->answered = 1;
    log_probe(msg);
}

static void probe_handler(mc_bus_msg_t *msg, void *arg)
{
    fx_t *fx = arg;
    fx->calls++;
    snprintf(fx->last_trace, sizeof fx->last_trace, "%s", mc_bus_msg_envelope(msg)->trace_id);
    assert_non_null(mc_bus_msg_conn(msg));
    assert_ptr_equal(mc_bus_msg_bus(msg), fx->bus_b);
    if (fx->mode == H_UNAVAIL_ONCE && fx->calls == 1) {
        mc_bus_done(msg, MC_EUNAVAIL, "try later");
        return;
    }
    if (fx->mode == H_LATER) {
        fx->pending = msg;
        uv_timer_start(&fx->later, on_later, 150, 0);
        return;
    }
    log_probe(msg);
}

/* ------------------------------------------------------------------ */
/* Writing the sender's outbox                                        */

typedef struct {
    const char *stream; /* also the dossier code */
    uint64_t seq;
    int no_handler; /* a DossierStatusChanged: the receiver has no handler */
} probe_t;

typedef struct {
    fx_t *fx;
    const probe_t *items;
    int n, next, chunk;
    const char *trace;
    mc_db_conn_t *conn;
    mc_outbox_t *ob;
    int status;
    int done;
} sender_t;

static void sender_end(sender_t *s, int status)
{
    s->status = status;
    if (s->conn)
        mc_db_release(s->conn);
    s->conn = NULL;
    mc_outbox_destroy(&s->ob);
    s->done = 1;
}

static void send_chunk(sender_t *s);

static void on_committed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    (void)res;
    sender_t *s = arg;
    if (status != MC_OK || s->next >= s->n)
        sender_end(s, status);
    else
        send_chunk(s);
}

static void on_written(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    sender_t *s = arg;
    if (status != MC_OK) {
        fprintf(stderr, "outbox write: %s", res ? PQresultErrorMessage(res) : "");
        sender_end(s, status);
        return;
    }
    mc_outbox_destroy(&s->ob);
    mc_db_query(conn, "COMMIT", NULL, 0, on_committed, s);
}

static void on_begun(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)res;
    sender_t *s = arg;
    if (status != MC_OK) {
        sender_end(s, status);
        return;
    }
    s->ob = mc_outbox_new(s->fx->a);
    for (int i = 0; i < s->chunk && s->next < s->n; i++, s->next++) {
        const probe_t *it = &s->items[s->next];
        mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
        Motcua__V1__BusProbe probe = MOTCUA__V1__BUS_PROBE__INIT;
        Motcua__V1__DossierStatusChanged changed = MOTCUA__V1__DOSSIER_STATUS_CHANGED__INIT;
        env.dossier_code = (char *)it->stream;
        if (it->no_handler) {
            changed.code = (char *)it->stream;
            env.body_case = MOTCUA__V1__ENVELOPE__BODY_DOSSIER_STATUS_CHANGED;
            env.dossier_status_changed = &changed;
        } else {
            probe.stream = (char *)it->stream;
            probe.seq = it->seq;
            env.body_case = MOTCUA__V1__ENVELOPE__BODY_BUS_PROBE;
            env.bus_probe = &probe;
        }
        mc_outbox_add_to(s->ob, s->fx->b, &env, s->trace, NULL);
    }
    assert_true(mc_outbox_count(s->ob) > 0);
    mc_outbox_write(s->ob, conn, on_written, s);
}

static void send_chunk(sender_t *s)
{
    mc_db_query(s->conn, "BEGIN", NULL, 0, on_begun, s);
}

static void on_sender_conn(mc_db_conn_t *conn, int status, void *arg)
{
    sender_t *s = arg;
    if (status != MC_OK) {
        sender_end(s, status);
        return;
    }
    s->conn = conn;
    send_chunk(s);
}

/* Write items to the sender's outbox, chunk per transaction, transactions one after
 * the other; waits until all are committed. */
static void write_outbox(fx_t *fx, const probe_t *items, int n, int chunk, const char *trace)
{
    sender_t s = {0};
    s.fx = fx;
    s.items = items;
    s.n = n;
    s.chunk = chunk;
    s.trace = trace;
    mc_db_acquire(fx->db_a, on_sender_conn, &s);
    assert_true(run_until(&fx->loop, &s.done, 5000));
    assert_int_equal(s.status, MC_OK);
}

/* ------------------------------------------------------------------ */
/* Fixture                                                            */

static void on_stopped(void *arg)
{
    ++*(int *)arg;
}

static int close_loop(fx_t *fx)
{
    uint64_t deadline = mc_now_ms() + 5000;
    while (uv_run(&fx->loop, UV_RUN_NOWAIT) && mc_now_ms() < deadline)
        usleep(1000);
    fx->loop_closed = 1;
    return uv_loop_close(&fx->loop);
}

/* Stop both buses gracefully, destroy everything, close the loop. Returns the
 * number of stop callbacks seen (2 when all went well) or -1 if the loop would not
 * close. */
static int shut_down(fx_t *fx)
{
    int stopped_a = 0, stopped_b = 0, both = 0;
    if (fx->bus_a)
        mc_bus_stop(fx->bus_a, on_stopped, &stopped_a);
    if (fx->bus_b)
        mc_bus_stop(fx->bus_b, on_stopped, &stopped_b);
    uint64_t deadline = mc_now_ms() + 5000;
    while (!(both = stopped_a && stopped_b) && mc_now_ms() < deadline)
        run_for(&fx->loop, 5);
    mc_bus_destroy(&fx->bus_a);
    mc_bus_destroy(&fx->bus_b);
    mc_db_destroy(&fx->db_a);
    mc_db_destroy(&fx->db_b);
    if (!uv_is_closing((uv_handle_t *)&fx->later))
        uv_close((uv_handle_t *)&fx->later, NULL);
    if (close_loop(fx) != 0)
        return -1;
    return stopped_a + stopped_b;
}

static mc_bus_t *start_bus(fx_t *fx, mc_db_t *db, const char *service, const char *bind,
                           const mc_bus_peer_t *peer)
{
    mc_bus_config_t cfg = {0};
    cfg.service = service;
    cfg.bind = bind;
    cfg.peers = peer;
    cfg.npeers = 1;
    cfg.batch = 16;
    cfg.lease_ms = LEASE_MS;
    return mc_bus_new(&fx->loop, db, &cfg);
}

static int fx_setup(void **state)
{
    *state = NULL;
    const char *url = mc_test_db_url();
    if (!url)
        return 0;
    fx_t *fx = mc_new(fx_t);
    g_fx = fx;
    snprintf(fx->a, sizeof fx->a, "ut%d_intake", (int)getpid());
    snprintf(fx->b, sizeof fx->b, "ut%d_routing", (int)getpid());
    fx->admin = PQconnectdb(url);
    if (PQstatus(fx->admin) != CONNECTION_OK) {
        fprintf(stderr, "test_bus: %s", PQerrorMessage(fx->admin));
        PQfinish(fx->admin);
        free(fx);
        return -1;
    }
    PQclear(PQexec(fx->admin, "SET client_min_messages = warning"));
    mc_log_init(NULL, getenv("MC_UT_BUS_LOG") ? MC_LOG_DEBUG : MC_LOG_ERROR,
                0); /* dead letters and retries are expected here */
    admin_exec(fx, "DROP SCHEMA IF EXISTS @a@ CASCADE; DROP SCHEMA IF EXISTS @b@ CASCADE");
    char err[512];
    if (mc_migrate_service(url, fx->a, NULL, 0, err, sizeof err) != mc_sql_common_count ||
        mc_migrate_service(url, fx->b, NULL, 0, err, sizeof err) != mc_sql_common_count) {
        fprintf(stderr, "test_bus: migrate: %s\n", err);
        PQfinish(fx->admin);
        free(fx);
        return -1;
    }
    admin_exec(fx, "CREATE TABLE @b@.probe_log (pos bigserial PRIMARY KEY, stream text NOT NULL, "
                   "seq bigint NOT NULL, message_id uuid NOT NULL, in_order boolean NOT NULL)");

    uv_loop_init(&fx->loop);
    uv_timer_init(&fx->loop, &fx->later);
    snprintf(fx->ep_a, sizeof fx->ep_a, "tcp://127.0.0.1:%d", unused_port());
    snprintf(fx->ep_b, sizeof fx->ep_b, "tcp://127.0.0.1:%d", unused_port());
    fx->peers_a[0] = (mc_bus_peer_t){fx->b, fx->ep_b};
    fx->peers_b[0] = (mc_bus_peer_t){fx->a, fx->ep_a};
    fx->handlers[0] = (mc_bus_handler_t){MOTCUA__V1__ENVELOPE__BODY_BUS_PROBE, probe_handler};
    fx->db_a = mc_db_new(&fx->loop, url, 4);
    fx->db_b = mc_db_new(&fx->loop, url, 4);
    fx->bus_a = start_bus(fx, fx->db_a, fx->a, fx->ep_a, fx->peers_a);
    fx->bus_b = start_bus(fx, fx->db_b, fx->b, fx->ep_b, fx->peers_b);
    if (!fx->bus_a || !fx->bus_b) {
        fprintf(stderr, "test_bus: a bus did not start\n");
        *state = fx;
        return -1;
    }
    mc_bus_handlers(fx->bus_b, fx->handlers, MC_COUNT(fx->handlers), fx);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return 0;
    if (!fx->loop_closed)
        shut_down(fx); /* a test that failed half-way */
    admin_exec(fx, "DROP SCHEMA IF EXISTS @a@ CASCADE; DROP SCHEMA IF EXISTS @b@ CASCADE");
    PQfinish(fx->admin);
    free(fx);
    g_fx = NULL;
    mc_log_init(NULL, MC_LOG_INFO, 0);
    return 0;
}

#define NEED_DB(fx) MC_NEED_DB(fx_t, fx)

static const char *const all_delivered =
    "SELECT count(*) FILTER (WHERE delivered_at IS NULL OR lease_until IS NOT NULL) "
    "FROM @a@.outbox";

/* ------------------------------------------------------------------ */
/* Tests                                                              */

static void delivered_exactly_once(void **state)
{
    NEED_DB(fx);
    static const probe_t one[] = {{"G09.12-0001", 1, 0}};
    write_outbox(fx, one, 1, 1, "trace-abc");
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @a@.outbox"), "1");
    assert_true(wait_value(fx, all_delivered, "0", 5000));
    /* Leases would have run out several times over by now: still once. */
    run_for(&fx->loop, 3 * LEASE_MS);
    assert_int_equal(fx->calls, 1);
    assert_int_equal(fx->logged, 1);
    assert_string_equal(fx->last_trace, "trace-abc");
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.probe_log"), "1");
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.probe_log p JOIN @a@.outbox o "
                                        "ON o.id = p.message_id WHERE p.stream = 'G09.12-0001' "
                                        "AND p.seq = 1 AND o.dossier_code = 'G09.12-0001' "
                                        "AND o.type = 'BusProbe'"),
                        "1");
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.inbox i JOIN @a@.outbox o ON "
                                        "o.id = i.message_id WHERE i.type = 'BusProbe' AND "
                                        "i.dossier_code = 'G09.12-0001'"),
                        "1");
    assert_string_equal(admin_value(fx, "SELECT source FROM @b@.inbox"), fx->a);
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.dead_letters"), "0");
    mc_bus_stats_t sa, sb;
    mc_bus_stats(fx->bus_a, &sa);
    mc_bus_stats(fx->bus_b, &sb);
    assert_int_equal(sa.bound, 1);
    assert_true(sa.sent >= 1);
    assert_int_equal(sb.handled, 1);
    assert_int_equal(sb.acked, sa.sent); /* every copy sent was answered */
    assert_int_equal(sb.dead_letters, 0);
    mc_bus_peer_stats_t peers[4];
    assert_int_equal(mc_bus_peers(fx->bus_a, peers, 4), 1);
    assert_string_equal(peers[0].name, fx->b);
    assert_string_equal(peers[0].endpoint, fx->ep_b);
    assert_int_equal(peers[0].sent, sa.sent);
    assert_int_equal(peers[0].acked, sa.sent);
    assert_int_equal(peers[0].nacked, 0);
    assert_true(peers[0].last_ack_ms >= mc_wall_ms() - 10000 &&
                peers[0].last_ack_ms <= mc_wall_ms());
    assert_int_equal(mc_bus_peers(fx->bus_a, peers, 0), 1); /* a count without room */
    assert_int_equal(shut_down(fx), 2);
}

static void repeat_is_skipped(void **state)
{
    NEED_DB(fx);
    static const probe_t one[] = {{"G09.12-0002", 1, 0}};
    write_outbox(fx, one, 1, 1, NULL);
    assert_true(wait_value(fx, all_delivered, "0", 5000));
    /* As if the Ack had been lost: the relay sends the same envelope again. */
    admin_exec(fx, "UPDATE @a@.outbox SET delivered_at = NULL, lease_until = NULL");
    mc_bus_kick(fx->bus_a);
    assert_true(wait_value(fx, all_delivered, "0", 5000));
    mc_bus_stats_t sb;
    mc_bus_stats(fx->bus_b, &sb);
    assert_int_equal(fx->calls, 1);
    assert_int_equal(sb.duplicates, 1);
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.probe_log"), "1");
    assert_int_equal(shut_down(fx), 2);
}

static void rule_violation_dead_letter(void **state)
{
    NEED_DB(fx);
    fx->mode = H_RULE;
    static const probe_t one[] = {{"G09.12-0003", 1, 0}};
    write_outbox(fx, one, 1, 1, NULL);
    assert_true(wait_value(fx, all_delivered, "0", 5000));
    run_for(&fx->loop, 2 * LEASE_MS);
    assert_int_equal(fx->calls, 1); /* permanent: not tried again */
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.dead_letters"), "1");
    assert_string_equal(admin_value(fx, "SELECT reason FROM @b@.dead_letters"),
                        "rule violated: procedure closed");
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.dead_letters d JOIN @a@.outbox "
                                        "o ON o.id::text = d.message_id WHERE d.payload = "
                                        "o.payload AND d.type = 'BusProbe' AND d.dossier_code = "
                                        "'G09.12-0003' AND d.replayed_at IS NULL"),
                        "1");
    assert_string_equal(admin_value(fx, "SELECT source FROM @b@.dead_letters"), fx->a);
    /* The handler's own write was rolled back with it; the id is remembered. */
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.probe_log"), "0");
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.inbox"), "1");
    mc_bus_stats_t sb;
    mc_bus_stats(fx->bus_b, &sb);
    assert_int_equal(sb.dead_letters, 1);
    assert_int_equal(sb.handled, 0);
    assert_int_equal(shut_down(fx), 2);
}

static void undecodable_and_unhandled_dead_letters(void **state)
{
    NEED_DB(fx);
    /* A row no encoder wrote, and a body type the receiver has no handler for. */
    admin_exec(fx, "INSERT INTO @a@.outbox (id, destination, dossier_code, type, payload) "
                   "VALUES (gen_random_uuid(), '@b@', 'G09-JUNK', 'Junk', '\\xffffffff0102')");
    static const probe_t other[] = {{"G09.12-0004", 0, 1}};
    write_outbox(fx, other, 1, 1, NULL);
    assert_true(wait_value(fx, all_delivered, "0", 5000));
    assert_int_equal(fx->calls, 0);
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.dead_letters"), "2");
    assert_string_equal(admin_value(fx, "SELECT reason FROM @b@.dead_letters WHERE type IS NULL"),
                        "undecodable envelope (not a motcua.v1.Envelope)");
    char want[160];
    snprintf(want, sizeof want, "no handler for type DossierStatusChanged in %s", fx->b);
    assert_string_equal(admin_value(fx, "SELECT reason FROM @b@.dead_letters WHERE type = "
                                        "'DossierStatusChanged'"),
                        want);
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.dead_letters d JOIN @a@.outbox "
                                        "o ON o.id::text = d.message_id AND o.payload = "
                                        "d.payload"),
                        "2");
    assert_int_equal(shut_down(fx), 2);
}

static void unavailable_then_redelivered_once(void **state)
{
    NEED_DB(fx);
    fx->mode = H_UNAVAIL_ONCE;
    static const probe_t one[] = {{"G09.12-0005", 1, 0}};
    write_outbox(fx, one, 1, 1, NULL);
    assert_true(wait_value(fx, all_delivered, "0", 5000));
    run_for(&fx->loop, 2 * LEASE_MS);
    assert_int_equal(fx->calls, 2);
    assert_int_equal(fx->logged, 1);
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.probe_log"), "1");
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.dead_letters"), "0");
    assert_string_equal(admin_value(fx, "SELECT attempts >= 2 AND last_error LIKE '%try later%' "
                                        "FROM @a@.outbox"),
                        "t");
    mc_bus_stats_t sb;
    mc_bus_stats(fx->bus_b, &sb);
    assert_int_equal(sb.nacked, 1);
    assert_int_equal(sb.handled, 1);
    assert_int_equal(shut_down(fx), 2);
}

static void order_per_dossier(void **state)
{
    NEED_DB(fx);
    enum { N = 200, STREAMS = 3 };
    static probe_t items[N];
    static const char *const streams[STREAMS] = {"G09.12-0101", "G09.12-0102", "G09.12-0103"};
    for (int i = 0; i < N; i++) {
        /* Interleaved: consecutive envelopes belong to different dossiers. */
        items[i].stream = streams[i % STREAMS];
        items[i].seq = (uint64_t)(i / STREAMS + 1);
        items[i].no_handler = 0;
    }
    uint64_t t0 = mc_now_ms();
    write_outbox(fx, items, N, 40, NULL); /* five transactions, one after the other */
    assert_true(wait_value(fx, "SELECT count(*) FROM @b@.probe_log", "200", 20000));
    assert_true(wait_value(fx, all_delivered, "0", 5000));
    uint64_t took = mc_now_ms() - t0;
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.probe_log WHERE NOT in_order"),
                        "0");
    assert_string_equal(admin_value(fx, "SELECT count(DISTINCT message_id) FROM @b@.probe_log"),
                        "200");
    assert_string_equal(admin_value(fx,
                                    "SELECT string_agg(stream || ':' || n || ':' || mx, ',' "
                                    "ORDER BY stream) FROM (SELECT stream, count(*) n, max(seq) "
                                    "mx FROM @b@.probe_log GROUP BY stream) s"),
                        "G09.12-0101:67:67,G09.12-0102:67:67,G09.12-0103:66:66");
    /* Each dossier's envelopes were handled in the order they were written. */
    assert_string_equal(admin_value(fx,
                                    "SELECT count(*) FROM (SELECT seq, lag(seq) OVER (PARTITION "
                                    "BY stream ORDER BY pos) prev FROM @b@.probe_log) x "
                                    "WHERE prev IS NOT NULL AND seq <> prev + 1"),
                        "0");
    assert_int_equal(fx->logged, N);
    if (took > 10000)
        fprintf(stderr, "order_per_dossier: 200 envelopes took %llu ms\n",
                (unsigned long long)took);
    assert_int_equal(shut_down(fx), 2);
}

static void stop_waits_for_handler_in_flight(void **state)
{
    NEED_DB(fx);
    fx->mode = H_LATER;
    static const probe_t one[] = {{"G09.12-0006", 1, 0}};
    write_outbox(fx, one, 1, 1, NULL);
    assert_true(run_until(&fx->loop, &fx->calls, 5000));
    assert_int_equal(fx->answered, 0);

    int stopped_b = 0;
    mc_bus_stop(fx->bus_b, on_stopped, &stopped_b);
    run_for(&fx->loop, 20);
    assert_int_equal(stopped_b, 0); /* the handler has not answered yet */
    assert_true(run_until(&fx->loop, &stopped_b, 5000));
    assert_int_equal(stopped_b, 1);
    assert_int_equal(fx->answered, 1);
    assert_int_equal(fx->logged, 1);
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.probe_log"), "1");
    /* The Ack went out after the commit, so the sender marks it delivered. */
    assert_true(wait_value(fx, all_delivered, "0", 5000));
    run_for(&fx->loop, 50);
    assert_int_equal(stopped_b, 1); /* called once */

    int stopped_a = 0;
    mc_bus_stop(fx->bus_a, on_stopped, &stopped_a);
    assert_true(run_until(&fx->loop, &stopped_a, 5000));
    mc_bus_destroy(&fx->bus_a);
    mc_bus_destroy(&fx->bus_b);
    assert_null(fx->bus_a);
    mc_db_destroy(&fx->db_a);
    mc_db_destroy(&fx->db_b);
    uv_close((uv_handle_t *)&fx->later, NULL);
    assert_int_equal(close_loop(fx), 0);
}

static void stop_under_traffic(void **state)
{
    NEED_DB(fx);
    enum { N = 60 };
    static probe_t items[N];
    for (int i = 0; i < N; i++) {
        static char names[N][24];
        snprintf(names[i], sizeof names[i], "G09-S%02d", i % 20);
        items[i].stream = names[i];
        items[i].seq = (uint64_t)(i / 20 + 1);
    }
    write_outbox(fx, items, N, N, NULL);
    run_for(&fx->loop, 30); /* some in flight, some handled */
    assert_int_equal(shut_down(fx), 2);
    /* Whatever was handled was handled once and in order. */
    assert_string_equal(admin_value(fx, "SELECT count(*) - count(DISTINCT message_id) FROM "
                                        "@b@.probe_log"),
                        "0");
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.probe_log WHERE NOT in_order"),
                        "0");
}

/* One envelope that breaks a rule, among good ones handled in the same batch, costs
 * only itself: the others commit, it becomes a dead letter, all are acknowledged. */
static void bad_envelope_costs_only_itself(void **state)
{
    NEED_DB(fx);
    enum { N = 12 };
    static probe_t items[N];
    static char names[N][24];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], i == 5 ? "BAD-%02d" : "G09-B%02d", i);
        items[i].stream = names[i];
        items[i].seq = 1;
    }
    write_outbox(fx, items, N, N, NULL); /* one transaction: claimed and sent together */
    assert_true(wait_value(fx, all_delivered, "0", 5000));
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.probe_log"), "11");
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.probe_log WHERE stream LIKE "
                                        "'BAD%'"),
                        "0");
    assert_string_equal(admin_value(fx, "SELECT dossier_code FROM @b@.dead_letters"), "BAD-05");
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.inbox"), "12");
    assert_int_equal(fx->logged >= 11, 1);
    assert_int_equal(shut_down(fx), 2);
}

/* The same envelope added twice (say for two named destinations) keeps its
 * dossier code both times: order is per dossier, and an empty code would put the
 * second copy in another queue. */
static void same_envelope_added_twice(void **state)
{
    NEED_DB(fx);
    mc_outbox_t *ob = mc_outbox_new(fx->a);
    Motcua__V1__BusProbe probe = MOTCUA__V1__BUS_PROBE__INIT;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    probe.stream = "G09.12-0009";
    probe.seq = 1;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_BUS_PROBE;
    env.bus_probe = &probe;
    env.dossier_code = "G09.12-0009";
    mc_outbox_add_to(ob, fx->b, &env, NULL, NULL);
    mc_outbox_add_to(ob, fx->b, &env, NULL, NULL);
    assert_int_equal(mc_outbox_count(ob), 2);
    mc_outbox_destroy(&ob);
    assert_null(ob);
    int kept = env.dossier_code && strcmp(env.dossier_code, "G09.12-0009") == 0;
    assert_int_equal(shut_down(fx), 2);
    assert_true(kept); /* the caller's field is the caller's */
}

/* Binding a second bus on an endpoint already in use fails cleanly. */
static void bind_conflict_gives_null(void **state)
{
    NEED_DB(fx);
    mc_bus_peer_t none[1] = {{fx->a, fx->ep_a}};
    mc_bus_t *again = start_bus(fx, fx->db_b, fx->b, fx->ep_b, none);
    assert_null(again);
    assert_int_equal(shut_down(fx), 2);
}

/* When the dead letter itself cannot be written, the envelope is refused (Nack) and
 * comes again; once the table takes it, it is recorded and acknowledged. Runs in a
 * child process (this binary, this test only) so that a crash fails the test
 * instead of ending the run. */
static void dead_letter_not_recorded_retried(void **state)
{
    NEED_DB(fx);
    if (!getenv("MC_UT_BUS_CHILD")) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            char *argv[] = {"unit-tests", "bus/dead_letter_not_recorded_retried", NULL};
            setenv("MC_UT_BUS_CHILD", "1", 1);
            execv("/proc/self/exe", argv);
            _exit(127);
        }
        int ws = 0;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        if (WIFSIGNALED(ws))
            fprintf(stderr, "child killed by signal %d\n", WTERMSIG(ws));
        assert_true(WIFEXITED(ws));
        assert_int_equal(WEXITSTATUS(ws), 0);
        assert_int_equal(shut_down(fx), 2);
        return;
    }
    fx->mode = H_RULE;
    admin_exec(fx, "ALTER TABLE @b@.dead_letters ADD CONSTRAINT ut_refuse CHECK (reason = 'x')");
    static const probe_t one[] = {{"G09.12-0010", 1, 0}};
    write_outbox(fx, one, 1, 1, NULL);
    assert_true(wait_value(fx,
                           "SELECT count(*) FROM @a@.outbox WHERE last_error = 'dead letter "
                           "not recorded'",
                           "1", 5000));
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.inbox"), "0");
    admin_exec(fx, "ALTER TABLE @b@.dead_letters DROP CONSTRAINT ut_refuse");
    assert_true(wait_value(fx, all_delivered, "0", 5000));
    assert_string_equal(admin_value(fx, "SELECT count(*) FROM @b@.dead_letters"), "1");
    assert_int_equal(shut_down(fx), 2);
}

/* A receiver that does not answer is parked after PARK_MS (5 s): its backlog waits and
 * only one envelope goes at a time, instead of every head at each lease's end; when it
 * is back, its first Ack unparks it and everything flows, in order, once. */
static void silent_destination_parked_then_resumed(void **state)
{
    NEED_DB(fx);
    enum { N = 60 };
    static probe_t items[N];
    static char names[N][24];
    for (int i = 0; i < N; i++) { /* one dossier each: 60 heads */
        snprintf(names[i], sizeof names[i], "G09.12-%04d", 300 + i);
        items[i] = (probe_t){names[i], 1, 0};
    }
    int stopped = 0;
    mc_bus_stop(fx->bus_b, on_stopped, &stopped);
    assert_true(run_until(&fx->loop, &stopped, 5000));
    mc_bus_destroy(&fx->bus_b); /* the receiver is gone */
    write_outbox(fx, items, N, N, NULL);
    run_for(&fx->loop, 6000); /* unanswered past the parking time */
    /* Every head was claimed (and leased) at least once before parking; since then the
     * claims take one envelope at a time: unparked, 60 heads with 200 ms leases
     * doubling to 6.4 s (taken at 0.2, 0.6, 1.4, 3, 6.2, 12.6 s) would be claimed
     * again at least 60 times in the next 8 s. */
    const char *claims = "SELECT sum(attempts) FROM @a@.outbox";
    long before = atol(admin_value(fx, claims));
    assert_true(before >= N);
    run_for(&fx->loop, 8000);
    long after = atol(admin_value(fx, claims));
    assert_true(after - before <= 3);
    fx->bus_b = start_bus(fx, fx->db_b, fx->b, fx->ep_b, fx->peers_b);
    assert_non_null(fx->bus_b);
    mc_bus_handlers(fx->bus_b, fx->handlers, MC_COUNT(fx->handlers), fx);
    assert_true(wait_value(fx, "SELECT count(*) FROM @b@.probe_log", "60", 40000));
    assert_true(wait_value(fx, all_delivered, "0", 5000));
    assert_string_equal(admin_value(fx, "SELECT count(DISTINCT message_id) FROM @b@.probe_log"),
                        "60");
    assert_int_equal(shut_down(fx), 2);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
static const struct CMUnitTest tests[] = {
    T(delivered_exactly_once),
    T(repeat_is_skipped),
    T(rule_violation_dead_letter),
    T(undecodable_and_unhandled_dead_letters),
    T(unavailable_then_redelivered_once),
    T(order_per_dossier),
    T(stop_waits_for_handler_in_flight),
    T(stop_under_traffic),
    T(bad_envelope_costs_only_itself),
    T(same_envelope_added_twice),
    T(bind_conflict_gives_null),
    T(dead_letter_not_recorded_retried),
    T(silent_destination_parked_then_resumed),
};
MC_TEST_GROUP(bus, tests, NULL, NULL);
