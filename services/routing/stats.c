/* stats.c: GET /v1/stats?agency=&from=&to=[&format=csv] — the one-stop report of an
 * agency and the agencies below it over a period of local dates (docs/statistics.md
 * holds the definitions and why).
 *
 * One SQL statement computes every figure from routing.cases, native and imported
 * dossiers alike, in one pass over the cases that were open at some moment of the
 * period; this file only checks the request and formats the answer. motcuactl's
 * `stats` asks this endpoint rather than the database, so the report has exactly one
 * definition.
 *
 * Who may ask: an officer for its own agency's subtree (its agency by default); an
 * operator or integrator for any agency, or the whole province when no agency is
 * given. The answer is JSON, or CSV (a header line and one data line) with the same
 * fields in the same order. The two rates are written as the database's numeric text
 * ("80.5") so that they keep exactly one decimal. */
#include <stdlib.h>
#include <string.h>

#include "calendar.h"
#include "error.h"
#include "routing.h"

/* Longest period a report may cover: years from `from` (exclusive of that day). */
#define STATS_MAX_YEARS 5

/* The report's fields, in the order of the statement's columns, of the JSON and of the
 * CSV. All are counts, except on_time_rate and online_rate: percentages with one
 * decimal, or null when there is nothing to divide by. */
static const char *const fields[] = {
    "received_total",
    "received_online",
    "received_direct",
    "received_postal",
    "carried_over",
    "resolved_total",
    "resolved_early",
    "resolved_on_time",
    "resolved_late",
    "in_progress_total",
    "in_progress_on_time",
    "in_progress_overdue",
    "withdrawn",
    "refused",
    "on_time_rate",
    "online_rate",
    "level3",
    "level4",
};

/* What the database callback needs once the principal is gone. */
typedef struct {
    mc_http_req_t *req;
    char agency[40]; /* "" for the whole province */
    char from[11], to[11];
    int csv;
} stats_t;

/* ---------------------------------------------------------------- the statement */

#define TZ "'Asia/Ho_Chi_Minh'"

/* $1 the agency asked for (NULL: the whole province), $2 and $3 the first and last
 * local dates, $4 the officer's agency (NULL: an operator or integrator).
 *
 * `c` holds every case that was open at some moment of [t0, t1): received before the
 * end, not resolved before the start, never rejected. Its rows split two ways:
 *   new (received in the period) + carried over (received before) = received_total;
 *   resolved in the period + still in progress at its end          = received_total.
 * Overdue in progress is judged at tref = min(t1, now): a report on the running month
 * does not call late what is not late yet. A case whose clock is stopped (supplement,
 * fee owed) since before tref, and stopped while still within time, is not overdue:
 * its due time moves forward by the stop when the clock restarts (docs/deadlines.md). */
static const char stats_sql[] =
    "WITH RECURSIVE sub AS (SELECT code FROM routing.agencies WHERE code = $1"
    "   UNION SELECT a.code FROM routing.agencies a JOIN sub ON a.parent = sub.code),"
    " mine AS (SELECT code FROM routing.agencies WHERE code = $4"
    "   UNION SELECT a.code FROM routing.agencies a JOIN mine ON a.parent = mine.code),"
    " p AS (SELECT t0, t1, least(t1, now()) AS tref FROM"
    "   (SELECT $2::date::timestamp AT TIME ZONE " TZ " AS t0,"
    "     ($3::date + 1)::timestamp AT TIME ZONE " TZ " AS t1) x),"
    " c AS (SELECT c.channel, c.level, c.outcome,"
    "   c.received_at >= p.t0 AS new,"
    "   c.resolved_at < p.t1 AS resolved,"
    "   CASE WHEN c.due_at IS NULL THEN 'on_time'"
    "    WHEN c.resolved_at > c.due_at THEN 'late'"
    "    WHEN (c.resolved_at AT TIME ZONE " TZ ")::date < (c.due_at AT TIME ZONE " TZ ")::date"
    "     THEN 'early' ELSE 'on_time' END AS timeliness,"
    "   coalesce(c.due_at < p.tref AND (c.paused_at IS NULL OR c.paused_at > p.tref"
    "     OR c.paused_at >= c.due_at), false) AS overdue"
    "   FROM routing.cases c, p"
    "   WHERE c.received_at < p.t1 AND (c.resolved_at IS NULL OR c.resolved_at >= p.t0)"
    "   AND c.outcome IS DISTINCT FROM 'rejected'"
    "   AND ($1::text IS NULL OR c.resolving_agency IN (SELECT code FROM sub))),"
    " k AS (SELECT"
    "   count(*) AS received_total,"
    "   count(*) FILTER (WHERE new) AS received_new,"
    "   count(*) FILTER (WHERE new AND channel = 'online') AS received_online,"
    "   count(*) FILTER (WHERE new AND channel = 'direct') AS received_direct,"
    "   count(*) FILTER (WHERE new AND channel = 'postal') AS received_postal,"
    "   count(*) FILTER (WHERE NOT new) AS carried_over,"
    "   count(*) FILTER (WHERE resolved) AS resolved_total,"
    "   count(*) FILTER (WHERE resolved AND timeliness = 'early') AS resolved_early,"
    "   count(*) FILTER (WHERE resolved AND timeliness = 'on_time') AS resolved_on_time,"
    "   count(*) FILTER (WHERE resolved AND timeliness = 'late') AS resolved_late,"
    "   count(*) FILTER (WHERE resolved IS NOT TRUE) AS in_progress_total,"
    "   count(*) FILTER (WHERE resolved IS NOT TRUE AND NOT overdue) AS in_progress_on_time,"
    "   count(*) FILTER (WHERE resolved IS NOT TRUE AND overdue) AS in_progress_overdue,"
    "   count(*) FILTER (WHERE resolved AND outcome = 'withdrawn') AS withdrawn,"
    "   count(*) FILTER (WHERE resolved AND outcome = 'refused') AS refused,"
    "   count(*) FILTER (WHERE new AND channel = 'online' AND level = 3) AS level3,"
    "   count(*) FILTER (WHERE new AND channel = 'online' AND level = 4) AS level4"
    "   FROM c)"
    " SELECT received_total, received_online, received_direct, received_postal,"
    "  carried_over, resolved_total, resolved_early, resolved_on_time, resolved_late,"
    "  in_progress_total, in_progress_on_time, in_progress_overdue, withdrawn, refused,"
    "  CASE WHEN resolved_total > 0 THEN"
    "   round(100.0 * (resolved_early + resolved_on_time) / resolved_total, 1) END,"
    "  CASE WHEN received_new > 0 THEN round(100.0 * received_online / received_new, 1) END,"
    "  level3, level4,"
    "  $1::text IS NULL OR EXISTS (SELECT 1 FROM routing.agencies WHERE code = $1),"
    "  $4::text IS NULL OR $1 IN (SELECT code FROM mine)"
    " FROM k";

#define COL_KNOWN   ((int)MC_COUNT(fields))
#define COL_ALLOWED (COL_KNOWN + 1)

/* ---------------------------------------------------------------- the answer */

typedef struct {
    char *data;
    size_t len, cap;
} text_t;

static void text_add(text_t *t, const char *s)
{
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->data = mc_realloc(t->data, t->cap);
    }
    memcpy(t->data + t->len, s, n + 1);
    t->len += n;
}

/* Agency codes and dates were checked to hold neither quotes, backslashes nor commas:
 * they go into JSON strings and CSV cells as they are. */
static void reply_json(const stats_t *st, const PGresult *res)
{
    text_t t = {0};
    text_add(&t, "{\"agency\":");
    if (st->agency[0]) {
        text_add(&t, "\"");
        text_add(&t, st->agency);
        text_add(&t, "\"");
    } else {
        text_add(&t, "null");
    }
    text_add(&t, ",\"from\":\"");
    text_add(&t, st->from);
    text_add(&t, "\",\"to\":\"");
    text_add(&t, st->to);
    text_add(&t, "\"");
    for (int i = 0; i < (int)MC_COUNT(fields); i++) {
        text_add(&t, ",\"");
        text_add(&t, fields[i]);
        text_add(&t, "\":");
        text_add(&t, PQgetisnull(res, 0, i) ? "null" : PQgetvalue(res, 0, i));
    }
    text_add(&t, "}");
    mc_http_reply(st->req, 200, "application/json", t.data, t.len);
    free(t.data);
}

static void reply_csv(const stats_t *st, const PGresult *res)
{
    text_t t = {0};
    text_add(&t, "agency,from,to");
    for (size_t i = 0; i < MC_COUNT(fields); i++) {
        text_add(&t, ",");
        text_add(&t, fields[i]);
    }
    text_add(&t, "\r\n");
    text_add(&t, st->agency);
    text_add(&t, ",");
    text_add(&t, st->from);
    text_add(&t, ",");
    text_add(&t, st->to);
    for (int i = 0; i < (int)MC_COUNT(fields); i++) {
        text_add(&t, ",");
        text_add(&t, PQgetisnull(res, 0, i) ? "" : PQgetvalue(res, 0, i));
    }
    text_add(&t, "\r\n");
    mc_http_reply(st->req, 200, "text/csv; charset=utf-8", t.data, t.len);
    free(t.data);
}

static void on_stats(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    stats_t *st = arg;
    if (status != MC_OK || PQntuples(res) != 1 || PQnfields(res) != COL_ALLOWED + 1) {
        mc_http_reply_error(st->req, 503, "unavailable", "the case store is unavailable", NULL);
    } else if (strcmp(PQgetvalue(res, 0, COL_ALLOWED), "t") != 0) {
        mc_http_reply_error(st->req, 403, "forbidden", "that agency is not yours or below yours",
                            "agency");
    } else if (strcmp(PQgetvalue(res, 0, COL_KNOWN), "t") != 0) {
        mc_http_reply_error(st->req, 404, "not_found", "no such agency", "agency");
    } else if (st->csv) {
        reply_csv(st, res);
    } else {
        reply_json(st, res);
    }
    free(st);
}

/* ---------------------------------------------------------------- the request */

/* A local date "YYYY-MM-DD" that exists: 0 with its parts, or -1. */
static int date_parse(const char *s, int ymd[3])
{
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return -1;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return -1;
    ymd[0] = atoi(s);
    ymd[1] = atoi(s + 5);
    ymd[2] = atoi(s + 8);
    return mc_calendar_local_ms(ymd[0], ymd[1], ymd[2], 0, 0, 0) == MC_CALENDAR_INVALID ? -1 : 0;
}

static int date_cmp(const int a[3], const int b[3])
{
    for (int i = 0; i < 3; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

/* An agency code as the catalog allows them (docs/catalog.md). */
static int agency_valid(const char *code)
{
    size_t n = strlen(code);
    if (n == 0 || n > 32)
        return 0;
    for (const char *p = code; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-'))
            return 0;
    return 1;
}

/* Check the query string; 0, or -1 after answering 400. */
static int stats_args(mc_http_req_t *req, const char **agency, int from[3], int to[3], int *csv)
{
    const char *format = mc_http_query(req, "format");
    *agency = mc_http_query(req, "agency");
    if (*agency && !agency_valid(*agency)) {
        mc_http_reply_error(req, 400, "invalid", "agency is an agency code", "agency");
        return -1;
    }
    if (!mc_http_query(req, "from") || !mc_http_query(req, "to")) {
        mc_http_reply_error(req, 400, "invalid", "from and to are required (YYYY-MM-DD)",
                            mc_http_query(req, "from") ? "to" : "from");
        return -1;
    }
    if (date_parse(mc_http_query(req, "from"), from) != 0) {
        mc_http_reply_error(req, 400, "invalid", "from is a date YYYY-MM-DD", "from");
        return -1;
    }
    if (date_parse(mc_http_query(req, "to"), to) != 0) {
        mc_http_reply_error(req, 400, "invalid", "to is a date YYYY-MM-DD", "to");
        return -1;
    }
    if (date_cmp(from, to) > 0) {
        mc_http_reply_error(req, 400, "invalid", "to is before from", "to");
        return -1;
    }
    /* At most five years: `to` comes before the same day five years after `from` (a
     * 29 February start ends on 28 February at the latest). */
    int limit[3] = {from[0] + STATS_MAX_YEARS, from[1], from[2]};
    if (date_cmp(to, limit) >= 0) {
        mc_http_reply_error(req, 400, "invalid", "a report covers at most 5 years", "to");
        return -1;
    }
    if (format && strcmp(format, "json") != 0 && strcmp(format, "csv") != 0) {
        mc_http_reply_error(req, 400, "invalid", "format is json or csv", "format");
        return -1;
    }
    *csv = format && strcmp(format, "csv") == 0;
    return 0;
}

static void stats_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    mc_service_t *svc = arg;
    const char *agency;
    int from[3], to[3], csv;
    if (stats_args(req, &agency, from, to, &csv) != 0)
        return;
    /* Operators and integrators see the province; an officer key (without either of
     * those scopes) sees its agency and those below it. */
    int officer = !(who->scopes & (MC_SCOPE_OPERATOR | MC_SCOPE_INTEGRATOR));
    if (officer && !who->agency[0]) {
        mc_http_reply_error(req, 403, "forbidden", "an officer key bound to an agency is required",
                            NULL);
        return;
    }
    if (!agency && officer)
        agency = who->agency;
    stats_t *st = mc_new(stats_t);
    st->req = req;
    st->csv = csv;
    snprintf(st->agency, sizeof st->agency, "%s", agency ? agency : "");
    snprintf(st->from, sizeof st->from, "%04d-%02d-%02d", from[0], from[1], from[2]);
    snprintf(st->to, sizeof st->to, "%04d-%02d-%02d", to[0], to[1], to[2]);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, agency);
    mc_db_param_text(&p, st->from);
    mc_db_param_text(&p, st->to);
    mc_db_param_text(&p, officer ? who->agency : NULL);
    mc_db_exec(mc_service_db(svc), stats_sql, &p, 0, on_stats, st);
}

void stats_report(mc_http_req_t *req, void *arg)
{
    mc_auth_require(routing_of(arg)->auth, req,
                    MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR | MC_SCOPE_INTEGRATOR, stats_as, arg);
}
