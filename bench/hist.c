/* hist.c: log-linear latency histogram (see hist.h). */
#include "hist.h"

#include <string.h>

static unsigned
hist_index(uint64_t v)
{
    if (v < HIST_EXACT_US)
        return (unsigned)v;
    unsigned exp = 63u - (unsigned)__builtin_clzll(v); /* 11 and up */
    if (exp >= HIST_MAX_EXP)
        return HIST_BUCKETS - 1;
    return HIST_EXACT_US + (exp - 11) * HIST_SUB + (unsigned)((v >> (exp - 8)) & (HIST_SUB - 1));
}

/* Upper edge (inclusive) of bucket i. */
static uint64_t
hist_upper(unsigned i)
{
    if (i < HIST_EXACT_US)
        return i;
    unsigned exp = 11 + (i - HIST_EXACT_US) / HIST_SUB;
    uint64_t sub = (i - HIST_EXACT_US) % HIST_SUB;
    return ((1ull << exp) | (sub << (exp - 8))) + (1ull << (exp - 8)) - 1;
}

void
hist_record(struct hist *h, uint64_t us)
{
    h->bucket[hist_index(us)]++;
    h->count++;
    h->sum += us;
    if (us > h->max)
        h->max = us;
}

uint64_t
hist_quantile(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count)
        rank = h->count - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen > rank) {
            uint64_t up = hist_upper(i);
            return up < h->max ? up : h->max;
        }
    }
    return h->max;
}

void
hist_reset(struct hist *h)
{
    memset(h, 0, sizeof *h);
}
