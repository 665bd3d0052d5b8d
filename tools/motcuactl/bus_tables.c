/* bus_tables.c: `motcuactl migrate`: create or update the bus tables (outbox, inbox,
 * dead letters: common/sql) in each service's schema.
 *
 * It applies the same embedded migrations, through the same mc_migrate (advisory lock,
 * one transaction per migration, recorded under component "bus"), as a service does
 * at start-up, so running it before, after or while the services start is safe. The
 * services' own migrations are embedded in their binaries, not in libmotcua.a: each
 * service applies them when it starts. */
#include "ctl.h"
#include "migrate.h"
#include "service.h"

int ctl_migrate(ctl_t *ctl)
{
    for (int i = 0; i < ctl->nargs; i++)
        if (ctl_want_service(ctl->args[i]) != CTL_OK)
            return CTL_USAGE;
    int rc = ctl_connect(ctl);
    if (rc != CTL_OK)
        return rc;
    ctl_table_t *t = ctl_table_new(2, (const char *const[]){"SCHEMA", "BUS TABLES"}, 0);
    int failed = 0;
    int n = ctl->nargs ? ctl->nargs : CTL_NSERVICES;
    for (int i = 0; i < n; i++) {
        const char *schema = ctl->nargs ? ctl->args[i] : mc_service_names[i];
        char err[512] = "", what[600];
        int applied = mc_migrate(ctl->conn, schema, "bus", mc_sql_common, mc_sql_common_count, err,
                                 sizeof err);
        if (applied < 0) {
            snprintf(what, sizeof what, "FAILED: %s", err);
            failed = 1;
        } else if (applied == 0) {
            snprintf(what, sizeof what, "up to date");
        } else {
            snprintf(what, sizeof what, "%d migration%s applied", applied, applied == 1 ? "" : "s");
        }
        ctl_table_add(t, (const char *const[]){schema, what});
    }
    ctl_table_print(t, stdout, "");
    ctl_table_destroy(&t);
    printf("\nnote: each service applies its own schema's migrations when it starts.\n");
    return failed ? CTL_FAIL : CTL_OK;
}
