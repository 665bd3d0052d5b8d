/* routing.h: the routing service — the case of every dossier, its workflow steps, the
 * officers' work, deadlines and statistics. */
#ifndef ROUTING_H
#define ROUTING_H

#include "auth.h"
#include "bus.h"
#include "dossier_state.h"
#include "http.h"
#include "service.h"

/* Domain state shared by the handlers (mc_service_data). */
typedef struct {
    mc_service_t *svc;
    mc_auth_t *auth;
} routing_t;

static inline routing_t *routing_of(void *svc)
{
    return mc_service_data(svc);
}

/* ---- case_open.c ---- */
/* DossierSubmitted: open the case with its workflow snapshot, announce its status. */
void case_open(mc_bus_msg_t *msg, void *arg);
/* GET /v1/cases/{code}: the case, its steps (which one is late) and events (officers). */
void case_show(mc_http_req_t *req, void *arg);

/* ---- change.c: what every change of a case emits ---- */
typedef struct {
    const char *code;
    mc_state_t from;
    mc_state_t
        states[3]; /* the states passed through, in order (receive → RECEIVED → IN_PROGRESS) */
    int nstates;
    const char *action;
    const char *actor;
    const char *note;
    const char *agency;    /* agency shown in the public history */
    const char *step_name; /* the step in charge after the change */
    const char *step_agency;
    int64_t due_ms;
    int overdue;
    int64_t appointment_ms;
    const char *notify;    /* notification event ("received", ...) or NULL */
    json_t *notify_params; /* borrowed; may be NULL */
    json_t *applicant;     /* borrowed: email and phone of whom to notify */
    json_t *reference;     /* borrowed: {system, id, handoff_id?} of a dossier from
                              another system (routing.cases.reference), or NULL */
    json_t *steps;         /* borrowed: the workflow after the change, from change_steps()
                              (or change_steps_opened()); NULL if the change leaves the steps
                              as they were (DossierStatusChanged.steps is then empty) */
    const char *trace;
    const char *causation;
} change_t;
/* Add the change's DossierStatusChanged envelopes (one per state passed) and its
 * NotificationRequested, if any, to ob. With ch->steps, every envelope carries each
 * step's public state and result, and a result_ready notification gets the `results`
 * parameter (a Vietnamese line listing what the steps produced). */
void change_emit(mc_outbox_t *ob, const change_t *ch);

/* The steps of the case after a change_write (its result res): a new JSON array of
 * {index, name, agency, current, started, done, result}, or NULL. */
json_t *change_steps(PGresult *res);
/* The steps of a case just opened (the first in charge and started): a new array. */
json_t *change_steps_opened(const Motcua__V1__DossierSubmitted *ev);

/* ResultReady for case `c` (a JSON with return_method, delivery_address, applicant,
 * procedure_name) with every step's result in order (steps: from change_steps). */
void change_emit_result_ready(mc_outbox_t *ob, const char *code, json_t *c, json_t *steps,
                              const char *trace);

/* HandoffRequested for step `step_index` (the catalog step `step`, with its due time) of
 * case `c` (a JSON with procedure_code, applicant and documents), to interconnect. */
void change_emit_handoff(mc_outbox_t *ob, const char *code, json_t *c, int step_index, json_t *step,
                         int64_t step_due_ms, const char *note, const char *trace);

/* The applicant's link to pay a dossier's fee (payment's pay endpoint). */
void change_pay_link(const char *code, char *out, size_t len);

/* How a change moves the case's rows (see change_write). */
typedef struct {
    int step, new_step;      /* the step in charge before and after */
    int done_old, start_new; /* mark the old step done; start (or re-time) the new one */
    int64_t due_ms;          /* the case's new due time, 0 to keep it */
    int64_t step_due_ms;     /* the new step's due time, 0 to keep it */
    const char *pause;       /* "set", "clear" or "keep" (NULL) */
    const char *pause_kind;  /* with "set": "supplement" or "payment" */
    const char *outcome;     /* approved, refused, withdrawn, rejected; NULL if still open */
    const char *result;      /* with done_old: what the old step produced (NULL: nothing) */
    int reopen_new;          /* with start_new: the new step was done and is open again
                                (a later step came back refused): not done, no result */
} change_rows_t;
/* Write the change (case, steps, pauses, events with ch->actor and ch->note) in one
 * statement on conn, inside the caller's transaction; its result is the steps after
 * the change (change_steps). */
void change_write(mc_db_conn_t *conn, const change_t *ch, const change_rows_t *rows,
                  mc_db_result_fn fn, void *arg);

/* ---- external.c ---- */
/* PaymentSettled, PaymentFailed, RefundCompleted, ResultDelivered, DeliveryFailed,
 * HandoffCompleted, HandoffFailed: what the edge services report about a case. */
void case_report(mc_bus_msg_t *msg, void *arg);

/* ---- action.c ---- */
/* POST /v1/dossiers/{code}/actions: an officer acts on a case. */
void action_apply(mc_http_req_t *req, void *arg);

/* ---- tasks.c ---- */
/* GET /v1/tasks?agency=&state=: the queue of an agency, oldest due first. */
void tasks_list(mc_http_req_t *req, void *arg);

/* ---- deadline.c ---- */
/* Timer: mark open cases overdue when their due time passes, with an apology letter. */
void deadline_sweep(mc_service_t *svc);
/* Due instant of `days` working days counted from `from_ms` (cutoff "HH:MM" or NULL). */
int64_t deadline_due(mc_service_t *svc, int64_t from_ms, double days, const char *cutoff);

/* ---- stats.c ---- */
/* GET /v1/stats?agency=&from=&to=[&format=csv]: the one-stop report. */
void stats_report(mc_http_req_t *req, void *arg);

#endif
