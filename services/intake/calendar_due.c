/* calendar_due.c: GET /v1/calendar/due?from=<ISO 8601>&days=N[&cutoff=HH:MM] — the due
 * time a dossier received at `from` would get; the same computation as submission. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calendar.h"
#include "error.h"
#include "intake.h"
#include "service.h"

/* Parse "YYYY-MM-DDTHH:MM[:SS][.fff](Z|+HH:MM|-HH:MM)"; no zone means Vietnam time. */
static int parse_instant(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, sec = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d%n", &y, &mo, &d, &h, &mi, &n) != 5 || n != 16)
        return MC_EINVAL;
    const char *p = s + n;
    if (*p == ':') {
        if (sscanf(p, ":%2d%n", &sec, &n) != 1 || n != 3)
            return MC_EINVAL;
        p += n;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    int offset_min = 7 * 60;
    if (*p == 'Z' && !p[1]) {
        offset_min = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || oh > 14 || om > 59)
            return MC_EINVAL;
        offset_min = (*p == '-' ? -1 : 1) * (oh * 60 + om);
    } else if (*p) {
        return MC_EINVAL;
    }
    int64_t local = mc_calendar_local_ms(y, mo, d, h, mi, sec);
    if (local == MC_CALENDAR_INVALID)
        return MC_EINVAL;
    /* local is the instant whose UTC+7 wall time is the given one; shift to the zone. */
    *out = local + (int64_t)(7 * 60 - offset_min) * 60000;
    return MC_OK;
}

void calendar_due(mc_http_req_t *req, void *arg)
{
    mc_service_t *svc = arg;
    const char *from = mc_http_query(req, "from");
    const char *days_text = mc_http_query(req, "days");
    int64_t from_ms;
    if (!from || parse_instant(from, &from_ms) != MC_OK) {
        mc_http_reply_error(req, 400, "invalid",
                            "from must be an ISO 8601 time, e.g. 2026-02-13T10:00:00+07:00",
                            "from");
        return;
    }
    char *end = NULL;
    double days = days_text ? strtod(days_text, &end) : -1;
    if (!days_text || !*days_text || *end || !(days >= 0 && days <= 3650)) {
        mc_http_reply_error(req, 400, "invalid", "days must be a number of working days 0..3650",
                            "days");
        return;
    }
    int cutoff = mc_calendar_parse_cutoff(mc_http_query(req, "cutoff"));
    if (cutoff == MC_CALENDAR_BAD_CUTOFF) {
        mc_http_reply_error(req, 400, "invalid", "cutoff must be HH:MM", "cutoff");
        return;
    }
    const mc_calendar_t *cal = mc_service_calendar(svc);
    int64_t due = mc_calendar_due_days(cal, from_ms, days, cutoff);
    char from_iso[MC_CALENDAR_ISO_LEN], due_iso[MC_CALENDAR_ISO_LEN];
    if (due == MC_CALENDAR_INVALID || mc_calendar_iso8601(from_ms, from_iso) != MC_OK ||
        mc_calendar_iso8601(due, due_iso) != MC_OK) {
        mc_http_reply_error(req, 422, "rule_violation", "outside the calendar's range", "from");
        return;
    }
    mc_http_reply_json(req, 200,
                       json_pack("{s:s, s:f, s:s*, s:s, s:I}", "from", from_iso, "days", days,
                                 "cutoff", mc_http_query(req, "cutoff"), "due_at", due_iso,
                                 "working_minutes",
                                 (json_int_t)mc_calendar_working_between(cal, from_ms, due)));
}
