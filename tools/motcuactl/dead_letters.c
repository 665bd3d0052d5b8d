/* dead_letters.c: `motcuactl dead-letters list | show | replay`.
 *
 * A dead letter is an envelope a service's bus could not decode or handle, kept in
 * <service>.dead_letters with the reason (common/bus.c). Operators see all of it but
 * the body: every column, the envelope's header fields and its body's type, or a hex
 * dump when it is not an Envelope. Bodies are never printed: they carry applicants'
 * personal data and lookup tokens.
 *
 * Replay delivers the original bytes to the service again, in one transaction: the
 * message id leaves the service's inbox (else the repeat would be skipped), the
 * envelope goes into the service's own outbox addressed to the service itself, and
 * the dead letter is marked replayed. The service's relay then sends it to its own
 * ROUTER like any other envelope, in order after what its outbox already holds for
 * that dossier; if it fails again it becomes a new dead letter (the partial unique
 * index on message_id only covers rows not yet replayed). Undecodable payloads are
 * refused: they have no message id to travel under and would only fail again. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "envelope.h"
#include "service.h"

#define DEFAULT_LIMIT 50
#define DUMP_BYTES    256

/* Times as ISO 8601 text for JSON and shorter for tables, both in the session's time
 * zone with its offset. */
#define ISO(col)   "to_json(" col ")#>>'{}'"
#define SHORT(col) "to_char(" col ", 'YYYY-MM-DD HH24:MI:SSOF')"

/* A result cell as JSON: SQL NULL stays null. */
static json_t *cell(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null() : json_string(PQgetvalue(r, row, col));
}

/* ================================================================ list */

int ctl_dead_letters_list(ctl_t *ctl)
{
    int rc = ctl->nargs ? ctl_want_service(ctl->args[0]) : CTL_OK;
    if (rc != CTL_OK || (rc = ctl_connect(ctl)) != CTL_OK)
        return rc;
    /* One query over every schema that has the tables, newest first across them. */
    char *sql = NULL;
    for (int i = 0; i < CTL_NSERVICES; i++) {
        const char *svc = mc_service_names[i];
        if (ctl->nargs && strcmp(svc, ctl->args[0]) != 0)
            continue;
        int has = ctl_has_bus_tables(ctl, svc);
        if (has < 0) {
            free(sql);
            return CTL_FAIL;
        }
        if (!has)
            continue;
        char *part = mc_sprintf("%s%sSELECT '%s' AS service, id, " SHORT("created_at") ", " ISO(
                                    "created_at") ", message_id, type, dossier_code, "
                                                  "reason, " SHORT("replayed_at") ", " ISO(
                                                      "replaye"
                                                      "d_at") ", created_at AS at "
                                                              "FROM \"%s\".dead_letters",
                                sql ? sql : "", sql ? " UNION ALL " : "", svc, svc);
        free(sql);
        sql = part;
    }
    if (!sql && ctl->nargs) {
        ctl_error("%s has no bus tables (the service never started; see motcuactl migrate)",
                  ctl->args[0]);
        return CTL_FAIL;
    }
    PGresult *r = NULL; /* stays NULL when no schema has the tables yet */
    if (sql) {
        char *full = mc_sprintf("%s ORDER BY at DESC, id DESC LIMIT $1::int", sql);
        char limit[24];
        snprintf(limit, sizeof limit, "%ld", ctl->limit ? ctl->limit : (long)DEFAULT_LIMIT);
        r = ctl_query(ctl, full, 1, (const char *const[]){limit});
        free(full);
        free(sql);
        if (!r)
            return CTL_FAIL;
    }
    int rows = r ? PQntuples(r) : 0;
    if (ctl->json) {
        json_t *list = json_array();
        for (int i = 0; i < rows; i++)
            json_array_append_new(
                list, json_pack("{s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "service",
                                PQgetvalue(r, i, 0), "id", (json_int_t)atoll(PQgetvalue(r, i, 1)),
                                "time", cell(r, i, 3), "message_id", cell(r, i, 4), "type",
                                cell(r, i, 5), "dossier_code", cell(r, i, 6), "reason",
                                cell(r, i, 7), "replayed_at", cell(r, i, 9)));
        json_t *doc = json_pack("{s:o}", "dead_letters", list);
        ctl_json_print(&doc);
    } else {
        ctl_table_t *t =
            ctl_table_new(8,
                          (const char *const[]){"SERVICE", "ID", "TIME", "MESSAGE ID", "TYPE",
                                                "DOSSIER", "REPLAYED", "REASON"},
                          1u << 1);
        for (int i = 0; i < rows; i++) {
            const char *msg = PQgetisnull(r, i, 4) ? "-" : PQgetvalue(r, i, 4);
            const char *type = PQgetisnull(r, i, 5) ? "-" : PQgetvalue(r, i, 5);
            const char *code =
                PQgetisnull(r, i, 6) || !*PQgetvalue(r, i, 6) ? "-" : PQgetvalue(r, i, 6);
            const char *replayed = PQgetisnull(r, i, 8) ? "-" : PQgetvalue(r, i, 8);
            ctl_table_add(t, (const char *const[]){PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                                                   PQgetvalue(r, i, 2), msg, type, code, replayed,
                                                   PQgetvalue(r, i, 7)});
        }
        if (rows)
            ctl_table_print(t, stdout, "");
        else
            printf("no dead letters\n");
        ctl_table_destroy(&t);
    }
    PQclear(r);
    return CTL_OK;
}

/* ================================================================ show */

/* What the envelope carries, by name: a body this build knows, or the field numbers
 * of one it does not (an envelope from a newer schema). */
static void body_describe(const mc_envelope_t *env, char *out, size_t len)
{
    if (env->body_case != MOTCUA__V1__ENVELOPE__BODY__NOT_SET) {
        const char *name = mc_body_name(env->body_case);
        if (name)
            snprintf(out, len, "%s", name);
        else
            snprintf(out, len, "field %d (no name in this build)", (int)env->body_case);
        return;
    }
    if (!env->base.n_unknown_fields) {
        snprintf(out, len, "none");
        return;
    }
    size_t n = (size_t)snprintf(out, len, "unknown to this build: field");
    for (unsigned i = 0; i < env->base.n_unknown_fields && n < len; i++)
        n += (size_t)snprintf(out + n, len - n, "%s %u", i ? "," : "",
                              env->base.unknown_fields[i].tag);
}

static void time_text(int64_t ms, char *out, size_t len)
{
    if (ms <= 0) {
        snprintf(out, len, "-");
        return;
    }
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, len - n, ".%03dZ", (int)(ms % 1000));
}

static json_t *envelope_json(const mc_envelope_t *env)
{
    char body[160], when[40];
    body_describe(env, body, sizeof body);
    time_text(env->time_ms, when, sizeof when);
    json_t *unknown = json_array();
    for (unsigned i = 0; i < env->base.n_unknown_fields; i++)
        json_array_append_new(unknown, json_integer(env->base.unknown_fields[i].tag));
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:i, s:s, s:o}", "message_id",
                     env->message_id, "type", env->type, "dossier_code", env->dossier_code,
                     "causation_id", env->causation_id, "trace_id", env->trace_id, "source",
                     env->source, "time_ms", (json_int_t)env->time_ms, "time", when,
                     "schema_version", (int)env->schema_version, "body", body, "unknown_fields",
                     unknown);
}

static void hex_head(const uint8_t *data, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 15];
    }
    out[2 * len] = '\0';
}

static void field_line(const char *name, const char *value)
{
    printf("  %-15s %s\n", name, value && *value ? value : "-");
}

int ctl_dead_letters_show(ctl_t *ctl)
{
    int rc = ctl_want_service(ctl->args[0]);
    long long id = ctl_parse_id(ctl->args[1]);
    if (rc == CTL_OK && !id) {
        ctl_error("dead letter id '%s': expected a positive number", ctl->args[1]);
        rc = CTL_USAGE;
    }
    if (rc != CTL_OK || (rc = ctl_connect(ctl)) != CTL_OK)
        return rc;
    const char *svc = ctl->args[0];
    int has = ctl_has_bus_tables(ctl, svc);
    if (has <= 0) {
        if (has == 0)
            ctl_error("%s has no bus tables (the service never started)", svc);
        return CTL_FAIL;
    }
    char *sql = mc_sprintf(
        "SELECT id, " ISO(
            "created_at") ", message_id, source, type, "
                          "dossier_code, reason, " ISO(
                              "replayed_at") ", payload "
                                             "FROM \"%s\".dead_letters WHERE id = $1::bigint",
        svc);
    char idtext[24];
    snprintf(idtext, sizeof idtext, "%lld", id);
    PGresult *r = ctl_query(ctl, sql, 1, (const char *const[]){idtext});
    free(sql);
    if (!r)
        return CTL_FAIL;
    if (PQntuples(r) == 0) {
        ctl_error("no dead letter %lld in %s", id, svc);
        PQclear(r);
        return CTL_FAIL;
    }
    size_t len = 0;
    uint8_t *payload = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 8), &len);
    if (!payload) {
        ctl_error("cannot read the payload of dead letter %lld", id);
        PQclear(r);
        return CTL_FAIL;
    }
    mc_envelope_t *env = mc_envelope_decode(payload, len);
    size_t head = len < DUMP_BYTES ? len : DUMP_BYTES;

    if (ctl->json) {
        json_t *doc = json_pack("{s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I}", "service",
                                svc, "id", (json_int_t)id, "time", cell(r, 0, 1), "message_id",
                                cell(r, 0, 2), "source", cell(r, 0, 3), "type", cell(r, 0, 4),
                                "dossier_code", cell(r, 0, 5), "reason", cell(r, 0, 6),
                                "replayed_at", cell(r, 0, 7), "payload_bytes", (json_int_t)len);
        json_object_set_new(doc, "envelope", env ? envelope_json(env) : json_null());
        if (!env) {
            char *hex = mc_alloc(head * 2 + 1);
            hex_head(payload, head, hex);
            json_object_set_new(doc, "payload_head_hex", json_string(hex));
            free(hex);
        }
        ctl_json_print(&doc);
    } else {
        char bytes[32];
        snprintf(bytes, sizeof bytes, "%zu bytes", len);
        printf("dead letter %lld of %s\n", id, svc);
        field_line("time", PQgetvalue(r, 0, 1));
        field_line("replayed at", PQgetisnull(r, 0, 7) ? "not replayed" : PQgetvalue(r, 0, 7));
        field_line("message id", PQgetvalue(r, 0, 2));
        field_line("source", PQgetvalue(r, 0, 3));
        field_line("type", PQgetvalue(r, 0, 4));
        field_line("dossier", PQgetvalue(r, 0, 5));
        field_line("reason", PQgetvalue(r, 0, 6));
        field_line("payload", bytes);
        if (env) {
            char body[160], when[40], version[16];
            body_describe(env, body, sizeof body);
            time_text(env->time_ms, when, sizeof when);
            snprintf(version, sizeof version, "%u", env->schema_version);
            printf("envelope\n");
            field_line("message id", env->message_id);
            field_line("type", env->type);
            field_line("dossier", env->dossier_code);
            field_line("causation id", env->causation_id);
            field_line("trace id", env->trace_id);
            field_line("source", env->source);
            field_line("time", when);
            field_line("schema version", version);
            field_line("body", body);
        } else {
            printf("payload is not a motcua.v1.Envelope; %s%zu bytes:\n",
                   head < len ? "first " : "", head);
            ctl_hexdump(stdout, payload, head, "  ");
        }
    }
    mc_envelope_free(&env);
    PQfreemem(payload);
    PQclear(r);
    return CTL_OK;
}

/* ================================================================ replay */

/* Run one statement of the replay transaction; NULL (and rolled back) on failure. */
static PGresult *step(ctl_t *ctl, const char *sql, int n, const char *const *params)
{
    PGresult *r = ctl_query(ctl, sql, n, params);
    if (!r)
        PQclear(PQexec(ctl->conn, "ROLLBACK"));
    return r;
}

static int refuse(ctl_t *ctl, PGresult *r)
{
    PQclear(r);
    PQclear(PQexec(ctl->conn, "ROLLBACK"));
    return CTL_FAIL;
}

/* What a replay did, for the operator. */
typedef struct {
    char inbox_rows[16];
    char seq[24];
} replay_done_t;

/* Inside the open transaction, with dead letter `idtext` locked and its envelope
 * decoded: the three writes, then COMMIT. Rolls back on failure. */
static int replay_write(ctl_t *ctl, const char *svc, const char *idtext, const mc_envelope_t *env,
                        const char *type, replay_done_t *done)
{
    const char *const msg[] = {env->message_id, svc};

    /* 1. Forget that the service handled (dead-lettered) it, else the repeat is skipped. */
    char *sql = mc_sprintf("DELETE FROM \"%s\".inbox WHERE message_id = $1::uuid", svc);
    PGresult *r = step(ctl, sql, 1, msg);
    free(sql);
    if (!r)
        return CTL_FAIL;
    snprintf(done->inbox_rows, sizeof done->inbox_rows, "%s", PQcmdTuples(r));
    PQclear(r);

    /* 2. Queue the original bytes. A delivered copy from an earlier replay is removed
     * first (the outbox keeps one row per (id, destination)); a copy still waiting
     * means a replay is already under way. */
    sql = mc_sprintf("DELETE FROM \"%s\".outbox WHERE id = $1::uuid AND destination = $2 "
                     "AND delivered_at IS NOT NULL",
                     svc);
    r = step(ctl, sql, 2, msg);
    free(sql);
    if (!r)
        return CTL_FAIL;
    PQclear(r);
    sql = mc_sprintf("INSERT INTO \"%s\".outbox (id, destination, dossier_code, type, payload) "
                     "SELECT $2::uuid, $3, $4, $5, payload FROM \"%s\".dead_letters "
                     "WHERE id = $1::bigint ON CONFLICT (id, destination) DO NOTHING "
                     "RETURNING seq",
                     svc, svc);
    r = step(ctl, sql, 5,
             (const char *const[]){idtext, env->message_id, svc, env->dossier_code, type});
    free(sql);
    if (!r)
        return CTL_FAIL;
    if (PQntuples(r) == 0) {
        ctl_error("message %s is already waiting in %s.outbox: a replay is under way",
                  env->message_id, svc);
        return refuse(ctl, r);
    }
    snprintf(done->seq, sizeof done->seq, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);

    /* 3. This dead letter is dealt with; a new failure will be a new row. */
    sql =
        mc_sprintf("UPDATE \"%s\".dead_letters SET replayed_at = now() WHERE id = $1::bigint", svc);
    r = step(ctl, sql, 1, (const char *const[]){idtext});
    free(sql);
    if (!r)
        return CTL_FAIL;
    PQclear(r);
    r = step(ctl, "COMMIT", 0, NULL);
    if (!r)
        return CTL_FAIL;
    PQclear(r);
    return CTL_OK;
}

int ctl_dead_letters_replay(ctl_t *ctl)
{
    int rc = ctl_want_service(ctl->args[0]);
    long long id = ctl_parse_id(ctl->args[1]);
    if (rc == CTL_OK && !id) {
        ctl_error("dead letter id '%s': expected a positive number", ctl->args[1]);
        rc = CTL_USAGE;
    }
    if (rc != CTL_OK || (rc = ctl_connect(ctl)) != CTL_OK)
        return rc;
    const char *svc = ctl->args[0];
    int has = ctl_has_bus_tables(ctl, svc);
    if (has <= 0) {
        if (has == 0)
            ctl_error("%s has no bus tables (the service never started)", svc);
        return CTL_FAIL;
    }
    char idtext[24];
    snprintf(idtext, sizeof idtext, "%lld", id);
    PGresult *r = step(ctl, "BEGIN", 0, NULL);
    if (!r)
        return CTL_FAIL;
    PQclear(r);

    /* The row is locked so that two operators cannot replay it twice. */
    char *sql = mc_sprintf("SELECT " ISO("replayed_at") ", payload FROM \"%s\".dead_letters "
                                                        "WHERE id = $1::bigint FOR UPDATE",
                           svc);
    r = step(ctl, sql, 1, (const char *const[]){idtext});
    free(sql);
    if (!r)
        return CTL_FAIL;
    if (PQntuples(r) == 0) {
        ctl_error("no dead letter %lld in %s", id, svc);
        return refuse(ctl, r);
    }
    if (!PQgetisnull(r, 0, 0)) {
        ctl_error("dead letter %lld of %s was already replayed at %s; if it failed again it is "
                  "a newer dead letter (see: motcuactl dead-letters list %s)",
                  id, svc, PQgetvalue(r, 0, 0), svc);
        return refuse(ctl, r);
    }
    size_t len = 0;
    uint8_t *payload = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &len);
    mc_envelope_t *env = payload ? mc_envelope_decode(payload, len) : NULL;
    PQfreemem(payload);
    if (!env) {
        ctl_error("dead letter %lld of %s is not a decodable Envelope: it cannot be replayed "
                  "(inspect it with: motcuactl dead-letters show %s %lld)",
                  id, svc, svc, id);
        return refuse(ctl, r);
    }
    if (!mc_uuid_valid(env->message_id)) {
        ctl_error("dead letter %lld of %s: the envelope has no valid message id ('%s'): it "
                  "cannot be replayed",
                  id, svc, env->message_id);
        mc_envelope_free(&env);
        return refuse(ctl, r);
    }
    PQclear(r);

    const char *type = *env->type ? env->type : mc_body_name(env->body_case);
    if (!type)
        type = "Unknown";
    replay_done_t done;
    rc = replay_write(ctl, svc, idtext, env, type, &done);
    if (rc == CTL_OK) {
        printf("replayed dead letter %lld of %s: message %s (%s, dossier %s)\n", id, svc,
               env->message_id, type, *env->dossier_code ? env->dossier_code : "-");
        printf("  removed from %s.inbox: %s row%s\n", svc, done.inbox_rows,
               strcmp(done.inbox_rows, "1") == 0 ? "" : "s");
        printf("  queued in %s.outbox as seq %s, destination %s (its relay sends it to its own "
               "bus endpoint)\n",
               svc, done.seq, svc);
        printf("  dead letter %lld marked replayed\n", id);
    }
    mc_envelope_free(&env);
    return rc;
}
