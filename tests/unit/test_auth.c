/* test_auth.c: API keys: key text, hashes and scopes; the keys schema; and the check
 * of real HTTP requests against keys in a real PostgreSQL.
 *
 * The database tests skip without MOTCUA_TEST_DATABASE_URL. Group setup recreates the
 * schema "keys" through mc_auth_migrate and inserts a few keys through a blocking
 * "admin" connection, as motcuactl would. Each HTTP test runs, on its own loop in the
 * test thread, a pool, an HTTP server with protected routes and up to three checkers;
 * a client thread (libcurl) makes the requests and records the answers, which the
 * test thread checks after the loop has ended (cmocka's assertions belong to it). When
 * the client is done it wakes the loop, which destroys server, checkers and pool; the
 * loop must then close cleanly. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <uv.h>

#include "auth.h"
#include "db.h"
#include "error.h"
#include "http.h"
#include "mc.h"
#include "metrics.h"
#include "unit.h"

#define OFFICER_AGENCY "000.00.10.H99"

/* ------------------------------------------------------------------ */
/* Group fixture: the keys schema and a few keys                      */

typedef struct {
    PGconn *admin;
    char officer[MC_AUTH_KEY_LEN + 1];    /* officer of OFFICER_AGENCY */
    char integrator[MC_AUTH_KEY_LEN + 1]; /* integrator + citizen_portal */
    char revoked[MC_AUTH_KEY_LEN + 1];    /* operator, revoked */
    char unknown[MC_AUTH_KEY_LEN + 1];    /* well-formed, never stored */
} keys_fx_t;

static int admin_ok(PGconn *admin, const char *sql, int nparams, const char *const *params)
{
    PGresult *r = PQexecParams(admin, sql, nparams, NULL, params, NULL, NULL, 0);
    int st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "admin: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

/* Store a new key as motcuactl does (hash only); its text into key. */
static int key_store(PGconn *admin, const char *name, const char *agency, const char *scopes,
                     int revoked, char key[MC_AUTH_KEY_LEN + 1])
{
    uint8_t hash[MC_AUTH_HASH_LEN];
    char hex[2 * MC_AUTH_HASH_LEN + 1];
    mc_auth_key_generate(key);
    mc_auth_key_hash(key, hash);
    for (int i = 0; i < MC_AUTH_HASH_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", hash[i]);
    const char *const params[] = {name, agency, scopes, hex, revoked ? "t" : "f"};
    return admin_ok(admin,
                    "INSERT INTO keys.api_keys (name, agency_code, scopes, hash, revoked_at) "
                    "VALUES ($1, $2, $3::text[], decode($4, 'hex'), "
                    "CASE WHEN $5::bool THEN now() END)",
                    5, params);
}

static int group_setup(void **state)
{
    *state = NULL;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *url = mc_test_db_url();
    if (!url)
        return 0;
    keys_fx_t *kf = mc_new(keys_fx_t);
    kf->admin = PQconnectdb(url);
    if (PQstatus(kf->admin) != CONNECTION_OK) {
        fprintf(stderr, "test_auth: cannot connect: %s", PQerrorMessage(kf->admin));
        PQfinish(kf->admin);
        free(kf);
        return -1;
    }
    PQclear(PQexec(kf->admin, "SET client_min_messages = warning"));
    char err[512];
    int ok = admin_ok(kf->admin, "DROP SCHEMA IF EXISTS keys CASCADE", 0, NULL) &&
             mc_auth_migrate(kf->admin, err, sizeof err) == 1 &&
             key_store(kf->admin, "officer-test", OFFICER_AGENCY, "{officer}", 0, kf->officer) &&
             key_store(kf->admin, "integrator-test", NULL, "{integrator,citizen_portal}", 0,
                       kf->integrator) &&
             key_store(kf->admin, "revoked-test", NULL, "{operator}", 1, kf->revoked);
    if (!ok) {
        PQfinish(kf->admin);
        free(kf);
        return -1;
    }
    mc_auth_key_generate(kf->unknown);
    *state = kf;
    return 0;
}

static int group_teardown(void **state)
{
    keys_fx_t *kf = *state;
    if (kf) {
        PQfinish(kf->admin);
        free(kf);
    }
    curl_global_cleanup();
    return 0;
}

/* ------------------------------------------------------------------ */
/* The server: routes behind the checker                              */

enum { MAX_RES = 16 };

typedef struct {
    long status;
    char www[256]; /* WWW-Authenticate, "" if absent */
    char body[2048];
    size_t body_len;
} response_t;

typedef struct server server_t;
typedef void (*client_fn)(server_t *sv);

struct server {
    uv_loop_t loop;
    mc_db_t *db;
    mc_http_t *http;
    mc_auth_t *auth;   /* the routes' checker */
    mc_auth_t *fresh;  /* another service process, with an empty cache */
    mc_auth_t *doomed; /* destroyed while its lookup is in flight */
    uv_async_t wake;
    uv_timer_t watchdog;
    pthread_t thread;
    client_fn client;
    keys_fx_t *kf;
    int port;
    atomic_int client_done;
    int timed_out;
    uint64_t lookups, fresh_lookups; /* read on the loop before destroying */
    int revoked;                     /* rows the client's revocation changed */
    /* Client thread, read after join. */
    response_t res[MAX_RES];
};

static void on_ok(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    (void)arg;
    if (!who) {
        mc_http_reply_json(req, 200, json_pack("{s:b}", "anonymous", 1));
        return;
    }
    char scopes[80];
    mc_auth_scopes_format(who->scopes, scopes, sizeof scopes);
    mc_http_reply_json(req, 200,
                       json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)who->id, "name",
                                 who->name, "agency", who->agency, "scopes", scopes));
}

static void officer_get(mc_http_req_t *req, void *arg)
{
    server_t *sv = arg;
    mc_auth_require(sv->auth, req, MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR, on_ok, sv);
}

static void any_get(mc_http_req_t *req, void *arg)
{
    server_t *sv = arg;
    mc_auth_require(sv->auth, req, 0, on_ok, sv);
}

static void lookup_get(mc_http_req_t *req, void *arg)
{
    server_t *sv = arg;
    mc_auth_optional(sv->auth, req, MC_SCOPE_OFFICER, on_ok, sv);
}

static void fresh_get(mc_http_req_t *req, void *arg)
{
    server_t *sv = arg;
    mc_auth_require(sv->fresh, req, 0, on_ok, sv);
}

static void doomed_get(mc_http_req_t *req, void *arg)
{
    server_t *sv = arg;
    mc_auth_require(sv->doomed, req, 0, on_ok, sv);
    mc_auth_destroy(&sv->doomed); /* the lookup is in flight: the request must still get 503 */
}

static const mc_route_t routes[] = {
    {"GET", "/officer", officer_get}, {"GET", "/any", any_get},
    {"GET", "/lookup", lookup_get},   {"GET", "/fresh", fresh_get},
    {"GET", "/doomed", doomed_get},
};

static void on_wake(uv_async_t *async)
{
    server_t *sv = mc_container_of(async, server_t, wake);
    if (!atomic_load(&sv->client_done))
        return;
    mc_http_destroy(&sv->http);
    if (sv->auth)
        sv->lookups = mc_auth_lookups(sv->auth);
    if (sv->fresh)
        sv->fresh_lookups = mc_auth_lookups(sv->fresh);
    mc_auth_destroy(&sv->auth);
    mc_auth_destroy(&sv->fresh);
    mc_auth_destroy(&sv->doomed);
    mc_db_destroy(&sv->db);
    uv_close((uv_handle_t *)&sv->wake, NULL);
    uv_close((uv_handle_t *)&sv->watchdog, NULL);
}

static void on_watchdog(uv_timer_t *timer)
{
    server_t *sv = mc_container_of(timer, server_t, watchdog);
    sv->timed_out = 1;
    atomic_store(&sv->client_done, 1); /* the client's requests time out by themselves */
}

static void *client_main(void *arg)
{
    server_t *sv = arg;
    sv->client(sv);
    atomic_store(&sv->client_done, 1);
    uv_async_send(&sv->wake);
    return NULL;
}

static void run(server_t *sv, keys_fx_t *kf, client_fn client)
{
    memset(sv, 0, sizeof *sv);
    sv->kf = kf;
    sv->client = client;
    assert_int_equal(uv_loop_init(&sv->loop), 0);
    sv->db = mc_db_new(&sv->loop, mc_test_db_url(), 2);
    sv->auth = mc_auth_new(sv->db);
    sv->fresh = mc_auth_new(sv->db);
    sv->doomed = mc_auth_new(sv->db);
    assert_non_null(sv->auth);
    sv->http = mc_http_new(&sv->loop, "127.0.0.1", 0, 4096, sv);
    assert_non_null(sv->http);
    mc_http_routes(sv->http, routes, MC_COUNT(routes));
    sv->port = mc_http_port(sv->http);
    uv_async_init(&sv->loop, &sv->wake, on_wake);
    uv_timer_init(&sv->loop, &sv->watchdog);
    uv_timer_start(&sv->watchdog, on_watchdog, 20000, 0);
    assert_int_equal(pthread_create(&sv->thread, NULL, client_main, sv), 0);
    uv_run(&sv->loop, UV_RUN_DEFAULT);
    pthread_join(sv->thread, NULL);
    assert_false(sv->timed_out);
    assert_null(sv->http);
    assert_null(sv->db);
    assert_int_equal(uv_loop_close(&sv->loop), 0);
}

/* ------------------------------------------------------------------ */
/* The client (libcurl, on the client thread)                         */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    response_t *r = arg;
    size_t len = size * n, room = sizeof r->body - 1 - r->body_len;
    size_t take = len < room ? len : room;
    memcpy(r->body + r->body_len, data, take);
    r->body_len += take;
    r->body[r->body_len] = '\0';
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    response_t *r = arg;
    size_t len = size * n;
    static const char name[] = "www-authenticate:";
    if (len > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        const char *v = data + sizeof name - 1;
        size_t vlen = len - (sizeof name - 1);
        while (vlen && (*v == ' ')) {
            v++;
            vlen--;
        }
        while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
            vlen--;
        snprintf(r->www, sizeof r->www, "%.*s", (int)vlen, v);
    }
    return len;
}

/* An easy handle for GET path with an Authorization header (NULL: none). */
static CURL *request_new(server_t *sv, const char *path, const char *authorization,
                         struct curl_slist **headers, response_t *r)
{
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", sv->port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    *headers = NULL;
    if (authorization) {
        char line[256];
        snprintf(line, sizeof line, "Authorization: %s", authorization);
        *headers = curl_slist_append(NULL, line);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, *headers);
    }
    return c;
}

static void get(server_t *sv, const char *path, const char *authorization, response_t *r)
{
    struct curl_slist *headers;
    CURL *c = request_new(sv, path, authorization, &headers, r);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
}

static void get_key(server_t *sv, const char *path, const char *key, response_t *r)
{
    char authorization[128];
    snprintf(authorization, sizeof authorization, "Bearer %s", key);
    get(sv, path, authorization, r);
}

/* ------------------------------------------------------------------ */
/* Checks (test thread)                                               */

static json_t *body_json(const response_t *r)
{
    json_t *doc = json_loads(r->body, 0, NULL);
    assert_non_null(doc);
    return doc;
}

/* The error document with this status and code. */
static void assert_error(const response_t *r, long status, const char *code)
{
    assert_int_equal(r->status, status);
    json_t *doc = body_json(r);
    json_t *err = json_object_get(doc, "error");
    assert_true(json_is_object(err));
    assert_string_equal(json_string_value(json_object_get(err, "code")), code);
    assert_true(json_is_string(json_object_get(err, "message")));
    json_decref(doc);
}

static void assert_unauthorized(const response_t *r)
{
    assert_error(r, 401, "unauthorized");
    assert_true(strncmp(r->www, "Bearer", 6) == 0);
}

/* A 200 whose body is the principal. */
static void assert_principal(const response_t *r, const char *name, const char *agency,
                             const char *scopes)
{
    assert_int_equal(r->status, 200);
    json_t *doc = body_json(r);
    assert_true(json_integer_value(json_object_get(doc, "id")) > 0);
    assert_string_equal(json_string_value(json_object_get(doc, "name")), name);
    assert_string_equal(json_string_value(json_object_get(doc, "agency")), agency);
    assert_string_equal(json_string_value(json_object_get(doc, "scopes")), scopes);
    json_decref(doc);
}

static int reset_metrics(void **state)
{
    (void)state;
    mc_metrics_reset();
    return 0;
}

static int has_metric_line(const char *line)
{
    char *text = mc_metrics_render();
    size_t n = strlen(line);
    int found = 0;
    for (const char *p = text; !found && (p = strstr(p, line)) != NULL; p++)
        found = (p == text || p[-1] == '\n') && p[n] == '\n';
    free(text);
    return found;
}

/* ------------------------------------------------------------------ */
/* Tests without a database                                           */

static void key_text_and_hash(void **state)
{
    (void)state;
    char a[MC_AUTH_KEY_LEN + 1], b[MC_AUTH_KEY_LEN + 1];
    mc_auth_key_generate(a);
    mc_auth_key_generate(b);
    assert_int_equal(strlen(a), MC_AUTH_KEY_LEN);
    assert_true(mc_auth_key_valid(a));
    assert_string_not_equal(a, b);
    assert_true(strncmp(a, "mck_", 4) == 0);

    char k[MC_AUTH_KEY_LEN + 1];
    snprintf(k, sizeof k, "mck_%064d", 0);
    assert_true(mc_auth_key_valid(k));
    /* The stored hash is SHA-256 of the whole text; checked with Python's hashlib. */
    static const uint8_t want[MC_AUTH_HASH_LEN] = {0xca, 0x25, 0x1f, 0x61, 0xa6, 0xdb, 0x54, 0x00,
                                                   0xeb, 0xeb, 0x1e, 0xd3, 0xe1, 0x8a, 0xed, 0x07,
                                                   0xa7, 0x5c, 0x6e, 0x4e, 0xf4, 0xda, 0x49, 0xc3,
                                                   0xbd, 0x43, 0x7b, 0x1b, 0x42, 0xdf, 0x2b, 0x4b};
    uint8_t got[MC_AUTH_HASH_LEN];
    mc_auth_key_hash(k, got);
    assert_memory_equal(got, want, sizeof want);

    k[10] = 'A'; /* upper-case hex is not a key */
    assert_false(mc_auth_key_valid(k));
    assert_false(mc_auth_key_valid("mck_"));
    assert_false(mc_auth_key_valid(""));
    snprintf(k, sizeof k, "mcx_%064d", 0);
    assert_false(mc_auth_key_valid(k));
    char longer[MC_AUTH_KEY_LEN + 2];
    snprintf(longer, sizeof longer, "mck_%065d", 0);
    assert_false(mc_auth_key_valid(longer));
}

static void scope_names(void **state)
{
    (void)state;
    unsigned s;
    char err[160], out[80];
    assert_int_equal(mc_auth_scopes_parse("officer", &s, err, sizeof err), MC_OK);
    assert_int_equal(s, MC_SCOPE_OFFICER);
    assert_int_equal(mc_auth_scopes_parse("operator,citizen_portal", &s, err, sizeof err), MC_OK);
    assert_int_equal(s, MC_SCOPE_OPERATOR | MC_SCOPE_CITIZEN);
    assert_int_equal(mc_auth_scopes_parse("{integrator,officer}", &s, err, sizeof err), MC_OK);
    assert_int_equal(s, MC_SCOPE_INTEGRATOR | MC_SCOPE_OFFICER);
    mc_auth_scopes_format(MC_SCOPE_ALL, out, sizeof out);
    assert_string_equal(out, "citizen_portal,officer,integrator,operator");
    mc_auth_scopes_format(0, out, sizeof out);
    assert_string_equal(out, "");

    static const char *const bad[] = {"",
                                      "admin",
                                      "officer,",
                                      ",officer",
                                      "officer,,operator",
                                      "officer,officer",
                                      "Officer",
                                      "officer operator"};
    for (size_t i = 0; i < MC_COUNT(bad); i++) {
        err[0] = '\0';
        assert_int_equal(mc_auth_scopes_parse(bad[i], &s, err, sizeof err), MC_EINVAL);
        assert_int_equal(s, 0);
        assert_true(strlen(err) > 0);
    }
    assert_string_equal(mc_auth_scope_name(MC_SCOPE_CITIZEN), "citizen_portal");
    assert_null(mc_auth_scope_name(MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR));
}

/* ------------------------------------------------------------------ */
/* The schema                                                         */

static void migration_idempotent_and_checked(void **state)
{
    MC_NEED_DB(keys_fx_t, kf);
    char err[512];
    assert_int_equal(mc_auth_migrate(kf->admin, err, sizeof err), 0);
    assert_int_equal(mc_auth_migrate_url(mc_test_db_url(), err, sizeof err), 0);
    assert_int_equal(mc_auth_migrate_url("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2",
                                         err, sizeof err),
                     MC_EUNAVAIL);
    /* The table refuses what the checker could not make sense of. */
    static const char *const refused[] = {
        /* an officer without an agency, and an agency without the officer scope */
        "INSERT INTO keys.api_keys (name, scopes, hash) VALUES ('x', '{officer}', "
        "decode(repeat('01', 32), 'hex'))",
        "INSERT INTO keys.api_keys (name, agency_code, scopes, hash) VALUES ('x', 'A', "
        "'{operator}', decode(repeat('02', 32), 'hex'))",
        /* an unknown scope, no scope, a hash that is not SHA-256 */
        "INSERT INTO keys.api_keys (name, scopes, hash) VALUES ('x', '{root}', "
        "decode(repeat('03', 32), 'hex'))",
        "INSERT INTO keys.api_keys (name, scopes, hash) VALUES ('x', '{}', "
        "decode(repeat('04', 32), 'hex'))",
        "INSERT INTO keys.api_keys (name, scopes, hash) VALUES ('x', '{operator}', "
        "decode('05', 'hex'))",
    };
    for (size_t i = 0; i < MC_COUNT(refused); i++) {
        PGresult *r = PQexec(kf->admin, refused[i]);
        assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
        assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23514"); /* check_violation */
        PQclear(r);
    }
}

/* ------------------------------------------------------------------ */
/* Requests                                                           */

static void client_headers(server_t *sv)
{
    get(sv, "/officer", NULL, &sv->res[0]);
    get(sv, "/officer", "Basic dXNlcjpwYXNz", &sv->res[1]);
    get(sv, "/officer", "Bearer", &sv->res[2]);
    get(sv, "/officer", "Bearer mck_abc", &sv->res[3]);
    char upper[128];
    snprintf(upper, sizeof upper, "Bearer %s", sv->kf->officer);
    for (char *p = upper + 11; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 32);
    get(sv, "/officer", upper, &sv->res[4]);
    char two[256];
    snprintf(two, sizeof two, "Bearer %s %s", sv->kf->officer, sv->kf->officer);
    get(sv, "/officer", two, &sv->res[5]);
}

static void missing_or_malformed_header(void **state)
{
    MC_NEED_DB(keys_fx_t, kf);
    server_t sv;
    run(&sv, kf, client_headers);
    assert_unauthorized(&sv.res[0]);
    assert_string_equal(sv.res[0].www, "Bearer realm=\"motcua\"");
    for (int i = 1; i <= 5; i++) {
        assert_unauthorized(&sv.res[i]);
        assert_non_null(strstr(sv.res[i].www, "error=\"invalid_token\""));
    }
    assert_int_equal(sv.lookups, 0); /* none of these is worth a query */
    assert_true(has_metric_line("motcua_auth_checks_total{result=\"unauthorized\"} 6"));
}

static void client_bad_keys(server_t *sv)
{
    get_key(sv, "/officer", sv->kf->unknown, &sv->res[0]);
    get_key(sv, "/officer", sv->kf->revoked, &sv->res[1]);
    get_key(sv, "/officer", sv->kf->unknown, &sv->res[2]); /* failures are not cached */
}

static void unknown_or_revoked_key(void **state)
{
    MC_NEED_DB(keys_fx_t, kf);
    server_t sv;
    run(&sv, kf, client_bad_keys);
    for (int i = 0; i < 3; i++) {
        assert_unauthorized(&sv.res[i]);
        assert_non_null(strstr(sv.res[i].www, "error=\"invalid_token\""));
    }
    assert_int_equal(sv.lookups, 3);
}

static void client_scopes(server_t *sv)
{
    get_key(sv, "/officer", sv->kf->integrator, &sv->res[0]);
    get_key(sv, "/officer", sv->kf->officer, &sv->res[1]);
    get_key(sv, "/any", sv->kf->integrator, &sv->res[2]);
    /* The scheme is case-insensitive; spaces around the key do not matter. */
    char loose[128];
    snprintf(loose, sizeof loose, "bearer   %s  ", sv->kf->officer);
    get(sv, "/officer", loose, &sv->res[3]);
}

static void scopes_decide(void **state)
{
    MC_NEED_DB(keys_fx_t, kf);
    server_t sv;
    run(&sv, kf, client_scopes);
    assert_error(&sv.res[0], 403, "forbidden");
    assert_string_equal(sv.res[0].www, "Bearer realm=\"motcua\", error=\"insufficient_scope\", "
                                       "scope=\"officer operator\"");
    assert_principal(&sv.res[1], "officer-test", OFFICER_AGENCY, "officer");
    assert_principal(&sv.res[2], "integrator-test", "", "citizen_portal,integrator");
    assert_principal(&sv.res[3], "officer-test", OFFICER_AGENCY, "officer");
    assert_int_equal(sv.lookups, 2); /* one per key; the rest came from the cache */
    assert_true(has_metric_line("motcua_auth_checks_total{result=\"ok\"} 3"));
    assert_true(has_metric_line("motcua_auth_checks_total{result=\"forbidden\"} 1"));
    assert_true(has_metric_line("motcua_auth_lookups_total 2"));
}

static void client_optional(server_t *sv)
{
    get(sv, "/lookup", NULL, &sv->res[0]);
    get_key(sv, "/lookup", sv->kf->unknown, &sv->res[1]);
    get(sv, "/lookup", "Token abc", &sv->res[2]);
    get_key(sv, "/lookup", sv->kf->officer, &sv->res[3]);
    get_key(sv, "/lookup", sv->kf->integrator, &sv->res[4]);
}

static void optional_key(void **state)
{
    MC_NEED_DB(keys_fx_t, kf);
    server_t sv;
    run(&sv, kf, client_optional);
    assert_int_equal(sv.res[0].status, 200);
    assert_string_equal(sv.res[0].body, "{\"anonymous\":true}");
    assert_unauthorized(&sv.res[1]);
    assert_unauthorized(&sv.res[2]);
    assert_principal(&sv.res[3], "officer-test", OFFICER_AGENCY, "officer");
    assert_error(&sv.res[4], 403, "forbidden");
}

enum { BURST = 8 };

static void client_burst(server_t *sv)
{
    /* Eight requests at once with the key; its lookup is shared. */
    CURLM *multi = curl_multi_init();
    CURL *easy[BURST];
    struct curl_slist *headers[BURST];
    char authorization[128];
    snprintf(authorization, sizeof authorization, "Bearer %s", sv->kf->officer);
    for (int i = 0; i < BURST; i++) {
        easy[i] = request_new(sv, "/officer", authorization, &headers[i], &sv->res[i]);
        curl_multi_add_handle(multi, easy[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(multi, &running);
        if (running)
            curl_multi_wait(multi, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < BURST; i++) {
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &sv->res[i].status);
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
        curl_slist_free_all(headers[i]);
    }
    curl_multi_cleanup(multi);
}

static void burst_costs_one_lookup(void **state)
{
    MC_NEED_DB(keys_fx_t, kf);
    server_t sv;
    run(&sv, kf, client_burst);
    for (int i = 0; i < BURST; i++)
        assert_principal(&sv.res[i], "officer-test", OFFICER_AGENCY, "officer");
    assert_int_equal(sv.lookups, 1);
}

/* The key of the revocation test, made by the test thread before the server starts. */
static char revoke_key[MC_AUTH_KEY_LEN + 1];

static void client_revoke(server_t *sv)
{
    get_key(sv, "/officer", revoke_key, &sv->res[0]);
    PGresult *r = PQexec(sv->kf->admin, "UPDATE keys.api_keys SET revoked_at = now() "
                                        "WHERE name = 'revoke-me' AND revoked_at IS NULL");
    sv->revoked = atoi(PQcmdTuples(r));
    PQclear(r);
    get_key(sv, "/officer", revoke_key, &sv->res[1]); /* still trusted by this cache */
    get_key(sv, "/fresh", revoke_key, &sv->res[2]);   /* another process: refused at once */
}

static void revoked_key_within_cache_time(void **state)
{
    MC_NEED_DB(keys_fx_t, kf);
    assert_true(key_store(kf->admin, "revoke-me", "A.1", "{officer,operator}", 0, revoke_key));
    server_t sv;
    run(&sv, kf, client_revoke);
    assert_principal(&sv.res[0], "revoke-me", "A.1", "officer,operator");
    assert_int_equal(sv.revoked, 1);
    /* Documented: a revoked key keeps working up to MC_AUTH_CACHE_MS where it was seen. */
    assert_principal(&sv.res[1], "revoke-me", "A.1", "officer,operator");
    assert_unauthorized(&sv.res[2]);
    assert_int_equal(sv.lookups, 1);
    assert_int_equal(sv.fresh_lookups, 1);
}

static void client_doomed(server_t *sv)
{
    get_key(sv, "/doomed", sv->kf->officer, &sv->res[0]);
    get_key(sv, "/officer", sv->kf->officer, &sv->res[1]); /* the other checkers carry on */
}

static void destroyed_during_lookup(void **state)
{
    MC_NEED_DB(keys_fx_t, kf);
    server_t sv;
    run(&sv, kf, client_doomed); /* ASan: the detached lookup frees itself */
    assert_error(&sv.res[0], 503, "unavailable");
    assert_principal(&sv.res[1], "officer-test", OFFICER_AGENCY, "officer");
}

static void client_no_table(server_t *sv)
{
    PQclear(PQexec(sv->kf->admin, "ALTER TABLE keys.api_keys RENAME TO api_keys_away"));
    get_key(sv, "/officer", sv->kf->officer, &sv->res[0]);
    get(sv, "/lookup", NULL, &sv->res[1]); /* no key asked: no need for the table */
    PQclear(PQexec(sv->kf->admin, "ALTER TABLE keys.api_keys_away RENAME TO api_keys"));
    get_key(sv, "/officer", sv->kf->officer, &sv->res[2]); /* the failure was not cached */
}

static void unreadable_keys_table(void **state)
{
    MC_NEED_DB(keys_fx_t, kf);
    server_t sv;
    run(&sv, kf, client_no_table);
    assert_error(&sv.res[0], 503, "unavailable");
    assert_int_equal(sv.res[1].status, 200);
    assert_principal(&sv.res[2], "officer-test", OFFICER_AGENCY, "officer");
    assert_true(has_metric_line("motcua_auth_checks_total{result=\"unavailable\"} 1"));
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(key_text_and_hash),
    cmocka_unit_test(scope_names),
    cmocka_unit_test(migration_idempotent_and_checked),
    cmocka_unit_test_setup(missing_or_malformed_header, reset_metrics),
    cmocka_unit_test_setup(unknown_or_revoked_key, reset_metrics),
    cmocka_unit_test_setup(scopes_decide, reset_metrics),
    cmocka_unit_test_setup(optional_key, reset_metrics),
    cmocka_unit_test_setup(burst_costs_one_lookup, reset_metrics),
    cmocka_unit_test_setup(revoked_key_within_cache_time, reset_metrics),
    cmocka_unit_test_setup(destroyed_during_lookup, reset_metrics),
    cmocka_unit_test_setup(unreadable_keys_table, reset_metrics),
};
MC_TEST_GROUP(auth, tests, group_setup, group_teardown);
