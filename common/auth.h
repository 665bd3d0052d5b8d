/* auth.h: API keys with scopes, checked by every service's HTTP handlers.
 *
 * A key is "mck_" followed by 64 lower-case hex digits (32 random bytes). Its text is
 * shown once, when motcuactl creates it; the database keeps only the SHA-256 of that
 * text, in keys.api_keys (schema "keys": written by motcuactl, read by every
 * service). A key has a name (who holds it, for logs), one or more scopes, and, for
 * the officer scope, the code of the agency whose work it may do.
 *
 * A handler that needs a key wraps its work in mc_auth_require: the header
 * "Authorization: Bearer <key>" is read, the key looked up by its hash, and the
 * handler's continuation called with the principal, or the request answered:
 *   no header, or not "Bearer mck_<64 hex>"   401 unauthorized  (WWW-Authenticate: Bearer)
 *   unknown or revoked key                   401 unauthorized
 *   none of the scopes asked for             403 forbidden
 *   the keys table cannot be read            503 unavailable
 *
 * Cache. A verified key is remembered (hash -> principal) for MC_AUTH_CACHE_MS, and
 * requests that arrive while its lookup is under way wait for that one lookup: a
 * burst of requests with one key costs one query. The price is that a revoked key
 * keeps working for up to MC_AUTH_CACHE_MS in each service process that saw it just
 * before. Keys that fail are not remembered (a flood of random keys cannot fill the
 * memory; each costs one indexed lookup).
 *
 * Key text is never logged; the key's id and name are. Everything here runs on the
 * loop thread of the mc_db_t given to mc_auth_new. */
#ifndef MC_AUTH_H
#define MC_AUTH_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "http.h"
#include "mc.h"

typedef enum {
    MC_SCOPE_CITIZEN = 1,    /* "citizen_portal": a citizen portal submitting for applicants */
    MC_SCOPE_OFFICER = 2,    /* "officer": an officer of one agency (agency_code set) */
    MC_SCOPE_INTEGRATOR = 4, /* "integrator": the national portal and other integrators */
    MC_SCOPE_OPERATOR = 8,   /* "operator": the province's IT centre */
} mc_scope_t;

#define MC_SCOPE_ALL 15u

/* Who a verified key belongs to. */
typedef struct {
    long long id;    /* keys.api_keys.id */
    char name[64];   /* the key's name, e.g. "officer-000.00.10.H99" */
    char agency[40]; /* agency code for officer keys, "" otherwise */
    unsigned scopes; /* mc_scope_t bits */
} mc_principal_t;

typedef struct mc_auth mc_auth_t;

/* How long a verified key is trusted without asking the database again. */
#define MC_AUTH_CACHE_MS 30000

/* "mck_" + 64 hex digits, and the terminating NUL. */
#define MC_AUTH_KEY_LEN  68
#define MC_AUTH_HASH_LEN 32

/* Checks keys through `db` (not owned; it must outlive the checker's lookups, which
 * end with MC_ECLOSED when the pool is destroyed). */
mc_auth_t *mc_auth_new(mc_db_t *db);
/* Free the cache. Lookups still in flight finish on their own: their requests get
 * 503 when the pool answers. Sets *auth to NULL; safe on NULL and twice. */
void mc_auth_destroy(mc_auth_t **auth);

/* The continuation of a protected handler. `who` is valid during the call only
 * (copy what you keep); it is NULL only with mc_auth_optional and no header. */
typedef void (*mc_auth_fn)(mc_http_req_t *req, const mc_principal_t *who, void *arg);

/* Call fn(req, principal, arg) if the request carries a valid key with at least one
 * of `any_of_scopes` (0: any valid key); otherwise answer the request (401/403/503,
 * see above) and never call fn. fn may be called before this returns (cached key)
 * or later, from the loop. */
void mc_auth_require(mc_auth_t *auth, mc_http_req_t *req, unsigned any_of_scopes, mc_auth_fn fn,
                     void *arg);
/* The same, except that a request without an Authorization header is let through
 * with who == NULL (the handler then checks another credential, such as a dossier's
 * lookup token). A header that is present but bad is still answered 401. */
void mc_auth_optional(mc_auth_t *auth, mc_http_req_t *req, unsigned any_of_scopes, mc_auth_fn fn,
                      void *arg);

/* Database lookups made so far (cache misses), for tests and metrics. */
uint64_t mc_auth_lookups(const mc_auth_t *auth);

/* ---- Keys and scopes, shared with motcuactl ---- */

/* A new random key text into out (MC_AUTH_KEY_LEN + 1 bytes). */
void mc_auth_key_generate(char out[MC_AUTH_KEY_LEN + 1]);
/* 1 if text has the shape of a key ("mck_" + 64 lower-case hex digits), else 0. */
int mc_auth_key_valid(const char *text);
/* SHA-256 of the key text, as stored in keys.api_keys.hash. */
void mc_auth_key_hash(const char *key, uint8_t out[MC_AUTH_HASH_LEN]);

/* The name of one scope bit ("officer"), or NULL if it is not exactly one scope. */
const char *mc_auth_scope_name(unsigned scope);
/* Parse a comma-separated list of scope names ("officer,operator"; "{a,b}" as
 * PostgreSQL prints a text[] is accepted too) into bits. MC_OK, or MC_EINVAL with
 * the offending name in err for an unknown, repeated or empty name. */
int mc_auth_scopes_parse(const char *list, unsigned *scopes, char *err, size_t errlen) MC_MUST_USE;
/* The names of the scope bits, comma-separated, into out (always NUL-terminated). */
void mc_auth_scopes_format(unsigned scopes, char *out, size_t outlen);

/* ---- The keys schema ---- */

/* Create or update schema "keys" (keys.api_keys) on a blocking connection, through
 * mc_migrate (component "keys"). Returns the number of migrations applied (>= 0) or
 * a negative mc_err_t with the reason in err. */
int mc_auth_migrate(PGconn *conn, char *err, size_t errlen) MC_MUST_USE;
/* The same on a connection of its own to db_url; MC_EUNAVAIL if the database cannot
 * be reached (a service's start-up retries on that). */
int mc_auth_migrate_url(const char *db_url, char *err, size_t errlen) MC_MUST_USE;

#endif
