/* motcua-payment: fee orders, payment-gateway callbacks, refunds and reconciliation.
 * The foundation runs it with its database schema, bus, health and metrics; its
 * domain handlers arrive with their issues. */
#include "service.h"

extern const mc_migration_t mc_sql_payment[];
extern const int mc_sql_payment_count;

int main(int argc, char **argv)
{
    mc_service_t *svc = mc_service_new("payment", argc, argv, mc_sql_payment, mc_sql_payment_count);
    return mc_service_run(&svc);
}
