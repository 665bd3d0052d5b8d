/* action.c: POST /v1/dossiers/{code}/actions — an officer acts on a case.
 *
 *   {"action": "forward", "note": "...", "officer": "Nguyễn Thị C"}
 *
 * The officer's key must cover the agency of the step in charge (its agency or one above
 * it); withdrawal may also be recorded by the receiving desk. The transition is checked
 * by the one state machine (common/dossier_state.c): not allowed → 409 with the current
 * state. In one transaction, under a row lock on the case: the case and its steps move,
 * the clock stops or restarts, the event is recorded with who and when, and
 * DossierStatusChanged (plus the applicant's notification, plus HandoffRequested when the
 * next step belongs to an agency outside motcua) go to the outbox. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "routing.h"

#define S(x) MOTCUA__V1__DOSSIER_STATE__STATE_##x

/* Actions an officer may ask for; the others come from the bus. */
static const mc_action_t officer_actions[] = {
    MC_ACT_RECEIVE,
    MC_ACT_REJECT,
    MC_ACT_REQUEST_SUPPLEMENT,
    MC_ACT_SUPPLEMENT_RECEIVED,
    MC_ACT_FORWARD,
    MC_ACT_APPROVE,
    MC_ACT_REFUSE,
    MC_ACT_RESULT_READY,
    MC_ACT_RETURN,
    MC_ACT_WITHDRAW,
};

typedef struct {
    mc_http_req_t *req;
    mc_service_t *svc;
    mc_principal_t who;
    mc_action_t action;
    char *note;
    char *officer;
    char code[65];
    mc_db_conn_t *conn;
    json_t *c;      /* the case as locked */
    json_t *params; /* notification parameters */
    json_t *answer;
    mc_outbox_t *outbox;
    char actor[300];
    /* the decision */
    change_t ch;
    int step, new_step, done_old, start_new;
    int64_t due_ms, step_due_ms;
    const char *pause; /* "set", "clear" or "keep" */
    const char *pause_kind;
    const char *outcome;
    json_t *handoff_step; /* borrowed from c */
    json_t *steps;        /* the steps after the change (change_steps) */
} act_t;

static void act_free(act_t *a)
{
    if (a->conn)
        mc_db_release(a->conn); /* rolls back if the transaction is still open */
    json_decref(a->c);
    json_decref(a->params);
    json_decref(a->answer);
    json_decref(a->steps);
    mc_outbox_destroy(&a->outbox);
    free(a->note);
    free(a->officer);
    free(a);
}

static void act_fail(act_t *a, PGresult *res, int status, const char *step)
{
    mc_logd(MC_LOG_ERROR, NULL, a->code, "action %s: %s failed: %s", mc_action_name(a->action),
            step, res ? PQresultErrorMessage(res) : mc_strerror(status));
    mc_http_reply_error(a->req, 503, "unavailable", "the case could not be changed; try again",
                        NULL);
    act_free(a);
}

static void act_refuse(act_t *a, int status, const char *code, const char *message,
                       const char *field)
{
    mc_http_reply_error(a->req, status, code, message, field);
    act_free(a);
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static json_int_t jint(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* ---------------------------------------------------------------- after the decision */

static void on_committed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    act_t *a = arg;
    if (status != MC_OK) {
        act_fail(a, res, status, "commit");
        return;
    }
    mc_logd(MC_LOG_INFO, NULL, a->code, "%s by %s", mc_action_name(a->action), a->actor);
    mc_http_reply_json(a->req, 200, json_incref(a->answer));
    act_free(a);
}

static void on_emitted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    act_t *a = arg;
    if (status != MC_OK) {
        act_fail(a, res, status, "outbox");
        return;
    }
    mc_db_query(conn, "COMMIT", NULL, 0, on_committed, a);
}

static void on_written(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    act_t *a = arg;
    if (status != MC_OK) {
        act_fail(a, res, status, "update");
        return;
    }
    a->ch.steps = a->steps = change_steps(res);
    a->outbox = mc_outbox_new("routing");
    change_emit(a->outbox, &a->ch);
    if (a->handoff_step)
        change_emit_handoff(a->outbox, a->code, a->c, a->new_step, a->handoff_step, a->step_due_ms,
                            a->note, mc_http_header(a->req, "x-trace-id"));
    if (a->action == MC_ACT_RESULT_READY) /* postal ships it when it goes back by post */
        change_emit_result_ready(a->outbox, a->code, a->c, a->steps,
                                 mc_http_header(a->req, "x-trace-id"));
    mc_outbox_write(a->outbox, conn, on_emitted, a);
}

static void write_change(act_t *a)
{
    change_rows_t rows = {.step = a->step,
                          .new_step = a->new_step,
                          .done_old = a->done_old,
                          .start_new = a->start_new,
                          .due_ms = a->due_ms,
                          .step_due_ms = a->step_due_ms,
                          .pause = a->pause,
                          .pause_kind = a->pause_kind,
                          .outcome = a->outcome,
                          .result = a->note}; /* the officer's note: what the step produced */
    change_write(a->conn, &a->ch, &rows, on_written, a);
}

/* ---------------------------------------------------------------- the decision */

static void answer(act_t *a, json_t *step)
{
    char due[MC_CALENDAR_ISO_LEN] = "";
    int64_t due_ms = a->due_ms > 0 ? a->due_ms : jint(a->c, "due_ms");
    if (due_ms > 0 && mc_calendar_iso8601(due_ms, due) != MC_OK)
        due[0] = '\0';
    mc_state_t to = a->ch.states[a->ch.nstates - 1];
    a->answer = json_pack("{s:s, s:s, s:s, s:i, s:s, s:{s:i, s:s, s:s}}", "code", a->code, "action",
                          mc_action_name(a->action), "state", mc_state_name(to), "national_status",
                          mc_state_national(to), "due_at", due, "step", "index", a->new_step,
                          "name", jstr(step, "name"), "agency", jstr(step, "agency"));
}

/* Work out what the action does to this case; 0, or an error already replied. */
static int decide(act_t *a)
{
    json_t *c = a->c, *steps = json_object_get(c, "steps");
    mc_state_t from = mc_state_parse(jstr(c, "state"));
    a->step = a->new_step = (int)jint(c, "step");
    json_t *cur = json_array_get(steps, (size_t)a->step);
    int covers_step = json_is_true(json_object_get(c, "covers_step"));
    int covers_desk = json_is_true(json_object_get(c, "covers_desk"));
    /* The receiving desk also records withdrawals and hands results back. */
    int desk_action = a->action == MC_ACT_WITHDRAW || a->action == MC_ACT_RESULT_READY ||
                      a->action == MC_ACT_RETURN;
    /* A step done outside motcua has no officer here: when it is back, the receiving
     * desk carries the case on (approves, refuses, hands off again). */
    int outside = json_is_true(json_object_get(cur, "external"));
    if (!covers_step && !((desk_action || outside) && covers_desk)) {
        act_refuse(a, 403, "forbidden",
                   "this dossier is not in your agency's queue (its current step belongs to "
                   "another agency)",
                   "agency");
        return -1;
    }
    mc_action_t act = a->action;
    json_t *next = json_array_get(steps, (size_t)a->step + 1);
    if (act == MC_ACT_FORWARD && next && json_is_true(json_object_get(next, "external")))
        act = MC_ACT_HAND_OFF;
    mc_state_t to;
    if (mc_state_next(from, act, &to) != MC_OK) {
        char msg[200];
        snprintf(msg, sizeof msg, "cannot %s a dossier in state %s", mc_action_name(a->action),
                 mc_state_name(from));
        mc_http_reply_json(a->req, 409,
                           json_pack("{s:{s:s, s:s, s:s}, s:s}", "error", "code", "conflict",
                                     "message", msg, "field", "action", "state",
                                     mc_state_name(from)));
        act_free(a);
        return -1;
    }
    if ((act == MC_ACT_FORWARD || act == MC_ACT_HAND_OFF) && !next) {
        act_refuse(a, 409, "conflict", "this is the last step: approve or refuse", "action");
        return -1;
    }
    if (act == MC_ACT_APPROVE && next) {
        act_refuse(a, 409, "conflict", "steps remain: forward the dossier first", "action");
        return -1;
    }
    int needs_reason = act == MC_ACT_REJECT || act == MC_ACT_REFUSE ||
                       act == MC_ACT_REQUEST_SUPPLEMENT || act == MC_ACT_WITHDRAW;
    if (needs_reason && (!a->note || !*a->note)) {
        act_refuse(a, 422, "rule_violation",
                   "a note is required: the reason, or what the applicant must supply", "note");
        return -1;
    }

    mc_service_t *svc = a->svc;
    int64_t now = mc_wall_ms();
    const mc_calendar_t *cal = mc_service_calendar(svc);
    change_t *ch = &a->ch;
    ch->code = a->code;
    ch->from = from;
    ch->states[ch->nstates++] = to;
    ch->action = mc_action_name(a->action);
    ch->actor = a->actor;
    ch->note = a->note;
    ch->applicant = json_object_get(c, "applicant");
    ch->reference = json_object_get(c, "reference");
    ch->trace = mc_http_header(a->req, "x-trace-id");
    ch->notify_params = a->params;
    json_object_set_new(a->params, "procedure", json_string(jstr(c, "procedure_name")));
    if (a->note)
        json_object_set_new(a->params, "note", json_string(a->note));
    a->pause = "keep";
    json_t *now_step = cur;

    switch (act) {
    case MC_ACT_RECEIVE: {
        /* A valid receipt starts the clock: the due time counts from now. */
        int online_fee = jint(c, "fee") > 0 && jint(c, "level") == 4 &&
                         strcmp(jstr(c, "channel"), "online") == 0;
        mc_state_t then;
        int rc = mc_state_next(to, online_fee ? MC_ACT_REQUEST_PAYMENT : MC_ACT_START, &then);
        (void)rc;
        ch->states[ch->nstates++] = then;
        a->due_ms = deadline_due(svc, now, json_number_value(json_object_get(c, "days")),
                                 json_string_value(json_object_get(c, "cutoff")));
        ch->notify = "received";
        if (online_fee) {
            /* The applicant is told what to pay and where (payment's pay link). */
            a->pause = "set";
            a->pause_kind = "payment";
            ch->notify = "payment_due";
            char link[512], amount[32];
            change_pay_link(a->code, link, sizeof link);
            snprintf(amount, sizeof amount, "%lld", (long long)jint(c, "fee"));
            json_object_set_new(a->params, "pay_link", json_string(link));
            json_object_set_new(a->params, "amount", json_string(amount));
        }
        break;
    }
    case MC_ACT_REJECT:
        a->outcome = "rejected";
        ch->notify = "rejected";
        break;
    case MC_ACT_REQUEST_SUPPLEMENT:
        a->pause = "set";
        a->pause_kind = "supplement";
        ch->notify = "supplement_requested";
        break;
    case MC_ACT_SUPPLEMENT_RECEIVED: {
        /* The clock runs again with the working time that was left when it stopped. */
        int64_t paused = jint(c, "paused_ms");
        int64_t left = mc_calendar_working_ms_between(cal, paused, jint(c, "due_ms"));
        int64_t step_left = mc_calendar_working_ms_between(cal, paused, jint(cur, "due_ms"));
        a->due_ms = mc_calendar_add_working_ms(cal, now, left);
        a->step_due_ms = jint(cur, "due_ms") ? mc_calendar_add_working_ms(cal, now, step_left) : 0;
        a->start_new = 1;
        a->pause = "clear";
        ch->notify = "supplement_received";
        break;
    }
    case MC_ACT_FORWARD:
    case MC_ACT_HAND_OFF:
        a->new_step = a->step + 1;
        a->done_old = 1;
        a->start_new = 1;
        a->step_due_ms =
            deadline_due(svc, now, json_number_value(json_object_get(next, "days")), NULL);
        now_step = next;
        if (act == MC_ACT_HAND_OFF)
            a->handoff_step = next;
        break;
    case MC_ACT_APPROVE:
        a->done_old = 1;
        a->outcome = "approved";
        break;
    case MC_ACT_REFUSE:
        a->done_old = 1;
        a->outcome = "refused";
        ch->notify = "refused";
        break;
    case MC_ACT_RESULT_READY: ch->notify = "result_ready"; break;
    case MC_ACT_RETURN: ch->notify = "returned"; break;
    case MC_ACT_WITHDRAW:
        a->outcome = "withdrawn";
        a->pause = "clear";
        ch->notify = "withdrawn";
        break;
    default: break;
    }
    if (a->outcome)
        a->pause = "clear";
    ch->agency = jstr(now_step, "agency");
    ch->step_name = jstr(now_step, "name");
    ch->step_agency = jstr(now_step, "agency");
    ch->due_ms = a->due_ms > 0 ? a->due_ms : jint(c, "due_ms");
    /* Overdue: open, past due, and the clock (if stopped) stopped after the due time —
     * the same rule as the case view, the queues and the statistics. */
    int64_t paused_ms = strcmp(a->pause, "set") == 0     ? now
                        : strcmp(a->pause, "clear") == 0 ? 0
                                                         : jint(c, "paused_ms");
    ch->overdue = mc_state_is_open(ch->states[ch->nstates - 1]) && ch->due_ms > 0 &&
                  ch->due_ms < now && (paused_ms == 0 || paused_ms >= ch->due_ms);
    if (ch->notify && ch->due_ms > 0) {
        char due[MC_CALENDAR_ISO_LEN];
        if (mc_calendar_iso8601(ch->due_ms, due) == MC_OK)
            json_object_set_new(a->params, "due_at", json_string(due));
    }
    answer(a, now_step);
    return 0;
}

static void on_case(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    act_t *a = arg;
    if (status != MC_OK) {
        act_fail(a, res, status, "lock");
        return;
    }
    if (PQntuples(res) != 1) {
        act_refuse(a, 404, "not_found", "no case with this code", "code");
        return;
    }
    a->c = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (decide(a) == 0)
        write_change(a);
}

#define MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"
/* 1 if the agency $2 is the agency given or one above it. */
#define COVERS(agency)                                                                             \
    "EXISTS (WITH RECURSIVE up(code, parent) AS (SELECT code, parent FROM routing.agencies"        \
    " WHERE code = " agency " UNION SELECT a.code, a.parent FROM routing.agencies a"               \
    " JOIN up ON a.code = up.parent) SELECT 1 FROM up WHERE up.code = $2)"

static void on_begun(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    act_t *a = arg;
    if (status != MC_OK) {
        act_fail(a, res, status, "begin");
        return;
    }
    /* SQL assembled with macros: kept as written. */
    // clang-format off
    static const char *sql =
        "WITH c AS (SELECT * FROM routing.cases WHERE code = $1 FOR UPDATE),"
        " cur AS (SELECT s.agency_code FROM c JOIN routing.case_steps s"
        "   ON s.code = c.code AND s.idx = c.step_index),"
        " desk AS (SELECT s.agency_code FROM c JOIN routing.case_steps s"
        "   ON s.code = c.code AND s.idx = 0)"
        " SELECT json_build_object('state', c.state, 'step', c.step_index, 'days', c.days,"
        "  'cutoff', c.cutoff, 'fee', c.fee, 'level', c.level, 'channel', c.channel,"
        "  'procedure_code', c.procedure_code, 'procedure_name', c.procedure_name,"
        "  'due_ms', " MS("c.due_at") ", 'paused_ms', " MS("c.paused_at") ","
        "  'applicant', c.applicant, 'documents', c.documents,"
        "  'return_method', c.return_method, 'delivery_address', c.delivery_address,"
        "  'reference', c.reference,"
        "  'steps', (SELECT json_agg(json_build_object('index', s.idx, 'name', s.name,"
        "    'agency', s.agency_code, 'days', s.days, 'external', s.external,"
        "    'procedure', s.procedure_code,"
        "    'due_ms', " MS("s.due_at") ") ORDER BY s.idx)"
        "    FROM routing.case_steps s WHERE s.code = c.code),"
        "  'covers_step', " COVERS("(SELECT agency_code FROM cur)") ","
        "  'covers_desk', " COVERS("(SELECT agency_code FROM desk)") ")"
        " FROM c";
    // clang-format on
    mc_db_params_t p = {0};
    mc_db_param_text(&p, a->code);
    mc_db_param_text(&p, a->who.agency);
    mc_db_query(conn, sql, &p, 0, on_case, a);
}

static void on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    act_t *a = arg;
    if (status != MC_OK) {
        act_fail(a, NULL, status, "connect");
        return;
    }
    a->conn = conn;
    mc_db_query(conn, "BEGIN", NULL, 0, on_begun, a);
}

/* Authenticated as an officer: read the request and start the transaction. (The key
 * is checked first, so nothing is allocated for a request that is refused.) */
static void act_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    mc_service_t *svc = arg;
    if (!who->agency[0]) {
        mc_http_reply_error(req, 403, "forbidden", "an officer key bound to an agency is required",
                            NULL);
        return;
    }
    json_t *in = mc_http_json_body(req);
    if (!in)
        return;
    json_t *action = json_object_get(in, "action"), *note = json_object_get(in, "note"),
           *officer = json_object_get(in, "officer");
    mc_action_t act = MC_ACT_COUNT;
    int known = json_is_string(action) && mc_action_parse(json_string_value(action), &act) == MC_OK;
    int allowed = 0;
    for (size_t i = 0; known && i < MC_COUNT(officer_actions); i++)
        allowed |= officer_actions[i] == act;
    const char *bad = NULL, *why = NULL;
    if (!allowed) {
        bad = "action";
        why = "action must be one of receive, reject, request_supplement, supplement_received, "
              "forward, approve, refuse, result_ready, return, withdraw";
    } else if (note && !json_is_null(note) &&
               (!json_is_string(note) || json_string_length(note) > 2000)) {
        bad = "note";
        why = "note must be a string of at most 2000 characters";
    } else if (officer && !json_is_null(officer) &&
               (!json_is_string(officer) || json_string_length(officer) == 0 ||
                json_string_length(officer) > 200)) {
        bad = "officer";
        why = "officer must be a name of at most 200 characters";
    }
    if (bad) {
        mc_http_reply_error(req, 400, "invalid", why, bad);
        json_decref(in);
        return;
    }
    act_t *a = mc_new(act_t);
    a->req = req;
    a->svc = svc;
    a->who = *who;
    a->action = act;
    snprintf(a->code, sizeof a->code, "%s", mc_http_param(req, "code"));
    a->note = json_is_string(note) && json_string_length(note) ? mc_strdup(json_string_value(note))
                                                               : NULL;
    a->officer = json_is_string(officer) ? mc_strdup(json_string_value(officer)) : NULL;
    a->params = json_object();
    json_decref(in);
    snprintf(a->actor, sizeof a->actor, "%s%s%s%s", a->officer ? a->officer : "",
             a->officer ? " (" : "", who->name, a->officer ? ")" : "");
    mc_db_acquire(mc_service_db(svc), on_conn, a);
}

void action_apply(mc_http_req_t *req, void *arg)
{
    const char *code = mc_http_param(req, "code");
    if (!code || !*code || strlen(code) > 64) {
        mc_http_reply_error(req, 400, "invalid", "not a dossier code", "code");
        return;
    }
    mc_auth_require(routing_of(arg)->auth, req, MC_SCOPE_OFFICER, act_as, arg);
}
