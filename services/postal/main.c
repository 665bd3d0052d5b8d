/* motcua-postal: shipments of results by post, tracking webhooks and postal intake handover.
 * The foundation runs it with its database schema, bus, health and metrics; its
 * domain handlers arrive with their issues. */
#include "service.h"

extern const mc_migration_t mc_sql_postal[];
extern const int mc_sql_postal_count;

int main(int argc, char **argv)
{
    mc_service_t *svc = mc_service_new("postal", argc, argv, mc_sql_postal, mc_sql_postal_count);
    return mc_service_run(&svc);
}
