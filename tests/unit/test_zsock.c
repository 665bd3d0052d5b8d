/* test_zsock.c: ZeroMQ sockets on a real libuv loop.
 *
 * Pairs of DEALER and ROUTER sockets, both wrapped in mc_zsock on one loop, talk
 * over tcp loopback (a real ZMQ_FD with real edges) or inproc. The tests run the loop
 * until a condition holds or a deadline passes, then destroy the wrappers, run the
 * loop until every handle is closed, and require uv_loop_close() to succeed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <czmq.h>
#include <uv.h>

#include "error.h"
#include "mc.h"
#include "zsock.h"
#include "unit.h"

/* ------------------------------------------------------------------ */
/* Loop helpers                                                       */

static void on_wake(uv_timer_t *t)
{
    (void)t; /* only there so that UV_RUN_ONCE returns regularly */
}

/* Run the loop until *flag is set or ms have passed; returns *flag. */
static int run_until(uv_loop_t *loop, const int *flag, uint64_t ms)
{
    uv_timer_t wake;
    uv_timer_init(loop, &wake);
    uv_timer_start(&wake, on_wake, 5, 5);
    uint64_t deadline = mc_now_ms() + ms;
    while (!*flag && mc_now_ms() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

/* After everything was destroyed: let the close callbacks run, then close. */
static int close_loop(uv_loop_t *loop)
{
    uint64_t deadline = mc_now_ms() + 5000;
    while (uv_run(loop, UV_RUN_NOWAIT) && mc_now_ms() < deadline)
        usleep(1000);
    return uv_loop_close(loop);
}

static int group_setup(void **state)
{
    (void)state;
    zsys_handler_set(NULL); /* keep czmq's signal handlers out of the test process */
    return 0;
}

/* A ROUTER bound on an ephemeral loopback port; *port gets the port. */
static zsock_t *router_on_loopback(int *port)
{
    zsock_t *r = zsock_new(ZMQ_ROUTER);
    assert_non_null(r);
    zsock_set_linger(r, 0);
    *port = zsock_bind(r, "tcp://127.0.0.1:*");
    assert_true(*port > 0);
    return r;
}

/* ZMQ_IMMEDIATE only applies to connections made after it is set. */
static zsock_t *dealer_to_opt(int port, int immediate)
{
    zsock_t *d = zsock_new(ZMQ_DEALER);
    assert_non_null(d);
    zsock_set_linger(d, 0);
    zsock_set_immediate(d, immediate);
    assert_int_equal(zsock_connect(d, "tcp://127.0.0.1:%d", port), 0);
    return d;
}

static zsock_t *dealer_to(int port)
{
    return dealer_to_opt(port, 0);
}

/* ------------------------------------------------------------------ */
/* Many messages: the edge-triggered fd must be drained                */

enum { MANY = 10000 };

typedef struct {
    int received;
    int in_order;
    int bad;
    int done;
} sink_t;

static void sink_recv(mc_zsock_t *zs, zmsg_t **msg, void *arg)
{
    (void)zs;
    sink_t *s = arg;
    if (!s)
        return;
    /* [identity][seq] */
    if (zmsg_size(*msg) != 2) {
        s->bad++;
        return;
    }
    zframe_t *id = zmsg_first(*msg);
    zframe_t *body = zmsg_next(*msg);
    char text[32];
    size_t n = zframe_size(body) < sizeof text - 1 ? zframe_size(body) : sizeof text - 1;
    memcpy(text, zframe_data(body), n);
    text[n] = '\0';
    if (zframe_size(id) == 0)
        s->bad++;
    if (atoi(text) == s->received)
        s->in_order++;
    if (++s->received == MANY)
        s->done = 1;
}

static void many_messages(const char *how)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    zsock_t *r, *d;
    if (strcmp(how, "tcp") == 0) {
        int port;
        r = router_on_loopback(&port);
        d = dealer_to(port);
    } else {
        char ep[64];
        snprintf(ep, sizeof ep, "inproc://zsock-many-%d", (int)getpid());
        r = zsock_new(ZMQ_ROUTER);
        assert_int_equal(zsock_bind(r, "%s", ep), 0);
        d = zsock_new(ZMQ_DEALER);
        assert_int_equal(zsock_connect(d, "%s", ep), 0);
    }
    /* Unlimited queues: all 10,000 are queued before the loop runs at all, so the
     * receiver sees few edges for many messages. */
    zsock_set_rcvhwm(r, 0);
    zsock_set_sndhwm(d, 0);
    sink_t sink = {0};
    mc_zsock_t *router = mc_zsock_new(&loop, &r, sink_recv, &sink);
    assert_null(r);
    mc_zsock_t *dealer = mc_zsock_new(&loop, &d, sink_recv, NULL);
    assert_null(d);
    assert_non_null(mc_zsock_sock(router));

    int send_failures = 0;
    for (int i = 0; i < MANY; i++) {
        zmsg_t *m = zmsg_new();
        zmsg_addstrf(m, "%d", i);
        if (mc_zsock_send(dealer, &m) != MC_OK)
            send_failures++;
        assert_null(m);
    }
    int done = run_until(&loop, &sink.done, 10000);
    mc_zsock_destroy(&router);
    mc_zsock_destroy(&dealer);
    assert_null(router);
    mc_zsock_destroy(&router); /* safe on NULL */
    assert_int_equal(close_loop(&loop), 0);

    assert_int_equal(send_failures, 0);
    assert_true(done);
    assert_int_equal(sink.received, MANY);
    assert_int_equal(sink.in_order, MANY);
    assert_int_equal(sink.bad, 0);
}

static void many_messages_tcp(void **state)
{
    (void)state;
    many_messages("tcp");
}

static void many_messages_inproc(void **state)
{
    (void)state;
    many_messages("inproc");
}

/* ------------------------------------------------------------------ */
/* Replies: ROUTER answers from its callback, DEALER sends the next     */

enum { ROUNDS = 2000 };

typedef struct {
    mc_zsock_t *router, *dealer;
    int pongs, wrong, send_errors, done;
} pingpong_t;

static void router_echo(mc_zsock_t *zs, zmsg_t **msg, void *arg)
{
    pingpong_t *p = arg;
    zframe_t *id = zmsg_pop(*msg);
    char *text = zmsg_popstr(*msg);
    zmsg_t *reply = zmsg_new();
    zmsg_append(reply, &id);
    zmsg_addstrf(reply, "pong %s", text ? text : "");
    free(text);
    if (mc_zsock_send(zs, &reply) != MC_OK)
        p->send_errors++;
}

static void dealer_pong(mc_zsock_t *zs, zmsg_t **msg, void *arg)
{
    pingpong_t *p = arg;
    char *text = zmsg_popstr(*msg);
    char want[32];
    snprintf(want, sizeof want, "pong %d", p->pongs);
    if (!text || strcmp(text, want) != 0)
        p->wrong++;
    free(text);
    if (++p->pongs == ROUNDS) {
        p->done = 1;
        return;
    }
    /* Sending from the receive callback: the send may swallow the next edge. */
    zmsg_t *m = zmsg_new();
    zmsg_addstrf(m, "%d", p->pongs);
    if (mc_zsock_send(zs, &m) != MC_OK)
        p->send_errors++;
}

static void reply_path(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int port;
    zsock_t *r = router_on_loopback(&port);
    zsock_set_router_mandatory(r, 1);
    zsock_t *d = dealer_to(port);
    pingpong_t p = {0};
    p.router = mc_zsock_new(&loop, &r, router_echo, &p);
    p.dealer = mc_zsock_new(&loop, &d, dealer_pong, &p);
    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, "0");
    assert_int_equal(mc_zsock_send(p.dealer, &m), MC_OK);
    int done = run_until(&loop, &p.done, 10000);
    mc_zsock_destroy(&p.router);
    mc_zsock_destroy(&p.dealer);
    assert_int_equal(close_loop(&loop), 0);
    assert_true(done);
    assert_int_equal(p.pongs, ROUNDS);
    assert_int_equal(p.wrong, 0);
    assert_int_equal(p.send_errors, 0);
}

/* A ROUTER with router_mandatory cannot send to an identity it does not know. */
static void router_unknown_peer_unavailable(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int port;
    zsock_t *r = router_on_loopback(&port);
    zsock_set_router_mandatory(r, 1);
    mc_zsock_t *router = mc_zsock_new(&loop, &r, sink_recv, NULL);
    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, "no-such-identity");
    zmsg_addstr(m, "hello");
    int rc = mc_zsock_send(router, &m);
    assert_null(m);
    mc_zsock_destroy(&router);
    assert_int_equal(close_loop(&loop), 0);
    assert_int_equal(rc, MC_EUNAVAIL);
}

/* ------------------------------------------------------------------ */
/* No peer                                                            */

/* A loopback port nobody listens on: bind one with a plain socket, then let it go
 * (closing a ZeroMQ socket is asynchronous, a plain one is not). */
static int unused_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void dealer_without_peer_unavailable(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int port = unused_port();

    zsock_t *d = dealer_to_opt(port, 1);
    zsock_t *lone = zsock_new(ZMQ_DEALER); /* never connected at all */
    zsock_set_immediate(lone, 1);
    zsock_set_linger(lone, 0);
    mc_zsock_t *dealer = mc_zsock_new(&loop, &d, sink_recv, NULL);
    mc_zsock_t *unconnected = mc_zsock_new(&loop, &lone, sink_recv, NULL);
    int zero = 0;
    run_until(&loop, &zero, 50); /* let a connection attempt fail */

    int rc[3];
    for (int i = 0; i < 2; i++) {
        zmsg_t *m = zmsg_new();
        zmsg_addstr(m, "anyone?");
        rc[i] = mc_zsock_send(dealer, &m);
        assert_null(m); /* ownership taken on failure too */
    }
    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, "anyone?");
    rc[2] = mc_zsock_send(unconnected, &m);
    assert_null(m);

    mc_zsock_destroy(&dealer);
    mc_zsock_destroy(&unconnected);
    assert_int_equal(close_loop(&loop), 0);
    assert_int_equal(rc[0], MC_EUNAVAIL);
    assert_int_equal(rc[1], MC_EUNAVAIL);
    assert_int_equal(rc[2], MC_EUNAVAIL);
}

/* ------------------------------------------------------------------ */
/* Lifetime                                                           */

typedef struct {
    mc_zsock_t *self;
    int calls;
} self_destroy_t;

static void destroy_in_callback(mc_zsock_t *zs, zmsg_t **msg, void *arg)
{
    (void)zs;
    (void)msg;
    self_destroy_t *s = arg;
    s->calls++;
    mc_zsock_destroy(&s->self); /* no more callbacks after this */
}

static void destroy_from_own_callback(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int port;
    zsock_t *r = router_on_loopback(&port);
    zsock_t *d = dealer_to(port);
    self_destroy_t s = {0};
    s.self = mc_zsock_new(&loop, &r, destroy_in_callback, &s);
    mc_zsock_t *dealer = mc_zsock_new(&loop, &d, sink_recv, NULL);
    for (int i = 0; i < 20; i++) {
        zmsg_t *m = zmsg_new();
        zmsg_addstr(m, "x");
        assert_int_equal(mc_zsock_send(dealer, &m), MC_OK);
    }
    int zero = 0;
    run_until(&loop, &zero, 300);
    mc_zsock_destroy(&dealer);
    assert_int_equal(close_loop(&loop), 0);
    assert_int_equal(s.calls, 1);
    assert_null(s.self);
}

/* Messages still queued when the wrappers go are freed with the sockets. */
static void destroy_with_unread_messages(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int port;
    zsock_t *r = router_on_loopback(&port);
    zsock_t *d = dealer_to(port);
    sink_t sink = {0};
    mc_zsock_t *dealer = mc_zsock_new(&loop, &d, sink_recv, NULL);
    for (int i = 0; i < 100; i++) {
        zmsg_t *m = zmsg_new();
        zmsg_addstrf(m, "%d", i);
        assert_int_equal(mc_zsock_send(dealer, &m), MC_OK);
    }
    zsock_t *raw = r;
    mc_zsock_t *router = mc_zsock_new(&loop, &r, sink_recv, &sink);
    assert_ptr_equal(mc_zsock_sock(router), raw);
    mc_zsock_destroy(&router); /* before the loop ever ran: nothing delivered */
    mc_zsock_destroy(&dealer);
    assert_int_equal(close_loop(&loop), 0);
    assert_int_equal(sink.received, 0);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(many_messages_tcp),
    cmocka_unit_test(many_messages_inproc),
    cmocka_unit_test(reply_path),
    cmocka_unit_test(router_unknown_peer_unavailable),
    cmocka_unit_test(dealer_without_peer_unavailable),
    cmocka_unit_test(destroy_from_own_callback),
    cmocka_unit_test(destroy_with_unread_messages),
};
MC_TEST_GROUP(zsock, tests, group_setup, NULL);
