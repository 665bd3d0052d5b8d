/* bus-peer: a service built only from common/ that sends and receives BusProbe
 * envelopes, so tests and benchmarks can drive the bus between two processes.
 *
 *   bus-peer SERVICE        runs as SERVICE (its ports, bus endpoint and schema)
 *   POST /probe/send?to=routing&streams=100&per_stream=100&pad=0&chunk=1000
 *        writes streams*per_stream probes to the outbox, `chunk` per transaction,
 *        interleaving streams; answers when all are committed.
 * Received probes are recorded in <schema>.probe_log by the BusProbe handler.
 *
 * With BUS_PEER_LINK_BIND set it also opens a province link (mc_bus_link) with the key
 * pair BUS_PEER_CERT and one peer BUS_PEER_PEER (name) at BUS_PEER_PEER_ENDPOINT with
 * the public key BUS_PEER_PEER_KEY; BusProbe is then taken only from that link, and
 * /probe/send?to=<peer name> sends over CURVE (the benchmark of the link). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "service.h"

extern const mc_migration_t mc_sql_probe[];
extern const int mc_sql_probe_count;

/* ---------------------------------------------------------------- receiving */

static void on_logged(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_bus_done(arg, status, status == MC_OK ? NULL : res ? PQresultErrorMessage(res) : "log");
}

static void probe_handle(mc_bus_msg_t *msg, void *arg)
{
    mc_service_t *svc = arg;
    const mc_envelope_t *env = mc_bus_msg_envelope(msg);
    const Motcua__V1__BusProbe *p = env->bus_probe;
    if (!p->stream[0]) {
        mc_bus_done(msg, MC_EINVAL, "probe without stream");
        return;
    }
    char *sql = mc_sprintf(
        "INSERT INTO %s.probe_log (stream, seq, message_id, in_order) VALUES ($1, $2::bigint, "
        "$3::uuid, $2::bigint = coalesce((SELECT max(seq) FROM %s.probe_log WHERE stream = $1), 0) "
        "+ 1)",
        mc_service_name(svc), mc_service_name(svc));
    mc_db_params_t params = {0};
    mc_db_param_text(&params, p->stream);
    mc_db_param_int(&params, (long long)p->seq);
    mc_db_param_text(&params, env->message_id);
    mc_db_query(mc_bus_msg_conn(msg), sql, &params, 0, on_logged, msg);
    free(sql);
}

/* ---------------------------------------------------------------- sending */

typedef struct {
    mc_http_req_t *req;
    mc_service_t *svc;
    mc_db_conn_t *conn;
    char to[32];
    long streams, per_stream, pad, chunk;
    long next, total;
    mc_outbox_t *outbox;
    uint8_t *padding;
    uint64_t started;
} sender_t;

static void send_chunk(sender_t *s);

static void sender_end(sender_t *s, int status, const char *why)
{
    if (s->conn)
        mc_db_release(s->conn);
    if (status == MC_OK) {
        double secs = (double)(mc_now_ms() - s->started) / 1000.0;
        mc_http_reply_json(
            s->req, 200, json_pack("{s:i, s:f}", "written", (json_int_t)s->total, "seconds", secs));
    } else {
        mc_http_reply_error(s->req, 503, "unavailable", why, NULL);
    }
    mc_outbox_destroy(&s->outbox);
    free(s->padding);
    free(s);
}

static void on_chunk_committed(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    sender_t *s = arg;
    if (status != MC_OK) {
        sender_end(s, status, res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    if (s->next >= s->total)
        sender_end(s, MC_OK, NULL);
    else
        send_chunk(s);
}

static void on_chunk_written(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    sender_t *s = arg;
    mc_outbox_destroy(&s->outbox);
    if (status != MC_OK) {
        sender_end(s, status, res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    mc_db_query(conn, "COMMIT", NULL, 0, on_chunk_committed, s);
}

static void on_chunk_begun(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    sender_t *s = arg;
    if (status != MC_OK) {
        sender_end(s, status, res ? PQresultErrorMessage(res) : mc_strerror(status));
        return;
    }
    s->outbox = mc_outbox_new(mc_service_name(s->svc));
    for (long i = 0; i < s->chunk && s->next < s->total; i++, s->next++) {
        /* Interleave streams so that consecutive envelopes belong to different ones. */
        char stream[32];
        snprintf(stream, sizeof stream, "stream-%05ld", s->next % s->streams);
        Motcua__V1__BusProbe probe = MOTCUA__V1__BUS_PROBE__INIT;
        mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
        probe.stream = stream;
        probe.seq = (uint64_t)(s->next / s->streams + 1);
        probe.pad.data = s->padding;
        probe.pad.len = (size_t)s->pad;
        env.dossier_code = stream;
        env.body_case = MOTCUA__V1__ENVELOPE__BODY_BUS_PROBE;
        env.bus_probe = &probe;
        mc_outbox_add_to(s->outbox, s->to, &env, NULL, NULL);
    }
    mc_outbox_write(s->outbox, conn, on_chunk_written, s);
}

static void send_chunk(sender_t *s)
{
    mc_db_query(s->conn, "BEGIN", NULL, 0, on_chunk_begun, s);
}

static void on_sender_conn(mc_db_conn_t *conn, int status, void *arg)
{
    sender_t *s = arg;
    if (status != MC_OK) {
        sender_end(s, status, "no database connection");
        return;
    }
    s->conn = conn;
    send_chunk(s);
}

static long query_long(mc_http_req_t *req, const char *name, long dflt, long min, long max,
                       int *bad)
{
    const char *v = mc_http_query(req, name);
    if (!v)
        return dflt;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < min || n > max)
        *bad = 1;
    return n;
}

static void probe_send(mc_http_req_t *req, void *arg)
{
    int bad = 0;
    sender_t *s = mc_new(sender_t);
    s->req = req;
    s->svc = arg;
    s->streams = query_long(req, "streams", 100, 1, 100000, &bad);
    s->per_stream = query_long(req, "per_stream", 100, 1, 1000000, &bad);
    s->pad = query_long(req, "pad", 0, 0, 65536, &bad);
    s->chunk = query_long(req, "chunk", 1000, 1, 10000, &bad);
    const char *to = mc_http_query(req, "to");
    if (bad || !to || strlen(to) >= sizeof s->to) {
        free(s);
        mc_http_reply_error(req, 400, "invalid", "to=SERVICE and numeric limits required", NULL);
        return;
    }
    snprintf(s->to, sizeof s->to, "%s", to);
    s->total = s->streams * s->per_stream;
    s->padding = mc_alloc((size_t)s->pad + 1);
    memset(s->padding, 'x', (size_t)s->pad);
    s->started = mc_now_ms();
    mc_db_acquire(mc_service_db(s->svc), on_sender_conn, s);
}

static const mc_route_t routes[] = {
    {"POST", "/probe/send", probe_send},
};

static const mc_bus_handler_t handlers[] = {
    {MOTCUA__V1__ENVELOPE__BODY_BUS_PROBE, probe_handle},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bus-peer SERVICE (intake, routing, ...)\n");
        return 2;
    }
    mc_service_t *svc =
        mc_service_new(argv[1], argc - 1, argv + 1, mc_sql_probe, mc_sql_probe_count);
    mc_service_routes(svc, routes, MC_COUNT(routes));
    mc_service_handlers(svc, handlers, MC_COUNT(handlers));
    const char *bind = getenv("BUS_PEER_LINK_BIND");
    if (bind && *bind) {
        static const mc_body_t accept[] = {MOTCUA__V1__ENVELOPE__BODY_BUS_PROBE};
        const mc_bus_peer_t peer = {getenv("BUS_PEER_PEER"), getenv("BUS_PEER_PEER_ENDPOINT"),
                                    getenv("BUS_PEER_PEER_KEY")};
        const mc_bus_link_t link = {.bind = bind,
                                    .cert_file = getenv("BUS_PEER_CERT"),
                                    .peers = &peer,
                                    .npeers = 1,
                                    .accept = accept,
                                    .naccept = 1};
        char err[256];
        if (!peer.name || !peer.endpoint || !peer.server_key ||
            mc_bus_link(mc_service_bus(svc), &link, err, sizeof err)) {
            fprintf(stderr, "bus-peer: cannot open the link: %s\n",
                    peer.name && peer.endpoint && peer.server_key ? err : "BUS_PEER_PEER* unset");
            return 2;
        }
    }
    return mc_service_run(&svc);
}
