/* test_log.c: masking of personal data, and real log lines captured from stderr.
 *
 * capture() points stderr at a pipe with dup2 for the duration of one mc_log_ call
 * and reads back what was written; the logger's settings are global, so teardown
 * puts back the defaults (service "motcua", info, key=value). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "mc.h"
#include "unit.h"

/* ------------------------------------------------------------------ */
/* Masking                                                            */

static void mask_expect(const char *in, const char *want)
{
    char out[256];
    mc_log_mask(in, out, sizeof out);
    assert_string_equal(out, want);
}

static void mask_cccd_12_digits(void **state)
{
    (void)state;
    mask_expect("001203004567", "00********67");
}

static void mask_cmnd_9_digits(void **state)
{
    (void)state;
    mask_expect("123456789", "12*****89");
}

static void mask_phone_national(void **state)
{
    (void)state;
    mask_expect("0912345678", "09******78");
}

static void mask_phone_international(void **state)
{
    (void)state;
    /* The '+' is kept; the run of digits after it is masked like any other. */
    mask_expect("+84912345678", "+84*******78");
}

static void mask_short_numbers_untouched(void **state)
{
    (void)state;
    mask_expect("12345678", "12345678"); /* 8 digits: not an ID */
    mask_expect("+8412", "+8412");
    mask_expect("ngay 23/11/2026 luc 14:05", "ngay 23/11/2026 luc 14:05");
    mask_expect("G09.12-241123-0042", "G09.12-241123-0042"); /* a dossier code */
    mask_expect("", "");
}

static void mask_mixed_text(void **state)
{
    (void)state;
    mask_expect("Công dân CCCD 001203004567, SĐT 0912345678 hoặc +84987654321; mã 2024.",
                "Công dân CCCD 00********67, SĐT 09******78 hoặc +84*******21; mã 2024.");
    mask_expect("a123456789b", "a12*****89b");
    mask_expect("0912345678/001203004567", "09******78/00********67");
}

static void mask_truncates_to_buffer(void **state)
{
    (void)state;
    char out[8];
    memset(out, 'x', sizeof out);
    mc_log_mask("0912345678", out, sizeof out);
    assert_string_equal(out, "09*****"); /* 7 characters and the NUL, no digit leaked */

    char tiny[1] = {'x'};
    mc_log_mask("0912345678", tiny, sizeof tiny);
    assert_int_equal(tiny[0], '\0');

    char plain[5];
    mc_log_mask("abcdefgh", plain, sizeof plain);
    assert_string_equal(plain, "abcd");

    /* A zero-length buffer is left alone. */
    char none[2] = {'z', 'z'};
    mc_log_mask("0912345678", none, 0);
    assert_int_equal(none[0], 'z');
}

/* ------------------------------------------------------------------ */
/* Captured lines                                                     */

static int restore_logger(void **state)
{
    (void)state;
    mc_log_init(NULL, MC_LOG_INFO, 0);
    return 0;
}

#define CAPTURE(buf, call)                                                                         \
    do {                                                                                           \
        int fds_[2];                                                                               \
        assert_int_equal(pipe(fds_), 0);                                                           \
        fcntl(fds_[0], F_SETFL, O_NONBLOCK);                                                       \
        fflush(stderr);                                                                            \
        int saved_ = dup(STDERR_FILENO);                                                           \
        dup2(fds_[1], STDERR_FILENO);                                                              \
        call;                                                                                      \
        dup2(saved_, STDERR_FILENO);                                                               \
        close(saved_);                                                                             \
        close(fds_[1]);                                                                            \
        ssize_t n_ = read(fds_[0], (buf), sizeof(buf) - 1);                                        \
        (buf)[n_ > 0 ? n_ : 0] = '\0';                                                             \
        close(fds_[0]);                                                                            \
    } while (0)

static size_t count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

/* A line "ts=YYYY-MM-DDTHH:MM:SS.mmmZ rest\n": checks the time, returns rest. */
static const char *after_ts(const char *line, const char *prefix)
{
    size_t pl = strlen(prefix);
    assert_memory_equal(line, prefix, pl);
    const char *t = line + pl;
    /* 2026-11-23T14:00:00.123Z */
    assert_true(strlen(t) > 24);
    for (int i = 0; i < 24; i++) {
        char c = t[i];
        switch (i) {
        case 4:
        case 7: assert_int_equal(c, '-'); break;
        case 10: assert_int_equal(c, 'T'); break;
        case 13:
        case 16: assert_int_equal(c, ':'); break;
        case 19: assert_int_equal(c, '.'); break;
        case 23: assert_int_equal(c, 'Z'); break;
        default: assert_true(c >= '0' && c <= '9');
        }
    }
    return t + 24;
}

static void line_key_value(void **state)
{
    (void)state;
    char buf[8192];
    mc_log_init("intake", MC_LOG_INFO, 0);
    CAPTURE(buf, mc_info("dossier %s received from %s", "G09-0042", "0912345678"));
    const char *rest = after_ts(buf, "ts=");
    assert_string_equal(rest, " service=intake level=info msg=\"dossier G09-0042 received from "
                              "09******78\"\n");
}

static void line_json(void **state)
{
    (void)state;
    char buf[8192];
    mc_log_init("routing", MC_LOG_INFO, 1);
    CAPTURE(buf, mc_warn("late by %d days", 3));
    const char *rest = after_ts(buf, "{\"ts\":\"");
    assert_string_equal(rest, "\",\"service\":\"routing\",\"level\":\"warn\",\"msg\":\"late by 3 "
                              "days\"}\n");
}

static void trace_and_dossier_fields(void **state)
{
    (void)state;
    char buf[8192];
    mc_log_init("routing", MC_LOG_DEBUG, 0);
    CAPTURE(buf, mc_logd(MC_LOG_ERROR, "4bf92f3577b34da6", "G09.12-0042", "step %d", 2));
    assert_string_equal(after_ts(buf, "ts="), " service=routing level=error trace=4bf92f3577b34da6 "
                                              "dossier=G09.12-0042 msg=\"step 2\"\n");

    /* Empty and NULL mean absent. */
    CAPTURE(buf, mc_logd(MC_LOG_DEBUG, "", NULL, "quiet"));
    assert_string_equal(after_ts(buf, "ts="), " service=routing level=debug msg=\"quiet\"\n");

    mc_log_init("routing", MC_LOG_DEBUG, 1);
    CAPTURE(buf, mc_logd(MC_LOG_INFO, "t-1", "G09-7", "ok"));
    assert_string_equal(after_ts(buf, "{\"ts\":\""),
                        "\",\"service\":\"routing\",\"level\":\"info\",\"trace\":\"t-1\","
                        "\"dossier\":\"G09-7\",\"msg\":\"ok\"}\n");
}

static void quotes_and_newlines_escaped(void **state)
{
    (void)state;
    char buf[8192];
    mc_log_init("intake", MC_LOG_INFO, 0);
    CAPTURE(buf, mc_info("say \"xin chao\"\nback\\slash\ttab"));
    assert_string_equal(after_ts(buf, "ts="),
                        " service=intake level=info "
                        "msg=\"say \\\"xin chao\\\"\\nback\\\\slash\\u0009tab\"\n");
    assert_int_equal(count_char(buf, '\n'), 1);

    mc_log_init("intake", MC_LOG_INFO, 1);
    CAPTURE(buf, mc_info("a\"b\nc"));
    assert_string_equal(after_ts(buf, "{\"ts\":\""),
                        "\",\"service\":\"intake\",\"level\":\"info\",\"msg\":\"a\\\"b\\nc\"}\n");
}

/* Values that come from outside (a dossier code in a URL, a trace id in a bus
 * envelope) must not be able to forge a second line or break the key=value form. */
static void outside_values_cannot_forge_lines(void **state)
{
    (void)state;
    char buf[8192];
    mc_log_init("intake", MC_LOG_INFO, 0);
    CAPTURE(buf, mc_logd(MC_LOG_INFO, "t\"1", "G09\nts=x level=error msg=\"forged\"", "real"));
    assert_int_equal(count_char(buf, '\n'), 1);
    assert_null(strstr(buf, " dossier=G09\n"));

    mc_log_init("intake", MC_LOG_INFO, 1);
    CAPTURE(buf, mc_logd(MC_LOG_INFO, "t\"1", "G09\nx", "real"));
    assert_int_equal(count_char(buf, '\n'), 1);
    assert_non_null(strstr(buf, "\"trace\":\"t\\\"1\""));
}

static void level_filtering(void **state)
{
    (void)state;
    char buf[8192];
    mc_log_init("notify", MC_LOG_WARN, 0);
    CAPTURE(buf, mc_info("hidden"));
    assert_string_equal(buf, "");
    CAPTURE(buf, mc_debug("hidden too"));
    assert_string_equal(buf, "");
    CAPTURE(buf, mc_warn("shown"));
    assert_non_null(strstr(buf, " level=warn msg=\"shown\"\n"));
    CAPTURE(buf, mc_error("shown too"));
    assert_non_null(strstr(buf, " level=error msg=\"shown too\"\n"));

    mc_log_init("notify", MC_LOG_DEBUG, 0);
    CAPTURE(buf, mc_debug("now shown"));
    assert_non_null(strstr(buf, " level=debug msg=\"now shown\"\n"));
}

static void long_message_stays_one_valid_line(void **state)
{
    (void)state;
    static char buf[16384];
    static char text[3000];
    memset(text, 1, sizeof text - 1); /* control characters: six bytes each when escaped */
    text[sizeof text - 1] = '\0';
    mc_log_init("intake", MC_LOG_INFO, 1);
    CAPTURE(buf, mc_info("%s", text));
    size_t len = strlen(buf);
    assert_true(len > 1000 && len <= 4096);
    assert_int_equal(count_char(buf, '\n'), 1);
    assert_string_equal(buf + len - 3, "\"}\n"); /* the string and the object are closed */

    mc_log_init("intake", MC_LOG_INFO, 0);
    memset(text, 'a', sizeof text - 1);
    CAPTURE(buf, mc_info("%s%s", text, text));
    len = strlen(buf);
    assert_true(len > 2000 && len <= 4096);
    assert_string_equal(buf + len - 3, "a\"\n");
}

/* A trace id that would fill the line (a peer's envelope, an X-Trace-Id header)
 * followed by a dossier code that is quoted: never written past (found by
 * tests/fuzz/fuzz_log.c; it was a memcpy of SIZE_MAX bytes), and the trace is cut to 128
 * bytes so that the message still has its place. */
static void long_trace_fills_the_line(void **state)
{
    (void)state;
    static char buf[16384];
    static char trace[4100];
    memset(trace, 'a', sizeof trace - 1);
    trace[sizeof trace - 1] = '\0';
    for (int json = 0; json <= 1; json++) {
        mc_log_init("intake", MC_LOG_INFO, json);
        CAPTURE(buf, mc_logd(MC_LOG_WARN, trace, "H99 1", "refused"));
        size_t len = strlen(buf);
        assert_true(len > 128 && len < 400);
        assert_int_equal(count_char(buf, '\n'), 1);
        assert_int_equal(buf[len - 1], '\n');
        assert_non_null(strstr(buf, json ? "\"msg\":\"refused\"" : "msg=\"refused\""));
        char cut[130];
        memset(cut, 'a', 129);
        cut[129] = '\0';
        assert_null(strstr(buf, cut)); /* 129 a's: one too many */
        cut[128] = '\0';
        assert_non_null(strstr(buf, cut));
    }
}

static void service_name_truncated(void **state)
{
    (void)state;
    char buf[8192];
    mc_log_init("a-very-long-service-name-that-does-not-fit", MC_LOG_INFO, 0);
    CAPTURE(buf, mc_info("x"));
    assert_non_null(strstr(buf, " service=a-very-long-service-name-that-d level=info"));
}

#define T(fn) cmocka_unit_test_teardown(fn, restore_logger)
static const struct CMUnitTest tests[] = {
    cmocka_unit_test(mask_cccd_12_digits),
    cmocka_unit_test(mask_cmnd_9_digits),
    cmocka_unit_test(mask_phone_national),
    cmocka_unit_test(mask_phone_international),
    cmocka_unit_test(mask_short_numbers_untouched),
    cmocka_unit_test(mask_mixed_text),
    cmocka_unit_test(mask_truncates_to_buffer),
    T(line_key_value),
    T(line_json),
    T(trace_and_dossier_fields),
    T(quotes_and_newlines_escaped),
    T(outside_values_cannot_forge_lines),
    T(level_filtering),
    T(long_message_stays_one_valid_line),
    T(long_trace_fills_the_line),
    T(service_name_truncated),
};
MC_TEST_GROUP(log, tests, NULL, NULL);
