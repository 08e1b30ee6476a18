/* history.c: GET /api/channels/{name}/history (see history.h). */
#include "history.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adminkey.h"
#include "channel.h"
#include "clock.h"
#include "errors.h"
#include "log.h"
#include "protocol.h"
#include "reply.h"
#include "store.h"
#include "token.h"

#define HISTORY_CHALLENGE "WWW-Authenticate: Bearer realm=\"taskwire\"\r\n"

/* What the query asks for. */
struct history_query {
    int has_since;
    int64_t since;
    char epoch[STORE_EPOCH_SIZE]; /* "" when not given (or given empty) */
    int limit;
};

/* The {name} segment percent-decoded into name (size bytes, NUL-terminated): its length, or
 * CHANNEL_E_BAD_NAME for a bad escape, CHANNEL_E_TOO_LONG when it does not fit (no channel's
 * name is that long). */
static int
history_decode(const char *segment, char *name, size_t size)
{
    size_t length = 0;
    for (const char *c = segment; *c; c++) {
        unsigned value = (unsigned char)*c;
        if (*c == '%') {
            char hex[3] = {c[1], c[1] ? c[2] : '\0', '\0'};
            if (strspn(hex, "0123456789abcdefABCDEF") != 2)
                return CHANNEL_E_BAD_NAME;
            value = (unsigned)strtoul(hex, NULL, 16);
            c += 2;
        }
        if (length + 1 >= size)
            return CHANNEL_E_TOO_LONG;
        name[length++] = (char)value;
    }
    name[length] = '\0';
    return (int)length;
}

/* 0 when the bearer of req may read channel: the publish key, or a session token whose client
 * may subscribe to it.  Otherwise its 401, 403 or 500 is written and that code returned. */
static int
history_authorize(struct app *app, const struct request *req, const struct channel *channel)
{
    const char *given;
    size_t given_len;
    if (request_bearer(req, &given, &given_len) != 0) {
        reply_error_with(req, TW_E_UNAUTHORIZED, "missing bearer token", HISTORY_CHALLENGE);
        return TW_E_UNAUTHORIZED;
    }
    const char *key_file = app->cfg->publish_key_file, *why = "";
    if (!memchr(given, '.', given_len)) { /* not a JWT: the publish key, or nothing */
        int rc = key_file[0] ? adminkey_matches(key_file, given, given_len, &why) : -2;
        if (rc == 0)
            return 0;
        if (rc == -1) {
            log_error("event=publish_key_unusable path=%s error=\"%s\"", key_file, why);
            reply_error(req, TW_E_INTERNAL,
                        "the publish key file cannot be read or holds no valid key");
            return TW_E_INTERNAL;
        }
        reply_error_with(req, TW_E_UNAUTHORIZED, "neither a session token nor the publish key",
                         HISTORY_CHALLENGE);
        return TW_E_UNAUTHORIZED;
    }
    char client_id[TOKEN_ID_SIZE], reason[128], message[192];
    struct token_grants grants;
    if (token_verify_grants(app->secret, app->secret_len, given, given_len, clock_now_ms() / 1000,
                            client_id, &grants, reason, sizeof reason) != 0) {
        snprintf(message, sizeof message, "token rejected: %s", reason);
        reply_error_with(req, TW_E_UNAUTHORIZED, message, HISTORY_CHALLENGE);
        return TW_E_UNAUTHORIZED;
    }
    if (channel_may_subscribe(channel, client_id, &grants) != 0) {
        snprintf(message, sizeof message, "this token may not subscribe to %.*s", (int)channel->len,
                 channel->name);
        reply_error(req, TW_E_FORBIDDEN, message);
        return TW_E_FORBIDDEN;
    }
    return 0;
}

/* An integer query value of min..max: 1 with *out set, 0 when absent, -1 when malformed. */
static int
history_query_integer(const struct request *req, const char *name, long long min, long long max,
                      long long *out)
{
    char text[32];
    int found = request_query(req, name, text, sizeof text);
    if (found == 0)
        return 0;
    if (found != 1 || text[0] < '0' || text[0] > '9') /* no sign, no space */
        return -1;
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || end == text || *end || value < min || value > max)
        return -1;
    *out = value;
    return 1;
}

/* since, epoch and limit of req; 0, or TW_E_BAD_REQUEST with its reply written. */
static int
history_query(const struct request *req, int history_size, struct history_query *query)
{
    char err[160];
    long long number = 0;
    *query = (struct history_query){.limit = history_size};
    int since = history_query_integer(req, "since", 0, INT64_MAX - 1, &number);
    query->has_since = since == 1;
    query->since = since == 1 ? number : 0;
    int limit = history_query_integer(req, "limit", 1, history_size, &number);
    if (limit == 1)
        query->limit = (int)number;
    char epoch[STORE_EPOCH_SIZE + 1] = "";
    int has_epoch = request_query(req, "epoch", epoch, sizeof epoch);
    size_t epoch_len = has_epoch == 1 ? strlen(epoch) : 0;
    if (since < 0)
        snprintf(err, sizeof err, "since must be an offset: an integer 0 or more");
    else if (limit < 0)
        snprintf(err, sizeof err, "limit must be an integer 1..%d (the namespace's history_size)",
                 history_size);
    else if (has_epoch < 0 || (epoch_len != 0 && (epoch_len != STORE_EPOCH_SIZE - 1 ||
                                                  strspn(epoch, "0123456789abcdef") != epoch_len)))
        snprintf(err, sizeof err, "epoch must be the %d hex digits of a channel's epoch",
                 STORE_EPOCH_SIZE - 1);
    else if (has_epoch == 1 && !query->has_since)
        snprintf(err, sizeof err, "epoch goes with since (the offset of that epoch)");
    else if (query->since > 0 && epoch_len == 0)
        snprintf(err, sizeof err, "since above 0 needs the epoch of that offset");
    else
        err[0] = '\0';
    if (err[0]) {
        reply_error(req, TW_E_BAD_REQUEST, err);
        return TW_E_BAD_REQUEST;
    }
    memcpy(query->epoch, epoch, epoch_len + 1);
    return 0;
}

/* Whether the messages after the query's position are all still there (store.h's page): of
 * the same epoch (since 0 without one: the current epoch's), not past the stream's end, and
 * not older than the oldest kept (since 0: everything kept). */
static int
history_recovered(const struct history_query *query, const struct store_history_page *page)
{
    if (!query->has_since)
        return 1;
    if (query->epoch[0] && strcmp(query->epoch, page->epoch) != 0)
        return 0;
    if (!page->epoch[0]) /* no stream: nothing was kept, and nothing missed from offset 0 */
        return query->since == 0;
    if (query->since > page->last_offset)
        return 0;
    return query->since == 0 || query->since + 1 >= page->oldest_offset;
}

/* The page's messages as a subscriber got them (protocol_channel_position): a new array, or
 * NULL (logged) when a stored one is not a message or memory ran out. */
static json_t *
history_messages(const char *channel, const struct store_history_page *page)
{
    json_t *messages = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(page->messages, i, row)
    {
        json_int_t offset = json_integer_value(json_object_get(row, "offset"));
        const char *text = json_string_value(json_object_get(row, "payload"));
        json_error_t error;
        json_t *message = text ? json_loads(text, 0, &error) : NULL;
        int fails = !messages || protocol_channel_position(message, offset, page->epoch) != 0 ||
                    json_array_append(messages, message) != 0;
        json_decref(message);
        if (fails) {
            log_error("event=history_unreadable channel=%s offset=%lld", channel,
                      (long long)offset);
            json_decref(messages);
            return NULL;
        }
    }
    return messages;
}

void
history_get(struct app *app, const struct request *req, const char *segment)
{
    char name[CONFIG_CHANNEL_NAME_LIMIT + 1], err[256];
    struct channel channel;
    struct store_history_page page = {0};
    json_t *body = NULL;
    const char *bearer;
    size_t bearer_len;
    /* Who asks comes first (401), then what (422), then whether it may (403). */
    if (request_bearer(req, &bearer, &bearer_len) != 0) {
        reply_error_with(req, TW_E_UNAUTHORIZED, "missing bearer token", HISTORY_CHALLENGE);
        return;
    }
    int length = history_decode(segment, name, sizeof name);
    int rc = length < 0 ? length : channel_parse(app->cfg, name, (size_t)length, &channel);
    if (rc != 0) {
        snprintf(err, sizeof err, "%s (%s)", channel_refusal_message(rc), channel_refusal_name(rc));
        reply_error(req, TW_E_BAD_CHANNEL, err);
        return;
    }
    if (history_authorize(app, req, &channel) != 0)
        return;
    if (channel.ns->history_size == 0) {
        snprintf(err, sizeof err,
                 "the %s namespace keeps no history ([namespace %s] history_size is 0)",
                 channel.ns->name, channel.ns->name);
        reply_error(req, TW_E_NO_HISTORY, err);
        return;
    }
    struct history_query query;
    if (history_query(req, channel.ns->history_size, &query) != 0)
        return;
    /* Without since: the position only (no message is above the last possible offset). */
    rc = store_history_read(app->store, name, query.has_since ? query.since : INT64_MAX - 1,
                            query.limit, &page);
    if (rc != 0) {
        reply_error(req, rc, NULL);
        return;
    }
    int recovered = history_recovered(&query, &page);
    json_t *messages = recovered ? history_messages(name, &page) : json_array();
    int readable = messages != NULL || !recovered;
    size_t count = json_array_size(messages);
    json_int_t last_sent =
        count ? json_integer_value(json_object_get(json_array_get(messages, count - 1), "offset"))
              : 0;
    /* "o" takes messages, also when the object cannot be made. */
    body = messages
               ? json_pack("{s:s, s:s, s:I, s:b, s:b, s:o}", "channel", name, "epoch", page.epoch,
                           "offset", (json_int_t)page.last_offset, "recovered", recovered, "more",
                           count > 0 && last_sent < page.last_offset, "messages", messages)
               : NULL;
    json_decref(page.messages);
    if (!body) {
        reply_error(req, readable ? TW_E_NOMEM : TW_E_STORE, NULL);
        return;
    }
    reply_json(req, 200, &body, NULL);
}
