/* fuzz_submission.c: a dossier submission's body (POST /v1/dossiers) as intake reads
 * it: parsed as mc_http_json_body does, then submit_validate. A refusal must carry a
 * status, a code and the field at fault; an accepted body must have what the rest of
 * submit.c takes for granted. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "intake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *in = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (!in || !json_is_object(in)) {
        json_decref(in);
        return 0;
    }
    submit_verdict_t v;
    memset(&v, 0, sizeof v);
    const char *agency = NULL;
    if (submit_validate(in, &agency, &v) != 0) {
        if ((v.status != 400 && v.status != 422) || !v.code || !*v.field || !*v.message ||
            !memchr(v.message, '\0', sizeof v.message))
            abort(); /* a refusal the client cannot act on */
    } else {
        const json_t *applicant = json_object_get(in, "applicant");
        if (!json_is_string(json_object_get(in, "procedure")) ||
            !json_is_string(json_object_get(in, "channel")) || !json_is_object(applicant) ||
            !json_is_string(json_object_get(applicant, "name")) ||
            (agency && agency != json_string_value(json_object_get(in, "agency"))))
            abort(); /* accepted without what submit.c then reads */
    }
    json_decref(in);
    return 0;
}
