/* fuzz_signed_callback.c: the check of signed callbacks (carrier, agency systems, SMS
 * delivery receipts): X-Timestamp, X-Signature, X-Trace-Id and the body as sent.
 *
 * Input: a flags byte, then secret, timestamp, signature and trace id each ending with
 * '\n', then the body (any bytes). With flag bit 0 the target signs the body itself
 * with a current timestamp, and the check must pass. Either way a pass must mean the
 * signature is the HMAC of "<timestamp>.<body>", and a refusal must have been answered. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"
#include "signed_callback.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int sign_it = data[0] & 1;
    data++, size--;
    char *secret = fuzz_field(&data, &size, '\n', NULL);
    char *ts = fuzz_field(&data, &size, '\n', NULL);
    char *sig = fuzz_field(&data, &size, '\n', NULL);
    char *trace = fuzz_field(&data, &size, '\n', NULL);
    size_t body_len = size;
    char *body = mc_strndup((const char *)data, size); /* the rest, NULs included */
    if (sign_it) {
        char now[32], good[MC_SIGNATURE_HEX_LEN + 1];
        snprintf(now, sizeof now, "%lld", (long long)time(NULL));
        mc_signature(secret, now, body, body_len, good);
        free(ts);
        free(sig);
        ts = mc_strdup(now);
        sig = mc_strdup(good);
    }
    const char *headers[] = {"X-Timestamp", ts, "X-Signature", sig, "X-Trace-Id", trace};
    /* An empty field stands for an absent header. */
    size_t nheaders = 0;
    const char *present[6];
    for (size_t i = 0; i < 6; i += 2)
        if (*headers[i + 1]) {
            present[2 * nheaders] = headers[i];
            present[2 * nheaders + 1] = headers[i + 1];
            nheaders++;
        }
    mc_http_req_t *req = fuzz_request_new("", 0, present, nheaders, body, body_len);

    fuzz_stderr_to(-1);
    int rc = mc_signed_callback_check(req, secret, 300, "fuzz callback");
    fuzz_stderr_back();

    if (rc == 0) {
        char want[MC_SIGNATURE_HEX_LEN + 1];
        mc_signature(secret, ts, body, body_len, want);
        if (fuzz_request_replied(req) || strcmp(want, sig) != 0)
            abort(); /* passed with a wrong signature, or answered a good one */
    } else if (rc != -1 || !fuzz_request_replied(req) || sign_it) {
        abort(); /* refused without an answer, or refused a good signature */
    }
    fuzz_request_free(&req);
    free(secret);
    free(ts);
    free(sig);
    free(trace);
    free(body);
    return 0;
}
