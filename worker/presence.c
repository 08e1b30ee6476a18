/* presence.c: browser publish and presence in the worker pool (see presence.h). */
#include "presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "channel.h"
#include "clock.h"
#include "errors.h"
#include "log.h"
#include "presence_wire.h"

#define PRESENCE_BAD_LOG_MS 10000 /* at most one line about bad updates this often */

struct presence {
    const struct config *cfg;
    struct store *store;
    void *publisher;
    struct scrape *scrape;
    struct presence_update update; /* the one being applied (too big for the stack) */
    int64_t bad_logged_ms;         /* when a bad update was last logged */
    unsigned long long bad;        /* bad updates since */
    int64_t failed_logged_ms;      /* when a failed write was last logged */
    unsigned long long failed;     /* failed writes since */
};

struct presence *
presence_new(const struct config *cfg, struct store *store, void *publisher, struct scrape *scrape)
{
    struct presence *presence = calloc(1, sizeof *presence);
    if (!presence)
        return NULL;
    presence->cfg = cfg;
    presence->store = store;
    presence->publisher = publisher;
    presence->scrape = scrape;
    return presence;
}

void
presence_destroy(struct presence **presence)
{
    if (!presence || !*presence)
        return;
    free(*presence);
    *presence = NULL;
}

/* Publish [topic][payload] on the pool's PUB. */
static void
presence_publish(struct presence *presence, const void *topic, size_t topic_len,
                 const void *payload, size_t payload_len)
{
    if (zmq_send(presence->publisher, topic, topic_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(presence->publisher, payload, payload_len, ZMQ_DONTWAIT) < 0)
        log_warn("event=publish_failed topic=%.*s error=\"%s\"", (int)topic_len,
                 (const char *)topic, zmq_strerror(zmq_errno()));
}

/* Say, at most once per PRESENCE_BAD_LOG_MS, that updates were refused and why (the latest). */
static void
presence_refused(struct presence *presence, const char *why)
{
    presence->bad++;
    int64_t now = clock_mono_ms();
    if (presence->bad_logged_ms && now - presence->bad_logged_ms < PRESENCE_BAD_LOG_MS)
        return;
    log_warn("event=presence_refused count=%llu reason=\"%s\"", presence->bad, why);
    presence->bad_logged_ms = now;
    presence->bad = 0;
}

/* A write of the store failed (what, rc): said at most once per PRESENCE_BAD_LOG_MS with the
 * count (the store down fails every update and every sweep; the pool says so already). */
static void
presence_failed(struct presence *presence, const char *what, int rc)
{
    presence->failed++;
    int64_t now = clock_mono_ms();
    if (presence->failed_logged_ms && now - presence->failed_logged_ms < PRESENCE_BAD_LOG_MS)
        return;
    log_warn("event=presence_not_stored op=%s count=%llu error=%s next=\"the relays send their "
             "whole state again within presence_ttl_ms\"",
             what, presence->failed, tw_error_name(rc));
    presence->failed_logged_ms = now;
    presence->failed = 0;
}

void
presence_on_signal(struct presence *presence, const void *topic, size_t topic_len,
                   const void *payload, size_t payload_len)
{
    if (topic_len == 0 || topic_len > CONFIG_CHANNEL_NAME_LIMIT ||
        payload_len > (size_t)presence->cfg->max_message) {
        log_warn("event=bad_nudge reason=\"signal\" length=%zu", topic_len);
        return;
    }
    presence_publish(presence, topic, topic_len, payload, payload_len);
    scrape_presence(presence->scrape, 0, 0, 0, 1, -1);
}

/* The namespace of a channel name, if it is one of this config with presence; else NULL. */
static const struct config_namespace *
presence_namespace(const struct presence *presence, const char *name)
{
    struct channel channel;
    if (channel_parse(presence->cfg, name, strlen(name), &channel) != 0 || !channel.ns->presence)
        return NULL;
    return channel.ns;
}

/* Publish the events of changes (store.h's shape) whose namespaces have presence_events. */
static void
presence_publish_changes(struct presence *presence, const json_t *changes)
{
    uint64_t joins = 0, updates = 0, leaves = 0;
    size_t i;
    json_t *change;
    json_array_foreach(changes, i, change)
    {
        const char *channel = json_string_value(json_object_get(change, "channel"));
        const char *client = json_string_value(json_object_get(change, "client_id"));
        json_int_t before = json_integer_value(json_object_get(change, "before"));
        json_int_t after = json_integer_value(json_object_get(change, "after"));
        const struct config_namespace *ns = channel ? presence_namespace(presence, channel) : NULL;
        if (!ns || !ns->presence_events || !client)
            continue;
        const char *action = before == 0  ? PRESENCE_ACTION_JOIN
                             : after == 0 ? PRESENCE_ACTION_LEAVE
                                          : PRESENCE_ACTION_UPDATE;
        char *event = presence_wire_event(channel, client, action, after,
                                          json_integer_value(json_object_get(change, "version")));
        if (!event)
            continue;
        const char *topic;
        size_t topic_len;
        channel_name_topic(channel, strlen(channel), &topic, &topic_len);
        presence_publish(presence, topic, topic_len, event, strlen(event));
        free(event);
        joins += before == 0;
        leaves += after == 0;
        updates += before != 0 && after != 0;
        log_debug("event=presence_%s channel=%s client=%s connections=%lld", action, channel,
                  client, (long long)after);
    }
    scrape_presence(presence->scrape, joins, updates, leaves, 0, -1);
}

void
presence_on_update(struct presence *presence, const void *relay_id, size_t relay_id_len,
                   const void *text, size_t text_len)
{
    char id[PRESENCE_RELAY_ID_MAX], why[160];
    struct presence_update *update = &presence->update;
    if (!presence_wire_relay_id_valid(relay_id, relay_id_len)) {
        presence_refused(presence, "not a relay id");
        return;
    }
    memcpy(id, relay_id, relay_id_len);
    id[relay_id_len] = '\0';
    if (presence_wire_update_parse(text, text_len, update, why, sizeof why) != 0) {
        presence_refused(presence, why);
        return;
    }
    /* Only channels of namespaces with presence are counted: the others are left out. */
    size_t kept = 0;
    for (size_t i = 0; i < update->count; i++)
        if (presence_namespace(presence, update->entries[i].channel))
            update->entries[kept++] = update->entries[i];
    if (kept < update->count)
        presence_refused(presence, "entries of channels without presence");
    update->count = kept;
    json_t *changes = NULL;
    int rc = store_presence_apply(presence->store, id, update, clock_now_ms(), &changes);
    if (rc != 0) {
        presence_failed(presence, "apply", rc);
        return;
    }
    if (update->gone)
        log_info("event=relay_gone relay=%s changes=%zu", id, json_array_size(changes));
    presence_publish_changes(presence, changes);
    json_decref(changes);
}

void
presence_sweep(struct presence *presence, int forget)
{
    json_t *changes = NULL;
    int64_t rows = -1, now = clock_now_ms();
    int rc = store_presence_sweep(presence->store, now, forget ? now - STORE_PRESENCE_FORGET_MS : 0,
                                  &changes, &rows);
    if (rc != 0) {
        presence_failed(presence, "sweep", rc);
        return;
    }
    if (json_array_size(changes) > 0)
        log_info("event=presence_expired changes=%zu", json_array_size(changes));
    presence_publish_changes(presence, changes);
    scrape_presence(presence->scrape, 0, 0, 0, 0, rows);
    json_decref(changes);
}
