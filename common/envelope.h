/* envelope.h: building, naming, encoding and routing bus envelopes.
 *
 * The topology (which services consume which body type) lives here, in one table,
 * so an emitter never names its consumers. */
#ifndef MC_ENVELOPE_H
#define MC_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "mc.h"
#include "motcua/envelope.pb-c.h"

typedef Motcua__V1__Envelope mc_envelope_t;
typedef Motcua__V1__Envelope__BodyCase mc_body_t;

#define MC_SCHEMA_VERSION 1
#define MC_UUID_LEN       36

/* A random (version 4) UUID as 36 lower-case characters plus NUL. */
void mc_uuid(char out[MC_UUID_LEN + 1]);
/* 1 if s is a UUID in canonical text form. */
int mc_uuid_valid(const char *s);

/* The type name of a body case ("DossierSubmitted"), or NULL if unknown. */
const char *mc_body_name(mc_body_t body);
/* The services that consume a body type; returns how many (0 if none). */
size_t mc_body_consumers(mc_body_t body, const char *const **services);

/* Stamp an envelope before it is written to the outbox: new message id, type from
 * the body, source, trace, causation, time, schema version. Those strings are
 * allocated with mc_strdup and freed by mc_envelope_free_stamp; dossier_code stays
 * the caller's (NULL becomes ""). */
void mc_envelope_stamp(mc_envelope_t *env, const char *source, const char *trace_id,
                       const char *causation_id);
void mc_envelope_free_stamp(mc_envelope_t *env);

/* Encode to a newly allocated buffer; the caller frees it. */
uint8_t *mc_envelope_encode(const mc_envelope_t *env, size_t *len);
/* Decode; NULL if the bytes are not an Envelope, or hold a field number protobuf does
 * not allow (0, or beyond 2^29 - 1: it would not survive re-encoding). Free with
 * mc_envelope_free. */
mc_envelope_t *mc_envelope_decode(const uint8_t *data, size_t len);
void mc_envelope_free(mc_envelope_t **env);

#endif
