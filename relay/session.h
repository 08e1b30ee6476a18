/* session.h: one WebSocket connection: its authentication (the auth message, see below), its
 * place in the route table, what the client sends (read by the relay through receive.h once
 * lws has done the handshake), control replies (connected, pong, error, close) and sending the
 * next message.
 *
 * Authentication: a new connection is unauthenticated: not in the route table (it gets no
 * event) and allowed one message, {"type":"auth","token":"..."} as text.  A valid token
 * attaches it to the token's client id and sends {"type":"connected",...}; a refused one
 * closes with 4001; any other first message closes with 4002, and a connection without its
 * auth message [relay] auth_timeout_ms after the handshake is closed with 4003 by the
 * heartbeat.  With [relay] token_in_query a ?token= in the URL authenticates at the handshake
 * instead (compatibility).  An auth message after the connection is authenticated is answered
 * with an error; the connection stays.  No log line carries the token or the message.
 *
 * The struct is lws per-session storage (lws allocates and frees it); session_init and
 * session_fini bracket its life.  Control replies are flags, not queued text, so a session is
 * a fixed ~200 bytes whatever the client sends (receive.h holds a partial frame only while it
 * is partial; channel replies and a channels claim are the bounded exceptions below).  Writes
 * happen in session_write() (lws's writeable callback: control replies through lws, messages
 * through send.h) and, batched through send.h, in session_serve_woken().
 *
 * Channels (subscription.h): after its auth message a connection may send
 * {"type":"subscribe","channel":NAME} and {"type":"unsubscribe","channel":NAME}; each is
 * answered, in order, with {"type":"subscribed"|"unsubscribed","channel":NAME} or
 * {"type":"refused","request":...,"channel":NAME,"reason":...,"message":...} (reasons:
 * common/channel.h).  {"type":"publish","channel":NAME,"data":{...}} from a connection the
 * namespace lets publish there is pushed upstream as a signal (upstream.h) and answered
 * {"type":"published","channel":NAME}, or refused: data not an object (bad_data), over
 * [channels] publish_max bytes as the relay writes it (too_large), past the connection's token
 * bucket (publish_rate a second after publish_burst: rate_limited), no pool to take it now
 * (busy); the connection stays.  A client message after the auth message may be
 * relay->client_message_max bytes (more: 1009).  These replies wait in a buffer of
 * SESSION_REPLIES_BYTES, allocated while any
 * waits; a client that sends requests faster than it reads their replies until that is full
 * is closed with 4029 (too many requests).  A token's channels claim is kept (about 1 KiB)
 * only on connections whose token had one.
 *
 * Closing: a close the relay starts (4001, 4002, 4003, 4008, 1013, 1001) goes through lws,
 * which sends it and waits PENDING_TIMEOUT_CLOSE_ACK (5 s) for the client's reply; the reply
 * (or the end of the client's stream) ends the connection at once.  A close that fails the
 * connection (RFC 6455 7.1.7: 1002, 1003, 1007, 1009) or answers the client's own close is
 * written here and the connection ends as soon as it is sent.
 */
#ifndef TW_RELAY_SESSION_H
#define TW_RELAY_SESSION_H

#include <libwebsockets.h>
#include <stdint.h>

#include "bucket.h"
#include "route.h"
#include "send.h"
#include "subscription.h"
#include "token.h"

struct relay;
struct receive;
struct session_replies;

struct session {
    struct lws *wsi;
    struct subscription_set subs;    /* its own client id and the channels it subscribed to */
    struct token_grants *grants;     /* its token's channels claim, NULL when it had none */
    struct session_replies *replies; /* channel replies waiting to be written, NULL when none */
    struct lws_dll2 link;            /* in the relay's heartbeat wheel (relay->wheel) */
    struct lws_dll2 woken;           /* on relay->woken while a message waits for its write, or on
                                        relay->ending once it is to end (ending set) */
    uint64_t id;
    uint32_t last_rx_s;  /* relay->now_s when the peer last sent anything */
    uint32_t ping_at_s;  /* relay->now_s when the unanswered ping went (ping_sent) */
    struct receive *rx;  /* the client's partial frame or message, NULL between */
    uint16_t close_code; /* non-zero: close with this code at the next write */
    uint8_t close_now;   /* write the close and end: a failure, or the peer's close */
    uint8_t close_sent;  /* lws sent our close: the client's reply ends it */
    uint8_t close_echo;  /* the close answers the client's: no reason text */
    uint8_t reading;     /* its input watched in the relay's epoll set (loop.h) */
    uint8_t send_connected, send_pong, send_ping, send_resync, send_pong_frame;
    uint8_t send_error; /* enum session_error: the error reply owed, 0 for none */
    uint8_t ping_sent, dead;
    uint8_t attached;
    uint8_t corked; /* its first frame not written yet (listener_uncork) */
    uint8_t ending; /* on relay->ending: nothing more is written */
    uint8_t culled; /* closed 4008 for lagging: lws's grace timeout ends it (session_cull) */
    char client_id[TOKEN_ID_SIZE];
    uint8_t auth_pending;         /* no token yet: only the auth message may come */
    uint8_t publish_started;      /* publish_bucket holds: it published before */
    uint32_t auth_deadline_ms;    /* while auth_pending: clock_mono_ms() (cut to 32 bits) of 4003 */
    struct bucket publish_bucket; /* its publishes' token bucket ([channels] publish_rate) */
};

/* A connection was established: with [relay] token_in_query and a ?token= in its URL,
 * authenticate it now (session.c: its token, its client id's count of connections, [relay]
 * max_connections_per_client); else wait for its auth message until [relay] auth_timeout_ms. */
void session_init(struct relay *relay, struct session *session, struct lws *wsi);

/* The connection is gone: detach.  Safe after a failed init. */
void session_fini(struct relay *relay, struct session *session);

/* lws read and delivered client data itself (sent before the handshake's 101, which RFC 6455
 * 4.1 forbids; see receive.h): fail the connection with 1002. */
void session_receive_early(struct session *session);

/* The connection has input (loop.h): read it (receive.h).  Nothing once reading is over. */
void session_read(struct relay *relay, struct session *session);

/* Per-message path: the connection is writeable; write one frame.  -1 to close. */
int session_write(struct relay *relay, struct session *session);

/* Tell every connection {"type":"resync"}: list your tasks over REST, you may have missed
 * events (the relay reconnected to a worker pool). */
void session_resync_all(struct relay *relay);

/* The peer sent something: it is alive. */
void session_alive(struct relay *relay, struct session *session);

/* Over the connections whose check is due by now_ms (monotonic): ping one silent for [relay]
 * ping_interval, drop one whose ping went unanswered for ping_timeout, close (4003) one whose
 * auth message is overdue.  A second's checks are spread over that second: 1 when some of this
 * second's are left for a later call (relay.c calls again 1/RELAY_HEARTBEAT_SLICES s later),
 * else 0. */
int session_heartbeat(struct relay *relay, int64_t now_ms);

/* End every connection whose end is due (its close done, or no one left to tell), outside
 * any lws callback.  lws's own way, a kill through its timeout list, inserts each kill in a
 * list sorted by deadline that every insert walks from its head: a thousand peers leaving
 * at once made that quadratic. */
void session_end_due(struct relay *relay);

/* Per-message path: write to every session a message woke since the last call, telling lws
 * its socket is writeable rather than asking poll() (a socket with nothing queued has room);
 * a session whose last write lws still buffers waits for the real POLLOUT instead. */
void session_serve_woken(struct relay *relay);

/* The write path's callbacks (send.h). */
extern const struct send_ops session_send_ops;

/* Route callbacks. */
void session_wake(void *session);
void session_cull(void *session);

#endif
