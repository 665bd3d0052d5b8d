/* handoff.c: handoffs requested by routing, recorded once per (dossier, step) inside
 * the bus's inbox transaction, and listed for operators and officers. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "interconnect.h"
#include "service.h"

static void on_recorded(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_done(arg, status, status == MC_OK ? NULL : res ? PQresultErrorMessage(res) : "insert");
}

void handoff_record(mc_bus_msg_t *msg, void *arg)
{
    (void)arg;
    const mc_envelope_t *env = mc_bus_msg_envelope(msg);
    const Motcua__V1__HandoffRequested *h = env->handoff_requested;
    if (!h->code[0] || !h->step || !h->step->agency_code[0]) {
        mc_bus_done(msg, MC_EINVAL, "HandoffRequested without dossier code or step agency");
        return;
    }
    size_t len = motcua__v1__handoff_requested__get_packed_size(h);
    uint8_t *bytes = mc_alloc(len ? len : 1);
    motcua__v1__handoff_requested__pack(h, bytes);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, h->code);
    mc_db_param_text(&p, h->procedure_code);
    mc_db_param_int(&p, h->step_index);
    mc_db_param_text(&p, h->step->name);
    mc_db_param_text(&p, h->step->agency_code);
    mc_db_param_int(&p, h->due_at_ms);
    mc_db_param_bytes(&p, bytes, len);
    /* A second request for the same step (a retried forward) keeps the first. */
    mc_db_query(mc_bus_msg_conn(msg),
                "INSERT INTO interconnect.handoffs (code, procedure_code, step_index, step_name,"
                " agency_code, due_at, request) VALUES ($1, $2, $3::int, $4, $5,"
                " CASE WHEN $6::bigint > 0 THEN to_timestamp($6::bigint / 1000.0) END, $7)"
                " ON CONFLICT (code, step_index) DO NOTHING",
                &p, 0, on_recorded, msg);
    free(bytes);
}

static void on_list(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_http_reply_error(req, 503, "unavailable", "the handoff store is unavailable", NULL);
        return;
    }
    mc_http_reply_json(req, 200, json_loads(PQgetvalue(res, 0, 0), 0, NULL));
}

static void list_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    (void)who;
    mc_service_t *svc = arg;
    static const char *const states[] = {"requested", "sent",   "accepted", "completed",
                                         "rejected",  "failed", "expired"};
    const char *dossier = mc_http_query(req, "dossier");
    const char *state = mc_http_query(req, "state");
    if (dossier && (!*dossier || strlen(dossier) > 64)) {
        mc_http_reply_error(req, 400, "invalid", "dossier must be a dossier code", "dossier");
        return;
    }
    int known = !state;
    for (size_t i = 0; state && i < MC_COUNT(states); i++)
        known |= strcmp(states[i], state) == 0;
    if (!known) {
        mc_http_reply_error(req, 400, "invalid",
                            "state must be requested, sent, accepted, completed, rejected, "
                            "failed or expired",
                            "state");
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, dossier);
    mc_db_param_text(&p, state);
    mc_db_exec(mc_service_db(svc),
               "SELECT json_build_object('items', coalesce(json_agg(json_build_object("
               " 'id', id, 'dossier', code, 'procedure', procedure_code, 'step', step_index,"
               " 'step_name', step_name, 'agency', agency_code, 'state', state,"
               " 'due_at', to_char(due_at AT TIME ZONE 'Asia/Ho_Chi_Minh',"
               "   'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"'),"
               " 'created_at', to_char(created_at AT TIME ZONE 'Asia/Ho_Chi_Minh',"
               "   'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')) ORDER BY id), '[]'))"
               " FROM (SELECT * FROM interconnect.handoffs WHERE ($1::text IS NULL OR code = $1)"
               "   AND ($2::text IS NULL OR state = $2) ORDER BY id LIMIT 500) h",
               &p, 0, on_list, req);
}

void handoff_list(mc_http_req_t *req, void *arg)
{
    mc_auth_require(interconnect_of(arg)->auth, req,
                    MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR | MC_SCOPE_INTEGRATOR, list_as, arg);
}
