/* test_metrics.c: the Prometheus registry and its text exposition output. */
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "unit.h"

static int reset(void **state)
{
    (void)state;
    mc_metrics_reset();
    return 0;
}

/* Whether `line` is one whole line of `text`. */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void counter_lines(void **state)
{
    (void)state;
    mc_metric_t *a = mc_counter("jobs_total", "Jobs done.", "kind=\"x\"");
    mc_metric_t *b = mc_counter("jobs_total", "Jobs done.", "kind=\"y\"");
    mc_metric_t *plain = mc_counter("starts_total", "Starts.", NULL);
    assert_ptr_equal(a, mc_counter("jobs_total", "Jobs done.", "kind=\"x\""));
    assert_ptr_not_equal(a, b);
    mc_counter_inc(a);
    mc_counter_add(a, 2.5);
    mc_counter_inc(plain);

    char *text = mc_metrics_render();
    assert_true(has_line(text, "# HELP jobs_total Jobs done."));
    assert_true(has_line(text, "# TYPE jobs_total counter"));
    assert_true(has_line(text, "jobs_total{kind=\"x\"} 3.5"));
    assert_true(has_line(text, "jobs_total{kind=\"y\"} 0"));
    assert_true(has_line(text, "# TYPE starts_total counter"));
    assert_true(has_line(text, "starts_total 1"));
    assert_int_equal(count(text, "# TYPE jobs_total"), 1);
    /* Registration order, families grouped. */
    assert_true(strstr(text, "jobs_total{kind=\"y\"}") < strstr(text, "# HELP starts_total"));
    free(text);
}

static void gauge_lines(void **state)
{
    (void)state;
    mc_metric_t *g = mc_gauge("queue_depth", "Items waiting.", "queue=\"out\"");
    mc_gauge_set(g, 7);
    mc_gauge_set(g, -2.25);
    char *text = mc_metrics_render();
    assert_true(has_line(text, "# TYPE queue_depth gauge"));
    assert_true(has_line(text, "queue_depth{queue=\"out\"} -2.25"));
    free(text);
}

static double computed(void *arg)
{
    return *(double *)arg * 2;
}

static void computed_gauge(void **state)
{
    (void)state;
    double source = 21;
    mc_gauge_fn("pool_size", "Connections open.", NULL, computed, &source);
    char *text = mc_metrics_render();
    assert_true(has_line(text, "# TYPE pool_size gauge"));
    assert_true(has_line(text, "pool_size 42"));
    free(text);
    source = 0.5; /* read at render time, not at registration */
    text = mc_metrics_render();
    assert_true(has_line(text, "pool_size 1"));
    free(text);
}

static void histogram_lines(void **state)
{
    (void)state;
    static const double bounds[] = {0.5, 1, 5};
    mc_metric_t *h = mc_histogram("op_seconds", "Operation time.", NULL, bounds, 3);
    mc_histogram_observe(h, 0.25);
    mc_histogram_observe(h, 0.5); /* bounds are inclusive */
    mc_histogram_observe(h, 3);
    mc_histogram_observe(h, 60);
    char *text = mc_metrics_render();
    assert_true(has_line(text, "# TYPE op_seconds histogram"));
    assert_true(has_line(text, "op_seconds_bucket{le=\"0.5\"} 2"));
    assert_true(has_line(text, "op_seconds_bucket{le=\"1\"} 2"));
    assert_true(has_line(text, "op_seconds_bucket{le=\"5\"} 3"));
    assert_true(has_line(text, "op_seconds_bucket{le=\"+Inf\"} 4"));
    assert_true(has_line(text, "op_seconds_sum 63.75"));
    assert_true(has_line(text, "op_seconds_count 4"));
    free(text);
}

static void histogram_label_merge(void **state)
{
    (void)state;
    mc_metric_t *h = mc_histogram("req_seconds", "Request time.", "route=\"/v1/x\"", NULL, 0);
    mc_histogram_observe(h, 0.003);
    char *text = mc_metrics_render();
    /* Default latency buckets, 0.001 .. 10 s, merged after the series labels. */
    assert_true(has_line(text, "req_seconds_bucket{route=\"/v1/x\",le=\"0.001\"} 0"));
    assert_true(has_line(text, "req_seconds_bucket{route=\"/v1/x\",le=\"0.005\"} 1"));
    assert_true(has_line(text, "req_seconds_bucket{route=\"/v1/x\",le=\"10\"} 1"));
    assert_true(has_line(text, "req_seconds_bucket{route=\"/v1/x\",le=\"+Inf\"} 1"));
    assert_true(has_line(text, "req_seconds_sum{route=\"/v1/x\"} 0.003"));
    assert_true(has_line(text, "req_seconds_count{route=\"/v1/x\"} 1"));
    assert_int_equal(count(text, "req_seconds_bucket{"), 14);
    free(text);
}

static void help_escaped(void **state)
{
    (void)state;
    mc_counter("odd_total", "Back\\slash and\nnewline.", NULL);
    char *text = mc_metrics_render();
    assert_true(has_line(text, "# HELP odd_total Back\\\\slash and\\nnewline."));
    free(text);
}

static void reset_empties(void **state)
{
    (void)state;
    mc_counter_inc(mc_counter("gone_total", "Gone.", NULL));
    mc_metrics_reset();
    char *text = mc_metrics_render();
    assert_string_equal(text, "");
    free(text);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(counter_lines, reset, reset),
    cmocka_unit_test_setup_teardown(gauge_lines, reset, reset),
    cmocka_unit_test_setup_teardown(computed_gauge, reset, reset),
    cmocka_unit_test_setup_teardown(histogram_lines, reset, reset),
    cmocka_unit_test_setup_teardown(histogram_label_merge, reset, reset),
    cmocka_unit_test_setup_teardown(help_escaped, reset, reset),
    cmocka_unit_test_setup_teardown(reset_empties, reset, reset),
};
MC_TEST_GROUP(metrics, tests, NULL, NULL);
