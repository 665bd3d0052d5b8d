/* stats.c: `motcuactl stats --from D --to D [--agency CODE] [--csv | --json]`: the
 * one-stop report of an agency and the agencies below it.
 *
 * Unlike the other commands, this one does not read the database: it asks routing's
 * GET /v1/stats (at MOTCUA_HTTP_HOST:MOTCUA_ROUTING_HTTP_PORT), so that the report has
 * one definition, the SQL in services/routing/stats.c. It needs an API key (officer,
 * operator or integrator), from --key or, better, since a command line is visible to
 * every user of the host, from the environment variable MOTCUA_API_KEY. Routing checks
 * the dates and the agency; its refusals are shown as it words them (400: exit 2, as
 * any bad command line; anything else: exit 1). */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "ctl.h"

#define STATS_TIMEOUT_MS   30000L
#define CONNECT_TIMEOUT_MS 3000L
#define MAX_ANSWER         (1 << 20)

/* The report's lines: routing's field, and its label in the table. */
static const struct {
    const char *field;
    const char *label;
} lines[] = {
    {"received_total", "Received"},
    {"carried_over", "  carried over from before the period"},
    {"received_online", "  new, online"},
    {"received_direct", "  new, at the desk"},
    {"received_postal", "  new, by post"},
    {"resolved_total", "Resolved (incl. withdrawn)"},
    {"resolved_early", "  early"},
    {"resolved_on_time", "  on time"},
    {"resolved_late", "  late"},
    {"refused", "  of which refused"},
    {"withdrawn", "  of which withdrawn"},
    {"in_progress_total", "In progress at the end"},
    {"in_progress_on_time", "  within time"},
    {"in_progress_overdue", "  overdue"},
    {"on_time_rate", "Resolved early or on time"},
    {"online_rate", "New dossiers received online"},
    {"level3", "New online, service level 3"},
    {"level4", "New online, service level 4"},
};

typedef struct {
    char *data;
    size_t len;
    int too_big;
} answer_t;

static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
    answer_t *a = arg;
    size_t add = size * n;
    if (a->len + add > MAX_ANSWER) {
        a->too_big = 1;
        return 0;
    }
    a->data = mc_realloc(a->data, a->len + add + 1);
    memcpy(a->data + a->len, data, add);
    a->len += add;
    a->data[a->len] = '\0';
    return add;
}

/* The host part of the URL: a wildcard bind address means this host; an IPv6 literal
 * needs brackets. */
static void url_host(const char *host, char *out, size_t outlen)
{
    if (!*host || strcmp(host, "0.0.0.0") == 0)
        snprintf(out, outlen, "127.0.0.1");
    else if (strcmp(host, "::") == 0)
        snprintf(out, outlen, "[::1]");
    else if (strchr(host, ':') && host[0] != '[')
        snprintf(out, outlen, "[%s]", host);
    else
        snprintf(out, outlen, "%s", host);
}

/* GET the report into *a; the HTTP status in *code. CTL_OK or CTL_FAIL after saying
 * why nothing answered. */
static int stats_get(const ctl_t *ctl, const char *key, answer_t *a, long *code)
{
    CURL *h = curl_easy_init();
    if (!h) {
        ctl_error("cannot start libcurl");
        return CTL_FAIL;
    }
    char host[128];
    url_host(ctl->cfg.http_host, host, sizeof host);
    int port = ctl->cfg.http_ports[ctl_service_index("routing")];
    char *from = curl_easy_escape(h, ctl->stats_from, 0);
    char *to = curl_easy_escape(h, ctl->stats_to, 0);
    char *agency = ctl->key_agency ? curl_easy_escape(h, ctl->key_agency, 0) : NULL;
    char *url = mc_sprintf("http://%s:%d/v1/stats?from=%s&to=%s%s%s%s", host, port,
                           from ? from : "", to ? to : "", agency ? "&agency=" : "",
                           agency ? agency : "", ctl->csv ? "&format=csv" : "");
    char *auth = mc_sprintf("Authorization: Bearer %s", key);
    struct curl_slist *headers = curl_slist_append(NULL, auth);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*"); /* an http_proxy is not for us */
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, STATS_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    CURLcode rc = curl_easy_perform(h);
    int status = CTL_OK;
    if (rc != CURLE_OK) {
        ctl_error("routing did not answer at http://%s:%d: %s", host, port,
                  a->too_big ? "answer too large" : curl_easy_strerror(rc));
        status = CTL_FAIL;
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
    }
    curl_slist_free_all(headers);
    explicit_bzero(auth, strlen(auth));
    free(auth);
    free(url);
    curl_free(from);
    curl_free(to);
    curl_free(agency);
    curl_easy_cleanup(h);
    return status;
}

/* Routing's refusal, as it words it: {"error": {"message", "field"}}. */
static int refused(long code, const answer_t *a)
{
    json_t *doc = a->data ? json_loads(a->data, 0, NULL) : NULL;
    json_t *err = json_object_get(doc, "error");
    const char *message = json_string_value(json_object_get(err, "message"));
    const char *field = json_string_value(json_object_get(err, "field"));
    if (message)
        ctl_error("routing refused (HTTP %ld): %s%s%s%s", code, message, field ? " (" : "",
                  field ? field : "", field ? ")" : "");
    else
        ctl_error("routing answered HTTP %ld", code);
    json_decref(doc);
    return code == 400 ? CTL_USAGE : CTL_FAIL;
}

static int report_print(const ctl_t *ctl, const answer_t *a)
{
    json_error_t jerr;
    json_t *doc = json_loads(a->data ? a->data : "", 0, &jerr);
    if (!json_is_object(doc)) {
        ctl_error("routing's answer is not a JSON object: %s", jerr.text);
        json_decref(doc);
        return CTL_FAIL;
    }
    if (ctl->json) {
        ctl_json_print(&doc);
        return CTL_OK;
    }
    const char *agency = json_string_value(json_object_get(doc, "agency"));
    printf("%s%s, %s to %s\n\n", agency ? "Agency " : "The whole province", agency ? agency : "",
           json_string_value(json_object_get(doc, "from")),
           json_string_value(json_object_get(doc, "to")));
    if (agency)
        printf("(with the agencies below it)\n\n");
    ctl_table_t *t = ctl_table_new(2, NULL, 1u << 1);
    for (size_t i = 0; i < MC_COUNT(lines); i++) {
        json_t *v = json_object_get(doc, lines[i].field);
        char cell[48];
        if (json_is_integer(v))
            snprintf(cell, sizeof cell, "%lld", (long long)json_integer_value(v));
        else if (json_is_number(v))
            snprintf(cell, sizeof cell, "%.1f%%", json_number_value(v));
        else
            snprintf(cell, sizeof cell, "-");
        ctl_table_add(t, (const char *const[]){lines[i].label, cell});
    }
    ctl_table_print(t, stdout, "");
    ctl_table_destroy(&t);
    json_decref(doc);
    return CTL_OK;
}

int ctl_stats(ctl_t *ctl)
{
    if (ctl->key_name || ctl->key_scopes) {
        ctl_error("--name and --scopes do not apply to 'stats'");
        return CTL_USAGE;
    }
    if (!ctl->stats_from || !ctl->stats_to) {
        ctl_error("stats needs --from and --to (dates YYYY-MM-DD, local time)");
        return CTL_USAGE;
    }
    if (ctl->csv && ctl->json) {
        ctl_error("--csv or --json, not both");
        return CTL_USAGE;
    }
    const char *key = ctl->api_key ? ctl->api_key : getenv("MOTCUA_API_KEY");
    if (!key || !*key) {
        ctl_error("stats needs an API key (officer, operator or integrator): set "
                  "MOTCUA_API_KEY or give --key");
        return CTL_USAGE;
    }
    if (!mc_auth_key_valid(key)) {
        ctl_error("%s is not an API key (mck_ and 64 hex digits)",
                  ctl->api_key ? "--key" : "MOTCUA_API_KEY");
        return CTL_USAGE;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    answer_t a = {0};
    long code = 0;
    int rc = stats_get(ctl, key, &a, &code);
    if (rc == CTL_OK && code != 200)
        rc = refused(code, &a);
    else if (rc == CTL_OK && ctl->csv)
        fputs(a.data ? a.data : "", stdout);
    else if (rc == CTL_OK)
        rc = report_print(ctl, &a);
    free(a.data);
    curl_global_cleanup();
    return rc;
}
