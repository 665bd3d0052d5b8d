/* expiry.c: pending orders past their expiry become expired, and routing hears of it
 * (PaymentFailed, reason "expired"). Rows are claimed with SKIP LOCKED, so an IPN
 * holding an order's lock wins over the sweep (the sweep takes the order next time if
 * it is still pending), and several replicas may sweep. One sweep at a time per
 * process; a batch per run. */
#include <stdlib.h>

#include "error.h"
#include "log.h"
#include "payment.h"

#define EXPIRY_BATCH 100

typedef struct {
    mc_db_conn_t *conn;
    mc_outbox_t *outbox;
    int found;
} sweep_t;

static int sweeping;

static void sweep_end(sweep_t *sw, const char *failed)
{
    if (failed)
        mc_warn("expiry: sweep failed: %s", failed);
    else if (sw->found)
        mc_info("expiry: %d unpaid order(s) expired", sw->found);
    if (sw->conn)
        mc_db_release(sw->conn); /* rolls back if still open */
    mc_outbox_destroy(&sw->outbox);
    free(sw);
    sweeping = 0;
}

static const char *why(PGresult *res, int status)
{
    return res ? PQresultErrorMessage(res) : mc_strerror(status);
}

static void on_committed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    sweep_end(arg, status == MC_OK ? NULL : why(res, status));
}

static void on_emitted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    sweep_t *sw = arg;
    if (status != MC_OK) {
        sweep_end(sw, why(res, status));
        return;
    }
    mc_db_query(conn, "COMMIT", NULL, 0, on_committed, sw);
}

static void on_expired(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    sweep_t *sw = arg;
    if (status != MC_OK) {
        sweep_end(sw, why(res, status));
        return;
    }
    sw->found = PQntuples(res);
    if (sw->found == 0) {
        sweep_end(sw, NULL);
        return;
    }
    sw->outbox = mc_outbox_new("payment");
    for (int r = 0; r < sw->found; r++) {
        Motcua__V1__PaymentFailed ev = MOTCUA__V1__PAYMENT_FAILED__INIT;
        mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
        ev.order_id = PQgetvalue(res, r, 0);
        ev.code = PQgetvalue(res, r, 1);
        ev.reason = "expired";
        env.dossier_code = ev.code;
        env.body_case = MOTCUA__V1__ENVELOPE__BODY_PAYMENT_FAILED;
        env.payment_failed = &ev;
        mc_outbox_add(sw->outbox, &env, NULL, NULL);
        mc_logd(MC_LOG_INFO, NULL, ev.code, "fee order %s expired unpaid", ev.order_id);
    }
    mc_outbox_write(sw->outbox, conn, on_emitted, sw);
}

static void on_begun(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    sweep_t *sw = arg;
    if (status != MC_OK) {
        sweep_end(sw, why(res, status));
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_int(&p, EXPIRY_BATCH);
    mc_db_query(conn,
                "UPDATE payment.orders SET state = 'expired', closed_at = now(),"
                "  reason = 'expired' WHERE id IN (SELECT id FROM payment.orders"
                "  WHERE state = 'pending' AND expires_at < now() ORDER BY expires_at"
                "  LIMIT $1::int FOR UPDATE SKIP LOCKED) RETURNING id, code",
                &p, 0, on_expired, sw);
}

static void on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    sweep_t *sw = arg;
    if (status != MC_OK) {
        sweep_end(sw, status == MC_ECLOSED ? NULL : mc_strerror(status));
        return;
    }
    sw->conn = conn;
    mc_db_query(conn, "BEGIN", NULL, 0, on_begun, sw);
}

void expiry_sweep(mc_service_t *svc)
{
    if (sweeping)
        return;
    sweeping = 1;
    mc_db_acquire(mc_service_db(svc), on_conn, mc_new(sweep_t));
}
