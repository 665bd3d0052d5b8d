/* catalog.c: read, check and store the agency tree and the procedure catalog. */
#include "catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"

struct mc_catalog {
    json_t *agencies;   /* array */
    json_t *procedures; /* array */
    char version[160];
    char agencies_version[64];
    char procedures_version[64];
};

static int code_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= max &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_") == n;
}

static json_t *read_file(const char *dir, const char *name, const char *member, char *version,
                         size_t vlen, char *err, size_t errlen)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/catalog/%s", dir, name);
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "%s: line %d: %s", path, jerr.line, jerr.text);
        return NULL;
    }
    json_t *list = json_object_get(root, member);
    const char *v = json_string_value(json_object_get(root, "version"));
    if (!json_is_array(list) || !v || !*v) {
        snprintf(err, errlen, "%s: needs \"version\" (string) and \"%s\" (array)", path, member);
        json_decref(root);
        return NULL;
    }
    snprintf(version, vlen, "%s", v);
    json_incref(list);
    json_decref(root);
    return list;
}

static const char *str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static int check_agencies(json_t *agencies, char *err, size_t errlen)
{
    size_t i;
    json_t *a;
    json_array_foreach(agencies, i, a)
    {
        const char *code = str(a, "code"), *name = str(a, "name"), *kind = str(a, "kind");
        json_t *parent = json_object_get(a, "parent");
        if (!code_ok(code, 32) || !name || !*name || !kind || !*kind) {
            snprintf(err, errlen, "agencies.json: agency %zu (%s): code, name and kind required", i,
                     code ? code : "?");
            return MC_EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(str(json_array_get(agencies, j), "code"), code) == 0) {
                snprintf(err, errlen, "agencies.json: agency code %s appears twice", code);
                return MC_EINVAL;
            }
        if (parent && !json_is_null(parent) && !json_is_string(parent)) {
            snprintf(err, errlen, "agencies.json: agency %s: parent must be a code or null", code);
            return MC_EINVAL;
        }
    }
    /* Parents exist (checked after all codes are known). */
    json_array_foreach(agencies, i, a)
    {
        const char *parent = str(a, "parent");
        int found = !parent;
        for (size_t j = 0; parent && !found && j < json_array_size(agencies); j++)
            found = strcmp(str(json_array_get(agencies, j), "code"), parent) == 0;
        if (!found) {
            snprintf(err, errlen, "agencies.json: agency %s: parent %s is not an agency",
                     str(a, "code"), parent);
            return MC_EINVAL;
        }
    }
    return MC_OK;
}

static int agency_known(json_t *agencies, const char *code)
{
    size_t i;
    json_t *a;
    json_array_foreach(agencies, i, a) if (code && strcmp(str(a, "code"), code) == 0) return 1;
    return 0;
}

static int check_procedure(json_t *agencies, json_t *p, size_t i, char *err, size_t errlen)
{
    const char *code = str(p, "code");
#define BAD(...)                                                                                   \
    do {                                                                                           \
        char why_[256];                                                                            \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                                  \
        snprintf(err, errlen, "procedures.json: procedure %zu (%s): %s", i, code ? code : "?",     \
                 why_);                                                                            \
        return MC_EINVAL;                                                                          \
    } while (0)
    if (!code_ok(code, 32))
        BAD("code must be 1-32 letters, digits, . - _");
    if (!str(p, "name") || !*str(p, "name"))
        BAD("name required");
    if (!agency_known(agencies, str(p, "agency")))
        BAD("agency %s is not in agencies.json", str(p, "agency") ? str(p, "agency") : "(none)");
    json_int_t level = json_integer_value(json_object_get(p, "level"));
    if (level < 2 || level > 4)
        BAD("level must be 2, 3 or 4");
    json_t *days = json_object_get(p, "days");
    if (!json_is_number(days) || json_number_value(days) <= 0 || json_number_value(days) > 3650)
        BAD("days must be a positive number of working days");
    json_t *fee = json_object_get(p, "fee");
    if (!json_is_integer(fee) || json_integer_value(fee) < 0)
        BAD("fee must be a non-negative integer (VND)");
    const char *cutoff = str(p, "cutoff");
    int hh, mm;
    char extra;
    if (cutoff && (sscanf(cutoff, "%2d:%2d%c", &hh, &mm, &extra) != 2 || hh > 23 || mm > 59))
        BAD("cutoff must be HH:MM or null");
    json_t *docs = json_object_get(p, "documents"), *d;
    size_t k;
    if (!json_is_array(docs))
        BAD("documents must be an array");
    json_array_foreach(docs, k, d) if (!code_ok(str(d, "kind"), 64) || !str(d, "name"))
        BAD("document %zu needs kind and name", k);
    json_t *rm = json_object_get(p, "return_methods"), *m;
    int counter = 0;
    if (!json_is_array(rm))
        BAD("return_methods must be an array");
    json_array_foreach(rm, k, m)
    {
        const char *s = json_string_value(m);
        if (!s || (strcmp(s, "counter") && strcmp(s, "post") && strcmp(s, "online")))
            BAD("return_methods: counter, post or online");
        counter |= strcmp(s, "counter") == 0;
    }
    if (!counter)
        BAD("return_methods must include counter");
    json_t *steps = json_object_get(p, "steps"), *s;
    double sum = 0;
    if (!json_is_array(steps) || json_array_size(steps) == 0)
        BAD("steps must be a non-empty array");
    json_array_foreach(steps, k, s)
    {
        if (!str(s, "name") || !agency_known(agencies, str(s, "agency")))
            BAD("step %zu needs a name and a known agency", k);
        if (!json_is_number(json_object_get(s, "days")) ||
            json_number_value(json_object_get(s, "days")) < 0)
            BAD("step %zu: days must be a number >= 0", k);
        sum += json_number_value(json_object_get(s, "days"));
    }
    if (sum < json_number_value(days) - 0.001 || sum > json_number_value(days) + 0.001)
        BAD("the steps' days add up to %g, not %g", sum, json_number_value(days));
#undef BAD
    return MC_OK;
}

mc_catalog_t *mc_catalog_read(const char *data_dir, char *err, size_t errlen)
{
    mc_catalog_t *cat = mc_new(mc_catalog_t);
    cat->agencies = read_file(data_dir, "agencies.json", "agencies", cat->agencies_version,
                              sizeof cat->agencies_version, err, errlen);
    if (cat->agencies)
        cat->procedures =
            read_file(data_dir, "procedures.json", "procedures", cat->procedures_version,
                      sizeof cat->procedures_version, err, errlen);
    int ok =
        cat->agencies && cat->procedures && check_agencies(cat->agencies, err, errlen) == MC_OK;
    for (size_t i = 0; ok && i < json_array_size(cat->procedures); i++) {
        json_t *p = json_array_get(cat->procedures, i);
        ok = check_procedure(cat->agencies, p, i, err, errlen) == MC_OK;
        for (size_t j = 0; ok && j < i; j++)
            if (strcmp(str(json_array_get(cat->procedures, j), "code"), str(p, "code")) == 0) {
                snprintf(err, errlen, "procedures.json: procedure code %s appears twice",
                         str(p, "code"));
                ok = 0;
            }
    }
    if (!ok) {
        mc_catalog_destroy(&cat);
        return NULL;
    }
    snprintf(cat->version, sizeof cat->version, "agencies %s, procedures %s", cat->agencies_version,
             cat->procedures_version);
    return cat;
}

void mc_catalog_destroy(mc_catalog_t **pcat)
{
    if (!pcat || !*pcat)
        return;
    json_decref((*pcat)->agencies);
    json_decref((*pcat)->procedures);
    mc_free(pcat);
}

const char *mc_catalog_version(const mc_catalog_t *cat)
{
    return cat->version;
}

size_t mc_catalog_agency_count(const mc_catalog_t *cat)
{
    return json_array_size(cat->agencies);
}

size_t mc_catalog_procedure_count(const mc_catalog_t *cat)
{
    return json_array_size(cat->procedures);
}

static int run(PGconn *conn, const char *sql, int n, const char *const *params, char *err,
               size_t errlen)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(err, errlen, "storing the catalog: %s", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? MC_OK : MC_EDB;
}

int mc_catalog_store(PGconn *conn, const mc_catalog_t *cat, const char *schema, int with_procedures,
                     char *err, size_t errlen)
{
    char *agencies = json_dumps(cat->agencies, JSON_COMPACT);
    char *procedures = json_dumps(cat->procedures, JSON_COMPACT);
    char *sql_agencies = mc_sprintf(
        "INSERT INTO %s.agencies (code, name, kind, parent, external, version, retired_at)"
        " SELECT a->>'code', a->>'name', a->>'kind', a->>'parent',"
        "  coalesce((a->>'external')::boolean, false), $2, NULL"
        " FROM jsonb_array_elements($1::jsonb) a"
        " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,"
        "  parent = EXCLUDED.parent, external = EXCLUDED.external, version = EXCLUDED.version,"
        "  retired_at = NULL",
        schema);
    char *sql_agencies_retire = mc_sprintf(
        "UPDATE %s.agencies SET retired_at = now() WHERE retired_at IS NULL AND code NOT IN"
        " (SELECT a->>'code' FROM jsonb_array_elements($1::jsonb) a)",
        schema);
    /* search: folded (no diacritics, lower case) so "dang ky khai sinh" finds
     * "Đăng ký khai sinh". */
    char *sql_procedures = mc_sprintf(
        "INSERT INTO %s.procedures (code, name, field, agency_code, level, days, cutoff, fee,"
        "  documents, return_methods, steps, search, version, retired_at)"
        " SELECT p->>'code', p->>'name', coalesce(p->>'field', ''), p->>'agency',"
        "  (p->>'level')::int, (p->>'days')::numeric, p->>'cutoff', (p->>'fee')::bigint,"
        "  p->'documents', ARRAY(SELECT jsonb_array_elements_text(p->'return_methods')),"
        "  p->'steps',"
        "  lower(unaccent(p->>'code' || ' ' || (p->>'name') || ' ' || coalesce(p->>'field', ''))),"
        "  $2, NULL"
        " FROM jsonb_array_elements($1::jsonb) p"
        " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, field = EXCLUDED.field,"
        "  agency_code = EXCLUDED.agency_code, level = EXCLUDED.level, days = EXCLUDED.days,"
        "  cutoff = EXCLUDED.cutoff, fee = EXCLUDED.fee, documents = EXCLUDED.documents,"
        "  return_methods = EXCLUDED.return_methods, steps = EXCLUDED.steps,"
        "  search = EXCLUDED.search, version = EXCLUDED.version, retired_at = NULL",
        schema);
    char *sql_procedures_retire = mc_sprintf(
        "UPDATE %s.procedures SET retired_at = now() WHERE retired_at IS NULL AND code NOT IN"
        " (SELECT p->>'code' FROM jsonb_array_elements($1::jsonb) p)",
        schema);
    const char *pa[] = {agencies, cat->agencies_version};
    const char *pp[] = {procedures, cat->procedures_version};
    int rc = run(conn, "BEGIN", 0, NULL, err, errlen);
    if (rc == MC_OK)
        rc = run(conn, sql_agencies, 2, pa, err, errlen);
    if (rc == MC_OK)
        rc = run(conn, sql_agencies_retire, 1, pa, err, errlen);
    if (rc == MC_OK && with_procedures)
        rc = run(conn, sql_procedures, 2, pp, err, errlen);
    if (rc == MC_OK && with_procedures)
        rc = run(conn, sql_procedures_retire, 1, pp, err, errlen);
    if (rc == MC_OK)
        rc = run(conn, "COMMIT", 0, NULL, err, errlen);
    else
        PQclear(PQexec(conn, "ROLLBACK"));
    free(agencies);
    free(procedures);
    free(sql_agencies);
    free(sql_agencies_retire);
    free(sql_procedures);
    free(sql_procedures_retire);
    return rc;
}
