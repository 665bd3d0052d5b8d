/* curve.h: CURVE security for the bus between provinces.
 *
 * One key pair per province (a czmq certificate file made by `motcuactl curve
 * keygen`), used both by the province's link ROUTER (CURVE server) and by its
 * DEALERs to other provinces (CURVE client). The allow-list names each peer province
 * and its public key. A ZAP handler on the service's loop (RFC 27, bound at
 * inproc://zeromq.zap.01 in czmq's shared context) answers the handshakes of the
 * link ROUTER: a key on the list is admitted with the province as its User-Id, which
 * every frame from that connection then carries (zframe_meta(frame, "User-Id")); any
 * other key is refused and logged with the key and the address it came from.
 *
 * We answer ZAP ourselves rather than run czmq's zauth actor because we need the
 * province behind a key (zauth admits keys but names nobody) and our own log lines. */
#ifndef MC_CURVE_H
#define MC_CURVE_H

#include <czmq.h>
#include <stddef.h>
#include <uv.h>

#include "mc.h"

#define MC_CURVE_KEY_LEN 40 /* a Z85-encoded key */

typedef struct mc_curve mc_curve_t;

typedef struct {
    const char *name;       /* the peer's name, e.g. a province code "H98" */
    const char *public_key; /* its Z85 public key */
} mc_curve_peer_t;

/* 1 if s is a Z85-encoded 32-byte key. */
int mc_curve_key_valid(const char *s);
/* Load our key pair from a czmq secret certificate file and start the ZAP handler
 * with the allow-list. NULL with the reason in err (missing or public-only file, bad
 * key on the list, a second ZAP handler in the process). */
mc_curve_t *mc_curve_new(uv_loop_t *loop, const char *cert_file, const mc_curve_peer_t *peers,
                         size_t npeers, char *err, size_t errlen);
/* Our public key (Z85). */
const char *mc_curve_public_key(const mc_curve_t *c);
/* Make sock a CURVE server with our keys (before bind). */
void mc_curve_server(mc_curve_t *c, zsock_t *sock);
/* Make sock a CURVE client of the server with that public key (before connect). */
void mc_curve_client(mc_curve_t *c, zsock_t *sock, const char *server_key);
/* Handshakes admitted and refused since start. */
void mc_curve_counts(const mc_curve_t *c, long long *admitted, long long *refused);
void mc_curve_destroy(mc_curve_t **c);

#endif
