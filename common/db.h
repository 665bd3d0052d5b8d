/* db.h: an asynchronous PostgreSQL connection pool on the libuv loop.
 *
 * Connections are opened in libuv's thread pool (PQconnectdb blocks) and then driven
 * without blocking on the loop: uv_poll on PQsocket, PQsendQueryParams, PQflush,
 * PQconsumeInput. A connection that breaks (database restarted, network cut) fails
 * its query with MC_EUNAVAIL and reconnects by itself with backoff (100 ms doubling
 * to 5 s); the pool never gives a caller a broken connection. Waiters for a
 * connection are served first come, first served.
 *
 * One statement at a time per connection: a caller that holds a connection chains
 * its queries from callbacks (BEGIN, ..., COMMIT). A connection released in the
 * middle of a transaction is rolled back before anyone else gets it. */
#ifndef MC_DB_H
#define MC_DB_H

#include <libpq-fe.h>
#include <stddef.h>
#include <uv.h>

#include "mc.h"

#define MC_DB_MAX_PARAMS 32

typedef struct mc_db mc_db_t;
typedef struct mc_db_conn mc_db_conn_t;

/* Query parameters; values are copied by the time mc_db_query returns. */
typedef struct {
    int n;
    const char *values[MC_DB_MAX_PARAMS];
    int lengths[MC_DB_MAX_PARAMS];
    int formats[MC_DB_MAX_PARAMS];
    char ints[MC_DB_MAX_PARAMS][24]; /* storage for mc_db_param_int */
} mc_db_params_t;

void mc_db_param_text(mc_db_params_t *p, const char *text); /* NULL is SQL NULL */
void mc_db_param_bytes(mc_db_params_t *p, const void *bytes, size_t len);
void mc_db_param_int(mc_db_params_t *p, long long v);

/* Acquisition result: conn is NULL when status < 0 (MC_ECLOSED on shutdown). */
typedef void (*mc_db_conn_fn)(mc_db_conn_t *conn, int status, void *arg);
/* Query result: res is valid during the callback only (the pool clears it after).
 * status: MC_OK; MC_EDB for an SQL error (res holds it: PQresultErrorMessage,
 * PG_DIAG_SQLSTATE); MC_EUNAVAIL if the connection was lost (res NULL);
 * MC_ECLOSED on shutdown (res NULL). */
typedef void (*mc_db_result_fn)(mc_db_conn_t *conn, PGresult *res, int status, void *arg);
/* A notification on a LISTEN channel. payload is NULL right after (re)connecting:
 * notifications may have been missed, so the listener should look for work. */
typedef void (*mc_db_notify_fn)(const char *channel, const char *payload, void *arg);

/* A pool of `size` connections to `url`; connecting starts at once. */
mc_db_t *mc_db_new(uv_loop_t *loop, const char *url, int size);
/* Close every connection; waiting and in-flight callbacks get MC_ECLOSED. Memory is
 * freed once libuv has closed the handles (run the loop). Sets *db to NULL. */
void mc_db_destroy(mc_db_t **db);

/* Get a connection (now if one is idle, else when one is). */
void mc_db_acquire(mc_db_t *db, mc_db_conn_fn fn, void *arg);
/* Give the connection back (it must have no query in flight). */
void mc_db_release(mc_db_conn_t *conn);
/* Send one statement on a held connection. params may be NULL; without params
 * the text may hold several statements. binary_result asks for binary columns. */
void mc_db_query(mc_db_conn_t *conn, const char *sql, const mc_db_params_t *params,
                 int binary_result, mc_db_result_fn fn, void *arg);
/* Acquire, run one statement, release: the callback's conn argument is NULL. */
void mc_db_exec(mc_db_t *db, const char *sql, const mc_db_params_t *params, int binary_result,
                mc_db_result_fn fn, void *arg);
/* LISTEN on channel through a dedicated connection that re-listens on reconnect. */
void mc_db_listen(mc_db_t *db, const char *channel, mc_db_notify_fn fn, void *arg);

/* Stop calling the notification callback (its owner is going away). */
void mc_db_unlisten(mc_db_t *db);

/* Connections currently open and usable (for /readyz). */
int mc_db_connected(const mc_db_t *db);
/* Size of the pool, and callers waiting for a connection. */
int mc_db_size(const mc_db_t *db);
int mc_db_waiting(const mc_db_t *db);
/* The SQLSTATE of a failed result ("" if none). */
const char *mc_db_sqlstate(const PGresult *res);

#endif
