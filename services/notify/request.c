/* request.c: NotificationRequested kept once per envelope (the message id is unique),
 * inside the bus's inbox transaction, with the channels to try in order; listed per
 * dossier with every attempt.
 *
 * Order of channels. The applicant's preference, when the request carries one (the
 * parameter "channels", e.g. "sms,email"), else e-mail, then SMS, then chat; a channel
 * is kept only if its address is known (e-mail needs an address, SMS and chat a phone
 * number). A request with none left is kept as 'failed' at once. */
#include <stdio.h>
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

/* The channels to try, as a PostgreSQL array literal: "{email,sms,chat}". */
static void channels_of(const Motcua__V1__NotificationRequested *n, const char *preferred,
                        char *out, size_t outlen)
{
    int order[CH_COUNT], k = 0, seen[CH_COUNT] = {0};
    char pref[64];
    snprintf(pref, sizeof pref, "%s", preferred ? preferred : "email,sms,chat");
    for (char *save, *tok = strtok_r(pref, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        int c = channel_parse(tok);
        if (c >= 0 && !seen[c]) {
            seen[c] = 1;
            order[k++] = c;
        }
    }
    size_t o = (size_t)snprintf(out, outlen, "{");
    int any = 0;
    for (int i = 0; i < k; i++) {
        int known = order[i] == CH_EMAIL ? n->email && n->email[0] : n->phone && n->phone[0];
        if (!known)
            continue;
        o += (size_t)snprintf(out + o, outlen - o, "%s%s", any ? "," : "", channel_names[order[i]]);
        any = 1;
    }
    snprintf(out + o, outlen - o, "}");
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
    char channels[64];
    channels_of(n, json_string_value(json_object_get(params, "channels")), channels,
                sizeof channels);
    json_decref(params);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, env->message_id);
    mc_db_param_text(&p, n->code);
    mc_db_param_text(&p, n->event);
    mc_db_param_text(&p, n->email);
    mc_db_param_text(&p, n->phone);
    mc_db_param_text(&p, text ? text : "{}");
    mc_db_param_text(&p, channels);
    mc_db_query(mc_bus_msg_conn(msg),
                "INSERT INTO notify.notifications (message_id, code, event, email, phone, params,"
                " channels, state, last_error)"
                " VALUES ($1::uuid, $2, $3, $4, $5, $6::jsonb, $7::text[],"
                "  CASE WHEN $7 = '{}' THEN 'failed' ELSE 'pending' END,"
                "  CASE WHEN $7 = '{}' THEN 'no e-mail address or phone number' END)"
                " ON CONFLICT (message_id) DO NOTHING",
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
               " 'id', n.id, 'dossier', n.code, 'event', n.event, 'state', n.state,"
               " 'params', n.params, 'channel', n.channel, 'channels', n.channels,"
               " 'attempts', n.attempts, 'last_error', n.last_error,"
               " 'template_version', n.template_version,"
               " 'created_at', to_char(n.created_at AT TIME ZONE 'Asia/Ho_Chi_Minh',"
               "   'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"'),"
               " 'history', (SELECT coalesce(json_agg(json_build_object('id', a.id,"
               "   'channel', a.channel, 'state', a.state, 'code', a.code, 'error', a.error,"
               "   'provider_id', a.provider_id,"
               "   'started_at', to_char(a.started_at AT TIME ZONE 'Asia/Ho_Chi_Minh',"
               "     'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')) ORDER BY a.id), '[]')"
               "   FROM notify.attempts a WHERE a.notification_id = n.id)"
               " ) ORDER BY n.id), '[]'))"
               " FROM notify.notifications n WHERE n.code = $1",
               &p, 0, on_list, req);
}

void notification_list(mc_http_req_t *req, void *arg)
{
    mc_auth_require(notify_of(arg)->auth, req, MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR, list_as, arg);
}
