/* intake.h: the intake service's handlers (dossier submission, lookup, status view). */
#ifndef INTAKE_H
#define INTAKE_H

#include "auth.h"
#include "bus.h"
#include "http.h"
#include "service.h"

/* Domain state shared by the handlers (mc_service_data). */
typedef struct {
    mc_service_t *svc;
    mc_auth_t *auth;
} intake_t;

static inline intake_t *intake_of(void *svc)
{
    return mc_service_data(svc);
}

/* Why a submission is refused: the HTTP status, the error code, the field at fault. */
typedef struct {
    int status;
    const char *code;
    char message[200];
    char field[64];
} submit_verdict_t;

/* POST /v1/dossiers: with an API key whose scopes fit the channel (and, for an officer,
 * the receiving agency), validate, store, emit DossierSubmitted (submit.c). */
void dossier_submit(mc_http_req_t *req, void *arg);
/* The checks of a submission's body that need neither its key nor the catalog (shape,
 * lengths, character sets, channel, applicant, documents, reference): 0, or -1 and the
 * refusal in *v. *agency gets the body's "agency" (NULL if none; owned by in). */
int submit_validate(json_t *in, const char **agency, submit_verdict_t *v);
/* GET /v1/dossiers/{code}?token=: the public view and its history (lookup.c). */
void dossier_lookup(mc_http_req_t *req, void *arg);
/* GET /v1/dossiers/{code}/receipt?token=: the printable receipt (receipt.c). */
void dossier_receipt(mc_http_req_t *req, void *arg);
/* GET /v1/procedures, /v1/procedures/{code}, /v1/agencies (procedures.c). */
void procedure_list(mc_http_req_t *req, void *arg);
void procedure_get(mc_http_req_t *req, void *arg);
void agency_list(mc_http_req_t *req, void *arg);
/* GET /v1/calendar/due?from=&days=: the due time a receipt at `from` gets (calendar_due.c). */
void calendar_due(mc_http_req_t *req, void *arg);
/* DossierStatusChanged: keep the public view (status_view.c). */
void status_view_update(mc_bus_msg_t *msg, void *arg);
/* HandoffProgress: another agency's answer on a step, in the history (status_view.c). */
void status_view_progress(mc_bus_msg_t *msg, void *arg);

#endif
