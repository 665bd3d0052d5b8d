/* main.c: the unit-test runner. Runs every group of unit.h, or those named on the
 * command line (GROUP or GROUP/TEST), and ends with "unit: N passed, N failed". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#define MC_GROUP_PTR(g) &mc_test_group_##g,
static const mc_test_group_t *const groups[] = {MC_TEST_GROUPS(MC_GROUP_PTR)};

int mc_test_skipped;

const char *mc_test_db_url(void)
{
    const char *url = getenv("MOTCUA_TEST_DATABASE_URL");
    return url && *url ? url : NULL;
}

static int selected(const mc_test_group_t *g, const char *test, int argc, char **argv)
{
    if (argc < 2)
        return 1;
    for (int i = 1; i < argc; i++) {
        size_t glen = strlen(g->name);
        if (strcmp(argv[i], g->name) == 0)
            return 1;
        if (test && strncmp(argv[i], g->name, glen) == 0 && argv[i][glen] == '/' &&
            strcmp(argv[i] + glen + 1, test) == 0)
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
            for (size_t t = 0; t < groups[i]->count; t++)
                printf("%s/%s\n", groups[i]->name, groups[i]->tests[t].name);
        return 0;
    }
    int passed = 0, failed = 0, skipped = 0;
    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        const mc_test_group_t *g = groups[i];
        struct CMUnitTest *pick = calloc(g->count, sizeof(*pick));
        size_t n = 0;
        for (size_t t = 0; t < g->count; t++)
            if (selected(g, NULL, argc, argv) || selected(g, g->tests[t].name, argc, argv))
                pick[n++] = g->tests[t];
        if (n) {
            int before = mc_test_skipped;
            int f = _cmocka_run_group_tests(g->name, pick, n, g->setup, g->teardown);
            int s = mc_test_skipped - before;
            failed += f;
            skipped += s;
            passed += (int)n - f - s;
        }
        free(pick);
    }
    printf("unit: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
