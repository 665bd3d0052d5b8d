/* test_http.c: the HTTP server over real loopback connections.
 *
 * Each test runs the server on its own loop in the test thread and a small blocking
 * client (plain sockets) on a second thread. The client records what it received;
 * the test thread checks it after the loop has ended, because cmocka's assertions
 * belong to the test thread. When the client is done it wakes the loop through a
 * uv_async, which destroys the server; every test then requires uv_loop_close() to
 * succeed, i.e. that the server closed every handle it opened. The graceful stop is
 * driven either by a handler (deterministic: while its own request is in flight) or
 * by the client through a second uv_async; its `drained` callback destroys the server,
 * as the services' shutdown does after the bus. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "http.h"
#include "mc.h"
#include "metrics.h"
#include "unit.h"

/* ------------------------------------------------------------------ */
/* A blocking client                                                  */

typedef struct {
    int status; /* 0 when no response was read */
    char head[4096];
    char body[8192];
    size_t body_len;
} response_t;

static int client_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0}; /* a broken server fails the test instead of hanging it */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One response: status line, headers, then Content-Length bytes of body (or up
 * to end-of-file without it). */
static int read_response(int fd, response_t *r)
{
    char buf[sizeof r->head + sizeof r->body];
    size_t len = 0;
    char *end = NULL;
    memset(r, 0, sizeof *r);
    while (!end) {
        if (len == sizeof buf - 1)
            return -1;
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head_len = (size_t)(end - buf) + 4;
    if (head_len >= sizeof r->head)
        return -1;
    memcpy(r->head, buf, head_len);
    r->head[head_len] = '\0';
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    long want = -1;
    const char *cl = strcasestr(r->head, "\r\ncontent-length:");
    if (cl)
        want = strtol(cl + strlen("\r\ncontent-length:"), NULL, 10);
    size_t have = len - head_len;
    memcpy(r->body, buf + head_len, have);
    while (want < 0 || have < (size_t)want) {
        if (have >= sizeof r->body - 1)
            return -1;
        ssize_t n = recv(fd, r->body + have, sizeof r->body - 1 - have, 0);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        have += (size_t)n;
    }
    r->body_len = have;
    r->body[have] = '\0';
    return 0;
}

/* Send a raw request on a new connection and read its response. */
static void request(int port, const char *raw, size_t raw_len, response_t *r)
{
    memset(r, 0, sizeof *r);
    int fd = client_connect(port);
    if (fd < 0)
        return;
    if (send_all(fd, raw, raw_len) == 0)
        read_response(fd, r);
    close(fd);
}

static void request_str(int port, const char *raw, response_t *r)
{
    request(port, raw, strlen(raw), r);
}

static const char *response_header(const response_t *r, const char *name, char *out, size_t outlen)
{
    char needle[128];
    snprintf(needle, sizeof needle, "\r\n%s:", name);
    const char *p = strcasestr(r->head, needle);
    if (!p)
        return NULL;
    p += strlen(needle);
    while (*p == ' ')
        p++;
    size_t n = strcspn(p, "\r");
    snprintf(out, outlen, "%.*s", (int)n, p);
    return out;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ */
/* The server side                                                    */

typedef struct fixture fixture_t;
typedef void (*client_fn)(fixture_t *fx);

struct fixture {
    uv_loop_t loop;
    mc_http_t *http;
    uv_async_t wake;     /* the client asks the loop to stop the server */
    uv_async_t stop;     /* the client asks the loop for mc_http_stop */
    uv_timer_t watchdog; /* stops everything if a test hangs */
    pthread_t thread;
    client_fn client;
    int port;
    atomic_int client_done;
    int timed_out;
    /* Loop thread. */
    int echo_calls;
    int late_replies;
    int drained_calls;
    int drained_in_stop;  /* drained_calls right after mc_http_stop returned */
    int replies_at_drain; /* late_replies when `drained` ran */
    uint64_t stop_ns, drained_ns;
    /* Client thread, read after join. */
    response_t res[4];
    double elapsed;
    int saw_eof;
    int refused;       /* a new connection was refused after the stop */
    int refused_after; /* ... and still after the drain */
};

enum { LATER_REPLY, LATER_DESTROY, LATER_STOP };

typedef struct {
    uv_timer_t timer;
    fixture_t *fx;
    mc_http_req_t *req;
    int action;
} later_t;

static void later_closed(uv_handle_t *handle)
{
    free(mc_container_of(handle, later_t, timer));
}

/* Like a service after its bus has stopped. */
static void on_drained(void *arg)
{
    fixture_t *fx = arg;
    fx->drained_calls++;
    fx->replies_at_drain = fx->late_replies;
    fx->drained_ns = uv_hrtime();
    mc_http_destroy(&fx->http);
}

static void graceful_stop(fixture_t *fx)
{
    if (!fx->http)
        return;
    fx->stop_ns = uv_hrtime();
    mc_http_stop(fx->http, on_drained, fx);
    fx->drained_in_stop = fx->drained_calls;
}

static void later_fire(uv_timer_t *timer)
{
    later_t *l = mc_container_of(timer, later_t, timer);
    if (l->action == LATER_REPLY) {
        mc_http_reply_json(l->req, 200, json_pack("{s:b}", "late", 1));
        l->fx->late_replies++;
    } else if (l->action == LATER_STOP) {
        graceful_stop(l->fx);
    } else {
        mc_http_destroy(&l->fx->http);
    }
    uv_close((uv_handle_t *)timer, later_closed);
}

static void later(fixture_t *fx, mc_http_req_t *req, int action, uint64_t ms)
{
    later_t *l = mc_new(later_t);
    l->fx = fx;
    l->req = req;
    l->action = action;
    uv_timer_init(&fx->loop, &l->timer);
    uv_timer_start(&l->timer, later_fire, ms, 0);
}

static void items_get(mc_http_req_t *req, void *arg)
{
    (void)arg;
    json_t *doc = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?}", "code",
                            mc_http_param(req, "code"), "item", mc_http_param(req, "item"), "q",
                            mc_http_query(req, "q"), "n", mc_http_query(req, "n"), "flag",
                            mc_http_query(req, "flag"), "missing", mc_http_query(req, "missing"),
                            "trace", mc_http_header(req, "X-TRACE-ID"), "method",
                            mc_http_method(req), "path", mc_http_path(req));
    mc_http_reply_json(req, 200, doc);
}

static void echo_post(mc_http_req_t *req, void *arg)
{
    fixture_t *fx = arg;
    fx->echo_calls++;
    json_t *doc = mc_http_json_body(req);
    if (!doc)
        return;
    mc_http_set_header(req, "Location", "/v1/echo/1");
    mc_http_reply_json(req, 201, doc);
}

static void slow_get(mc_http_req_t *req, void *arg)
{
    const char *ms = mc_http_query(req, "ms");
    later(arg, req, LATER_REPLY, ms ? strtoull(ms, NULL, 10) : 50);
}

/* The server goes away while this request waits; its reply comes after. */
static void hang_get(mc_http_req_t *req, void *arg)
{
    later(arg, NULL, LATER_DESTROY, 20);
    later(arg, req, LATER_REPLY, 150);
}

/* SIGTERM arrives while this request's work (a transaction, say) is under way. */
static void drain_get(mc_http_req_t *req, void *arg)
{
    later(arg, NULL, LATER_STOP, 20);
    later(arg, req, LATER_REPLY, 300);
}

/* The same, but the server is destroyed before the work is done. */
static void abandon_get(mc_http_req_t *req, void *arg)
{
    later(arg, NULL, LATER_STOP, 20);
    later(arg, NULL, LATER_DESTROY, 40);
    later(arg, req, LATER_REPLY, 150);
}

static const mc_route_t routes[] = {
    {"GET", "/v1/dossiers/{code}/items/{item}", items_get},
    {"POST", "/v1/echo", echo_post},
    {"GET", "/v1/slow", slow_get},
    {"GET", "/v1/hang", hang_get},
    {"GET", "/v1/drain", drain_get},
    {"GET", "/v1/abandon", abandon_get},
};

static void on_wake(uv_async_t *async)
{
    fixture_t *fx = mc_container_of(async, fixture_t, wake);
    mc_http_destroy(&fx->http);
    if (atomic_load(&fx->client_done)) {
        uv_close((uv_handle_t *)&fx->wake, NULL);
        uv_close((uv_handle_t *)&fx->stop, NULL);
        uv_close((uv_handle_t *)&fx->watchdog, NULL);
    }
}

static void on_stop(uv_async_t *async)
{
    graceful_stop(mc_container_of(async, fixture_t, stop));
}

static void on_watchdog(uv_timer_t *timer)
{
    fixture_t *fx = mc_container_of(timer, fixture_t, watchdog);
    fx->timed_out = 1;
    mc_http_destroy(&fx->http);
}

/* Client side: ask the loop to stop the server. */
static void stop_server(fixture_t *fx)
{
    uv_async_send(&fx->wake);
}

static void *client_main(void *arg)
{
    fixture_t *fx = arg;
    fx->client(fx);
    atomic_store(&fx->client_done, 1);
    uv_async_send(&fx->wake);
    return NULL;
}

static void run(fixture_t *fx, size_t max_body, client_fn client)
{
    memset(fx, 0, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    fx->http = mc_http_new(&fx->loop, "127.0.0.1", 0, max_body, fx);
    assert_non_null(fx->http);
    mc_http_routes(fx->http, routes, MC_COUNT(routes));
    fx->port = mc_http_port(fx->http);
    assert_true(fx->port > 0);
    fx->client = client;
    uv_async_init(&fx->loop, &fx->wake, on_wake);
    uv_async_init(&fx->loop, &fx->stop, on_stop);
    uv_timer_init(&fx->loop, &fx->watchdog);
    uv_timer_start(&fx->watchdog, on_watchdog, 15000, 0);
    assert_int_equal(pthread_create(&fx->thread, NULL, client_main, fx), 0);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    pthread_join(fx->thread, NULL);
    assert_false(fx->timed_out);
    assert_null(fx->http);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static int reset_metrics(void **state)
{
    (void)state;
    mc_metrics_reset();
    return 0;
}

static json_t *body_json(const response_t *r)
{
    json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
    assert_non_null(doc);
    return doc;
}

static const char *str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* {"error":{"code":code,"message":"...","field":null}} */
static void assert_error(const response_t *r, int status, const char *code)
{
    assert_int_equal(r->status, status);
    char type[128];
    assert_non_null(response_header(r, "content-type", type, sizeof type));
    assert_string_equal(type, "application/json");
    json_t *doc = body_json(r);
    json_t *err = json_object_get(doc, "error");
    assert_true(json_is_object(err));
    assert_int_equal(json_object_size(err), 3);
    assert_string_equal(str(err, "code"), code);
    assert_true(json_is_string(json_object_get(err, "message")));
    assert_true(json_is_null(json_object_get(err, "field")));
    json_decref(doc);
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
/* Tests                                                              */

static void client_capture(fixture_t *fx)
{
    request_str(fx->port,
                "GET /v1/dossiers/HS%2F2026%20x/items/7?q=a%2Bb+c&n=&flag HTTP/1.1\r\n"
                "Host: localhost\r\nX-Trace-Id: t-1\r\nConnection: close\r\n\r\n",
                &fx->res[0]);
}

static void route_capture_and_query(void **state)
{
    (void)state;
    fixture_t fx;
    run(&fx, 1024, client_capture);
    assert_int_equal(fx.res[0].status, 200);
    json_t *doc = body_json(&fx.res[0]);
    assert_string_equal(str(doc, "code"), "HS/2026 x"); /* an encoded '/' stays in the capture */
    assert_string_equal(str(doc, "item"), "7");
    assert_string_equal(str(doc, "q"), "a+b c");
    assert_string_equal(str(doc, "n"), "");
    assert_string_equal(str(doc, "flag"), "");
    assert_true(json_is_null(json_object_get(doc, "missing")));
    assert_string_equal(str(doc, "trace"), "t-1");
    assert_string_equal(str(doc, "method"), "GET");
    assert_string_equal(str(doc, "path"), "/v1/dossiers/HS%2F2026%20x/items/7");
    json_decref(doc);
    assert_true(has_metric_line("motcua_http_requests_total{route=\"/v1/dossiers/{code}/items/"
                                "{item}\",status=\"200\"} 1"));
    assert_true(has_metric_line(
        "motcua_http_request_seconds_count{route=\"/v1/dossiers/{code}/items/{item}\"} 1"));
}

static void client_errors(fixture_t *fx)
{
    request_str(fx->port, "GET /v1/nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                &fx->res[0]);
    request_str(fx->port, "DELETE /v1/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                &fx->res[1]);
    /* A capture never matches an empty segment. */
    request_str(fx->port,
                "GET /v1/dossiers//items/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                &fx->res[2]);
}

static void unknown_path_and_wrong_method(void **state)
{
    (void)state;
    fixture_t fx;
    run(&fx, 1024, client_errors);
    assert_error(&fx.res[0], 404, "not_found");
    assert_error(&fx.res[1], 405, "method_not_allowed");
    char allow[64];
    assert_non_null(response_header(&fx.res[1], "allow", allow, sizeof allow));
    assert_string_equal(allow, "POST");
    assert_error(&fx.res[2], 404, "not_found");
    assert_true(
        has_metric_line("motcua_http_requests_total{route=\"unmatched\",status=\"404\"} 2"));
    assert_true(has_metric_line("motcua_http_requests_total{route=\"/v1/echo\",status=\"405\"} 1"));
    assert_int_equal(fx.echo_calls, 0);
}

static void post(fixture_t *fx, const char *body, response_t *r)
{
    char raw[1024];
    int n = snprintf(raw, sizeof raw,
                     "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     strlen(body), body);
    request(fx->port, raw, (size_t)n, r);
}

static void client_big(fixture_t *fx)
{
    char body[65 + 1];
    /* {"k":"xxx..."} of exactly 64 bytes, then 65. */
    snprintf(body, sizeof body, "{\"k\":\"%0*d\"}", 64 - 8, 0);
    post(fx, body, &fx->res[0]);
    snprintf(body, sizeof body, "{\"k\":\"%0*d\"}", 65 - 8, 0);
    post(fx, body, &fx->res[1]);
    /* Far beyond the limit: refused by h2o before the body is even sent. */
    request_str(fx->port, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n",
                &fx->res[2]);
}

static void body_over_limit(void **state)
{
    (void)state;
    fixture_t fx;
    run(&fx, 64, client_big);
    assert_int_equal(fx.res[0].status, 201);
    assert_error(&fx.res[1], 413, "payload_too_large");
    assert_int_equal(fx.res[2].status, 413);
    assert_int_equal(fx.echo_calls, 1); /* only the body within the limit reached it */
    assert_true(has_metric_line("motcua_http_requests_total{route=\"/v1/echo\",status=\"413\"} 1"));
}

static void client_json(fixture_t *fx)
{
    post(fx, "{\"a\":", &fx->res[0]);
    post(fx, "[1,2]", &fx->res[1]);
    post(fx, "{\"a\":1,\"b\":\"\xc4\x91\xc6\xa1n\"}", &fx->res[2]);
}

static void malformed_json_body(void **state)
{
    (void)state;
    fixture_t fx;
    run(&fx, 1024, client_json);
    assert_error(&fx.res[0], 400, "invalid_json");
    assert_error(&fx.res[1], 400, "invalid_json");
    assert_int_equal(fx.res[2].status, 201);
    char location[64];
    assert_non_null(response_header(&fx.res[2], "location", location, sizeof location));
    assert_string_equal(location, "/v1/echo/1");
    json_t *doc = body_json(&fx.res[2]);
    assert_int_equal(json_integer_value(json_object_get(doc, "a")), 1);
    assert_string_equal(str(doc, "b"), "\xc4\x91\xc6\xa1n");
    json_decref(doc);
}

static void client_slow(fixture_t *fx)
{
    double t0 = now_s();
    request_str(fx->port, "GET /v1/slow?ms=50 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                &fx->res[0]);
    fx->elapsed = now_s() - t0;
}

static void async_reply_from_timer(void **state)
{
    (void)state;
    fixture_t fx;
    run(&fx, 1024, client_slow);
    assert_int_equal(fx.res[0].status, 200);
    assert_string_equal(fx.res[0].body, "{\"late\":true}");
    assert_true(fx.elapsed >= 0.045);
    assert_int_equal(fx.late_replies, 1);
}

static void client_gone(fixture_t *fx)
{
    int fd = client_connect(fx->port);
    if (fd >= 0) {
        const char *raw = "GET /v1/slow?ms=100 HTTP/1.1\r\nHost: x\r\n\r\n";
        send_all(fd, raw, strlen(raw));
        usleep(20 * 1000); /* let the server start the request, then hang up */
        close(fd);
    }
    usleep(250 * 1000); /* the late reply meets a closed connection */
    request_str(fx->port, "GET /v1/slow?ms=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                &fx->res[0]);
}

static void client_disconnects_before_reply(void **state)
{
    (void)state;
    fixture_t fx;
    run(&fx, 1024, client_gone);
    assert_int_equal(fx.late_replies, 2);
    assert_int_equal(fx.res[0].status, 200); /* the server carried on */
}

static void client_hang(fixture_t *fx)
{
    int fd = client_connect(fx->port);
    if (fd < 0)
        return;
    const char *raw = "GET /v1/hang HTTP/1.1\r\nHost: x\r\n\r\n";
    if (send_all(fd, raw, strlen(raw)) == 0 && read_response(fd, &fx->res[0]) == 0) {
        char byte;
        fx->saw_eof = recv(fd, &byte, 1, 0) == 0;
    }
    close(fd);
}

static void destroy_with_pending_request(void **state)
{
    (void)state;
    fixture_t fx;
    run(&fx, 1024, client_hang);
    assert_error(&fx.res[0], 503, "unavailable");
    assert_true(fx.saw_eof);
    assert_int_equal(fx.late_replies, 1); /* dropped quietly: the wrapper outlived h2o's request */
}

static void client_idle(fixture_t *fx)
{
    int fd = client_connect(fx->port);
    if (fd < 0)
        return;
    const char *raw = "GET /v1/dossiers/a/items/b HTTP/1.1\r\nHost: x\r\n\r\n";
    if (send_all(fd, raw, strlen(raw)) == 0 && read_response(fd, &fx->res[0]) == 0) {
        /* The connection is now idle and kept alive; the server must close it. */
        stop_server(fx);
        char byte;
        fx->saw_eof = recv(fd, &byte, 1, 0) == 0;
    }
    close(fd);
}

static void destroy_closes_idle_connections(void **state)
{
    (void)state;
    fixture_t fx;
    run(&fx, 1024, client_idle); /* run() checks uv_loop_close() == 0 */
    assert_int_equal(fx.res[0].status, 200);
    char conn[32];
    assert_non_null(response_header(&fx.res[0], "connection", conn, sizeof conn));
    assert_string_equal(conn, "keep-alive");
    assert_true(fx.saw_eof);
}

static const char keep_alive_get[] = "GET /v1/dossiers/a/items/b HTTP/1.1\r\nHost: x\r\n\r\n";

/* Once the listener is closed, connecting fails at once (loopback answers RST). */
static int refused_within(int port, int ms)
{
    for (int waited = 0; waited <= ms; waited += 5) {
        int fd = client_connect(port);
        if (fd < 0)
            return 1;
        close(fd);
        usleep(5 * 1000);
    }
    return 0;
}

static int eof_next(int fd)
{
    char byte;
    return recv(fd, &byte, 1, 0) == 0;
}

static void client_drain(fixture_t *fx)
{
    /* An idle keep-alive connection, opened before the stop. */
    int idle = client_connect(fx->port);
    if (idle < 0 || send_all(idle, keep_alive_get, strlen(keep_alive_get)) != 0 ||
        read_response(idle, &fx->res[0]) != 0)
        goto out;
    /* The request in flight: its handler stops the server 20 ms in, replies at 300. */
    int busy = client_connect(fx->port);
    const char *raw = "GET /v1/drain HTTP/1.1\r\nHost: x\r\n\r\n";
    if (busy < 0 || send_all(busy, raw, strlen(raw)) != 0) {
        if (busy >= 0)
            close(busy);
        goto out;
    }
    fx->refused = refused_within(fx->port, 1000);
    /* A new request on the idle connection, during the drain. */
    if (send_all(idle, keep_alive_get, strlen(keep_alive_get)) == 0 &&
        read_response(idle, &fx->res[1]) == 0)
        fx->saw_eof = eof_next(idle);
    if (read_response(busy, &fx->res[2]) == 0 && eof_next(busy))
        fx->saw_eof++;
    close(busy);
    fx->refused_after = refused_within(fx->port, 0);
out:
    if (idle >= 0)
        close(idle);
}

static void stop_waits_for_requests_in_flight(void **state)
{
    (void)state;
    fixture_t fx;
    run(&fx, 1024, client_drain);
    char conn[32];
    assert_int_equal(fx.res[0].status, 200);
    assert_true(fx.refused);
    /* The late request on the old connection: refused, and the connection closed. */
    assert_error(&fx.res[1], 503, "unavailable");
    assert_non_null(response_header(&fx.res[1], "connection", conn, sizeof conn));
    assert_string_equal(conn, "close");
    /* The request in flight got its real reply, then its connection closed. */
    assert_int_equal(fx.res[2].status, 200);
    assert_string_equal(fx.res[2].body, "{\"late\":true}");
    assert_non_null(response_header(&fx.res[2], "connection", conn, sizeof conn));
    assert_string_equal(conn, "close");
    assert_int_equal(fx.saw_eof, 2);
    assert_true(fx.refused_after);
    /* Drained once, from the loop, after the reply and not before. */
    assert_int_equal(fx.drained_in_stop, 0);
    assert_int_equal(fx.drained_calls, 1);
    assert_int_equal(fx.replies_at_drain, 1);
    assert_true(fx.drained_ns - fx.stop_ns >= 250 * 1000000ull);
    assert_true(fx.drained_ns - fx.stop_ns < 2000 * 1000000ull); /* not by the 10 s deadline */
    assert_true(
        has_metric_line("motcua_http_requests_total{route=\"/v1/drain\",status=\"200\"} 1"));
    assert_true(has_metric_line(
        "motcua_http_requests_total{route=\"/v1/dossiers/{code}/items/{item}\",status=\"503\"} 1"));
}

static void client_idle_stop(fixture_t *fx)
{
    int fd = client_connect(fx->port);
    if (fd < 0)
        return;
    if (send_all(fd, keep_alive_get, strlen(keep_alive_get)) == 0 &&
        read_response(fd, &fx->res[0]) == 0) {
        /* Nothing in flight, one idle connection: drained at once, then destroyed. */
        uv_async_send(&fx->stop);
        fx->saw_eof = eof_next(fd);
        fx->refused = refused_within(fx->port, 0);
    }
    close(fd);
}

static void stop_with_nothing_in_flight(void **state)
{
    (void)state;
    fixture_t fx;
    run(&fx, 1024, client_idle_stop);
    assert_int_equal(fx.res[0].status, 200);
    assert_int_equal(fx.drained_in_stop, 0); /* never from inside mc_http_stop */
    assert_int_equal(fx.drained_calls, 1);
    assert_true(fx.drained_ns - fx.stop_ns < 100 * 1000000ull);
    assert_true(fx.saw_eof);
    assert_true(fx.refused);
}

static void client_abandon(fixture_t *fx)
{
    request_str(fx->port, "GET /v1/abandon HTTP/1.1\r\nHost: x\r\n\r\n", &fx->res[0]);
    usleep(200 * 1000); /* the handler's late reply comes and is dropped */
}

static void destroy_during_drain(void **state)
{
    (void)state;
    fixture_t fx;
    run(&fx, 1024, client_abandon);
    assert_error(&fx.res[0], 503, "unavailable");
    assert_int_equal(fx.drained_calls, 0); /* cancelled by the destroy */
    assert_int_equal(fx.late_replies, 1);
}

static void client_none(fixture_t *fx)
{
    (void)fx;
}

static void loop_closes_after_destroy(void **state)
{
    (void)state;
    fixture_t fx;
    run(&fx, 1024, client_none);
    /* And a port in use is refused with NULL, leaving the loop untouched. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    mc_http_t *a = mc_http_new(&loop, "127.0.0.1", 0, 16, NULL);
    assert_non_null(a);
    mc_http_t *b = mc_http_new(&loop, "127.0.0.1", mc_http_port(a), 16, NULL);
    assert_null(b);
    mc_http_destroy(&a);
    assert_null(a);
    mc_http_destroy(&a); /* safe twice */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(route_capture_and_query, reset_metrics),
    cmocka_unit_test_setup(unknown_path_and_wrong_method, reset_metrics),
    cmocka_unit_test_setup(body_over_limit, reset_metrics),
    cmocka_unit_test_setup(malformed_json_body, reset_metrics),
    cmocka_unit_test_setup(async_reply_from_timer, reset_metrics),
    cmocka_unit_test_setup(client_disconnects_before_reply, reset_metrics),
    cmocka_unit_test_setup(destroy_with_pending_request, reset_metrics),
    cmocka_unit_test_setup(destroy_closes_idle_connections, reset_metrics),
    cmocka_unit_test_setup(stop_waits_for_requests_in_flight, reset_metrics),
    cmocka_unit_test_setup(stop_with_nothing_in_flight, reset_metrics),
    cmocka_unit_test_setup(destroy_during_drain, reset_metrics),
    cmocka_unit_test_setup(loop_closes_after_destroy, reset_metrics),
};
MC_TEST_GROUP(http, tests, NULL, reset_metrics);
