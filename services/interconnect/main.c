/* motcua-interconnect: liên thông handoffs to agencies outside motcua. It records the
 * handoffs routing asks for (handoff.c), sends them to the agency systems of
 * systems.json with the HTTP/JSON adapter (agency_http.c), takes the systems' signed
 * answers (callback.c), tells routing how each ended, and expires the late ones.
 * docs/handoffs.md has the protocol and the states. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "interconnect.h"
#include "log.h"

extern const mc_migration_t mc_sql_interconnect[];
extern const int mc_sql_interconnect_count;

static const mc_route_t routes[] = {
    {"GET", "/v1/handoffs", handoff_list},
    {"POST", "/v1/handoffs/{id}/result", callback_receive},
    /* the national portal (docs/portal.md) */
    {"POST", "/v1/portal/dossiers", portal_dossier_receive},
    {"GET", "/v1/portal/sync", portal_sync_list},
    {"POST", "/v1/portal/reconcile", reconcile_request},
};

static const mc_bus_handler_t handlers[] = {
    {MOTCUA__V1__ENVELOPE__BODY_HANDOFF_REQUESTED, handoff_record},
    {MOTCUA__V1__ENVELOPE__BODY_DOSSIER_STATUS_CHANGED, status_changed},
    /* from other provinces, over the link only (link.c) */
    {MOTCUA__V1__ENVELOPE__BODY_PEER_HANDOFF, link_peer_handoff},
    {MOTCUA__V1__ENVELOPE__BODY_PEER_STATUS, link_peer_status},
};

#define OFF(f) offsetof(interconnect_config_t, f)
static const mc_conf_item_t config_table[] = {
    {"MOTCUA_INTERCONNECT_INTAKE_URL", MC_CONF_STRING, OFF(intake_url), "", 0, 0, NULL,
     "intake's base URL for dossiers from outside (default http://127.0.0.1:<intake port>)"},
    {"MOTCUA_INTERCONNECT_INTAKE_KEY", MC_CONF_STRING, OFF(intake_key), "", 0, 0, NULL,
     "an integrator API key for intake (dossiers from the national portal and peer provinces)"},
    {"MOTCUA_PORTAL_URL", MC_CONF_STRING, OFF(portal_url), "", 0, 0, NULL,
     "the national portal's sync API base URL (\"\": no status sync)"},
    {"MOTCUA_PORTAL_TOKEN", MC_CONF_STRING, OFF(portal_token), "sandbox-portal-token", 0, 0, NULL,
     "our bearer token at the national portal"},
    {"MOTCUA_PORTAL_SECRET", MC_CONF_STRING, OFF(portal_secret), "sandbox-portal-secret", 0, 0,
     NULL, "HMAC-SHA256 key of the dossiers the national portal sends us"},
    {"MOTCUA_PORTAL_MAX_AGE_S", MC_CONF_INT, OFF(portal_max_age_s), "300", 1, 86400, NULL,
     "portal dossiers with an older (or further future) timestamp are refused"},
    {"MOTCUA_PORTAL_SYNC", MC_CONF_ENUM, OFF(portal_sync), "all", 0, 0, "all|referenced|off",
     "which dossiers' status changes go to the portal: all, those from the portal, none"},
    {"MOTCUA_PORTAL_RECONCILE_HOUR", MC_CONF_INT, OFF(reconcile_hour), "2", -1, 23, NULL,
     "local hour of the daily reconciliation with the portal (-1: never)"},
    {"MOTCUA_PORTAL_RECONCILE_DAYS", MC_CONF_INT, OFF(reconcile_days), "90", 1, 3650, NULL,
     "dossiers synced within this many days are reconciled"},
    {"MOTCUA_PROVINCE", MC_CONF_STRING, OFF(province), "H99", 0, 0, NULL,
     "our province's code (capital letters and digits), as the peer provinces know us"},
    {"MOTCUA_INTERCONNECT_LINK_BIND", MC_CONF_STRING, OFF(link_bind), "", 0, 0, NULL,
     "where the CURVE link to other provinces listens, e.g. tcp://0.0.0.0:7190 (\"\": no link)"},
    {"MOTCUA_INTERCONNECT_CERT", MC_CONF_STRING, OFF(cert_file), "", 0, 0, NULL,
     "our province's key pair for the link (motcuactl curve keygen; the _secret file)"},
    {"MOTCUA_INTERCONNECT_PEERS", MC_CONF_STRING, OFF(peers_file), "", 0, 0, NULL,
     "the peer provinces file (default <MOTCUA_DATA_DIR>/interconnect/peers.json)"},
    {"MOTCUA_INTERCONNECT_SYSTEMS", MC_CONF_STRING, OFF(systems_file), "", 0, 0, NULL,
     "the agency systems file (default <MOTCUA_DATA_DIR>/interconnect/systems.json)"},
    {"MOTCUA_INTERCONNECT_CALLBACK_URL", MC_CONF_STRING, OFF(callback_base), "", 0, 0, NULL,
     "our base URL as the agency systems reach it (default http://<host>:<port>)"},
    {"MOTCUA_AGENCY_WEBHOOK_SECRET", MC_CONF_STRING, OFF(webhook_secret), "sandbox-agency-secret",
     0, 0, NULL, "HMAC-SHA256 key of the agency systems' callbacks"},
    {"MOTCUA_AGENCY_WEBHOOK_MAX_AGE_S", MC_CONF_INT, OFF(webhook_max_age_s), "300", 1, 86400, NULL,
     "callbacks with an older (or further future) timestamp are refused"},
    {"MOTCUA_INTERCONNECT_TICK_MS", MC_CONF_INT, OFF(tick_ms), "1000", 50, 600000, NULL,
     "how often handoffs to send are looked for (ms)"},
    {"MOTCUA_INTERCONNECT_TIMEOUT_MS", MC_CONF_INT, OFF(timeout_ms), "10000", 100, 120000, NULL,
     "longest wait for an agency system (ms)"},
    {"MOTCUA_INTERCONNECT_LEASE_MS", MC_CONF_INT, OFF(lease_ms), "30000", 1000, 3600000, NULL,
     "a claimed handoff is sent again after this long if its answer was not recorded (ms)"},
    {"MOTCUA_INTERCONNECT_BACKOFF_MS", MC_CONF_INT, OFF(backoff_ms), "2000", 10, 600000, NULL,
     "first retry delay when a system fails; doubles, at most 10 minutes"},
    {"MOTCUA_INTERCONNECT_EXPIRY_MS", MC_CONF_INT, OFF(expiry_ms), "60000", 50, 3600000, NULL,
     "how often handoffs past their due time are looked for (ms)"},
};

int main(int argc, char **argv)
{
    interconnect_config_t cfg;
    char err[512];
    if (mc_config_load(&cfg, config_table, MC_COUNT(config_table), "interconnect", err,
                       sizeof err)) {
        fprintf(stderr, "motcua-interconnect: configuration error: %s\n", err);
        return 2;
    }
    if (cfg.lease_ms < cfg.timeout_ms + 1000) {
        fprintf(stderr,
                "motcua-interconnect: configuration error: MOTCUA_INTERCONNECT_LEASE_MS (%ld) "
                "must exceed MOTCUA_INTERCONNECT_TIMEOUT_MS (%ld) by a second at least\n",
                cfg.lease_ms, cfg.timeout_ms);
        mc_config_free(&cfg, config_table, MC_COUNT(config_table));
        return 2;
    }
    /* The peers and systems first, so that a bad file stops us before anything starts. */
    interconnect_t state = {.cfg = &cfg};
    const char *data_dir = getenv("MOTCUA_DATA_DIR");
    data_dir = data_dir && *data_dir ? data_dir : "deploy/data";
    char *peers = cfg.peers_file[0] ? mc_strdup(cfg.peers_file)
                                    : mc_sprintf("%s/interconnect/peers.json", data_dir);
    int bad = !*cfg.province ||
              strspn(cfg.province, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != strlen(cfg.province);
    if (bad)
        snprintf(err, sizeof err, "MOTCUA_PROVINCE must be a code of capital letters and digits");
    else if (cfg.peers_file[0] || access(peers, F_OK) == 0)
        bad = peers_load(&state, peers, err, sizeof err);
    free(peers);
    char *systems = cfg.systems_file[0] ? mc_strdup(cfg.systems_file)
                                        : mc_sprintf("%s/interconnect/systems.json", data_dir);
    if (!bad)
        bad = systems_load(&state, systems, err, sizeof err);
    if (!bad && cfg.link_bind[0]) { /* the link's key pair, before anything starts */
        zcert_t *cert = mc_curve_load_secret(cfg.cert_file, err, sizeof err);
        bad = !cert;
        zcert_destroy(&cert);
    }
    free(systems);
    if (bad) {
        fprintf(stderr, "motcua-interconnect: configuration error: %s\n", err);
        systems_free(&state);
        peers_free(&state);
        mc_config_free(&cfg, config_table, MC_COUNT(config_table));
        return 2;
    }
    mc_service_t *svc =
        mc_service_new("interconnect", argc, argv, mc_sql_interconnect, mc_sql_interconnect_count);
    const mc_service_config_t *sc = mc_service_config(svc);
    state.svc = svc;
    state.auth = mc_auth_new(mc_service_db(svc));
    systems_log(&state);
    if (link_open(&state, err, sizeof err)) { /* other provinces, over CURVE */
        mc_error("link: %s", err);
        exit(2); /* as the service's own start-up failures do */
    }
    state.callback_base = cfg.callback_base[0]
                              ? mc_strdup(cfg.callback_base)
                              : mc_sprintf("http://%s:%d", sc->http_host, sc->http_port);
    mc_service_set_data(svc, &state);
    mc_service_routes(svc, routes, MC_COUNT(routes));
    mc_service_handlers(svc, handlers, MC_COUNT(handlers));
    agency_http_start(&state); /* requested handoffs are sent to the agency systems */
    mc_service_every(svc, (uint64_t)cfg.expiry_ms, handoff_expire);
    inbound_start(&state); /* dossiers from outside are opened at intake */
    portal_start(&state);  /* status changes go to the national portal */
    int status = mc_service_run(&svc);
    portal_close(&state);
    inbound_close(&state);
    agency_http_close(&state);
    systems_free(&state);
    peers_free(&state);
    free(state.callback_base);
    mc_auth_destroy(&state.auth);
    mc_config_free(&cfg, config_table, MC_COUNT(config_table));
    return status;
}
