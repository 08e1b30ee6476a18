/* channel.h: channel names, their namespaces and who may do what on them, for the relay (who
 * may subscribe), the handler (which channels a task may be submitted with, what the publish
 * API may publish to) and the worker (where a task's events go on the wire).
 *
 * A channel is "NAMESPACE:REST": a namespace of the config (struct config_namespace: "user",
 * "task", "project" and every [namespace NAME]) and 1 or more bytes of ASCII letters, digits and
 * : . _ -, at most [channels] max_name bytes in all ("user:" takes a client id only, 32
 * lowercase hex digits).  Its ZeroMQ topic is the name itself,
 * except that "user:ID" is the bare client id ID: the topic every page of that client id has
 * always listened on, so a publisher that knows nothing of channels still reaches them.
 * Namespace names are at most 16 bytes and end at a colon, so no channel's topic can begin
 * with another's client id (a ZeroMQ prefix subscription to a client id takes nothing else).
 *
 * Who may subscribe follows the namespace's rule: owner (REST is the connection's client id),
 * claim (the token's channels claim grants "subscribe" on the name, token.h for patterns) or
 * signed_in (any authenticated connection).  Who may publish as a client (a task's channels;
 * a browser's publish) is nobody, or the members: those the subscribe rule admits, and under
 * claim only with "publish" granted.  Servers publish to any valid channel (the publish API,
 * the ZeroMQ publish endpoint).
 *
 * Every refusal is one row of CHANNEL_REFUSAL_MAP: a stable machine name clients act on, and
 * a message for people.
 */
#ifndef TW_COMMON_CHANNEL_H
#define TW_COMMON_CHANNEL_H

#include <jansson.h>
#include <stddef.h>

#include "config.h"
#include "token.h"

#define CHANNEL_CHARS                                                                              \
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._-" /* after the colon */
#define CHANNEL_USER_NAMESPACE "user" /* its channels' topics are the bare client ids */

/* XX(enum suffix, machine name, message) */
#define CHANNEL_REFUSAL_MAP(XX)                                                                    \
    XX(BAD_NAME, "bad_channel",                                                                    \
       "a channel is NAMESPACE:NAME, NAME of ASCII letters, digits and : . _ -")                   \
    XX(TOO_LONG, "too_long", "the channel name is longer than [channels] max_name")                \
    XX(UNKNOWN_NAMESPACE, "unknown_namespace", "no such namespace in the configuration")           \
    XX(NOT_ALLOWED, "not_allowed", "this namespace does not let this client subscribe here")       \
    XX(PUBLISH_NOT_ALLOWED, "publish_not_allowed",                                                 \
       "this namespace does not let this client publish here")                                     \
    XX(TOO_MANY, "too_many_channels",                                                              \
       "the connection has [channels] max_per_connection channels already")                        \
    XX(NOT_SUBSCRIBED, "not_subscribed", "the connection is not subscribed to this channel")       \
    XX(OWN_CHANNEL, "own_channel", "a connection always keeps its own user channel")               \
    XX(BAD_DATA, "bad_data", "a publish's data must be a JSON object")                             \
    XX(TOO_LARGE, "too_large", "the publish's data is over [channels] publish_max bytes")          \
    XX(RATE_LIMITED, "rate_limited",                                                               \
       "the connection published faster than [channels] publish_rate after its publish_burst")     \
    XX(BUSY, "busy", "no worker pool can take the message now: try again later")                   \
    XX(NO_MEMORY, "internal", "out of memory")

enum channel_refusal {
    CHANNEL_OK = 0,
#define CHANNEL_REFUSAL_ENUM(name, code, message) CHANNEL_E_##name,
    CHANNEL_E_FIRST_ = -100,
    CHANNEL_REFUSAL_MAP(CHANNEL_REFUSAL_ENUM)
#undef CHANNEL_REFUSAL_ENUM
        CHANNEL_E_LAST_
};

/* A checked channel name, borrowed from the name it was parsed from and from the config. */
struct channel {
    const char *name; /* the whole name */
    size_t len;
    const struct config_namespace *ns;
    const char *rest; /* after the colon */
    size_t rest_len;
};

/* Check (name, len) against cfg: 0 with *channel filled, or CHANNEL_E_BAD_NAME, _TOO_LONG,
 * _UNKNOWN_NAMESPACE. */
int channel_parse(const struct config *cfg, const char *name, size_t len, struct channel *channel);

/* Whether client client_id (32 hex digits) holding grants (may be NULL) may subscribe to
 * channel: 0 or CHANNEL_E_NOT_ALLOWED. */
int channel_may_subscribe(const struct channel *channel, const char *client_id,
                          const struct token_grants *grants);

/* Whether the client may publish to channel as a client (a task's channels, a browser): 0 or
 * CHANNEL_E_PUBLISH_NOT_ALLOWED. */
int channel_may_publish(const struct channel *channel, const char *client_id,
                        const struct token_grants *grants);

/* The ZeroMQ topic of channel: *topic and *topic_len point into its name. */
void channel_topic(const struct channel *channel, const char **topic, size_t *topic_len);

/* The same for a name checked before (a task's stored channels), without the config. */
void channel_name_topic(const char *name, size_t len, const char **topic, size_t *topic_len);

/* The topic of entry index of list (a task's "channels", a JSON array of names; borrowed):
 * 1 with *topic pointing into it, 0 when there is no such entry or it is not a string. */
int channel_list_topic(const json_t *list, size_t index, const char **topic, size_t *topic_len);

/* The machine name ("not_allowed") and message of a refusal; "internal" for an unknown code.
 * Borrowed; static storage. */
const char *channel_refusal_name(int refusal);
const char *channel_refusal_message(int refusal);

#endif
