/* curve.h: CURVE security for the bus.
 *
 * Key pairs are czmq certificate files (`motcuactl curve keygen NAME FILE` writes FILE,
 * public, and FILE_secret). Two uses:
 *   - between the services of a province (domain "bus"): one key pair per service; a
 *     service's ROUTER admits the keys of the province's services;
 *   - between provinces (domain "link", mc_bus_link): one key pair per province; the
 *     link's ROUTER admits the keys of the listed peer provinces.
 * A server socket sees every CURVE handshake put to the process's ZAP handler (ZeroMQ
 * RFC 27, inproc://zeromq.zap.01 in czmq's shared context, answered on the service's
 * loop): a key on the socket's domain's allow-list is admitted with its name as the
 * User-Id that every frame from that connection then carries (zframe_meta(frame,
 * "User-Id")); any other key is refused and logged with the key and the address.
 *
 * We answer ZAP ourselves rather than run czmq's zauth actor because we need the name
 * behind a key (zauth admits keys but names nobody) and our own log lines. */
#ifndef MC_CURVE_H
#define MC_CURVE_H

#include <czmq.h>
#include <stddef.h>
#include <uv.h>

#include "mc.h"

#define MC_CURVE_KEY_LEN 40 /* a Z85-encoded key */

typedef struct mc_curve mc_curve_t;

/* 1 if s is a Z85-encoded 32-byte key. */
int mc_curve_key_valid(const char *s);

/* A key pair from a czmq secret certificate file; NULL with the reason in err (missing,
 * unreadable, or a public-only file). Free with zcert_destroy. */
zcert_t *mc_curve_load_secret(const char *path, char *err, size_t errlen);
/* The public key (Z85) of a certificate file, public or secret, into out; 0 or -1. */
int mc_curve_load_public(const char *path, char out[MC_CURVE_KEY_LEN + 1], char *err,
                         size_t errlen);

/* Start the process's ZAP handler on loop; NULL with the reason in err (a second one in
 * the process, say). */
mc_curve_t *mc_curve_new(uv_loop_t *loop, char *err, size_t errlen);
/* Admit public_key (Z85) on the servers of domain, naming it name; 0 or -1. */
int mc_curve_allow(mc_curve_t *c, const char *domain, const char *name, const char *public_key,
                   char *err, size_t errlen);
/* Make sock a CURVE server of domain with the key pair cert (before bind). */
void mc_curve_server(zcert_t *cert, zsock_t *sock, const char *domain);
/* Make sock a CURVE client with cert of the server with that public key (before
 * connect). */
void mc_curve_client(zcert_t *cert, zsock_t *sock, const char *server_key);
void mc_curve_destroy(mc_curve_t **c);

#endif
