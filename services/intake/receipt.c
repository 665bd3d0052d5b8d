/* receipt.c: GET /v1/dossiers/{code}/receipt?token= — the receipt and appointment slip
 * (giấy tiếp nhận hồ sơ và hẹn trả kết quả) as a printable HTML page. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "intake.h"
#include "service.h"

typedef struct {
    char *data;
    size_t len, cap;
} page_t;

static void put(page_t *p, const char *s)
{
    size_t n = strlen(s);
    if (p->len + n + 1 > p->cap) {
        p->cap = (p->len + n + 1) * 2;
        p->data = mc_realloc(p->data, p->cap);
    }
    memcpy(p->data + p->len, s, n + 1);
    p->len += n;
}

/* Text from the database or the applicant, escaped for HTML. */
static void put_text(page_t *p, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': put(p, "&lt;"); break;
        case '>': put(p, "&gt;"); break;
        case '&': put(p, "&amp;"); break;
        case '"': put(p, "&quot;"); break;
        case '\'': put(p, "&#39;"); break;
        default: {
            char c[2] = {*s, 0};
            put(p, c);
        }
        }
    }
}

static const char *field(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void row(page_t *p, const char *label, const char *value)
{
    put(p, "<tr><th>");
    put(p, label);
    put(p, "</th><td>");
    put_text(p, value);
    put(p, "</td></tr>\n");
}

static const char *return_label(const char *m)
{
    return strcmp(m, "post") == 0     ? "Qua dịch vụ bưu chính công ích"
           : strcmp(m, "online") == 0 ? "Trực tuyến"
                                      : "Tại Bộ phận Một cửa";
}

static void on_row(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_http_reply_error(req, 503, "unavailable", "the dossier store is unavailable", NULL);
        return;
    }
    if (PQntuples(res) != 1) {
        mc_http_reply_error(req, 404, "not_found", "no dossier with this code and token", "code");
        return;
    }
    json_t *d = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    json_t *a = json_object_get(d, "applicant");
    page_t p = {0};
    put(&p, "<!DOCTYPE html>\n<html lang=\"vi\"><head><meta charset=\"utf-8\">"
            "<title>Giấy tiếp nhận hồ sơ và hẹn trả kết quả</title><style>"
            "body{font-family:'Times New Roman',serif;max-width:760px;margin:2em auto}"
            "h1{font-size:1.2em;text-align:center}th{text-align:left;padding-right:1em;"
            "vertical-align:top;width:35%}table{width:100%;border-collapse:collapse}"
            "td,th{padding:.3em;border-bottom:1px solid #ddd}.c{text-align:center}"
            "@media print{a{display:none}}</style></head><body>\n<p class=\"c\">");
    put_text(&p, field(d, "agency_name"));
    put(&p, "<br><b>CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM</b><br>Độc lập - Tự do - Hạnh phúc</p>\n"
            "<h1>GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ</h1>\n<p class=\"c\">Mã hồ sơ: <b>");
    put_text(&p, field(d, "code"));
    put(&p, "</b></p>\n<table>\n");
    row(&p, "Người nộp hồ sơ", field(a, "name"));
    row(&p, "Địa chỉ", field(a, "address"));
    row(&p, "Số điện thoại", field(a, "phone"));
    row(&p, "Thư điện tử", field(a, "email"));
    row(&p, "Thủ tục hành chính", field(d, "procedure_name"));
    row(&p, "Mã thủ tục", field(d, "procedure"));
    row(&p, "Hình thức nộp", field(d, "channel_label"));
    row(&p, "Thời gian tiếp nhận", field(d, "received_at"));
    row(&p, "Thời gian hẹn trả kết quả", field(d, "due_at"));
    row(&p, "Lệ phí (đồng)", field(d, "fee"));
    row(&p, "Hình thức nhận kết quả", return_label(field(d, "return_method")));
    if (*field(d, "delivery_address"))
        row(&p, "Địa chỉ nhận kết quả", field(d, "delivery_address"));
    put(&p, "</table>\n<p><b>Thành phần hồ sơ đã nộp:</b></p>\n<ol>\n");
    size_t i;
    json_t *doc;
    json_array_foreach(json_object_get(d, "documents"), i, doc)
    {
        put(&p, "<li>");
        put_text(&p, field(doc, "name"));
        put(&p, "</li>\n");
    }
    put(&p, "</ol>\n<p>Tra cứu tình trạng hồ sơ bằng mã hồ sơ và mã tra cứu: <code>");
    put_text(&p, field(d, "lookup_token"));
    put(&p, "</code></p>\n</body></html>\n");
    mc_http_reply(req, 200, "text/html; charset=utf-8", p.data, p.len);
    free(p.data);
    json_decref(d);
}

void dossier_receipt(mc_http_req_t *req, void *arg)
{
    mc_service_t *svc = arg;
    const char *code = mc_http_param(req, "code");
    const char *token = mc_http_query(req, "token");
    if (!code || !*code || strlen(code) > 64) {
        mc_http_reply_error(req, 400, "invalid", "not a dossier code", "code");
        return;
    }
    if (!token || !*token) {
        mc_http_reply_error(req, 401, "unauthorized", "a lookup token (?token=) is required",
                            "token");
        return;
    }
#define LOCAL(col) "to_char(" col " AT TIME ZONE 'Asia/Ho_Chi_Minh', 'HH24:MI \"ngày\" DD/MM/YYYY')"
    /* SQL assembled with macros: kept as written. */
    // clang-format off
    static const char *sql =
        "SELECT json_build_object('code', d.code, 'procedure', d.procedure_code,"
        " 'procedure_name', d.procedure_name, 'applicant', d.applicant, 'documents', d.documents,"
        " 'channel_label', CASE d.channel WHEN 'online' THEN 'Trực tuyến' WHEN 'postal'"
        "   THEN 'Qua dịch vụ bưu chính' ELSE 'Trực tiếp' END,"
        " 'received_at', " LOCAL("d.received_at") ", 'due_at', " LOCAL("d.due_at") ","
        " 'fee', to_char(d.fee, 'FM999G999G999G990'), 'return_method', d.return_method,"
        " 'delivery_address', d.delivery_address, 'lookup_token', d.lookup_token,"
        " 'agency_name', coalesce(a.name, d.agency_code))"
        " FROM intake.dossiers d LEFT JOIN intake.agencies a ON a.code = d.agency_code"
        " WHERE d.code = $1 AND d.lookup_token = $2";
    // clang-format on
#undef LOCAL
    mc_db_params_t p = {0};
    mc_db_param_text(&p, code);
    mc_db_param_text(&p, token);
    mc_db_exec(mc_service_db(svc), sql, &p, 0, on_row, req);
}
