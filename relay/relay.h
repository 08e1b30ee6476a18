/* relay.h: the relay's context: the libwebsockets context and vhost, the route table, the
 * ZeroMQ subscriber (struct ingress), the listening socket (struct listener), the token secret
 * and the counters.  One thread runs it all.
 *
 * Bounds: at most [relay] max_connections WebSocket connections (one more is closed with
 * 1013), at most [relay] max_connections_per_client of one client id (one more is closed
 * with 1008), new ones per source address at [relay] connect_rate (throttle.h), handshakes
 * only from [relay] allowed_origins (others get 403); per client id and per channel a ring of
 * [relay] ring messages (route.h), at most [channels] max_per_connection channels per
 * connection besides its own (subscription.h); client messages of at most client_message_max
 * bytes in all their fragments (RELAY_CLIENT_MESSAGE_MAX and twice [channels] publish_max: room
 * for a publish), the first (the auth message) of at most RELAY_AUTH_MESSAGE_MAX (more closes
 * the connection with 1009; receive.h reads and checks what clients send); the PUSH to the
 * pools and presence (upstream.h).
 */
#ifndef TW_RELAY_RELAY_H
#define TW_RELAY_RELAY_H

#include <libwebsockets.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "config.h"
#include "ingress.h"
#include "listener.h"
#include "notify.h"
#include "route.h"
#include "send.h"
#include "token.h"
#include "upstream.h"

#define RELAY_CLIENT_MESSAGE_MAX 512     /* bytes of a client message beyond a publish's data */
#define RELAY_AUTH_MESSAGE_MAX 1536      /* ...of the auth message (a TOKEN_MAX token and room) */
#define RELAY_LWS_RX_BUFFER 512          /* lws's read buffer: it reads only the handshake */
#define RELAY_INGRESS_BATCH 4096         /* ZeroMQ messages read per turn before yielding */
#define RELAY_SUB_HWM 100000             /* messages ZeroMQ queues for the relay before dropping */
#define RELAY_CLOSE_GRACE_MS 1000        /* on stop, how long connections get to take their 1001 */
#define RELAY_HEARTBEAT_US (1000 * 1000) /* how often the heartbeat serves the connections */
#define RELAY_WHEEL_SLOTS 64             /* seconds the heartbeat's wheel spans (a power of two) */
#define RELAY_HEARTBEAT_SLICES 10        /* calls a second over which a second's checks spread */
#define RELAY_RESYNC_DELAY_US (200 * 1000) /* after upstream reconnects: subscriptions first */
/* Descriptors besides connections: sockets, ZeroMQ, io_uring, logs. */
#define RELAY_FD_RESERVE 256
#define RELAY_FULL_TURN_US 5000     /* while events flow, lws's turn when it has work, at most */
#define RELAY_TIMER_TURN_US 100000  /* ...and when it has none but timers that may be near */
#define RELAY_QUIET_TURN_US 1000000 /* ...and when its timers are seconds away (relay.c) */
#define RELAY_CLOSE_CODES 5000      /* closed[] counts codes 1..4999; [0]: no close frame */

/* The rows of the lws protocols table (relay_protocols). */
enum relay_protocol {
    RELAY_PROTOCOL_WS,       /* HTTP (/health, /status) and WebSocket (/ws) */
    RELAY_PROTOCOL_UPSTREAM, /* the ZeroMQ monitor's fd */
    RELAY_PROTOCOL_LOOP,     /* the relay's own epoll set (loop.h) */
    RELAY_PROTOCOLS
};

struct throttle;

/* A timer of lws's that counts in fractions of a second was just set (a resync): for the next
 * RELAY_QUIET_TURN_US, lws gets its timer turns RELAY_TIMER_TURN_US apart (relay.c). */
void relay_lws_near(struct relay *relay, int64_t now_us);

struct relay {
    const struct config *cfg;
    unsigned char secret[TOKEN_SECRET_MAX];
    size_t secret_len;
    struct route *route;
    struct lws_context *context;
    struct lws_vhost *vhost;
    lws_retry_bo_t retry;                      /* lws's own validity timers: off (see heartbeat) */
    lws_dll2_owner_t wheel[RELAY_WHEEL_SLOTS]; /* every WebSocket connection, by the second its
                                                  heartbeat check is due (session_heartbeat) */
    uint32_t wheel_at_s;                       /* the last second whose slot the heartbeat served */
    int wheel_open;                            /* the slot of wheel_at_s + 1 is being served... */
    uint32_t wheel_total, wheel_left;          /* ...its sessions when the pass began, and left */
    lws_sorted_usec_list_t heartbeat;          /* once a second: ping the idle, drop the dead */
    lws_sorted_usec_list_t heartbeat_slice; /* the rest of a second's checks (session_heartbeat) */
    int64_t heartbeat_phase_us;             /* this process's offset of its ticks in a second */
    uint32_t now_s;                         /* monotonic seconds, as of the last heartbeat */
    struct lws_protocols protocols[RELAY_PROTOCOLS + 1]; /* relay_protocols, this config's sizes */
    int loop_fd;               /* the relay's own epoll set (loop.h), one of lws's fds */
    int loop_adopted;          /* lws owns loop_fd */
    int loop_ready;            /* the set may hold events: serve before waiting again */
    unsigned activity;         /* events served since the last full turn */
    int lws_owed;              /* lws has work for a full turn (a write) */
    int64_t lws_near_until_us; /* until then a timer of lws's may be near (relay_lws_near) */
    struct ingress ingress;    /* the ZeroMQ SUB and its monitor (ingress.h) */
    struct upstream upstream;  /* the PUSH to the pools, presence (upstream.h) */
    size_t client_message_max; /* bytes of a client message after its auth message: room for
                                  a publish of [channels] publish_max (relay_new) */
    lws_dll2_owner_t woken;    /* sessions a message woke this turn (session_serve_woken) */
    lws_dll2_owner_t ending;   /* sessions to end after this turn (session_end_due) */
    struct send_batch send;    /* the write path: the woken connections' writes (send.h) */
    uint64_t connections;      /* WebSocket connections open now */
    uint64_t next_connection_id;
    int pid;     /* this process's, in connection ids ("pid.n") */
    int closing; /* shutting down: every connection gets 1001 */
    lws_sorted_usec_list_t closing_tick;
    struct listener listener;           /* the listening socket and its admission (listener.h) */
    uint64_t forbidden;                 /* handshakes refused with 403 for their Origin */
    uint64_t closed[RELAY_CLOSE_CODES]; /* connections ended, by close code (scrape.h) */
    struct notify notify;               /* the service manager's READY and watchdog */
};

/* Load the secret, create the context (listening with SO_REUSEPORT) and the subscriber.
 * Caller owns; relay_destroy().  NULL with the reason in err. */
struct relay *relay_new(const struct config *cfg, char *err, size_t errlen);

/* Serve until *quit is set, then close every connection with 1001 (going away), waiting at
 * most RELAY_CLOSE_GRACE_MS. */
void relay_run(struct relay *relay, volatile sig_atomic_t *quit);

/* Hand fd to lws's poll set as a raw file of protocol row, whose callback runs when it is
 * readable; lws owns and closes it from then on.  0, or -1 with err naming what. */
int relay_watch(struct relay *relay, int fd, enum relay_protocol row, const char *what, char *err,
                size_t errlen);

/* Close every connection and free.  NULL-safe; nulls *relay. */
void relay_destroy(struct relay **relay);

/* The lws protocols table (protocol.c), one row each and a terminating row. */
extern const struct lws_protocols relay_protocols[RELAY_PROTOCOLS + 1];

#endif
