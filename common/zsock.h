/* zsock.h: a ZeroMQ socket driven by the libuv loop.
 *
 * The socket's ZMQ_FD is watched with uv_poll. That fd is edge-triggered and only
 * says "ZMQ_EVENTS may have changed", so every wake-up, and every send (which can
 * consume a pending edge), is followed by draining: receive while ZMQ_EVENTS has
 * ZMQ_POLLIN. A send also schedules a drain on the next loop turn, so an inbound
 * message whose edge was swallowed by the send is never stranded. */
#ifndef MC_ZSOCK_H
#define MC_ZSOCK_H

#include <czmq.h>
#include <uv.h>

#include "mc.h"

typedef struct mc_zsock mc_zsock_t;

/* Called once per received message; the callback owns *msg (destroy or keep it). */
typedef void (*mc_zsock_recv_fn)(mc_zsock_t *zs, zmsg_t **msg, void *arg);

/* Wrap a czmq socket (ownership of *sock passes to the wrapper; *sock becomes NULL). */
mc_zsock_t *mc_zsock_new(uv_loop_t *loop, zsock_t **sock, mc_zsock_recv_fn fn, void *arg);
/* Send without blocking. Takes ownership of *msg on success and on failure.
 * Returns MC_EUNAVAIL when the socket cannot take it now (no peer, high-water mark). */
int mc_zsock_send(mc_zsock_t *zs, zmsg_t **msg) MC_MUST_USE;
/* The underlying czmq socket (owned by the wrapper). */
zsock_t *mc_zsock_sock(mc_zsock_t *zs);
/* Stop receiving and close; the socket is destroyed and memory freed once libuv has
 * closed its handles. Sets *zs to NULL; safe on NULL. */
void mc_zsock_destroy(mc_zsock_t **zs);

#endif
