/* reconcile.c: the national portal's view is compared with ours and what it lacks is
 * sent again.
 *
 * A run walks the dossiers synced within MOTCUA_PORTAL_RECONCILE_DAYS, PAGE codes at a
 * time in code order, skipping those with a push still pending (it is on its way).
 * For each page it asks the portal what it holds (POST <MOTCUA_PORTAL_URL>/dossiers/
 * lookup {"codes": [...]} -> {"dossiers": [{"code", "status", "seq"}]}) and, for every
 * dossier the portal lacks or holds at another status or an older seq, adds a new sync
 * row (cause 'reconcile') carrying our latest status: the push worker sends it in order
 * like any other. Each page logs a progress line; the run's counts are kept in
 * interconnect.portal_reconcile.
 *
 * When: every day at MOTCUA_PORTAL_RECONCILE_HOUR (Asia/Ho_Chi_Minh; -1 never), once
 * across replicas (the run row is unique per day), and on demand with
 * POST /v1/portal/reconcile (operators). One run at a time per process. A run that
 * cannot reach the portal ends with the error recorded; the next one starts afresh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "interconnect.h"
#include "log.h"
#include "portal.h"

#define PAGE 200

struct reconcile_run {
    struct portal *pt;
    mc_http_req_t *req; /* the operator's request, until the run is recorded */
    char day[16];       /* the scheduled run's day; "" on demand */
    long long id;
    char cursor[80];
    long checked, resent;
    int page_rows;
    json_t *ours; /* the page: [[code, seq, status, portal code], ...] */
    char error[300];
};

static void page(struct reconcile_run *run);

/* ------------------------------------------------------------------ the end */

static void on_finished(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    struct reconcile_run *run = arg;
    struct portal *pt = run->pt;
    if (status != MC_OK && status != MC_ECLOSED)
        mc_warn("portal reconcile %lld: cannot record its end: %s", run->id,
                res ? PQresultErrorMessage(res) : mc_strerror(status));
    json_decref(run->ours);
    free(run);
    pt->run = NULL;
    mc_outcall_release(pt->worker);
}

static void finish(struct reconcile_run *run, const char *error)
{
    if (error)
        snprintf(run->error, sizeof run->error, "%s", error);
    if (run->error[0])
        mc_warn("portal reconcile %lld ended: %ld dossiers checked, %ld sent again: %s", run->id,
                run->checked, run->resent, run->error);
    else
        mc_info("portal reconcile %lld done: %ld dossiers checked, %ld sent again", run->id,
                run->checked, run->resent);
    mc_db_params_t p = {0};
    mc_db_param_int(&p, run->id);
    mc_db_param_int(&p, run->checked);
    mc_db_param_int(&p, run->resent);
    mc_db_param_text(&p, run->error[0] ? run->error : NULL);
    mc_db_exec(mc_service_db(run->pt->ic->svc),
               "UPDATE interconnect.portal_reconcile SET finished_at = now(), checked = $2::int,"
               " resent = $3::int, error = $4 WHERE id = $1",
               &p, 0, on_finished, run);
}

/* ------------------------------------------------------------------ one page */

static void on_resent(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    struct reconcile_run *run = arg;
    if (status != MC_OK) {
        snprintf(run->error, sizeof run->error, "cannot add the rows to send again: %s",
                 res ? PQresultErrorMessage(res) : mc_strerror(status));
        finish(run, NULL);
        return;
    }
    run->resent += atol(PQgetvalue(res, 0, 0));
    mc_info("portal reconcile %lld: %ld dossiers checked, %ld sent again so far", run->id,
            run->checked, run->resent);
    if (run->page_rows < PAGE)
        finish(run, NULL);
    else
        page(run);
}

/* Compare the page with the portal's answer; send again what differs. */
static void on_lookup(int status, long code, const char *body, size_t len, void *arg)
{
    (void)len;
    struct reconcile_run *run = arg;
    if (status != MC_OK || code < 200 || code >= 300) {
        char why[200];
        if (status != MC_OK)
            snprintf(why, sizeof why, "the portal is unreachable: %s", mc_strerror(status));
        else
            snprintf(why, sizeof why, "the portal answered the lookup with HTTP %ld", code);
        finish(run, why);
        return;
    }
    json_t *doc = json_loads(body, 0, NULL);
    json_t *theirs = json_object_get(doc, "dossiers");
    if (!json_is_array(theirs)) {
        json_decref(doc);
        finish(run, "the portal's lookup answer has no \"dossiers\" array");
        return;
    }
    json_t *held = json_object(); /* portal code -> what the portal holds */
    size_t i;
    json_t *d;
    json_array_foreach(theirs, i, d)
    {
        const char *c = json_string_value(json_object_get(d, "code"));
        if (c)
            json_object_set(held, c, d);
    }
    json_t *again = json_array();
    json_array_foreach(run->ours, i, d)
    {
        json_t *h = json_object_get(held, json_string_value(json_array_get(d, 3)));
        json_t *seq = json_object_get(h, "seq");
        if (!h ||
            json_integer_value(json_object_get(h, "status")) !=
                json_integer_value(json_array_get(d, 2)) ||
            (json_is_integer(seq) &&
             json_integer_value(seq) < json_integer_value(json_array_get(d, 1))))
            json_array_append(again, json_array_get(d, 0));
    }
    json_decref(held);
    json_decref(doc);
    run->checked += (long)json_array_size(run->ours);
    char *codes = json_dumps(again, JSON_COMPACT);
    json_decref(again);
    /* Our latest status, as a new row after the last one; not when a push is pending. */
    mc_db_params_t p = {0};
    mc_db_param_text(&p, codes);
    mc_db_exec(mc_service_db(run->pt->ic->svc),
               "WITH latest AS (SELECT DISTINCT ON (code) * FROM interconnect.portal_sync"
               "   WHERE code IN (SELECT jsonb_array_elements_text($1::jsonb))"
               "   ORDER BY code, seq DESC),"
               " ins AS (INSERT INTO interconnect.portal_sync (code, seq, status, ref_system,"
               "   ref_id, cause, payload)"
               "  SELECT code, seq + 1, status, ref_system, ref_id, 'reconcile',"
               "   payload || jsonb_build_object('seq', seq + 1)"
               "  FROM latest WHERE state <> 'pending'"
               "  ON CONFLICT (code, seq) DO NOTHING RETURNING code)"
               " SELECT count(*) FROM ins",
               &p, 0, on_resent, run);
    free(codes);
}

static void on_page(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    struct reconcile_run *run = arg;
    struct portal *pt = run->pt;
    if (status != MC_OK) {
        char why[200];
        snprintf(why, sizeof why, "cannot read the synced dossiers: %s",
                 res ? PQresultErrorMessage(res) : mc_strerror(status));
        finish(run, why);
        return;
    }
    run->page_rows = PQntuples(res);
    if (run->page_rows == 0) {
        finish(run, NULL);
        return;
    }
    json_decref(run->ours);
    run->ours = json_array();
    json_t *codes = json_array();
    for (int r = 0; r < run->page_rows; r++) {
        json_array_append_new(
            run->ours, json_pack("[s, i, i, s]", PQgetvalue(res, r, 0), atoi(PQgetvalue(res, r, 1)),
                                 atoi(PQgetvalue(res, r, 2)), PQgetvalue(res, r, 3)));
        json_array_append_new(codes, json_string(PQgetvalue(res, r, 3)));
    }
    snprintf(run->cursor, sizeof run->cursor, "%s", PQgetvalue(res, run->page_rows - 1, 0));
    json_t *ask = json_pack("{s:o}", "codes", codes);
    char *text = json_dumps(ask, JSON_COMPACT);
    json_decref(ask);
    char *auth = mc_sprintf("Authorization: Bearer %s", pt->ic->cfg->portal_token);
    const char *headers[] = {"Content-Type: application/json", auth, NULL};
    mc_fetch_http(mc_outcall_fetch(pt->worker), "POST", pt->lookup_url, headers, text, strlen(text),
                  pt->ic->cfg->timeout_ms, on_lookup, run);
    free(auth);
    free(text);
}

static void page(struct reconcile_run *run)
{
    struct portal *pt = run->pt;
    if (mc_outcall_stopping(pt->worker)) {
        finish(run, "the service stopped");
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, run->cursor);
    mc_db_param_int(&p, pt->ic->cfg->reconcile_days);
    mc_db_param_int(&p, PAGE);
    mc_db_exec(mc_service_db(pt->ic->svc),
               "SELECT code, seq, status, payload->>'code' FROM ("
               " SELECT DISTINCT ON (code) code, seq, status, payload, state"
               "  FROM interconnect.portal_sync WHERE code > $1"
               "   AND created_at > now() - make_interval(days => $2::int)"
               "  ORDER BY code, seq DESC) l"
               " WHERE state <> 'pending' AND payload->>'code' IS NOT NULL"
               " ORDER BY code LIMIT $3::int",
               &p, 0, on_page, run);
}

/* ------------------------------------------------------------------ starting a run */

static void on_recorded(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    struct reconcile_run *run = arg;
    struct portal *pt = run->pt;
    if (status != MC_OK || PQntuples(res) != 1) {
        if (status != MC_OK && status != MC_ECLOSED)
            mc_warn("portal reconcile: cannot start: %s",
                    res ? PQresultErrorMessage(res) : mc_strerror(status));
        if (run->req) {
            if (status == MC_OK)
                mc_http_reply_error(run->req, 409, "conflict", "a reconciliation ran already",
                                    NULL);
            else
                mc_http_reply_error(run->req, 503, "unavailable", "the sync store is unavailable",
                                    NULL);
        }
        free(run); /* the scheduled run of today was somebody else's */
        pt->run = NULL;
        mc_outcall_release(pt->worker);
        return;
    }
    run->id = atoll(PQgetvalue(res, 0, 0));
    mc_info("portal reconcile %lld started (%s)", run->id,
            run->day[0] ? "daily" : "asked by an operator");
    if (run->req) {
        mc_http_reply_json(run->req, 202,
                           json_pack("{s:I, s:s, s:s}", "id", (json_int_t)run->id, "state",
                                     "running", "started_at", PQgetvalue(res, 0, 1)));
        run->req = NULL;
    }
    page(run);
}

/* Start a run (day "" on demand); 0, or -1 if one is running in this process. */
static int run_start(struct portal *pt, const char *day, mc_http_req_t *req)
{
    if (pt->run || mc_outcall_stopping(pt->worker))
        return -1;
    struct reconcile_run *run = mc_new(struct reconcile_run);
    run->pt = pt;
    run->req = req;
    snprintf(run->day, sizeof run->day, "%s", day);
    pt->run = run;
    mc_outcall_hold(pt->worker); /* a stop waits for the run to end */
    mc_db_params_t p = {0};
    mc_db_param_text(&p, day[0] ? day : NULL);
    mc_db_exec(mc_service_db(pt->ic->svc),
               "INSERT INTO interconnect.portal_reconcile (day) VALUES ($1::date)"
               " ON CONFLICT (day) DO NOTHING RETURNING id,"
               " to_char(started_at AT TIME ZONE 'Asia/Ho_Chi_Minh',"
               "  'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')",
               &p, 0, on_recorded, run);
    return 0;
}

void reconcile_tick(mc_service_t *svc)
{
    struct portal *pt = interconnect_of(svc)->portal;
    long hour = pt->ic->cfg->reconcile_hour;
    if (hour < 0 || !pt->enabled || mc_outcall_stopping(pt->worker))
        return;
    /* Vietnam keeps UTC+7 all year. */
    time_t now = time(NULL) + 7 * 3600;
    struct tm t;
    gmtime_r(&now, &t);
    char day[16];
    strftime(day, sizeof day, "%Y-%m-%d", &t);
    if (t.tm_hour != hour || strcmp(day, pt->last_day) == 0)
        return;
    if (run_start(pt, day, NULL) == 0)
        snprintf(pt->last_day, sizeof pt->last_day, "%s", day);
}

static void request_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    struct portal *pt = interconnect_of(arg)->portal;
    if (!pt || !pt->enabled) {
        mc_http_reply_error(req, 409, "conflict",
                            "status sync with the national portal is off (MOTCUA_PORTAL_URL, "
                            "MOTCUA_PORTAL_SYNC)",
                            NULL);
        return;
    }
    if (run_start(pt, "", req)) {
        mc_http_reply_error(req, 409, "conflict", "a reconciliation is running already", NULL);
        return;
    }
    mc_logd(MC_LOG_INFO, mc_http_header(req, "x-trace-id"), NULL,
            "portal reconcile asked by key %lld (%s)", who->id, who->name);
}

void reconcile_request(mc_http_req_t *req, void *arg)
{
    mc_auth_require(interconnect_of(arg)->auth, req, MC_SCOPE_OPERATOR, request_as, arg);
}
