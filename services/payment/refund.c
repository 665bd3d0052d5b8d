/* refund.c: DossierStatusChanged — a dossier refused at the desk (REJECTED_AT_INTAKE)
 * or withdrawn (WITHDRAWN) after its fee was paid is owed the fee back: the order
 * becomes refunded, a refund is recorded and RefundCompleted goes to routing, all in
 * the bus's inbox transaction (so once). An order still pending for such a dossier is
 * closed (failed, reason the new status) so that nobody pays for a closed dossier.
 * Every other status is ignored.
 *
 * The gateway's refund API is not called yet: the refund is recorded for the finance
 * office to pay back (docs/payment.md). */
#include <stdlib.h>
#include <string.h>

#include "dossier_state.h"
#include "error.h"
#include "log.h"
#include "payment.h"

#define S(x) MOTCUA__V1__DOSSIER_STATE__STATE_##x

typedef struct {
    mc_bus_msg_t *msg;
    mc_outbox_t *outbox;
} refund_t;

static void refund_end(refund_t *r, int status, const char *why)
{
    mc_bus_msg_t *msg = r->msg;
    mc_outbox_destroy(&r->outbox);
    free(r);
    mc_bus_done(msg, status, why);
}

static void on_emitted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    refund_end(arg, status, status == MC_OK ? NULL : res ? PQresultErrorMessage(res) : "outbox");
}

static void on_refunded(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    refund_t *r = arg;
    if (status != MC_OK) {
        refund_end(r, status, res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    const mc_envelope_t *in = mc_bus_msg_envelope(r->msg);
    const char *reason = mc_state_name(in->dossier_status_changed->to);
    int n = PQntuples(res);
    if (n == 0) {
        refund_end(r, MC_OK, NULL);
        return;
    }
    r->outbox = mc_outbox_new("payment");
    for (int i = 0; i < n; i++) {
        Motcua__V1__RefundCompleted ev = MOTCUA__V1__REFUND_COMPLETED__INIT;
        mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
        ev.code = in->dossier_status_changed->code;
        ev.order_id = PQgetvalue(res, i, 0);
        ev.amount_vnd = atoll(PQgetvalue(res, i, 1));
        ev.reason = (char *)reason;
        env.dossier_code = ev.code;
        env.body_case = MOTCUA__V1__ENVELOPE__BODY_REFUND_COMPLETED;
        env.refund_completed = &ev;
        mc_outbox_add(r->outbox, &env, in->trace_id, in->message_id);
        mc_logd(MC_LOG_INFO, in->trace_id, ev.code, "fee order %s refunded (%lld VND, %s)",
                ev.order_id, (long long)ev.amount_vnd, reason);
    }
    mc_outbox_write(r->outbox, conn, on_emitted, r);
}

void refund_on_status(mc_bus_msg_t *msg, void *arg)
{
    (void)arg;
    const Motcua__V1__DossierStatusChanged *ev = mc_bus_msg_envelope(msg)->dossier_status_changed;
    if (ev->to != S(REJECTED_AT_INTAKE) && ev->to != S(WITHDRAWN)) {
        mc_bus_done(msg, MC_OK, NULL); /* nothing to do with the fee */
        return;
    }
    if (!ev->code[0]) {
        mc_bus_done(msg, MC_EINVAL, "DossierStatusChanged without a code");
        return;
    }
    static const char *sql =
        "WITH r AS (UPDATE payment.orders SET state = 'refunded', closed_at = now(), reason = $2"
        "   WHERE code = $1 AND state = 'paid' RETURNING id, code, amount_vnd),"
        " ins AS (INSERT INTO payment.refunds (order_id, code, amount_vnd, reason)"
        "   SELECT id, code, amount_vnd, $2 FROM r),"
        " c AS (UPDATE payment.orders SET state = 'failed', closed_at = now(), reason = $2"
        "   WHERE code = $1 AND state = 'pending')"
        " SELECT id, amount_vnd FROM r";
    refund_t *r = mc_new(refund_t);
    r->msg = msg;
    mc_db_params_t p = {0};
    mc_db_param_text(&p, ev->code);
    mc_db_param_text(&p, mc_state_name(ev->to));
    mc_db_query(mc_bus_msg_conn(msg), sql, &p, 0, on_refunded, r);
}
