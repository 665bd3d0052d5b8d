/* test_mc.c: allocation wrappers and clocks. */
#include <string.h>

#include "mc.h"
#include "unit.h"

static void sprintf_formats(void **state)
{
    (void)state;
    char *s = mc_sprintf("%s-%04d", "G09", 42);
    assert_string_equal(s, "G09-0042");
    mc_free(&s);
    assert_null(s);
    mc_free(&s); /* safe twice */
}

static void strndup_terminates(void **state)
{
    (void)state;
    char *s = mc_strndup("abcdef", 3);
    assert_string_equal(s, "abc");
    mc_free(&s);
}

static void clocks_advance(void **state)
{
    (void)state;
    uint64_t a = mc_now_ms();
    int64_t w = mc_wall_ms();
    assert_true(w > 1700000000000LL); /* after 2023 */
    assert_true(mc_now_ms() >= a);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(sprintf_formats),
    cmocka_unit_test(strndup_terminates),
    cmocka_unit_test(clocks_advance),
};
MC_TEST_GROUP(mc, tests, NULL, NULL);
