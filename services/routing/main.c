/* motcua-routing: the case of every dossier, its steps, officers and deadlines. */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "routing.h"

extern const mc_migration_t mc_sql_routing[];
extern const int mc_sql_routing_count;

static const mc_route_t routes[] = {
    {"GET", "/v1/tasks", tasks_list},
    {"GET", "/v1/cases/{code}", case_show},
    {"POST", "/v1/dossiers/{code}/actions", action_apply},
    {"GET", "/v1/stats", stats_report},
};

static const mc_bus_handler_t handlers[] = {
    {MOTCUA__V1__ENVELOPE__BODY_DOSSIER_SUBMITTED, case_open},
    {MOTCUA__V1__ENVELOPE__BODY_PAYMENT_SETTLED, case_report},
    {MOTCUA__V1__ENVELOPE__BODY_PAYMENT_FAILED, case_report},
    {MOTCUA__V1__ENVELOPE__BODY_REFUND_COMPLETED, case_report},
    {MOTCUA__V1__ENVELOPE__BODY_RESULT_DELIVERED, case_report},
    {MOTCUA__V1__ENVELOPE__BODY_DELIVERY_FAILED, case_report},
    {MOTCUA__V1__ENVELOPE__BODY_HANDOFF_COMPLETED, case_report},
    {MOTCUA__V1__ENVELOPE__BODY_HANDOFF_FAILED, case_report},
};

typedef struct {
    long sweep_ms;
} routing_config_t;

static const mc_conf_item_t config_table[] = {
    {"MOTCUA_ROUTING_SWEEP_MS", MC_CONF_INT, offsetof(routing_config_t, sweep_ms), "30000", 100,
     3600000, NULL, "how often overdue cases are looked for (ms)"},
};

int main(int argc, char **argv)
{
    routing_config_t cfg;
    char err[256];
    if (mc_config_load(&cfg, config_table, MC_COUNT(config_table), "routing", err, sizeof err)) {
        fprintf(stderr, "motcua-routing: configuration error: %s\n", err);
        return 2;
    }
    mc_service_t *svc = mc_service_new("routing", argc, argv, mc_sql_routing, mc_sql_routing_count);
    routing_t routing = {.svc = svc, .auth = mc_auth_new(mc_service_db(svc))};
    mc_service_set_data(svc, &routing);
    mc_service_catalog(svc, 0); /* the agency tree, reloaded on SIGHUP */
    mc_service_routes(svc, routes, MC_COUNT(routes));
    mc_service_handlers(svc, handlers, MC_COUNT(handlers));
    mc_service_every(svc, (uint64_t)cfg.sweep_ms, deadline_sweep); /* overdue, apologies */
    int status = mc_service_run(&svc);
    mc_auth_destroy(&routing.auth);
    return status;
}
