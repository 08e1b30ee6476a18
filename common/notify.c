/* notify.c: sd_notify for READY, WATCHDOG and STOPPING (see notify.h). */
#include "notify.h"

#include <stdio.h>
#include <systemd/sd-daemon.h>

void
notify_init(struct notify *notify)
{
    uint64_t usec = 0;
    notify->interval_us = 0;
    notify->last_us = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
        notify->interval_us = (int64_t)(usec / NOTIFY_PINGS_PER_PERIOD);
}

void
notify_ready(const char *status)
{
    char message[256];
    snprintf(message, sizeof message, "READY=1\nSTATUS=%s", status);
    (void)sd_notify(0, message);
}

void
notify_watchdog(struct notify *notify, int64_t now_us)
{
    if (notify->interval_us <= 0 || now_us - notify->last_us < notify->interval_us)
        return;
    (void)sd_notify(0, "WATCHDOG=1");
    notify->last_us = now_us;
}

int64_t
notify_watchdog_interval(const struct notify *notify)
{
    return notify->interval_us > 0 ? notify->interval_us : -1;
}

void
notify_stopping(void)
{
    (void)sd_notify(0, "STOPPING=1");
}
