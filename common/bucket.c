/* bucket.c: token bucket arithmetic, in integers. */
#include "bucket.h"

void
bucket_fill(struct bucket *bucket, int burst, int64_t now_ms)
{
    bucket->units = (int64_t)burst * BUCKET_UNIT;
    bucket->at_ms = now_ms;
}

/* The units bucket holds at now_ms, at most burst tokens.  A rate of r tokens a second is r
 * units a millisecond. */
static int64_t
bucket_units_at(const struct bucket *bucket, int rate, int burst, int64_t now_ms)
{
    int64_t cap = (int64_t)burst * BUCKET_UNIT;
    int64_t units = bucket->units < cap ? bucket->units : cap;
    int64_t elapsed = now_ms - bucket->at_ms;
    if (elapsed <= 0 || rate <= 0)
        return units;
    if (elapsed >= (cap - units) / rate + 1) /* full by now; spares a multiplication overflow */
        return cap;
    units += elapsed * rate;
    return units < cap ? units : cap;
}

int
bucket_take(struct bucket *bucket, int rate, int burst, int64_t now_ms, int64_t *wait_ms)
{
    if (rate <= 0)
        return 1;
    int64_t units = bucket_units_at(bucket, rate, burst, now_ms);
    if (now_ms > bucket->at_ms)
        bucket->at_ms = now_ms;
    if (units >= BUCKET_UNIT) {
        bucket->units = units - BUCKET_UNIT;
        return 1;
    }
    bucket->units = units;
    if (wait_ms)
        *wait_ms = (BUCKET_UNIT - units + rate - 1) / rate;
    return 0;
}

int
bucket_is_full(const struct bucket *bucket, int rate, int burst, int64_t now_ms)
{
    return rate <= 0 ||
           bucket_units_at(bucket, rate, burst, now_ms) >= (int64_t)burst * BUCKET_UNIT;
}
