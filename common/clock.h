/* clock.h: wall-clock and monotonic milliseconds, and ISO 8601 timestamps for the wire. */
#ifndef TW_COMMON_CLOCK_H
#define TW_COMMON_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#define CLOCK_ISO8601_SIZE 32 /* "2026-11-23T10:00:00.123Z" and its NUL, with room to spare */

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t clock_now_ms(void);

/* Milliseconds from an arbitrary fixed point (CLOCK_MONOTONIC), for timeouts. */
int64_t clock_mono_ms(void);

/* The same clock in microseconds, for the relay's turns. */
int64_t clock_mono_us(void);

/* Write ms since the epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ" into buf (at least CLOCK_ISO8601_SIZE).
 * Returns buf. */
char *clock_iso8601(int64_t ms, char *buf, size_t size);

/* Parse an ISO 8601 / RFC 3339 date-time, "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)"
 * (a space may stand for the T; the zone is required), into ms since the epoch.  0, or -1 when
 * text is not one. */
int clock_parse_iso8601(const char *text, int64_t *ms);

#endif
