/* fuzz_ws_frames: receive_read (relay/receive.c) on what a WebSocket client sends after its
 * handshake, cut into reads the way TCP may cut it.
 *
 * The first byte sets the size of each read (1 to 256 bytes); the rest is the stream.  Between
 * reads an owed pong is taken now and then, as the relay's writes do.  At the end the client's
 * side is shut, as a vanished peer's would be.
 * As in the relay's sessions, the first text message (the auth message) may have up to
 * AUTH_MESSAGE_MAX bytes and every later one MAX_MESSAGE: the limit passed to each call is the
 * one of the next message due at its start.
 * Promises checked: once a call says reading is over, nothing more is reported; a text message
 * is at most the limit its call was given; a pong's payload at most RECEIVE_PONG_MAX; a failure
 * carries one of the codes receive.h names; a close or failure ends reading in the same call.
 * Every text message after the first goes on as the relay's sessions take it: JSON with a
 * "type" of subscribe, unsubscribe or publish is a channel request (relay/subscription.c) of a
 * connection whose token grants "project:*" (subscribe, publish) and "task:1" (subscribe), in
 * a route table of its own; promised: a request never leaves the connection more than
 * [channels] max_per_connection channels, its reply always fits SUBSCRIPTION_REPLY_MAX and is
 * JSON, and at the input's end the connection leaves the table empty. */
#include "fuzz.h"

#include <jansson.h>
#include <sys/socket.h>

#include "relay/receive.c"
#include "channel.h"
#include "relay/subscription.h"

#define CLIENT_ID "0123456789abcdef0123456789abcdef"

#define MAX_MESSAGE 512       /* a limit the relay's client messages may have (its smallest) */
#define AUTH_MESSAGE_MAX 1536 /* its RELAY_AUTH_MESSAGE_MAX: the first message's limit */

struct seen {
    int over;     /* a call returned 1 */
    int ending;   /* close, fail or end reported in this call */
    size_t texts; /* text messages so far */
    size_t max;   /* the limit this call was given */
};

static struct config cfg;
static struct route *route;
static struct subscription_set subs;
static struct token_grants grants;

static void
route_noop(void *owner)
{
    (void)owner;
}

/* A message after the auth message, as session_on_text reads it: a channel request. */
static void
channel_request(const unsigned char *text, size_t len)
{
    json_t *message = json_loadb((const char *)text, len, 0, NULL);
    const char *type = json_string_value(json_object_get(message, "type"));
    if (type && (strcmp(type, "subscribe") == 0 || strcmp(type, "unsubscribe") == 0 ||
                 strcmp(type, "publish") == 0)) {
        int rc = subscription_request(&subs, route, &cfg, CLIENT_ID, &grants, type, message);
        FUZZ_CHECK(rc == 0 || (rc > CHANNEL_E_FIRST_ && rc < CHANNEL_E_LAST_));
        FUZZ_CHECK(subs.count <= (uint32_t)cfg.channels_per_connection);
        char reply[SUBSCRIPTION_REPLY_MAX];
        size_t reply_len = subscription_reply(type, json_object_get(message, "channel"), rc,
                                              reply, sizeof reply);
        FUZZ_CHECK(reply_len > 0 && reply_len <= sizeof reply);
        json_t *parsed = json_loadb(reply, reply_len, 0, NULL);
        FUZZ_CHECK(json_is_object(parsed));
        json_decref(parsed);
    }
    json_decref(message);
}

static void
on_text(void *owner, const unsigned char *text, size_t len)
{
    struct seen *seen = owner;
    FUZZ_CHECK(!seen->over && !seen->ending);
    FUZZ_CHECK(len <= seen->max);
    if (seen->texts > 0)
        channel_request(text, len);
    seen->texts++;
}

/* One grant of the connection's token. */
static void
grant(const char *name, unsigned permissions)
{
    struct token_grant *g = &grants.grants[grants.count++];
    g->len = (uint8_t)strlen(name);
    g->permissions = (uint8_t)permissions;
    memcpy(g->name, name, g->len);
}

static void
on_control(void *owner)
{
    struct seen *seen = owner;
    FUZZ_CHECK(!seen->over && !seen->ending);
}

static void
on_close(void *owner, uint16_t code)
{
    struct seen *seen = owner;
    (void)code;
    FUZZ_CHECK(!seen->over && !seen->ending);
    seen->ending = 1;
}

static void
on_fail(void *owner, uint16_t code)
{
    struct seen *seen = owner;
    FUZZ_CHECK(!seen->over && !seen->ending);
    FUZZ_CHECK(code == RECEIVE_CLOSE_PROTOCOL || code == RECEIVE_CLOSE_UNSUPPORTED ||
               code == RECEIVE_CLOSE_BAD_DATA || code == RECEIVE_CLOSE_TOO_BIG ||
               code == RECEIVE_CLOSE_INTERNAL);
    seen->ending = 1;
}

static void
on_end(void *owner)
{
    struct seen *seen = owner;
    FUZZ_CHECK(!seen->over && !seen->ending);
    seen->ending = 1;
}

static const struct receive_handler handler = {on_text, on_control, on_control, on_close, on_fail,
                                               on_end};

/* One read: 0 while the connection may send more, 1 once over. */
static int
read_once(struct receive **rx, int fd, struct seen *seen, int take_pong)
{
    seen->ending = 0;
    seen->max = seen->texts ? MAX_MESSAGE : AUTH_MESSAGE_MAX;
    int rc = receive_read(rx, fd, seen->max, &handler, seen);
    FUZZ_CHECK(rc == 0 || rc == 1);
    FUZZ_CHECK(rc == 1 || !seen->ending);
    if (rc == 1) {
        seen->over = 1;
        return 1;
    }
    unsigned char pong[RECEIVE_PONG_MAX];
    if (take_pong) {
        int len = receive_take_pong(rx, pong);
        FUZZ_CHECK(len >= -1 && len <= RECEIVE_PONG_MAX);
    }
    return 0;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_setup(&cfg);
    cfg.channels_per_connection = 4;
    struct config_namespace lobby = {
        .name = "lobby", .subscribe = CONFIG_SUBSCRIBE_SIGNED_IN, .publish = CONFIG_PUBLISH_MEMBERS};
    cfg.namespaces[cfg.namespace_count++] = lobby;
    grant("project:*", TOKEN_GRANT_SUBSCRIBE | TOKEN_GRANT_PUBLISH);
    grant("task:1", TOKEN_GRANT_SUBSCRIBE);
    struct route_callbacks callbacks = {route_noop, route_noop, NULL, NULL, NULL};
    route = route_new(4096, 8, 16, &callbacks);
    if (!route)
        abort();
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    size_t chunk = (size_t)data[0] + 1;
    data++, size--;
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        return 0;
    int buf = 4 * 65536;
    (void)setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct receive *rx = NULL;
    struct seen seen = {0, 0, 0, 0};
    subscription_init(&subs, &seen);
    FUZZ_CHECK(route_attach(route, &subs.own, CLIENT_ID, strlen(CLIENT_ID)) == 0);
    size_t sent = 0;
    int over = 0;
    for (int turn = 0; sent < size && !over; turn++) {
        size_t n = size - sent < chunk ? size - sent : chunk;
        ssize_t w = send(fds[0], data + sent, n, MSG_DONTWAIT);
        if (w > 0)
            sent += (size_t)w;
        over = read_once(&rx, fds[1], &seen, turn % 3 == 0);
    }
    shutdown(fds[0], SHUT_WR);
    for (int turn = 0; !over && turn < 64; turn++)
        over = read_once(&rx, fds[1], &seen, 1);
    FUZZ_CHECK(over); /* a shut stream ends reading within a few turns */
    subscription_fini(&subs, route);
    struct route_stats stats;
    route_stats(route, &stats);
    FUZZ_CHECK(stats.members == 0 && stats.clients == 0);
    receive_destroy(&rx);
    close(fds[0]);
    close(fds[1]);
    return 0;
}
