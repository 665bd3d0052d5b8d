/* fuzz.h: what the libFuzzer targets of tests/fuzz share (request.c).
 *
 * Each target is one fuzz_<name>.c with LLVMFuzzerTestOneInput, built by `make
 * fuzz-build` into build/fuzz/fuzz_<name> with clang's -fsanitize=fuzzer,address,
 * undefined against a copy of common/ compiled with the same sanitizers. */
#ifndef MC_FUZZ_H
#define MC_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A request as common/http.c wraps one, without a server: the query string (after the
 * '?', still encoded) goes through http.c's own parser, headers are name/value pairs
 * (nheaders pairs, 2 x nheaders strings). A reply is accepted and dropped. Free with
 * fuzz_request_free whether or not it was answered. */
mc_http_req_t *fuzz_request_new(const char *query, size_t query_len, const char *const *headers,
                                size_t nheaders, const char *body, size_t body_len);
/* The i-th query parameter as http.c decoded it; 0 past the last. */
int fuzz_request_query_at(const mc_http_req_t *req, size_t i, const char **name,
                          const char **value);
/* 1 once a reply was made (a mc_http_reply_* call). */
int fuzz_request_replied(const mc_http_req_t *req);
void fuzz_request_free(mc_http_req_t **req);

/* Send what the code under test writes to stderr (its log lines) to fd, or to
 * /dev/null if fd < 0, until fuzz_stderr_back; sanitizer reports still reach the real
 * stderr. */
void fuzz_stderr_to(int fd);
void fuzz_stderr_back(void);

/* Cut the next field, up to sep or the end, off *data: a NUL-terminated copy the caller
 * frees (fields may hold NUL bytes: *len is the length). */
char *fuzz_field(const uint8_t **data, size_t *size, char sep, size_t *len);

#endif
