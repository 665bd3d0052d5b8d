/* fetch.c: libcurl's multi-socket interface driven by the libuv loop.
 *
 * Design (the shape of curl's docs/examples/multi-uv.c). libcurl tells us, through
 * the socket callback, which sockets to watch and for what; we keep one `sock_t`
 * (a uv_poll) per socket, attached to it with curl_multi_assign. It tells us through
 * the timer callback when to call it back anyway; that is our one uv_timer. Either
 * event calls curl_multi_socket_action, and then finished transfers are collected
 * with curl_multi_info_read and their callbacks called. libcurl is never re-entered
 * from its own callbacks: users' callbacks run only from check_done, after
 * curl_multi_socket_action has returned.
 *
 * Lifetime. A sock_t is freed in its poll's close callback; the fetcher itself in its
 * timer's close callback; neither close callback touches the other, so the order in
 * which libuv runs them does not matter. A destroy requested from inside a user's
 * callback (busy > 0) is carried out once check_done is back in control.
 *
 * Threads: everything runs on the loop thread; libcurl's threaded resolver has its
 * own thread but reports through a socket like everything else. */
#include <assert.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fetch.h"
#include "log.h"

typedef struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    mc_fetch_t *f;
    struct sock *prev, *next;
} sock_t;

typedef struct xfer {
    CURL *easy;
    mc_fetch_fn cb;
    void *arg;
    struct curl_slist *headers; /* HTTP request headers */
    struct curl_slist *rcpt;    /* SMTP recipients */
    char *upload;               /* SMTP message */
    size_t upload_len, upload_off;
    char *resp;
    size_t resp_len, resp_cap;
    int too_big;
    char errbuf[CURL_ERROR_SIZE];
    struct xfer *prev, *next;
} xfer_t;

struct mc_fetch {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    sock_t *socks;
    xfer_t *xfers;
    size_t active;
    int busy;    /* depth of user callbacks running */
    int closing; /* destroy requested */
};

static void teardown(mc_fetch_t *f);

/* ------------------------------------------------------------------ lists */

#define LIST_ADD(head, x)                                                                          \
    do {                                                                                           \
        (x)->prev = NULL;                                                                          \
        (x)->next = (head);                                                                        \
        if (head)                                                                                  \
            (head)->prev = (x);                                                                    \
        (head) = (x);                                                                              \
    } while (0)
#define LIST_DEL(head, x)                                                                          \
    do {                                                                                           \
        if ((x)->prev)                                                                             \
            (x)->prev->next = (x)->next;                                                           \
        else                                                                                       \
            (head) = (x)->next;                                                                    \
        if ((x)->next)                                                                             \
            (x)->next->prev = (x)->prev;                                                           \
    } while (0)

/* ------------------------------------------------------------------ sockets */

static void on_sock_closed(uv_handle_t *h)
{
    free(mc_container_of((uv_poll_t *)h, sock_t, poll));
}

static void sock_close(mc_fetch_t *f, sock_t *s)
{
    LIST_DEL(f->socks, s);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void check_done(mc_fetch_t *f);

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_t *s = mc_container_of(h, sock_t, poll);
    mc_fetch_t *f = s->f;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(f->multi, s->fd, flags, &running);
    check_done(f);
}

/* libcurl: watch socket fd for `what`, or stop watching it. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    mc_fetch_t *f = userp;
    sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            sock_close(f, s);
            curl_multi_assign(f->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = mc_new(sock_t);
        s->fd = fd;
        s->f = f;
        if (uv_poll_init_socket(f->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        LIST_ADD(f->socks, s);
        curl_multi_assign(f->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

/* ------------------------------------------------------------------ timer */

static void on_timeout(uv_timer_t *t)
{
    mc_fetch_t *f = mc_container_of(t, mc_fetch_t, timer);
    int running;
    curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(f);
}

/* libcurl: call me back in timeout_ms (-1: never mind). */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    mc_fetch_t *f = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&f->timer);
    else
        uv_timer_start(&f->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ------------------------------------------------------------------ transfers */

static void xfer_free(xfer_t *x)
{
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    curl_slist_free_all(x->rcpt);
    free(x->upload);
    free(x->resp);
    free(x);
}

static size_t on_write(char *data, size_t size, size_t n, void *userp)
{
    xfer_t *x = userp;
    size_t len = size * n;
    if (x->resp_len + len > MC_FETCH_MAX_BODY) {
        x->too_big = 1;
        return 0; /* libcurl ends the transfer with CURLE_WRITE_ERROR */
    }
    if (x->resp_len + len + 1 > x->resp_cap) {
        x->resp_cap = (x->resp_len + len + 1) * 2;
        x->resp = mc_realloc(x->resp, x->resp_cap);
    }
    memcpy(x->resp + x->resp_len, data, len);
    x->resp_len += len;
    x->resp[x->resp_len] = '\0';
    return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *userp)
{
    xfer_t *x = userp;
    size_t left = x->upload_len - x->upload_off, len = size * n;
    if (len > left)
        len = left;
    memcpy(buf, x->upload + x->upload_off, len);
    x->upload_off += len;
    return len;
}

static int status_of(xfer_t *x, CURLcode rc)
{
    switch (rc) {
    case CURLE_OK: return MC_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return MC_EUNAVAIL;
    case CURLE_OPERATION_TIMEDOUT: {
        /* A timeout before the connection was made sent nothing: as safe as refused. */
        curl_off_t connect_us = 0;
        curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
        return connect_us > 0 ? MC_ETIMEOUT : MC_EUNAVAIL;
    }
    case CURLE_WRITE_ERROR: return x->too_big ? MC_ETOOBIG : MC_EIO;
    default: return MC_EIO;
    }
}

/* Finish one transfer: remove it from the multi handle and call its callback. */
static void finish(mc_fetch_t *f, xfer_t *x, int status)
{
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(f->multi, x->easy);
    LIST_DEL(f->xfers, x);
    f->active--;
    const char *body = "";
    size_t len = 0;
    if (status == MC_OK && x->resp) {
        body = x->resp;
        len = x->resp_len;
    } else if (status == MC_ECLOSED) {
        body = "cancelled: the fetcher is closing";
        len = strlen(body);
    } else if (status != MC_OK) {
        body = x->errbuf[0] ? x->errbuf : mc_strerror(status);
        len = strlen(body);
    }
    f->busy++;
    x->cb(status, code, body, len, x->arg);
    f->busy--;
    xfer_free(x);
}

static void check_done(mc_fetch_t *f)
{
    CURLMsg *m;
    int left;
    while (!f->closing && (m = curl_multi_info_read(f->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        xfer_t *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode rc = m->data.result;
        finish(f, x, status_of(x, rc));
    }
    if (f->closing && f->busy == 0)
        teardown(f);
}

static xfer_t *xfer_new(mc_fetch_t *f, const char *url, long timeout_ms, mc_fetch_fn cb, void *arg)
{
    xfer_t *x = mc_new(xfer_t);
    x->cb = cb;
    x->arg = arg;
    x->easy = curl_easy_init();
    if (!x->easy) {
        mc_error("libcurl could not make a transfer handle");
        abort();
    }
    (void)f;
    curl_easy_setopt(x->easy, CURLOPT_URL, url);
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 30000L);
    curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 30000L);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    return x;
}

static void xfer_start(mc_fetch_t *f, xfer_t *x)
{
    if (f->closing) {
        /* Nothing may start on a fetcher that is going away. */
        f->busy++;
        x->cb(MC_ECLOSED, 0, "cancelled: the fetcher is closing", 33, x->arg);
        f->busy--;
        xfer_free(x);
        return;
    }
    LIST_ADD(f->xfers, x);
    f->active++;
    CURLMcode rc = curl_multi_add_handle(f->multi, x->easy);
    assert(rc == CURLM_OK);
    (void)rc;
}

void mc_fetch_http(mc_fetch_t *f, const char *method, const char *url, const char *const *headers,
                   const char *body, size_t len, long timeout_ms, mc_fetch_fn cb, void *arg)
{
    assert(f && method && url && cb);
    xfer_t *x = xfer_new(f, url, timeout_ms, cb, arg);
    for (size_t i = 0; headers && headers[i]; i++)
        x->headers = curl_slist_append(x->headers, headers[i]);
    /* No "Expect: 100-continue" round trip for our small bodies. */
    x->headers = curl_slist_append(x->headers, "Expect:");
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    if (body || strcmp(method, "GET") != 0) {
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(x->easy, CURLOPT_COPYPOSTFIELDS, body ? body : "");
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, method);
    } else {
        curl_easy_setopt(x->easy, CURLOPT_HTTPGET, 1L);
    }
    xfer_start(f, x);
}

void mc_fetch_smtp(mc_fetch_t *f, const char *url, const char *from, const char *const *to,
                   const char *message, long timeout_ms, mc_fetch_fn cb, void *arg)
{
    assert(f && url && from && to && message && cb);
    xfer_t *x = xfer_new(f, url, timeout_ms, cb, arg);
    char *sender = mc_sprintf("<%s>", from);
    curl_easy_setopt(x->easy, CURLOPT_MAIL_FROM, sender);
    free(sender); /* libcurl copies string options */
    for (size_t i = 0; to[i]; i++) {
        char *r = mc_sprintf("<%s>", to[i]);
        x->rcpt = curl_slist_append(x->rcpt, r);
        free(r);
    }
    curl_easy_setopt(x->easy, CURLOPT_MAIL_RCPT, x->rcpt);
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    x->upload_len = strlen(message);
    x->upload = mc_memdup(message, x->upload_len);
    curl_easy_setopt(x->easy, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(x->easy, CURLOPT_READDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_UPLOAD, 1L);
    xfer_start(f, x);
}

size_t mc_fetch_active(const mc_fetch_t *f)
{
    return f ? f->active : 0;
}

/* ------------------------------------------------------------------ life */

mc_fetch_t *mc_fetch_new(uv_loop_t *loop)
{
    static int curl_ready;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            mc_error("libcurl could not start");
            abort();
        }
        curl_ready = 1;
    }
    mc_fetch_t *f = mc_new(mc_fetch_t);
    f->loop = loop;
    f->multi = curl_multi_init();
    if (!f->multi) {
        mc_error("libcurl could not make a multi handle");
        abort();
    }
    uv_timer_init(loop, &f->timer);
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
    return f;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(mc_container_of((uv_timer_t *)h, mc_fetch_t, timer));
}

/* Cancel what is in flight, let libcurl close its connections, close our handles. */
static void teardown(mc_fetch_t *f)
{
    f->busy = 1; /* callbacks below must not come back here */
    while (f->xfers)
        finish(f, f->xfers, MC_ECLOSED);
    curl_multi_cleanup(f->multi);
    f->multi = NULL;
    while (f->socks)
        sock_close(f, f->socks);
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, on_timer_closed);
}

void mc_fetch_destroy(mc_fetch_t **pf)
{
    mc_fetch_t *f = *pf;
    if (!f)
        return;
    *pf = NULL;
    if (f->closing)
        return;
    f->closing = 1;
    if (f->busy == 0)
        teardown(f);
}
