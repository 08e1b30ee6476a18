/* presence.h: the worker pool's side of browser publish and presence (common/presence_wire.h):
 * what the relays PUSH to the tasks socket besides the handlers' nudges.
 *
 * - [signal][topic][payload]: a browser's publish, checked by its relay (the namespace's rule,
 *   publish_max, the connection's rate): put on the events wire as it is, like a publish,
 *   never stored.  A topic no relay could route (empty, longer than a channel name) is
 *   dropped.
 * - [presence][relay id][update]: applied in the store (store_presence_apply); then, for
 *   each (channel, client) whose total over every relay changed and whose namespace has
 *   presence_events, {"type":"presence",...} on the channel's topic: join (0 -> N), update
 *   (N -> M), leave (N -> 0).  Entries of a channel whose namespace has no presence (or that
 *   is no channel of this config) are left out, and logged once per update.
 * - The sweep (presence_sweep, from the pool's heartbeat) removes the rows of relays that went
 *   silent past their ttl_ms and publishes the leaves; on PostgreSQL the rows are deleted in
 *   the sweeping pool's transaction (DELETE ... RETURNING), so exactly one pool publishes each.
 *   A relay dead at time t has its rows gone and their leaves out by t + its ttl_ms + one
 *   heartbeat_ms.
 * Every event leaves on the pool's one PUB socket (borrowed), in order with its task events.
 */
#ifndef TW_WORKER_PRESENCE_H
#define TW_WORKER_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "scrape.h"
#include "store.h"

struct presence;

/* The pool's presence: cfg, store, publisher (a ZeroMQ PUB) and scrape (may be NULL) are
 * borrowed and must outlive it.  Caller owns; presence_destroy().  NULL when out of memory. */
struct presence *presence_new(const struct config *cfg, struct store *store, void *publisher,
                              struct scrape *scrape);

/* NULL-safe; nulls *presence. */
void presence_destroy(struct presence **presence);

/* A signal's frames (borrowed for the call). */
void presence_on_signal(struct presence *presence, const void *topic, size_t topic_len,
                        const void *payload, size_t payload_len);

/* A presence update's frames (borrowed for the call): applied and its events published. */
void presence_on_update(struct presence *presence, const void *relay_id, size_t relay_id_len,
                        const void *update, size_t update_len);

/* Remove expired rows and publish their leaves; with forget, also forget the versions of
 * channels long empty (STORE_PRESENCE_FORGET_MS).  Called every heartbeat. */
void presence_sweep(struct presence *presence, int forget);

#endif
