/* payment.h: the payment service — fee orders, the bank gateway (VNPay style), its
 * callbacks, expiry of unpaid orders and refunds. */
#ifndef PAYMENT_H
#define PAYMENT_H

#include "auth.h"
#include "bus.h"
#include "http.h"
#include "service.h"

typedef struct {
    char *gateway_url; /* MOTCUA_VNPAY_URL: where applicants are sent to pay */
    char *tmn_code;    /* MOTCUA_VNPAY_TMN_CODE: our merchant code */
    char *secret;      /* MOTCUA_VNPAY_SECRET: the HMAC-SHA512 key shared with the gateway */
    char *public_url;  /* MOTCUA_PAYMENT_PUBLIC_URL: how the outside reaches us */
    long sweep_ms;     /* MOTCUA_PAYMENT_SWEEP_MS: how often expired orders are looked for */
} payment_config_t;

/* Domain state shared by the handlers (mc_service_data). */
typedef struct {
    mc_service_t *svc;
    mc_auth_t *auth;
    const payment_config_t *cfg;
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

/* ---- refund.c ---- */
/* DossierStatusChanged: a paid dossier refused at intake or withdrawn is refunded. */
void refund_on_status(mc_bus_msg_t *msg, void *arg);

#endif
