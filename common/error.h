/* error.h: one error vocabulary for the whole suite.
 *
 * Functions return 0 on success or a negative mc_err_t. Failures of libuv,
 * ZeroMQ and libpq are mapped onto these codes so callers switch on one enum. */
#ifndef MC_ERROR_H
#define MC_ERROR_H

typedef enum {
    MC_OK = 0,
    MC_EINVAL = -1,    /* bad argument or bad input from outside */
    MC_ENOTFOUND = -2, /* no such thing */
    MC_ECONFLICT = -3, /* duplicate or state conflict */
    MC_EIO = -4,       /* operating-system or socket failure */
    MC_EDB = -5,       /* database failure (query error, lost connection) */
    MC_EBUS = -6,      /* ZeroMQ failure */
    MC_EDECODE = -7,   /* undecodable message or document */
    MC_ETIMEOUT = -8,
    MC_EUNAVAIL = -9, /* dependency not reachable now; try again later */
    MC_ECLOSED = -10, /* the object is shutting down */
    MC_ETOOBIG = -11,
    MC_EPERM = -12,
    MC_ERULE = -13, /* domain rule violated */
} mc_err_t;

/* A short English description of an mc_err_t; never NULL. */
const char *mc_strerror(int err);

/* Map a libuv error (negative errno style) onto mc_err_t. */
int mc_err_from_uv(int uv_err);
/* Map an errno value (as left by ZeroMQ) onto mc_err_t. */
int mc_err_from_errno(int errnum);

#endif
