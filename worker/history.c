/* history.c: channel messages stored with their offsets before they are published (see
 * history.h). */
#include "history.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "errors.h"
#include "log.h"
#include "protocol.h"

/* One message waiting for its offset. */
struct history_entry {
    char channel[CONFIG_CHANNEL_NAME_LIMIT + 1];
    char *payload;   /* the text as it came, NUL-terminated */
    json_t *message; /* the same, parsed: what goes out, with its position */
    int keep;
    int64_t ttl_ms;
};

struct history {
    const struct config *cfg;
    size_t count;
    struct history_entry entries[HISTORY_BATCH_MAX];
};

struct history *
history_new(const struct config *cfg)
{
    struct history *history = calloc(1, sizeof *history);
    if (history)
        history->cfg = cfg;
    return history;
}

static void
history_clear(struct history *history)
{
    for (size_t i = 0; i < history->count; i++) {
        free(history->entries[i].payload);
        json_decref(history->entries[i].message);
    }
    history->count = 0;
}

void
history_destroy(struct history **history)
{
    if (!history || !*history)
        return;
    if ((*history)->count > 0)
        log_warn("event=history_dropped messages=%zu reason=\"the pool stopped\"",
                 (*history)->count);
    history_clear(*history);
    free(*history);
    *history = NULL;
}

int
history_take(struct history *history, const char *topic, size_t topic_len, const char *payload,
             size_t payload_len)
{
    struct channel channel;
    if (topic_len > CONFIG_CHANNEL_NAME_LIMIT ||
        channel_parse(history->cfg, topic, topic_len, &channel) != 0 ||
        channel.ns->history_size == 0)
        return 0; /* a client id's topic, or a namespace without history */
    if (history->count >= HISTORY_BATCH_MAX) {
        log_warn("event=history_dropped channel=%.*s reason=\"batch full\"", (int)topic_len, topic);
        return -1;
    }
    if (payload_len + PROTOCOL_POSITION_MAX > (size_t)history->cfg->max_message) {
        log_warn("event=bad_nudge reason=\"publish payload over max_message with its position\""
                 " channel=%.*s length=%zu",
                 (int)topic_len, topic, payload_len);
        return -1;
    }
    json_error_t error;
    json_t *message = json_loadb(payload, payload_len, JSON_REJECT_DUPLICATES, &error);
    char *copy = message ? malloc(payload_len + 1) : NULL;
    if (!json_is_object(message) || !copy) {
        /* Not echoed: bytes off the wire could forge log lines. */
        log_warn("event=bad_nudge reason=\"%s\" channel=%.*s length=%zu",
                 message && !copy ? "out of memory" : "publish payload not a JSON object",
                 (int)topic_len, topic, payload_len);
        json_decref(message);
        free(copy);
        return -1;
    }
    memcpy(copy, payload, payload_len);
    copy[payload_len] = '\0';
    struct history_entry *entry = &history->entries[history->count++];
    memcpy(entry->channel, topic, topic_len);
    entry->channel[topic_len] = '\0';
    entry->payload = copy;
    entry->message = message;
    entry->keep = channel.ns->history_size;
    entry->ttl_ms = (int64_t)channel.ns->history_ttl * 1000;
    return 1;
}

int
history_full(const struct history *history)
{
    return history->count >= HISTORY_BATCH_MAX;
}

void
history_flush(struct history *history, struct store *store, history_publish_fn *publish, void *data)
{
    if (history->count == 0)
        return;
    struct store_history_item items[HISTORY_BATCH_MAX];
    for (size_t i = 0; i < history->count; i++) {
        const struct history_entry *entry = &history->entries[i];
        items[i] = (struct store_history_item){.channel = entry->channel,
                                               .payload = entry->payload,
                                               .keep = entry->keep,
                                               .ttl_ms = entry->ttl_ms};
    }
    int rc = store_history_append(store, items, history->count);
    if (rc != 0) {
        log_warn("event=history_not_stored messages=%zu error=%s next=\"dropped, not published\"",
                 history->count, tw_error_name(rc));
        history_clear(history);
        return;
    }
    /* Committed: now each goes out, in the order it came. */
    for (size_t i = 0; i < history->count; i++) {
        struct history_entry *entry = &history->entries[i];
        char *text = protocol_channel_position(entry->message, items[i].offset, items[i].epoch) == 0
                         ? json_dumps(entry->message, JSON_COMPACT)
                         : NULL;
        if (!text) {
            log_warn("event=history_unpublished channel=%s offset=%lld error=out_of_memory",
                     entry->channel, (long long)items[i].offset);
            continue;
        }
        publish(data, entry->channel, strlen(entry->channel), text, strlen(text));
        free(text);
    }
    history_clear(history);
}

int
history_prune(struct store *store, int max_batches)
{
    int total = 0, deleted = STORE_PRUNE_BATCH;
    for (int n = 0; n < max_batches && deleted == STORE_PRUNE_BATCH; n++) {
        deleted = store_history_prune(store);
        if (deleted > 0)
            total += deleted;
    }
    return deleted < 0 && total == 0 ? deleted : total;
}
