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

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "route.h"
#include "token.h"

#define SUBSCRIPTION_ECHO_MAX 64   /* bytes of a requested channel name echoed in its reply */
#define SUBSCRIPTION_REPLY_MAX 768 /* bytes of a reply at most (an echoed name escaped: 384) */

struct subscription_channel; /* one channel beyond the own one */
struct roster;

/* Embedded in the connection's storage; subscription_init / subscription_fini bracket it. */
struct subscription_set {
    struct route_member own;               /* the client id's topic */
    struct subscription_channel *channels; /* the others, newest first */
    uint32_t count;                        /* of channels */
    struct roster *roster;                 /* borrowed: where presence is counted, or NULL */
    const char *client_id;                 /* borrowed: whose connection, with roster */
};

/* An empty set whose members hand owner to the route callbacks. */
void subscription_init(struct subscription_set *set, void *owner);

/* From now on the set's channels of namespaces with presence count in roster as client_id's
 * (roster.h: a join when one is subscribed, a leave when it is left or the set ends).  Both
 * are borrowed until subscription_fini. */
void subscription_count_presence(struct subscription_set *set, struct roster *roster,
                                 const char *client_id);

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

/* A client's channel request {"type": kind, "channel": NAME} (message borrowed), kind one of
 * "subscribe", "unsubscribe" or "publish": done (0), or its refusal (a channel that is not a
 * string is CHANNEL_E_BAD_NAME).  A publish is only checked, by the namespace's rule: 0 means
 * the client may publish there, and the caller delivers it (its data, size and rate). */
int subscription_request(struct subscription_set *set, struct route *route,
                         const struct config *cfg, const char *client_id,
                         const struct token_grants *grants, const char *kind,
                         const json_t *message);

/* The answer to a request of kind on channel (the request's "channel", may be NULL) that ended
 * with rc: {"type":"subscribed"|"unsubscribed"|"published","channel":NAME} for 0, else
 * {"type":"refused","request":kind,"channel":NAME,"reason":..,"message":..}; the name is
 * echoed when it is a string of at most SUBSCRIPTION_ECHO_MAX bytes, else null.  Written to out
 * (size bytes): its length, or 0 when it does not fit (SUBSCRIPTION_REPLY_MAX always does). */
size_t subscription_reply(const char *kind, const json_t *channel, int rc, char *out, size_t size);

/* Per-message path: messages waiting on every member of set. */
size_t subscription_pending(const struct subscription_set *set);

/* Per-message path: the k-th waiting message of set (route_peek's contract).  1 or 0. */
int subscription_peek(struct route *route, const struct subscription_set *set, size_t k,
                      unsigned char **payload, size_t *len);

/* Per-message path: the first n waiting messages (as subscription_peek ordered them) are sent. */
void subscription_sent(struct route *route, struct subscription_set *set, size_t n);

#endif
