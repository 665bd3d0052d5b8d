/* shipment.c: a result that goes back by post becomes a shipment request, once per
 * dossier, in the bus's inbox transaction (state 'requested'); the carrier worker
 * (carrier.c) creates it with the carrier's API. Results returned at the counter or
 * online need nothing here. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "postal.h"

static void on_recorded(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_done(arg, status, status == MC_OK ? NULL : res ? PQresultErrorMessage(res) : "insert");
}

void shipment_request(mc_bus_msg_t *msg, void *arg)
{
    (void)arg;
    const Motcua__V1__ResultReady *r = mc_bus_msg_envelope(msg)->result_ready;
    if (strcmp(r->return_method, "post") != 0) {
        mc_bus_done(msg, MC_OK, NULL); /* counter or online: not ours */
        return;
    }
    if (!r->code[0] || !r->delivery_address[0]) {
        mc_bus_done(msg, MC_EINVAL, "ResultReady by post without a dossier code or address");
        return;
    }
    json_t *recipient = json_pack("{s:s, s:s, s:s}", "name", r->applicant ? r->applicant->name : "",
                                  "phone", r->applicant ? r->applicant->phone : "", "email",
                                  r->applicant ? r->applicant->email : "");
    char *text = json_dumps(recipient, JSON_COMPACT);
    json_decref(recipient);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, r->code);
    mc_db_param_text(&p, r->delivery_address);
    mc_db_param_text(&p, text);
    mc_db_param_int(&p, r->cod_amount_vnd);
    mc_db_param_text(&p, r->procedure_name);
    mc_db_query(mc_bus_msg_conn(msg),
                "INSERT INTO postal.shipments (code, delivery_address, recipient, cod_amount_vnd,"
                " procedure_name) VALUES ($1, $2, $3::jsonb, $4::bigint, $5)"
                " ON CONFLICT (code) DO NOTHING",
                &p, 0, on_recorded, msg);
    free(text);
}
