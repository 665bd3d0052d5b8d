/* order.c: the fee order of a dossier — opened from PaymentRequested, paid through the
 * gateway's page, shown to operators.
 *
 * One order per dossier is open (pending) at a time: a partial unique index says so.
 * PaymentRequested opens the first one in the bus's inbox transaction (a repeat, or a
 * second request for a dossier that already has an order, changes nothing). When the
 * applicant cancelled or the bank refused, the next visit to the pay link opens a new
 * order with a new reference (VNPay wants a fresh vnp_TxnRef per attempt) for the same
 * amount and expiry. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "metrics.h"
#include "payment.h"

/* How long the gateway's page keeps a payment session open. */
#define PAY_WINDOW_MS (15 * 60 * 1000)

void order_new_id(char out[13])
{
    static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"; /* 32, no 0/O, 1/I */
    uint8_t b[12];
    randombytes_buf(b, sizeof b);
    for (int i = 0; i < 12; i++)
        out[i] = alphabet[b[i] & 31];
    out[12] = '\0';
}

static void count_created(void)
{
    mc_counter_inc(mc_counter("motcua_payment_orders_created_total", "Fee orders opened", NULL));
}

/* ---------------------------------------------------------------- PaymentRequested */

static void on_opened(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_msg_t *msg = arg;
    if (status != MC_OK) {
        mc_bus_done(msg, status, res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    const char *code = mc_bus_msg_envelope(msg)->dossier_code;
    if (PQntuples(res) == 1) {
        count_created();
        mc_logd(MC_LOG_INFO, NULL, code, "fee order %s opened", PQgetvalue(res, 0, 0));
    } else {
        mc_logd(MC_LOG_INFO, NULL, code, "the dossier already has a fee order");
    }
    mc_bus_done(msg, MC_OK, NULL);
}

void order_open(mc_bus_msg_t *msg, void *arg)
{
    (void)arg;
    const mc_envelope_t *in = mc_bus_msg_envelope(msg);
    const Motcua__V1__PaymentRequested *ev = in->payment_requested;
    if (!ev->code[0] || strlen(ev->code) > 64 || ev->amount_vnd <= 0 || ev->expires_at_ms <= 0) {
        mc_bus_done(msg, MC_EINVAL, "PaymentRequested without code, a positive amount or expiry");
        return;
    }
    char id[13];
    order_new_id(id);
    static const char *sql =
        "INSERT INTO payment.orders (id, code, amount_vnd, procedure_code, procedure_name,"
        "  expires_at, message_id)"
        " SELECT $1, $2, $3::bigint, $4, $5, to_timestamp($6::bigint / 1000.0), $7::uuid"
        " WHERE NOT EXISTS (SELECT 1 FROM payment.orders WHERE code = $2)"
        " RETURNING id";
    mc_db_params_t p = {0};
    mc_db_param_text(&p, id);
    mc_db_param_text(&p, ev->code);
    mc_db_param_int(&p, ev->amount_vnd);
    mc_db_param_text(&p, ev->procedure_code);
    mc_db_param_text(&p, ev->procedure_name);
    mc_db_param_int(&p, ev->expires_at_ms);
    mc_db_param_text(&p, in->message_id);
    mc_db_query(mc_bus_msg_conn(msg), sql, &p, 0, on_opened, msg);
}

/* ---------------------------------------------------------------- the pay link */

static void reply_page(mc_http_req_t *req, int status, const char *title, const char *text)
{
    char *page = mc_sprintf("<!DOCTYPE html>\n<html lang=\"vi\"><head><meta charset=\"utf-8\">"
                            "<title>%s</title></head><body><h1>%s</h1><p>%s</p></body></html>\n",
                            title, title, text);
    mc_http_reply(req, status, "text/html; charset=utf-8", page, strlen(page));
    free(page);
}

typedef struct {
    mc_http_req_t *req;
    mc_service_t *svc;
} pay_t;

/* Where the applicant came from, for vnp_IpAddr: the proxy's X-Forwarded-For (its first
 * address), else loopback (common/http.c does not give the peer address). */
static void client_ip(mc_http_req_t *req, char out[64])
{
    const char *xff = mc_http_header(req, "x-forwarded-for");
    size_t n = xff ? strcspn(xff, ", ") : 0;
    if (n == 0 || n >= 64 || strspn(xff, "0123456789abcdefABCDEF.:") < n) {
        strcpy(out, "127.0.0.1");
        return;
    }
    memcpy(out, xff, n);
    out[n] = '\0';
}

static void on_order_for_pay(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    pay_t *pay = arg;
    mc_http_req_t *req = pay->req;
    const payment_config_t *cfg = payment_of(pay->svc)->cfg;
    free(pay);
    if (status != MC_OK) {
        mc_error("pay: %s", res ? PQresultErrorMessage(res) : mc_strerror(status));
        reply_page(req, 503, "Tạm thời gián đoạn",
                   "Hệ thống thanh toán tạm thời gián đoạn. Xin vui lòng thử lại sau ít phút.");
        return;
    }
    if (PQntuples(res) != 1) {
        reply_page(req, 404, "Không tìm thấy", "Hồ sơ này không có khoản phí cần thanh toán.");
        return;
    }
    const char *id = PQgetvalue(res, 0, 0), *state = PQgetvalue(res, 0, 3);
    if (strcmp(state, "pending") != 0) {
        int expired = strcmp(state, "expired") == 0;
        reply_page(req, expired ? 410 : 409, expired ? "Đã hết hạn" : "Không cần thanh toán",
                   strcmp(state, "paid") == 0 ? "Lệ phí của hồ sơ này đã được thanh toán."
                   : expired ? "Thời hạn thanh toán lệ phí của hồ sơ này đã hết."
                             : "Khoản phí của hồ sơ này không còn chờ thanh toán.");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 4), "t") == 0)
        count_created();
    const char *code = mc_http_param(req, "code");
    int64_t now = mc_wall_ms(), expires = atoll(PQgetvalue(res, 0, 2));
    char amount[32], created[15], expire[15], ip[64];
    snprintf(amount, sizeof amount, "%lld", atoll(PQgetvalue(res, 0, 1)) * 100);
    vnpay_date(now, created);
    vnpay_date(expires < now + PAY_WINDOW_MS ? expires : now + PAY_WINDOW_MS, expire);
    client_ip(req, ip);
    char *info = mc_sprintf("Thanh toan le phi ho so %s", code);
    char *return_url = mc_sprintf("%s/v1/payments/return", cfg->public_url);
    vnp_param_t params[] = {
        {"vnp_Version", "2.1.0"},      {"vnp_Command", "pay"},     {"vnp_TmnCode", cfg->tmn_code},
        {"vnp_Amount", amount},        {"vnp_CurrCode", "VND"},    {"vnp_TxnRef", id},
        {"vnp_OrderInfo", info},       {"vnp_OrderType", "other"}, {"vnp_Locale", "vn"},
        {"vnp_ReturnUrl", return_url}, {"vnp_IpAddr", ip},         {"vnp_CreateDate", created},
        {"vnp_ExpireDate", expire},
    };
    char *url = vnpay_pay_url(cfg->gateway_url, cfg->secret, params, MC_COUNT(params));
    mc_logd(MC_LOG_INFO, mc_http_header(req, "x-trace-id"), code, "applicant sent to pay order %s",
            id);
    mc_http_set_header(req, "Location", url);
    char *page = mc_sprintf("<!DOCTYPE html>\n<html lang=\"vi\"><head><meta charset=\"utf-8\">"
                            "<title>Thanh toán</title></head><body><p>Đang chuyển đến cổng "
                            "thanh toán…</p></body></html>\n");
    mc_http_reply(req, 302, "text/html; charset=utf-8", page, strlen(page));
    free(page);
    free(url);
    free(info);
    free(return_url);
}

static int code_ok(const char *code)
{
    size_t n = code ? strlen(code) : 0;
    return n > 0 && n <= 64 &&
           strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_") == n;
}

void order_pay(mc_http_req_t *req, void *arg)
{
    const char *code = mc_http_param(req, "code");
    if (!code_ok(code)) {
        reply_page(req, 400, "Không hợp lệ", "Mã hồ sơ không hợp lệ.");
        return;
    }
    /* The dossier's latest order; after a failure (and before expiry) a new attempt
     * with a new reference. */
    static const char *sql =
        "WITH latest AS (SELECT * FROM payment.orders WHERE code = $1"
        "   ORDER BY created_at DESC, id DESC LIMIT 1),"
        " again AS (INSERT INTO payment.orders (id, code, amount_vnd, procedure_code,"
        "   procedure_name, expires_at)"
        "   SELECT $2, code, amount_vnd, procedure_code, procedure_name, expires_at FROM latest"
        "   WHERE state = 'failed' AND expires_at > now() RETURNING *)"
        " SELECT id, amount_vnd, (extract(epoch FROM expires_at) * 1000)::bigint, state, true"
        "  FROM again"
        " UNION ALL"
        " SELECT id, amount_vnd, (extract(epoch FROM expires_at) * 1000)::bigint, state, false"
        "  FROM latest WHERE NOT EXISTS (SELECT 1 FROM again)";
    char id[13];
    order_new_id(id);
    pay_t *pay = mc_new(pay_t);
    pay->req = req;
    pay->svc = arg;
    mc_db_params_t p = {0};
    mc_db_param_text(&p, code);
    mc_db_param_text(&p, id);
    mc_db_exec(mc_service_db(arg), sql, &p, 0, on_order_for_pay, pay);
}

/* ---------------------------------------------------------------- GET /v1/payments/{id} */

#define LOCAL(col)                                                                                 \
    "to_char(" col " AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')"

static void on_order(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_error("order: %s", res ? PQresultErrorMessage(res) : mc_strerror(status));
        mc_http_reply_error(req, 503, "unavailable", "the order store is unavailable", NULL);
        return;
    }
    if (PQntuples(res) != 1) {
        mc_http_reply_error(req, 404, "not_found", "no order with this id", "id");
        return;
    }
    mc_http_reply_json(req, 200, json_loads(PQgetvalue(res, 0, 0), 0, NULL));
}

static void order_show_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    (void)who;
    /* SQL assembled with macros: kept as written. */
    // clang-format off
    static const char *sql =
        "SELECT json_build_object('id', o.id, 'code', o.code, 'amount_vnd', o.amount_vnd,"
        " 'procedure', o.procedure_code, 'procedure_name', o.procedure_name, 'state', o.state,"
        " 'created_at', " LOCAL("o.created_at") ", 'expires_at', " LOCAL("o.expires_at") ","
        " 'paid_at', " LOCAL("o.paid_at") ", 'closed_at', " LOCAL("o.closed_at") ","
        " 'bank_transaction', o.bank_transaction, 'bank_code', o.bank_code,"
        " 'response_code', o.response_code, 'reason', o.reason,"
        " 'refund', (SELECT json_build_object('amount_vnd', r.amount_vnd, 'reason', r.reason,"
        "   'state', r.state, 'at', " LOCAL("r.created_at") ", 'tries', r.tries,"
        "   'last_error', r.last_error, 'response_code', r.response_code,"
        "   'bank_transaction', r.bank_transaction,"
        "   'completed_at', " LOCAL("r.completed_at") ")"
        "   FROM payment.refunds r WHERE r.order_id = o.id),"
        " 'ipn', (SELECT coalesce(json_agg(json_build_object('verdict', l.verdict,"
        "   'message', l.message, 'at', " LOCAL("l.received_at") ") ORDER BY l.id), '[]')"
        "   FROM payment.ipn_log l WHERE l.order_id = o.id))"
        " FROM payment.orders o WHERE o.id = $1";
    // clang-format on
    mc_db_params_t p = {0};
    mc_db_param_text(&p, mc_http_param(req, "id"));
    mc_db_exec(mc_service_db(arg), sql, &p, 0, on_order, req);
}

void order_show(mc_http_req_t *req, void *arg)
{
    const char *id = mc_http_param(req, "id");
    if (!code_ok(id) || strlen(id) > 40) {
        mc_http_reply_error(req, 400, "invalid", "not an order id", "id");
        return;
    }
    mc_auth_require(payment_of(arg)->auth, req, MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR, order_show_as,
                    arg);
}
