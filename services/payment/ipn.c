/* ipn.c: the gateway's callbacks. The IPN (server to server) is what changes an order;
 * the return URL only shows the applicant the outcome.
 *
 * IPN, in VNPay's order of checks: the signature (97), the order (01), the amount (04),
 * whether it is still pending (02); then the outcome is recorded and answered 00.
 * Input that cannot be read at all is 99. Paid means vnp_ResponseCode 00 and
 * vnp_TransactionStatus 00: the order becomes paid and PaymentSettled goes to routing
 * in the same transaction; any other outcome fails the order and emits PaymentFailed.
 *
 * Once only. The order row is locked (SELECT ... FOR UPDATE) for the whole
 * transaction, so of concurrent duplicate IPNs one records the outcome and the others,
 * once it commits, find the order no longer pending and answer 02; a repeat later does
 * the same. The UPDATE is also conditional on the pending state. A crash before COMMIT
 * leaves nothing, and the gateway, without an answer, sends the IPN again.
 *
 * Every IPN is written to payment.ipn_log with its verdict; the log line masks the
 * bank's transaction number and the hash. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "metrics.h"
#include "payment.h"

typedef struct {
    mc_http_req_t *req;
    mc_service_t *svc;
    mc_db_conn_t *conn;
    char *query; /* canonical, for ipn_log */
    const char *txn, *response, *tstatus, *bank_txn, *bank_code, *pay_date;
    long long amount_vnd;
    const char *verdict, *message;
    char code[65];
    int paid;
    mc_outbox_t *outbox;
} ipn_t;

static const char *qs(mc_http_req_t *req, const char *name)
{
    const char *v = mc_http_query(req, name);
    return v ? v : "";
}

static void ipn_free(ipn_t *n)
{
    if (n->conn)
        mc_db_release(n->conn); /* rolls back if the transaction is still open */
    mc_outbox_destroy(&n->outbox);
    free(n->query);
    free(n);
}

static void ipn_answer(ipn_t *n)
{
    char labels[32];
    snprintf(labels, sizeof labels, "verdict=\"%s\"", n->verdict);
    mc_counter_inc(
        mc_counter("motcua_payment_ipn_total", "IPN received, by the answer given", labels));
    /* The bank's transaction number is masked but for its last 4 digits. */
    char masked[24] = "-";
    size_t bl = strlen(n->bank_txn ? n->bank_txn : "");
    if (bl)
        snprintf(masked, sizeof masked, "***%s", n->bank_txn + (bl > 4 ? bl - 4 : 0));
    mc_logd(MC_LOG_INFO, mc_http_header(n->req, "x-trace-id"), n->code[0] ? n->code : NULL,
            "ipn order=%s amount=%lld response=%s status=%s bank_txn=%s verdict=%s (%s)",
            n->txn && *n->txn ? n->txn : "-", n->amount_vnd, n->response ? n->response : "-",
            n->tstatus ? n->tstatus : "-", masked, n->verdict, n->message);
    mc_http_reply_json(n->req, 200,
                       json_pack("{s:s, s:s}", "RspCode", n->verdict, "Message", n->message));
    ipn_free(n);
}

static void ipn_fail(ipn_t *n, PGresult *res, int status, const char *step)
{
    mc_error("ipn: %s failed: %s", step, res ? PQresultErrorMessage(res) : mc_strerror(status));
    /* Unknown error: the gateway will send the IPN again. Nothing was committed. */
    n->verdict = "99";
    n->message = "Unknown error";
    ipn_answer(n);
}

/* ---------------------------------------------------------------- verdicts without an order */

static void on_logged_alone(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    if (status != MC_OK)
        mc_error("ipn: cannot log: %s", res ? PQresultErrorMessage(res) : mc_strerror(status));
    ipn_answer(arg);
}

/* 97 or 99 before any order is looked at: logged on its own. */
static void answer_alone(ipn_t *n, const char *verdict, const char *message)
{
    n->verdict = verdict;
    n->message = message;
    mc_db_params_t p = {0};
    mc_db_param_text(&p, n->txn && *n->txn ? n->txn : NULL);
    mc_db_param_text(&p, n->query);
    mc_db_param_text(&p, verdict);
    mc_db_param_text(&p, message);
    mc_db_exec(mc_service_db(n->svc),
               "INSERT INTO payment.ipn_log (order_id, query, verdict,"
               " message) VALUES ($1, $2, $3, $4)",
               &p, 0, on_logged_alone, n);
}

/* ---------------------------------------------------------------- in the transaction */

static void on_committed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    ipn_t *n = arg;
    if (status != MC_OK) {
        ipn_fail(n, res, status, "commit");
        return;
    }
    ipn_answer(n);
}

static void commit(ipn_t *n)
{
    mc_db_query(n->conn, "COMMIT", NULL, 0, on_committed, n);
}

static void on_emitted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    ipn_t *n = arg;
    if (status != MC_OK) {
        ipn_fail(n, res, status, "outbox");
        return;
    }
    commit(n);
}

static void on_logged(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    ipn_t *n = arg;
    if (status != MC_OK) {
        ipn_fail(n, res, status, "log");
        return;
    }
    commit(n);
}

/* A verdict other than 00: logged in the transaction. */
static void answer_logged(ipn_t *n, const char *verdict, const char *message)
{
    n->verdict = verdict;
    n->message = message;
    mc_db_params_t p = {0};
    mc_db_param_text(&p, n->txn);
    mc_db_param_text(&p, n->query);
    mc_db_param_text(&p, verdict);
    mc_db_param_text(&p, message);
    mc_db_query(n->conn,
                "INSERT INTO payment.ipn_log (order_id, query, verdict, message)"
                " SELECT $1, $2, $3, $4",
                &p, 0, on_logged, n);
}

static void on_recorded(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    ipn_t *n = arg;
    if (status != MC_OK) {
        ipn_fail(n, res, status, "record");
        return;
    }
    if (PQntuples(res) != 1) { /* not pending after all: cannot happen under the lock */
        answer_logged(n, "02", "Order already confirmed");
        return;
    }
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    env.dossier_code = n->code;
    n->outbox = mc_outbox_new("payment");
    if (n->paid) {
        Motcua__V1__PaymentSettled ev = MOTCUA__V1__PAYMENT_SETTLED__INIT;
        ev.code = n->code;
        ev.order_id = (char *)n->txn;
        ev.amount_vnd = n->amount_vnd;
        ev.bank_transaction = (char *)n->bank_txn;
        ev.paid_at_ms = atoll(PQgetvalue(res, 0, 0));
        env.body_case = MOTCUA__V1__ENVELOPE__BODY_PAYMENT_SETTLED;
        env.payment_settled = &ev;
        mc_outbox_add(n->outbox, &env, mc_http_header(n->req, "x-trace-id"), NULL);
    } else {
        Motcua__V1__PaymentFailed ev = MOTCUA__V1__PAYMENT_FAILED__INIT;
        ev.code = n->code;
        ev.order_id = (char *)n->txn;
        ev.reason = (char *)vnpay_response_text(n->response);
        ev.response_code = (char *)n->response;
        env.body_case = MOTCUA__V1__ENVELOPE__BODY_PAYMENT_FAILED;
        env.payment_failed = &ev;
        mc_outbox_add(n->outbox, &env, mc_http_header(n->req, "x-trace-id"), NULL);
    }
    mc_outbox_write(n->outbox, conn, on_emitted, n);
}

static void on_order(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    ipn_t *n = arg;
    if (status != MC_OK) {
        ipn_fail(n, res, status, "lock");
        return;
    }
    if (PQntuples(res) != 1) {
        answer_logged(n, "01", "Order not found");
        return;
    }
    snprintf(n->code, sizeof n->code, "%s", PQgetvalue(res, 0, 0));
    if (atoll(PQgetvalue(res, 0, 1)) != n->amount_vnd) {
        answer_logged(n, "04", "invalid amount");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 2), "pending") != 0) {
        answer_logged(n, "02", "Order already confirmed");
        return;
    }
    n->paid = strcmp(n->response, "00") == 0 && strcmp(n->tstatus, "00") == 0;
    n->verdict = "00";
    n->message = "Confirm Success";
    static const char *sql =
        "WITH o AS (UPDATE payment.orders SET state = $2, closed_at = now(),"
        "   paid_at = CASE WHEN $2 = 'paid' THEN now() END, bank_transaction = nullif($3, ''),"
        "   bank_code = nullif($4, ''), pay_date = nullif($5, ''), response_code = $6,"
        "   reason = CASE WHEN $2 = 'failed' THEN $7 END"
        "   WHERE id = $1 AND state = 'pending' RETURNING id, paid_at, closed_at),"
        " l AS (INSERT INTO payment.ipn_log (order_id, query, verdict, message)"
        "   SELECT $1, $8, '00', 'Confirm Success')"
        " SELECT (extract(epoch FROM coalesce(paid_at, closed_at)) * 1000)::bigint FROM o";
    mc_db_params_t p = {0};
    mc_db_param_text(&p, n->txn);
    mc_db_param_text(&p, n->paid ? "paid" : "failed");
    mc_db_param_text(&p, n->bank_txn);
    mc_db_param_text(&p, n->bank_code);
    mc_db_param_text(&p, n->pay_date);
    mc_db_param_text(&p, n->response);
    mc_db_param_text(&p, vnpay_response_text(n->response));
    mc_db_param_text(&p, n->query);
    mc_db_query(conn, sql, &p, 0, on_recorded, n);
}

static void on_begun(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    ipn_t *n = arg;
    if (status != MC_OK) {
        ipn_fail(n, res, status, "begin");
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, n->txn);
    mc_db_query(conn, "SELECT code, amount_vnd, state FROM payment.orders WHERE id = $1 FOR UPDATE",
                &p, 0, on_order, n);
}

static void on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    ipn_t *n = arg;
    if (status != MC_OK) {
        ipn_fail(n, NULL, status, "connection");
        return;
    }
    n->conn = conn;
    mc_db_query(conn, "BEGIN", NULL, 0, on_begun, n);
}

/* ---------------------------------------------------------------- entry points */

/* A positive amount in VND × 100, as text of digits only. */
static long long parse_amount(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 15 || strspn(s, "0123456789") != n)
        return -1;
    return atoll(s);
}

static int ref_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 40 &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

void ipn_receive(mc_http_req_t *req, void *arg)
{
    ipn_t *n = mc_new(ipn_t);
    n->req = req;
    n->svc = arg;
    n->txn = qs(req, "vnp_TxnRef");
    n->response = qs(req, "vnp_ResponseCode");
    n->tstatus = qs(req, "vnp_TransactionStatus");
    n->bank_txn = qs(req, "vnp_TransactionNo");
    n->bank_code = qs(req, "vnp_BankCode");
    n->pay_date = qs(req, "vnp_PayDate");
    int rc = vnpay_verify(req, payment_of(arg)->cfg->secret, &n->query);
    if (!ref_ok(n->txn))
        n->txn = ""; /* never logged or looked up as it came */
    if (rc == MC_EDECODE) {
        answer_alone(n, "99", "Invalid request");
        return;
    }
    if (rc != MC_OK) {
        answer_alone(n, "97", "Invalid signature");
        return;
    }
    long long amount = parse_amount(qs(req, "vnp_Amount"));
    if (!*n->txn || !*n->response || amount < 0) {
        answer_alone(n, "99", "Invalid request");
        return;
    }
    if (amount % 100 != 0) { /* not a whole number of đồng: cannot be our order's */
        answer_alone(n, "04", "invalid amount");
        return;
    }
    n->amount_vnd = amount / 100;
    mc_db_acquire(mc_service_db(arg), on_conn, n);
}

/* ---------------------------------------------------------------- the return page */

void return_page(mc_http_req_t *req, void *arg)
{
    char *query = NULL;
    int rc = vnpay_verify(req, payment_of(arg)->cfg->secret, &query);
    free(query);
    const char *txn = qs(req, "vnp_TxnRef");
    long long amount = parse_amount(qs(req, "vnp_Amount"));
    int paid = rc == MC_OK && strcmp(qs(req, "vnp_ResponseCode"), "00") == 0 &&
               strcmp(qs(req, "vnp_TransactionStatus"), "00") == 0;
    const char *title = rc != MC_OK ? "Dữ liệu không hợp lệ"
                        : paid      ? "Thanh toán thành công"
                                    : "Thanh toán không thành công";
    const char *text = rc != MC_OK ? "Chữ ký của cổng thanh toán không hợp lệ. Kết quả thanh "
                                     "toán sẽ được cập nhật khi ngân hàng xác nhận."
                       : paid ? "Cảm ơn ông/bà. Lệ phí đã được thanh toán; hồ sơ sẽ được giải "
                                "quyết tiếp và ông/bà sẽ nhận được thông báo."
                              : "Giao dịch chưa được thực hiện. Ông/bà có thể thanh toán lại "
                                "bằng đường dẫn trong trang tra cứu hồ sơ.";
    char detail[160] = "";
    if (rc == MC_OK && ref_ok(txn) && amount >= 0)
        snprintf(detail, sizeof detail, "<p>Mã giao dịch: %s &middot; Số tiền: %lld đồng</p>", txn,
                 amount / 100);
    char *page = mc_sprintf("<!DOCTYPE html>\n<html lang=\"vi\"><head><meta charset=\"utf-8\">"
                            "<title>%s</title></head><body><h1>%s</h1><p>%s</p>%s</body></html>\n",
                            title, title, text, detail);
    mc_http_reply(req, 200, "text/html; charset=utf-8", page, strlen(page));
    free(page);
}
