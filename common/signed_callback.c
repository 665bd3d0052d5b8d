/* signed_callback.c: HMAC-SHA256 signatures of callbacks from outside systems. */
#include "signed_callback.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

void mc_signature(const char *secret, const char *ts, const char *body, size_t len,
                  char out[MC_SIGNATURE_HEX_LEN + 1])
{
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(out, MC_SIGNATURE_HEX_LEN + 1, mac, sizeof mac);
    sodium_memzero(&st, sizeof st);
}

int mc_signed_callback_check(mc_http_req_t *req, const char *secret, long max_age_s,
                             const char *what)
{
    const char *ts = mc_http_header(req, "x-timestamp");
    const char *sig = mc_http_header(req, "x-signature");
    size_t len;
    const char *body = mc_http_body(req, &len);
    char *end = NULL;
    long long t = ts ? strtoll(ts, &end, 10) : 0;
    long long now = (long long)time(NULL);
    const char *why = NULL;
    char want[MC_SIGNATURE_HEX_LEN + 1];
    if (!ts || !sig || !end || *end || end == ts) {
        why = "X-Timestamp and X-Signature are required";
    } else if (t < now - max_age_s || t > now + max_age_s) {
        why = "stale timestamp";
    } else {
        mc_signature(secret, ts, body ? body : "", body ? len : 0, want);
        if (strlen(sig) != MC_SIGNATURE_HEX_LEN ||
            sodium_memcmp(want, sig, MC_SIGNATURE_HEX_LEN) != 0)
            why = "bad signature";
    }
    if (!why)
        return 0;
    mc_logd(MC_LOG_WARN, mc_http_header(req, "x-trace-id"), NULL,
            "%s refused: %s (timestamp %s, now %lld)", what, why, ts ? ts : "-", now);
    mc_http_reply_error(req, 401, "unauthorized", why, NULL);
    return -1;
}
