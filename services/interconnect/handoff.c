/* handoff.c: handoffs requested by routing, recorded once per (dossier, step) inside
 * the bus's inbox transaction, listed for operators and officers, and moved through
 * their states.
 *
 * States (docs/handoffs.md): requested -> sent -> accepted -> completed, and rejected,
 * failed or expired on the way. Every move is one conditional UPDATE (the table
 * `moves` below says from where each state may be reached), so two processes, or a
 * callback racing the sender, move a handoff once; the report to routing
 * (HandoffCompleted, HandoffFailed) is written to the outbox in the same transaction,
 * so it is sent exactly when the move is committed. A move that is not allowed any
 * more (a repeated callback, a late answer) changes nothing and says so. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "interconnect.h"
#include "log.h"
#include "service.h"

static void on_recorded(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_done(arg, status, status == MC_OK ? NULL : res ? PQresultErrorMessage(res) : "insert");
}

void handoff_record(mc_bus_msg_t *msg, void *arg)
{
    const mc_envelope_t *env = mc_bus_msg_envelope(msg);
    const Motcua__V1__HandoffRequested *h = env->handoff_requested;
    if (!h->code[0] || !h->step || !h->step->agency_code[0]) {
        mc_bus_done(msg, MC_EINVAL, "HandoffRequested without dossier code or step agency");
        return;
    }
    const agency_system_t *sys = systems_find(interconnect_of(arg), h->step->agency_code);
    if (sys && sys->province) /* another province's motcua: over the bus link */
        link_handoff_record(interconnect_of(arg), msg, sys);
    else
        handoff_insert(msg, NULL, on_recorded, msg);
}

void handoff_insert(mc_bus_msg_t *msg, const char *peer, mc_db_result_fn fn, void *arg)
{
    const Motcua__V1__HandoffRequested *h = mc_bus_msg_envelope(msg)->handoff_requested;
    size_t len = motcua__v1__handoff_requested__get_packed_size(h);
    uint8_t *bytes = mc_alloc(len ? len : 1);
    motcua__v1__handoff_requested__pack(h, bytes);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, h->code);
    mc_db_param_text(&p, h->procedure_code);
    mc_db_param_int(&p, h->step_index);
    mc_db_param_text(&p, h->step->name);
    mc_db_param_text(&p, h->step->agency_code);
    mc_db_param_int(&p, h->due_at_ms);
    mc_db_param_bytes(&p, bytes, len);
    mc_db_param_text(&p, peer);
    /* A second request for a step whose handoff is still alive keeps the first; after a
     * refusal or expiry it is a new handoff. One for a peer province is 'sent' at once:
     * its PeerHandoff goes out with this transaction. */
    mc_db_query(mc_bus_msg_conn(msg),
                "INSERT INTO interconnect.handoffs (code, procedure_code, step_index, step_name,"
                " agency_code, due_at, request, peer, state, tries) VALUES ($1, $2, $3::int, $4,"
                " $5, CASE WHEN $6::bigint > 0 THEN to_timestamp($6::bigint / 1000.0) END, $7, $8,"
                " CASE WHEN $8::text IS NULL THEN 'requested' ELSE 'sent' END,"
                " CASE WHEN $8::text IS NULL THEN 0 ELSE 1 END)"
                " ON CONFLICT (code, step_index)"
                "  WHERE state NOT IN ('rejected', 'failed', 'expired') DO NOTHING"
                " RETURNING id, peer",
                &p, 0, fn, arg);
    free(bytes);
}

static void on_list(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_http_reply_error(req, 503, "unavailable", "the handoff store is unavailable", NULL);
        return;
    }
    mc_http_reply_json(req, 200, json_loads(PQgetvalue(res, 0, 0), 0, NULL));
}

static void list_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    (void)who;
    mc_service_t *svc = arg;
    static const char *const states[] = {"requested", "sent",   "accepted", "completed",
                                         "rejected",  "failed", "expired"};
    const char *dossier = mc_http_query(req, "dossier");
    const char *state = mc_http_query(req, "state");
    if (dossier && (!*dossier || strlen(dossier) > 64)) {
        mc_http_reply_error(req, 400, "invalid", "dossier must be a dossier code", "dossier");
        return;
    }
    int known = !state;
    for (size_t i = 0; state && i < MC_COUNT(states); i++)
        known |= strcmp(states[i], state) == 0;
    if (!known) {
        mc_http_reply_error(req, 400, "invalid",
                            "state must be requested, sent, accepted, completed, rejected, "
                            "failed or expired",
                            "state");
        return;
    }
    mc_db_params_t p = {0};
    mc_db_param_text(&p, dossier);
    mc_db_param_text(&p, state);
    mc_db_exec(mc_service_db(svc),
               "SELECT json_build_object('items', coalesce(json_agg(json_build_object("
               " 'id', id, 'dossier', code, 'procedure', procedure_code, 'step', step_index,"
               " 'step_name', step_name, 'agency', agency_code, 'state', state,"
               " 'tries', tries, 'last_error', last_error, 'result', result, 'reason', reason,"
               " 'peer', peer, 'remote_code', remote_code, 'remote_state', remote_state,"
               " 'due_at', to_char(due_at AT TIME ZONE 'Asia/Ho_Chi_Minh',"
               "   'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"'),"
               " 'created_at', to_char(created_at AT TIME ZONE 'Asia/Ho_Chi_Minh',"
               "   'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"'),"
               " 'updated_at', to_char(updated_at AT TIME ZONE 'Asia/Ho_Chi_Minh',"
               "   'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"')) ORDER BY id), '[]'))"
               " FROM (SELECT * FROM interconnect.handoffs WHERE ($1::text IS NULL OR code = $1)"
               "   AND ($2::text IS NULL OR state = $2) ORDER BY id LIMIT 500) h",
               &p, 0, on_list, req);
}

void handoff_list(mc_http_req_t *req, void *arg)
{
    mc_auth_require(interconnect_of(arg)->auth, req,
                    MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR | MC_SCOPE_INTEGRATOR, list_as, arg);
}

/* ------------------------------------------------------------------ moves */

typedef enum { TELL_NOBODY, TELL_COMPLETED, TELL_REJECTED, TELL_FAILED } tell_t;

static const struct {
    const char *to;
    const char *from; /* a PostgreSQL text[] literal */
    tell_t tell;
} moves[] = {
    {"sent", "{requested}", TELL_NOBODY},
    {"accepted", "{requested,sent}", TELL_NOBODY},
    {"completed", "{requested,sent,accepted}", TELL_COMPLETED},
    {"rejected", "{requested,sent,accepted}", TELL_REJECTED},
    {"failed", "{requested}", TELL_FAILED},
    {"expired", "{requested,sent,accepted}", TELL_FAILED}, /* and only past due_at */
};

typedef struct {
    interconnect_t *ic;
    long long id;
    int move;
    char *result, *reason, *trace;
    handoff_moved_fn cb;
    void *arg;
    mc_db_conn_t *conn;
    int own_tx; /* handoff_move: our connection and transaction; handoff_move_in: the caller's */
    mc_outbox_t *outbox;
    char state[16];
    int applied;
} move_t;

static void move_end(move_t *m, int status)
{
    if (m->conn && m->own_tx)
        mc_db_release(m->conn); /* rolls back if still open */
    mc_outbox_destroy(&m->outbox);
    m->cb(status, m->state[0] ? m->state : NULL, m->applied, m->arg);
    free(m->result);
    free(m->reason);
    free(m->trace);
    free(m);
}

static void move_fail(move_t *m, PGresult *res, int status, const char *step)
{
    if (status != MC_ECLOSED)
        mc_warn("handoff %lld: %s failed: %s", m->id, step,
                res ? PQresultErrorMessage(res) : mc_strerror(status));
    m->applied = 0;
    move_end(m, status == MC_OK ? MC_EIO : status);
}

static void on_move_committed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    move_t *m = arg;
    if (status != MC_OK) {
        move_fail(m, res, status, "commit");
        return;
    }
    move_end(m, MC_OK);
}

/* The move is written: commit it, or leave that to the caller's transaction. */
static void move_written(move_t *m)
{
    if (m->own_tx)
        mc_db_query(m->conn, "COMMIT", NULL, 0, on_move_committed, m);
    else
        move_end(m, MC_OK);
}

static void on_move_emitted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    move_t *m = arg;
    if (status != MC_OK) {
        move_fail(m, res, status, "outbox");
        return;
    }
    move_written(m);
}

/* What an applied move tells, in its transaction: the public view (intake) hears every
 * move as HandoffProgress, with what the agency said (the result, the reason); routing
 * hears the end of the step (HandoffCompleted, HandoffFailed). */
static void tell(move_t *m, const char *code, int step_index, const char *agency)
{
    m->outbox = mc_outbox_new("interconnect");
    Motcua__V1__HandoffProgress hp = MOTCUA__V1__HANDOFF_PROGRESS__INIT;
    mc_envelope_t penv = MOTCUA__V1__ENVELOPE__INIT;
    hp.code = (char *)code;
    hp.step_index = step_index;
    hp.agency_code = (char *)agency;
    hp.state = (char *)moves[m->move].to;
    hp.note = m->result ? m->result : "";
    if (!m->result && m->reason && strcmp(m->reason, moves[m->move].to) != 0)
        hp.note = m->reason; /* "expired" says nothing the state does not */
    hp.at_ms = mc_wall_ms();
    penv.dossier_code = (char *)code;
    penv.body_case = MOTCUA__V1__ENVELOPE__BODY_HANDOFF_PROGRESS;
    penv.handoff_progress = &hp;
    mc_outbox_add(m->outbox, &penv, m->trace, NULL);
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    env.dossier_code = (char *)code;
    Motcua__V1__HandoffCompleted c = MOTCUA__V1__HANDOFF_COMPLETED__INIT;
    Motcua__V1__HandoffFailed f = MOTCUA__V1__HANDOFF_FAILED__INIT;
    tell_t t = moves[m->move].tell;
    if (t == TELL_NOBODY) {
        mc_outbox_write(m->outbox, m->conn, on_move_emitted, m);
        return;
    }
    if (t == TELL_COMPLETED) {
        c.code = (char *)code;
        c.step_index = step_index;
        c.agency_code = (char *)agency;
        c.result = m->result ? m->result : "";
        c.completed_at_ms = mc_wall_ms();
        env.body_case = MOTCUA__V1__ENVELOPE__BODY_HANDOFF_COMPLETED;
        env.handoff_completed = &c;
    } else {
        f.code = (char *)code;
        f.step_index = step_index;
        f.agency_code = (char *)agency;
        f.reason = m->reason ? m->reason : (char *)moves[m->move].to;
        f.rejected = t == TELL_REJECTED;
        env.body_case = MOTCUA__V1__ENVELOPE__BODY_HANDOFF_FAILED;
        env.handoff_failed = &f;
    }
    mc_outbox_add(m->outbox, &env, m->trace, NULL);
    mc_outbox_write(m->outbox, m->conn, on_move_emitted, m);
}

static void on_moved(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    move_t *m = arg;
    if (status != MC_OK) {
        move_fail(m, res, status, "update");
        return;
    }
    if (PQntuples(res) != 1) { /* no such handoff */
        move_written(m);
        return;
    }
    snprintf(m->state, sizeof m->state, "%s", PQgetvalue(res, 0, 3));
    m->applied = strcmp(PQgetvalue(res, 0, 4), "t") == 0;
    const char *code = PQgetvalue(res, 0, 0);
    tell_t t = moves[m->move].tell;
    if (m->applied)
        mc_logd(t == TELL_NOBODY || t == TELL_COMPLETED ? MC_LOG_INFO : MC_LOG_WARN, m->trace, code,
                "handoff %lld of step %s to %s: %s%s%s", m->id, PQgetvalue(res, 0, 1),
                PQgetvalue(res, 0, 2), m->state, m->reason ? ": " : "", m->reason ? m->reason : "");
    if (m->applied)
        tell(m, code, atoi(PQgetvalue(res, 0, 1)), PQgetvalue(res, 0, 2));
    else
        move_written(m);
}

static void move_update(move_t *m)
{
    mc_db_params_t p = {0};
    mc_db_param_int(&p, m->id);
    mc_db_param_text(&p, moves[m->move].to);
    mc_db_param_text(&p, moves[m->move].from);
    mc_db_param_text(&p, m->result);
    mc_db_param_text(&p, m->reason);
    /* The outer SELECT sees the row as it was before the UPDATE: it is read only
     * when the UPDATE did nothing, to say where the handoff is. */
    mc_db_query(m->conn,
                "WITH u AS (UPDATE interconnect.handoffs SET state = $2, updated_at = now(),"
                "   lease_until = NULL, result = coalesce($4, result),"
                "   reason = coalesce($5, reason)"
                "  WHERE id = $1 AND state = ANY($3::text[])"
                "   AND ($2 <> 'expired' OR due_at < now())"
                "  RETURNING code, step_index, agency_code, state)"
                " SELECT code, step_index, agency_code, state, true FROM u"
                " UNION ALL SELECT code, step_index, agency_code, state, false"
                "  FROM interconnect.handoffs WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM u)",
                &p, 0, on_moved, m);
}

static void on_move_begun(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    move_t *m = arg;
    if (status != MC_OK) {
        move_fail(m, res, status, "begin");
        return;
    }
    move_update(m);
}

static void on_move_conn(mc_db_conn_t *conn, int status, void *arg)
{
    move_t *m = arg;
    if (status != MC_OK) {
        move_fail(m, NULL, status, "connection");
        return;
    }
    m->conn = conn;
    mc_db_query(conn, "BEGIN", NULL, 0, on_move_begun, m);
}

static move_t *move_new(interconnect_t *ic, long long id, const char *to, const char *result,
                        const char *reason, const char *trace, handoff_moved_fn cb, void *arg)
{
    int move = -1;
    for (int i = 0; i < (int)MC_COUNT(moves); i++)
        if (strcmp(moves[i].to, to) == 0)
            move = i;
    assert(move >= 0);
    move_t *m = mc_new(move_t);
    m->ic = ic;
    m->id = id;
    m->move = move;
    m->result = result ? mc_strdup(result) : NULL;
    m->reason = reason ? mc_strdup(reason) : NULL;
    m->trace = trace ? mc_strdup(trace) : NULL;
    m->cb = cb;
    m->arg = arg;
    return m;
}

void handoff_move(interconnect_t *ic, long long id, const char *to, const char *result,
                  const char *reason, const char *trace, handoff_moved_fn cb, void *arg)
{
    move_t *m = move_new(ic, id, to, result, reason, trace, cb, arg);
    m->own_tx = 1;
    mc_db_acquire(mc_service_db(ic->svc), on_move_conn, m);
}

void handoff_move_in(interconnect_t *ic, mc_db_conn_t *conn, long long id, const char *to,
                     const char *result, const char *reason, const char *trace, handoff_moved_fn cb,
                     void *arg)
{
    move_t *m = move_new(ic, id, to, result, reason, trace, cb, arg);
    m->conn = conn;
    move_update(m);
}

/* ------------------------------------------------------------------ expiry */

#define EXPIRE_BATCH 50

/* Escalation: the handoff_move warning, and the handoff in GET /v1/handoffs?state=expired
 * for an operator; routing hears HandoffFailed (rejected = false). */
static void on_expired(int status, const char *state, int applied, void *arg)
{
    (void)status;
    (void)state;
    (void)applied;
    interconnect_t *ic = arg;
    ic->sweeping--;
}

static void on_overdue(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    interconnect_t *ic = arg;
    ic->sweeping--;
    if (status != MC_OK) {
        if (status != MC_ECLOSED)
            mc_warn("expiry: cannot list overdue handoffs: %s",
                    res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        ic->sweeping++;
        handoff_move(ic, atoll(PQgetvalue(res, r, 0)), "expired", NULL, "expired", NULL, on_expired,
                     ic);
    }
}

void handoff_expire(mc_service_t *svc)
{
    interconnect_t *ic = interconnect_of(svc);
    if (mc_service_stopping(ic->svc) || ic->sweeping)
        return;
    ic->sweeping = 1;
    mc_db_params_t p = {0};
    mc_db_param_int(&p, EXPIRE_BATCH);
    mc_db_exec(mc_service_db(svc),
               "SELECT id FROM interconnect.handoffs"
               " WHERE state IN ('requested', 'sent', 'accepted') AND due_at < now()"
               " ORDER BY due_at LIMIT $1::int",
               &p, 0, on_overdue, ic);
}
