/* auth.c: API keys: their text, hash and scopes; the keys schema; and the check that
 * HTTP handlers wrap their work in.
 *
 * Design. A request's key is hashed (SHA-256, libsodium) and looked up by that hash
 * in keys.api_keys, so no secret is ever compared byte by byte in C: a timing
 * difference could only tell an attacker about the hash of what they sent, which
 * they know already. The table is indexed by the hash (UNIQUE), one lookup per miss.
 *
 * Cache and coalescing. Verified keys live in a small hash table keyed by the key's
 * hash (the hash is uniformly random, so its first bytes are the bucket) for
 * MC_AUTH_CACHE_MS. A miss starts one lookup (mc_db_exec) and parks the request on
 * it; other requests with the same key that arrive meanwhile join the same lookup,
 * so a burst costs one query. Failures (unknown, revoked, database error) are not
 * cached. The table holds at most MAX_ENTRIES keys: when full, expired entries are
 * swept, and if it is still full the new key is simply not cached.
 *
 * Lifetime. A lookup outlives the checker if need be: mc_auth_destroy detaches the
 * lookups in flight (lookup->auth = NULL) and frees the cache; when the pool answers
 * (MC_ECLOSED at the latest, when it is destroyed) the detached lookup answers its
 * requests 503 and frees itself. Every parked request gets exactly one reply.
 *
 * Threads: the loop thread of the pool only. Key text never reaches a log line. */
#include "auth.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "error.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"

#define KEY_PREFIX       "mck_"
#define KEY_RANDOM_BYTES 32
#define BUCKETS          1024
#define MAX_ENTRIES      4096

/* ================================================================ the keys schema */

/* The schema "keys" is written only by motcuactl (create, revoke, demo) and read by
 * every service. Kept here, beside its only reader and writer's shared code, rather
 * than as a file of common/sql, whose migrations go into every service's own schema. */
static const mc_migration_t migrations[] = {
    {1, "001_api_keys",
     "-- API keys (officers, citizen portals, integrators, operators), stored as the\n"
     "-- SHA-256 of the key text only. motcuactl writes this table; services read it.\n"
     "CREATE TABLE @schema@.api_keys (\n"
     "    id          bigserial PRIMARY KEY,\n"
     "    name        text NOT NULL\n"
     "                CHECK (name <> '' AND octet_length(name) <= 63),\n"
     "    agency_code text NULL\n"
     "                CHECK (agency_code <> '' AND octet_length(agency_code) <= 32),\n"
     "    scopes      text[] NOT NULL\n"
     "                CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['citizen_portal',\n"
     "                       'officer', 'integrator', 'operator']::text[]),\n"
     "    hash        bytea UNIQUE NOT NULL CHECK (length(hash) = 32),\n"
     "    created_at  timestamptz NOT NULL DEFAULT now(),\n"
     "    revoked_at  timestamptz,\n"
     "    -- An officer acts for one agency; no other key has one.\n"
     "    CHECK ((agency_code IS NOT NULL) = ('officer' = ANY (scopes)))\n"
     ");\n"
     "CREATE INDEX api_keys_name ON @schema@.api_keys (name);\n"},
};

int mc_auth_migrate(PGconn *conn, char *err, size_t errlen)
{
    return mc_migrate(conn, "keys", "keys", migrations, (int)MC_COUNT(migrations), err, errlen);
}

int mc_auth_migrate_url(const char *db_url, char *err, size_t errlen)
{
    PGconn *conn = PQconnectdb(db_url);
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to the database: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return MC_EUNAVAIL;
    }
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
    int rc = mc_auth_migrate(conn, err, errlen);
    PQfinish(conn);
    return rc;
}

/* ================================================================ scopes */

static const struct {
    unsigned bit;
    const char *name;
} scope_names[] = {
    {MC_SCOPE_CITIZEN, "citizen_portal"},
    {MC_SCOPE_OFFICER, "officer"},
    {MC_SCOPE_INTEGRATOR, "integrator"},
    {MC_SCOPE_OPERATOR, "operator"},
};

const char *mc_auth_scope_name(unsigned scope)
{
    for (size_t i = 0; i < MC_COUNT(scope_names); i++)
        if (scope_names[i].bit == scope)
            return scope_names[i].name;
    return NULL;
}

int mc_auth_scopes_parse(const char *list, unsigned *scopes, char *err, size_t errlen)
{
    *scopes = 0;
    size_t len = strlen(list);
    if (len >= 2 && list[0] == '{' && list[len - 1] == '}') {
        list++;
        len -= 2;
    }
    const char *p = list, *end = list + len;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t n = comma ? (size_t)(comma - p) : (size_t)(end - p);
        unsigned bit = 0;
        for (size_t i = 0; i < MC_COUNT(scope_names) && !bit; i++)
            if (strlen(scope_names[i].name) == n && memcmp(scope_names[i].name, p, n) == 0)
                bit = scope_names[i].bit;
        if (!bit || (*scopes & bit)) {
            snprintf(err, errlen,
                     "%s scope '%.*s' (scopes are citizen_portal, officer, "
                     "integrator, operator)",
                     n == 0 ? "empty"
                     : bit  ? "repeated"
                            : "unknown",
                     (int)(n > 40 ? 40 : n), p);
            *scopes = 0;
            return MC_EINVAL;
        }
        *scopes |= bit;
        if (!comma)
            return MC_OK;
        p = comma + 1;
    }
}

void mc_auth_scopes_format(unsigned scopes, char *out, size_t outlen)
{
    assert(outlen > 0);
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < MC_COUNT(scope_names); i++) {
        if (!(scopes & scope_names[i].bit))
            continue;
        int n = snprintf(out + used, outlen - used, "%s%s", used ? "," : "", scope_names[i].name);
        if (n < 0 || (size_t)n >= outlen - used)
            return; /* truncated, still terminated */
        used += (size_t)n;
    }
}

/* ================================================================ key text */

void mc_auth_key_generate(char out[MC_AUTH_KEY_LEN + 1])
{
    if (sodium_init() < 0) {
        fprintf(stderr, "%s:%d: libsodium cannot be initialised\n", __FILE__, __LINE__);
        abort();
    }
    unsigned char random[KEY_RANDOM_BYTES];
    randombytes_buf(random, sizeof random);
    memcpy(out, KEY_PREFIX, sizeof KEY_PREFIX - 1);
    sodium_bin2hex(out + sizeof KEY_PREFIX - 1, MC_AUTH_KEY_LEN + 1 - (sizeof KEY_PREFIX - 1),
                   random, sizeof random);
    sodium_memzero(random, sizeof random);
}

int mc_auth_key_valid(const char *text)
{
    if (strncmp(text, KEY_PREFIX, sizeof KEY_PREFIX - 1) != 0)
        return 0;
    const char *hex = text + sizeof KEY_PREFIX - 1;
    for (int i = 0; i < 2 * KEY_RANDOM_BYTES; i++)
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
            return 0;
    return hex[2 * KEY_RANDOM_BYTES] == '\0';
}

void mc_auth_key_hash(const char *key, uint8_t out[MC_AUTH_HASH_LEN])
{
    crypto_hash_sha256(out, (const unsigned char *)key, strlen(key));
}

/* ================================================================ the checker */

typedef struct entry {
    uint8_t hash[MC_AUTH_HASH_LEN];
    mc_principal_t who;
    uint64_t expires_ms;
    struct entry *next;
} entry_t;

/* A request parked on a lookup. */
typedef struct waiter {
    mc_http_req_t *req;
    unsigned any_of;
    mc_auth_fn fn;
    void *arg;
    struct waiter *next;
} waiter_t;

typedef struct lookup {
    mc_auth_t *auth; /* NULL once the checker is destroyed */
    uint8_t hash[MC_AUTH_HASH_LEN];
    waiter_t *waiters, **tail;
    struct lookup *next; /* in auth->lookups */
} lookup_t;

struct mc_auth {
    mc_db_t *db;
    entry_t *buckets[BUCKETS];
    size_t entries;
    lookup_t *lookups;
    uint64_t nlookups;
};

static const char lookup_sql[] =
    "SELECT id, name, coalesce(agency_code, ''), array_to_string(scopes, ','), "
    "revoked_at IS NOT NULL FROM keys.api_keys WHERE hash = $1";

mc_auth_t *mc_auth_new(mc_db_t *db)
{
    assert(db);
    if (sodium_init() < 0)
        return NULL;
    mc_auth_t *auth = mc_new(mc_auth_t);
    auth->db = db;
    return auth;
}

void mc_auth_destroy(mc_auth_t **pauth)
{
    if (!pauth || !*pauth)
        return;
    mc_auth_t *auth = *pauth;
    *pauth = NULL;
    for (lookup_t *l = auth->lookups; l; l = l->next)
        l->auth = NULL;
    for (size_t b = 0; b < BUCKETS; b++)
        for (entry_t *e = auth->buckets[b], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(auth);
}

uint64_t mc_auth_lookups(const mc_auth_t *auth)
{
    return auth->nlookups;
}

/* ---------------------------------------------------------------- cache */

static size_t bucket_of(const uint8_t *hash)
{
    return ((size_t)hash[0] | (size_t)hash[1] << 8) % BUCKETS;
}

/* The cached principal of a hash, dropping it if it has expired. */
static const entry_t *cache_get(mc_auth_t *auth, const uint8_t *hash, uint64_t now)
{
    for (entry_t **pe = &auth->buckets[bucket_of(hash)]; *pe; pe = &(*pe)->next) {
        entry_t *e = *pe;
        if (memcmp(e->hash, hash, MC_AUTH_HASH_LEN) != 0)
            continue;
        if (now < e->expires_ms)
            return e;
        *pe = e->next;
        free(e);
        auth->entries--;
        return NULL;
    }
    return NULL;
}

static void cache_sweep(mc_auth_t *auth, uint64_t now)
{
    for (size_t b = 0; b < BUCKETS; b++)
        for (entry_t **pe = &auth->buckets[b]; *pe;) {
            entry_t *e = *pe;
            if (now < e->expires_ms) {
                pe = &e->next;
                continue;
            }
            *pe = e->next;
            free(e);
            auth->entries--;
        }
}

static void cache_put(mc_auth_t *auth, const uint8_t *hash, const mc_principal_t *who)
{
    uint64_t now = mc_now_ms();
    if (cache_get(auth, hash, now))
        return; /* cannot happen while lookups are coalesced; harmless anyway */
    if (auth->entries >= MAX_ENTRIES)
        cache_sweep(auth, now);
    if (auth->entries >= MAX_ENTRIES)
        return;
    entry_t *e = mc_new(entry_t);
    memcpy(e->hash, hash, MC_AUTH_HASH_LEN);
    e->who = *who;
    e->expires_ms = now + MC_AUTH_CACHE_MS;
    size_t b = bucket_of(hash);
    e->next = auth->buckets[b];
    auth->buckets[b] = e;
    auth->entries++;
}

/* ---------------------------------------------------------------- answers */

static void count(const char *result)
{
    char labels[48];
    snprintf(labels, sizeof labels, "result=\"%s\"", result);
    mc_counter_inc(mc_counter("motcua_auth_checks_total",
                              "API key checks of HTTP requests, by result.", labels));
}

static void unauthorized(mc_http_req_t *req, const char *www, const char *message)
{
    count("unauthorized");
    mc_http_set_header(req, "WWW-Authenticate", www);
    mc_http_reply_error(req, 401, "unauthorized", message, NULL);
}

/* Call the continuation if the principal has one of the scopes, else 403. */
static void admit(mc_http_req_t *req, const mc_principal_t *who, unsigned any_of, mc_auth_fn fn,
                  void *arg)
{
    if (any_of == 0 || (who->scopes & any_of)) {
        count("ok");
        fn(req, who, arg);
        return;
    }
    char needed[80], has[80], www[160], message[256];
    mc_auth_scopes_format(any_of, needed, sizeof needed);
    mc_auth_scopes_format(who->scopes, has, sizeof has);
    mc_info("auth: key %lld (%s) with scopes %s refused %s %s: needs one of %s", who->id, who->name,
            has, mc_http_method(req), mc_http_path(req), needed);
    snprintf(message, sizeof message, "this API key (%s) lacks the scope needed here: one of %s",
             has, needed);
    /* RFC 6750 names scopes separated by spaces. */
    for (char *p = needed; *p; p++)
        if (*p == ',')
            *p = ' ';
    snprintf(www, sizeof www, "Bearer realm=\"motcua\", error=\"insufficient_scope\", scope=\"%s\"",
             needed);
    count("forbidden");
    mc_http_set_header(req, "WWW-Authenticate", www);
    mc_http_reply_error(req, 403, "forbidden", message, NULL);
}

/* ---------------------------------------------------------------- lookups */

static void lookup_unlink(lookup_t *l)
{
    if (!l->auth)
        return;
    for (lookup_t **pl = &l->auth->lookups; *pl; pl = &(*pl)->next)
        if (*pl == l) {
            *pl = l->next;
            break;
        }
}

static void copy_text(char *dst, size_t dstlen, const char *src)
{
    snprintf(dst, dstlen, "%s", src);
}

static void on_lookup(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    lookup_t *l = arg;
    lookup_unlink(l);
    mc_principal_t who = {0};
    enum { FOUND, UNKNOWN, REVOKED, FAILED } outcome = FAILED;
    if (status == MC_OK && l->auth && PQntuples(res) == 1 && PQnfields(res) == 5) {
        who.id = atoll(PQgetvalue(res, 0, 0));
        copy_text(who.name, sizeof who.name, PQgetvalue(res, 0, 1));
        copy_text(who.agency, sizeof who.agency, PQgetvalue(res, 0, 2));
        char err[160];
        if (mc_auth_scopes_parse(PQgetvalue(res, 0, 3), &who.scopes, err, sizeof err) != MC_OK)
            mc_warn("auth: key %lld (%s) has bad scopes: %s", who.id, who.name, err);
        outcome = strcmp(PQgetvalue(res, 0, 4), "t") == 0 ? REVOKED : FOUND;
    } else if (status == MC_OK && l->auth && PQntuples(res) == 0) {
        outcome = UNKNOWN;
    } else if (status == MC_EDB) {
        /* The first line of PostgreSQL's message; the rest points into our query. */
        const char *msg = PQresultErrorMessage(res);
        mc_warn("auth: cannot read the API keys: %.*s", (int)strcspn(msg, "\n"), msg);
    } else if (l->auth && status != MC_ECLOSED) { /* closing: nothing to report */
        mc_warn("auth: cannot read the API keys: %s", mc_strerror(status));
    }
    if (outcome == FOUND)
        cache_put(l->auth, l->hash, &who);
    else if (outcome == REVOKED)
        mc_info("auth: key %lld (%s) is revoked", who.id, who.name);
    else if (outcome == UNKNOWN)
        mc_info("auth: unknown API key");
    /* The checker is no longer needed: every answer below depends only on `who`. */
    for (waiter_t *w = l->waiters, *next; w; w = next) {
        next = w->next;
        switch (outcome) {
        case FOUND: admit(w->req, &who, w->any_of, w->fn, w->arg); break;
        case UNKNOWN:
        case REVOKED:
            unauthorized(w->req, "Bearer realm=\"motcua\", error=\"invalid_token\"",
                         "unknown or revoked API key");
            break;
        case FAILED:
            count("unavailable");
            mc_http_reply_error(w->req, 503, "unavailable", "API keys cannot be checked now", NULL);
            break;
        }
        free(w);
    }
    free(l);
}

/* Park the request on the lookup of this hash, starting one if there is none. */
static void lookup_join(mc_auth_t *auth, const uint8_t *hash, waiter_t *w)
{
    lookup_t *l = auth->lookups;
    while (l && memcmp(l->hash, hash, MC_AUTH_HASH_LEN) != 0)
        l = l->next;
    if (l) {
        *l->tail = w;
        l->tail = &w->next;
        return;
    }
    l = mc_new(lookup_t);
    l->auth = auth;
    memcpy(l->hash, hash, MC_AUTH_HASH_LEN);
    l->waiters = w;
    l->tail = &w->next;
    l->next = auth->lookups;
    auth->lookups = l;
    auth->nlookups++;
    mc_counter_inc(mc_counter("motcua_auth_lookups_total",
                              "API keys looked up in the database (cache misses).", NULL));
    mc_db_params_t params = {0};
    mc_db_param_bytes(&params, l->hash, MC_AUTH_HASH_LEN);
    mc_db_exec(auth->db, lookup_sql, &params, 0, on_lookup, l);
}

/* ---------------------------------------------------------------- the check */

/* The key of "Bearer <key>" (scheme case-insensitive, spaces around the key) into
 * key; 0 if the header is not that. */
static int bearer_key(const char *header, char key[MC_AUTH_KEY_LEN + 1])
{
    if (strncasecmp(header, "Bearer", 6) != 0 || (header[6] != ' ' && header[6] != '\t'))
        return 0;
    const char *p = header + 6;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = 0;
    while (p[n] && p[n] != ' ' && p[n] != '\t')
        n++;
    for (const char *q = p + n; *q; q++)
        if (*q != ' ' && *q != '\t')
            return 0;
    if (n != MC_AUTH_KEY_LEN)
        return 0;
    memcpy(key, p, n);
    key[n] = '\0';
    return mc_auth_key_valid(key);
}

static void check(mc_auth_t *auth, mc_http_req_t *req, unsigned any_of, mc_auth_fn fn, void *arg,
                  int optional)
{
    assert(auth && req && fn);
    assert((any_of & ~MC_SCOPE_ALL) == 0);
    const char *header = mc_http_header(req, "Authorization");
    if (!header) {
        if (optional) {
            fn(req, NULL, arg);
            return;
        }
        unauthorized(req, "Bearer realm=\"motcua\"",
                     "an API key is required: Authorization: Bearer <key>");
        return;
    }
    char key[MC_AUTH_KEY_LEN + 1];
    if (!bearer_key(header, key)) {
        unauthorized(req, "Bearer realm=\"motcua\", error=\"invalid_token\"",
                     "the Authorization header must be \"Bearer mck_\" followed by 64 "
                     "lower-case hex digits");
        return;
    }
    uint8_t hash[MC_AUTH_HASH_LEN];
    mc_auth_key_hash(key, hash);
    sodium_memzero(key, sizeof key);
    const entry_t *e = cache_get(auth, hash, mc_now_ms());
    if (e) {
        /* A copy: the continuation may make the cache drop the entry. */
        mc_principal_t who = e->who;
        admit(req, &who, any_of, fn, arg);
        return;
    }
    waiter_t *w = mc_new(waiter_t);
    w->req = req;
    w->any_of = any_of;
    w->fn = fn;
    w->arg = arg;
    lookup_join(auth, hash, w);
}

void mc_auth_require(mc_auth_t *auth, mc_http_req_t *req, unsigned any_of_scopes, mc_auth_fn fn,
                     void *arg)
{
    check(auth, req, any_of_scopes, fn, arg, 0);
}

void mc_auth_optional(mc_auth_t *auth, mc_http_req_t *req, unsigned any_of_scopes, mc_auth_fn fn,
                      void *arg)
{
    check(auth, req, any_of_scopes, fn, arg, 1);
}
