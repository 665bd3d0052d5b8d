/* inbound.c: dossiers that arrive from outside motcua — submitted on the national
 * portal (portal_inbound.c), handed over by a peer province (link.c) — are opened at
 * intake through its public API, like any other submission, with their reference.
 *
 * inbound_add records one in interconnect.inbound inside the caller's transaction
 * (unique by system and reference id, so a repeat records nothing). A worker then,
 * every MOTCUA_INTERCONNECT_TICK_MS, claims up to CLAIM_BATCH pending rows whose time
 * has come (FOR UPDATE SKIP LOCKED, leased for MOTCUA_INTERCONNECT_LEASE_MS) and POSTs
 * each to intake's /v1/dossiers with an integrator key (MOTCUA_INTERCONNECT_INTAKE_KEY)
 * and the body submission + "reference": {system, id, handoff_id}:
 *   201 (a first answer or intake's idempotent replay)  'submitted', local_code kept
 *   400, 403, 409, 422                                   'refused' with intake's message;
 *       a peer province is told (link_inbound_refused), the national portal gets
 *       status 3 (portal_refused), in the same transaction
 *   anything else (401: our key; 5xx; no answer; no key configured) tried again after
 *       MOTCUA_INTERCONNECT_BACKOFF_MS, doubling, at most 10 minutes apart
 *
 * Once only. The Idempotency-Key is "inbound-<system>-<ref id>" and the body is the
 * same bytes every time (keys sorted), so a crash after intake stored the dossier and
 * before our commit only makes the next try get intake's stored answer.
 *
 * Stop: as agency_http.c — nothing new is claimed, calls in flight are waited for,
 * what is cut off is the lease's to recover. The mechanics (timer, claim, calls in
 * flight, stop, retry later) are common/outcall.h's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "interconnect.h"
#include "log.h"

#define CLAIM_BATCH 10

struct inbound_worker {
    interconnect_t *ic;
    mc_outcall_t *worker;
    char *url; /* intake's POST /v1/dossiers */
};

typedef struct {
    mc_outcall_job_t job; /* job.id: the inbound row */
    struct inbound_worker *w;
    char system[64];
    char ref_id[80];
    char *handoff_id;
    char error[400];
    char code[80]; /* intake's dossier code */
} job_t;

/* ------------------------------------------------------------------ recording */

void inbound_add(interconnect_t *ic, mc_db_conn_t *conn, const char *system, const char *ref_id,
                 const char *handoff_id, json_t *submission, mc_db_result_fn fn, void *arg)
{
    (void)ic;
    char *text = json_dumps(submission, JSON_COMPACT);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, system);
    mc_db_param_text(&p, ref_id);
    mc_db_param_text(&p, handoff_id && *handoff_id ? handoff_id : NULL);
    mc_db_param_text(&p, text);
    mc_db_query(conn,
                "INSERT INTO interconnect.inbound (system, ref_id, handoff_id, submission)"
                " VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (system, ref_id) DO NOTHING"
                " RETURNING id",
                &p, 0, fn, arg);
    free(text);
}

/* ------------------------------------------------------------------ one call */

static void job_free(mc_outcall_job_t *job)
{
    free(mc_container_of(job, job_t, job)->handoff_id);
}

static void retry_later(job_t *j)
{
    mc_warn("inbound %lld (%s %s) not opened at intake yet: %s", j->job.id, j->system, j->ref_id,
            j->error);
    mc_outcall_retry(&j->job, j->error);
}

static void submitted(job_t *j)
{
    mc_logd(MC_LOG_INFO, NULL, j->code, "inbound %lld (%s %s) opened at intake", j->job.id,
            j->system, j->ref_id);
    mc_db_params_t q = {0};
    mc_db_param_int(&q, j->job.id);
    mc_db_param_text(&q, j->code);
    mc_outcall_record(&j->job,
                      "UPDATE interconnect.inbound SET state = 'submitted', local_code = $2,"
                      "  lease_until = NULL, last_error = NULL, updated_at = now()"
                      " WHERE id = $1 AND state = 'pending'",
                      &q);
}

/* Refusal: the row, and the origin told, in one transaction. A failure ends the job:
 * the release rolls back, the lease brings the row back. */
static void refuse_failed(job_t *j, PGresult *res, int status)
{
    if (status != MC_ECLOSED)
        mc_warn("inbound %lld: cannot record the outcome: %s", j->job.id,
                res ? PQresultErrorMessage(res) : mc_strerror(status));
    mc_outcall_done(&j->job);
}

static void on_origin_told(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    job_t *j = arg;
    if (status != MC_OK) {
        refuse_failed(j, res, status);
        return;
    }
    mc_outcall_commit(&j->job);
}

static void on_refused_row(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    job_t *j = arg;
    if (status != MC_OK) {
        refuse_failed(j, res, status);
        return;
    }
    if (strcmp(PQcmdTuples(res), "1") != 0) { /* somebody else settled it */
        mc_outcall_commit(&j->job);
        return;
    }
    mc_warn("inbound %lld (%s %s) refused by intake: %s", j->job.id, j->system, j->ref_id,
            j->error);
    if (strncmp(j->system, "province:", 9) == 0)
        link_inbound_refused(j->w->ic, conn, j->system, j->ref_id, j->handoff_id, j->error,
                             on_origin_told, j);
    else if (strcmp(j->system, "national_portal") == 0)
        portal_refused(j->w->ic, conn, j->ref_id, j->error, on_origin_told, j);
    else
        mc_outcall_commit(&j->job);
}

static void on_refuse_begun(mc_outcall_job_t *job, mc_db_conn_t *conn)
{
    job_t *j = mc_container_of(job, job_t, job);
    mc_db_params_t q = {0};
    mc_db_param_int(&q, job->id);
    mc_db_param_text(&q, j->error);
    mc_db_query(conn,
                "UPDATE interconnect.inbound SET state = 'refused', last_error = $2,"
                "  lease_until = NULL, updated_at = now() WHERE id = $1 AND state = 'pending'",
                &q, 0, on_refused_row, j);
}

static void on_answer(int status, long code, const char *body, size_t len, void *arg)
{
    (void)len;
    job_t *j = arg;
    if (status == MC_ECLOSED) { /* stopping: the lease brings it back */
        mc_outcall_done(&j->job);
        return;
    }
    if (status != MC_OK) {
        snprintf(j->error, sizeof j->error, "intake unreachable: %s", mc_strerror(status));
        retry_later(j);
        return;
    }
    json_t *doc = json_loads(body, 0, NULL);
    const char *local = json_string_value(json_object_get(doc, "code"));
    json_t *err = json_object_get(doc, "error");
    const char *message = json_string_value(json_object_get(err, "message"));
    const char *field = json_string_value(json_object_get(err, "field"));
    if (code == 201 && local) {
        snprintf(j->code, sizeof j->code, "%s", local);
        json_decref(doc);
        submitted(j);
        return;
    }
    if (code == 400 || code == 403 || code == 409 || code == 422) {
        snprintf(j->error, sizeof j->error, "intake answered %ld: %.240s%s%.40s", code,
                 message ? message : "refused", field ? " (field " : "", field ? field : "");
        if (field)
            strncat(j->error, ")", sizeof j->error - strlen(j->error) - 1);
        json_decref(doc);
        mc_outcall_begin(&j->job, on_refuse_begun);
        return;
    }
    snprintf(j->error, sizeof j->error, "intake answered HTTP %ld%s%.200s", code,
             message ? ": " : "", message ? message : "");
    json_decref(doc);
    retry_later(j);
}

static void send_one(mc_outcall_job_t *job, PGresult *res, int r, void *arg)
{
    struct inbound_worker *w = arg;
    job_t *j = mc_container_of(job, job_t, job);
    j->w = w;
    snprintf(j->system, sizeof j->system, "%s", PQgetvalue(res, r, 1));
    snprintf(j->ref_id, sizeof j->ref_id, "%s", PQgetvalue(res, r, 2));
    j->handoff_id = PQgetisnull(res, r, 3) ? NULL : mc_strdup(PQgetvalue(res, r, 3));
    if (!w->ic->cfg->intake_key[0]) { /* intake would refuse it (403): wait for a key */
        snprintf(j->error, sizeof j->error, "MOTCUA_INTERCONNECT_INTAKE_KEY is not set");
        retry_later(j);
        return;
    }
    json_t *body = json_loads(PQgetvalue(res, r, 4), 0, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        body = json_object();
    }
    /* A peer province's dossier brings its own reference (the origin's dossier code;
     * the row is keyed by the handoff id); else it is built from the row. */
    if (!json_is_object(json_object_get(body, "reference"))) {
        json_t *ref = json_pack("{s:s, s:s}", "system", j->system, "id", j->ref_id);
        if (j->handoff_id)
            json_object_set_new(ref, "handoff_id", json_string(j->handoff_id));
        json_object_set_new(body, "reference", ref);
    }
    /* The same bytes on every try: intake's idempotency compares them. */
    char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(body);
    const interconnect_config_t *cfg = w->ic->cfg;
    char *auth = mc_sprintf("Authorization: Bearer %s", cfg->intake_key);
    char *key = mc_sprintf("Idempotency-Key: inbound-%s-%s", j->system, j->ref_id);
    const char *headers[] = {"Content-Type: application/json", key, auth, NULL};
    mc_fetch_http(mc_outcall_fetch(w->worker), "POST", w->url, headers, text, strlen(text),
                  cfg->timeout_ms, on_answer, j);
    free(key);
    free(auth);
    free(text);
}

/* ------------------------------------------------------------------ start and stop */

void inbound_start(interconnect_t *ic)
{
    struct inbound_worker *w = mc_new(struct inbound_worker);
    w->ic = ic;
    const char *base = ic->cfg->intake_url;
    if (base[0]) {
        size_t n = strlen(base);
        w->url = mc_sprintf("%.*s/v1/dossiers", (int)(n && base[n - 1] == '/' ? n - 1 : n), base);
    } else {
        const char *port = getenv("MOTCUA_INTAKE_HTTP_PORT");
        w->url = mc_sprintf("http://127.0.0.1:%s/v1/dossiers", port && *port ? port : "8080");
    }
    if (!ic->cfg->intake_key[0])
        mc_warn("inbound: MOTCUA_INTERCONNECT_INTAKE_KEY is not set: dossiers of the national "
                "portal and peer provinces wait until it is");
    mc_info("inbound: dossiers from outside are opened at %s", w->url);
    ic->inbound = w;
    mc_outcall_def_t def = {
        .name = "inbound",
        .tick_ms = (uint64_t)ic->cfg->tick_ms,
        .claim_returning = "id, system, ref_id, handoff_id, submission::text",
        .batch = CLAIM_BATCH,
        .lease_ms = ic->cfg->lease_ms,
        .job_size = sizeof(job_t),
        .start = send_one,
        .end = job_free,
        .table = "interconnect.inbound",
        .due_state = "pending",
        .touch = 1,
        .backoff_ms = ic->cfg->backoff_ms,
        .arg = w,
    };
    w->worker = mc_outcall_new(ic->svc, &def);
}

void inbound_close(interconnect_t *ic)
{
    struct inbound_worker *w = ic->inbound;
    if (!w)
        return;
    mc_outcall_destroy(&w->worker);
    free(w->url);
    free(w);
    ic->inbound = NULL;
}
