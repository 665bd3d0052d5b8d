/* payment.h: the payment service — fee orders, the bank gateway (VNPay style), its
 * callbacks, expiry of unpaid orders and refunds. */
#ifndef PAYMENT_H
#define PAYMENT_H

#include <uv.h>

#include "auth.h"
#include "bus.h"
#include "fetch.h"
#include "http.h"
#include "outcall.h"
#include "service.h"

typedef struct {
    char *gateway_url;   /* MOTCUA_VNPAY_URL: where applicants are sent to pay */
    char *tmn_code;      /* MOTCUA_VNPAY_TMN_CODE: our merchant code */
    char *secret;        /* MOTCUA_VNPAY_SECRET: the HMAC-SHA512 key shared with the gateway */
    char *public_url;    /* MOTCUA_PAYMENT_PUBLIC_URL: how the outside reaches us */
    long sweep_ms;       /* MOTCUA_PAYMENT_SWEEP_MS: how often expired orders are looked for */
    char *api_url;       /* MOTCUA_VNPAY_API_URL: the gateway's refund/querydr API */
    char *list_url;      /* MOTCUA_VNPAY_TRANSACTIONS_URL: the gateway's transaction list */
    long refund_tick_ms; /* MOTCUA_PAYMENT_REFUND_TICK_MS: how often refunds are looked for */
    long timeout_ms;     /* MOTCUA_PAYMENT_TIMEOUT_MS: longest wait for the gateway */
    long lease_ms;       /* MOTCUA_PAYMENT_LEASE_MS: a claimed refund is retried after this */
    long backoff_ms;     /* MOTCUA_PAYMENT_BACKOFF_MS: first retry delay; doubles */
    char *reconcile_at;  /* MOTCUA_PAYMENT_RECONCILE_AT: "HH:MM", Asia/Ho_Chi_Minh */
} payment_config_t;

/* Domain state shared by the handlers (mc_service_data). */
typedef struct {
    mc_service_t *svc;
    mc_auth_t *auth;
    const payment_config_t *cfg;
    /* gateway.c: server-to-server calls to the gateway (refunds, transaction list). */
    mc_fetch_t *fetch;
    int stopping, inflight;
    int stop_reported;     /* mc_service_stopped was called */
    mc_outcall_t *refunds; /* refund.c: the worker */
    int reconciling;       /* reconcile.c: a run is in progress */
    int reconcile_minute;  /* reconcile.c: MOTCUA_PAYMENT_RECONCILE_AT in minutes */
} payment_t;

static inline payment_t *payment_of(void *svc)
{
    return mc_service_data(svc);
}

/* ---- vnpay.c: the gateway's signature and parameters ---- */
typedef struct {
    const char *key;
    const char *value;
} vnp_param_t;

#define VNP_HASH_HEX 128 /* hex digits of an HMAC-SHA512 */

/* application/x-www-form-urlencoded as VNPay's merchants encode: letters, digits and
 * "-_." stay, a space becomes '+', any other byte %XX (upper-case hex). Caller frees. */
char *vnpay_urlencode(const char *s);
/* The text that is signed: the parameters sorted by key (sorts params in place), each
 * urlencode(key)=urlencode(value), joined by '&'; parameters with an empty value are
 * left out. Caller frees. */
char *vnpay_hash_data(vnp_param_t *params, size_t n);
/* Hex HMAC-SHA512 of data under secret (lower case, NUL-terminated). */
void vnpay_sign(const char *secret, const char *data, char out[VNP_HASH_HEX + 1]);
/* The gateway URL with the signed parameters. Caller frees. */
char *vnpay_pay_url(const char *base, const char *secret, vnp_param_t *params, size_t n);
/* yyyyMMddHHmmss in Asia/Ho_Chi_Minh (UTC+7 all year) of a wall time in ms. */
void vnpay_date(int64_t ms, char out[15]);
/* Check the signature of a callback (IPN or return): every vnp_* parameter the gateway
 * sends, less vnp_SecureHash and vnp_SecureHashType. MC_OK; MC_EDECODE when there is
 * no well-formed vnp_SecureHash (malformed); MC_EPERM when it does not match. *query
 * gets the canonical query (signed data and the hash received) for the log; caller
 * frees. */
int vnpay_verify(mc_http_req_t *req, const char *secret, char **query);
/* What a vnp_ResponseCode means, in English for logs and reasons. */
const char *vnpay_response_text(const char *code);

/* ---- order.c ---- */
/* PaymentRequested: open the dossier's fee order (once per dossier). */
void order_open(mc_bus_msg_t *msg, void *arg);
/* GET /v1/payments/pay/{code}: 302 to the gateway with the signed request. */
void order_pay(mc_http_req_t *req, void *arg);
/* GET /v1/payments/{id}: the order (operator or officer key). */
void order_show(mc_http_req_t *req, void *arg);
/* A new order reference (vnp_TxnRef): 12 characters of [A-Z0-9] without look-alikes. */
void order_new_id(char out[13]);

/* ---- ipn.c ---- */
/* GET /v1/payments/ipn: the gateway's server-to-server confirmation; changes state. */
void ipn_receive(mc_http_req_t *req, void *arg);
/* GET /v1/payments/return: the page the applicant comes back to; display only. */
void return_page(mc_http_req_t *req, void *arg);

/* ---- expiry.c ---- */
/* Timer: pending orders past their expiry become expired, with PaymentFailed. */
void expiry_sweep(mc_service_t *svc);

/* ---- gateway.c: the gateway's server-to-server API ---- */
/* The answer of a gateway call: as mc_fetch_fn; MC_ECLOSED when stopping. */
typedef mc_fetch_fn gateway_fn;
/* Start the fetcher and the stop signals; gateway_close after mc_service_run. */
void gateway_start(payment_t *p);
void gateway_close(payment_t *p);
/* Work using the fetcher ended: close it if stopping. */
void gateway_idle_check(payment_t *p);
/* POST a JSON request (a refund) to MOTCUA_VNPAY_API_URL. Takes a reference to body. */
void gateway_api(payment_t *p, json_t *body, gateway_fn cb, void *arg);
/* GET the transaction list of a day (yyyyMMdd, Asia/Ho_Chi_Minh) or of one order
 * (txn; day NULL), signed as docs/payment.md says. */
void gateway_list(payment_t *p, const char *day, const char *txn, gateway_fn cb, void *arg);
/* Hex HMAC-SHA512 under the secret of the values joined by '|' (NULL is ""). */
void gateway_sign_fields(const char *secret, const char *const *values, size_t n,
                         char out[VNP_HASH_HEX + 1]);

/* ---- refund.c ---- */
/* DossierStatusChanged: a paid dossier refused at intake or withdrawn is refunded
 * (requested here; the worker asks the gateway). */
void refund_on_status(mc_bus_msg_t *msg, void *arg);
/* Start the worker that sends requested refunds due to the gateway's refund API (after
 * gateway_start: it uses the gateway's fetcher); refund_close after mc_service_run. */
void refund_start(payment_t *p);
void refund_close(payment_t *p);

/* ---- reconcile.c ---- */
/* Timer: the previous day is reconciled once the configured local time has passed. */
void reconcile_tick(mc_service_t *svc);
/* POST /v1/payments/reconciliation: reconcile a day now (operator key). */
void reconcile_start(mc_http_req_t *req, void *arg);
/* GET /v1/payments/reconciliation?date=: the last run of the day and its mismatches. */
void reconcile_show(mc_http_req_t *req, void *arg);
/* Parse "HH:MM" into minutes after midnight; -1 if malformed. */
int reconcile_parse_at(const char *at);

#endif
