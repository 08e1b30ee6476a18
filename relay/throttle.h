/* throttle.h: new connections per source address ([relay] connect_rate, connect_burst).
 *
 * One token bucket (common/bucket.h) per source IPv4 address, in a fixed table of
 * THROTTLE_SOURCES slots made once: nothing is allocated per connection, and a look-up reads
 * at most THROTTLE_PROBE slots, so the accept path stays cheap under a flood.  An address not
 * in the table takes, among its THROTTLE_PROBE slots, a free one, else one whose bucket has
 * refilled (forgetting it loses nothing), else the one seen longest ago, whose address then
 * starts again with a full burst when it comes back.  Addresses of [relay] connect_rate_exempt
 * (the web server proxying /ws) are never counted.
 */
#ifndef TW_RELAY_THROTTLE_H
#define TW_RELAY_THROTTLE_H

#include <stdint.h>

#include "bucket.h"
#include "config.h"

#define THROTTLE_BITS 13                       /* log2 of the table's slots */
#define THROTTLE_SOURCES (1u << THROTTLE_BITS) /* source addresses remembered: 8192 */
#define THROTTLE_PROBE 8                       /* slots an address may sit in, from its hash on */

struct throttle;

/* A table for cfg's connect_rate, connect_burst and connect_rate_exempt (cfg is borrowed and
 * must outlive it).  Caller owns; throttle_destroy().  NULL when out of memory. */
struct throttle *throttle_new(const struct config *cfg);

/* NULL-safe; nulls *throttle. */
void throttle_destroy(struct throttle **throttle);

/* A connection from address (IPv4, network byte order) at now_ms (monotonic): 1 to take it,
 * 0 to refuse it (its address has spent its burst and rate). */
int throttle_admit(struct throttle *throttle, uint32_t address, int64_t now_ms);

#endif
