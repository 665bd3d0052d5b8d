/* interconnect.h: the interconnect service's handlers (liên thông handoffs). */
#ifndef INTERCONNECT_H
#define INTERCONNECT_H

#include "bus.h"
#include "http.h"

/* HandoffRequested: record the handoff (handoff.c). */
void handoff_record(mc_bus_msg_t *msg, void *arg);
/* GET /v1/handoffs?dossier=&state=: list handoffs (handoff.c). */
void handoff_list(mc_http_req_t *req, void *arg);

#endif
