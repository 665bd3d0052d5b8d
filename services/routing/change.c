/* change.c: the envelopes every change of a case emits — one DossierStatusChanged per
 * state passed through (intake keeps the public view, interconnect and others follow),
 * and the applicant's notification. Written in the same transaction as the change. */
#include <stdlib.h>
#include <string.h>

#include "routing.h"

static char *str_or_empty(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return (char *)(s ? s : "");
}

void change_emit(mc_outbox_t *ob, const change_t *ch)
{
    mc_state_t from = ch->from;
    for (int i = 0; i < ch->nstates; i++) {
        Motcua__V1__DossierStatusChanged sc = MOTCUA__V1__DOSSIER_STATUS_CHANGED__INIT;
        mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
        sc.code = (char *)ch->code;
        sc.from = from;
        sc.to = ch->states[i];
        sc.national_status = mc_state_national(sc.to);
        sc.agency_code = (char *)(ch->agency ? ch->agency : "");
        sc.actor = (char *)(ch->actor ? ch->actor : "routing");
        sc.note = (char *)(ch->note ? ch->note : "");
        sc.at_ms = mc_wall_ms();
        sc.due_at_ms = ch->due_ms;
        sc.overdue = ch->overdue;
        sc.appointment_at_ms = ch->appointment_ms;
        sc.step_name = (char *)(ch->step_name ? ch->step_name : "");
        sc.step_agency_code = (char *)(ch->step_agency ? ch->step_agency : "");
        sc.action = (char *)(ch->action ? ch->action : "");
        env.dossier_code = (char *)ch->code;
        env.body_case = MOTCUA__V1__ENVELOPE__BODY_DOSSIER_STATUS_CHANGED;
        env.dossier_status_changed = &sc;
        mc_outbox_add(ob, &env, ch->trace, ch->causation);
        from = ch->states[i];
    }
    if (!ch->notify)
        return;
    Motcua__V1__NotificationRequested n = MOTCUA__V1__NOTIFICATION_REQUESTED__INIT;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    size_t np = json_object_size(ch->notify_params);
    Motcua__V1__NotificationRequested__ParamsEntry *pv = mc_alloc(sizeof *pv * (np ? np : 1));
    Motcua__V1__NotificationRequested__ParamsEntry **pp = mc_alloc(sizeof *pp * (np ? np : 1));
    const char *key;
    json_t *value;
    size_t k = 0;
    json_object_foreach(ch->notify_params, key, value)
    {
        motcua__v1__notification_requested__params_entry__init(&pv[k]);
        pv[k].key = (char *)key;
        pv[k].value = (char *)(json_is_string(value) ? json_string_value(value) : "");
        pp[k] = &pv[k];
        k++;
    }
    n.code = (char *)ch->code;
    n.event = (char *)ch->notify;
    n.email = str_or_empty(ch->applicant, "email");
    n.phone = str_or_empty(ch->applicant, "phone");
    n.n_params = k;
    n.params = pp;
    env.dossier_code = (char *)ch->code;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_NOTIFICATION_REQUESTED;
    env.notification_requested = &n;
    mc_outbox_add(ob, &env, ch->trace, ch->causation);
    free(pv);
    free(pp);
}
