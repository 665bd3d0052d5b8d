/* envelope.c: envelope ids, names, topology and protobuf encoding. */
#include "envelope.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

void mc_uuid(char out[MC_UUID_LEN + 1])
{
    uint8_t b[16];
    randombytes_buf(b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, MC_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

int mc_uuid_valid(const char *s)
{
    if (!s || strlen(s) != MC_UUID_LEN)
        return 0;
    for (int i = 0; i < MC_UUID_LEN; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

/* ---- the topology: body type -> consuming services ---- */

static const char *const to_routing[] = {"routing"};
static const char *const to_notify[] = {"notify"};
static const char *const to_interconnect[] = {"interconnect"};
static const char *const to_payment[] = {"payment"};
static const char *const to_postal[] = {"postal"};
static const char *const to_intake[] = {"intake"};
/* payment hears of status changes for refunds (refusal at the desk, withdrawal);
 * interconnect for the national portal and for dossiers a peer province handed us. */
static const char *const to_intake_payment_interconnect[] = {"intake", "payment", "interconnect"};

static const struct {
    mc_body_t body;
    const char *name;
    const char *const *consumers;
    size_t nconsumers;
} bodies[] = {
    {MOTCUA__V1__ENVELOPE__BODY_DOSSIER_SUBMITTED, "DossierSubmitted", to_routing, 1},
    {MOTCUA__V1__ENVELOPE__BODY_DOSSIER_STATUS_CHANGED, "DossierStatusChanged",
     to_intake_payment_interconnect, 3},
    {MOTCUA__V1__ENVELOPE__BODY_NOTIFICATION_REQUESTED, "NotificationRequested", to_notify, 1},
    {MOTCUA__V1__ENVELOPE__BODY_HANDOFF_REQUESTED, "HandoffRequested", to_interconnect, 1},
    {MOTCUA__V1__ENVELOPE__BODY_PAYMENT_REQUESTED, "PaymentRequested", to_payment, 1},
    {MOTCUA__V1__ENVELOPE__BODY_PAYMENT_SETTLED, "PaymentSettled", to_routing, 1},
    {MOTCUA__V1__ENVELOPE__BODY_PAYMENT_FAILED, "PaymentFailed", to_routing, 1},
    {MOTCUA__V1__ENVELOPE__BODY_REFUND_COMPLETED, "RefundCompleted", to_routing, 1},
    {MOTCUA__V1__ENVELOPE__BODY_RESULT_READY, "ResultReady", to_postal, 1},
    {MOTCUA__V1__ENVELOPE__BODY_RESULT_DELIVERED, "ResultDelivered", to_routing, 1},
    {MOTCUA__V1__ENVELOPE__BODY_DELIVERY_FAILED, "DeliveryFailed", to_routing, 1},
    {MOTCUA__V1__ENVELOPE__BODY_HANDOFF_COMPLETED, "HandoffCompleted", to_routing, 1},
    {MOTCUA__V1__ENVELOPE__BODY_HANDOFF_FAILED, "HandoffFailed", to_routing, 1},
    {MOTCUA__V1__ENVELOPE__BODY_HANDOFF_PROGRESS, "HandoffProgress", to_intake, 1},
    /* Between provinces: sent to a named peer province (mc_outbox_add_to). */
    {MOTCUA__V1__ENVELOPE__BODY_PEER_HANDOFF, "PeerHandoff", NULL, 0},
    {MOTCUA__V1__ENVELOPE__BODY_PEER_STATUS, "PeerStatus", NULL, 0},
    {MOTCUA__V1__ENVELOPE__BODY_BUS_PROBE, "BusProbe", NULL, 0},
    {MOTCUA__V1__ENVELOPE__BODY_ACK, "Ack", NULL, 0},
    {MOTCUA__V1__ENVELOPE__BODY_NACK, "Nack", NULL, 0},
};

const char *mc_body_name(mc_body_t body)
{
    for (size_t i = 0; i < MC_COUNT(bodies); i++)
        if (bodies[i].body == body)
            return bodies[i].name;
    return NULL;
}

size_t mc_body_consumers(mc_body_t body, const char *const **services)
{
    for (size_t i = 0; i < MC_COUNT(bodies); i++)
        if (bodies[i].body == body) {
            *services = bodies[i].consumers;
            return bodies[i].nconsumers;
        }
    *services = NULL;
    return 0;
}

void mc_envelope_stamp(mc_envelope_t *env, const char *source, const char *trace_id,
                       const char *causation_id)
{
    char id[MC_UUID_LEN + 1];
    mc_uuid(id);
    const char *name = mc_body_name(env->body_case);
    env->message_id = mc_strdup(id);
    env->type = mc_strdup(name ? name : "Unknown");
    env->source = mc_strdup(source);
    env->trace_id = mc_strdup(trace_id && *trace_id ? trace_id : id);
    env->causation_id = mc_strdup(causation_id ? causation_id : "");
    /* The dossier code is the caller's: left as it is (not copied, not freed), so an
     * envelope can be stamped again, e.g. for a second destination. */
    if (!env->dossier_code)
        env->dossier_code = (char *)protobuf_c_empty_string;
    env->time_ms = mc_wall_ms();
    env->schema_version = MC_SCHEMA_VERSION;
}

void mc_envelope_free_stamp(mc_envelope_t *env)
{
    mc_free(&env->message_id);
    mc_free(&env->type);
    mc_free(&env->source);
    mc_free(&env->trace_id);
    mc_free(&env->causation_id);
}

uint8_t *mc_envelope_encode(const mc_envelope_t *env, size_t *len)
{
    *len = motcua__v1__envelope__get_packed_size(env);
    uint8_t *buf = mc_alloc(*len);
    motcua__v1__envelope__pack(env, buf);
    return buf;
}

/* The largest field number protobuf allows (2^29 - 1). */
#define MAX_FIELD_NUMBER 536870911u

/* 1 if every field of m and of its sub-messages, unknown ones included, has a field
 * number protobuf allows. protobuf-c 1.4 checks for field number 0 only when the tag
 * is one byte: written as an overlong varint (0x82 0x00) it is taken, and so is a
 * number beyond 2^29 - 1, and kept as an unknown field that it then packs as bytes no
 * decoder accepts (field 0) or as another field (the number cut to 29 bits). */
static int field_numbers_valid(const ProtobufCMessage *m)
{
    for (size_t i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0 || m->unknown_fields[i].tag > MAX_FIELD_NUMBER)
            return 0;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue; /* another member of the oneof is set */
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *subs = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t k = 0; k < n; k++)
                if (!field_numbers_valid(subs[k]))
                    return 0;
        } else {
            const ProtobufCMessage *sub = *(ProtobufCMessage *const *)(base + f->offset);
            if (sub && !field_numbers_valid(sub))
                return 0;
        }
    }
    return 1;
}

mc_envelope_t *mc_envelope_decode(const uint8_t *data, size_t len)
{
    mc_envelope_t *env = motcua__v1__envelope__unpack(NULL, len, data);
    /* Envelopes are stored and passed on re-encoded (a peer's HandoffRequested is kept
     * packed in interconnect's table): one that would not decode again is refused now,
     * as undecodable, rather than planted where a later reader fails on it. */
    if (env && !field_numbers_valid(&env->base))
        mc_envelope_free(&env);
    return env;
}

void mc_envelope_free(mc_envelope_t **env)
{
    if (env && *env) {
        motcua__v1__envelope__free_unpacked(*env, NULL);
        *env = NULL;
    }
}
