/* status_view.c: DossierStatusChanged from routing keeps intake's public view and
 * history; HandoffProgress from interconnect adds the other agencies' answers on the
 * steps handed to them. Runs inside the bus's inbox transaction: applied exactly once,
 * in order per dossier and sender. A status for a dossier intake never stored (one
 * imported from a legacy system straight into routing) has no public view here and is
 * skipped.
 *
 * Steps: each DossierStatusChanged that carries the steps (routing's word on every
 * step: state and result) replaces intake's copy of them; one that carries none leaves
 * them. HandoffProgress only sets a step's `handoff` (the handoff's own state) and adds
 * a line to the history, with the dossier's status unchanged. The two come from
 * different senders, so neither is assumed to come first: a handoff answer older than
 * what is kept is recorded in the history but does not replace the newer one, and a
 * step handed off again forgets the answer of the earlier handoff only if that answer
 * is older than the new handoff. */
#include <stdlib.h>
#include <string.h>

#include "dossier_state.h"
#include "error.h"
#include "intake.h"
#include "log.h"

/* The view is written (a status change or a handoff's progress); a dossier intake never
 * stored (imported history, another system's) has no view, which is not an error. */
static void on_updated(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_msg_t *msg = arg;
    if (status != MC_OK) {
        mc_bus_done(msg, status, res ? PQresultErrorMessage(res) : "update failed");
        return;
    }
    const mc_envelope_t *env = mc_bus_msg_envelope(msg);
    if (strcmp(PQcmdTuples(res), "1") != 0)
        mc_logd(MC_LOG_DEBUG, NULL, env->dossier_code,
                "%s of a dossier not submitted through intake: no public view to keep", env->type);
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
        "   WHERE code = $1 RETURNING code),"
        " s AS (INSERT INTO intake.dossier_steps AS o (code, idx, name, agency_code, state,"
        "   result) SELECT u.code, x.i, x.n, x.a, x.s, x.r FROM u,"
        "   json_to_recordset($10::json) AS x(i int, n text, a text, s text, r text)"
        "   ON CONFLICT (code, idx) DO UPDATE SET name = EXCLUDED.name,"
        "    agency_code = EXCLUDED.agency_code, state = EXCLUDED.state, result = EXCLUDED.result,"
        "    handoff_state = CASE WHEN EXCLUDED.state = 'handed_off' AND o.state <> 'handed_off'"
        "     AND o.handoff_at < to_timestamp($4::bigint / 1000.0) THEN NULL"
        "     ELSE o.handoff_state END"
        /* Steps that did not change are not written again (no new row version, no WAL). */
        "    WHERE (o.name, o.agency_code, o.state, o.result) IS DISTINCT FROM"
        "     (EXCLUDED.name, EXCLUDED.agency_code, EXCLUDED.state, EXCLUDED.result))"
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
    json_t *steps = json_array();
    for (size_t i = 0; i < ev->n_steps; i++) {
        const Motcua__V1__StepStatus *st = ev->steps[i];
        json_array_append_new(steps, json_pack("{s:i, s:s, s:s, s:s, s:s}", "i", st->step_index,
                                               "n", st->step_name, "a", st->agency_code, "s",
                                               st->state, "r", st->result));
    }
    char *text = json_dumps(steps, JSON_COMPACT);
    mc_db_param_text(&p, text);
    mc_db_query(mc_bus_msg_conn(msg), sql, &p, 0, on_updated, msg);
    free(text);
    json_decref(steps);
}

/* ------------------------------------------------------------------ HandoffProgress */

/* The history line for a handoff's new state; %1$s the agency, %2$s its words. */
static const struct {
    const char *state;
    const char *with_note, *without;
} progress_notes[] = {
    {"sent", "handed to %s: %s", "handed to %s; waiting for its answer"},
    {"accepted", "%s accepted the step: %s", "%s accepted the step"},
    {"in_progress", "%s is working on the step: %s", "%s is working on the step"},
    {"completed", "%s finished the step: %s", "%s finished the step"},
    {"rejected", "%s refused the step: %s", "%s refused the step"},
    {"failed", "the handoff to %s failed: %s", "the handoff to %s failed"},
    {"expired", "%s did not answer in time: %s", "%s did not answer in time"},
};

void status_view_progress(mc_bus_msg_t *msg, void *arg)
{
    (void)arg;
    const Motcua__V1__HandoffProgress *h = mc_bus_msg_envelope(msg)->handoff_progress;
    if (!h->code[0] || !h->state[0]) {
        mc_bus_done(msg, MC_EINVAL, "HandoffProgress without dossier code or state");
        return;
    }
    char note[700];
    int known = 0;
    for (size_t i = 0; i < MC_COUNT(progress_notes) && !known; i++)
        if (strcmp(progress_notes[i].state, h->state) == 0) {
            known = 1;
            if (h->note[0])
                snprintf(note, sizeof note, progress_notes[i].with_note, h->agency_code, h->note);
            else
                snprintf(note, sizeof note, progress_notes[i].without, h->agency_code);
        }
    if (!known)
        snprintf(note, sizeof note, "handoff to %s: %s%s%s", h->agency_code, h->state,
                 h->note[0] ? ": " : "", h->note);
    /* The dossier's status is unchanged: the line is about the other agency's work. */
    static const char *sql =
        "WITH d AS (SELECT code, status FROM intake.dossiers WHERE code = $1),"
        " s AS (UPDATE intake.dossier_steps SET handoff_state = $3,"
        "   handoff_at = to_timestamp($5::bigint / 1000.0)"
        "   WHERE code = $1 AND idx = $2::int"
        "    AND (handoff_at IS NULL OR handoff_at <= to_timestamp($5::bigint / 1000.0)))"
        " INSERT INTO intake.dossier_events (code, state, agency_code, note, at)"
        " SELECT code, status, $4, $6, to_timestamp($5::bigint / 1000.0) FROM d";
    mc_db_params_t p = {0};
    mc_db_param_text(&p, h->code);
    mc_db_param_int(&p, h->step_index);
    mc_db_param_text(&p, h->state);
    mc_db_param_text(&p, h->agency_code);
    mc_db_param_int(&p, h->at_ms > 0 ? h->at_ms : mc_wall_ms());
    mc_db_param_text(&p, note);
    mc_db_query(mc_bus_msg_conn(msg), sql, &p, 0, on_updated, msg);
}
