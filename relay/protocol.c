/* protocol.c: the lws callbacks: one switch for HTTP and WebSocket (the handshake's Origin
 * check included), one for the ZeroMQ fd. */
#include <jansson.h>
#include <string.h>

#include "ingress.h"
#include "origin.h"
#include "relay.h"
#include "scrape.h"
#include "session.h"

#define PROTOCOL_HTTP_BODY_MAX 512 /* bytes of the relay's own HTTP answers */

/* Write an HTTP answer of status with *body (taken; built with jansson, NULL fails): 0, or -1
 * when it could not be written. */
static int
protocol_reply(struct lws *wsi, unsigned int status, json_t **body)
{
    unsigned char head[LWS_PRE + 512], *start = head + LWS_PRE, *p = start,
                                       *end = head + sizeof head - 1;
    unsigned char text[LWS_PRE + PROTOCOL_HTTP_BODY_MAX];
    size_t len =
        *body ? json_dumpb(*body, (char *)text + LWS_PRE, PROTOCOL_HTTP_BODY_MAX, JSON_COMPACT) : 0;
    json_decref(*body);
    *body = NULL;
    if (len == 0 || len > PROTOCOL_HTTP_BODY_MAX)
        return -1;
    if (lws_add_http_common_headers(wsi, status, "application/json", len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    int written = lws_write(wsi, text + LWS_PRE, len, LWS_WRITE_HTTP_FINAL);
    listener_uncork(lws_get_socket_fd(wsi));
    return written < (int)len ? -1 : 0;
}

/* A WebSocket handshake asks to upgrade ([relay] allowed_origins): 0 to go on, or 1 once it
 * is answered 403 (lws then ends the HTTP transaction), -1 to hang up.  Here rather than in
 * LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: by then lws has switched the connection to the
 * WebSocket role, and refusing there hangs up without an HTTP status. */
static int
protocol_upgrade(struct relay *relay, struct lws *wsi)
{
    const struct origin_list *allowed = &relay->cfg->allowed_origins;
    int len = lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN);
    char origin[ORIGIN_MAX] = "";
    if (allowed->count == 0 || len <= 0) /* any origin, or not a browser (see CONFIG.md) */
        return 0;
    int copied =
        len < (int)sizeof origin ? lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) : -1;
    if (copied == len && origin_list_contains(allowed, origin, (size_t)len))
        return 0;
    relay->forbidden++;
    /* The header is the client's: logged printable, without quotes. */
    for (char *c = origin; *c; c++)
        if (*c < 0x21 || *c > 0x7e || *c == '"')
            *c = '?';
    log_warn("event=ws_forbidden reason=\"origin\" origin=\"%s\"",
             copied == len ? origin : "(too long)");
    json_t *body = json_pack("{s:{s:s, s:s}}", "error", "code", "forbidden_origin", "message",
                             "this page's origin may not open the WebSocket");
    return protocol_reply(wsi, HTTP_STATUS_FORBIDDEN, &body) == 0 ? 1 : -1;
}

/* GET /health, GET /status, anything else 404. */
static int
protocol_http(struct relay *relay, struct lws *wsi, const char *path)
{
    json_t *body;
    unsigned int status = HTTP_STATUS_OK;
    if (strcmp(path, "/health") == 0) {
        body = json_pack("{s:s}", "status", "ok");
    } else if (strcmp(path, "/status") == 0) {
        body = scrape_status(relay);
    } else {
        status = HTTP_STATUS_NOT_FOUND;
        body = json_pack("{s:{s:s, s:s}}", "error", "code", "not_found", "message",
                         "the relay serves /ws, /health and /status");
    }
    if (protocol_reply(wsi, status, &body) != 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int
protocol_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    struct relay *relay = lws_context_user(lws_get_context(wsi));
    struct session *session = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return protocol_http(relay, wsi, in ? (const char *)in : "");
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return protocol_upgrade(relay, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        session_init(relay, session, wsi);
        return 0;
    case LWS_CALLBACK_CLOSED:
        session_fini(relay, session);
        return 0;
    case LWS_CALLBACK_RECEIVE: /* lws read frames: they came before the 101 (receive.h) */
    case LWS_CALLBACK_RECEIVE_PONG:
        session_receive_early(session);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return session_write(relay, session);
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* The relay's epoll set has ready descriptors: relay_run serves them once lws's turn is done
 * (not from inside it: serving hands descriptors to lws_service_fd). */
static void
protocol_loop_ready(struct relay *relay)
{
    relay->loop_ready = 1;
}

/* What each raw descriptor's readiness starts, by protocol row. */
static void (*const protocol_raw_ready[RELAY_PROTOCOLS])(struct relay *) = {
    [RELAY_PROTOCOL_UPSTREAM] = ingress_watch,
    [RELAY_PROTOCOL_LOOP] = protocol_loop_ready,
};

/* The raw descriptors (relay_watch): each row's id is its index. */
static int
protocol_raw_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len)
{
    (void)user;
    (void)in;
    (void)len;
    if (reason != LWS_CALLBACK_RAW_RX_FILE)
        return 0;
    unsigned int row = lws_get_protocol(wsi)->id;
    if (row < RELAY_PROTOCOLS && protocol_raw_ready[row])
        protocol_raw_ready[row](lws_context_user(lws_get_context(wsi)));
    return 0;
}

/* tx_packet_size is set from [relay] max_message when the context is made (relay.c).  lws
 * reads a connection only until its handshake is done (receive.h), hence the small rx size. */
const struct lws_protocols relay_protocols[RELAY_PROTOCOLS + 1] = {
    [RELAY_PROTOCOL_WS] = {"taskwire", protocol_callback, sizeof(struct session),
                           RELAY_LWS_RX_BUFFER, RELAY_PROTOCOL_WS, NULL, 0},
    [RELAY_PROTOCOL_UPSTREAM] = {"taskwire-upstream", protocol_raw_callback, 0, 0,
                                 RELAY_PROTOCOL_UPSTREAM, NULL, 0},
    [RELAY_PROTOCOL_LOOP] = {"taskwire-loop", protocol_raw_callback, 0, 0, RELAY_PROTOCOL_LOOP,
                             NULL, 0},
    [RELAY_PROTOCOLS] = {NULL, NULL, 0, 0, 0, NULL, 0}};
