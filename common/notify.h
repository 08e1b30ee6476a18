/* notify.h: telling the service manager how the program is doing (sd_notify(3)):
 * READY=1 once it serves, WATCHDOG=1 from its loop, STOPPING=1 when it stops.
 *
 * Every call is a no-op when NOTIFY_SOCKET is unset (not started by systemd with
 * Type=notify).  The watchdog ping is sent from the loop itself, so a loop that hangs stops
 * pinging and systemd restarts the service (WatchdogSec=, Restart=on-failure); a ping goes
 * out at most every WATCHDOG_USEC / NOTIFY_PINGS_PER_PERIOD, whatever the caller's pace, and
 * the caller calls notify_watchdog from a timer it already has, so the watchdog adds no
 * wake-ups of its own.
 */
#ifndef TW_COMMON_NOTIFY_H
#define TW_COMMON_NOTIFY_H

#include <stdint.h>

#define NOTIFY_PINGS_PER_PERIOD 3 /* pings per WatchdogSec (systemd suggests at least 2) */

/* Embedded in the program's context; notify_init fills it. */
struct notify {
    int64_t interval_us; /* between pings; 0: no watchdog */
    int64_t last_us;     /* monotonic time of the last ping */
};

/* Read the watchdog's period from the environment (WATCHDOG_USEC, WATCHDOG_PID). */
void notify_init(struct notify *notify);

/* READY=1, with a status line. */
void notify_ready(const char *status);

/* WATCHDOG=1 when the interval has passed since the last (now_us: clock_mono_us()). */
void notify_watchdog(struct notify *notify, int64_t now_us);

/* The longest the caller may wait between calls of notify_watchdog (µs), or -1 without a
 * watchdog: for a loop whose own timer is slower than the watchdog's period. */
int64_t notify_watchdog_interval(const struct notify *notify);

/* STOPPING=1. */
void notify_stopping(void);

#endif
