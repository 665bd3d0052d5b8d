/* fuzz_vnpay.c: the bank gateway's callbacks (IPN and return URL), from the query
 * string as it arrives to the verdict: common/http.c's query parser and URL decoding,
 * then services/payment/vnpay.c's canonical text, URL encoding and HMAC-SHA512 check.
 *
 * Input: the merchant secret up to '\n', then the query string (after the '?').
 * Besides verifying what came, the target signs the decoded parameters itself, writes
 * them as a query the way a gateway would (vnpay_urlencode), parses that again and
 * requires vnpay_verify to accept it: encoding and decoding must be exact inverses,
 * or a genuine payment would be refused. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fuzz.h"
#include "payment.h"

#define MAX_PARAMS 64

static void consume(const char *s)
{
    volatile size_t n = s ? strlen(s) : 0;
    (void)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *secret = fuzz_field(&data, &size, '\n', NULL);
    mc_http_req_t *req = fuzz_request_new((const char *)data, size, NULL, 0, NULL, 0);

    char *canonical = NULL;
    int rc = vnpay_verify(req, secret, &canonical);
    if (rc != MC_OK && rc != MC_EDECODE && rc != MC_EPERM)
        abort();
    consume(canonical);
    free(canonical);
    consume(vnpay_response_text(mc_http_query(req, "vnp_ResponseCode")));

    /* Every decoded parameter, through the canonical text and a pay URL. */
    vnp_param_t params[MAX_PARAMS];
    size_t n = 0;
    const char *name, *value;
    while (n < MAX_PARAMS && fuzz_request_query_at(req, n, &name, &value)) {
        params[n] = (vnp_param_t){name, value};
        n++;
    }
    char *url = vnpay_pay_url("https://gateway.invalid/pay", secret, params, n);
    consume(url);
    free(url);

    /* Sign what the request carries and send it back: it must verify. */
    char *signed_text = NULL;
    {
        vnp_param_t mine[MAX_PARAMS];
        size_t m = 0;
        static const char *const keys[] = {
            "vnp_Amount",        "vnp_BankCode",          "vnp_BankTranNo",   "vnp_CardType",
            "vnp_OrderInfo",     "vnp_PayDate",           "vnp_ResponseCode", "vnp_TmnCode",
            "vnp_TransactionNo", "vnp_TransactionStatus", "vnp_TxnRef",
        };
        for (size_t i = 0; i < MC_COUNT(keys); i++) {
            const char *v = mc_http_query(req, keys[i]);
            if (v && *v)
                mine[m++] = (vnp_param_t){keys[i], v};
        }
        char *text = vnpay_hash_data(mine, m);
        if (*text) {
            char hash[VNP_HASH_HEX + 1];
            vnpay_sign(secret, text, hash);
            signed_text = mc_sprintf("%s&vnp_SecureHash=%s", text, hash);
        }
        free(text);
    }
    if (signed_text) {
        mc_http_req_t *again = fuzz_request_new(signed_text, strlen(signed_text), NULL, 0, NULL, 0);
        char *q = NULL;
        if (vnpay_verify(again, secret, &q) != MC_OK)
            abort(); /* a correctly signed callback was refused */
        free(q);
        fuzz_request_free(&again);
        free(signed_text);
    }

    /* urlencode then http.c's decoding gives the value back. */
    for (size_t i = 0; i < n; i++) {
        char *enc = vnpay_urlencode(params[i].value);
        char *q = mc_sprintf("v=%s", enc);
        mc_http_req_t *back = fuzz_request_new(q, strlen(q), NULL, 0, NULL, 0);
        const char *dec = mc_http_query(back, "v");
        if (!dec || strcmp(dec, params[i].value) != 0)
            abort();
        fuzz_request_free(&back);
        free(q);
        free(enc);
    }

    fuzz_request_free(&req);
    free(secret);
    return 0;
}
