/* portal.c: every status change of a dossier is reported to the national public-service
 * portal (Cổng dịch vụ công quốc gia), in order per dossier, until it acknowledges.
 *
 * Recording. DossierStatusChanged is handled inside the bus's inbox transaction:
 * portal_status_changed inserts one interconnect.portal_sync row (seq 1, 2, ... per
 * dossier code) holding the push body in the portal's shape (docs/portal.md): the
 * dossier as the portal knows it (the national code for a dossier that came from the
 * portal, else ours), national status 1-10, dates as yyyyMMddHHmmss in
 * Asia/Ho_Chi_Minh, agency, officer, step, content. The inbox makes it once per
 * change, the bus makes it in order. Which dossiers: MOTCUA_PORTAL_SYNC=all (default),
 * referenced (only those that came from the portal) or off; no MOTCUA_PORTAL_URL is off.
 * The reference is the event's; a status without one (an emitter that does not carry
 * it) takes the one recorded for the dossier before, or the inbound row's.
 *
 * Pushing. Every MOTCUA_INTERCONNECT_TICK_MS a worker claims pending rows (leased for
 * MOTCUA_INTERCONNECT_LEASE_MS, FOR UPDATE SKIP LOCKED) that have no older pending row
 * of the same dossier: only the oldest unacknowledged row of a dossier is ever in
 * flight, across any number of interconnect processes. Each is POSTed to
 * <MOTCUA_PORTAL_URL>/status with the bearer token and Idempotency-Key
 * portal-sync-<id>:
 *   2xx                     'acked': the dossier's next row may go
 *   400, 404, 409, 422      'refused' (the portal will not take it; last_error says
 *                           why; an operator sees it in GET /v1/portal/sync)
 *   anything else, no answer  tried again after MOTCUA_INTERCONNECT_BACKOFF_MS,
 *                           doubling, at most 10 minutes apart
 * A crash between the portal's answer and our commit sends the row again when its
 * lease runs out, with the same sync_id: the portal recognises the repeat.
 *
 * Stop: as agency_http.c (the lease recovers what is cut off). The mechanics (timer,
 * claim, calls in flight, stop, retry later) are common/outcall.h's; reconcile.c's runs
 * use the worker's fetcher and hold its stop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dossier_state.h"
#include "error.h"
#include "interconnect.h"
#include "log.h"
#include "portal.h"

#define CLAIM_BATCH 20

#define PORTAL_TIME(ms)                                                                            \
    "CASE WHEN " ms "::bigint > 0 THEN to_char(to_timestamp(" ms "::bigint / 1000.0)"              \
    " AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYYMMDDHH24MISS') END"

/* ------------------------------------------------------------------ recording */

typedef struct {
    interconnect_t *ic;
    mc_bus_msg_t *msg;
    status_next_fn next;
} record_t;

static void on_recorded(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    record_t *r = arg;
    interconnect_t *ic = r->ic;
    mc_bus_msg_t *msg = r->msg;
    status_next_fn next = r->next;
    free(r);
    if (status != MC_OK) {
        /* Not permanent: the inbox rolls back and the envelope comes again. */
        mc_bus_done(msg, status == MC_ECLOSED ? status : MC_EDB,
                    res ? PQresultErrorMessage(res) : "portal sync record");
        return;
    }
    next(ic, msg);
}

void portal_status_changed(interconnect_t *ic, mc_bus_msg_t *msg, status_next_fn next)
{
    const Motcua__V1__DossierStatusChanged *ev = mc_bus_msg_envelope(msg)->dossier_status_changed;
    int national = ev->national_status ? ev->national_status : mc_state_national(ev->to);
    if (!ic->portal || !ic->portal->enabled || !ev->code[0]) {
        next(ic, msg);
        return;
    }
    if (national < 1 || national > 10) {
        mc_logd(MC_LOG_WARN, mc_bus_msg_envelope(msg)->trace_id, ev->code,
                "portal: status %d has no national code; not reported", (int)ev->to);
        next(ic, msg);
        return;
    }
    // clang-format off
    static const char *sql =
        "WITH known AS (SELECT system, id FROM ("
        "   SELECT 1 AS prio, $2::text AS system, $3::text AS id WHERE $2 <> ''"
        "   UNION ALL SELECT 2, * FROM (SELECT ref_system, ref_id FROM interconnect.portal_sync"
        "     WHERE code = $1 AND ref_system IS NOT NULL ORDER BY seq DESC LIMIT 1) a"
        "   UNION ALL SELECT 3, * FROM (SELECT system, ref_id FROM interconnect.inbound"
        "     WHERE local_code = $1 LIMIT 1) b) k ORDER BY prio LIMIT 1),"
        " r AS (SELECT (SELECT system FROM known) AS system, (SELECT id FROM known) AS id),"
        " n AS (SELECT coalesce(max(seq), 0) + 1 AS seq FROM interconnect.portal_sync"
        "   WHERE code = $1)"
        " INSERT INTO interconnect.portal_sync (code, seq, status, ref_system, ref_id, payload)"
        " SELECT $1, n.seq, $4::int, r.system, r.id, jsonb_build_object("
        "  'code', CASE WHEN r.system = 'national_portal' THEN r.id ELSE $1 END,"
        "  'local_code', $1,"
        "  'national_code', CASE WHEN r.system = 'national_portal' THEN r.id END,"
        "  'seq', n.seq, 'status', $4::int, 'state', $5::text, 'agency', $6::text,"
        "  'officer', $7::text, 'content', $8::text, 'department', $9::text, 'step', $10::text,"
        "  'action', $11::text,"
        "  'updated_at', " PORTAL_TIME("$12") ","
        "  'due_at', " PORTAL_TIME("$13") ","
        "  'appointment_at', " PORTAL_TIME("$14") ","
        "  'overdue', $15::boolean)"
        " FROM n, r WHERE $16::text = 'all' OR r.system = 'national_portal'";
    // clang-format on
    const Motcua__V1__Reference *ref = ev->reference;
    mc_db_params_t p = {0};
    mc_db_param_text(&p, ev->code);
    mc_db_param_text(&p, ref ? ref->system : "");
    mc_db_param_text(&p, ref ? ref->id : "");
    mc_db_param_int(&p, national);
    mc_db_param_text(&p, mc_state_name(ev->to));
    mc_db_param_text(&p, ev->agency_code);
    mc_db_param_text(&p, ev->actor);
    mc_db_param_text(&p, ev->note);
    mc_db_param_text(&p, ev->step_agency_code);
    mc_db_param_text(&p, ev->step_name);
    mc_db_param_text(&p, ev->action);
    mc_db_param_int(&p, ev->at_ms ? ev->at_ms : mc_wall_ms());
    mc_db_param_int(&p, ev->due_at_ms);
    mc_db_param_int(&p, ev->appointment_at_ms);
    mc_db_param_text(&p, ev->overdue ? "true" : "false");
    mc_db_param_text(&p, ic->cfg->portal_sync == PORTAL_SYNC_ALL ? "all" : "referenced");
    record_t *r = mc_new(record_t);
    r->ic = ic;
    r->msg = msg;
    r->next = next;
    mc_db_query(mc_bus_msg_conn(msg), sql, &p, 0, on_recorded, r);
}

void portal_refused(interconnect_t *ic, mc_db_conn_t *conn, const char *national_code,
                    const char *reason, mc_db_result_fn fn, void *arg)
{
    if (!ic->portal || !ic->portal->enabled) {
        mc_db_query(conn, "SELECT 1", NULL, 0, fn, arg);
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, national_code);
    mc_db_param_text(&p, reason);
    mc_db_param_int(&p, mc_wall_ms());
    mc_db_query(conn,
                "WITH n AS (SELECT coalesce(max(seq), 0) + 1 AS seq FROM interconnect.portal_sync"
                "   WHERE code = $1)"
                " INSERT INTO interconnect.portal_sync (code, seq, status, ref_system, ref_id,"
                "  cause, payload)"
                " SELECT $1, n.seq, 3, 'national_portal', $1, 'refused', jsonb_build_object("
                "  'code', $1, 'local_code', NULL, 'national_code', $1, 'seq', n.seq,"
                "  'status', 3, 'state', 'REJECTED_AT_INTAKE', 'content', $2::text,"
                "  'updated_at', " PORTAL_TIME("$3") ") FROM n",
                &p, 0, fn, arg);
}

/* ------------------------------------------------------------------ pushing */

typedef struct {
    mc_outcall_job_t job; /* job.id: the sync row */
    struct portal *pt;
    char code[80];
    int seq;
    char error[300];
} push_t;

static void settle(push_t *j, const char *state)
{
    mc_db_params_t q = {0};
    mc_db_param_int(&q, j->job.id);
    mc_db_param_text(&q, state);
    mc_db_param_text(&q, strcmp(state, "acked") == 0 ? NULL : j->error);
    mc_outcall_record(&j->job,
                      "UPDATE interconnect.portal_sync SET state = $2, last_error = $3,"
                      "  lease_until = NULL, acked_at = CASE WHEN $2 = 'acked' THEN now() END"
                      " WHERE id = $1 AND state = 'pending'",
                      &q);
}

static void retry_later(push_t *j)
{
    mc_logd(MC_LOG_WARN, NULL, j->code, "portal: status %d of the dossier not delivered: %s",
            j->seq, j->error);
    mc_outcall_retry(&j->job, j->error);
}

static void on_pushed(int status, long code, const char *body, size_t len, void *arg)
{
    (void)len;
    push_t *j = arg;
    if (status == MC_ECLOSED) { /* stopping: the lease brings it back */
        mc_outcall_done(&j->job);
        return;
    }
    if (status != MC_OK) {
        snprintf(j->error, sizeof j->error, "portal unreachable: %s", mc_strerror(status));
        retry_later(j);
        return;
    }
    json_t *doc = json_loads(body, 0, NULL);
    const char *message =
        json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    snprintf(j->error, sizeof j->error, "the portal answered HTTP %ld%s%.200s", code,
             message ? ": " : "", message ? message : "");
    json_decref(doc);
    if (code >= 200 && code < 300) {
        mc_logd(MC_LOG_DEBUG, NULL, j->code, "portal: status %d acknowledged", j->seq);
        settle(j, "acked");
    } else if (code == 400 || code == 404 || code == 409 || code == 422) {
        mc_logd(MC_LOG_WARN, NULL, j->code, "portal: status %d refused: %s", j->seq, j->error);
        settle(j, "refused");
    } else {
        retry_later(j);
    }
}

static void push_one(mc_outcall_job_t *job, PGresult *res, int r, void *arg)
{
    struct portal *pt = arg;
    push_t *j = mc_container_of(job, push_t, job);
    j->pt = pt;
    snprintf(j->code, sizeof j->code, "%s", PQgetvalue(res, r, 1));
    j->seq = atoi(PQgetvalue(res, r, 2));
    const char *text = PQgetvalue(res, r, 3);
    char *auth = mc_sprintf("Authorization: Bearer %s", pt->ic->cfg->portal_token);
    char *key = mc_sprintf("Idempotency-Key: portal-sync-%lld", job->id);
    const char *headers[] = {"Content-Type: application/json", key, auth, NULL};
    mc_fetch_http(mc_outcall_fetch(pt->worker), "POST", pt->push_url, headers, text, strlen(text),
                  pt->ic->cfg->timeout_ms, on_pushed, j);
    free(key);
    free(auth);
}

/* ------------------------------------------------------------------ GET /v1/portal/sync */

static void on_list(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_http_reply_error(req, 503, "unavailable", "the sync store is unavailable", NULL);
        return;
    }
    mc_http_reply_json(req, 200, json_loads(PQgetvalue(res, 0, 0), 0, NULL));
}

#define LOCAL(col)                                                                                 \
    "to_char(" col " AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')"

static void list_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    (void)who;
    interconnect_t *ic = interconnect_of(arg);
    const char *dossier = mc_http_query(req, "dossier");
    const char *state = mc_http_query(req, "state");
    if (dossier && (!*dossier || strlen(dossier) > 64)) {
        mc_http_reply_error(req, 400, "invalid",
                            "dossier must be a dossier code or a national dossier code", "dossier");
        return;
    }
    if (state && strcmp(state, "pending") && strcmp(state, "acked") && strcmp(state, "refused")) {
        mc_http_reply_error(req, 400, "invalid", "state must be pending, acked or refused",
                            "state");
        return;
    }
    // clang-format off
    static const char *sql =
        "SELECT json_build_object('enabled', $3::boolean, 'items',"
        " coalesce(json_agg(json_build_object("
        " 'id', id, 'dossier', code, 'seq', seq, 'status', status, 'state', state,"
        " 'cause', cause, 'national_code', CASE WHEN ref_system = 'national_portal'"
        "   THEN ref_id END, 'tries', tries, 'last_error', last_error,"
        " 'payload', payload,"
        " 'created_at', " LOCAL("created_at") ", 'acked_at', " LOCAL("acked_at") ")"
        " ORDER BY id), '[]'))"
        " FROM (SELECT * FROM interconnect.portal_sync"
        "   WHERE ($1::text IS NULL OR code = $1 OR (ref_system = 'national_portal' AND ref_id = $1))"
        "   AND ($2::text IS NULL OR state = $2) ORDER BY id DESC LIMIT 500) s";
    // clang-format on
    mc_db_params_t p = {0};
    mc_db_param_text(&p, dossier);
    mc_db_param_text(&p, state);
    mc_db_param_text(&p, ic->portal && ic->portal->enabled ? "true" : "false");
    mc_db_exec(mc_service_db(ic->svc), sql, &p, 0, on_list, req);
}

void portal_sync_list(mc_http_req_t *req, void *arg)
{
    mc_auth_require(interconnect_of(arg)->auth, req,
                    MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR | MC_SCOPE_INTEGRATOR, list_as, arg);
}

/* ------------------------------------------------------------------ start and stop */

void portal_start(interconnect_t *ic)
{
    struct portal *pt = mc_new(struct portal);
    pt->ic = ic;
    ic->portal = pt;
    const char *base = ic->cfg->portal_url;
    pt->enabled = base[0] && ic->cfg->portal_sync != PORTAL_SYNC_OFF;
    if (!pt->enabled) {
        mc_info("portal: status sync with the national portal is off (%s)",
                base[0] ? "MOTCUA_PORTAL_SYNC=off" : "no MOTCUA_PORTAL_URL");
        return;
    }
    size_t n = strlen(base);
    int len = (int)(base[n - 1] == '/' ? n - 1 : n);
    pt->push_url = mc_sprintf("%.*s/status", len, base);
    pt->lookup_url = mc_sprintf("%.*s/dossiers/lookup", len, base);
    mc_info("portal: status changes of %s dossiers are pushed to %s",
            ic->cfg->portal_sync == PORTAL_SYNC_ALL ? "all" : "the portal's", pt->push_url);
    mc_outcall_def_t def = {
        .name = "portal",
        .tick_ms = (uint64_t)ic->cfg->tick_ms,
        /* The head of each dossier only: a row with an older pending row waits for it. */
        .claim_sql =
            "UPDATE interconnect.portal_sync SET tries = tries + 1,"
            "  lease_until = now() + make_interval(secs => $2::bigint / 1000.0)"
            " WHERE id IN (SELECT s.id FROM interconnect.portal_sync s"
            "  WHERE s.state = 'pending' AND s.next_at <= now()"
            "   AND (s.lease_until IS NULL OR s.lease_until < now())"
            "   AND NOT EXISTS (SELECT 1 FROM interconnect.portal_sync o"
            "    WHERE o.code = s.code AND o.state = 'pending' AND o.seq < s.seq)"
            "  ORDER BY s.next_at, s.id LIMIT $1::int FOR UPDATE SKIP LOCKED)"
            " RETURNING id, code, seq, (payload || jsonb_build_object('sync_id', id))::text",
        .batch = CLAIM_BATCH,
        .lease_ms = ic->cfg->lease_ms,
        .job_size = sizeof(push_t),
        .start = push_one,
        .table = "interconnect.portal_sync",
        .due_state = "pending",
        .backoff_ms = ic->cfg->backoff_ms,
        .arg = pt,
    };
    pt->worker = mc_outcall_new(ic->svc, &def);
    mc_service_every(ic->svc, 60000, reconcile_tick);
}

void portal_close(interconnect_t *ic)
{
    struct portal *pt = ic->portal;
    if (!pt)
        return;
    mc_outcall_destroy(&pt->worker);
    free(pt->run);
    free(pt->push_url);
    free(pt->lookup_url);
    free(pt);
    ic->portal = NULL;
}
