/* migrate.h: ordered, idempotent SQL migrations per schema.
 *
 * Migrations are embedded in the binaries (mk/embed_sql.sh turns NNN_title.sql files
 * into an mc_migration_t array). mc_migrate() applies, in version order, those not yet
 * recorded in <schema>.schema_migrations, each in its own transaction together with
 * its record, under a session-level advisory lock on the schema so that replicas
 * starting together apply each migration once. The text "@schema@" in a migration is
 * replaced by the schema name, so the bus tables (common/sql) serve every service.
 * It runs at start-up, before the loop, on a blocking connection. */
#ifndef MC_MIGRATE_H
#define MC_MIGRATE_H

#include <libpq-fe.h>

#include "mc.h"

typedef struct {
    int version;
    const char *name;
    const char *sql;
} mc_migration_t;

/* The bus tables every service has (outbox, inbox, dead letters). */
extern const mc_migration_t mc_sql_common[];
extern const int mc_sql_common_count;

/* Apply `component`'s migrations to `schema`. Returns the number applied (>= 0) or
 * a negative mc_err_t, with the reason in err. */
int mc_migrate(PGconn *conn, const char *schema, const char *component,
               const mc_migration_t *migrations, int count, char *err, size_t errlen) MC_MUST_USE;

/* Connect (blocking) and apply the bus tables and the service's own migrations. */
int mc_migrate_service(const char *db_url, const char *schema, const mc_migration_t *migrations,
                       int count, char *err, size_t errlen) MC_MUST_USE;

#endif
