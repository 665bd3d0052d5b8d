/* test_envelope.c: message ids, body names and consumers, stamping and protobuf
 * encoding of bus envelopes. */
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "mc.h"
#include "unit.h"

/* ------------------------------------------------------------------ */
/* UUIDs                                                              */

static void uuid_format_and_version(void **state)
{
    (void)state;
    for (int n = 0; n < 200; n++) {
        char id[MC_UUID_LEN + 1];
        memset(id, 'x', sizeof id);
        mc_uuid(id);
        assert_int_equal(strlen(id), MC_UUID_LEN);
        for (int i = 0; i < MC_UUID_LEN; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23)
                assert_int_equal(id[i], '-');
            else
                assert_non_null(strchr("0123456789abcdef", id[i])); /* lower-case hex */
        }
        assert_int_equal(id[14], '4');           /* version 4 */
        assert_non_null(strchr("89ab", id[19])); /* RFC 4122 variant */
        assert_true(mc_uuid_valid(id));
    }
}

static int cmp_ids(const void *a, const void *b)
{
    return memcmp(a, b, MC_UUID_LEN);
}

static void uuid_unique(void **state)
{
    (void)state;
    enum { N = 10000 };
    char(*ids)[MC_UUID_LEN + 1] = calloc(N, sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < N; i++)
        mc_uuid(ids[i]);
    qsort(ids, N, sizeof *ids, cmp_ids);
    int dups = 0;
    for (int i = 1; i < N; i++)
        dups += memcmp(ids[i - 1], ids[i], MC_UUID_LEN) == 0;
    free(ids);
    assert_int_equal(dups, 0);
}

static void uuid_valid_good_and_bad(void **state)
{
    (void)state;
    assert_true(mc_uuid_valid("123e4567-e89b-42d3-a456-426614174000"));
    assert_true(mc_uuid_valid("00000000-0000-0000-0000-000000000000"));
    assert_true(mc_uuid_valid("123E4567-E89B-42D3-A456-426614174000")); /* PostgreSQL accepts it */

    static const char *const bad[] = {
        "",
        "123e4567-e89b-42d3-a456-42661417400",   /* 35 */
        "123e4567-e89b-42d3-a456-4266141740000", /* 37 */
        "123e4567e89b-42d3-a456-4266141740000",  /* dash missing */
        "123e4567-e89b-42d3-a456_426614174000",  /* wrong separator */
        "123e4567-e89b-42d3-a4564-26614174000",  /* dash misplaced */
        "123e4567-e89b-42d3-a456-42661417400g",  /* not hex */
        "{23e4567-e89b-42d3-a456-42661417400}",
        "123e4567-e89b-42d3-a456-42661417400 ",
        "-23e4567-e89b-42d3-a456-426614174000",
    };
    for (size_t i = 0; i < MC_COUNT(bad); i++)
        assert_false(mc_uuid_valid(bad[i]));
    assert_false(mc_uuid_valid(NULL));
}

/* ------------------------------------------------------------------ */
/* Names and topology                                                 */

static void body_names(void **state)
{
    (void)state;
    assert_string_equal(mc_body_name(MOTCUA__V1__ENVELOPE__BODY_DOSSIER_SUBMITTED),
                        "DossierSubmitted");
    assert_string_equal(mc_body_name(MOTCUA__V1__ENVELOPE__BODY_DOSSIER_STATUS_CHANGED),
                        "DossierStatusChanged");
    assert_string_equal(mc_body_name(MOTCUA__V1__ENVELOPE__BODY_NOTIFICATION_REQUESTED),
                        "NotificationRequested");
    assert_string_equal(mc_body_name(MOTCUA__V1__ENVELOPE__BODY_BUS_PROBE), "BusProbe");
    assert_string_equal(mc_body_name(MOTCUA__V1__ENVELOPE__BODY_ACK), "Ack");
    assert_string_equal(mc_body_name(MOTCUA__V1__ENVELOPE__BODY_NACK), "Nack");
    assert_null(mc_body_name(MOTCUA__V1__ENVELOPE__BODY__NOT_SET));
    assert_null(mc_body_name((mc_body_t)4242));
}

static void body_consumers(void **state)
{
    (void)state;
    static const struct {
        mc_body_t body;
        const char *consumers[4]; /* none: nobody consumes it through the outbox */
    } table[] = {
        {MOTCUA__V1__ENVELOPE__BODY_DOSSIER_SUBMITTED, {"routing"}},
        {MOTCUA__V1__ENVELOPE__BODY_DOSSIER_STATUS_CHANGED, {"intake", "payment", "interconnect"}},
        {MOTCUA__V1__ENVELOPE__BODY_NOTIFICATION_REQUESTED, {"notify"}},
        {MOTCUA__V1__ENVELOPE__BODY_HANDOFF_PROGRESS, {"intake"}},
        /* between provinces: always to a named province (mc_outbox_add_to) */
        {MOTCUA__V1__ENVELOPE__BODY_PEER_HANDOFF, {NULL}},
        {MOTCUA__V1__ENVELOPE__BODY_PEER_STATUS, {NULL}},
        {MOTCUA__V1__ENVELOPE__BODY_BUS_PROBE, {NULL}},
        {MOTCUA__V1__ENVELOPE__BODY_ACK, {NULL}},
        {MOTCUA__V1__ENVELOPE__BODY_NACK, {NULL}},
        {MOTCUA__V1__ENVELOPE__BODY__NOT_SET, {NULL}},
        {(mc_body_t)4242, {NULL}},
    };
    for (size_t i = 0; i < MC_COUNT(table); i++) {
        const char *const *services = (const char *const *)&table; /* overwritten */
        size_t n = mc_body_consumers(table[i].body, &services);
        size_t want = 0;
        while (want < 4 && table[i].consumers[want])
            want++;
        assert_int_equal(n, want);
        if (!want)
            assert_null(services);
        for (size_t k = 0; k < want; k++)
            assert_string_equal(services[k], table[i].consumers[k]);
    }
}

/* ------------------------------------------------------------------ */
/* Stamping and encoding                                              */

static void stamp_fills_header(void **state)
{
    (void)state;
    Motcua__V1__DossierSubmitted ds = MOTCUA__V1__DOSSIER_SUBMITTED__INIT;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    ds.code = "G09.12-241123-0001";
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_DOSSIER_SUBMITTED;
    env.dossier_submitted = &ds;
    char code[] = "G09.12-241123-0001";
    env.dossier_code = code;

    int64_t before = mc_wall_ms();
    mc_envelope_stamp(&env, "intake", "trace-1", "11111111-2222-4333-8444-555555555555");
    assert_true(mc_uuid_valid(env.message_id));
    assert_string_equal(env.type, "DossierSubmitted");
    assert_string_equal(env.source, "intake");
    assert_string_equal(env.trace_id, "trace-1");
    assert_string_equal(env.causation_id, "11111111-2222-4333-8444-555555555555");
    assert_string_equal(env.dossier_code, "G09.12-241123-0001");
    assert_true(env.time_ms >= before && env.time_ms <= mc_wall_ms());
    assert_int_equal(env.schema_version, MC_SCHEMA_VERSION);
    mc_envelope_free_stamp(&env);
    assert_null(env.message_id);
    assert_null(env.type);
    assert_null(env.source);
    assert_null(env.trace_id);
    assert_null(env.causation_id);
    mc_envelope_free_stamp(&env); /* safe twice */
}

static void stamp_defaults(void **state)
{
    (void)state;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT; /* no body, no dossier */
    mc_envelope_stamp(&env, "routing", NULL, NULL);
    assert_string_equal(env.type, "Unknown");
    assert_string_equal(env.trace_id, env.message_id); /* a new trace starts here */
    assert_string_equal(env.causation_id, "");
    assert_string_equal(env.dossier_code, "");
    mc_envelope_free_stamp(&env);

    mc_envelope_stamp(&env, "routing", "", NULL); /* empty trace: also new */
    assert_string_equal(env.trace_id, env.message_id);
    mc_envelope_free_stamp(&env);
}

static void stamp_gives_new_ids(void **state)
{
    (void)state;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_BUS_PROBE;
    Motcua__V1__BusProbe probe = MOTCUA__V1__BUS_PROBE__INIT;
    env.bus_probe = &probe;
    mc_envelope_stamp(&env, "intake", NULL, NULL);
    char first[MC_UUID_LEN + 1];
    strcpy(first, env.message_id);
    mc_envelope_free_stamp(&env);
    mc_envelope_stamp(&env, "intake", NULL, NULL);
    assert_string_not_equal(first, env.message_id);
    mc_envelope_free_stamp(&env);
}

/* The outbox stamps the caller's envelope, encodes it and frees the stamp; a caller
 * that adds the same envelope twice (two named destinations) must get its dossier
 * code both times, or the second copy loses its place in the dossier's order. */
static void stamp_again_keeps_dossier_code(void **state)
{
    (void)state;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    env.dossier_code = "G09-0042";
    mc_envelope_stamp(&env, "intake", NULL, NULL);
    assert_string_equal(env.dossier_code, "G09-0042");
    mc_envelope_free_stamp(&env);
    mc_envelope_stamp(&env, "intake", NULL, NULL);
    int kept = env.dossier_code && strcmp(env.dossier_code, "G09-0042") == 0;
    mc_envelope_free_stamp(&env);
    assert_true(kept);
}

static void encode_decode_round_trip(void **state)
{
    (void)state;
    Motcua__V1__Applicant ap = MOTCUA__V1__APPLICANT__INIT;
    ap.name = "Nguyễn Văn A";
    ap.id_number = "001203004567";
    ap.phone = "0912345678";
    Motcua__V1__Document d1 = MOTCUA__V1__DOCUMENT__INIT, d2 = MOTCUA__V1__DOCUMENT__INIT;
    d1.kind = "to_khai";
    d1.size = 12345;
    d2.kind = "cccd";
    d2.sha256 = "ab";
    Motcua__V1__Document *docs[] = {&d1, &d2};
    Motcua__V1__DossierSubmitted ds = MOTCUA__V1__DOSSIER_SUBMITTED__INIT;
    ds.code = "G09.12-241123-0001";
    ds.procedure_code = "1.001234";
    ds.applicant = &ap;
    ds.n_documents = 2;
    ds.documents = docs;
    ds.fee_vnd = 50000;
    ds.due_at_ms = 1790000000000LL;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_DOSSIER_SUBMITTED;
    env.dossier_submitted = &ds;
    env.dossier_code = ds.code;
    mc_envelope_stamp(&env, "intake", "t-9", NULL);

    size_t len = 0;
    uint8_t *bytes = mc_envelope_encode(&env, &len);
    assert_non_null(bytes);
    assert_true(len > 60);
    mc_envelope_t *back = mc_envelope_decode(bytes, len);
    assert_non_null(back);
    assert_string_equal(back->message_id, env.message_id);
    assert_string_equal(back->type, "DossierSubmitted");
    assert_string_equal(back->dossier_code, "G09.12-241123-0001");
    assert_string_equal(back->trace_id, "t-9");
    assert_string_equal(back->source, "intake");
    assert_int_equal(back->time_ms, env.time_ms);
    assert_int_equal(back->schema_version, MC_SCHEMA_VERSION);
    assert_int_equal(back->body_case, MOTCUA__V1__ENVELOPE__BODY_DOSSIER_SUBMITTED);
    const Motcua__V1__DossierSubmitted *b = back->dossier_submitted;
    assert_string_equal(b->procedure_code, "1.001234");
    assert_string_equal(b->applicant->name, "Nguyễn Văn A");
    assert_string_equal(b->applicant->id_number, "001203004567");
    assert_int_equal(b->n_documents, 2);
    assert_string_equal(b->documents[0]->kind, "to_khai");
    assert_int_equal(b->documents[0]->size, 12345);
    assert_string_equal(b->documents[1]->sha256, "ab");
    assert_int_equal(b->fee_vnd, 50000);
    assert_int_equal(b->due_at_ms, 1790000000000LL);

    /* Encoding the decoded copy gives the same bytes. */
    size_t len2 = 0;
    uint8_t *again = mc_envelope_encode(back, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(again, bytes, len);
    free(again);

    mc_envelope_free(&back);
    assert_null(back);
    mc_envelope_free(&back); /* safe twice */
    free(bytes);
    mc_envelope_free_stamp(&env);
}

static void ack_and_nack_round_trip(void **state)
{
    (void)state;
    Motcua__V1__Nack n = MOTCUA__V1__NACK__INIT;
    n.message_id = "123e4567-e89b-42d3-a456-426614174000";
    n.reason = "database unavailable";
    n.retry_after_ms = 500;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_NACK;
    env.nack = &n;
    size_t len;
    uint8_t *bytes = mc_envelope_encode(&env, &len);
    mc_envelope_t *back = mc_envelope_decode(bytes, len);
    assert_non_null(back);
    assert_int_equal(back->body_case, MOTCUA__V1__ENVELOPE__BODY_NACK);
    assert_string_equal(back->nack->message_id, n.message_id);
    assert_string_equal(back->nack->reason, "database unavailable");
    assert_int_equal(back->nack->retry_after_ms, 500);
    mc_envelope_free(&back);
    free(bytes);
}

static void decode_garbage_is_null(void **state)
{
    (void)state;
    static const uint8_t varint_too_long[] = {0x38, 0xff, 0xff, 0xff, 0xff, 0xff,
                                              0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t bad_wire_type[] = {0x0f, 0x01};
    static const uint8_t len_past_end[] = {0x0a, 0x40, 'a', 'b'};
    static const char json[] = "{\"type\":\"DossierSubmitted\"}";
    assert_null(mc_envelope_decode(varint_too_long, sizeof varint_too_long));
    assert_null(mc_envelope_decode(bad_wire_type, sizeof bad_wire_type));
    assert_null(mc_envelope_decode(len_past_end, sizeof len_past_end));
    assert_null(mc_envelope_decode((const uint8_t *)json, sizeof json - 1));
    /* Field number 0 written as an overlong varint, and 2^29: protobuf-c takes both
     * as unknown fields but could not give them back (found by tests/fuzz). */
    static const uint8_t field_zero[] = {0x82, 0x00, 0x00};
    static const uint8_t field_too_big[] = {0x80, 0x80, 0x80, 0x80, 0x10, 0x00};
    static const uint8_t nested_field_zero[] = {0xca, 0x02, 0x03, 0x82, 0x00, 0x00};
    assert_null(mc_envelope_decode(field_zero, sizeof field_zero));
    assert_null(mc_envelope_decode(field_too_big, sizeof field_too_big));
    assert_null(mc_envelope_decode(nested_field_zero, sizeof nested_field_zero));

    /* A valid envelope cut short is not an envelope either. */
    Motcua__V1__BusProbe probe = MOTCUA__V1__BUS_PROBE__INIT;
    probe.stream = "s";
    probe.seq = 7;
    mc_envelope_t env = MOTCUA__V1__ENVELOPE__INIT;
    env.body_case = MOTCUA__V1__ENVELOPE__BODY_BUS_PROBE;
    env.bus_probe = &probe;
    mc_envelope_stamp(&env, "intake", NULL, NULL);
    size_t len;
    uint8_t *bytes = mc_envelope_encode(&env, &len);
    assert_null(mc_envelope_decode(bytes, len - 1));
    mc_envelope_t *whole = mc_envelope_decode(bytes, len);
    assert_non_null(whole);
    assert_int_equal(whole->bus_probe->seq, 7);
    mc_envelope_free(&whole);
    free(bytes);
    mc_envelope_free_stamp(&env);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(uuid_format_and_version),
    cmocka_unit_test(uuid_unique),
    cmocka_unit_test(uuid_valid_good_and_bad),
    cmocka_unit_test(body_names),
    cmocka_unit_test(body_consumers),
    cmocka_unit_test(stamp_fills_header),
    cmocka_unit_test(stamp_defaults),
    cmocka_unit_test(stamp_gives_new_ids),
    cmocka_unit_test(stamp_again_keeps_dossier_code),
    cmocka_unit_test(encode_decode_round_trip),
    cmocka_unit_test(ack_and_nack_round_trip),
    cmocka_unit_test(decode_garbage_is_null),
};
MC_TEST_GROUP(envelope, tests, NULL, NULL);
