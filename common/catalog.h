/* catalog.h: the agency tree and the procedure catalog, read from the versioned data
 * files (MOTCUA_DATA_DIR/catalog/agencies.json and procedures.json, described in
 * docs/catalog.md), checked, and stored into a service's schema.
 *
 * Storing is one transaction: every agency and procedure of the files is inserted or
 * updated, and those no longer in the files are marked retired (kept, so that old
 * dossiers stay findable under their old names). Dossiers in progress are untouched:
 * each carries the workflow of the version it was received under. */
#ifndef MC_CATALOG_H
#define MC_CATALOG_H

#include <jansson.h>
#include <libpq-fe.h>

#include "mc.h"

typedef struct mc_catalog mc_catalog_t;

/* Read and check the catalog files under data_dir; NULL with the reason in err
 * (file, entry and field named). */
mc_catalog_t *mc_catalog_read(const char *data_dir, char *err, size_t errlen);
void mc_catalog_destroy(mc_catalog_t **cat);
/* "agencies 2026.1, procedures 2026.1". */
const char *mc_catalog_version(const mc_catalog_t *cat);
size_t mc_catalog_agency_count(const mc_catalog_t *cat);
size_t mc_catalog_procedure_count(const mc_catalog_t *cat);

/* Store into <schema>.agencies, and into <schema>.procedures when with_procedures,
 * in one transaction on a blocking connection. */
int mc_catalog_store(PGconn *conn, const mc_catalog_t *cat, const char *schema, int with_procedures,
                     char *err, size_t errlen) MC_MUST_USE;

#endif
