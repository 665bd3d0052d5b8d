/* service.c: configuration, start-up, health endpoints and orderly shutdown shared by
 * the six services. */
#include "service.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "catalog.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "metrics.h"

const char *const mc_service_names[6] = {"intake",  "routing", "interconnect",
                                         "payment", "postal",  "notify"};

#define OFF(f) offsetof(mc_service_config_t, f)

/* Every variable a service reads; {SVC} is the service's own name. */
static const mc_conf_item_t config_table[] = {
    {"MOTCUA_DATABASE_URL", MC_CONF_STRING, OFF(database_url),
     "postgresql://motcua@127.0.0.1:5433/motcua", 0, 0, NULL, "PostgreSQL connection URL"},
    {"MOTCUA_HTTP_HOST", MC_CONF_STRING, OFF(http_host), "127.0.0.1", 0, 0, NULL,
     "address the HTTP listener binds"},
    {"MOTCUA_{SVC}_HTTP_PORT", MC_CONF_PORT, OFF(http_port), NULL, 0, 0, NULL, "HTTP port"},
    {"MOTCUA_{SVC}_BUS_BIND", MC_CONF_STRING, OFF(bus_bind), NULL, 0, 0, NULL,
     "ZeroMQ endpoint this service's ROUTER binds"},
    {"MOTCUA_INTAKE_BUS", MC_CONF_STRING, OFF(peer_endpoints[0]), "tcp://127.0.0.1:7180", 0, 0,
     NULL, "where intake's bus listens"},
    {"MOTCUA_ROUTING_BUS", MC_CONF_STRING, OFF(peer_endpoints[1]), "tcp://127.0.0.1:7181", 0, 0,
     NULL, "where routing's bus listens"},
    {"MOTCUA_INTERCONNECT_BUS", MC_CONF_STRING, OFF(peer_endpoints[2]), "tcp://127.0.0.1:7182", 0,
     0, NULL, "where interconnect's bus listens"},
    {"MOTCUA_PAYMENT_BUS", MC_CONF_STRING, OFF(peer_endpoints[3]), "tcp://127.0.0.1:7183", 0, 0,
     NULL, "where payment's bus listens"},
    {"MOTCUA_POSTAL_BUS", MC_CONF_STRING, OFF(peer_endpoints[4]), "tcp://127.0.0.1:7184", 0, 0,
     NULL, "where postal's bus listens"},
    {"MOTCUA_NOTIFY_BUS", MC_CONF_STRING, OFF(peer_endpoints[5]), "tcp://127.0.0.1:7185", 0, 0,
     NULL, "where notify's bus listens"},
    {"MOTCUA_DB_POOL", MC_CONF_INT, OFF(db_pool), "4", 1, 64, NULL, "database connections"},
    {"MOTCUA_BUS_BATCH", MC_CONF_INT, OFF(bus_batch), "256", 1, 10000, NULL,
     "envelopes per transaction and per relay round"},
    {"MOTCUA_BUS_LEASE_MS", MC_CONF_INT, OFF(bus_lease_ms), "2000", 50, 600000, NULL,
     "first wait for an Ack before sending again (doubles per attempt, max 30 s)"},
    {"MOTCUA_BUS_RETENTION_HOURS", MC_CONF_INT, OFF(bus_retention_hours), "168", 1, 87600, NULL,
     "hours delivered outbox rows and handled inbox ids are kept"},
    {"MOTCUA_BUS_CURVE_DIR", MC_CONF_STRING, OFF(bus_curve_dir), "", 0, 0, NULL,
     "folder of the services' key pairs (<service> and <service>_secret, made by motcuactl "
     "curve keygen): the bus between services runs over CURVE (\"\": plain TCP)"},
    {"MOTCUA_HTTP_MAX_BODY", MC_CONF_INT, OFF(max_body), "1048576", 1024, 104857600, NULL,
     "largest accepted request body in bytes"},
    {"MOTCUA_LOG_LEVEL", MC_CONF_ENUM, OFF(log_level), "info", 0, 0, "debug|info|warn|error",
     "lowest level logged"},
    {"MOTCUA_LOG_FORMAT", MC_CONF_ENUM, OFF(log_format), "kv", 0, 0, "kv|json", "log line format"},
    {"MOTCUA_DATA_DIR", MC_CONF_STRING, OFF(data_dir), "deploy/data", 0, 0, NULL,
     "folder of calendar.csv and catalog/ (reloaded on SIGHUP)"},
    {"MOTCUA_WORK_HOURS", MC_CONF_STRING, OFF(work_hours), "07:30-11:30,13:00-17:00", 0, 0, NULL,
     "working hours of the one-stop offices (local time)"},
};

typedef struct worker {
    void (*stop)(void *);
    void (*close)(void *);
    void *arg;
    struct worker *next;
} worker_t;

typedef struct every {
    uv_timer_t timer;
    mc_service_t *svc;
    void (*fn)(mc_service_t *);
    struct every *next;
} every_t;

struct mc_service {
    char name[32];
    mc_service_config_t cfg;
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sighup;
    mc_calendar_t *calendar;
    int catalog_wanted; /* 0 none, 1 agencies, 2 agencies and procedures */
    int reloading;
    int reload_again; /* a SIGHUP came during a reload: the files may have changed since */
    uv_work_t reload_work;
    char reload_err[512];
    int reload_rc;
    mc_db_t *db;
    mc_bus_t *bus;
    mc_http_t *http;
    mc_bus_peer_t peers[6];
    every_t *timers;
    worker_t *workers;
    int workers_busy; /* workers that have not called mc_service_stopped yet */
    int bus_stopped;
    int torn_down; /* teardown ran: once only */
    uv_timer_t grace;
    void *data;
    int stopping;
    int exit_status;
};

/* ---------------------------------------------------------------- health */

static void healthz(mc_http_req_t *req, void *arg)
{
    mc_service_t *svc = arg;
    mc_http_reply_json(req, 200, json_pack("{s:s, s:s}", "status", "alive", "service", svc->name));
}

static void readyz(mc_http_req_t *req, void *arg)
{
    mc_service_t *svc = arg;
    mc_bus_stats_t bs;
    mc_bus_stats(svc->bus, &bs);
    int connected = mc_db_connected(svc->db);
    int ready = connected > 0 && bs.bound && !svc->stopping;
    json_t *peers = json_array();
    /* The services, and the peer provinces of interconnect's link. */
    mc_bus_peer_stats_t ps[64];
    size_t np = mc_bus_peers(svc->bus, ps, MC_COUNT(ps));
    int64_t now = mc_wall_ms();
    for (size_t i = 0; i < np && i < MC_COUNT(ps); i++) {
        json_t *age = ps[i].last_ack_ms ? json_integer(now - ps[i].last_ack_ms) : json_null();
        json_array_append_new(peers,
                              json_pack("{s:s, s:s, s:I, s:I, s:I, s:o}", "name", ps[i].name,
                                        "endpoint", ps[i].endpoint, "sent", (json_int_t)ps[i].sent,
                                        "acked", (json_int_t)ps[i].acked, "nacked",
                                        (json_int_t)ps[i].nacked, "last_ack_ms_ago", age));
    }
    json_t *body =
        json_pack("{s:s, s:s, s:{s:b, s:i, s:i, s:i}, s:{s:b, s:s, s:I, s:o}}", "status",
                  ready ? "ready" : "unready", "service", svc->name, "database", "ok",
                  connected > 0, "connected", connected, "pool", mc_db_size(svc->db), "waiting",
                  mc_db_waiting(svc->db), "bus", "bound", bs.bound, "bind", svc->cfg.bus_bind,
                  "outbox_pending", (json_int_t)bs.outbox_pending, "peers", peers);
    mc_http_reply_json(req, ready ? 200 : 503, body);
}

static void metrics(mc_http_req_t *req, void *arg)
{
    (void)arg;
    char *text = mc_metrics_render();
    mc_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
}

static const mc_route_t health_routes[] = {
    {"GET", "/healthz", healthz},
    {"GET", "/readyz", readyz},
    {"GET", "/metrics", metrics},
};

/* Gauges read from the bus and pool when /metrics is scraped. */
#define BUS_GAUGE(field)                                                                           \
    static double gauge_##field(void *arg)                                                         \
    {                                                                                              \
        mc_bus_stats_t s;                                                                          \
        mc_bus_stats(((mc_service_t *)arg)->bus, &s);                                              \
        return (double)s.field;                                                                    \
    }
BUS_GAUGE(outbox_pending)
BUS_GAUGE(handled)
BUS_GAUGE(duplicates)
BUS_GAUGE(dead_letters)
BUS_GAUGE(sent)
BUS_GAUGE(acked)
BUS_GAUGE(nacked)

static double gauge_db_connected(void *arg)
{
    return mc_db_connected(((mc_service_t *)arg)->db);
}

static void register_metrics(mc_service_t *svc)
{
    static const struct {
        const char *name, *help;
        double (*fn)(void *);
    } gauges[] = {
        {"motcua_bus_outbox_pending", "Envelopes in the outbox not yet acknowledged",
         gauge_outbox_pending},
        {"motcua_bus_handled", "Envelopes handled and committed since start", gauge_handled},
        {"motcua_bus_duplicates", "Repeated envelopes skipped by the inbox", gauge_duplicates},
        {"motcua_bus_dead_letters", "Envelopes sent to the dead-letter table", gauge_dead_letters},
        {"motcua_bus_sent", "Envelopes sent by the relay (including repeats)", gauge_sent},
        {"motcua_bus_acks_sent", "Acks sent by the receiver", gauge_acked},
        {"motcua_bus_nacks_sent", "Nacks sent by the receiver", gauge_nacked},
        {"motcua_db_connections", "Open database connections", gauge_db_connected},
    };
    char labels[64];
    snprintf(labels, sizeof labels, "service=\"%s\"", svc->name);
    for (size_t i = 0; i < MC_COUNT(gauges); i++)
        mc_gauge_fn(gauges[i].name, gauges[i].help, labels, gauges[i].fn, svc);
}

/* ---------------------------------------------------------------- start-up */

static void usage(const char *name)
{
    printf("motcua-%s: one service of motcua (see README.md)\n\nEnvironment:\n", name);
    mc_config_usage(config_table, MC_COUNT(config_table), name);
}

/* Apply migrations, waiting for the database to come up (compose starts us early). */
static void migrate_or_exit(mc_service_t *svc, const mc_migration_t *m, int n)
{
    char err[512];
    for (int attempt = 0;; attempt++) {
        int rc = mc_migrate_service(svc->cfg.database_url, svc->name, m, n, err, sizeof err);
        /* Every service reads API keys: the keys schema (written by motcuactl). */
        if (rc >= 0)
            rc = mc_auth_migrate_url(svc->cfg.database_url, err, sizeof err);
        if (rc >= 0)
            return;
        if (rc != MC_EUNAVAIL) {
            mc_error("migrations failed: %s", err);
            exit(1);
        }
        if (attempt % 10 == 0)
            mc_warn("waiting for the database: %s", err);
        usleep(500 * 1000);
    }
}

/* Read MOTCUA_DATA_DIR/calendar.csv into a new calendar; NULL with the reason. */
static mc_calendar_t *calendar_read(const mc_service_config_t *cfg, char *err, size_t errlen)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/calendar.csv", cfg->data_dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen,
                 "cannot read %.300s (set MOTCUA_DATA_DIR to the folder of "
                 "calendar.csv and catalog/): %s",
                 path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t len = 0, cap = 0, n;
    char buf[8192];
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (len + n > cap) {
            cap = (len + n) * 2;
            text = mc_realloc(text, cap);
        }
        memcpy(text + len, buf, n);
        len += n;
    }
    fclose(f);
    mc_calendar_t *cal = mc_calendar_new();
    char why[400];
    if (mc_calendar_set_hours(cal, cfg->work_hours, why, sizeof why) != MC_OK) {
        snprintf(err, errlen, "MOTCUA_WORK_HOURS=%s: %s", cfg->work_hours, why);
        mc_calendar_destroy(&cal);
    } else if (mc_calendar_load(cal, text ? text : "", len, why, sizeof why) != MC_OK) {
        snprintf(err, errlen, "%.100s: %s", path, why);
        mc_calendar_destroy(&cal);
    }
    free(text);
    return cal;
}

/* Read the catalog files and store them (blocking: start-up, or the reload thread). */
static int catalog_store(const mc_service_t *svc, char *err, size_t errlen)
{
    mc_catalog_t *cat = mc_catalog_read(svc->cfg.data_dir, err, errlen);
    if (!cat)
        return MC_EINVAL;
    PGconn *conn = PQconnectdb(svc->cfg.database_url);
    int rc;
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to the database: %s", PQerrorMessage(conn));
        rc = MC_EUNAVAIL;
    } else {
        rc = mc_catalog_store(conn, cat, svc->name, svc->catalog_wanted == 2, err, errlen);
        if (rc == MC_OK)
            snprintf(err, errlen, "%s (%zu agencies, %zu procedures)", mc_catalog_version(cat),
                     mc_catalog_agency_count(cat), mc_catalog_procedure_count(cat));
    }
    PQfinish(conn);
    mc_catalog_destroy(&cat);
    return rc;
}

void mc_service_catalog(mc_service_t *svc, int with_procedures)
{
    char msg[512];
    svc->catalog_wanted = with_procedures ? 2 : 1;
    if (catalog_store(svc, msg, sizeof msg) != MC_OK) {
        mc_error("catalog: %s", msg);
        exit(1);
    }
    mc_info("catalog: loaded %s", msg);
}

const mc_calendar_t *mc_service_calendar(const mc_service_t *svc)
{
    return svc->calendar;
}

static void reload_work(uv_work_t *w)
{
    mc_service_t *svc = mc_container_of(w, mc_service_t, reload_work);
    svc->reload_rc = catalog_store(svc, svc->reload_err, sizeof svc->reload_err);
}

static void reload_done(uv_work_t *w, int status)
{
    (void)status;
    mc_service_t *svc = mc_container_of(w, mc_service_t, reload_work);
    svc->reloading = 0;
    if (svc->reload_rc == MC_OK)
        mc_info("reload: catalog %s", svc->reload_err);
    else
        mc_error("reload: catalog kept as it was: %s", svc->reload_err);
    if (svc->reload_again && !svc->stopping) {
        svc->reload_again = 0;
        svc->reloading = 1;
        uv_queue_work(&svc->loop, &svc->reload_work, reload_work, reload_done);
    }
}

/* SIGHUP: calendar now (a small file), catalog in the thread pool (database writes). */
static void on_reload(uv_signal_t *sig, int signum)
{
    (void)signum;
    mc_service_t *svc = sig->data;
    char err[512];
    mc_calendar_t *cal = calendar_read(&svc->cfg, err, sizeof err);
    if (cal) {
        mc_calendar_destroy(&svc->calendar);
        svc->calendar = cal;
        mc_info("reload: calendar (%zu special days)", mc_calendar_special_count(cal));
    } else {
        mc_error("reload: calendar kept as it was: %s", err);
    }
    if (!svc->catalog_wanted || svc->stopping)
        return;
    if (svc->reloading) {
        svc->reload_again = 1;
        return;
    }
    svc->reloading = 1;
    uv_queue_work(&svc->loop, &svc->reload_work, reload_work, reload_done);
}

mc_service_t *mc_service_new(const char *name, int argc, char **argv,
                             const mc_migration_t *migrations, int nmigrations)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(name);
        exit(0);
    }
    mc_service_t *svc = mc_new(mc_service_t);
    snprintf(svc->name, sizeof svc->name, "%s", name);
    /* Defaults that depend on the service: its port and bus endpoint by position. */
    for (size_t i = 0; i < MC_COUNT(mc_service_names); i++) {
        if (strcmp(mc_service_names[i], name) != 0)
            continue;
        char var[64], val[64];
        snprintf(var, sizeof var, "MOTCUA_%s_HTTP_PORT", name);
        for (char *p = var; *p; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        snprintf(val, sizeof val, "%zu", 8080 + i);
        setenv(var, val, 0);
        snprintf(var, sizeof var, "MOTCUA_%s_BUS_BIND", name);
        for (char *p = var; *p; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        snprintf(val, sizeof val, "tcp://127.0.0.1:%zu", 7180 + i);
        setenv(var, val, 0);
    }
    char err[512];
    if (mc_config_load(&svc->cfg, config_table, MC_COUNT(config_table), name, err, sizeof err)) {
        fprintf(stderr, "motcua-%s: configuration error: %s\n", name, err);
        exit(2);
    }
    mc_log_init(name, (mc_log_level_t)svc->cfg.log_level, svc->cfg.log_format == 1);
    svc->calendar = calendar_read(&svc->cfg, err, sizeof err);
    if (!svc->calendar) {
        mc_error("%s", err);
        exit(2);
    }
    mc_info("starting (http %s:%d, bus %s)", svc->cfg.http_host, svc->cfg.http_port,
            svc->cfg.bus_bind);
    migrate_or_exit(svc, migrations, nmigrations);

    int rc = uv_loop_init(&svc->loop);
    if (rc) {
        mc_error("cannot create the event loop: %s", uv_strerror(rc));
        exit(1);
    }
    svc->db = mc_db_new(&svc->loop, svc->cfg.database_url, (int)svc->cfg.db_pool);
    for (size_t i = 0; i < MC_COUNT(svc->peers); i++) {
        svc->peers[i].name = mc_service_names[i];
        svc->peers[i].endpoint = svc->cfg.peer_endpoints[i];
    }
    mc_bus_config_t bc = {.service = name,
                          .bind = svc->cfg.bus_bind,
                          .peers = svc->peers,
                          .npeers = MC_COUNT(svc->peers),
                          .batch = (int)svc->cfg.bus_batch,
                          .lease_ms = (int)svc->cfg.bus_lease_ms,
                          .retention_hours = (int)svc->cfg.bus_retention_hours,
                          .curve_dir = svc->cfg.bus_curve_dir};
    svc->bus = mc_bus_new(&svc->loop, svc->db, &bc);
    if (!svc->bus)
        exit(1);
    svc->http = mc_http_new(&svc->loop, svc->cfg.http_host, svc->cfg.http_port,
                            (size_t)svc->cfg.max_body, svc);
    if (!svc->http)
        exit(1);
    mc_http_routes(svc->http, health_routes, MC_COUNT(health_routes));
    register_metrics(svc);
    return svc;
}

void mc_service_routes(mc_service_t *svc, const mc_route_t *routes, size_t n)
{
    mc_http_routes(svc->http, routes, n);
}

void mc_service_handlers(mc_service_t *svc, const mc_bus_handler_t *handlers, size_t n)
{
    mc_bus_handlers(svc->bus, handlers, n, svc);
}

static void on_every(uv_timer_t *t)
{
    every_t *e = mc_container_of(t, every_t, timer);
    if (!e->svc->stopping)
        e->fn(e->svc);
}

void mc_service_every(mc_service_t *svc, uint64_t ms, void (*fn)(mc_service_t *svc))
{
    every_t *e = mc_new(every_t);
    e->svc = svc;
    e->fn = fn;
    uv_timer_init(&svc->loop, &e->timer);
    uv_timer_start(&e->timer, on_every, ms, ms);
    e->next = svc->timers;
    svc->timers = e;
}

void mc_service_set_data(mc_service_t *svc, void *data)
{
    svc->data = data;
}
void *mc_service_data(const mc_service_t *svc)
{
    return svc->data;
}
const char *mc_service_name(const mc_service_t *svc)
{
    return svc->name;
}
mc_db_t *mc_service_db(const mc_service_t *svc)
{
    return svc->db;
}
mc_bus_t *mc_service_bus(const mc_service_t *svc)
{
    return svc->bus;
}
uv_loop_t *mc_service_loop(const mc_service_t *svc)
{
    return (uv_loop_t *)&svc->loop;
}
const mc_service_config_t *mc_service_config(const mc_service_t *svc)
{
    return &svc->cfg;
}

/* ---------------------------------------------------------------- shutdown */

static void on_timer_closed(uv_handle_t *h)
{
    free(mc_container_of((uv_timer_t *)h, every_t, timer));
}

/* Last step: the HTTP server closes what is left (idle connections, and requests the
 * drain gave up on, answered 503), then the bus, then the pool both were using. */
/* Everything has finished or the grace time is over: close in order. */
static void teardown(mc_service_t *svc)
{
    if (svc->torn_down)
        return;
    svc->torn_down = 1;
    uv_timer_stop(&svc->grace);
    for (worker_t *w = svc->workers, *next; w; w = next) {
        next = w->next;
        w->close(w->arg);
        free(w);
    }
    svc->workers = NULL;
    mc_http_destroy(&svc->http);
    mc_bus_destroy(&svc->bus);
    mc_db_destroy(&svc->db);
    for (every_t *e = svc->timers, *next; e; e = next) {
        next = e->next;
        uv_close((uv_handle_t *)&e->timer, on_timer_closed);
    }
    svc->timers = NULL;
    uv_close((uv_handle_t *)&svc->grace, NULL);
    uv_close((uv_handle_t *)&svc->sigterm, NULL);
    uv_close((uv_handle_t *)&svc->sigint, NULL);
    uv_close((uv_handle_t *)&svc->sighup, NULL);
}

/* The stop's grace is over (it runs from the signal): whatever has not finished — a
 * worker's calls, the bus's batch when the database is gone — is left to the leases and
 * to the senders, who send again what was not acknowledged. */
static void on_grace(uv_timer_t *t)
{
    mc_service_t *svc = t->data;
    if (!svc->bus_stopped)
        mc_warn("the bus had not finished its work in flight after %d ms (is the database "
                "reachable?); what it did not acknowledge will come again",
                MC_SERVICE_GRACE_MS);
    if (svc->workers_busy)
        mc_warn("%d worker(s) still had calls in flight after %d ms; left to their leases",
                svc->workers_busy, MC_SERVICE_GRACE_MS);
    svc->workers_busy = 0;
    teardown(svc);
}

void mc_service_on_stop(mc_service_t *svc, void (*stop)(void *arg), void (*close)(void *arg),
                        void *arg)
{
    worker_t *w = mc_new(worker_t);
    w->stop = stop;
    w->close = close;
    w->arg = arg;
    w->next = svc->workers;
    svc->workers = w;
}

void mc_service_stopped(mc_service_t *svc)
{
    assert(svc->workers_busy > 0);
    if (--svc->workers_busy == 0 && svc->bus_stopped)
        teardown(svc);
}

int mc_service_stopping(const mc_service_t *svc)
{
    return svc->stopping;
}

static void on_bus_stopped(void *arg)
{
    mc_service_t *svc = arg;
    svc->bus_stopped = 1;
    if (svc->workers_busy == 0)
        teardown(svc);
}

static void on_http_drained(void *arg)
{
    mc_service_t *svc = arg;
    mc_bus_stop(svc->bus, on_bus_stopped, svc);
}

/* Stop in order, nothing lost: no new connections while the requests in flight
 * finish, then the bus's batch in flight and its Acks, then everything closes. */
static void on_signal(uv_signal_t *sig, int signum)
{
    mc_service_t *svc = sig->data;
    if (svc->stopping)
        return;
    svc->stopping = 1;
    mc_info("stopping on %s: finishing work in flight", strsignal(signum));
    /* Workers first learn of the stop (they may report being idle at once). */
    int n = 0;
    for (worker_t *w = svc->workers; w; w = w->next)
        n++;
    svc->workers_busy = n;
    /* One grace for the whole stop: requests, the bus and the workers. */
    uv_timer_start(&svc->grace, on_grace, MC_SERVICE_GRACE_MS, 0);
    for (worker_t *w = svc->workers; w; w = w->next)
        w->stop(w->arg);
    mc_http_stop(svc->http, on_http_drained, svc);
}

int mc_service_run(mc_service_t **psvc)
{
    mc_service_t *svc = *psvc;
    *psvc = NULL;
    uv_signal_init(&svc->loop, &svc->sigterm);
    uv_signal_init(&svc->loop, &svc->sigint);
    svc->sigterm.data = svc->sigint.data = svc;
    uv_signal_start(&svc->sigterm, on_signal, SIGTERM);
    uv_signal_start(&svc->sigint, on_signal, SIGINT);
    uv_signal_init(&svc->loop, &svc->sighup);
    svc->sighup.data = svc;
    uv_timer_init(&svc->loop, &svc->grace);
    svc->grace.data = svc;
    uv_signal_start(&svc->sighup, on_reload, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
    mc_info("ready: http://%s:%d", svc->cfg.http_host, svc->cfg.http_port);
    uv_run(&svc->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&svc->loop);
    if (rc)
        mc_error("event loop did not close cleanly: %s", uv_strerror(rc));
    else
        mc_info("stopped");
    mc_config_free(&svc->cfg, config_table, MC_COUNT(config_table));
    mc_calendar_destroy(&svc->calendar);
    mc_metrics_reset();
    int status = rc ? 1 : svc->exit_status;
    free(svc);
    return status;
}
