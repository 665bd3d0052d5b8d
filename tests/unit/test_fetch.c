/* test_fetch.c: outbound HTTP through mc_fetch against our own HTTP server, both on
 * one loop in the test thread (so nothing blocks: a blocking client would deadlock
 * the server). Each test ends by destroying the fetcher and the server and requiring
 * uv_loop_close() to succeed. The SMTP path is tested end to end against the
 * sandbox's SMTP sink in tests/system/test_notify.py. */
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "error.h"
#include "fetch.h"
#include "http.h"
#include "metrics.h"
#include "unit.h"

typedef struct {
    uv_loop_t loop;
    mc_http_t *http;
    mc_fetch_t *fetch;
    int port;
    int calls;
    int expect; /* callbacks to wait for before closing */
    int status[8];
    long code[8];
    char body[8][256];
    mc_http_req_t *held; /* a request left without a reply */
} fx_t;

static void hello(mc_http_req_t *req, void *arg)
{
    (void)arg;
    mc_http_reply_json(req, 200, json_pack("{s:s}", "greeting", "xin chào"));
}

static void echo(mc_http_req_t *req, void *arg)
{
    (void)arg;
    size_t len;
    const char *body = mc_http_body(req, &len);
    const char *h = mc_http_header(req, "x-test");
    char *text = mc_sprintf("%s|%.*s|%s", mc_http_method(req), (int)len, body, h ? h : "");
    mc_http_reply(req, 201, "text/plain", text, strlen(text));
    free(text);
}

static void unavailable(mc_http_req_t *req, void *arg)
{
    (void)arg;
    mc_http_reply_error(req, 503, "unavailable", "down for the test", NULL);
}

static void never(mc_http_req_t *req, void *arg)
{
    fx_t *fx = arg;
    fx->held = req; /* answered 503 by mc_http_destroy */
}

static const mc_route_t routes[] = {
    {"GET", "/hello", hello},      {"POST", "/echo", echo},  {"PUT", "/echo", echo},
    {"GET", "/down", unavailable}, {"GET", "/never", never},
};

static void close_all(fx_t *fx)
{
    mc_fetch_destroy(&fx->fetch);
    mc_http_destroy(&fx->http);
    if (fx->held) { /* its late reply is dropped; that frees it */
        mc_http_reply(fx->held, 200, "text/plain", "late", 4);
        fx->held = NULL;
    }
}

static void on_done(int status, long code, const char *body, size_t len, void *arg)
{
    fx_t *fx = arg;
    int i = fx->calls++;
    if (i < 8) {
        fx->status[i] = status;
        fx->code[i] = code;
        snprintf(fx->body[i], sizeof fx->body[i], "%.*s", (int)len, body);
    }
    if (fx->calls == fx->expect)
        close_all(fx);
}

static void fx_start(fx_t *fx)
{
    memset(fx, 0, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    fx->http = mc_http_new(&fx->loop, "127.0.0.1", 0, 1 << 16, fx);
    assert_non_null(fx->http);
    mc_http_routes(fx->http, routes, MC_COUNT(routes));
    fx->port = mc_http_port(fx->http);
    fx->fetch = mc_fetch_new(&fx->loop);
}

static void fx_finish(fx_t *fx)
{
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    mc_metrics_reset();
}

static char *url(fx_t *fx, const char *path)
{
    return mc_sprintf("http://127.0.0.1:%d%s", fx->port, path);
}

static void get_and_post(void **state)
{
    (void)state;
    fx_t fx;
    fx_start(&fx);
    fx.expect = 3;
    char *u1 = url(&fx, "/hello"), *u2 = url(&fx, "/echo"), *u3 = url(&fx, "/echo");
    const char *const headers[] = {"X-Test: một", "Content-Type: text/plain", NULL};
    mc_fetch_http(fx.fetch, "GET", u1, NULL, NULL, 0, 5000, on_done, &fx);
    mc_fetch_http(fx.fetch, "POST", u2, headers, "abc", 3, 5000, on_done, &fx);
    mc_fetch_http(fx.fetch, "PUT", u3, headers, "xyz", 3, 5000, on_done, &fx);
    assert_int_equal(mc_fetch_active(fx.fetch), 3);
    assert_int_equal(fx.calls, 0); /* never called back from inside the call */
    free(u1);
    free(u2);
    free(u3);
    fx_finish(&fx);
    assert_int_equal(fx.calls, 3);
    int seen_get = 0, seen_post = 0, seen_put = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fx.status[i], MC_OK);
        if (fx.code[i] == 200 && strstr(fx.body[i], "xin chào"))
            seen_get++;
        if (fx.code[i] == 201 && strcmp(fx.body[i], "POST|abc|một") == 0)
            seen_post++;
        if (fx.code[i] == 201 && strcmp(fx.body[i], "PUT|xyz|một") == 0)
            seen_put++;
    }
    assert_int_equal(seen_get + seen_post + seen_put, 3);
}

static void http_error_is_an_answer(void **state)
{
    (void)state;
    fx_t fx;
    fx_start(&fx);
    fx.expect = 1;
    char *u = url(&fx, "/down");
    mc_fetch_http(fx.fetch, "GET", u, NULL, NULL, 0, 5000, on_done, &fx);
    free(u);
    fx_finish(&fx);
    assert_int_equal(fx.status[0], MC_OK);
    assert_int_equal(fx.code[0], 503);
    assert_non_null(strstr(fx.body[0], "unavailable"));
}

static void refused_is_unavailable(void **state)
{
    (void)state;
    fx_t fx;
    fx_start(&fx);
    fx.expect = 2;
    /* A port that was just free: bind one, note it, close it. */
    uv_tcp_t probe;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&fx.loop, &probe);
    uv_tcp_bind(&probe, (struct sockaddr *)&sa, 0);
    int namelen = sizeof sa;
    uv_tcp_getsockname(&probe, (struct sockaddr *)&sa, &namelen);
    uv_close((uv_handle_t *)&probe, NULL);
    char *u = mc_sprintf("http://127.0.0.1:%d/x", ntohs(sa.sin_port));
    char *s = mc_sprintf("smtp://127.0.0.1:%d", ntohs(sa.sin_port));
    const char *const to[] = {"a@example.vn", NULL};
    mc_fetch_http(fx.fetch, "POST", u, NULL, "{}", 2, 5000, on_done, &fx);
    mc_fetch_smtp(fx.fetch, s, "motcua@example.gov.vn", to, "Subject: x\r\n\r\nx\r\n", 5000,
                  on_done, &fx);
    free(u);
    free(s);
    fx_finish(&fx);
    assert_int_equal(fx.status[0], MC_EUNAVAIL);
    assert_int_equal(fx.status[1], MC_EUNAVAIL);
    assert_true(strlen(fx.body[0]) > 0);
}

static void timeout_after_connect(void **state)
{
    (void)state;
    fx_t fx;
    fx_start(&fx);
    fx.expect = 1;
    char *u = url(&fx, "/never");
    mc_fetch_http(fx.fetch, "GET", u, NULL, NULL, 0, 300, on_done, &fx);
    free(u);
    fx_finish(&fx);
    assert_int_equal(fx.status[0], MC_ETIMEOUT);
}

static void on_destroy_timer(uv_timer_t *t)
{
    fx_t *fx = t->data;
    uv_close((uv_handle_t *)t, NULL);
    close_all(fx); /* the request to /never is still in flight */
}

static void destroy_cancels_in_flight(void **state)
{
    (void)state;
    fx_t fx;
    fx_start(&fx);
    fx.expect = 99; /* closed by the timer, not by a callback */
    char *u = url(&fx, "/never");
    mc_fetch_http(fx.fetch, "GET", u, NULL, NULL, 0, 10000, on_done, &fx);
    free(u);
    uv_timer_t t;
    uv_timer_init(&fx.loop, &t);
    t.data = &fx;
    uv_timer_start(&t, on_destroy_timer, 200, 0);
    fx_finish(&fx);
    assert_int_equal(fx.calls, 1);
    assert_int_equal(fx.status[0], MC_ECLOSED);
}

static void destroy_from_callback_and_twice(void **state)
{
    (void)state;
    fx_t fx;
    fx_start(&fx);
    fx.expect = 1; /* the first answer destroys everything; the second is cancelled */
    char *u1 = url(&fx, "/hello"), *u2 = url(&fx, "/never");
    mc_fetch_http(fx.fetch, "GET", u2, NULL, NULL, 0, 10000, on_done, &fx);
    mc_fetch_http(fx.fetch, "GET", u1, NULL, NULL, 0, 10000, on_done, &fx);
    free(u1);
    free(u2);
    fx_finish(&fx);
    assert_int_equal(fx.calls, 2);
    assert_int_equal(fx.status[0], MC_OK);
    assert_int_equal(fx.status[1], MC_ECLOSED);
    mc_fetch_destroy(&fx.fetch); /* NULL already: safe */
    assert_null(fx.fetch);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(get_and_post),
    cmocka_unit_test(http_error_is_an_answer),
    cmocka_unit_test(refused_is_unavailable),
    cmocka_unit_test(timeout_after_connect),
    cmocka_unit_test(destroy_cancels_in_flight),
    cmocka_unit_test(destroy_from_callback_and_twice),
};

MC_TEST_GROUP(fetch, tests, NULL, NULL);
