/* webhook.c: the carrier's tracking events.
 *
 * POST /v1/postal/webhook with {tracking_number, status, attempt, final, reason, at}
 * and two headers: X-Timestamp (Unix seconds) and X-Signature (hex HMAC-SHA256 under
 * MOTCUA_CARRIER_WEBHOOK_SECRET over "<timestamp>.<raw body>"). A missing, forged or
 * stale signature (more than MOTCUA_CARRIER_WEBHOOK_MAX_AGE_S away from now, which
 * bounds replays) is answered 401 and logged as a warning, before the body is read;
 * a body that is not the JSON above 400; an unknown tracking number 404.
 *
 * States only move forward. An event is ordered by (attempt, rank of its status):
 * created < picked_up < in_transit < failed_attempt < failed_attempt final <
 * delivered = returned_to_sender; delivered, returned_to_sender and any final event
 * end the shipment. An event that is not after the shipment's current one (a repeat,
 * a replay, one that arrives late) changes nothing and is answered 200, so the
 * carrier stops resending it. What an event does, in one transaction with the row
 * locked (FOR UPDATE) and the event logged in postal.tracking_events:
 *   delivered                         ResultDelivered to routing (RETURNED)
 *   failed_attempt                    DeliveryFailed, final = false
 *   failed_attempt with final, or
 *   returned_to_sender                DeliveryFailed, final = true (back to the counter)
 * routing sends the applicant "delivered" and "delivery_failed" notifications. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "log.h"
#include "postal.h"
#include "signed_callback.h"

static const char *const statuses[] = {
    "created", "picked_up", "in_transit", "failed_attempt", "", "delivered", "returned_to_sender"};

/* The rank of a status: its index above; a final failed attempt ranks 4. -1: unknown. */
static int rank_of(const char *status, int final)
{
    for (int i = 0; i < (int)MC_COUNT(statuses); i++)
        if (statuses[i][0] && strcmp(statuses[i], status) == 0)
            return i == 3 && final ? 4 : i;
    return -1;
}

typedef struct {
    mc_http_req_t *req;
    mc_service_t *svc;
    mc_db_conn_t *conn;
    mc_outbox_t *outbox;
    json_t *doc;
    char *body;
    const char *tracking, *status, *reason, *at;
    int attempt, final, rank;
    char code[80];
    const char *verdict;
    char state[32];
} hook_t;

static void hook_free(hook_t *h)
{
    if (h->conn)
        mc_db_release(h->conn); /* rolls back if still open */
    mc_outbox_destroy(&h->outbox);
    json_decref(h->doc);
    free(h->body);
    free(h);
}

static void hook_fail(hook_t *h, PGresult *res, int status, const char *step)
{
    mc_warn("webhook: %s failed: %s", step, res ? PQresultErrorMessage(res) : mc_strerror(status));
    mc_http_reply_error(h->req, 503, "unavailable", "the shipment store is unavailable", NULL);
    hook_free(h);
}

static void hook_answer(hook_t *h)
{
    mc_logd(MC_LOG_INFO, mc_http_header(h->req, "x-trace-id"), h->code[0] ? h->code : NULL,
            "webhook tracking=%s status=%s attempt=%d final=%d: %s", h->tracking, h->status,
            h->attempt, h->final, h->verdict);
    mc_http_reply_json(h->req, 200,
                       json_pack("{s:s, s:s, s:s}", "tracking_number", h->tracking, "verdict",
                                 h->verdict, "state", h->state));
    hook_free(h);
}

/* ------------------------------------------------------------------ in the transaction */

static void on_committed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    hook_t *h = arg;
    if (status != MC_OK) {
        hook_fail(h, res, status, "commit");
        return;
    }
    hook_answer(h);
}

static void on_emitted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    hook_t *h = arg;
    if (status != MC_OK) {
        hook_fail(h, res, status, "outbox");
        return;
    }
    mc_db_query(conn, "COMMIT", NULL, 0, on_committed, h);
}

/* Logged in tracking_events and committed: answer 404. */
static void on_unknown(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    (void)res;
    (void)status;
    hook_t *h = arg;
    mc_logd(MC_LOG_WARN, mc_http_header(h->req, "x-trace-id"), NULL,
            "webhook for an unknown tracking number %s (status %s)", h->tracking, h->status);
    mc_http_reply_error(h->req, 404, "not_found", "no shipment with this tracking number",
                        "tracking_number");
    hook_free(h);
}

/* The report for routing, if the event calls for one. */
static void emit(hook_t *h)
{
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    env.dossier_code = h->code;
    Motcua__V1__ResultDelivered d = MOTCUA__V1__RESULT_DELIVERED__INIT;
    Motcua__V1__DeliveryFailed f = MOTCUA__V1__DELIVERY_FAILED__INIT;
    if (strcmp(h->status, "delivered") == 0) {
        d.code = h->code;
        d.tracking_number = (char *)h->tracking;
        d.delivered_at_ms = mc_wall_ms();
        env.body_case = MOTCUA__V1__ENVELOPE__BODY_RESULT_DELIVERED;
        env.result_delivered = &d;
    } else if (h->rank == 3 || h->rank == 4 || h->rank == 6) {
        f.code = h->code;
        f.tracking_number = (char *)h->tracking;
        f.reason = (char *)(*h->reason     ? h->reason
                            : h->rank == 6 ? "returned to sender"
                                           : "delivery attempt failed");
        f.final = h->rank != 3;
        env.body_case = MOTCUA__V1__ENVELOPE__BODY_DELIVERY_FAILED;
        env.delivery_failed = &f;
    } else {
        mc_db_query(h->conn, "COMMIT", NULL, 0, on_committed, h);
        return;
    }
    h->outbox = mc_outbox_new("postal");
    mc_outbox_add(h->outbox, &env, mc_http_header(h->req, "x-trace-id"), NULL);
    mc_outbox_write(h->outbox, h->conn, on_emitted, h);
}

static void on_recorded(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    hook_t *h = arg;
    if (status != MC_OK) {
        hook_fail(h, res, status, "record");
        return;
    }
    if (strcmp(h->verdict, "applied") == 0)
        emit(h);
    else
        mc_db_query(h->conn, "COMMIT", NULL, 0,
                    strcmp(h->verdict, "unknown") == 0 ? on_unknown : on_committed, h);
}

static void on_shipment(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    hook_t *h = arg;
    if (status != MC_OK) {
        hook_fail(h, res, status, "lock");
        return;
    }
    int found = PQntuples(res) == 1;
    int applied = 0;
    if (found) {
        snprintf(h->code, sizeof h->code, "%s", PQgetvalue(res, 0, 0));
        snprintf(h->state, sizeof h->state, "%s", PQgetvalue(res, 0, 1));
        int cur_attempt = atoi(PQgetvalue(res, 0, 2));
        int cur_final = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
        int cur_rank = rank_of(h->state, cur_final);
        int ended = cur_final || cur_rank >= 5;
        applied = !ended && cur_rank >= 0 &&
                  (h->attempt > cur_attempt || (h->attempt == cur_attempt && h->rank > cur_rank));
    }
    h->verdict = !found ? "unknown" : applied ? "applied" : "ignored";
    if (applied)
        snprintf(h->state, sizeof h->state, "%s", h->status);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, h->tracking);
    mc_db_param_text(&p, h->code);
    mc_db_param_text(&p, h->status);
    mc_db_param_int(&p, h->attempt);
    mc_db_param_text(&p, h->final ? "true" : "false");
    mc_db_param_text(&p, h->reason);
    mc_db_param_text(&p, h->verdict);
    mc_db_param_text(&p, h->at);
    mc_db_param_text(&p, h->body);
    mc_db_query(conn,
                "WITH s AS (UPDATE postal.shipments SET state = $3, attempt = $4::int,"
                "   final = $5::boolean OR $3 IN ('delivered', 'returned_to_sender'),"
                "   updated_at = now() WHERE tracking_number = $1 AND $7 = 'applied'"
                "   RETURNING id)"
                " INSERT INTO postal.tracking_events (tracking_number, code, status, attempt,"
                "  final, reason, at, verdict, body)"
                " SELECT $1, nullif($2, ''), $3, $4::int, $5::boolean, $6, $8, $7, $9"
                " WHERE (SELECT count(*) FROM s) >= 0",
                &p, 0, on_recorded, h);
}

static void on_begun(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    hook_t *h = arg;
    if (status != MC_OK) {
        hook_fail(h, res, status, "begin");
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, h->tracking);
    mc_db_query(conn,
                "SELECT code, state, attempt, final FROM postal.shipments"
                " WHERE tracking_number = $1 FOR UPDATE",
                &p, 0, on_shipment, h);
}

static void on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    hook_t *h = arg;
    if (status != MC_OK) {
        hook_fail(h, NULL, status, "connection");
        return;
    }
    h->conn = conn;
    mc_db_query(conn, "BEGIN", NULL, 0, on_begun, h);
}

/* ------------------------------------------------------------------ entry point */

void webhook_receive(mc_http_req_t *req, void *arg)
{
    postal_t *p = postal_of(arg);
    if (mc_signed_callback_check(req, p->cfg->webhook_secret, p->cfg->webhook_max_age_s, "webhook"))
        return;
    json_t *doc = mc_http_json_body(req);
    if (!doc)
        return;
    const char *tracking = json_string_value(json_object_get(doc, "tracking_number"));
    const char *st = json_string_value(json_object_get(doc, "status"));
    json_t *attempt = json_object_get(doc, "attempt");
    json_t *final = json_object_get(doc, "final");
    json_t *reason = json_object_get(doc, "reason");
    json_t *at = json_object_get(doc, "at");
    const char *field = NULL, *message = NULL;
    int rank = st ? rank_of(st, json_is_true(final)) : -1;
    if (!tracking || !*tracking || strlen(tracking) > 64)
        field = "tracking_number", message = "tracking_number is required";
    else if (rank < 1)
        field = "status", message = "status must be picked_up, in_transit, delivered,"
                                    " failed_attempt or returned_to_sender";
    else if (attempt && !json_is_null(attempt) &&
             (!json_is_integer(attempt) || json_integer_value(attempt) < 0 ||
              json_integer_value(attempt) > 100))
        field = "attempt", message = "attempt must be an integer 0..100";
    else if (final && !json_is_null(final) && !json_is_boolean(final))
        field = "final", message = "final must be true or false";
    else if (reason && !json_is_null(reason) &&
             (!json_is_string(reason) || strlen(json_string_value(reason)) > 500))
        field = "reason", message = "reason must be a string";
    else if (at && !json_is_null(at) && (!json_is_string(at) || strlen(json_string_value(at)) > 64))
        field = "at", message = "at must be a time (string)";
    if (field) {
        json_decref(doc);
        mc_http_reply_error(req, 400, "invalid", message, field);
        return;
    }
    hook_t *h = mc_new(hook_t);
    h->req = req;
    h->svc = arg;
    h->doc = doc;
    size_t len;
    const char *body = mc_http_body(req, &len);
    h->body = mc_strndup(body ? body : "", body ? len : 0);
    h->tracking = tracking;
    h->status = st;
    h->attempt = json_is_integer(attempt) ? (int)json_integer_value(attempt) : 0;
    if (h->attempt == 0)
        h->attempt = 1; /* the first attempt when the carrier does not say */
    h->final = json_is_true(final) || strcmp(st, "returned_to_sender") == 0;
    h->rank = rank;
    h->reason = json_is_string(reason) ? json_string_value(reason) : "";
    h->at = json_is_string(at) ? json_string_value(at) : "";
    mc_db_acquire(mc_service_db(arg), on_conn, h);
}
