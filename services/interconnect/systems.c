/* systems.c: which system receives which agency's handoffs, from systems.json.
 *
 * The file (MOTCUA_INTERCONNECT_SYSTEMS, by default <MOTCUA_DATA_DIR>/interconnect/
 * systems.json) is an array of systems, read once at start:
 *   {agency_prefix, kind: "http", url, token_env}   an agency's HTTP/JSON system
 *   {agency_suffix, kind: "motcua", province}        another province's motcua, over
 *                                                    the bus link (peers.json)
 * A handoff goes to the system whose prefix or suffix matches most of its agency
 * code; none means the handoff fails ('failed', HandoffFailed). Tokens are never in
 * the file: token_env names the environment variable that holds the bearer token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interconnect.h"
#include "log.h"

json_t *config_array_load(const char *path, const char *what, size_t elem_size, void **out,
                          char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc) {
        snprintf(err, errlen, "%s: %s (line %d)", path, jerr.text, jerr.line);
        return NULL;
    }
    if (!json_is_array(doc)) {
        snprintf(err, errlen, "%s: an array of %s is required", path, what);
        json_decref(doc);
        return NULL;
    }
    size_t n = json_array_size(doc) ? json_array_size(doc) : 1;
    *out = mc_alloc(n * elem_size);
    memset(*out, 0, n * elem_size);
    return doc;
}

int systems_load(interconnect_t *ic, const char *path, char *err, size_t errlen)
{
    json_t *doc =
        config_array_load(path, "systems", sizeof *ic->systems, (void **)&ic->systems, err, errlen);
    if (!doc)
        return -1;
    size_t n = json_array_size(doc);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(doc, i);
        const char *prefix = json_string_value(json_object_get(s, "agency_prefix"));
        const char *suffix = json_string_value(json_object_get(s, "agency_suffix"));
        const char *kind = json_string_value(json_object_get(s, "kind"));
        const char *url = json_string_value(json_object_get(s, "url"));
        const char *token_env = json_string_value(json_object_get(s, "token_env"));
        const char *province = json_string_value(json_object_get(s, "province"));
        int motcua = kind && strcmp(kind, "motcua") == 0;
        const char *problem =
            (!prefix || !*prefix) == (!suffix || !*suffix)
                ? "one of agency_prefix and agency_suffix is required"
            : !kind || (strcmp(kind, "http") && !motcua)   ? "kind must be \"http\" or \"motcua\""
            : !motcua && (!url || strncmp(url, "http", 4)) ? "url must be an http(s) URL"
            : motcua && (!province || !*province) ? "province is required for kind \"motcua\""
            : token_env && !*token_env            ? "token_env is empty"
                                                  : NULL;
        if (problem) {
            snprintf(err, errlen, "%s: system %zu: %s", path, i, problem);
            json_decref(doc);
            systems_free(ic);
            return -1;
        }
        agency_system_t *sys = &ic->systems[ic->nsystems++];
        sys->prefix = mc_strdup(prefix && *prefix ? prefix : "");
        sys->suffix = suffix && *suffix ? mc_strdup(suffix) : NULL;
        sys->kind = mc_strdup(kind);
        sys->url = url ? mc_strdup(url) : NULL;
        sys->province = motcua ? mc_strdup(province) : NULL;
        sys->token_env = token_env ? mc_strdup(token_env) : NULL;
        const char *token = token_env ? getenv(token_env) : NULL;
        sys->token = token && *token ? mc_strdup(token) : NULL;
    }
    json_decref(doc);
    return 0;
}

void systems_log(const interconnect_t *ic)
{
    for (size_t i = 0; i < ic->nsystems; i++) {
        const agency_system_t *s = &ic->systems[i];
        if (s->token_env && !s->token)
            mc_warn("systems: %s is not set; handoffs to %s* go without a token", s->token_env,
                    s->prefix);
        if (s->province && !peers_find(ic, s->province))
            mc_warn("systems: province %s is not in peers.json; handoffs to *%s will fail",
                    s->province, s->suffix);
        else if (s->province)
            mc_info("systems: handoffs to *%s go to the motcua of province %s", s->suffix,
                    s->province);
        else
            mc_info("systems: handoffs to %s* go to %s (%s)", s->prefix, s->url, s->kind);
    }
    if (!ic->nsystems)
        mc_warn("systems: no agency system configured; every handoff will fail");
}

void systems_free(interconnect_t *ic)
{
    for (size_t i = 0; i < ic->nsystems; i++) {
        agency_system_t *s = &ic->systems[i];
        free(s->prefix);
        free(s->suffix);
        free(s->province);
        free(s->kind);
        free(s->url);
        free(s->token_env);
        free(s->token);
    }
    free(ic->systems);
    ic->systems = NULL;
    ic->nsystems = 0;
}

const agency_system_t *systems_find(const interconnect_t *ic, const char *agency)
{
    const agency_system_t *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < ic->nsystems; i++) {
        const agency_system_t *s = &ic->systems[i];
        size_t len = s->suffix ? strlen(s->suffix) : strlen(s->prefix);
        size_t alen = strlen(agency);
        int match = s->suffix ? alen >= len && strcmp(agency + alen - len, s->suffix) == 0
                              : strncmp(agency, s->prefix, len) == 0;
        if (match && (!best || len > best_len)) {
            best = s;
            best_len = len;
        }
    }
    return best;
}
