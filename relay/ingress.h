/* ingress.h: the ZeroMQ SUB socket, its descriptor in the relay's epoll set (loop.h).
 *
 * ZMQ_FD is edge-triggered: every time it signals (and after any call that may have consumed
 * the signal, like a subscription change) the relay drains the socket with ZMQ_DONTWAIT until
 * EAGAIN, at most RELAY_INGRESS_BATCH messages per turn, fewer when one client id's backlog
 * reaches half its ring (its connections write first).  The loop (relay_run) drains between
 * turns of lws's service whenever relay->ingress.ready says there may be more, and then does
 * not wait in poll(): the connections get their turn and nothing waits for the next signal.
 * Messages are [client id][payload]; anything else is counted as malformed and dropped.
 */
#ifndef TW_RELAY_INGRESS_H
#define TW_RELAY_INGRESS_H

#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

#include "curve.h"

struct relay;

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
    int ready;                  /* the SUB may hold messages: drain before waiting again */
    uint64_t malformed;         /* messages dropped for their shape */
    struct curve *curve;        /* the SUB's CURVE keys, or NULL with [zmq] curve off */
};

/* Create the SUB socket and connect it to [zmq] events.  0, or -1 with err set. */
int ingress_init(struct relay *relay, char *err, size_t errlen);

/* Watch the SUB in the relay's epoll set and its monitor in lws (after the context exists).
 * 0, or -1 with err set. */
int ingress_start(struct relay *relay, char *err, size_t errlen);

/* Close the socket and the ZeroMQ context. */
void ingress_fini(struct relay *relay);

/* Per-message path: read and route what is waiting; leaves relay->ingress_ready set when more
 * is. */
void ingress_drain(struct relay *relay);

/* The SUB's connection events: each time it connects to a worker pool again (the pool
 * restarted), every connection is told to resync over REST a moment later, since what was
 * published while the relay was not connected is not replayed. */
void ingress_watch(struct relay *relay);

/* Route callbacks: subscribe or unsubscribe a client id upstream. */
void ingress_subscribe(void *relay, const char *id, size_t len);
void ingress_unsubscribe(void *relay, const char *id, size_t len);

#endif
