/* outcall.c: the outbound-call worker shared by the services (see outcall.h): the
 * timer, the claim, the jobs in flight, the stop, and the generic "retry later".
 *
 * Design. One claim at a time: a tick while a claim runs does nothing, so a slow
 * database never piles claims up. The lease set by the claim is what makes a crash
 * harmless: a row whose job never ended (SIGKILL, a call cut off at the close) is
 * claimed again when its lease runs out, and the domains' outside systems take the
 * repeat through their idempotency keys. Everything runs on the service's loop; there
 * are no threads.
 *
 * Stop. stopping is set by the service's stop; the worker then reports stopped (once)
 * when no claim, no job and no hold is left. Once the service closes the worker it no
 * longer waits for it, so nothing is reported after the close. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "log.h"
#include "outcall.h"

struct mc_outcall {
    mc_service_t *svc;
    mc_outcall_def_t def;
    char *retry_sql;
    char *claim_sql;   /* the standard claim (def.claim_returning) */
    mc_fetch_t *fetch; /* the worker's own, or NULL */
    uv_timer_t timer;
    int stopping, claiming, inflight, stop_reported;
    int closing, closed, destroyed;
};

static const char *why(PGresult *res, int status)
{
    return res ? PQresultErrorMessage(res) : mc_strerror(status);
}

static void idle_check(mc_outcall_t *w)
{
    if (w->stopping && !w->claiming && w->inflight == 0 && !w->stop_reported) {
        w->stop_reported = 1;
        mc_service_stopped(w->svc);
    }
}

/* ---------------------------------------------------------------- jobs */

void mc_outcall_done(mc_outcall_job_t *job)
{
    mc_outcall_t *w = job->worker;
    if (w->def.end)
        w->def.end(job);
    if (job->conn)
        mc_db_release(job->conn); /* rolls back if still open */
    mc_outbox_destroy(&job->outbox);
    free(job);
    w->inflight--;
    idle_check(w);
}

static void on_recorded(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_outcall_job_t *job = arg;
    if (status != MC_OK && status != MC_ECLOSED)
        mc_warn("%s: cannot record the outcome of %lld: %s", job->worker->def.name, job->id,
                why(res, status));
    mc_outcall_done(job);
}

void mc_outcall_record(mc_outcall_job_t *job, const char *sql, const mc_db_params_t *params)
{
    mc_db_exec(mc_service_db(job->worker->svc), sql, params, 0, on_recorded, job);
}

void mc_outcall_retry(mc_outcall_job_t *job, const char *why)
{
    mc_outcall_t *w = job->worker;
    assert(w->retry_sql);
    mc_db_params_t q = {0};
    mc_db_param_int(&q, job->id);
    mc_db_param_text(&q, why);
    mc_db_param_int(&q, w->def.backoff_ms);
    mc_outcall_record(job, w->retry_sql, &q);
}

typedef void (*begun_fn)(mc_outcall_job_t *job, mc_db_conn_t *conn);

typedef struct {
    mc_outcall_job_t *job;
    begun_fn fn;
} begin_t;

static void on_begun(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    begin_t b = *(begin_t *)arg;
    free(arg);
    if (status != MC_OK) {
        on_recorded(conn, res, status, b.job);
        return;
    }
    b.fn(b.job, conn);
}

static void on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    begin_t *b = arg;
    if (status != MC_OK) {
        mc_outcall_job_t *job = b->job;
        free(b);
        on_recorded(NULL, NULL, status, job);
        return;
    }
    b->job->conn = conn;
    mc_db_query(conn, "BEGIN", NULL, 0, on_begun, b);
}

void mc_outcall_begin(mc_outcall_job_t *job, begun_fn fn)
{
    assert(!job->conn);
    begin_t *b = mc_new(begin_t);
    b->job = job;
    b->fn = fn;
    mc_db_acquire(mc_service_db(job->worker->svc), on_conn, b);
}

void mc_outcall_commit(mc_outcall_job_t *job)
{
    assert(job->conn);
    mc_db_query(job->conn, "COMMIT", NULL, 0, on_recorded, job);
}

static void on_emitted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    if (status != MC_OK) {
        on_recorded(conn, res, status, arg);
        return;
    }
    mc_outcall_commit(arg);
}

void mc_outcall_emit(mc_outcall_job_t *job, mc_outbox_t **outbox)
{
    assert(job->conn && !job->outbox);
    job->outbox = *outbox;
    *outbox = NULL;
    mc_outbox_write(job->outbox, job->conn, on_emitted, job);
}

/* ---------------------------------------------------------------- claim */

void mc_outcall_claimed(mc_outcall_t *w, PGresult *res)
{
    for (int r = 0; r < PQntuples(res); r++) {
        mc_outcall_job_t *job = mc_alloc(w->def.job_size);
        job->worker = w;
        job->id = atoll(PQgetvalue(res, r, 0));
        w->inflight++;
        if (!mc_outcall_fetch(w)) { /* closed meanwhile: the lease brings it back */
            mc_outcall_done(job);
            continue;
        }
        w->def.start(job, res, r, w->def.arg);
    }
}

void mc_outcall_claim_end(mc_outcall_t *w)
{
    assert(w->claiming);
    w->claiming = 0;
    idle_check(w);
}

static void on_claimed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_outcall_t *w = arg;
    w->claiming = 0;
    if (status != MC_OK) {
        if (status != MC_ECLOSED)
            mc_warn("%s: claim failed: %s", w->def.name, why(res, status));
    } else if (!w->stopping) { /* else stopped meanwhile: the leases bring them back */
        mc_outcall_claimed(w, res);
    }
    idle_check(w);
}

static void on_tick(uv_timer_t *t)
{
    mc_outcall_t *w = mc_container_of(t, mc_outcall_t, timer);
    mc_db_t *db = mc_service_db(w->svc);
    if (w->stopping || w->claiming || !db)
        return;
    w->claiming = 1;
    if (w->def.claim) {
        w->def.claim(w, w->def.arg);
        return;
    }
    mc_db_params_t q = {0};
    mc_db_param_int(&q, w->def.batch);
    mc_db_param_int(&q, w->def.lease_ms);
    mc_db_exec(db, w->claim_sql ? w->claim_sql : w->def.claim_sql, &q, 0, on_claimed, w);
}

/* ---------------------------------------------------------------- start and stop */

static void on_stop(void *arg)
{
    mc_outcall_t *w = arg;
    w->stopping = 1;
    uv_timer_stop(&w->timer);
    idle_check(w);
}

static void on_timer_closed(uv_handle_t *h)
{
    mc_outcall_t *w = mc_container_of((uv_timer_t *)h, mc_outcall_t, timer);
    w->closed = 1;
    if (w->destroyed) {
        free(w->retry_sql);
        free(w->claim_sql);
        free(w);
    }
}

static void close_handles(mc_outcall_t *w)
{
    if (w->closing)
        return;
    w->closing = 1;
    uv_close((uv_handle_t *)&w->timer, on_timer_closed);
}

static void on_close(void *arg)
{
    mc_outcall_t *w = arg;
    w->stop_reported = 1; /* the service waits no more */
    close_handles(w);
    mc_fetch_destroy(&w->fetch); /* what is still in flight is the lease's to recover */
}

mc_outcall_t *mc_outcall_new(mc_service_t *svc, const mc_outcall_def_t *def)
{
    assert(def->name && def->start && def->job_size >= sizeof(mc_outcall_job_t));
    assert(def->claim ||
           ((def->claim_sql || (def->claim_returning && def->table)) && def->batch > 0));
    mc_outcall_t *w = mc_new(mc_outcall_t);
    w->svc = svc;
    w->def = *def;
    if (def->table)
        w->retry_sql =
            mc_sprintf("UPDATE %s SET lease_until = NULL, last_error = $2,%s"
                       " next_at = now() + make_interval(secs => least($3::bigint"
                       "  * power(2, least(tries - 1, 20)), 600000) / 1000.0)"
                       " WHERE id = $1 AND state = '%s'",
                       def->table, def->touch ? " updated_at = now()," : "", def->due_state);
    if (def->claim_returning)
        w->claim_sql =
            mc_sprintf("UPDATE %s SET tries = tries + 1,%s"
                       "  lease_until = now() + make_interval(secs => $2::bigint / 1000.0)"
                       " WHERE id IN (SELECT id FROM %s WHERE state = '%s' AND next_at <= now()"
                       "  AND (lease_until IS NULL OR lease_until < now())"
                       "  ORDER BY next_at LIMIT $1::int FOR UPDATE SKIP LOCKED)"
                       " RETURNING %s",
                       def->table, def->touch ? " updated_at = now()," : "", def->table,
                       def->due_state, def->claim_returning);
    if (!def->fetch)
        w->fetch = mc_fetch_new(mc_service_loop(svc));
    uv_timer_init(mc_service_loop(svc), &w->timer);
    uv_timer_start(&w->timer, on_tick, def->tick_ms, def->tick_ms);
    mc_service_on_stop(svc, on_stop, on_close, w);
    return w;
}

void mc_outcall_destroy(mc_outcall_t **pw)
{
    mc_outcall_t *w = *pw;
    if (!w)
        return;
    *pw = NULL;
    mc_fetch_destroy(&w->fetch);
    w->destroyed = 1;
    if (w->closed) {
        free(w->retry_sql);
        free(w->claim_sql);
        free(w);
        return;
    }
    close_handles(w);
}

mc_fetch_t *mc_outcall_fetch(const mc_outcall_t *w)
{
    return w->def.fetch ? *w->def.fetch : w->fetch;
}

int mc_outcall_stopping(const mc_outcall_t *w)
{
    return w->stopping;
}

void mc_outcall_hold(mc_outcall_t *w)
{
    w->inflight++;
}

void mc_outcall_release(mc_outcall_t *w)
{
    assert(w->inflight > 0);
    w->inflight--;
    idle_check(w);
}
