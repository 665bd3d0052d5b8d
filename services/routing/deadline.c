/* deadline.c: due times, and the sweep that marks open cases overdue the moment their
 * due time passes. An overdue case gets an apology letter with a new appointment
 * (phiếu xin lỗi và hẹn lại ngày trả kết quả): half the procedure's working days from
 * now, at least one; the applicant is told. The original due time stays the one the
 * statistics judge lateness by. Several replicas may sweep: rows are claimed with
 * SKIP LOCKED and marked once (overdue_at). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "routing.h"

#define SWEEP_BATCH 100

int64_t deadline_due(mc_service_t *svc, int64_t from_ms, double days, const char *cutoff)
{
    int minute = mc_calendar_parse_cutoff(cutoff);
    return mc_calendar_due_days(mc_service_calendar(svc), from_ms, days,
                                minute == MC_CALENDAR_BAD_CUTOFF ? MC_CALENDAR_NO_CUTOFF : minute);
}

typedef struct {
    mc_service_t *svc;
    mc_db_conn_t *conn;
    mc_outbox_t *outbox;
    int found;
} sweep_t;

static int sweeping; /* one sweep at a time per process */

static void sweep_end(sweep_t *sw, const char *failed)
{
    if (failed)
        mc_warn("deadline: sweep failed: %s", failed);
    else if (sw->found)
        mc_info("deadline: %d case(s) became overdue; apology letters recorded", sw->found);
    if (sw->conn)
        mc_db_release(sw->conn); /* rolls back if still open */
    mc_outbox_destroy(&sw->outbox);
    free(sw);
    sweeping = 0;
}

static void on_committed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    sweep_end(arg, status == MC_OK ? NULL : res ? PQresultErrorMessage(res) : mc_strerror(status));
}

static void on_emitted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    sweep_t *sw = arg;
    if (status != MC_OK) {
        sweep_end(sw, res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    mc_db_query(conn, "COMMIT", NULL, 0, on_committed, sw);
}

static void on_marked(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    sweep_t *sw = arg;
    if (status != MC_OK) {
        sweep_end(sw, res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    sw->found = PQntuples(res);
    if (sw->found == 0) {
        sweep_end(sw, NULL);
        return;
    }
    sw->outbox = mc_outbox_new("routing");
    for (int r = 0; r < sw->found; r++) {
        json_t *row = json_loads(PQgetvalue(res, r, 0), 0, NULL);
        const char *code = json_string_value(json_object_get(row, "code"));
        mc_state_t state = mc_state_parse(json_string_value(json_object_get(row, "state")));
        char appointment[MC_CALENDAR_ISO_LEN];
        int64_t appointment_ms = json_integer_value(json_object_get(row, "appointment_ms"));
        if (mc_calendar_iso8601(appointment_ms, appointment) != MC_OK)
            appointment[0] = '\0';
        json_t *params = json_pack("{s:s, s:s, s:s}", "appointment_at", appointment, "reason",
                                   json_string_value(json_object_get(row, "reason")), "procedure",
                                   json_string_value(json_object_get(row, "procedure_name")));
        change_t ch = {
            .code = code,
            .from = state,
            .states = {state},
            .nstates = 1,
            .action = "overdue",
            .actor = "routing",
            .note = json_string_value(json_object_get(row, "reason")),
            .agency = json_string_value(json_object_get(row, "step_agency")),
            .step_name = json_string_value(json_object_get(row, "step_name")),
            .step_agency = json_string_value(json_object_get(row, "step_agency")),
            .due_ms = json_integer_value(json_object_get(row, "due_ms")),
            .overdue = 1,
            .appointment_ms = appointment_ms,
            .notify = "overdue_apology",
            .notify_params = params,
            .applicant = json_object_get(row, "applicant"),
            .reference = json_object_get(row, "reference"),
        };
        change_emit(sw->outbox, &ch);
        json_decref(params);
        json_decref(row);
    }
    mc_outbox_write(sw->outbox, conn, on_emitted, sw);
}

/* Candidates are selected and locked first, because the new appointment is computed
 * in C with the calendar; one statement then marks them all. */
static void on_candidates(mc_db_conn_t *conn, PGresult *res, int status, void *arg);

static void on_begun(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    sweep_t *sw = arg;
    if (status != MC_OK) {
        sweep_end(sw, res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_int(&p, SWEEP_BATCH);
    mc_db_query(conn,
                "SELECT c.code, c.days FROM routing.cases c"
                " WHERE c.resolved_at IS NULL AND c.paused_at IS NULL AND c.overdue_at IS NULL"
                "  AND c.due_at < now() AND c.state IN"
                "  ('SUBMITTED', 'RECEIVED', 'IN_PROGRESS', 'HANDED_OFF')"
                " ORDER BY c.due_at LIMIT $1::int FOR UPDATE SKIP LOCKED",
                &p, 0, on_candidates, sw);
}

static void on_candidates(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    sweep_t *sw = arg;
    if (status != MC_OK) {
        sweep_end(sw, res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    int n = PQntuples(res);
    if (n == 0) {
        sweep_end(sw, NULL);
        return;
    }
    /* Arrays of codes and appointments for one marking statement. */
    json_t *codes = json_array(), *appointments = json_array();
    int64_t now = mc_wall_ms();
    for (int r = 0; r < n; r++) {
        double days = atof(PQgetvalue(res, r, 1));
        double extra = fmax(1.0, ceil(days * 0.5));
        json_array_append_new(codes, json_string(PQgetvalue(res, r, 0)));
        json_array_append_new(appointments, json_integer(deadline_due(sw->svc, now, extra, NULL)));
    }
    char *codes_text = json_dumps(codes, JSON_COMPACT);
    char *appointments_text = json_dumps(appointments, JSON_COMPACT);
    json_decref(codes);
    json_decref(appointments);
    static const char *sql =
        "WITH late AS (SELECT code, (appt)::bigint AS appointment_ms FROM"
        "   jsonb_array_elements_text($1::jsonb) WITH ORDINALITY AS a(code, o)"
        "   JOIN jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS b(appt, o2) ON o = o2),"
        " marked AS (UPDATE routing.cases c SET overdue_at = now(), updated_at = now()"
        "   FROM late WHERE c.code = late.code RETURNING c.*, late.appointment_ms),"
        /* A case without steps (imported) is late at its own agency. */
        " step AS (SELECT m.code, coalesce(s.name, m.procedure_name) AS name,"
        "   coalesce(s.agency_code, m.resolving_agency) AS agency_code, ag.name AS agency_name"
        "   FROM marked m LEFT JOIN routing.case_steps s ON s.code = m.code"
        "   AND s.idx = m.step_index"
        "   LEFT JOIN routing.agencies ag ON ag.code = coalesce(s.agency_code, "
        "m.resolving_agency)),"
        " apology AS (INSERT INTO routing.apologies (code, agency_code, reason, due_at,"
        "   appointment_at)"
        "   SELECT m.code, st.agency_code, 'Hồ sơ quá hạn giải quyết tại bước \"' ||"
        "    coalesce(st.name, '') ||"
        "    '\" (' || coalesce(st.agency_name, st.agency_code) || '). Cơ quan xin lỗi và hẹn lại"
        " ngày trả kết quả.', m.due_at, to_timestamp(m.appointment_ms / 1000.0)"
        "   FROM marked m JOIN step st ON st.code = m.code RETURNING code, reason),"
        " ev AS (INSERT INTO routing.case_events (code, from_state, to_state, actor, note)"
        "   SELECT a.code, m.state, m.state, 'routing', a.reason FROM apology a"
        "   JOIN marked m ON m.code = a.code)"
        " SELECT json_build_object('code', m.code, 'state', m.state,"
        "  'due_ms', (extract(epoch FROM m.due_at) * 1000)::bigint,"
        "  'appointment_ms', m.appointment_ms, 'reason', a.reason, 'step_name', st.name,"
        "  'step_agency', st.agency_code, 'applicant', m.applicant,"
        "  'procedure_name', m.procedure_name, 'reference', m.reference)"
        " FROM marked m JOIN step st ON st.code = m.code JOIN apology a ON a.code = m.code";
    mc_db_params_t p = {0};
    mc_db_param_text(&p, codes_text);
    mc_db_param_text(&p, appointments_text);
    mc_db_query(conn, sql, &p, 0, on_marked, sw);
    free(codes_text);
    free(appointments_text);
}

static void on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    sweep_t *sw = arg;
    if (status != MC_OK) {
        sweep_end(sw, mc_strerror(status));
        return;
    }
    sw->conn = conn;
    mc_db_query(conn, "BEGIN", NULL, 0, on_begun, sw);
}

void deadline_sweep(mc_service_t *svc)
{
    if (sweeping)
        return;
    sweeping = 1;
    sweep_t *sw = mc_new(sweep_t);
    sw->svc = svc;
    mc_db_acquire(mc_service_db(svc), on_conn, sw);
}
