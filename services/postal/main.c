/* motcua-postal: shipments of results by post, tracking webhooks, failed deliveries,
 * cash on delivery and the postal intake handover. Today it keeps the shipment requests
 * of results that go back by post; the carrier integration comes next. */
#include "postal.h"
#include "service.h"

extern const mc_migration_t mc_sql_postal[];
extern const int mc_sql_postal_count;

static const mc_bus_handler_t handlers[] = {
    {MOTCUA__V1__ENVELOPE__BODY_RESULT_READY, shipment_request},
};

int main(int argc, char **argv)
{
    mc_service_t *svc = mc_service_new("postal", argc, argv, mc_sql_postal, mc_sql_postal_count);
    mc_service_handlers(svc, handlers, MC_COUNT(handlers));
    return mc_service_run(&svc);
}
