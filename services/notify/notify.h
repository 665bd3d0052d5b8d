/* notify.h: the notify service's handlers. */
#ifndef NOTIFY_H
#define NOTIFY_H

#include "auth.h"
#include "bus.h"
#include "http.h"
#include "service.h"

/* Domain state shared by the handlers (mc_service_data). */
typedef struct {
    mc_service_t *svc;
    mc_auth_t *auth;
} notify_t;

static inline notify_t *notify_of(void *svc)
{
    return mc_service_data(svc);
}

/* NotificationRequested: keep the request (request.c). */
void notification_record(mc_bus_msg_t *msg, void *arg);
/* GET /v1/notifications?dossier=CODE (request.c). */
void notification_list(mc_http_req_t *req, void *arg);

#endif
