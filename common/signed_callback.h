/* signed_callback.h: callbacks signed by systems outside motcua (the postal carrier, the
 * agency systems of liên thông, the SMS gateway's delivery receipts).
 *
 * The caller sends X-Timestamp (Unix seconds) and X-Signature, the hex HMAC-SHA256 under
 * a shared secret of "<timestamp>.<body bytes exactly as sent>". A request without them,
 * with a timestamp further than max_age_s from now (a replay), or with a signature that
 * does not match is answered 401 and logged as a warning. */
#ifndef MC_SIGNED_CALLBACK_H
#define MC_SIGNED_CALLBACK_H

#include <stddef.h>

#include "http.h"

#define MC_SIGNATURE_HEX_LEN 64

/* Hex HMAC-SHA256 of "<ts>.<body>" under secret, NUL-terminated. */
void mc_signature(const char *secret, const char *ts, const char *body, size_t len,
                  char out[MC_SIGNATURE_HEX_LEN + 1]);

/* 0 if req carries a good signature within max_age_s of now; else it has been answered
 * 401 (and logged as "<what> refused: <why>") and -1 is returned. */
int mc_signed_callback_check(mc_http_req_t *req, const char *secret, long max_age_s,
                             const char *what);

#endif
