/* retry.c: an operator sends a notification that stopped for one more round.
 *
 * POST /v1/notifications/{id}/retry (operator key) takes a 'failed' notification (its
 * channels all failed: the dead-letter list) or an 'unknown' one (interrupted while
 * sending) back to 'pending': the worker goes through its channels again from the
 * first, with fresh retries. The notification's round goes up by one, attempts are
 * unique per channel within a round, and the retry is recorded (notify.retries: who,
 * from which state, and the error it had stopped with), all in one statement.
 *
 * An 'unknown' notification may have reached the applicant already: retrying it may
 * send the message twice. That is the operator's decision, after checking with the
 * provider; notify never makes it on its own. A notification without any channel
 * (no address, or every one opted out) has nothing to retry: 409. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "notify.h"

static void on_retried(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_http_reply_error(req, 503, "unavailable", "the notification store is unavailable", NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        mc_http_reply_error(req, 404, "not_found", "no such notification", "id");
        return;
    }
    const char *state = PQgetvalue(res, 0, 0);
    long long id = atoll(PQgetvalue(res, 0, 2));
    if (strcmp(state, "failed") != 0 && strcmp(state, "unknown") != 0) {
        mc_http_reply_error(req, 409, "conflict",
                            "only a failed or unknown notification can be retried", "id");
        return;
    }
    if (atoi(PQgetvalue(res, 0, 1)) == 0) {
        mc_http_reply_error(req, 409, "conflict",
                            "the notification has no channel to send on (no address, or every "
                            "one opted out)",
                            "id");
        return;
    }
    int round = atoi(PQgetvalue(res, 0, 3));
    mc_logd(MC_LOG_WARN, NULL, PQgetvalue(res, 0, 4),
            "notification %lld (%s) retried by an operator: round %d", id, state, round);
    mc_http_reply_json(req, 200,
                       json_pack("{s:I, s:s, s:i, s:s}", "id", (json_int_t)id, "state", "pending",
                                 "round", round, "from_state", state));
}

static void retry_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    notify_t *n = notify_of(arg);
    const char *text = mc_http_param(req, "id");
    char *end;
    long long id = text ? strtoll(text, &end, 10) : 0;
    if (!text || !*text || *end || id <= 0) {
        mc_http_reply_error(req, 400, "invalid", "id must be a notification's id", "id");
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_int(&p, id);
    mc_db_param_text(&p, who->name);
    /* The row lock makes two retries at once one retry: the second sees 'pending'. */
    mc_db_exec(mc_service_db(n->svc),
               "WITH o AS (SELECT id, state, last_error, cardinality(channels) AS nch"
               "   FROM notify.notifications WHERE id = $1 FOR UPDATE),"
               " u AS (UPDATE notify.notifications t SET state = 'pending', round = t.round + 1,"
               "   chan_idx = 1, tries = 0, next_at = now(), lease_until = NULL,"
               "   last_error = NULL, updated_at = now()"
               "   FROM o WHERE t.id = o.id AND o.state IN ('failed', 'unknown') AND o.nch > 0"
               "   RETURNING t.id, t.round, t.code),"
               " r AS (INSERT INTO notify.retries (notification_id, round, from_state,"
               "   last_error, by_key) SELECT u.id, u.round, o.state, o.last_error, $2"
               "   FROM u JOIN o ON o.id = u.id RETURNING id)"
               " SELECT o.state, o.nch, o.id, u.round, u.code, (SELECT count(*) FROM r)"
               " FROM o LEFT JOIN u ON u.id = o.id",
               &p, 0, on_retried, req);
}

void notification_retry(mc_http_req_t *req, void *arg)
{
    mc_auth_require(notify_of(arg)->auth, req, MC_SCOPE_OPERATOR, retry_as, arg);
}
