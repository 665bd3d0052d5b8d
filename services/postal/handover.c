/* handover.c: postal intake — dossiers the carrier collected from applicants
 * (tiếp nhận hồ sơ qua bưu chính), handed over in batches.
 *
 * POST /v1/postal/intake (integrator or operator key) with {carrier_reference_batch,
 * items: [{carrier_reference, dossier}]}: each dossier is the body intake's POST
 * /v1/dossiers takes, with channel forced to "postal". Items are taken one after the
 * other: an item already in postal.intake_items is answered from the record;
 * otherwise it goes to intake with Idempotency-Key "postal-<carrier_reference>" and
 * intake's answer is recorded (accepted with its dossier code, or refused with
 * intake's error). The answer is 200 with one status per item, 207-style:
 * {carrier_reference_batch, items: [{carrier_reference, status, code | error}]}.
 *
 * Key. Intake takes dossiers only with an API key: postal's own, an integrator key in
 * MOTCUA_POSTAL_INTAKE_KEY (as interconnect's MOTCUA_INTERCONNECT_INTAKE_KEY). Without
 * one, or when intake answers 401 or 403 (a revoked key, a key of another scope), the
 * fault is ours, not the dossier's: the item answers 503 and is not recorded, and the
 * carrier's next try goes through once the key is right.
 *
 * Once only. Intake keeps the idempotency key with the dossier in one transaction, so
 * a crash between intake's answer and our record leaves the item unrecorded, and the
 * carrier's repeat of the batch gets intake's stored answer: the same dossier code.
 * When intake cannot be reached the item answers 503 and is not recorded: the carrier
 * sends it again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "postal.h"

#define MAX_ITEMS 100

typedef struct {
    mc_http_req_t *req;
    postal_t *p;
    json_t *doc;
    const char *batch;
    json_t *items; /* borrowed from doc */
    size_t next;
    json_t *out; /* the answer's items */
    const char *ref;
    int fresh, accepted, refused;
} batch_t;

static void item_next(batch_t *b);

static void batch_end(batch_t *b)
{
    mc_logd(MC_LOG_INFO, mc_http_header(b->req, "x-trace-id"), NULL,
            "postal intake batch %s: %zu item(s), %d new dossier(s), %d refused", b->batch,
            json_array_size(b->items), b->accepted, b->refused);
    mc_http_reply_json(
        b->req, 200, json_pack("{s:s, s:o}", "carrier_reference_batch", b->batch, "items", b->out));
    json_decref(b->doc);
    mc_outcall_release(b->p->carrier);
    free(b);
}

static void item_answer(batch_t *b, int status, const char *code, json_t *error)
{
    json_t *o =
        json_pack("{s:s, s:i}", "carrier_reference", b->ref ? b->ref : "", "status", status);
    if (code)
        json_object_set_new(o, "code", json_string(code));
    if (error)
        json_object_set(o, "error", error);
    json_array_append_new(b->out, o);
    b->next++;
    item_next(b);
}

static void item_error(batch_t *b, int status, const char *code, const char *message,
                       const char *field)
{
    json_t *e = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (field)
        json_object_set_new(e, "field", json_string(field));
    item_answer(b, status, NULL, e);
    json_decref(e);
}

/* ------------------------------------------------------------------ record */

typedef struct {
    batch_t *b;
    int status;
    char *code;
    json_t *error;
} rec_t;

static void on_recorded(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    rec_t *r = arg;
    if (status != MC_OK)
        mc_warn("postal intake: cannot record %s: %s", r->b->ref,
                res ? PQresultErrorMessage(res) : mc_strerror(status));
    item_answer(r->b, r->status, r->code, r->error);
    json_decref(r->error);
    free(r->code);
    free(r);
}

static void record(batch_t *b, int status, const char *code, json_t *error)
{
    rec_t *r = mc_new(rec_t);
    r->b = b;
    r->status = status;
    r->code = code ? mc_strdup(code) : NULL;
    r->error = error ? json_incref(error) : NULL;
    char *etext = error ? json_dumps(error, JSON_COMPACT) : NULL;
    mc_db_params_t p = {0};
    mc_db_param_text(&p, b->ref);
    mc_db_param_text(&p, b->batch);
    mc_db_param_text(&p, code);
    mc_db_param_int(&p, status);
    mc_db_param_text(&p, etext);
    mc_db_exec(mc_service_db(b->p->svc),
               "INSERT INTO postal.intake_items (carrier_reference, batch, code, status, error)"
               " VALUES ($1, $2, $3, $4::int, $5::jsonb) ON CONFLICT DO NOTHING",
               &p, 0, on_recorded, r);
    free(etext);
}

/* ------------------------------------------------------------------ intake */

static void on_intake(int status, long code, const char *body, size_t len, void *arg)
{
    (void)len;
    batch_t *b = arg;
    if (status != MC_OK) {
        item_error(b, 503, "unavailable", "intake cannot be reached; send the item again", NULL);
        return;
    }
    json_t *doc = json_loads(body, 0, NULL);
    const char *dossier = json_string_value(json_object_get(doc, "code"));
    if ((code == 200 || code == 201) && dossier) {
        b->accepted++;
        mc_logd(MC_LOG_INFO, NULL, dossier, "postal intake: %s accepted", b->ref);
        record(b, 201, dossier, NULL);
    } else if (code == 401 || code == 403) {
        /* Our key, not the dossier: not recorded (see the top of the file). */
        mc_warn("postal intake: intake refused MOTCUA_POSTAL_INTAKE_KEY (HTTP %ld) for %s", code,
                b->ref);
        char msg[80];
        snprintf(msg, sizeof msg, "intake refused postal's key (HTTP %ld); send the item again",
                 code);
        item_error(b, 503, "unavailable", msg, NULL);
    } else if (code >= 400 && code < 500 && code != 408 && code != 429) {
        b->refused++;
        json_t *err = json_object_get(doc, "error");
        if (!json_is_object(err))
            err = NULL;
        json_t *fallback = err ? NULL
                               : json_pack("{s:s, s:s}", "code", "invalid", "message",
                                           "intake refused the dossier");
        record(b, (int)code, NULL, err ? err : fallback);
        json_decref(fallback);
    } else {
        char msg[80];
        snprintf(msg, sizeof msg, "intake answered HTTP %ld; send the item again", code);
        item_error(b, 503, "unavailable", msg, NULL);
    }
    json_decref(doc);
}

static void submit(batch_t *b, json_t *dossier)
{
    if (mc_outcall_stopping(b->p->carrier)) {
        item_error(b, 503, "unavailable", "postal is stopping; send the item again", NULL);
        return;
    }
    if (!b->p->cfg->intake_key[0]) {
        item_error(b, 503, "unavailable",
                   "MOTCUA_POSTAL_INTAKE_KEY is not set; send the item again", NULL);
        return;
    }
    json_t *d = json_deep_copy(dossier);
    json_object_set_new(d, "channel", json_string("postal"));
    char *text = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    char *url = mc_sprintf("%s/v1/dossiers", b->p->cfg->intake_url);
    char *key = mc_sprintf("Idempotency-Key: postal-%s", b->ref);
    char *auth = mc_sprintf("Authorization: Bearer %s", b->p->cfg->intake_key);
    char *trace = NULL;
    const char *tid = mc_http_header(b->req, "x-trace-id");
    if (tid)
        trace = mc_sprintf("X-Trace-Id: %s", tid);
    const char *headers[] = {"Content-Type: application/json", key, auth, trace, NULL};
    mc_fetch_http(mc_outcall_fetch(b->p->carrier), "POST", url, headers, text, strlen(text),
                  b->p->cfg->timeout_ms, on_intake, b);
    free(trace);
    free(auth);
    free(key);
    free(url);
    free(text);
}

/* ------------------------------------------------------------------ one item */

static void on_looked_up(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    batch_t *b = arg;
    if (status != MC_OK) {
        item_error(b, 503, "unavailable", "the handover record is unavailable", NULL);
        return;
    }
    if (PQntuples(res) == 1) { /* handed over before: the same answer, nothing new */
        json_t *err = PQgetisnull(res, 0, 2) ? NULL : json_loads(PQgetvalue(res, 0, 2), 0, NULL);
        item_answer(b, atoi(PQgetvalue(res, 0, 0)),
                    PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1), err);
        json_decref(err);
        return;
    }
    submit(b, json_object_get(json_array_get(b->items, b->next), "dossier"));
}

static int ref_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= 64 &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") == n;
}

static void item_next(batch_t *b)
{
    if (b->next >= json_array_size(b->items)) {
        batch_end(b);
        return;
    }
    json_t *item = json_array_get(b->items, b->next);
    b->ref = json_string_value(json_object_get(item, "carrier_reference"));
    if (!ref_ok(b->ref)) {
        b->ref = NULL;
        item_error(b, 400, "invalid", "carrier_reference: 1 to 64 of A-Z a-z 0-9 - _ .",
                   "carrier_reference");
        return;
    }
    if (!json_is_object(json_object_get(item, "dossier"))) {
        item_error(b, 400, "invalid", "dossier must be an object (the POST /v1/dossiers body)",
                   "dossier");
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, b->ref);
    mc_db_exec(mc_service_db(b->p->svc),
               "SELECT status, code, error FROM postal.intake_items WHERE carrier_reference = $1",
               &p, 0, on_looked_up, b);
}

/* ------------------------------------------------------------------ entry point */

static void authorized(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    postal_t *p = postal_of(arg);
    json_t *doc = mc_http_json_body(req);
    if (!doc)
        return;
    const char *batch = json_string_value(json_object_get(doc, "carrier_reference_batch"));
    json_t *items = json_object_get(doc, "items");
    if (!batch || !*batch || strlen(batch) > 100) {
        json_decref(doc);
        mc_http_reply_error(req, 400, "invalid", "carrier_reference_batch is required",
                            "carrier_reference_batch");
        return;
    }
    if (!json_is_array(items) || json_array_size(items) == 0 ||
        json_array_size(items) > MAX_ITEMS) {
        json_decref(doc);
        mc_http_reply_error(req, 400, "invalid", "items: 1 to 100 dossiers", "items");
        return;
    }
    mc_logd(MC_LOG_INFO, mc_http_header(req, "x-trace-id"), NULL,
            "postal intake batch %s from key %s: %zu item(s)", batch, who->name,
            json_array_size(items));
    batch_t *b = mc_new(batch_t);
    b->req = req;
    b->p = p;
    b->doc = doc;
    b->batch = batch;
    b->items = items;
    b->out = json_array();
    mc_outcall_hold(p->carrier); /* a stop waits for the batch */
    item_next(b);
}

void handover_receive(mc_http_req_t *req, void *arg)
{
    mc_auth_require(postal_of(arg)->auth, req, MC_SCOPE_INTEGRATOR | MC_SCOPE_OPERATOR, authorized,
                    arg);
}
