/* fetch.h: outbound HTTP(S) and SMTP requests on the libuv loop, through libcurl.
 *
 * One mc_fetch_t drives any number of transfers at once with libcurl's multi-socket
 * API: a uv_poll per socket libcurl opens and one uv_timer for libcurl's timeouts, so
 * nothing ever blocks the loop (names resolve in libcurl's resolver thread). Each
 * request ends with exactly one call of its callback, from the loop, never from
 * inside mc_fetch_http or mc_fetch_smtp (except on a fetcher that is being
 * destroyed, see below).
 *
 * The callback's status is MC_OK when the exchange completed (whatever the HTTP
 * status: 404 and 503 are answers too), or:
 *   MC_EUNAVAIL  no connection was made (refused, unreachable, name unknown, connect
 *                timeout): nothing was sent, so trying again is safe;
 *   MC_ETIMEOUT  connected, but the whole exchange took longer than timeout_ms: the
 *                peer may or may not have acted on the request;
 *   MC_ETOOBIG   the answer was larger than MC_FETCH_MAX_BODY;
 *   MC_EIO       any other failure; for SMTP that includes a 4xx or 5xx reply, whose
 *                code is then in `code`;
 *   MC_ECLOSED   the fetcher was destroyed before the answer came.
 * `code` is the HTTP status or the last SMTP reply code (0 if none came). On success
 * `body` is the response body (HTTP) or the server's last reply line (SMTP); on
 * failure it is libcurl's description of the error. It is valid during the callback
 * only, is NUL-terminated, and may contain personal data: mask it before logging. */
#ifndef MC_FETCH_H
#define MC_FETCH_H

#include <stddef.h>
#include <uv.h>

#include "mc.h"

/* Largest response body kept (bytes). */
#define MC_FETCH_MAX_BODY (1u << 20)

typedef struct mc_fetch mc_fetch_t;

typedef void (*mc_fetch_fn)(int status, long code, const char *body, size_t len, void *arg);

/* A fetcher on loop. Never NULL (libcurl failing to start aborts like out-of-memory). */
mc_fetch_t *mc_fetch_new(uv_loop_t *loop);
/* Cancel every transfer in flight (each callback gets MC_ECLOSED, before this returns
 * or, when called from inside a callback, once that callback has returned), close the
 * connections and the handles; memory is freed in close callbacks, so run the loop
 * afterwards. Sets *f to NULL; safe on NULL and twice. */
void mc_fetch_destroy(mc_fetch_t **f);
/* Transfers started and not yet called back. */
size_t mc_fetch_active(const mc_fetch_t *f);

/* An HTTP request. headers: NULL-terminated "Name: value" strings, or NULL. body may
 * be NULL (len 0). Everything is copied before this returns. */
void mc_fetch_http(mc_fetch_t *f, const char *method, const char *url, const char *const *headers,
                   const char *body, size_t len, long timeout_ms, mc_fetch_fn cb, void *arg);
/* Send one e-mail: url "smtp://host:port" (or smtps://), envelope sender `from` (an
 * address, no display name), recipients `to` (NULL-terminated), message the complete
 * RFC 5322 text with CRLF line ends (libcurl adds the dot-stuffing). Copied. */
void mc_fetch_smtp(mc_fetch_t *f, const char *url, const char *from, const char *const *to,
                   const char *message, long timeout_ms, mc_fetch_fn cb, void *arg);

#endif
