/* submit.c: POST /v1/dossiers — validate a submission, give it a dossier code, store
 * it and its DossierSubmitted envelope in one transaction, answer 201.
 *
 * Keys. Every submission carries an API key (401 without one), and the key's scopes
 * decide what it may submit (403 forbidden otherwise, with the field at fault):
 *   channel online   citizen_portal (the provincial portal's web app, on the citizen's
 *                    behalf), integrator or operator                    field "channel"
 *   channel direct   an officer of the receiving agency (the desk), integrator or
 *   channel postal   operator; an officer of another agency is refused  field "agency"
 *   a reference      integrator or operator, whatever the channel       field "reference"
 * The receiving agency is the body's "agency", else the desk of the procedure's first
 * step: when the body names none, an officer key is checked once the catalog is read
 * (and, for an idempotent replay, against the stored dossier's agency).
 *
 * Reference: a dossier that arrived from another system (the national portal, a peer
 * province through interconnect) carries "reference": {system, id, handoff_id?}. It is
 * stored on the dossier (one dossier per reference: a second is 409) and travels in
 * DossierSubmitted.reference to routing, which puts it on every status.
 *
 * Idempotency-Key: the key is inserted first in the same transaction; a concurrent
 * repeat waits on it and, once the first commits, gets the stored answer (or 409 if
 * the body differs). A crash before COMMIT leaves nothing; after it, everything. */
#include <ctype.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "calendar.h"
#include "dossier_state.h"
#include "error.h"
#include "intake.h"
#include "log.h"
#include "service.h"

typedef struct {
    mc_http_req_t *req;
    mc_service_t *svc;
    mc_db_conn_t *conn;
    json_t *in;
    json_t *answer;
    char *key;
    char hash[crypto_hash_sha256_BYTES * 2 + 1];
    char token[33];
    char agency[40];
    char code[64];
    int64_t received_ms;
    int64_t due_ms;
    json_t *proc; /* the catalog's procedure, as loaded in the transaction */
    mc_outbox_t *outbox;
    mc_principal_t who; /* the key it is submitted with */
} submit_t;

/* ---------------------------------------------------------------- validation */

static int refuse(submit_verdict_t *v, int status, const char *field, const char *message)
{
    v->status = status;
    v->code = status == 422 ? "rule_violation" : "invalid";
    snprintf(v->field, sizeof v->field, "%s", field);
    snprintf(v->message, sizeof v->message, "%s", message);
    return -1;
}

static int forbid(submit_verdict_t *v, const char *field, const char *message)
{
    refuse(v, 403, field, message);
    v->code = "forbidden";
    return -1;
}

static int charset_ok(const char *s, const char *extra, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
            return 0;
    return 1;
}

/* A string member: NULL if absent; -1 (via *bad) if present but not a string or too long. */
static const char *member(json_t *obj, const char *name, size_t max, int *bad)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v) || json_string_length(v) > max || json_string_length(v) == 0 ||
        memchr(json_string_value(v), '\0', json_string_length(v))) {
        *bad = 1;
        return NULL;
    }
    return json_string_value(v);
}

static int digits_only(const char *s)
{
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

static int validate_applicant(json_t *a, submit_verdict_t *v)
{
    static const struct {
        const char *name;
        size_t max;
        int required;
    } fields[] = {{"name", 200, 1},
                  {"id_number", 12, 0},
                  {"phone", 15, 0},
                  {"email", 254, 0},
                  {"address", 500, 0}};
    if (!json_is_object(a))
        return refuse(v, 400, "applicant", "applicant must be an object");
    const char *val[MC_COUNT(fields)];
    for (size_t i = 0; i < MC_COUNT(fields); i++) {
        int bad = 0;
        char field[64];
        snprintf(field, sizeof field, "applicant.%s", fields[i].name);
        val[i] = member(a, fields[i].name, fields[i].max, &bad);
        if (bad)
            return refuse(v, 400, field, "must be a non-empty string of acceptable length");
        if (fields[i].required && !val[i])
            return refuse(v, 400, field, "is required");
    }
    const char *id = val[1], *phone = val[2], *email = val[3];
    if (id && (!digits_only(id) || (strlen(id) != 9 && strlen(id) != 12)))
        return refuse(v, 400, "applicant.id_number", "must be 9 or 12 digits (CMND/CCCD)");
    if (phone) {
        const char *p = strncmp(phone, "+84", 3) == 0 ? phone + 3
                        : phone[0] == '0'             ? phone + 1
                                                      : NULL;
        if (!p || !digits_only(p) || strlen(p) < 9 || strlen(p) > 10)
            return refuse(v, 400, "applicant.phone",
                          "must be a Vietnamese number (0... or +84...)");
    }
    if (email) {
        const char *at = strchr(email, '@');
        if (!at || at == email || strchr(at + 1, '@') || !strchr(at + 1, '.'))
            return refuse(v, 400, "applicant.email", "is not an email address");
    }
    return 0;
}

static int validate_documents(json_t *docs, submit_verdict_t *v)
{
    if (!docs)
        return 0;
    if (!json_is_array(docs) || json_array_size(docs) > 100)
        return refuse(v, 400, "documents", "must be an array of at most 100 documents");
    size_t i;
    json_t *d;
    json_array_foreach(docs, i, d)
    {
        char field[64];
        int bad = 0;
        if (!json_is_object(d)) {
            snprintf(field, sizeof field, "documents[%zu]", i);
            return refuse(v, 400, field, "must be an object");
        }
        const char *kind = member(d, "kind", 64, &bad);
        const char *name = member(d, "name", 200, &bad);
        const char *sha = member(d, "sha256", 64, &bad);
        json_t *size = json_object_get(d, "size");
        snprintf(field, sizeof field, "documents[%zu]", i);
        if (bad || !kind || !name)
            return refuse(v, 400, field, "needs kind and name (strings)");
        if (sha && (strlen(sha) != 64 || strspn(sha, "0123456789abcdefABCDEF") != 64))
            return refuse(v, 400, field, "sha256 must be 64 hexadecimal characters");
        if (size && (!json_is_integer(size) || json_integer_value(size) < 0))
            return refuse(v, 400, field, "size must be a non-negative integer");
    }
    return 0;
}

/* "national_portal" or "province:<code>"; ids of the other system: letters, digits and
 * . _ - / : (64 bytes at most). */
static int validate_reference(json_t *ref, submit_verdict_t *v)
{
    if (!ref || json_is_null(ref))
        return 0;
    if (!json_is_object(ref))
        return refuse(v, 400, "reference", "reference must be an object {system, id, handoff_id}");
    int bad = 0;
    const char *system = member(ref, "system", 48, &bad);
    const char *id = member(ref, "id", 64, &bad);
    const char *handoff = member(ref, "handoff_id", 64, &bad);
    if (bad && !system)
        return refuse(v, 400, "reference.system", "must be a non-empty string");
    if (!system || (strcmp(system, "national_portal") != 0 &&
                    (strncmp(system, "province:", 9) != 0 || !charset_ok(system + 9, ".-_", 32))))
        return refuse(v, 400, "reference.system",
                      "reference.system must be national_portal or province:<code>");
    if (!id || !charset_ok(id, "._-/:", 64))
        return refuse(v, 400, "reference.id",
                      "reference.id is required: 1 to 64 letters, digits or . _ - / :");
    if (bad ||
        (json_object_get(ref, "handoff_id") && !json_is_null(json_object_get(ref, "handoff_id")) &&
         (!handoff || !charset_ok(handoff, "._-/:", 64))))
        return refuse(v, 400, "reference.handoff_id",
                      "reference.handoff_id: 1 to 64 letters, digits or . _ - / :");
    return 0;
}

int submit_validate(json_t *in, const char **agency, submit_verdict_t *v)
{
    int bad = 0;
    const char *procedure = member(in, "procedure", 64, &bad);
    if (bad || !procedure || !charset_ok(procedure, "._-", 64))
        return refuse(v, 400, "procedure", "procedure code is required (letters, digits, . _ -)");
    const char *channel = member(in, "channel", 16, &bad);
    if (bad || !channel || mc_channel_parse(channel) == MOTCUA__V1__CHANNEL__CHANNEL_UNSPECIFIED)
        return refuse(v, 400, "channel", "channel must be online, direct or postal");
    *agency = member(in, "agency", 32, &bad);
    if (bad || (*agency && !charset_ok(*agency, ".-", 32)))
        return refuse(v, 400, "agency", "agency code: letters, digits, dots and dashes");
    if (validate_applicant(json_object_get(in, "applicant"), v))
        return -1;
    if (validate_documents(json_object_get(in, "documents"), v))
        return -1;
    if (validate_reference(json_object_get(in, "reference"), v))
        return -1;
    const char *ret = member(in, "return_method", 16, &bad);
    if (bad || (ret && strcmp(ret, "counter") && strcmp(ret, "post") && strcmp(ret, "online")))
        return refuse(v, 400, "return_method", "return_method must be counter, post or online");
    const char *addr = member(in, "delivery_address", 500, &bad);
    if (bad)
        return refuse(v, 400, "delivery_address", "must be a non-empty string");
    if (ret && strcmp(ret, "post") == 0 && !addr)
        return refuse(v, 422, "delivery_address",
                      "a delivery address is required for return by post");
    return 0;
}

/* ---------------------------------------------------------------- who may submit */

/* Keys that may submit on any channel, for any agency. */
#define SUBMIT_ANYWHERE (MC_SCOPE_INTEGRATOR | MC_SCOPE_OPERATOR)

/* 1 if the key may submit this (validated) body only as an officer: at the desk or by
 * post, without an integrator or operator scope. Its agency must then receive it. */
static int officer_only(const mc_principal_t *who, json_t *in)
{
    const char *channel = json_string_value(json_object_get(in, "channel"));
    return !(who->scopes & SUBMIT_ANYWHERE) && strcmp(channel, "online") != 0;
}

/* An officer receives dossiers at their own agency's desk: 0, or a 403 verdict. */
static int desk_check(const mc_principal_t *who, const char *agency, submit_verdict_t *v)
{
    if (who->agency[0] && strcmp(who->agency, agency) == 0)
        return 0;
    char message[200];
    snprintf(message, sizeof message,
             "an officer receives dossiers at their own agency's desk only; this one is "
             "received by %.40s",
             agency[0] ? agency : "no agency");
    return forbid(v, "agency", message);
}

/* What can be decided before the catalog is read (see the top of the file): 0, or a
 * 403 verdict. `agency` is the body's, NULL if it names none. */
static int entitled(const mc_principal_t *who, json_t *in, const char *agency, submit_verdict_t *v)
{
    json_t *ref = json_object_get(in, "reference");
    if (ref && !json_is_null(ref) && !(who->scopes & SUBMIT_ANYWHERE))
        return forbid(v, "reference",
                      "a dossier with a reference is submitted with an API key (integrator or "
                      "operator)");
    if (who->scopes & SUBMIT_ANYWHERE)
        return 0;
    if (strcmp(json_string_value(json_object_get(in, "channel")), "online") == 0)
        return who->scopes & MC_SCOPE_CITIZEN
                   ? 0
                   : forbid(v, "channel",
                            "online dossiers are submitted with a citizen_portal, integrator "
                            "or operator key");
    if (!(who->scopes & MC_SCOPE_OFFICER))
        return forbid(v, "channel",
                      "dossiers received at the desk or by post are submitted with an officer "
                      "key of the receiving agency, or an integrator or operator key");
    return agency ? desk_check(who, agency, v) : 0;
}

/* Online dossiers wait for the desk (SUBMITTED); at the desk or by post they are
 * received on the spot (RECEIVED). */
static mc_state_t initial_state(const submit_t *s)
{
    const char *channel = json_string_value(json_object_get(s->in, "channel"));
    return strcmp(channel, "online") == 0 ? MOTCUA__V1__DOSSIER_STATE__STATE_SUBMITTED
                                          : MOTCUA__V1__DOSSIER_STATE__STATE_RECEIVED;
}

/* ---------------------------------------------------------------- the transaction */

static void submit_free(submit_t *s)
{
    if (s->conn)
        mc_db_release(s->conn); /* rolls back if the transaction is still open */
    json_decref(s->in);
    json_decref(s->answer);
    json_decref(s->proc);
    mc_outbox_destroy(&s->outbox);
    free(s->key);
    free(s);
}

static void fail(submit_t *s, PGresult *res, int status, const char *step)
{
    mc_error("submit: %s failed: %s", step, res ? PQresultErrorMessage(res) : mc_strerror(status));
    mc_http_reply_error(s->req, 503, "unavailable", "the dossier could not be stored; try again",
                        NULL);
    submit_free(s);
}

static void on_commit(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    submit_t *s = arg;
    if (status != MC_OK) {
        fail(s, res, status, "commit");
        return;
    }
    mc_logd(MC_LOG_INFO, mc_http_header(s->req, "x-trace-id"), s->code,
            "dossier submitted (%s) with key %s",
            json_string_value(json_object_get(s->in, "channel")), s->who.name);
    mc_http_reply_json(s->req, 201, json_incref(s->answer));
    submit_free(s);
}

static void on_idempotency_saved(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    submit_t *s = arg;
    if (status != MC_OK) {
        fail(s, res, status, "idempotency record");
        return;
    }
    mc_db_query(conn, "COMMIT", NULL, 0, on_commit, s);
}

static void on_outbox_written(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    submit_t *s = arg;
    if (status != MC_OK) {
        fail(s, res, status, "outbox");
        return;
    }
    if (!s->key) {
        mc_db_query(conn, "COMMIT", NULL, 0, on_commit, s);
        return;
    }
    char *text = json_dumps(s->answer, JSON_COMPACT);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, s->key);
    mc_db_param_text(&p, text);
    mc_db_query(conn,
                "UPDATE intake.idempotency SET status = 201, response = $2::jsonb WHERE key = $1",
                &p, 0, on_idempotency_saved, s);
    free(text);
}

/* How long an online fee may stay unpaid: MOTCUA_PAYMENT_TTL_SECONDS if set (tests),
 * else MOTCUA_PAYMENT_TTL_HOURS (default 48). */
static int64_t payment_ttl_ms(void)
{
    const char *sec = getenv("MOTCUA_PAYMENT_TTL_SECONDS");
    const char *hours = getenv("MOTCUA_PAYMENT_TTL_HOURS");
    long long v;
    if (sec && *sec && (v = atoll(sec)) > 0)
        return (int64_t)v * 1000;
    if (hours && *hours && (v = atoll(hours)) > 0)
        return (int64_t)v * 3600 * 1000;
    return (int64_t)48 * 3600 * 1000;
}

/* The fee this dossier owes here: none for one another province handed us (the
 * applicant paid the province where they filed), else the procedure's. */
static json_int_t fee_owed(const submit_t *s)
{
    json_t *ref = json_object_get(s->in, "reference");
    const char *system = json_string_value(json_object_get(ref, "system"));
    if (system && strncmp(system, "province:", 9) == 0)
        return 0;
    return json_integer_value(json_object_get(s->proc, "fee"));
}

/* Build DossierSubmitted (and PaymentRequested when the fee is paid online) from the
 * validated input and write them to the outbox. */
static void emit_submitted(submit_t *s)
{
    json_t *in = s->in, *a = json_object_get(in, "applicant");
    Motcua__V1__Applicant applicant = MOTCUA__V1__APPLICANT__INIT;
    Motcua__V1__DossierSubmitted ev = MOTCUA__V1__DOSSIER_SUBMITTED__INIT;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
#define STR(obj, name) (json_string_value(json_object_get((obj), (name))) ?: "")
    applicant.name = (char *)STR(a, "name");
    applicant.id_number = (char *)STR(a, "id_number");
    applicant.phone = (char *)STR(a, "phone");
    applicant.email = (char *)STR(a, "email");
    applicant.address = (char *)STR(a, "address");
    json_t *docs = json_object_get(in, "documents");
    size_t ndocs = json_array_size(docs);
    Motcua__V1__Document *dv = mc_alloc(sizeof *dv * (ndocs ? ndocs : 1));
    Motcua__V1__Document **dp = mc_alloc(sizeof *dp * (ndocs ? ndocs : 1));
    for (size_t i = 0; i < ndocs; i++) {
        json_t *d = json_array_get(docs, i);
        motcua__v1__document__init(&dv[i]);
        dv[i].kind = (char *)STR(d, "kind");
        dv[i].name = (char *)STR(d, "name");
        dv[i].sha256 = (char *)STR(d, "sha256");
        dv[i].size = json_integer_value(json_object_get(d, "size"));
        dp[i] = &dv[i];
    }
    ev.code = s->code;
    ev.procedure_code = (char *)STR(in, "procedure");
    ev.agency_code = s->agency;
    ev.channel = mc_channel_parse(STR(in, "channel"));
    ev.applicant = &applicant;
    ev.n_documents = ndocs;
    ev.documents = dp;
    ev.return_method =
        (char *)(json_string_value(json_object_get(in, "return_method")) ?: "counter");
    ev.delivery_address = (char *)STR(in, "delivery_address");
    ev.received_at_ms = s->received_ms;
    ev.due_at_ms = s->due_ms;
    json_t *proc = s->proc;
    ev.fee_vnd = fee_owed(s);
    ev.procedure_name = (char *)STR(proc, "name");
    ev.level = (int32_t)json_integer_value(json_object_get(proc, "level"));
    ev.days = json_number_value(json_object_get(proc, "days"));
    ev.cutoff = (char *)STR(proc, "cutoff");
    ev.catalog_version = (char *)STR(proc, "version");
    ev.resolving_agency_code = (char *)STR(proc, "agency");
    json_t *steps = json_object_get(proc, "steps");
    size_t nsteps = json_array_size(steps);
    Motcua__V1__Step *sv = mc_alloc(sizeof *sv * (nsteps ? nsteps : 1));
    Motcua__V1__Step **sp = mc_alloc(sizeof *sp * (nsteps ? nsteps : 1));
    for (size_t i = 0; i < nsteps; i++) {
        json_t *st = json_array_get(steps, i);
        motcua__v1__step__init(&sv[i]);
        sv[i].name = (char *)STR(st, "name");
        sv[i].agency_code = (char *)STR(st, "agency");
        sv[i].days = json_number_value(json_object_get(st, "days"));
        sv[i].external = json_is_true(json_object_get(st, "external"));
        sv[i].procedure_code = (char *)STR(st, "procedure");
        sp[i] = &sv[i];
    }
    ev.n_steps = nsteps;
    ev.steps = sp;
    Motcua__V1__Reference ref = MOTCUA__V1__REFERENCE__INIT;
    json_t *rj = json_object_get(in, "reference");
    if (json_is_object(rj)) {
        ref.system = (char *)STR(rj, "system");
        ref.id = (char *)STR(rj, "id");
        ref.handoff_id = (char *)STR(rj, "handoff_id");
        ev.reference = &ref;
    }
#undef STR
    env.dossier_code = s->code;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_DOSSIER_SUBMITTED;
    env.dossier_submitted = &ev;
    s->outbox = mc_outbox_new("intake");
    mc_outbox_add(s->outbox, &env, mc_http_header(s->req, "x-trace-id"), NULL);
    /* A level-4 dossier submitted online pays its fee online: payment opens the order. */
    if (ev.fee_vnd > 0 && ev.level == 4 && ev.channel == MOTCUA__V1__CHANNEL__CHANNEL_ONLINE) {
        Motcua__V1__PaymentRequested pay = MOTCUA__V1__PAYMENT_REQUESTED__INIT;
        mc_envelope_t penv = MOTCUA__V1__ENVELOPE__INIT;
        pay.code = s->code;
        pay.amount_vnd = ev.fee_vnd;
        pay.procedure_code = ev.procedure_code;
        pay.procedure_name = ev.procedure_name;
        pay.email = applicant.email;
        pay.phone = applicant.phone;
        pay.expires_at_ms = s->received_ms + payment_ttl_ms();
        penv.dossier_code = s->code;
        penv.body_case = MOTCUA__V1__ENVELOPE__BODY_PAYMENT_REQUESTED;
        penv.payment_requested = &pay;
        mc_outbox_add(s->outbox, &penv, mc_http_header(s->req, "x-trace-id"), NULL);
    }
    free(dv);
    free(dp);
    free(sv);
    free(sp);
    mc_outbox_write(s->outbox, s->conn, on_outbox_written, s);
}

static void on_dossier_inserted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    submit_t *s = arg;
    if (status == MC_EDB && strcmp(mc_db_sqlstate(res), "23505") == 0) {
        /* Another dossier has this reference; releasing the connection rolls back. */
        mc_http_reply_error(s->req, 409, "conflict",
                            "a dossier with this reference was submitted already", "reference");
        submit_free(s);
        return;
    }
    if (status != MC_OK || PQntuples(res) != 1) {
        fail(s, res, status, "insert");
        return;
    }
    snprintf(s->code, sizeof s->code, "%s", PQgetvalue(res, 0, 0));
    char due[MC_CALENDAR_ISO_LEN];
    if (mc_calendar_iso8601(s->due_ms, due) != MC_OK)
        due[0] = '\0';
    char *receipt = mc_sprintf("/v1/dossiers/%s/receipt?token=%s", s->code, s->token);
    s->answer = json_pack(
        "{s:s, s:s, s:i, s:s, s:s, s:s, s:I, s:{s:s, s:s, s:i}, s:s}", "code", s->code, "status",
        mc_state_name(initial_state(s)), "national_status", mc_state_national(initial_state(s)),
        "received_at", PQgetvalue(res, 0, 1), "due_at", due, "lookup_token", s->token, "fee",
        fee_owed(s), "procedure", "code", json_string_value(json_object_get(s->in, "procedure")),
        "name", json_string_value(json_object_get(s->proc, "name")), "level",
        (int)json_integer_value(json_object_get(s->proc, "level")), "receipt_url", receipt);
    free(receipt);
    emit_submitted(s);
}

static void insert_dossier(submit_t *s)
{
    static const char *sql =
        "WITH seq AS ("
        "  INSERT INTO intake.code_sequences AS cs (agency_code, day, last)"
        "  VALUES ($1, to_char(to_timestamp($9::bigint / 1000.0) AT TIME ZONE 'Asia/Ho_Chi_Minh',"
        "    'YYYYMMDD'), 1)"
        "  ON CONFLICT (agency_code, day) DO UPDATE SET last = cs.last + 1"
        "  RETURNING agency_code, day, last),"
        /* The dossier code format lives here: {agency}-{yyyyMMdd}-{7-digit sequence}. */
        " d AS ("
        "  INSERT INTO intake.dossiers (code, procedure_code, agency_code, channel, applicant,"
        "    documents, return_method, delivery_address, lookup_token, received_at, due_at,"
        "    procedure_name, level, fee, status, national_status, reference)"
        "  SELECT seq.agency_code || '-' || seq.day || '-' ||"
        "    lpad(seq.last::text, greatest(7, length(seq.last::text)), '0'),"
        "    $2, $1, $3, $4::jsonb, $5::jsonb, $6, $7, $8, to_timestamp($9::bigint / 1000.0),"
        "    to_timestamp($10::bigint / 1000.0), $11, $12::int, $13::bigint, $14, $15::int,"
        "    $16::jsonb FROM seq"
        "  RETURNING code, received_at),"
        " e AS (INSERT INTO intake.dossier_events (code, state, agency_code, note, at)"
        "  SELECT code, $14, $1, 'received by intake', received_at FROM d)"
        " SELECT code,"
        "  to_char(received_at AT TIME ZONE 'Asia/Ho_Chi_Minh', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"'),"
        "  (extract(epoch FROM received_at) * 1000)::bigint FROM d";
    json_t *in = s->in;
    char *applicant = json_dumps(json_object_get(in, "applicant"), JSON_COMPACT);
    json_t *docs = json_object_get(in, "documents");
    char *documents = docs ? json_dumps(docs, JSON_COMPACT) : mc_strdup("[]");
    const char *ret = json_string_value(json_object_get(in, "return_method"));
    mc_db_params_t p = {0};
    mc_db_param_text(&p, s->agency);
    mc_db_param_text(&p, json_string_value(json_object_get(in, "procedure")));
    mc_db_param_text(&p, json_string_value(json_object_get(in, "channel")));
    mc_db_param_text(&p, applicant);
    mc_db_param_text(&p, documents);
    mc_db_param_text(&p, ret ? ret : "counter");
    mc_db_param_text(&p, json_string_value(json_object_get(in, "delivery_address")));
    mc_db_param_text(&p, s->token);
    mc_db_param_int(&p, s->received_ms);
    mc_db_param_int(&p, s->due_ms);
    mc_db_param_text(&p, json_string_value(json_object_get(s->proc, "name")));
    mc_db_param_int(&p, json_integer_value(json_object_get(s->proc, "level")));
    mc_db_param_int(&p, fee_owed(s));
    mc_db_param_text(&p, mc_state_name(initial_state(s)));
    mc_db_param_int(&p, mc_state_national(initial_state(s)));
    json_t *rj = json_object_get(in, "reference");
    char *reference = NULL;
    if (json_is_object(rj)) {
        /* Stored as given, without members it does not know. */
        json_t *keep = json_pack("{s:O, s:O}", "system", json_object_get(rj, "system"), "id",
                                 json_object_get(rj, "id"));
        if (json_is_string(json_object_get(rj, "handoff_id")))
            json_object_set(keep, "handoff_id", json_object_get(rj, "handoff_id"));
        reference = json_dumps(keep, JSON_COMPACT);
        json_decref(keep);
    }
    mc_db_param_text(&p, reference);
    mc_db_query(s->conn, sql, &p, 0, on_dossier_inserted, s);
    free(reference);
    free(applicant);
    free(documents);
}

/* ---------------------------------------------------------------- the catalog's rules */

/* Check the submission against its procedure; 0, or a verdict for the reply. */
static int check_against_catalog(submit_t *s, json_t *desk, submit_verdict_t *v)
{
    json_t *in = s->in, *proc = s->proc;
    const char *channel = json_string_value(json_object_get(in, "channel"));
    const char *ret = json_string_value(json_object_get(in, "return_method"));
    if (!ret)
        ret = "counter";
    if (json_is_string(json_object_get(in, "agency")) && !desk)
        return refuse(v, 422, "agency", "no such agency in the catalog");
    if (desk && json_is_true(json_object_get(desk, "external")))
        return refuse(v, 422, "agency", "an agency outside motcua cannot receive dossiers here");
    if (json_integer_value(json_object_get(proc, "level")) == 2 && strcmp(channel, "online") == 0)
        return refuse(v, 422, "channel",
                      "this procedure is at service level 2: it is not submitted online");
    int allowed = 0;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(proc, "return_methods"), i, m) allowed |=
        strcmp(json_string_value(m), ret) == 0;
    if (!allowed)
        return refuse(v, 422, "return_method", "this procedure does not return results that way");
    json_t *required, *given = json_object_get(in, "documents");
    json_array_foreach(json_object_get(proc, "documents"), i, required)
    {
        const char *kind = json_string_value(json_object_get(required, "kind"));
        int found = 0;
        size_t k;
        json_t *d;
        json_array_foreach(given, k, d) found |=
            strcmp(json_string_value(json_object_get(d, "kind")), kind) == 0;
        if (!found) {
            v->status = 422;
            v->code = "rule_violation";
            snprintf(v->field, sizeof v->field, "documents");
            snprintf(v->message, sizeof v->message, "missing required document %s: %s", kind,
                     json_string_value(json_object_get(required, "name")));
            return -1;
        }
    }
    return 0;
}

static void on_procedure(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    submit_t *s = arg;
    if (status != MC_OK) {
        fail(s, res, status, "catalog");
        return;
    }
    submit_verdict_t v;
    if (PQntuples(res) == 1 && !(s->proc = json_loads(PQgetvalue(res, 0, 0), 0, NULL))) {
        fail(s, NULL, MC_EDECODE, "catalog (the procedure)");
        return;
    }
    if (PQntuples(res) != 1) {
        refuse(&v, 422, "procedure", "no such procedure in the catalog");
    } else {
        if (!json_is_string(json_object_get(s->in, "agency"))) {
            /* The dossier is received by the desk of the procedure's first step. */
            json_t *first = json_array_get(json_object_get(s->proc, "steps"), 0);
            snprintf(s->agency, sizeof s->agency, "%s",
                     json_string_value(json_object_get(first, "agency")) ?: s->agency);
        }
        /* The key before the catalog's rules: an officer of another desk is refused as
         * such, whatever else is wrong with the dossier. */
        json_t *desk = PQgetisnull(res, 0, 1) ? NULL : json_loads(PQgetvalue(res, 0, 1), 0, NULL);
        int bad = (officer_only(&s->who, s->in) && desk_check(&s->who, s->agency, &v)) ||
                  check_against_catalog(s, desk, &v);
        json_decref(desk);
        if (!bad) {
            mc_service_t *svc = s->svc;
            const mc_calendar_t *cal = mc_service_calendar(svc);
            int cutoff =
                mc_calendar_parse_cutoff(json_string_value(json_object_get(s->proc, "cutoff")));
            s->received_ms = mc_wall_ms();
            s->due_ms = mc_calendar_due_days(
                cal, s->received_ms, json_number_value(json_object_get(s->proc, "days")),
                cutoff == MC_CALENDAR_BAD_CUTOFF ? MC_CALENDAR_NO_CUTOFF : cutoff);
            insert_dossier(s);
            return;
        }
    }
    /* Nothing was written; releasing the connection rolls back the idempotency claim. */
    mc_http_reply_error(s->req, v.status, v.code, v.message, v.field);
    submit_free(s);
}

static void load_procedure(submit_t *s)
{
    mc_db_params_t p = {0};
    mc_db_param_text(&p, json_string_value(json_object_get(s->in, "procedure")));
    mc_db_param_text(&p, json_string_value(json_object_get(s->in, "agency")));
    mc_db_query(
        s->conn,
        "SELECT json_build_object('name', p.name, 'level', p.level, 'days', p.days,"
        " 'cutoff', p.cutoff, 'fee', p.fee, 'documents', p.documents,"
        " 'return_methods', to_json(p.return_methods), 'steps',"
        " (SELECT json_agg(st || jsonb_build_object('external', coalesce(a.external, false))"
        "   ORDER BY o) FROM jsonb_array_elements(p.steps) WITH ORDINALITY AS x(st, o)"
        "   LEFT JOIN intake.agencies a ON a.code = st->>'agency'),"
        " 'version', p.version, 'agency', p.agency_code),"
        " (SELECT json_build_object('external', a.external) FROM intake.agencies a"
        "   WHERE a.code = $2 AND a.retired_at IS NULL)"
        " FROM intake.procedures p WHERE p.code = $1 AND p.retired_at IS NULL",
        &p, 0, on_procedure, s);
}

static void on_replay_read(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    submit_t *s = arg;
    if (status != MC_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 1)) {
        fail(s, res, status, "idempotency lookup");
        return;
    }
    submit_verdict_t v;
    if (strcmp(PQgetvalue(res, 0, 0), s->hash) != 0) {
        mc_http_reply_error(s->req, 409, "idempotency_conflict",
                            "this Idempotency-Key was used with a different request",
                            "Idempotency-Key");
    } else if (officer_only(&s->who, s->in) &&
               desk_check(&s->who, PQgetisnull(res, 0, 3) ? "" : PQgetvalue(res, 0, 3), &v)) {
        /* The same body, from an officer of another desk than the stored dossier's. */
        mc_http_reply_error(s->req, v.status, v.code, v.message, v.field);
    } else {
        json_t *answer = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
        mc_http_set_header(s->req, "idempotent-replay", "true");
        mc_http_reply_json(s->req, atoi(PQgetvalue(res, 0, 1)), answer);
    }
    submit_free(s);
}

static void on_key_claimed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    submit_t *s = arg;
    if (status != MC_OK) {
        fail(s, res, status, "idempotency claim");
        return;
    }
    if (strcmp(PQcmdTuples(res), "1") == 0) {
        load_procedure(s);
        return;
    }
    /* The key was used before (and committed): answer as the first time. */
    mc_db_params_t p = {0};
    mc_db_param_text(&p, s->key);
    mc_db_query(conn,
                "SELECT i.request_hash, i.status, i.response, d.agency_code"
                " FROM intake.idempotency i LEFT JOIN intake.dossiers d"
                "  ON d.code = i.response->>'code' WHERE i.key = $1",
                &p, 0, on_replay_read, s);
}

static void on_begin(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    submit_t *s = arg;
    if (status != MC_OK) {
        fail(s, res, status, "begin");
        return;
    }
    if (!s->key) {
        load_procedure(s);
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, s->key);
    mc_db_param_text(&p, s->hash);
    mc_db_query(conn,
                "INSERT INTO intake.idempotency (key, request_hash) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING",
                &p, 0, on_key_claimed, s);
}

static void on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    submit_t *s = arg;
    if (status != MC_OK) {
        fail(s, NULL, status, "connect");
        return;
    }
    s->conn = conn;
    mc_db_query(conn, "BEGIN", NULL, 0, on_begin, s);
}

/* Authenticated: validate the submission, check that the key may make it, and start
 * its transaction (or answer the request). */
static void submit_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    mc_service_t *svc = arg;
    json_t *in = mc_http_json_body(req);
    if (!in)
        return; /* 400 already sent */
    const char *agency = NULL;
    submit_verdict_t v;
    if (submit_validate(in, &agency, &v) || entitled(who, in, agency, &v)) {
        mc_http_reply_error(req, v.status, v.code, v.message, v.field);
        json_decref(in);
        return;
    }
    const char *key = mc_http_header(req, "idempotency-key");
    if (key && (strlen(key) == 0 || strlen(key) > 128)) {
        mc_http_reply_error(req, 400, "invalid", "Idempotency-Key must be 1 to 128 characters",
                            "Idempotency-Key");
        json_decref(in);
        return;
    }
    submit_t *s = mc_new(submit_t);
    s->req = req;
    s->svc = svc;
    s->in = in;
    s->key = key ? mc_strdup(key) : NULL;
    s->who = *who;
    snprintf(s->agency, sizeof s->agency, "%s", agency ? agency : "");
    size_t blen;
    const char *body = mc_http_body(req, &blen);
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, (const unsigned char *)body, blen);
    sodium_bin2hex(s->hash, sizeof s->hash, digest, sizeof digest);
    unsigned char rnd[16];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(s->token, sizeof s->token, rnd, sizeof rnd);
    mc_db_acquire(mc_service_db(svc), on_conn, s);
}

void dossier_submit(mc_http_req_t *req, void *arg)
{
    /* A key of any of these scopes; which of them may submit what is decided once the
     * body is read (entitled, desk_check). */
    mc_auth_require(intake_of(arg)->auth, req,
                    MC_SCOPE_CITIZEN | MC_SCOPE_OFFICER | MC_SCOPE_INTEGRATOR | MC_SCOPE_OPERATOR,
                    submit_as, arg);
}
