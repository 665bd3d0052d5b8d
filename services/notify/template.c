/* template.c: the notification texts, per event and channel, from
 * MOTCUA_DATA_DIR/templates/templates.json, and their rendering.
 *
 * The file is read once at start-up (a bad file stops the service); a change needs a
 * restart. Placeholders are {{name}}: the dossier code, the request's parameters, and
 * {{link}} (MOTCUA_NOTIFY_LINK?code=CODE). Dates ("..._at", ISO 8601 in local time as
 * routing writes them) are shown the Vietnamese way, "17:00 ngày 26/11/2026";
 * {{amount}} (whole đồng) with dots between thousands, "1.500.000". A placeholder
 * with no value renders empty. Every sent message records the file's version. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "notify.h"

struct templates {
    json_t *root; /* {"version", "samples", "templates": {event: {channel: {...}}}} */
    int version;
};

const char *const channel_names[CH_COUNT] = {"email", "sms", "chat"};

int channel_parse(const char *name)
{
    for (int i = 0; i < CH_COUNT; i++)
        if (strcmp(name, channel_names[i]) == 0)
            return i;
    return -1;
}

/* A template's parts must be non-empty strings. */
static int check(json_t *tpls, char *err, size_t errlen)
{
    const char *event;
    json_t *chans;
    json_object_foreach(tpls, event, chans)
    {
        if (!json_is_object(chans)) {
            snprintf(err, errlen, "templates.%s is not an object", event);
            return MC_EINVAL;
        }
        const char *ch;
        json_t *t;
        json_object_foreach(chans, ch, t)
        {
            int c = channel_parse(ch);
            const char *need[2] = {c == CH_EMAIL ? "subject" : "text",
                                   c == CH_EMAIL ? "body" : NULL};
            if (c < 0) {
                snprintf(err, errlen, "templates.%s: unknown channel %s", event, ch);
                return MC_EINVAL;
            }
            for (int i = 0; i < 2 && need[i]; i++) {
                const char *s = json_string_value(json_object_get(t, need[i]));
                if (!s || !*s) {
                    snprintf(err, errlen, "templates.%s.%s.%s must be a non-empty string", event,
                             ch, need[i]);
                    return MC_EINVAL;
                }
            }
        }
    }
    return MC_OK;
}

templates_t *templates_load(const char *data_dir, char *err, size_t errlen)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/templates/templates.json", data_dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        snprintf(err, errlen, "%s:%d: %s", path, jerr.line, jerr.text);
        return NULL;
    }
    json_t *tpls = json_object_get(root, "templates");
    if (!json_is_integer(json_object_get(root, "version")) || !json_is_object(tpls)) {
        snprintf(err, errlen, "%s: needs an integer \"version\" and a \"templates\" object", path);
        json_decref(root);
        return NULL;
    }
    if (check(tpls, err, errlen) != MC_OK) {
        json_decref(root);
        return NULL;
    }
    templates_t *t = mc_new(templates_t);
    t->root = root;
    t->version = (int)json_integer_value(json_object_get(root, "version"));
    mc_info("templates: version %d, %zu events, from %s", t->version, json_object_size(tpls), path);
    return t;
}

void templates_destroy(templates_t **pt)
{
    templates_t *t = *pt;
    if (!t)
        return;
    json_decref(t->root);
    free(t);
    *pt = NULL;
}

int templates_version(const templates_t *t)
{
    return t->version;
}

/* ------------------------------------------------------------------ rendering */

typedef struct {
    char *s;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = mc_realloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

/* "2026-11-26T17:00:00+07:00" -> "17:00 ngày 26/11/2026" (the time is already local). */
static void format_date(const char *iso, buf_t *b)
{
    int y, mo, d, h, mi;
    if (sscanf(iso, "%4d-%2d-%2dT%2d:%2d", &y, &mo, &d, &h, &mi) == 5) {
        char out[64];
        snprintf(out, sizeof out, "%02d:%02d ngày %02d/%02d/%04d", h, mi, d, mo, y);
        put(b, out, strlen(out));
    } else {
        put(b, iso, strlen(iso));
    }
}

/* "1500000" -> "1.500.000"; anything else as it is. */
static void format_amount(const char *s, buf_t *b)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18 || strspn(s, "0123456789") != n) {
        put(b, s, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            put(b, ".", 1);
        put(b, s + i, 1);
    }
}

static void value(const notify_config_t *cfg, json_t *params, const char *name, size_t nlen,
                  buf_t *b)
{
    char key[64];
    if (nlen >= sizeof key)
        return;
    memcpy(key, name, nlen);
    key[nlen] = '\0';
    const char *code = json_string_value(json_object_get(params, "code"));
    if (strcmp(key, "link") == 0) {
        const char *link = json_string_value(json_object_get(params, "link"));
        if (link) {
            put(b, link, strlen(link));
        } else {
            char *l = mc_sprintf("%s?code=%s", cfg->link_base, code ? code : "");
            put(b, l, strlen(l));
            free(l);
        }
        return;
    }
    const char *v = json_string_value(json_object_get(params, key));
    if (!v)
        return;
    if (nlen > 3 && strcmp(key + nlen - 3, "_at") == 0)
        format_date(v, b);
    else if (strcmp(key, "amount") == 0)
        format_amount(v, b);
    else
        put(b, v, strlen(v));
}

static char *render(const notify_config_t *cfg, const char *tpl, json_t *params)
{
    buf_t b = {0};
    put(&b, "", 0);
    for (const char *p = tpl; *p;) {
        const char *open = strstr(p, "{{");
        const char *close = open ? strstr(open + 2, "}}") : NULL;
        if (!open || !close) {
            put(&b, p, strlen(p));
            break;
        }
        put(&b, p, (size_t)(open - p));
        size_t before = b.len;
        value(cfg, params, open + 2, (size_t)(close - open - 2), &b);
        p = close + 2;
        /* An empty placeholder between spaces takes one of them along: "nhận. {{results}}
         * Tra cứu" reads "nhận. Tra cứu" when there are no results. */
        if (b.len == before && *p == ' ' && (b.len == 0 || b.s[b.len - 1] == ' '))
            p++;
    }
    return b.s;
}

int template_render(const templates_t *t, const notify_config_t *cfg, const char *event,
                    channel_t ch, json_t *params, char **subject, char **text)
{
    json_t *tpl = json_object_get(json_object_get(json_object_get(t->root, "templates"), event),
                                  channel_names[ch]);
    *subject = *text = NULL;
    if (!tpl)
        return MC_ENOTFOUND;
    if (ch == CH_EMAIL) {
        *subject = render(cfg, json_string_value(json_object_get(tpl, "subject")), params);
        *text = render(cfg, json_string_value(json_object_get(tpl, "body")), params);
    } else {
        *text = render(cfg, json_string_value(json_object_get(tpl, "text")), params);
    }
    return MC_OK;
}

/* ------------------------------------------------------------------ HTTP */

/* GET /v1/templates: every event and channel, with the raw texts. */
void templates_list(mc_http_req_t *req, void *arg)
{
    notify_t *n = notify_of(arg);
    json_t *items = json_array();
    const char *event;
    json_t *chans;
    json_object_foreach(json_object_get(n->templates->root, "templates"), event, chans)
    {
        const char *ch;
        json_t *tpl;
        json_object_foreach(chans, ch, tpl)
        {
            json_t *item = json_deep_copy(tpl);
            json_object_set_new(item, "id", json_sprintf("%s.%s", event, ch));
            json_object_set_new(item, "event", json_string(event));
            json_object_set_new(item, "channel", json_string(ch));
            json_array_append_new(items, item);
        }
    }
    mc_http_reply_json(req, 200,
                       json_pack("{s:i, s:o}", "version", n->templates->version, "items", items));
}

/* GET /v1/templates/{event.channel}/preview?code=...&procedure=...: rendered with the
 * query's values, the file's samples filling in the rest. */
void template_preview(mc_http_req_t *req, void *arg)
{
    notify_t *n = notify_of(arg);
    const char *id = mc_http_param(req, "id");
    const char *dot = id ? strrchr(id, '.') : NULL;
    int ch = dot ? channel_parse(dot + 1) : -1;
    if (!dot || ch < 0 || dot == id || (size_t)(dot - id) >= 64) {
        mc_http_reply_error(req, 400, "invalid", "id must be EVENT.CHANNEL, e.g. received.email",
                            "id");
        return;
    }
    char event[64];
    memcpy(event, id, (size_t)(dot - id));
    event[dot - id] = '\0';
    json_t *samples = json_object_get(n->templates->root, "samples");
    json_t *params = json_is_object(samples) ? json_deep_copy(samples) : json_object();
    static const char *const names[] = {"code",     "procedure", "due_at", "appointment_at",
                                        "note",     "reason",    "amount", "link",
                                        "tracking", "results"};
    for (size_t i = 0; i < MC_COUNT(names); i++) {
        const char *v = mc_http_query(req, names[i]);
        if (v)
            json_object_set_new(params, names[i], json_string(v));
    }
    char *subject, *text;
    if (template_render(n->templates, &n->cfg, event, (channel_t)ch, params, &subject, &text) !=
        MC_OK) {
        json_decref(params);
        mc_http_reply_error(req, 404, "not_found", "no such template", "id");
        return;
    }
    json_t *out = json_pack("{s:s, s:s, s:s, s:i, s:s, s:o}", "id", id, "event", event, "channel",
                            channel_names[ch], "version", n->templates->version, "text", text,
                            "params", params);
    if (subject)
        json_object_set_new(out, "subject", json_string(subject));
    free(subject);
    free(text);
    mc_http_reply_json(req, 200, out);
}
