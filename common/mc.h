/* mc.h: the few macros and allocation wrappers every motcua module uses.
 *
 * Allocation never returns NULL: running out of memory aborts with the file and
 * line (as h2o does), so callers carry no half-handled NULL paths. */
#ifndef MC_H
#define MC_H

#include <stddef.h>
#include <stdint.h>

#define MC_COUNT(a)                        (sizeof(a) / sizeof((a)[0]))
#define mc_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define MC_UNUSED(x)                       ((void)(x))
#define MC_MUST_USE                        __attribute__((warn_unused_result))
#define MC_PRINTF(fmt, args)               __attribute__((format(printf, fmt, args)))

void *mc_alloc_(size_t size, const char *file, int line);
void *mc_realloc_(void *ptr, size_t size, const char *file, int line);
char *mc_strdup_(const char *s, const char *file, int line);
char *mc_strndup_(const char *s, size_t n, const char *file, int line);
void *mc_memdup_(const void *p, size_t n, const char *file, int line);
char *mc_sprintf_(const char *file, int line, const char *fmt, ...) MC_PRINTF(3, 4);

/* Zeroed allocation of n bytes; aborts on out-of-memory. */
#define mc_alloc(n) mc_alloc_((n), __FILE__, __LINE__)
/* A zeroed object of the given type. */
#define mc_new(type)     ((type *)mc_alloc_(sizeof(type), __FILE__, __LINE__))
#define mc_realloc(p, n) mc_realloc_((p), (n), __FILE__, __LINE__)
#define mc_strdup(s)     mc_strdup_((s), __FILE__, __LINE__)
#define mc_strndup(s, n) mc_strndup_((s), (n), __FILE__, __LINE__)
#define mc_memdup(p, n)  mc_memdup_((p), (n), __FILE__, __LINE__)
/* A newly allocated formatted string; the caller frees it. */
#define mc_sprintf(...) mc_sprintf_(__FILE__, __LINE__, __VA_ARGS__)

/* Free *pp and set it to NULL; safe on NULL and twice. */
void mc_free(void *pp);

/* Milliseconds since an arbitrary point (monotonic) and since the epoch (wall). */
uint64_t mc_now_ms(void);
int64_t mc_wall_ms(void);

#endif
