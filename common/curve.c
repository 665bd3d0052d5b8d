/* curve.c: key pairs, allow-lists and the ZAP handler (curve.h). */
#include "curve.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "zsock.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

typedef struct {
    char *domain;
    char *name;
    uint8_t key[32];
} allowed_t;

struct mc_curve {
    allowed_t *allowed;
    size_t nallowed;
    mc_zsock_t *zap; /* REP */
};

int mc_curve_key_valid(const char *s)
{
    uint8_t key[32];
    return s && strlen(s) == MC_CURVE_KEY_LEN && zmq_z85_decode(key, s) != NULL;
}

zcert_t *mc_curve_load_secret(const char *path, char *err, size_t errlen)
{
    zcert_t *cert = path && *path ? zcert_load(path) : NULL;
    if (!cert) {
        snprintf(err, errlen, "cannot read the key pair %s (make one with motcuactl curve keygen)",
                 path && *path ? path : "(none given)");
        return NULL;
    }
    static const uint8_t zero[32];
    if (memcmp(zcert_secret_key(cert), zero, 32) == 0) {
        snprintf(err, errlen, "%s holds no secret key (give the _secret file)", path);
        zcert_destroy(&cert);
        return NULL;
    }
    return cert;
}

int mc_curve_load_public(const char *path, char out[MC_CURVE_KEY_LEN + 1], char *err, size_t errlen)
{
    zcert_t *cert = zcert_load(path);
    if (!cert) {
        snprintf(err, errlen, "cannot read the certificate %s", path);
        return -1;
    }
    snprintf(out, MC_CURVE_KEY_LEN + 1, "%s", zcert_public_txt(cert));
    zcert_destroy(&cert);
    return 0;
}

static const allowed_t *find_key(const mc_curve_t *c, const char *domain, const uint8_t *key)
{
    for (size_t i = 0; i < c->nallowed; i++)
        if (strcmp(c->allowed[i].domain, domain) == 0 && memcmp(c->allowed[i].key, key, 32) == 0)
            return &c->allowed[i];
    return NULL;
}

/* Frames of a ZAP request: version, request id, domain, address, identity, mechanism,
 * credentials (for CURVE, the client's 32-byte public key). The reply: version,
 * request id, status code, status text, user id, metadata. */
static void on_zap(mc_zsock_t *zs, zmsg_t **pmsg, void *arg)
{
    mc_curve_t *c = arg;
    zmsg_t *req = *pmsg;
    char *version = zmsg_popstr(req);
    zframe_t *request_id = zmsg_pop(req);
    char *domain = zmsg_popstr(req);
    char *address = zmsg_popstr(req);
    zframe_t *identity = zmsg_pop(req);
    char *mechanism = zmsg_popstr(req);
    zframe_t *key = zmsg_pop(req);
    const allowed_t *who = NULL;
    const char *why = "malformed ZAP request";
    if (version && strcmp(version, "1.0") == 0 && request_id && mechanism && domain) {
        why = "only CURVE is accepted";
        if (strcmp(mechanism, "CURVE") == 0 && key && zframe_size(key) == 32) {
            who = find_key(c, domain, zframe_data(key));
            why = "key not in the allow-list";
        }
    }
    char z85[MC_CURVE_KEY_LEN + 1] = "?";
    if (key && zframe_size(key) == 32)
        zmq_z85_encode(z85, zframe_data(key), 32);
    if (who) {
        mc_info("curve: admitted %s (key %s) from %s on the %s", who->name, z85,
                address ? address : "?", domain);
    } else {
        mc_warn("curve: refused a connection from %s on the %s: %s (key %s, mechanism %s)",
                address ? address : "?", domain ? domain : "?", why, z85,
                mechanism ? mechanism : "?");
    }
    zmsg_t *rep = zmsg_new();
    zmsg_addstr(rep, "1.0");
    if (request_id)
        zmsg_addmem(rep, zframe_data(request_id), zframe_size(request_id));
    else
        zmsg_addstr(rep, "");
    zmsg_addstr(rep, who ? "200" : "400");
    zmsg_addstr(rep, who ? "OK" : why);
    zmsg_addstr(rep, who ? who->name : "");
    zmsg_addmem(rep, "", 0);
    if (mc_zsock_send(zs, &rep) != MC_OK)
        mc_warn("curve: cannot answer a ZAP request");
    free(version);
    free(domain);
    free(address);
    free(mechanism);
    zframe_destroy(&request_id);
    zframe_destroy(&identity);
    zframe_destroy(&key);
    zmsg_destroy(pmsg);
}

mc_curve_t *mc_curve_new(uv_loop_t *loop, char *err, size_t errlen)
{
    zsock_t *rep = zsock_new(ZMQ_REP);
    if (!rep || zsock_bind(rep, ZAP_ENDPOINT) < 0) {
        snprintf(err, errlen, "cannot start the ZAP handler: %s", zmq_strerror(zmq_errno()));
        zsock_destroy(&rep);
        return NULL;
    }
    zsock_set_linger(rep, 0);
    mc_curve_t *c = mc_new(mc_curve_t);
    c->zap = mc_zsock_new(loop, &rep, on_zap, c);
    return c;
}

int mc_curve_allow(mc_curve_t *c, const char *domain, const char *name, const char *public_key,
                   char *err, size_t errlen)
{
    if (!name || !*name || !mc_curve_key_valid(public_key)) {
        snprintf(err, errlen, "%s: a name and a 40-character Z85 public key are required",
                 name && *name ? name : "(no name)");
        return -1;
    }
    c->allowed = mc_realloc(c->allowed, (c->nallowed + 1) * sizeof *c->allowed);
    allowed_t *a = &c->allowed[c->nallowed++];
    a->domain = mc_strdup(domain);
    a->name = mc_strdup(name);
    zmq_z85_decode(a->key, public_key);
    return 0;
}

void mc_curve_server(zcert_t *cert, zsock_t *sock, const char *domain)
{
    zcert_apply(cert, sock);
    zsock_set_curve_server(sock, 1);
    zsock_set_zap_domain(sock, domain);
}

void mc_curve_client(zcert_t *cert, zsock_t *sock, const char *server_key)
{
    zcert_apply(cert, sock);
    zsock_set_curve_serverkey(sock, server_key);
}

void mc_curve_destroy(mc_curve_t **pc)
{
    mc_curve_t *c = *pc;
    if (!c)
        return;
    mc_zsock_destroy(&c->zap);
    for (size_t i = 0; i < c->nallowed; i++) {
        free(c->allowed[i].domain);
        free(c->allowed[i].name);
    }
    free(c->allowed);
    free(c);
    *pc = NULL;
}
