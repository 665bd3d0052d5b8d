/* motcua-payment: fee orders, the bank gateway (VNPay style) and its callbacks, expiry
 * of unpaid orders, refunds through the gateway's API, the daily reconciliation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "payment.h"

extern const mc_migration_t mc_sql_payment[];
extern const int mc_sql_payment_count;

/* Literal routes first: the first pattern that matches wins. */
static const mc_route_t routes[] = {
    {"GET", "/v1/payments/ipn", ipn_receive},
    {"GET", "/v1/payments/return", return_page},
    {"GET", "/v1/payments/pay/{code}", order_pay},
    {"POST", "/v1/payments/reconciliation", reconcile_start},
    {"GET", "/v1/payments/reconciliation", reconcile_show},
    {"GET", "/v1/payments/{id}", order_show},
};

static const mc_bus_handler_t handlers[] = {
    {MOTCUA__V1__ENVELOPE__BODY_PAYMENT_REQUESTED, order_open},
    {MOTCUA__V1__ENVELOPE__BODY_DOSSIER_STATUS_CHANGED, refund_on_status},
};

static const mc_conf_item_t config_table[] = {
    {"MOTCUA_VNPAY_URL", MC_CONF_STRING, offsetof(payment_config_t, gateway_url),
     "http://127.0.0.1:8090/vnpay/pay", 0, 0, NULL, "the bank gateway's payment page"},
    {"MOTCUA_VNPAY_TMN_CODE", MC_CONF_STRING, offsetof(payment_config_t, tmn_code), "MOTCUA01", 0,
     0, NULL, "merchant code (vnp_TmnCode)"},
    {"MOTCUA_VNPAY_SECRET", MC_CONF_STRING, offsetof(payment_config_t, secret),
     "MOTCUASANDBOXSECRET", 0, 0, NULL, "merchant secret for vnp_SecureHash (HMAC-SHA512)"},
    {"MOTCUA_PAYMENT_PUBLIC_URL", MC_CONF_STRING, offsetof(payment_config_t, public_url),
     "http://127.0.0.1:8083", 0, 0, NULL, "public base URL of this service (return URL)"},
    {"MOTCUA_PAYMENT_SWEEP_MS", MC_CONF_INT, offsetof(payment_config_t, sweep_ms), "30000", 100,
     3600000, NULL, "how often expired orders are looked for (ms)"},
    {"MOTCUA_VNPAY_API_URL", MC_CONF_STRING, offsetof(payment_config_t, api_url), "", 0, 0, NULL,
     "the gateway's refund API (POST JSON); empty: beside MOTCUA_VNPAY_URL"},
    {"MOTCUA_VNPAY_TRANSACTIONS_URL", MC_CONF_STRING, offsetof(payment_config_t, list_url), "", 0,
     0, NULL, "the gateway's transaction list; empty: beside MOTCUA_VNPAY_URL"},
    {"MOTCUA_PAYMENT_REFUND_TICK_MS", MC_CONF_INT, offsetof(payment_config_t, refund_tick_ms),
     "1000", 50, 600000, NULL, "how often refunds to send are looked for (ms)"},
    {"MOTCUA_PAYMENT_TIMEOUT_MS", MC_CONF_INT, offsetof(payment_config_t, timeout_ms), "10000", 100,
     120000, NULL, "longest wait for the gateway's API (ms)"},
    {"MOTCUA_PAYMENT_LEASE_MS", MC_CONF_INT, offsetof(payment_config_t, lease_ms), "30000", 1000,
     3600000, NULL, "a claimed refund is tried again after this long if not recorded (ms)"},
    {"MOTCUA_PAYMENT_BACKOFF_MS", MC_CONF_INT, offsetof(payment_config_t, backoff_ms), "2000", 10,
     600000, NULL, "first retry delay when the gateway fails; doubles, at most 10 minutes"},
    {"MOTCUA_PAYMENT_RECONCILE_AT", MC_CONF_STRING, offsetof(payment_config_t, reconcile_at),
     "02:00", 0, 0, NULL, "local time (HH:MM, Asia/Ho_Chi_Minh) of the daily reconciliation"},
};

/* An empty gateway URL defaults to `name` beside the payment page: with the demo
 * MOTCUA_VNPAY_URL http://127.0.0.1:8090/vnpay/pay, …/vnpay/api and …/vnpay/transactions. */
static void beside_gateway(char **url, const char *page, const char *name)
{
    if (**url)
        return;
    const char *slash = strrchr(page, '/');
    int dir = slash ? (int)(slash - page) : (int)strlen(page);
    mc_free(url);
    *url = mc_sprintf("%.*s/%s", dir, page, name);
}

int main(int argc, char **argv)
{
    payment_config_t cfg;
    char err[256];
    if (mc_config_load(&cfg, config_table, MC_COUNT(config_table), "payment", err, sizeof err)) {
        fprintf(stderr, "motcua-payment: configuration error: %s\n", err);
        return 2;
    }
    beside_gateway(&cfg.api_url, cfg.gateway_url, "api");
    beside_gateway(&cfg.list_url, cfg.gateway_url, "transactions");
    int at = reconcile_parse_at(cfg.reconcile_at);
    if (at < 0 || cfg.lease_ms < cfg.timeout_ms + 1000) {
        fprintf(stderr, "motcua-payment: configuration error: %s\n",
                at < 0 ? "MOTCUA_PAYMENT_RECONCILE_AT is not HH:MM"
                       : "MOTCUA_PAYMENT_LEASE_MS must exceed MOTCUA_PAYMENT_TIMEOUT_MS by 1 s");
        mc_config_free(&cfg, config_table, MC_COUNT(config_table));
        return 2;
    }
    mc_service_t *svc = mc_service_new("payment", argc, argv, mc_sql_payment, mc_sql_payment_count);
    payment_t payment = {
        .svc = svc, .auth = mc_auth_new(mc_service_db(svc)), .cfg = &cfg, .reconcile_minute = at};
    mc_service_set_data(svc, &payment);
    mc_service_routes(svc, routes, MC_COUNT(routes));
    mc_service_handlers(svc, handlers, MC_COUNT(handlers));
    mc_service_every(svc, (uint64_t)cfg.sweep_ms, expiry_sweep); /* unpaid orders expire */
    gateway_start(&payment);                                     /* fetcher, stop signals */
    refund_start(&payment);                                      /* refunds paid back */
    mc_service_every(svc, 60000, reconcile_tick); /* the previous day, once, after RECONCILE_AT */
    int status = mc_service_run(&svc);
    refund_close(&payment);
    gateway_close(&payment);
    mc_auth_destroy(&payment.auth);
    mc_config_free(&cfg, config_table, MC_COUNT(config_table));
    return status;
}
