/* bus.h: the durable message bus: transactional outbox, relay, idempotent inbox.
 *
 * Sending. A service writes envelopes with mc_outbox_* inside the same transaction as
 * its state change. At commit a trigger NOTIFYs "<schema>_outbox"; the relay, woken
 * by LISTEN (and by a timer as a fallback and for retries), leases the head envelope
 * of each (destination, dossier) that is not yet delivered and sends it over a
 * ZeroMQ DEALER to the destination's ROUTER as [id][envelope]. An Ack marks it
 * delivered, which makes the next envelope of that dossier the head; a Nack or a
 * lease that expires without an answer sends it again with backoff. So at most one
 * envelope per (destination, dossier) is unacknowledged, and order per dossier holds.
 * A destination that has not answered for 5 s (at least four leases) is parked: the
 * claim takes only its first pending envelope (a probe, sent whenever its lease runs
 * out) and skips the rest of its backlog, so a consumer that is down for long costs
 * the relay nothing per claim; its first Ack unparks it.
 *
 * Receiving. The ROUTER takes envelopes in batches. One transaction per batch records
 * each message id in <schema>.inbox (a repeat is skipped) and runs its handler; only
 * after COMMIT are the Acks sent. If any handler of a batch fails, the batch is
 * rolled back and its envelopes are handled one per transaction, so one bad envelope
 * costs only itself. An envelope that cannot be decoded, has no handler, or whose
 * handler reports a permanent failure goes to <schema>.dead_letters with the reason,
 * and is acknowledged. A crash at any point leaves either the commit (and a repeat
 * will be skipped) or nothing (and the sender sends again): effectively once. */
#ifndef MC_BUS_H
#define MC_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "db.h"
#include "envelope.h"
#include "mc.h"

typedef struct mc_bus mc_bus_t;
typedef struct mc_bus_msg mc_bus_msg_t;
typedef struct mc_outbox mc_outbox_t;

/* A handler runs inside the inbox transaction. It reads the envelope, queries on the
 * connection, may add envelopes with mc_outbox_*, and ends with exactly one
 * mc_bus_done. */
typedef void (*mc_bus_handler_fn)(mc_bus_msg_t *msg, void *arg);

typedef struct {
    mc_body_t body;
    mc_bus_handler_fn fn;
} mc_bus_handler_t;

typedef struct {
    const char *name;       /* service name, or another province's code */
    const char *endpoint;   /* where its ROUTER listens, e.g. tcp://127.0.0.1:7181 */
    const char *server_key; /* another province: its CURVE public key (Z85); else NULL */
} mc_bus_peer_t;

typedef struct {
    const char *service;        /* our name; also our schema */
    const char *bind;           /* our ROUTER endpoint */
    const mc_bus_peer_t *peers; /* every service we may send to */
    size_t npeers;
    int batch;           /* envelopes per transaction / per relay claim */
    int lease_ms;        /* first wait for an Ack before sending again */
    int retention_hours; /* delivered outbox rows and inbox ids kept this long */
    /* The services' key pairs (<dir>/<service>_secret ours, <dir>/<peer> theirs): our
     * ROUTER admits only the peers' keys, and an envelope whose source is another
     * service than its key's goes to the dead letters. NULL or "": plain TCP. */
    const char *curve_dir;
} mc_bus_config_t;

/* Create the bus of a service (the pool must outlive it). NULL if the ROUTER cannot
 * bind (reason logged). */
mc_bus_t *mc_bus_new(uv_loop_t *loop, mc_db_t *db, const mc_bus_config_t *cfg);
/* Handlers by body type; the table must outlive the bus. */
void mc_bus_handlers(mc_bus_t *bus, const mc_bus_handler_t *handlers, size_t n, void *arg);
/* Begin a graceful stop: take no new envelopes, finish the batch in flight and send
 * its Acks, stop relaying. `done` is called once that is over. */
void mc_bus_stop(mc_bus_t *bus, void (*done)(void *arg), void *arg);
/* Close sockets and timers; memory is freed in close callbacks. Sets *bus to NULL. */
void mc_bus_destroy(mc_bus_t **bus);

/* Status for /readyz and /metrics. */
typedef struct {
    int bound;                /* ROUTER is listening */
    long long outbox_pending; /* undelivered envelopes, as last counted */
    long long handled, duplicates, dead_letters, sent, acked, nacked;
} mc_bus_stats_t;
void mc_bus_stats(const mc_bus_t *bus, mc_bus_stats_t *out);

/* The link to other provinces: a second ROUTER, a CURVE server whose ZAP handler
 * admits only the listed provinces' keys (curve.h), and a DEALER over CURVE to each
 * of them. One key pair per province serves both directions, so a peer's server_key
 * is also the key it connects with. Envelopes from the link are handled like any
 * other (inbox, Acks, dead letters), but only bodies in `accept` are taken from it,
 * and those only from it; their handler learns the sending province from
 * mc_bus_msg_peer. Envelopes for a province are written with mc_outbox_add_to(ob,
 * "<province>", ...). */
typedef struct {
    const char *bind;           /* e.g. tcp://0.0.0.0:7190 */
    const char *cert_file;      /* our key pair: a czmq secret certificate file */
    const mc_bus_peer_t *peers; /* name = province code, endpoint, server_key */
    size_t npeers;
    const mc_body_t *accept; /* must outlive the bus */
    size_t naccept;
} mc_bus_link_t;
/* Open the link; 0, or -1 with the reason in err. */
int mc_bus_link(mc_bus_t *bus, const mc_bus_link_t *link, char *err, size_t errlen);

/* What the relay knows of each destination. */
typedef struct {
    const char *name;
    const char *endpoint;
    long long sent;      /* envelopes sent to it (including repeats) */
    long long acked;     /* Acks received from it */
    long long nacked;    /* Nacks received from it */
    int64_t last_ack_ms; /* wall time of its last Ack; 0 if none yet */
} mc_bus_peer_stats_t;
/* Fill up to max entries; returns the number of destinations. */
size_t mc_bus_peers(const mc_bus_t *bus, mc_bus_peer_stats_t *out, size_t max);
/* Ask the relay to look for work now (e.g. after writing the outbox without NOTIFY). */
void mc_bus_kick(mc_bus_t *bus);

/* ---- inside a handler ---- */
const mc_envelope_t *mc_bus_msg_envelope(const mc_bus_msg_t *msg);
mc_db_conn_t *mc_bus_msg_conn(const mc_bus_msg_t *msg);
mc_bus_t *mc_bus_msg_bus(const mc_bus_msg_t *msg);
/* The province that sent msg over the link (its CURVE key's name); NULL if it came
 * from a service of ours. */
const char *mc_bus_msg_peer(const mc_bus_msg_t *msg);
/* End the handling of msg. status MC_OK commits; MC_EDECODE, MC_EINVAL or MC_ERULE
 * are permanent (dead letter with reason, acknowledged); anything else rolls back and
 * the envelope comes again later. */
void mc_bus_done(mc_bus_msg_t *msg, int status, const char *reason);

/* ---- writing envelopes in a transaction ---- */
/* A set of envelopes to write in one statement. */
mc_outbox_t *mc_outbox_new(const char *service);
/* Add an envelope for every consumer of its body type (see envelope.c); the envelope
 * is stamped (id, type, source, time) and encoded now, so the caller may free it.
 * trace and causation may be NULL. */
void mc_outbox_add(mc_outbox_t *ob, mc_envelope_t *env, const char *trace, const char *causation);
/* Add an envelope for one named destination. */
void mc_outbox_add_to(mc_outbox_t *ob, const char *destination, mc_envelope_t *env,
                      const char *trace, const char *causation);
size_t mc_outbox_count(const mc_outbox_t *ob);
/* Insert every added envelope with one statement on conn (inside the caller's
 * transaction), once per outbox; fn gets the result as for mc_db_query. */
void mc_outbox_write(mc_outbox_t *ob, mc_db_conn_t *conn, mc_db_result_fn fn, void *arg);
void mc_outbox_destroy(mc_outbox_t **ob);

#endif
