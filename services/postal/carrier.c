/* carrier.c: the worker that creates requested shipments with the carrier's API.
 *
 * The mechanics (timer, claim, calls in flight, stop, retry later) are common/outcall.h's.
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
    mc_outcall_job_t job; /* job.id: the shipment */
    postal_t *p;
    int tries;
    char code[80];
    char tracking[80];
    long long fee;
    char error[256];
} job_t;

static const char *why(PGresult *res, int status)
{
    return res ? PQresultErrorMessage(res) : mc_strerror(status);
}

/* ------------------------------------------------------------------ recording */

/* A retry later (temporary failure) or 'rejected' (permanent); the lease is given up. */
static void note_failure(job_t *j, int permanent)
{
    mc_logd(MC_LOG_WARN, NULL, j->code, "carrier: shipment not created (try %d): %s%s", j->tries,
            j->error, permanent ? "; rejected" : "; will retry");
    if (!permanent) {
        mc_outcall_retry(&j->job, j->error);
        return;
    }
    mc_db_params_t q = {0};
    mc_db_param_int(&q, j->job.id);
    mc_db_param_text(&q, j->error);
    mc_outcall_record(&j->job,
                      "UPDATE postal.shipments SET state = 'rejected', lease_until = NULL,"
                      "  last_error = $2, updated_at = now() WHERE id = $1 AND state = 'requested'",
                      &q);
}

static void on_created(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    job_t *j = arg;
    if (status != MC_OK) {
        mc_warn("carrier: cannot record the shipment of %s: %s", j->code, why(res, status));
        mc_outcall_done(&j->job);
        return;
    }
    if (PQntuples(res) != 1) { /* recorded meanwhile (a duplicate answer): nothing to do */
        mc_outcall_commit(&j->job);
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
    mc_outbox_t *outbox = mc_outbox_new("postal");
    mc_outbox_add(outbox, &env, NULL, NULL);
    mc_outcall_emit(&j->job, &outbox);
}

static void on_begun(mc_outcall_job_t *job, mc_db_conn_t *conn)
{
    job_t *j = mc_container_of(job, job_t, job);
    mc_db_params_t q = {0};
    mc_db_param_int(&q, job->id);
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

/* ------------------------------------------------------------------ the carrier's answer */

static void on_answer(int status, long code, const char *body, size_t len, void *arg)
{
    (void)len;
    job_t *j = arg;
    if (status == MC_ECLOSED) { /* stopping: the lease brings it back */
        mc_outcall_done(&j->job);
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
        mc_outcall_begin(&j->job, on_begun);
        return;
    }
    const char *message =
        json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    snprintf(j->error, sizeof j->error, "carrier answered HTTP %ld%s%.180s", code,
             message ? ": " : "", message ? message : "");
    json_decref(doc);
    note_failure(j, code == 400 || code == 422);
}

static void create(mc_outcall_job_t *job, PGresult *res, int r, void *arg)
{
    postal_t *p = arg;
    job_t *j = mc_container_of(job, job_t, job);
    j->p = p;
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
    mc_fetch_http(mc_outcall_fetch(p->carrier), "POST", url, headers, text, strlen(text),
                  cfg->timeout_ms, on_answer, j);
    free(auth);
    free(url);
    free(text);
}

/* ------------------------------------------------------------------ start and stop */

void carrier_start(postal_t *p)
{
    mc_outcall_def_t def = {
        .name = "carrier",
        .tick_ms = (uint64_t)p->cfg->tick_ms,
        .claim_returning = "id, code, delivery_address, recipient, cod_amount_vnd, tries",
        .batch = CLAIM_BATCH,
        .lease_ms = p->cfg->lease_ms,
        .job_size = sizeof(job_t),
        .start = create,
        .table = "postal.shipments",
        .due_state = "requested",
        .touch = 1,
        .backoff_ms = p->cfg->backoff_ms,
        .arg = p,
    };
    p->carrier = mc_outcall_new(p->svc, &def);
}

void carrier_close(postal_t *p)
{
    mc_outcall_destroy(&p->carrier);
}
