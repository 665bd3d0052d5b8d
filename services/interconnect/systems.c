/* systems.c: which system receives which agency's handoffs, from systems.json.
 *
 * The file (MOTCUA_INTERCONNECT_SYSTEMS, by default <MOTCUA_DATA_DIR>/interconnect/
 * systems.json) is an array of {agency_prefix, kind, url, token_env}; it is read once
 * at start. A handoff goes to the system with the longest prefix of its agency code;
 * none means the handoff fails ('failed', HandoffFailed). Tokens are never in the
 * file: token_env names the environment variable that holds the bearer token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interconnect.h"
#include "log.h"

int systems_load(interconnect_t *ic, const char *path, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc) {
        snprintf(err, errlen, "%s: %s (line %d)", path, jerr.text, jerr.line);
        return -1;
    }
    if (!json_is_array(doc)) {
        snprintf(err, errlen, "%s: an array of systems is required", path);
        json_decref(doc);
        return -1;
    }
    size_t n = json_array_size(doc);
    ic->systems = mc_alloc((n ? n : 1) * sizeof *ic->systems);
    memset(ic->systems, 0, (n ? n : 1) * sizeof *ic->systems);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(doc, i);
        const char *prefix = json_string_value(json_object_get(s, "agency_prefix"));
        const char *kind = json_string_value(json_object_get(s, "kind"));
        const char *url = json_string_value(json_object_get(s, "url"));
        const char *token_env = json_string_value(json_object_get(s, "token_env"));
        const char *problem = !prefix || !*prefix               ? "agency_prefix is required"
                              : !kind || strcmp(kind, "http")   ? "kind must be \"http\""
                              : !url || strncmp(url, "http", 4) ? "url must be an http(s) URL"
                              : token_env && !*token_env        ? "token_env is empty"
                                                                : NULL;
        if (problem) {
            snprintf(err, errlen, "%s: system %zu: %s", path, i, problem);
            json_decref(doc);
            systems_free(ic);
            return -1;
        }
        agency_system_t *sys = &ic->systems[ic->nsystems++];
        sys->prefix = mc_strdup(prefix);
        sys->kind = mc_strdup(kind);
        sys->url = mc_strdup(url);
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
    for (size_t i = 0; i < ic->nsystems; i++) {
        const agency_system_t *s = &ic->systems[i];
        size_t len = strlen(s->prefix);
        if (strncmp(agency, s->prefix, len) == 0 && (!best || len > strlen(best->prefix)))
            best = s;
    }
    return best;
}
