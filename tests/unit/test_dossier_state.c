/* test_dossier_state.c: every allowed and every refused transition of the lifecycle,
 * checked against a table written out independently here. */
#include <stdio.h>
#include <string.h>

#include "dossier_state.h"
#include "error.h"
#include "unit.h"

/* "FROM action TO" for each allowed transition, as DESIGN.md describes the lifecycle. */
static const char *const allowed[] = {
    "SUBMITTED receive RECEIVED",
    "SUBMITTED reject REJECTED_AT_INTAKE",
    "RECEIVED request_payment AWAITING_PAYMENT",
    "RECEIVED start IN_PROGRESS",
    "AWAITING_PAYMENT payment_settled IN_PROGRESS",
    "IN_PROGRESS request_supplement SUPPLEMENT_REQUESTED",
    "SUPPLEMENT_REQUESTED supplement_received IN_PROGRESS",
    "IN_PROGRESS forward IN_PROGRESS",
    "IN_PROGRESS hand_off HANDED_OFF",
    "HANDED_OFF handoff_completed IN_PROGRESS",
    "IN_PROGRESS approve APPROVED",
    "IN_PROGRESS refuse REFUSED",
    "APPROVED result_ready RESULT_READY",
    "RESULT_READY return RETURNED",
    "SUBMITTED withdraw WITHDRAWN",
    "RECEIVED withdraw WITHDRAWN",
    "AWAITING_PAYMENT withdraw WITHDRAWN",
    "IN_PROGRESS withdraw WITHDRAWN",
    "SUPPLEMENT_REQUESTED withdraw WITHDRAWN",
    "HANDED_OFF withdraw WITHDRAWN",
};

static const char *const all_states[] = {
    "SUBMITTED",        "RECEIVED",    "REJECTED_AT_INTAKE",
    "AWAITING_PAYMENT", "IN_PROGRESS", "SUPPLEMENT_REQUESTED",
    "HANDED_OFF",       "APPROVED",    "REFUSED",
    "RESULT_READY",     "RETURNED",    "WITHDRAWN",
};

static const char *expected(const char *from, const char *action)
{
    static char to[64];
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        char f[64], a[64];
        if (sscanf(allowed[i], "%63s %63s %63s", f, a, to) == 3 && strcmp(f, from) == 0 &&
            strcmp(a, action) == 0)
            return to;
    }
    return NULL;
}

static void every_transition(void **state)
{
    (void)state;
    int checked = 0, permitted = 0;
    for (size_t s = 0; s < sizeof all_states / sizeof all_states[0]; s++) {
        mc_state_t from = mc_state_parse(all_states[s]);
        assert_int_not_equal(from, MOTCUA__V1__DOSSIER_STATE__STATE_UNSPECIFIED);
        for (int a = 0; a < MC_ACT_COUNT; a++) {
            const char *action = mc_action_name((mc_action_t)a);
            const char *want = expected(all_states[s], action);
            mc_state_t to = MOTCUA__V1__DOSSIER_STATE__STATE_UNSPECIFIED;
            int rc = mc_state_next(from, (mc_action_t)a, &to);
            if (want) {
                if (rc != MC_OK)
                    fail_msg("%s --%s--> %s refused", all_states[s], action, want);
                assert_string_equal(mc_state_name(to), want);
                permitted++;
            } else if (rc != MC_ECONFLICT) {
                fail_msg("%s --%s--> %s allowed", all_states[s], action, mc_state_name(to));
            }
            checked++;
        }
    }
    assert_int_equal(checked, 12 * MC_ACT_COUNT);
    assert_int_equal(permitted, (int)(sizeof allowed / sizeof allowed[0]));
}

static void national_codes(void **state)
{
    (void)state;
    static const struct {
        const char *state;
        int code;
    } want[] = {{"SUBMITTED", 1},        {"RECEIVED", 2},    {"REJECTED_AT_INTAKE", 3},
                {"AWAITING_PAYMENT", 6}, {"IN_PROGRESS", 4}, {"SUPPLEMENT_REQUESTED", 5},
                {"HANDED_OFF", 4},       {"APPROVED", 9},    {"REFUSED", 8},
                {"RESULT_READY", 9},     {"RETURNED", 10},   {"WITHDRAWN", 7}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(mc_state_national(mc_state_parse(want[i].state)), want[i].code);
    assert_int_equal(mc_state_national(MOTCUA__V1__DOSSIER_STATE__STATE_UNSPECIFIED), 0);
}

static void open_states_and_clock(void **state)
{
    (void)state;
    const char *open[] = {
        "SUBMITTED", "RECEIVED", "AWAITING_PAYMENT", "IN_PROGRESS", "SUPPLEMENT_REQUESTED",
        "HANDED_OFF"};
    int n = 0;
    for (size_t s = 0; s < sizeof all_states / sizeof all_states[0]; s++)
        n += mc_state_is_open(mc_state_parse(all_states[s]));
    assert_int_equal(n, 6);
    for (size_t i = 0; i < sizeof open / sizeof open[0]; i++)
        assert_true(mc_state_is_open(mc_state_parse(open[i])));
    assert_false(mc_state_clock_runs(mc_state_parse("SUPPLEMENT_REQUESTED")));
    assert_false(mc_state_clock_runs(mc_state_parse("AWAITING_PAYMENT")));
    assert_true(mc_state_clock_runs(mc_state_parse("IN_PROGRESS")));
    assert_true(mc_state_clock_runs(mc_state_parse("HANDED_OFF")));
    assert_false(mc_state_clock_runs(mc_state_parse("RETURNED")));
}

static void names_round_trip(void **state)
{
    (void)state;
    mc_action_t a;
    for (int i = 0; i < MC_ACT_COUNT; i++) {
        assert_int_equal(mc_action_parse(mc_action_name((mc_action_t)i), &a), MC_OK);
        assert_int_equal(a, i);
    }
    assert_int_equal(mc_action_parse("approve ", &a), MC_EINVAL);
    assert_int_equal(mc_action_parse("", &a), MC_EINVAL);
    assert_int_equal(mc_action_parse(NULL, &a), MC_EINVAL);
    assert_null(mc_action_name(MC_ACT_COUNT));
    assert_int_equal(mc_state_parse("submitted"), MOTCUA__V1__DOSSIER_STATE__STATE_UNSPECIFIED);
    assert_string_equal(mc_state_name((mc_state_t)99), "UNSPECIFIED");
    assert_int_equal(mc_channel_parse("online"), MOTCUA__V1__CHANNEL__CHANNEL_ONLINE);
    assert_string_equal(mc_channel_name(MOTCUA__V1__CHANNEL__CHANNEL_POSTAL), "postal");
    assert_int_equal(mc_channel_parse("fax"), MOTCUA__V1__CHANNEL__CHANNEL_UNSPECIFIED);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(every_transition),
    cmocka_unit_test(national_codes),
    cmocka_unit_test(open_states_and_clock),
    cmocka_unit_test(names_round_trip),
};
MC_TEST_GROUP(dossier_state, tests, NULL, NULL);
