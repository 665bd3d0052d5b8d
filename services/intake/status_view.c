/* status_view.c: DossierStatusChanged from routing keeps intake's public view and
 * history. Runs inside the bus's inbox transaction: applied exactly once, in order
 * per dossier. A status for a dossier intake never stored (one imported from a legacy
 * system straight into routing) has no public view here and is skipped. */
#include <string.h>

#include "dossier_state.h"
#include "error.h"
#include "intake.h"
#include "log.h"

static void on_updated(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_msg_t *msg = arg;
    if (status != MC_OK) {
        mc_bus_done(msg, status, res ? PQresultErrorMessage(res) : "update failed");
        return;
    }
    if (strcmp(PQcmdTuples(res), "1") != 0)
        mc_logd(MC_LOG_DEBUG, NULL, mc_bus_msg_envelope(msg)->dossier_code,
                "status of a dossier not submitted through intake: no public view to keep");
    mc_bus_done(msg, MC_OK, NULL);
}

void status_view_update(mc_bus_msg_t *msg, void *arg)
{
    (void)arg;
    const Motcua__V1__DossierStatusChanged *ev = mc_bus_msg_envelope(msg)->dossier_status_changed;
    static const char *sql =
        "WITH u AS (UPDATE intake.dossiers SET status = $2, national_status = $3, routed = true,"
        "   status_at = to_timestamp($4::bigint / 1000.0),"
        "   due_at = CASE WHEN $7::bigint > 0 THEN to_timestamp($7::bigint / 1000.0)"
        "     ELSE due_at END,"
        "   overdue = $8::boolean,"
        "   appointment_at = CASE WHEN $9::bigint > 0 THEN to_timestamp($9::bigint / 1000.0)"
        "     ELSE appointment_at END"
        "   WHERE code = $1 RETURNING code)"
        " INSERT INTO intake.dossier_events (code, state, agency_code, note, at)"
        " SELECT code, $2, $5, $6, to_timestamp($4::bigint / 1000.0) FROM u";
    mc_db_params_t p = {0};
    mc_db_param_text(&p, ev->code);
    mc_db_param_text(&p, mc_state_name(ev->to));
    mc_db_param_int(&p, mc_state_national(ev->to));
    mc_db_param_int(&p, ev->at_ms);
    mc_db_param_text(&p, ev->agency_code);
    mc_db_param_text(&p, ev->note);
    mc_db_param_int(&p, ev->due_at_ms);
    mc_db_param_text(&p, ev->overdue ? "true" : "false");
    mc_db_param_int(&p, ev->appointment_at_ms);
    mc_db_query(mc_bus_msg_conn(msg), sql, &p, 0, on_updated, msg);
}
