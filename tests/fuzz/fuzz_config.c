/* fuzz_config.c: the configuration table's parsing of values (integers, ports,
 * booleans, choices, strings). Configuration comes from the operator, not from
 * outside, but every service starts by it: a bad value must be an error with a
 * message, never a crash.
 *
 * Input: up to five lines, the values of the five variables below. mc_config_load
 * reads the environment with getenv, so the target points `environ` at its own array
 * for the call (setenv would keep every value ever set). */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "fuzz.h"

extern char **environ;

typedef struct {
    char *name;
    long count;
    int port;
    int enabled;
    int level;
} fuzz_conf_t;

static const mc_conf_item_t items[] = {
    {"MOTCUA_{SVC}_NAME", MC_CONF_STRING, offsetof(fuzz_conf_t, name), "x", 0, 0, NULL, "a name"},
    {"MOTCUA_{SVC}_COUNT", MC_CONF_INT, offsetof(fuzz_conf_t, count), "1", -5, 1000000, NULL,
     "a count"},
    {"MOTCUA_{SVC}_PORT", MC_CONF_PORT, offsetof(fuzz_conf_t, port), NULL, 0, 0, NULL, "a port"},
    {"MOTCUA_{SVC}_ENABLED", MC_CONF_BOOL, offsetof(fuzz_conf_t, enabled), "true", 0, 0, NULL,
     "a switch"},
    {"MOTCUA_LOG_LEVEL", MC_CONF_ENUM, offsetof(fuzz_conf_t, level), "info", 0, 0,
     "debug|info|warn|error", "a choice"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {
        "MOTCUA_FUZZ_NAME=", "MOTCUA_FUZZ_COUNT=", "MOTCUA_FUZZ_PORT=", "MOTCUA_FUZZ_ENABLED=",
        "MOTCUA_LOG_LEVEL="};
    char *env[MC_COUNT(names) + 1] = {NULL};
    for (size_t i = 0; i < MC_COUNT(names) && size; i++) {
        char *value = fuzz_field(&data, &size, '\n', NULL);
        env[i] = mc_sprintf("%s%s", names[i], value);
        free(value);
    }
    char **saved = environ;
    environ = env;
    fuzz_conf_t conf = {0};
    char err[256] = "";
    int rc = mc_config_load(&conf, items, MC_COUNT(items), "fuzz", err, sizeof err);
    environ = saved;

    if (rc != MC_OK && (rc != MC_EINVAL || !*err))
        abort(); /* refused without a message */
    if (rc == MC_OK && (conf.count < -5 || conf.count > 1000000 || conf.port < 1 ||
                        conf.port > 65535 || conf.level < 0 || conf.level > 3))
        abort(); /* a value outside its bounds accepted */
    mc_config_free(&conf, items, MC_COUNT(items));
    for (size_t i = 0; i < MC_COUNT(names); i++)
        free(env[i]);
    return 0;
}
