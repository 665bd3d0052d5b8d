/* log.c: one line per event on stderr, key=value or JSON, personal data masked.
 *
 * Lines are written with a single write(2) so that concurrent processes sharing a
 * log file do not interleave within a line. */
#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char log_service[32] = "motcua";
static mc_log_level_t log_min = MC_LOG_INFO;
static int log_json;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void mc_log_init(const char *service, mc_log_level_t min_level, int json)
{
    snprintf(log_service, sizeof log_service, "%s", service ? service : "motcua");
    log_min = min_level;
    log_json = json;
}

void mc_log_mask(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    if (!outlen)
        return;
    for (size_t i = 0; in[i] && o + 1 < outlen;) {
        size_t start = i, digits = i;
        if (in[digits] == '+')
            digits++;
        size_t end = digits;
        while (isdigit((unsigned char)in[end]))
            end++;
        size_t run = end - digits;
        if (run >= 9) {
            /* Keep the '+', the first two and last two digits; star the rest. */
            for (size_t k = start; k < end && o + 1 < outlen; k++) {
                int keep = k < digits + 2 || k >= end - 2 || in[k] == '+';
                out[o++] = keep ? in[k] : '*';
            }
            i = end;
        } else if (run > 0) {
            for (size_t k = start; k < end && o + 1 < outlen; k++)
                out[o++] = in[k];
            i = end;
        } else {
            out[o++] = in[i++];
        }
    }
    out[o] = '\0';
}

/* Append s to buf as a quoted value: JSON string escaping serves both formats. */
static size_t append_quoted(char *buf, size_t len, size_t cap, const char *s)
{
    if (len < cap)
        buf[len++] = '"';
    for (; *s && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c == '\n') {
            buf[len++] = '\\';
            buf[len++] = 'n';
        } else if (c < 0x20) {
            len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
        } else {
            buf[len++] = (char)c;
        }
    }
    if (len < cap)
        buf[len++] = '"';
    return len;
}

/* Append s, cut to what fits. len may already be cap: a quoted value that reached the
 * end of the line takes its last byte, and nothing more fits. */
static size_t append(char *buf, size_t len, size_t cap, const char *s)
{
    size_t room = len + 1 < cap ? cap - len - 1 : 0;
    size_t n = strlen(s);
    if (n > room)
        n = room;
    memcpy(buf + len, s, n);
    return len + n;
}

/* 1 if a key=value value must be quoted to stay one token on one line. */
static int needs_quote(const char *s)
{
    if (!*s)
        return 1;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == '"' || *s == '=' || *s == '\\' || *s == 0x7f)
            return 1;
    return 0;
}

static size_t append_field(char *buf, size_t len, size_t cap, const char *key, const char *value,
                           int quote)
{
    if (log_json) {
        len = append(buf, len, cap, len > 1 ? ",\"" : "\"");
        len = append(buf, len, cap, key);
        len = append(buf, len, cap, "\":");
        return append_quoted(buf, len, cap, value);
    }
    if (len)
        len = append(buf, len, cap, " ");
    len = append(buf, len, cap, key);
    len = append(buf, len, cap, "=");
    /* trace and dossier may come from outside (a URL, a peer's envelope): quote them
     * when they could otherwise forge fields or lines. */
    return quote || needs_quote(value) ? append_quoted(buf, len, cap, value)
                                       : append(buf, len, cap, value);
}

void mc_log_(mc_log_level_t level, const char *trace, const char *dossier, const char *fmt, ...)
{
    if (level < log_min)
        return;
    char msg[2048], masked[2048], line[4096], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mc_log_mask(msg, masked, sizeof masked);

    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03ldZ", now.tv_nsec / 1000000);

    size_t cap = sizeof line - 2, len = 0;
    if (log_json)
        line[len++] = '{';
    len = append_field(line, len, cap, "ts", ts, 0);
    len = append_field(line, len, cap, "service", log_service, 0);
    len = append_field(line, len, cap, "level", level_names[level], 0);
    /* Both may come from outside (a header, a peer's envelope): at most 128 bytes each
     * here, so that the message always has room in the line. */
    char shortened[129];
    if (trace && *trace) {
        snprintf(shortened, sizeof shortened, "%s", trace);
        len = append_field(line, len, cap, "trace", shortened, 0);
    }
    if (dossier && *dossier) {
        snprintf(shortened, sizeof shortened, "%s", dossier);
        len = append_field(line, len, cap, "dossier", shortened, 0);
    }
    len = append_field(line, len, cap, "msg", masked, 1);
    if (log_json)
        line[len++] = '}';
    line[len++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, len);
    (void)ignored;
}
