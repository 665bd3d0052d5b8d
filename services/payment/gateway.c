/* gateway.c: payment's server-to-server calls to the bank gateway (VNPay style): the
 * refund API (POST JSON, signed with the fields joined by '|') and the transaction
 * list reconciliation reads (GET, signed query). One fetcher (common/fetch.h) on the
 * service's loop serves both.
 *
 * Stop. When the service stops nothing new is started (reconcile.c looks at p->stopping,
 * refund.c's worker stops claiming) and the service gives the calls in flight
 * MC_SERVICE_GRACE_MS; a refund
 * whose answer is lost is left to its lease, and the gateway's idempotency key (the
 * refund id) makes the next try harmless. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "payment.h"

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

void gateway_idle_check(payment_t *p)
{
    if (p->stopping && p->inflight == 0 && !p->stop_reported) {
        p->stop_reported = 1;
        mc_service_stopped(p->svc);
    }
}

static void begin_stop(void *arg)
{
    payment_t *p = arg;
    p->stopping = 1;
    gateway_idle_check(p);
}

static void close_fetch(void *arg)
{
    payment_t *p = arg;
    /* The service waits no more (its grace is over, or we reported already): calls
     * cut off now end with MC_ECLOSED and must not report a second time. */
    p->stop_reported = 1;
    mc_fetch_destroy(&p->fetch); /* what is still in flight is the lease's to recover */
}

void gateway_start(payment_t *p)
{
    p->fetch = mc_fetch_new(mc_service_loop(p->svc));
    mc_service_on_stop(p->svc, begin_stop, close_fetch, p);
}

void gateway_close(payment_t *p)
{
    mc_fetch_destroy(&p->fetch); /* normally done at the stop already */
}
