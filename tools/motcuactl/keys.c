/* keys.c: `motcuactl keys create | list | revoke | demo`: the API keys of officers,
 * citizen portals, integrators and operators (common/auth.h).
 *
 * motcuactl is the only writer of keys.api_keys. A key's text is printed once, when
 * it is created, and never stored: the table keeps its SHA-256. `list` shows
 * everything but the key and its hash. Every command first brings the keys schema up
 * to date (mc_auth_migrate), so it works on a database no service has touched yet.
 *
 * `keys demo` gives a newcomer working keys for the demo province: one officer key per
 * agency of the catalog that works inside motcua (not `external`), named
 * officer-<agency code>, plus demo-integrator (integrator, citizen_portal) and
 * demo-operator (operator). They are written to a file (mode 0600) as
 *   [{"name", "agency", "scopes": [...], "key"}]
 * Idempotent: when the file already holds exactly the expected keys and each is still
 * valid in the database (present, not revoked, same name, agency and scopes), nothing
 * changes. Otherwise, in one transaction, the active keys bearing the demo names (those
 * the catalog calls for and those of the old file) are revoked and new ones created;
 * the file is written beside its final name and renamed over it only after the commit.
 * A crash in between leaves the old file, whose keys are then revoked: the next run
 * sees that and makes new ones. Keys with other names are never touched. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "ctl.h"
#include "error.h"

#define DEFAULT_AGENCIES "deploy/data/catalog/agencies.json"
#define DEFAULT_OUT      "var/demo-keys.json"

#define ISO(col)   "to_json(" col ")#>>'{}'"
#define SHORT(col) "to_char(" col ", 'YYYY-MM-DD HH24:MI:SSOF')"

/* ================================================================ shared */

/* Connect, then create or update the keys schema. */
static int keys_connect(ctl_t *ctl)
{
    int rc = ctl_connect(ctl);
    if (rc != CTL_OK)
        return rc;
    char err[512];
    if (mc_auth_migrate(ctl->conn, err, sizeof err) < 0) {
        ctl_error("cannot prepare the keys schema: %s", err);
        return CTL_FAIL;
    }
    return CTL_OK;
}

/* A key name: what logs show for the key's requests. */
static int name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 63)
        return 0;
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* An agency code as the catalog allows them (docs/catalog.md). */
static int agency_valid(const char *code)
{
    size_t n = strlen(code);
    if (n == 0 || n > 32)
        return 0;
    for (const char *p = code; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-'))
            return 0;
    return 1;
}

/* Scopes as a PostgreSQL text[] literal: "{officer,operator}" (names need no quotes). */
static void scopes_literal(unsigned scopes, char *out, size_t outlen)
{
    char list[80];
    mc_auth_scopes_format(scopes, list, sizeof list);
    snprintf(out, outlen, "{%s}", list);
}

static json_t *scopes_json(unsigned scopes)
{
    json_t *a = json_array();
    for (unsigned bit = 1; bit <= MC_SCOPE_ALL; bit <<= 1)
        if (scopes & bit)
            json_array_append_new(a, json_string(mc_auth_scope_name(bit)));
    return a;
}

/* A database cell as JSON text, SQL NULL as null. */
static json_t *cell(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null() : json_string(PQgetvalue(r, row, col));
}

static void hash_hex(const char *key, char out[2 * MC_AUTH_HASH_LEN + 1])
{
    uint8_t hash[MC_AUTH_HASH_LEN];
    mc_auth_key_hash(key, hash);
    for (int i = 0; i < MC_AUTH_HASH_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", hash[i]);
}

/* Insert a new key; its text into key, its id and creation time into the result
 * (columns id, created_at short, created_at ISO). NULL after printing why. */
static PGresult *key_insert(ctl_t *ctl, const char *name, const char *agency, unsigned scopes,
                            char key[MC_AUTH_KEY_LEN + 1])
{
    char literal[96], hex[2 * MC_AUTH_HASH_LEN + 1];
    scopes_literal(scopes, literal, sizeof literal);
    mc_auth_key_generate(key);
    hash_hex(key, hex);
    const char *const params[] = {name, agency, literal, hex};
    return ctl_query(ctl,
                     "INSERT INTO keys.api_keys (name, agency_code, scopes, hash) "
                     "VALUES ($1, $2, $3::text[], decode($4, 'hex')) "
                     "RETURNING id, " SHORT("created_at") ", " ISO("created_at"),
                     4, params);
}

/* ================================================================ create */

/* Check the options of `keys create`; CTL_OK or CTL_USAGE after saying why. */
static int create_args(const ctl_t *ctl, unsigned *scopes)
{
    if (!ctl->key_name || !ctl->key_scopes) {
        ctl_error("keys create needs --name and --scopes");
        return CTL_USAGE;
    }
    if (!name_valid(ctl->key_name)) {
        ctl_error("--name: 1 to 63 bytes without control characters");
        return CTL_USAGE;
    }
    char err[160];
    if (mc_auth_scopes_parse(ctl->key_scopes, scopes, err, sizeof err) != MC_OK) {
        ctl_error("--scopes: %s", err);
        return CTL_USAGE;
    }
    if ((*scopes & MC_SCOPE_OFFICER) && !ctl->key_agency) {
        ctl_error("an officer key needs --agency CODE: officers act for one agency");
        return CTL_USAGE;
    }
    if (!(*scopes & MC_SCOPE_OFFICER) && ctl->key_agency) {
        ctl_error("--agency only goes with the officer scope");
        return CTL_USAGE;
    }
    if (ctl->key_agency && !agency_valid(ctl->key_agency)) {
        ctl_error("--agency %s: an agency code is 1 to 32 letters, digits, '.' or '-'",
                  ctl->key_agency);
        return CTL_USAGE;
    }
    return CTL_OK;
}

int ctl_keys_create(ctl_t *ctl)
{
    unsigned scopes = 0;
    int rc = create_args(ctl, &scopes);
    if (rc != CTL_OK || (rc = keys_connect(ctl)) != CTL_OK)
        return rc;
    char key[MC_AUTH_KEY_LEN + 1];
    PGresult *r = key_insert(ctl, ctl->key_name, ctl->key_agency, scopes, key);
    if (!r)
        return CTL_FAIL;
    long long id = atoll(PQgetvalue(r, 0, 0));
    if (ctl->json) {
        json_t *doc = json_pack("{s:I, s:s, s:s?, s:o, s:s, s:s}", "id", (json_int_t)id, "name",
                                ctl->key_name, "agency", ctl->key_agency, "scopes",
                                scopes_json(scopes), "key", key, "created_at", PQgetvalue(r, 0, 2));
        ctl_json_print(&doc);
    } else {
        char list[80];
        mc_auth_scopes_format(scopes, list, sizeof list);
        printf("key %lld created: name %s, scopes %s%s%s\n\n    %s\n\n"
               "Store it now: it is shown only this once (motcua keeps only its SHA-256).\n",
               id, ctl->key_name, list, ctl->key_agency ? ", agency " : "",
               ctl->key_agency ? ctl->key_agency : "", key);
    }
    PQclear(r);
    return CTL_OK;
}

/* ================================================================ list */

int ctl_keys_list(ctl_t *ctl)
{
    int rc = keys_connect(ctl);
    if (rc != CTL_OK)
        return rc;
    PGresult *r = ctl_query(
        ctl,
        "SELECT id, name, agency_code, array_to_string(scopes, ','), " SHORT("created_at") ", " ISO(
            "created_at") ", " SHORT("revoked_at") ", " ISO("revoked_at") " "
                                                                          "FROM keys.api_keys "
                                                                          "ORDER BY id",
        0, NULL);
    if (!r)
        return CTL_FAIL;
    int rows = PQntuples(r);
    if (ctl->json) {
        json_t *list = json_array();
        for (int i = 0; i < rows; i++) {
            unsigned scopes = 0;
            char err[160];
            if (mc_auth_scopes_parse(PQgetvalue(r, i, 3), &scopes, err, sizeof err) != MC_OK)
                scopes = 0; /* the table's CHECK makes this impossible */
            json_array_append_new(list, json_pack("{s:I, s:s, s:o, s:o, s:o, s:o}", "id",
                                                  (json_int_t)atoll(PQgetvalue(r, i, 0)), "name",
                                                  PQgetvalue(r, i, 1), "agency", cell(r, i, 2),
                                                  "scopes", scopes_json(scopes), "created_at",
                                                  cell(r, i, 5), "revoked_at", cell(r, i, 7)));
        }
        json_t *doc = json_pack("{s:o}", "keys", list);
        ctl_json_print(&doc);
    } else if (rows == 0) {
        printf("no API keys (create one with: motcuactl keys create --name NAME --scopes ...)\n");
    } else {
        ctl_table_t *t = ctl_table_new(
            6, (const char *const[]){"ID", "NAME", "AGENCY", "SCOPES", "CREATED", "REVOKED"},
            1u << 0);
        for (int i = 0; i < rows; i++)
            ctl_table_add(t,
                          (const char *const[]){PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                                                PQgetisnull(r, i, 2) ? "-" : PQgetvalue(r, i, 2),
                                                PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
                                                PQgetisnull(r, i, 6) ? "-" : PQgetvalue(r, i, 6)});
        ctl_table_print(t, stdout, "");
        ctl_table_destroy(&t);
    }
    PQclear(r);
    return CTL_OK;
}

/* ================================================================ revoke */

int ctl_keys_revoke(ctl_t *ctl)
{
    long long id = ctl_parse_id(ctl->args[0]);
    if (!id) {
        ctl_error("'%s' is not a key id (a positive number; see motcuactl keys list)",
                  ctl->args[0]);
        return CTL_USAGE;
    }
    int rc = keys_connect(ctl);
    if (rc != CTL_OK)
        return rc;
    char idtext[24];
    snprintf(idtext, sizeof idtext, "%lld", id);
    const char *const params[] = {idtext};
    /* One statement: the key as it was before, and whether this call revoked it. */
    PGresult *r =
        ctl_query(ctl,
                  "WITH old AS (SELECT id, name, revoked_at FROM keys.api_keys "
                  "WHERE id = $1::bigint FOR UPDATE), "
                  "upd AS (UPDATE keys.api_keys k SET revoked_at = now() FROM old "
                  "WHERE k.id = old.id AND old.revoked_at IS NULL RETURNING k.id) "
                  "SELECT old.name, " SHORT("old.revoked_at") ", "
                                                              "(SELECT count(*) FROM upd) FROM old",
                  1, params);
    if (!r)
        return CTL_FAIL;
    if (PQntuples(r) == 0) {
        ctl_error("no key %lld (see motcuactl keys list)", id);
        PQclear(r);
        return CTL_FAIL;
    }
    if (strcmp(PQgetvalue(r, 0, 2), "1") == 0)
        printf("revoked key %lld (%s); services refuse it within %d s (they cache keys)\n", id,
               PQgetvalue(r, 0, 0), MC_AUTH_CACHE_MS / 1000);
    else
        printf("key %lld (%s) was already revoked at %s\n", id, PQgetvalue(r, 0, 0),
               PQgetvalue(r, 0, 1));
    PQclear(r);
    return CTL_OK;
}

/* ================================================================ demo */

typedef struct {
    char name[64];
    char agency[40]; /* "" for none */
    unsigned scopes;
    char key[MC_AUTH_KEY_LEN + 1];
} demo_key_t;

/* The demo keys the catalog calls for, into *keys (the caller frees it). CTL_OK, or
 * CTL_FAIL after saying what is wrong with the file. */
static int demo_expected(const char *path, demo_key_t **keys, size_t *n)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc) {
        ctl_error("%s: %s", path, jerr.text);
        return CTL_FAIL;
    }
    json_t *agencies = json_object_get(doc, "agencies");
    if (!json_is_array(agencies)) {
        ctl_error("%s: expected an object with an \"agencies\" array", path);
        json_decref(doc);
        return CTL_FAIL;
    }
    demo_key_t *k = mc_alloc((json_array_size(agencies) + 2) * sizeof *k);
    size_t count = 0, i;
    json_t *a;
    json_array_foreach(agencies, i, a)
    {
        const char *code = json_string_value(json_object_get(a, "code"));
        json_t *external = json_object_get(a, "external");
        if (!code || !agency_valid(code) || !json_is_boolean(external)) {
            ctl_error("%s: agency %zu needs a \"code\" (letters, digits, '.', '-'; at most 32) "
                      "and a boolean \"external\"",
                      path, i + 1);
            free(k);
            json_decref(doc);
            return CTL_FAIL;
        }
        if (json_is_true(external))
            continue; /* it works in its own system: a handoff, not an officer queue */
        snprintf(k[count].name, sizeof k[count].name, "officer-%s", code);
        snprintf(k[count].agency, sizeof k[count].agency, "%s", code);
        k[count].scopes = MC_SCOPE_OFFICER;
        count++;
    }
    json_decref(doc);
    snprintf(k[count].name, sizeof k[count].name, "demo-integrator");
    k[count++].scopes = MC_SCOPE_INTEGRATOR | MC_SCOPE_CITIZEN;
    snprintf(k[count].name, sizeof k[count].name, "demo-operator");
    k[count++].scopes = MC_SCOPE_OPERATOR;
    *keys = k;
    *n = count;
    return CTL_OK;
}

/* Take the keys of an existing file if it lists exactly the expected keys (same names,
 * agencies and scopes, well-formed keys): 1, with each key in want[].key; else 0. */
static int demo_file_matches(const char *path, demo_key_t *want, size_t n)
{
    json_t *doc = json_load_file(path, 0, NULL);
    int ok = json_is_array(doc) && json_array_size(doc) == n;
    for (size_t i = 0; ok && i < n; i++)
        want[i].key[0] = '\0';
    size_t i;
    json_t *e;
    json_array_foreach(ok ? doc : NULL, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        json_t *agency = json_object_get(e, "agency");
        const char *key = json_string_value(json_object_get(e, "key"));
        json_t *scopes = json_object_get(e, "scopes");
        demo_key_t *w = NULL;
        for (size_t j = 0; name && j < n && !w; j++)
            if (strcmp(want[j].name, name) == 0 && !want[j].key[0])
                w = &want[j];
        unsigned bits = 0;
        size_t s;
        json_t *scope;
        json_array_foreach(json_is_array(scopes) ? scopes : NULL, s, scope)
        {
            const char *sname = json_string_value(scope);
            for (unsigned bit = 1; sname && bit <= MC_SCOPE_ALL; bit <<= 1)
                if (strcmp(mc_auth_scope_name(bit), sname) == 0)
                    bits |= bit;
        }
        const char *agency_text = json_is_null(agency) ? "" : json_string_value(agency);
        if (!w || !key || !mc_auth_key_valid(key) || !agency_text ||
            strcmp(agency_text, w->agency) != 0 || bits != w->scopes ||
            json_array_size(scopes) != (size_t)__builtin_popcount(bits)) {
            ok = 0;
            break;
        }
        memcpy(w->key, key, MC_AUTH_KEY_LEN + 1);
    }
    json_decref(doc);
    return ok;
}

/* 1 if every key of want[] is in the database, not revoked, with its name, agency and
 * scopes; 0 if not; -1 on a database error (printed). */
static int demo_keys_valid(ctl_t *ctl, const demo_key_t *want, size_t n)
{
    /* The hashes as a text[] literal of hex strings: {ab..,cd..}. */
    char *list = mc_alloc(n * (2 * MC_AUTH_HASH_LEN + 1) + 3), *p = list;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        hash_hex(want[i].key, p);
        p += 2 * MC_AUTH_HASH_LEN;
    }
    *p++ = '}';
    *p = '\0';
    const char *const params[] = {list};
    PGresult *r = ctl_query(ctl,
                            "SELECT encode(hash, 'hex'), name, coalesce(agency_code, ''), "
                            "array_to_string(scopes, ',') FROM keys.api_keys "
                            "WHERE revoked_at IS NULL AND hash = ANY (ARRAY(SELECT decode(h, "
                            "'hex') FROM unnest($1::text[]) h))",
                            1, params);
    free(list);
    if (!r)
        return -1;
    size_t good = 0;
    for (size_t i = 0; i < n; i++) {
        char hex[2 * MC_AUTH_HASH_LEN + 1];
        hash_hex(want[i].key, hex);
        for (int row = 0; row < PQntuples(r); row++) {
            unsigned scopes;
            char err[160];
            if (strcmp(PQgetvalue(r, row, 0), hex) != 0)
                continue;
            if (strcmp(PQgetvalue(r, row, 1), want[i].name) == 0 &&
                strcmp(PQgetvalue(r, row, 2), want[i].agency) == 0 &&
                mc_auth_scopes_parse(PQgetvalue(r, row, 3), &scopes, err, sizeof err) == MC_OK &&
                scopes == want[i].scopes)
                good++;
            break;
        }
    }
    PQclear(r);
    return good == n;
}

/* The names whose keys a renewal revokes: those of want[], and those of the old file
 * (a smaller catalog leaves no officer key of a vanished agency behind), as a text[]
 * literal, each quoted: {"officer-000.00.10.H99",...}. */
static char *names_literal(const demo_key_t *want, size_t n, const char *old_path)
{
    json_t *names = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(names, json_string(want[i].name));
    json_t *old = json_load_file(old_path, 0, NULL), *e;
    size_t i;
    json_array_foreach(json_is_array(old) ? old : NULL, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        if (name)
            json_array_append_new(names, json_string(name));
    }
    json_decref(old);
    size_t cap = 3;
    json_array_foreach(names, i, e) cap += 2 * json_string_length(e) + 3;
    char *out = mc_alloc(cap), *p = out;
    *p++ = '{';
    json_array_foreach(names, i, e)
    {
        if (i)
            *p++ = ',';
        *p++ = '"';
        for (const char *c = json_string_value(e); *c; c++) {
            if (*c == '"' || *c == '\\')
                *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    json_decref(names);
    return out;
}

/* Write the key file to tmp (mode 0600). CTL_OK or CTL_FAIL after saying why. */
static int demo_write(const char *tmp, const demo_key_t *keys, size_t n)
{
    json_t *doc = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(doc,
                              json_pack("{s:s, s:s?, s:o, s:s}", "name", keys[i].name, "agency",
                                        keys[i].agency[0] ? keys[i].agency : NULL, "scopes",
                                        scopes_json(keys[i].scopes), "key", keys[i].key));
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    int ok = f && json_dumpf(doc, f, JSON_INDENT(2)) == 0 && fputc('\n', f) != EOF &&
             fflush(f) == 0 && fsync(fd) == 0;
    int saved = errno;
    if (f)
        ok = fclose(f) == 0 && ok;
    else if (fd >= 0)
        close(fd);
    json_decref(doc);
    if (!ok) {
        ctl_error("cannot write %s: %s", tmp, strerror(saved ? saved : errno));
        unlink(tmp);
        return CTL_FAIL;
    }
    return CTL_OK;
}

/* Revoke the demo names' active keys and create new ones, in one transaction; the file
 * replaces `out` after the commit. *revoked: how many old keys were revoked. */
static int demo_renew(ctl_t *ctl, demo_key_t *keys, size_t n, const char *out, int *revoked)
{
    PGresult *r = ctl_query(ctl, "BEGIN", 0, NULL);
    if (!r)
        return CTL_FAIL;
    PQclear(r);
    /* Two runs at once would otherwise both revoke and both create. */
    r = ctl_query(ctl, "SELECT pg_advisory_xact_lock(hashtext('motcua.keys.demo'))", 0, NULL);
    char *names = names_literal(keys, n, out);
    if (r) {
        PQclear(r);
        r = ctl_query(ctl,
                      "UPDATE keys.api_keys SET revoked_at = now() "
                      "WHERE revoked_at IS NULL AND name = ANY ($1::text[])",
                      1, (const char *const[]){names});
    }
    free(names);
    int rc = r ? CTL_OK : CTL_FAIL;
    if (r) {
        *revoked = atoi(PQcmdTuples(r));
        PQclear(r);
    }
    for (size_t i = 0; rc == CTL_OK && i < n; i++) {
        r = key_insert(ctl, keys[i].name, keys[i].agency[0] ? keys[i].agency : NULL, keys[i].scopes,
                       keys[i].key);
        rc = r ? CTL_OK : CTL_FAIL;
        PQclear(r);
    }
    char *tmp = mc_sprintf("%s.tmp", out);
    if (rc == CTL_OK) {
        /* A fresh checkout may not have var/ yet: make the last directory, not a tree. */
        char *dir = mc_strdup(out), *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = '\0';
            if (mkdir(dir, 0755) != 0 && errno != EEXIST)
                ctl_error("warning: cannot create %s: %s", dir, strerror(errno));
        }
        free(dir);
        rc = demo_write(tmp, keys, n);
    }
    if (rc == CTL_OK) {
        r = ctl_query(ctl, "COMMIT", 0, NULL);
        rc = r ? CTL_OK : CTL_FAIL;
        PQclear(r);
    } else {
        PQclear(PQexec(ctl->conn, "ROLLBACK"));
    }
    if (rc == CTL_OK && rename(tmp, out) != 0) {
        ctl_error("cannot rename %s to %s: %s (the new keys are in %s)", tmp, out, strerror(errno),
                  tmp);
        rc = CTL_FAIL;
    } else if (rc != CTL_OK) {
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

int ctl_keys_demo(ctl_t *ctl)
{
    const char *agencies = ctl->agencies_path ? ctl->agencies_path : DEFAULT_AGENCIES;
    const char *out = ctl->out_path ? ctl->out_path : DEFAULT_OUT;
    if (!*agencies || !*out) {
        ctl_error("--agencies and --out need a file name");
        return CTL_USAGE;
    }
    demo_key_t *keys = NULL;
    size_t n = 0;
    int rc = demo_expected(agencies, &keys, &n);
    if (rc == CTL_OK)
        rc = keys_connect(ctl);
    int valid = 0;
    if (rc == CTL_OK && access(out, F_OK) == 0 && demo_file_matches(out, keys, n)) {
        valid = demo_keys_valid(ctl, keys, n);
        if (valid < 0)
            rc = CTL_FAIL;
    }
    if (rc == CTL_OK && valid) {
        /* Kept as is; only make sure that nobody else can read it. */
        if (chmod(out, 0600) != 0)
            ctl_error("warning: cannot chmod 0600 %s: %s", out, strerror(errno));
        printf("demo keys in %s are valid: kept (%zu keys)\n", out, n);
    } else if (rc == CTL_OK) {
        int revoked = 0;
        rc = demo_renew(ctl, keys, n, out, &revoked);
        if (rc == CTL_OK)
            printf("demo keys written to %s: %zu keys (%zu officers, an integrator, an "
                   "operator)%s\n",
                   out, n, n - 2, revoked ? "; the previous demo keys are revoked" : "");
    }
    if (keys)
        explicit_bzero(keys, n * sizeof *keys);
    free(keys);
    return rc;
}
