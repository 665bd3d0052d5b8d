/* motcua-intake: dossier submission, dossier codes, receipts, the public status view and
 * the catalog read API. */
#include "intake.h"
#include "service.h"

extern const mc_migration_t mc_sql_intake[];
extern const int mc_sql_intake_count;

static const mc_route_t routes[] = {
    {"POST", "/v1/dossiers", dossier_submit},
    {"GET", "/v1/dossiers/{code}", dossier_lookup},
    {"GET", "/v1/dossiers/{code}/receipt", dossier_receipt},
    {"GET", "/v1/procedures", procedure_list},
    {"GET", "/v1/procedures/{code}", procedure_get},
    {"GET", "/v1/agencies", agency_list},
    {"GET", "/v1/calendar/due", calendar_due},
};

static const mc_bus_handler_t handlers[] = {
    {MOTCUA__V1__ENVELOPE__BODY_DOSSIER_STATUS_CHANGED, status_view_update},
    {MOTCUA__V1__ENVELOPE__BODY_HANDOFF_PROGRESS, status_view_progress},
};

int main(int argc, char **argv)
{
    mc_service_t *svc = mc_service_new("intake", argc, argv, mc_sql_intake, mc_sql_intake_count);
    intake_t intake = {.svc = svc, .auth = mc_auth_new(mc_service_db(svc))};
    mc_service_set_data(svc, &intake);
    mc_service_catalog(svc, 1); /* agencies and procedures, reloaded on SIGHUP */
    mc_service_routes(svc, routes, MC_COUNT(routes));
    mc_service_handlers(svc, handlers, MC_COUNT(handlers));
    int status = mc_service_run(&svc);
    mc_auth_destroy(&intake.auth);
    return status;
}
