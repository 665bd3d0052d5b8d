/* motcua-notify: templates and SMS / email / chat-app notifications to applicants.
 * Today it keeps every notification requested, once per event; the channels that
 * deliver them come next. */
#include "notify.h"
#include "service.h"

extern const mc_migration_t mc_sql_notify[];
extern const int mc_sql_notify_count;

static const mc_route_t routes[] = {
    {"GET", "/v1/notifications", notification_list},
};

static const mc_bus_handler_t handlers[] = {
    {MOTCUA__V1__ENVELOPE__BODY_NOTIFICATION_REQUESTED, notification_record},
};

int main(int argc, char **argv)
{
    mc_service_t *svc = mc_service_new("notify", argc, argv, mc_sql_notify, mc_sql_notify_count);
    notify_t state = {.svc = svc, .auth = mc_auth_new(mc_service_db(svc))};
    mc_service_set_data(svc, &state);
    mc_service_routes(svc, routes, MC_COUNT(routes));
    mc_service_handlers(svc, handlers, MC_COUNT(handlers));
    int status = mc_service_run(&svc);
    mc_auth_destroy(&state.auth);
    return status;
}
