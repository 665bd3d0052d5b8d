/* migrate.c: apply embedded SQL migrations in order, each once, under an advisory lock.
 *
 * Each migration runs in its own transaction with the row that records it, so a crash
 * leaves either the migration applied and recorded or neither. */
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"

/* Replace every "@schema@" in sql with schema; the caller frees the result. */
static char *expand_schema(const char *sql, const char *schema)
{
    static const char mark[] = "@schema@";
    size_t n = 0, slen = strlen(schema);
    for (const char *p = sql; (p = strstr(p, mark)); p += sizeof mark - 1)
        n++;
    char *out = mc_alloc(strlen(sql) + n * slen + 1), *o = out;
    for (const char *p = sql;;) {
        const char *m = strstr(p, mark);
        size_t len = m ? (size_t)(m - p) : strlen(p);
        memcpy(o, p, len);
        o += len;
        if (!m)
            break;
        memcpy(o, schema, slen);
        o += slen;
        p = m + sizeof mark - 1;
    }
    *o = '\0';
    return out;
}

static int run(PGconn *conn, const char *sql, char *err, size_t errlen, const char *what)
{
    PGresult *r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(err, errlen, "%s: %s", what, PQresultErrorMessage(r));
    PQclear(r);
    return ok ? MC_OK : MC_EDB;
}

static int applied(PGconn *conn, const char *schema, const char *component, int version)
{
    char vbuf[16];
    snprintf(vbuf, sizeof vbuf, "%d", version);
    const char *params[] = {component, vbuf};
    char *sql = mc_sprintf("SELECT 1 FROM \"%s\".schema_migrations WHERE component = $1 AND "
                           "version = $2::int",
                           schema);
    PGresult *r = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
    int found = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0;
    PQclear(r);
    free(sql);
    return found;
}

int mc_migrate(PGconn *conn, const char *schema, const char *component,
               const mc_migration_t *migrations, int count, char *err, size_t errlen)
{
    /* The name is used unquoted ("@schema@", "<schema>.outbox", "<schema>_outbox"
     * channels, 63 bytes at most): a plain lower-case identifier, not too long. */
    size_t slen = strlen(schema);
    int valid = slen > 0 && slen <= 48 && !(schema[0] >= '0' && schema[0] <= '9');
    for (const char *p = schema; valid && *p; p++)
        valid = (*p >= 'a' && *p <= 'z') || *p == '_' || (*p >= '0' && *p <= '9');
    if (!valid) {
        snprintf(err, errlen,
                 "schema name '%s' must be 1 to 48 lower-case letters, digits or _, not "
                 "starting with a digit",
                 schema);
        return MC_EINVAL;
    }
    /* The bookkeeping table itself is created idempotently, outside any migration. */
    char *boot = mc_sprintf(
        "SELECT pg_advisory_lock(hashtext('motcua.migrate.%s'));"
        "CREATE SCHEMA IF NOT EXISTS \"%s\";"
        "CREATE TABLE IF NOT EXISTS \"%s\".schema_migrations ("
        " component text NOT NULL, version int NOT NULL, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))",
        schema, schema, schema);
    int rc = run(conn, boot, err, errlen, "preparing migrations");
    free(boot);
    int done = 0;
    for (int i = 0; rc == MC_OK && i < count; i++) {
        const mc_migration_t *m = &migrations[i];
        if (applied(conn, schema, component, m->version))
            continue;
        char *body = expand_schema(m->sql, schema);
        char *record = mc_sprintf("INSERT INTO \"%s\".schema_migrations (component, version, name) "
                                  "VALUES ('%s', %d, '%s')",
                                  schema, component, m->version, m->name);
        char what[160];
        snprintf(what, sizeof what, "migration %s/%s", component, m->name);
        rc = run(conn, "BEGIN", err, errlen, what);
        if (rc == MC_OK)
            rc = run(conn, body, err, errlen, what);
        if (rc == MC_OK)
            rc = run(conn, record, err, errlen, what);
        if (rc == MC_OK)
            rc = run(conn, "COMMIT", err, errlen, what);
        else
            PQclear(PQexec(conn, "ROLLBACK"));
        if (rc == MC_OK) {
            mc_info("migrate: applied %s.%s/%s", schema, component, m->name);
            done++;
        }
        free(body);
        free(record);
    }
    char *unlock = mc_sprintf("SELECT pg_advisory_unlock(hashtext('motcua.migrate.%s'))", schema);
    PQclear(PQexec(conn, unlock));
    free(unlock);
    return rc == MC_OK ? done : rc;
}

int mc_migrate_service(const char *db_url, const char *schema, const mc_migration_t *migrations,
                       int count, char *err, size_t errlen)
{
    PGconn *conn = PQconnectdb(db_url);
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to the database: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return MC_EUNAVAIL;
    }
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
    int rc = mc_migrate(conn, schema, "bus", mc_sql_common, mc_sql_common_count, err, errlen);
    if (rc >= 0) {
        int own = mc_migrate(conn, schema, schema, migrations, count, err, errlen);
        rc = own < 0 ? own : rc + own;
    }
    PQfinish(conn);
    return rc;
}
