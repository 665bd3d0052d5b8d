/* motcua-payment: fee orders, the bank gateway (VNPay style) and its callbacks, expiry
 * of unpaid orders, refunds. */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "payment.h"

extern const mc_migration_t mc_sql_payment[];
extern const int mc_sql_payment_count;

/* Literal routes first: the first pattern that matches wins. */
static const mc_route_t routes[] = {
    {"GET", "/v1/payments/ipn", ipn_receive},
    {"GET", "/v1/payments/return", return_page},
    {"GET", "/v1/payments/pay/{code}", order_pay},
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
};

int main(int argc, char **argv)
{
    payment_config_t cfg;
    char err[256];
    if (mc_config_load(&cfg, config_table, MC_COUNT(config_table), "payment", err, sizeof err)) {
        fprintf(stderr, "motcua-payment: configuration error: %s\n", err);
        return 2;
    }
    mc_service_t *svc = mc_service_new("payment", argc, argv, mc_sql_payment, mc_sql_payment_count);
    payment_t payment = {.svc = svc, .auth = mc_auth_new(mc_service_db(svc)), .cfg = &cfg};
    mc_service_set_data(svc, &payment);
    mc_service_routes(svc, routes, MC_COUNT(routes));
    mc_service_handlers(svc, handlers, MC_COUNT(handlers));
    mc_service_every(svc, (uint64_t)cfg.sweep_ms, expiry_sweep); /* unpaid orders expire */
    int status = mc_service_run(&svc);
    mc_auth_destroy(&payment.auth);
    mc_config_free(&cfg, config_table, MC_COUNT(config_table));
    return status;
}
