/* clock.c: time sources and the timestamp format used on the wire and in logs. */
#include "clock.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t
clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
clock_mono_ms(void)
{
    return clock_mono_us() / 1000;
}

int64_t
clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* value's last `digits` decimal digits at p, zero-padded; the position after them. */
static char *
clock_digits(char *p, int value, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        p[i] = (char)('0' + value % 10);
        value /= 10;
    }
    return p + digits;
}

char *
clock_iso8601(int64_t ms, char *buf, size_t size)
{
    /* Every task row and event carries a few of these: the digits are written here, not
     * through strftime and snprintf, which cost ten times the instructions. */
    int64_t millis = ((ms % 1000) + 1000) % 1000;
    time_t seconds = (time_t)((ms - millis) / 1000);
    struct tm tm;
    if (size < CLOCK_ISO8601_SIZE || !gmtime_r(&seconds, &tm) || tm.tm_year < -1900 ||
        tm.tm_year > 9999 - 1900) {
        if (size > 0)
            buf[0] = '\0';
        return buf;
    }
    char *p = clock_digits(buf, tm.tm_year + 1900, 4);
    *p++ = '-';
    p = clock_digits(p, tm.tm_mon + 1, 2);
    *p++ = '-';
    p = clock_digits(p, tm.tm_mday, 2);
    *p++ = 'T';
    p = clock_digits(p, tm.tm_hour, 2);
    *p++ = ':';
    p = clock_digits(p, tm.tm_min, 2);
    *p++ = ':';
    p = clock_digits(p, tm.tm_sec, 2);
    *p++ = '.';
    p = clock_digits(p, (int)millis, 3);
    *p++ = 'Z';
    *p = '\0';
    return buf;
}

int
clock_parse_iso8601(const char *text, int64_t *ms)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = strptime(text, "%Y-%m-%d", &tm);
    if (!rest || (*rest != 'T' && *rest != 't' && *rest != ' '))
        return -1;
    rest = strptime(rest + 1, "%H:%M:%S", &tm);
    if (!rest)
        return -1;
    int64_t fraction_ms = 0;
    if (*rest == '.') {
        int digits = 0;
        for (rest++; isdigit((unsigned char)*rest); rest++, digits++)
            if (digits < 3)
                fraction_ms = fraction_ms * 10 + (*rest - '0');
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            fraction_ms *= 10;
    }
    long offset_s = 0;
    if (*rest == 'Z' || *rest == 'z') {
        rest++;
    } else {
        struct tm zone;
        memset(&zone, 0, sizeof zone);
        const char *end = strptime(rest, "%z", &zone);
        if (!end || end == rest)
            return -1;
        offset_s = zone.tm_gmtoff;
        rest = end;
    }
    if (*rest != '\0')
        return -1;
    time_t seconds = timegm(&tm);
    if (seconds == (time_t)-1 && !(tm.tm_year == 69 && tm.tm_mday == 31))
        return -1;
    *ms = ((int64_t)seconds - offset_s) * 1000 + fraction_ms;
    return 0;
}
