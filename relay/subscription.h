/* subscription.h: the channels one WebSocket connection listens on: its own client id (the
 * channel user:ID, attached at authentication and kept until the end) and the channels it
 * subscribed to since, each a member of the route table (route.h) on the channel's topic
 * (common/channel.h).  The write path sees them as one queue: the own channel's waiting
 * messages first, then each channel's, every channel's in the order published.
 *
 * Bounds: at most [channels] max_per_connection channels beyond the own one (one more is
 * refused with CHANNEL_E_TOO_MANY, the others stay), each name at most [channels] max_name
 * bytes.  A subscription costs one allocation of about 60 bytes when it is made, none per
 * message.  Subscribing to a channel twice, or to the own user channel, changes nothing and
 * succeeds; the own channel cannot be left (CHANNEL_E_OWN_CHANNEL).  A channel whose ring
 * overflows culls the connection as its own would (route.h): the connection is closed.
 */
#ifndef TW_RELAY_SUBSCRIPTION_H
#define TW_RELAY_SUBSCRIPTION_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "route.h"
#include "token.h"

struct subscription_channel; /* one channel beyond the own one */

/* Embedded in the connection's storage; subscription_init / subscription_fini bracket it. */
struct subscription_set {
    struct route_member own;               /* the client id's topic */
    struct subscription_channel *channels; /* the others, newest first */
    uint32_t count;                        /* of channels */
};

/* An empty set whose members hand owner to the route callbacks. */
void subscription_init(struct subscription_set *set, void *owner);

/* Detach every member and free the channels.  Safe on an empty set, and twice. */
void subscription_fini(struct subscription_set *set, struct route *route);

/* Subscribe the connection of client_id (borrowed; holding grants, may be NULL) to channel
 * (name, len): 0 when it is subscribed now (or was), else a CHANNEL_E_* refusal: the name's
 * (channel_parse), the namespace's rule (CHANNEL_E_NOT_ALLOWED), CHANNEL_E_TOO_MANY or
 * CHANNEL_E_NO_MEMORY. */
int subscription_subscribe(struct subscription_set *set, struct route *route,
                           const struct config *cfg, const char *client_id,
                           const struct token_grants *grants, const char *name, size_t len);

/* Leave channel (name, len): 0, or CHANNEL_E_OWN_CHANNEL, CHANNEL_E_NOT_SUBSCRIBED, or the
 * name's refusal. */
int subscription_unsubscribe(struct subscription_set *set, struct route *route,
                             const struct config *cfg, const char *name, size_t len);

/* Per-message path: messages waiting on every member of set. */
size_t subscription_pending(const struct subscription_set *set);

/* Per-message path: the k-th waiting message of set (route_peek's contract).  1 or 0. */
int subscription_peek(struct route *route, const struct subscription_set *set, size_t k,
                      unsigned char **payload, size_t *len);

/* Per-message path: the first n waiting messages (as subscription_peek ordered them) are sent. */
void subscription_sent(struct route *route, struct subscription_set *set, size_t n);

#endif
