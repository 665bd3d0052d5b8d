/* curve.c: motcuactl curve keygen — a key pair for the bus over CURVE (common/curve.h):
 * a province's, for the link between provinces, or a service's, for the bus between a
 * province's services (MOTCUA_BUS_CURVE_DIR holds <service> and <service>_secret). Two
 * czmq certificate files: FILE (public, for the others' allow-lists) and FILE_secret
 * (stays where it is used, mode 0600). */
#include <czmq.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"

int ctl_curve_keygen(ctl_t *ctl)
{
    const char *name = ctl->args[0], *path = ctl->args[1];
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    if (!*name || strlen(name) > 31 || strspn(name, ok) != strlen(name)) {
        ctl_error("'%s' is not a name for a key pair: a province code (H99) or a service "
                  "(intake): letters, digits, - and _",
                  name);
        return CTL_USAGE;
    }
    char *secret = mc_sprintf("%s_secret", path);
    if (access(secret, F_OK) == 0 || access(path, F_OK) == 0) {
        ctl_error("%s or %s exists already: keys are not overwritten", path, secret);
        free(secret);
        return CTL_FAIL;
    }
    zcert_t *cert = zcert_new();
    zcert_set_meta(cert, "name", "%s", name);
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
        json_t *out = json_pack("{s:s, s:s, s:s, s:s}", "name", name, "public_key",
                                zcert_public_txt(cert), "public_file", path, "secret_file", secret);
        ctl_json_print(&out);
    } else {
        printf("name       %s\npublic key %s\npublic     %s (for the others' allow-lists)\n"
               "secret     %s (stays where it is used)\n",
               name, zcert_public_txt(cert), path, secret);
    }
    zcert_destroy(&cert);
    free(secret);
    return CTL_OK;
}
