/* request.c: NotificationRequested kept once per envelope (the message id is unique),
 * inside the bus's inbox transaction, with the channels to try in order; listed per
 * dossier with every attempt, or by state across dossiers (the dead-letter list).
 *
 * Order of channels (preference.c, channels_choose). The request's parameter
 * "channels" (e.g. "sms,email") when present, else the applicant's preferences,
 * looked up by the request's phone number and e-mail address (the phone's win when
 * both have some), else e-mail, then SMS, then chat; never a channel the applicant
 * opted out of, and only channels whose address is known (e-mail needs an address,
 * SMS and chat a phone number). The preferences are read in the same transaction
 * and the order is fixed then: later changes do not touch notifications already
 * kept. A request with no channel left is kept as 'failed' at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "notify.h"
#include "service.h"

/* One NotificationRequested between the look-up of preferences and the insert. */
typedef struct {
    mc_bus_msg_t *msg;
    char *params;        /* JSON text */
    char *requested;     /* the "channels" parameter, or NULL */
    char phone_key[264]; /* contact keys, "" if none */
    char email_key[264];
} record_t;

static void record_free(record_t *r)
{
    free(r->params);
    free(r->requested);
    free(r);
}

static void on_recorded(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_done(arg, status, status == MC_OK ? NULL : res ? PQresultErrorMessage(res) : "insert");
}

static void insert(record_t *r, const channel_pref_t *phone, const channel_pref_t *email)
{
    const mc_envelope_t *env = mc_bus_msg_envelope(r->msg);
    const Motcua__V1__NotificationRequested *n = env->notification_requested;
    char channels[64];
    channels_choose(r->requested, phone, email, n->email && n->email[0], n->phone && n->phone[0],
                    channels, sizeof channels);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, env->message_id);
    mc_db_param_text(&p, n->code);
    mc_db_param_text(&p, n->event);
    mc_db_param_text(&p, n->email);
    mc_db_param_text(&p, n->phone);
    mc_db_param_text(&p, r->params);
    mc_db_param_text(&p, channels);
    mc_db_query(mc_bus_msg_conn(r->msg),
                "INSERT INTO notify.notifications (message_id, code, event, email, phone, params,"
                " channels, state, last_error)"
                " VALUES ($1::uuid, $2, $3, $4, $5, $6::jsonb, $7::text[],"
                "  CASE WHEN $7 = '{}' THEN 'failed' ELSE 'pending' END,"
                "  CASE WHEN $7 = '{}' THEN 'no channel: no address, or every one opted out'"
                "  END)"
                " ON CONFLICT (message_id) DO NOTHING",
                &p, 0, on_recorded, r->msg);
    record_free(r);
}

static void on_preferences(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    record_t *r = arg;
    if (status != MC_OK) {
        mc_bus_done(r->msg, status, res ? PQresultErrorMessage(res) : "preferences");
        record_free(r);
        return;
    }
    channel_pref_t phone = {0}, email = {0};
    for (int i = 0; i < PQntuples(res); i++) {
        channel_pref_t *pref = strcmp(PQgetvalue(res, i, 0), r->phone_key) == 0 ? &phone : &email;
        if (preference_parse(PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), pref) != MC_OK)
            memset(pref, 0, sizeof *pref); /* the table's CHECK makes this impossible */
    }
    insert(r, &phone, &email);
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
    record_t *r = mc_new(record_t);
    r->msg = msg;
    char *text = json_dumps(params, JSON_COMPACT);
    r->params = mc_strdup(text ? text : "{}");
    free(text);
    const char *requested = json_string_value(json_object_get(params, "channels"));
    r->requested = requested ? mc_strdup(requested) : NULL;
    json_decref(params);
    if (!n->phone || contact_phone(n->phone, r->phone_key, sizeof r->phone_key) != MC_OK)
        r->phone_key[0] = '\0';
    if (!n->email || contact_email(n->email, r->email_key, sizeof r->email_key) != MC_OK)
        r->email_key[0] = '\0';
    if (!r->phone_key[0] && !r->email_key[0]) {
        insert(r, NULL, NULL);
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, r->phone_key);
    mc_db_param_text(&p, r->email_key);
    mc_db_query(mc_bus_msg_conn(msg),
                "SELECT contact, array_to_string(channels, ','), array_to_string(opt_out, ',')"
                " FROM notify.preferences WHERE contact IN ($1, $2)",
                &p, 0, on_preferences, r);
}

/* ------------------------------------------------------------------ listing */

/* One notification as JSON (alias n), with its attempts and the operator's retries. */
/* clang-format off */
#define NOTIFICATION_JSON \
    "json_build_object(" \
    " 'id', n.id, 'dossier', n.code, 'event', n.event, 'state', n.state," \
    " 'params', n.params, 'channel', n.channel, 'channels', n.channels," \
    " 'attempts', n.attempts, 'last_error', n.last_error," \
    " 'template_version', n.template_version, 'round', n.round," \
    " 'created_at', to_char(n.created_at AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')," \
    " 'updated_at', to_char(n.updated_at AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')," \
    " 'history', (SELECT coalesce(json_agg(json_build_object('id', a.id," \
    "   'channel', a.channel, 'state', a.state, 'code', a.code, 'error', a.error," \
    "   'provider_id', a.provider_id, 'round', a.round," \
    "   'started_at', to_char(a.started_at AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"'))" \
    "   ORDER BY a.id), '[]') FROM notify.attempts a WHERE a.notification_id = n.id)," \
    " 'retries', (SELECT coalesce(json_agg(json_build_object('round', r.round," \
    "   'from_state', r.from_state, 'last_error', r.last_error, 'by', r.by_key," \
    "   'at', to_char(r.at AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')) ORDER BY r.id), '[]')" \
    "   FROM notify.retries r WHERE r.notification_id = n.id))"
/* clang-format on */

static const char *const states[] = {"pending",   "sending", "sent",
                                     "delivered", "failed",  "unknown"};

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

/* A whole number in [lo, hi] from the query, or def when absent; -1 if malformed. */
static long query_long(mc_http_req_t *req, const char *name, long def, long lo, long hi)
{
    const char *v = mc_http_query(req, name);
    if (!v)
        return def;
    char *end;
    long x = strtol(v, &end, 10);
    return (*v && !*end && x >= lo && x <= hi) ? x : -1;
}

static void list_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    mc_service_t *svc = arg;
    const char *dossier = mc_http_query(req, "dossier");
    const char *state = mc_http_query(req, "state");
    int known = 0;
    for (size_t i = 0; state && i < MC_COUNT(states); i++)
        known |= strcmp(state, states[i]) == 0;
    if (dossier && (!*dossier || strlen(dossier) > 64)) {
        mc_http_reply_error(req, 400, "invalid", "dossier=CODE is required", "dossier");
        return;
    }
    if (state && !known) {
        mc_http_reply_error(req, 400, "invalid",
                            "state must be pending, sending, sent, delivered, failed or unknown",
                            "state");
        return;
    }
    if (dossier) { /* one dossier's notifications, oldest first */
        mc_db_params_t p = {0};
        mc_db_param_text(&p, dossier);
        mc_db_param_text(&p, state);
        mc_db_exec(mc_service_db(svc),
                   "SELECT json_build_object('items', coalesce(json_agg(" NOTIFICATION_JSON
                   " ORDER BY n.id), '[]'))"
                   " FROM notify.notifications n WHERE n.code = $1"
                   " AND ($2::text IS NULL OR n.state = $2)",
                   &p, 0, on_list, req);
        return;
    }
    /* Across dossiers: the dead-letter list and its like, for the province's operators. */
    if (!state) {
        mc_http_reply_error(req, 400, "invalid", "dossier=CODE or state=STATE is required",
                            "dossier");
        return;
    }
    if (!(who->scopes & MC_SCOPE_OPERATOR)) {
        mc_http_reply_error(req, 403, "forbidden",
                            "only an operator key lists notifications across dossiers", NULL);
        return;
    }
    long limit = query_long(req, "limit", 50, 1, 500);
    long offset = query_long(req, "offset", 0, 0, 100000000);
    if (limit < 0 || offset < 0) {
        mc_http_reply_error(req, 400, "invalid",
                            limit < 0 ? "limit must be 1 to 500" : "offset must be 0 or more",
                            limit < 0 ? "limit" : "offset");
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, state);
    mc_db_param_int(&p, limit);
    mc_db_param_int(&p, offset);
    mc_db_exec(mc_service_db(svc),
               "SELECT json_build_object('items', coalesce((SELECT json_agg(" NOTIFICATION_JSON
               "   ORDER BY n.updated_at DESC, n.id DESC) FROM (SELECT * FROM notify.notifications"
               "   WHERE state = $1 ORDER BY updated_at DESC, id DESC LIMIT $2 OFFSET $3) n),"
               "   '[]'),"
               " 'total', (SELECT count(*) FROM notify.notifications WHERE state = $1),"
               " 'limit', $2::int, 'offset', $3::int)",
               &p, 0, on_list, req);
}

void notification_list(mc_http_req_t *req, void *arg)
{
    mc_auth_require(notify_of(arg)->auth, req, MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR, list_as, arg);
}
