/* fuzz_calendar.c: the calendar file (deploy/data/calendar.csv), the working hours and
 * the cut-off as text, then the arithmetic on the calendar they make.
 *
 * Input: 8 bytes of an instant and 8 of an amount, then the hours and the cut-off each
 * ending with '\n', then the CSV. An empty hours line keeps the default hours. On the
 * calendar built, working time added from the instant must count back to the amount
 * (mc_calendar_working_between is the exact inverse of mc_calendar_add_working). */
#include <stdlib.h>
#include <string.h>

#include "calendar.h"
#include "fuzz.h"

static int64_t take_i64(const uint8_t **data, size_t *size)
{
    uint64_t v = 0;
    for (int i = 0; i < 8 && *size; i++, (*data)++, (*size)--)
        v = v << 8 | **data;
    return (int64_t)v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t at = take_i64(&data, &size), amount = take_i64(&data, &size);
    char *hours = fuzz_field(&data, &size, '\n', NULL);
    char *cutoff_text = fuzz_field(&data, &size, '\n', NULL);
    char err[256] = "";

    mc_calendar_t *cal = mc_calendar_new();
    if (*hours && mc_calendar_set_hours(cal, hours, err, sizeof err) != 0 && !*err)
        abort(); /* refused without a reason */
    int cutoff = mc_calendar_parse_cutoff(cutoff_text);
    if (cutoff != MC_CALENDAR_NO_CUTOFF && cutoff != MC_CALENDAR_BAD_CUTOFF &&
        (cutoff < 0 || cutoff > 1439))
        abort();
    err[0] = '\0';
    if (mc_calendar_load(cal, (const char *)data, size, err, sizeof err) != 0 && !*err)
        abort();

    /* A whole minute between the years 1970 and 2200: where the inverse is exact. */
    int64_t start = (int64_t)((uint64_t)at % 7258118400000ULL) / 60000 * 60000;
    int64_t minutes = amount % (MC_CALENDAR_MAX_MINUTES / 100);
    int64_t due = mc_calendar_add_working(cal, start, minutes);
    if (due != MC_CALENDAR_INVALID && mc_calendar_working_between(cal, start, due) != minutes)
        abort(); /* add_working and working_between disagree */
    int64_t ms = mc_calendar_add_working_ms(cal, start, amount % 1000000000);
    (void)ms;

    int days = (int)((uint64_t)amount % (MC_CALENDAR_MAX_DAYS + 1));
    int64_t due_day = mc_calendar_due(cal, start, days, cutoff < 0 ? -1 : cutoff);
    char iso[MC_CALENDAR_ISO_LEN];
    if (due_day != MC_CALENDAR_INVALID && mc_calendar_iso8601(due_day, iso) != 0)
        abort();
    (void)mc_calendar_next_working_day_start(cal, at);

    mc_local_time_t lt;
    if (mc_calendar_local(start, &lt) == 0) {
        const char *name;
        (void)mc_calendar_day_kind(cal, lt.year, lt.month, lt.day, &name);
        (void)mc_calendar_is_working_day(cal, lt.year, lt.month, lt.day);
    }
    mc_calendar_destroy(&cal);
    free(hours);
    free(cutoff_text);
    return 0;
}
