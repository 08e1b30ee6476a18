/* subscription.c: a connection's channels, their checks and their joint queue. */
#include "subscription.h"

#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "roster.h"

struct subscription_channel {
    struct subscription_channel *next;
    struct route_member member;
    uint8_t counted; /* its namespace has presence: it counts in the set's roster */
};

void
subscription_init(struct subscription_set *set, void *owner)
{
    memset(set, 0, sizeof *set);
    route_member_init(&set->own, owner);
}

void
subscription_count_presence(struct subscription_set *set, struct roster *roster,
                            const char *client_id)
{
    set->roster = roster;
    set->client_id = client_id;
}

/* The channel's presence leaves the roster (its topic is its name: never a user channel). */
static void
subscription_uncount(struct subscription_set *set, struct subscription_channel *c)
{
    const char *topic;
    size_t len;
    if (c->counted && set->roster && route_member_topic(&c->member, &topic, &len))
        roster_leave(set->roster, topic, len, set->client_id);
    c->counted = 0;
}

void
subscription_fini(struct subscription_set *set, struct route *route)
{
    route_detach(route, &set->own);
    for (struct subscription_channel *c = set->channels, *next; c; c = next) {
        next = c->next;
        subscription_uncount(set, c);
        route_detach(route, &c->member);
        free(c);
    }
    set->channels = NULL;
    set->count = 0;
    set->roster = NULL;
}

/* 1 when member is attached to the topic (topic, len). */
static int
subscription_on_topic(const struct route_member *member, const char *topic, size_t len)
{
    const char *id;
    size_t id_len;
    return route_member_topic(member, &id, &id_len) && id_len == len && memcmp(id, topic, len) == 0;
}

/* The link that points at the channel on topic, or NULL. */
static struct subscription_channel **
subscription_find(struct subscription_set *set, const char *topic, size_t len)
{
    for (struct subscription_channel **link = &set->channels; *link; link = &(*link)->next)
        if (subscription_on_topic(&(*link)->member, topic, len))
            return link;
    return NULL;
}

int
subscription_subscribe(struct subscription_set *set, struct route *route, const struct config *cfg,
                       const char *client_id, const struct token_grants *grants, const char *name,
                       size_t len)
{
    struct channel channel;
    int rc = channel_parse(cfg, name, len, &channel);
    if (rc == 0)
        rc = channel_may_subscribe(&channel, client_id, grants);
    if (rc != 0)
        return rc;
    const char *topic;
    size_t topic_len;
    channel_topic(&channel, &topic, &topic_len);
    if (subscription_on_topic(&set->own, topic, topic_len) ||
        subscription_find(set, topic, topic_len))
        return CHANNEL_OK;
    if (set->count >= (uint32_t)cfg->channels_per_connection)
        return CHANNEL_E_TOO_MANY;
    struct subscription_channel *c = calloc(1, sizeof *c);
    if (!c)
        return CHANNEL_E_NO_MEMORY;
    route_member_init(&c->member, set->own.owner);
    if (route_attach(route, &c->member, topic, topic_len) != 0) {
        free(c);
        return CHANNEL_E_NO_MEMORY;
    }
    /* Out of memory for its presence, it is subscribed still, uncounted. */
    if (channel.ns->presence && set->roster &&
        roster_join(set->roster, topic, topic_len, set->client_id) == 0)
        c->counted = 1;
    c->next = set->channels;
    set->channels = c;
    set->count++;
    return CHANNEL_OK;
}

int
subscription_unsubscribe(struct subscription_set *set, struct route *route,
                         const struct config *cfg, const char *name, size_t len)
{
    struct channel channel;
    int rc = channel_parse(cfg, name, len, &channel);
    if (rc != 0)
        return rc;
    const char *topic;
    size_t topic_len;
    channel_topic(&channel, &topic, &topic_len);
    if (subscription_on_topic(&set->own, topic, topic_len))
        return CHANNEL_E_OWN_CHANNEL;
    struct subscription_channel **link = subscription_find(set, topic, topic_len);
    if (!link)
        return CHANNEL_E_NOT_SUBSCRIBED;
    struct subscription_channel *c = *link;
    *link = c->next;
    subscription_uncount(set, c);
    route_detach(route, &c->member);
    free(c);
    set->count--;
    return CHANNEL_OK;
}

int
subscription_request(struct subscription_set *set, struct route *route, const struct config *cfg,
                     const char *client_id, const struct token_grants *grants, const char *kind,
                     const json_t *message)
{
    const json_t *channel = json_object_get(message, "channel");
    const char *name = json_string_value(channel);
    size_t len = name ? json_string_length(channel) : 0;
    if (!name)
        return CHANNEL_E_BAD_NAME;
    if (strcmp(kind, "subscribe") == 0)
        return subscription_subscribe(set, route, cfg, client_id, grants, name, len);
    if (strcmp(kind, "unsubscribe") == 0)
        return subscription_unsubscribe(set, route, cfg, name, len);
    struct channel parsed;
    int rc = channel_parse(cfg, name, len, &parsed);
    if (rc == 0)
        rc = channel_may_publish(&parsed, client_id, grants);
    return rc;
}

size_t
subscription_reply(const char *kind, const json_t *channel, int rc, char *out, size_t size)
{
    json_t *name = json_is_string(channel) && json_string_length(channel) <= SUBSCRIPTION_ECHO_MAX
                       ? json_incref((json_t *)channel)
                       : json_null();
    const char *done = strcmp(kind, "unsubscribe") == 0 ? "unsubscribed"
                       : strcmp(kind, "publish") == 0   ? "published"
                                                        : "subscribed";
    json_t *reply = rc == 0 ? json_pack("{s:s, s:o}", "type", done, "channel", name)
                            : json_pack("{s:s, s:s, s:o, s:s, s:s}", "type", "refused", "request",
                                        kind, "channel", name, "reason", channel_refusal_name(rc),
                                        "message", channel_refusal_message(rc));
    size_t len = reply ? json_dumpb(reply, out, size, JSON_COMPACT) : 0;
    json_decref(reply);
    return len <= size ? len : 0;
}

size_t
subscription_pending(const struct subscription_set *set)
{
    /* Per-message path: the own member's count, and each channel's. */
    size_t pending = route_pending(&set->own);
    for (const struct subscription_channel *c = set->channels; c; c = c->next)
        pending += route_pending(&c->member);
    return pending;
}

int
subscription_peek(struct route *route, const struct subscription_set *set, size_t k,
                  unsigned char **payload, size_t *len)
{
    /* Per-message path: the k-th message of the members taken in turn, nothing copied. */
    const struct route_member *member = &set->own;
    const struct subscription_channel *next = set->channels;
    for (;;) {
        size_t pending = route_pending(member);
        if (k < pending)
            return route_peek(route, member, k, payload, len);
        k -= pending;
        if (!next)
            return 0;
        member = &next->member;
        next = next->next;
    }
}

void
subscription_sent(struct route *route, struct subscription_set *set, size_t n)
{
    /* Per-message path: release in subscription_peek's order. */
    struct route_member *member = &set->own;
    struct subscription_channel *next = set->channels;
    while (n > 0) {
        size_t pending = route_pending(member);
        for (; pending > 0 && n > 0; pending--, n--)
            route_sent(route, member);
        if (!next)
            return;
        member = &next->member;
        next = next->next;
    }
}
