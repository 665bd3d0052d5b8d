/* receipt.c: delivery receipts the SMS gateway posts back.
 *
 * POST /v1/notifications/receipt with {"id": "<gateway message id>", "status":
 * "delivered" | "failed"} and two headers: X-Timestamp (Unix seconds) and X-Signature
 * (hex HMAC-SHA256 with MOTCUA_SMS_RECEIPT_SECRET over "<timestamp>.<body>"). A
 * missing, forged or stale signature (timestamp more than MOTCUA_SMS_RECEIPT_MAX_AGE_S
 * away from now, which bounds replays) is answered 401 before the body is read; an
 * unknown id 404. A repeated receipt changes nothing. "delivered" moves the attempt
 * and its notification to 'delivered'; "failed" is noted on the attempt (the message
 * was accepted, so it is not sent again). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "log.h"
#include "notify.h"
#include "signed_callback.h"

static void on_updated(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_http_reply_error(req, 503, "unavailable", "the notification store is unavailable", NULL);
        return;
    }
    if (atol(PQgetvalue(res, 0, 0)) == 0) {
        mc_http_reply_error(req, 404, "not_found", "no SMS with this id", "id");
        return;
    }
    mc_http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

void receipt_receive(mc_http_req_t *req, void *arg)
{
    notify_t *n = notify_of(arg);
    if (mc_signed_callback_check(req, n->cfg.receipt_secret, n->cfg.receipt_max_age_s,
                                 "SMS receipt"))
        return;
    json_t *doc = mc_http_json_body(req);
    if (!doc)
        return;
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *st = json_string_value(json_object_get(doc, "status"));
    if (!id || !*id || strlen(id) > 200) {
        json_decref(doc);
        mc_http_reply_error(req, 400, "invalid", "id is required", "id");
        return;
    }
    if (!st || (strcmp(st, "delivered") != 0 && strcmp(st, "failed") != 0)) {
        json_decref(doc);
        mc_http_reply_error(req, 400, "invalid", "status must be delivered or failed", "status");
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, id);
    mc_db_param_text(&p, st);
    mc_db_exec(mc_service_db(n->svc),
               "WITH a AS (UPDATE notify.attempts SET"
               "   state = CASE WHEN $2 = 'delivered' THEN 'delivered' ELSE state END,"
               "   error = CASE WHEN $2 = 'failed' THEN 'gateway reports: not delivered'"
               "     ELSE error END"
               "   WHERE channel = 'sms' AND provider_id = $1 AND state IN ('sent', 'delivered')"
               "   RETURNING notification_id),"
               " u AS (UPDATE notify.notifications n SET updated_at = now(),"
               "   state = CASE WHEN $2 = 'delivered' THEN 'delivered' ELSE n.state END,"
               "   last_error = CASE WHEN $2 = 'failed' THEN 'SMS not delivered (receipt)'"
               "     ELSE n.last_error END"
               "   FROM a WHERE n.id = a.notification_id RETURNING n.id)"
               " SELECT (SELECT count(*) FROM a) + 0 * (SELECT count(*) FROM u)",
               &p, 0, on_updated, req);
    json_decref(doc); /* after: the parameters point into it until mc_db_exec copies them */
}
