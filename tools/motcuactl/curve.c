/* curve.c: motcuactl curve keygen — a province's key pair for the bus between
 * provinces (common/curve.h). Two czmq certificate files: FILE (public, to give to
 * the peer provinces for their allow-lists) and FILE_secret (stays here, mode 0600). */
#include <czmq.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"

int ctl_curve_keygen(ctl_t *ctl)
{
    const char *name = ctl->args[0], *path = ctl->args[1];
    if (!*name || strlen(name) > 31 ||
        strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != strlen(name)) {
        ctl_error("'%s' is not a province code (capital letters and digits, e.g. H99)", name);
        return CTL_USAGE;
    }
    char *secret = mc_sprintf("%s_secret", path);
    if (access(secret, F_OK) == 0 || access(path, F_OK) == 0) {
        ctl_error("%s or %s exists already: keys are not overwritten", path, secret);
        free(secret);
        return CTL_FAIL;
    }
    zcert_t *cert = zcert_new();
    zcert_set_meta(cert, "province", "%s", name);
    zcert_set_meta(cert, "created-by", "motcuactl curve keygen");
    mode_t old = umask(077);
    int rc = zcert_save(cert, path);
    umask(old);
    if (rc != 0) {
        ctl_error("cannot write %s: %s", path, strerror(errno));
        zcert_destroy(&cert);
        free(secret);
        return CTL_FAIL;
    }
    chmod(path, 0644); /* the public half may be read by anyone */
    if (ctl->json) {
        json_t *out = json_pack("{s:s, s:s, s:s, s:s}", "province", name, "public_key",
                                zcert_public_txt(cert), "public_file", path, "secret_file", secret);
        ctl_json_print(&out);
    } else {
        printf("province   %s\npublic key %s\npublic     %s (give it to the peer provinces)\n"
               "secret     %s (MOTCUA_INTERCONNECT_CERT; keep it here)\n",
               name, zcert_public_txt(cert), path, secret);
    }
    zcert_destroy(&cert);
    free(secret);
    return CTL_OK;
}
