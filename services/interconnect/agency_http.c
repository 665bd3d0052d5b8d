/* agency_http.c: the HTTP/JSON agency adapter — the worker that sends requested
 * handoffs to the agency systems of systems.json.
 *
 * Every tick (MOTCUA_INTERCONNECT_TICK_MS) one statement claims up to CLAIM_BATCH
 * handoffs in 'requested' whose retry time has come (FOR UPDATE SKIP LOCKED, so
 * several interconnect processes share the work) and leases them for
 * MOTCUA_INTERCONNECT_LEASE_MS, longer than any call may take. Each is POSTed as
 * JSON, with the system's bearer token, to the system's URL; the answer moves it
 * (handoff_move, which tells routing in the same transaction when needed):
 *   202 (or 2xx without a status)   'sent': the system answers later by callback
 *   2xx {"status": "accepted"}      'accepted'
 *   2xx {"status": "completed"}     'completed', HandoffCompleted with "result"
 *   2xx {"status": "rejected"}      'rejected', HandoffFailed rejected = true
 *   4xx but 401, 403, 408, 429      'rejected' with the system's reason
 *   no system for the agency        'failed', HandoffFailed rejected = false
 * Anything else (refused, a timeout, 401/403 — our credentials, not the agency's
 * verdict — 408, 429, 5xx) is tried again after MOTCUA_INTERCONNECT_BACKOFF_MS,
 * doubling, at most 10 minutes apart, until the handoff expires.
 *
 * Once only. handoff_id is the system's idempotency key: the same id answers as the
 * first time. A crash between the answer and our commit leaves the row 'requested'
 * with a lease; the lease runs out, the row is claimed and sent again, and the system
 * recognises it. Moves are conditional, so a late answer changes nothing.
 *
 * Stop. When the service stops, the worker claims nothing more and the service waits
 * (MC_SERVICE_GRACE_MS at most) for the calls in flight; what is left is the lease's
 * to recover. The mechanics (timer, claim, calls in flight, stop, retry later) are
 * common/outcall.h's. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "interconnect.h"
#include "log.h"

#define CLAIM_BATCH 10

typedef struct {
    mc_outcall_job_t job; /* job.id: the handoff */
    interconnect_t *ic;
    int tries;
    char code[80];
    char error[256];
} job_t;

static void on_moved(int status, const char *state, int applied, void *arg)
{
    (void)status;
    (void)state;
    (void)applied; /* logged by handoff_move; a move that failed is retried by the lease */
    mc_outcall_done(arg);
}

/* A retry later: the lease is given up, the next try set. */
static void retry_later(job_t *j)
{
    mc_logd(MC_LOG_WARN, NULL, j->code, "agency: handoff %lld not delivered (try %d): %s",
            j->job.id, j->tries, j->error);
    mc_outcall_retry(&j->job, j->error);
}

static void on_answer(int status, long code, const char *body, size_t len, void *arg)
{
    (void)len;
    job_t *j = arg;
    if (status == MC_ECLOSED) { /* stopping: the lease brings it back */
        mc_outcall_done(&j->job);
        return;
    }
    if (status != MC_OK) {
        snprintf(j->error, sizeof j->error, "agency system unreachable: %s", mc_strerror(status));
        retry_later(j);
        return;
    }
    json_t *doc = json_loads(body, 0, NULL);
    const char *st = json_string_value(json_object_get(doc, "status"));
    const char *result = json_string_value(json_object_get(doc, "result"));
    const char *reason = json_string_value(json_object_get(doc, "reason"));
    if (!reason)
        reason = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    if (code >= 200 && code < 300) {
        const char *to = st && (strcmp(st, "accepted") == 0 || strcmp(st, "completed") == 0 ||
                                strcmp(st, "rejected") == 0)
                             ? st
                             : "sent";
        handoff_move(j->ic, j->job.id, to, result,
                     strcmp(to, "rejected") == 0 && !reason ? "rejected by the agency" : reason,
                     NULL, on_moved, j);
        json_decref(doc);
        return;
    }
    if (code >= 400 && code < 500 && code != 401 && code != 403 && code != 408 && code != 429) {
        char why[300];
        snprintf(why, sizeof why, "the agency system answered HTTP %ld%s%.200s", code,
                 reason ? ": " : "", reason ? reason : "");
        handoff_move(j->ic, j->job.id, "rejected", NULL, why, NULL, on_moved, j);
        json_decref(doc);
        return;
    }
    snprintf(j->error, sizeof j->error, "the agency system answered HTTP %ld%s%.180s", code,
             reason ? ": " : "", reason ? reason : "");
    json_decref(doc);
    retry_later(j);
}

/* The request body of docs/handoffs.md, from the HandoffRequested as recorded. */
static json_t *request_body(interconnect_t *ic, PGresult *res, int r, long long id)
{
    const char *hex = PQgetvalue(res, r, 4);
    size_t hexlen = strlen(hex);
    uint8_t *bytes = mc_alloc(hexlen / 2 + 1);
    size_t len = 0;
    sodium_hex2bin(bytes, hexlen / 2 + 1, hex, hexlen, NULL, &len, NULL);
    Motcua__V1__HandoffRequested *h = motcua__v1__handoff_requested__unpack(NULL, len, bytes);
    free(bytes);
    char *callback = mc_sprintf("%s/v1/handoffs/%lld/result", ic->callback_base, id);
    json_t *documents = json_array();
    json_t *applicant = NULL;
    json_t *step = json_pack("{s:i, s:s, s:s}", "index", atoi(PQgetvalue(res, r, 5)), "name",
                             PQgetvalue(res, r, 6), "agency", PQgetvalue(res, r, 3));
    const char *note = "";
    if (h) {
        for (size_t i = 0; i < h->n_documents; i++) {
            const Motcua__V1__Document *d = h->documents[i];
            json_array_append_new(documents, json_pack("{s:s, s:s, s:s, s:I}", "kind", d->kind,
                                                       "name", d->name, "sha256", d->sha256, "size",
                                                       (json_int_t)d->size));
        }
        if (h->applicant)
            applicant =
                json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", h->applicant->name, "id_number",
                          h->applicant->id_number, "phone", h->applicant->phone, "email",
                          h->applicant->email, "address", h->applicant->address);
        note = h->note;
    }
    if (!applicant)
        applicant = json_object();
    json_t *body = json_pack(
        "{s:I, s:s, s:s, s:o, s:s?, s:o, s:o, s:s, s:s}", "handoff_id", (json_int_t)id, "dossier",
        PQgetvalue(res, r, 1), "procedure", PQgetvalue(res, r, 2), "step", step, "due_at",
        PQgetisnull(res, r, 7) ? NULL : PQgetvalue(res, r, 7), "applicant", applicant, "documents",
        documents, "note", note, "callback_url", callback);
    if (h)
        motcua__v1__handoff_requested__free_unpacked(h, NULL);
    free(callback);
    return body;
}

static void send_one(mc_outcall_job_t *job, PGresult *res, int r, void *arg)
{
    interconnect_t *ic = arg;
    job_t *j = mc_container_of(job, job_t, job);
    j->ic = ic;
    snprintf(j->code, sizeof j->code, "%s", PQgetvalue(res, r, 1));
    j->tries = atoi(PQgetvalue(res, r, 8));
    const char *agency = PQgetvalue(res, r, 3);
    const agency_system_t *sys = systems_find(ic, agency);
    if (!sys || sys->province) { /* a province's motcua lands here only without a link */
        char why[200];
        snprintf(why, sizeof why,
                 sys ? "no link to province %s (peers.json, MOTCUA_INTERCONNECT_LINK_BIND)"
                     : "no system receives handoffs for agency %s (systems.json)",
                 sys ? sys->province : agency);
        handoff_move(ic, job->id, "failed", NULL, why, NULL, on_moved, j);
        return;
    }
    json_t *body = request_body(ic, res, r, job->id);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char *auth = sys->token ? mc_sprintf("Authorization: Bearer %s", sys->token) : NULL;
    char *key = mc_sprintf("Idempotency-Key: handoff-%lld", job->id);
    const char *headers[] = {"Content-Type: application/json", key, auth, NULL};
    mc_fetch_http(mc_outcall_fetch(ic->agency), "POST", sys->url, headers, text, strlen(text),
                  ic->cfg->timeout_ms, on_answer, j);
    free(key);
    free(auth);
    free(text);
}

/* ------------------------------------------------------------------ start and stop */

void agency_http_start(interconnect_t *ic)
{
    mc_outcall_def_t def = {
        .name = "agency",
        .tick_ms = (uint64_t)ic->cfg->tick_ms,
        .claim_returning = "id, code, procedure_code, agency_code, encode(request, 'hex'),"
                           " step_index, step_name, to_char(due_at AT TIME ZONE 'Asia/Ho_Chi_Minh',"
                           "  'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"'), tries",
        .batch = CLAIM_BATCH,
        .lease_ms = ic->cfg->lease_ms,
        .job_size = sizeof(job_t),
        .start = send_one,
        .table = "interconnect.handoffs",
        .due_state = "requested",
        .touch = 1,
        .backoff_ms = ic->cfg->backoff_ms,
        .arg = ic,
    };
    ic->agency = mc_outcall_new(ic->svc, &def);
}

void agency_http_close(interconnect_t *ic)
{
    mc_outcall_destroy(&ic->agency);
}
