/* postal.h: the postal service's handlers (results returned by post). */
#ifndef POSTAL_H
#define POSTAL_H

#include "bus.h"

/* ResultReady: keep a shipment request for results that go back by post (shipment.c). */
void shipment_request(mc_bus_msg_t *msg, void *arg);

#endif
