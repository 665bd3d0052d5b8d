/* error.c: names of the suite's error codes, and mappings from libuv and errno. */
#include "error.h"

#include <errno.h>
#include <uv.h>
#include <zmq.h>

const char *mc_strerror(int err)
{
    switch ((mc_err_t)err) {
    case MC_OK: return "success";
    case MC_EINVAL: return "invalid argument";
    case MC_ENOTFOUND: return "not found";
    case MC_ECONFLICT: return "conflict";
    case MC_EIO: return "input/output error";
    case MC_EDB: return "database error";
    case MC_EBUS: return "message bus error";
    case MC_EDECODE: return "cannot decode";
    case MC_ETIMEOUT: return "timed out";
    case MC_EUNAVAIL: return "unavailable";
    case MC_ECLOSED: return "closed";
    case MC_ETOOBIG: return "too big";
    case MC_EPERM: return "not permitted";
    case MC_ERULE: return "rule violated";
    }
    return "unknown error";
}

int mc_err_from_uv(int uv_err)
{
    switch (uv_err) {
    case 0: return MC_OK;
    case UV_EINVAL: return MC_EINVAL;
    case UV_ENOENT: return MC_ENOTFOUND;
    case UV_EEXIST:
    case UV_EADDRINUSE: return MC_ECONFLICT;
    case UV_ETIMEDOUT: return MC_ETIMEOUT;
    case UV_ECONNREFUSED:
    case UV_EAGAIN: return MC_EUNAVAIL;
    case UV_EPERM:
    case UV_EACCES: return MC_EPERM;
    default: return MC_EIO;
    }
}

int mc_err_from_errno(int errnum)
{
    switch (errnum) {
    case 0: return MC_OK;
    case EINVAL: return MC_EINVAL;
    case EAGAIN: return MC_EUNAVAIL;
    case ETERM: return MC_ECLOSED;
    case EADDRINUSE: return MC_ECONFLICT;
    default: return MC_EBUS;
    }
}
