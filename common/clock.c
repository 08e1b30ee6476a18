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

char *
clock_iso8601(int64_t ms, char *buf, size_t size)
{
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03dZ", base, (int)(ms % 1000));
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
