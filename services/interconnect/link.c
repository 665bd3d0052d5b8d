/* link.c: the motcua-to-motcua adapter — handoffs between provinces over the bus.
 *
 * Between provinces the bus runs over CURVE (common/curve.h, mc_bus_link): one key
 * pair per province, an allow-list of the peer provinces' public keys, and every
 * envelope from the link tagged with the province whose key sent it.
 *
 * Origin side. A handoff to an agency whose system in systems.json is of kind
 * "motcua" is recorded 'sent' and, in the same transaction, a PeerHandoff is written
 * to the outbox for that province: the bus delivers it once, in order, across
 * crashes and cuts of the link. The receiving province answers with PeerStatus
 * envelopes (in order per handoff): progress (the first one accepts the handoff),
 * completed (with the result: routing starts the next step) or rejected (routing
 * gives the step back to the one before). Each answer is applied in the inbox
 * transaction that records it, and the public view hears of it (HandoffProgress).
 *
 * Receiving side. A PeerHandoff becomes an inbound dossier (inbound.c) that is
 * submitted to intake with the reference {province:<origin>, origin code, handoff
 * id}. Routing carries that reference on every DossierStatusChanged, so each status
 * change of the dossier here goes back to the origin as a PeerStatus; intake refusing
 * the dossier goes back as rejected.
 *
 * Both envelopes use the handoff id ("<origin province>-<number>") as their dossier
 * code on the bus, so a handoff's messages keep their order. docs/interconnect-peers.md
 * is the protocol for whoever builds a peer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dossier_state.h"
#include "error.h"
#include "interconnect.h"
#include "log.h"

#define PROVINCE_PREFIX "province:"

/* ---------------------------------------------------------------- peers.json */

int peers_load(interconnect_t *ic, const char *path, char *err, size_t errlen)
{
    json_t *doc = config_array_load(path, "peer provinces", sizeof *ic->peers, (void **)&ic->peers,
                                    err, errlen);
    if (!doc)
        return -1;
    size_t n = json_array_size(doc);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(doc, i);
        const char *province = json_string_value(json_object_get(p, "province"));
        const char *name = json_string_value(json_object_get(p, "name"));
        const char *endpoint = json_string_value(json_object_get(p, "endpoint"));
        const char *key = json_string_value(json_object_get(p, "public_key"));
        const char *problem =
            !province || !*province || strlen(province) > 16 ||
                    strspn(province, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != strlen(province)
                ? "province must be a code of capital letters and digits (e.g. H98)"
            : ic->cfg->province && strcmp(province, ic->cfg->province) == 0
                ? "a province cannot be its own peer"
            : !endpoint || strncmp(endpoint, "tcp://", 6) ? "endpoint must be tcp://host:port"
            : !mc_curve_key_valid(key) ? "public_key must be a 40-character Z85 key"
                                       : NULL;
        for (size_t j = 0; !problem && j < ic->npeers; j++)
            if (strcmp(ic->peers[j].province, province) == 0)
                problem = "listed twice";
        if (problem) {
            snprintf(err, errlen, "%s: peer %zu: %s", path, i, problem);
            json_decref(doc);
            peers_free(ic);
            return -1;
        }
        peer_province_t *pp = &ic->peers[ic->npeers++];
        pp->province = mc_strdup(province);
        pp->name = mc_strdup(name && *name ? name : province);
        pp->endpoint = mc_strdup(endpoint);
        pp->public_key = mc_strdup(key);
    }
    json_decref(doc);
    return 0;
}

void peers_free(interconnect_t *ic)
{
    for (size_t i = 0; i < ic->npeers; i++) {
        free(ic->peers[i].province);
        free(ic->peers[i].name);
        free(ic->peers[i].endpoint);
        free(ic->peers[i].public_key);
    }
    free(ic->peers);
    ic->peers = NULL;
    ic->npeers = 0;
}

const peer_province_t *peers_find(const interconnect_t *ic, const char *province)
{
    for (size_t i = 0; i < ic->npeers; i++)
        if (strcmp(ic->peers[i].province, province) == 0)
            return &ic->peers[i];
    return NULL;
}

static const mc_body_t link_bodies[] = {MOTCUA__V1__ENVELOPE__BODY_PEER_HANDOFF,
                                        MOTCUA__V1__ENVELOPE__BODY_PEER_STATUS};

int link_open(interconnect_t *ic, char *err, size_t errlen)
{
    const interconnect_config_t *cfg = ic->cfg;
    if (!cfg->link_bind[0]) {
        if (ic->npeers)
            mc_warn("link: %zu peer province(s) listed but MOTCUA_INTERCONNECT_LINK_BIND is "
                    "empty: no handoff between provinces will be sent or received",
                    ic->npeers);
        return 0;
    }
    mc_bus_peer_t defs[ic->npeers ? ic->npeers : 1];
    for (size_t i = 0; i < ic->npeers; i++)
        defs[i] =
            (mc_bus_peer_t){ic->peers[i].province, ic->peers[i].endpoint, ic->peers[i].public_key};
    mc_bus_link_t link = {.bind = cfg->link_bind,
                          .cert_file = cfg->cert_file,
                          .peers = defs,
                          .npeers = ic->npeers,
                          .accept = link_bodies,
                          .naccept = MC_COUNT(link_bodies)};
    if (mc_bus_link(mc_service_bus(ic->svc), &link, err, errlen))
        return -1;
    for (size_t i = 0; i < ic->npeers; i++)
        mc_info("link: peer %s (%s) at %s", ic->peers[i].province, ic->peers[i].name,
                ic->peers[i].endpoint);
    ic->link_open = 1;
    return 0;
}

/* ---------------------------------------------------------------- shared */

typedef struct {
    interconnect_t *ic;
    mc_bus_msg_t *msg;
    status_next_fn next;
    mc_outbox_t *outbox;
    long long id;
    char move[16];         /* the handoff's move a PeerStatus calls for, "" if none */
    char *result, *reason; /* for that move */
    mc_db_result_fn fn;    /* link_inbound_refused's caller */
    void *arg;
} link_job_t;

static link_job_t *job_new(interconnect_t *ic, mc_bus_msg_t *msg)
{
    link_job_t *j = mc_new(link_job_t);
    j->ic = ic;
    j->msg = msg;
    j->outbox = mc_outbox_new("interconnect");
    return j;
}

static void job_free(link_job_t *j)
{
    mc_outbox_destroy(&j->outbox);
    free(j->result);
    free(j->reason);
    free(j);
}

/* End a bus handling: done (permanent reasons go to the dead letters). */
static void job_done(link_job_t *j, int status, const char *why)
{
    mc_bus_msg_t *msg = j->msg;
    job_free(j);
    mc_bus_done(msg, status, why);
}

static void add_progress(link_job_t *j, const char *code, int step, const char *agency,
                         const char *state, const char *note, int national)
{
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    Motcua__V1__HandoffProgress p = MOTCUA__V1__HANDOFF_PROGRESS__INIT;
    env.dossier_code = (char *)code;
    p.code = (char *)code;
    p.step_index = step;
    p.agency_code = (char *)agency;
    p.state = (char *)state;
    p.note = (char *)note;
    p.at_ms = mc_wall_ms();
    p.remote_national_status = national;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_HANDOFF_PROGRESS;
    env.handoff_progress = &p;
    const mc_envelope_t *cause = mc_bus_msg_envelope(j->msg);
    mc_outbox_add(j->outbox, &env, cause->trace_id, cause->message_id);
}

/* ---------------------------------------------------------------- origin: send */

static void on_handoff_written(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    link_job_t *j = arg;
    job_done(j, status, status == MC_OK ? NULL : res ? PQresultErrorMessage(res) : "outbox");
}

static void on_handoff_inserted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    link_job_t *j = arg;
    if (status != MC_OK) {
        job_done(j, status, res ? PQresultErrorMessage(res) : "insert");
        return;
    }
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 1)) { /* alive already, or no link */
        job_done(j, MC_OK, NULL);
        return;
    }
    const mc_envelope_t *env = mc_bus_msg_envelope(j->msg);
    Motcua__V1__HandoffRequested *h = env->handoff_requested;
    const char *province = PQgetvalue(res, 0, 1);
    char handoff_id[64];
    snprintf(handoff_id, sizeof handoff_id, "%s-%s", j->ic->cfg->province, PQgetvalue(res, 0, 0));
    mc_envelope_t out = MOTCUA__V1__ENVELOPE__INIT;
    Motcua__V1__PeerHandoff ph = MOTCUA__V1__PEER_HANDOFF__INIT;
    out.dossier_code = handoff_id;
    ph.handoff_id = handoff_id;
    ph.origin_province = (char *)j->ic->cfg->province;
    ph.request = h;
    ph.procedure_code = h->step->procedure_code[0] ? h->step->procedure_code : h->procedure_code;
    out.body_case = MOTCUA__V1__ENVELOPE__BODY_PEER_HANDOFF;
    out.peer_handoff = &ph;
    mc_outbox_add_to(j->outbox, province, &out, env->trace_id, env->message_id);
    const peer_province_t *pp = peers_find(j->ic, province);
    char note[300];
    snprintf(note, sizeof note, "chuyển %s (%s), mã liên thông %s", pp ? pp->name : province,
             province, handoff_id);
    add_progress(j, h->code, h->step_index, h->step->agency_code, "sent", note, 0);
    mc_logd(MC_LOG_INFO, env->trace_id, h->code, "handoff %s of step %d to %s over the link",
            handoff_id, h->step_index, province);
    mc_outbox_write(j->outbox, conn, on_handoff_written, j);
}

void link_handoff_record(interconnect_t *ic, mc_bus_msg_t *msg, const agency_system_t *sys)
{
    /* Without a link it is recorded 'requested': the agency worker fails it (no system
     * to call), and routing hears so. */
    int linked = ic->link_open && peers_find(ic, sys->province);
    handoff_insert(msg, linked ? sys->province : NULL, on_handoff_inserted, job_new(ic, msg));
}

/* ---------------------------------------------------------------- origin: answers */

static void on_status_written(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    link_job_t *j = arg;
    job_done(j, status, status == MC_OK ? NULL : res ? PQresultErrorMessage(res) : "write");
}

static void on_status_moved(int status, const char *state, int applied, void *arg)
{
    link_job_t *j = arg;
    (void)state;
    (void)applied;
    if (status != MC_OK) {
        job_done(j, status, "handoff move");
        return;
    }
    mc_outbox_write(j->outbox, mc_bus_msg_conn(j->msg), on_status_written, j);
}

static void on_remote_noted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    link_job_t *j = arg;
    if (status != MC_OK) {
        job_done(j, status, res ? PQresultErrorMessage(res) : "update");
        return;
    }
    if (j->move[0])
        handoff_move_in(j->ic, conn, j->id, j->move, j->result, j->reason,
                        mc_bus_msg_envelope(j->msg)->trace_id, on_status_moved, j);
    else
        on_status_moved(MC_OK, NULL, 0, j);
}

static void on_handoff_found(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    link_job_t *j = arg;
    if (status != MC_OK) {
        job_done(j, status, res ? PQresultErrorMessage(res) : "select");
        return;
    }
    const mc_envelope_t *env = mc_bus_msg_envelope(j->msg);
    const Motcua__V1__PeerStatus *ps = env->peer_status;
    const char *peer = mc_bus_msg_peer(j->msg);
    if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 1), peer) != 0) {
        char why[200];
        snprintf(why, sizeof why, "PeerStatus for handoff %s, which was not handed to %s",
                 ps->handoff_id, peer);
        mc_warn("link: %s", why);
        job_done(j, MC_EINVAL, why);
        return;
    }
    const char *code = PQgetvalue(res, 0, 2);
    int step = atoi(PQgetvalue(res, 0, 3));
    const char *agency = PQgetvalue(res, 0, 4);
    const char *state = PQgetvalue(res, 0, 0);
    const peer_province_t *pp = peers_find(j->ic, peer);
    const char *who = pp ? pp->name : peer;
    char note[600];
    const char *move = NULL, *result = NULL, *reason = NULL;
    if (strcmp(ps->outcome, "completed") == 0) {
        move = "completed";
        result = ps->result[0] ? ps->result : ps->note;
        snprintf(note, sizeof note, "%s: đã giải quyết (hồ sơ %s)%s%s", who, ps->local_code,
                 result[0] ? ": " : "", result);
    } else if (strcmp(ps->outcome, "rejected") == 0) {
        move = "rejected";
        reason = ps->note[0] ? ps->note : "refused by the peer province";
        snprintf(note, sizeof note, "%s: từ chối giải quyết: %s", who, reason);
    } else {
        move = strcmp(state, "sent") == 0 ? "accepted" : NULL;
        snprintf(note, sizeof note, "%s: %s (hồ sơ %s)%s%s", who,
                 mc_national_label(ps->national_status), ps->local_code, ps->note[0] ? ": " : "",
                 ps->note);
    }
    mc_logd(MC_LOG_INFO, env->trace_id, code, "handoff %s: %s from %s, now %s at %s",
            ps->handoff_id, ps->outcome, peer, mc_state_name(ps->state), ps->local_code);
    /* The end of the handoff is told by its move (handoff.c); each status on the way,
     * the first one too (it accepts the handoff), by us: the public sees them all. */
    if (!move || strcmp(move, "accepted") == 0)
        add_progress(j, code, step, agency, "in_progress", note, ps->national_status);
    snprintf(j->move, sizeof j->move, "%s", move ? move : "");
    j->result = result ? mc_strdup(result) : NULL;
    j->reason = reason ? mc_strdup(reason) : NULL;
    /* Remember the peer's dossier and status; then the move, if one is due. */
    mc_db_params_t p = {0};
    mc_db_param_int(&p, j->id);
    mc_db_param_text(&p, ps->local_code[0] ? ps->local_code : NULL);
    mc_db_param_text(&p, mc_state_name(ps->state));
    mc_db_query(conn,
                "UPDATE interconnect.handoffs SET remote_code = coalesce($2, remote_code),"
                " remote_state = $3, updated_at = now() WHERE id = $1::bigint",
                &p, 0, on_remote_noted, j);
}

void link_peer_status(mc_bus_msg_t *msg, void *arg)
{
    interconnect_t *ic = interconnect_of(arg);
    const Motcua__V1__PeerStatus *ps = mc_bus_msg_envelope(msg)->peer_status;
    static const char *const outcomes[] = {"accepted", "progress", "completed", "rejected"};
    int known = 0;
    for (size_t i = 0; i < MC_COUNT(outcomes); i++)
        known |= strcmp(ps->outcome, outcomes[i]) == 0;
    /* Our handoff ids are "<our province>-<number>". */
    size_t plen = strlen(ic->cfg->province);
    const char *num = ps->handoff_id + plen + 1;
    char *end = NULL;
    long long id =
        strncmp(ps->handoff_id, ic->cfg->province, plen) == 0 && ps->handoff_id[plen] == '-'
            ? strtoll(num, &end, 10)
            : 0;
    if (!known || id <= 0 || !end || *end) {
        mc_bus_done(msg, MC_EINVAL, "PeerStatus without a known outcome or one of our handoff ids");
        return;
    }
    link_job_t *j = job_new(ic, msg);
    j->id = id;
    mc_db_params_t p = {0};
    mc_db_param_int(&p, id);
    /* The row is locked by the UPDATEs that follow in this transaction, not here. */
    mc_db_query(mc_bus_msg_conn(msg),
                "SELECT state, coalesce(peer, ''), code, step_index, agency_code"
                " FROM interconnect.handoffs WHERE id = $1::bigint",
                &p, 0, on_handoff_found, j);
}

/* ---------------------------------------------------------------- receiving side */

static void put_str(json_t *o, const char *key, const char *v)
{
    if (v && *v)
        json_object_set_new(o, key, json_string(v));
}

/* The submission intake is given for a peer's handoff. */
static json_t *peer_submission(const Motcua__V1__PeerHandoff *ph, const char *peer)
{
    const Motcua__V1__HandoffRequested *h = ph->request;
    json_t *applicant = json_object();
    if (h->applicant) {
        put_str(applicant, "name", h->applicant->name);
        put_str(applicant, "id_number", h->applicant->id_number);
        put_str(applicant, "phone", h->applicant->phone);
        put_str(applicant, "email", h->applicant->email);
        put_str(applicant, "address", h->applicant->address);
    }
    json_t *documents = json_array();
    for (size_t i = 0; i < h->n_documents; i++) {
        const Motcua__V1__Document *d = h->documents[i];
        json_t *doc = json_object();
        put_str(doc, "kind", d->kind);
        put_str(doc, "name", d->name);
        put_str(doc, "sha256", d->sha256);
        if (d->size > 0)
            json_object_set_new(doc, "size", json_integer(d->size));
        json_array_append_new(documents, doc);
    }
    char system[40];
    snprintf(system, sizeof system, PROVINCE_PREFIX "%s", peer);
    return json_pack("{s:s, s:s, s:o, s:o, s:s, s:{s:s, s:s, s:s}}", "procedure",
                     ph->procedure_code, "channel", "online", "applicant", applicant, "documents",
                     documents, "return_method", "online", "reference", "system", system, "id",
                     h->code, "handoff_id", ph->handoff_id);
}

static void on_inbound_added(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    link_job_t *j = arg;
    job_done(j, status, status == MC_OK ? NULL : res ? PQresultErrorMessage(res) : "inbound");
}

void link_peer_handoff(mc_bus_msg_t *msg, void *arg)
{
    interconnect_t *ic = interconnect_of(arg);
    const Motcua__V1__PeerHandoff *ph = mc_bus_msg_envelope(msg)->peer_handoff;
    const char *peer = mc_bus_msg_peer(msg);
    if (strcmp(ph->origin_province, peer) != 0) {
        char why[200];
        snprintf(why, sizeof why, "PeerHandoff says it is from %s but came with %s's key",
                 ph->origin_province, peer);
        mc_warn("link: %s", why);
        mc_bus_done(msg, MC_EINVAL, why);
        return;
    }
    const Motcua__V1__HandoffRequested *h = ph->request;
    size_t plen = strlen(peer);
    if (!h || !h->code[0] || !ph->procedure_code[0] || strncmp(ph->handoff_id, peer, plen) != 0 ||
        ph->handoff_id[plen] != '-' || strlen(ph->handoff_id) > 60) {
        mc_bus_done(msg, MC_EINVAL,
                    "PeerHandoff needs a request with a dossier code, a procedure code and a "
                    "handoff id of the origin province");
        return;
    }
    json_t *submission = peer_submission(ph, peer);
    char system[40];
    snprintf(system, sizeof system, PROVINCE_PREFIX "%s", peer);
    link_job_t *j = job_new(ic, msg);
    mc_logd(MC_LOG_INFO, mc_bus_msg_envelope(msg)->trace_id, h->code,
            "handoff %s from %s: procedure %s, to open here", ph->handoff_id, peer,
            ph->procedure_code);
    inbound_add(ic, mc_bus_msg_conn(msg), system, ph->handoff_id, ph->handoff_id, submission,
                on_inbound_added, j);
    json_decref(submission);
}

/* What a status change here means to the origin province. */
static const char *outcome_of(mc_state_t to)
{
    switch (to) {
    case MOTCUA__V1__DOSSIER_STATE__STATE_REJECTED_AT_INTAKE:
    case MOTCUA__V1__DOSSIER_STATE__STATE_REFUSED:
    case MOTCUA__V1__DOSSIER_STATE__STATE_WITHDRAWN: return "rejected";
    case MOTCUA__V1__DOSSIER_STATE__STATE_APPROVED: return "completed";
    default: return "progress";
    }
}

static void send_status(link_job_t *j, const char *province, const char *handoff_id,
                        const char *origin_code, const char *local_code, const char *outcome,
                        mc_state_t state, const char *note, const char *result)
{
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    Motcua__V1__PeerStatus ps = MOTCUA__V1__PEER_STATUS__INIT;
    env.dossier_code = (char *)handoff_id;
    ps.handoff_id = (char *)handoff_id;
    ps.origin_code = (char *)origin_code;
    ps.local_code = (char *)local_code;
    ps.outcome = (char *)outcome;
    ps.state = state;
    ps.national_status = state ? mc_state_national(state) : 0;
    ps.note = (char *)note;
    ps.result = (char *)result;
    ps.at_ms = mc_wall_ms();
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_PEER_STATUS;
    env.peer_status = &ps;
    const mc_envelope_t *cause = j->msg ? mc_bus_msg_envelope(j->msg) : NULL;
    mc_outbox_add_to(j->outbox, province, &env, cause ? cause->trace_id : NULL,
                     cause ? cause->message_id : NULL);
}

static void on_back_written(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    link_job_t *j = arg;
    if (status != MC_OK) {
        job_done(j, status, res ? PQresultErrorMessage(res) : "outbox");
        return;
    }
    interconnect_t *ic = j->ic;
    mc_bus_msg_t *msg = j->msg;
    status_next_fn next = j->next;
    job_free(j);
    next(ic, msg);
}

void link_status_changed(interconnect_t *ic, mc_bus_msg_t *msg, status_next_fn next)
{
    const Motcua__V1__DossierStatusChanged *ev = mc_bus_msg_envelope(msg)->dossier_status_changed;
    const Motcua__V1__Reference *ref = ev->reference;
    const char *province =
        ref && strncmp(ref->system, PROVINCE_PREFIX, strlen(PROVINCE_PREFIX)) == 0
            ? ref->system + strlen(PROVINCE_PREFIX)
            : NULL;
    if (!province || !ref->handoff_id[0]) {
        next(ic, msg);
        return;
    }
    if (!peers_find(ic, province)) {
        mc_warn("link: dossier %s came from %s, which is not a peer any more: its status %s "
                "is not sent back",
                ev->code, province, mc_state_name(ev->to));
        next(ic, msg);
        return;
    }
    link_job_t *j = job_new(ic, msg);
    j->next = next;
    const char *outcome = outcome_of(ev->to);
    char result[400] = "";
    if (strcmp(outcome, "completed") == 0)
        snprintf(result, sizeof result, "%s%s%s", ev->code, ev->note[0] ? ": " : "", ev->note);
    send_status(j, province, ref->handoff_id, ref->id, ev->code, outcome, ev->to, ev->note, result);
    mc_outbox_write(j->outbox, mc_bus_msg_conn(msg), on_back_written, j);
}

static void on_refusal_written(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    link_job_t *j = arg;
    mc_db_result_fn fn = j->fn;
    void *fn_arg = j->arg;
    job_free(j);
    fn(conn, res, status, fn_arg);
}

void link_inbound_refused(interconnect_t *ic, mc_db_conn_t *conn, const char *system,
                          const char *ref_id, const char *handoff_id, const char *reason,
                          mc_db_result_fn fn, void *arg)
{
    (void)ref_id;
    const char *province = system + strlen(PROVINCE_PREFIX);
    link_job_t *j = job_new(ic, NULL);
    j->fn = fn;
    j->arg = arg;
    mc_warn("link: handoff %s from %s refused by intake: %s", handoff_id, province, reason);
    send_status(j, province, handoff_id, "", "", "rejected",
                MOTCUA__V1__DOSSIER_STATE__STATE_UNSPECIFIED, reason, "");
    mc_outbox_write(j->outbox, conn, on_refusal_written, j);
}
