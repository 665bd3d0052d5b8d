/* carrier.c: the worker that creates requested shipments with the carrier's API.
 *
 * Every tick (MOTCUA_POSTAL_TICK_MS) one statement claims up to CLAIM_BATCH shipments
 * in 'requested' whose retry time has come (FOR UPDATE SKIP LOCKED, so several postal
 * processes share the work) and leases them for MOTCUA_POSTAL_LEASE_MS, longer than
 * any call may take. Each is then created with POST <carrier>/shipments; the answer
 * is recorded in one transaction: the tracking number, state 'created', and a
 * NotificationRequested "shipped" for the applicant in the outbox.
 *
 * Once only. The dossier code is the carrier's idempotency key (the reference): the
 * same reference returns the same shipment. A crash or SIGKILL between the carrier's
 * answer and our commit leaves the row 'requested' with a lease; when the lease runs
 * out the row is claimed again and the carrier answers with the shipment it already
 * made. The UPDATE is conditional on 'requested', so a late duplicate answer changes
 * nothing and notifies nobody twice.
 *
 * Retries. Connection refused, a timeout, 401/403/408/429 or 5xx: tried again after
 * MOTCUA_POSTAL_BACKOFF_MS, doubling, at most 10 minutes apart, for ever (an operator
 * sees last_error and tries). 400 or 422 means the carrier will never take this
 * shipment as it is: 'rejected', with the carrier's reason.
 *
 * Stop. When the service stops, the worker claims nothing more and the service waits
 * (MC_SERVICE_GRACE_MS at most) for the calls in flight; what is left is the lease's
 * to recover. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "postal.h"

#define CLAIM_BATCH 10

static const char CONTENT[] = "Kết quả giải quyết TTHC";

typedef struct {
    postal_t *p;
    long long id;
    int tries;
    char code[80];
    char tracking[80];
    long long fee;
    char error[256];
    mc_db_conn_t *conn;
    mc_outbox_t *outbox;
} job_t;

static const char *why(PGresult *res, int status)
{
    return res ? PQresultErrorMessage(res) : mc_strerror(status);
}

static void job_end(job_t *j)
{
    postal_t *p = j->p;
    if (j->conn)
        mc_db_release(j->conn); /* rolls back if still open */
    mc_outbox_destroy(&j->outbox);
    free(j);
    p->inflight--;
    carrier_idle_check(p);
}

/* ------------------------------------------------------------------ recording */

static void on_noted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    job_t *j = arg;
    if (status != MC_OK)
        mc_warn("carrier: cannot note the outcome for %s: %s", j->code, why(res, status));
    job_end(j);
}

/* A retry later (temporary failure) or 'rejected' (permanent); the lease is given up. */
static void note_failure(job_t *j, int permanent)
{
    mc_logd(MC_LOG_WARN, NULL, j->code, "carrier: shipment not created (try %d): %s%s", j->tries,
            j->error, permanent ? "; rejected" : "; will retry");
    mc_db_params_t q = {0};
    mc_db_param_int(&q, j->id);
    mc_db_param_text(&q, j->error);
    mc_db_param_int(&q, permanent);
    mc_db_param_int(&q, j->p->cfg->backoff_ms);
    mc_db_exec(
        mc_service_db(j->p->svc),
        "UPDATE postal.shipments SET lease_until = NULL, last_error = $2, updated_at = now(),"
        "  state = CASE WHEN $3::int = 1 THEN 'rejected' ELSE state END,"
        "  next_at = now() + make_interval(secs => least($4::bigint"
        "    * power(2, least(tries - 1, 20)), 600000) / 1000.0)"
        " WHERE id = $1 AND state = 'requested'",
        &q, 0, on_noted, j);
}

static void on_committed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    job_t *j = arg;
    if (status != MC_OK)
        mc_warn("carrier: commit for %s failed: %s", j->code, why(res, status));
    job_end(j);
}

static void on_emitted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    job_t *j = arg;
    if (status != MC_OK) {
        mc_warn("carrier: outbox for %s failed: %s", j->code, why(res, status));
        job_end(j);
        return;
    }
    mc_db_query(conn, "COMMIT", NULL, 0, on_committed, j);
}

static void on_created(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    job_t *j = arg;
    if (status != MC_OK) {
        mc_warn("carrier: cannot record the shipment of %s: %s", j->code, why(res, status));
        job_end(j);
        return;
    }
    if (PQntuples(res) != 1) { /* recorded meanwhile (a duplicate answer): nothing to do */
        mc_db_query(conn, "COMMIT", NULL, 0, on_committed, j);
        return;
    }
    mc_logd(MC_LOG_INFO, NULL, j->code, "carrier: shipment created, tracking %s, fee %lld",
            j->tracking, j->fee);
    Motcua__V1__NotificationRequested n = MOTCUA__V1__NOTIFICATION_REQUESTED__INIT;
    Motcua__V1__NotificationRequested__ParamsEntry pv[3];
    Motcua__V1__NotificationRequested__ParamsEntry *pp[3];
    const char *keys[3] = {"tracking", "procedure", "code"};
    const char *values[3] = {j->tracking, PQgetvalue(res, 0, 2), j->code};
    for (int i = 0; i < 3; i++) {
        motcua__v1__notification_requested__params_entry__init(&pv[i]);
        pv[i].key = (char *)keys[i];
        pv[i].value = (char *)values[i];
        pp[i] = &pv[i];
    }
    n.code = j->code;
    n.event = "shipped";
    n.email = PQgetvalue(res, 0, 0);
    n.phone = PQgetvalue(res, 0, 1);
    n.n_params = 3;
    n.params = pp;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    env.dossier_code = j->code;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_NOTIFICATION_REQUESTED;
    env.notification_requested = &n;
    j->outbox = mc_outbox_new("postal");
    mc_outbox_add(j->outbox, &env, NULL, NULL);
    mc_outbox_write(j->outbox, conn, on_emitted, j);
}

static void on_begun(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    job_t *j = arg;
    if (status != MC_OK) {
        mc_warn("carrier: begin failed: %s", why(res, status));
        job_end(j);
        return;
    }
    mc_db_params_t q = {0};
    mc_db_param_int(&q, j->id);
    mc_db_param_text(&q, j->tracking);
    mc_db_param_int(&q, j->fee);
    mc_db_query(conn,
                "UPDATE postal.shipments SET state = 'created', tracking_number = $2,"
                "  fee_vnd = $3::bigint, lease_until = NULL, last_error = NULL, updated_at = now()"
                " WHERE id = $1 AND state = 'requested'"
                " RETURNING coalesce(recipient->>'email', ''), coalesce(recipient->>'phone', ''),"
                "  procedure_name",
                &q, 0, on_created, j);
}

static void on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    job_t *j = arg;
    if (status != MC_OK) {
        if (status != MC_ECLOSED)
            mc_warn("carrier: no connection to record %s: %s", j->code, mc_strerror(status));
        job_end(j);
        return;
    }
    j->conn = conn;
    mc_db_query(conn, "BEGIN", NULL, 0, on_begun, j);
}

/* ------------------------------------------------------------------ the carrier's answer */

static void on_answer(int status, long code, const char *body, size_t len, void *arg)
{
    (void)len;
    job_t *j = arg;
    if (status == MC_ECLOSED) { /* stopping: the lease brings it back */
        job_end(j);
        return;
    }
    if (status != MC_OK) {
        snprintf(j->error, sizeof j->error, "carrier unreachable: %s", mc_strerror(status));
        note_failure(j, 0);
        return;
    }
    json_t *doc = json_loads(body, 0, NULL);
    const char *tracking = json_string_value(json_object_get(doc, "tracking_number"));
    if ((code == 200 || code == 201) && tracking && *tracking && strlen(tracking) < 64) {
        snprintf(j->tracking, sizeof j->tracking, "%s", tracking);
        j->fee = json_integer_value(json_object_get(doc, "fee"));
        json_decref(doc);
        mc_db_acquire(mc_service_db(j->p->svc), on_conn, j);
        return;
    }
    const char *message =
        json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    snprintf(j->error, sizeof j->error, "carrier answered HTTP %ld%s%.180s", code,
             message ? ": " : "", message ? message : "");
    json_decref(doc);
    note_failure(j, code == 400 || code == 422);
}

static void create(postal_t *p, PGresult *res, int r)
{
    job_t *j = mc_new(job_t);
    j->p = p;
    j->id = atoll(PQgetvalue(res, r, 0));
    snprintf(j->code, sizeof j->code, "%s", PQgetvalue(res, r, 1));
    j->tries = atoi(PQgetvalue(res, r, 5));
    json_t *recipient = json_loads(PQgetvalue(res, r, 3), 0, NULL);
    const postal_config_t *cfg = p->cfg;
    json_t *body = json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:{s:O?, s:O?, s:s}, s:{s:i, s:s}, s:I}", "reference", j->code,
        "sender", "name", cfg->sender_name, "phone", cfg->sender_phone, "address",
        cfg->sender_address, "receiver", "name", json_object_get(recipient, "name"), "phone",
        json_object_get(recipient, "phone"), "address", PQgetvalue(res, r, 2), "parcel", "weight_g",
        200, "content", CONTENT, "cod_amount", (json_int_t)atoll(PQgetvalue(res, r, 4)));
    json_decref(recipient);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char *url = mc_sprintf("%s/shipments", cfg->carrier_url);
    char *auth = mc_sprintf("Authorization: Bearer %s", cfg->carrier_token);
    const char *headers[] = {"Content-Type: application/json", auth, NULL};
    p->inflight++;
    mc_fetch_http(p->fetch, "POST", url, headers, text, strlen(text), cfg->timeout_ms, on_answer,
                  j);
    free(auth);
    free(url);
    free(text);
}

/* ------------------------------------------------------------------ claim */

static void on_claimed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    postal_t *p = arg;
    p->claiming = 0;
    if (status != MC_OK) {
        if (status != MC_ECLOSED)
            mc_warn("carrier: claim failed: %s", why(res, status));
        carrier_idle_check(p);
        return;
    }
    if (!p->fetch) { /* stopped meanwhile: the leases bring them back */
        carrier_idle_check(p);
        return;
    }
    for (int r = 0; r < PQntuples(res); r++)
        create(p, res, r);
}

static void tick(mc_service_t *svc)
{
    postal_t *p = postal_of(svc);
    if (p->stopping || p->claiming)
        return;
    p->claiming = 1;
    mc_db_params_t q = {0};
    mc_db_param_int(&q, CLAIM_BATCH);
    mc_db_param_int(&q, p->cfg->lease_ms);
    mc_db_exec(mc_service_db(svc),
               "UPDATE postal.shipments SET tries = tries + 1, updated_at = now(),"
               "  lease_until = now() + make_interval(secs => $2::bigint / 1000.0)"
               " WHERE id IN (SELECT id FROM postal.shipments WHERE state = 'requested'"
               "  AND next_at <= now() AND (lease_until IS NULL OR lease_until < now())"
               "  ORDER BY next_at LIMIT $1::int FOR UPDATE SKIP LOCKED)"
               " RETURNING id, code, delivery_address, recipient, cod_amount_vnd, tries",
               &q, 0, on_claimed, p);
}

/* ------------------------------------------------------------------ start and stop */

void carrier_idle_check(postal_t *p)
{
    if (p->stopping && !p->claiming && p->inflight == 0 && !p->stop_reported) {
        p->stop_reported = 1;
        mc_service_stopped(p->svc);
    }
}

static void begin_stop(void *arg)
{
    postal_t *p = arg;
    p->stopping = 1;
    carrier_idle_check(p);
}

static void close_fetch(void *arg)
{
    postal_t *p = arg;
    mc_fetch_destroy(&p->fetch); /* what is still in flight is the lease's to recover */
}

void carrier_start(postal_t *p)
{
    p->fetch = mc_fetch_new(mc_service_loop(p->svc));
    mc_service_on_stop(p->svc, begin_stop, close_fetch, p);
    mc_service_every(p->svc, (uint64_t)p->cfg->tick_ms, tick);
}

void carrier_close(postal_t *p)
{
    mc_fetch_destroy(&p->fetch); /* normally done at the stop already */
}
