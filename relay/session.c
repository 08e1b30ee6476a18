/* session.c: one WebSocket connection: its auth message, its control replies, its writes. */
#include "session.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel.h"
#include "clock.h"
#include "cookie.h"
#include "listener.h"
#include "log.h"
#include "loop.h"
#include "presence_wire.h"
#include "receive.h"
#include "relay.h"
#include "send.h"

/* Bytes of a handshake's Cookie header the relay reads for the session's cookie: its token
 * (under TOKEN_MAX) beside the site's other cookies.  A longer header counts as no cookie. */
#define SESSION_COOKIE_HEADER_MAX 8192

#define SESSION_CONTROL_MAX 256    /* bytes of a control reply */
#define SESSION_REPLIES_BYTES 8192 /* channel replies waiting per connection; more: 4029 */
#define SESSION_CULL_GRACE_S 5     /* a culled connection that cannot take its close is dropped */

/* Close code constants not in the lws enum. */
#define SESSION_CLOSE_UNAUTHORIZED 4001
#define SESSION_CLOSE_AUTH_EXPECTED 4002 /* the first message was not an auth message */
#define SESSION_CLOSE_AUTH_TIMEOUT 4003  /* no auth message within [relay] auth_timeout_ms */
#define SESSION_CLOSE_LAGGING 4008
#define SESSION_CLOSE_TRY_LATER 1013
#define SESSION_CLOSE_POLICY 1008
#define SESSION_CLOSE_TOO_MANY_REQUESTS 4029 /* channel requests faster than their replies go */

/* Channel replies waiting: records of a 2-byte length and the text, [head, used) of bytes. */
struct session_replies {
    size_t head, used;
    unsigned char bytes[SESSION_REPLIES_BYTES];
};

/* The reason text sent with each close code. */
static const struct {
    uint16_t code;
    const char *reason;
} session_close_reasons[] = {
    {SESSION_CLOSE_UNAUTHORIZED, "unauthorized"},
    {SESSION_CLOSE_AUTH_EXPECTED, "auth message expected"},
    {SESSION_CLOSE_AUTH_TIMEOUT, "auth timeout"},
    {SESSION_CLOSE_LAGGING, "lagging"},
    {RECEIVE_CLOSE_TOO_BIG, "message too big"},
    {SESSION_CLOSE_TRY_LATER, "too many connections"},
    {SESSION_CLOSE_POLICY, "too many connections for this client"},
    {SESSION_CLOSE_TOO_MANY_REQUESTS, "too many requests"},
    {RECEIVE_CLOSE_INTERNAL, "internal error"},
    {LWS_CLOSE_STATUS_GOINGAWAY, "going away"},
    {RECEIVE_CLOSE_PROTOCOL, "protocol error"},
    {RECEIVE_CLOSE_UNSUPPORTED, "text messages only"},
    {RECEIVE_CLOSE_BAD_DATA, "invalid UTF-8"},
};

/* The error replies a session may owe (session->send_error), each one fixed text. */
enum session_error {
    SESSION_ERROR_NONE,
    SESSION_ERROR_BAD_REQUEST,   /* a message that is not a ping */
    SESSION_ERROR_AUTHENTICATED, /* an auth message on an authenticated connection */
};

static const char *const session_error_texts[] = {
    [SESSION_ERROR_BAD_REQUEST] = "{\"type\":\"error\",\"error\":{\"code\":\"bad_request\","
                                  "\"message\":\"expected a type of ping, subscribe, "
                                  "unsubscribe or publish\"}}",
    [SESSION_ERROR_AUTHENTICATED] = "{\"type\":\"error\",\"error\":{\"code\":\"bad_request\","
                                    "\"message\":\"already authenticated\"}}",
};

static const char *
session_close_reason(uint16_t code)
{
    for (size_t i = 0; i < sizeof session_close_reasons / sizeof session_close_reasons[0]; i++)
        if (session_close_reasons[i].code == code)
            return session_close_reasons[i].reason;
    return "";
}

/* The session has something to write (a control reply, a close, more messages): its writeable
 * callback runs in this turn of the loop (session_serve_woken), not at lws's next full turn.
 * lws is asked too: it serves POLLOUT only for a connection that asked for it. */
static void
session_want_write(struct session *session)
{
    lws_callback_on_writable(session->wsi);
    session_wake(session);
}

/* End the connection now: its close is done, or there is no one to tell.  relay_run does it
 * after this turn (session_end_due), outside whatever lws callback this is. */
static void
session_end(struct session *session)
{
    if (session->ending)
        return;
    struct relay *relay = lws_context_user(lws_get_context(session->wsi));
    session->ending = 1;
    lws_dll2_remove(&session->woken);
    lws_dll2_add_tail(&session->woken, &relay->ending);
}

void
session_end_due(struct relay *relay)
{
    /* Each close runs session_fini (LWS_CALLBACK_CLOSED), which takes the session off the
     * list; the list is read from its head again after each. */
    while (relay->ending.head) {
        struct session *session = lws_container_of(relay->ending.head, struct session, woken);
        lws_dll2_remove(&session->woken);
        lws_set_timeout(session->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    }
}

static void session_stop_reading(struct relay *relay, struct session *session);

static void
session_close_later(struct session *session, uint16_t code)
{
    session->close_code = code;
    session_want_write(session);
}

/* The heartbeat looks at session again in the second due_s (relay->wheel: a slot per
 * second, RELAY_WHEEL_SLOTS of them; a session due later than the wheel spans is looked at
 * once a turn of the wheel until it is due). */
static void
session_wheel_put(struct relay *relay, struct session *session, uint32_t due_s)
{
    /* A connection still owing its auth message is looked at by its deadline too. */
    if (session->auth_pending) {
        int32_t left_ms = (int32_t)(session->auth_deadline_ms - (uint32_t)clock_mono_ms());
        uint32_t auth_s = relay->now_s + (left_ms > 0 ? (uint32_t)(left_ms + 999) / 1000 : 1);
        if ((int32_t)(auth_s - due_s) < 0)
            due_s = auth_s;
    }
    lws_dll2_remove(&session->link);
    lws_dll2_add_tail(&session->link, &relay->wheel[due_s & (RELAY_WHEEL_SLOTS - 1)]);
}

/* The connection presents token (length len, borrowed): check it and its client id's count of
 * connections, then attach it and owe it {"type":"connected"}, or schedule the close (4001,
 * 1008).  Neither the token nor its reason for refusal beyond token_verify's is logged. */
static void
session_authenticate(struct relay *relay, struct session *session, const char *token, size_t len)
{
    char why[128] = "missing token";
    struct token_grants grants;
    session->auth_pending = 0;
    if (len == 0 ||
        token_verify_grants(relay->secret, relay->secret_len, token, len, clock_now_ms() / 1000,
                            session->client_id, &grants, why, sizeof why) != 0) {
        log_warn("event=ws_unauthorized connection=%llu reason=\"%s\"",
                 (unsigned long long)session->id, why);
        session_close_later(session, SESSION_CLOSE_UNAUTHORIZED);
        return;
    }
    size_t id_len = strlen(session->client_id);
    if (route_client_members(relay->route, session->client_id, id_len) >=
        (size_t)relay->cfg->max_connections_per_client) {
        log_warn("event=ws_refused reason=\"max_connections_per_client\" connection=%llu "
                 "client=%s",
                 (unsigned long long)session->id, session->client_id);
        session_close_later(session, SESSION_CLOSE_POLICY);
        return;
    }
    if (grants.count > 0 && !(session->grants = malloc(sizeof grants))) {
        session_close_later(session, RECEIVE_CLOSE_INTERNAL);
        return;
    }
    if (session->grants)
        memcpy(session->grants, &grants, sizeof grants);
    if (route_attach(relay->route, &session->subs.own, session->client_id, id_len) != 0) {
        session_close_later(session, RECEIVE_CLOSE_INTERNAL);
        return;
    }
    if (relay->upstream.presence)
        subscription_count_presence(&session->subs, &relay->upstream.roster, session->client_id);
    session->attached = 1;
    session->send_connected = 1;
    session_want_write(session);
    log_debug("event=ws_connected connection=%llu client=%s", (unsigned long long)session->id,
              session->client_id);
}

void
session_init(struct relay *relay, struct session *session, struct lws *wsi)
{
    session->wsi = wsi;
    subscription_init(&session->subs, session);
    session->last_rx_s = relay->now_s;
    session_wheel_put(relay, session, relay->now_s + (uint32_t)relay->cfg->ping_interval);
    session->id = ++relay->next_connection_id;
    session->corked = listener_corks(relay) != 0; /* the listener's sockets are corked */
    relay->connections++;
    /* From here on the relay reads the connection itself (receive.h): lws must not. */
    lws_rx_flow_control(wsi, 0);
    if (loop_watch_session(relay, lws_get_socket_fd(wsi), session) != 0) {
        log_warn("event=ws_refused reason=\"cannot watch\" error=\"%s\"", strerror(errno));
        session_close_later(session, RECEIVE_CLOSE_INTERNAL);
        return;
    }
    session->reading = 1;
    if (relay->connections > (uint64_t)relay->cfg->max_connections) {
        log_warn("event=ws_refused reason=\"max_connections\"");
        session_close_later(session, SESSION_CLOSE_TRY_LATER);
        return;
    }
    char buf[TOKEN_MAX + 16];
    /* /ws?auth=cookie: the page asks to be known by the session's cookie ([auth] cookie),
     * authenticated now, its greeting in the 101's segment.  A missing or refused cookie is
     * 4001 at once, as is the ask when cookies are off, so the page falls back to the auth
     * message without waiting for auth_timeout_ms. */
    const char *mode = lws_get_urlarg_by_name(wsi, "auth=", buf, (int)sizeof buf);
    if (mode && strcmp(mode, "cookie") == 0) {
        char header[SESSION_COOKIE_HEADER_MAX];
        const char *token = "";
        size_t len = 0;
        int got = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_COOKIE) < (int)sizeof header
                      ? lws_hdr_copy(wsi, header, (int)sizeof header, WSI_TOKEN_HTTP_COOKIE)
                      : -1;
        if (!relay->cfg->cookie || got <= 0 ||
            cookie_find(header, (size_t)got, relay->cfg->cookie_name, &token, &len) != 0)
            len = 0;
        session_authenticate(relay, session, token, len);
        return;
    }
    const char *token = lws_get_urlarg_by_name(wsi, "token=", buf, (int)sizeof buf);
    if (token && relay->cfg->token_in_query) {
        session_authenticate(relay, session, token, strlen(token));
        return;
    }
    if (token) /* an old client's, or a page that put it there: it must send the message too */
        log_info("event=ws_query_token_ignored connection=%llu", (unsigned long long)session->id);
    /* The 101 leaves now: the client sends its auth message once it has it. */
    if (session->corked) {
        session->corked = 0;
        listener_uncork(lws_get_socket_fd(wsi));
    }
    session->auth_pending = 1;
    session->auth_deadline_ms = (uint32_t)clock_mono_ms() + (uint32_t)relay->cfg->auth_timeout_ms;
    session_wheel_put(relay, session, relay->now_s + (uint32_t)relay->cfg->ping_interval);
}

void
session_fini(struct relay *relay, struct session *session)
{
    if (!session->wsi)
        return;
    subscription_fini(&session->subs, relay->route);
    free(session->grants);
    session->grants = NULL;
    free(session->replies);
    session->replies = NULL;
    lws_dll2_remove(&session->woken);
    session_stop_reading(relay, session);
    receive_destroy(&session->rx);
    lws_dll2_remove(&session->link);
    session->attached = 0;
    relay->connections--;
    relay->closed[session->close_code < RELAY_CLOSE_CODES ? session->close_code : 0]++;
    session->wsi = NULL;
}

/* The first message of an unauthenticated connection: {"type":"auth","token":"..."}
 * authenticates it (session_authenticate); any other closes it with 4002.  Parsed once per
 * connection; the message dies here, unlogged. */
static void
session_on_auth(struct relay *relay, struct session *session, const unsigned char *in, size_t len)
{
    json_t *message = json_loadb((const char *)in, len, JSON_REJECT_DUPLICATES, NULL);
    const char *type = json_string_value(json_object_get(message, "type"));
    json_t *token = json_object_get(message, "token");
    if (!json_is_object(message) || !type || strcmp(type, "auth") != 0) {
        session->auth_pending = 0;
        log_info("event=ws_auth_expected connection=%llu", (unsigned long long)session->id);
        session_close_later(session, SESSION_CLOSE_AUTH_EXPECTED);
    } else {
        /* A token that is not a string is a missing token: 4001, as a refused one. */
        session_authenticate(relay, session, json_is_string(token) ? json_string_value(token) : "",
                             json_is_string(token) ? json_string_length(token) : 0);
    }
    json_decref(message);
}

/* Queue a channel reply (text, len); 0, or -1 when the replies waiting are already
 * SESSION_REPLIES_BYTES (the caller closes the connection). */
static int
session_reply_push(struct session *session, const char *text, size_t len)
{
    struct session_replies *replies = session->replies;
    if (!replies && !(replies = session->replies = calloc(1, sizeof *replies)))
        return -1;
    if (replies->head > 0 && replies->used + 2 + len > sizeof replies->bytes) {
        memmove(replies->bytes, replies->bytes + replies->head, replies->used - replies->head);
        replies->used -= replies->head;
        replies->head = 0;
    }
    if (replies->used + 2 + len > sizeof replies->bytes)
        return -1;
    replies->bytes[replies->used] = (unsigned char)(len >> 8);
    replies->bytes[replies->used + 1] = (unsigned char)(len & 0xff);
    memcpy(replies->bytes + replies->used + 2, text, len);
    replies->used += 2 + len;
    return 0;
}

/* A publish the namespace allows (message borrowed: its "channel" checked): its data is
 * checked and it goes upstream as a signal.  0, or the refusal (see session.h). */
static int
session_publish(struct relay *relay, struct session *session, const json_t *message)
{
    const json_t *data = json_object_get(message, "data");
    const json_t *channel = json_object_get(message, "channel");
    if (!json_is_object(data))
        return CHANNEL_E_BAD_DATA;
    if (json_dumpb(data, NULL, 0, JSON_COMPACT) > (size_t)relay->cfg->publish_max)
        return CHANNEL_E_TOO_LARGE;
    int64_t now = clock_mono_ms();
    if (!session->publish_started) {
        bucket_fill(&session->publish_bucket, relay->cfg->publish_burst, now);
        session->publish_started = 1;
    }
    if (!bucket_take(&session->publish_bucket, relay->cfg->publish_rate, relay->cfg->publish_burst,
                     now, NULL))
        return CHANNEL_E_RATE_LIMITED;
    const char *name = json_string_value(channel), *topic;
    size_t len = json_string_length(channel), topic_len;
    char *payload = presence_wire_signal(name, len, session->client_id, data);
    if (!payload)
        return CHANNEL_E_NO_MEMORY;
    channel_name_topic(name, len, &topic, &topic_len);
    int rc = upstream_signal(relay, topic, topic_len, payload, strlen(payload)) == 0
                 ? CHANNEL_OK
                 : CHANNEL_E_BUSY;
    free(payload);
    return rc;
}

/* {"type":"subscribe"|"unsubscribe"|"publish","channel":NAME}: done (subscription.h; a publish
 * by session_publish) and answered. */
static void
session_on_channel(struct relay *relay, struct session *session, const char *type, json_t *message)
{
    int rc = subscription_request(&session->subs, relay->route, relay->cfg, session->client_id,
                                  session->grants, type, message);
    if (rc == 0 && strcmp(type, "publish") == 0)
        rc = session_publish(relay, session, message);
    log_debug("event=ws_%s connection=%llu result=%s", type, (unsigned long long)session->id,
              rc == 0 ? "ok" : channel_refusal_name(rc));
    char text[SUBSCRIPTION_REPLY_MAX];
    size_t len =
        subscription_reply(type, json_object_get(message, "channel"), rc, text, sizeof text);
    if (len == 0 || session_reply_push(session, text, len) != 0) {
        log_info("event=ws_too_many_requests connection=%llu", (unsigned long long)session->id);
        session_close_later(session, SESSION_CLOSE_TOO_MANY_REQUESTS);
        return;
    }
    session_want_write(session);
}

/* The client asked for something in a text message: {"type":"ping"} is answered with
 * {"type":"pong"}, a channel request by session_on_channel, an auth message with an error (it
 * is authenticated already), anything else with an error; those replies are flags, so a flood
 * of messages costs no memory (channel replies are bounded: session.h).  Before its auth
 * message a connection may send nothing else (session_on_auth). */
static void
session_on_text(void *owner, const unsigned char *in, size_t len)
{
    struct session *session = owner;
    if (session->close_code)
        return;
    struct relay *relay = lws_context_user(lws_get_context(session->wsi));
    if (session->auth_pending) {
        session_on_auth(relay, session, in, len);
        return;
    }
    json_t *message = json_loadb((const char *)in, len, 0, NULL);
    const char *type = json_string_value(json_object_get(message, "type"));
    if (type && strcmp(type, "ping") == 0) {
        session->send_pong = 1;
    } else if (type && (strcmp(type, "subscribe") == 0 || strcmp(type, "unsubscribe") == 0 ||
                        strcmp(type, "publish") == 0)) {
        session_on_channel(relay, session, type, message);
        json_decref(message);
        return;
    } else if (type && strcmp(type, "auth") == 0) {
        session->send_error = SESSION_ERROR_AUTHENTICATED;
    } else {
        session->send_error = SESSION_ERROR_BAD_REQUEST;
    }
    json_decref(message);
    session_want_write(session);
}

static void
session_on_ping(void *owner)
{
    struct session *session = owner;
    session->send_pong_frame = 1;
    session_want_write(session);
}

static void
session_on_pong(void *owner)
{
    (void)owner; /* any input counts as alive (session_read) */
}

static void
session_on_close(void *owner, uint16_t code)
{
    struct session *session = owner;
    if (session->close_sent) {
        session_end(session); /* the reply to our close: the handshake is complete */
        return;
    }
    /* The client closes: answer with its code (RFC 6455 5.5.1), or 1000 when it gave none,
     * unless a close of ours is already due. */
    if (!session->close_code) {
        session->close_code = code ? code : LWS_CLOSE_STATUS_NORMAL;
        session->close_echo = 1;
    }
    session->close_now = 1;
    session_want_write(session);
}

static void
session_on_fail(void *owner, uint16_t code)
{
    struct session *session = owner;
    log_info("event=ws_protocol_error connection=%llu code=%u", (unsigned long long)session->id,
             (unsigned)code);
    if (session->close_sent) {
        session_end(session);
        return;
    }
    session->close_code = code;
    session->close_now = 1;
    session_want_write(session);
}

static void
session_on_end(void *owner)
{
    session_end(owner);
}

static const struct receive_handler session_receive_handler = {
    session_on_text,  session_on_ping, session_on_pong,
    session_on_close, session_on_fail, session_on_end,
};

static void
session_stop_reading(struct relay *relay, struct session *session)
{
    if (!session->reading)
        return;
    loop_unwatch(relay, lws_get_socket_fd(session->wsi));
    session->reading = 0;
}

void
session_read(struct relay *relay, struct session *session)
{
    if (!session->reading)
        return;
    session_alive(relay, session);
    size_t max = session->auth_pending ? RELAY_AUTH_MESSAGE_MAX : relay->client_message_max;
    if (receive_read(&session->rx, lws_get_socket_fd(session->wsi), max, &session_receive_handler,
                     session) != 0) {
        session_stop_reading(relay, session);
        receive_destroy(&session->rx);
    }
}

void
session_receive_early(struct session *session)
{
    session_on_fail(session, RECEIVE_CLOSE_PROTOCOL);
}

/* Write a control reply from text; -1 when the connection failed. */
static int
session_write_text(struct session *session, const char *text, int length)
{
    unsigned char buf[LWS_PRE + SESSION_CONTROL_MAX];
    if (length < 0 || length >= SESSION_CONTROL_MAX)
        return -1;
    memcpy(buf + LWS_PRE, text, (size_t)length);
    return lws_write(session->wsi, buf + LWS_PRE, (size_t)length, LWS_WRITE_TEXT) < length ? -1 : 0;
}

_Static_assert(LWS_PRE >= SEND_HEADER_MAX, "a frame header fits a message's headroom");

/* send.h's view of a session: its ring's waiting messages, lws for what a socket does not
 * take, and what follows a batched write. */
static int
session_peek(void *conn, size_t n, unsigned char **payload, size_t *len)
{
    struct session *session = conn;
    struct relay *relay = lws_context_user(lws_get_context(session->wsi));
    return subscription_peek(relay->route, &session->subs, n, payload, len);
}

static int
session_rest(void *conn, const unsigned char *bytes, size_t len)
{
    /* lws copies it, buffers it and finishes it on POLLOUT as it does its own writes. */
    struct session *session = conn;
    struct relay *relay = lws_context_user(lws_get_context(session->wsi));
    relay->lws_owed = 1; /* it finishes the write on POLLOUT, seen in its full turn */
    return lws_write(session->wsi, (unsigned char *)bytes, len, LWS_WRITE_RAW) < 0 ? -1 : 0;
}

static void
session_sent(void *conn, size_t n)
{
    struct session *session = conn;
    struct relay *relay = lws_context_user(lws_get_context(session->wsi));
    subscription_sent(relay->route, &session->subs, n);
}

static void
session_done(void *conn, int failed)
{
    struct session *session = conn;
    if (failed)
        session_end(session);
    else if (subscription_pending(&session->subs))
        session_want_write(session);
}

const struct send_ops session_send_ops = {session_peek, session_rest, session_sent, session_done};

static int
session_write_ring(struct relay *relay, struct session *session)
{
    /* Per-message path, from lws's writeable callback: a write lws still holds part of goes
     * first. */
    if (lws_partial_buffered(session->wsi))
        return 0;
    return send_now(&relay->send, session, lws_get_socket_fd(session->wsi));
}

/* The close: through lws's closing handshake, or written here and the connection ended once
 * it is sent (see session.h).  Always -1: lws takes over. */
static int
session_write_close(struct session *session)
{
    const char *reason = session->close_echo ? "" : session_close_reason(session->close_code);
    size_t len = strlen(reason);
    struct relay *relay = lws_context_user(lws_get_context(session->wsi));
    relay->lws_owed = 1; /* lws sends or flushes the close and ends the connection */
    if (!session->close_now) {
        lws_close_reason(session->wsi, (enum lws_close_status)session->close_code,
                         (unsigned char *)reason, len);
        session->close_sent = 1;
        return -1;
    }
    /* lws 4.1 has no way to send a close without then waiting for the reply, so the frame is
     * built here, as the messages' frames are, and goes out as raw bytes after whatever lws
     * still holds. */
    unsigned char frame[SEND_HEADER_MAX + 2 + SESSION_CONTROL_MAX];
    size_t header = send_frame_header(frame, SEND_OPCODE_CLOSE, 2 + len);
    frame[header] = (unsigned char)(session->close_code >> 8);
    frame[header + 1] = (unsigned char)(session->close_code & 0xff);
    memcpy(frame + header + 2, reason, len);
    (void)lws_write(session->wsi, frame, header + 2 + len, LWS_WRITE_RAW);
    return -1; /* no close reason set: lws flushes what it holds and ends the connection */
}

/* Write the first channel reply waiting; the buffer goes once none does.  -1 when the
 * connection failed. */
static int
session_write_reply(struct session *session)
{
    struct session_replies *replies = session->replies;
    unsigned char buf[LWS_PRE + SUBSCRIPTION_REPLY_MAX];
    size_t len = (size_t)replies->bytes[replies->head] << 8 | replies->bytes[replies->head + 1];
    memcpy(buf + LWS_PRE, replies->bytes + replies->head + 2, len);
    replies->head += 2 + len;
    if (replies->head == replies->used) {
        free(replies);
        session->replies = NULL;
    }
    return lws_write(session->wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT) < (int)len ? -1 : 0;
}

/* Per-message path: write one frame (see session_write). */
static int
session_write_one(struct relay *relay, struct session *session)
{
    /* Per-message path: control replies first, one each; then a batch from the ring. */
    char text[SESSION_CONTROL_MAX];
    int rc = 0;
    if (relay->closing && !session->close_code)
        session->close_code = LWS_CLOSE_STATUS_GOINGAWAY;
    if (session->close_sent)
        return 0; /* lws waits for the client's reply */
    if (session->close_code)
        return session_write_close(session);
    if (session->send_connected) {
        session->send_connected = 0;
        int n = snprintf(text, sizeof text,
                         "{\"type\":\"connected\",\"connection_id\":\"%d.%llu\","
                         "\"client_id\":\"%s\"}",
                         relay->pid, (unsigned long long)session->id, session->client_id);
        rc = session_write_text(session, text, n);
    } else if (session->send_pong_frame) {
        session->send_pong_frame = 0;
        unsigned char pong[LWS_PRE + RECEIVE_PONG_MAX];
        int len = receive_take_pong(&session->rx, pong + LWS_PRE);
        if (len >= 0)
            rc =
                lws_write(session->wsi, pong + LWS_PRE, (size_t)len, LWS_WRITE_PONG) < len ? -1 : 0;
    } else if (session->send_ping) {
        session->send_ping = 0;
        /* lws reports a pong to the protocol only when it carries a payload. */
        unsigned char ping[LWS_PRE + 2] = {[LWS_PRE] = 't', [LWS_PRE + 1] = 'w'};
        rc = lws_write(session->wsi, ping + LWS_PRE, 2, LWS_WRITE_PING) < 2 ? -1 : 0;
    } else if (session->send_resync) {
        session->send_resync = 0;
        rc = session_write_text(session, "{\"type\":\"resync\"}", 17);
    } else if (session->send_pong) {
        session->send_pong = 0;
        rc = session_write_text(session, "{\"type\":\"pong\"}", 15);
    } else if (session->send_error) {
        const char *error = session_error_texts[session->send_error];
        session->send_error = SESSION_ERROR_NONE;
        rc = session_write_text(session, error, (int)strlen(error));
    } else if (session->replies) {
        rc = session_write_reply(session);
    } else {
        rc = session_write_ring(relay, session);
    }
    if (rc != 0)
        return -1;
    if (session->send_ping || session->send_resync || session->send_pong || session->send_error ||
        session->send_pong_frame || session->replies || subscription_pending(&session->subs))
        session_want_write(session);
    return 0;
}

int
session_write(struct relay *relay, struct session *session)
{
    int rc = session_write_one(relay, session);
    if (session->corked) {
        session->corked = 0;
        listener_uncork(lws_get_socket_fd(session->wsi));
    }
    return rc;
}

void
session_resync_all(struct relay *relay)
{
    for (size_t slot = 0; slot < RELAY_WHEEL_SLOTS; slot++)
        for (struct lws_dll2 *d = relay->wheel[slot].head; d; d = d->next) {
            struct session *s = lws_container_of(d, struct session, link);
            if (s->attached && !s->close_code) {
                s->send_resync = 1;
                session_want_write(s);
            }
        }
}

void
session_alive(struct relay *relay, struct session *session)
{
    session->last_rx_s = relay->now_s;
    session->ping_sent = 0;
}

/* The heartbeat's look at one session in second now_s: its ping, its end, or its next look. */
static void
session_check(struct relay *relay, struct session *s, uint32_t now_s)
{
    uint32_t ping = (uint32_t)relay->cfg->ping_interval;
    uint32_t timeout = (uint32_t)relay->cfg->ping_timeout;
    uint32_t silent = now_s - s->last_rx_s;
    if (s->dead) { /* not in the wheel once dead; never looked at twice */
        lws_dll2_remove(&s->link);
        return;
    }
    /* The auth message is overdue (wrapping arithmetic: the deadline is 32 bits of ms). */
    if (s->auth_pending && !s->close_code &&
        (int32_t)((uint32_t)clock_mono_ms() - s->auth_deadline_ms) >= 0) {
        s->auth_pending = 0;
        log_info("event=ws_auth_timeout connection=%llu", (unsigned long long)s->id);
        session_close_later(s, SESSION_CLOSE_AUTH_TIMEOUT);
    }
    if (s->culled == 1) {
        /* lws's grace timeout ends it (session_cull), without flushing what it holds; ended
         * here first, lws would try to flush its buffered bytes for another 5 s.  One more
         * look after the grace, as a backstop: still here then, it ends below. */
        s->culled = 2;
        session_wheel_put(relay, s, now_s + SESSION_CULL_GRACE_S + 2);
        return;
    }
    if (s->culled || (s->ping_sent && now_s - s->ping_at_s >= timeout)) {
        s->dead = 1;
        log_info("event=ws_dead connection=%llu silent_s=%u", (unsigned long long)s->id, silent);
        lws_dll2_remove(&s->link);
        session_end(s);
    } else if (s->ping_sent) {
        session_wheel_put(relay, s, s->ping_at_s + timeout);
    } else if (silent >= ping) {
        s->ping_sent = 1;
        s->ping_at_s = now_s;
        s->send_ping = 1;
        session_want_write(s);
        session_wheel_put(relay, s, now_s + timeout);
    } else {
        session_wheel_put(relay, s, s->last_rx_s + ping);
    }
}

int
session_heartbeat(struct relay *relay, int64_t now_ms)
{
    /* One timer for all connections instead of one each (see relay.c), and a look only at
     * the sessions whose check is due: each session sits in the wheel's slot of the second its
     * ping or its hang-up would be due, and moves only when the heartbeat looks at it (input
     * in between does not move it: the look then finds it not due and puts it where it now
     * is due).  So an idle connection costs two looks per ping_interval, not one a second.
     *
     * A second's slot is served over that second, not at one instant: each call looks at the
     * share of the slot that the time elapsed in the second calls for (RELAY_HEARTBEAT_SLICES
     * calls a second while any is left), and relay.c ticks each process at its own phase.
     * Served at once at one tick a second, the pings of the 60 relays of a million idle
     * connections came in bursts that a message to any of them waited behind: spread, a
     * sample's p99 at ping_interval 60 went from 18.7 to 7.1 ms (docs/PERFORMANCE.md).  Slots
     * of seconds already past are served whole (a late tick); a session is dropped
     * ping_timeout after its ping, never before one was sent. */
    uint32_t now_s = (uint32_t)(now_ms / 1000);
    relay->now_s = now_s;
    if (now_s - relay->wheel_at_s > RELAY_WHEEL_SLOTS) {
        relay->wheel_at_s = now_s - RELAY_WHEEL_SLOTS;
        relay->wheel_open = 0;
    }
    while (relay->wheel_at_s != now_s) {
        uint32_t second = relay->wheel_at_s + 1;
        lws_dll2_owner_t *slot = &relay->wheel[second & (RELAY_WHEEL_SLOTS - 1)];
        if (!relay->wheel_open) {
            /* A session put back into this slot (due a whole turn later) goes to its tail:
             * look at those that were here when the pass began, no more. */
            relay->wheel_total = relay->wheel_left = (uint32_t)slot->count;
            relay->wheel_open = 1;
        }
        uint32_t want = relay->wheel_left;
        if (second == now_s) {
            int64_t elapsed_ms = now_ms % 1000 + 1000 / RELAY_HEARTBEAT_SLICES;
            uint64_t share =
                elapsed_ms >= 1000
                    ? relay->wheel_total
                    : ((uint64_t)relay->wheel_total * (uint64_t)elapsed_ms + 999) / 1000;
            uint32_t looked = relay->wheel_total - relay->wheel_left;
            want = share > looked ? (uint32_t)(share - looked) : 0;
        }
        for (; want > 0 && relay->wheel_left > 0 && slot->head; want--, relay->wheel_left--)
            session_check(relay, lws_container_of(slot->head, struct session, link), now_s);
        if (relay->wheel_left > 0 && slot->head)
            return 1; /* the rest of this second's share comes at the next slice */
        relay->wheel_open = 0;
        relay->wheel_at_s = second;
    }
    return 0;
}

void
session_wake(void *owner)
{
    /* Per-message path: remember the session for session_serve_woken, which runs its
     * writeable callback in this turn of the loop rather than the next poll()'s. */
    struct session *session = owner;
    if (!session->ending && lws_dll2_is_detached(&session->woken)) {
        struct relay *relay = lws_context_user(lws_get_context(session->wsi));
        lws_dll2_add_tail(&session->woken, &relay->woken);
    }
}

/* A session whose next write is a message, nothing else. */
static int
session_only_messages(const struct relay *relay, const struct session *session)
{
    return !relay->closing && !session->close_code && session->attached && !session->replies &&
           !(session->send_connected | session->send_ping | session->send_resync |
             session->send_pong | session->send_error | session->send_pong_frame);
}

void
session_serve_woken(struct relay *relay)
{
    /* Per-message path.  With io_uring, the writes of every woken session go to the kernel
     * together: one system call for up to SEND_DEPTH connections instead of a send
     * (and a pass through lws) each.  A session with anything but messages to write, and
     * every session without io_uring, gets its writeable callback as if poll() had said
     * POLLOUT, after the prepared writes are done (so its bytes never overtake them); lws
     * drops its own POLLOUT request once the callback is done.  A session leaves the list in
     * session_fini, so every one on it still has its connection. */
    while (relay->woken.head) {
        struct session *session = lws_container_of(relay->woken.head, struct session, woken);
        lws_dll2_remove(&session->woken);
        if (lws_partial_buffered(session->wsi)) {
            /* lws finishes its buffered write first, on POLLOUT in its full turn, then asks us
             * for more. */
            relay->lws_owed = 1;
            lws_callback_on_writable(session->wsi);
            continue;
        }
        if (relay->send.uring_ready && session_only_messages(relay, session)) {
            send_queue(&relay->send, session, lws_get_socket_fd(session->wsi));
            continue;
        }
        send_submit(&relay->send);
        struct lws_pollfd pollfd = {.fd = lws_get_socket_fd(session->wsi),
                                    .events = LWS_POLLIN | LWS_POLLOUT,
                                    .revents = LWS_POLLOUT};
        if (lws_service_fd(relay->context, &pollfd) < 0)
            return;
    }
    send_submit(&relay->send);
}

void
session_cull(void *owner)
{
    struct session *session = owner;
    session->attached = 0;
    session->culled = 1;
    log_info("event=ws_culled connection=%llu client=%s", (unsigned long long)session->id,
             session->client_id);
    session_close_later(session, SESSION_CLOSE_LAGGING);
    lws_set_timeout(session->wsi, PENDING_TIMEOUT_USER_OK, SESSION_CULL_GRACE_S);
}
