/* log.h: structured logging, one line per event.
 *
 * Lines are key=value (or JSON when MOTCUA_LOG_FORMAT=json) on stderr:
 *   ts=2026-11-23T14:00:00.123Z service=intake level=info trace=... dossier=... msg="..."
 * Personal data is masked before it is written: any run of 9 or more digits
 * (citizen ID numbers, phone numbers, with an optional leading '+') keeps its first
 * two and last two digits and shows '*' in between. */
#ifndef MC_LOG_H
#define MC_LOG_H

#include <stddef.h>

#include "mc.h"

typedef enum { MC_LOG_DEBUG, MC_LOG_INFO, MC_LOG_WARN, MC_LOG_ERROR } mc_log_level_t;

/* Set the service name, minimum level and format (0 key=value, 1 JSON). */
void mc_log_init(const char *service, mc_log_level_t min_level, int json);
void mc_log_(mc_log_level_t level, const char *trace, const char *dossier, const char *fmt, ...)
    MC_PRINTF(4, 5);
/* Mask personal data of `in` into out (always NUL-terminated). */
void mc_log_mask(const char *in, char *out, size_t outlen);

#define mc_debug(...) mc_log_(MC_LOG_DEBUG, NULL, NULL, __VA_ARGS__)
#define mc_info(...)  mc_log_(MC_LOG_INFO, NULL, NULL, __VA_ARGS__)
#define mc_warn(...)  mc_log_(MC_LOG_WARN, NULL, NULL, __VA_ARGS__)
#define mc_error(...) mc_log_(MC_LOG_ERROR, NULL, NULL, __VA_ARGS__)
/* With a trace id and dossier code (either may be NULL or empty). */
#define mc_logd(level, trace, dossier, ...) mc_log_((level), (trace), (dossier), __VA_ARGS__)

#endif
