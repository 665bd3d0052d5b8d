/* callback.c: the agency systems' answers to handoffs.
 *
 * POST /v1/handoffs/{id}/result with {"status": "accepted" | "completed" | "rejected",
 * "result"?, "reason"?} and two headers: X-Timestamp (Unix seconds) and X-Signature
 * (hex HMAC-SHA256 under MOTCUA_AGENCY_WEBHOOK_SECRET over "<timestamp>.<raw body>").
 * A missing, forged or stale signature (more than MOTCUA_AGENCY_WEBHOOK_MAX_AGE_S from
 * now, which bounds replays) is answered 401 and logged, before the body is read; a
 * body that is not the JSON above 400; an unknown handoff 404.
 *
 * The answer moves the handoff (handoff_move, one transaction with the report to
 * routing): accepted -> 'accepted'; completed -> 'completed' and HandoffCompleted
 * carrying result; rejected -> 'rejected' and HandoffFailed (rejected = true). A
 * callback that the handoff's state no longer allows (a repeat, one after expiry) is
 * answered 200 with "applied": false and the state, so the system stops resending. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "interconnect.h"
#include "log.h"
#include "signed_callback.h"

typedef struct {
    mc_http_req_t *req;
    long long id;
    char status[16];
} answer_t;

static void on_moved(int status, const char *state, int applied, void *arg)
{
    answer_t *a = arg;
    if (status != MC_OK)
        mc_http_reply_error(a->req, 503, "unavailable", "the handoff store is unavailable", NULL);
    else if (!state)
        mc_http_reply_error(a->req, 404, "not_found", "no handoff with this id", "id");
    else {
        if (!applied)
            mc_logd(MC_LOG_INFO, mc_http_header(a->req, "x-trace-id"), NULL,
                    "callback %s for handoff %lld changes nothing (it is %s)", a->status, a->id,
                    state);
        mc_http_reply_json(a->req, 200,
                           json_pack("{s:I, s:s, s:b}", "id", (json_int_t)a->id, "state", state,
                                     "applied", applied));
    }
    free(a);
}

void callback_receive(mc_http_req_t *req, void *arg)
{
    interconnect_t *ic = interconnect_of(arg);
    if (mc_signed_callback_check(req, ic->cfg->webhook_secret, ic->cfg->webhook_max_age_s,
                                 "callback"))
        return;
    const char *idtext = mc_http_param(req, "id");
    char *end = NULL;
    long long id = idtext ? strtoll(idtext, &end, 10) : 0;
    if (!idtext || !end || *end || id <= 0) {
        mc_http_reply_error(req, 404, "not_found", "no handoff with this id", "id");
        return;
    }
    json_t *doc = mc_http_json_body(req);
    if (!doc)
        return;
    const char *st = json_string_value(json_object_get(doc, "status"));
    json_t *result = json_object_get(doc, "result");
    json_t *reason = json_object_get(doc, "reason");
    const char *field = NULL, *message = NULL;
    if (!st || (strcmp(st, "accepted") && strcmp(st, "completed") && strcmp(st, "rejected")))
        field = "status", message = "status must be accepted, completed or rejected";
    else if (result && !json_is_null(result) &&
             (!json_is_string(result) || strlen(json_string_value(result)) > 2000))
        field = "result", message = "result must be a string (2000 bytes at most)";
    else if (reason && !json_is_null(reason) &&
             (!json_is_string(reason) || strlen(json_string_value(reason)) > 500))
        field = "reason", message = "reason must be a string (500 bytes at most)";
    else if (strcmp(st, "rejected") == 0 && !json_is_string(reason))
        field = "reason", message = "a rejection needs a reason";
    if (field) {
        json_decref(doc);
        mc_http_reply_error(req, 400, "invalid", message, field);
        return;
    }
    answer_t *a = mc_new(answer_t);
    a->req = req;
    a->id = id;
    snprintf(a->status, sizeof a->status, "%s", st);
    handoff_move(ic, id, st, json_string_value(result), json_string_value(reason),
                 mc_http_header(req, "x-trace-id"), on_moved, a);
    json_decref(doc);
}
