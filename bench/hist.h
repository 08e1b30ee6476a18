/* hist.h: a fixed-size latency histogram in microseconds for the load generator.
 *
 * Exact below HIST_EXACT_US, then 256 buckets per power of two (under 0.4% error) up to
 * 2^HIST_MAX_EXP microseconds; larger values land in the last bucket (max stays exact).
 * No allocation: the struct is embedded by its owner.
 */
#ifndef TW_BENCH_HIST_H
#define TW_BENCH_HIST_H

#include <stdint.h>

#define HIST_EXACT_US 2048 /* values below this have their own bucket */
#define HIST_SUB 256       /* buckets per power of two above HIST_EXACT_US */
#define HIST_MAX_EXP 36    /* about 19 hours; anything above shares the last bucket */
#define HIST_BUCKETS (HIST_EXACT_US + (HIST_MAX_EXP - 11) * HIST_SUB)

struct hist {
    uint64_t count;
    uint64_t sum;
    uint64_t max;
    uint32_t bucket[HIST_BUCKETS];
};

/* Record one value (microseconds). */
void hist_record(struct hist *h, uint64_t us);

/* The value at quantile q (0..1): the upper edge of the bucket holding it; 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);

/* Forget everything recorded. */
void hist_reset(struct hist *h);

#endif
