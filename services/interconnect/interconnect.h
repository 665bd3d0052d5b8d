/* interconnect.h: the interconnect service's handlers (liên thông handoffs). */
#ifndef INTERCONNECT_H
#define INTERCONNECT_H

#include "auth.h"
#include "bus.h"
#include "http.h"
#include "service.h"

/* Domain state shared by the handlers (mc_service_data). */
typedef struct {
    mc_service_t *svc;
    mc_auth_t *auth;
} interconnect_t;

static inline interconnect_t *interconnect_of(void *svc)
{
    return mc_service_data(svc);
}

/* HandoffRequested: record the handoff (handoff.c). */
void handoff_record(mc_bus_msg_t *msg, void *arg);
/* GET /v1/handoffs?dossier=&state=: list handoffs (handoff.c). */
void handoff_list(mc_http_req_t *req, void *arg);

#endif
