/* link.c: the motcua-to-motcua adapter between provinces (being written). */
#include "interconnect.h"

void link_status_changed(interconnect_t *ic, mc_bus_msg_t *msg, status_next_fn next)
{
    next(ic, msg);
}

void link_inbound_refused(interconnect_t *ic, mc_db_conn_t *conn, const char *system,
                          const char *ref_id, const char *handoff_id, const char *reason,
                          mc_db_result_fn fn, void *arg)
{
    (void)ic;
    (void)system;
    (void)ref_id;
    (void)handoff_id;
    (void)reason;
    mc_db_query(conn, "SELECT 1", NULL, 0, fn, arg);
}
