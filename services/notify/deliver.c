/* deliver.c: the worker that sends notifications: claim, render, send, record.
 *
 * Every tick (MOTCUA_NOTIFY_TICK_MS) the worker first sweeps, then claims work per
 * channel, as many rows as that channel's token bucket allows (MOTCUA_NOTIFY_RATE_*
 * per second). A claim is one statement, committed before anything is sent: it picks
 * due 'pending' rows whose current channel is this one (FOR UPDATE SKIP LOCKED, so
 * several notify processes share the work), marks them 'sending' with a lease, and
 * inserts an attempt row ('sending') for each. Then the message is rendered and
 * handed to the provider through mc_fetch; the provider's answer is recorded in one
 * statement (attempt and notification together).
 *
 * At most once. A unique index allows one attempt per notification, channel and
 * round that is not 'failed' (a new round is only ever an operator's retry, retry.c),
 * and 'failed' is written only when the provider surely took nothing (connection refused, HTTP
 * 429/5xx/4xx, SMTP 4xx/5xx). Anything ambiguous (a timeout after connecting, a connection cut
 * mid-exchange, a crash or SIGKILL between claim and record) leaves the attempt 'sending'; the
 * sweep turns attempts whose lease ran out into 'unknown', and the notification with them, for an
 * operator to check with the provider. They are never resent automatically: a
 * citizen gets no message twice, at the price of an occasional message that an
 * operator must confirm. The lease (MOTCUA_NOTIFY_LEASE_MS) is longer than any send
 * may take (MOTCUA_NOTIFY_TIMEOUT_MS), so the sweep never catches a live send.
 *
 * Retries and fallback. A temporary failure (refused, 429, 5xx, SMTP 4xx) is tried
 * again on the same channel after MOTCUA_NOTIFY_BACKOFF_MS, doubling, up to
 * MOTCUA_NOTIFY_RETRIES attempts; then, or at once on a permanent failure (other
 * 4xx, SMTP 5xx, a chat API error, no template, a phone number that is not one), the
 * next channel of the row's list is tried; after the last one the notification is
 * 'failed' with the reason: the dead-letter list.
 *
 * Stop. When the service stops, the worker claims nothing more and the service waits
 * (MC_SERVICE_GRACE_MS at most) for the sends in flight and their records, then closes
 * the fetcher; a send still in flight then is marked unknown by its lease.
 *
 * The mechanics (timer, one claim at a time, sends in flight, stop) are
 * common/outcall.h's; the claim (sweep, channels, token buckets) is this file's own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "notify.h"

typedef enum { OUT_SENT, OUT_TEMP, OUT_PERM, OUT_UNKNOWN } outcome_t;

typedef struct {
    mc_outcall_job_t job; /* job.id: the notification */
    notify_t *n;
    long long attempt_id;
    channel_t ch;
    int tries, chan_idx, nchannels;
    char code[80], event[64];
    char shown[256]; /* recipient, masked for logs */
    char mid[256];   /* e-mail: the Message-ID, our provider id */
} job_t;

static void claim_next(notify_t *n, int ch);

static mc_db_t *db_of(notify_t *n)
{
    return mc_service_db(n->svc); /* NULL once the service has closed its pool */
}

/* ------------------------------------------------------------------ record */

static void on_recorded(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    job_t *j = arg;
    if (status != MC_OK)
        mc_logd(MC_LOG_WARN, NULL, j->code,
                "notification %lld: result not recorded (%s): the lease will mark it unknown",
                j->job.id, res ? PQresultErrorMessage(res) : mc_strerror(status));
    mc_outcall_done(&j->job);
}

static void record(job_t *j, outcome_t out, long code, const char *provider_id, const char *error)
{
    notify_t *n = j->n;
    const char *astate = "failed", *nstate = "pending";
    int idx = j->chan_idx, tries = j->tries;
    long long delay = 0;
    int next_channel = out == OUT_PERM;
    if (out == OUT_SENT) {
        astate = nstate = "sent";
    } else if (out == OUT_UNKNOWN) {
        astate = nstate = "unknown";
    } else if (out == OUT_TEMP && tries < n->cfg.retries) {
        delay = n->cfg.backoff_ms;
        for (int i = 1; i < tries && delay < 3600000; i++)
            delay *= 2;
        if (delay > 3600000)
            delay = 3600000;
    } else {
        next_channel = 1; /* permanent, or the retries are spent */
    }
    if (next_channel && idx < j->nchannels) {
        idx++;
        tries = 0;
    } else if (next_channel) {
        nstate = "failed";
    }
    mc_logd(out == OUT_SENT ? MC_LOG_INFO : MC_LOG_WARN, NULL, j->code,
            "notification %lld %s by %s to %s: attempt %s, notification %s%s%s", j->job.id,
            j->event, channel_names[j->ch], j->shown, astate, nstate, error && *error ? ": " : "",
            error ? error : "");
    mc_db_t *db = db_of(n);
    if (!db) {
        mc_outcall_done(&j->job);
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_int(&p, j->attempt_id);
    mc_db_param_text(&p, astate);
    mc_db_param_text(&p, provider_id ? provider_id : "");
    mc_db_param_int(&p, code);
    mc_db_param_text(&p, error ? error : "");
    mc_db_param_text(&p, nstate);
    mc_db_param_int(&p, idx);
    mc_db_param_int(&p, tries);
    mc_db_param_int(&p, delay);
    mc_db_param_int(&p, templates_version(n->templates));
    mc_db_exec(db,
               "WITH a AS (UPDATE notify.attempts SET state = $2, provider_id = nullif($3, ''),"
               "  code = nullif($4::int, 0), error = nullif($5, ''), finished_at = now()"
               "  WHERE id = $1 RETURNING notification_id)"
               " UPDATE notify.notifications n SET state = $6, chan_idx = $7, tries = $8,"
               "  next_at = now() + $9::bigint * interval '1 millisecond',"
               "  last_error = nullif($5, ''), lease_until = NULL, template_version = $10,"
               "  updated_at = now()"
               " FROM a WHERE n.id = a.notification_id",
               &p, 0, on_recorded, j);
}

/* ------------------------------------------------------------------ answers */

static int temporary_http(long code)
{
    return code == 429 || code == 408 || code >= 500;
}

static void on_sent(int status, long code, const char *body, size_t len, void *arg)
{
    job_t *j = arg;
    (void)len;
    if (status == MC_ECLOSED) { /* stopping: the attempt stays 'sending' -> unknown */
        mc_outcall_done(&j->job);
        return;
    }
    char err[300] = "", pid[256] = "";
    outcome_t out;
    if (status == MC_EUNAVAIL) {
        out = OUT_TEMP;
        snprintf(err, sizeof err, "not reached: %.200s", body);
    } else if (status != MC_OK && j->ch == CH_EMAIL && code >= 400 && code < 600) {
        out = code < 500 ? OUT_TEMP : OUT_PERM;
        snprintf(err, sizeof err, "SMTP %ld: %.200s", code, body);
    } else if (status != MC_OK) {
        out = OUT_UNKNOWN; /* timed out or cut after connecting: it may have been taken */
        snprintf(err, sizeof err, "%s: %.200s", mc_strerror(status), body);
    } else if (j->ch == CH_EMAIL) {
        out = OUT_SENT;
    } else if (code < 200 || code >= 300) {
        out = temporary_http(code) ? OUT_TEMP : OUT_PERM;
        snprintf(err, sizeof err, "HTTP %ld", code);
    } else {
        json_t *ans = json_loads(body, 0, NULL);
        const char *id = NULL;
        if (j->ch == CH_SMS) {
            id = json_string_value(json_object_get(ans, "id"));
            out = OUT_SENT;
        } else {
            json_t *e = json_object_get(ans, "error");
            id = json_string_value(json_object_get(json_object_get(ans, "data"), "message_id"));
            if (!json_is_integer(e) || json_integer_value(e) != 0) {
                out = OUT_PERM;
                snprintf(err, sizeof err, "chat API error %lld: %.200s",
                         (long long)json_integer_value(e),
                         json_string_value(json_object_get(ans, "message")) ?: "");
            } else {
                out = OUT_SENT;
            }
        }
        snprintf(pid, sizeof pid, "%s", id ? id : "");
        json_decref(ans);
    }
    if (out == OUT_SENT && j->ch == CH_EMAIL)
        snprintf(pid, sizeof pid, "%s", j->mid);
    record(j, out, code, out == OUT_SENT ? pid : NULL, err);
}

/* ------------------------------------------------------------------ send */

static void send_job(job_t *j, const char *email, const char *phone, const char *params_text)
{
    notify_t *n = j->n;
    json_t *params = json_loads(params_text, 0, NULL);
    if (!json_is_object(params)) {
        json_decref(params);
        params = json_object();
    }
    json_object_set_new(params, "code", json_string(j->code));
    char *subject = NULL, *text = NULL;
    int rc = template_render(n->templates, &n->cfg, j->event, j->ch, params, &subject, &text);
    json_decref(params);
    if (rc != MC_OK) {
        record(j, OUT_PERM, 0, NULL, "no template for this event and channel");
        return;
    }
    long timeout = n->cfg.timeout_ms;
    if (j->ch == CH_EMAIL) {
        char from[256];
        message_mask_email(email, j->shown, sizeof j->shown);
        message_from_address(n->cfg.smtp_from, from, sizeof from);
        char *msg =
            message_email(&n->cfg, email, subject, text, j->attempt_id, j->mid, sizeof j->mid);
        const char *const to[] = {email, NULL};
        mc_fetch_smtp(mc_outcall_fetch(n->worker), n->cfg.smtp_url, from, to, msg, timeout, on_sent,
                      j);
        free(msg);
    } else {
        char e164[32];
        snprintf(j->shown, sizeof j->shown, "%s", phone);
        if (message_phone_e164(phone, e164, sizeof e164) != MC_OK) {
            record(j, OUT_PERM, 0, NULL, "the phone number is not a Vietnamese or E.164 number");
        } else if (j->ch == CH_SMS) {
            char *ref = mc_sprintf("notify-%lld", j->attempt_id);
            json_t *b = json_pack("{s:s, s:s, s:s}", "to", e164, "text", text, "ref", ref);
            char *body = json_dumps(b, JSON_COMPACT);
            char *auth = mc_sprintf("Authorization: Bearer %s", n->cfg.sms_token);
            const char *const h[] = {auth, "Content-Type: application/json", NULL};
            mc_fetch_http(mc_outcall_fetch(n->worker), "POST", n->cfg.sms_url, h, body,
                          strlen(body), timeout, on_sent, j);
            free(auth);
            free(body);
            free(ref);
            json_decref(b);
        } else {
            json_t *b = json_pack("{s:{s:s}, s:{s:s}}", "recipient", "phone", e164, "message",
                                  "text", text);
            char *body = json_dumps(b, JSON_COMPACT);
            char *tok = mc_sprintf("access_token: %s", n->cfg.chat_token);
            const char *const h[] = {tok, "Content-Type: application/json", NULL};
            mc_fetch_http(mc_outcall_fetch(n->worker), "POST", n->cfg.chat_url, h, body,
                          strlen(body), timeout, on_sent, j);
            free(tok);
            free(body);
            json_decref(b);
        }
    }
    free(subject);
    free(text);
}

/* ------------------------------------------------------------------ claim */

static const char claim_sql[] =
    "WITH c AS (SELECT id FROM notify.notifications"
    "   WHERE state = 'pending' AND next_at <= now() AND channels[chan_idx] = $1"
    "   ORDER BY next_at, id LIMIT $2 FOR UPDATE SKIP LOCKED),"
    " u AS (UPDATE notify.notifications n SET state = 'sending', attempts = n.attempts + 1,"
    "   tries = n.tries + 1, channel = $1, updated_at = now(),"
    "   lease_until = now() + $3::bigint * interval '1 millisecond'"
    "   FROM c WHERE n.id = c.id"
    "   RETURNING n.id, n.code, n.event, n.email, n.phone, n.params, n.tries, n.chan_idx,"
    "     cardinality(n.channels) AS nchannels, n.round),"
    " a AS (INSERT INTO notify.attempts (notification_id, channel, recipient, round)"
    "   SELECT id, $1, CASE WHEN $1 = 'email' THEN email ELSE phone END, round FROM u"
    "   RETURNING id, notification_id)"
    " SELECT u.id, a.id, u.code, u.event, u.email, u.phone, u.params::text, u.tries,"
    "   u.chan_idx, u.nchannels FROM u JOIN a ON a.notification_id = u.id ORDER BY u.id";

/* One row of the channel being claimed. */
static void start(mc_outcall_job_t *job, PGresult *res, int i, void *arg)
{
    notify_t *n = arg;
    job_t *j = mc_container_of(job, job_t, job);
    j->n = n;
    j->ch = (channel_t)n->claim_ch;
    j->attempt_id = atoll(PQgetvalue(res, i, 1));
    snprintf(j->code, sizeof j->code, "%s", PQgetvalue(res, i, 2));
    snprintf(j->event, sizeof j->event, "%s", PQgetvalue(res, i, 3));
    j->tries = atoi(PQgetvalue(res, i, 7));
    j->chan_idx = atoi(PQgetvalue(res, i, 8));
    j->nchannels = atoi(PQgetvalue(res, i, 9));
    n->tokens[j->ch] -= 1.0;
    send_job(j, PQgetvalue(res, i, 4), PQgetvalue(res, i, 5), PQgetvalue(res, i, 6));
}

/* Claimed rows are sent even when the stop came meanwhile: the claim committed them
 * 'sending', and the stop waits for them. */
static void on_claimed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    notify_t *n = arg;
    if (status != MC_OK) {
        mc_warn("notify: claim on %s failed: %s", channel_names[n->claim_ch],
                res ? PQresultErrorMessage(res) : mc_strerror(status));
        mc_outcall_claim_end(n->worker);
        return;
    }
    mc_outcall_claimed(n->worker, res);
    claim_next(n, n->claim_ch + 1);
}

static void claim_next(notify_t *n, int ch)
{
    mc_db_t *db = db_of(n);
    for (; ch < CH_COUNT && db && !mc_outcall_stopping(n->worker); ch++) {
        long limit = (long)n->tokens[ch];
        if (limit > n->cfg.batch)
            limit = n->cfg.batch;
        if (limit < 1)
            continue;
        n->claim_ch = ch;
        mc_db_params_t p = {0};
        mc_db_param_text(&p, channel_names[ch]);
        mc_db_param_int(&p, limit);
        mc_db_param_int(&p, n->cfg.lease_ms);
        mc_db_exec(db, claim_sql, &p, 0, on_claimed, n);
        return;
    }
    mc_outcall_claim_end(n->worker);
}

/* Attempts whose lease ran out were interrupted (crash, SIGKILL, lost result):
 * never resent, marked for an operator. */
static void on_swept(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    notify_t *n = arg;
    if (status != MC_OK) {
        mc_warn("notify: sweep failed: %s", res ? PQresultErrorMessage(res) : mc_strerror(status));
        mc_outcall_claim_end(n->worker);
        return;
    }
    long swept = atol(PQgetvalue(res, 0, 0));
    if (swept > 0)
        mc_warn("notify: %ld notification(s) interrupted while sending marked unknown; "
                "they are not resent (see docs/notifications.md)",
                swept);
    claim_next(n, 0);
}

/* The worker's claim, every tick: the token buckets refilled, the sweep, then each
 * channel in turn. */
static void claim(mc_outcall_t *w, void *arg)
{
    (void)w;
    notify_t *n = arg;
    uint64_t now = mc_now_ms();
    double dt = (double)(now - n->refilled_ms) / 1000.0;
    n->refilled_ms = now;
    for (int i = 0; i < CH_COUNT; i++) {
        double cap = (double)n->cfg.rate[i];
        n->tokens[i] += dt * cap;
        if (n->tokens[i] > cap)
            n->tokens[i] = cap;
    }
    mc_db_exec(db_of(n),
               "WITH s AS (UPDATE notify.notifications SET state = 'unknown', lease_until = NULL,"
               "   last_error = 'interrupted while sending: not resent; check with the provider',"
               "   updated_at = now()"
               "   WHERE state = 'sending' AND lease_until < now() RETURNING id),"
               " a AS (UPDATE notify.attempts t SET state = 'unknown', finished_at = now(),"
               "   error = 'interrupted while sending' FROM s"
               "   WHERE t.notification_id = s.id AND t.state = 'sending' RETURNING t.id)"
               " SELECT (SELECT count(*) FROM s) + 0 * (SELECT count(*) FROM a)",
               NULL, 0, on_swept, n);
}

/* ------------------------------------------------------------------ start and stop */

void deliver_start(notify_t *n)
{
    n->refilled_ms = mc_now_ms();
    for (int i = 0; i < CH_COUNT; i++)
        n->tokens[i] = (double)n->cfg.rate[i];
    mc_outcall_def_t def = {
        .name = "notify",
        .tick_ms = (uint64_t)n->cfg.tick_ms,
        .claim = claim,
        .job_size = sizeof(job_t),
        .start = start,
        .arg = n,
    };
    n->worker = mc_outcall_new(n->svc, &def);
}

void deliver_close(notify_t *n)
{
    mc_outcall_destroy(&n->worker);
}
