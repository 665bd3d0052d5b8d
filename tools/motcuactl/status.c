/* status.c: `motcuactl status`: is each service up, and how is its bus doing.
 *
 * For each of the six services: its /readyz over HTTP (all six at once through one
 * libcurl multi handle, so a hung service costs one timeout, not six), and, when its
 * schema has the bus tables, the undelivered outbox envelopes by destination with
 * the age of the oldest, the dead letters not yet replayed, and the envelopes its
 * inbox handled in the last hour. A schema without bus tables is reported as such
 * (the service never started and nobody ran `motcuactl migrate`), not as an error.
 * The exit status is 0 whenever the database answered: status reports, it does not
 * judge; monitoring reads the JSON. */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "service.h"

#define READYZ_TIMEOUT_MS  3000L
#define CONNECT_TIMEOUT_MS 2000L

typedef struct {
    char url[160];
    int asked;
    CURLcode result;
    long code; /* HTTP status; 0 when nothing answered */
} readyz_t;

typedef struct {
    const char *name;
    int tables; /* the schema has the bus tables */
    long long pending, dead, inbox_hour;
    double oldest;     /* seconds; < 0 when nothing is pending */
    PGresult *by_dest; /* destination, count, oldest age in seconds */
    readyz_t ready;
} service_status_t;

/* ---------------------------------------------------------------- HTTP */

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

/* The host part of a URL for the services' listeners: a wildcard bind address means
 * "this host"; an IPv6 literal needs brackets. */
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

static void readyz_all(const ctl_t *ctl, service_status_t *st)
{
    char host[128];
    url_host(ctl->cfg.http_host, host, sizeof host);
    CURLM *multi = curl_multi_init();
    CURL *easy[CTL_NSERVICES] = {0};
    for (int i = 0; i < CTL_NSERVICES; i++) {
        readyz_t *r = &st[i].ready;
        snprintf(r->url, sizeof r->url, "http://%s:%d/readyz", host, ctl->cfg.http_ports[i]);
        easy[i] = curl_easy_init();
        if (!easy[i]) {
            r->result = CURLE_OUT_OF_MEMORY;
            continue;
        }
        curl_easy_setopt(easy[i], CURLOPT_URL, r->url);
        curl_easy_setopt(easy[i], CURLOPT_NOPROXY, "*"); /* an http_proxy is not for us */
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, READYZ_TIMEOUT_MS);
        curl_easy_setopt(easy[i], CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(easy[i], CURLOPT_PRIVATE, r);
        curl_multi_add_handle(multi, easy[i]);
        r->asked = 1;
    }
    int running = 1;
    while (running) {
        if (curl_multi_perform(multi, &running) != CURLM_OK)
            break;
        if (running)
            curl_multi_poll(multi, NULL, 0, 200, NULL);
    }
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        readyz_t *r = (readyz_t *)(void *)priv;
        r->result = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &r->code);
    }
    for (int i = 0; i < CTL_NSERVICES; i++)
        if (easy[i]) {
            curl_multi_remove_handle(multi, easy[i]);
            curl_easy_cleanup(easy[i]);
        }
    curl_multi_cleanup(multi);
}

static int ready_up(const readyz_t *r)
{
    return r->result == CURLE_OK && r->code == 200;
}

/* Why a service is down: the HTTP status it answered, or what kept it from answering. */
static const char *ready_error(const readyz_t *r, char *buf, size_t len)
{
    if (ready_up(r))
        return NULL;
    if (r->result == CURLE_OK)
        snprintf(buf, len, "HTTP %ld", r->code);
    else
        snprintf(buf, len, "%s", curl_easy_strerror(r->result));
    return buf;
}

/* ---------------------------------------------------------------- database */

static int bus_stats(ctl_t *ctl, service_status_t *s)
{
    int has = ctl_has_bus_tables(ctl, s->name);
    if (has < 0)
        return CTL_FAIL;
    s->tables = has;
    s->oldest = -1;
    if (!has)
        return CTL_OK;
    char *sql = mc_sprintf("SELECT destination, count(*), "
                           "extract(epoch FROM now() - min(created_at))::float8 "
                           "FROM \"%s\".outbox WHERE delivered_at IS NULL "
                           "GROUP BY destination ORDER BY destination",
                           s->name);
    s->by_dest = ctl_query(ctl, sql, 0, NULL);
    free(sql);
    if (!s->by_dest)
        return CTL_FAIL;
    for (int r = 0; r < PQntuples(s->by_dest); r++) {
        double age = atof(PQgetvalue(s->by_dest, r, 2));
        s->pending += atoll(PQgetvalue(s->by_dest, r, 1));
        if (age > s->oldest)
            s->oldest = age;
    }
    sql = mc_sprintf("SELECT (SELECT count(*) FROM \"%s\".dead_letters WHERE replayed_at IS NULL), "
                     "(SELECT count(*) FROM \"%s\".inbox WHERE handled_at > now() - interval '1 "
                     "hour')",
                     s->name, s->name);
    PGresult *res = ctl_query(ctl, sql, 0, NULL);
    free(sql);
    if (!res)
        return CTL_FAIL;
    s->dead = atoll(PQgetvalue(res, 0, 0));
    s->inbox_hour = atoll(PQgetvalue(res, 0, 1));
    PQclear(res);
    return CTL_OK;
}

/* ---------------------------------------------------------------- output */

static json_t *status_json(const ctl_t *ctl, const service_status_t *st)
{
    json_t *services = json_array();
    for (int i = 0; i < CTL_NSERVICES; i++) {
        const service_status_t *s = &st[i];
        json_t *o = json_pack("{s:s}", "service", s->name);
        if (ctl->http) {
            char buf[160];
            const char *why = ready_error(&s->ready, buf, sizeof buf);
            json_object_set_new(o, "http",
                                json_pack("{s:s, s:s, s:i, s:s?}", "url", s->ready.url, "state",
                                          why ? "down" : "up", "status", (int)s->ready.code,
                                          "error", why));
        } else {
            json_object_set_new(o, "http", json_null());
        }
        json_object_set_new(o, "schema", json_boolean(s->tables));
        if (s->tables) {
            json_t *dests = json_array();
            for (int r = 0; r < PQntuples(s->by_dest); r++)
                json_array_append_new(
                    dests, json_pack("{s:s, s:I, s:f}", "destination", PQgetvalue(s->by_dest, r, 0),
                                     "pending", (json_int_t)atoll(PQgetvalue(s->by_dest, r, 1)),
                                     "oldest_age_s", atof(PQgetvalue(s->by_dest, r, 2))));
            json_object_set_new(o, "outbox",
                                json_pack("{s:I, s:o, s:o}", "pending", (json_int_t)s->pending,
                                          "oldest_age_s",
                                          s->oldest < 0 ? json_null() : json_real(s->oldest),
                                          "by_destination", dests));
            json_object_set_new(o, "dead_letters", json_integer(s->dead));
            json_object_set_new(o, "inbox_last_hour", json_integer(s->inbox_hour));
        } else {
            json_object_set_new(o, "outbox", json_null());
            json_object_set_new(o, "dead_letters", json_null());
            json_object_set_new(o, "inbox_last_hour", json_null());
        }
        json_array_append_new(services, o);
    }
    return json_pack("{s:o}", "services", services);
}

static void status_table(const ctl_t *ctl, const service_status_t *st)
{
    ctl_table_t *t = ctl_table_new(
        6, (const char *const[]){"SERVICE", "HTTP", "OUTBOX", "OLDEST", "DEAD", "INBOX 1H"},
        1u << 2 | 1u << 4 | 1u << 5);
    ctl_table_t *dests = ctl_table_new(
        4, (const char *const[]){"OUTBOX OF", "DESTINATION", "PENDING", "OLDEST"}, 1u << 2);
    char missing[128] = "";
    for (int i = 0; i < CTL_NSERVICES; i++) {
        const service_status_t *s = &st[i];
        char http[200] = "-", pending[24] = "-", oldest[24] = "-", dead[24] = "-", inbox[24] = "-";
        if (ctl->http) {
            char buf[160];
            const char *why = ready_error(&s->ready, buf, sizeof buf);
            if (why)
                snprintf(http, sizeof http, "down (%s)", why);
            else
                snprintf(http, sizeof http, "up");
        }
        if (s->tables) {
            snprintf(pending, sizeof pending, "%lld", s->pending);
            if (s->oldest >= 0)
                ctl_age(s->oldest, oldest, sizeof oldest);
            snprintf(dead, sizeof dead, "%lld", s->dead);
            snprintf(inbox, sizeof inbox, "%lld", s->inbox_hour);
            for (int r = 0; r < PQntuples(s->by_dest); r++) {
                char age[24];
                ctl_age(atof(PQgetvalue(s->by_dest, r, 2)), age, sizeof age);
                ctl_table_add(dests, (const char *const[]){s->name, PQgetvalue(s->by_dest, r, 0),
                                                           PQgetvalue(s->by_dest, r, 1), age});
            }
        } else {
            size_t n = strlen(missing);
            snprintf(missing + n, sizeof missing - n, "%s%s", n ? ", " : "", s->name);
        }
        ctl_table_add(t, (const char *const[]){s->name, http, pending, oldest, dead, inbox});
    }
    ctl_table_print(t, stdout, "");
    if (*missing)
        printf("\nno bus tables (never started, not migrated): %s\n", missing);
    if (ctl_table_rows(dests)) {
        printf("\nundelivered envelopes by destination:\n");
        ctl_table_print(dests, stdout, "  ");
    } else {
        printf("\nno undelivered envelopes\n");
    }
    ctl_table_destroy(&t);
    ctl_table_destroy(&dests);
}

/* ---------------------------------------------------------------- command */

int ctl_status(ctl_t *ctl)
{
    int rc = ctl_connect(ctl);
    if (rc != CTL_OK)
        return rc;
    service_status_t st[CTL_NSERVICES] = {0};
    for (int i = 0; i < CTL_NSERVICES && rc == CTL_OK; i++) {
        st[i].name = mc_service_names[i];
        rc = bus_stats(ctl, &st[i]);
    }
    if (rc == CTL_OK) {
        if (ctl->http) {
            curl_global_init(CURL_GLOBAL_DEFAULT);
            readyz_all(ctl, st);
            curl_global_cleanup();
        }
        if (ctl->json) {
            json_t *doc = status_json(ctl, st);
            ctl_json_print(&doc);
        } else {
            status_table(ctl, st);
        }
    }
    for (int i = 0; i < CTL_NSERVICES; i++)
        PQclear(st[i].by_dest);
    return rc;
}
