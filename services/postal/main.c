/* motcua-postal: results returned by post (bưu chính công ích) and the postal intake
 * handover. A ResultReady by post becomes a shipment request (shipment.c); a worker
 * creates it with the carrier's API (carrier.c) and the applicant hears "shipped";
 * the carrier's signed tracking webhooks move it on and report delivery or failure to
 * routing (webhook.c); the carrier hands over the dossiers it collected through
 * intake's API (handover.c). docs/postal.md has the whole flow. */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "log.h"
#include "postal.h"

extern const mc_migration_t mc_sql_postal[];
extern const int mc_sql_postal_count;

static const mc_route_t routes[] = {
    {"POST", "/v1/postal/webhook", webhook_receive},
    {"POST", "/v1/postal/intake", handover_receive},
};

static const mc_bus_handler_t handlers[] = {
    {MOTCUA__V1__ENVELOPE__BODY_RESULT_READY, shipment_request},
};

#define OFF(f) offsetof(postal_config_t, f)
static const mc_conf_item_t config_table[] = {
    {"MOTCUA_CARRIER_URL", MC_CONF_STRING, OFF(carrier_url), "http://127.0.0.1:8090/carrier", 0, 0,
     NULL, "the carrier's API (shipments are created at <url>/shipments)"},
    {"MOTCUA_CARRIER_TOKEN", MC_CONF_STRING, OFF(carrier_token), "sandbox-carrier-token", 0, 0,
     NULL, "bearer token of the carrier's API"},
    {"MOTCUA_CARRIER_WEBHOOK_SECRET", MC_CONF_STRING, OFF(webhook_secret),
     "sandbox-carrier-webhook-secret", 0, 0, NULL,
     "HMAC-SHA256 key of the carrier's tracking webhooks"},
    {"MOTCUA_CARRIER_WEBHOOK_MAX_AGE_S", MC_CONF_INT, OFF(webhook_max_age_s), "300", 1, 86400, NULL,
     "webhooks with an older (or further future) timestamp are refused"},
    {"MOTCUA_INTAKE_URL", MC_CONF_STRING, OFF(intake_url), "http://127.0.0.1:8080", 0, 0, NULL,
     "intake's HTTP API, where postal intake hands dossiers over"},
    {"MOTCUA_POSTAL_INTAKE_KEY", MC_CONF_STRING, OFF(intake_key), "", 0, 0, NULL,
     "an integrator API key for intake (the dossiers of postal intake)"},
    {"MOTCUA_POSTAL_SENDER_NAME", MC_CONF_STRING, OFF(sender_name),
     "Trung tâm Phục vụ hành chính công tỉnh", 0, 0, NULL, "sender of results by post"},
    {"MOTCUA_POSTAL_SENDER_PHONE", MC_CONF_STRING, OFF(sender_phone), "02213000000", 0, 0, NULL,
     "the sender's phone number"},
    {"MOTCUA_POSTAL_SENDER_ADDRESS", MC_CONF_STRING, OFF(sender_address),
     "Số 1 đường Trung tâm, thành phố tỉnh lỵ", 0, 0, NULL, "the sender's address"},
    {"MOTCUA_POSTAL_TICK_MS", MC_CONF_INT, OFF(tick_ms), "1000", 50, 600000, NULL,
     "how often shipments to create are looked for (ms)"},
    {"MOTCUA_POSTAL_TIMEOUT_MS", MC_CONF_INT, OFF(timeout_ms), "10000", 100, 120000, NULL,
     "longest wait for the carrier or intake (ms)"},
    {"MOTCUA_POSTAL_LEASE_MS", MC_CONF_INT, OFF(lease_ms), "30000", 1000, 3600000, NULL,
     "a claimed shipment is retried after this long if its creation was not recorded (ms)"},
    {"MOTCUA_POSTAL_BACKOFF_MS", MC_CONF_INT, OFF(backoff_ms), "2000", 10, 600000, NULL,
     "first retry delay when the carrier fails; doubles, at most 10 minutes"},
};

int main(int argc, char **argv)
{
    postal_config_t cfg;
    char err[256];
    if (mc_config_load(&cfg, config_table, MC_COUNT(config_table), "postal", err, sizeof err)) {
        fprintf(stderr, "motcua-postal: configuration error: %s\n", err);
        return 2;
    }
    if (cfg.lease_ms < cfg.timeout_ms + 1000) {
        fprintf(stderr,
                "motcua-postal: configuration error: MOTCUA_POSTAL_LEASE_MS (%ld) must exceed "
                "MOTCUA_POSTAL_TIMEOUT_MS (%ld) by a second at least\n",
                cfg.lease_ms, cfg.timeout_ms);
        mc_config_free(&cfg, config_table, MC_COUNT(config_table));
        return 2;
    }
    mc_service_t *svc = mc_service_new("postal", argc, argv, mc_sql_postal, mc_sql_postal_count);
    postal_t postal = {.svc = svc, .auth = mc_auth_new(mc_service_db(svc)), .cfg = &cfg};
    mc_service_set_data(svc, &postal);
    if (!cfg.intake_key[0])
        mc_warn("postal intake: MOTCUA_POSTAL_INTAKE_KEY is not set: the dossiers the carrier "
                "hands over are answered 503 until it is");
    mc_service_routes(svc, routes, MC_COUNT(routes));
    mc_service_handlers(svc, handlers, MC_COUNT(handlers));
    carrier_start(&postal); /* requested shipments are created with the carrier */
    int status = mc_service_run(&svc);
    carrier_close(&postal);
    mc_auth_destroy(&postal.auth);
    mc_config_free(&cfg, config_table, MC_COUNT(config_table));
    return status;
}
