/* routing.h: the routing service's handlers (the case of every dossier). */
#ifndef ROUTING_H
#define ROUTING_H

#include "bus.h"
#include "http.h"

/* DossierSubmitted: open the case and announce its status (case_open.c). */
void case_open(mc_bus_msg_t *msg, void *arg);
/* GET /v1/cases/{code}: the case as routing holds it, for officers (case_open.c). */
void case_show(mc_http_req_t *req, void *arg);

#endif
