/* mc.c: allocation that aborts on out-of-memory, and clocks. */
#include "mc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void out_of_memory(const char *file, int line)
{
    fprintf(stderr, "fatal: out of memory at %s:%d\n", file, line);
    abort();
}

void *mc_alloc_(size_t size, const char *file, int line)
{
    void *p = calloc(1, size ? size : 1);
    if (!p)
        out_of_memory(file, line);
    return p;
}

void *mc_realloc_(void *ptr, size_t size, const char *file, int line)
{
    void *p = realloc(ptr, size ? size : 1);
    if (!p)
        out_of_memory(file, line);
    return p;
}

char *mc_strdup_(const char *s, const char *file, int line)
{
    return s ? mc_memdup_(s, strlen(s) + 1, file, line) : NULL;
}

char *mc_strndup_(const char *s, size_t n, const char *file, int line)
{
    char *p = mc_alloc_(n + 1, file, line);
    memcpy(p, s, n);
    return p;
}

void *mc_memdup_(const void *src, size_t n, const char *file, int line)
{
    void *p = mc_alloc_(n, file, line);
    if (n)
        memcpy(p, src, n);
    return p;
}

char *mc_sprintf_(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *p = mc_alloc_((size_t)n + 1, file, line);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void mc_free(void *pp)
{
    void **p = pp;
    if (p && *p) {
        free(*p);
        *p = NULL;
    }
}

uint64_t mc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t mc_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
