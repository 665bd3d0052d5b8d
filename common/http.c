/* http.c: the HTTP/1.1 server of every service, h2o 2.2 on the service's libuv loop.
 *
 * Design. h2o parses requests and writes responses; routing, limits, JSON errors and
 * metrics are ours. One h2o handler on "/" receives every request, matches it against
 * the route table and wraps it in an mc_http_req_t.
 *
 * Request lifetime. A handler may reply long after it returned (after a database
 * round trip), and by then h2o may have freed its request. So the wrapper is a heap
 * object with two owners, counted in `refs`: h2o, which lets go when it clears the
 * request's memory pool (a shared entry in that pool calls us back), and the handler,
 * which lets go with its one reply. Everything a handler may read (method, path,
 * captures, query, headers, body) is copied into the wrapper's own pool, so it stays
 * valid until the reply whatever h2o does. A reply to a request h2o no longer holds
 * is dropped and only frees the wrapper.
 *
 * Shutdown comes in two steps. mc_http_stop() is the graceful one: it closes the
 * listener, so new connections are refused by the kernel, and sets h2o's
 * shutdown_requested, so every response from then on says "Connection: close". A
 * request arriving on a connection that was already open gets 503 at once; a request
 * already with its handler (in `pending`) is left alone, and its reply goes out as
 * usual. When `pending` empties, the `drain` timer is restarted at 0 ms so that the
 * caller's callback runs from the loop, never from inside a handler's reply; until
 * then the same timer is the deadline (DRAIN_TIMEOUT_MS) after which the callback runs
 * anyway and the requests left behind are logged. "Replied" means handed to h2o: the
 * bytes may still be in the socket's write queue, and mc_http_destroy() lets them go.
 *
 * h2o 2.2 has no call that closes its connections, so mc_http_destroy() does it from
 * outside: it closes the listener if mc_http_stop() has not, answers every request
 * still waiting for its handler with 503 and "Connection: close", and shuts down the
 * read side of every socket so that h2o, on reading end-of-file, closes each idle
 * connection itself. When the listener, the drain timer and the last connection handle
 * are closed the h2o context is disposed; its timers are closed with no callback, so
 * the server's memory is freed two closing passes later, once libuv is surely done
 * with them. Afterwards uv_loop_close() succeeds.
 *
 * What h2o 2.2 does not tell us: it stops reading while a request is being handled,
 * so a client that hangs up is only noticed when the reply is written (the write
 * fails, the connection closes; the handler's work is not cancelled). Requests h2o
 * refuses itself (malformed HTTP, bodies beyond twice the limit) never reach the
 * route table and are not counted in the metrics. */
#include "http.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o.h>

#include "log.h"
#include "metrics.h"

#define MAX_CAPTURES 8
/* How long mc_http_stop waits for the handlers of requests in flight. */
#define DRAIN_TIMEOUT_MS 10000

typedef struct {
    const char *name;
    const char *value;
} pair_t;

/* One accepted connection. h2o's socket wraps the uv handle and takes over its
 * `data` pointer, so we get back here with container_of. */
typedef struct conn {
    uv_tcp_t tcp;
    mc_http_t *http;
    struct conn *prev, *next;
} conn_t;

typedef struct {
    h2o_handler_t super;
    mc_http_t *http;
} handler_t;

struct mc_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_idle_t reaper[2]; /* closed one after the other to free us late enough */
    uv_timer_t drain;    /* mc_http_stop's deadline, then the turn that calls `drained` */
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    const mc_route_t **routes;
    size_t nroutes;
    size_t max_body;
    void *arg;
    int port;
    int listening;  /* the listener handle is not closed yet */
    int drain_open; /* the drain timer handle is not closed yet */
    int stopping;   /* mc_http_stop or mc_http_destroy was called: new requests get 503 */
    int closing;    /* mc_http_destroy was called */
    void (*drained)(void *arg); /* mc_http_stop's callback; NULL once called or cancelled */
    void *drained_arg;
    conn_t *conns;
    mc_http_req_t *pending; /* requests h2o holds that have no reply yet */
};

struct mc_http_req {
    h2o_mem_pool_t pool; /* the copies below: freed with the wrapper */
    h2o_req_t *h2o;      /* NULL once answered or once h2o let go */
    mc_http_t *http;     /* only while in http->pending */
    mc_http_req_t *prev, *next;
    int refs;
    int replied;
    const char *route_label; /* route="<pattern>" */
    const char *method;
    const char *path;
    const char *body;
    size_t body_len;
    pair_t *params, *query, *headers, *out;
    size_t nparams, nquery, nheaders, nout, out_cap;
    uint64_t start_ns;
};

typedef struct {
    const char *name; /* inside the pattern, not terminated */
    size_t name_len;
    const char *value; /* inside the raw path, not terminated */
    size_t value_len;
} capture_t;

static const char json_content_type[] = "application/json";

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */

static char *pool_strndup(h2o_mem_pool_t *pool, const char *s, size_t n)
{
    char *p = h2o_mem_alloc_pool(pool, n + 1);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decoding; '+' means a space only in a query string. A malformed escape
 * is kept as it came rather than refusing the request. */
static char *url_decode(h2o_mem_pool_t *pool, const char *s, size_t n, int plus_is_space)
{
    char *out = h2o_mem_alloc_pool(pool, n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hex_value((unsigned char)s[i + 1])) >= 0 &&
            (lo = hex_value((unsigned char)s[i + 2])) >= 0) {
            *o++ = (char)(hi << 4 | lo);
            i += 2;
        } else if (s[i] == '+' && plus_is_space) {
            *o++ = ' ';
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

/* The label route="<pattern>"; a label value escapes backslash, quote and newline. */
static char *route_label(h2o_mem_pool_t *pool, const char *s)
{
    size_t n = sizeof("route=\"\"");
    for (const char *p = s; *p; p++)
        n += (*p == '\\' || *p == '"' || *p == '\n') ? 2 : 1;
    char *out = h2o_mem_alloc_pool(pool, n), *o = out;
    memcpy(o, "route=\"", 7);
    o += 7;
    for (const char *p = s; *p; p++) {
        if (*p == '\\' || *p == '"') {
            *o++ = '\\';
            *o++ = *p;
        } else if (*p == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else {
            *o++ = *p;
        }
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

/* ------------------------------------------------------------------ */
/* Routing                                                            */

/* Match a pattern segment by segment against the raw (still percent-encoded) path,
 * so that an encoded '/' inside a capture does not split it. A capture matches one
 * non-empty segment. */
static int route_match(const char *pattern, const char *path, size_t path_len, capture_t *caps,
                       size_t *ncaps)
{
    const char *p = pattern, *q = path, *qend = path + path_len;
    size_t n = 0;
    if (*p != '/' || q == qend || *q != '/')
        return 0;
    for (;;) {
        p++, q++; /* past the '/' */
        const char *pe = strchr(p, '/');
        if (!pe)
            pe = p + strlen(p);
        const char *qe = memchr(q, '/', (size_t)(qend - q));
        if (!qe)
            qe = qend;
        size_t plen = (size_t)(pe - p), qlen = (size_t)(qe - q);
        if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
            if (qlen == 0)
                return 0;
            assert(n < MAX_CAPTURES && "too many captures in a route pattern");
            caps[n++] = (capture_t){p + 1, plen - 2, q, qlen};
        } else if (plen != qlen || memcmp(p, q, plen) != 0) {
            return 0;
        }
        p = pe, q = qe;
        if (*p == '\0' || q == qend) {
            if (*p != '\0' || q != qend)
                return 0;
            *ncaps = n;
            return 1;
        }
    }
}

/* The route for method and path. When the path is known under other methods only,
 * returns NULL, lists them in *allow (pool memory) for the 405 and gives the first
 * such pattern in *known (for the metrics label). */
static const mc_route_t *route_find(mc_http_t *http, h2o_iovec_t method, const char *path,
                                    size_t path_len, capture_t *caps, size_t *ncaps,
                                    h2o_mem_pool_t *pool, const char **allow, const char **known)
{
    char *list = NULL;
    size_t list_len = 0;
    *allow = NULL;
    *known = NULL;
    for (size_t i = 0; i < http->nroutes; i++) {
        const mc_route_t *r = http->routes[i];
        capture_t c[MAX_CAPTURES];
        size_t nc = 0;
        if (!route_match(r->pattern, path, path_len, c, &nc))
            continue;
        if (strlen(r->method) == method.len && memcmp(r->method, method.base, method.len) == 0) {
            memcpy(caps, c, nc * sizeof(*c));
            *ncaps = nc;
            return r;
        }
        if (!*known)
            *known = r->pattern;
        size_t mlen = strlen(r->method);
        char *grown = h2o_mem_alloc_pool(pool, list_len + mlen + 3);
        if (list_len) {
            memcpy(grown, list, list_len);
            memcpy(grown + list_len, ", ", 2);
            list_len += 2;
        }
        memcpy(grown + list_len, r->method, mlen + 1);
        list = grown;
        list_len += mlen;
    }
    *allow = list;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Request wrapper                                                    */

static void on_drain(uv_timer_t *timer);

/* The last request in flight of a server being stopped wakes the drain timer; the
 * callback then runs from the loop, after the reply has been handed to h2o. */
static void req_unlink(mc_http_req_t *w)
{
    mc_http_t *http = w->http;
    if (!http)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        http->pending = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->http = NULL;
    if (!http->pending && http->drained)
        uv_timer_start(&http->drain, on_drain, 0, 0);
}

/* From here on nothing is sent through h2o for this wrapper. */
static void req_detach(mc_http_req_t *w)
{
    w->h2o = NULL;
    req_unlink(w);
}

static void req_release(mc_http_req_t *w)
{
    assert(w->refs > 0);
    if (--w->refs > 0)
        return;
    assert(!w->http);
    h2o_mem_clear_pool(&w->pool);
    free(w);
}

/* h2o clears the request's pool: the request is over for h2o (answered and
 * written, or the connection closed). */
static void on_h2o_dispose(void *p)
{
    mc_http_req_t *w = *(mc_http_req_t **)p;
    req_detach(w);
    req_release(w);
}

static void parse_query(mc_http_req_t *w, const char *q, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += q[i] == '&';
    w->query = h2o_mem_alloc_pool(&w->pool, n * sizeof(pair_t));
    const char *end = q + len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        if (!amp)
            amp = end;
        if (amp > q) {
            const char *eq = memchr(q, '=', (size_t)(amp - q));
            const char *kend = eq ? eq : amp;
            pair_t *pr = &w->query[w->nquery++];
            pr->name = url_decode(&w->pool, q, (size_t)(kend - q), 1);
            pr->value = eq ? url_decode(&w->pool, eq + 1, (size_t)(amp - eq - 1), 1) : "";
        }
        q = amp + 1;
    }
}

/* Copy what a handler may read, since h2o's memory may be gone by the time an
 * asynchronous handler looks at it. */
static mc_http_req_t *req_new(mc_http_t *http, h2o_req_t *req, const char *route_pattern,
                              size_t path_len, const capture_t *caps, size_t ncaps)
{
    mc_http_req_t *w = mc_new(mc_http_req_t);
    h2o_mem_init_pool(&w->pool);
    w->refs = 2; /* h2o and the handler */
    w->h2o = req;
    w->http = http;
    w->next = http->pending;
    if (w->next)
        w->next->prev = w;
    http->pending = w;
    mc_http_req_t **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), on_h2o_dispose);
    *slot = w;
    w->start_ns = uv_hrtime();

    h2o_mem_pool_t *pool = &w->pool;
    w->route_label = route_label(pool, route_pattern);
    w->method = pool_strndup(pool, req->method.base, req->method.len);
    w->path = pool_strndup(pool, req->path.base, path_len);

    w->params = h2o_mem_alloc_pool(pool, (ncaps ? ncaps : 1) * sizeof(pair_t));
    for (size_t i = 0; i < ncaps; i++) {
        w->params[i].name = pool_strndup(pool, caps[i].name, caps[i].name_len);
        w->params[i].value = url_decode(pool, caps[i].value, caps[i].value_len, 0);
    }
    w->nparams = ncaps;

    if (req->query_at != SIZE_MAX)
        parse_query(w, req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);

    /* h2o keeps Host and Content-Length out of its header list. */
    w->headers = h2o_mem_alloc_pool(pool, (req->headers.size + 2) * sizeof(pair_t));
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        w->headers[w->nheaders].name = pool_strndup(pool, h->name->base, h->name->len);
        w->headers[w->nheaders++].value = pool_strndup(pool, h->value.base, h->value.len);
    }
    if (req->authority.base) {
        w->headers[w->nheaders].name = "host";
        w->headers[w->nheaders++].value =
            pool_strndup(pool, req->authority.base, req->authority.len);
    }
    if (req->entity.base) {
        char len[32];
        snprintf(len, sizeof len, "%zu", req->entity.len);
        w->headers[w->nheaders].name = "content-length";
        w->headers[w->nheaders++].value = pool_strndup(pool, len, strlen(len));
    }

    /* The body is only copied when it will be handed to a handler. */
    w->body = "";
    if (req->entity.base && req->entity.len <= http->max_body) {
        w->body = pool_strndup(pool, req->entity.base, req->entity.len);
        w->body_len = req->entity.len;
    }
    return w;
}

/* ------------------------------------------------------------------ */
/* Replies                                                            */

static void record(const mc_http_req_t *w, int status)
{
    char *labels = mc_sprintf("%s,status=\"%d\"", w->route_label, status);
    mc_counter_inc(mc_counter("motcua_http_requests_total",
                              "HTTP requests answered, by route pattern and status.", labels));
    mc_histogram_observe(
        mc_histogram("motcua_http_request_seconds",
                     "Time from a request's arrival to its reply, by route pattern.",
                     w->route_label, NULL, 0),
        (double)(uv_hrtime() - w->start_ns) / 1e9);
    free(labels);
}

static void send_response(h2o_req_t *req, int status, const char *content_type, const pair_t *hdrs,
                          size_t nhdrs, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    req->res.content_length = len;
    /* A server being stopped lets no connection linger for another request. */
    if (req->conn->ctx->shutdown_requested)
        req->http1_is_persistent = 0;
    int has_type = 0;
    for (size_t i = 0; i < nhdrs; i++) {
        /* Both strings must live as long as h2o's request, not our wrapper. */
        h2o_iovec_t name = h2o_strdup(&req->pool, hdrs[i].name, SIZE_MAX);
        h2o_iovec_t value = h2o_strdup(&req->pool, hdrs[i].value, SIZE_MAX);
        h2o_strtolower(name.base, name.len);
        has_type |= h2o_memis(name.base, name.len, H2O_STRLIT("content-type"));
        h2o_add_header_by_str(&req->pool, &req->res.headers, name.base, name.len, 1, NULL,
                              value.base, value.len);
    }
    if (content_type && !has_type) {
        h2o_iovec_t v = h2o_strdup(&req->pool, content_type, SIZE_MAX);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, v.base, v.len);
    }
    h2o_send_inline(req, body, len);
}

/* The error document; never NULL (a message that is not UTF-8 cannot make a
 * JSON string, and the client still deserves its status). */
static char *error_document(const char *code, const char *message, const char *field)
{
    json_t *doc = json_pack("{s:{s:s, s:s, s:s?}}", "error", "code", code, "message",
                            message ? message : "", "field", field);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text)
        text = mc_strdup("{\"error\":{\"code\":\"internal\",\"message\":\"unencodable error\","
                         "\"field\":null}}");
    return text;
}

static void reply(mc_http_req_t *w, int status, const char *content_type, const char *body,
                  size_t len)
{
    assert(w && !w->replied && "exactly one reply per request");
    assert(status >= 100 && status <= 999);
    w->replied = 1;
    h2o_req_t *req = w->h2o;
    if (req) {
        req_detach(w);
        record(w, status);
        send_response(req, status, content_type, w->out, w->nout, body, len);
    }
    req_release(w);
}

/* mc_http_destroy's answer for a request whose handler has not replied yet; the
 * handler's later reply is then dropped. */
static void reply_unavailable(mc_http_req_t *w)
{
    h2o_req_t *req = w->h2o;
    req_detach(w);
    record(w, 503);
    char *doc = error_document("unavailable", "the service is shutting down", NULL);
    send_response(req, 503, json_content_type, NULL, 0, doc, strlen(doc));
    free(doc);
}

void mc_http_reply(mc_http_req_t *req, int status, const char *content_type, const char *body,
                   size_t len)
{
    reply(req, status, content_type, body ? body : "", body ? len : 0);
}

void mc_http_reply_json(mc_http_req_t *req, int status, json_t *body)
{
    assert(body);
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(body);
    if (!text) {
        mc_error("http: reply to %s %s could not be encoded as JSON", req->method, req->path);
        mc_http_reply_error(req, 500, "internal", "the reply could not be encoded", NULL);
        return;
    }
    reply(req, status, json_content_type, text, strlen(text));
    free(text);
}

void mc_http_reply_error(mc_http_req_t *req, int status, const char *code, const char *message,
                         const char *field)
{
    assert(code);
    char *doc = error_document(code, message ? message : reason_phrase(status), field);
    reply(req, status, json_content_type, doc, strlen(doc));
    free(doc);
}

void mc_http_set_header(mc_http_req_t *req, const char *name, const char *value)
{
    assert(req && !req->replied && name && *name && value);
    if (req->nout == req->out_cap) {
        size_t cap = req->out_cap ? req->out_cap * 2 : 4;
        pair_t *grown = h2o_mem_alloc_pool(&req->pool, cap * sizeof(pair_t));
        if (req->nout)
            memcpy(grown, req->out, req->nout * sizeof(pair_t));
        req->out = grown;
        req->out_cap = cap;
    }
    /* A value may carry client data (a Location built from input): line breaks
     * would let it forge headers, so they become spaces. */
    char *v = pool_strndup(&req->pool, value, strlen(value));
    for (char *p = v; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    req->out[req->nout].name = pool_strndup(&req->pool, name, strlen(name));
    req->out[req->nout++].value = v;
}

/* ------------------------------------------------------------------ */
/* Request accessors                                                  */

static const char *pair_find(const pair_t *pairs, size_t n, const char *name, int nocase)
{
    for (size_t i = 0; i < n; i++)
        if ((nocase ? strcasecmp(pairs[i].name, name) : strcmp(pairs[i].name, name)) == 0)
            return pairs[i].value;
    return NULL;
}

const char *mc_http_method(const mc_http_req_t *req)
{
    return req->method;
}

const char *mc_http_path(const mc_http_req_t *req)
{
    return req->path;
}

const char *mc_http_param(mc_http_req_t *req, const char *name)
{
    return pair_find(req->params, req->nparams, name, 0);
}

const char *mc_http_query(mc_http_req_t *req, const char *name)
{
    return pair_find(req->query, req->nquery, name, 0);
}

const char *mc_http_header(mc_http_req_t *req, const char *name)
{
    return pair_find(req->headers, req->nheaders, name, 1);
}

const char *mc_http_body(const mc_http_req_t *req, size_t *len)
{
    if (len)
        *len = req->body_len;
    return req->body;
}

json_t *mc_http_json_body(mc_http_req_t *req)
{
    assert(!req->replied);
    json_error_t err;
    json_t *doc = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &err);
    if (!doc) {
        char *msg = mc_sprintf("the body is not valid JSON: %s (line %d, column %d)", err.text,
                               err.line, err.column);
        mc_http_reply_error(req, 400, "invalid_json", msg, NULL);
        free(msg);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        mc_http_reply_error(req, 400, "invalid_json", "the body must be a JSON object", NULL);
        return NULL;
    }
    return doc;
}

/* ------------------------------------------------------------------ */
/* Dispatch                                                           */

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    mc_http_t *http = ((handler_t *)self)->http;
    size_t path_len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    capture_t caps[MAX_CAPTURES];
    size_t ncaps = 0;
    const char *allow, *known;
    const mc_route_t *route = route_find(http, req->method, req->path.base, path_len, caps, &ncaps,
                                         &req->pool, &allow, &known);
    const char *label = route ? route->pattern : known ? known : "unmatched";
    mc_http_req_t *w = req_new(http, req, label, path_len, caps, ncaps);

    if (http->stopping) {
        /* A request on a connection opened before mc_http_stop; send_response
         * closes the connection after it. */
        mc_http_reply_error(w, 503, "unavailable", "the service is shutting down", NULL);
    } else if (!route && allow) {
        mc_http_set_header(w, "Allow", allow);
        char *msg = mc_sprintf("%s is not allowed here; allowed: %s", w->method, allow);
        mc_http_reply_error(w, 405, "method_not_allowed", msg, NULL);
        free(msg);
    } else if (!route) {
        mc_http_reply_error(w, 404, "not_found", "no such resource", NULL);
    } else if (req->entity.base && req->entity.len > http->max_body) {
        char *msg = mc_sprintf("the body is larger than %zu bytes", http->max_body);
        mc_http_reply_error(w, 413, "payload_too_large", msg, NULL);
        free(msg);
    } else {
        route->fn(w, http->arg);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Connections and shutdown                                           */

static void on_reaped(uv_handle_t *handle)
{
    mc_http_t *http = mc_container_of(handle, mc_http_t, reaper[1]);
    free(http);
}

/* One closing pass after h2o_context_dispose: its timers, closed with no
 * callback in the same pass as reaper[0], may be finished after this runs. */
static void on_reaper_closed(uv_handle_t *handle)
{
    mc_http_t *http = mc_container_of(handle, mc_http_t, reaper[0]);
    uv_close((uv_handle_t *)&http->reaper[1], on_reaped);
}

static void maybe_finish(mc_http_t *http)
{
    if (!http->closing || http->listening || http->drain_open || http->conns)
        return;
    assert(!http->pending);
    h2o_context_dispose(&http->ctx);
    h2o_config_dispose(&http->config);
    free(http->routes);
    uv_close((uv_handle_t *)&http->reaper[0], on_reaper_closed);
}

static void on_conn_closed(uv_handle_t *handle)
{
    conn_t *c = mc_container_of(handle, conn_t, tcp);
    mc_http_t *http = c->http;
    if (c->prev)
        c->prev->next = c->next;
    else
        http->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
    maybe_finish(http);
}

static void on_listener_closed(uv_handle_t *handle)
{
    mc_http_t *http = mc_container_of(handle, mc_http_t, listener);
    http->listening = 0;
    maybe_finish(http);
}

static void on_drain_closed(uv_handle_t *handle)
{
    mc_http_t *http = mc_container_of(handle, mc_http_t, drain);
    http->drain_open = 0;
    maybe_finish(http);
}

static size_t count_pending(const mc_http_t *http)
{
    size_t n = 0;
    for (const mc_http_req_t *w = http->pending; w; w = w->next)
        n++;
    return n;
}

/* Every request in flight has been answered, or the deadline passed. */
static void on_drain(uv_timer_t *timer)
{
    mc_http_t *http = mc_container_of(timer, mc_http_t, drain);
    assert(http->drained);
    size_t left = count_pending(http);
    if (left)
        mc_warn("http: %zu request(s) still unanswered after %d s; stopping without them "
                "(mc_http_destroy answers them 503)",
                left, DRAIN_TIMEOUT_MS / 1000);
    else
        mc_info("http: every request in flight has been answered");
    void (*drained)(void *) = http->drained;
    http->drained = NULL; /* called once, even if 503s empty `pending` again later */
    drained(http->drained_arg);
}

static void on_accept(uv_stream_t *listener, int status)
{
    mc_http_t *http = mc_container_of(listener, mc_http_t, listener);
    if (status < 0) {
        mc_warn("http: accept failed: %s", uv_strerror(status));
        return;
    }
    conn_t *c = mc_new(conn_t);
    c->http = http;
    c->next = http->conns;
    if (c->next)
        c->next->prev = c;
    http->conns = c;
    int rc = uv_tcp_init(http->loop, &c->tcp);
    assert(rc == 0);
    if ((rc = uv_accept(listener, (uv_stream_t *)&c->tcp)) != 0) {
        mc_warn("http: accept failed: %s", uv_strerror(rc));
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    /* h2o writes a response in one go; Nagle would only delay it. */
    uv_tcp_nodelay(&c->tcp, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
    h2o_accept(&http->accept_ctx, sock);
}

/* Bind before touching the loop, so that a failure leaves nothing to close. */
static int bind_listener(const char *host, int port, int *port_out)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    const char *node = host && *host && strcmp(host, "*") != 0 ? host : NULL;
    int rc = getaddrinfo(node, service, &hints, &res);
    if (rc != 0) {
        mc_error("http: cannot resolve %s: %s", host ? host : "*", gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        mc_error("http: cannot listen on %s:%d: %s", host ? host : "*", port, strerror(err));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sslen);
    *port_out = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

mc_http_t *mc_http_new(uv_loop_t *loop, const char *host, int port, size_t max_body, void *arg)
{
    assert(loop);
    int bound_port = 0;
    int fd = bind_listener(host, port, &bound_port);
    if (fd < 0)
        return NULL;

    /* Writing to a connection the peer has reset raises SIGPIPE; a server must
     * see EPIPE instead, and libuv does not ask for that on its own. */
    signal(SIGPIPE, SIG_IGN);

    mc_http_t *http = mc_new(mc_http_t);
    http->loop = loop;
    http->max_body = max_body;
    http->arg = arg;
    http->port = bound_port;

    h2o_config_init(&http->config);
    http->config.server_name = h2o_iovec_init(H2O_STRLIT("motcua"));
    /* Bodies a little over max_body reach on_req and get our JSON 413; h2o refuses
     * the absurd ones itself (plain text, connection closed) before buffering them. */
    http->config.max_request_entity_size =
        max_body > SIZE_MAX / 4 ? SIZE_MAX / 2 : max_body * 2 + 65536;
    /* Connections are HTTP/1.1 only: shutdown relies on h2o's HTTP/1 behaviour. */
    http->config.http1.upgrade_to_http2 = 0;
    h2o_hostconf_t *hostconf =
        h2o_config_register_host(&http->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    handler_t *handler = (handler_t *)h2o_create_handler(pathconf, sizeof(*handler));
    handler->super.on_req = on_req;
    handler->http = http;
    h2o_context_init(&http->ctx, loop, &http->config);
    http->accept_ctx.ctx = &http->ctx;
    http->accept_ctx.hosts = http->config.hosts;

    uv_idle_init(loop, &http->reaper[0]);
    uv_idle_init(loop, &http->reaper[1]);
    uv_timer_init(loop, &http->drain);
    http->drain_open = 1;
    uv_tcp_init(loop, &http->listener);
    http->listening = 1;
    int rc = uv_tcp_open(&http->listener, fd);
    if (rc != 0)
        close(fd); /* not the handle's yet */
    else
        rc = uv_listen((uv_stream_t *)&http->listener, SOMAXCONN, on_accept);
    if (rc != 0) {
        mc_error("http: cannot listen on port %d: %s", bound_port, uv_strerror(rc));
        mc_http_destroy(&http); /* finishes when the loop runs */
        return NULL;
    }
    mc_info("http: listening on %s:%d", host && *host ? host : "*", bound_port);
    return http;
}

void mc_http_routes(mc_http_t *http, const mc_route_t *routes, size_t n)
{
    assert(http && !http->stopping);
    http->routes = mc_realloc(http->routes, (http->nroutes + n) * sizeof(*http->routes));
    for (size_t i = 0; i < n; i++) {
        assert(routes[i].method && routes[i].pattern && routes[i].pattern[0] == '/' &&
               routes[i].fn);
        http->routes[http->nroutes++] = &routes[i];
    }
}

int mc_http_port(const mc_http_t *http)
{
    return http->port;
}

void mc_http_stop(mc_http_t *http, void (*drained)(void *arg), void *arg)
{
    assert(http && drained);
    assert(!http->stopping && "mc_http_stop is called once, before mc_http_destroy");
    http->stopping = 1;
    http->drained = drained;
    http->drained_arg = arg;
    /* No keep-alive from here on: each connection closes after its next response. */
    http->ctx.shutdown_requested = 1;
    uv_close((uv_handle_t *)&http->listener, on_listener_closed);
    size_t n = count_pending(http);
    mc_info("http: stopped accepting connections; waiting for %zu request(s) in flight", n);
    uv_timer_start(&http->drain, on_drain, n ? DRAIN_TIMEOUT_MS : 0, 0);
}

void mc_http_destroy(mc_http_t **pp)
{
    if (!pp || !*pp)
        return;
    mc_http_t *http = *pp;
    *pp = NULL;
    http->stopping = 1;
    http->closing = 1;
    http->drained = NULL; /* a drain not over yet ends here, without its callback */
    /* h2o then answers pipelined requests with "Connection: close". */
    http->ctx.shutdown_requested = 1;
    if (!uv_is_closing((uv_handle_t *)&http->listener))
        uv_close((uv_handle_t *)&http->listener, on_listener_closed);
    uv_close((uv_handle_t *)&http->drain, on_drain_closed);
    while (http->pending)
        reply_unavailable(http->pending);
    /* End-of-file on the read side makes h2o close an idle connection itself; a
     * connection still writing reads it once the response is out. Writes are
     * unaffected, so the 503s above still reach their clients. */
    for (conn_t *c = http->conns; c; c = c->next) {
        uv_os_fd_t fd;
        if (!uv_is_closing((uv_handle_t *)&c->tcp) && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            shutdown(fd, SHUT_RD);
    }
}
