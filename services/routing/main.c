/* motcua-routing: the case of every dossier, its steps, officers and deadlines. */
#include "routing.h"
#include "service.h"

extern const mc_migration_t mc_sql_routing[];
extern const int mc_sql_routing_count;

static const mc_route_t routes[] = {
    {"GET", "/v1/cases/{code}", case_show},
};

static const mc_bus_handler_t handlers[] = {
    {MOTCUA__V1__ENVELOPE__BODY_DOSSIER_SUBMITTED, case_open},
};

int main(int argc, char **argv)
{
    mc_service_t *svc =
        mc_service_new("routing", argc, argv, mc_sql_routing, mc_sql_routing_count);
    mc_service_catalog(svc, 0); /* the agency tree, reloaded on SIGHUP */
    mc_service_routes(svc, routes, MC_COUNT(routes));
    mc_service_handlers(svc, handlers, MC_COUNT(handlers));
    return mc_service_run(&svc);
}
