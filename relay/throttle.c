/* throttle.c: the table of recent source addresses and their token buckets. */
#include "throttle.h"

#include <stdlib.h>

struct throttle_source {
    uint32_t address;
    uint32_t used;        /* 1 once the slot holds an address */
    struct bucket bucket; /* bucket.at_ms: when the address was last seen */
};

struct throttle {
    const struct config *cfg;
    struct throttle_source slots[THROTTLE_SOURCES];
};

struct throttle *
throttle_new(const struct config *cfg)
{
    struct throttle *throttle = calloc(1, sizeof *throttle);
    if (throttle)
        throttle->cfg = cfg;
    return throttle;
}

void
throttle_destroy(struct throttle **throttle)
{
    if (!throttle)
        return;
    free(*throttle);
    *throttle = NULL;
}

static int
throttle_exempt(const struct config *cfg, uint32_t address)
{
    for (size_t i = 0; i < cfg->connect_rate_exempt.count; i++)
        if (cfg->connect_rate_exempt.addresses[i] == address)
            return 1;
    return 0;
}

/* The slot of address: its own, or the one it takes (see the header's policy). */
static struct throttle_source *
throttle_slot(struct throttle *throttle, uint32_t address, int64_t now_ms)
{
    const struct config *cfg = throttle->cfg;
    uint32_t home = (address * 2654435761u) >> (32 - THROTTLE_BITS); /* Knuth's multiplicative */
    struct throttle_source *taken = NULL;
    int taken_rank = 0; /* 3: free, 2: refilled, 1: the oldest so far */
    for (uint32_t i = 0; i < THROTTLE_PROBE; i++) {
        struct throttle_source *s = &throttle->slots[(home + i) & (THROTTLE_SOURCES - 1)];
        if (s->used && s->address == address)
            return s;
        int rank = !s->used                                                                    ? 3
                   : bucket_is_full(&s->bucket, cfg->connect_rate, cfg->connect_burst, now_ms) ? 2
                                                                                               : 1;
        if (rank > taken_rank ||
            (rank == 1 && taken_rank == 1 && s->bucket.at_ms < taken->bucket.at_ms)) {
            taken = s;
            taken_rank = rank;
        }
    }
    taken->address = address;
    taken->used = 1;
    bucket_fill(&taken->bucket, cfg->connect_burst, now_ms);
    return taken;
}

int
throttle_admit(struct throttle *throttle, uint32_t address, int64_t now_ms)
{
    const struct config *cfg = throttle->cfg;
    if (cfg->connect_rate <= 0 || throttle_exempt(cfg, address))
        return 1;
    struct throttle_source *s = throttle_slot(throttle, address, now_ms);
    return bucket_take(&s->bucket, cfg->connect_rate, cfg->connect_burst, now_ms, NULL);
}
