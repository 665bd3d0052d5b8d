/* motcuactl: the operator's command line for motcua: services and bus status, dead
 * letters (list, inspect, replay), bus-table migrations, API keys.
 *
 *   motcuactl [--database URL] COMMAND [ARGS] [OPTIONS]
 *
 * This file is the table of contents: the configuration it reads, the command table
 * ({name, function, usage}, like pgbouncer's admin commands), and the dispatch. Each
 * command lives in the file named after it. Exit status: 0 done; 1 could not be done
 * (database unreachable, no such dead letter, replay refused); 2 bad command line,
 * with the usage on stderr. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "log.h"

#define OFF(f) offsetof(ctl_config_t, f)

/* What motcuactl reads from the environment: the same variables as the services, so
 * one environment file serves both. */
static const mc_conf_item_t config_table[] = {
    {"MOTCUA_DATABASE_URL", MC_CONF_STRING, OFF(database_url),
     "postgresql://motcua@127.0.0.1:5433/motcua", 0, 0, NULL,
     "PostgreSQL connection URL (--database overrides it)"},
    {"MOTCUA_HTTP_HOST", MC_CONF_STRING, OFF(http_host), "127.0.0.1", 0, 0, NULL,
     "host of the services' HTTP listeners, for /readyz (0.0.0.0 means this host)"},
    {"MOTCUA_INTAKE_HTTP_PORT", MC_CONF_PORT, OFF(http_ports[0]), "8080", 0, 0, NULL,
     "intake's HTTP port"},
    {"MOTCUA_ROUTING_HTTP_PORT", MC_CONF_PORT, OFF(http_ports[1]), "8081", 0, 0, NULL,
     "routing's HTTP port"},
    {"MOTCUA_INTERCONNECT_HTTP_PORT", MC_CONF_PORT, OFF(http_ports[2]), "8082", 0, 0, NULL,
     "interconnect's HTTP port"},
    {"MOTCUA_PAYMENT_HTTP_PORT", MC_CONF_PORT, OFF(http_ports[3]), "8083", 0, 0, NULL,
     "payment's HTTP port"},
    {"MOTCUA_POSTAL_HTTP_PORT", MC_CONF_PORT, OFF(http_ports[4]), "8084", 0, 0, NULL,
     "postal's HTTP port"},
    {"MOTCUA_NOTIFY_HTTP_PORT", MC_CONF_PORT, OFF(http_ports[5]), "8085", 0, 0, NULL,
     "notify's HTTP port"},
};

static int help(ctl_t *ctl);

static const ctl_command_t commands[] = {
    {"status", ctl_status, 0, 0, CTL_OPT_JSON | CTL_OPT_HTTP, "[--json] [--http | --no-http]",
     "each service up/down (/readyz), bus backlog, dead letters, inbox last hour"},
    {"dead-letters list", ctl_dead_letters_list, 0, 1, CTL_OPT_JSON | CTL_OPT_LIMIT,
     "[SERVICE] [--limit N] [--json]", "dead letters, newest first (default limit 50)"},
    {"dead-letters show", ctl_dead_letters_show, 2, 2, CTL_OPT_JSON, "SERVICE ID [--json]",
     "one dead letter, its payload decoded as an Envelope (else a hex dump)"},
    {"dead-letters replay", ctl_dead_letters_replay, 2, 2, 0, "SERVICE ID",
     "deliver a dead letter's envelope to SERVICE again, through SERVICE's outbox"},
    {"migrate", ctl_migrate, 0, CTL_NSERVICES, 0, "[SERVICE...]",
     "create or update the bus tables (outbox, inbox, dead letters) of each schema"},
    {"keys create", ctl_keys_create, 0, 0, CTL_OPT_KEY | CTL_OPT_JSON,
     "--name NAME --scopes SCOPE[,SCOPE...] [--agency CODE] [--json]",
     "a new API key, printed once (officer keys need --agency)"},
    {"keys list", ctl_keys_list, 0, 0, CTL_OPT_JSON, "[--json]",
     "every API key: id, name, agency, scopes, created, revoked (never the key)"},
    {"keys revoke", ctl_keys_revoke, 1, 1, 0, "ID",
     "revoke a key (services refuse it within 30 s)"},
    {"keys demo", ctl_keys_demo, 0, 0, CTL_OPT_DEMO, "[--agencies FILE] [--out FILE]",
     "demo keys (an officer per agency, an integrator, an operator) into FILE, kept if valid"},
    {"stats", ctl_stats, 0, 0, CTL_OPT_STATS | CTL_OPT_KEY | CTL_OPT_JSON,
     "--from DATE --to DATE [--agency CODE] [--key KEY] [--csv | --json]",
     "the one-stop report of an agency's subtree (routing's /v1/stats; key or MOTCUA_API_KEY)"},
    {"import", ctl_import, 1, 1, 0, "FILE",
     "historical dossiers from a legacy one-stop system (JSON lines): all of them, or none"},
    {"curve keygen", ctl_curve_keygen, 2, 2, CTL_OPT_JSON, "NAME FILE [--json]",
     "a key pair for the bus over CURVE (a province's, a service's): FILE and FILE_secret"},
    {"help", help, 0, 2, 0, "[COMMAND]", "this list, or one command's usage"},
};

/* ---------------------------------------------------------------- usage */

static void usage_line(FILE *out, const ctl_command_t *cmd)
{
    fprintf(out, "usage: motcuactl [--database URL] %s%s%s\n", cmd->name, *cmd->usage ? " " : "",
            cmd->usage);
}

static void commands_list(FILE *out, const char *group)
{
    ctl_table_t *t = ctl_table_new(2, NULL, 0);
    for (size_t i = 0; i < MC_COUNT(commands); i++) {
        const ctl_command_t *c = &commands[i];
        size_t glen = group ? strlen(group) : 0;
        if (group && (strncmp(c->name, group, glen) != 0 || c->name[glen] != ' '))
            continue;
        char *line = mc_sprintf("%s%s%s", c->name, *c->usage ? " " : "", c->usage);
        ctl_table_add(t, (const char *const[]){line, c->summary});
        free(line);
    }
    ctl_table_print(t, out, "  ");
    ctl_table_destroy(&t);
}

/* Print the commands of a group ("dead-letters") to out (if not NULL); 0 if there
 * is no such group. */
static int group_list(FILE *out, const char *group)
{
    size_t glen = strlen(group);
    for (size_t i = 0; i < MC_COUNT(commands); i++)
        if (strncmp(commands[i].name, group, glen) == 0 && commands[i].name[glen] == ' ') {
            if (out) {
                fputs("usage:\n", out);
                commands_list(out, group);
            }
            return 1;
        }
    return 0;
}

static void overview(FILE *out)
{
    fputs("usage: motcuactl [--database URL] COMMAND [ARGS] [OPTIONS]\n\n", out);
    commands_list(out, NULL);
    fputs("\nSERVICE is one of intake, routing, interconnect, payment, postal, notify.\n"
          "Exit status: 0 done, 1 could not be done, 2 bad command line.\n",
          out);
}

/* ---------------------------------------------------------------- dispatch */

/* The command whose name's words start `words` (the longest such name), with the
 * number of words it takes in *used; NULL if none. */
static const ctl_command_t *command_find(int nwords, char **words, int *used)
{
    const ctl_command_t *best = NULL;
    *used = 0;
    for (size_t i = 0; i < MC_COUNT(commands); i++) {
        const char *name = commands[i].name;
        int n = 0;
        const char *p = name;
        while (*p && n < nwords) {
            size_t len = strlen(words[n]);
            if (strncmp(p, words[n], len) != 0 || (p[len] != ' ' && p[len] != '\0'))
                break;
            p += len;
            n++;
            if (*p == ' ')
                p++;
        }
        if (*p == '\0' && n > *used) {
            best = &commands[i];
            *used = n;
        }
    }
    return best;
}

static int help(ctl_t *ctl)
{
    if (ctl->nargs == 0) {
        overview(stdout);
        fputs("\nEnvironment:\n", stdout);
        mc_config_usage(config_table, MC_COUNT(config_table), NULL);
        return CTL_OK;
    }
    int used;
    const ctl_command_t *cmd = command_find(ctl->nargs, ctl->args, &used);
    if (!cmd || used != ctl->nargs) {
        if (ctl->nargs == 1 && group_list(stdout, ctl->args[0]))
            return CTL_OK;
        ctl_error("no command '%s'", ctl->args[0]);
        return CTL_USAGE;
    }
    usage_line(stdout, cmd);
    printf("  %s\n", cmd->summary);
    return CTL_OK;
}

static const struct option long_options[] = {
    {"database", required_argument, NULL, 'd'},
    {"json", no_argument, NULL, 'j'},
    {"limit", required_argument, NULL, 'l'},
    {"http", no_argument, NULL, 'H'},
    {"no-http", no_argument, NULL, 'N'},
    {"name", required_argument, NULL, 'n'},
    {"scopes", required_argument, NULL, 's'},
    {"agency", required_argument, NULL, 'a'},
    {"agencies", required_argument, NULL, 'A'},
    {"out", required_argument, NULL, 'o'},
    {"from", required_argument, NULL, 'F'},
    {"to", required_argument, NULL, 'T'},
    {"csv", no_argument, NULL, 'c'},
    {"key", required_argument, NULL, 'k'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Parse the options (anywhere on the line), then find the command. Returns CTL_OK
 * with ctl->cmd set, or an exit status after printing why (*grouped when that
 * included the usage of a group of commands). */
static int parse(ctl_t *ctl, int argc, char **argv, int *want_help, int *grouped)
{
    unsigned seen = 0;
    const char *limit = NULL;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
        switch (opt) {
        case 'd':
            free(ctl->cfg.database_url);
            ctl->cfg.database_url = mc_strdup(optarg);
            break;
        case 'j':
            ctl->json = 1;
            seen |= CTL_OPT_JSON;
            break;
        case 'l':
            limit = optarg;
            seen |= CTL_OPT_LIMIT;
            break;
        case 'H':
        case 'N':
            ctl->http = opt == 'H';
            seen |= CTL_OPT_HTTP;
            break;
        case 'n':
            ctl->key_name = optarg;
            seen |= CTL_OPT_KEY;
            break;
        case 's':
            ctl->key_scopes = optarg;
            seen |= CTL_OPT_KEY;
            break;
        case 'a':
            ctl->key_agency = optarg;
            seen |= CTL_OPT_KEY;
            break;
        case 'A':
            ctl->agencies_path = optarg;
            seen |= CTL_OPT_DEMO;
            break;
        case 'o':
            ctl->out_path = optarg;
            seen |= CTL_OPT_DEMO;
            break;
        case 'F':
            ctl->stats_from = optarg;
            seen |= CTL_OPT_STATS;
            break;
        case 'T':
            ctl->stats_to = optarg;
            seen |= CTL_OPT_STATS;
            break;
        case 'c':
            ctl->csv = 1;
            seen |= CTL_OPT_STATS;
            break;
        case 'k':
            ctl->api_key = optarg;
            seen |= CTL_OPT_STATS;
            break;
        case 'h': *want_help = 1; break;
        case ':': ctl_error("option %s needs a value", argv[optind - 1]); return CTL_USAGE;
        default:
            if (optopt)
                ctl_error("unknown option -%c", optopt);
            else
                ctl_error("unknown option %s", argv[optind - 1]);
            return CTL_USAGE;
        }
    }
    int nwords = argc - optind, used;
    char **words = argv + optind;
    if (nwords == 0) {
        if (*want_help)
            return CTL_OK;
        ctl_error("no command given");
        return CTL_USAGE;
    }
    ctl->cmd = command_find(nwords, words, &used);
    if (!ctl->cmd && *want_help && group_list(stdout, words[0])) {
        *grouped = 1;
        return CTL_OK;
    }
    if (!ctl->cmd) {
        /* "dead-letters" alone, or with a word that is not one of its commands. */
        if (!group_list(NULL, words[0]))
            ctl_error("unknown command '%s'", words[0]);
        else if (nwords > 1)
            ctl_error("unknown command '%s %s'", words[0], words[1]);
        else
            ctl_error("'%s' needs a subcommand", words[0]);
        *grouped = group_list(stderr, words[0]);
        return CTL_USAGE;
    }
    ctl->args = words + used;
    ctl->nargs = nwords - used;
    if (*want_help)
        return CTL_OK;
    unsigned extra = seen & ~ctl->cmd->options;
    if (extra) {
        ctl_error("%s does not apply to '%s'",
                  extra & CTL_OPT_JSON    ? "--json"
                  : extra & CTL_OPT_LIMIT ? "--limit"
                  : extra & CTL_OPT_HTTP  ? "--http/--no-http"
                  : extra & CTL_OPT_KEY   ? "--name/--scopes/--agency"
                  : extra & CTL_OPT_DEMO  ? "--agencies/--out"
                                          : "--from/--to/--csv/--key",
                  ctl->cmd->name);
        return CTL_USAGE;
    }
    const ctl_command_t *c = ctl->cmd;
    if (ctl->nargs < c->min_args || ctl->nargs > c->max_args) {
        if (c->max_args == 0)
            ctl_error("'%s' takes no arguments (got %d)", c->name, ctl->nargs);
        else if (c->min_args == c->max_args)
            ctl_error("'%s' takes %d argument%s (got %d)", c->name, c->min_args,
                      c->min_args == 1 ? "" : "s", ctl->nargs);
        else
            ctl_error("'%s' takes %d to %d arguments (got %d)", c->name, c->min_args, c->max_args,
                      ctl->nargs);
        return CTL_USAGE;
    }
    if (limit) {
        char *end;
        ctl->limit = strtol(limit, &end, 10);
        if (*limit < '0' || *limit > '9' || *end || ctl->limit < 1 || ctl->limit > 100000) {
            ctl_error("--limit %s: expected a number from 1 to 100000", limit);
            return CTL_USAGE;
        }
    }
    return CTL_OK;
}

int main(int argc, char **argv)
{
    /* Library logging (migrations) only when something is wrong: the commands
     * report what they did themselves. */
    mc_log_init("motcuactl", MC_LOG_WARN, 0);
    ctl_t ctl = {.http = 1};
    char err[512];
    if (mc_config_load(&ctl.cfg, config_table, MC_COUNT(config_table), NULL, err, sizeof err)) {
        ctl_error("configuration error: %s", err);
        mc_config_free(&ctl.cfg, config_table, MC_COUNT(config_table));
        return CTL_USAGE;
    }
    int want_help = 0, grouped = 0;
    int rc = parse(&ctl, argc, argv, &want_help, &grouped);
    if (rc == CTL_OK && want_help) {
        if (grouped) {
            /* parse() printed the group's commands. */
        } else if (ctl.cmd && ctl.cmd->fn != help) {
            usage_line(stdout, ctl.cmd);
            printf("  %s\n", ctl.cmd->summary);
        } else {
            overview(stdout);
        }
    } else if (rc == CTL_OK) {
        rc = ctl.cmd->fn(&ctl);
    }
    if (rc == CTL_USAGE) {
        if (ctl.cmd)
            usage_line(stderr, ctl.cmd);
        else if (!grouped)
            overview(stderr);
    }
    if (ctl.conn)
        PQfinish(ctl.conn);
    mc_config_free(&ctl.cfg, config_table, MC_COUNT(config_table));
    return rc;
}
