/* tasks.c: GET /v1/tasks?agency=&state=&limit=&offset= — the queue of work of an agency
 * (and the agencies below it): open cases whose step in charge belongs there, the
 * oldest due first. An officer sees its own agency's subtree; an operator any. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "routing.h"

#define LOCAL(col)                                                                                 \
    "to_char(" col " AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')"

static void on_tasks(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_http_reply_error(req, 503, "unavailable", "the case store is unavailable", NULL);
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
        mc_http_reply_error(req, 403, "forbidden", "that agency is not yours or below yours",
                            "agency");
        return;
    }
    mc_http_reply_json(req, 200, json_loads(PQgetvalue(res, 0, 0), 0, NULL));
}

static long count_param(mc_http_req_t *req, const char *name, long dflt, long min, long max)
{
    const char *v = mc_http_query(req, name);
    if (!v)
        return dflt;
    char *end;
    long n = strtol(v, &end, 10);
    return *v && !*end && n >= min && n <= max ? n : -1;
}

static void tasks_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    mc_service_t *svc = arg;
    const char *agency = mc_http_query(req, "agency");
    const char *state = mc_http_query(req, "state");
    long limit = count_param(req, "limit", 100, 1, 500);
    long offset = count_param(req, "offset", 0, 0, 10000000);
    if (agency && (!*agency || strlen(agency) > 32)) {
        mc_http_reply_error(req, 400, "invalid", "agency is an agency code", "agency");
        return;
    }
    if (state && !mc_state_is_open(mc_state_parse(state))) {
        mc_http_reply_error(req, 400, "invalid",
                            "state must be an open state: SUBMITTED, RECEIVED, AWAITING_PAYMENT, "
                            "IN_PROGRESS, SUPPLEMENT_REQUESTED or HANDED_OFF",
                            "state");
        return;
    }
    if (limit < 0 || offset < 0) {
        mc_http_reply_error(req, 400, "invalid", "limit 1..500, offset >= 0",
                            limit < 0 ? "limit" : "offset");
        return;
    }
    int officer = !(who->scopes & MC_SCOPE_OPERATOR);
    if (officer && !who->agency[0]) {
        mc_http_reply_error(req, 403, "forbidden", "an officer key bound to an agency is required",
                            NULL);
        return;
    }
    if (!agency && officer)
        agency = who->agency;
    /* $1 the agency asked for (NULL: all), $5 the officer's agency (NULL: operator). */
    /* SQL assembled with macros: kept as written. */
    // clang-format off
    static const char *sql =
        "WITH RECURSIVE sub AS (SELECT code FROM routing.agencies WHERE code = $1"
        "   UNION SELECT a.code FROM routing.agencies a JOIN sub ON a.parent = sub.code),"
        " mine AS (SELECT code FROM routing.agencies WHERE code = $5"
        "   UNION SELECT a.code FROM routing.agencies a JOIN mine ON a.parent = mine.code),"
        " t AS (SELECT c.*, s.name AS step_name, s.agency_code AS step_agency,"
        "   s.due_at AS step_due FROM routing.cases c JOIN routing.case_steps s"
        "   ON s.code = c.code AND s.idx = c.step_index"
        "   WHERE c.resolved_at IS NULL AND c.state IN ('SUBMITTED', 'RECEIVED',"
        "    'AWAITING_PAYMENT', 'IN_PROGRESS', 'SUPPLEMENT_REQUESTED', 'HANDED_OFF')"
        "   AND ($1::text IS NULL OR s.agency_code IN (SELECT code FROM sub))"
        "   AND ($2::text IS NULL OR c.state = $2))"
        " SELECT json_build_object('items', coalesce((SELECT json_agg(j ORDER BY o) FROM"
        "   (SELECT row_number() OVER (ORDER BY due_at NULLS LAST, code) AS o,"
        "    json_build_object('code', code, 'procedure', procedure_code,"
        "    'procedure_name', procedure_name, 'state', state, 'channel', channel,"
        "    'received_at', " LOCAL("received_at") ", 'due_at', " LOCAL("due_at") ","
        "    'overdue', due_at < now() AND (paused_at IS NULL OR paused_at >= due_at),"
        "    'step', json_build_object('index', step_index, 'name', step_name,"
        "      'agency', step_agency, 'due_at', " LOCAL("step_due") ")) AS j"
        "    FROM t ORDER BY due_at NULLS LAST, code LIMIT $3::int OFFSET $4::int) x), '[]'),"
        "  'total', (SELECT count(*) FROM t), 'limit', $3::int, 'offset', $4::int),"
        " $5::text IS NULL OR $1 IN (SELECT code FROM mine)";
    // clang-format on
    mc_db_params_t p = {0};
    mc_db_param_text(&p, agency);
    mc_db_param_text(&p, state);
    mc_db_param_int(&p, limit);
    mc_db_param_int(&p, offset);
    mc_db_param_text(&p, officer ? who->agency : NULL);
    mc_db_exec(mc_service_db(svc), sql, &p, 0, on_tasks, req);
}

void tasks_list(mc_http_req_t *req, void *arg)
{
    mc_auth_require(routing_of(arg)->auth, req, MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR, tasks_as,
                    arg);
}
