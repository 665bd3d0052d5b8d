/* motcua-interconnect: liên thông handoffs to other agencies and provinces, and the
 * national-portal sync. Today it records the handoffs routing asks for, so that they
 * are kept and visible; sending them to the receiving systems comes next. */
#include "interconnect.h"
#include "service.h"

extern const mc_migration_t mc_sql_interconnect[];
extern const int mc_sql_interconnect_count;

static const mc_route_t routes[] = {
    {"GET", "/v1/handoffs", handoff_list},
};

static const mc_bus_handler_t handlers[] = {
    {MOTCUA__V1__ENVELOPE__BODY_HANDOFF_REQUESTED, handoff_record},
};

int main(int argc, char **argv)
{
    mc_service_t *svc =
        mc_service_new("interconnect", argc, argv, mc_sql_interconnect, mc_sql_interconnect_count);
    interconnect_t state = {.svc = svc, .auth = mc_auth_new(mc_service_db(svc))};
    mc_service_set_data(svc, &state);
    mc_service_routes(svc, routes, MC_COUNT(routes));
    mc_service_handlers(svc, handlers, MC_COUNT(handlers));
    int status = mc_service_run(&svc);
    mc_auth_destroy(&state.auth);
    return status;
}
