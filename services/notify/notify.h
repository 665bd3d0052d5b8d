/* notify.h: the notify service's state, configuration and handlers. */
#ifndef NOTIFY_H
#define NOTIFY_H

#include <jansson.h>
#include <uv.h>

#include "auth.h"
#include "bus.h"
#include "fetch.h"
#include "http.h"
#include "outcall.h"
#include "service.h"

/* The channels, in the default order of preference. */
typedef enum { CH_EMAIL, CH_SMS, CH_CHAT, CH_COUNT } channel_t;
extern const char *const channel_names[CH_COUNT];
int channel_parse(const char *name); /* channel_t, or -1 */

/* Configuration of delivery (config table in main.c). */
typedef struct {
    char *smtp_url;
    char *smtp_from; /* "Display name <address>" */
    char *sms_url;
    char *sms_token;
    char *chat_url;
    char *chat_token;
    char *receipt_secret;
    char *link_base;
    long rate[CH_COUNT]; /* messages per second per channel */
    long tick_ms;
    long timeout_ms;
    long lease_ms;
    long retries; /* attempts per channel before falling back */
    long backoff_ms;
    long batch;
    long receipt_max_age_s;
} notify_config_t;

/* The loaded templates (template.c). */
typedef struct templates templates_t;

/* Domain state shared by the handlers (mc_service_data). */
typedef struct {
    mc_service_t *svc;
    mc_auth_t *auth;
    notify_config_t cfg;
    templates_t *templates;
    /* delivery (deliver.c) */
    mc_outcall_t *worker; /* its fetcher sends */
    double tokens[CH_COUNT];
    uint64_t refilled_ms;
    int claim_ch; /* the channel being claimed */
} notify_t;

static inline notify_t *notify_of(void *svc)
{
    return mc_service_data(svc);
}

/* ---- request.c ---- */
/* NotificationRequested: keep the request with its order of channels. */
void notification_record(mc_bus_msg_t *msg, void *arg);
/* GET /v1/notifications?dossier=CODE (officer, operator), or ?state=failed&limit&offset
 * (operator): with channel, attempts, state and history. */
void notification_list(mc_http_req_t *req, void *arg);

/* ---- retry.c ---- */
/* POST /v1/notifications/{id}/retry (operator): a failed or unknown notification gets
 * one more round of its channels. */
void notification_retry(mc_http_req_t *req, void *arg);

/* ---- preference.c ---- */
/* One contact's preferences: channels in order (n of them) and the opted-out ones. */
typedef struct {
    int set; /* 0: no preferences */
    int n;
    channel_t order[CH_COUNT];
    unsigned opt_out; /* bits 1 << channel_t */
} channel_pref_t;
/* The key of a contact: a phone number in E.164 form, an e-mail address lower-cased.
 * MC_EINVAL if it is not one. */
int contact_phone(const char *phone, char *out, size_t outlen);
int contact_email(const char *email, char *out, size_t outlen);
/* Comma-separated channel names (as array_to_string prints them) into *pref;
 * MC_EINVAL on an unknown name. */
int preference_parse(const char *channels, const char *opt_out, channel_pref_t *pref);
/* The channels of one notification, as a PostgreSQL array literal ("{sms,email}"):
 * the requested order ("sms,email") if any, else the phone's preferences, else the
 * e-mail's, else e-mail, SMS, chat; without channels either contact opted out of
 * and channels without an address. phone and email may be NULL. */
void channels_choose(const char *requested, const channel_pref_t *phone,
                     const channel_pref_t *email, int has_email, int has_phone, char *out,
                     size_t outlen);
/* PUT and GET /v1/notifications/preferences. */
void preferences_put(mc_http_req_t *req, void *arg);
void preferences_get(mc_http_req_t *req, void *arg);

/* ---- template.c ---- */
/* Read MOTCUA_DATA_DIR/templates/templates.json; NULL with the reason in err. */
templates_t *templates_load(const char *data_dir, char *err, size_t errlen);
void templates_destroy(templates_t **t);
int templates_version(const templates_t *t);
/* Render event/channel with params (a JSON object of strings; "code" is the dossier).
 * Returns MC_OK and sets *subject (email only, else NULL) and *text, newly allocated;
 * MC_ENOTFOUND if there is no such template. */
int template_render(const templates_t *t, const notify_config_t *cfg, const char *event,
                    channel_t ch, json_t *params, char **subject, char **text);
/* GET /v1/templates and GET /v1/templates/{id}/preview. */
void templates_list(mc_http_req_t *req, void *arg);
void template_preview(mc_http_req_t *req, void *arg);

/* ---- message.c ---- */
/* The RFC 5322 text of an e-mail (CRLF, UTF-8 subject as RFC 2047 words, base64 body).
 * message_id is written into mid (without angle brackets). */
char *message_email(const notify_config_t *cfg, const char *to, const char *subject,
                    const char *body, long long attempt_id, char *mid, size_t midlen);
/* The envelope sender address of MOTCUA_SMTP_FROM. */
void message_from_address(const char *from, char *out, size_t outlen);
/* A Vietnamese phone number in E.164 form (+84...) into out; MC_EINVAL if not one. */
int message_phone_e164(const char *phone, char *out, size_t outlen);
/* e-mail addresses masked for logs: "binh@example.vn" -> "b***@example.vn". */
void message_mask_email(const char *addr, char *out, size_t outlen);

/* ---- deliver.c ---- */
/* Start the worker (a timer on the service loop) and the stop hooks. */
void deliver_start(notify_t *n);
/* After mc_service_run: what the worker still holds. */
void deliver_close(notify_t *n);

/* ---- receipt.c ---- */
/* POST /v1/notifications/receipt: the SMS gateway's signed delivery report. */
void receipt_receive(mc_http_req_t *req, void *arg);

#endif
