/* motcua-notify: templates and e-mail / SMS / chat-app notifications to applicants.
 * Each NotificationRequested is kept once (request.c); a worker (deliver.c) sends it
 * through the applicant's channels in order (preference.c: the applicant's choice),
 * with retries, rate limits and fallback; an operator may send what failed for one
 * more round (retry.c); the SMS gateway reports delivery by signed callback
 * (receipt.c). Templates are read once at start (template.c): restart the service to
 * change them. */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "log.h"
#include "notify.h"

extern const mc_migration_t mc_sql_notify[];
extern const int mc_sql_notify_count;

static const mc_route_t routes[] = {
    {"GET", "/v1/notifications", notification_list},
    {"POST", "/v1/notifications/receipt", receipt_receive},
    {"GET", "/v1/notifications/preferences", preferences_get},
    {"PUT", "/v1/notifications/preferences", preferences_put},
    {"POST", "/v1/notifications/{id}/retry", notification_retry},
    {"GET", "/v1/templates", templates_list},
    {"GET", "/v1/templates/{id}/preview", template_preview},
};

static const mc_bus_handler_t handlers[] = {
    {MOTCUA__V1__ENVELOPE__BODY_NOTIFICATION_REQUESTED, notification_record},
};

#define OFF(f) offsetof(notify_config_t, f)
static const mc_conf_item_t config_table[] = {
    {"MOTCUA_SMTP_URL", MC_CONF_STRING, OFF(smtp_url), "smtp://127.0.0.1:2525", 0, 0, NULL,
     "SMTP relay for e-mail (smtp:// or smtps://)"},
    {"MOTCUA_SMTP_FROM", MC_CONF_STRING, OFF(smtp_from), "Một cửa điện tử <motcua@example.gov.vn>",
     0, 0, NULL, "From of e-mails"},
    {"MOTCUA_SMS_URL", MC_CONF_STRING, OFF(sms_url), "http://127.0.0.1:8090/sms/send", 0, 0, NULL,
     "SMS gateway send endpoint"},
    {"MOTCUA_SMS_TOKEN", MC_CONF_STRING, OFF(sms_token), "sandbox-sms-token", 0, 0, NULL,
     "bearer token of the SMS gateway"},
    {"MOTCUA_CHAT_URL", MC_CONF_STRING, OFF(chat_url), "http://127.0.0.1:8090/chat/send", 0, 0,
     NULL, "chat-app (Zalo OA style) send endpoint"},
    {"MOTCUA_CHAT_TOKEN", MC_CONF_STRING, OFF(chat_token), "sandbox-chat-token", 0, 0, NULL,
     "access_token header of the chat-app API"},
    {"MOTCUA_SMS_RECEIPT_SECRET", MC_CONF_STRING, OFF(receipt_secret), "sandbox-receipt-secret", 0,
     0, NULL, "HMAC-SHA256 key of the SMS gateway's delivery receipts"},
    {"MOTCUA_NOTIFY_LINK", MC_CONF_STRING, OFF(link_base),
     "https://dichvucong.example.gov.vn/tra-cuu", 0, 0, NULL,
     "public look-up page; {{link}} is this plus ?code=CODE"},
    {"MOTCUA_NOTIFY_RATE_EMAIL", MC_CONF_INT, OFF(rate[CH_EMAIL]), "20", 1, 10000, NULL,
     "e-mails per second at most"},
    {"MOTCUA_NOTIFY_RATE_SMS", MC_CONF_INT, OFF(rate[CH_SMS]), "10", 1, 10000, NULL,
     "SMS per second at most"},
    {"MOTCUA_NOTIFY_RATE_CHAT", MC_CONF_INT, OFF(rate[CH_CHAT]), "10", 1, 10000, NULL,
     "chat messages per second at most"},
    {"MOTCUA_NOTIFY_TICK_MS", MC_CONF_INT, OFF(tick_ms), "250", 10, 60000, NULL,
     "how often the worker looks for notifications to send (ms)"},
    {"MOTCUA_NOTIFY_TIMEOUT_MS", MC_CONF_INT, OFF(timeout_ms), "10000", 100, 300000, NULL,
     "longest wait for a provider (ms)"},
    {"MOTCUA_NOTIFY_LEASE_MS", MC_CONF_INT, OFF(lease_ms), "60000", 1000, 3600000, NULL,
     "after this long 'sending' is taken for a crash: marked 'unknown', never resent (ms)"},
    {"MOTCUA_NOTIFY_RETRIES", MC_CONF_INT, OFF(retries), "5", 1, 100, NULL,
     "attempts on one channel (temporary failures) before the next channel"},
    {"MOTCUA_NOTIFY_BACKOFF_MS", MC_CONF_INT, OFF(backoff_ms), "2000", 10, 3600000, NULL,
     "first retry delay; doubles each time, at most 1 hour"},
    {"MOTCUA_NOTIFY_BATCH", MC_CONF_INT, OFF(batch), "20", 1, 1000, NULL,
     "notifications claimed per channel and tick"},
    {"MOTCUA_SMS_RECEIPT_MAX_AGE_S", MC_CONF_INT, OFF(receipt_max_age_s), "300", 1, 86400, NULL,
     "receipts with an older (or further future) timestamp are refused"},
};

int main(int argc, char **argv)
{
    notify_t state = {0};
    char err[512];
    if (mc_config_load(&state.cfg, config_table, MC_COUNT(config_table), "notify", err,
                       sizeof err)) {
        fprintf(stderr, "motcua-notify: configuration error: %s\n", err);
        return 2;
    }
    if (state.cfg.lease_ms < state.cfg.timeout_ms + 1000) {
        fprintf(stderr,
                "motcua-notify: configuration error: MOTCUA_NOTIFY_LEASE_MS (%ld) must "
                "exceed MOTCUA_NOTIFY_TIMEOUT_MS (%ld) by a second at least\n",
                state.cfg.lease_ms, state.cfg.timeout_ms);
        return 2;
    }
    mc_service_t *svc = mc_service_new("notify", argc, argv, mc_sql_notify, mc_sql_notify_count);
    state.templates = templates_load(mc_service_config(svc)->data_dir, err, sizeof err);
    if (!state.templates) {
        mc_error("templates: %s", err);
        return 2;
    }
    state.svc = svc;
    state.auth = mc_auth_new(mc_service_db(svc));
    mc_service_set_data(svc, &state);
    mc_service_routes(svc, routes, MC_COUNT(routes));
    mc_service_handlers(svc, handlers, MC_COUNT(handlers));
    deliver_start(&state); /* the worker: claim, render, send, record */
    int status = mc_service_run(&svc);
    deliver_close(&state);
    mc_auth_destroy(&state.auth);
    templates_destroy(&state.templates);
    mc_config_free(&state.cfg, config_table, MC_COUNT(config_table));
    return status;
}
