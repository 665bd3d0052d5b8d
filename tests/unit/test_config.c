/* test_config.c: configuration from the environment, table-driven and validated.
 *
 * Every test sets the variables it reads (names prefixed MOTCUA_UT_ so nothing real
 * is touched) and unsets them in teardown, so tests do not depend on order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "mc.h"
#include "unit.h"

typedef struct {
    char *name;
    long workers;
    int port;
    int verbose;
    int level;
} conf_t;

static const mc_conf_item_t items[] = {
    {"MOTCUA_UT_{SVC}_NAME", MC_CONF_STRING, offsetof(conf_t, name), "one-stop", 0, 0, NULL,
     "display name"},
    {"MOTCUA_UT_WORKERS", MC_CONF_INT, offsetof(conf_t, workers), "4", 1, 64, NULL, "worker count"},
    {"MOTCUA_UT_{SVC}_PORT", MC_CONF_PORT, offsetof(conf_t, port), "7180", 0, 0, NULL, "HTTP port"},
    {"MOTCUA_UT_VERBOSE", MC_CONF_BOOL, offsetof(conf_t, verbose), "false", 0, 0, NULL,
     "chatty logs"},
    {"MOTCUA_UT_LEVEL", MC_CONF_ENUM, offsetof(conf_t, level), "info", 0, 0,
     "debug|info|warn|error", "log level"},
};

static const char *const vars[] = {
    "MOTCUA_UT_INTAKE_NAME", "MOTCUA_UT_WORKERS",      "MOTCUA_UT_INTAKE_PORT",
    "MOTCUA_UT_VERBOSE",     "MOTCUA_UT_LEVEL",        "MOTCUA_UT_REQUIRED",
    "MOTCUA_UT__NAME",       "MOTCUA_UT_ROUTING_PORT",
};

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < MC_COUNT(vars); i++)
        unsetenv(vars[i]);
    return 0;
}

/* Load items with one variable set; returns the status, err holds the message. */
static int load_with(const char *var, const char *value, conf_t *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    err[0] = '\0';
    if (var)
        setenv(var, value, 1);
    int rc = mc_config_load(c, items, MC_COUNT(items), "intake", err, errlen);
    if (var)
        unsetenv(var);
    return rc;
}

static void defaults_apply(void **state)
{
    (void)state;
    conf_t c;
    char err[256];
    assert_int_equal(load_with(NULL, NULL, &c, err, sizeof err), MC_OK);
    assert_string_equal(c.name, "one-stop");
    assert_int_equal(c.workers, 4);
    assert_int_equal(c.port, 7180);
    assert_int_equal(c.verbose, 0);
    assert_int_equal(c.level, 1); /* "info" is the second choice */
    assert_string_equal(err, "");
    mc_config_free(&c, items, MC_COUNT(items));
}

static void empty_value_means_default(void **state)
{
    (void)state;
    conf_t c;
    char err[256];
    assert_int_equal(load_with("MOTCUA_UT_WORKERS", "", &c, err, sizeof err), MC_OK);
    assert_int_equal(c.workers, 4);
    mc_config_free(&c, items, MC_COUNT(items));
}

static void svc_expanded_upper_case(void **state)
{
    (void)state;
    conf_t c;
    char err[256];
    setenv("MOTCUA_UT_INTAKE_NAME", "Bộ phận một cửa", 1);
    setenv("MOTCUA_UT_INTAKE_PORT", "7181", 1);
    setenv("MOTCUA_UT_ROUTING_PORT", "7999", 1); /* another service's: not ours */
    memset(&c, 0, sizeof c);
    assert_int_equal(mc_config_load(&c, items, MC_COUNT(items), "intake", err, sizeof err), MC_OK);
    assert_string_equal(c.name, "Bộ phận một cửa");
    assert_int_equal(c.port, 7181);
    mc_config_free(&c, items, MC_COUNT(items));

    /* A NULL service expands {SVC} to nothing. */
    setenv("MOTCUA_UT__NAME", "none", 1);
    memset(&c, 0, sizeof c);
    assert_int_equal(mc_config_load(&c, items, MC_COUNT(items), NULL, err, sizeof err), MC_OK);
    assert_string_equal(c.name, "none");
    mc_config_free(&c, items, MC_COUNT(items));
}

static void string_copied(void **state)
{
    (void)state;
    conf_t c;
    char err[256];
    char value[] = "xa Tan Phu";
    setenv("MOTCUA_UT_INTAKE_NAME", value, 1);
    memset(&c, 0, sizeof c);
    assert_int_equal(mc_config_load(&c, items, MC_COUNT(items), "intake", err, sizeof err), MC_OK);
    unsetenv("MOTCUA_UT_INTAKE_NAME");
    assert_string_equal(c.name, "xa Tan Phu"); /* a copy, not the environment's storage */
    mc_config_free(&c, items, MC_COUNT(items));
}

static void int_valid_and_bounds(void **state)
{
    (void)state;
    conf_t c;
    char err[256];
    static const struct {
        const char *text;
        long value;
    } good[] = {{"1", 1}, {"64", 64}, {"17", 17}, {"+8", 8}};
    for (size_t i = 0; i < MC_COUNT(good); i++) {
        assert_int_equal(load_with("MOTCUA_UT_WORKERS", good[i].text, &c, err, sizeof err), MC_OK);
        assert_int_equal(c.workers, good[i].value);
        mc_config_free(&c, items, MC_COUNT(items));
    }
}

static void int_invalid_named(void **state)
{
    (void)state;
    static const char *const bad[] = {"0",     "65",  "-3", "abc",
                                      "12abc", "4.5", " ",  "99999999999999999999999"};
    for (size_t i = 0; i < MC_COUNT(bad); i++) {
        conf_t c;
        char err[256], want[256];
        assert_int_equal(load_with("MOTCUA_UT_WORKERS", bad[i], &c, err, sizeof err), MC_EINVAL);
        snprintf(want, sizeof want,
                 "MOTCUA_UT_WORKERS=%s: expected an integer from 1 to 64 (worker count)", bad[i]);
        assert_string_equal(err, want);
        mc_config_free(&c, items, MC_COUNT(items));
    }
}

static void port_valid_and_invalid(void **state)
{
    (void)state;
    conf_t c;
    char err[256], want[256];
    assert_int_equal(load_with("MOTCUA_UT_INTAKE_PORT", "1", &c, err, sizeof err), MC_OK);
    assert_int_equal(c.port, 1);
    mc_config_free(&c, items, MC_COUNT(items));
    assert_int_equal(load_with("MOTCUA_UT_INTAKE_PORT", "65535", &c, err, sizeof err), MC_OK);
    assert_int_equal(c.port, 65535);
    mc_config_free(&c, items, MC_COUNT(items));

    static const char *const bad[] = {"0", "65536", "-1", "http", "80x"};
    for (size_t i = 0; i < MC_COUNT(bad); i++) {
        assert_int_equal(load_with("MOTCUA_UT_INTAKE_PORT", bad[i], &c, err, sizeof err),
                         MC_EINVAL);
        snprintf(want, sizeof want,
                 "MOTCUA_UT_INTAKE_PORT=%s: expected a TCP port from 1 to 65535 (HTTP port)",
                 bad[i]);
        assert_string_equal(err, want);
        mc_config_free(&c, items, MC_COUNT(items));
    }
}

static void bool_spellings(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int value;
    } good[] = {{"1", 1}, {"true", 1},  {"YES", 1}, {"On", 1},
                {"0", 0}, {"false", 0}, {"No", 0},  {"OFF", 0}};
    for (size_t i = 0; i < MC_COUNT(good); i++) {
        conf_t c;
        char err[256];
        assert_int_equal(load_with("MOTCUA_UT_VERBOSE", good[i].text, &c, err, sizeof err), MC_OK);
        assert_int_equal(c.verbose, good[i].value);
        mc_config_free(&c, items, MC_COUNT(items));
    }
}

static void bool_invalid_named(void **state)
{
    (void)state;
    static const char *const bad[] = {"2", "maybe", "y", "truee"};
    for (size_t i = 0; i < MC_COUNT(bad); i++) {
        conf_t c;
        char err[256], want[256];
        assert_int_equal(load_with("MOTCUA_UT_VERBOSE", bad[i], &c, err, sizeof err), MC_EINVAL);
        snprintf(want, sizeof want, "MOTCUA_UT_VERBOSE=%s: expected true or false (chatty logs)",
                 bad[i]);
        assert_string_equal(err, want);
        mc_config_free(&c, items, MC_COUNT(items));
    }
}

static void enum_choices(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int index;
    } good[] = {{"debug", 0}, {"info", 1}, {"WARN", 2}, {"error", 3}};
    for (size_t i = 0; i < MC_COUNT(good); i++) {
        conf_t c;
        char err[256];
        assert_int_equal(load_with("MOTCUA_UT_LEVEL", good[i].text, &c, err, sizeof err), MC_OK);
        assert_int_equal(c.level, good[i].index);
        mc_config_free(&c, items, MC_COUNT(items));
    }
}

static void enum_invalid_named(void **state)
{
    (void)state;
    /* Prefixes and substrings of a choice are not the choice. */
    static const char *const bad[] = {"verbose", "deb", "errors", "info|warn", "warn|"};
    for (size_t i = 0; i < MC_COUNT(bad); i++) {
        conf_t c;
        char err[256], want[256];
        assert_int_equal(load_with("MOTCUA_UT_LEVEL", bad[i], &c, err, sizeof err), MC_EINVAL);
        snprintf(want, sizeof want,
                 "MOTCUA_UT_LEVEL=%s: expected one of debug|info|warn|error (log level)", bad[i]);
        assert_string_equal(err, want);
        mc_config_free(&c, items, MC_COUNT(items));
    }
}

static void required_missing(void **state)
{
    (void)state;
    typedef struct {
        int port;
        char *url;
    } req_t;
    static const mc_conf_item_t req_items[] = {
        {"MOTCUA_UT_{SVC}_PORT", MC_CONF_PORT, offsetof(req_t, port), "7180", 0, 0, NULL, "port"},
        {"MOTCUA_UT_REQUIRED", MC_CONF_STRING, offsetof(req_t, url), NULL, 0, 0, NULL,
         "database URL"},
    };
    req_t r = {0};
    char err[256];
    assert_int_equal(mc_config_load(&r, req_items, MC_COUNT(req_items), "intake", err, sizeof err),
                     MC_EINVAL);
    assert_string_equal(err, "MOTCUA_UT_REQUIRED is required (database URL)");
    mc_config_free(&r, req_items, MC_COUNT(req_items));

    /* Set but empty is still missing. */
    setenv("MOTCUA_UT_REQUIRED", "", 1);
    assert_int_equal(mc_config_load(&r, req_items, MC_COUNT(req_items), "intake", err, sizeof err),
                     MC_EINVAL);
    assert_string_equal(err, "MOTCUA_UT_REQUIRED is required (database URL)");

    setenv("MOTCUA_UT_REQUIRED", "postgresql://x@127.0.0.1/y", 1);
    assert_int_equal(mc_config_load(&r, req_items, MC_COUNT(req_items), "intake", err, sizeof err),
                     MC_OK);
    assert_string_equal(r.url, "postgresql://x@127.0.0.1/y");
    mc_config_free(&r, req_items, MC_COUNT(req_items));
}

static void error_message_truncated(void **state)
{
    (void)state;
    conf_t c;
    char err[12];
    memset(err, 'x', sizeof err);
    assert_int_equal(load_with("MOTCUA_UT_VERBOSE", "maybe", &c, err, sizeof err), MC_EINVAL);
    assert_int_equal(strlen(err), sizeof err - 1); /* cut, but terminated */
    assert_memory_equal(err, "MOTCUA_UT_V", sizeof err - 1);
    mc_config_free(&c, items, MC_COUNT(items));
}

static void free_clears_strings(void **state)
{
    (void)state;
    conf_t c;
    char err[256];
    assert_int_equal(load_with(NULL, NULL, &c, err, sizeof err), MC_OK);
    assert_non_null(c.name);
    mc_config_free(&c, items, MC_COUNT(items));
    assert_null(c.name);
    assert_int_equal(c.port, 7180);             /* non-strings untouched */
    mc_config_free(&c, items, MC_COUNT(items)); /* safe twice */
    assert_null(c.name);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(defaults_apply, clear_env, clear_env),
    cmocka_unit_test_setup_teardown(empty_value_means_default, clear_env, clear_env),
    cmocka_unit_test_setup_teardown(svc_expanded_upper_case, clear_env, clear_env),
    cmocka_unit_test_setup_teardown(string_copied, clear_env, clear_env),
    cmocka_unit_test_setup_teardown(int_valid_and_bounds, clear_env, clear_env),
    cmocka_unit_test_setup_teardown(int_invalid_named, clear_env, clear_env),
    cmocka_unit_test_setup_teardown(port_valid_and_invalid, clear_env, clear_env),
    cmocka_unit_test_setup_teardown(bool_spellings, clear_env, clear_env),
    cmocka_unit_test_setup_teardown(bool_invalid_named, clear_env, clear_env),
    cmocka_unit_test_setup_teardown(enum_choices, clear_env, clear_env),
    cmocka_unit_test_setup_teardown(enum_invalid_named, clear_env, clear_env),
    cmocka_unit_test_setup_teardown(required_missing, clear_env, clear_env),
    cmocka_unit_test_setup_teardown(error_message_truncated, clear_env, clear_env),
    cmocka_unit_test_setup_teardown(free_clears_strings, clear_env, clear_env),
};
MC_TEST_GROUP(config, tests, NULL, NULL);
