/* dossier_state.c: the dossier lifecycle as data — one table of transitions, one table
 * of states with their national-portal codes (1 new online, 2 received, 3 not received,
 * 4 in progress, 5 supplement requested, 6 financial obligation, 7 withdrawn, 8 stopped,
 * 9 resolved, 10 returned). Every state maps to exactly one code. */
#include "dossier_state.h"

#include <string.h>

#include "error.h"

#define S(x) MOTCUA__V1__DOSSIER_STATE__STATE_##x

static const struct {
    mc_state_t state;
    const char *name;
    int national;
    int open;
    int clock_runs;
} states[] = {
    {S(SUBMITTED), "SUBMITTED", 1, 1, 1},
    {S(RECEIVED), "RECEIVED", 2, 1, 1},
    {S(REJECTED_AT_INTAKE), "REJECTED_AT_INTAKE", 3, 0, 0},
    {S(AWAITING_PAYMENT), "AWAITING_PAYMENT", 6, 1, 0},
    {S(IN_PROGRESS), "IN_PROGRESS", 4, 1, 1},
    {S(SUPPLEMENT_REQUESTED), "SUPPLEMENT_REQUESTED", 5, 1, 0},
    {S(HANDED_OFF), "HANDED_OFF", 4, 1, 1},
    {S(APPROVED), "APPROVED", 9, 0, 0},
    /* A refusal ends processing without the requested result: "stopped". */
    {S(REFUSED), "REFUSED", 8, 0, 0},
    {S(RESULT_READY), "RESULT_READY", 9, 0, 0},
    {S(RETURNED), "RETURNED", 10, 0, 0},
    {S(WITHDRAWN), "WITHDRAWN", 7, 0, 0},
};

static const char *const action_names[MC_ACT_COUNT] = {
    [MC_ACT_RECEIVE] = "receive",
    [MC_ACT_REJECT] = "reject",
    [MC_ACT_REQUEST_PAYMENT] = "request_payment",
    [MC_ACT_PAYMENT_SETTLED] = "payment_settled",
    [MC_ACT_START] = "start",
    [MC_ACT_REQUEST_SUPPLEMENT] = "request_supplement",
    [MC_ACT_SUPPLEMENT_RECEIVED] = "supplement_received",
    [MC_ACT_FORWARD] = "forward",
    [MC_ACT_HAND_OFF] = "hand_off",
    [MC_ACT_HANDOFF_COMPLETED] = "handoff_completed",
    [MC_ACT_APPROVE] = "approve",
    [MC_ACT_REFUSE] = "refuse",
    [MC_ACT_RESULT_READY] = "result_ready",
    [MC_ACT_RETURN] = "return",
    [MC_ACT_WITHDRAW] = "withdraw",
};

/* Every allowed transition; anything else is refused. WITHDRAW is allowed from every
 * open state and handled apart. */
static const struct {
    mc_state_t from;
    mc_action_t action;
    mc_state_t to;
} transitions[] = {
    {S(SUBMITTED), MC_ACT_RECEIVE, S(RECEIVED)},
    {S(SUBMITTED), MC_ACT_REJECT, S(REJECTED_AT_INTAKE)},
    {S(RECEIVED), MC_ACT_REQUEST_PAYMENT, S(AWAITING_PAYMENT)},
    {S(RECEIVED), MC_ACT_START, S(IN_PROGRESS)},
    {S(AWAITING_PAYMENT), MC_ACT_PAYMENT_SETTLED, S(IN_PROGRESS)},
    {S(IN_PROGRESS), MC_ACT_REQUEST_SUPPLEMENT, S(SUPPLEMENT_REQUESTED)},
    {S(SUPPLEMENT_REQUESTED), MC_ACT_SUPPLEMENT_RECEIVED, S(IN_PROGRESS)},
    {S(IN_PROGRESS), MC_ACT_FORWARD, S(IN_PROGRESS)},
    {S(IN_PROGRESS), MC_ACT_HAND_OFF, S(HANDED_OFF)},
    {S(HANDED_OFF), MC_ACT_HANDOFF_COMPLETED, S(IN_PROGRESS)},
    {S(IN_PROGRESS), MC_ACT_APPROVE, S(APPROVED)},
    {S(IN_PROGRESS), MC_ACT_REFUSE, S(REFUSED)},
    {S(APPROVED), MC_ACT_RESULT_READY, S(RESULT_READY)},
    {S(RESULT_READY), MC_ACT_RETURN, S(RETURNED)},
};

static int state_index(mc_state_t state)
{
    for (size_t i = 0; i < MC_COUNT(states); i++)
        if (states[i].state == state)
            return (int)i;
    return -1;
}

const char *mc_state_name(mc_state_t state)
{
    int i = state_index(state);
    return i < 0 ? "UNSPECIFIED" : states[i].name;
}

mc_state_t mc_state_parse(const char *name)
{
    for (size_t i = 0; name && i < MC_COUNT(states); i++)
        if (strcmp(states[i].name, name) == 0)
            return states[i].state;
    return MOTCUA__V1__DOSSIER_STATE__STATE_UNSPECIFIED;
}

int mc_state_national(mc_state_t state)
{
    int i = state_index(state);
    return i < 0 ? 0 : states[i].national;
}

const char *mc_national_label(int national)
{
    static const char *const labels[] = {
        NULL,
        "Mới đăng ký trực tuyến",
        "Đã tiếp nhận",
        "Không được tiếp nhận",
        "Đang giải quyết",
        "Yêu cầu bổ sung hồ sơ",
        "Yêu cầu thực hiện nghĩa vụ tài chính",
        "Rút hồ sơ theo yêu cầu",
        "Dừng xử lý",
        "Đã giải quyết xong",
        "Đã trả kết quả",
    };
    return national >= 1 && national <= 10 ? labels[national] : "Không xác định";
}

int mc_state_is_open(mc_state_t state)
{
    int i = state_index(state);
    return i >= 0 && states[i].open;
}

int mc_state_clock_runs(mc_state_t state)
{
    int i = state_index(state);
    return i >= 0 && states[i].clock_runs;
}

const char *mc_action_name(mc_action_t action)
{
    return (unsigned)action < MC_ACT_COUNT ? action_names[action] : NULL;
}

int mc_action_parse(const char *name, mc_action_t *action)
{
    for (int a = 0; name && a < MC_ACT_COUNT; a++)
        if (strcmp(action_names[a], name) == 0) {
            *action = (mc_action_t)a;
            return MC_OK;
        }
    return MC_EINVAL;
}

int mc_state_next(mc_state_t from, mc_action_t action, mc_state_t *to)
{
    if (action == MC_ACT_WITHDRAW) {
        if (!mc_state_is_open(from))
            return MC_ECONFLICT;
        *to = S(WITHDRAWN);
        return MC_OK;
    }
    for (size_t i = 0; i < MC_COUNT(transitions); i++)
        if (transitions[i].from == from && transitions[i].action == action) {
            *to = transitions[i].to;
            return MC_OK;
        }
    return MC_ECONFLICT;
}

static const char *const channels[] = {NULL, "direct", "online", "postal"};

const char *mc_channel_name(Motcua__V1__Channel channel)
{
    return (unsigned)channel < MC_COUNT(channels) ? channels[channel] : NULL;
}

Motcua__V1__Channel mc_channel_parse(const char *name)
{
    for (size_t i = 1; name && i < MC_COUNT(channels); i++)
        if (strcmp(channels[i], name) == 0)
            return (Motcua__V1__Channel)i;
    return MOTCUA__V1__CHANNEL__CHANNEL_UNSPECIFIED;
}
