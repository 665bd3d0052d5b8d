/* case_open.c: a submitted dossier becomes a case with the workflow it was submitted
 * under. Online dossiers wait in SUBMITTED for the one-stop desk to receive them; a
 * dossier handed in at the desk or by post is received at once and work starts. All of
 * it in the bus's inbox transaction: the case, its steps, its events, and what it emits. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "routing.h"

#define S(x) MOTCUA__V1__DOSSIER_STATE__STATE_##x

typedef struct {
    mc_bus_msg_t *msg;
    mc_outbox_t *outbox;
    change_t change;
    json_t *applicant;
    json_t *params;
    json_t *reference;
    json_t *steps; /* the public view of the steps: the first in charge */
} open_t;

static void open_end(open_t *o, int status, const char *why)
{
    mc_bus_msg_t *msg = o->msg;
    mc_outbox_destroy(&o->outbox);
    json_decref(o->applicant);
    json_decref(o->params);
    json_decref(o->reference);
    json_decref(o->steps);
    free(o);
    mc_bus_done(msg, status, why);
}

static void on_announced(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    open_end(arg, status, status == MC_OK ? NULL : res ? PQresultErrorMessage(res) : "outbox");
}

static void on_opened(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    open_t *o = arg;
    if (status != MC_OK) {
        /* The same code submitted twice under different message ids is a bug upstream. */
        int dup = strcmp(mc_db_sqlstate(res), "23505") == 0;
        open_end(o, dup ? MC_ERULE : status,
                 dup ? "a case with this code exists" : PQresultErrorMessage(res));
        return;
    }
    o->outbox = mc_outbox_new("routing");
    change_emit(o->outbox, &o->change);
    mc_outbox_write(o->outbox, conn, on_announced, o);
}

static char *steps_json(const Motcua__V1__DossierSubmitted *ev)
{
    json_t *steps = json_array();
    for (size_t i = 0; i < ev->n_steps; i++)
        json_array_append_new(steps,
                              json_pack("{s:s, s:s, s:f, s:b, s:s}", "name", ev->steps[i]->name,
                                        "agency_code", ev->steps[i]->agency_code, "days",
                                        ev->steps[i]->days, "external", ev->steps[i]->external,
                                        "procedure_code", ev->steps[i]->procedure_code));
    char *text = json_dumps(steps, JSON_COMPACT);
    json_decref(steps);
    return text;
}

static json_t *applicant_json(const Motcua__V1__Applicant *a)
{
    if (!a)
        return json_object();
    /* The citizen ID travels on to agencies outside motcua that need it (the police). */
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", a->name, "id_number", a->id_number,
                     "phone", a->phone, "email", a->email, "address", a->address);
}

static json_t *documents_json(const Motcua__V1__DossierSubmitted *ev)
{
    json_t *docs = json_array();
    for (size_t i = 0; i < ev->n_documents; i++)
        json_array_append_new(
            docs, json_pack("{s:s, s:s, s:s, s:I}", "kind", ev->documents[i]->kind, "name",
                            ev->documents[i]->name, "sha256", ev->documents[i]->sha256, "size",
                            (json_int_t)ev->documents[i]->size));
    return docs;
}

void case_open(mc_bus_msg_t *msg, void *arg)
{
    mc_service_t *svc = arg;
    const mc_envelope_t *in = mc_bus_msg_envelope(msg);
    const Motcua__V1__DossierSubmitted *ev = in->dossier_submitted;
    const char *channel = mc_channel_name(ev->channel);
    if (!ev->code[0] || !ev->procedure_code[0] || !channel || ev->n_steps == 0 || ev->level < 2 ||
        ev->level > 4) {
        mc_bus_done(msg, MC_EINVAL,
                    "DossierSubmitted without code, procedure, channel, level or steps");
        return;
    }
    open_t *o = mc_new(open_t);
    o->msg = msg;
    o->applicant = applicant_json(ev->applicant);
    o->params = json_object();
    change_t *ch = &o->change;
    ch->code = ev->code;
    ch->from = S(UNSPECIFIED);
    ch->actor = "routing";
    ch->agency = ev->agency_code;
    ch->step_name = ev->steps[0]->name;
    ch->step_agency = ev->steps[0]->agency_code;
    ch->due_ms = ev->due_at_ms;
    ch->applicant = o->applicant;
    if (ev->reference && ev->reference->system[0]) {
        o->reference =
            json_pack("{s:s, s:s}", "system", ev->reference->system, "id", ev->reference->id);
        if (ev->reference->handoff_id[0])
            json_object_set_new(o->reference, "handoff_id", json_string(ev->reference->handoff_id));
    }
    ch->reference = o->reference;
    ch->steps = o->steps = change_steps_opened(ev);
    ch->trace = in->trace_id;
    ch->causation = in->message_id;
    if (ev->channel == MOTCUA__V1__CHANNEL__CHANNEL_ONLINE) {
        /* Waits for the one-stop desk to check it and receive it. */
        ch->states[ch->nstates++] = S(SUBMITTED);
        ch->note = "submitted online; waiting for the one-stop desk";
        ch->action = "submit";
    } else {
        /* Handed in at the desk or carried in by the post: received now, work starts. */
        mc_state_t received = S(RECEIVED), next;
        int rc = mc_state_next(received, MC_ACT_START, &next);
        (void)rc;
        ch->states[ch->nstates++] = received;
        ch->states[ch->nstates++] = next;
        ch->note = ev->channel == MOTCUA__V1__CHANNEL__CHANNEL_POSTAL ? "received by post"
                                                                      : "received at the desk";
        ch->action = "receive";
        ch->notify = "received";
        char due[MC_CALENDAR_ISO_LEN];
        if (mc_calendar_iso8601(ev->due_at_ms, due) == MC_OK)
            json_object_set_new(o->params, "due_at", json_string(due));
        json_object_set_new(o->params, "procedure", json_string(ev->procedure_name));
        ch->notify_params = o->params;
    }
    /* Each step's own deadline is set when it starts; the first starts now. */
    int64_t step0_due = deadline_due(svc, mc_wall_ms(), ev->steps[0]->days, NULL);
    char froms[96], tos[96];
    snprintf(froms, sizeof froms, "{NULL%s%s}", ch->nstates > 1 ? "," : "",
             ch->nstates > 1 ? mc_state_name(ch->states[0]) : "");
    snprintf(tos, sizeof tos, "{%s%s%s}", mc_state_name(ch->states[0]), ch->nstates > 1 ? "," : "",
             ch->nstates > 1 ? mc_state_name(ch->states[1]) : "");
    static const char *sql =
        "WITH c AS (INSERT INTO routing.cases (code, procedure_code, procedure_name, agency_code,"
        "   resolving_agency, channel, state, received_at, due_at, level, days, fee, cutoff,"
        "   return_method, applicant, documents, catalog_version, delivery_address, reference)"
        "  VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8::bigint / 1000.0),"
        "   CASE WHEN $9::bigint > 0 THEN to_timestamp($9::bigint / 1000.0) END, $10::int,"
        "   $11::numeric, $12::bigint, nullif($13, ''), $14, $15::jsonb, $16::jsonb, $17, $24,"
        "   $25::jsonb)"
        "  RETURNING code),"
        " s AS (INSERT INTO routing.case_steps (code, idx, name, agency_code, days, external,"
        "   procedure_code, started_at, due_at)"
        "  SELECT c.code, (x.o - 1)::int, x.st->>'name', x.st->>'agency_code',"
        "   (x.st->>'days')::numeric, (x.st->>'external')::boolean,"
        "   nullif(x.st->>'procedure_code', ''),"
        "   CASE WHEN x.o = 1 THEN now() END,"
        "   CASE WHEN x.o = 1 THEN to_timestamp($18::bigint / 1000.0) END"
        "  FROM c, jsonb_array_elements($19::jsonb) WITH ORDINALITY AS x(st, o))"
        " INSERT INTO routing.case_events (code, from_state, to_state, actor, note, message_id)"
        " SELECT c.code, u.f, u.t, 'routing', $20, $21::uuid FROM c,"
        "  unnest($22::text[], $23::text[]) WITH ORDINALITY AS u(f, t, o) ORDER BY u.o";
    char *steps = steps_json(ev);
    char *applicant = json_dumps(o->applicant, JSON_COMPACT);
    json_t *docs = documents_json(ev);
    char *documents = json_dumps(docs, JSON_COMPACT);
    json_decref(docs);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, ev->code);
    mc_db_param_text(&p, ev->procedure_code);
    mc_db_param_text(&p, ev->procedure_name);
    mc_db_param_text(&p, ev->agency_code);
    mc_db_param_text(&p,
                     ev->resolving_agency_code[0] ? ev->resolving_agency_code : ev->agency_code);
    mc_db_param_text(&p, channel);
    mc_db_param_text(&p, mc_state_name(ch->states[ch->nstates - 1]));
    mc_db_param_int(&p, ev->received_at_ms);
    mc_db_param_int(&p, ev->due_at_ms);
    mc_db_param_int(&p, ev->level);
    char days[32];
    snprintf(days, sizeof days, "%.4f", ev->days);
    mc_db_param_text(&p, days);
    mc_db_param_int(&p, ev->fee_vnd);
    mc_db_param_text(&p, ev->cutoff);
    mc_db_param_text(&p, ev->return_method[0] ? ev->return_method : "counter");
    mc_db_param_text(&p, applicant);
    mc_db_param_text(&p, documents);
    mc_db_param_text(&p, ev->catalog_version);
    mc_db_param_int(&p, step0_due);
    mc_db_param_text(&p, steps);
    mc_db_param_text(&p, ch->note);
    mc_db_param_text(&p, in->message_id);
    mc_db_param_text(&p, froms);
    mc_db_param_text(&p, tos);
    mc_db_param_text(&p, ev->delivery_address);
    char *reference = o->reference ? json_dumps(o->reference, JSON_COMPACT) : NULL;
    mc_db_param_text(&p, reference);
    mc_db_query(mc_bus_msg_conn(msg), sql, &p, 0, on_opened, o);
    free(reference);
    free(steps);
    free(applicant);
    free(documents);
}

/* ---------------------------------------------------------------- GET /v1/cases/{code} */

static void on_case(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_http_reply_error(req, 503, "unavailable", "the case store is unavailable", NULL);
        return;
    }
    if (PQntuples(res) != 1) {
        mc_http_reply_error(req, 404, "not_found", "no case with this code", "code");
        return;
    }
    mc_http_reply_json(req, 200, json_loads(PQgetvalue(res, 0, 0), 0, NULL));
}

#define LOCAL(col)                                                                                 \
    "to_char(" col " AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')"

static void case_show_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    (void)who;
    mc_service_t *svc = arg;
    /* SQL assembled with macros: kept as written. */
    // clang-format off
    static const char *sql =
        "SELECT json_build_object('code', c.code, 'procedure', c.procedure_code,"
        " 'procedure_name', c.procedure_name, 'agency', c.agency_code,"
        " 'resolving_agency', c.resolving_agency, 'channel', c.channel, 'state', c.state,"
        " 'level', c.level, 'days', c.days, 'fee', c.fee, 'step', c.step_index,"
        " 'received_at', " LOCAL("c.received_at") ", 'due_at', " LOCAL("c.due_at") ","
        " 'resolved_at', " LOCAL("c.resolved_at") ", 'outcome', c.outcome,"
        " 'paused', c.paused_at IS NOT NULL,"
        /* Past due while open; a clock stopped after the due time does not excuse it. */
        " 'overdue', c.resolved_at IS NULL AND c.due_at < now()"
        "   AND (c.paused_at IS NULL OR c.paused_at >= c.due_at),"
        " 'steps', (SELECT json_agg(json_build_object('index', s.idx, 'name', s.name,"
        "   'agency', s.agency_code, 'days', s.days, 'external', s.external,"
        "   'procedure', s.procedure_code, 'result', s.result,"
        "   'started_at', " LOCAL("s.started_at") ", 'due_at', " LOCAL("s.due_at") ","
        "   'done_at', " LOCAL("s.done_at") ","
        "   'late', s.due_at IS NOT NULL AND coalesce(s.done_at, now()) > s.due_at"
        "     AND (s.done_at IS NOT NULL OR c.paused_at IS NULL)) ORDER BY s.idx)"
        "   FROM routing.case_steps s WHERE s.code = c.code),"
        " 'apologies', (SELECT coalesce(json_agg(json_build_object('reason', a.reason,"
        "   'agency', a.agency_code, 'due_at', " LOCAL("a.due_at") ","
        "   'appointment_at', " LOCAL("a.appointment_at") ") ORDER BY a.id), '[]')"
        "   FROM routing.apologies a WHERE a.code = c.code),"
        " 'events', (SELECT coalesce(json_agg(json_build_object('from', e.from_state,"
        "   'to', e.to_state, 'actor', e.actor, 'note', e.note, 'at', " LOCAL("e.at") ")"
        "   ORDER BY e.id), '[]') FROM routing.case_events e WHERE e.code = c.code))"
        " FROM routing.cases c WHERE c.code = $1";
    // clang-format on
    mc_db_params_t p = {0};
    mc_db_param_text(&p, mc_http_param(req, "code"));
    mc_db_exec(mc_service_db(svc), sql, &p, 0, on_case, req);
}

void case_show(mc_http_req_t *req, void *arg)
{
    const char *code = mc_http_param(req, "code");
    if (!code || !*code || strlen(code) > 64) {
        mc_http_reply_error(req, 400, "invalid", "not a dossier code", "code");
        return;
    }
    mc_auth_require(routing_of(arg)->auth, req,
                    MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR | MC_SCOPE_INTEGRATOR, case_show_as, arg);
}
