/* ctl.c: the blocking database connection, argument checks and output helpers that
 * every motcuactl command uses. */
#include "ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "service.h"

/* ================================================================ database */

/* libpq's messages end in a newline; ours add their own. */
static char *chomp(char *s)
{
    for (size_t n = strlen(s); n && (s[n - 1] == '\n' || s[n - 1] == ' '); n--)
        s[n - 1] = '\0';
    return s;
}

int ctl_connect(ctl_t *ctl)
{
    /* A URL that libpq cannot even parse is a bad argument, not a dead database. */
    char *perr = NULL;
    PQconninfoOption *parsed = PQconninfoParse(ctl->cfg.database_url, &perr);
    if (!parsed) {
        ctl_error("invalid database URL: %s", perr ? chomp(perr) : "cannot parse");
        PQfreemem(perr);
        return CTL_USAGE;
    }
    PQconninfoFree(parsed);

    /* Keywords are applied in order and the URL is expanded in place of dbname, so
     * a connect_timeout or application_name written in the URL wins over ours. */
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const values[] = {"5", "motcuactl", ctl->cfg.database_url, NULL};
    ctl->conn = PQconnectdbParams(keys, values, 1);
    if (PQstatus(ctl->conn) != CONNECTION_OK) {
        /* Say where we tried (never the password); libpq's message says why. */
        const char *host = PQhost(ctl->conn), *port = PQport(ctl->conn), *db = PQdb(ctl->conn);
        char *why = chomp(mc_strdup(PQerrorMessage(ctl->conn)));
        ctl_error("cannot connect to the database %s@%s:%s: %s", db && *db ? db : "?",
                  host && *host ? host : "?", port && *port ? port : "?", why);
        free(why);
        PQfinish(ctl->conn);
        ctl->conn = NULL;
        return CTL_FAIL;
    }
    PQclear(PQexec(ctl->conn, "SET client_min_messages = warning"));
    return CTL_OK;
}

PGresult *ctl_query(ctl_t *ctl, const char *sql, int nparams, const char *const *params)
{
    PGresult *r = PQexecParams(ctl->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    char *msg = mc_strdup(PQresultErrorMessage(r));
    if (!*msg) {
        free(msg);
        msg = mc_strdup(PQerrorMessage(ctl->conn));
    }
    ctl_error("database error: %s", chomp(msg));
    free(msg);
    PQclear(r);
    return NULL;
}

int ctl_has_bus_tables(ctl_t *ctl, const char *service)
{
    char *outbox = mc_sprintf("\"%s\".outbox", service);
    char *inbox = mc_sprintf("\"%s\".inbox", service);
    char *dead = mc_sprintf("\"%s\".dead_letters", service);
    const char *const params[] = {outbox, inbox, dead};
    PGresult *r = ctl_query(ctl,
                            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL "
                            "AND to_regclass($3) IS NOT NULL",
                            3, params);
    free(outbox);
    free(inbox);
    free(dead);
    if (!r)
        return -1;
    int yes = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return yes;
}

/* ================================================================ arguments */

int ctl_service_index(const char *name)
{
    for (int i = 0; i < CTL_NSERVICES; i++)
        if (strcmp(mc_service_names[i], name) == 0)
            return i;
    return -1;
}

int ctl_want_service(const char *name)
{
    if (ctl_service_index(name) >= 0)
        return CTL_OK;
    ctl_error("unknown service '%s' (one of intake, routing, interconnect, payment, postal, "
              "notify)",
              name);
    return CTL_USAGE;
}

long long ctl_parse_id(const char *text)
{
    if (!text || *text < '0' || *text > '9')
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    return errno || *end || v <= 0 ? 0 : v;
}

/* ================================================================ output */

void ctl_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("motcuactl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void ctl_json_print(json_t **doc)
{
    json_dumpf(*doc, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(*doc);
    *doc = NULL;
}

void ctl_age(double s, char *out, size_t outlen)
{
    long long t = (long long)s;
    if (s < 1)
        snprintf(out, outlen, "%lldms", (long long)(s * 1000));
    else if (t < 60)
        snprintf(out, outlen, "%llds", t);
    else if (t < 3600)
        snprintf(out, outlen, "%lldm%02llds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(out, outlen, "%lldh%02lldm", t / 3600, t % 3600 / 60);
    else
        snprintf(out, outlen, "%lldd%02lldh", t / 86400, t % 86400 / 3600);
}

void ctl_hexdump(FILE *out, const uint8_t *data, size_t len, const char *indent)
{
    for (size_t off = 0; off < len; off += 16) {
        fprintf(out, "%s%08zx ", indent, off);
        for (size_t i = 0; i < 16; i++) {
            if (i == 8)
                fputc(' ', out);
            if (off + i < len)
                fprintf(out, " %02x", data[off + i]);
            else
                fputs("   ", out);
        }
        fputs("  |", out);
        for (size_t i = 0; i < 16 && off + i < len; i++) {
            uint8_t c = data[off + i];
            fputc(c >= 0x20 && c < 0x7f ? c : '.', out);
        }
        fputs("|\n", out);
    }
}

/* ---------------------------------------------------------------- tables */

struct ctl_table {
    size_t ncols;
    unsigned right;
    int header;
    char **cells; /* rows * ncols, row 0 the headers if any */
    size_t rows, cap;
};

/* Display width of UTF-8 text: one column per code point (no wide characters in
 * what we print: codes, names, Vietnamese in Latin script). */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

static void table_push(ctl_table_t *t, const char *const *cells)
{
    if (t->rows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->cells = mc_realloc(t->cells, t->cap * t->ncols * sizeof(char *));
    }
    for (size_t c = 0; c < t->ncols; c++) {
        char *s = mc_strdup(cells[c] ? cells[c] : "");
        for (char *p = s; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = ' ';
        /* Database messages end in a newline: now a trailing space. */
        for (size_t n = strlen(s); n && s[n - 1] == ' '; n--)
            s[n - 1] = '\0';
        t->cells[t->rows * t->ncols + c] = s;
    }
    t->rows++;
}

ctl_table_t *ctl_table_new(size_t ncols, const char *const *headers, unsigned right)
{
    ctl_table_t *t = mc_new(ctl_table_t);
    t->ncols = ncols;
    t->right = right;
    t->header = headers != NULL;
    if (headers)
        table_push(t, headers);
    return t;
}

void ctl_table_add(ctl_table_t *t, const char *const *cells)
{
    table_push(t, cells);
}

size_t ctl_table_rows(const ctl_table_t *t)
{
    return t->rows - (size_t)t->header;
}

void ctl_table_print(const ctl_table_t *t, FILE *out, const char *indent)
{
    size_t *width = mc_alloc(t->ncols * sizeof *width);
    for (size_t r = 0; r < t->rows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t w = text_width(t->cells[r * t->ncols + c]);
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->rows; r++) {
        fputs(indent, out);
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            size_t pad = width[c] - text_width(s);
            int last = c + 1 == t->ncols;
            if (t->right & (1u << c))
                fprintf(out, "%*s%s", (int)pad, "", s);
            else
                fprintf(out, "%s%*s", s, last ? 0 : (int)pad, "");
            if (!last)
                fputs("  ", out);
        }
        fputc('\n', out);
    }
    free(width);
}

void ctl_table_destroy(ctl_table_t **pt)
{
    if (!pt || !*pt)
        return;
    ctl_table_t *t = *pt;
    *pt = NULL;
    for (size_t i = 0; i < t->rows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}
