/* ingress.h: the ZeroMQ SUB socket, its descriptor in the relay's epoll set (loop.h).
 *
 * ZMQ_FD is edge-triggered: every time it signals (and after any call that may have consumed
 * the signal, like a subscription change) the relay drains the socket with ZMQ_DONTWAIT until
 * EAGAIN, at most RELAY_INGRESS_BATCH messages per turn, fewer when one client id's backlog
 * reaches half its ring (its connections write first).  The loop (relay_run) drains between
 * turns of lws's service whenever relay->ingress.ready says there may be more, and then does
 * not wait in poll(): the connections get their turn and nothing waits for the next signal.
 * Messages are [client id][payload]; anything else is counted as malformed and dropped.
 *
 * Upstream, one of two ways ([relay] events_listen): empty (the default, one host), the SUB
 * connects to [zmq] events, the pool's XPUB; set, the SUB binds there and connects nowhere, and
 * every worker pool of [zmq] relays connects in (a new worker host joins with no change on the
 * relays).  Bound, with [zmq] curve on, the SUB is a CURVE server: a ZAP handler of the relay
 * (common/zap.h, a thread of its own) lets in the keys of curve_clients_file (the pool's) and
 * logs every refusal.  Whichever way, each upstream peer that (re)connects (connected: after
 * the first; bound: while the relay has connections) tells every connection to resync (what
 * that peer published while it was not connected to this relay is lost);
 * bound, the peers are told apart by their sockets (at most INGRESS_PEERS_MAX tracked by
 * address for the log; more are served but logged as "?").
 */
#ifndef TW_RELAY_INGRESS_H
#define TW_RELAY_INGRESS_H

#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

#include "curve.h"

#define INGRESS_PEERS_MAX 256 /* upstream peers of a bound SUB tracked by address */
#define INGRESS_PEER_TEXT 64  /* bytes of a peer's address kept, NUL included */
#define INGRESS_LOG_BURST 20  /* failed upstream handshakes logged per window */
#define INGRESS_LOG_WINDOW_MS 60000

struct relay;
struct zap;

/* One upstream peer of a bound SUB: its socket (the monitor's value) and address. */
struct ingress_peer {
    int fd;
    int handshaken; /* 1 once its handshake succeeded */
    char address[INGRESS_PEER_TEXT];
};

/* The relay's subscriber: embedded in struct relay; ingress_init and ingress_fini bracket it. */
struct ingress {
    void *zmq;
    void *sub;       /* ZeroMQ SUB on [zmq] events */
    int sub_wait_fd; /* ZMQ_FD itself (ZeroMQ's), in the relay's epoll set */
    void *monitor;   /* the SUB's connection events (zmq_socket_monitor) */
    int monitor_fd;  /* a dup of its ZMQ_FD, adopted by lws */
    lws_sorted_usec_list_t
        resync_later;           /* tell every connection to resync, once upstream is back */
    uint64_t upstream_connects; /* connections of the SUB to a worker pool so far */
    int listening;              /* 1: bound on [relay] events_listen, else connected to events */
    struct zap *zap;            /* bound with curve on: the ZAP handler, else NULL */
    size_t peer_count;          /* entries of peers in use */
    struct ingress_peer peers[INGRESS_PEERS_MAX];
    int upstream_peers;          /* tracked peers connected, handshake done (bound) */
    int64_t log_window_start_ms; /* failed handshakes' log window */
    int log_lines;               /* lines written in it */
    int ready;                   /* the SUB may hold messages: drain before waiting again */
    uint64_t malformed;          /* messages dropped for their shape */
    struct curve *curve;         /* the SUB's CURVE keys, or NULL with [zmq] curve off */
};

/* Create the SUB socket and connect it to [zmq] events, or bind it on [relay] events_listen.
 * 0, or -1 with err set. */
int ingress_init(struct relay *relay, char *err, size_t errlen);

/* Watch the SUB in the relay's epoll set and its monitor in lws (after the context exists).
 * 0, or -1 with err set. */
int ingress_start(struct relay *relay, char *err, size_t errlen);

/* Close the socket and the ZeroMQ context. */
void ingress_fini(struct relay *relay);

/* Per-message path: read and route what is waiting; leaves relay->ingress_ready set when more
 * is. */
void ingress_drain(struct relay *relay);

/* The SUB's connection events: each time a worker pool connects again (it restarted, or its
 * host was cut off and came back) or a new one connects, every connection is told to resync
 * over REST a moment later, since what was published while the relay was not connected to it is
 * not replayed. */
void ingress_watch(struct relay *relay);

/* Route callbacks: subscribe or unsubscribe a client id upstream. */
void ingress_subscribe(void *relay, const char *id, size_t len);
void ingress_unsubscribe(void *relay, const char *id, size_t len);

#endif
