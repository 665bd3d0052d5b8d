/* lookup.c: GET /v1/dossiers/{code}?token= — the public view of a dossier: status,
 * national status code, overdue flag, due date (and the new appointment if an apology
 * letter gave one), whether routing has opened its case, and the history.
 * The applicant shows the lookup token; an officer, integrator or operator shows an API
 * key (Authorization: Bearer) instead. Neither: 401. Unknown code or wrong token: 404
 * (existence is not revealed to a wrong token). While the fee is owed online
 * (AWAITING_PAYMENT) the view also has `payment_url`, payment's pay link; a dossier that
 * came from another system (national portal, peer province) has `reference`.
 *
 * `steps`: every step of the workflow (a liên thông chain crosses agencies), with its
 * agency, state (waiting, in_progress, handed_off, done, failed, stopped), what it
 * produced (result) and, for a step handed to another agency, that agency's last answer
 * (handoff: sent, accepted, completed, rejected, failed, expired). `results`, once the
 * result is ready (RESULT_READY, RETURNED): every step's result in order, together. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "error.h"
#include "intake.h"
#include "log.h"
#include "service.h"

#define LOCAL(col)                                                                                 \
    "to_char(" col " AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')"

/* $2 NULL: any dossier (a key was shown); else the lookup token must match. */
/* SQL assembled with macros: kept as written. */
// clang-format off
static const char *lookup_sql =
    "SELECT json_build_object("
    " 'code', d.code, 'procedure', d.procedure_code, 'procedure_name', d.procedure_name,"
    " 'agency', d.agency_code, 'channel', d.channel, 'level', d.level, 'fee', d.fee,"
    " 'status', d.status, 'national_status', d.national_status, 'routed', d.routed,"
    " 'return_method', d.return_method, 'reference', d.reference,"
    " 'payment_url', CASE WHEN d.status = 'AWAITING_PAYMENT' THEN $3 || d.code END,"
    " 'overdue', d.overdue OR (d.due_at < now() AND d.status IN ('SUBMITTED', 'RECEIVED',"
    "   'IN_PROGRESS', 'HANDED_OFF')),"
    " 'received_at', " LOCAL("d.received_at") ", 'due_at', " LOCAL("d.due_at") ","
    " 'appointment_at', " LOCAL("d.appointment_at") ","
    " 'history', (SELECT coalesce(json_agg(json_build_object('at', " LOCAL("e.at") ","
    "     'state', e.state, 'agency', e.agency_code, 'note', e.note) ORDER BY e.id), '[]')"
    "   FROM intake.dossier_events e WHERE e.code = d.code),"
    " 'steps', (SELECT json_agg(json_strip_nulls(json_build_object('index', s.idx,"
    "     'name', s.name, 'agency', s.agency_code, 'agency_name', a.name, 'state', s.state,"
    "     'result', s.result, 'handoff', s.handoff_state)) ORDER BY s.idx)"
    "   FROM intake.dossier_steps s LEFT JOIN intake.agencies a ON a.code = s.agency_code"
    "   WHERE s.code = d.code),"
    " 'results', CASE WHEN d.status IN ('RESULT_READY', 'RETURNED') THEN"
    "   (SELECT json_agg(json_build_object('index', s.idx, 'name', s.name,"
    "     'agency', s.agency_code, 'result', s.result) ORDER BY s.idx)"
    "   FROM intake.dossier_steps s WHERE s.code = d.code) END)"
    " FROM intake.dossiers d WHERE d.code = $1 AND ($2::text IS NULL OR d.lookup_token = $2)";
// clang-format on

static void on_row(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_error("lookup: %s", res ? PQresultErrorMessage(res) : mc_strerror(status));
        mc_http_reply_error(req, 503, "unavailable", "the dossier store is unavailable", NULL);
        return;
    }
    if (PQntuples(res) != 1) {
        mc_http_reply_error(req, 404, "not_found", "no dossier with this code and token", "code");
        return;
    }
    json_t *body = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (!body) {
        mc_http_reply_error(req, 500, "internal", "cannot render the dossier", NULL);
        return;
    }
    if (json_is_null(json_object_get(body, "payment_url")))
        json_object_del(body, "payment_url"); /* only while the fee is owed */
    if (json_is_null(json_object_get(body, "steps")))
        json_object_del(body, "steps"); /* routing has not told the steps yet */
    if (json_is_null(json_object_get(body, "results")))
        json_object_del(body, "results"); /* only once the result is ready */
    if (json_is_null(json_object_get(body, "reference")))
        json_object_del(body, "reference"); /* only for dossiers from another system */
    mc_http_reply_json(req, 200, body);
}

static int code_ok(const char *code)
{
    size_t n = strlen(code);
    if (n == 0 || n > 64)
        return 0;
    return strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_") == n;
}

static void lookup_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    mc_service_t *svc = arg;
    const char *token = mc_http_query(req, "token");
    if (!who && (!token || !*token)) {
        mc_http_reply_error(req, 401, "unauthorized",
                            "a lookup token (?token=) or an API key is required to see a dossier",
                            "token");
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, mc_http_param(req, "code"));
    mc_db_param_text(&p, who ? NULL : token);
    /* The fee is paid through payment's pay link (MOTCUA_PAYMENT_PUBLIC_URL). */
    const char *base = getenv("MOTCUA_PAYMENT_PUBLIC_URL");
    char *pay = mc_sprintf("%s/v1/payments/pay/", base && *base ? base : "http://127.0.0.1:8083");
    mc_db_param_text(&p, pay);
    mc_db_exec(mc_service_db(svc), lookup_sql, &p, 0, on_row, req); /* copies the values */
    free(pay);
}

void dossier_lookup(mc_http_req_t *req, void *arg)
{
    const char *code = mc_http_param(req, "code");
    if (!code || !code_ok(code)) {
        mc_http_reply_error(req, 400, "invalid", "not a dossier code", "code");
        return;
    }
    mc_auth_optional(intake_of(arg)->auth, req,
                     MC_SCOPE_OFFICER | MC_SCOPE_INTEGRATOR | MC_SCOPE_OPERATOR, lookup_as, arg);
}
