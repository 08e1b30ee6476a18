/* channel.c: channel names, namespaces and their rules. */
#include "channel.h"

#include <string.h>

static const struct {
    const char *name, *message;
} channel_refusals[] = {
#define CHANNEL_REFUSAL_ROW(suffix, code, text) {code, text},
    CHANNEL_REFUSAL_MAP(CHANNEL_REFUSAL_ROW)
#undef CHANNEL_REFUSAL_ROW
};

int
channel_parse(const struct config *cfg, const char *name, size_t len, struct channel *channel)
{
    const char *colon = len > 0 ? memchr(name, ':', len) : NULL;
    if (!colon || colon == name || colon + 1 == name + len)
        return CHANNEL_E_BAD_NAME;
    size_t ns_len = (size_t)(colon - name), rest_len = len - ns_len - 1;
    /* Every byte is checked (a NUL in a JSON string, or a byte over 127, is no channel's). */
    for (size_t i = 0; i < len; i++)
        if (name[i] == '\0' || !strchr(CHANNEL_CHARS, name[i]))
            return CHANNEL_E_BAD_NAME;
    if (len > (size_t)cfg->channel_name_max)
        return CHANNEL_E_TOO_LONG;
    const struct config_namespace *ns = config_namespace_find(cfg, name, ns_len);
    if (!ns)
        return CHANNEL_E_UNKNOWN_NAMESPACE;
    /* A user channel's topic is its client id, so nothing else may follow "user:" (else
     * "user:task:1" would be task:1's topic). */
    if (strcmp(ns->name, CHANNEL_USER_NAMESPACE) == 0 &&
        (rest_len != TOKEN_ID_SIZE - 1 || strspn(colon + 1, "0123456789abcdef") < rest_len))
        return CHANNEL_E_BAD_NAME;
    *channel = (struct channel){name, len, ns, colon + 1, rest_len};
    return CHANNEL_OK;
}

/* 1 when channel's part after the colon is client_id. */
static int
channel_is_owner(const struct channel *channel, const char *client_id)
{
    size_t id_len = strlen(client_id);
    return channel->rest_len == id_len && memcmp(channel->rest, client_id, id_len) == 0;
}

/* Whether the namespace's subscribe rule admits the client, with permission (a TOKEN_GRANT_*
 * bit) granted where the rule is the claim. */
static int
channel_admits(const struct channel *channel, const char *client_id,
               const struct token_grants *grants, unsigned permission)
{
    switch (channel->ns->subscribe) {
    case CONFIG_SUBSCRIBE_OWNER:
        return channel_is_owner(channel, client_id);
    case CONFIG_SUBSCRIBE_CLAIM:
        return (token_grants_permissions(grants, channel->name, channel->len) & permission) != 0;
    case CONFIG_SUBSCRIBE_SIGNED_IN:
        return 1;
    }
    return 0;
}

int
channel_may_subscribe(const struct channel *channel, const char *client_id,
                      const struct token_grants *grants)
{
    return channel_admits(channel, client_id, grants, TOKEN_GRANT_SUBSCRIBE)
               ? CHANNEL_OK
               : CHANNEL_E_NOT_ALLOWED;
}

int
channel_may_publish(const struct channel *channel, const char *client_id,
                    const struct token_grants *grants)
{
    return channel->ns->publish == CONFIG_PUBLISH_MEMBERS &&
                   channel_admits(channel, client_id, grants, TOKEN_GRANT_PUBLISH)
               ? CHANNEL_OK
               : CHANNEL_E_PUBLISH_NOT_ALLOWED;
}

void
channel_topic(const struct channel *channel, const char **topic, size_t *topic_len)
{
    channel_name_topic(channel->name, channel->len, topic, topic_len);
}

void
channel_name_topic(const char *name, size_t len, const char **topic, size_t *topic_len)
{
    size_t prefix = sizeof CHANNEL_USER_NAMESPACE; /* "user:" */
    if (len > prefix && memcmp(name, CHANNEL_USER_NAMESPACE ":", prefix) == 0) {
        *topic = name + prefix;
        *topic_len = len - prefix;
    } else {
        *topic = name;
        *topic_len = len;
    }
}

int
channel_list_topic(const json_t *list, size_t index, const char **topic, size_t *topic_len)
{
    const json_t *name = json_array_get(list, index);
    if (!json_is_string(name))
        return 0;
    channel_name_topic(json_string_value(name), json_string_length(name), topic, topic_len);
    return 1;
}

/* The row of refusal, or -1. */
static int
channel_refusal_row(int refusal)
{
    int row = refusal - CHANNEL_E_FIRST_ - 1;
    return row >= 0 && row < (int)(sizeof channel_refusals / sizeof channel_refusals[0]) ? row : -1;
}

const char *
channel_refusal_name(int refusal)
{
    int row = channel_refusal_row(refusal);
    return row >= 0 ? channel_refusals[row].name : "internal";
}

const char *
channel_refusal_message(int refusal)
{
    int row = channel_refusal_row(refusal);
    return row >= 0 ? channel_refusals[row].message : "internal error";
}
