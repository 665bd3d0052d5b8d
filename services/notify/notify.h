/* notify.h: the notify service's handlers. */
#ifndef NOTIFY_H
#define NOTIFY_H

#include "bus.h"
#include "http.h"

/* NotificationRequested: keep the request (request.c). */
void notification_record(mc_bus_msg_t *msg, void *arg);
/* GET /v1/notifications?dossier=CODE (request.c). */
void notification_list(mc_http_req_t *req, void *arg);

#endif
