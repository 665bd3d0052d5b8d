/* portal.c: national-portal status sync (being written). */
#include "interconnect.h"

void portal_status_changed(interconnect_t *ic, mc_bus_msg_t *msg, status_next_fn next)
{
    next(ic, msg);
}
