/* postal.h: the postal service — results returned by post (shipments with the carrier,
 * its tracking webhooks) and the postal intake handover. */
#ifndef POSTAL_H
#define POSTAL_H

#include <uv.h>

#include "auth.h"
#include "bus.h"
#include "fetch.h"
#include "http.h"
#include "outcall.h"
#include "service.h"

typedef struct {
    char *carrier_url;    /* MOTCUA_CARRIER_URL: base of the carrier's API (…/carrier) */
    char *carrier_token;  /* MOTCUA_CARRIER_TOKEN: our bearer token there */
    char *webhook_secret; /* MOTCUA_CARRIER_WEBHOOK_SECRET: HMAC-SHA256 key of webhooks */
    long webhook_max_age_s;
    char *intake_url;  /* MOTCUA_INTAKE_URL: intake's HTTP API, for postal intake */
    char *intake_key;  /* MOTCUA_POSTAL_INTAKE_KEY: an integrator API key for intake */
    char *sender_name; /* MOTCUA_POSTAL_SENDER_*: the one-stop centre, sender of results */
    char *sender_phone;
    char *sender_address;
    long tick_ms;    /* how often shipments to create are looked for */
    long timeout_ms; /* longest wait for the carrier or intake */
    long lease_ms;   /* a claimed shipment is someone's for this long */
    long backoff_ms; /* first retry delay; doubles, at most 10 minutes */
} postal_config_t;

/* Domain state shared by the handlers (mc_service_data). */
typedef struct {
    mc_service_t *svc;
    mc_auth_t *auth;
    const postal_config_t *cfg;
    mc_outcall_t *carrier; /* carrier.c's worker; its fetcher and stop serve handover.c too */
} postal_t;

static inline postal_t *postal_of(void *svc)
{
    return mc_service_data(svc);
}

/* ---- shipment.c ---- */
/* ResultReady: keep a shipment request for results that go back by post. */
void shipment_request(mc_bus_msg_t *msg, void *arg);

/* ---- carrier.c ---- */
/* Start the worker that creates requested shipments with the carrier (timer, fetcher,
 * its own stop signals); carrier_close after mc_service_run. */
void carrier_start(postal_t *p);
void carrier_close(postal_t *p);

/* ---- webhook.c ---- */
/* POST /v1/postal/webhook: the carrier's signed tracking events. */
void webhook_receive(mc_http_req_t *req, void *arg);

/* ---- handover.c ---- */
/* POST /v1/postal/intake: a batch of dossiers the carrier collected, into intake. */
void handover_receive(mc_http_req_t *req, void *arg);

#endif
