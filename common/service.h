/* service.h: what every motcua service is made of, wired in one place.
 *
 * mc_service_new reads the configuration (environment, see service.c for the table),
 * starts logging, applies the service's migrations (waiting for the database if it
 * is not up yet), and creates the loop, the database pool, the bus (ROUTER bound,
 * DEALERs to every other service) and the HTTP server with /healthz, /readyz and
 * /metrics. mc_service_run runs the loop until SIGTERM or SIGINT, then stops in
 * order: no new HTTP connections and HTTP requests in flight finish (up to 10 s), the
 * bus finishes its batch in flight and sends its Acks, timers stop, the pool closes;
 * the loop must then close cleanly. */
#ifndef MC_SERVICE_H
#define MC_SERVICE_H

#include <uv.h>

#include "bus.h"
#include "calendar.h"
#include "db.h"
#include "http.h"
#include "migrate.h"

typedef struct mc_service mc_service_t;

typedef struct {
    char *database_url;
    char *http_host;
    int http_port;
    char *bus_bind;
    char *peer_endpoints[6]; /* indexed like mc_service_names */
    long db_pool;
    long bus_batch;
    long bus_lease_ms;
    long bus_retention_hours;
    char *bus_curve_dir; /* MOTCUA_BUS_CURVE_DIR: the services' key pairs ("": plain bus) */
    long max_body;
    int log_level;
    int log_format;
    char *data_dir;
    char *work_hours;
} mc_service_config_t;

/* The six services, in port order (intake 8080/7180 ... notify 8085/7185). */
extern const char *const mc_service_names[6];

/* Build a service; exits the process with a clear message on bad configuration. */
mc_service_t *mc_service_new(const char *name, int argc, char **argv,
                             const mc_migration_t *migrations, int nmigrations);
void mc_service_routes(mc_service_t *svc, const mc_route_t *routes, size_t n);
void mc_service_handlers(mc_service_t *svc, const mc_bus_handler_t *handlers, size_t n);
/* Call fn every `ms` milliseconds on the loop (stopped at shutdown). */
void mc_service_every(mc_service_t *svc, uint64_t ms, void (*fn)(mc_service_t *svc));
/* Domain state of the service, for handlers. */
void mc_service_set_data(mc_service_t *svc, void *data);
void *mc_service_data(const mc_service_t *svc);
const char *mc_service_name(const mc_service_t *svc);
mc_db_t *mc_service_db(const mc_service_t *svc);
mc_bus_t *mc_service_bus(const mc_service_t *svc);
uv_loop_t *mc_service_loop(const mc_service_t *svc);
const mc_service_config_t *mc_service_config(const mc_service_t *svc);
/* The working-day calendar (MOTCUA_DATA_DIR/calendar.csv, MOTCUA_WORK_HOURS), loaded
 * at start-up and again on SIGHUP. */
const mc_calendar_t *mc_service_calendar(const mc_service_t *svc);
/* Store the catalog (agencies, and procedures if asked) into this service's schema now
 * (exits on a bad catalog) and again on SIGHUP (a bad catalog is then logged and the
 * previous one kept). */
void mc_service_catalog(mc_service_t *svc, int with_procedures);

/* A domain worker with calls to outside systems in flight (mc_fetch) that must end
 * before the database pool closes. When the service starts to stop, stop(arg) is
 * called: the worker takes no new work and calls mc_service_stopped(svc) once its calls
 * in flight are over. The service waits for every worker, and for its requests in
 * flight and its bus, at most MC_SERVICE_GRACE_MS from the signal, then calls
 * close(arg) (cancel what is left, free the worker's handles) and closes the pool. A
 * call cut off this way is left to the worker's lease: it is tried again later; an
 * envelope the bus could not acknowledge (its database gone) comes again. */
#define MC_SERVICE_GRACE_MS 10000
void mc_service_on_stop(mc_service_t *svc, void (*stop)(void *arg), void (*close)(void *arg),
                        void *arg);
void mc_service_stopped(mc_service_t *svc);
/* 1 once the service has started to stop. */
int mc_service_stopping(const mc_service_t *svc);

/* Run until a stop signal; frees everything and sets *svc to NULL. Returns the exit
 * status for main. */
int mc_service_run(mc_service_t **svc);

#endif
