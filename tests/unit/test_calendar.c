/* test_calendar.c: working days, working hours and due times, against the shipped
 * 2025-2026 calendar (deploy/data/calendar.csv) and an independent slow reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calendar.h"
#include "error.h"
#include "mc.h"
#include "unit.h"

/* Unix ms of a local (UTC+7) time. */
static int64_t at(int y, int mo, int d, int h, int mi)
{
    int64_t ms = mc_calendar_local_ms(y, mo, d, h, mi, 0);
    assert_true(ms != MC_CALENDAR_INVALID);
    return ms;
}

#define MIN_MS ((int64_t)60000)

/* Compare instants and show both in local time when they differ. */
#define assert_instant(got, want) assert_instant_((got), (want), __FILE__, __LINE__)
static void assert_instant_(int64_t got, int64_t want, const char *file, int line)
{
    if (got == want)
        return;
    char g[MC_CALENDAR_ISO_LEN], w[MC_CALENDAR_ISO_LEN];
    mc_calendar_iso8601(got, g);
    mc_calendar_iso8601(want, w);
    fail_msg("%s:%d: got %s (%lld), want %s", file, line, g, (long long)got, w);
}

/* The shipped data file, found from the working directory (make, tests/run.sh) or
 * from the binary (build/<kind>/bin/unit-tests). */
static char *read_shipped_csv(size_t *len)
{
    static const char rel[] = "deploy/data/calendar.csv";
    char path[4096];
    FILE *f = fopen(rel, "rb");
    if (!f) {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 64);
        if (n > 0) {
            path[n] = '\0';
            char *slash = strrchr(path, '/');
            if (slash) {
                snprintf(slash, sizeof path - (size_t)(slash - path), "/../../../%s", rel);
                f = fopen(path, "rb");
            }
        }
    }
    assert_non_null(f);
    char *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (cap - n < 4096)
            buf = mc_realloc(buf, cap = cap * 2 + 8192);
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return buf;
}

static mc_calendar_t *shipped(void)
{
    size_t len;
    char *text = read_shipped_csv(&len);
    mc_calendar_t *cal = mc_calendar_new();
    char err[256] = "";
    int rc = mc_calendar_load(cal, text, len, err, sizeof err);
    if (rc != 0)
        fail_msg("deploy/data/calendar.csv: %s", err);
    free(text);
    return cal;
}

static int group_setup(void **state)
{
    *state = shipped();
    return 0;
}

static int group_teardown(void **state)
{
    mc_calendar_t *cal = *state;
    mc_calendar_destroy(&cal);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Local time                                                         */

static void local_time_is_utc_plus_7(void **state)
{
    (void)state;
    /* Independent values (Python: datetime(..., tzinfo=UTC+7).timestamp()). */
    assert_int_equal(at(2026, 2, 13, 10, 0), 1770951600000LL);
    assert_int_equal(at(2025, 1, 1, 0, 0), 1735664400000LL);
    assert_int_equal(at(1900, 1, 1, 0, 0), -2209014000000LL);
    assert_int_equal(at(1970, 1, 1, 7, 0), 0);

    mc_local_time_t t;
    assert_int_equal(mc_calendar_local(1770951600123LL, &t), 0);
    assert_int_equal(t.year, 2026);
    assert_int_equal(t.month, 2);
    assert_int_equal(t.day, 13);
    assert_int_equal(t.hour, 10);
    assert_int_equal(t.minute, 0);
    assert_int_equal(t.millisecond, 123);
    assert_int_equal(t.weekday, 5);                 /* Friday */
    assert_int_equal(mc_calendar_local(-1, &t), 0); /* 1970-01-01 06:59:59.999 local */
    assert_int_equal(t.hour, 6);
    assert_int_equal(t.weekday, 4);

    char iso[MC_CALENDAR_ISO_LEN];
    assert_int_equal(mc_calendar_iso8601(at(2026, 2, 25, 10, 0), iso), 0);
    assert_string_equal(iso, "2026-02-25T10:00:00+07:00");
    assert_int_equal(mc_calendar_iso8601(at(9999, 12, 31, 23, 59), iso), 0);
    assert_string_equal(iso, "9999-12-31T23:59:00+07:00");

    /* Every day of 1900..9999 survives the round trip (checks the civil date code). */
    int64_t prev = MC_CALENDAR_INVALID;
    for (int64_t ms = at(1900, 1, 1, 12, 0); ms < at(9999, 12, 31, 13, 0); ms += 86400000LL) {
        assert_int_equal(mc_calendar_local(ms, &t), 0);
        assert_int_equal(mc_calendar_local_ms(t.year, t.month, t.day, t.hour, t.minute, t.second),
                         ms);
        if (prev != MC_CALENDAR_INVALID) {
            mc_local_time_t p;
            assert_int_equal(mc_calendar_local(prev, &p), 0);
            assert_int_equal((p.weekday + 1) % 7, t.weekday);
        }
        prev = ms;
    }

    assert_true(mc_calendar_local_ms(2026, 2, 29, 0, 0, 0) == MC_CALENDAR_INVALID);
    assert_true(mc_calendar_local_ms(2024, 2, 29, 0, 0, 0) != MC_CALENDAR_INVALID);
    assert_true(mc_calendar_local_ms(1900, 2, 29, 0, 0, 0) == MC_CALENDAR_INVALID);
    assert_true(mc_calendar_local_ms(2000, 2, 29, 0, 0, 0) != MC_CALENDAR_INVALID);
    assert_true(mc_calendar_local_ms(1899, 12, 31, 23, 0, 0) == MC_CALENDAR_INVALID);
    assert_true(mc_calendar_local_ms(2026, 1, 1, 24, 0, 0) == MC_CALENDAR_INVALID);
    assert_int_equal(mc_calendar_local(at(1900, 1, 1, 0, 0) - 1, &t), MC_EINVAL);
    assert_int_equal(mc_calendar_iso8601(at(1900, 1, 1, 0, 0) - 1, iso), MC_EINVAL);
    assert_string_equal(iso, "");
}

/* ------------------------------------------------------------------ */
/* Days                                                               */

static void new_calendar_defaults(void **state)
{
    (void)state;
    mc_calendar_t *cal = mc_calendar_new();
    assert_int_equal(mc_calendar_day_minutes(cal), 480);
    assert_int_equal(mc_calendar_special_count(cal), 0);
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 2, 17), 1); /* no holidays loaded */
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 2, 14), 0); /* Saturday */
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 2, 15), 0); /* Sunday */
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 2, 30), MC_EINVAL);
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 13, 1), MC_EINVAL);
    assert_int_equal(mc_calendar_is_working_day(cal, 1899, 12, 29), MC_EINVAL);
    mc_calendar_destroy(&cal);
    assert_null(cal);
    mc_calendar_destroy(&cal); /* safe twice */
    mc_calendar_destroy(NULL);
}

static void shipped_file_contents(void **state)
{
    mc_calendar_t *cal = *state;
    assert_int_equal(mc_calendar_special_count(cal), 27);
    const char *name;
    assert_int_equal(mc_calendar_day_kind(cal, 2026, 2, 17, &name), MC_DAY_HOLIDAY);
    assert_string_equal(name, "Tết Nguyên đán Bính Ngọ");
    assert_int_equal(mc_calendar_day_kind(cal, 2026, 8, 22, &name), MC_DAY_WORKDAY);
    assert_string_equal(name, "Làm bù cho ngày nghỉ thứ Hai 31/8/2026");
    assert_int_equal(mc_calendar_day_kind(cal, 2025, 4, 30, &name), MC_DAY_HOLIDAY);
    assert_string_equal(name, "Ngày Giải phóng miền Nam, thống nhất đất nước (30/4)"); /* quoted */
    assert_int_equal(mc_calendar_day_kind(cal, 2026, 3, 2, &name), MC_DAY_NORMAL);
    assert_null(name);
    assert_int_equal(mc_calendar_day_kind(cal, 2026, 2, 31, &name), MC_DAY_NORMAL);
    assert_null(name);

    /* 2025 and 2026 have the official counts of working days. */
    int per_year[2] = {0, 0};
    for (int y = 2025; y <= 2026; y++)
        for (int m = 1; m <= 12; m++)
            for (int d = 1; d <= 31; d++)
                if (mc_calendar_is_working_day(cal, y, m, d) == 1)
                    per_year[y - 2025]++;
    /* 2025: 261 weekdays - 12 weekday holidays + 1 make-up Saturday. */
    assert_int_equal(per_year[0], 250);
    /* 2026: 261 weekdays - 12 weekday holidays + 1 make-up Saturday. */
    assert_int_equal(per_year[1], 250);
}

static void working_days_around_tet_2026(void **state)
{
    mc_calendar_t *cal = *state;
    static const struct {
        int m, d, working;
    } days[] = {
        {1, 1, 0},  /* Thu, Tết Dương lịch */
        {1, 2, 1},  /* Fri */
        {2, 12, 1}, /* Thu */
        {2, 13, 1}, /* Fri, the last working day before Tết */
        {2, 14, 0}, /* Sat */
        {2, 15, 0}, /* Sun */
        {2, 16, 0}, /* Mon, Tết */
        {2, 17, 0}, /* Tue, mùng 1 */
        {2, 18, 0}, /* Wed */
        {2, 19, 0}, /* Thu */
        {2, 20, 0}, /* Fri */
        {2, 21, 0}, /* Sat */
        {2, 22, 0}, /* Sun */
        {2, 23, 1}, /* Mon, back to work */
        {4, 26, 0}, /* Sun, Giỗ Tổ */
        {4, 27, 0}, /* Mon, off in its place */
        {4, 28, 1}, /* Tue */
        {4, 29, 1}, /* Wed */
        {4, 30, 0}, /* Thu */
        {5, 1, 0},  /* Fri */
        {5, 4, 1},  /* Mon */
    };
    for (size_t i = 0; i < MC_COUNT(days); i++) {
        int got = mc_calendar_is_working_day(cal, 2026, days[i].m, days[i].d);
        if (got != days[i].working)
            fail_msg("2026-%02d-%02d: working %d, want %d", days[i].m, days[i].d, got,
                     days[i].working);
    }
}

static void makeup_saturdays(void **state)
{
    mc_calendar_t *cal = *state;
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 8, 21), 1); /* Fri */
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 8, 22), 1); /* Sat, make-up */
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 8, 23), 0); /* Sun */
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 8, 29), 0); /* Sat */
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 8, 31), 0); /* Mon, swapped */
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 9, 1), 0);
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 9, 2), 0);
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 9, 3), 1);
    assert_int_equal(mc_calendar_is_working_day(cal, 2025, 4, 26), 1); /* Sat, make-up */
    assert_int_equal(mc_calendar_is_working_day(cal, 2025, 5, 2), 0);  /* Fri, swapped */

    /* A dossier received on the make-up Saturday counts from the receipt. */
    assert_instant(mc_calendar_due(cal, at(2026, 8, 22, 9, 0), 1, -1), at(2026, 8, 24, 9, 0));
    /* Friday 21 Aug, 2 days: Sat 22 counts. */
    assert_instant(mc_calendar_due(cal, at(2026, 8, 21, 10, 0), 2, -1), at(2026, 8, 24, 10, 0));
    /* Friday 28 Aug, 2 days: Mon 31, Tue 1 and Wed 2 Sep are off. */
    assert_instant(mc_calendar_due(cal, at(2026, 8, 28, 10, 0), 2, -1), at(2026, 9, 4, 10, 0));
    /* Working time on the make-up Saturday is 8 hours like any day. */
    assert_int_equal(mc_calendar_working_between(cal, at(2026, 8, 22, 0, 0), at(2026, 8, 23, 0, 0)),
                     480);
    assert_int_equal(mc_calendar_working_between(cal, at(2026, 8, 29, 0, 0), at(2026, 9, 3, 0, 0)),
                     0);
}

/* ------------------------------------------------------------------ */
/* Due times                                                          */

static void due_across_weekend(void **state)
{
    mc_calendar_t *cal = *state;
    /* Thu 8 Jan 2026 10:00 + 3 working days: Fri, (Sat, Sun), Mon, Tue 10:00. */
    assert_instant(mc_calendar_due(cal, at(2026, 1, 8, 10, 0), 3, -1), at(2026, 1, 13, 10, 0));
    /* Fri 9 Jan 16:00 + 1 day: Mon 16:00. */
    assert_instant(mc_calendar_due(cal, at(2026, 1, 9, 16, 0), 1, -1), at(2026, 1, 12, 16, 0));
    /* Wed 31 Dec 2025 09:00 + 2 days: Thu 1 Jan is Tết Dương lịch: Fri 2, Mon 5 Jan. */
    assert_instant(mc_calendar_due(cal, at(2025, 12, 31, 9, 0), 2, -1), at(2026, 1, 5, 9, 0));
}

static void due_across_tet(void **state)
{
    mc_calendar_t *cal = *state;
    /* The example of docs/deadlines.md. */
    assert_instant(mc_calendar_due(cal, at(2026, 2, 13, 10, 0), 3, -1), at(2026, 2, 25, 10, 0));
    /* 15 days from Mon 2 Feb 2026 09:00. */
    assert_instant(mc_calendar_due(cal, at(2026, 2, 2, 9, 0), 15, -1), at(2026, 3, 2, 9, 0));
    /* Tết Ất Tỵ 2025: Fri 24 Jan 2025 14:00 + 1 day = Mon 3 Feb 14:00. */
    assert_instant(mc_calendar_due(cal, at(2025, 1, 24, 14, 0), 1, -1), at(2025, 2, 3, 14, 0));
    /* 30/4-1/5 2025 with its swap: Tue 29 Apr 2025 10:00 + 1 day = Mon 5 May 10:00. */
    assert_instant(mc_calendar_due(cal, at(2025, 4, 29, 10, 0), 1, -1), at(2025, 5, 5, 10, 0));
    /* Giỗ Tổ 2026 compensated on Monday: Fri 24 Apr + 1 day = Tue 28 Apr. */
    assert_instant(mc_calendar_due(cal, at(2026, 4, 24, 10, 0), 1, -1), at(2026, 4, 28, 10, 0));
    /* ... and with 30/4-1/5 too: + 5 days = Wed 6 May. */
    assert_instant(mc_calendar_due(cal, at(2026, 4, 24, 10, 0), 5, -1), at(2026, 5, 6, 10, 0));
    /* Fri 13 Feb 2026 15:30 without a cut-off counts from 15:30. */
    assert_instant(mc_calendar_due(cal, at(2026, 2, 13, 15, 30), 3, -1), at(2026, 2, 25, 15, 30));
}

static void due_with_15h_cutoff(void **state)
{
    mc_calendar_t *cal = *state;
    const int cut = 15 * 60;
    /* Before the cut-off: counts from the receipt. */
    assert_instant(mc_calendar_due(cal, at(2026, 1, 5, 14, 59), 1, cut), at(2026, 1, 6, 14, 59));
    /* 15:30: from the next working day's opening, so the day ends Tue 17:00. */
    assert_instant(mc_calendar_due(cal, at(2026, 1, 5, 15, 30), 1, cut), at(2026, 1, 6, 17, 0));
    assert_instant(mc_calendar_due(cal, at(2026, 1, 5, 15, 30), 3, cut), at(2026, 1, 8, 17, 0));
    /* Exactly 15:00 is not before 15:00. */
    assert_instant(mc_calendar_due(cal, at(2026, 1, 5, 15, 0), 1, cut), at(2026, 1, 6, 17, 0));
    /* Without a cut-off 15:30 counts from 15:30. */
    assert_instant(mc_calendar_due(cal, at(2026, 1, 5, 15, 30), 1, -1), at(2026, 1, 6, 15, 30));
    /* After the cut-off on Fri 13 Feb 2026: the next working day is Mon 23 Feb. */
    assert_instant(mc_calendar_due(cal, at(2026, 2, 13, 15, 30), 3, cut), at(2026, 2, 25, 17, 0));
}

static void due_received_outside_hours(void **state)
{
    mc_calendar_t *cal = *state;
    /* Sunday 11 Jan 2026: counting starts Monday 07:30; 2 days end Tuesday 17:00. */
    assert_instant(mc_calendar_due(cal, at(2026, 1, 11, 9, 0), 2, -1), at(2026, 1, 13, 17, 0));
    assert_instant(mc_calendar_due(cal, at(2026, 1, 11, 9, 0), 2, 15 * 60), at(2026, 1, 13, 17, 0));
    /* 12:00, the lunch break: counting starts 13:00, and the 8 hours end Tuesday at
     * 11:30, the end of the morning period (not 13:00). */
    assert_instant(mc_calendar_due(cal, at(2026, 1, 12, 12, 0), 1, -1), at(2026, 1, 13, 11, 30));
    /* 17:30: from Tuesday 07:30. */
    assert_instant(mc_calendar_due(cal, at(2026, 1, 12, 17, 30), 1, -1), at(2026, 1, 13, 17, 0));
    /* Exactly 17:00 (closing): the same. */
    assert_instant(mc_calendar_due(cal, at(2026, 1, 12, 17, 0), 1, -1), at(2026, 1, 13, 17, 0));
    /* 06:45 on a working day: from 07:30 the same day. */
    assert_instant(mc_calendar_due(cal, at(2026, 1, 12, 6, 45), 1, -1), at(2026, 1, 12, 17, 0));
    /* Saturday night of Tết: from Mon 23 Feb. */
    assert_instant(mc_calendar_due(cal, at(2026, 2, 14, 22, 0), 1, -1), at(2026, 2, 23, 17, 0));
    /* days = 0: the instant counting starts. */
    assert_instant(mc_calendar_due(cal, at(2026, 1, 12, 12, 0), 0, -1), at(2026, 1, 12, 13, 0));
    assert_instant(mc_calendar_due(cal, at(2026, 1, 12, 10, 0), 0, -1), at(2026, 1, 12, 10, 0));
}

static void period_ends_stay(void **state)
{
    mc_calendar_t *cal = *state;
    /* A full day from Friday's opening ends Friday 17:00, not Monday 07:30. */
    assert_instant(mc_calendar_add_working(cal, at(2026, 1, 9, 7, 30), 480), at(2026, 1, 9, 17, 0));
    assert_instant(mc_calendar_add_working(cal, at(2026, 1, 9, 7, 30), 240),
                   at(2026, 1, 9, 11, 30));
    assert_instant(mc_calendar_add_working(cal, at(2026, 1, 9, 7, 30), 241), at(2026, 1, 9, 13, 1));
    /* 0 minutes from outside hours: the next period's start. */
    assert_instant(mc_calendar_add_working(cal, at(2026, 1, 9, 11, 30), 0), at(2026, 1, 9, 13, 0));
    assert_instant(mc_calendar_add_working(cal, at(2026, 1, 9, 17, 0), 0), at(2026, 1, 12, 7, 30));
    /* Backwards: a period start stays. */
    assert_instant(mc_calendar_add_working(cal, at(2026, 1, 12, 8, 30), -60),
                   at(2026, 1, 12, 7, 30));
    assert_instant(mc_calendar_add_working(cal, at(2026, 1, 12, 8, 30), -61),
                   at(2026, 1, 9, 16, 59));
    assert_instant(mc_calendar_add_working(cal, at(2026, 2, 23, 7, 30), -1),
                   at(2026, 2, 13, 16, 59));
    assert_instant(mc_calendar_add_working(cal, at(2026, 1, 12, 14, 0), -60),
                   at(2026, 1, 12, 13, 0));

    assert_instant(mc_calendar_next_working_day_start(cal, at(2026, 1, 12, 6, 0)),
                   at(2026, 1, 13, 7, 30));
    assert_instant(mc_calendar_next_working_day_start(cal, at(2026, 2, 13, 10, 0)),
                   at(2026, 2, 23, 7, 30));
    assert_instant(mc_calendar_next_working_day_start(cal, at(2026, 8, 21, 23, 59)),
                   at(2026, 8, 22, 7, 30));
}

/* The supplement pause of docs/deadlines.md. */
static void supplement_pause(void **state)
{
    mc_calendar_t *cal = *state;
    int64_t received = at(2026, 2, 2, 9, 0);
    int64_t due = mc_calendar_due(cal, received, 10, -1);
    assert_instant(due, at(2026, 2, 23, 9, 0)); /* 10 days, Tết skipped */
    int64_t pause = at(2026, 2, 11, 14, 0);     /* supplement requested */
    int64_t resume = at(2026, 2, 24, 10, 0);    /* complete dossier back */
    int64_t remaining = mc_calendar_working_between(cal, pause, due);
    assert_int_equal(remaining, 1230); /* Wed 3 h + Thu 8 h + Fri 8 h + Mon 1.5 h */
    int64_t new_due = mc_calendar_add_working(cal, resume, remaining);
    assert_instant(new_due, at(2026, 2, 26, 16, 0));
    /* The applicant got back exactly what was left, and worked time adds up. */
    assert_int_equal(mc_calendar_working_between(cal, received, pause) + remaining, 10 * 480);
    assert_int_equal(mc_calendar_working_between(cal, received, pause) +
                         mc_calendar_working_between(cal, resume, new_due),
                     10 * 480);
    /* Exact to the millisecond with the _ms pair. */
    int64_t p2 = pause + 12345, r2 = resume + 678;
    int64_t left = mc_calendar_working_ms_between(cal, p2, due);
    int64_t back = mc_calendar_add_working_ms(cal, r2, left);
    assert_int_equal(mc_calendar_working_ms_between(cal, r2, back), left);
    /* Paused on a Saturday: nothing of the weekend is counted either way. */
    int64_t sat = at(2026, 1, 10, 9, 0), mon = at(2026, 1, 12, 7, 30);
    assert_int_equal(mc_calendar_working_between(cal, sat, mon), 0);
    assert_int_equal(mc_calendar_working_between(cal, due, pause), -1230);
    /* Supplement brought on Saturday 21 Feb: counting restarts Mon 23 Feb 07:30. */
    assert_instant(mc_calendar_add_working(cal, at(2026, 2, 21, 10, 0), remaining),
                   at(2026, 2, 25, 13, 30));
}

/* ------------------------------------------------------------------ */
/* Against a slow reference                                           */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Working ms in [a, b) with the default hours, walking day by day: written without
 * the module's counting, only its day answers and local-time conversion. */
static int64_t slow_between(mc_calendar_t *cal, int64_t a, int64_t b)
{
    static const int periods[][2] = {{7 * 60 + 30, 11 * 60 + 30}, {13 * 60, 17 * 60}};
    mc_local_time_t t;
    assert_int_equal(mc_calendar_local(a, &t), 0);
    int64_t sum = 0;
    for (int64_t day0 = at(t.year, t.month, t.day, 0, 0); day0 < b; day0 += 86400000LL) {
        mc_local_time_t d;
        assert_int_equal(mc_calendar_local(day0, &d), 0);
        if (mc_calendar_is_working_day(cal, d.year, d.month, d.day) != 1)
            continue;
        for (size_t i = 0; i < MC_COUNT(periods); i++) {
            int64_t s = day0 + periods[i][0] * MIN_MS, e = day0 + periods[i][1] * MIN_MS;
            if (s < a)
                s = a;
            if (e > b)
                e = b;
            if (e > s)
                sum += e - s;
        }
    }
    return sum;
}

/* Inside a working period of a working day (default hours). */
static int in_hours(mc_calendar_t *cal, int64_t ms)
{
    mc_local_time_t t;
    assert_int_equal(mc_calendar_local(ms, &t), 0);
    int m = t.hour * 60 + t.minute;
    return mc_calendar_is_working_day(cal, t.year, t.month, t.day) == 1 &&
           ((m >= 450 && m < 690) || (m >= 780 && m < 1020));
}

static void round_trip_random(void **state)
{
    mc_calendar_t *cal = *state;
    const int64_t from = at(2025, 1, 1, 0, 0), span = at(2027, 1, 1, 0, 0) - from;
    int inside = 0;
    for (int i = 0; i < 20000; i++) {
        int64_t a = from + (int64_t)(rnd() % (uint64_t)span);
        if (i % 2)
            a -= a % MIN_MS; /* half on whole minutes, half anywhere */
        int64_t m = (int64_t)(rnd() % 40000) - (i % 5 == 0 ? 20000 : 0);
        int64_t b = mc_calendar_add_working(cal, a, m);
        assert_true(b != MC_CALENDAR_INVALID);
        assert_int_equal(mc_calendar_working_between(cal, a, b), m);
        assert_int_equal(mc_calendar_working_ms_between(cal, a, b), m * MIN_MS);
        if (m > 0) {
            assert_true(b > a);
            /* The earliest such instant: a millisecond before, a millisecond short. */
            assert_int_equal(mc_calendar_working_ms_between(cal, a, b - 1), m * MIN_MS - 1);
            assert_true(in_hours(cal, b - 1));
        }
        if (in_hours(cal, a)) {
            inside++;
            assert_instant(mc_calendar_add_working(cal, a, 0), a);
        }
    }
    assert_true(inside > 2000);

    /* The arithmetic count against the day-by-day walk, over ranges up to ~40 days. */
    for (int i = 0; i < 3000; i++) {
        int64_t a = from + (int64_t)(rnd() % (uint64_t)span);
        int64_t b = a + (int64_t)(rnd() % (40 * 86400000ULL));
        int64_t want = slow_between(cal, a, b);
        int64_t got = mc_calendar_working_ms_between(cal, a, b);
        if (got != want) {
            char x[MC_CALENDAR_ISO_LEN], y[MC_CALENDAR_ISO_LEN];
            mc_calendar_iso8601(a, x);
            mc_calendar_iso8601(b, y);
            fail_msg("[%s, %s): %lld ms, reference %lld", x, y, (long long)got, (long long)want);
        }
        assert_int_equal(mc_calendar_working_ms_between(cal, b, a), -want);
    }
}

static void long_amounts_are_cheap(void **state)
{
    mc_calendar_t *cal = *state;
    /* The largest due date: no stepping, so thousands of them take no time. */
    int64_t r = at(2026, 2, 13, 10, 0);
    for (int i = 0; i < 2000; i++) {
        int64_t due = mc_calendar_due(cal, r + i * 3600000LL, MC_CALENDAR_MAX_DAYS, -1);
        assert_true(due != MC_CALENDAR_INVALID);
        assert_true(due > r);
    }
    int64_t due = mc_calendar_due(cal, r, MC_CALENDAR_MAX_DAYS, -1);
    assert_int_equal(mc_calendar_working_between(cal, r, due), (int64_t)MC_CALENDAR_MAX_DAYS * 480);
    int64_t back = mc_calendar_add_working(cal, due, -(int64_t)MC_CALENDAR_MAX_DAYS * 480);
    assert_instant(back, r);
    /* Past the year 9999, or before 1900: invalid, not wrapped. */
    assert_true(mc_calendar_add_working(cal, r, MC_CALENDAR_MAX_MINUTES) == MC_CALENDAR_INVALID);
    assert_true(mc_calendar_add_working(cal, r, -MC_CALENDAR_MAX_MINUTES) == MC_CALENDAR_INVALID);
    assert_true(mc_calendar_add_working(cal, r, MC_CALENDAR_MAX_MINUTES + 1) ==
                MC_CALENDAR_INVALID);
    assert_true(mc_calendar_add_working(cal, INT64_MAX, 1) == MC_CALENDAR_INVALID);
    assert_true(mc_calendar_working_between(cal, INT64_MIN, r) == MC_CALENDAR_INVALID);
    assert_true(mc_calendar_next_working_day_start(cal, at(9999, 12, 31, 9, 0)) ==
                MC_CALENDAR_INVALID);
}

static void due_bad_arguments(void **state)
{
    mc_calendar_t *cal = *state;
    int64_t r = at(2026, 1, 12, 9, 0);
    assert_true(mc_calendar_due(cal, r, -1, -1) == MC_CALENDAR_INVALID);
    assert_true(mc_calendar_due(cal, r, MC_CALENDAR_MAX_DAYS + 1, -1) == MC_CALENDAR_INVALID);
    assert_true(mc_calendar_due(cal, r, 1, -2) == MC_CALENDAR_INVALID);
    assert_true(mc_calendar_due(cal, r, 1, 24 * 60 + 1) == MC_CALENDAR_INVALID);
    assert_true(mc_calendar_due(cal, at(1900, 1, 1, 0, 0) - 1, 1, -1) == MC_CALENDAR_INVALID);
    assert_true(mc_calendar_due(cal, r, 1, 24 * 60) != MC_CALENDAR_INVALID);
}

/* ------------------------------------------------------------------ */
/* Loading and configuration errors                                   */

static void csv_accepts(void **state)
{
    (void)state;
    mc_calendar_t *cal = mc_calendar_new();
    char err[200] = "";
    static const char text[] = "\xef\xbb\xbf# comment first\r\n"
                               "\r\n"
                               "  date , kind , name \r\n"
                               "   # indented comment\n"
                               "2027-02-08,holiday,  Tết Đinh Mùi  \n"
                               "2027-02-06,workday,\"Làm bù, thứ Bảy \"\"6/2\"\"\"\n"
                               "\t\n"
                               "2027-01-01 , holiday , Tết Dương lịch"; /* no final newline */
    assert_int_equal(mc_calendar_load(cal, text, strlen(text), err, sizeof err), 0);
    assert_int_equal(mc_calendar_special_count(cal), 3);
    const char *name;
    assert_int_equal(mc_calendar_day_kind(cal, 2027, 2, 6, &name), MC_DAY_WORKDAY);
    assert_string_equal(name, "Làm bù, thứ Bảy \"6/2\"");
    assert_int_equal(mc_calendar_day_kind(cal, 2027, 2, 8, &name), MC_DAY_HOLIDAY);
    assert_string_equal(name, "Tết Đinh Mùi");
    assert_int_equal(mc_calendar_is_working_day(cal, 2027, 2, 6), 1);
    assert_int_equal(mc_calendar_is_working_day(cal, 2027, 1, 1), 0);

    /* Loading replaces: a header alone empties the list. */
    assert_int_equal(mc_calendar_load(cal, "date,kind,name\n", 15, err, sizeof err), 0);
    assert_int_equal(mc_calendar_special_count(cal), 0);
    assert_int_equal(mc_calendar_is_working_day(cal, 2027, 1, 1), 1);
    /* len, not NUL, ends the text. */
    static const char cut[] = "date,kind,name\n2027-01-01,holiday,X\ngarbage";
    assert_int_equal(mc_calendar_load(cal, cut, strlen(cut) - 8, err, sizeof err), 0);
    assert_int_equal(mc_calendar_special_count(cal), 1);
    mc_calendar_destroy(&cal);
}

static void csv_errors_name_the_line(void **state)
{
    mc_calendar_t *cal = *state;
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"", "line 1: expected the header \"date,kind,name\""},
        {"# only a comment\n\n", "line 3: expected the header"},
        {"date,type,name\n", "line 1: expected the header"},
        {"2026-01-01,holiday,Tết Dương lịch\n", "line 1: expected the header"},
        {"date,kind,name\n2026-1-01,holiday,X\n", "line 2: date \"2026-1-01\" is not YYYY-MM-DD"},
        {"date,kind,name\n# c\n2026-02-30,holiday,X\n",
         "line 3: 2026-02-30 is not a date between 1900 and 9999"},
        {"date,kind,name\n1899-12-31,holiday,X\n", "line 2: 1899-12-31 is not a date"},
        {"date,kind,name\n2026-01-01,Holiday,X\n",
         "line 2: kind \"Holiday\" is neither holiday nor workday"},
        {"date,kind,name\n2026-01-01,holiday\n",
         "line 2: expected 3 fields date,kind,name, found 2"},
        {"date,kind,name\n2026-01-01,holiday,X,Y\n",
         "line 2: expected 3 fields date,kind,name, found more"},
        {"date,kind,name\n2026-01-01,holiday,\n", "line 2: the name is empty"},
        {"date,kind,name\n2026-01-01,holiday,\"Tết\n", "line 2: badly quoted field"},
        {"date,kind,name\n2026-01-01,holiday,\"Tết\" x\n", "line 2: badly quoted field"},
        {"date,kind,name\n2026-01-01,holiday,T\xe1\xbb\n", "line 2: the name is not valid UTF-8"},
        {"date,kind,name\n2026-01-01,holiday,\xc0\xaf\n", "line 2: the name is not valid UTF-8"},
        {"date,kind,name\n2026-01-01,holiday,a\tb\n", "line 2: the name is not valid UTF-8"},
        {"date,kind,name\n2026-08-24,workday,Làm bù\n",
         "line 2: 2026-08-24 is a Monday, already a working day"},
        {"date,kind,name\n2026-01-01,holiday,A\n2026-02-16,holiday,B\n\n2026-01-01,holiday,C\n",
         "line 5: 2026-01-01 is listed twice (also on line 2)"},
        {"date,kind,name\n2026-01-01,holiday,A\n2026-01-02,hol\x01iday,B\n",
         "line 3: kind \"hol?iday\" is neither"},
    };
    char err[200];
    for (size_t i = 0; i < MC_COUNT(bad); i++) {
        strcpy(err, "untouched");
        int rc = mc_calendar_load(cal, bad[i].text, strlen(bad[i].text), err, sizeof err);
        if (rc != MC_EINVAL || strncmp(err, bad[i].want, strlen(bad[i].want)) != 0)
            fail_msg("case %zu: rc %d, err \"%s\", want \"%s\"", i, rc, err, bad[i].want);
    }
    /* A NUL byte inside the text. */
    static const char nul[] = "date,kind,name\n2026-01-01,holiday,A\0B\n";
    assert_int_equal(mc_calendar_load(cal, nul, sizeof nul - 1, err, sizeof err), MC_EINVAL);
    assert_string_equal(err, "line 2: contains a NUL byte");
    /* A long name. */
    char big[400];
    int n = snprintf(big, sizeof big, "date,kind,name\n2026-01-01,holiday,");
    memset(big + n, 'x', 250);
    big[n + 250] = '\0';
    assert_int_equal(mc_calendar_load(cal, big, strlen(big), err, sizeof err), MC_EINVAL);
    assert_string_equal(err, "line 2: the name is longer than 200 bytes");
    /* No error buffer is fine. */
    assert_int_equal(mc_calendar_load(cal, "x", 1, NULL, 0), MC_EINVAL);

    /* The shipped calendar is still in force after every refusal. */
    assert_int_equal(mc_calendar_special_count(cal), 27);
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 2, 17), 0);
    assert_int_equal(mc_calendar_is_working_day(cal, 2026, 8, 22), 1);
}

static void set_hours(void **state)
{
    (void)state;
    mc_calendar_t *cal = mc_calendar_new();
    char err[200];
    static const struct {
        const char *hours, *want;
    } bad[] = {
        {"", "working hours are empty"},
        {"   ", "working hours are empty"},
        {"7.30-11.30", "period 1: expected HH:MM-HH:MM"},
        {"07:30-11:30,", "period 2: expected HH:MM-HH:MM"},
        {"07:30", "period 1: expected '-' after the start time"},
        {"07:30-", "period 1: expected an end time HH:MM"},
        {"07:30-11:60", "period 1: expected an end time HH:MM"},
        {"25:00-26:00", "period 1: expected HH:MM-HH:MM"},
        {"24:00-24:00", "period 1: 24:00 can only end a period"},
        {"11:30-07:30", "period 1: ends at 07:30, not after its start 11:30"},
        {"07:30-07:30", "period 1: ends at 07:30, not after its start 07:30"},
        {"07:30-11:30,11:00-17:00", "period 2: starts at 11:00, before period 1 ends"},
        {"13:00-17:00,07:30-11:30", "period 2: starts at 07:30, before period 1 ends"},
        {"07:30-11:30;13:00-17:00", "period 1: expected ',' or the end after it"},
        {"01:00-02:00,03:00-04:00,05:00-06:00,07:00-08:00,09:00-10:00,11:00-12:00,"
         "13:00-14:00,15:00-16:00,17:00-18:00",
         "more than 8 working periods"},
    };
    for (size_t i = 0; i < MC_COUNT(bad); i++) {
        strcpy(err, "untouched");
        int rc = mc_calendar_set_hours(cal, bad[i].hours, err, sizeof err);
        if (rc != MC_EINVAL || strncmp(err, bad[i].want, strlen(bad[i].want)) != 0)
            fail_msg("\"%s\": rc %d, err \"%s\", want \"%s\"", bad[i].hours, rc, err, bad[i].want);
        assert_int_equal(mc_calendar_day_minutes(cal), 480); /* unchanged */
    }
    assert_int_equal(mc_calendar_set_hours(cal, NULL, err, sizeof err), MC_EINVAL);

    /* Another office's hours, with blanks and one-digit hours. */
    assert_int_equal(mc_calendar_set_hours(cal, " 7:00-11:00 , 13:30-17:30 ", err, sizeof err), 0);
    assert_int_equal(mc_calendar_day_minutes(cal), 480);
    assert_instant(mc_calendar_due(cal, at(2026, 1, 12, 12, 0), 1, -1), at(2026, 1, 13, 11, 0));
    /* One period a day, to midnight; touching periods are fine. */
    assert_int_equal(mc_calendar_set_hours(cal, "20:00-22:00,22:00-24:00", err, sizeof err), 0);
    assert_int_equal(mc_calendar_day_minutes(cal), 240);
    assert_instant(mc_calendar_add_working(cal, at(2026, 1, 9, 21, 0), 200),
                   at(2026, 1, 12, 20, 20));
    assert_instant(mc_calendar_add_working(cal, at(2026, 1, 9, 20, 0), 240),
                   at(2026, 1, 10, 0, 0)); /* Friday's 24:00 */
    assert_int_equal(mc_calendar_set_hours(cal, MC_CALENDAR_DEFAULT_HOURS, err, sizeof err), 0);
    assert_int_equal(mc_calendar_day_minutes(cal), 480);
    mc_calendar_destroy(&cal);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(local_time_is_utc_plus_7),
    cmocka_unit_test(new_calendar_defaults),
    cmocka_unit_test(shipped_file_contents),
    cmocka_unit_test(working_days_around_tet_2026),
    cmocka_unit_test(makeup_saturdays),
    cmocka_unit_test(due_across_weekend),
    cmocka_unit_test(due_across_tet),
    cmocka_unit_test(due_with_15h_cutoff),
    cmocka_unit_test(due_received_outside_hours),
    cmocka_unit_test(period_ends_stay),
    cmocka_unit_test(supplement_pause),
    cmocka_unit_test(round_trip_random),
    cmocka_unit_test(long_amounts_are_cheap),
    cmocka_unit_test(due_bad_arguments),
    cmocka_unit_test(csv_accepts),
    cmocka_unit_test(csv_errors_name_the_line),
    cmocka_unit_test(set_hours),
};
MC_TEST_GROUP(calendar, tests, group_setup, group_teardown);
