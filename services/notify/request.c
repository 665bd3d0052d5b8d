/* request.c: NotificationRequested kept once per envelope (the message id is unique),
 * inside the bus's inbox transaction; listed per dossier. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "notify.h"
#include "service.h"

static void on_recorded(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_done(arg, status, status == MC_OK ? NULL : res ? PQresultErrorMessage(res) : "insert");
}

void notification_record(mc_bus_msg_t *msg, void *arg)
{
    (void)arg;
    const mc_envelope_t *env = mc_bus_msg_envelope(msg);
    const Motcua__V1__NotificationRequested *n = env->notification_requested;
    if (!n->code[0] || !n->event[0]) {
        mc_bus_done(msg, MC_EINVAL, "NotificationRequested without dossier code or event");
        return;
    }
    json_t *params = json_object();
    for (size_t i = 0; i < n->n_params; i++)
        json_object_set_new(params, n->params[i]->key, json_string(n->params[i]->value));
    char *text = json_dumps(params, JSON_COMPACT);
    json_decref(params);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, env->message_id);
    mc_db_param_text(&p, n->code);
    mc_db_param_text(&p, n->event);
    mc_db_param_text(&p, n->email);
    mc_db_param_text(&p, n->phone);
    mc_db_param_text(&p, text ? text : "{}");
    mc_db_query(mc_bus_msg_conn(msg),
                "INSERT INTO notify.notifications (message_id, code, event, email, phone, params)"
                " VALUES ($1::uuid, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (message_id) DO NOTHING",
                &p, 0, on_recorded, msg);
    free(text);
}

static void on_list(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_http_reply_error(req, 503, "unavailable", "the notification store is unavailable", NULL);
        return;
    }
    mc_http_reply_json(req, 200, json_loads(PQgetvalue(res, 0, 0), 0, NULL));
}

static void list_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    (void)who;
    mc_service_t *svc = arg;
    const char *dossier = mc_http_query(req, "dossier");
    if (!dossier || !*dossier || strlen(dossier) > 64) {
        mc_http_reply_error(req, 400, "invalid", "dossier=CODE is required", "dossier");
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, dossier);
    mc_db_exec(mc_service_db(svc),
               "SELECT json_build_object('items', coalesce(json_agg(json_build_object("
               " 'id', id, 'dossier', code, 'event', event, 'state', state, 'params', params,"
               " 'created_at', to_char(created_at AT TIME ZONE 'Asia/Ho_Chi_Minh',"
               "   'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')) ORDER BY id), '[]'))"
               " FROM notify.notifications WHERE code = $1",
               &p, 0, on_list, req);
}

void notification_list(mc_http_req_t *req, void *arg)
{
    mc_auth_require(notify_of(arg)->auth, req, MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR, list_as, arg);
}
