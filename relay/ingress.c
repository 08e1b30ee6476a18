/* ingress.c: the ZeroMQ subscriber, drained from the lws event loop. */
#include "ingress.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "log.h"
#include "loop.h"
#include "relay.h"
#include "session.h"
#include "wire.h"

#define INGRESS_MONITOR "inproc://taskwire-relay-upstream"

int
ingress_init(struct relay *relay, char *err, size_t errlen)
{
    /* Outbound, a SUB carries only subscriptions, and on every reconnect (a worker pool
     * restarted) it sends all of them again, queued behind any made while it was away.
     * ZeroMQ's default limit of 1,000 queued messages silently dropped the rest: a relay with
     * more client ids than that stopped hearing from most of them.  Their number is bounded
     * by [relay] max_connections, so the queue is left unlimited. */
    int hwm = RELAY_SUB_HWM, subscriptions_hwm = 0, linger = 0;
    int fd = -1;
    size_t size = sizeof fd;
    relay->ingress.monitor_fd = -1;
    relay->ingress.zmq = zmq_ctx_new();
    /* ZeroMQ's I/O thread only moves bytes from TCP into the SUB's queue.  Under load, waking
     * it preempted the loop once per small burst (two context switches each, a sixth of the
     * relay's core in a flat-out fan-out); as a batch thread it waits for the loop to yield
     * and then moves what has come in by then.  An idle loop is not delayed: it sleeps in
     * poll() and yields at once. */
    if (relay->ingress.zmq)
        zmq_ctx_set(relay->ingress.zmq, ZMQ_THREAD_SCHED_POLICY, SCHED_BATCH);
    /* Connected after the monitor is on, so the first connection is seen too. */
    const char *endpoints[] = {relay->cfg->events_endpoint};
    if (curve_load(relay->cfg, CURVE_ROLE_CLIENT, endpoints, 1, &relay->ingress.curve, err,
                   errlen) != 0)
        return -1;
    struct wire_options sub = {.send_hwm = subscriptions_hwm,
                               .recv_hwm = hwm,
                               .linger_ms = linger,
                               .connect_later = relay->cfg->events_endpoint,
                               .curve = relay->ingress.curve};
    relay->ingress.sub = wire_socket(relay->ingress.zmq, ZMQ_SUB, &sub, err, errlen);
    if (!relay->ingress.sub)
        return -1;
    relay->ingress.monitor = relay->ingress.zmq ? zmq_socket(relay->ingress.zmq, ZMQ_PAIR) : NULL;
    int monitor_fd = -1;
    size_t monitor_size = sizeof monitor_fd;
    if (!relay->ingress.sub || !relay->ingress.monitor ||
        zmq_socket_monitor(relay->ingress.sub, INGRESS_MONITOR, ZMQ_EVENT_CONNECTED) != 0 ||
        zmq_connect(relay->ingress.monitor, INGRESS_MONITOR) != 0 ||
        zmq_getsockopt(relay->ingress.monitor, ZMQ_FD, &monitor_fd, &monitor_size) != 0 ||
        (relay->ingress.monitor_fd = dup(monitor_fd)) < 0) {
        snprintf(err, errlen, "ZeroMQ monitor: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    if (zmq_connect(relay->ingress.sub, relay->cfg->events_endpoint) != 0 ||
        zmq_getsockopt(relay->ingress.sub, ZMQ_FD, &fd, &size) != 0) {
        snprintf(err, errlen, "%s: %s", relay->cfg->events_endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    relay->ingress.sub_wait_fd = fd; /* ZeroMQ's own: watched, never closed here */
    return 0;
}

int
ingress_start(struct relay *relay, char *err, size_t errlen)
{
    if (loop_watch(relay, relay->ingress.sub_wait_fd, LOOP_INGRESS) != 0) {
        snprintf(err, errlen, "cannot watch the ZeroMQ socket: %s", strerror(errno));
        return -1;
    }
    /* lws serves the monitor; the epoll set only tells the loop to give lws its turn soon
     * (an upstream reconnect is seen within RELAY_FULL_TURN_US, not at a quiet turn). */
    if (loop_watch(relay, relay->ingress.monitor_fd, LOOP_LWS) != 0) {
        snprintf(err, errlen, "cannot watch the ZeroMQ monitor: %s", strerror(errno));
        return -1;
    }
    if (relay_watch(relay, relay->ingress.monitor_fd, RELAY_PROTOCOL_UPSTREAM, "the ZeroMQ monitor",
                    err, errlen) != 0)
        return -1;
    relay->ingress.monitor_fd = -1;
    relay->ingress.ready = 1;
    ingress_watch(relay);
    return 0;
}

void
ingress_fini(struct relay *relay)
{
    if (relay->ingress.monitor_fd >= 0)
        close(relay->ingress.monitor_fd);
    relay->ingress.monitor_fd = -1;
    if (relay->ingress.sub) {
        zmq_socket_monitor(relay->ingress.sub, NULL, 0);
        zmq_close(relay->ingress.sub);
    }
    relay->ingress.sub = NULL;
    if (relay->ingress.monitor)
        zmq_close(relay->ingress.monitor);
    relay->ingress.monitor = NULL;
    if (relay->ingress.zmq)
        zmq_ctx_term(relay->ingress.zmq);
    relay->ingress.zmq = NULL;
    curve_destroy(&relay->ingress.curve);
}

void
ingress_drain(struct relay *relay)
{
    /* Per-message path: two frames in, one route_publish, no parsing.  The batch ends early
     * when a client id's backlog reaches half its ring: its connections write first, so a
     * burst for one client id never culls a connection that reads as fast as it can. */
    size_t backlog = 0;
    for (int n = 0; n < RELAY_INGRESS_BATCH && backlog * 2 < (size_t)relay->cfg->ring; n++) {
        zmq_msg_t topic, payload;
        zmq_msg_init(&topic);
        if (wire_recv(relay->ingress.sub, &topic, 1) != 0) {
            zmq_msg_close(&topic);
            break;
        }
        if (!zmq_msg_more(&topic)) {
            relay->ingress.malformed++;
            zmq_msg_close(&topic);
            continue;
        }
        zmq_msg_init(&payload);
        if (wire_recv(relay->ingress.sub, &payload, 0) == 0) {
            if (zmq_msg_more(&payload)) {
                relay->ingress.malformed++;
                while (zmq_msg_more(&payload) && wire_recv(relay->ingress.sub, &payload, 0) == 0)
                    ;
            } else {
                route_publish(relay->route, zmq_msg_data(&topic), zmq_msg_size(&topic),
                              zmq_msg_data(&payload), zmq_msg_size(&payload), &backlog);
            }
        }
        zmq_msg_close(&payload);
        zmq_msg_close(&topic);
    }
    /* Capped for fairness: the loop serves the connections, then drains on without waiting. */
    int events = 0;
    size_t size = sizeof events;
    relay->ingress.ready = zmq_getsockopt(relay->ingress.sub, ZMQ_EVENTS, &events, &size) == 0 &&
                           (events & ZMQ_POLLIN);
}

static void
ingress_resync(lws_sorted_usec_list_t *sul)
{
    struct relay *relay = lws_container_of(sul, struct relay, ingress.resync_later);
    session_resync_all(relay);
}

void
ingress_watch(struct relay *relay)
{
    /* Monitor events are two frames: [16-bit event, 32-bit value][endpoint].  Like the SUB's,
     * the monitor's ZMQ_FD is edge-triggered: read until EAGAIN and ZMQ_EVENTS agree. */
    int events = ZMQ_POLLIN;
    size_t size = sizeof events;
    while (events & ZMQ_POLLIN) {
        zmq_msg_t event, endpoint;
        zmq_msg_init(&event);
        if (zmq_msg_recv(&event, relay->ingress.monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&event);
            if (zmq_getsockopt(relay->ingress.monitor, ZMQ_EVENTS, &events, &size) != 0)
                break;
            continue;
        }
        uint16_t what = 0;
        if (zmq_msg_size(&event) >= sizeof what)
            memcpy(&what, zmq_msg_data(&event), sizeof what);
        zmq_msg_init(&endpoint);
        while (zmq_msg_more(&event) && zmq_msg_recv(&endpoint, relay->ingress.monitor, 0) >= 0 &&
               zmq_msg_more(&endpoint))
            ;
        zmq_msg_close(&endpoint);
        zmq_msg_close(&event);
        if (what == ZMQ_EVENT_CONNECTED) {
            relay->ingress.upstream_connects++;
            log_info("event=upstream_connected count=%llu",
                     (unsigned long long)relay->ingress.upstream_connects);
            /* The first connection needs none: every page resyncs on "connected" anyway. */
            if (relay->ingress.upstream_connects > 1) {
                lws_sul_schedule(relay->context, 0, &relay->ingress.resync_later, ingress_resync,
                                 RELAY_RESYNC_DELAY_US);
                relay_lws_near(relay, clock_mono_us());
            }
        }
    }
}

/* A subscription change may consume the descriptor's edge: look again on the next turn. */
static void
ingress_subscription(struct relay *relay, int option, const char *id, size_t len)
{
    if (zmq_setsockopt(relay->ingress.sub, option, id, len) != 0)
        log_warn("event=subscription_failed error=\"%s\"", zmq_strerror(zmq_errno()));
    relay->ingress.ready = 1;
}

void
ingress_subscribe(void *relay, const char *id, size_t len)
{
    ingress_subscription(relay, ZMQ_SUBSCRIBE, id, len);
}

void
ingress_unsubscribe(void *relay, const char *id, size_t len)
{
    ingress_subscription(relay, ZMQ_UNSUBSCRIBE, id, len);
}
