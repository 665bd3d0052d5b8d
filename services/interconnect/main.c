/* motcua-interconnect: liên thông handoffs to other agencies and provinces, national-portal sync.
 * The foundation runs it with its database schema, bus, health and metrics; its
 * domain handlers arrive with their issues. */
#include "service.h"

extern const mc_migration_t mc_sql_interconnect[];
extern const int mc_sql_interconnect_count;

int main(int argc, char **argv)
{
    mc_service_t *svc = mc_service_new("interconnect", argc, argv, mc_sql_interconnect, mc_sql_interconnect_count);
    return mc_service_run(&svc);
}
