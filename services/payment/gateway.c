/* gateway.c: payment's server-to-server calls to the bank gateway (VNPay style): the
 * refund API (POST JSON, signed with the fields joined by '|') and the transaction
 * list reconciliation reads (GET, signed query). One fetcher (common/fetch.h) on the
 * service's loop serves both.
 *
 * Stop. On SIGTERM nothing new is started (refund.c and reconcile.c look at
 * p->stopping and p->fetch) and the calls in flight get GRACE_MS to end; a refund
 * whose answer is lost is left to its lease, and the gateway's idempotency key (the
 * refund id) makes the next try harmless. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "payment.h"

#define GRACE_MS 5000

typedef struct {
    payment_t *p;
    gateway_fn cb;
    void *arg;
} call_t;

void gateway_sign_fields(const char *secret, const char *const *values, size_t n,
                         char out[VNP_HASH_HEX + 1])
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += (values[i] ? strlen(values[i]) : 0) + 1;
    char *data = mc_alloc(len), *o = data;
    for (size_t i = 0; i < n; i++) {
        if (i)
            *o++ = '|';
        size_t k = values[i] ? strlen(values[i]) : 0;
        memcpy(o, values[i] ? values[i] : "", k);
        o += k;
    }
    *o = '\0';
    vnpay_sign(secret, data, out);
    free(data);
}

static void on_answer(int status, long code, const char *body, size_t len, void *arg)
{
    call_t *c = arg;
    payment_t *p = c->p;
    c->cb(status, code, body, len, c->arg);
    free(c);
    p->inflight--;
    gateway_idle_check(p);
}

static void call(payment_t *p, const char *method, const char *url, const char *body, gateway_fn cb,
                 void *arg)
{
    static const char *const headers[] = {"Content-Type: application/json",
                                          "Accept: application/json", NULL};
    call_t *c = mc_new(call_t);
    c->p = p;
    c->cb = cb;
    c->arg = arg;
    p->inflight++;
    mc_fetch_http(p->fetch, method, url, headers, body, body ? strlen(body) : 0, p->cfg->timeout_ms,
                  on_answer, c);
}

void gateway_api(payment_t *p, json_t *body, gateway_fn cb, void *arg)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    call(p, "POST", p->cfg->api_url, text, cb, arg);
    free(text);
}

void gateway_list(payment_t *p, const char *day, const char *txn, gateway_fn cb, void *arg)
{
    const payment_config_t *cfg = p->cfg;
    const char *fields[] = {cfg->tmn_code, day ? day : "", txn ? txn : ""};
    char hash[VNP_HASH_HEX + 1];
    gateway_sign_fields(cfg->secret, fields, MC_COUNT(fields), hash);
    char *tmn = vnpay_urlencode(cfg->tmn_code);
    char *url = mc_sprintf("%s?vnp_TmnCode=%s&date=%s&txn=%s&vnp_SecureHash=%s", cfg->list_url, tmn,
                           day ? day : "", txn ? txn : "", hash);
    call(p, "GET", url, NULL, cb, arg);
    free(url);
    free(tmn);
}

/* ---------------------------------------------------------------- start and stop */

static void finalize(payment_t *p)
{
    mc_fetch_destroy(&p->fetch);
    if (!uv_is_closing((uv_handle_t *)&p->grace)) {
        uv_close((uv_handle_t *)&p->grace, NULL);
        uv_close((uv_handle_t *)&p->sigterm, NULL);
        uv_close((uv_handle_t *)&p->sigint, NULL);
    }
}

void gateway_idle_check(payment_t *p)
{
    if (p->stopping && !p->refund_claiming && p->inflight == 0 && p->fetch)
        finalize(p);
}

static void on_grace(uv_timer_t *t)
{
    payment_t *p = t->data;
    if (p->inflight)
        mc_warn("gateway: %d call(s) still in flight after %d ms; left to the lease", p->inflight,
                GRACE_MS);
    finalize(p);
}

static void on_stop(uv_signal_t *s, int signum)
{
    (void)signum;
    payment_t *p = s->data;
    if (p->stopping)
        return;
    p->stopping = 1;
    uv_timer_start(&p->grace, on_grace, GRACE_MS, 0);
    gateway_idle_check(p);
}

void gateway_start(payment_t *p)
{
    uv_loop_t *loop = mc_service_loop(p->svc);
    p->fetch = mc_fetch_new(loop);
    uv_timer_init(loop, &p->grace);
    p->grace.data = p;
    /* The service stops on these too; libuv tells every watcher of a signal. */
    uv_signal_init(loop, &p->sigterm);
    uv_signal_init(loop, &p->sigint);
    p->sigterm.data = p->sigint.data = p;
    uv_signal_start(&p->sigterm, on_stop, SIGTERM);
    uv_signal_start(&p->sigint, on_stop, SIGINT);
}

void gateway_close(payment_t *p)
{
    mc_fetch_destroy(&p->fetch); /* normally done at the stop already */
}
