/* preference.c: the applicant's preferences (which channels, in which order, and
 * which never) and the choice of channels for one notification.
 *
 * Preferences are keyed by a contact: a phone number in E.164 form ("+84912345678",
 * whatever form it was given in) or a lower-cased e-mail address, so that the
 * portal's "0912 345 678" and intake's "+84912345678" are one applicant. The portal
 * (citizen_portal key, acting for the applicant), an officer or an operator writes
 * them with PUT /v1/notifications/preferences and reads them with GET.
 *
 * The order of one notification (channels_choose) is, first that applies: the
 * request's "channels" parameter, the preferences of its phone number, those of its
 * e-mail address, the default (e-mail, SMS, chat). A channel either contact opted
 * out of is never used (an opt-out is not overridden by the other contact or by a
 * request), and a channel without an address is skipped. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "notify.h"

/* ------------------------------------------------------------------ contacts */

int contact_phone(const char *phone, char *out, size_t outlen)
{
    return message_phone_e164(phone, out, outlen);
}

int contact_email(const char *email, char *out, size_t outlen)
{
    size_t n = strlen(email);
    const char *at = strchr(email, '@');
    if (n < 3 || n > 254 || n + 1 > outlen || !at || at == email || strchr(at + 1, '@'))
        return MC_EINVAL;
    const char *dot = strrchr(at + 1, '.');
    if (!dot || dot == at + 1 || !dot[1])
        return MC_EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)email[i];
        if (!isalnum(c) && !strchr("@.!#$%&'*+/=?^_`{|}~-", c))
            return MC_EINVAL; /* no spaces, quotes, commas or control characters */
        out[i] = (char)tolower(c);
    }
    out[n] = '\0';
    return MC_OK;
}

/* ------------------------------------------------------------------ choice */

int preference_parse(const char *channels, const char *opt_out, channel_pref_t *pref)
{
    char buf[64];
    memset(pref, 0, sizeof *pref);
    snprintf(buf, sizeof buf, "%s", channels ? channels : "");
    for (char *save, *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        int c = channel_parse(tok);
        if (c < 0)
            return MC_EINVAL;
        if (pref->n < CH_COUNT)
            pref->order[pref->n++] = (channel_t)c;
    }
    snprintf(buf, sizeof buf, "%s", opt_out ? opt_out : "");
    for (char *save, *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        int c = channel_parse(tok);
        if (c < 0)
            return MC_EINVAL;
        pref->opt_out |= 1u << c;
    }
    pref->set = 1;
    return MC_OK;
}

void channels_choose(const char *requested, const channel_pref_t *phone,
                     const channel_pref_t *email, int has_email, int has_phone, char *out,
                     size_t outlen)
{
    channel_pref_t req = {0};
    const channel_pref_t *order = NULL;
    if (requested && *requested && preference_parse(requested, NULL, &req) == MC_OK && req.n)
        order = &req;
    else if (phone && phone->set)
        order = phone;
    else if (email && email->set)
        order = email;
    channel_pref_t def = {.set = 1, .n = CH_COUNT, .order = {CH_EMAIL, CH_SMS, CH_CHAT}};
    if (!order)
        order = &def;
    unsigned never = (phone ? phone->opt_out : 0) | (email ? email->opt_out : 0);

    unsigned seen = 0;
    size_t o = (size_t)snprintf(out, outlen, "{");
    for (int i = 0; i < order->n; i++) {
        channel_t c = order->order[i];
        int known = c == CH_EMAIL ? has_email : has_phone;
        if (!known || (never | seen) & (1u << c))
            continue;
        o += (size_t)snprintf(out + o, outlen - o, "%s%s", seen ? "," : "", channel_names[c]);
        seen |= 1u << c;
    }
    snprintf(out + o, outlen - o, "}");
}

/* ------------------------------------------------------------------ API */

#define PREFERENCE_JSON                                                                            \
    "json_build_object('contact', p.contact,"                                                      \
    " 'kind', CASE WHEN p.contact LIKE '+%' THEN 'phone' ELSE 'email' END,"                        \
    " 'channels', p.channels, 'opt_out', p.opt_out,"                                               \
    " 'updated_at', to_char(p.updated_at AT TIME ZONE 'Asia/Ho_Chi_Minh',"                         \
    "   'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+07:00\"'))"

static void on_preferences(mc_db_conn_t *conn, PGresult *res, int status, void *arg)
{
    (void)conn;
    mc_http_req_t *req = arg;
    if (status != MC_OK) {
        mc_http_reply_error(req, 503, "unavailable", "the notification store is unavailable", NULL);
        return;
    }
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        mc_http_reply_error(req, 404, "not_found", "no preferences for this contact", NULL);
        return;
    }
    mc_http_reply_json(req, 200, json_loads(PQgetvalue(res, 0, 0), 0, NULL));
}

/* A JSON array of distinct channel names as a PostgreSQL array literal, and its bits.
 * MC_EINVAL if it is not one (or, with need_one, if it is empty). */
static int channel_list(json_t *list, int need_one, char *out, size_t outlen, unsigned *bits)
{
    size_t i, o = (size_t)snprintf(out, outlen, "{");
    json_t *v;
    *bits = 0;
    if (!json_is_array(list) || (need_one && json_array_size(list) == 0))
        return MC_EINVAL;
    json_array_foreach(list, i, v)
    {
        int c = json_is_string(v) ? channel_parse(json_string_value(v)) : -1;
        if (c < 0 || (*bits & (1u << c)))
            return MC_EINVAL;
        *bits |= 1u << c;
        o += (size_t)snprintf(out + o, outlen - o, "%s%s", i ? "," : "", channel_names[c]);
    }
    snprintf(out + o, outlen - o, "}");
    return MC_OK;
}

/* The contact of a body or query: phone and/or email, normalised. */
static int contact_of(mc_http_req_t *req, const char *phone, const char *email, char *pkey,
                      char *ekey, size_t keylen)
{
    *pkey = *ekey = '\0';
    if (phone && contact_phone(phone, pkey, keylen) != MC_OK) {
        mc_http_reply_error(req, 400, "invalid",
                            "phone must be a Vietnamese (0912...) or E.164 (+84...) number",
                            "phone");
        return MC_EINVAL;
    }
    if (email && contact_email(email, ekey, keylen) != MC_OK) {
        mc_http_reply_error(req, 400, "invalid", "email must be an e-mail address", "email");
        return MC_EINVAL;
    }
    if (!phone && !email) {
        mc_http_reply_error(req, 400, "invalid", "phone or email is required", "phone");
        return MC_EINVAL;
    }
    return MC_OK;
}

static void put_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    (void)who;
    notify_t *n = notify_of(arg);
    json_t *doc = mc_http_json_body(req);
    if (!doc)
        return;
    json_t *jp = json_object_get(doc, "phone"), *je = json_object_get(doc, "email");
    char pkey[264], ekey[264], chans[64], never[64];
    unsigned cbits, nbits = 0;
    if ((jp && !json_is_string(jp)) || (je && !json_is_string(je))) {
        mc_http_reply_error(req, 400, "invalid", "phone and email are strings",
                            jp && !json_is_string(jp) ? "phone" : "email");
    } else if (contact_of(req, json_string_value(jp), json_string_value(je), pkey, ekey,
                          sizeof pkey) != MC_OK) {
        /* answered */
    } else if (channel_list(json_object_get(doc, "channels"), 1, chans, sizeof chans, &cbits) !=
               MC_OK) {
        mc_http_reply_error(req, 400, "invalid",
                            "channels must be a non-empty list of distinct channels among "
                            "email, sms and chat, in the order of preference",
                            "channels");
    } else if (json_object_get(doc, "opt_out") &&
               channel_list(json_object_get(doc, "opt_out"), 0, never, sizeof never, &nbits) !=
                   MC_OK) {
        mc_http_reply_error(req, 400, "invalid",
                            "opt_out must be a list of distinct channels among email, sms and chat",
                            "opt_out");
    } else if (cbits & nbits) {
        mc_http_reply_error(req, 400, "invalid", "a channel cannot be both preferred and opted out",
                            "opt_out");
    } else {
        if (!nbits)
            snprintf(never, sizeof never, "{}");
        mc_db_params_t p = {0};
        mc_db_param_text(&p, *pkey ? pkey : NULL);
        mc_db_param_text(&p, *ekey ? ekey : NULL);
        mc_db_param_text(&p, chans);
        mc_db_param_text(&p, never);
        mc_db_exec(mc_service_db(n->svc),
                   "WITH p AS (INSERT INTO notify.preferences (contact, channels, opt_out)"
                   "   SELECT c, $3::text[], $4::text[] FROM (VALUES ($1), ($2)) v (c)"
                   "   WHERE c IS NOT NULL"
                   "   ON CONFLICT (contact) DO UPDATE SET channels = EXCLUDED.channels,"
                   "     opt_out = EXCLUDED.opt_out, updated_at = now()"
                   "   RETURNING *)"
                   " SELECT json_build_object('items', json_agg(" PREFERENCE_JSON
                   " ORDER BY p.contact LIKE '+%' DESC)) FROM p",
                   &p, 0, on_preferences, req);
    }
    json_decref(doc); /* after: the parameters point into it until mc_db_exec copies them */
}

static void get_as(mc_http_req_t *req, const mc_principal_t *who, void *arg)
{
    (void)who;
    notify_t *n = notify_of(arg);
    const char *phone = mc_http_query(req, "phone"), *email = mc_http_query(req, "email");
    char pkey[264], ekey[264];
    if (phone && email) {
        mc_http_reply_error(req, 400, "invalid", "give phone or email, not both", "email");
        return;
    }
    if (contact_of(req, phone, email, pkey, ekey, sizeof pkey) != MC_OK)
        return;
    mc_db_params_t p = {0};
    mc_db_param_text(&p, *pkey ? pkey : ekey);
    mc_db_exec(mc_service_db(n->svc),
               "SELECT " PREFERENCE_JSON " FROM notify.preferences p WHERE p.contact = $1", &p, 0,
               on_preferences, req);
}

void preferences_put(mc_http_req_t *req, void *arg)
{
    mc_auth_require(notify_of(arg)->auth, req,
                    MC_SCOPE_CITIZEN | MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR, put_as, arg);
}

void preferences_get(mc_http_req_t *req, void *arg)
{
    mc_auth_require(notify_of(arg)->auth, req,
                    MC_SCOPE_CITIZEN | MC_SCOPE_OFFICER | MC_SCOPE_OPERATOR, get_as, arg);
}
