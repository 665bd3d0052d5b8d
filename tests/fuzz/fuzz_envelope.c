/* fuzz_envelope.c: the bus envelope decoder, on bytes as a peer or a dead letter gives them.
 *
 * Decode; walk every field the decoder produced (through the protobuf-c descriptors,
 * so every body kind, PeerHandoff, PeerStatus and HandoffRequested included, is read
 * to its last byte), ask the topology and state tables about what came, then encode
 * again, decode that and check that a second encoding gives the same bytes. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "dossier_state.h"
#include "envelope.h"
#include "fuzz.h"

static size_t walked; /* keeps the walk from being optimised away */

static void walk(const ProtobufCMessage *msg);

static void walk_value(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        assert(s); /* protobuf-c gives "" for an absent string */
        walked += strlen(s);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        for (size_t i = 0; i < b->len; i++)
            walked += b->data[i];
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        if (m)
            walk(m);
        break;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumDescriptor *e = f->descriptor;
        walked += protobuf_c_enum_descriptor_get_value(e, v) != NULL;
        break;
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: walked += (size_t) * (const uint64_t *)p; break;
    case PROTOBUF_C_TYPE_BOOL: walked += *(const protobuf_c_boolean *)p != 0; break;
    case PROTOBUF_C_TYPE_DOUBLE: walked += *(const double *)p > 0; break;
    case PROTOBUF_C_TYPE_FLOAT: walked += *(const float *)p > 0; break;
    default: walked += *(const uint32_t *)p; break;
    }
}

static size_t value_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    default: return 4;
    }
}

static void walk(const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const char *base = (const char *)msg;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *member = base + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            /* Only the member the case names is set. */
            if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
                continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)member;
            assert(n == 0 || arr);
            for (size_t k = 0; k < n; k++)
                walk_value(f, arr + k * value_size(f));
        } else {
            walk_value(f, member);
        }
    }
}

/* What a receiver asks of an envelope before any handler runs. */
static void ask_tables(const mc_envelope_t *env)
{
    const char *const *services;
    const char *name = mc_body_name(env->body_case);
    size_t n = mc_body_consumers(env->body_case, &services);
    for (size_t i = 0; i < n; i++)
        walked += strlen(services[i]);
    walked += name ? strlen(name) : 0;
    walked += (size_t)mc_uuid_valid(env->message_id) + (size_t)mc_uuid_valid(env->causation_id);
    switch (env->body_case) {
    case MOTCUA__V1__ENVELOPE__BODY_PEER_STATUS: {
        const Motcua__V1__PeerStatus *s = env->peer_status;
        walked += strlen(mc_state_name(s->state));
        walked += strlen(mc_national_label(s->national_status));
        walked += (size_t)mc_state_national(s->state) + (size_t)mc_state_is_open(s->state);
        break;
    }
    case MOTCUA__V1__ENVELOPE__BODY_DOSSIER_STATUS_CHANGED: {
        const Motcua__V1__DossierStatusChanged *c = env->dossier_status_changed;
        walked += strlen(mc_state_name(c->from)) + strlen(mc_state_name(c->to));
        break;
    }
    case MOTCUA__V1__ENVELOPE__BODY_DOSSIER_SUBMITTED: {
        const char *channel = mc_channel_name(env->dossier_submitted->channel);
        walked += channel ? strlen(channel) : 0;
        break;
    }
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mc_envelope_t *env = mc_envelope_decode(data, size);
    if (!env)
        return 0;
    walk(&env->base);
    ask_tables(env);

    size_t len1, len2;
    uint8_t *once = mc_envelope_encode(env, &len1);
    mc_envelope_t *back = mc_envelope_decode(once, len1);
    if (!back)
        abort(); /* our own encoding must decode */
    walk(&back->base);
    uint8_t *twice = mc_envelope_encode(back, &len2);
    if (len1 != len2 || memcmp(once, twice, len1) != 0)
        abort(); /* encode(decode(encode(x))) differs from encode(x) */
    free(once);
    free(twice);
    mc_envelope_free(&back);
    mc_envelope_free(&env);
    return 0;
}
