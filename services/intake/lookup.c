/* lookup.c: GET /v1/dossiers/{code}?token= — the public view of a dossier: status,
 * national status code, whether routing has opened its case, and the history.
 * Without a token: 401. Unknown code or wrong token: 404 (existence is not revealed). */
#include <string.h>

#include "error.h"
#include "intake.h"
#include "log.h"
#include "service.h"

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
    json_error_t jerr;
    json_t *body = json_loads(PQgetvalue(res, 0, 0), 0, &jerr);
    if (!body) {
        mc_http_reply_error(req, 500, "internal", "cannot render the dossier", NULL);
        return;
    }
    mc_http_reply_json(req, 200, body);
}

static int code_ok(const char *code)
{
    size_t n = strlen(code);
    if (n == 0 || n > 64)
        return 0;
    return strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_") == n;
}

void dossier_lookup(mc_http_req_t *req, void *arg)
{
    mc_service_t *svc = arg;
    const char *code = mc_http_param(req, "code");
    const char *token = mc_http_query(req, "token");
    if (!code || !code_ok(code)) {
        mc_http_reply_error(req, 400, "invalid", "not a dossier code", "code");
        return;
    }
    if (!token || !*token) {
        mc_http_reply_error(req, 401, "unauthorized",
                            "a lookup token (?token=) is required to see a dossier", "token");
        return;
    }
    static const char *sql =
        "SELECT json_build_object("
        " 'code', d.code, 'procedure', d.procedure_code, 'agency', d.agency_code,"
        " 'channel', d.channel, 'status', d.status, 'national_status', d.national_status,"
        " 'routed', d.routed, 'return_method', d.return_method,"
        " 'received_at', to_char(d.received_at AT TIME ZONE 'Asia/Ho_Chi_Minh',"
        "    'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"'),"
        " 'due_at', to_char(d.due_at AT TIME ZONE 'Asia/Ho_Chi_Minh',"
        "    'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"'),"
        " 'history', (SELECT coalesce(json_agg(json_build_object("
        "     'at', to_char(e.at AT TIME ZONE 'Asia/Ho_Chi_Minh',"
        "        'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"'),"
        "     'state', e.state, 'agency', e.agency_code, 'note', e.note) ORDER BY e.id), '[]')"
        "   FROM intake.dossier_events e WHERE e.code = d.code))"
        " FROM intake.dossiers d WHERE d.code = $1 AND d.lookup_token = $2";
    mc_db_params_t p = {0};
    mc_db_param_text(&p, code);
    mc_db_param_text(&p, token);
    mc_db_exec(mc_service_db(svc), sql, &p, 0, on_row, req);
}
