/* zmq_raw: the ZeroMQ ceiling the durable bus is measured against.
 *
 * No database, no protobuf, no event loop: bare libzmq over TCP loopback, in one
 * process with the receiver on a second thread, shaped like the bus's traffic.
 *
 *   zmq_raw [N] [SIZE] [WINDOW]
 *
 * Three measurements, one line each (`mode=... messages=... seconds=... rate=...`):
 *   dealer_router_w1   DEALER sends [36-byte id][SIZE-byte body], the ROUTER answers
 *                      each with [~80-byte ack]; one message in flight (lock-step,
 *                      what one bus stream can do at best)
 *   dealer_router_wW   the same with up to WINDOW messages unacknowledged (what the
 *                      relay does with WINDOW dossiers in flight)
 *   push_pull          one-way PUSH -> PULL of [id][body], no answers
 * N is the number of messages of the windowed and one-way runs (default 500000);
 * the lock-step run sends N/25. SIZE defaults to 200 bytes (a typical envelope),
 * WINDOW to 200. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define ID_LEN  36
#define ACK_LEN 80

static void *ctx;
static size_t body_size = 200;

static void die(const char *what)
{
    fprintf(stderr, "zmq_raw: %s: %s\n", what, zmq_strerror(zmq_errno()));
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *bound_socket(int type, char *endpoint, size_t cap)
{
    void *s = zmq_socket(ctx, type);
    if (!s)
        die("zmq_socket");
    int zero = 0, hwm = 0; /* no drops, no blocking at a high-water mark */
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_bind(s, "tcp://127.0.0.1:*") != 0)
        die("zmq_bind");
    if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, endpoint, &cap) != 0)
        die("ZMQ_LAST_ENDPOINT");
    return s;
}

static void *connected_socket(int type, const char *endpoint)
{
    void *s = zmq_socket(ctx, type);
    if (!s)
        die("zmq_socket");
    int zero = 0, hwm = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_connect(s, endpoint) != 0)
        die("zmq_connect");
    return s;
}

/* ---------------------------------------------------------------- receivers */

typedef struct {
    void *sock;
    long count;
} receiver_t;

/* ROUTER: [identity][id][body] in, [identity][ack] out, for every message. */
static void *router_loop(void *arg)
{
    receiver_t *r = arg;
    char ack[ACK_LEN];
    memset(ack, 'a', sizeof ack);
    for (long i = 0; i < r->count; i++) {
        zmq_msg_t identity, id, body;
        zmq_msg_init(&identity);
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&identity, r->sock, 0) < 0 || zmq_msg_recv(&id, r->sock, 0) < 0 ||
            zmq_msg_recv(&body, r->sock, 0) < 0)
            die("router recv");
        memcpy(ack, zmq_msg_data(&id), ID_LEN);
        if (zmq_msg_send(&identity, r->sock, ZMQ_SNDMORE) < 0 ||
            zmq_send(r->sock, ack, sizeof ack, 0) < 0)
            die("router send");
        zmq_msg_close(&id);
        zmq_msg_close(&body);
    }
    return NULL;
}

/* PULL: [id][body] in, nothing out. */
static void *pull_loop(void *arg)
{
    receiver_t *r = arg;
    for (long i = 0; i < r->count; i++) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, r->sock, 0) < 0 || zmq_msg_recv(&body, r->sock, 0) < 0)
            die("pull recv");
        zmq_msg_close(&id);
        zmq_msg_close(&body);
    }
    return NULL;
}

/* ---------------------------------------------------------------- senders */

static void send_one(void *sock, long seq, const char *body)
{
    char id[64]; /* a UUID's text form, as the relay sends it */
    snprintf(id, sizeof id, "00000000-0000-4000-8000-%012ld", seq % 1000000000000L);
    if (zmq_send(sock, id, ID_LEN, ZMQ_SNDMORE) < 0 || zmq_send(sock, body, body_size, 0) < 0)
        die("send");
}

static void recv_ack(void *sock)
{
    char ack[ACK_LEN];
    if (zmq_recv(sock, ack, sizeof ack, 0) < 0)
        die("dealer recv");
}

static double run_dealer_router(long n, long window)
{
    char endpoint[256];
    receiver_t r = {bound_socket(ZMQ_ROUTER, endpoint, sizeof endpoint), n};
    void *dealer = connected_socket(ZMQ_DEALER, endpoint);
    char *body = malloc(body_size);
    memset(body, 'x', body_size);
    /* Warm up: the connection exists before the clock starts. */
    receiver_t warm = {r.sock, 1};
    pthread_t t;
    pthread_create(&t, NULL, router_loop, &warm);
    send_one(dealer, 0, body);
    recv_ack(dealer);
    pthread_join(t, NULL);

    pthread_create(&t, NULL, router_loop, &r);
    double start = now_s();
    long sent = 0, acked = 0;
    while (acked < n) {
        while (sent < n && sent - acked < window)
            send_one(dealer, ++sent, body);
        recv_ack(dealer);
        acked++;
    }
    double secs = now_s() - start;
    pthread_join(t, NULL);
    zmq_close(dealer);
    zmq_close(r.sock);
    free(body);
    return secs;
}

static double run_push_pull(long n)
{
    char endpoint[256];
    receiver_t r = {bound_socket(ZMQ_PULL, endpoint, sizeof endpoint), 1};
    void *push = connected_socket(ZMQ_PUSH, endpoint);
    char *body = malloc(body_size);
    memset(body, 'x', body_size);
    pthread_t t;
    pthread_create(&t, NULL, pull_loop, &r);
    send_one(push, 0, body);
    pthread_join(t, NULL);

    r.count = n;
    pthread_create(&t, NULL, pull_loop, &r);
    double start = now_s();
    for (long i = 1; i <= n; i++)
        send_one(push, i, body);
    pthread_join(t, NULL); /* the clock stops when the last message has arrived */
    double secs = now_s() - start;
    zmq_close(push);
    zmq_close(r.sock);
    free(body);
    return secs;
}

static void report(const char *mode, long n, double secs)
{
    printf("mode=%s messages=%ld seconds=%.3f rate=%.0f\n", mode, n, secs, (double)n / secs);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 500000;
    body_size = argc > 2 ? (size_t)atol(argv[2]) : 200;
    long window = argc > 3 ? atol(argv[3]) : 200;
    if (n < 10 || body_size < 1 || window < 1) {
        fprintf(stderr, "usage: zmq_raw [N>=10] [SIZE>=1] [WINDOW>=1]\n");
        return 2;
    }
    ctx = zmq_ctx_new();
    if (!ctx)
        die("zmq_ctx_new");
    char mode[48];
    report("dealer_router_w1", n / 25, run_dealer_router(n / 25, 1));
    snprintf(mode, sizeof mode, "dealer_router_w%ld", window);
    report(mode, n, run_dealer_router(n, window));
    report("push_pull", n, run_push_pull(n));
    zmq_ctx_term(ctx);
    return 0;
}
