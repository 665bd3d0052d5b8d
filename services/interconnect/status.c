/* status.c: DossierStatusChanged, heard by interconnect for two reasons, in one inbox
 * transaction: the national portal is told of the change (portal.c), and a dossier a
 * peer province handed us reports back to that province (link.c). Each part either
 * calls the next or ends the handling with an error itself. */
#include "error.h"
#include "interconnect.h"

static void after_link(interconnect_t *ic, mc_bus_msg_t *msg)
{
    (void)ic;
    mc_bus_done(msg, MC_OK, NULL);
}

static void after_portal(interconnect_t *ic, mc_bus_msg_t *msg)
{
    link_status_changed(ic, msg, after_link);
}

void status_changed(mc_bus_msg_t *msg, void *arg)
{
    portal_status_changed(interconnect_of(arg), msg, after_portal);
}
