/* vnpay.c: the bank gateway's signature (VNPay 2.1.0 style), shared by the payment
 * request we sign and the callbacks (IPN, return) we verify.
 *
 * The signed text is the vnp_* parameters sorted by key, each written
 * urlencode(key)=urlencode(value) and joined by '&'; the signature is the hex
 * HMAC-SHA512 of that text under the merchant secret. The secret may have any length,
 * so the streaming HMAC API is used (crypto_auth_hmacsha512 wants a 32-byte key).
 *
 * Callbacks. common/http.c gives a handler each query value by name, not the query as
 * it came, so a callback is verified over the parameters VNPay documents for the IPN
 * and the return URL (callback_keys below). A gateway that adds a parameter not listed
 * there fails the check (97) until it is listed. */
#include <ctype.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "payment.h"

/* ---------------------------------------------------------------- encoding */

char *vnpay_urlencode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = mc_alloc(strlen(s) * 3 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.') {
            *o++ = (char)*p;
        } else if (*p == ' ') {
            *o++ = '+';
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const vnp_param_t *)a)->key, ((const vnp_param_t *)b)->key);
}

char *vnpay_hash_data(vnp_param_t *params, size_t n)
{
    qsort(params, n, sizeof *params, by_key);
    size_t cap = 1, len = 0;
    char *out = mc_alloc(cap);
    for (size_t i = 0; i < n; i++) {
        if (!params[i].value || !*params[i].value)
            continue;
        char *k = vnpay_urlencode(params[i].key), *v = vnpay_urlencode(params[i].value);
        size_t need = strlen(k) + strlen(v) + 2;
        out = mc_realloc(out, cap += need);
        len += (size_t)snprintf(out + len, cap - len, "%s%s=%s", len ? "&" : "", k, v);
        free(k);
        free(v);
    }
    out[len] = '\0';
    return out;
}

void vnpay_sign(const char *secret, const char *data, char out[VNP_HASH_HEX + 1])
{
    crypto_auth_hmacsha512_state st;
    unsigned char mac[crypto_auth_hmacsha512_BYTES];
    crypto_auth_hmacsha512_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha512_update(&st, (const unsigned char *)data, strlen(data));
    crypto_auth_hmacsha512_final(&st, mac);
    sodium_bin2hex(out, VNP_HASH_HEX + 1, mac, sizeof mac);
    sodium_memzero(&st, sizeof st);
}

char *vnpay_pay_url(const char *base, const char *secret, vnp_param_t *params, size_t n)
{
    char *data = vnpay_hash_data(params, n);
    char hash[VNP_HASH_HEX + 1];
    vnpay_sign(secret, data, hash);
    char *url = mc_sprintf("%s?%s&vnp_SecureHash=%s", base, data, hash);
    free(data);
    return url;
}

void vnpay_date(int64_t ms, char out[15])
{
    time_t t = (time_t)(ms / 1000) + 7 * 3600; /* Việt Nam keeps UTC+7, no summer time */
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 15, "%Y%m%d%H%M%S", &tm);
}

/* ---------------------------------------------------------------- callbacks */

/* What VNPay sends to the IPN and return URLs, besides the hash itself. */
static const char *const callback_keys[] = {
    "vnp_Amount",        "vnp_BankCode",          "vnp_BankTranNo",   "vnp_CardType",
    "vnp_OrderInfo",     "vnp_PayDate",           "vnp_ResponseCode", "vnp_TmnCode",
    "vnp_TransactionNo", "vnp_TransactionStatus", "vnp_TxnRef",
};

int vnpay_verify(mc_http_req_t *req, const char *secret, char **query)
{
    vnp_param_t params[MC_COUNT(callback_keys)];
    size_t n = 0;
    for (size_t i = 0; i < MC_COUNT(callback_keys); i++) {
        const char *v = mc_http_query(req, callback_keys[i]);
        if (v)
            params[n++] = (vnp_param_t){callback_keys[i], v};
    }
    char *data = vnpay_hash_data(params, n);
    const char *got = mc_http_query(req, "vnp_SecureHash");
    char *enc = vnpay_urlencode(got ? got : "");
    *query = mc_sprintf("%s%svnp_SecureHash=%s", data, *data ? "&" : "", enc);
    free(enc);
    if (!got || strlen(got) != VNP_HASH_HEX || n == 0) {
        free(data);
        return MC_EDECODE;
    }
    char want[VNP_HASH_HEX + 1], lower[VNP_HASH_HEX + 1];
    for (size_t i = 0; i <= VNP_HASH_HEX; i++)
        lower[i] = (char)tolower((unsigned char)got[i]);
    vnpay_sign(secret, data, want);
    free(data);
    return sodium_memcmp(want, lower, VNP_HASH_HEX) == 0 ? MC_OK : MC_EPERM;
}

/* ---------------------------------------------------------------- response codes */

static const struct {
    const char *code;
    const char *text;
} responses[] = {
    {"00", "successful"},
    {"07", "money taken; the transaction is suspicious"},
    {"09", "card or account not registered for internet banking"},
    {"10", "card or account authentication failed more than 3 times"},
    {"11", "payment window timed out"},
    {"12", "card or account locked"},
    {"13", "wrong one-time password"},
    {"24", "cancelled by the applicant"},
    {"51", "insufficient balance"},
    {"65", "daily transaction limit exceeded"},
    {"75", "bank under maintenance"},
    {"79", "wrong payment password too many times"},
    {"99", "other error"},
};

const char *vnpay_response_text(const char *code)
{
    for (size_t i = 0; code && i < MC_COUNT(responses); i++)
        if (strcmp(responses[i].code, code) == 0)
            return responses[i].text;
    return "unknown response code";
}
