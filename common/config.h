/* config.h: configuration from the environment, described by a table and validated.
 *
 * A module declares what it reads as an array of mc_conf_item_t; mc_config_load()
 * fills a struct from the environment (or defaults), checks every value, and on the
 * first bad one returns MC_EINVAL with a message naming the variable, the value
 * and what was expected. Variable names may contain "{SVC}", replaced by the
 * upper-case service name (MOTCUA_{SVC}_HTTP_PORT -> MOTCUA_INTAKE_HTTP_PORT). */
#ifndef MC_CONFIG_H
#define MC_CONFIG_H

#include <stddef.h>

#include "mc.h"

typedef enum {
    MC_CONF_STRING, /* char *: a newly allocated copy (freed by mc_config_free) */
    MC_CONF_INT,    /* long, between min and max */
    MC_CONF_PORT,   /* int, 1..65535 */
    MC_CONF_BOOL,   /* int: 1/0, true/false, yes/no, on/off */
    MC_CONF_ENUM,   /* int: index of the value in the '|'-separated list `choices` */
} mc_conf_kind_t;

typedef struct {
    const char *env; /* variable name, may contain {SVC} */
    mc_conf_kind_t kind;
    size_t offset;       /* where in the target struct the value goes */
    const char *dflt;    /* default as text; NULL means required */
    long min, max;       /* MC_CONF_INT bounds */
    const char *choices; /* MC_CONF_ENUM: "debug|info|warn|error" */
    const char *help;    /* one line for --help and the README */
} mc_conf_item_t;

/* Fill `target` from the environment. On error writes a message to err. */
int mc_config_load(void *target, const mc_conf_item_t *items, size_t n, const char *service,
                   char *err, size_t errlen) MC_MUST_USE;
/* Free the strings mc_config_load allocated in target. */
void mc_config_free(void *target, const mc_conf_item_t *items, size_t n);
/* Print the table (name, default, help) to stdout, names expanded for service. */
void mc_config_usage(const mc_conf_item_t *items, size_t n, const char *service);

#endif
