/* change.c: the envelopes every change of a case emits — one DossierStatusChanged per
 * state passed through (intake keeps the public view, interconnect and others follow),
 * and the applicant's notification. Written in the same transaction as the change.
 * A dossier from another system carries its reference on every status change.
 *
 * Steps: change_write's statement also answers with the case's steps as they are after
 * the change (the statement's own updates are not visible to it, so the new values are
 * worked out from its parameters), and every DossierStatusChanged carries them with
 * their public state (step_state below), so intake's view of a liên thông chain is
 * routing's word, whole, at each change. What each step produced (case_steps.result)
 * goes back to the applicant together: ResultReady.results and the `results` line of
 * the result_ready notification. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routing.h"

static char *str_or_empty(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return (char *)(s ? s : "");
}

#define S(x) MOTCUA__V1__DOSSIER_STATE__STATE_##x

/* The public state of step st (from change_steps) when the case is in state `to`: the
 * step in charge follows the case; a step after it that was started and is not done
 * came back from its agency refused or too late. */
static const char *step_state(json_t *st, mc_state_t to)
{
    int done = json_is_true(json_object_get(st, "done"));
    int started = json_is_true(json_object_get(st, "started"));
    if (!json_is_true(json_object_get(st, "current")))
        return done ? "done" : started ? "failed" : "waiting";
    switch (to) {
    case S(APPROVED):
    case S(RESULT_READY):
    case S(RETURNED): return "done";
    case S(REFUSED):
    case S(REJECTED_AT_INTAKE): return "failed";
    case S(WITHDRAWN): return done ? "done" : "stopped";
    case S(HANDED_OFF): return "handed_off";
    default: return done ? "done" : "in_progress";
    }
}

/* "Kết quả: <step>: <result>; ..." over the steps that produced something, or "". */
static char *results_line(json_t *steps)
{
    size_t len = 0, i;
    json_t *st;
    json_array_foreach(steps, i, st) len +=
        strlen(str_or_empty(st, "name")) + strlen(str_or_empty(st, "result")) + 4;
    char *line = mc_alloc(len + 32);
    line[0] = '\0';
    json_array_foreach(steps, i, st)
    {
        const char *result = str_or_empty(st, "result");
        if (!*result)
            continue;
        strcat(line, line[0] ? "; " : "Kết quả: ");
        strcat(line, str_or_empty(st, "name"));
        strcat(line, ": ");
        strcat(line, result);
    }
    if (line[0])
        strcat(line, ".");
    return line;
}

void change_emit(mc_outbox_t *ob, const change_t *ch)
{
    mc_state_t from = ch->from;
    size_t nsteps = json_array_size(ch->steps);
    Motcua__V1__StepStatus *sv = mc_alloc(sizeof *sv * (nsteps ? nsteps : 1));
    Motcua__V1__StepStatus **sp = mc_alloc(sizeof *sp * (nsteps ? nsteps : 1));
    for (int i = 0; i < ch->nstates; i++) {
        Motcua__V1__DossierStatusChanged sc = MOTCUA__V1__DOSSIER_STATUS_CHANGED__INIT;
        mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
        sc.code = (char *)ch->code;
        sc.from = from;
        sc.to = ch->states[i];
        sc.national_status = mc_state_national(sc.to);
        sc.agency_code = (char *)(ch->agency ? ch->agency : "");
        sc.actor = (char *)(ch->actor ? ch->actor : "routing");
        sc.note = (char *)(ch->note ? ch->note : "");
        sc.at_ms = mc_wall_ms();
        sc.due_at_ms = ch->due_ms;
        sc.overdue = ch->overdue;
        sc.appointment_at_ms = ch->appointment_ms;
        sc.step_name = (char *)(ch->step_name ? ch->step_name : "");
        sc.step_agency_code = (char *)(ch->step_agency ? ch->step_agency : "");
        sc.action = (char *)(ch->action ? ch->action : "");
        Motcua__V1__Reference ref = MOTCUA__V1__REFERENCE__INIT;
        if (json_is_object(ch->reference)) {
            ref.system = str_or_empty(ch->reference, "system");
            ref.id = str_or_empty(ch->reference, "id");
            ref.handoff_id = str_or_empty(ch->reference, "handoff_id");
            sc.reference = &ref;
        }
        for (size_t k = 0; k < nsteps; k++) {
            json_t *st = json_array_get(ch->steps, k);
            motcua__v1__step_status__init(&sv[k]);
            sv[k].step_index = (int32_t)json_integer_value(json_object_get(st, "index"));
            sv[k].step_name = str_or_empty(st, "name");
            sv[k].agency_code = str_or_empty(st, "agency");
            sv[k].state = (char *)step_state(st, ch->states[i]);
            sv[k].result = str_or_empty(st, "result");
            sp[k] = &sv[k];
        }
        sc.n_steps = nsteps;
        sc.steps = sp;
        env.dossier_code = (char *)ch->code;
        env.body_case = MOTCUA__V1__ENVELOPE__BODY_DOSSIER_STATUS_CHANGED;
        env.dossier_status_changed = &sc;
        mc_outbox_add(ob, &env, ch->trace, ch->causation);
        from = ch->states[i];
    }
    free(sv);
    free(sp);
    if (!ch->notify)
        return;
    Motcua__V1__NotificationRequested n = MOTCUA__V1__NOTIFICATION_REQUESTED__INIT;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    size_t np = json_object_size(ch->notify_params) + 1;
    Motcua__V1__NotificationRequested__ParamsEntry *pv = mc_alloc(sizeof *pv * np);
    Motcua__V1__NotificationRequested__ParamsEntry **pp = mc_alloc(sizeof *pp * np);
    const char *key;
    json_t *value;
    size_t k = 0;
    json_object_foreach(ch->notify_params, key, value)
    {
        motcua__v1__notification_requested__params_entry__init(&pv[k]);
        pv[k].key = (char *)key;
        pv[k].value = (char *)(json_is_string(value) ? json_string_value(value) : "");
        pp[k] = &pv[k];
        k++;
    }
    /* The result is ready: the applicant hears what every step produced, at once. */
    char *results = NULL;
    if (strcmp(ch->notify, "result_ready") == 0 && ch->steps &&
        !json_object_get(ch->notify_params, "results")) {
        results = results_line(ch->steps);
        motcua__v1__notification_requested__params_entry__init(&pv[k]);
        pv[k].key = "results";
        pv[k].value = results;
        pp[k] = &pv[k];
        k++;
    }
    n.code = (char *)ch->code;
    n.event = (char *)ch->notify;
    n.email = str_or_empty(ch->applicant, "email");
    n.phone = str_or_empty(ch->applicant, "phone");
    n.n_params = k;
    n.params = pp;
    env.dossier_code = (char *)ch->code;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_NOTIFICATION_REQUESTED;
    env.notification_requested = &n;
    mc_outbox_add(ob, &env, ch->trace, ch->causation);
    free(pv);
    free(pp);
    free(results);
}

json_t *change_steps(PGresult *res)
{
    if (!res || PQntuples(res) != 1 || PQnfields(res) < 1)
        return NULL;
    json_t *steps = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (!json_is_array(steps)) {
        json_decref(steps);
        return NULL;
    }
    return steps;
}

json_t *change_steps_opened(const Motcua__V1__DossierSubmitted *ev)
{
    json_t *steps = json_array();
    for (size_t i = 0; i < ev->n_steps; i++)
        json_array_append_new(steps, json_pack("{s:i, s:s, s:s, s:b, s:b, s:b, s:s}", "index",
                                               (int)i, "name", ev->steps[i]->name, "agency",
                                               ev->steps[i]->agency_code, "current", i == 0,
                                               "started", i == 0, "done", 0, "result", ""));
    return steps;
}

void change_emit_result_ready(mc_outbox_t *ob, const char *code, json_t *c, json_t *steps,
                              const char *trace)
{
    json_t *applicant = json_object_get(c, "applicant");
    Motcua__V1__Applicant ap = MOTCUA__V1__APPLICANT__INIT;
    Motcua__V1__ResultReady r = MOTCUA__V1__RESULT_READY__INIT;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    ap.name = str_or_empty(applicant, "name");
    ap.phone = str_or_empty(applicant, "phone");
    ap.email = str_or_empty(applicant, "email");
    ap.address = str_or_empty(applicant, "address");
    size_t n = json_array_size(steps);
    Motcua__V1__StepResult *rv = mc_alloc(sizeof *rv * (n ? n : 1));
    Motcua__V1__StepResult **rp = mc_alloc(sizeof *rp * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        json_t *st = json_array_get(steps, i);
        motcua__v1__step_result__init(&rv[i]);
        rv[i].step_index = (int32_t)json_integer_value(json_object_get(st, "index"));
        rv[i].step_name = str_or_empty(st, "name");
        rv[i].agency_code = str_or_empty(st, "agency");
        rv[i].result = str_or_empty(st, "result");
        rp[i] = &rv[i];
    }
    r.code = (char *)code;
    r.return_method = str_or_empty(c, "return_method");
    r.delivery_address = str_or_empty(c, "delivery_address");
    r.applicant = &ap;
    r.procedure_name = str_or_empty(c, "procedure_name");
    r.n_results = n;
    r.results = rp;
    env.dossier_code = (char *)code;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_RESULT_READY;
    env.result_ready = &r;
    mc_outbox_add(ob, &env, trace, NULL);
    free(rv);
    free(rp);
}

void change_write(mc_db_conn_t *conn, const change_t *ch, const change_rows_t *rows,
                  mc_db_result_fn fn, void *arg)
{
    /* One statement: the case, its steps, the clock's pauses and the events. */
    static const char *sql =
        "WITH c AS (UPDATE routing.cases SET state = $2, step_index = $3::int,"
        "   due_at = CASE WHEN $4::bigint > 0 THEN to_timestamp($4::bigint / 1000.0)"
        "     ELSE due_at END,"
        "   paused_at = CASE $5 WHEN 'set' THEN now() WHEN 'clear' THEN NULL ELSE paused_at END,"
        "   overdue_at = CASE WHEN $4::bigint > 0 AND to_timestamp($4::bigint / 1000.0) > now()"
        "     THEN NULL ELSE overdue_at END,"
        "   resolved_at = CASE WHEN $6::text IS NOT NULL THEN now() ELSE resolved_at END,"
        "   outcome = coalesce($6, outcome), updated_at = now()"
        "   WHERE code = $1 RETURNING code),"
        " d AS (UPDATE routing.case_steps SET done_at = now(), result = coalesce($16, result)"
        "   WHERE code = $1 AND idx = $7::int AND $8::boolean AND done_at IS NULL),"
        " n AS (UPDATE routing.case_steps SET started_at = coalesce(started_at, now()),"
        "   due_at = CASE WHEN $10::bigint > 0 THEN to_timestamp($10::bigint / 1000.0)"
        "     ELSE due_at END,"
        "   done_at = CASE WHEN $17::boolean THEN NULL ELSE done_at END,"
        "   result = CASE WHEN $17::boolean THEN '' ELSE result END"
        "   WHERE code = $1 AND idx = $3::int AND $9::boolean),"
        " po AS (INSERT INTO routing.pauses (code, kind, started_at, note)"
        "   SELECT $1, $11, now(), coalesce($12, '') WHERE $11::text IS NOT NULL),"
        " pc AS (UPDATE routing.pauses SET ended_at = now()"
        "   WHERE code = $1 AND ended_at IS NULL AND $5 = 'clear'),"
        " ev AS (INSERT INTO routing.case_events (code, from_state, to_state, actor, note)"
        "  SELECT $1, u.f, u.t, $15, coalesce($12, '') FROM"
        "  unnest($13::text[], $14::text[]) WITH ORDINALITY AS u(f, t, o) ORDER BY u.o)"
        /* The steps after the change, from the rows before it and what d and n do. */
        " SELECT coalesce(json_agg(json_build_object('index', s.idx, 'name', s.name,"
        "   'agency', s.agency_code, 'current', s.idx = $3::int,"
        "   'started', s.started_at IS NOT NULL OR (s.idx = $3::int AND $9::boolean),"
        "   'done', CASE WHEN s.idx = $3::int AND $9::boolean AND $17::boolean THEN false"
        "     ELSE s.done_at IS NOT NULL OR (s.idx = $7::int AND $8::boolean) END,"
        "   'result', CASE WHEN s.idx = $3::int AND $9::boolean AND $17::boolean THEN ''"
        "     WHEN s.idx = $7::int AND $8::boolean AND s.done_at IS NULL"
        "     THEN coalesce($16, s.result) ELSE s.result END) ORDER BY s.idx), '[]')"
        " FROM routing.case_steps s WHERE s.code = $1";
    char froms[160] = "{", tos[160] = "{";
    mc_state_t from = ch->from;
    for (int i = 0; i < ch->nstates; i++) {
        strcat(froms, i ? "," : "");
        strcat(froms, mc_state_name(from));
        strcat(tos, i ? "," : "");
        strcat(tos, mc_state_name(ch->states[i]));
        from = ch->states[i];
    }
    strcat(froms, "}");
    strcat(tos, "}");
    mc_db_params_t p = {0};
    mc_db_param_text(&p, ch->code);
    mc_db_param_text(&p, mc_state_name(ch->states[ch->nstates - 1]));
    mc_db_param_int(&p, rows->new_step);
    mc_db_param_int(&p, rows->due_ms);
    mc_db_param_text(&p, rows->pause ? rows->pause : "keep");
    mc_db_param_text(&p, rows->outcome);
    mc_db_param_int(&p, rows->step);
    mc_db_param_text(&p, rows->done_old ? "true" : "false");
    mc_db_param_text(&p, rows->start_new ? "true" : "false");
    mc_db_param_int(&p, rows->step_due_ms);
    mc_db_param_text(&p, rows->pause_kind);
    mc_db_param_text(&p, ch->note);
    mc_db_param_text(&p, froms);
    mc_db_param_text(&p, tos);
    mc_db_param_text(&p, ch->actor);
    mc_db_param_text(&p, rows->done_old ? rows->result : NULL);
    mc_db_param_text(&p, rows->start_new && rows->reopen_new ? "true" : "false");
    mc_db_query(conn, sql, &p, 0, fn, arg);
}

void change_pay_link(const char *code, char *out, size_t len)
{
    const char *base = getenv("MOTCUA_PAYMENT_PUBLIC_URL");
    snprintf(out, len, "%s/v1/payments/pay/%s", base && *base ? base : "http://127.0.0.1:8083",
             code);
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

void change_emit_handoff(mc_outbox_t *ob, const char *code, json_t *c, int step_index, json_t *st,
                         int64_t step_due_ms, const char *note, const char *trace)
{
    Motcua__V1__Step step = MOTCUA__V1__STEP__INIT;
    Motcua__V1__HandoffRequested h = MOTCUA__V1__HANDOFF_REQUESTED__INIT;
    Motcua__V1__Applicant ap = MOTCUA__V1__APPLICANT__INIT;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    json_t *applicant = json_object_get(c, "applicant");
    step.name = (char *)jstr(st, "name");
    step.agency_code = (char *)jstr(st, "agency");
    step.days = json_number_value(json_object_get(st, "days"));
    step.external = 1;
    step.procedure_code = (char *)jstr(st, "procedure");
    ap.name = (char *)jstr(applicant, "name");
    ap.id_number = (char *)jstr(applicant, "id_number");
    ap.phone = (char *)jstr(applicant, "phone");
    ap.email = (char *)jstr(applicant, "email");
    ap.address = (char *)jstr(applicant, "address");
    json_t *docs = json_object_get(c, "documents");
    size_t nd = json_array_size(docs);
    Motcua__V1__Document *dv = mc_alloc(sizeof *dv * (nd ? nd : 1));
    Motcua__V1__Document **dp = mc_alloc(sizeof *dp * (nd ? nd : 1));
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(docs, i);
        motcua__v1__document__init(&dv[i]);
        dv[i].kind = (char *)jstr(d, "kind");
        dv[i].name = (char *)jstr(d, "name");
        dv[i].sha256 = (char *)jstr(d, "sha256");
        dv[i].size = json_integer_value(json_object_get(d, "size"));
        dp[i] = &dv[i];
    }
    h.code = (char *)code;
    h.procedure_code = (char *)jstr(c, "procedure_code");
    h.step_index = step_index;
    h.step = &step;
    h.due_at_ms = step_due_ms;
    h.applicant = &ap;
    h.n_documents = nd;
    h.documents = dp;
    h.note = (char *)(note ? note : "");
    env.dossier_code = (char *)code;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_HANDOFF_REQUESTED;
    env.handoff_requested = &h;
    mc_outbox_add(ob, &env, trace, NULL);
    free(dv);
    free(dp);
}
