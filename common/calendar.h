/* calendar.h: the working-day calendar that gives every dossier its due time.
 *
 * A calendar knows the working hours of a day (default "07:30-11:30,13:00-17:00"),
 * that Saturday and Sunday are off, and a list of special days loaded from
 * deploy/data/calendar.csv: public holidays (ngày nghỉ lễ, Tết) and make-up working
 * days (ngày làm bù: a Saturday worked in exchange for a bridge day off). A holiday
 * wins over a weekday; a make-up day makes a weekend day a working day.
 *
 * Time. Instants are int64 Unix milliseconds. Local time is Asia/Ho_Chi_Minh, a fixed
 * UTC+7 with no daylight saving since 1975, so the module does that arithmetic itself
 * and never reads tzdata or TZ: the answer is the same on every machine. Supported
 * instants are local years 1900 to 9999; a function whose argument or result falls
 * outside returns MC_CALENDAR_INVALID (or MC_EINVAL for the int functions).
 *
 * Why working-time arithmetic. Every deadline is stated as an amount of working time
 * (N working days = N x the minutes of a normal working day) added to an instant, and
 * mc_calendar_working_between() is the exact inverse of mc_calendar_add_working().
 * That makes the supplement pause (tạm dừng để bổ sung hồ sơ) exact: when a dossier
 * is paused and later resumed,
 *
 *     remaining = mc_calendar_working_between(cal, pause_ms, due_ms);
 *     new_due   = mc_calendar_add_working(cal, resume_ms, remaining);
 *
 * and the applicant gets back precisely the working time left, whatever weekends,
 * holidays and lunch breaks lay in between. The minute functions are exact when the
 * instants are whole minutes; the _ms variants are exact to the millisecond.
 *
 * Period ends. A due instant that falls exactly at the end of a working period stays
 * at that end (Friday 17:00, not Monday 07:30; 11:30, not 13:00): the work is due when
 * the office closes, not when it next opens. Going backwards (negative amounts) the
 * rule mirrors: an instant falling exactly at a period start stays there.
 *
 * Cost. No function steps minute by minute or day by day: working days between two
 * dates are counted arithmetically (weekdays per week) and corrected by the special
 * days, kept sorted with prefix sums and found by binary search; finding the N-th
 * working day is a binary search over that count. Every call is O(log(days) x
 * log(special days)) whatever the amounts.
 *
 * Threads. A calendar is immutable once built: any number of threads may read it.
 * Loading or changing hours while others read is not safe; to reload, build a new
 * calendar and swap the pointer. */
#ifndef MC_CALENDAR_H
#define MC_CALENDAR_H

#include <stddef.h>
#include <stdint.h>

#include "mc.h"

typedef struct mc_calendar mc_calendar_t;

/* Working hours of a new calendar: the office hours of provincial agencies. */
#define MC_CALENDAR_DEFAULT_HOURS "07:30-11:30,13:00-17:00"
/* At most this many working periods in a day. */
#define MC_CALENDAR_MAX_PERIODS 8
/* The instant/amount functions return this when an argument or the result is out of
 * the supported range (see above). It is never a valid instant. */
#define MC_CALENDAR_INVALID INT64_MIN
/* Limits of mc_calendar_due()'s `days` and of add_working's `minutes` (absolute). */
#define MC_CALENDAR_MAX_DAYS    36500
#define MC_CALENDAR_MAX_MINUTES ((int64_t)1000000000)
/* Room for "2026-02-25T10:00:00+07:00" and its NUL. */
#define MC_CALENDAR_ISO_LEN 26

typedef enum {
    MC_DAY_NORMAL = 0,  /* not listed: Monday to Friday work, weekends off */
    MC_DAY_HOLIDAY = 1, /* listed "holiday": off even on a weekday */
    MC_DAY_WORKDAY = 2, /* listed "workday": a make-up working day on a weekend */
} mc_day_kind_t;

/* A broken-down local (UTC+7) time. */
typedef struct {
    int year, month, day;     /* 1900..9999, 1..12, 1..31 */
    int hour, minute, second; /* 0..23, 0..59, 0..59 */
    int millisecond;          /* 0..999 */
    int weekday;              /* 0 = Sunday .. 6 = Saturday */
} mc_local_time_t;

/* ---- construction ---- */

/* A calendar with the default hours and no special days. The caller owns it. */
mc_calendar_t *mc_calendar_new(void);
/* Free *cal and set it to NULL; safe on NULL and twice. */
void mc_calendar_destroy(mc_calendar_t **cal);

/* Set the working periods of a day from text like "07:30-11:30,13:00-17:00": one to
 * MC_CALENDAR_MAX_PERIODS periods HH:MM-HH:MM, comma-separated, in increasing order,
 * not overlapping (24:00 allowed as an end). On error returns MC_EINVAL, writes the
 * reason to err (if not NULL) and leaves the calendar unchanged. */
int mc_calendar_set_hours(mc_calendar_t *cal, const char *hours, char *err,
                          size_t errlen) MC_MUST_USE;

/* Replace the special days with those of a CSV text (len bytes, need not end with
 * NUL): a header line `date,kind,name`, then one line per day: `YYYY-MM-DD`, `holiday`
 * or `workday`, and a name in UTF-8 (quoted with "..." if it has a comma). Blank lines
 * and lines starting with `#` are skipped; a UTF-8 BOM and CRLF line ends are accepted.
 * A date listed twice, or a `workday` that is not a Saturday or Sunday, is an error.
 * On error returns MC_EINVAL with "line N: ..." in err, and the calendar is unchanged. */
int mc_calendar_load(mc_calendar_t *cal, const char *csv_text, size_t len, char *err,
                     size_t errlen) MC_MUST_USE;

/* ---- questions about days ---- */

/* 1 if the local date is a working day, 0 if not, MC_EINVAL if it is not a date. */
int mc_calendar_is_working_day(const mc_calendar_t *cal, int year, int month, int day);
/* What the calendar lists for that date (MC_DAY_NORMAL if nothing or not a date); the
 * listed name is stored in *name if name is not NULL (NULL when not listed). The name
 * is owned by the calendar and lives until the next load or destroy. */
mc_day_kind_t mc_calendar_day_kind(const mc_calendar_t *cal, int year, int month, int day,
                                   const char **name);
/* Working minutes of a normal working day (480 with the default hours). */
int64_t mc_calendar_day_minutes(const mc_calendar_t *cal);
/* Number of special days loaded. */
size_t mc_calendar_special_count(const mc_calendar_t *cal);

/* ---- working-time arithmetic ---- */

/* The instant after `minutes` of working time counted from start_ms. If start_ms is
 * outside working hours, counting starts at the next working period's start; with
 * minutes == 0 that start is the answer. A result exactly at a period's end stays
 * there. Negative minutes count backwards (the instant from which `-minutes` of work
 * lead to start_ms). MC_CALENDAR_INVALID beyond the limits. */
int64_t mc_calendar_add_working(const mc_calendar_t *cal, int64_t start_ms,
                                int64_t minutes) MC_MUST_USE;
/* Working minutes in [a_ms, b_ms), negative if b_ms < a_ms; a part of a minute is
 * dropped (toward zero). MC_CALENDAR_INVALID beyond the limits. */
int64_t mc_calendar_working_between(const mc_calendar_t *cal, int64_t a_ms,
                                    int64_t b_ms) MC_MUST_USE;
/* The same two to the millisecond (amount_ms at most MC_CALENDAR_MAX_MINUTES minutes). */
int64_t mc_calendar_add_working_ms(const mc_calendar_t *cal, int64_t start_ms,
                                   int64_t amount_ms) MC_MUST_USE;
int64_t mc_calendar_working_ms_between(const mc_calendar_t *cal, int64_t a_ms,
                                       int64_t b_ms) MC_MUST_USE;

/* The start of the first working period of the first working day after the local day
 * of ms (strictly after: from Monday 06:00 it is Tuesday's opening; for "the next
 * working instant at or after ms" use mc_calendar_add_working(cal, ms, 0)). */
int64_t mc_calendar_next_working_day_start(const mc_calendar_t *cal, int64_t ms) MC_MUST_USE;

/* The due instant of a dossier received at received_ms with a resolution time of
 * `days` working days (0..MC_CALENDAR_MAX_DAYS). cutoff_minute is the procedure's
 * cut-off in minutes after local midnight (900 for 15:00), or -1 for the end of the
 * working day. Received on a working day before the cut-off, counting starts at the
 * receipt (or the next working period's start if outside hours); received at or after
 * the cut-off, or on a non-working day, counting starts at the start of the next
 * working day. Then days x mc_calendar_day_minutes() of working time are added.
 * MC_CALENDAR_INVALID if an argument is out of range (bad input from a caller: check). */
int64_t mc_calendar_due(const mc_calendar_t *cal, int64_t received_ms, int days,
                        int cutoff_minute) MC_MUST_USE;

/* As mc_calendar_due, for a fractional number of working days (workflow steps take
 * shares like 0.25 of a day): counting starts as above, then days x the working
 * minutes of a day (in milliseconds, rounded) are added. */
int64_t mc_calendar_due_days(const mc_calendar_t *cal, int64_t received_ms, double days,
                             int cutoff_minute) MC_MUST_USE;

/* No cut-off (NULL or ""), and a text that is not "HH:MM", as parse results. */
#define MC_CALENDAR_NO_CUTOFF  (-1)
#define MC_CALENDAR_BAD_CUTOFF (-2)
/* Minutes after midnight of "HH:MM" (0..1439), MC_CALENDAR_NO_CUTOFF for NULL or "",
 * MC_CALENDAR_BAD_CUTOFF for anything else. */
int mc_calendar_parse_cutoff(const char *text) MC_MUST_USE;

/* ---- local time (UTC+7) ---- */

/* The Unix ms of a local date and time, or MC_CALENDAR_INVALID if it is not one
 * (hour 0..23, minute 0..59, second 0..59, year 1900..9999). */
int64_t mc_calendar_local_ms(int year, int month, int day, int hour, int minute, int second);
/* Break ms down into local time; MC_EINVAL if out of the supported range. */
int mc_calendar_local(int64_t ms, mc_local_time_t *out);
/* Write ms as "YYYY-MM-DDTHH:MM:SS+07:00" (ISO 8601, seconds; milliseconds dropped).
 * Returns MC_EINVAL (and writes "") if out of the supported range. */
int mc_calendar_iso8601(int64_t ms, char out[MC_CALENDAR_ISO_LEN]);

#endif
