/* refund.c: refunds of paid fees, decided here and paid back through the gateway's
 * refund API (VNPay style).
 *
 * Decision. DossierStatusChanged to REJECTED_AT_INTAKE or WITHDRAWN for a dossier
 * whose fee was paid: in the bus's inbox transaction (so once) the order becomes
 * refunded and a refund is written `requested`. An order still pending for such a
 * dossier is closed (failed, reason the new status) so nobody pays for a closed
 * dossier. Every other status is ignored.
 *
 * Worker (the mechanics: common/outcall.h). Every MOTCUA_PAYMENT_REFUND_TICK_MS the
 * requested refunds that are due are claimed (FOR UPDATE SKIP LOCKED, so replicas
 * share them) and leased for MOTCUA_PAYMENT_LEASE_MS, longer than any call. Each is sent to the
 * gateway's refund API, vnp_RequestId = the refund id, which is the gateway's
 * idempotency key. The answer's vnp_SecureHash is checked before anything is believed:
 *   00            completed, and RefundCompleted to routing, in one transaction;
 *   94            a duplicate request (an earlier try reached the gateway, its answer
 *                 was lost): the gateway's transaction list for the order decides;
 *                 refunded there → completed as above, else tried again;
 *   other codes   failed, with the code, a warn line; an operator sees it on the order;
 *   no answer, HTTP 408/429/5xx, a bad signature, an unreadable answer: tried again
 *                 after MOTCUA_PAYMENT_BACKOFF_MS, doubling, at most 10 minutes apart.
 * A crash between the gateway's answer and our commit leaves the refund requested and
 * leased; the next try gets 94 and the list settles it, so the money goes back once
 * and RefundCompleted is emitted once (the update is conditional on 'requested'). */
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dossier_state.h"
#include "error.h"
#include "log.h"
#include "payment.h"

#define S(x)        MOTCUA__V1__DOSSIER_STATE__STATE_##x
#define CLAIM_BATCH 10

static const char *why(PGresult *res, int status)
{
    return res ? PQresultErrorMessage(res) : mc_strerror(status);
}

/* ---------------------------------------------------------------- the decision */

static void on_requested(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_msg_t *msg = arg;
    if (status != MC_OK) {
        mc_bus_done(msg, status, why(res, status));
        return;
    }
    const mc_envelope_t *in = mc_bus_msg_envelope(msg);
    for (int i = 0; i < PQntuples(res); i++)
        mc_logd(MC_LOG_INFO, in->trace_id, in->dossier_status_changed->code,
                "fee order %s: refund %s of %s VND requested (%s)", PQgetvalue(res, i, 0),
                PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                mc_state_name(in->dossier_status_changed->to));
    mc_bus_done(msg, MC_OK, NULL);
}

void refund_on_status(mc_bus_msg_t *msg, void *arg)
{
    (void)arg;
    const mc_envelope_t *in = mc_bus_msg_envelope(msg);
    const Motcua__V1__DossierStatusChanged *ev = in->dossier_status_changed;
    if (ev->to != S(REJECTED_AT_INTAKE) && ev->to != S(WITHDRAWN)) {
        mc_bus_done(msg, MC_OK, NULL); /* nothing to do with the fee */
        return;
    }
    if (!ev->code[0]) {
        mc_bus_done(msg, MC_EINVAL, "DossierStatusChanged without a code");
        return;
    }
    static const char *sql =
        "WITH r AS (UPDATE payment.orders SET state = 'refunded', closed_at = now(), reason = $2"
        "   WHERE code = $1 AND state = 'paid' RETURNING id, code, amount_vnd),"
        " ins AS (INSERT INTO payment.refunds (order_id, code, amount_vnd, reason, trace_id,"
        "   message_id) SELECT id, code, amount_vnd, $2, $3, $4 FROM r"
        "   RETURNING order_id, id, amount_vnd),"
        " c AS (UPDATE payment.orders SET state = 'failed', closed_at = now(), reason = $2"
        "   WHERE code = $1 AND state = 'pending')"
        " SELECT order_id, id, amount_vnd FROM ins";
    mc_db_params_t p = {0};
    mc_db_param_text(&p, ev->code);
    mc_db_param_text(&p, mc_state_name(ev->to));
    mc_db_param_text(&p, in->trace_id ? in->trace_id : "");
    mc_db_param_text(&p, in->message_id ? in->message_id : "");
    mc_db_query(mc_bus_msg_conn(msg), sql, &p, 0, on_requested, msg);
}

/* ---------------------------------------------------------------- the worker */

typedef struct {
    mc_outcall_job_t job; /* job.id: the refund */
    payment_t *p;
    int tries;
    char request_id[24];
    char order_id[16];
    char code[80];
    char response[8];     /* vnp_ResponseCode */
    char transaction[40]; /* the refund's vnp_TransactionNo */
    char error[256];
} job_t;

/* Tried again later (temporary) or failed for good (the gateway's code); the lease
 * is given up either way. */
static void note_failure(job_t *j, int permanent)
{
    mc_logd(MC_LOG_WARN, NULL, j->code, "refund %lld of order %s not done (try %d): %s%s",
            j->job.id, j->order_id, j->tries, j->error, permanent ? "; failed" : "; will retry");
    if (!permanent) {
        mc_outcall_retry(&j->job, j->error);
        return;
    }
    mc_db_params_t q = {0};
    mc_db_param_int(&q, j->job.id);
    mc_db_param_text(&q, j->error);
    mc_db_param_text(&q, j->response);
    mc_outcall_record(&j->job,
                      "UPDATE payment.refunds SET state = 'failed', lease_until = NULL,"
                      "  last_error = $2, response_code = coalesce(nullif($3, ''), response_code)"
                      " WHERE id = $1 AND state = 'requested'",
                      &q);
}

static void on_completed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    job_t *j = arg;
    if (status != MC_OK) {
        mc_warn("refund: cannot record refund %lld: %s", j->job.id, why(res, status));
        mc_outcall_done(&j->job);
        return;
    }
    if (PQntuples(res) != 1) { /* recorded meanwhile: nothing to emit */
        mc_outcall_commit(&j->job);
        return;
    }
    const char *trace = PQgetvalue(res, 0, 2), *cause = PQgetvalue(res, 0, 3);
    Motcua__V1__RefundCompleted ev = MOTCUA__V1__REFUND_COMPLETED__INIT;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    ev.code = j->code;
    ev.order_id = j->order_id;
    ev.amount_vnd = atoll(PQgetvalue(res, 0, 0));
    ev.reason = PQgetvalue(res, 0, 1);
    env.dossier_code = ev.code;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_REFUND_COMPLETED;
    env.refund_completed = &ev;
    mc_outbox_t *outbox = mc_outbox_new("payment");
    mc_outbox_add(outbox, &env, *trace ? trace : NULL, *cause ? cause : NULL);
    mc_logd(MC_LOG_INFO, *trace ? trace : NULL, j->code,
            "fee order %s refunded by the gateway (%lld VND, %s, transaction %s)", j->order_id,
            (long long)ev.amount_vnd, ev.reason, j->transaction[0] ? j->transaction : "-");
    mc_outcall_emit(&j->job, &outbox);
}

static void on_begun(mc_outcall_job_t *job, mc_db_conn_t *conn)
{
    job_t *j = mc_container_of(job, job_t, job);
    mc_db_params_t q = {0};
    mc_db_param_int(&q, job->id);
    mc_db_param_text(&q, j->response);
    mc_db_param_text(&q, j->transaction);
    mc_db_query(conn,
                "UPDATE payment.refunds SET state = 'completed', completed_at = now(),"
                "  response_code = $2, bank_transaction = nullif($3, ''), lease_until = NULL,"
                "  last_error = NULL WHERE id = $1 AND state = 'requested'"
                " RETURNING amount_vnd, reason, coalesce(trace_id, ''), coalesce(message_id, '')",
                &q, 0, on_completed, j);
}

static void complete(job_t *j)
{
    mc_outcall_begin(&j->job, on_begun);
}

/* ---------------------------------------------------------------- the gateway's answers */

/* 94: the list of the order's transactions says whether the refund was made. */
static void on_list(int status, long code, const char *body, size_t len, void *arg)
{
    (void)len;
    job_t *j = arg;
    if (status == MC_ECLOSED) {
        mc_outcall_done(&j->job);
        return;
    }
    json_t *doc = status == MC_OK && code == 200 ? json_loads(body, 0, NULL) : NULL;
    json_t *list = json_object_get(doc, "transactions"), *t;
    size_t i;
    int refunded = 0;
    json_array_foreach(list, i, t)
    {
        const char *type = json_string_value(json_object_get(t, "vnp_TransactionType"));
        const char *st = json_string_value(json_object_get(t, "vnp_TransactionStatus"));
        const char *ref = json_string_value(json_object_get(t, "vnp_TxnRef"));
        const char *no = json_string_value(json_object_get(t, "vnp_TransactionNo"));
        if (type && st && ref && strcmp(ref, j->order_id) == 0 && strcmp(type, "02") == 0 &&
            strcmp(st, "00") == 0) {
            refunded = 1;
            snprintf(j->transaction, sizeof j->transaction, "%s", no ? no : "");
        }
    }
    json_decref(doc);
    if (refunded) {
        snprintf(j->response, sizeof j->response, "94");
        complete(j);
        return;
    }
    snprintf(j->error, sizeof j->error, "gateway answered 94 (duplicate) but its list %s",
             doc ? "shows no refund" : "could not be read");
    j->response[0] = '\0';
    note_failure(j, 0);
}

/* The answer's fields in the order VNPay signs them. */
static const char *const answer_keys[] = {
    "vnp_ResponseId", "vnp_Command",       "vnp_ResponseCode",    "vnp_Message",
    "vnp_TmnCode",    "vnp_TxnRef",        "vnp_Amount",          "vnp_BankCode",
    "vnp_PayDate",    "vnp_TransactionNo", "vnp_TransactionType", "vnp_TransactionStatus",
    "vnp_OrderInfo",
};

static const char *field(json_t *doc, const char *key)
{
    json_t *v = json_object_get(doc, key);
    return json_is_string(v) ? json_string_value(v) : "";
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
        snprintf(j->error, sizeof j->error, "gateway unreachable: %s", mc_strerror(status));
        note_failure(j, 0);
        return;
    }
    if (code != 200) {
        snprintf(j->error, sizeof j->error, "gateway answered HTTP %ld", code);
        note_failure(j, !(code == 408 || code == 429 || code >= 500));
        return;
    }
    json_t *doc = json_loads(body, 0, NULL);
    const char *values[MC_COUNT(answer_keys)];
    for (size_t i = 0; i < MC_COUNT(answer_keys); i++)
        values[i] = field(doc, answer_keys[i]);
    char want[VNP_HASH_HEX + 1];
    gateway_sign_fields(j->p->cfg->secret, values, MC_COUNT(values), want);
    const char *got = field(doc, "vnp_SecureHash");
    char lower[VNP_HASH_HEX + 1] = {0};
    for (size_t i = 0; i < VNP_HASH_HEX && got[i]; i++)
        lower[i] = (char)tolower((unsigned char)got[i]);
    if (!doc || strlen(got) != VNP_HASH_HEX || sodium_memcmp(want, lower, VNP_HASH_HEX) != 0) {
        snprintf(j->error, sizeof j->error, "gateway answer %s; not believed",
                 doc ? "with a bad vnp_SecureHash" : "unreadable");
        json_decref(doc);
        note_failure(j, 0);
        return;
    }
    const char *rsp = field(doc, "vnp_ResponseCode");
    snprintf(j->response, sizeof j->response, "%s", rsp);
    snprintf(j->transaction, sizeof j->transaction, "%s", field(doc, "vnp_TransactionNo"));
    if (strcmp(rsp, "00") == 0 && strcmp(field(doc, "vnp_TxnRef"), j->order_id) == 0) {
        json_decref(doc);
        complete(j);
        return;
    }
    if (strcmp(rsp, "94") == 0) {
        json_decref(doc);
        j->transaction[0] = '\0';
        gateway_list(j->p, NULL, j->order_id, on_list, j);
        return;
    }
    snprintf(j->error, sizeof j->error, "gateway refused the refund: %s %.120s", rsp,
             field(doc, "vnp_Message"));
    json_decref(doc);
    note_failure(j, 1);
}

static void ask(mc_outcall_job_t *job, PGresult *res, int r, void *arg)
{
    payment_t *p = arg;
    const payment_config_t *cfg = p->cfg;
    job_t *j = mc_container_of(job, job_t, job);
    j->p = p;
    snprintf(j->request_id, sizeof j->request_id, "%lld", job->id);
    snprintf(j->order_id, sizeof j->order_id, "%s", PQgetvalue(res, r, 1));
    snprintf(j->code, sizeof j->code, "%s", PQgetvalue(res, r, 2));
    j->tries = atoi(PQgetvalue(res, r, 3));
    char amount[32], created[15];
    snprintf(amount, sizeof amount, "%lld", atoll(PQgetvalue(res, r, 4)) * 100);
    vnpay_date(mc_wall_ms(), created);
    char *info = mc_sprintf("Hoan tien le phi ho so %s", j->code);
    /* The fields in the order VNPay signs a refund request. */
    const char *keys[] = {"vnp_RequestId", "vnp_Version",         "vnp_Command",
                          "vnp_TmnCode",   "vnp_TransactionType", "vnp_TxnRef",
                          "vnp_Amount",    "vnp_TransactionNo",   "vnp_TransactionDate",
                          "vnp_CreateBy",  "vnp_CreateDate",      "vnp_IpAddr",
                          "vnp_OrderInfo"};
    const char *values[] = {j->request_id,
                            "2.1.0",
                            "refund",
                            cfg->tmn_code,
                            "02",
                            j->order_id,
                            amount,
                            PQgetvalue(res, r, 5),
                            PQgetvalue(res, r, 6),
                            "motcua",
                            created,
                            "127.0.0.1",
                            info};
    char hash[VNP_HASH_HEX + 1];
    gateway_sign_fields(cfg->secret, values, MC_COUNT(values), hash);
    json_t *body = json_object();
    for (size_t i = 0; i < MC_COUNT(keys); i++)
        json_object_set_new(body, keys[i], json_string(values[i]));
    json_object_set_new(body, "vnp_SecureHash", json_string(hash));
    mc_logd(MC_LOG_INFO, NULL, j->code, "refund %lld of order %s sent to the gateway (try %d)",
            job->id, j->order_id, j->tries);
    gateway_api(p, body, on_answer, j);
    json_decref(body);
    free(info);
}

void refund_start(payment_t *p)
{
    mc_outcall_def_t def = {
        .name = "refund",
        .tick_ms = (uint64_t)p->cfg->refund_tick_ms,
        .claim_sql = "UPDATE payment.refunds r SET tries = r.tries + 1,"
                     "  lease_until = now() + make_interval(secs => $2::bigint / 1000.0)"
                     " FROM payment.orders o WHERE o.id = r.order_id AND r.id IN (SELECT id"
                     "  FROM payment.refunds WHERE state = 'requested' AND next_at <= now()"
                     "  AND (lease_until IS NULL OR lease_until < now())"
                     "  ORDER BY next_at LIMIT $1::int FOR UPDATE SKIP LOCKED)"
                     " RETURNING r.id, r.order_id, r.code, r.tries, r.amount_vnd,"
                     "  coalesce(o.bank_transaction, ''), coalesce(o.pay_date, '')",
        .batch = CLAIM_BATCH,
        .lease_ms = p->cfg->lease_ms,
        .job_size = sizeof(job_t),
        .start = ask,
        .table = "payment.refunds",
        .due_state = "requested",
        .backoff_ms = p->cfg->backoff_ms,
        .fetch = &p->fetch, /* gateway.c's */
        .arg = p,
    };
    p->refunds = mc_outcall_new(p->svc, &def);
}

void refund_close(payment_t *p)
{
    mc_outcall_destroy(&p->refunds);
}
