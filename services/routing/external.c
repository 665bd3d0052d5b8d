/* external.c: what the edge services report back about a case — the fee paid or not,
 * a refund, the result delivered by post or not. Each is applied in the bus's inbox
 * transaction under a row lock on the case, through the same state machine and the same
 * writing path as officers' actions. A report that no longer fits the case's state (a
 * payment confirmed after the applicant withdrew) changes nothing but is recorded in
 * the history: it is a race of the real world, not a bad message. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "routing.h"

typedef struct {
    mc_bus_msg_t *msg;
    mc_service_t *svc;
    json_t *c;
    json_t *params;
    mc_outbox_t *outbox;
    change_t ch;
    change_rows_t rows;
    json_t *handoff_step; /* borrowed from c: the next step goes outside motcua too */
    json_t *steps;        /* the steps after the change (change_steps) */
    char note[300];
} ext_t;

/* Decide what the report does; fills e->ch (states, notify) and e->rows. */
typedef void (*ext_decide_fn)(ext_t *e, mc_state_t state);

static void ext_end(ext_t *e, int status, const char *why)
{
    mc_bus_msg_t *msg = e->msg;
    json_decref(e->c);
    json_decref(e->params);
    json_decref(e->steps);
    mc_outbox_destroy(&e->outbox);
    free(e);
    mc_bus_done(msg, status, why);
}

static void on_emitted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    ext_end(arg, status, status == MC_OK ? NULL : res ? PQresultErrorMessage(res) : "outbox");
}

static void on_written(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    ext_t *e = arg;
    if (status != MC_OK) {
        ext_end(e, status, res ? PQresultErrorMessage(res) : "write");
        return;
    }
    e->ch.steps = e->steps = change_steps(res);
    e->outbox = mc_outbox_new("routing");
    change_emit(e->outbox, &e->ch);
    if (e->handoff_step)
        change_emit_handoff(e->outbox, e->ch.code, e->c, e->rows.new_step, e->handoff_step,
                            e->rows.step_due_ms, NULL, e->ch.trace);
    mc_outbox_write(e->outbox, conn, on_emitted, e);
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* Move the case by `action` if the state machine allows it now; else only record. */
static void apply(ext_t *e, mc_state_t state, mc_action_t action)
{
    mc_state_t to;
    if (mc_state_next(state, action, &to) != MC_OK) {
        size_t len = strlen(e->note);
        snprintf(e->note + len, sizeof e->note - len, " (in state %s: nothing changes)",
                 mc_state_name(state));
        e->ch.notify = NULL;
        to = state;
    }
    e->ch.states[0] = to;
    e->ch.nstates = 1;
}

static void decide_paid(ext_t *e, mc_state_t state)
{
    const Motcua__V1__PaymentSettled *p = mc_bus_msg_envelope(e->msg)->payment_settled;
    snprintf(e->note, sizeof e->note, "fee paid online: %lld VND, order %s",
             (long long)p->amount_vnd, p->order_id);
    e->ch.notify = "payment_confirmed";
    char amount[32];
    snprintf(amount, sizeof amount, "%lld", (long long)p->amount_vnd);
    json_object_set_new(e->params, "amount", json_string(amount));
    apply(e, state, MC_ACT_PAYMENT_SETTLED);
    if (e->ch.states[0] == state)
        return;
    /* The clock runs again with the working time left when the fee became due. */
    const mc_calendar_t *cal = mc_service_calendar(e->svc);
    int64_t now = mc_wall_ms();
    int64_t paused = json_integer_value(json_object_get(e->c, "paused_ms"));
    int64_t due = json_integer_value(json_object_get(e->c, "due_ms"));
    if (paused > 0 && due > 0)
        e->rows.due_ms =
            mc_calendar_add_working_ms(cal, now, mc_calendar_working_ms_between(cal, paused, due));
    e->rows.pause = "clear";
}

/* Why a payment failed, for the applicant: the gateway's response codes (DOMAIN.md). */
static const char *payment_reason(const Motcua__V1__PaymentFailed *p)
{
    static const struct {
        const char *code, *text;
    } reasons[] = {
        {"07", "giao dịch bị nghi ngờ gian lận"},
        {"09", "thẻ/tài khoản chưa đăng ký dịch vụ ngân hàng trực tuyến"},
        {"10", "xác thực thông tin thẻ/tài khoản không đúng quá 3 lần"},
        {"11", "đã hết thời gian chờ thanh toán"},
        {"12", "thẻ/tài khoản bị khóa"},
        {"13", "nhập sai mật khẩu xác thực giao dịch (OTP)"},
        {"24", "Quý ông/bà đã hủy giao dịch"},
        {"51", "tài khoản không đủ số dư"},
        {"65", "tài khoản đã vượt quá hạn mức giao dịch trong ngày"},
        {"75", "ngân hàng thanh toán đang bảo trì"},
        {"79", "nhập sai mật khẩu thanh toán quá số lần quy định"},
    };
    if (strcmp(p->reason, "expired") == 0)
        return "đơn thanh toán đã hết hạn";
    for (size_t i = 0; i < MC_COUNT(reasons); i++)
        if (strcmp(p->response_code, reasons[i].code) == 0)
            return reasons[i].text;
    return "giao dịch không thành công";
}

static void decide_payment_failed(ext_t *e, mc_state_t state)
{
    const Motcua__V1__PaymentFailed *p = mc_bus_msg_envelope(e->msg)->payment_failed;
    snprintf(e->note, sizeof e->note, "online payment failed (%s%s%s)", p->reason,
             p->response_code[0] ? ", gateway code " : "", p->response_code);
    e->ch.notify =
        state == MOTCUA__V1__DOSSIER_STATE__STATE_AWAITING_PAYMENT ? "payment_failed" : NULL;
    /* The applicant reads the reason in Vietnamese, the amount and where to pay again. */
    char amount[32], link[512];
    snprintf(amount, sizeof amount, "%lld",
             (long long)json_integer_value(json_object_get(e->c, "fee")));
    change_pay_link(e->ch.code, link, sizeof link);
    json_object_set_new(e->params, "reason", json_string(payment_reason(p)));
    json_object_set_new(e->params, "amount", json_string(amount));
    json_object_set_new(e->params, "pay_link", json_string(link));
    e->ch.states[0] = state;
    e->ch.nstates = 1;
}

static void decide_refunded(ext_t *e, mc_state_t state)
{
    const Motcua__V1__RefundCompleted *r = mc_bus_msg_envelope(e->msg)->refund_completed;
    snprintf(e->note, sizeof e->note, "fee refunded: %lld VND, order %s (%s)",
             (long long)r->amount_vnd, r->order_id, r->reason);
    e->ch.states[0] = state;
    e->ch.nstates = 1;
}

static void decide_delivered(ext_t *e, mc_state_t state)
{
    const Motcua__V1__ResultDelivered *d = mc_bus_msg_envelope(e->msg)->result_delivered;
    snprintf(e->note, sizeof e->note, "result delivered by post, tracking %s", d->tracking_number);
    e->ch.notify = "delivered";
    json_object_set_new(e->params, "tracking", json_string(d->tracking_number));
    apply(e, state, MC_ACT_RETURN);
}

static void decide_delivery_failed(ext_t *e, mc_state_t state)
{
    const Motcua__V1__DeliveryFailed *d = mc_bus_msg_envelope(e->msg)->delivery_failed;
    snprintf(e->note, sizeof e->note, "%s: %s (tracking %s)",
             d->final ? "delivery failed for good; the result is back at the counter"
                      : "a delivery attempt failed",
             d->reason, d->tracking_number);
    e->ch.notify = d->final ? "delivery_failed" : NULL;
    json_object_set_new(e->params, "tracking", json_string(d->tracking_number));
    json_object_set_new(e->params, "reason", json_string(d->reason));
    e->ch.states[0] = state;
    e->ch.nstates = 1;
}

/* The other agency finished its step: the next step starts (and is handed off again
 * if it is outside motcua too); after the last one the case waits for approval. */
static void decide_handoff_completed(ext_t *e, mc_state_t state)
{
    const Motcua__V1__HandoffCompleted *h = mc_bus_msg_envelope(e->msg)->handoff_completed;
    int step = e->rows.step;
    json_t *steps = json_object_get(e->c, "steps");
    snprintf(e->note, sizeof e->note, "%s finished its step%s%s", h->agency_code,
             h->result[0] ? ": " : "", h->result);
    if (h->step_index != step) {
        size_t len = strlen(e->note);
        snprintf(e->note + len, sizeof e->note - len, " (step %d; the case is at step %d)",
                 h->step_index, step);
        e->ch.states[0] = state;
        e->ch.nstates = 1;
        return;
    }
    apply(e, state, MC_ACT_HANDOFF_COMPLETED);
    if (e->ch.states[0] == state)
        return;
    e->rows.done_old = 1;
    e->rows.result = h->result; /* returned with the others when the result is ready */
    json_t *next = json_array_get(steps, (size_t)step + 1);
    if (!next)
        return; /* the last step is done: an officer approves or refuses */
    e->rows.new_step = step + 1;
    e->rows.start_new = 1;
    e->rows.step_due_ms =
        deadline_due(e->svc, mc_wall_ms(), json_number_value(json_object_get(next, "days")), NULL);
    e->ch.step_name = jstr(next, "name");
    e->ch.step_agency = jstr(next, "agency");
    e->ch.agency = e->ch.step_agency;
    mc_state_t again;
    if (json_is_true(json_object_get(next, "external")) &&
        mc_state_next(e->ch.states[0], MC_ACT_HAND_OFF, &again) == MC_OK) {
        e->ch.states[e->ch.nstates++] = again;
        e->handoff_step = next;
    }
}

/* The other agency refused the step, or it could not be done in time: the step before
 * it is in charge again, so its officers can hand it off again or refuse the dossier. */
static void decide_handoff_failed(ext_t *e, mc_state_t state)
{
    const Motcua__V1__HandoffFailed *h = mc_bus_msg_envelope(e->msg)->handoff_failed;
    int step = e->rows.step;
    snprintf(e->note, sizeof e->note, "%s %s: %s", h->agency_code,
             h->rejected ? "refused its step" : "did not finish its step", h->reason);
    if (h->step_index != step || step == 0) {
        size_t len = strlen(e->note);
        snprintf(e->note + len, sizeof e->note - len, " (step %d; the case is at step %d)",
                 h->step_index, step);
        e->ch.states[0] = state;
        e->ch.nstates = 1;
        return;
    }
    apply(e, state, MC_ACT_HANDOFF_COMPLETED);
    if (e->ch.states[0] == state)
        return;
    json_t *prev = json_array_get(json_object_get(e->c, "steps"), (size_t)step - 1);
    e->rows.new_step = step - 1;
    e->rows.start_new = 1;
    e->rows.reopen_new = 1; /* its officers decide again: hand off again, or refuse */
    e->rows.step_due_ms =
        deadline_due(e->svc, mc_wall_ms(), json_number_value(json_object_get(prev, "days")), NULL);
    e->ch.step_name = jstr(prev, "name");
    e->ch.step_agency = jstr(prev, "agency");
    e->ch.agency = e->ch.step_agency;
}

static void on_case(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    ext_t *e = arg;
    if (status != MC_OK) {
        ext_end(e, status, res ? PQresultErrorMessage(res) : "lock");
        return;
    }
    if (PQntuples(res) != 1) {
        ext_end(e, MC_ERULE, "a report about a dossier routing does not know");
        return;
    }
    e->c = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    const mc_envelope_t *env = mc_bus_msg_envelope(e->msg);
    mc_state_t state = mc_state_parse(jstr(e->c, "state"));
    static const struct {
        mc_body_t body;
        ext_decide_fn fn;
    } table[] = {
        {MOTCUA__V1__ENVELOPE__BODY_PAYMENT_SETTLED, decide_paid},
        {MOTCUA__V1__ENVELOPE__BODY_PAYMENT_FAILED, decide_payment_failed},
        {MOTCUA__V1__ENVELOPE__BODY_REFUND_COMPLETED, decide_refunded},
        {MOTCUA__V1__ENVELOPE__BODY_RESULT_DELIVERED, decide_delivered},
        {MOTCUA__V1__ENVELOPE__BODY_DELIVERY_FAILED, decide_delivery_failed},
        {MOTCUA__V1__ENVELOPE__BODY_HANDOFF_COMPLETED, decide_handoff_completed},
        {MOTCUA__V1__ENVELOPE__BODY_HANDOFF_FAILED, decide_handoff_failed},
    };
    change_t *ch = &e->ch;
    ch->code = env->dossier_code;
    ch->from = state;
    ch->actor = env->source;
    ch->applicant = json_object_get(e->c, "applicant");
    ch->reference = json_object_get(e->c, "reference");
    ch->reference = json_object_get(e->c, "reference");
    ch->notify_params = e->params;
    ch->trace = env->trace_id;
    ch->causation = env->message_id;
    ch->agency = jstr(e->c, "step_agency");
    ch->step_name = jstr(e->c, "step_name");
    ch->step_agency = jstr(e->c, "step_agency");
    ch->action = env->type;
    int step = (int)json_integer_value(json_object_get(e->c, "step"));
    e->rows.step = e->rows.new_step = step;
    for (size_t i = 0; i < MC_COUNT(table); i++)
        if (table[i].body == env->body_case)
            table[i].fn(e, state);
    ch->note = e->note;
    json_object_set_new(e->params, "procedure", json_string(jstr(e->c, "procedure_name")));
    json_object_set_new(e->params, "note", json_string(e->note));
    ch->due_ms =
        e->rows.due_ms > 0 ? e->rows.due_ms : json_integer_value(json_object_get(e->c, "due_ms"));
    char due[MC_CALENDAR_ISO_LEN];
    if (ch->notify && ch->due_ms > 0 && mc_calendar_iso8601(ch->due_ms, due) == MC_OK)
        json_object_set_new(e->params, "due_at", json_string(due));
    change_write(conn, ch, &e->rows, on_written, e);
}

#define MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"

void case_report(mc_bus_msg_t *msg, void *arg)
{
    const mc_envelope_t *env = mc_bus_msg_envelope(msg);
    if (!env->dossier_code[0]) {
        mc_bus_done(msg, MC_EINVAL, "a report without a dossier code");
        return;
    }
    ext_t *e = mc_new(ext_t);
    e->msg = msg;
    e->svc = arg;
    e->params = json_object();
    /* clang-format off */
    static const char *sql =
        "WITH c AS (SELECT * FROM routing.cases WHERE code = $1 FOR UPDATE)"
        " SELECT json_build_object('state', c.state, 'step', c.step_index,"
        "  'procedure_name', c.procedure_name, 'applicant', c.applicant, 'fee', c.fee,"
        "  'procedure_code', c.procedure_code, 'documents', c.documents,"
        "  'reference', c.reference,"
        "  'reference', c.reference,"
        "  'steps', (SELECT json_agg(json_build_object('index', s2.idx, 'name', s2.name,"
        "    'agency', s2.agency_code, 'days', s2.days, 'external', s2.external,"
        "    'procedure', s2.procedure_code) ORDER BY s2.idx)"
        "    FROM routing.case_steps s2 WHERE s2.code = c.code),"
        "  'due_ms', " MS("c.due_at") ", 'paused_ms', " MS("c.paused_at") ","
        "  'step_name', s.name, 'step_agency', s.agency_code)"
        " FROM c LEFT JOIN routing.case_steps s ON s.code = c.code AND s.idx = c.step_index";
    /* clang-format on */
    mc_db_params_t p = {0};
    mc_db_param_text(&p, env->dossier_code);
    mc_db_query(mc_bus_msg_conn(msg), sql, &p, 0, on_case, e);
}
