/* listener.h: the relay's listening socket, shared between relay processes.
 *
 * The relay opens the socket itself with SO_REUSEPORT, so several relay processes (one per
 * core, each with its own ZeroMQ subscriber) can listen on one port and the kernel spreads
 * the connections.  The socket is in the relay's own epoll set (loop.h); each accepted
 * connection is handed to lws in HTTP mode, where it may upgrade to a WebSocket, and watched
 * in the set until then.  At most
 * LISTENER_ACCEPT_BATCH accepts per turn.  When the process runs out of descriptors, a
 * reserved one is given up to accept and close the newcomer, so the loop never spins on a
 * connection it cannot take.  A connection from a source over [relay] connect_rate
 * (throttle.h) is closed as it is accepted, before lws sees it.
 *
 * The socket defers accepts (TCP_DEFER_ACCEPT) until the client's request has arrived, or
 * LISTENER_DEFER_ACCEPT_S have passed, and lws reads each accepted connection at once.  lws
 * 4.1 keeps the timeout of every handshake in progress in one sorted list that each insert
 * walks from its head; a connection accepted with nothing to read would wait in it for the
 * next turn, so a connect storm of N made that walk quadratic (two inserts per connection,
 * each past every handshake accepted before it in its batch).
 */
#ifndef TW_RELAY_LISTENER_H
#define TW_RELAY_LISTENER_H

#include <stddef.h>
#include <stdint.h>

#define LISTENER_BACKLOG 4096     /* pending connections the kernel keeps */
#define LISTENER_ACCEPT_BATCH 256 /* connections accepted per turn */
#define LISTENER_DEFER_ACCEPT_S 3 /* a connection with nothing sent is accepted after this */

struct relay;
struct throttle;

/* The listening socket and who may come in: embedded in struct relay; listener_init and
 * listener_fini bracket it. */
struct listener {
    int fd;                      /* the listening socket (in the relay's epoll set) */
    int reserve_fd;              /* given up to shed a connection when out of descriptors */
    uint64_t refused;            /* connections accepted and closed at once (no room) */
    struct throttle *throttle;   /* [relay] connect_rate per source address */
    uint64_t throttled;          /* connections closed at accept for their source's rate */
    uint64_t throttled_unlogged; /* of those, since the last connect_throttled line */
    int64_t throttle_logged_ms;  /* when that line was written (0: never) */
    int adopting_fd;             /* the connection listener_accept is handing lws (not yet in
                                  * the epoll set), else -1 */
    int adopted_taken;           /* a session watched adopting_fd while lws served it */
};

/* Open, bind and listen on [relay] listen:port.  0, or -1 with err set. */
int listener_init(struct relay *relay, char *err, size_t errlen);

/* Watch the socket in the relay's epoll set.  0, or -1 with err set. */
int listener_start(struct relay *relay, char *err, size_t errlen);

/* Close the socket. */
void listener_fini(struct relay *relay);

/* Whether connections are taken corked (TCP_CORK): with the token in the handshake (the
 * session's cookie, [auth] cookie; or [relay] token_in_query), what is written stays in the kernel
 * until listener_uncork, so the handshake's answer and the first frame after it share a segment
 * (and the client one wake-up).  The kernel sends corked data after 200 ms at the latest, and at
 * close.  Without, the greeting waits for the client's auth message, so the 101 leaves alone
 * anyway.
 *
 * TCP_NODELAY and TCP_CORK are set once, on the listening socket: Linux copies a listener's
 * TCP options into each socket accept() returns (the accepted socket is a clone of it), which
 * saves two system calls a connection.  Nagle's algorithm would hold each small frame after
 * the first until the client's ACK, which a client delays by up to 40 ms; lws leaves adopted
 * sockets as they are. */
int listener_corks(const struct relay *relay);

/* The socket is readable: accept what is waiting, and hand each connection to lws. */
void listener_accept(struct relay *relay);

/* Send what a connection's cork holds, and everything after it at once.  Called after the
 * first frame of a WebSocket connection and after each HTTP answer. */
void listener_uncork(int fd);

#endif
