/* metrics.c: the process-wide Prometheus registry and its text rendering.
 *
 * A metric family is a name with its help text, its kind and (for histograms) its
 * bucket bounds; its series are the label strings seen for that name. Families and
 * series are kept in registration order, so the rendered text is deterministic and
 * every line of one family sits under its single # HELP / # TYPE pair, as the
 * exposition format (0.0.4) requires even when registrations interleave.
 *
 * The registry belongs to the loop thread: no locks. Lookups are linear over a
 * stored hash, which is plenty for the few hundred series a service exposes and
 * lets callers ask for a metric by name at the moment they use it instead of
 * caching pointers that mc_metrics_reset() would leave dangling. */
#include "metrics.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc.h"

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } kind_t;

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

/* Prometheus client libraries' default latency buckets, in seconds. */
static const double default_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1.0,   2.5,  5.0,   10.0};

typedef struct family family_t;

struct mc_metric {
    family_t *family;
    char *labels; /* "" when the series has none */
    uint64_t hash;
    double value;            /* counter and gauge */
    double (*fn)(void *arg); /* computed gauge */
    void *arg;
    uint64_t *counts; /* histogram: per bucket (not cumulative), +Inf last */
    uint64_t count;
    double sum;
    mc_metric_t *next; /* in the family, registration order */
};

struct family {
    char *name;
    char *help;
    kind_t kind;
    double *bounds; /* histogram upper bounds, ascending, without +Inf */
    size_t nbounds;
    mc_metric_t *first, *last;
    family_t *next; /* in the registry, registration order */
};

static family_t *families_first, *families_last;

/* ------------------------------------------------------------------ */
/* Registration                                                       */

/* FNV-1a over name, a separator and labels: cheap, and good enough to skip
 * string comparisons for all but the series asked for. */
static uint64_t series_hash(const char *name, const char *labels)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xffu) * 1099511628211ull;
    for (const char *p = labels; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static int valid_name(const char *name)
{
    if (!name || !*name || (*name >= '0' && *name <= '9'))
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == ':'))
            return 0;
    return 1;
}

static family_t *family_find(const char *name)
{
    for (family_t *f = families_first; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

/* The series name{labels}, created on first use. A name keeps the kind, help and
 * buckets of its first registration; asking for it as another kind is a
 * programming error. */
static mc_metric_t *series_get(const char *name, const char *help, const char *labels, kind_t kind,
                               const double *buckets, size_t nbuckets)
{
    assert(valid_name(name));
    if (!labels)
        labels = "";
    uint64_t hash = series_hash(name, labels);

    family_t *f = family_find(name);
    if (f) {
        assert(f->kind == kind && "metric name registered with another kind");
        for (mc_metric_t *m = f->first; m; m = m->next)
            if (m->hash == hash && strcmp(m->labels, labels) == 0)
                return m;
    } else {
        f = mc_new(family_t);
        f->name = mc_strdup(name);
        f->help = mc_strdup(help ? help : "");
        f->kind = kind;
        if (kind == KIND_HISTOGRAM) {
            if (!buckets) {
                buckets = default_buckets;
                nbuckets = MC_COUNT(default_buckets);
            }
            for (size_t i = 1; i < nbuckets; i++)
                assert(buckets[i - 1] < buckets[i] && "histogram buckets must ascend");
            f->bounds = mc_memdup(buckets, nbuckets * sizeof(double));
            f->nbounds = nbuckets;
        }
        if (families_last)
            families_last->next = f;
        else
            families_first = f;
        families_last = f;
    }

    mc_metric_t *m = mc_new(mc_metric_t);
    m->family = f;
    m->labels = mc_strdup(labels);
    m->hash = hash;
    if (kind == KIND_HISTOGRAM)
        m->counts = mc_alloc((f->nbounds + 1) * sizeof(uint64_t));
    if (f->last)
        f->last->next = m;
    else
        f->first = m;
    f->last = m;
    return m;
}

mc_metric_t *mc_counter(const char *name, const char *help, const char *labels)
{
    return series_get(name, help, labels, KIND_COUNTER, NULL, 0);
}

void mc_counter_add(mc_metric_t *m, double v)
{
    assert(m && m->family->kind == KIND_COUNTER);
    assert(v >= 0 && "counters only go up");
    m->value += v;
}

mc_metric_t *mc_gauge(const char *name, const char *help, const char *labels)
{
    return series_get(name, help, labels, KIND_GAUGE, NULL, 0);
}

mc_metric_t *mc_gauge_fn(const char *name, const char *help, const char *labels,
                         double (*fn)(void *arg), void *arg)
{
    mc_metric_t *m = series_get(name, help, labels, KIND_GAUGE, NULL, 0);
    /* A re-registration (a component restarted) points the series at the new
     * source rather than at an object that may be gone. */
    m->fn = fn;
    m->arg = arg;
    return m;
}

void mc_gauge_set(mc_metric_t *m, double v)
{
    assert(m && m->family->kind == KIND_GAUGE);
    m->value = v;
}

mc_metric_t *mc_histogram(const char *name, const char *help, const char *labels,
                          const double *buckets, size_t nbuckets)
{
    return series_get(name, help, labels, KIND_HISTOGRAM, buckets, nbuckets);
}

void mc_histogram_observe(mc_metric_t *m, double v)
{
    assert(m && m->family->kind == KIND_HISTOGRAM);
    family_t *f = m->family;
    size_t i = 0;
    while (i < f->nbounds && v > f->bounds[i])
        i++;
    m->counts[i]++;
    m->count++;
    m->sum += v;
}

void mc_metrics_reset(void)
{
    family_t *f = families_first;
    while (f) {
        mc_metric_t *m = f->first;
        while (m) {
            mc_metric_t *next = m->next;
            free(m->labels);
            free(m->counts);
            free(m);
            m = next;
        }
        family_t *next = f->next;
        free(f->name);
        free(f->help);
        free(f->bounds);
        free(f);
        f = next;
    }
    families_first = families_last = NULL;
}

/* ------------------------------------------------------------------ */
/* Rendering                                                          */

typedef struct {
    char *buf;
    size_t len, cap;
} out_t;

static void out_grow(out_t *o, size_t more)
{
    if (o->len + more + 1 <= o->cap)
        return;
    size_t cap = o->cap ? o->cap : 1024;
    while (cap < o->len + more + 1)
        cap *= 2;
    o->buf = mc_realloc(o->buf, cap);
    o->cap = cap;
}

static void out_puts(out_t *o, const char *s)
{
    size_t n = strlen(s);
    out_grow(o, n);
    memcpy(o->buf + o->len, s, n + 1);
    o->len += n;
}

/* The format allows only two escapes in HELP text: backslash and newline. */
static void out_help(out_t *o, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            out_puts(o, "\\\\");
        else if (*s == '\n')
            out_puts(o, "\\n");
        else {
            out_grow(o, 1);
            o->buf[o->len++] = *s;
            o->buf[o->len] = '\0';
        }
    }
}

/* Integers as integers, otherwise the shortest decimal that reads back as the same
 * double (bounds print as "0.005", not "0.0050000000000000001"), and the format's
 * spellings of the special values. */
static void format_double(char *dst, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(dst, size, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(dst, size, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(dst, size, "%.0f", v); /* "10", not "1e+01" */
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(dst, size, "%.*g", prec, v);
        if (strtod(dst, NULL) == v)
            return;
    }
}

/* One sample line: name+suffix, the series labels merged with an extra label
 * (histogram `le`), and the value. */
static void out_sample(out_t *o, const char *name, const char *suffix, const char *labels,
                       const char *extra, const char *value)
{
    int has_labels = labels && *labels, has_extra = extra && *extra;
    out_puts(o, name);
    out_puts(o, suffix);
    if (has_labels || has_extra) {
        out_puts(o, "{");
        if (has_labels)
            out_puts(o, labels);
        if (has_labels && has_extra)
            out_puts(o, ",");
        if (has_extra)
            out_puts(o, extra);
        out_puts(o, "}");
    }
    out_puts(o, " ");
    out_puts(o, value);
    out_puts(o, "\n");
}

static void render_histogram(out_t *o, const family_t *f, const mc_metric_t *m)
{
    char num[64], le[96];
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= f->nbounds; i++) {
        cumulative += m->counts[i];
        if (i < f->nbounds) {
            format_double(num, sizeof num, f->bounds[i]);
            snprintf(le, sizeof le, "le=\"%s\"", num);
        } else {
            snprintf(le, sizeof le, "le=\"+Inf\"");
        }
        snprintf(num, sizeof num, "%llu", (unsigned long long)cumulative);
        out_sample(o, f->name, "_bucket", m->labels, le, num);
    }
    format_double(num, sizeof num, m->sum);
    out_sample(o, f->name, "_sum", m->labels, NULL, num);
    snprintf(num, sizeof num, "%llu", (unsigned long long)m->count);
    out_sample(o, f->name, "_count", m->labels, NULL, num);
}

char *mc_metrics_render(void)
{
    out_t o = {0};
    out_grow(&o, 0);
    o.buf[0] = '\0';
    for (const family_t *f = families_first; f; f = f->next) {
        out_puts(&o, "# HELP ");
        out_puts(&o, f->name);
        out_puts(&o, " ");
        out_help(&o, f->help);
        out_puts(&o, "\n# TYPE ");
        out_puts(&o, f->name);
        out_puts(&o, " ");
        out_puts(&o, kind_names[f->kind]);
        out_puts(&o, "\n");
        for (const mc_metric_t *m = f->first; m; m = m->next) {
            char num[64];
            switch (f->kind) {
            case KIND_COUNTER:
            case KIND_GAUGE:
                format_double(num, sizeof num, m->fn ? m->fn(m->arg) : m->value);
                out_sample(&o, f->name, "", m->labels, NULL, num);
                break;
            case KIND_HISTOGRAM: render_histogram(&o, f, m); break;
            }
        }
    }
    return o.buf;
}
