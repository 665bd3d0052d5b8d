/* config.c: fill a struct from environment variables described by a table, and say
 * exactly which variable is wrong and why when one is. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"

/* Expand "{SVC}" in name with the upper-case service name. */
static void expand_name(const char *name, const char *service, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *p = name; *p && o + 1 < outlen;) {
        if (strncmp(p, "{SVC}", 5) == 0) {
            for (const char *s = service ? service : ""; *s && o + 1 < outlen; s++)
                out[o++] = (char)toupper((unsigned char)*s);
            p += 5;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

static int parse_long(const char *text, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *text, int *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < MC_COUNT(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(text, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static int parse_enum(const char *text, const char *choices, int *out)
{
    int index = 0;
    size_t len = strlen(text);
    for (const char *p = choices; p && *p; index++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncasecmp(p, text, n) == 0)
            return *out = index, 0;
        p = bar ? bar + 1 : NULL;
    }
    return -1;
}

int mc_config_load(void *target, const mc_conf_item_t *items, size_t n, const char *service,
                   char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const mc_conf_item_t *it = &items[i];
        char name[128];
        expand_name(it->env, service, name, sizeof name);
        const char *text = getenv(name);
        if (!text || !*text)
            text = it->dflt;
        if (!text) {
            snprintf(err, errlen, "%s is required (%s)", name, it->help);
            return MC_EINVAL;
        }
        char *field = (char *)target + it->offset;
        long lv;
        int iv;
        switch (it->kind) {
        case MC_CONF_STRING: *(char **)field = mc_strdup(text); break;
        case MC_CONF_INT:
            if (parse_long(text, &lv) || lv < it->min || lv > it->max) {
                snprintf(err, errlen, "%s=%s: expected an integer from %ld to %ld (%s)", name, text,
                         it->min, it->max, it->help);
                return MC_EINVAL;
            }
            *(long *)field = lv;
            break;
        case MC_CONF_PORT:
            if (parse_long(text, &lv) || lv < 1 || lv > 65535) {
                snprintf(err, errlen, "%s=%s: expected a TCP port from 1 to 65535 (%s)", name, text,
                         it->help);
                return MC_EINVAL;
            }
            *(int *)field = (int)lv;
            break;
        case MC_CONF_BOOL:
            if (parse_bool(text, &iv)) {
                snprintf(err, errlen, "%s=%s: expected true or false (%s)", name, text, it->help);
                return MC_EINVAL;
            }
            *(int *)field = iv;
            break;
        case MC_CONF_ENUM:
            if (parse_enum(text, it->choices, &iv)) {
                snprintf(err, errlen, "%s=%s: expected one of %s (%s)", name, text, it->choices,
                         it->help);
                return MC_EINVAL;
            }
            *(int *)field = iv;
            break;
        }
    }
    return MC_OK;
}

void mc_config_free(void *target, const mc_conf_item_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].kind == MC_CONF_STRING)
            mc_free((char *)target + items[i].offset);
}

void mc_config_usage(const mc_conf_item_t *items, size_t n, const char *service)
{
    for (size_t i = 0; i < n; i++) {
        char name[128];
        expand_name(items[i].env, service, name, sizeof name);
        printf("  %-32s %s (default: %s)\n", name, items[i].help,
               items[i].dflt ? items[i].dflt : "required");
    }
}
