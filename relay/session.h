/* session.h: one WebSocket connection: token check, its place in the route table, control
 * replies (connected, pong, error) and sending the next message.
 *
 * The struct is lws per-session storage (lws allocates and frees it); session_init and
 * session_fini bracket its life.  Control replies are flags, not queued text, so a session is
 * a fixed ~100 bytes whatever the client sends; writes happen only in session_write().
 */
#ifndef TW_RELAY_SESSION_H
#define TW_RELAY_SESSION_H

#include <libwebsockets.h>
#include <stdint.h>

#include "route.h"
#include "token.h"

struct relay;

struct session {
    struct lws *wsi;
    struct route_member member;
    struct session *prev, *next;  /* the relay's connections (relay->sessions) */
    struct lws_dll2 woken;        /* on relay->woken while a message waits for its write */
    uint64_t id;
    uint32_t last_rx_s;           /* relay->now_s when the peer last sent anything */
    uint32_t ping_at_s;           /* relay->now_s when the unanswered ping went (ping_sent) */
    uint16_t close_code;          /* non-zero: close with this code at the next write */
    uint8_t send_connected, send_pong, send_error, send_ping, send_resync;
    uint8_t ping_sent, dead;
    uint8_t attached;
    char client_id[TOKEN_ID_SIZE];
};

/* A connection was established: check its token and its client id's count of connections
 * ([relay] max_connections_per_client) and attach it, or schedule the close. */
void session_init(struct relay *relay, struct session *session, struct lws *wsi);

/* The connection is gone: detach.  Safe after a failed init. */
void session_fini(struct relay *relay, struct session *session);

/* A client message arrived (len bytes, final says whether the frame is complete). */
void session_receive(struct relay *relay, struct session *session, const void *in, size_t len,
                     int final);

/* Per-message path: the connection is writeable; write one frame.  -1 to close. */
int session_write(struct relay *relay, struct session *session);

/* Tell every connection {"type":"resync"}: list your tasks over REST, you may have missed
 * events (the relay reconnected to a worker pool). */
void session_resync_all(struct relay *relay);

/* The peer sent a frame (a message or a pong): it is alive. */
void session_alive(struct relay *relay, struct session *session);

/* Once a second over every connection: ping one silent for [relay] ping_interval, drop one
 * silent for ping_interval + ping_timeout. */
void session_heartbeat(struct relay *relay);

/* Per-message path: write to every session a message woke since the last call, telling lws
 * its socket is writeable rather than asking poll() (a socket with nothing queued has room);
 * a session whose last write lws still buffers waits for the real POLLOUT instead. */
void session_serve_woken(struct relay *relay);

/* Route callbacks. */
void session_wake(void *session);
void session_cull(void *session);

#endif
