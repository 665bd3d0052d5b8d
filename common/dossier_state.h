/* dossier_state.h: the lifecycle of a dossier's case — states, actions, the transition
 * table, and each state's national-portal status code.
 *
 *   SUBMITTED ──receive──▶ RECEIVED ──start──▶ IN_PROGRESS ──approve──▶ APPROVED
 *       │                     │                 │ ▲  │ ▲                 │ result_ready
 *     reject          request_payment   request_│ │  │ │hand_off /       ▼
 *       ▼                     ▼         supplement│  │ │handoff_     RESULT_READY
 *   REJECTED_AT_INTAKE  AWAITING_PAYMENT  ▼ │supplement completed         │ return
 *                             │ payment_  SUPPLEMENT_ │  ▼                 ▼
 *                             └─settled─▶ REQUESTED  HANDED_OFF         RETURNED
 *   IN_PROGRESS ──forward──▶ IN_PROGRESS (next step of the workflow, same agency or not)
 *   IN_PROGRESS ──refuse──▶ REFUSED
 *   any open state ──withdraw──▶ WITHDRAWN
 *
 * Open states: SUBMITTED, RECEIVED, AWAITING_PAYMENT, IN_PROGRESS, SUPPLEMENT_REQUESTED,
 * HANDED_OFF. The resolution clock stops in SUPPLEMENT_REQUESTED and AWAITING_PAYMENT
 * (the applicant owes something) and runs in the other open states. */
#ifndef MC_DOSSIER_STATE_H
#define MC_DOSSIER_STATE_H

#include "mc.h"
#include "motcua/events.pb-c.h"

typedef Motcua__V1__DossierState mc_state_t;

typedef enum {
    MC_ACT_RECEIVE,             /* the one-stop desk accepts the dossier as valid */
    MC_ACT_REJECT,              /* the desk refuses to receive it (phiếu từ chối) */
    MC_ACT_REQUEST_PAYMENT,     /* a fee must be paid online before work starts */
    MC_ACT_PAYMENT_SETTLED,     /* the fee is paid */
    MC_ACT_START,               /* work starts (no fee owed online) */
    MC_ACT_REQUEST_SUPPLEMENT,  /* the applicant must add or correct documents */
    MC_ACT_SUPPLEMENT_RECEIVED, /* the applicant did */
    MC_ACT_FORWARD,             /* the current step is done; the next step's agency acts */
    MC_ACT_HAND_OFF,            /* the next step belongs to an agency outside motcua */
    MC_ACT_HANDOFF_COMPLETED,   /* that agency finished its step */
    MC_ACT_APPROVE,             /* the result is signed */
    MC_ACT_REFUSE,              /* resolution refused, with the reason */
    MC_ACT_RESULT_READY,        /* the result is at the one-stop unit */
    MC_ACT_RETURN,              /* the result is handed to the applicant */
    MC_ACT_WITHDRAW,            /* the applicant withdraws */
    MC_ACT_COUNT
} mc_action_t;

/* "SUBMITTED", "IN_PROGRESS", ...; "UNSPECIFIED" for unknown values. */
const char *mc_state_name(mc_state_t state);
/* The state of a name; STATE_UNSPECIFIED if unknown. */
mc_state_t mc_state_parse(const char *name);
/* The national portal's status code (1..10) for a state; 0 if none. */
int mc_state_national(mc_state_t state);
/* The national status's name as the public sees it ("Đang giải quyết"), UTF-8. */
const char *mc_national_label(int national);
/* 1 for the open states (see above). */
int mc_state_is_open(mc_state_t state);
/* 1 if the resolution clock runs in this state. */
int mc_state_clock_runs(mc_state_t state);

/* "receive", "request_supplement", ...; NULL if out of range. */
const char *mc_action_name(mc_action_t action);
/* 0 and the action of a name, or MC_EINVAL. */
int mc_action_parse(const char *name, mc_action_t *action) MC_MUST_USE;
/* The state after `action` in state `from`: 0 and *to, or MC_ECONFLICT when the
 * transition is not allowed. */
int mc_state_next(mc_state_t from, mc_action_t action, mc_state_t *to) MC_MUST_USE;

/* "online", "direct", "postal" or NULL; and back (CHANNEL_UNSPECIFIED if unknown). */
const char *mc_channel_name(Motcua__V1__Channel channel);
Motcua__V1__Channel mc_channel_parse(const char *name);

#endif
