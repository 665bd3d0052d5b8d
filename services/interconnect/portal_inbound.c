/* portal_inbound.c: POST /v1/portal/dossiers — a dossier submitted on the national
 * portal, sent to us in the portal's shape (docs/portal.md), signed like the other
 * callbacks: X-Timestamp and X-Signature = hex HMAC-SHA256 under MOTCUA_PORTAL_SECRET
 * over "<timestamp>.<raw body>" (forged or older than MOTCUA_PORTAL_MAX_AGE_S: 401).
 *
 * The body is checked for what we need to map it (400 names the first bad member):
 * national_code, procedure_code, applicant.name, documents; the rest of the rules
 * (formats, the catalog) are intake's, applied when the inbound worker submits it: a
 * refusal there reaches the portal as status 3 with intake's reason. It becomes a
 * motcua submission (channel online, the national code as reference) recorded with
 * inbound_add and answered 202 with the inbound id; the same national code again is
 * answered 202 with the same id and where it stands. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "interconnect.h"
#include "log.h"
#include "signed_callback.h"

typedef struct {
    mc_http_req_t *req;
    interconnect_t *ic;
    mc_db_conn_t *conn;
    json_t *submission;
    char national[80];
} take_t;

static void take_end(take_t *t)
{
    if (t->conn)
        mc_db_release(t->conn);
    json_decref(t->submission);
    free(t);
}

/* ------------------------------------------------------------------ validation */

static int text_ok(json_t *v, size_t max, const char *extra)
{
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max)
        return 0;
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v))
        return 0; /* an embedded NUL */
    for (; extra && *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
            return 0;
    return 1;
}

static int optional_text(json_t *obj, const char *name, size_t max)
{
    json_t *v = json_object_get(obj, name);
    return !v || json_is_null(v) || text_ok(v, max, NULL);
}

/* The motcua submission of a portal dossier, or NULL with field and message set. */
static json_t *map(json_t *in, const char **field, const char **message)
{
    static const char *const applicant_fields[] = {"name", "id_number", "phone", "email",
                                                   "address"};
    static const size_t applicant_max[] = {200, 12, 15, 254, 500};
    if (!text_ok(json_object_get(in, "national_code"), 64, "._-/:")) {
        *field = "national_code";
        *message = "national_code is required: 1 to 64 letters, digits or . _ - / :";
        return NULL;
    }
    if (!text_ok(json_object_get(in, "procedure_code"), 64, "._-")) {
        *field = "procedure_code";
        *message =
            "procedure_code is required: the national procedure code (letters, digits, . _ -)";
        return NULL;
    }
    json_t *agency = json_object_get(in, "agency_code");
    if (agency && !json_is_null(agency) && !text_ok(agency, 32, ".-")) {
        *field = "agency_code";
        *message = "agency_code: letters, digits, dots and dashes";
        return NULL;
    }
    json_t *a = json_object_get(in, "applicant");
    if (!json_is_object(a) || !text_ok(json_object_get(a, "name"), 200, NULL)) {
        *field = "applicant";
        *message = "applicant is required, with its name";
        return NULL;
    }
    json_t *type = json_object_get(a, "type");
    if (type && !json_is_null(type) &&
        (!json_is_string(type) || (strcmp(json_string_value(type), "citizen") &&
                                   strcmp(json_string_value(type), "business")))) {
        *field = "applicant.type";
        *message = "applicant.type must be citizen or business";
        return NULL;
    }
    json_t *applicant = json_object();
    for (size_t i = 0; i < MC_COUNT(applicant_fields); i++) {
        if (!optional_text(a, applicant_fields[i], applicant_max[i])) {
            json_decref(applicant);
            *field = "applicant";
            *message = "applicant members are non-empty strings of acceptable length";
            return NULL;
        }
        json_t *v = json_object_get(a, applicant_fields[i]);
        if (json_is_string(v))
            json_object_set(applicant, applicant_fields[i], v);
    }
    json_t *docs = json_object_get(in, "documents");
    json_t *documents = json_array();
    if (docs && !json_is_array(docs)) {
        json_decref(applicant);
        json_decref(documents);
        *field = "documents";
        *message = "documents must be an array";
        return NULL;
    }
    size_t i;
    json_t *d;
    json_array_foreach(docs, i, d)
    {
        json_t *size = json_object_get(d, "size");
        if (i >= 100 || !json_is_object(d) || !text_ok(json_object_get(d, "kind"), 64, NULL) ||
            !text_ok(json_object_get(d, "name"), 200, NULL) || !optional_text(d, "sha256", 64) ||
            (size && !json_is_null(size) &&
             (!json_is_integer(size) || json_integer_value(size) < 0))) {
            json_decref(applicant);
            json_decref(documents);
            *field = "documents";
            *message = "documents: at most 100, each {kind, name, sha256?, size?}";
            return NULL;
        }
        json_t *doc = json_pack("{s:O, s:O}", "kind", json_object_get(d, "kind"), "name",
                                json_object_get(d, "name"));
        if (json_is_string(json_object_get(d, "sha256")))
            json_object_set(doc, "sha256", json_object_get(d, "sha256"));
        if (json_is_integer(size))
            json_object_set(doc, "size", size);
        json_array_append_new(documents, doc);
    }
    json_t *ret = json_object_get(in, "return_method");
    if (ret && !json_is_null(ret) &&
        (!json_is_string(ret) ||
         (strcmp(json_string_value(ret), "counter") && strcmp(json_string_value(ret), "post") &&
          strcmp(json_string_value(ret), "online")))) {
        json_decref(applicant);
        json_decref(documents);
        *field = "return_method";
        *message = "return_method must be counter, post or online";
        return NULL;
    }
    if (!optional_text(in, "delivery_address", 500)) {
        json_decref(applicant);
        json_decref(documents);
        *field = "delivery_address";
        *message = "delivery_address must be a non-empty string (500 bytes at most)";
        return NULL;
    }
    json_t *sub =
        json_pack("{s:O, s:s, s:o, s:o}", "procedure", json_object_get(in, "procedure_code"),
                  "channel", "online", "applicant", applicant, "documents", documents);
    if (json_is_string(agency))
        json_object_set(sub, "agency", agency);
    if (json_is_string(ret))
        json_object_set(sub, "return_method", ret);
    if (json_is_string(json_object_get(in, "delivery_address")))
        json_object_set(sub, "delivery_address", json_object_get(in, "delivery_address"));
    return sub;
}

/* ------------------------------------------------------------------ recording */

static void on_existing(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    take_t *t = arg;
    if (status != MC_OK || PQntuples(res) != 1) {
        mc_http_reply_error(t->req, 503, "unavailable", "the inbound store is unavailable", NULL);
        take_end(t);
        return;
    }
    json_t *answer =
        json_pack("{s:I, s:s, s:s, s:b}", "inbound_id", (json_int_t)atoll(PQgetvalue(res, 0, 0)),
                  "national_code", t->national, "state", PQgetvalue(res, 0, 1), "repeated", 1);
    if (!PQgetisnull(res, 0, 2))
        json_object_set_new(answer, "local_code", json_string(PQgetvalue(res, 0, 2)));
    mc_http_reply_json(t->req, 202, answer);
    take_end(t);
}

static void on_added(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    take_t *t = arg;
    if (status != MC_OK) {
        mc_error("portal dossier %s: cannot record it: %s", t->national,
                 res ? PQresultErrorMessage(res) : mc_strerror(status));
        mc_http_reply_error(t->req, 503, "unavailable", "the inbound store is unavailable", NULL);
        take_end(t);
        return;
    }
    if (PQntuples(res) == 1) {
        mc_info("portal dossier %s received (inbound %s)", t->national, PQgetvalue(res, 0, 0));
        mc_http_reply_json(t->req, 202,
                           json_pack("{s:I, s:s, s:s, s:b}", "inbound_id",
                                     (json_int_t)atoll(PQgetvalue(res, 0, 0)), "national_code",
                                     t->national, "state", "pending", "repeated", 0));
        take_end(t);
        return;
    }
    mc_db_params_t p = {0}; /* sent before: the same answer */
    mc_db_param_text(&p, t->national);
    mc_db_query(conn,
                "SELECT id, state, local_code FROM interconnect.inbound"
                " WHERE system = 'national_portal' AND ref_id = $1",
                &p, 0, on_existing, t);
}

static void on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    take_t *t = arg;
    if (status != MC_OK) {
        mc_http_reply_error(t->req, 503, "unavailable", "the inbound store is unavailable", NULL);
        take_end(t);
        return;
    }
    t->conn = conn;
    inbound_add(t->ic, conn, "national_portal", t->national, NULL, t->submission, on_added, t);
}

void portal_dossier_receive(mc_http_req_t *req, void *arg)
{
    interconnect_t *ic = interconnect_of(arg);
    if (mc_signed_callback_check(req, ic->cfg->portal_secret, ic->cfg->portal_max_age_s,
                                 "portal dossier"))
        return;
    json_t *in = mc_http_json_body(req);
    if (!in)
        return;
    const char *field = NULL, *message = NULL;
    json_t *sub = map(in, &field, &message);
    if (!sub) {
        json_decref(in);
        mc_http_reply_error(req, 400, "invalid", message, field);
        return;
    }
    take_t *t = mc_new(take_t);
    t->req = req;
    t->ic = ic;
    t->submission = sub;
    snprintf(t->national, sizeof t->national, "%s",
             json_string_value(json_object_get(in, "national_code")));
    json_decref(in);
    mc_db_acquire(mc_service_db(ic->svc), on_conn, t);
}
