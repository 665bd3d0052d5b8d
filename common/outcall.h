/* outcall.h: the outbound-call worker — rows of a table whose time has come, each
 * claimed under a lease, sent to an outside system (common/fetch.h), and the answer
 * recorded or the row tried again later.
 *
 * Every tick_ms the worker runs one claim (claim_sql, or the domain's own claim
 * function) unless the previous one is still running. Each claimed row becomes a job
 * of job_size bytes, zeroed, whose first member is an mc_outcall_job_t; start() makes
 * the call, and the job ends with exactly one of:
 *   mc_outcall_done     the domain recorded the outcome (or left it to the lease);
 *   mc_outcall_retry    the generic "retry later": the lease is given up, last_error
 *                       set, next_at = now() + backoff_ms * 2^(tries - 1), at most 10
 *                       minutes, if the row is still in due_state;
 *   mc_outcall_record   one statement on the pool, then done;
 *   mc_outcall_begin ... mc_outcall_commit / mc_outcall_emit: a transaction on a
 *                       connection the job holds (released, so rolled back if still
 *                       open, when the job ends).
 *
 * Stop. The worker takes part in the service's stop (mc_service_on_stop): from the
 * stop on, nothing is claimed, and rows a claim_sql claim returns afterwards are not
 * started (their lease brings them back); the worker reports stopped when no claim,
 * no job and no hold (mc_outcall_hold, other work of the module the stop waits for)
 * is left. At close, the fetcher, if the worker's own, is destroyed: calls still in
 * flight end with MC_ECLOSED, and the domain ends their jobs with mc_outcall_done. */
#ifndef MC_OUTCALL_H
#define MC_OUTCALL_H

#include <stdint.h>

#include "bus.h"
#include "db.h"
#include "fetch.h"
#include "service.h"

typedef struct mc_outcall mc_outcall_t;

/* The worker's part of a job; the domain's job struct begins with it. */
typedef struct {
    mc_outcall_t *worker;
    long long id;        /* the row's id: the claim's first column */
    mc_db_conn_t *conn;  /* mc_outcall_begin's transaction */
    mc_outbox_t *outbox; /* given to mc_outcall_emit */
} mc_outcall_job_t;

typedef struct {
    const char *name; /* in log lines */
    uint64_t tick_ms;
    /* The claim: a statement with $1 the batch and $2 the lease in ms that leases the
     * due rows and returns them, id first. */
    const char *claim_sql;
    /* Or the standard claim of table (below): rows in due_state whose next_at has come
     * and whose lease is free, oldest next_at first, tries + 1, leased; it returns
     * these columns (id first). */
    const char *claim_returning;
    int batch;
    long lease_ms;
    /* Or the domain's own claim (several statements, say): it passes each result to
     * mc_outcall_claimed and ends with mc_outcall_claim_end. */
    void (*claim)(mc_outcall_t *w, void *arg);
    /* One claimed row: make the call, then end the job. */
    size_t job_size;
    void (*start)(mc_outcall_job_t *job, PGresult *res, int row, void *arg);
    /* Optional: free what the domain's part of the job holds (the job is freed after). */
    void (*end)(mc_outcall_job_t *job);
    /* mc_outcall_retry's statement: rows of table in due_state; touch sets
     * updated_at = now() as well. */
    const char *table;
    const char *due_state;
    int touch;
    long backoff_ms;
    /* Where another module keeps the fetcher the calls go through (it destroys it and
     * sets it to NULL); NULL: the worker has its own. */
    mc_fetch_t **fetch;
    void *arg; /* given to claim and start */
} mc_outcall_def_t;

/* Start the worker (timer, stop participation); def is copied, its strings must
 * outlive the worker. mc_outcall_destroy after mc_service_run. */
mc_outcall_t *mc_outcall_new(mc_service_t *svc, const mc_outcall_def_t *def);
/* Free the worker; if the service did not close it, its timer is closed and the memory
 * freed in the close callback (run the loop afterwards). Safe on NULL and twice. */
void mc_outcall_destroy(mc_outcall_t **w);
/* The fetcher for the calls; NULL once the worker's own was closed. */
mc_fetch_t *mc_outcall_fetch(const mc_outcall_t *w);
/* 1 once the service has started to stop. */
int mc_outcall_stopping(const mc_outcall_t *w);
/* Other work (an HTTP request using the fetcher, say) the stop waits for. */
void mc_outcall_hold(mc_outcall_t *w);
void mc_outcall_release(mc_outcall_t *w);

/* For a domain claim: start a job per row of res (unless the fetcher is closed, when the
 * jobs end at once), then the claim goes on; mc_outcall_claim_end when it is over. */
void mc_outcall_claimed(mc_outcall_t *w, PGresult *res);
void mc_outcall_claim_end(mc_outcall_t *w);

void mc_outcall_done(mc_outcall_job_t *job);
void mc_outcall_retry(mc_outcall_job_t *job, const char *why);
/* Run sql with params on the pool, then end the job (a failure is logged). */
void mc_outcall_record(mc_outcall_job_t *job, const char *sql, const mc_db_params_t *params);
/* A connection, BEGIN, then fn; on failure the job ends (logged). */
void mc_outcall_begin(mc_outcall_job_t *job, void (*fn)(mc_outcall_job_t *job, mc_db_conn_t *conn));
/* COMMIT the job's transaction and end the job. */
void mc_outcall_commit(mc_outcall_job_t *job);
/* Write *outbox (taken) in the job's transaction, COMMIT, and end the job. */
void mc_outcall_emit(mc_outcall_job_t *job, mc_outbox_t **outbox);

#endif
