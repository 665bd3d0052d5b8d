/* bus.c: transactional outbox relay (DEALER side) and idempotent inbox (ROUTER side).
 *
 * Design and guarantees are in bus.h. Everything runs on the service's loop thread.
 * The relay keeps no state that matters across a crash: the outbox rows are the truth,
 * and a lease (lease_until) stands for "sent, waiting for an Ack". The receiver keeps
 * nothing either: what is not committed is not acknowledged and will come again. */
#include "bus.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "curve.h"
#include "error.h"
#include "log.h"
#include "zsock.h"

#define TICK_MS       250       /* relay fallback poll: expired leases, missed NOTIFY */
#define STATS_MS      5000      /* outbox backlog count and retention */
#define NACK_RETRY_MS 500       /* what the receiver asks for when it could not commit */
#define LINK_MAX_MSG  (1 << 20) /* largest message taken from another province */
#define PARK_MS       5000      /* a destination silent this long (at least 4 leases) is parked */

/* ================================================================ outbox writer */

typedef struct {
    char *data;
    size_t len, cap;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = mc_realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* Append one element to a PostgreSQL array literal being built in b. */
static void sb_array_elem(sbuf_t *b, const char *s)
{
    sb_put(b, b->len ? ",\"" : "{\"", 2);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            sb_put(b, "\\", 1);
        sb_put(b, s, 1);
    }
    sb_put(b, "\"", 1);
}

static void sb_close_array(sbuf_t *b)
{
    if (!b->len)
        sb_put(b, "{", 1);
    sb_put(b, "}", 1);
}

struct mc_outbox {
    char *service;
    sbuf_t ids, dests, codes, types, payloads;
    size_t n;
    char *sql;
};

mc_outbox_t *mc_outbox_new(const char *service)
{
    mc_outbox_t *ob = mc_new(mc_outbox_t);
    ob->service = mc_strdup(service);
    return ob;
}

static void outbox_row(mc_outbox_t *ob, const char *dest, const mc_envelope_t *env, const char *hex)
{
    sb_array_elem(&ob->ids, env->message_id);
    sb_array_elem(&ob->dests, dest);
    sb_array_elem(&ob->codes, env->dossier_code);
    sb_array_elem(&ob->types, env->type);
    sb_array_elem(&ob->payloads, hex);
    ob->n++;
}

static void outbox_add(mc_outbox_t *ob, const char *only, mc_envelope_t *env, const char *trace,
                       const char *causation)
{
    mc_envelope_stamp(env, ob->service, trace, causation);
    size_t len;
    uint8_t *bytes = mc_envelope_encode(env, &len);
    char *hex = mc_alloc(len * 2 + 1);
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 15];
    }
    if (only) {
        outbox_row(ob, only, env, hex);
    } else {
        const char *const *consumers;
        size_t n = mc_body_consumers(env->body_case, &consumers);
        for (size_t i = 0; i < n; i++)
            outbox_row(ob, consumers[i], env, hex);
    }
    free(hex);
    free(bytes);
    mc_envelope_free_stamp(env);
}

void mc_outbox_add(mc_outbox_t *ob, mc_envelope_t *env, const char *trace, const char *causation)
{
    outbox_add(ob, NULL, env, trace, causation);
}

void mc_outbox_add_to(mc_outbox_t *ob, const char *destination, mc_envelope_t *env,
                      const char *trace, const char *causation)
{
    outbox_add(ob, destination, env, trace, causation);
}

size_t mc_outbox_count(const mc_outbox_t *ob)
{
    return ob->n;
}

void mc_outbox_write(mc_outbox_t *ob, mc_db_conn_t *conn, mc_db_result_fn fn, void *arg)
{
    assert(!ob->sql && "an outbox is written once");
    sb_close_array(&ob->ids);
    sb_close_array(&ob->dests);
    sb_close_array(&ob->codes);
    sb_close_array(&ob->types);
    sb_close_array(&ob->payloads);
    free(ob->sql);
    /* WITH ORDINALITY keeps the order of addition, so seq follows it. */
    ob->sql = mc_sprintf("INSERT INTO %s.outbox (id, destination, dossier_code, type, payload) "
                         "SELECT u.i::uuid, u.d, u.c, u.t, decode(u.p, 'hex') FROM "
                         "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) "
                         "WITH ORDINALITY AS u(i, d, c, t, p, o) ORDER BY u.o",
                         ob->service);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, ob->ids.data);
    mc_db_param_text(&p, ob->dests.data);
    mc_db_param_text(&p, ob->codes.data);
    mc_db_param_text(&p, ob->types.data);
    mc_db_param_text(&p, ob->payloads.data);
    mc_db_query(conn, ob->sql, &p, 0, fn, arg);
}

void mc_outbox_destroy(mc_outbox_t **pob)
{
    if (!pob || !*pob)
        return;
    mc_outbox_t *ob = *pob;
    *pob = NULL;
    free(ob->ids.data);
    free(ob->dests.data);
    free(ob->codes.data);
    free(ob->types.data);
    free(ob->payloads.data);
    free(ob->sql);
    free(ob->service);
    free(ob);
}

/* ================================================================ state */

typedef struct peer {
    mc_bus_t *bus;
    char *name;
    mc_zsock_t *zs; /* DEALER connected to the peer's ROUTER */
    char *endpoint;
    sbuf_t acks; /* ids acknowledged, not yet marked delivered (array literal) */
    size_t nacks;
    long long sent, acked, nacked;
    int64_t last_ack_ms;
    uint64_t waiting_since; /* first send since its last Ack (monotonic ms); 0: none */
    int parked;             /* no Ack for PARK_MS: the claim takes one envelope of it at a time */
} peer_t;

/* An envelope received on the ROUTER, waiting to be handled. */
typedef struct item {
    mc_zsock_t *via; /* the ROUTER it came on, where its answer goes */
    char peer[32];   /* from the link: the province its CURVE key belongs to */
    char sender[32]; /* from a service over CURVE: the service its key belongs to */
    zframe_t *identity;
    char id[MC_UUID_LEN + 1];
    uint8_t *data;
    size_t len;
    struct item *next;
} item_t;

struct mc_bus_msg {
    mc_bus_t *bus;
    mc_envelope_t *env;
    const char *peer; /* the sending province, for envelopes from the link; else NULL */
    int pending;      /* the handler has not called mc_bus_done yet */
};

struct mc_bus {
    uv_loop_t *loop;
    mc_db_t *db;
    char *service;
    int batch;
    int lease_ms;
    const mc_bus_handler_t *handlers;
    size_t nhandlers;
    void *handler_arg;

    /* receiving: work[lo..hi) is the open transaction, work[at] the current item */
    mc_zsock_t *router;
    mc_zsock_t *link_router;      /* CURVE server for other provinces (mc_bus_link) */
    mc_curve_t *curve;            /* the ZAP handler, once CURVE is used */
    zcert_t *cert;                /* our service's key pair (the bus between services over CURVE) */
    zcert_t *link_cert;           /* our province's key pair (the link) */
    const mc_body_t *link_accept; /* the only bodies taken from the link */
    size_t nlink_accept;
    item_t *queue_head, *queue_tail;
    size_t queued;
    item_t **work;
    size_t nwork, lo, hi, at;
    mc_db_conn_t *conn;
    mc_bus_msg_t msg;
    int receiving;
    int failed_permanent;
    char reason[256];

    /* relaying */
    peer_t **peers;
    size_t npeers;
    int claiming, claim_again;
    int acking;
    uv_timer_t tick;
    uv_timer_t stats_timer;
    int counting;
    unsigned ticks;
    int retention_hours;
    char *sql_claim, *sql_ack, *sql_nack, *sql_inbox, *sql_dead, *sql_pending, *sql_retention;

    /* lifecycle */
    int stopping;
    void (*stop_done)(void *);
    void *stop_arg;
    int open_handles;
    mc_bus_stats_t stats;
};

static void receive_next(mc_bus_t *bus);
static void relay_claim(mc_bus_t *bus);
static void maybe_stopped(mc_bus_t *bus);

/* ================================================================ receiving */

static void send_reply(mc_bus_t *bus, const item_t *it, int ack, const char *why)
{
    if (!it->id[0])
        return; /* nothing the sender could match an answer to */
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    Motcua__V1__Ack a = MOTCUA__V1__ACK__INIT;
    Motcua__V1__Nack n = MOTCUA__V1__NACK__INIT;
    env.source = bus->service;
    env.time_ms = mc_wall_ms();
    env.schema_version = MC_SCHEMA_VERSION;
    if (ack) {
        env.type = "Ack";
        a.message_id = (char *)it->id;
        env.body_case = MOTCUA__V1__ENVELOPE__BODY_ACK;
        env.ack = &a;
        bus->stats.acked++;
    } else {
        env.type = "Nack";
        n.message_id = (char *)it->id;
        n.reason = (char *)(why ? why : "");
        n.retry_after_ms = NACK_RETRY_MS;
        env.body_case = MOTCUA__V1__ENVELOPE__BODY_NACK;
        env.nack = &n;
        bus->stats.nacked++;
    }
    size_t len;
    uint8_t *bytes = mc_envelope_encode(&env, &len);
    zmsg_t *m = zmsg_new();
    zmsg_addmem(m, zframe_data(it->identity), zframe_size(it->identity));
    zmsg_addmem(m, bytes, len);
    free(bytes);
    /* A peer that went away sends again after its lease; nothing to do here. */
    if (mc_zsock_send(it->via, &m) != MC_OK)
        mc_debug("bus: reply to a departed peer dropped");
}

static void item_free(item_t *it)
{
    zframe_destroy(&it->identity);
    free(it->data);
    free(it);
}

static void on_router_recv(mc_zsock_t *zs, zmsg_t **pmsg, void *arg)
{
    mc_bus_t *bus = arg;
    zmsg_t *m = *pmsg;
    if (bus->stopping)
        return; /* not acknowledged: the sender will send it again */
    item_t *it = mc_new(item_t);
    it->via = zs;
    it->identity = zmsg_pop(m);
    zframe_t *idf = zmsg_pop(m);
    zframe_t *body = zmsg_pop(m);
    if (zs == bus->link_router || bus->cert) {
        /* The ZAP handler named the province or service behind the key. */
        const char *who = idf ? zframe_meta(idf, "User-Id") : NULL;
        if (zs == bus->link_router)
            snprintf(it->peer, sizeof it->peer, "%s", who && *who ? who : "?");
        else
            snprintf(it->sender, sizeof it->sender, "%s", who && *who ? who : "?");
    }
    if (body) {
        if (zframe_size(idf) == MC_UUID_LEN)
            memcpy(it->id, zframe_data(idf), MC_UUID_LEN);
        it->len = zframe_size(body);
        it->data = mc_memdup(zframe_data(body), it->len);
    } else if (idf) {
        /* One frame only: keep it so the dead letter shows what came. */
        it->len = zframe_size(idf);
        it->data = mc_memdup(zframe_data(idf), it->len);
    }
    zframe_destroy(&idf);
    zframe_destroy(&body);
    if (!it->identity) {
        item_free(it);
        return;
    }
    if (bus->queue_tail)
        bus->queue_tail->next = it;
    else
        bus->queue_head = it;
    bus->queue_tail = it;
    bus->queued++;
    receive_next(bus);
}

static const mc_bus_handler_t *find_handler(const mc_bus_t *bus, mc_body_t body)
{
    for (size_t i = 0; i < bus->nhandlers; i++)
        if (bus->handlers[i].body == body)
            return &bus->handlers[i];
    return NULL;
}

static void tx_start(mc_bus_t *bus, size_t lo, size_t hi);
static void tx_fail(mc_bus_t *bus, int permanent, const char *why);
static void item_begin(mc_bus_t *bus);

static void batch_finish(mc_bus_t *bus)
{
    mc_envelope_free(&bus->msg.env);
    if (bus->conn)
        mc_db_release(bus->conn);
    bus->conn = NULL;
    for (size_t i = 0; i < bus->nwork; i++)
        item_free(bus->work[i]);
    bus->nwork = 0;
    bus->receiving = 0;
    if (bus->stopping)
        maybe_stopped(bus);
    else
        receive_next(bus);
}

/* The transaction work[lo..hi) is over; go on one envelope per transaction after a
 * failed batch, else finish. */
static void tx_done(mc_bus_t *bus)
{
    if (bus->hi < bus->nwork)
        tx_start(bus, bus->hi, bus->hi + 1);
    else
        batch_finish(bus);
}

static void on_commit(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_t *bus = arg;
    if (status != MC_OK) {
        tx_fail(bus, 0, res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    for (size_t i = bus->lo; i < bus->hi; i++)
        send_reply(bus, bus->work[i], 1, NULL);
    tx_done(bus);
}

static void item_next(mc_bus_t *bus)
{
    mc_envelope_free(&bus->msg.env);
    if (++bus->at < bus->hi)
        item_begin(bus);
    else
        mc_db_query(bus->conn, "COMMIT", NULL, 0, on_commit, bus);
}

static void on_dead_written(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_t *bus = arg;
    if (status != MC_OK) {
        tx_fail(bus, 0, res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    bus->stats.dead_letters++;
    item_next(bus);
}

/* Insert the dead letter of item `it` (inside the open transaction). */
static void dead_letter_insert(mc_bus_t *bus, const item_t *it, const char *reason,
                               mc_db_result_fn fn)
{
    const mc_envelope_t *env = bus->msg.env;
    mc_logd(MC_LOG_WARN, env ? env->trace_id : NULL, env ? env->dossier_code : NULL,
            "bus: dead letter %s: %s", it->id[0] ? it->id : "(no id)", reason);
    mc_db_params_t p = {0};
    mc_db_param_text(&p, it->id[0] ? it->id : NULL);
    mc_db_param_text(&p, env ? env->source : NULL);
    mc_db_param_text(&p, env ? env->type : NULL);
    mc_db_param_text(&p, env ? env->dossier_code : NULL);
    mc_db_param_bytes(&p, it->data ? (const void *)it->data : "", it->len);
    mc_db_param_text(&p, reason);
    mc_db_query(bus->conn, bus->sql_dead, &p, 0, fn, bus);
}

/* Record work[at] as a dead letter inside the open transaction, then go on. */
static void dead_letter(mc_bus_t *bus, const char *reason)
{
    dead_letter_insert(bus, bus->work[bus->at], reason, on_dead_written);
}

void mc_bus_done(mc_bus_msg_t *msg, int status, const char *reason)
{
    mc_bus_t *bus = msg->bus;
    assert(msg->pending);
    msg->pending = 0;
    if (status == MC_OK) {
        bus->stats.handled++;
        item_next(bus);
        return;
    }
    int permanent = status == MC_EDECODE || status == MC_EINVAL || status == MC_ERULE;
    char why[256];
    snprintf(why, sizeof why, "%s: %s", mc_strerror(status), reason ? reason : "handler failed");
    tx_fail(bus, permanent, why);
}

static void on_inbox(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_t *bus = arg;
    if (status != MC_OK) {
        tx_fail(bus, 0, res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    if (strcmp(PQcmdTuples(res), "1") != 0) {
        bus->stats.duplicates++;
        item_next(bus);
        return;
    }
    const mc_bus_handler_t *h = find_handler(bus, bus->msg.env->body_case);
    if (!h) {
        char why[160];
        snprintf(why, sizeof why, "no handler for type %s in %s",
                 bus->msg.env->type[0] ? bus->msg.env->type : "(unknown)", bus->service);
        dead_letter(bus, why);
        return;
    }
    bus->msg.pending = 1;
    h->fn(&bus->msg, bus->handler_arg);
}

static void inbox_insert(mc_bus_t *bus, mc_db_result_fn fn)
{
    const mc_envelope_t *env = bus->msg.env;
    mc_db_params_t p = {0};
    mc_db_param_text(&p, env->message_id);
    mc_db_param_text(&p, env->source);
    mc_db_param_text(&p, env->type);
    mc_db_param_text(&p, env->dossier_code);
    mc_db_query(bus->conn, bus->sql_inbox, &p, 0, fn, bus);
}

/* Decode work[at]; 0 and a dead-letter reason in why if it cannot be handled. */
static int item_decode(mc_bus_t *bus, char *why, size_t whylen)
{
    item_t *it = bus->work[bus->at];
    mc_envelope_free(&bus->msg.env);
    bus->msg.bus = bus;
    bus->msg.peer = it->peer[0] ? it->peer : NULL;
    bus->msg.env = it->data ? mc_envelope_decode(it->data, it->len) : NULL;
    if (!bus->msg.env) {
        snprintf(why, whylen, "undecodable envelope (not a motcua.v1.Envelope)");
        return 0;
    }
    if (!it->id[0] || strcmp(bus->msg.env->message_id, it->id) != 0 || !mc_uuid_valid(it->id)) {
        snprintf(why, whylen, "message id frame missing, malformed or not the envelope's");
        return 0;
    }
    /* Bodies for the link come only from the link, and the link brings nothing else. */
    int link_body = 0;
    for (size_t i = 0; i < bus->nlink_accept; i++)
        link_body |= bus->link_accept[i] == bus->msg.env->body_case;
    if (bus->msg.peer && !link_body) {
        snprintf(why, whylen, "%s is not taken from another province (sent by %s)",
                 bus->msg.env->type, it->peer);
        mc_warn("bus: %s", why);
        return 0;
    }
    if (!bus->msg.peer && link_body) {
        snprintf(why, whylen, "%s is taken only from another province's link", bus->msg.env->type);
        return 0;
    }
    /* Over CURVE a service speaks for itself only (or for what it sends itself: a
     * replayed dead letter keeps its first source). */
    if (it->sender[0] && strcmp(it->sender, bus->msg.env->source) != 0 &&
        strcmp(it->sender, bus->service) != 0) {
        snprintf(why, whylen, "%s says it is from %s but came with %s's key", bus->msg.env->type,
                 bus->msg.env->source, it->sender);
        mc_warn("bus: %s", why);
        return 0;
    }
    return 1;
}

static void item_begin(mc_bus_t *bus)
{
    char why[160];
    if (!item_decode(bus, why, sizeof why))
        dead_letter(bus, why);
    else
        inbox_insert(bus, on_inbox);
}

static void on_begin(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_t *bus = arg;
    if (status != MC_OK) {
        tx_fail(bus, 0, res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    item_begin(bus);
}

static void tx_start(mc_bus_t *bus, size_t lo, size_t hi)
{
    bus->lo = bus->at = lo;
    bus->hi = hi;
    bus->failed_permanent = 0;
    mc_db_query(bus->conn, "BEGIN", NULL, 0, on_begin, bus);
}

/* ---- a permanent failure of a single envelope: inbox row + dead letter ---- */

static void on_dead_rolled_back(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    (void)res;
    (void)status;
    tx_done(arg);
}

static void on_dead_commit(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    (void)res;
    mc_bus_t *bus = arg;
    item_t *it = bus->work[bus->lo];
    if (status == MC_OK) {
        bus->stats.dead_letters++;
        send_reply(bus, it, 1, NULL);
        tx_done(bus);
        return;
    }
    /* Not recorded: it comes again and is judged again. */
    send_reply(bus, it, 0, "dead letter not recorded");
    if (status == MC_EDB)
        mc_db_query(bus->conn, "ROLLBACK", NULL, 0, on_dead_rolled_back, bus);
    else
        tx_done(bus);
}

static void on_dead_step(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    (void)res;
    mc_bus_t *bus = arg;
    if (status != MC_OK) {
        on_dead_commit(conn, res, status, arg);
        return;
    }
    mc_db_query(bus->conn, "COMMIT", NULL, 0, on_dead_commit, bus);
}

static void on_dead_inbox(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    (void)res;
    mc_bus_t *bus = arg;
    if (status != MC_OK) {
        on_dead_commit(conn, res, status, arg);
        return;
    }
    dead_letter_insert(bus, bus->work[bus->lo], bus->reason, on_dead_step);
}

static void on_dead_begin(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    mc_bus_t *bus = arg;
    if (status != MC_OK) {
        on_dead_commit(conn, res, status, arg);
        return;
    }
    inbox_insert(bus, on_dead_inbox);
}

static void on_rollback(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    (void)res;
    mc_bus_t *bus = arg;
    if (status == MC_EUNAVAIL || status == MC_ECLOSED) {
        /* The connection is gone and nothing was committed: all of it comes again. */
        for (size_t i = bus->lo; i < bus->nwork; i++)
            send_reply(bus, bus->work[i], 0, "database unavailable");
        batch_finish(bus);
        return;
    }
    if (bus->hi - bus->lo > 1) {
        /* One envelope of the batch failed: redo them one per transaction. */
        tx_start(bus, bus->lo, bus->lo + 1);
        return;
    }
    if (bus->failed_permanent && bus->msg.env) {
        mc_db_query(bus->conn, "BEGIN", NULL, 0, on_dead_begin, bus);
        return;
    }
    send_reply(bus, bus->work[bus->lo], 0, bus->reason);
    tx_done(bus);
}

/* The open transaction cannot commit: roll it back, then decide (on_rollback). */
static void tx_fail(mc_bus_t *bus, int permanent, const char *why)
{
    const mc_envelope_t *env = bus->msg.env;
    mc_logd(MC_LOG_WARN, env ? env->trace_id : NULL, env ? env->dossier_code : NULL,
            "bus: %s failed%s: %s", bus->hi - bus->lo > 1 ? "batch" : "envelope",
            permanent ? " for good" : "", why);
    bus->failed_permanent = permanent;
    snprintf(bus->reason, sizeof bus->reason, "%s", why);
    mc_db_query(bus->conn, "ROLLBACK", NULL, 0, on_rollback, bus);
}

static void on_conn(mc_db_conn_t *conn, int status, void *arg)
{
    mc_bus_t *bus = arg;
    if (status != MC_OK) {
        for (size_t i = 0; i < bus->nwork; i++)
            send_reply(bus, bus->work[i], 0, "database unavailable");
        batch_finish(bus);
        return;
    }
    bus->conn = conn;
    tx_start(bus, 0, bus->nwork);
}

static void receive_next(mc_bus_t *bus)
{
    if (bus->receiving || !bus->queue_head || bus->stopping)
        return;
    bus->receiving = 1;
    bus->nwork = 0;
    while (bus->queue_head && bus->nwork < (size_t)bus->batch) {
        item_t *it = bus->queue_head;
        bus->queue_head = it->next;
        it->next = NULL;
        bus->work[bus->nwork++] = it;
        bus->queued--;
    }
    if (!bus->queue_head)
        bus->queue_tail = NULL;
    mc_db_acquire(bus->db, on_conn, bus);
}

/* ================================================================ relaying */

static peer_t *find_peer(mc_bus_t *bus, const char *name)
{
    for (size_t i = 0; i < bus->npeers; i++)
        if (strcmp(bus->peers[i]->name, name) == 0)
            return bus->peers[i];
    return NULL;
}

static void on_claimed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_t *bus = arg;
    bus->claiming = 0;
    if (status != MC_OK) {
        if (status != MC_ECLOSED)
            mc_warn("bus: relay claim failed: %s",
                    res ? PQresultErrorMessage(res) : mc_strerror(status));
        maybe_stopped(bus);
        return;
    }
    int rows = PQntuples(res);
    for (int r = 0; r < rows; r++) {
        const char *id = PQgetvalue(res, r, 0);
        const char *dest = PQgetvalue(res, r, 1);
        peer_t *peer = find_peer(bus, dest);
        if (!peer) {
            mc_warn("bus: outbox names unknown destination '%s'", dest);
            continue;
        }
        zmsg_t *m = zmsg_new();
        zmsg_addstr(m, id);
        zmsg_addmem(m, PQgetvalue(res, r, 2), (size_t)PQgetlength(res, r, 2));
        if (mc_zsock_send(peer->zs, &m) == MC_OK) {
            bus->stats.sent++;
            peer->sent++;
        }
        /* Else (not connected) the lease runs out and the envelope is sent again. Either
         * way an answer is now awaited. */
        if (!peer->waiting_since)
            peer->waiting_since = mc_now_ms();
    }
    if (bus->stopping) {
        maybe_stopped(bus);
        return;
    }
    if (rows == bus->batch || bus->claim_again) {
        bus->claim_again = 0;
        relay_claim(bus);
    }
}

static void relay_claim(mc_bus_t *bus)
{
    if (bus->stopping)
        return;
    if (bus->claiming) {
        bus->claim_again = 1;
        return;
    }
    bus->claiming = 1;
    /* A destination that has not answered for a while (down, cut off, its database
     * away) is parked: the claim takes only its first pending envelope, which goes as
     * a probe whenever its lease runs out, instead of walking all its backlog on every
     * claim. Its first Ack unparks it. */
    uint64_t now = mc_now_ms();
    uint64_t park_ms =
        (uint64_t)bus->lease_ms * 4 > PARK_MS ? (uint64_t)bus->lease_ms * 4 : PARK_MS;
    sbuf_t parked = {0};
    for (size_t i = 0; i < bus->npeers; i++) {
        peer_t *peer = bus->peers[i];
        if (!peer->parked && peer->waiting_since && now - peer->waiting_since > park_ms) {
            peer->parked = 1;
            mc_warn("bus: %s has not answered for %llu s; its envelopes wait and go one at a "
                    "time until it does",
                    peer->name, (unsigned long long)((now - peer->waiting_since) / 1000));
        }
        if (peer->parked)
            sb_array_elem(&parked, peer->name);
    }
    sb_close_array(&parked);
    mc_db_params_t p = {0};
    mc_db_param_int(&p, bus->batch);
    mc_db_param_int(&p, bus->lease_ms);
    mc_db_param_text(&p, parked.data);
    mc_db_exec(bus->db, bus->sql_claim, &p, 1, on_claimed, bus);
    free(parked.data);
}

static void acks_flush(mc_bus_t *bus);

static void on_acks_written(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_t *bus = arg;
    bus->acking = 0;
    if (status != MC_OK && status != MC_ECLOSED)
        mc_warn("bus: marking delivered failed (will resend, receivers skip repeats): %s",
                res ? PQresultErrorMessage(res) : mc_strerror(status));
    if (bus->stopping) {
        maybe_stopped(bus);
        return;
    }
    acks_flush(bus);
    relay_claim(bus); /* delivered heads make the next envelopes of their dossiers due */
}

static void acks_flush(mc_bus_t *bus)
{
    if (bus->acking)
        return;
    for (size_t i = 0; i < bus->npeers; i++) {
        peer_t *peer = bus->peers[i];
        if (!peer->nacks)
            continue;
        sb_close_array(&peer->acks);
        mc_db_params_t p = {0};
        mc_db_param_text(&p, peer->name);
        mc_db_param_text(&p, peer->acks.data);
        bus->acking = 1;
        mc_db_exec(bus->db, bus->sql_ack, &p, 0, on_acks_written, bus);
        peer->acks.len = 0;
        peer->nacks = 0;
        return; /* one statement at a time; the callback flushes the next peer */
    }
}

static void on_nack_written(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    (void)res;
    (void)status;
    (void)arg;
}

static void on_dealer_recv(mc_zsock_t *zs, zmsg_t **pmsg, void *arg)
{
    (void)zs;
    peer_t *peer = arg;
    mc_bus_t *bus = peer->bus;
    zframe_t *f = zmsg_first(*pmsg);
    mc_envelope_t *env = f ? mc_envelope_decode(zframe_data(f), zframe_size(f)) : NULL;
    if (!env) {
        mc_warn("bus: undecodable reply from %s ignored", peer->name);
        return;
    }
    if (env->body_case == MOTCUA__V1__ENVELOPE__BODY_ACK && mc_uuid_valid(env->ack->message_id)) {
        /* The buffer holds "{a,b" until acks_flush closes the array. */
        sb_put(&peer->acks, peer->acks.len ? "," : "{", 1);
        sb_put(&peer->acks, env->ack->message_id, MC_UUID_LEN);
        peer->nacks++;
        peer->acked++;
        peer->last_ack_ms = mc_wall_ms();
        peer->waiting_since = 0;
        if (peer->parked) {
            peer->parked = 0;
            mc_info("bus: %s answers again", peer->name);
        }
        acks_flush(bus);
    } else if (env->body_case == MOTCUA__V1__ENVELOPE__BODY_NACK &&
               mc_uuid_valid(env->nack->message_id)) {
        mc_db_params_t p = {0};
        mc_db_param_text(&p, peer->name);
        mc_db_param_text(&p, env->nack->message_id);
        mc_db_param_int(&p, env->nack->retry_after_ms);
        mc_db_param_text(&p, env->nack->reason);
        mc_db_exec(bus->db, bus->sql_nack, &p, 0, on_nack_written, bus);
        peer->nacked++;
    }
    mc_envelope_free(&env);
}

static void on_notify(const char *channel, const char *payload, void *arg)
{
    (void)channel;
    (void)payload;
    relay_claim(arg);
}

static void on_tick(uv_timer_t *t)
{
    relay_claim(t->data);
}

static void on_pending_counted(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_t *bus = arg;
    bus->counting = 0;
    if (status == MC_OK && PQntuples(res) == 1)
        bus->stats.outbox_pending = atoll(PQgetvalue(res, 0, 0));
    maybe_stopped(bus);
}

static void on_purged(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_t *bus = arg;
    bus->counting = 0;
    if (status != MC_OK && status != MC_ECLOSED)
        mc_warn("bus: retention purge failed: %s",
                res ? PQresultErrorMessage(res) : mc_strerror(status));
    maybe_stopped(bus);
}

/* Every 5 s count the backlog; once a minute instead purge delivered outbox rows and
 * inbox ids older than the retention (a repeat can only come while its outbox row is
 * undelivered, i.e. within seconds to minutes, so days of inbox are ample). */
static void on_stats_timer(uv_timer_t *t)
{
    mc_bus_t *bus = t->data;
    if (bus->counting || bus->stopping)
        return;
    bus->counting = 1;
    if (++bus->ticks % 12 == 0) {
        mc_db_params_t p = {0};
        mc_db_param_int(&p, bus->retention_hours);
        mc_db_exec(bus->db, bus->sql_retention, &p, 0, on_purged, bus);
    } else {
        mc_db_exec(bus->db, bus->sql_pending, NULL, 0, on_pending_counted, bus);
    }
}

void mc_bus_kick(mc_bus_t *bus)
{
    relay_claim(bus);
}

/* ================================================================ lifecycle */

/* A DEALER to a destination's ROUTER; over CURVE with cert when def has a server key. */
static void add_peer(mc_bus_t *bus, const mc_bus_peer_t *def, zcert_t *cert)
{
    peer_t *peer = mc_new(peer_t);
    peer->bus = bus;
    peer->name = mc_strdup(def->name);
    peer->endpoint = mc_strdup(def->endpoint);
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    assert(dealer);
    zsock_set_linger(dealer, 0); /* unacknowledged envelopes are in the outbox */
    zsock_set_immediate(dealer, 1);
    zsock_set_sndhwm(dealer, 100000);
    zsock_set_heartbeat_ivl(dealer, 2000);
    zsock_set_heartbeat_timeout(dealer, 6000);
    zsock_set_reconnect_ivl(dealer, 100);
    zsock_set_reconnect_ivl_max(dealer, 2000);
    if (def->server_key)
        mc_curve_client(cert, dealer, def->server_key);
    if (zsock_connect(dealer, "%s", def->endpoint) < 0)
        mc_error("bus: bad endpoint for %s: %s", peer->name, def->endpoint);
    peer->zs = mc_zsock_new(bus->loop, &dealer, on_dealer_recv, peer);
    bus->peers = mc_realloc(bus->peers, sizeof(peer_t *) * (bus->npeers + 1));
    bus->peers[bus->npeers++] = peer;
}

/* The bus between services over CURVE: our key pair, the ZAP handler admitting each
 * peer service's key, and those keys (keys[i] for cfg->peers[i]). 0, or -1 with what
 * was made undone and the reason logged. */
static int curve_setup(uv_loop_t *loop, const mc_bus_config_t *cfg, mc_curve_t **curve,
                       zcert_t **cert, char (*keys)[MC_CURVE_KEY_LEN + 1])
{
    char err[512], *path = mc_sprintf("%s/%s_secret", cfg->curve_dir, cfg->service);
    *cert = mc_curve_load_secret(path, err, sizeof err);
    free(path);
    *curve = *cert ? mc_curve_new(loop, err, sizeof err) : NULL;
    for (size_t i = 0; *curve && i < cfg->npeers; i++) {
        path = mc_sprintf("%s/%s", cfg->curve_dir, cfg->peers[i].name);
        int bad = mc_curve_load_public(path, keys[i], err, sizeof err) ||
                  mc_curve_allow(*curve, "bus", cfg->peers[i].name, keys[i], err, sizeof err);
        free(path);
        if (bad)
            mc_curve_destroy(curve);
    }
    if (*curve)
        return 0;
    mc_error("bus: CURVE between services (MOTCUA_BUS_CURVE_DIR=%s): %s", cfg->curve_dir, err);
    zcert_destroy(cert);
    return -1;
}

mc_bus_t *mc_bus_new(uv_loop_t *loop, mc_db_t *db, const mc_bus_config_t *cfg)
{
    /* czmq would otherwise install its own SIGINT/SIGTERM handlers; the service
     * handles signals on the loop. */
    zsys_handler_set(NULL);
    mc_curve_t *curve = NULL;
    zcert_t *cert = NULL;
    char(*keys)[MC_CURVE_KEY_LEN + 1] = mc_alloc((cfg->npeers ? cfg->npeers : 1) * sizeof *keys);
    if (cfg->curve_dir && *cfg->curve_dir && curve_setup(loop, cfg, &curve, &cert, keys)) {
        free(keys);
        return NULL;
    }
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    assert(router);
    zsock_set_router_mandatory(router, 1);
    zsock_set_linger(router, 1000); /* let the last Acks out at shutdown */
    zsock_set_rcvhwm(router, 100000);
    zsock_set_sndhwm(router, 100000);
    if (cert)
        mc_curve_server(cert, router, "bus");
    if (zsock_bind(router, "%s", cfg->bind) < 0) {
        mc_error("bus: cannot bind %s: %s", cfg->bind, zmq_strerror(zmq_errno()));
        zsock_destroy(&router);
        mc_curve_destroy(&curve);
        zcert_destroy(&cert);
        free(keys);
        return NULL;
    }
    mc_bus_t *bus = mc_new(mc_bus_t);
    bus->curve = curve;
    bus->cert = cert;
    bus->loop = loop;
    bus->db = db;
    bus->service = mc_strdup(cfg->service);
    bus->batch = cfg->batch > 0 ? cfg->batch : 1;
    bus->lease_ms = cfg->lease_ms > 0 ? cfg->lease_ms : 2000;
    bus->work = mc_alloc(sizeof(item_t *) * (size_t)bus->batch);
    bus->router = mc_zsock_new(loop, &router, on_router_recv, bus);
    bus->stats.bound = 1;

    for (size_t i = 0; i < cfg->npeers; i++) {
        mc_bus_peer_t def = cfg->peers[i];
        def.server_key = cert ? keys[i] : NULL;
        add_peer(bus, &def, cert);
    }
    free(keys);
    if (cert)
        mc_info("bus: CURVE between services, our key %s", zcert_public_txt(cert));

    const char *s = bus->service;
    /* The head of each (destination, dossier) is the oldest undelivered envelope;
     * only a head whose lease has run out is (re)sent, so each dossier has at most
     * one envelope in flight per destination. The lease doubles with each attempt
     * (capped at 30 s): that is the redelivery backoff. The WHERE on o.lease_until
     * is re-checked on the locked row, so two relays never claim the same head. */
    bus->sql_claim = mc_sprintf(
        /* Distinct (destination, dossier) pairs with pending envelopes, found by skipping
         * through the partial index (one probe per pair, not a scan of the backlog); of a
         * parked destination ($3) only its first pair, then on to the next destination. */
        "WITH RECURSIVE pairs AS ("
        "  (SELECT destination AS d, dossier_code AS c FROM %s.outbox"
        "   WHERE delivered_at IS NULL ORDER BY destination, dossier_code LIMIT 1)"
        "  UNION ALL"
        "  SELECT n.d, n.c FROM pairs p, LATERAL ("
        "   (SELECT destination AS d, dossier_code AS c FROM %s.outbox"
        "    WHERE delivered_at IS NULL AND p.d <> ALL($3::text[])"
        "    AND (destination, dossier_code) > (p.d, p.c)"
        "    ORDER BY destination, dossier_code LIMIT 1)"
        "   UNION ALL"
        "   (SELECT destination, dossier_code FROM %s.outbox"
        "    WHERE delivered_at IS NULL AND p.d = ANY($3::text[]) AND destination > p.d"
        "    ORDER BY destination, dossier_code LIMIT 1)) n), "
        "heads AS (SELECT h.seq, h.lease_until FROM pairs p, LATERAL (SELECT seq, lease_until"
        "  FROM %s.outbox WHERE delivered_at IS NULL AND destination = p.d"
        "  AND dossier_code = p.c ORDER BY seq LIMIT 1) h), "
        "pick AS (SELECT seq FROM heads WHERE lease_until IS NULL OR lease_until <= now() "
        "  ORDER BY seq LIMIT $1::int) "
        "UPDATE %s.outbox o SET attempts = o.attempts + 1, lease_until = now() + "
        "  make_interval(secs => least(30.0, $2::int / 1000.0 * power(2, least(o.attempts, 5)))) "
        "FROM pick WHERE o.seq = pick.seq AND o.delivered_at IS NULL "
        "  AND (o.lease_until IS NULL OR o.lease_until <= now()) "
        "RETURNING o.id::text, o.destination, o.payload",
        s, s, s, s, s);
    bus->sql_ack = mc_sprintf("UPDATE %s.outbox SET delivered_at = now(), lease_until = NULL "
                              "WHERE destination = $1 AND id = ANY($2::uuid[]) "
                              "AND delivered_at IS NULL",
                              s);
    bus->sql_nack = mc_sprintf("UPDATE %s.outbox SET lease_until = now() + "
                               "make_interval(secs => $3::int / 1000.0), last_error = $4 "
                               "WHERE destination = $1 AND id = $2::uuid AND delivered_at IS NULL",
                               s);
    bus->sql_inbox = mc_sprintf("INSERT INTO %s.inbox (message_id, source, type, dossier_code) "
                                "VALUES ($1::uuid, $2, $3, $4) ON CONFLICT DO NOTHING",
                                s);
    bus->sql_dead = mc_sprintf("INSERT INTO %s.dead_letters (message_id, source, type, "
                               "dossier_code, payload, reason) VALUES ($1, $2, $3, $4, $5, $6) "
                               "ON CONFLICT DO NOTHING",
                               s);
    bus->sql_pending = mc_sprintf("SELECT count(*) FROM %s.outbox WHERE delivered_at IS NULL", s);
    bus->sql_retention =
        mc_sprintf("WITH o AS (DELETE FROM %s.outbox WHERE seq IN (SELECT seq FROM %s.outbox"
                   "   WHERE delivered_at < now() - make_interval(hours => $1::int) LIMIT 10000))"
                   " DELETE FROM %s.inbox WHERE message_id IN (SELECT message_id FROM %s.inbox"
                   "   WHERE handled_at < now() - make_interval(hours => $1::int) LIMIT 10000)",
                   s, s, s, s);
    bus->retention_hours = cfg->retention_hours > 0 ? cfg->retention_hours : 168;

    uv_timer_init(loop, &bus->tick);
    uv_timer_init(loop, &bus->stats_timer);
    bus->tick.data = bus->stats_timer.data = bus;
    bus->open_handles = 2;
    uv_timer_start(&bus->tick, on_tick, TICK_MS, TICK_MS);
    uv_timer_start(&bus->stats_timer, on_stats_timer, 0, STATS_MS);

    char channel[80];
    snprintf(channel, sizeof channel, "%s_outbox", s);
    mc_db_listen(db, channel, on_notify, bus);
    return bus;
}

void mc_bus_handlers(mc_bus_t *bus, const mc_bus_handler_t *handlers, size_t n, void *arg)
{
    bus->handlers = handlers;
    bus->nhandlers = n;
    bus->handler_arg = arg;
}

void mc_bus_stats(const mc_bus_t *bus, mc_bus_stats_t *out)
{
    *out = bus->stats;
}

size_t mc_bus_peers(const mc_bus_t *bus, mc_bus_peer_stats_t *out, size_t max)
{
    for (size_t i = 0; i < bus->npeers && i < max; i++) {
        const peer_t *p = bus->peers[i];
        out[i] = (mc_bus_peer_stats_t){p->name,  p->endpoint, p->sent,
                                       p->acked, p->nacked,   p->last_ack_ms};
    }
    return bus->npeers;
}

int mc_bus_link(mc_bus_t *bus, const mc_bus_link_t *link, char *err, size_t errlen)
{
    if (bus->link_router) {
        snprintf(err, errlen, "the link is already open");
        return -1;
    }
    for (size_t i = 0; i < link->npeers; i++)
        if (find_peer(bus, link->peers[i].name)) {
            snprintf(err, errlen, "peer %s has the name of a service", link->peers[i].name);
            return -1;
        }
    zcert_t *cert = mc_curve_load_secret(link->cert_file, err, errlen);
    if (!cert)
        return -1;
    if (!bus->curve && !(bus->curve = mc_curve_new(bus->loop, err, errlen))) {
        zcert_destroy(&cert);
        return -1;
    }
    for (size_t i = 0; i < link->npeers; i++)
        if (mc_curve_allow(bus->curve, "link", link->peers[i].name, link->peers[i].server_key, err,
                           errlen)) {
            zcert_destroy(&cert);
            return -1;
        }
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    assert(router);
    zsock_set_router_mandatory(router, 1);
    zsock_set_linger(router, 1000);
    zsock_set_rcvhwm(router, 100000);
    zsock_set_sndhwm(router, 100000);
    zsock_set_heartbeat_ivl(router, 2000);
    zsock_set_heartbeat_timeout(router, 6000);
    /* A peer's envelope is a few kilobytes; a larger message drops its connection. */
    zsock_set_maxmsgsize(router, LINK_MAX_MSG);
    mc_curve_server(cert, router, "link");
    if (zsock_bind(router, "%s", link->bind) < 0) {
        snprintf(err, errlen, "cannot bind the link at %s: %s", link->bind,
                 zmq_strerror(zmq_errno()));
        zsock_destroy(&router);
        zcert_destroy(&cert);
        return -1;
    }
    bus->link_cert = cert;
    bus->link_router = mc_zsock_new(bus->loop, &router, on_router_recv, bus);
    bus->link_accept = link->accept;
    bus->nlink_accept = link->naccept;
    for (size_t i = 0; i < link->npeers; i++)
        add_peer(bus, &link->peers[i], cert);
    mc_info("bus: link to other provinces at %s, our key %s, %zu peer(s)", link->bind,
            zcert_public_txt(cert), link->npeers);
    return 0;
}

const char *mc_bus_msg_peer(const mc_bus_msg_t *msg)
{
    return msg->peer;
}

const mc_envelope_t *mc_bus_msg_envelope(const mc_bus_msg_t *msg)
{
    return msg->env;
}

mc_db_conn_t *mc_bus_msg_conn(const mc_bus_msg_t *msg)
{
    return msg->bus->conn;
}

mc_bus_t *mc_bus_msg_bus(const mc_bus_msg_t *msg)
{
    return msg->bus;
}

static void maybe_stopped(mc_bus_t *bus)
{
    if (!bus->stopping || !bus->stop_done)
        return;
    if (bus->receiving || bus->claiming || bus->acking || bus->counting)
        return;
    void (*done)(void *) = bus->stop_done;
    bus->stop_done = NULL;
    done(bus->stop_arg);
}

void mc_bus_stop(mc_bus_t *bus, void (*done)(void *arg), void *arg)
{
    bus->stopping = 1;
    bus->stop_done = done;
    bus->stop_arg = arg;
    uv_timer_stop(&bus->tick);
    uv_timer_stop(&bus->stats_timer);
    /* Envelopes received but not started are dropped unacknowledged: they come again. */
    while (bus->queue_head) {
        item_t *it = bus->queue_head;
        bus->queue_head = it->next;
        item_free(it);
    }
    bus->queue_tail = NULL;
    bus->queued = 0;
    maybe_stopped(bus);
}

static void on_timer_closed(uv_handle_t *h)
{
    mc_bus_t *bus = h->data;
    if (--bus->open_handles > 0)
        return;
    for (size_t i = 0; i < bus->npeers; i++) {
        free(bus->peers[i]->name);
        free(bus->peers[i]->endpoint);
        free(bus->peers[i]->acks.data);
        free(bus->peers[i]);
    }
    free(bus->peers);
    free(bus->work);
    free(bus->sql_claim);
    free(bus->sql_ack);
    free(bus->sql_nack);
    free(bus->sql_inbox);
    free(bus->sql_dead);
    free(bus->sql_pending);
    free(bus->sql_retention);
    free(bus->service);
    free(bus);
}

void mc_bus_destroy(mc_bus_t **pbus)
{
    if (!pbus || !*pbus)
        return;
    mc_bus_t *bus = *pbus;
    *pbus = NULL;
    bus->stopping = 1;
    bus->stop_done = NULL; /* a stop not finished by now is not reported any more */
    while (bus->queue_head) {
        item_t *it = bus->queue_head;
        bus->queue_head = it->next;
        item_free(it);
    }
    mc_db_unlisten(bus->db);
    mc_zsock_destroy(&bus->router);
    mc_zsock_destroy(&bus->link_router);
    mc_curve_destroy(&bus->curve);
    zcert_destroy(&bus->cert);
    zcert_destroy(&bus->link_cert);
    for (size_t i = 0; i < bus->npeers; i++)
        mc_zsock_destroy(&bus->peers[i]->zs);
    uv_close((uv_handle_t *)&bus->tick, on_timer_closed);
    uv_close((uv_handle_t *)&bus->stats_timer, on_timer_closed);
}
