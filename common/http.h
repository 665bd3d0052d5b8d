/* http.h: the HTTP server every service runs, on h2o over the service's libuv loop.
 *
 * Routes are data: a table of {method, pattern, handler}. A pattern is a path whose
 * segments may be "{name}" captures: "/v1/dossiers/{code}". A handler may answer at
 * once or later (after a database round trip): the request stays valid until one
 * mc_http_reply_* call. If the client goes away first, the late reply is dropped
 * safely. Errors are JSON: {"error":{"code":"...","message":"...","field":...}}.
 * Bodies larger than the configured limit are refused with 413 before the handler.
 * Every request is counted and timed in the metrics registry (route, status). */
#ifndef MC_HTTP_H
#define MC_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "mc.h"

typedef struct mc_http mc_http_t;
typedef struct mc_http_req mc_http_req_t;

/* A route handler. `arg` is the pointer given to mc_http_new. */
typedef void (*mc_http_fn)(mc_http_req_t *req, void *arg);

typedef struct {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/v1/dossiers/{code}" */
    mc_http_fn fn;
} mc_route_t;

/* A server on host:port serving the routes of every mc_http_routes call.
 * max_body: largest accepted request body in bytes. Returns NULL with a logged
 * reason if the address cannot be bound. */
mc_http_t *mc_http_new(uv_loop_t *loop, const char *host, int port, size_t max_body, void *arg);
/* Add routes (the table must outlive the server). */
void mc_http_routes(mc_http_t *http, const mc_route_t *routes, size_t n);
/* Begin a graceful stop (SIGTERM): close the listener at once, so new connections are
 * refused; answer requests that arrive on connections already open with 503
 * "unavailable" and "Connection: close"; let the requests in flight (handler called,
 * no reply yet) get their handlers' replies as usual, each closing its connection.
 * drained(arg) is called from the loop once every one of them has replied (on the next
 * loop turn if there are none; never from inside mc_http_stop or a reply), or after
 * 10 s at the latest, the requests still unanswered being logged and left to
 * mc_http_destroy. Call once; mc_http_destroy before `drained` cancels it. */
void mc_http_stop(mc_http_t *http, void (*drained)(void *arg), void *arg);
/* Stop accepting, answer requests still without a reply with 503 (their handlers' late
 * replies are dropped), close every connection once its response is written; frees in
 * close callbacks. Sets *http to NULL. The loop must run afterwards to finish closing. */
void mc_http_destroy(mc_http_t **http);
/* The port actually bound (useful with port 0 in tests). */
int mc_http_port(const mc_http_t *http);

/* ---- Request accessors (strings live until the reply) ---- */
const char *mc_http_method(const mc_http_req_t *req);
const char *mc_http_path(const mc_http_req_t *req);
/* A "{name}" capture of the route pattern, URL-decoded; NULL if absent. */
const char *mc_http_param(mc_http_req_t *req, const char *name);
/* A query-string value, URL-decoded; NULL if absent. */
const char *mc_http_query(mc_http_req_t *req, const char *name);
/* A request header (name case-insensitive); NULL if absent. */
const char *mc_http_header(mc_http_req_t *req, const char *name);
/* The request body (not NUL-terminated) and its length. */
const char *mc_http_body(const mc_http_req_t *req, size_t *len);
/* Parse the body as a JSON object. On failure replies 400 itself and returns NULL;
 * the caller then just returns. The caller owns the returned reference. */
json_t *mc_http_json_body(mc_http_req_t *req);

/* ---- Replies: exactly one per request ---- */
/* Reply with JSON; steals the reference to body. */
void mc_http_reply_json(mc_http_req_t *req, int status, json_t *body);
/* Reply with bytes of the given content type (copied). */
void mc_http_reply(mc_http_req_t *req, int status, const char *content_type, const char *body,
                   size_t len);
/* Reply {"error":{"code":code,"message":message,"field":field-or-null}}. */
void mc_http_reply_error(mc_http_req_t *req, int status, const char *code, const char *message,
                         const char *field);
/* Add a response header before replying (copied). */
void mc_http_set_header(mc_http_req_t *req, const char *name, const char *value);

#endif
