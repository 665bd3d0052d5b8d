/* procedures.c: the catalog read API — GET /v1/procedures (filters, diacritic-blind
 * search, paging), GET /v1/procedures/{code}, GET /v1/agencies. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "intake.h"
#include "service.h"

#define PROCEDURE_JSON                                                                             \
    "json_build_object('code', p.code, 'name', p.name, 'field', p.field, 'agency',"                \
    " p.agency_code, 'agency_name', a.name, 'level', p.level, 'days', p.days, 'cutoff',"           \
    " p.cutoff, 'fee', p.fee, 'documents', p.documents, 'return_methods',"                         \
    " to_json(p.return_methods), 'steps', p.steps, 'version', p.version)"

static void on_json(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_http_reply_error(req, 503, "unavailable", "the catalog is unavailable", NULL);
        return;
    }
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        mc_http_reply_error(req, 404, "not_found", "no such procedure", "code");
        return;
    }
    mc_http_reply_json(req, 200, json_loads(PQgetvalue(res, 0, 0), 0, NULL));
}

/* A non-negative integer query parameter within [0, max]; dflt if absent, -1 if bad. */
static long query_count(mc_http_req_t *req, const char *name, long dflt, long max)
{
    const char *v = mc_http_query(req, name);
    if (!v)
        return dflt;
    char *end;
    long n = strtol(v, &end, 10);
    return (*v && !*end && n >= 0 && n <= max) ? n : -1;
}

void procedure_list(mc_http_req_t *req, void *arg)
{
    mc_service_t *svc = arg;
    const char *agency = mc_http_query(req, "agency");
    const char *q = mc_http_query(req, "q");
    long level = query_count(req, "level", 0, 4);
    long limit = query_count(req, "limit", 50, 200);
    long offset = query_count(req, "offset", 0, 1000000);
    if (level < 0 || (level != 0 && level < 2)) {
        mc_http_reply_error(req, 400, "invalid", "level must be 2, 3 or 4", "level");
        return;
    }
    if (limit <= 0 || offset < 0) {
        mc_http_reply_error(req, 400, "invalid", "limit must be 1..200 and offset >= 0",
                            limit <= 0 ? "limit" : "offset");
        return;
    }
    if ((agency && (!*agency || strlen(agency) > 32)) || (q && strlen(q) > 200)) {
        mc_http_reply_error(req, 400, "invalid", "agency is a code; q at most 200 characters",
                            agency && (!*agency || strlen(agency) > 32) ? "agency" : "q");
        return;
    }
    /* agency matches the resolving agency or any of its sub-agencies. */
    /* SQL assembled with macros: kept as written. */
    // clang-format off
    static const char *sql =
        "WITH RECURSIVE sub AS (SELECT code FROM intake.agencies WHERE code = $1"
        "   UNION SELECT a.code FROM intake.agencies a JOIN sub ON a.parent = sub.code),"
        " hits AS (SELECT p.*, a.name AS agency_name FROM intake.procedures p"
        "   LEFT JOIN intake.agencies a ON a.code = p.agency_code"
        "   WHERE p.retired_at IS NULL"
        "   AND ($1::text IS NULL OR p.agency_code IN (SELECT code FROM sub))"
        "   AND ($2::int = 0 OR p.level = $2::int)"
        "   AND ($3::text IS NULL OR p.search LIKE '%' || lower(unaccent($3)) || '%'))"
        " SELECT json_build_object('items', coalesce((SELECT json_agg(x.j ORDER BY x.code) FROM"
        "   (SELECT p.code, " PROCEDURE_JSON " AS j FROM hits p"
        "    JOIN intake.agencies a ON a.code = p.agency_code"
        "    ORDER BY p.code LIMIT $4::int OFFSET $5::int) x), '[]'),"
        "  'total', (SELECT count(*) FROM hits), 'limit', $4::int, 'offset', $5::int)";
    // clang-format on
    mc_db_params_t p = {0};
    mc_db_param_text(&p, agency);
    mc_db_param_int(&p, level);
    mc_db_param_text(&p, q && *q ? q : NULL);
    mc_db_param_int(&p, limit);
    mc_db_param_int(&p, offset);
    mc_db_exec(mc_service_db(svc), sql, &p, 0, on_json, req);
}

void procedure_get(mc_http_req_t *req, void *arg)
{
    mc_service_t *svc = arg;
    const char *code = mc_http_param(req, "code");
    if (!code || !*code || strlen(code) > 32) {
        mc_http_reply_error(req, 400, "invalid", "not a procedure code", "code");
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, code);
    mc_db_exec(mc_service_db(svc),
               "SELECT " PROCEDURE_JSON " FROM intake.procedures p"
               " JOIN intake.agencies a ON a.code = p.agency_code"
               " WHERE p.code = $1 AND p.retired_at IS NULL",
               &p, 0, on_json, req);
}

void agency_list(mc_http_req_t *req, void *arg)
{
    mc_service_t *svc = arg;
    const char *parent = mc_http_query(req, "parent");
    long limit = query_count(req, "limit", 200, 500);
    long offset = query_count(req, "offset", 0, 1000000);
    if (parent && (!*parent || strlen(parent) > 32)) {
        mc_http_reply_error(req, 400, "invalid", "parent is an agency code", "parent");
        return;
    }
    if (limit <= 0 || offset < 0) {
        mc_http_reply_error(req, 400, "invalid", "limit must be 1..500 and offset >= 0",
                            limit <= 0 ? "limit" : "offset");
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, parent);
    mc_db_param_int(&p, limit);
    mc_db_param_int(&p, offset);
    mc_db_exec(mc_service_db(svc),
               "WITH hits AS (SELECT * FROM intake.agencies WHERE retired_at IS NULL"
               "   AND ($1::text IS NULL OR parent = $1))"
               " SELECT json_build_object('items', coalesce((SELECT json_agg(json_build_object("
               "   'code', code, 'name', name, 'kind', kind, 'parent', parent,"
               "   'external', external, 'version', version) ORDER BY code)"
               "   FROM (SELECT * FROM hits ORDER BY code LIMIT $2::int OFFSET $3::int) a), '[]'),"
               "  'total', (SELECT count(*) FROM hits), 'limit', $2::int, 'offset', $3::int)",
               &p, 0, on_json, req);
}
