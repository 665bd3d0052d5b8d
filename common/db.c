/* db.c: asynchronous libpq connection pool on libuv, with reconnect.
 *
 * Each connection is a small state machine: DOWN -> CONNECTING (PQconnectdb in the
 * thread pool) -> UP (uv_poll on its socket) -> DOWN again when it breaks, after a
 * backoff. Being lent to a caller ("held") is separate from being UP: a held
 * connection can break, its caller sees MC_EUNAVAIL, and it reconnects after release.
 * Memory is freed in libuv close callbacks once nothing refers to it any more. */
#include "db.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"

enum { CONN_DOWN, CONN_CONNECTING, CONN_UP };

typedef struct waiter {
    mc_db_conn_fn fn;
    void *arg;
    struct waiter *next;
} waiter_t;

/* A statement run by mc_db_exec: params copied because it may wait for a connection. */
typedef struct {
    char *sql;
    mc_db_params_t params;
    char *storage;
    int binary;
    mc_db_result_fn fn;
    void *arg;
} exec_t;

struct mc_db_conn {
    mc_db_t *db;
    PGconn *pg;
    int state;
    int held;
    int listener;
    int refs; /* open uv handles + connect work in flight */
    uv_poll_t poll;
    int poll_open;
    uv_timer_t retry;
    uv_work_t work;
    int backoff_ms;
    int down_logged;
    /* the statement in flight */
    int busy;
    int internal; /* the statement is the pool's own (ROLLBACK, LISTEN) */
    PGresult *result;
    mc_db_result_fn fn;
    void *arg;
};

struct mc_db {
    uv_loop_t *loop;
    char *url;
    int size;
    mc_db_conn_t **conns;
    mc_db_conn_t *listen;
    char **channels;
    int nchannels;
    int relisten;
    mc_db_notify_fn notify_fn;
    void *notify_arg;
    waiter_t *head, *tail;
    int nwaiting;
    int live; /* connections not yet freed */
    int closing;
};

static void conn_start(mc_db_conn_t *c);
static void on_retry(uv_timer_t *t);
static void conn_serve(mc_db_conn_t *c);
static void conn_send_listen(mc_db_conn_t *c);

/* ---------------------------------------------------------------- params */

void mc_db_param_text(mc_db_params_t *p, const char *text)
{
    assert(p->n < MC_DB_MAX_PARAMS);
    p->values[p->n] = text;
    p->lengths[p->n] = 0;
    p->formats[p->n] = 0;
    p->n++;
}

void mc_db_param_bytes(mc_db_params_t *p, const void *bytes, size_t len)
{
    assert(p->n < MC_DB_MAX_PARAMS);
    p->values[p->n] = bytes;
    p->lengths[p->n] = (int)len;
    p->formats[p->n] = 1;
    p->n++;
}

void mc_db_param_int(mc_db_params_t *p, long long v)
{
    assert(p->n < MC_DB_MAX_PARAMS);
    snprintf(p->ints[p->n], sizeof p->ints[p->n], "%lld", v);
    mc_db_param_text(p, p->ints[p->n]);
}

const char *mc_db_sqlstate(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

/* ---------------------------------------------------------------- lifetime */

/* The pool is freed when its own reference (dropped by mc_db_destroy) and every
 * connection's are gone. */
static void db_unref(mc_db_t *db)
{
    if (--db->live > 0)
        return;
    for (int i = 0; i < db->nchannels; i++)
        free(db->channels[i]);
    free(db->channels);
    free(db->conns);
    free(db->url);
    free(db);
}

static void conn_unref(mc_db_conn_t *c)
{
    assert(c->refs > 0);
    if (--c->refs > 0)
        return;
    mc_db_t *db = c->db;
    if (c->pg)
        PQfinish(c->pg);
    free(c);
    db_unref(db);
}

static void on_retry(uv_timer_t *t)
{
    conn_start(t->data);
}

static void on_handle_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

static mc_db_conn_t *conn_new(mc_db_t *db, int listener)
{
    mc_db_conn_t *c = mc_new(mc_db_conn_t);
    c->db = db;
    c->listener = listener;
    c->backoff_ms = 100;
    uv_timer_init(db->loop, &c->retry);
    c->retry.data = c;
    c->refs = 1; /* the retry timer */
    db->live++;
    conn_start(c);
    return c;
}

/* ---------------------------------------------------------------- completion */

/* Finish the statement in flight with status; the callback may query again. */
static void conn_complete(mc_db_conn_t *c, int status)
{
    PGresult *res = c->result;
    mc_db_result_fn fn = c->fn;
    void *arg = c->arg;
    int internal = c->internal;
    c->result = NULL;
    c->fn = NULL;
    c->busy = 0;
    c->internal = 0;
    if (internal) {
        if (c->listener && status == MC_OK) {
            for (int i = 0; i < c->db->nchannels && c->db->notify_fn; i++)
                c->db->notify_fn(c->db->channels[i], NULL, c->db->notify_arg);
        }
        PQclear(res);
        if (c->listener && c->db->relisten && c->state == CONN_UP && !c->db->closing)
            conn_send_listen(c);
        else if (!c->listener)
            conn_serve(c);
        return;
    }
    if (fn)
        fn(c, res, status, arg);
    PQclear(res);
}

static void retry_later(mc_db_conn_t *c)
{
    uv_timer_start(&c->retry, on_retry, (uint64_t)c->backoff_ms, 0);
    c->backoff_ms = c->backoff_ms * 2 > 5000 ? 5000 : c->backoff_ms * 2;
}

static void on_poll_closed(uv_handle_t *h)
{
    mc_db_conn_t *c = h->data;
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->poll_open = 0;
    /* A held connection stays down until it is released: its caller's session (and
     * transaction) is gone, and a new one must not silently take its place. */
    if (!c->db->closing && c->state == CONN_DOWN && !c->held)
        retry_later(c);
    conn_unref(c);
}

/* The connection is unusable: fail what is in flight and reconnect later. */
static void conn_broken(mc_db_conn_t *c, const char *why)
{
    if (c->state == CONN_DOWN)
        return;
    if (!c->down_logged)
        mc_warn("db: connection lost: %s", why);
    c->down_logged = 1;
    c->state = CONN_DOWN;
    if (c->poll_open && !uv_is_closing((uv_handle_t *)&c->poll)) {
        uv_poll_stop(&c->poll);
        uv_close((uv_handle_t *)&c->poll, on_poll_closed);
    }
    if (c->busy)
        conn_complete(c, c->db->closing ? MC_ECLOSED : MC_EUNAVAIL);
}

/* ---------------------------------------------------------------- I/O */

static void on_poll(uv_poll_t *h, int status, int events)
{
    mc_db_conn_t *c = h->data;
    if (status < 0) {
        /* libuv reports a socket error (POLLERR) as UV_EBADF; libpq knows what it was. */
        PQconsumeInput(c->pg);
        const char *why = PQerrorMessage(c->pg);
        conn_broken(c, why && *why ? why : uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE) {
        int rc = PQflush(c->pg);
        if (rc < 0) {
            conn_broken(c, PQerrorMessage(c->pg));
            return;
        }
        if (rc == 0)
            uv_poll_start(&c->poll, UV_READABLE, on_poll);
    }
    if (!(events & UV_READABLE))
        return;
    if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL) {
        if (c->db->notify_fn)
            c->db->notify_fn(n->relname, n->extra, c->db->notify_arg);
        PQfreemem(n);
    }
    while (c->busy && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            int bad = c->result && PQresultStatus(c->result) != PGRES_COMMAND_OK &&
                      PQresultStatus(c->result) != PGRES_TUPLES_OK &&
                      PQresultStatus(c->result) != PGRES_EMPTY_QUERY;
            conn_complete(c, bad ? MC_EDB : MC_OK);
            return;
        }
        /* Several statements: keep the first error, else the last result. */
        int r_ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        int kept_ok = !c->result || PQresultStatus(c->result) == PGRES_COMMAND_OK ||
                      PQresultStatus(c->result) == PGRES_TUPLES_OK;
        if (!kept_ok && r_ok) {
            PQclear(r);
        } else {
            PQclear(c->result);
            c->result = r;
        }
    }
}

static int conn_send(mc_db_conn_t *c, const char *sql, const mc_db_params_t *params, int binary)
{
    int ok = params && params->n
                 ? PQsendQueryParams(c->pg, sql, params->n, NULL, params->values, params->lengths,
                                     params->formats, binary)
                 : (binary ? PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 1)
                           : PQsendQuery(c->pg, sql));
    if (!ok)
        return MC_EUNAVAIL;
    int rc = PQflush(c->pg);
    if (rc < 0)
        return MC_EUNAVAIL;
    uv_poll_start(&c->poll, rc ? UV_READABLE | UV_WRITABLE : UV_READABLE, on_poll);
    return MC_OK;
}

void mc_db_query(mc_db_conn_t *c, const char *sql, const mc_db_params_t *params, int binary_result,
                 mc_db_result_fn fn, void *arg)
{
    assert(c->held && !c->busy);
    c->fn = fn;
    c->arg = arg;
    c->busy = 1;
    if (c->db->closing) {
        conn_complete(c, MC_ECLOSED);
        return;
    }
    if (c->state != CONN_UP) {
        conn_complete(c, MC_EUNAVAIL);
        return;
    }
    if (conn_send(c, sql, params, binary_result) != MC_OK)
        conn_broken(c, PQerrorMessage(c->pg));
}

static void conn_internal(mc_db_conn_t *c, const char *sql)
{
    c->busy = 1;
    c->internal = 1;
    if (conn_send(c, sql, NULL, 0) != MC_OK)
        conn_broken(c, PQerrorMessage(c->pg));
}

/* ---------------------------------------------------------------- connecting */

/* Runs in libuv's thread pool. Defaults that matter when the server or the network
 * disappears: a bounded connect, and TCP keepalives that notice a dead peer in about
 * 25 s instead of hours. Values given in the URL win (later keywords override). */
static void work_connect(uv_work_t *w)
{
    mc_db_conn_t *c = w->data;
    static const char *const keys[] = {"connect_timeout",  "keepalives_idle", "keepalives_interval",
                                       "keepalives_count", "dbname",          NULL};
    const char *values[] = {"5", "10", "5", "3", c->db->url, NULL};
    c->pg = PQconnectdbParams(keys, values, 1);
}

static void after_connect(uv_work_t *w, int status)
{
    (void)status;
    mc_db_conn_t *c = w->data;
    mc_db_t *db = c->db;
    if (db->closing) {
        conn_unref(c);
        return;
    }
    if (PQstatus(c->pg) != CONNECTION_OK || PQsetnonblocking(c->pg, 1) != 0) {
        if (!c->down_logged)
            mc_warn("db: cannot connect: %s", PQerrorMessage(c->pg));
        c->down_logged = 1;
        PQfinish(c->pg);
        c->pg = NULL;
        c->state = CONN_DOWN;
        uv_timer_start(&c->retry, on_retry, (uint64_t)c->backoff_ms, 0);
        c->backoff_ms = c->backoff_ms * 2 > 5000 ? 5000 : c->backoff_ms * 2;
        conn_unref(c);
        return;
    }
    /* The work reference becomes the poll handle's reference. */
    uv_poll_init(db->loop, &c->poll, PQsocket(c->pg));
    c->poll.data = c;
    c->poll_open = 1;
    uv_poll_start(&c->poll, UV_READABLE, on_poll);
    c->state = CONN_UP;
    c->backoff_ms = 100;
    if (c->down_logged)
        mc_info("db: connection restored");
    c->down_logged = 0;
    if (c->listener)
        conn_send_listen(c);
    else if (!c->held)
        conn_serve(c);
}

static void conn_start(mc_db_conn_t *c)
{
    if (c->db->closing || c->state != CONN_DOWN)
        return;
    c->state = CONN_CONNECTING;
    c->work.data = c;
    c->refs++;
    uv_queue_work(c->db->loop, &c->work, work_connect, after_connect);
}

/* ---------------------------------------------------------------- pool */

/* An idle, up connection: give it to the first waiter. */
static void conn_serve(mc_db_conn_t *c)
{
    mc_db_t *db = c->db;
    if (c->held || c->busy || c->state != CONN_UP || !db->head)
        return;
    waiter_t *w = db->head;
    db->head = w->next;
    if (!db->head)
        db->tail = NULL;
    db->nwaiting--;
    c->held = 1;
    mc_db_conn_fn fn = w->fn;
    void *arg = w->arg;
    free(w);
    fn(c, MC_OK, arg);
}

mc_db_t *mc_db_new(uv_loop_t *loop, const char *url, int size)
{
    assert(size > 0);
    mc_db_t *db = mc_new(mc_db_t);
    db->loop = loop;
    db->url = mc_strdup(url);
    db->size = size;
    db->conns = mc_alloc(sizeof(mc_db_conn_t *) * (size_t)size);
    db->live = 1; /* the pool itself, dropped in mc_db_destroy */
    for (int i = 0; i < size; i++)
        db->conns[i] = conn_new(db, 0);
    return db;
}

void mc_db_acquire(mc_db_t *db, mc_db_conn_fn fn, void *arg)
{
    if (db->closing) {
        fn(NULL, MC_ECLOSED, arg);
        return;
    }
    waiter_t *w = mc_new(waiter_t);
    w->fn = fn;
    w->arg = arg;
    if (db->tail)
        db->tail->next = w;
    else
        db->head = w;
    db->tail = w;
    db->nwaiting++;
    for (int i = 0; i < db->size && db->head; i++)
        conn_serve(db->conns[i]);
}

void mc_db_release(mc_db_conn_t *c)
{
    assert(c->held && !c->busy);
    c->held = 0;
    if (c->db->closing)
        return;
    if (c->state == CONN_DOWN) {
        /* It broke while held; reconnect now, unless its poll handle is still closing
         * (on_poll_closed does it then). */
        if (!c->poll_open)
            retry_later(c);
        return;
    }
    if (c->state != CONN_UP)
        return;
    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        conn_internal(c, "ROLLBACK");
    else
        conn_serve(c);
}

static void exec_on_result(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    exec_t *e = arg;
    e->fn(NULL, res, status, e->arg);
    if (conn)
        mc_db_release(conn);
    free(e->storage);
    free(e->sql);
    free(e);
}

static void exec_on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    exec_t *e = arg;
    if (status < 0) {
        exec_on_result(NULL, NULL, status, e);
        return;
    }
    mc_db_query(conn, e->sql, &e->params, e->binary, exec_on_result, e);
}

void mc_db_exec(mc_db_t *db, const char *sql, const mc_db_params_t *params, int binary_result,
                mc_db_result_fn fn, void *arg)
{
    exec_t *e = mc_new(exec_t);
    e->sql = mc_strdup(sql);
    e->binary = binary_result;
    e->fn = fn;
    e->arg = arg;
    if (params && params->n) {
        size_t total = 0;
        for (int i = 0; i < params->n; i++)
            if (params->values[i])
                total +=
                    params->formats[i] ? (size_t)params->lengths[i] : strlen(params->values[i]) + 1;
        e->storage = mc_alloc(total);
        char *p = e->storage;
        e->params = *params;
        for (int i = 0; i < params->n; i++) {
            if (!params->values[i])
                continue;
            size_t n =
                params->formats[i] ? (size_t)params->lengths[i] : strlen(params->values[i]) + 1;
            memcpy(p, params->values[i], n);
            e->params.values[i] = p;
            p += n;
        }
    }
    mc_db_acquire(db, exec_on_conn, e);
}

/* ---------------------------------------------------------------- LISTEN */

static void conn_send_listen(mc_db_conn_t *c)
{
    mc_db_t *db = c->db;
    db->relisten = 0;
    size_t cap = 1;
    for (int i = 0; i < db->nchannels; i++)
        cap += strlen(db->channels[i]) * 2 + 16;
    char *sql = mc_alloc(cap);
    for (int i = 0; i < db->nchannels; i++) {
        char *ident = PQescapeIdentifier(c->pg, db->channels[i], strlen(db->channels[i]));
        strcat(sql, "LISTEN ");
        strcat(sql, ident ? ident : "\"\"");
        strcat(sql, ";");
        PQfreemem(ident);
    }
    conn_internal(c, sql);
    free(sql);
}

void mc_db_unlisten(mc_db_t *db)
{
    db->notify_fn = NULL;
    db->notify_arg = NULL;
}

void mc_db_listen(mc_db_t *db, const char *channel, mc_db_notify_fn fn, void *arg)
{
    assert(!db->notify_fn || (db->notify_fn == fn && db->notify_arg == arg));
    db->notify_fn = fn;
    db->notify_arg = arg;
    db->channels = mc_realloc(db->channels, sizeof(char *) * (size_t)(db->nchannels + 1));
    db->channels[db->nchannels++] = mc_strdup(channel);
    if (!db->listen) {
        db->listen = conn_new(db, 1);
    } else if (db->listen->state == CONN_UP) {
        if (db->listen->busy)
            db->relisten = 1;
        else
            conn_send_listen(db->listen);
    }
}

/* ---------------------------------------------------------------- status */

int mc_db_connected(const mc_db_t *db)
{
    int n = 0;
    for (int i = 0; i < db->size; i++)
        n += db->conns[i]->state == CONN_UP;
    return n;
}

int mc_db_size(const mc_db_t *db)
{
    return db->size;
}

int mc_db_waiting(const mc_db_t *db)
{
    return db->nwaiting;
}

/* ---------------------------------------------------------------- shutdown */

static void conn_close(mc_db_conn_t *c)
{
    uv_timer_stop(&c->retry);
    if (c->busy)
        conn_complete(c, MC_ECLOSED);
    /* The poll handle may already be closing (the connection broke in this turn). */
    if (c->poll_open && !uv_is_closing((uv_handle_t *)&c->poll)) {
        c->state = CONN_DOWN;
        uv_poll_stop(&c->poll);
        uv_close((uv_handle_t *)&c->poll, on_poll_closed);
    }
    uv_close((uv_handle_t *)&c->retry, on_handle_closed);
}

void mc_db_destroy(mc_db_t **pdb)
{
    if (!pdb || !*pdb)
        return;
    mc_db_t *db = *pdb;
    *pdb = NULL;
    db->closing = 1;
    while (db->head) {
        waiter_t *w = db->head;
        db->head = w->next;
        w->fn(NULL, MC_ECLOSED, w->arg);
        free(w);
    }
    db->tail = NULL;
    db->nwaiting = 0;
    /* Connections are freed in close callbacks, never synchronously here. */
    for (int i = 0; i < db->size; i++)
        conn_close(db->conns[i]);
    if (db->listen)
        conn_close(db->listen);
    db_unref(db);
}
