/* import.c: `motcuactl import FILE`: historical dossiers from a legacy one-stop system,
 * so that a province that migrates keeps continuous reports.
 *
 * FILE holds one JSON object per line ("-" reads standard input):
 *   {"code", "procedure", "agency", "channel", "received_at", "due_at", "resolved_at",
 *    "outcome"} and optionally "level" (2, 3 or 4; default 3) and "procedure_name".
 * Times are ISO 8601 with a zone ("2025-03-04T08:30:00+07:00", "...Z") or local time
 * "YYYY-MM-DD HH:MM:SS" (Asia/Ho_Chi_Minh). An open dossier has resolved_at and outcome
 * null (or absent); outcome is approved, refused or withdrawn. agency is the resolving
 * agency and must be in routing.agencies. Blank lines are skipped.
 *
 * All or nothing. Every line is checked first: the fields above, codes repeated in the
 * file, codes already in routing.cases. Any error: each is printed with its line and
 * field (the first 100, then how many more), nothing is written, exit 1. Otherwise
 * every dossier goes in in one transaction (COPY into a temporary table, then one
 * INSERT ... SELECT into routing.cases), so a crash or a concurrent import of the same
 * codes leaves nothing half done. Importing the same file twice fails the second time
 * on the codes already present, and changes nothing.
 *
 * This writes routing's tables directly, as `motcuactl migrate` writes the bus tables:
 * an import is a migration step an operator runs once, not a request a service serves;
 * routing owns the table definitions (its migrations must have run: start routing once).
 * Imported cases are marked `imported`; they count in statistics like native ones. An
 * open one gets one workflow step at its agency (so it shows in that agency's queue);
 * one already past due is marked overdue as of its due time, without an apology letter
 * (that belonged to the legacy system). No bus events are sent: intake never knew
 * these dossiers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "calendar.h"
#include "ctl.h"

#define MAX_ERRORS_SHOWN 100
#define PROGRESS_EVERY   1000
#define EXISTS_BATCH     5000
#define LOCAL_OFFSET_MS  (7 * 3600 * 1000LL)

/* One dossier of the file, checked. Times are Unix ms. */
typedef struct {
    int line;
    char *code, *procedure, *procedure_name, *agency, *channel;
    const char *outcome; /* static text; NULL when open */
    int level;
    int64_t received_ms, due_ms, resolved_ms; /* due_ms, resolved_ms: INT64_MIN if none */
} record_t;

typedef struct {
    int line;
    size_t seq; /* order of discovery, to keep errors of one line in order */
    char *text;
} import_error_t;

typedef struct {
    ctl_t *ctl;
    const char *path;
    int tty;     /* stderr is a terminal: progress rewrites one line */
    int pending; /* a progress line is on the terminal, not ended */
    int lines;
    record_t *recs;
    size_t nrecs, caprecs;
    import_error_t *errs;
    size_t nerrs, caperrs;
    char **agencies; /* routing.agencies codes, sorted (strcmp) */
    size_t nagencies;
} import_t;

static void import_error(import_t *im, int line, const char *fmt, ...) MC_PRINTF(3, 4);

static void import_error(import_t *im, int line, const char *fmt, ...)
{
    if (im->nerrs == im->caperrs) {
        im->caperrs = im->caperrs ? im->caperrs * 2 : 64;
        im->errs = mc_realloc(im->errs, im->caperrs * sizeof *im->errs);
    }
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        abort();
    va_end(ap);
    im->errs[im->nerrs] = (import_error_t){line, im->nerrs, text};
    im->nerrs++;
}

/* ---------------------------------------------------------------- progress */

static void progress(import_t *im, const char *fmt, ...) MC_PRINTF(2, 3);

static void progress(import_t *im, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (im->tty) {
        fputs("\r\033[K", stderr); /* back to the start, clear the line */
        im->pending = 1;
    }
    vfprintf(stderr, fmt, ap);
    if (!im->tty)
        fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
}

/* End a rewritten progress line, so what follows starts on a line of its own. */
static void progress_end(import_t *im)
{
    if (im->pending)
        fputc('\n', stderr);
    im->pending = 0;
}

/* ---------------------------------------------------------------- values */

/* A value as it appears in the file, for an error message: JSON, ASCII only (so it can
 * be cut anywhere and holds no control characters), at most 60 bytes. */
static char *shown(const json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_ENSURE_ASCII);
    if (!text)
        return mc_strdup("?");
    if (strlen(text) > 60)
        strcpy(text + 57, "...");
    return text;
}

/* Text without control characters, 1 to max bytes; spaces allowed or not. */
static int text_ok(const char *s, size_t max, int spaces)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (!spaces && *p == ' '))
            return 0;
    return 1;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* A time: "YYYY-MM-DDTHH:MM[:SS[.fff]]" with a zone (Z, +07:00, +0700, +07), or the
 * same with a space instead of the T, the zone then optional (local time). 0 with the
 * Unix ms in *ms, or -1. */
static int time_parse(const char *s, int64_t *ms)
{
    int y, mo, d, h, mi, sec = 0, frac = 0;
    size_t n = strlen(s);
    if (n < 16 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != ' ') || digits(s + 11, 2, &h) ||
        s[13] != ':' || digits(s + 14, 2, &mi))
        return -1;
    const char *p = s + 16;
    if (*p == ':') {
        if (digits(p + 1, 2, &sec))
            return -1;
        p += 3;
        if (*p == '.' || *p == ',') {
            int nd = 0;
            for (p++; *p >= '0' && *p <= '9'; p++, nd++)
                if (nd < 3)
                    frac = frac * 10 + (*p - '0');
            if (nd == 0)
                return -1;
            for (; nd < 3; nd++)
                frac *= 10;
        }
    }
    int64_t offset_ms;
    if (*p == '\0') {
        if (s[10] == 'T')
            return -1; /* ISO 8601 without a zone: whose clock? */
        offset_ms = LOCAL_OFFSET_MS;
    } else if ((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0') {
        offset_ms = 0;
    } else if (p[0] == '+' || p[0] == '-') {
        int oh, om = 0;
        const char *q = p + 1;
        if (digits(q, 2, &oh))
            return -1;
        q += 2;
        if (*q == ':' && !q[1])
            return -1;
        if (*q == ':')
            q++;
        if (*q && (digits(q, 2, &om) || q[2] != '\0'))
            return -1;
        if (oh > 14 || om > 59)
            return -1;
        offset_ms = (p[0] == '-' ? -1 : 1) * ((int64_t)oh * 3600000 + (int64_t)om * 60000);
    } else {
        return -1;
    }
    int64_t local = mc_calendar_local_ms(y, mo, d, h, mi, sec);
    if (local == MC_CALENDAR_INVALID)
        return -1;
    *ms = local + LOCAL_OFFSET_MS - offset_ms + frac;
    return 0;
}

/* A Unix ms as PostgreSQL reads a timestamptz: "2025-03-04 01:30:00.000+00". */
static void time_format(int64_t ms, char *out, size_t outlen)
{
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    /* Years are 1900..9999 and fields in range (gmtime), so 27 bytes always suffice. */
    snprintf(out, outlen, "%04d-%02d-%02d %02d:%02d:%02d.%03d+00", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, (int)(ms - secs * 1000) % 1000);
}

/* ---------------------------------------------------------------- one line */

static const char *const known_fields[] = {
    "code",  "procedure",   "procedure_name", "agency",      "channel",
    "level", "received_at", "due_at",         "resolved_at", "outcome",
};

static int agency_known(const import_t *im, const char *code)
{
    size_t lo = 0, hi = im->nagencies;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(im->agencies[mid], code);
        if (c == 0)
            return 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* A required string field; NULL after recording why. */
static const char *want_string(import_t *im, int line, json_t *doc, const char *name)
{
    json_t *v = json_object_get(doc, name);
    if (!v || json_is_null(v)) {
        import_error(im, line, "line %d: %s: missing", line, name);
        return NULL;
    }
    if (!json_is_string(v)) {
        char *s = shown(v);
        import_error(im, line, "line %d: %s: not a string (%s)", line, name, s);
        free(s);
        return NULL;
    }
    return json_string_value(v);
}

/* An optional time field: 1 with *ms, 0 when absent or null, -1 after recording why. */
static int want_time(import_t *im, int line, json_t *doc, const char *name, int64_t *ms)
{
    json_t *v = json_object_get(doc, name);
    if (!v || json_is_null(v))
        return 0;
    if (json_is_string(v) && time_parse(json_string_value(v), ms) == 0)
        return 1;
    char *s = shown(v);
    import_error(im, line,
                 "line %d: %s: not a time (%s; expected ISO 8601 with a zone, such as "
                 "2025-03-04T08:30:00+07:00, or local YYYY-MM-DD HH:MM:SS)",
                 line, name, s);
    free(s);
    return -1;
}

/* Check one line; a record on success, else an error recorded. */
static void line_check(import_t *im, int line, const char *text, int64_t now_ms)
{
    json_error_t jerr;
    json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        if (doc)
            import_error(im, line, "line %d: not a JSON object", line);
        else
            import_error(im, line, "line %d: not JSON: %s (column %d)", line, jerr.text,
                         jerr.column);
        json_decref(doc);
        return;
    }
    record_t r = {.line = line, .level = 3, .due_ms = INT64_MIN, .resolved_ms = INT64_MIN};
    const char *code, *procedure, *agency, *channel, *outcome = NULL, *pname = "";
    int has_due, has_resolved;
    json_t *level = json_object_get(doc, "level");
    json_t *name = json_object_get(doc, "procedure_name");
    json_t *out = json_object_get(doc, "outcome");
    const char *key;
    json_t *value;
    const char *unknown = NULL;
    json_object_foreach(doc, key, value)
    {
        size_t i = 0;
        while (i < MC_COUNT(known_fields) && strcmp(known_fields[i], key) != 0)
            i++;
        if (i == MC_COUNT(known_fields) && !unknown)
            unknown = key;
    }

    if (!(code = want_string(im, line, doc, "code")))
        goto done;
    if (!text_ok(code, 100, 0)) {
        import_error(im, line, "line %d: code: 1 to 100 bytes without spaces or control characters",
                     line);
        goto done;
    }
    if (!(procedure = want_string(im, line, doc, "procedure")))
        goto done;
    if (!text_ok(procedure, 100, 1)) {
        import_error(im, line, "line %d: procedure: 1 to 100 bytes without control characters",
                     line);
        goto done;
    }
    if (!(agency = want_string(im, line, doc, "agency")))
        goto done;
    if (!text_ok(agency, 32, 0) || !agency_known(im, agency)) {
        char *s = shown(json_object_get(doc, "agency"));
        import_error(im, line, "line %d: agency: %s is not in routing.agencies", line, s);
        free(s);
        goto done;
    }
    if (!(channel = want_string(im, line, doc, "channel")))
        goto done;
    if (strcmp(channel, "online") != 0 && strcmp(channel, "direct") != 0 &&
        strcmp(channel, "postal") != 0) {
        char *s = shown(json_object_get(doc, "channel"));
        import_error(im, line, "line %d: channel: %s is not online, direct or postal", line, s);
        free(s);
        goto done;
    }
    int has_received = want_time(im, line, doc, "received_at", &r.received_ms);
    if (has_received == 0)
        import_error(im, line, "line %d: received_at: missing", line);
    if (has_received != 1)
        goto done;
    if ((has_due = want_time(im, line, doc, "due_at", &r.due_ms)) < 0)
        goto done;
    if ((has_resolved = want_time(im, line, doc, "resolved_at", &r.resolved_ms)) < 0)
        goto done;
    if (out && !json_is_null(out)) {
        outcome = json_string_value(out);
        if (!outcome || (strcmp(outcome, "approved") != 0 && strcmp(outcome, "refused") != 0 &&
                         strcmp(outcome, "withdrawn") != 0)) {
            char *s = shown(out);
            import_error(im, line,
                         "line %d: outcome: %s is not approved, refused, withdrawn or null", line,
                         s);
            free(s);
            goto done;
        }
    }
    if (level && !json_is_null(level)) {
        json_int_t lv = json_is_integer(level) ? json_integer_value(level) : 0;
        if (lv < 2 || lv > 4) {
            char *s = shown(level);
            import_error(im, line, "line %d: level: %s is not 2, 3 or 4", line, s);
            free(s);
            goto done;
        }
        r.level = (int)lv;
    }
    if (name && !json_is_null(name)) {
        if (!json_is_string(name) || strlen(json_string_value(name)) > 1000) {
            import_error(im, line, "line %d: procedure_name: a string of at most 1000 bytes", line);
            goto done;
        }
        pname = json_string_value(name);
    }
    if (unknown) {
        import_error(im, line, "line %d: %s: unknown field", line, unknown);
        goto done;
    }
    /* Across fields. */
    if (has_resolved && !outcome) {
        import_error(im, line, "line %d: outcome: missing (resolved_at is set)", line);
        goto done;
    }
    if (outcome && !has_resolved) {
        import_error(im, line, "line %d: resolved_at: missing (outcome is %s)", line, outcome);
        goto done;
    }
    if (r.received_ms > now_ms) {
        import_error(im, line, "line %d: received_at: in the future", line);
        goto done;
    }
    if (has_due && r.due_ms < r.received_ms) {
        import_error(im, line, "line %d: due_at: before received_at", line);
        goto done;
    }
    if (has_resolved && r.resolved_ms < r.received_ms) {
        import_error(im, line, "line %d: resolved_at: before received_at", line);
        goto done;
    }
    if (has_resolved && r.resolved_ms > now_ms) {
        import_error(im, line, "line %d: resolved_at: in the future", line);
        goto done;
    }
    r.code = mc_strdup(code);
    r.procedure = mc_strdup(procedure);
    r.procedure_name = mc_strdup(pname);
    r.agency = mc_strdup(agency);
    r.channel = mc_strdup(channel);
    r.outcome = !outcome                           ? NULL
                : strcmp(outcome, "approved") == 0 ? "approved"
                : strcmp(outcome, "refused") == 0  ? "refused"
                                                   : "withdrawn";
    if (im->nrecs == im->caprecs) {
        im->caprecs = im->caprecs ? im->caprecs * 2 : 1024;
        im->recs = mc_realloc(im->recs, im->caprecs * sizeof *im->recs);
    }
    im->recs[im->nrecs++] = r;
done:
    json_decref(doc);
}

/* ---------------------------------------------------------------- the whole file */

static int blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
            return 0;
    return 1;
}

static int file_check(import_t *im, FILE *f)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    int64_t now_ms = mc_wall_ms();
    errno = 0;
    while ((n = getline(&buf, &cap, f)) >= 0) {
        im->lines++;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            buf[--n] = '\0';
        if (!blank(buf)) {
            if ((size_t)n != strlen(buf))
                import_error(im, im->lines, "line %d: holds a NUL byte", im->lines);
            else
                line_check(im, im->lines, buf, now_ms);
        }
        if (im->lines % PROGRESS_EVERY == 0)
            progress(im, "checking %s: %d lines, %zu errors", im->path, im->lines, im->nerrs);
    }
    int failed = ferror(f);
    free(buf);
    if (failed) {
        progress_end(im);
        ctl_error("cannot read %s: %s", im->path, strerror(errno));
        return CTL_FAIL;
    }
    progress(im, "checked %s: %d lines, %zu errors", im->path, im->lines, im->nerrs);
    progress_end(im);
    return CTL_OK;
}

/* Record indexes sorted by code, then line. */
static const record_t *sort_recs;

static int by_code(const void *a, const void *b)
{
    const record_t *x = &sort_recs[*(const size_t *)a], *y = &sort_recs[*(const size_t *)b];
    int c = strcmp(x->code, y->code);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Codes repeated in the file, then codes already in routing.cases. */
static int codes_check(import_t *im)
{
    size_t n = im->nrecs;
    size_t *idx = mc_alloc((n ? n : 1) * sizeof *idx);
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    sort_recs = im->recs;
    qsort(idx, n, sizeof *idx, by_code);
    for (size_t i = 1; i < n; i++) {
        const record_t *prev = &im->recs[idx[i - 1]], *r = &im->recs[idx[i]];
        if (strcmp(prev->code, r->code) == 0) {
            /* Name the first line that has this code. */
            size_t first = i - 1;
            while (first > 0 && strcmp(im->recs[idx[first - 1]].code, r->code) == 0)
                first--;
            import_error(im, r->line, "line %d: code: %s is repeated (first on line %d)", r->line,
                         r->code, im->recs[idx[first]].line);
        }
    }
    /* Ask the database in batches of distinct codes, as a JSON array. */
    int rc = CTL_OK;
    for (size_t start = 0; rc == CTL_OK && start < n; start += EXISTS_BATCH) {
        size_t end = start + EXISTS_BATCH < n ? start + EXISTS_BATCH : n;
        json_t *codes = json_array();
        for (size_t i = start; i < end; i++)
            if (i == 0 || strcmp(im->recs[idx[i - 1]].code, im->recs[idx[i]].code) != 0)
                json_array_append_new(codes, json_string(im->recs[idx[i]].code));
        char *text = json_dumps(codes, JSON_COMPACT);
        json_decref(codes);
        PGresult *r = ctl_query(im->ctl,
                                "SELECT c.code FROM routing.cases c WHERE c.code IN"
                                " (SELECT jsonb_array_elements_text($1::jsonb))",
                                1, (const char *const[]){text});
        free(text);
        if (!r) {
            rc = CTL_FAIL;
            break;
        }
        for (int row = 0; row < PQntuples(r); row++) {
            /* The first line with this code: the lowest position of the code in idx. */
            const char *code = PQgetvalue(r, row, 0);
            size_t lo = start, hi = end;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (strcmp(im->recs[idx[mid]].code, code) < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < end && strcmp(im->recs[idx[lo]].code, code) == 0)
                import_error(im, im->recs[idx[lo]].line,
                             "line %d: code: %s is already in routing.cases",
                             im->recs[idx[lo]].line, code);
        }
        PQclear(r);
    }
    free(idx);
    return rc;
}

static int by_line(const void *a, const void *b)
{
    const import_error_t *x = a, *y = b;
    if (x->line != y->line)
        return (x->line > y->line) - (x->line < y->line);
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static void errors_print(import_t *im)
{
    qsort(im->errs, im->nerrs, sizeof *im->errs, by_line);
    for (size_t i = 0; i < im->nerrs && i < MAX_ERRORS_SHOWN; i++)
        fprintf(stderr, "%s\n", im->errs[i].text);
    if (im->nerrs > MAX_ERRORS_SHOWN)
        fprintf(stderr, "... and %zu more errors\n", im->nerrs - MAX_ERRORS_SHOWN);
    ctl_error("%s: %zu error%s in %d lines: nothing imported", im->path, im->nerrs,
              im->nerrs == 1 ? "" : "s", im->lines);
}

/* ---------------------------------------------------------------- writing */

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->data = mc_realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

/* A field of COPY's text format: backslash, tab, newline and carriage return escaped;
 * NULL as \N. Then the column separator (or the end of the row). */
static void copy_field(buf_t *b, const char *s, int last)
{
    if (!s) {
        buf_add(b, "\\N", 2);
    } else {
        for (const char *p = s; *p; p++) {
            const char *esc = *p == '\\'   ? "\\\\"
                              : *p == '\t' ? "\\t"
                              : *p == '\n' ? "\\n"
                              : *p == '\r' ? "\\r"
                                           : NULL;
            if (esc)
                buf_add(b, esc, 2);
            else
                buf_add(b, p, 1);
        }
    }
    buf_add(b, last ? "\n" : "\t", 1);
}

static void copy_row(buf_t *b, const record_t *r)
{
    char line[16], level[8], received[40], due[40], resolved[40];
    snprintf(line, sizeof line, "%d", r->line);
    snprintf(level, sizeof level, "%d", r->level);
    time_format(r->received_ms, received, sizeof received);
    if (r->due_ms != INT64_MIN)
        time_format(r->due_ms, due, sizeof due);
    if (r->resolved_ms != INT64_MIN)
        time_format(r->resolved_ms, resolved, sizeof resolved);
    copy_field(b, line, 0);
    copy_field(b, r->code, 0);
    copy_field(b, r->procedure, 0);
    copy_field(b, r->procedure_name, 0);
    copy_field(b, r->agency, 0);
    copy_field(b, r->channel, 0);
    copy_field(b, level, 0);
    copy_field(b, received, 0);
    copy_field(b, r->due_ms != INT64_MIN ? due : NULL, 0);
    copy_field(b, r->resolved_ms != INT64_MIN ? resolved : NULL, 0);
    copy_field(b, r->outcome, 1);
}

/* COPY every record into the temporary table, with progress. */
static int copy_all(import_t *im)
{
    PGconn *conn = im->ctl->conn;
    PGresult *r = PQexec(conn, "COPY pg_temp.import_cases FROM STDIN");
    int ok = PQresultStatus(r) == PGRES_COPY_IN;
    PQclear(r);
    if (!ok) {
        ctl_error("database error: %s", PQerrorMessage(conn));
        return CTL_FAIL;
    }
    buf_t b = {0};
    for (size_t i = 0; ok && i < im->nrecs; i++) {
        copy_row(&b, &im->recs[i]);
        if (b.len >= 1 << 16 || i + 1 == im->nrecs) {
            ok = PQputCopyData(conn, b.data, (int)b.len) == 1;
            b.len = 0;
        }
        if ((i + 1) % PROGRESS_EVERY == 0 || i + 1 == im->nrecs)
            progress(im, "importing: %zu of %zu dossiers", i + 1, im->nrecs);
    }
    free(b.data);
    ok = PQputCopyEnd(conn, ok ? NULL : "motcuactl could not send the rows") == 1 && ok;
    while ((r = PQgetResult(conn))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            ok = 0;
            ctl_error("database error: %s", PQresultErrorMessage(r));
        }
        PQclear(r);
    }
    return ok ? CTL_OK : CTL_FAIL;
}

static int run(import_t *im, const char *sql, int nparams, const char *const *params)
{
    PGresult *r = ctl_query(im->ctl, sql, nparams, params);
    PQclear(r);
    return r ? CTL_OK : CTL_FAIL;
}

/* Everything in one transaction. */
static int import_write(import_t *im)
{
    int rc = run(im, "BEGIN", 0, NULL);
    if (rc == CTL_OK)
        rc = run(im,
                 "CREATE TEMP TABLE import_cases (line int, code text, procedure_code text,"
                 " procedure_name text, agency text, channel text, level int,"
                 " received_at timestamptz, due_at timestamptz, resolved_at timestamptz,"
                 " outcome text) ON COMMIT DROP",
                 0, NULL);
    if (rc == CTL_OK)
        rc = copy_all(im);
    if (rc == CTL_OK)
        rc = run(im,
                 "INSERT INTO routing.cases (code, procedure_code, procedure_name, agency_code,"
                 " resolving_agency, channel, state, level, received_at, due_at, resolved_at,"
                 " outcome, overdue_at, imported)"
                 " SELECT code, procedure_code, procedure_name, agency, agency, channel,"
                 "  CASE outcome WHEN 'approved' THEN 'RETURNED' WHEN 'refused' THEN 'REFUSED'"
                 "   WHEN 'withdrawn' THEN 'WITHDRAWN' ELSE 'IN_PROGRESS' END,"
                 "  level, received_at, due_at, resolved_at, outcome,"
                 "  CASE WHEN outcome IS NULL AND due_at < now() THEN due_at END, true"
                 " FROM pg_temp.import_cases ORDER BY line",
                 0, NULL);
    /* An open dossier's one step: its agency's queue, and the deadline sweep, find it. */
    if (rc == CTL_OK)
        rc = run(im,
                 "INSERT INTO routing.case_steps (code, idx, name, agency_code, days, started_at,"
                 " due_at)"
                 " SELECT code, 0, 'Giải quyết (hồ sơ chuyển từ hệ thống cũ)', agency, 0,"
                 "  received_at, due_at FROM pg_temp.import_cases WHERE outcome IS NULL",
                 0, NULL);
    if (rc == CTL_OK) {
        char *note = mc_sprintf("imported from a legacy one-stop system (%s)", im->path);
        rc = run(im,
                 "INSERT INTO routing.case_events (code, from_state, to_state, actor, note)"
                 " SELECT i.code, NULL, c.state, 'motcuactl import', $1 || ', line ' || i.line"
                 " FROM pg_temp.import_cases i JOIN routing.cases c ON c.code = i.code"
                 " ORDER BY i.line",
                 1, (const char *const[]){note});
        free(note);
    }
    if (rc == CTL_OK)
        rc = run(im, "COMMIT", 0, NULL);
    else
        PQclear(PQexec(im->ctl->conn, "ROLLBACK"));
    progress_end(im);
    return rc;
}

/* ---------------------------------------------------------------- the command */

/* Routing's tables and agency tree; CTL_OK or CTL_FAIL after saying what is missing. */
static int agencies_load(import_t *im)
{
    PGresult *r = ctl_query(im->ctl,
                            "SELECT to_regclass('routing.cases') IS NOT NULL"
                            " AND to_regclass('routing.agencies') IS NOT NULL",
                            0, NULL);
    if (!r)
        return CTL_FAIL;
    int there = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    r = NULL;
    if (there) {
        r = ctl_query(im->ctl, "SELECT code FROM routing.agencies ORDER BY code COLLATE \"C\"", 0,
                      NULL);
        if (!r)
            return CTL_FAIL;
    }
    if (!there || PQntuples(r) == 0) {
        ctl_error("routing's tables or its agency tree are not in the database yet: start "
                  "motcua-routing once (it creates them and loads the catalog), then import");
        PQclear(r);
        return CTL_FAIL;
    }
    im->nagencies = (size_t)PQntuples(r);
    im->agencies = mc_alloc(im->nagencies * sizeof *im->agencies);
    for (size_t i = 0; i < im->nagencies; i++)
        im->agencies[i] = mc_strdup(PQgetvalue(r, (int)i, 0));
    PQclear(r);
    return CTL_OK;
}

static void summary_print(const import_t *im, double seconds)
{
    size_t open = 0, approved = 0, refused = 0, withdrawn = 0;
    for (size_t i = 0; i < im->nrecs; i++) {
        const char *o = im->recs[i].outcome;
        if (!o)
            open++;
        else if (strcmp(o, "approved") == 0)
            approved++;
        else if (strcmp(o, "refused") == 0)
            refused++;
        else
            withdrawn++;
    }
    printf("imported %zu dossiers from %s\n", im->nrecs, im->path);
    ctl_table_t *t = ctl_table_new(2, NULL, 1u << 1);
    char v[7][32];
    snprintf(v[0], sizeof v[0], "%d", im->lines);
    snprintf(v[1], sizeof v[1], "%zu", im->nrecs);
    snprintf(v[2], sizeof v[2], "%zu", open);
    snprintf(v[3], sizeof v[3], "%zu", approved);
    snprintf(v[4], sizeof v[4], "%zu", refused);
    snprintf(v[5], sizeof v[5], "%zu", withdrawn);
    snprintf(v[6], sizeof v[6], "%.2f", seconds);
    const char *labels[] = {"lines",   "imported",  "open",   "approved",
                            "refused", "withdrawn", "seconds"};
    for (int i = 0; i < 7; i++)
        ctl_table_add(t, (const char *const[]){labels[i], v[i]});
    ctl_table_print(t, stdout, "  ");
    ctl_table_destroy(&t);
}

static void import_free(import_t *im)
{
    for (size_t i = 0; i < im->nrecs; i++) {
        record_t *r = &im->recs[i];
        free(r->code);
        free(r->procedure);
        free(r->procedure_name);
        free(r->agency);
        free(r->channel);
    }
    free(im->recs);
    for (size_t i = 0; i < im->nerrs; i++)
        free(im->errs[i].text);
    free(im->errs);
    for (size_t i = 0; i < im->nagencies; i++)
        free(im->agencies[i]);
    free(im->agencies);
}

int ctl_import(ctl_t *ctl)
{
    uint64_t started = mc_now_ms();
    import_t im = {.ctl = ctl, .path = ctl->args[0], .tty = isatty(STDERR_FILENO)};
    int stdin_file = strcmp(im.path, "-") == 0;
    FILE *f = stdin_file ? stdin : fopen(im.path, "r");
    if (!f) {
        ctl_error("cannot open %s: %s", im.path, strerror(errno));
        return CTL_FAIL;
    }
    int rc = ctl_connect(ctl);
    if (rc == CTL_OK)
        rc = agencies_load(&im);
    if (rc == CTL_OK)
        rc = file_check(&im, f);
    if (rc == CTL_OK && im.nrecs > 0)
        rc = codes_check(&im);
    if (rc == CTL_OK && im.nerrs > 0) {
        errors_print(&im);
        rc = CTL_FAIL;
    } else if (rc == CTL_OK && im.nrecs == 0) {
        ctl_error("%s holds no dossiers: nothing imported", im.path);
        rc = CTL_FAIL;
    }
    if (rc == CTL_OK)
        rc = import_write(&im);
    if (rc == CTL_OK)
        summary_print(&im, (double)(mc_now_ms() - started) / 1000.0);
    else if (im.nerrs == 0 && im.nrecs > 0)
        ctl_error("%s: nothing imported", im.path);
    if (!stdin_file)
        fclose(f);
    import_free(&im);
    return rc;
}
