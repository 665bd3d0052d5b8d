/* interconnect.h: the interconnect service — liên thông handoffs to agency systems
 * outside motcua: recorded from routing's HandoffRequested, sent by the HTTP/JSON
 * agency adapter, answered by the agencies' signed callbacks, expired when late. */
#ifndef INTERCONNECT_H
#define INTERCONNECT_H

#include <uv.h>

#include "auth.h"
#include "bus.h"
#include "curve.h"
#include "fetch.h"
#include "http.h"
#include "outcall.h"
#include "service.h"

typedef struct {
    char *systems_file;   /* MOTCUA_INTERCONNECT_SYSTEMS: systems.json (default in data dir) */
    char *callback_base;  /* MOTCUA_INTERCONNECT_CALLBACK_URL: our base URL for callbacks */
    char *webhook_secret; /* MOTCUA_AGENCY_WEBHOOK_SECRET: HMAC-SHA256 key of callbacks */
    long webhook_max_age_s;
    long tick_ms;    /* how often handoffs to send are looked for */
    long timeout_ms; /* longest wait for an agency system */
    long lease_ms;   /* a claimed handoff is someone's for this long */
    long backoff_ms; /* first retry delay; doubles, at most 10 minutes */
    long expiry_ms;  /* how often overdue handoffs are looked for */
    /* inbound.c: dossiers from outside opened at intake (docs/portal.md) */
    char *intake_url; /* MOTCUA_INTERCONNECT_INTAKE_URL ("": http://127.0.0.1:<intake port>) */
    char *intake_key; /* MOTCUA_INTERCONNECT_INTAKE_KEY: an integrator key for intake */
    /* portal.c, reconcile.c, portal_inbound.c: the national public-service portal */
    char *portal_url;    /* MOTCUA_PORTAL_URL: its API base ("": no sync) */
    char *portal_token;  /* MOTCUA_PORTAL_TOKEN: our bearer token there */
    char *portal_secret; /* MOTCUA_PORTAL_SECRET: HMAC-SHA256 key of its dossiers to us */
    long portal_max_age_s;
    int portal_sync;     /* MOTCUA_PORTAL_SYNC: PORTAL_SYNC_ALL, _REFERENCED, _OFF */
    long reconcile_hour; /* local hour of the daily reconciliation, -1: never */
    long reconcile_days; /* dossiers synced within this many days are reconciled */
    /* link.c: other provinces' motcua over the CURVE bus (docs/interconnect-peers.md) */
    char *province;   /* MOTCUA_PROVINCE: our province's code, e.g. H99 */
    char *link_bind;  /* MOTCUA_INTERCONNECT_LINK_BIND: the link's endpoint ("": no link) */
    char *cert_file;  /* MOTCUA_INTERCONNECT_CERT: our key pair (czmq secret certificate) */
    char *peers_file; /* MOTCUA_INTERCONNECT_PEERS: peers.json (default in data dir) */
} interconnect_config_t;

enum { PORTAL_SYNC_ALL, PORTAL_SYNC_REFERENCED, PORTAL_SYNC_OFF };

/* One receiving system of systems.json: handoffs to agencies whose code starts with
 * prefix go there. */
typedef struct {
    char *prefix; /* agency codes starting with it ("" with a suffix) */
    char *suffix; /* or ending with it, e.g. ".H98" (NULL with a prefix) */
    char *kind;   /* "http" (agency_http.c) or "motcua" (link.c) */
    char *url;    /* http */
    char *token_env;
    char *token;    /* getenv(token_env) at start; NULL if unset */
    char *province; /* motcua: the peer province of peers.json */
} agency_system_t;

/* A peer province of peers.json. */
typedef struct {
    char *province;   /* its code, the name of its key and of its bus destination */
    char *name;       /* "Tỉnh Sông Mã" */
    char *endpoint;   /* its link, tcp://host:port */
    char *public_key; /* Z85 */
} peer_province_t;

/* Domain state shared by the handlers (mc_service_data). */
typedef struct {
    mc_service_t *svc;
    mc_auth_t *auth;
    const interconnect_config_t *cfg;
    agency_system_t *systems;
    size_t nsystems;
    char *callback_base;            /* cfg->callback_base, or http://<host>:<port> */
    mc_outcall_t *agency;           /* agency_http.c's worker */
    int sweeping;                   /* handoff.c: an expiry sweep is running */
    struct inbound_worker *inbound; /* inbound.c */
    struct portal *portal;          /* portal.c */
    peer_province_t *peers;         /* link.c */
    size_t npeers;
    int link_open;
} interconnect_t;

static inline interconnect_t *interconnect_of(void *svc)
{
    return mc_service_data(svc);
}

/* ---- handoff.c ---- */
/* HandoffRequested: record the handoff. */
void handoff_record(mc_bus_msg_t *msg, void *arg);
/* Record msg's HandoffRequested inside the handler's transaction: 'requested' for the
 * agency worker, or 'sent' to a peer province; fn gets one row (id, peer) if it was
 * recorded, none if the step's handoff is alive already. */
void handoff_insert(mc_bus_msg_t *msg, const char *peer, mc_db_result_fn fn, void *arg);
/* GET /v1/handoffs?dossier=&state=: list handoffs. */
void handoff_list(mc_http_req_t *req, void *arg);
/* Called once a move ended: status MC_OK or the failure; state the handoff's state
 * now (NULL: no such handoff); applied whether this move changed it. */
typedef void (*handoff_moved_fn)(int status, const char *state, int applied, void *arg);
/* Move handoff id to state `to` if the state machine allows it from where it is, and
 * in the same transaction tell routing (HandoffCompleted with result, HandoffFailed
 * with reason) when the new state calls for it. result, reason, trace may be NULL. */
void handoff_move(interconnect_t *ic, long long id, const char *to, const char *result,
                  const char *reason, const char *trace, handoff_moved_fn cb, void *arg);
/* The same move inside the caller's open transaction on conn (a bus handler's): it
 * neither begins nor commits; status is that of the statements. */
void handoff_move_in(interconnect_t *ic, mc_db_conn_t *conn, long long id, const char *to,
                     const char *result, const char *reason, const char *trace, handoff_moved_fn cb,
                     void *arg);
/* Timer: handoffs past their due time become 'expired' (once, with HandoffFailed). */
void handoff_expire(mc_service_t *svc);

/* ---- systems.c ---- */
/* Read a JSON file that must be an array (of `what`) and allocate *out for as many
 * zeroed elements of elem_size; the document (the caller's to decref), or NULL with the
 * reason in err. */
json_t *config_array_load(const char *path, const char *what, size_t elem_size, void **out,
                          char *err, size_t errlen);
/* Read systems.json into ic->systems; 0, or -1 with the reason in err. */
int systems_load(interconnect_t *ic, const char *path, char *err, size_t errlen);
void systems_free(interconnect_t *ic);
/* Log where handoffs go (once the log is set up). */
void systems_log(const interconnect_t *ic);
/* The system receiving agency's handoffs (longest prefix), or NULL. */
const agency_system_t *systems_find(const interconnect_t *ic, const char *agency);

/* ---- agency_http.c ---- */
/* Start the worker that sends requested handoffs to the agency systems (timer,
 * fetcher, its own stop signals); agency_http_close after mc_service_run. */
void agency_http_start(interconnect_t *ic);
void agency_http_close(interconnect_t *ic);

/* ---- status.c ---- */
/* DossierStatusChanged: the portal part, then the peer-province part, then done. */
void status_changed(mc_bus_msg_t *msg, void *arg);
/* One part of the DossierStatusChanged handling: it calls next(ic, msg) when its work
 * is written (on mc_bus_msg_conn(msg)), or ends the handling with mc_bus_done itself. */
typedef void (*status_next_fn)(interconnect_t *ic, mc_bus_msg_t *msg);

/* ---- portal.c: national-portal sync ---- */
void portal_status_changed(interconnect_t *ic, mc_bus_msg_t *msg, status_next_fn next);

/* ---- link.c: peer provinces over the CURVE bus ---- */
/* Read peers.json into ic->peers; 0, or -1 with the reason in err. */
int peers_load(interconnect_t *ic, const char *path, char *err, size_t errlen);
void peers_free(interconnect_t *ic);
const peer_province_t *peers_find(const interconnect_t *ic, const char *province);
/* Open the bus link to the peers if MOTCUA_INTERCONNECT_LINK_BIND is set; 0 or -1. */
int link_open(interconnect_t *ic, char *err, size_t errlen);
/* HandoffRequested for an agency of another province: record it 'sent' and write the
 * PeerHandoff for that province in the same transaction. */
void link_handoff_record(interconnect_t *ic, mc_bus_msg_t *msg, const agency_system_t *sys);
/* Bus handlers of the envelopes taken from the link. */
void link_peer_handoff(mc_bus_msg_t *msg, void *arg);
void link_peer_status(mc_bus_msg_t *msg, void *arg);
void link_status_changed(interconnect_t *ic, mc_bus_msg_t *msg, status_next_fn next);
/* The inbound worker could not open a dossier for a peer's handoff (intake refused
 * it): tell the origin province, inside the caller's transaction on conn; fn gets the
 * result as for mc_db_query. system is "province:<code>". */
void link_inbound_refused(interconnect_t *ic, mc_db_conn_t *conn, const char *system,
                          const char *ref_id, const char *handoff_id, const char *reason,
                          mc_db_result_fn fn, void *arg);

/* ---- inbound.c: dossiers from outside, opened at intake ---- */
/* Record a dossier to open at intake (POST /v1/dossiers with submission and the
 * reference {system, ref_id, handoff_id}), inside the caller's transaction on conn;
 * a second one with the same (system, ref_id) is ignored. fn gets the result as for
 * mc_db_query: one row (id) when recorded, none when it was there already.
 * handoff_id may be NULL. submission is borrowed. */
void inbound_add(interconnect_t *ic, mc_db_conn_t *conn, const char *system, const char *ref_id,
                 const char *handoff_id, json_t *submission, mc_db_result_fn fn, void *arg);
/* Start the worker that submits recorded dossiers to intake (timer, fetcher, stop). */
void inbound_start(interconnect_t *ic);
void inbound_close(interconnect_t *ic);

/* ---- portal.c: status sync to the national portal ---- */
/* Start the push worker and the daily reconciliation; portal_close after the run. */
void portal_start(interconnect_t *ic);
void portal_close(interconnect_t *ic);
/* Tell the portal, inside the caller's transaction, that intake refused its dossier
 * national_code (status 3) with reason. fn as for mc_db_query. */
void portal_refused(interconnect_t *ic, mc_db_conn_t *conn, const char *national_code,
                    const char *reason, mc_db_result_fn fn, void *arg);
/* GET /v1/portal/sync?dossier=&state=: the sync rows. */
void portal_sync_list(mc_http_req_t *req, void *arg);
/* POST /v1/portal/dossiers: a dossier submitted on the portal, signed (portal_inbound.c). */
void portal_dossier_receive(mc_http_req_t *req, void *arg);

/* ---- reconcile.c: what the portal lacks is sent again ---- */
/* POST /v1/portal/reconcile: start a run now (operators). */
void reconcile_request(mc_http_req_t *req, void *arg);
/* Timer: the daily run at MOTCUA_PORTAL_RECONCILE_HOUR (once a day across replicas). */
void reconcile_tick(mc_service_t *svc);

/* ---- callback.c ---- */
/* POST /v1/handoffs/{id}/result: an agency system's signed answer. */
void callback_receive(mc_http_req_t *req, void *arg);

#endif
