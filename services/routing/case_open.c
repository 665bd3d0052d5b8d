/* case_open.c: a submitted dossier becomes a case in state SUBMITTED, and routing
 * announces it with DossierStatusChanged, both in the bus's inbox transaction. */
#include <stdlib.h>
#include <string.h>

#include "dossier_state.h"
#include "error.h"
#include "log.h"
#include "routing.h"
#include "service.h"

typedef struct {
    mc_bus_msg_t *msg;
    mc_outbox_t *outbox;
} open_t;

static void open_end(open_t *o, int status, const char *why)
{
    mc_bus_msg_t *msg = o->msg;
    mc_outbox_destroy(&o->outbox);
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
    const mc_envelope_t *in = mc_bus_msg_envelope(o->msg);
    const Motcua__V1__DossierSubmitted *ev = in->dossier_submitted;
    if (status != MC_OK) {
        /* The same code submitted twice under different message ids is a bug upstream. */
        int dup = strcmp(mc_db_sqlstate(res), "23505") == 0;
        open_end(o, dup ? MC_ERULE : status, dup ? "a case with this code exists" : PQresultErrorMessage(res));
        return;
    }
    Motcua__V1__DossierStatusChanged sc = MOTCUA__V1__DOSSIER_STATUS_CHANGED__INIT;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    sc.code = ev->code;
    sc.from = MOTCUA__V1__DOSSIER_STATE__STATE_UNSPECIFIED;
    sc.to = MOTCUA__V1__DOSSIER_STATE__STATE_SUBMITTED;
    sc.national_status = mc_state_national(sc.to);
    sc.agency_code = ev->agency_code;
    sc.actor = "routing";
    sc.note = "case opened";
    sc.at_ms = mc_wall_ms();
    sc.due_at_ms = ev->due_at_ms;
    env.dossier_code = ev->code;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_DOSSIER_STATUS_CHANGED;
    env.dossier_status_changed = &sc;
    o->outbox = mc_outbox_new("routing");
    mc_outbox_add(o->outbox, &env, in->trace_id, in->message_id);
    mc_outbox_write(o->outbox, conn, on_announced, o);
}

void case_open(mc_bus_msg_t *msg, void *arg)
{
    (void)arg;
    const mc_envelope_t *in = mc_bus_msg_envelope(msg);
    const Motcua__V1__DossierSubmitted *ev = in->dossier_submitted;
    const char *channel = mc_channel_name(ev->channel);
    if (!ev->code[0] || !ev->procedure_code[0] || !channel) {
        mc_bus_done(msg, MC_EINVAL, "DossierSubmitted without code, procedure or channel");
        return;
    }
    open_t *o = mc_new(open_t);
    o->msg = msg;
    static const char *sql =
        "WITH c AS (INSERT INTO routing.cases (code, procedure_code, agency_code, channel, state,"
        "   received_at, due_at)"
        "  VALUES ($1, $2, $3, $4, 'SUBMITTED', to_timestamp($5::bigint / 1000.0),"
        "   CASE WHEN $6::bigint > 0 THEN to_timestamp($6::bigint / 1000.0) END) RETURNING code)"
        " INSERT INTO routing.case_events (code, from_state, to_state, actor, note, message_id)"
        " SELECT code, NULL, 'SUBMITTED', 'routing', 'case opened', $7::uuid FROM c";
    mc_db_params_t p = {0};
    mc_db_param_text(&p, ev->code);
    mc_db_param_text(&p, ev->procedure_code);
    mc_db_param_text(&p, ev->agency_code);
    mc_db_param_text(&p, channel);
    mc_db_param_int(&p, ev->received_at_ms);
    mc_db_param_int(&p, ev->due_at_ms);
    mc_db_param_text(&p, in->message_id);
    mc_db_query(mc_bus_msg_conn(msg), sql, &p, 0, on_opened, o);
}

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

void case_show(mc_http_req_t *req, void *arg)
{
    mc_service_t *svc = arg;
    const char *code = mc_http_param(req, "code");
    if (!code || !*code || strlen(code) > 64) {
        mc_http_reply_error(req, 400, "invalid", "not a dossier code", "code");
        return;
    }
    static const char *sql =
        "SELECT json_build_object('code', c.code, 'procedure', c.procedure_code,"
        " 'agency', c.agency_code, 'channel', c.channel, 'state', c.state,"
        " 'events', (SELECT coalesce(json_agg(json_build_object('from', e.from_state,"
        "   'to', e.to_state, 'actor', e.actor, 'note', e.note, 'at', to_char(e.at AT TIME ZONE"
        "   'Asia/Ho_Chi_Minh', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')) ORDER BY e.id), '[]')"
        "   FROM routing.case_events e WHERE e.code = c.code))"
        " FROM routing.cases c WHERE c.code = $1";
    mc_db_params_t p = {0};
    mc_db_param_text(&p, code);
    mc_db_exec(mc_service_db(svc), sql, &p, 0, on_case, req);
}
