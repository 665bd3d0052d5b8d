/* dossier_state.c: state names and the mapping onto the national portal's codes
 * (1 new online, 2 received, 3 not received, 4 in progress, 5 supplement requested,
 * 6 financial obligation, 7 withdrawn, 8 stopped, 9 resolved, 10 returned). */
#include "dossier_state.h"

#include <string.h>

#include "mc.h"

static const struct {
    mc_state_t state;
    const char *name;
    int national;
} states[] = {
    {MOTCUA__V1__DOSSIER_STATE__STATE_SUBMITTED, "SUBMITTED", 1},
    {MOTCUA__V1__DOSSIER_STATE__STATE_RECEIVED, "RECEIVED", 2},
    {MOTCUA__V1__DOSSIER_STATE__STATE_REJECTED_AT_INTAKE, "REJECTED_AT_INTAKE", 3},
    {MOTCUA__V1__DOSSIER_STATE__STATE_AWAITING_PAYMENT, "AWAITING_PAYMENT", 6},
    {MOTCUA__V1__DOSSIER_STATE__STATE_IN_PROGRESS, "IN_PROGRESS", 4},
    {MOTCUA__V1__DOSSIER_STATE__STATE_SUPPLEMENT_REQUESTED, "SUPPLEMENT_REQUESTED", 5},
    {MOTCUA__V1__DOSSIER_STATE__STATE_HANDED_OFF, "HANDED_OFF", 4},
    {MOTCUA__V1__DOSSIER_STATE__STATE_APPROVED, "APPROVED", 9},
    {MOTCUA__V1__DOSSIER_STATE__STATE_REFUSED, "REFUSED", 8},
    {MOTCUA__V1__DOSSIER_STATE__STATE_RESULT_READY, "RESULT_READY", 9},
    {MOTCUA__V1__DOSSIER_STATE__STATE_RETURNED, "RETURNED", 10},
    {MOTCUA__V1__DOSSIER_STATE__STATE_WITHDRAWN, "WITHDRAWN", 7},
};

const char *mc_state_name(mc_state_t state)
{
    for (size_t i = 0; i < MC_COUNT(states); i++)
        if (states[i].state == state)
            return states[i].name;
    return "UNSPECIFIED";
}

int mc_state_national(mc_state_t state)
{
    for (size_t i = 0; i < MC_COUNT(states); i++)
        if (states[i].state == state)
            return states[i].national;
    return 0;
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
