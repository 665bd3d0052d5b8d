/* calendar.c: working days, working hours and due times in Vietnam's local time.
 *
 * Design. Everything reduces to one monotone count: C(d), the number of working days
 * before local day d (days counted from 1970-01-01, any fixed origin would do). C is
 * weekdays-before-d, computed arithmetically (5 per week), plus the sum of the special
 * days' corrections before d (-1 for a holiday on a weekday, +1 for a make-up day on a
 * weekend), taken from a prefix-sum array over the sorted special days by binary
 * search. Working time between two instants is then C(db) - C(da) whole days plus the
 * two partial days; adding working time is the inverse: find the working day with a
 * given ordinal by binary search on C, then the position inside that day's periods.
 * No loop depends on the amount of time, so a due date ten years out costs the same as
 * one tomorrow.
 *
 * Local time is UTC+7 with no daylight saving (Asia/Ho_Chi_Minh since 1975): a local
 * day starts at day * 86400000 - 7 h in Unix milliseconds. Civil dates use Howard
 * Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
 *
 * The module does no I/O and keeps no global state; a calendar is read-only after
 * mc_calendar_set_hours / mc_calendar_load, which change it only when they succeed. */
#include "calendar.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define MINUTE_MS      ((int64_t)60000)
#define DAY_MS         ((int64_t)86400000)
#define OFFSET_MS      ((int64_t)7 * 3600 * 1000) /* UTC+7 */
#define FIRST_DAY      ((int64_t)-25567)          /* 1900-01-01 */
#define END_DAY        ((int64_t)2932897)         /* 10000-01-01, excluded */
#define MIN_MS         (FIRST_DAY * DAY_MS - OFFSET_MS)
#define END_MS         (END_DAY * DAY_MS - OFFSET_MS) /* excluded */
#define NAME_MAX_BYTES 200

typedef struct {
    int64_t start, end; /* ms after local midnight, start < end */
} period_t;

typedef struct {
    int64_t day; /* local day number */
    mc_day_kind_t kind;
    char *name;
    int line; /* where it was read, for error messages */
} special_t;

struct mc_calendar {
    period_t periods[MC_CALENDAR_MAX_PERIODS];
    size_t nperiods;
    int64_t day_ms; /* working ms of a normal day: sum of the periods */

    special_t *specials; /* sorted by day, no two on the same day */
    size_t nspecials;
    int64_t *adjust;  /* nspecials + 1 prefix sums of the corrections */
    int64_t nremoved; /* special days that remove a weekday (bounds the searches) */
};

/* ------------------------------------------------------------------ */
/* Day arithmetic                                                     */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static int64_t floor_mod(int64_t a, int64_t b)
{
    return a - floor_div(a, b) * b;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *year, int *month, int *day)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int)(yoe + era * 400 + (m <= 2));
    *month = m;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
}

static int days_in_month(int y, int m)
{
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dim[m - 1];
}

static int valid_date(int y, int m, int d)
{
    return y >= 1900 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}

/* 0 = Sunday .. 6 = Saturday; day 0 (1970-01-01) was a Thursday. */
static int weekday(int64_t day)
{
    return (int)floor_mod(day + 4, 7);
}

static int is_weekend(int64_t day)
{
    int wd = weekday(day);
    return wd == 0 || wd == 6;
}

static int64_t local_day(int64_t ms)
{
    return floor_div(ms + OFFSET_MS, DAY_MS);
}

static int64_t day_start_ms(int64_t day)
{
    return day * DAY_MS - OFFSET_MS;
}

static int in_range(int64_t ms)
{
    return ms >= MIN_MS && ms < END_MS;
}

/* Monday to Friday days in [1969-12-29, day): a cumulative count whose differences
 * give the weekdays of any range (negative days included). */
static int64_t weekdays_before(int64_t day)
{
    int64_t k = day + 3; /* 0 on Monday 1969-12-29 */
    int64_t r = floor_mod(k, 7);
    return 5 * floor_div(k, 7) + (r < 5 ? r : 5);
}

/* ------------------------------------------------------------------ */
/* Special days                                                       */

/* Index of the first special day on or after day. */
static size_t lower_bound(const mc_calendar_t *cal, int64_t day)
{
    size_t lo = 0, hi = cal->nspecials;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cal->specials[mid].day < day)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const special_t *find_special(const mc_calendar_t *cal, int64_t day)
{
    size_t i = lower_bound(cal, day);
    return i < cal->nspecials && cal->specials[i].day == day ? &cal->specials[i] : NULL;
}

static int working_day(const mc_calendar_t *cal, int64_t day)
{
    const special_t *s = find_special(cal, day);
    if (s)
        return s->kind == MC_DAY_WORKDAY;
    return !is_weekend(day);
}

/* C(day): working days before day (from the weekday origin). Non-decreasing, and
 * C(day + 1) - C(day) is 1 exactly when day is a working day. */
static int64_t count_before(const mc_calendar_t *cal, int64_t day)
{
    return weekdays_before(day) + cal->adjust[lower_bound(cal, day)];
}

/* The working day x with C(x) == C(from) + ordinal: ordinal 0 is the first working
 * day on or after `from`, 1 the next, -1 the last one before `from`. Binary search
 * between bounds that hold because any 7 consecutive days have 5 weekdays and the
 * holidays remove at most nremoved of them. */
static int64_t working_day_at(const mc_calendar_t *cal, int64_t from, int64_t ordinal)
{
    int64_t target = count_before(cal, from) + ordinal;
    int64_t n = (ordinal < 0 ? -ordinal : ordinal) + 1;
    int64_t span = 7 * ((n + cal->nremoved) / 5 + 1);
    int64_t lo = from - span, hi = from + span; /* C(lo) <= target < C(hi) */
    assert(count_before(cal, lo) <= target && count_before(cal, hi) > target);
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (count_before(cal, mid) <= target)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* ------------------------------------------------------------------ */
/* Working periods inside a day                                       */

/* Working ms of a working day before the offset `off` (ms after local midnight). */
static int64_t worked_before(const mc_calendar_t *cal, int64_t off)
{
    int64_t sum = 0;
    for (size_t i = 0; i < cal->nperiods; i++) {
        const period_t *p = &cal->periods[i];
        if (off <= p->start)
            break;
        sum += (off < p->end ? off : p->end) - p->start;
    }
    return sum;
}

/* The offset inside a working day where `r` ms of that day's work have been done.
 * Where several offsets qualify (r equal to a period boundary), `earliest` picks the
 * period's end, otherwise the next period's start. */
static int64_t offset_after(const mc_calendar_t *cal, int64_t r, int earliest)
{
    for (size_t i = 0;; i++) {
        assert(i < cal->nperiods); /* callers pass r within a day's work */
        const period_t *p = &cal->periods[i];
        int64_t len = p->end - p->start;
        if (earliest ? r <= len : r < len)
            return p->start + r;
        r -= len;
    }
}

/* Working ms in the day of ms before ms (0 on a non-working day). */
static int64_t worked_in_day(const mc_calendar_t *cal, int64_t ms, int64_t *day_out)
{
    int64_t day = local_day(ms);
    *day_out = day;
    return working_day(cal, day) ? worked_before(cal, ms - day_start_ms(day)) : 0;
}

/* ------------------------------------------------------------------ */
/* Construction and working hours                                     */

static void set_error(char *err, size_t errlen, const char *fmt, ...) MC_PRINTF(3, 4);
static void set_error(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

mc_calendar_t *mc_calendar_new(void)
{
    mc_calendar_t *cal = mc_new(mc_calendar_t);
    cal->adjust = mc_alloc(sizeof(int64_t));
    int rc = mc_calendar_set_hours(cal, MC_CALENDAR_DEFAULT_HOURS, NULL, 0);
    assert(rc == 0);
    (void)rc;
    return cal;
}

static void free_specials(special_t *specials, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(specials[i].name);
    free(specials);
}

void mc_calendar_destroy(mc_calendar_t **pcal)
{
    if (!pcal || !*pcal)
        return;
    mc_calendar_t *cal = *pcal;
    free_specials(cal->specials, cal->nspecials);
    free(cal->adjust);
    free(cal);
    *pcal = NULL;
}

static const char *skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Parse "H:MM" or "HH:MM" at *pp into minutes after midnight (24:00 allowed). */
static int parse_clock(const char **pp, int *minutes)
{
    const char *p = *pp;
    int h = 0, digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 2)
        h = h * 10 + (*p++ - '0'), digits++;
    if (digits == 0 || *p != ':' || !(p[1] >= '0' && p[1] <= '9') || !(p[2] >= '0' && p[2] <= '9'))
        return -1;
    int m = (p[1] - '0') * 10 + (p[2] - '0');
    if (m > 59 || h > 24 || (h == 24 && m != 0))
        return -1;
    *pp = p + 3;
    *minutes = h * 60 + m;
    return 0;
}

int mc_calendar_set_hours(mc_calendar_t *cal, const char *hours, char *err, size_t errlen)
{
    assert(cal);
    if (!hours)
        return set_error(err, errlen, "working hours missing"), MC_EINVAL;
    period_t periods[MC_CALENDAR_MAX_PERIODS];
    size_t n = 0;
    const char *p = skip_blanks(hours);
    if (*p == '\0')
        return set_error(err, errlen, "working hours are empty: expected e.g. %s",
                         MC_CALENDAR_DEFAULT_HOURS),
               MC_EINVAL;
    for (;;) {
        int from, to;
        int index = (int)n + 1;
        if (n == MC_CALENDAR_MAX_PERIODS)
            return set_error(err, errlen, "more than %d working periods", MC_CALENDAR_MAX_PERIODS),
                   MC_EINVAL;
        p = skip_blanks(p);
        if (parse_clock(&p, &from) < 0)
            return set_error(err, errlen, "period %d: expected HH:MM-HH:MM (e.g. %s)", index,
                             MC_CALENDAR_DEFAULT_HOURS),
                   MC_EINVAL;
        p = skip_blanks(p);
        if (*p++ != '-')
            return set_error(err, errlen, "period %d: expected '-' after the start time", index),
                   MC_EINVAL;
        p = skip_blanks(p);
        if (parse_clock(&p, &to) < 0)
            return set_error(err, errlen, "period %d: expected an end time HH:MM", index),
                   MC_EINVAL;
        if (from >= 24 * 60)
            return set_error(err, errlen, "period %d: 24:00 can only end a period", index),
                   MC_EINVAL;
        if (to <= from)
            return set_error(err, errlen,
                             "period %d: ends at %02d:%02d, not after its start %02d:%02d", index,
                             to / 60, to % 60, from / 60, from % 60),
                   MC_EINVAL;
        if (n > 0 && from * MINUTE_MS < periods[n - 1].end)
            return set_error(err, errlen,
                             "period %d: starts at %02d:%02d, before period %d ends (periods go in "
                             "order and do not overlap)",
                             index, from / 60, from % 60, index - 1),
                   MC_EINVAL;
        periods[n].start = from * MINUTE_MS;
        periods[n].end = to * MINUTE_MS;
        n++;
        p = skip_blanks(p);
        if (*p == '\0')
            break;
        if (*p++ != ',')
            return set_error(err, errlen, "period %d: expected ',' or the end after it", index),
                   MC_EINVAL;
    }
    memcpy(cal->periods, periods, n * sizeof periods[0]);
    cal->nperiods = n;
    cal->day_ms = 0;
    for (size_t i = 0; i < n; i++)
        cal->day_ms += periods[i].end - periods[i].start;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Loading special days (CSV)                                         */

/* A copy of s fit for an error message: printable ASCII, at most 24 characters. */
static const char *shown(const char *s, char out[32])
{
    size_t o = 0;
    for (; *s && o < 24; s++)
        out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    if (*s)
        memcpy(out + o, "...", 3), o += 3;
    out[o] = '\0';
    return out;
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF) without
 * control characters. */
static int valid_name(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s;
        int extra;
        unsigned cp, min;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return 0;
            s++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            extra = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        for (int i = 1; i <= extra; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        s += extra + 1;
    }
    return 1;
}

/* Split a NUL-terminated line (modified in place) into at most `max` CSV fields:
 * comma-separated, blanks around unquoted fields trimmed, "..." quoting with "" for a
 * quote. Returns the number of fields, or -1 for a quote error, -2 for too many. */
static int split_fields(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max)
            return -2;
        while (*p == ' ' || *p == '\t')
            p++;
        char *out = p, *field = p;
        if (*p == '"') {
            field = out = ++p;
            for (;;) {
                if (*p == '\0')
                    return -1;
                if (*p == '"') {
                    if (p[1] != '"')
                        break;
                    p++;
                }
                *out++ = *p++;
            }
            p++; /* the closing quote */
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p != ',' && *p != '\0')
                return -1;
        } else {
            while (*p && *p != ',')
                p++;
            out = p;
            while (out > field && (out[-1] == ' ' || out[-1] == '\t'))
                out--;
        }
        char sep = *p;
        *out = '\0';
        fields[n++] = field;
        if (sep == '\0')
            return n;
        p++;
    }
}

/* "YYYY-MM-DD" into a day number; -1 if not that shape, -2 if not a date. */
static int parse_date(const char *s, int64_t *day)
{
    for (int i = 0; i < 10; i++) {
        int want_dash = i == 4 || i == 7;
        if (want_dash ? s[i] != '-' : !(s[i] >= '0' && s[i] <= '9'))
            return -1;
    }
    if (s[10] != '\0')
        return -1;
    int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
    if (!valid_date(y, m, d))
        return -2;
    *day = days_from_civil(y, m, d);
    return 0;
}

static const char *const weekday_names[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                            "Thursday", "Friday", "Saturday"};

/* Check one data line and append it to *list. 0, or MC_EINVAL with err set. */
static int parse_special(char *line, int lineno, special_t **list, size_t *n, size_t *cap,
                         char *err, size_t errlen)
{
    char *f[3], buf[32];
    int nf = split_fields(line, f, 3);
    if (nf == -1)
        return set_error(err, errlen, "line %d: badly quoted field", lineno), MC_EINVAL;
    if (nf != 3)
        return set_error(err, errlen, "line %d: expected 3 fields date,kind,name, found %s", lineno,
                         nf < 0    ? "more"
                         : nf == 1 ? "1"
                                   : "2"),
               MC_EINVAL;
    int64_t day;
    int rc = parse_date(f[0], &day);
    if (rc == -1)
        return set_error(err, errlen, "line %d: date \"%s\" is not YYYY-MM-DD", lineno,
                         shown(f[0], buf)),
               MC_EINVAL;
    if (rc == -2)
        return set_error(err, errlen, "line %d: %s is not a date between 1900 and 9999", lineno,
                         f[0]),
               MC_EINVAL;
    mc_day_kind_t kind;
    if (strcmp(f[1], "holiday") == 0)
        kind = MC_DAY_HOLIDAY;
    else if (strcmp(f[1], "workday") == 0)
        kind = MC_DAY_WORKDAY;
    else
        return set_error(err, errlen, "line %d: kind \"%s\" is neither holiday nor workday", lineno,
                         shown(f[1], buf)),
               MC_EINVAL;
    if (kind == MC_DAY_WORKDAY && !is_weekend(day))
        return set_error(err, errlen,
                         "line %d: %s is a %s, already a working day; a make-up workday must be "
                         "a Saturday or Sunday",
                         lineno, f[0], weekday_names[weekday(day)]),
               MC_EINVAL;
    if (f[2][0] == '\0')
        return set_error(err, errlen, "line %d: the name is empty", lineno), MC_EINVAL;
    if (strlen(f[2]) > NAME_MAX_BYTES)
        return set_error(err, errlen, "line %d: the name is longer than %d bytes", lineno,
                         NAME_MAX_BYTES),
               MC_EINVAL;
    if (!valid_name((const unsigned char *)f[2]))
        return set_error(err, errlen, "line %d: the name is not valid UTF-8 text", lineno),
               MC_EINVAL;
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *list = mc_realloc(*list, *cap * sizeof **list);
    }
    (*list)[(*n)++] = (special_t){day, kind, mc_strdup(f[2]), lineno};
    return 0;
}

static int by_day_then_line(const void *a, const void *b)
{
    const special_t *x = a, *y = b;
    if (x->day != y->day)
        return x->day < y->day ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

int mc_calendar_load(mc_calendar_t *cal, const char *text, size_t len, char *err, size_t errlen)
{
    assert(cal && (text || len == 0));
    special_t *list = NULL;
    size_t n = 0, cap = 0;
    int lineno = 0, header = 0, rc = 0;
    char *line = NULL;
    size_t pos = 0;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        pos = 3; /* a UTF-8 BOM, as spreadsheet programs write */
    while (pos < len && rc == 0) {
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - start) : len - pos;
        pos += llen + (nl != NULL);
        lineno++;
        if (llen > 0 && start[llen - 1] == '\r')
            llen--;
        if (memchr(start, '\0', llen)) {
            rc = MC_EINVAL;
            set_error(err, errlen, "line %d: contains a NUL byte", lineno);
            break;
        }
        free(line);
        line = mc_strndup(start, llen);
        const char *first = skip_blanks(line);
        if (*first == '\0' || *first == '#')
            continue;
        if (!header) {
            char *f[3];
            if (split_fields(line, f, 3) != 3 || strcmp(f[0], "date") != 0 ||
                strcmp(f[1], "kind") != 0 || strcmp(f[2], "name") != 0) {
                rc = MC_EINVAL;
                set_error(err, errlen, "line %d: expected the header \"date,kind,name\"", lineno);
            }
            header = 1;
            continue;
        }
        rc = parse_special(line, lineno, &list, &n, &cap, err, errlen);
    }
    free(line);
    if (rc == 0 && !header) {
        rc = MC_EINVAL;
        set_error(err, errlen, "line %d: expected the header \"date,kind,name\"", lineno + 1);
    }
    if (rc == 0 && n > 1) {
        qsort(list, n, sizeof *list, by_day_then_line);
        const special_t *dup = NULL;
        for (size_t i = 1; i < n; i++)
            if (list[i].day == list[i - 1].day && (!dup || list[i].line < dup->line))
                dup = &list[i];
        if (dup) {
            rc = MC_EINVAL;
            int y, m, d;
            civil_from_days(dup->day, &y, &m, &d);
            int firstline = (dup - 1)->line; /* sorted by line within a day */
            set_error(err, errlen, "line %d: %04d-%02d-%02d is listed twice (also on line %d)",
                      dup->line, y, m, d, firstline);
        }
    }
    if (rc != 0) {
        free_specials(list, n);
        return rc;
    }

    int64_t *adjust = mc_alloc((n + 1) * sizeof *adjust);
    int64_t removed = 0;
    for (size_t i = 0; i < n; i++) {
        int weekend = is_weekend(list[i].day);
        int64_t a = 0;
        if (list[i].kind == MC_DAY_HOLIDAY && !weekend)
            a = -1, removed++;
        else if (list[i].kind == MC_DAY_WORKDAY && weekend)
            a = 1;
        adjust[i + 1] = adjust[i] + a;
    }
    free_specials(cal->specials, cal->nspecials);
    free(cal->adjust);
    cal->specials = list;
    cal->nspecials = n;
    cal->adjust = adjust;
    cal->nremoved = removed;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Questions about days                                               */

int mc_calendar_is_working_day(const mc_calendar_t *cal, int year, int month, int day)
{
    assert(cal);
    if (!valid_date(year, month, day))
        return MC_EINVAL;
    return working_day(cal, days_from_civil(year, month, day));
}

mc_day_kind_t mc_calendar_day_kind(const mc_calendar_t *cal, int year, int month, int day,
                                   const char **name)
{
    assert(cal);
    const special_t *s =
        valid_date(year, month, day) ? find_special(cal, days_from_civil(year, month, day)) : NULL;
    if (name)
        *name = s ? s->name : NULL;
    return s ? s->kind : MC_DAY_NORMAL;
}

int64_t mc_calendar_day_minutes(const mc_calendar_t *cal)
{
    assert(cal);
    return cal->day_ms / MINUTE_MS;
}

size_t mc_calendar_special_count(const mc_calendar_t *cal)
{
    assert(cal);
    return cal->nspecials;
}

/* ------------------------------------------------------------------ */
/* Working-time arithmetic                                            */

int64_t mc_calendar_add_working_ms(const mc_calendar_t *cal, int64_t start_ms, int64_t amount)
{
    assert(cal);
    const int64_t max = MC_CALENDAR_MAX_MINUTES * MINUTE_MS;
    if (!in_range(start_ms) || amount > max || amount < -max)
        return MC_CALENDAR_INVALID;
    /* Position the target on the working-time axis whose origin is the start of the
     * first working day on or after start's day (ordinal 0). */
    int64_t day;
    int64_t target = worked_in_day(cal, start_ms, &day) + amount;
    int64_t ordinal, r;
    if (amount > 0) {
        /* The earliest instant with that much work done: ends of periods stay. */
        ordinal = floor_div(target - 1, cal->day_ms);
        r = target - ordinal * cal->day_ms; /* in (0, day_ms] */
    } else {
        /* The latest: from outside hours counting starts at the next period's start,
         * and going back a period's start stays. */
        ordinal = floor_div(target, cal->day_ms);
        r = target - ordinal * cal->day_ms; /* in [0, day_ms) */
    }
    int64_t x = working_day_at(cal, day, ordinal);
    if (x < FIRST_DAY || x >= END_DAY)
        return MC_CALENDAR_INVALID;
    return day_start_ms(x) + offset_after(cal, r, amount > 0);
}

int64_t mc_calendar_add_working(const mc_calendar_t *cal, int64_t start_ms, int64_t minutes)
{
    if (minutes > MC_CALENDAR_MAX_MINUTES || minutes < -MC_CALENDAR_MAX_MINUTES)
        return MC_CALENDAR_INVALID;
    return mc_calendar_add_working_ms(cal, start_ms, minutes * MINUTE_MS);
}

int64_t mc_calendar_working_ms_between(const mc_calendar_t *cal, int64_t a_ms, int64_t b_ms)
{
    assert(cal);
    if (!in_range(a_ms) || !in_range(b_ms))
        return MC_CALENDAR_INVALID;
    if (b_ms < a_ms)
        return -mc_calendar_working_ms_between(cal, b_ms, a_ms);
    int64_t da, db;
    int64_t in_a = worked_in_day(cal, a_ms, &da);
    int64_t in_b = worked_in_day(cal, b_ms, &db);
    return (count_before(cal, db) - count_before(cal, da)) * cal->day_ms - in_a + in_b;
}

int64_t mc_calendar_working_between(const mc_calendar_t *cal, int64_t a_ms, int64_t b_ms)
{
    int64_t ms = mc_calendar_working_ms_between(cal, a_ms, b_ms);
    return ms == MC_CALENDAR_INVALID ? ms : ms / MINUTE_MS; /* C division: toward zero */
}

int64_t mc_calendar_next_working_day_start(const mc_calendar_t *cal, int64_t ms)
{
    assert(cal);
    if (!in_range(ms))
        return MC_CALENDAR_INVALID;
    int64_t x = working_day_at(cal, local_day(ms) + 1, 0);
    if (x >= END_DAY)
        return MC_CALENDAR_INVALID;
    return day_start_ms(x) + cal->periods[0].start;
}

int64_t mc_calendar_due(const mc_calendar_t *cal, int64_t received_ms, int days, int cutoff_minute)
{
    assert(cal);
    if (!in_range(received_ms) || days < 0 || days > MC_CALENDAR_MAX_DAYS || cutoff_minute < -1 ||
        cutoff_minute > 24 * 60)
        return MC_CALENDAR_INVALID;
    int64_t day = local_day(received_ms);
    int64_t cutoff =
        cutoff_minute < 0 ? cal->periods[cal->nperiods - 1].end : cutoff_minute * MINUTE_MS;
    int64_t start = received_ms;
    if (!working_day(cal, day) || received_ms - day_start_ms(day) >= cutoff) {
        start = mc_calendar_next_working_day_start(cal, received_ms);
        if (start == MC_CALENDAR_INVALID)
            return start;
    }
    return mc_calendar_add_working_ms(cal, start, (int64_t)days * cal->day_ms);
}

/* ------------------------------------------------------------------ */
/* Local time                                                         */

int64_t mc_calendar_local_ms(int year, int month, int day, int hour, int minute, int second)
{
    if (!valid_date(year, month, day) || hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
        second < 0 || second > 59)
        return MC_CALENDAR_INVALID;
    return day_start_ms(days_from_civil(year, month, day)) +
           ((int64_t)(hour * 60 + minute) * 60 + second) * 1000;
}

int mc_calendar_local(int64_t ms, mc_local_time_t *out)
{
    assert(out);
    if (!in_range(ms))
        return MC_EINVAL;
    int64_t day = local_day(ms);
    int64_t off = ms - day_start_ms(day);
    civil_from_days(day, &out->year, &out->month, &out->day);
    out->hour = (int)(off / 3600000);
    out->minute = (int)(off / 60000 % 60);
    out->second = (int)(off / 1000 % 60);
    out->millisecond = (int)(off % 1000);
    out->weekday = weekday(day);
    return 0;
}

int mc_calendar_iso8601(int64_t ms, char out[MC_CALENDAR_ISO_LEN])
{
    mc_local_time_t t;
    if (mc_calendar_local(ms, &t) < 0) {
        out[0] = '\0';
        return MC_EINVAL;
    }
    /* Digits by hand: every field is in range, and no truncation to reason about. */
    static const char shape[] = "0000-00-00T00:00:00+07:00";
    const struct {
        int value, at, width;
    } fields[] = {{t.year, 0, 4},  {t.month, 5, 2},   {t.day, 8, 2},
                  {t.hour, 11, 2}, {t.minute, 14, 2}, {t.second, 17, 2}};
    memcpy(out, shape, sizeof shape);
    for (size_t i = 0; i < MC_COUNT(fields); i++)
        for (int k = fields[i].width - 1, v = fields[i].value; k >= 0; k--, v /= 10)
            out[fields[i].at + k] = (char)('0' + v % 10);
    return 0;
}

int64_t mc_calendar_due_days(const mc_calendar_t *cal, int64_t received_ms, double days,
                             int cutoff_minute)
{
    if (!(days >= 0 && days <= MC_CALENDAR_MAX_DAYS))
        return MC_CALENDAR_INVALID;
    int64_t start = mc_calendar_due(cal, received_ms, 0, cutoff_minute);
    if (start == MC_CALENDAR_INVALID)
        return start;
    double ms = days * (double)mc_calendar_day_minutes(cal) * 60000.0;
    return mc_calendar_add_working_ms(cal, start, (int64_t)(ms + 0.5));
}

int mc_calendar_parse_cutoff(const char *text)
{
    if (!text || !*text)
        return MC_CALENDAR_NO_CUTOFF;
    int hh, mm;
    char extra;
    if (strlen(text) != 5 || sscanf(text, "%2d:%2d%c", &hh, &mm, &extra) != 2 || hh < 0 ||
        hh > 23 || mm < 0 || mm > 59)
        return MC_CALENDAR_BAD_CUTOFF;
    return hh * 60 + mm;
}
