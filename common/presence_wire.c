/* presence_wire.c: builders and parsers of the signal, presence update and presence event. */
#include "presence_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

#define PRESENCE_ID_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

int
presence_wire_relay_id_valid(const char *id, size_t len)
{
    if (len == 0 || len >= PRESENCE_RELAY_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (id[i] == '\0' || !strchr(PRESENCE_ID_CHARS, id[i]))
            return 0;
    return 1;
}

char *
presence_wire_update_build(const struct presence_update *update)
{
    json_t *set = json_array();
    for (size_t i = 0; set && i < update->count; i++) {
        const struct presence_entry *e = &update->entries[i];
        if (json_array_append_new(
                set, json_pack("[s, s, i]", e->channel, e->client_id, e->conns)) != 0) {
            json_decref(set);
            return NULL;
        }
    }
    json_t *root = set ? json_pack("{s:I, s:I, s:i, s:o}", "seq", (json_int_t)update->seq, "since",
                                   (json_int_t)update->since, "ttl_ms", update->ttl_ms, "set", set)
                       : NULL;
    if (root && update->gone)
        json_object_set_new(root, "gone", json_true());
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}

/* 1 when (text, len) is 32 lowercase hex digits. */
static int
presence_client_valid(const char *text, size_t len)
{
    if (len != TOKEN_ID_SIZE - 1)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!strchr("0123456789abcdef", text[i]) || text[i] == '\0')
            return 0;
    return 1;
}

/* Entry k of set (json) into *entry: 0, or TW_E_BAD_REQUEST with err. */
static int
presence_entry_parse(const json_t *item, size_t k, struct presence_entry *entry, char *err,
                     size_t errlen)
{
    const json_t *channel = json_array_get(item, 0), *client = json_array_get(item, 1),
                 *conns = json_array_get(item, 2);
    if (!json_is_array(item) || json_array_size(item) != 3 || !json_is_string(channel) ||
        !json_is_string(client) || !json_is_integer(conns)) {
        snprintf(err, errlen, "set[%zu] is not [channel, client id, connections]", k);
        return TW_E_BAD_REQUEST;
    }
    size_t channel_len = json_string_length(channel), client_len = json_string_length(client);
    if (channel_len == 0 || channel_len > CONFIG_CHANNEL_NAME_LIMIT ||
        memchr(json_string_value(channel), '\0', channel_len)) {
        snprintf(err, errlen, "set[%zu]: not a channel name", k);
        return TW_E_BAD_REQUEST;
    }
    if (!presence_client_valid(json_string_value(client), client_len)) {
        snprintf(err, errlen, "set[%zu]: not a client id", k);
        return TW_E_BAD_REQUEST;
    }
    json_int_t n = json_integer_value(conns);
    if (n < 0 || n > PRESENCE_CONNS_MAX) {
        snprintf(err, errlen, "set[%zu]: connections out of range", k);
        return TW_E_BAD_REQUEST;
    }
    memcpy(entry->channel, json_string_value(channel), channel_len + 1);
    memcpy(entry->client_id, json_string_value(client), client_len + 1);
    entry->conns = (int)n;
    return 0;
}

int
presence_wire_update_parse(const char *text, size_t len, struct presence_update *update, char *err,
                           size_t errlen)
{
    int rc = TW_E_BAD_REQUEST;
    update->count = 0;
    if (len > PRESENCE_UPDATE_MAX) {
        snprintf(err, errlen, "longer than %d bytes", PRESENCE_UPDATE_MAX);
        return rc;
    }
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    const json_t *seq = json_object_get(root, "seq"), *ttl = json_object_get(root, "ttl_ms"),
                 *set = json_object_get(root, "set"), *gone = json_object_get(root, "gone"),
                 *since = json_object_get(root, "since");
    if (!json_is_object(root) || !json_is_integer(seq) || !json_is_integer(ttl) ||
        !json_is_integer(since) || !json_is_array(set) || (gone && !json_is_boolean(gone))) {
        snprintf(err, errlen, "not {\"seq\":S,\"since\":F,\"ttl_ms\":T,\"set\":[...]}");
        goto out;
    }
    if (json_integer_value(seq) < 1 || json_integer_value(since) < 0 ||
        json_integer_value(since) > json_integer_value(seq) ||
        json_integer_value(ttl) < PRESENCE_TTL_MIN_MS ||
        json_integer_value(ttl) > PRESENCE_TTL_MAX_MS) {
        snprintf(err, errlen, "seq, since or ttl_ms out of range");
        goto out;
    }
    if (json_array_size(set) > PRESENCE_SET_MAX) {
        snprintf(err, errlen, "more than %d entries", PRESENCE_SET_MAX);
        goto out;
    }
    update->seq = json_integer_value(seq);
    update->since = json_integer_value(since);
    update->ttl_ms = (int)json_integer_value(ttl);
    update->gone = json_is_true(gone);
    for (size_t k = 0; k < json_array_size(set); k++)
        if (presence_entry_parse(json_array_get(set, k), k, &update->entries[k], err, errlen) !=
            0) {
            update->count = 0;
            goto out;
        }
    update->count = json_array_size(set);
    rc = 0;
out:
    json_decref(root);
    return rc;
}

char *
presence_wire_signal(const char *channel, size_t channel_len, const char *client_id,
                     const json_t *data)
{
    json_t *message = json_pack("{s:s, s:s%, s:s, s:O}", "type", "message", "channel", channel,
                                channel_len, "from", client_id, "data", (json_t *)data);
    char *text = message ? json_dumps(message, JSON_COMPACT) : NULL;
    json_decref(message);
    return text;
}

char *
presence_wire_event(const char *channel, const char *client_id, const char *action,
                    int64_t connections, int64_t version)
{
    json_t *event = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "type", "presence", "channel",
                              channel, "client_id", client_id, "action", action, "connections",
                              (json_int_t)connections, "version", (json_int_t)version);
    char *text = event ? json_dumps(event, JSON_COMPACT) : NULL;
    json_decref(event);
    return text;
}
