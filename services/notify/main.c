/* motcua-notify: templates and SMS / email / chat-app notifications to applicants.
 * The foundation runs it with its database schema, bus, health and metrics; its
 * domain handlers arrive with their issues. */
#include "service.h"

extern const mc_migration_t mc_sql_notify[];
extern const int mc_sql_notify_count;

int main(int argc, char **argv)
{
    mc_service_t *svc = mc_service_new("notify", argc, argv, mc_sql_notify, mc_sql_notify_count);
    return mc_service_run(&svc);
}
