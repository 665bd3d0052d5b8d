/* metrics.h: Prometheus metrics of one process: counters, gauges, histograms.
 *
 * The registry is process-wide and used from the loop thread only. A metric is
 * identified by name plus a label string such as `route="/v1/dossiers",status="201"`;
 * asking twice for the same pair returns the same metric. mc_metrics_render()
 * writes the Prometheus text exposition format (version 0.0.4) with one # HELP and
 * # TYPE line per name. */
#ifndef MC_METRICS_H
#define MC_METRICS_H

#include <stddef.h>

typedef struct mc_metric mc_metric_t;

/* A monotonically increasing counter. labels may be NULL or "". */
mc_metric_t *mc_counter(const char *name, const char *help, const char *labels);
void mc_counter_add(mc_metric_t *m, double v);
#define mc_counter_inc(m) mc_counter_add((m), 1.0)

/* A gauge that is set, or computed at render time by fn(arg) if fn is given. */
mc_metric_t *mc_gauge(const char *name, const char *help, const char *labels);
mc_metric_t *mc_gauge_fn(const char *name, const char *help, const char *labels,
                         double (*fn)(void *arg), void *arg);
void mc_gauge_set(mc_metric_t *m, double v);

/* A histogram with the given upper bounds (ascending; +Inf is implicit).
 * buckets NULL means latency defaults in seconds (0.001 .. 10). */
mc_metric_t *mc_histogram(const char *name, const char *help, const char *labels,
                          const double *buckets, size_t nbuckets);
void mc_histogram_observe(mc_metric_t *m, double v);

/* The whole registry as Prometheus text; the caller frees it. */
char *mc_metrics_render(void);
/* Forget every metric (tests and shutdown). */
void mc_metrics_reset(void);

#endif
