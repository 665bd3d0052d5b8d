/* fuzz_log.c: the log line writer, which formats values from everywhere (trace ids
 * from headers and peers' envelopes, dossier codes, messages quoting input).
 *
 * Input: a flags byte (bit 0 JSON lines, bit 1 a trace, bit 2 a dossier code; bits 3-7
 * pick the mask's output size), then trace and dossier each ending with '\n', then
 * the message. The line written must be one line ending with '\n', and no run of 9
 * or more digits (an ID or phone number) may survive the masking. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "log.h"

static int line_pipe[2] = {-1, -1};

/* 1 if s (len bytes) has 9 digits in a row. */
static int has_long_number(const char *s, size_t len)
{
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        run = s[i] >= '0' && s[i] <= '9' ? run + 1 : 0;
        if (run >= 9)
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned flags = data[0];
    data++, size--;
    char *trace = fuzz_field(&data, &size, '\n', NULL);
    char *dossier = fuzz_field(&data, &size, '\n', NULL);
    char *msg = mc_strndup((const char *)data, size);

    /* The mask alone, into buffers of several sizes. */
    char masked[4096];
    size_t outlen = (flags >> 3) == 31 ? sizeof masked : flags >> 3;
    memset(masked, 'x', sizeof masked);
    mc_log_mask(msg, masked, outlen);
    if (outlen && (!memchr(masked, '\0', outlen) || has_long_number(masked, strlen(masked))))
        abort();

    /* The whole line, caught in a pipe (a line is at most 4 KiB: the pipe holds it). */
    if (line_pipe[0] < 0 && pipe(line_pipe) != 0)
        abort();
    mc_log_init("fuzz", MC_LOG_DEBUG, flags & 1);
    fuzz_stderr_to(line_pipe[1]);
    mc_logd(MC_LOG_WARN, flags & 2 ? trace : NULL, flags & 4 ? dossier : NULL, "%s", msg);
    fuzz_stderr_back();
    char line[8192];
    ssize_t n = read(line_pipe[0], line, sizeof line);
    if (n <= 0 || line[n - 1] != '\n' || memchr(line, '\n', (size_t)n - 1))
        abort(); /* not exactly one line */

    free(trace);
    free(dossier);
    free(msg);
    return 0;
}
