/* retry.c: the retry policy of a task type. */
#include "retry.h"

#include <openssl/rand.h>

#include "clock.h"

int
retry_allowed(const struct config_type *type, unsigned reason, const json_t *task)
{
    if (!type)
        return 0;
    /* A lost attempt is on_lost's to decide; retry_on's "lost" says the same as its default. */
    if (reason == CONFIG_RETRY_LOST ? type->on_lost_fail : !(type->retry_on & reason))
        return 0;
    size_t ended = json_array_size(json_object_get(task, "errors")) + 1;
    json_int_t max_attempts = json_integer_value(json_object_get(task, "max_attempts"));
    return (json_int_t)ended < max_attempts;
}

int64_t
retry_backoff_ms(const struct config_type *type, int n, uint32_t random)
{
    int64_t cap = type->retry_base_ms;
    for (int i = 1; i < n && cap < type->retry_max_ms; i++)
        cap *= 2;
    if (cap > type->retry_max_ms)
        cap = type->retry_max_ms;
    return cap > 0 ? (int64_t)(random % (uint64_t)(cap + 1)) : 0;
}

uint32_t
retry_random(void)
{
    uint32_t value = 0;
    if (RAND_bytes((unsigned char *)&value, sizeof value) != 1)
        value = (uint32_t)clock_mono_us(); /* jitter only: any spread will do */
    return value;
}

char *
retry_error_entry(int attempt, const char *error, const char *worker, const char *host)
{
    char at[CLOCK_ISO8601_SIZE];
    json_t *entry = json_pack("{s:i, s:s, s:s, s:s?, s:s?}", "attempt", attempt, "at",
                              clock_iso8601(clock_now_ms(), at, sizeof at), "error",
                              error ? error : "failed", "worker", worker, "host", host);
    char *text = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
    json_decref(entry);
    return text;
}
