/* reconcile.c: the daily reconciliation of fee orders and refunds against the bank
 * gateway's transaction list.
 *
 * Once a day, after MOTCUA_PAYMENT_RECONCILE_AT (local time, Asia/Ho_Chi_Minh), the
 * previous day is reconciled if no scheduled run of it is stored yet (the timer looks
 * every minute, so a service that was down at that time catches up when it starts);
 * an operator may run any day at any time (POST /v1/payments/reconciliation). A run
 * fetches the gateway's list of the day (gateway.c), then one statement compares it
 * with payment.orders and payment.refunds and stores the run and its mismatches:
 *   paid_at_gateway_only      the gateway took the money; here the order is not paid
 *                             (unknown, pending, failed, expired);
 *   paid_here_only            paid here that day; the gateway has no successful
 *                             payment for it (unknown there, or failed there);
 *   amount                    both paid, the amounts differ;
 *   refunded_here_only        refund completed here that day; no refund at the gateway;
 *   refunded_at_gateway_only  the gateway refunded it; here no completed refund.
 * Each mismatch is logged at warn. One run at a time per process; a failed fetch
 * stores nothing (the timer tries again a minute later). Nothing is corrected: the
 * finance office decides. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "log.h"
#include "payment.h"

#define LOCAL(col)                                                                                 \
    "to_char(" col " AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')"

typedef struct {
    payment_t *p;
    mc_http_req_t *req; /* NULL for the scheduled run */
    char day[11];       /* YYYY-MM-DD */
    const char *trigger;
} run_t;

int reconcile_parse_at(const char *at)
{
    int h, m;
    char tail;
    if (!at || strlen(at) != 5 || sscanf(at, "%2d:%2d%c", &h, &m, &tail) != 2 || h < 0 || h > 23 ||
        m < 0 || m > 59)
        return -1;
    return h * 60 + m;
}

/* The local (UTC+7) calendar day `days` after today, YYYY-MM-DD; *minute gets the
 * local minute of the day now. */
static void local_day(int days, char out[11], int *minute)
{
    time_t t = (time_t)(mc_wall_ms() / 1000) + 7 * 3600 + (time_t)days * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
    if (minute)
        *minute = tm.tm_hour * 60 + tm.tm_min;
}

static int day_ok(const char *d)
{
    int y, m, dd;
    char tail;
    return d && strlen(d) == 10 && sscanf(d, "%4d-%2d-%2d%c", &y, &m, &dd, &tail) == 3 &&
           y >= 2000 && m >= 1 && m <= 12 && dd >= 1 && dd <= 31;
}

static const char *why(PGresult *res, int status)
{
    return res ? PQresultErrorMessage(res) : mc_strerror(status);
}

/* ---------------------------------------------------------------- showing a run */

static void on_shown(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_error("reconcile: %s", why(res, status));
        mc_http_reply_error(req, 503, "unavailable", "the payment store is unavailable", NULL);
        return;
    }
    if (PQntuples(res) != 1) {
        mc_http_reply_error(req, 404, "not_found", "no reconciliation of this day", "date");
        return;
    }
    int code = strcmp(mc_http_method(req), "POST") == 0 ? 201 : 200; /* a new run, or shown */
    mc_http_reply_json(req, code, json_loads(PQgetvalue(res, 0, 0), 0, NULL));
}

static void show(mc_http_req_t *req, payment_t *p, const char *day, long long run_id)
{
    // clang-format off
    static const char *sql =
        "SELECT json_build_object('id', r.id, 'date', to_char(r.day, 'YYYY-MM-DD'),"
        " 'trigger', r.trigger, 'gateway_transactions', r.gateway_count,"
        " 'mismatch_count', r.mismatches, 'started_at', " LOCAL("r.started_at") ","
        " 'mismatches', (SELECT coalesce(json_agg(json_build_object('order_id', m.order_id,"
        "   'kind', m.kind, 'gateway_amount_vnd', m.gateway_amount_vnd,"
        "   'our_amount_vnd', m.our_amount_vnd, 'detail', m.detail) ORDER BY m.id), '[]')"
        "   FROM payment.reconciliation_mismatches m WHERE m.run_id = r.id))"
        " FROM payment.reconciliation_runs r"
        " WHERE (nullif($1, '') IS NULL OR r.day = nullif($1, '')::date)"
        "  AND ($2::bigint = 0 OR r.id = $2::bigint)"
        " ORDER BY r.id DESC LIMIT 1";
    // clang-format on
    mc_db_params_t q = {0};
    mc_db_param_text(&q, day ? day : "");
    mc_db_param_int(&q, run_id);
    mc_db_exec(mc_service_db(p->svc), sql, &q, 0, on_shown, req);
}

static void show_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    (void)who;
    const char *day = mc_http_query(req, "date");
    if (day && *day && !day_ok(day)) {
        mc_http_reply_error(req, 400, "invalid", "date is YYYY-MM-DD", "date");
        return;
    }
    show(req, payment_of(arg), day, 0);
}

void reconcile_show(mc_http_req_t *req, void *arg)
{
    mc_auth_require(payment_of(arg)->auth, req, MC_SCOPE_OPERATOR, show_as, arg);
}

/* ---------------------------------------------------------------- a run */

static void run_end(run_t *run, const char *failed)
{
    if (failed) {
        mc_warn("reconcile: %s of %s failed: %s", run->trigger, run->day, failed);
        if (run->req)
            mc_http_reply_error(run->req, 502, "unavailable", failed, NULL);
    }
    run->p->reconciling = 0;
    free(run);
}

// clang-format off
static const char *compare_sql =
    "WITH g AS (SELECT * FROM json_to_recordset($2::json)"
    "   AS x(txn text, type text, status text, amount_vnd bigint)),"
    " gp AS (SELECT txn, max(amount_vnd) AS amount_vnd FROM g"
    "   WHERE type = '01' AND status = '00' GROUP BY txn),"
    " gf AS (SELECT txn, string_agg(DISTINCT status, ',') AS st FROM g"
    "   WHERE type = '01' AND status <> '00' GROUP BY txn),"
    " gr AS (SELECT DISTINCT txn FROM g WHERE type = '02' AND status = '00'),"
    " lp AS (SELECT id, amount_vnd FROM payment.orders WHERE paid_at IS NOT NULL"
    "   AND (paid_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date = $1::date),"
    " lr AS (SELECT order_id, amount_vnd FROM payment.refunds WHERE state = 'completed'"
    "   AND (completed_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date = $1::date),"
    " m AS ("
    "  SELECT gp.txn AS order_id, 'paid_at_gateway_only' AS kind, gp.amount_vnd AS gw,"
    "   o.amount_vnd AS ours, CASE WHEN o.id IS NULL THEN 'the gateway took a payment for an"
    "   order unknown here' ELSE 'the gateway took a payment; here the order is ' || o.state"
    "   END AS detail FROM gp LEFT JOIN payment.orders o ON o.id = gp.txn WHERE o.paid_at IS NULL"
    "  UNION ALL"
    "  SELECT lp.id, 'paid_here_only', NULL, lp.amount_vnd, CASE WHEN gf.txn IS NULL THEN"
    "   'paid here; unknown to the gateway' ELSE 'paid here; failed at the gateway (status '"
    "   || gf.st || ')' END FROM lp LEFT JOIN gf ON gf.txn = lp.id"
    "   WHERE NOT EXISTS (SELECT 1 FROM gp WHERE gp.txn = lp.id)"
    "  UNION ALL"
    "  SELECT gp.txn, 'amount', gp.amount_vnd, o.amount_vnd, 'the amounts differ'"
    "   FROM gp JOIN payment.orders o ON o.id = gp.txn"
    "   WHERE o.paid_at IS NOT NULL AND o.amount_vnd <> gp.amount_vnd"
    "  UNION ALL"
    "  SELECT lr.order_id, 'refunded_here_only', NULL, lr.amount_vnd,"
    "   'refund completed here; no refund at the gateway' FROM lr"
    "   WHERE NOT EXISTS (SELECT 1 FROM gr WHERE gr.txn = lr.order_id)"
    "  UNION ALL"
    "  SELECT gr.txn, 'refunded_at_gateway_only', NULL, f.amount_vnd,"
    "   'the gateway refunded it; here the refund is ' || coalesce(f.state, 'unknown')"
    "   FROM gr LEFT JOIN payment.refunds f ON f.order_id = gr.txn"
    "   WHERE f.state IS DISTINCT FROM 'completed'),"
    " run AS (INSERT INTO payment.reconciliation_runs (day, trigger, gateway_count, mismatches)"
    "   SELECT $1::date, $3, (SELECT count(*) FROM g), (SELECT count(*) FROM m) RETURNING id),"
    " ins AS (INSERT INTO payment.reconciliation_mismatches (run_id, order_id, kind,"
    "   gateway_amount_vnd, our_amount_vnd, detail)"
    "   SELECT run.id, m.order_id, m.kind, m.gw, m.ours, m.detail FROM run, m)"
    " SELECT run.id, m.order_id, m.kind, coalesce(m.gw::text, '-'), coalesce(m.ours::text, '-'),"
    "  m.detail FROM run LEFT JOIN m ON true";
// clang-format on

static void on_compared(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    run_t *run = arg;
    if (status != MC_OK) {
        run_end(run, why(res, status));
        return;
    }
    int found = 0;
    for (int r = 0; r < PQntuples(res); r++) {
        if (PQgetisnull(res, r, 1))
            continue;
        found++;
        mc_warn("reconcile: %s mismatch, order %s, %s (gateway %s VND, here %s VND)", run->day,
                PQgetvalue(res, r, 1), PQgetvalue(res, r, 5), PQgetvalue(res, r, 3),
                PQgetvalue(res, r, 4));
    }
    long long id = PQntuples(res) ? atoll(PQgetvalue(res, 0, 0)) : 0;
    mc_info("reconcile: %s run %lld of %s: %d mismatch(es)", run->trigger, id, run->day, found);
    if (run->req)
        show(run->req, run->p, run->day, id);
    run_end(run, NULL);
}

static void on_list(int status, long code, const char *body, size_t len, void *arg)
{
    (void)len;
    run_t *run = arg;
    if (status != MC_OK) {
        run_end(run, status == MC_ECLOSED ? "stopping" : mc_strerror(status));
        return;
    }
    json_t *doc = code == 200 ? json_loads(body, 0, NULL) : NULL;
    json_t *list = json_object_get(doc, "transactions");
    if (!json_is_array(list)) {
        char failed[64];
        snprintf(failed, sizeof failed, "the gateway's list is unreadable (HTTP %ld)", code);
        json_decref(doc);
        run_end(run, failed);
        return;
    }
    json_t *rows = json_array(), *t;
    size_t i;
    json_array_foreach(list, i, t)
    {
        const char *amount = json_string_value(json_object_get(t, "vnp_Amount"));
        json_array_append_new(
            rows, json_pack("{s:s?, s:s?, s:s?, s:I}", "txn",
                            json_string_value(json_object_get(t, "vnp_TxnRef")), "type",
                            json_string_value(json_object_get(t, "vnp_TransactionType")), "status",
                            json_string_value(json_object_get(t, "vnp_TransactionStatus")),
                            "amount_vnd", (json_int_t)(amount ? atoll(amount) / 100 : 0)));
    }
    json_decref(doc);
    char *text = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    mc_db_params_t q = {0};
    mc_db_param_text(&q, run->day);
    mc_db_param_text(&q, text);
    mc_db_param_text(&q, run->trigger);
    mc_db_exec(mc_service_db(run->p->svc), compare_sql, &q, 0, on_compared, run);
    free(text);
}

static void run_start(payment_t *p, mc_http_req_t *req, const char *day, const char *trigger)
{
    run_t *run = mc_new(run_t);
    run->p = p;
    run->req = req;
    run->trigger = trigger;
    snprintf(run->day, sizeof run->day, "%s", day);
    char compact[9];
    snprintf(compact, sizeof compact, "%.4s%.2s%.2s", day, day + 5, day + 8);
    p->reconciling = 1;
    mc_info("reconcile: %s run of %s started", trigger, day);
    gateway_list(p, compact, NULL, on_list, run);
}

/* ---------------------------------------------------------------- on demand */

static void start_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    (void)who;
    payment_t *p = payment_of(arg);
    char yesterday[11];
    local_day(-1, yesterday, NULL);
    json_t *body = mc_http_json_body(req);
    const char *day = mc_http_query(req, "date");
    if (!day || !*day)
        day = json_string_value(json_object_get(body, "date"));
    if (!day || !*day)
        day = yesterday;
    if (!day_ok(day)) {
        json_decref(body);
        mc_http_reply_error(req, 400, "invalid", "date is YYYY-MM-DD", "date");
        return;
    }
    if (p->reconciling || p->stopping) {
        json_decref(body);
        mc_http_reply_error(req, 409, "conflict", "a reconciliation is running; try again", NULL);
        return;
    }
    run_start(p, req, day, "operator");
    json_decref(body);
}

void reconcile_start(mc_http_req_t *req, void *arg)
{
    mc_auth_require(payment_of(arg)->auth, req, MC_SCOPE_OPERATOR, start_as, arg);
}

/* ---------------------------------------------------------------- scheduled */

typedef struct {
    payment_t *p;
    char day[11];
} due_t;

static void on_due(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    due_t *d = arg;
    payment_t *p = d->p;
    if (status != MC_OK) {
        if (status != MC_ECLOSED)
            mc_warn("reconcile: cannot look for the last run: %s", why(res, status));
        p->reconciling = 0;
    } else if (PQntuples(res) == 0 && !p->stopping) {
        run_start(p, NULL, d->day, "scheduled");
    } else {
        p->reconciling = 0;
    }
    free(d);
}

void reconcile_tick(mc_service_t *svc)
{
    payment_t *p = payment_of(svc);
    if (p->reconciling || p->stopping)
        return;
    int minute;
    due_t *d = mc_new(due_t);
    d->p = p;
    local_day(-1, d->day, &minute);
    if (minute < p->reconcile_minute) {
        free(d);
        return;
    }
    p->reconciling = 1;
    mc_db_params_t q = {0};
    mc_db_param_text(&q, d->day);
    mc_db_exec(mc_service_db(svc),
               "SELECT 1 FROM payment.reconciliation_runs WHERE day = $1::date"
               " AND trigger = 'scheduled' LIMIT 1",
               &q, 0, on_due, d);
}
