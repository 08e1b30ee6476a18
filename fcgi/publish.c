/* publish.c: POST /api/publish (see publish.h). */
#include "publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adminkey.h"
#include "channel.h"
#include "errors.h"
#include "log.h"
#include "protocol.h"
#include "reply.h"

#define PUBLISH_CHALLENGE "WWW-Authenticate: Bearer realm=\"taskwire-publish\"\r\n"

/* 0 when req carries the publish key; otherwise the 404 (off), 401 or 500 is written. */
static int
publish_authorize(struct app *app, const struct request *req)
{
    const char *path = app->cfg->publish_key_file, *why = "", *given = "";
    size_t given_len = 0;
    if (!path[0]) {
        reply_error(req, TW_E_NOT_FOUND, "no such route");
        return TW_E_NOT_FOUND;
    }
    if (request_bearer(req, &given, &given_len) != 0) {
        reply_error_with(req, TW_E_UNAUTHORIZED, "missing publish key", PUBLISH_CHALLENGE);
        return TW_E_UNAUTHORIZED;
    }
    if (memchr(given, '.', given_len)) { /* a JWT: a browser's, whoever sends it */
        reply_error_with(req, TW_E_UNAUTHORIZED,
                         "a session token cannot publish: send the publish key", PUBLISH_CHALLENGE);
        return TW_E_UNAUTHORIZED;
    }
    int rc = adminkey_matches(path, given, given_len, &why);
    if (rc == -2) {
        log_warn("event=publish_off path=%s error=\"no key file: the publish API is off\"", path);
        reply_error(req, TW_E_NOT_FOUND, "no such route");
        return TW_E_NOT_FOUND;
    }
    if (rc < 0) {
        log_error("event=publish_key_unusable path=%s error=\"%s\"", path, why);
        reply_error(req, TW_E_INTERNAL,
                    "the publish key file cannot be read or holds no valid key");
        return TW_E_INTERNAL;
    }
    if (rc != 0) {
        reply_error_with(req, TW_E_UNAUTHORIZED, "wrong publish key", PUBLISH_CHALLENGE);
        return TW_E_UNAUTHORIZED;
    }
    return 0;
}

/* One message of the body, item k: checked and made into its text *payload (caller frees)
 * and its channel.  0, or the error with err saying which and why. */
static int
publish_item(struct app *app, json_t *item, size_t k, struct channel *channel, char **payload,
             char *err, size_t errlen)
{
    const char *key;
    json_t *value;
    *payload = NULL;
    if (!json_is_object(item)) {
        snprintf(err, errlen, "message %zu: must be {\"channel\": ..., \"data\": {...}}", k);
        return TW_E_BAD_REQUEST;
    }
    json_object_foreach(item, key, value)
    {
        if (strcmp(key, "channel") != 0 && strcmp(key, "data") != 0) {
            snprintf(err, errlen, "message %zu: unknown field '%.64s'", k, key);
            return TW_E_BAD_REQUEST;
        }
    }
    json_t *name = json_object_get(item, "channel"), *data = json_object_get(item, "data");
    if (!json_is_string(name)) {
        snprintf(err, errlen, "message %zu: channel is required and must be a string", k);
        return TW_E_BAD_REQUEST;
    }
    int rc = channel_parse(app->cfg, json_string_value(name), json_string_length(name), channel);
    if (rc != 0) {
        snprintf(err, errlen, "message %zu: %s (%s)", k, channel_refusal_message(rc),
                 channel_refusal_name(rc));
        return TW_E_BAD_CHANNEL;
    }
    if (!json_is_object(data)) {
        snprintf(err, errlen, "message %zu: data is required and must be an object", k);
        return TW_E_BAD_REQUEST;
    }
    json_t *message =
        json_pack("{s:s, s:O, s:O}", "type", "message", "channel", name, "data", data);
    *payload = message ? json_dumps(message, JSON_COMPACT) : NULL;
    json_decref(message);
    if (!*payload)
        return TW_E_NOMEM;
    /* A channel with history: room for the position the worker adds (protocol.h). */
    size_t max =
        (size_t)app->cfg->max_message - (channel->ns->history_size > 0 ? PROTOCOL_POSITION_MAX : 0);
    if (strlen(*payload) > max) {
        snprintf(err, errlen, "message %zu: over [relay] max_message (%zu bytes%s)", k, max,
                 channel->ns->history_size > 0 ? " with its offset and epoch" : "");
        free(*payload);
        *payload = NULL;
        return TW_E_TOO_LARGE;
    }
    return 0;
}

void
publish_post(struct app *app, const struct request *req, const char *id)
{
    (void)id;
    char err[256];
    json_t *body = NULL, *answer = NULL;
    char *payloads[PUBLISH_BATCH_MAX] = {0};
    struct channel channels[PUBLISH_BATCH_MAX];
    size_t count = 0;
    if (publish_authorize(app, req) != 0)
        return;
    int rc = request_json_body_or_list(req, app->cfg->max_body, &body, err, sizeof err);
    if (rc == 0 && json_is_array(body) &&
        (json_array_size(body) == 0 || json_array_size(body) > PUBLISH_BATCH_MAX)) {
        snprintf(err, sizeof err, "a list of 1..%d messages", PUBLISH_BATCH_MAX);
        rc = TW_E_BAD_REQUEST;
    }
    size_t total = rc == 0 ? (json_is_array(body) ? json_array_size(body) : 1) : 0;
    for (; rc == 0 && count < total; count++) {
        json_t *item = json_is_array(body) ? json_array_get(body, count) : body;
        rc = publish_item(app, item, count, &channels[count], &payloads[count], err, sizeof err);
    }
    if (rc != 0) {
        reply_error(req, rc, err);
        goto out;
    }
    json_t *published = json_array();
    answer = json_pack("{s:o}", "published", published);
    for (size_t k = 0; answer && k < count; k++) {
        const char *topic;
        size_t topic_len, len = strlen(payloads[k]);
        channel_topic(&channels[k], &topic, &topic_len);
        if (app_publish(app, topic, topic_len, payloads[k], len) != 0) {
            /* Those before it went; the caller may send the rest again. */
            log_warn("event=publish_dropped published=%zu of=%zu error=\"worker pool queue full\"",
                     k, count);
            reply_error(req, TW_E_UNAVAILABLE,
                        "the worker pool cannot take messages now (it has been away)");
            goto out;
        }
        json_array_append_new(published, json_pack("{s:s%, s:I}", "channel", channels[k].name,
                                                   channels[k].len, "bytes", (json_int_t)len));
    }
    if (!answer) {
        reply_error(req, TW_E_NOMEM, NULL);
        goto out;
    }
    log_info("event=published messages=%zu", count);
    reply_json(req, 202, &answer, NULL);
out:
    for (size_t k = 0; k < count; k++)
        free(payloads[k]);
    json_decref(answer);
    json_decref(body);
}
