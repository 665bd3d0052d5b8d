/* zsock.c: ZeroMQ sockets on the libuv loop (ZMQ_FD + uv_poll, drained on every edge). */
#include "zsock.h"

#include <assert.h>

#include "error.h"
#include "log.h"

struct mc_zsock {
    uv_poll_t poll;  /* watches ZMQ_FD */
    uv_timer_t kick; /* drains on the next loop turn after a send */
    zsock_t *sock;
    mc_zsock_recv_fn fn;
    void *arg;
    int closing;
    int open_handles;
    int draining; /* guards against re-entry from a callback that sends */
};

static void on_kick(uv_timer_t *timer);

static void drain(mc_zsock_t *zs)
{
    if (zs->draining || zs->closing)
        return;
    zs->draining = 1;
    /* Bounded per turn so one busy socket cannot starve the loop; the kick timer
     * brings us back for the rest. */
    for (int budget = 1024; budget > 0 && !zs->closing; budget--) {
        if (!(zsock_events(zs->sock) & ZMQ_POLLIN))
            break;
        zmsg_t *msg = zmsg_recv(zs->sock); /* whole message is queued: no wait */
        if (!msg)
            break;
        zs->fn(zs, &msg, zs->arg);
        zmsg_destroy(&msg);
        if (budget == 1)
            uv_timer_start(&zs->kick, on_kick, 0, 0);
    }
    zs->draining = 0;
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    (void)events;
    mc_zsock_t *zs = mc_container_of(handle, mc_zsock_t, poll);
    if (status < 0)
        mc_warn("zsock: poll error: %s", uv_strerror(status));
    drain(zs);
}

static void on_kick(uv_timer_t *timer)
{
    drain(mc_container_of(timer, mc_zsock_t, kick));
}

mc_zsock_t *mc_zsock_new(uv_loop_t *loop, zsock_t **sock, mc_zsock_recv_fn fn, void *arg)
{
    assert(sock && *sock && fn);
    mc_zsock_t *zs = mc_new(mc_zsock_t);
    zs->sock = *sock;
    *sock = NULL;
    zs->fn = fn;
    zs->arg = arg;
    /* Never block the loop: a full queue or a missing peer fails the send at once. */
    zsock_set_sndtimeo(zs->sock, 0);
    zsock_set_rcvtimeo(zs->sock, 0);
    int rc = uv_poll_init(loop, &zs->poll, zsock_fd(zs->sock));
    assert(rc == 0);
    uv_timer_init(loop, &zs->kick);
    zs->open_handles = 2;
    uv_poll_start(&zs->poll, UV_READABLE, on_poll);
    uv_timer_start(&zs->kick, on_kick, 0, 0);
    return zs;
}

int mc_zsock_send(mc_zsock_t *zs, zmsg_t **msg)
{
    assert(msg && *msg);
    if (zs->closing) {
        zmsg_destroy(msg);
        return MC_ECLOSED;
    }
    int rc = MC_OK;
    if (zmsg_send(msg, zs->sock) != 0) {
        rc = errno == EAGAIN || errno == EHOSTUNREACH ? MC_EUNAVAIL : mc_err_from_errno(errno);
        zmsg_destroy(msg);
    }
    /* Sending may have consumed the edge that announced inbound data. */
    if (!uv_is_active((uv_handle_t *)&zs->kick))
        uv_timer_start(&zs->kick, on_kick, 0, 0);
    return rc;
}

zsock_t *mc_zsock_sock(mc_zsock_t *zs)
{
    return zs->sock;
}

static void on_closed(uv_handle_t *handle)
{
    mc_zsock_t *zs = handle->data;
    if (--zs->open_handles == 0) {
        zsock_destroy(&zs->sock);
        free(zs);
    }
}

void mc_zsock_destroy(mc_zsock_t **pzs)
{
    if (!pzs || !*pzs)
        return;
    mc_zsock_t *zs = *pzs;
    *pzs = NULL;
    zs->closing = 1;
    zs->poll.data = zs;
    zs->kick.data = zs;
    uv_close((uv_handle_t *)&zs->poll, on_closed);
    uv_close((uv_handle_t *)&zs->kick, on_closed);
}
