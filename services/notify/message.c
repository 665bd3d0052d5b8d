/* message.c: what goes on the wire for each channel that is not just JSON: the
 * e-mail's RFC 5322 text (UTF-8 headers as RFC 2047 encoded words, a text/plain
 * UTF-8 body in base64, a Date and a Message-ID), phone numbers in E.164 form, and
 * e-mail addresses masked for logs. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "notify.h"

typedef struct {
    char *s;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = mc_realloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void puts_(buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

static int ascii_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

/* RFC 2047: "=?UTF-8?B?...?=" words of at most 75 characters, never splitting a UTF-8
 * character, folded onto continuation lines. Plain ASCII is written as it is. */
static void put_encoded_words(buf_t *b, const char *text)
{
    size_t n = strlen(text);
    if (ascii_printable(text)) {
        put(b, text, n);
        return;
    }
    size_t i = 0;
    int first = 1;
    while (i < n) {
        /* 45 bytes -> 60 base64 characters + 12 of "=?UTF-8?B?" and "?=" = 72. */
        size_t take = n - i < 45 ? n - i : 45;
        while (take < n - i && ((unsigned char)text[i + take] & 0xC0) == 0x80)
            take--; /* back to the start of a character */
        unsigned char enc[64];
        int len = EVP_EncodeBlock(enc, (const unsigned char *)text + i, (int)take);
        if (!first)
            puts_(b, "\r\n ");
        puts_(b, "=?UTF-8?B?");
        put(b, (const char *)enc, (size_t)len);
        puts_(b, "?=");
        first = 0;
        i += take;
    }
}

/* Body as base64 in lines of 76 characters; LF line ends become CRLF first. */
static void put_base64_body(buf_t *b, const char *body)
{
    buf_t crlf = {0};
    put(&crlf, "", 0);
    for (const char *p = body; *p; p++) {
        if (*p == '\n' && (p == body || p[-1] != '\r'))
            put(&crlf, "\r", 1);
        put(&crlf, p, 1);
    }
    for (size_t i = 0; i < crlf.len; i += 57) {
        size_t take = crlf.len - i < 57 ? crlf.len - i : 57;
        unsigned char enc[80];
        int len = EVP_EncodeBlock(enc, (const unsigned char *)crlf.s + i, (int)take);
        put(b, (const char *)enc, (size_t)len);
        puts_(b, "\r\n");
    }
    free(crlf.s);
}

void message_from_address(const char *from, char *out, size_t outlen)
{
    const char *lt = strrchr(from, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    if (lt && gt)
        snprintf(out, outlen, "%.*s", (int)(gt - lt - 1), lt + 1);
    else
        snprintf(out, outlen, "%s", from);
}

char *message_email(const notify_config_t *cfg, const char *to, const char *subject,
                    const char *body, long long attempt_id, char *mid, size_t midlen)
{
    char addr[256], name[256] = "";
    message_from_address(cfg->smtp_from, addr, sizeof addr);
    const char *lt = strrchr(cfg->smtp_from, '<');
    if (lt) {
        size_t n = (size_t)(lt - cfg->smtp_from);
        while (n && cfg->smtp_from[n - 1] == ' ')
            n--;
        snprintf(name, sizeof name, "%.*s", (int)n, cfg->smtp_from);
    }
    const char *domain = strchr(addr, '@');
    snprintf(mid, midlen, "notify.%lld.%lld@%s", attempt_id, (long long)time(NULL),
             domain ? domain + 1 : "motcua.local");

    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);

    buf_t b = {0};
    puts_(&b, "From: ");
    if (*name) {
        put_encoded_words(&b, name);
        puts_(&b, " ");
    }
    puts_(&b, "<");
    puts_(&b, addr);
    puts_(&b, ">\r\nTo: <");
    puts_(&b, to);
    puts_(&b, ">\r\nSubject: ");
    put_encoded_words(&b, subject);
    puts_(&b, "\r\nDate: ");
    puts_(&b, date);
    puts_(&b, "\r\nMessage-ID: <");
    puts_(&b, mid);
    puts_(&b, ">\r\nMIME-Version: 1.0\r\n"
              "Content-Type: text/plain; charset=UTF-8\r\n"
              "Content-Transfer-Encoding: base64\r\n"
              "Auto-Submitted: auto-generated\r\n\r\n");
    put_base64_body(&b, body);
    return b.s;
}

int message_phone_e164(const char *phone, char *out, size_t outlen)
{
    char digits[32];
    size_t n = 0;
    int plus = phone[0] == '+';
    for (const char *p = phone + plus; *p; p++) {
        if (*p == ' ' || *p == '.' || *p == '-')
            continue;
        if (*p < '0' || *p > '9' || n + 1 >= sizeof digits)
            return MC_EINVAL;
        digits[n++] = *p;
    }
    digits[n] = '\0';
    if (plus && n >= 8 && n <= 15 && digits[0] != '0')
        snprintf(out, outlen, "+%s", digits);
    else if (!plus && n >= 10 && n <= 11 && digits[0] == '0')
        snprintf(out, outlen, "+84%s", digits + 1); /* national form: 0912... */
    else if (!plus && n >= 11 && n <= 12 && strncmp(digits, "84", 2) == 0)
        snprintf(out, outlen, "+%s", digits);
    else
        return MC_EINVAL;
    return MC_OK;
}

void message_mask_email(const char *addr, char *out, size_t outlen)
{
    const char *at = strchr(addr, '@');
    if (!at || at == addr)
        snprintf(out, outlen, "***");
    else
        snprintf(out, outlen, "%c***%s", addr[0], at);
}
