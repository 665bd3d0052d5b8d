/* ctl.h: what the motcuactl commands share: the parsed command line, the blocking
 * database connection, the exit codes, and table, JSON and hex-dump output.
 *
 * motcuactl is a plain blocking program (it is not a service): libpq's synchronous
 * API, one connection, one command per run. */
#ifndef CTL_H
#define CTL_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>

#include "mc.h"

/* Exit codes: done; could not be done (database, state of the thing asked about);
 * bad command line (the usage goes to stderr). */
enum { CTL_OK = 0, CTL_FAIL = 1, CTL_USAGE = 2 };

/* Options a command may accept (ctl_command_t.options). --database and --help are
 * accepted everywhere. */
enum {
    CTL_OPT_JSON = 1 << 0,  /* --json */
    CTL_OPT_LIMIT = 1 << 1, /* --limit N */
    CTL_OPT_HTTP = 1 << 2,  /* --http / --no-http */
    CTL_OPT_KEY = 1 << 3,   /* --name NAME, --scopes LIST, --agency CODE (keys create) */
    CTL_OPT_DEMO = 1 << 4,  /* --agencies FILE, --out FILE (keys demo) */
    CTL_OPT_STATS = 1 << 5, /* --from DATE, --to DATE, --csv, --key KEY (stats) */
};

#define CTL_NSERVICES 6

/* From the environment (see the table in main.c), then the command line. */
typedef struct {
    char *database_url;
    char *http_host;
    int http_ports[CTL_NSERVICES]; /* indexed like mc_service_names */
} ctl_config_t;

typedef struct ctl ctl_t;

typedef struct {
    const char *name; /* one or two words: "status", "dead-letters list" */
    int (*fn)(ctl_t *ctl);
    int min_args, max_args; /* positional arguments after the name */
    unsigned options;       /* CTL_OPT_* it accepts */
    const char *usage;      /* what follows the name in a usage line */
    const char *summary;
} ctl_command_t;

struct ctl {
    ctl_config_t cfg;
    const ctl_command_t *cmd;
    int nargs;
    char **args; /* positional arguments after the command's name */
    int json;
    long limit; /* 0 when not given */
    int http;   /* query each service's /readyz (status) */
    /* Values of the CTL_OPT_KEY and CTL_OPT_DEMO options (in argv), NULL if not given. */
    const char *key_name, *key_scopes, *key_agency;
    const char *agencies_path, *out_path;
    /* Values of the CTL_OPT_STATS options, NULL (0) if not given. */
    const char *stats_from, *stats_to, *api_key;
    int csv;
    PGconn *conn;
};

/* ---- commands (one file each) ---- */
int ctl_status(ctl_t *ctl);
int ctl_dead_letters_list(ctl_t *ctl);
int ctl_dead_letters_show(ctl_t *ctl);
int ctl_dead_letters_replay(ctl_t *ctl);
int ctl_migrate(ctl_t *ctl);
int ctl_keys_create(ctl_t *ctl);
int ctl_keys_list(ctl_t *ctl);
int ctl_keys_revoke(ctl_t *ctl);
int ctl_keys_demo(ctl_t *ctl);
int ctl_stats(ctl_t *ctl);
int ctl_import(ctl_t *ctl);
int ctl_curve_keygen(ctl_t *ctl);

/* ---- database ---- */

/* Connect (blocking, with a timeout) to cfg.database_url. CTL_OK; CTL_USAGE if the
 * URL cannot be parsed; CTL_FAIL if the database cannot be reached (reason on
 * stderr, without the password). */
int ctl_connect(ctl_t *ctl) MC_MUST_USE;
/* Run one statement with text parameters (NULL is SQL NULL). The result, owned by
 * the caller; NULL after printing the database's message on stderr. */
PGresult *ctl_query(ctl_t *ctl, const char *sql, int nparams, const char *const *params);
/* 1 if the schema of `service` holds the bus tables (outbox, inbox, dead letters);
 * 0 if not; -1 on a database error (printed). */
int ctl_has_bus_tables(ctl_t *ctl, const char *service);

/* ---- arguments ---- */

/* Index of a service name in mc_service_names, or -1. */
int ctl_service_index(const char *name);
/* Check that `name` is a service; else print why on stderr and return CTL_USAGE. */
int ctl_want_service(const char *name);
/* A positive decimal id (bigserial); 0 if text is not one. */
long long ctl_parse_id(const char *text);

/* ---- output ---- */

/* "motcuactl: " + message on stderr. */
void ctl_error(const char *fmt, ...) MC_PRINTF(1, 2);
/* Print a JSON document on stdout and release it. */
void ctl_json_print(json_t **doc);
/* Human age: "850ms", "42s", "3m05s", "2h10m", "3d04h". */
void ctl_age(double seconds, char *out, size_t outlen);
/* Classic dump: offset, 16 bytes in hex, printable ASCII. */
void ctl_hexdump(FILE *out, const uint8_t *data, size_t len, const char *indent);

/* A text table whose columns are as wide as their widest cell (UTF-8 aware). Cells
 * are copied; control characters in them become spaces. */
typedef struct ctl_table ctl_table_t;
/* `right` is a bit mask of the columns aligned right (numbers); headers may be NULL. */
ctl_table_t *ctl_table_new(size_t ncols, const char *const *headers, unsigned right);
void ctl_table_add(ctl_table_t *t, const char *const *cells);
size_t ctl_table_rows(const ctl_table_t *t);
void ctl_table_print(const ctl_table_t *t, FILE *out, const char *indent);
void ctl_table_destroy(ctl_table_t **t);

#endif
