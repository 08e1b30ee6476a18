/* ingress.c: the ZeroMQ subscriber, drained from the lws event loop. */
#include "ingress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "log.h"
#include "loop.h"
#include "relay.h"
#include "session.h"
#include "wire.h"
#include "zap.h"

#define INGRESS_MONITOR "inproc://taskwire-relay-upstream"
/* Bound, a peer's connection is a resync only once its handshake passed (a peer refused by ZAP
 * retries ten times a second and must not make the pages resync each time). */
#define INGRESS_LISTEN_EVENTS                                                                      \
    (ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |                 \
     ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)

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
    struct ingress *ingress = &relay->ingress;
    const char *listen = relay->cfg->relay_events_listen;
    const char *upstream = listen[0] ? listen : relay->cfg->events_endpoint;
    ingress->listening = listen[0] != '\0';
    ingress->monitor_fd = -1;
    ingress->log_window_start_ms = clock_mono_ms();
    ingress->zmq = zmq_ctx_new();
    /* ZeroMQ's I/O thread only moves bytes from TCP into the SUB's queue.  Under load, waking
     * it preempted the loop once per small burst (two context switches each, a sixth of the
     * relay's core in a flat-out fan-out); as a batch thread it waits for the loop to yield
     * and then moves what has come in by then.  An idle loop is not delayed: it sleeps in
     * poll() and yields at once. */
    if (ingress->zmq)
        zmq_ctx_set(ingress->zmq, ZMQ_THREAD_SCHED_POLICY, SCHED_BATCH);
    /* Connected (or bound) after the monitor is on, so the first connection is seen too. */
    const char *endpoints[] = {upstream};
    if (curve_load(relay->cfg, ingress->listening ? CURVE_ROLE_SERVER : CURVE_ROLE_CLIENT,
                   endpoints, 1, &ingress->curve, err, errlen) != 0)
        return -1;
    /* The ZAP handler is bound before the CURVE socket, so no peer is let in unasked. */
    if (ingress->curve && ingress->listening &&
        (!(ingress->zap = zap_new(ingress->zmq, ingress->curve, err, errlen)) ||
         zap_start(ingress->zap, err, errlen) != 0))
        return -1;
    struct wire_options sub = {.send_hwm = subscriptions_hwm,
                               .recv_hwm = hwm,
                               .linger_ms = linger,
                               .connect_later = ingress->listening ? NULL : upstream,
                               .curve = ingress->curve};
    ingress->sub = wire_socket(ingress->zmq, ZMQ_SUB, &sub, err, errlen);
    if (!ingress->sub)
        return -1;
    ingress->monitor = ingress->zmq ? zmq_socket(ingress->zmq, ZMQ_PAIR) : NULL;
    int monitor_fd = -1;
    size_t monitor_size = sizeof monitor_fd;
    int events = ingress->listening ? INGRESS_LISTEN_EVENTS : ZMQ_EVENT_CONNECTED;
    if (!ingress->sub || !ingress->monitor ||
        zmq_socket_monitor(ingress->sub, INGRESS_MONITOR, events) != 0 ||
        zmq_connect(ingress->monitor, INGRESS_MONITOR) != 0 ||
        zmq_getsockopt(ingress->monitor, ZMQ_FD, &monitor_fd, &monitor_size) != 0 ||
        (ingress->monitor_fd = dup(monitor_fd)) < 0) {
        snprintf(err, errlen, "ZeroMQ monitor: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    int server = 1;
    if (ingress->listening && ingress->curve &&
        curve_socket_setup(ingress->curve, ingress->sub, server) != 0) {
        snprintf(err, errlen, "%s: CURVE: %s", upstream, zmq_strerror(zmq_errno()));
        return -1;
    }
    if ((ingress->listening ? zmq_bind(ingress->sub, upstream)
                            : zmq_connect(ingress->sub, upstream)) != 0 ||
        zmq_getsockopt(ingress->sub, ZMQ_FD, &fd, &size) != 0) {
        snprintf(err, errlen, "%s: %s", upstream, zmq_strerror(zmq_errno()));
        return -1;
    }
    if (ingress->listening)
        log_info("event=ingress_listening endpoint=%s curve=%s", upstream,
                 ingress->curve ? "on" : "off");
    ingress->sub_wait_fd = fd; /* ZeroMQ's own: watched, never closed here */
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
        zmq_ctx_shutdown(relay->ingress.zmq);
    zap_destroy(&relay->ingress.zap); /* its thread ends with the context's shutdown */
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

/* Tell every connection to resync a moment from now (several peers coming back within the
 * delay make one resync). */
static void
ingress_resync_soon(struct relay *relay)
{
    lws_sul_schedule(relay->context, 0, &relay->ingress.resync_later, ingress_resync,
                     RELAY_RESYNC_DELAY_US);
    relay_lws_near(relay, clock_mono_us());
}

/* The address of the peer on socket fd, printable, or "?". */
static void
ingress_peer_address(int fd, char *text, size_t size)
{
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    snprintf(text, size, "?");
    if (getpeername(fd, (struct sockaddr *)&address, &length) != 0)
        return;
    if (address.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&address;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (address.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&address;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    } else {
        snprintf(text, size, "local");
        return;
    }
    snprintf(text, size, "%s:%d", host, port);
}

/* One connection event of a bound SUB: a peer accepted (value: its socket), its handshake
 * passed or failed, its connection gone (value: its socket). */
static void
ingress_peer_event(struct relay *relay, uint16_t what, uint32_t value)
{
    struct ingress *ingress = &relay->ingress;
    int fd = (int)value;
    if (what == ZMQ_EVENT_ACCEPTED) {
        if (ingress->peer_count < INGRESS_PEERS_MAX) {
            struct ingress_peer *peer = &ingress->peers[ingress->peer_count++];
            peer->fd = fd;
            peer->handshaken = 0;
            ingress_peer_address(fd, peer->address, sizeof peer->address);
        }
        return;
    }
    if (what == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        /* The event does not say whose: the oldest accepted peer still in its handshake. */
        const char *address = "?";
        for (size_t i = 0; i < ingress->peer_count; i++)
            if (!ingress->peers[i].handshaken) {
                ingress->peers[i].handshaken = 1;
                address = ingress->peers[i].address;
                ingress->upstream_peers++; /* counted while tracked, so its loss is seen */
                break;
            }
        ingress->upstream_connects++;
        log_info("event=upstream_connected peer=%s peers=%d count=%llu", address,
                 ingress->upstream_peers, (unsigned long long)ingress->upstream_connects);
        /* Connections made from now on list their tasks on "connected" by themselves. */
        if (relay->connections > 0)
            ingress_resync_soon(relay);
        return;
    }
    if (what == ZMQ_EVENT_DISCONNECTED) {
        for (size_t i = 0; i < ingress->peer_count; i++) {
            if (ingress->peers[i].fd != fd)
                continue;
            if (ingress->peers[i].handshaken) {
                ingress->upstream_peers--;
                log_info("event=upstream_disconnected peer=%s peers=%d", ingress->peers[i].address,
                         ingress->upstream_peers);
            }
            ingress->peers[i] = ingress->peers[--ingress->peer_count];
            return;
        }
        return;
    }
    /* A handshake that failed before ZAP saw a key (a refusal by ZAP is logged there, with the
     * key): bounded like ZAP's lines. */
    int64_t now = clock_mono_ms();
    if (now - ingress->log_window_start_ms >= INGRESS_LOG_WINDOW_MS) {
        ingress->log_window_start_ms = now;
        ingress->log_lines = 0;
    }
    if (ingress->log_lines++ < INGRESS_LOG_BURST)
        log_warn("event=zmq_handshake_failed socket=ingress code=0x%x reason=\"%s\"",
                 (unsigned)value, zap_handshake_reason(what, value));
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
        uint32_t value = 0;
        if (zmq_msg_size(&event) >= sizeof what + sizeof value) {
            memcpy(&what, zmq_msg_data(&event), sizeof what);
            memcpy(&value, (const char *)zmq_msg_data(&event) + sizeof what, sizeof value);
        }
        zmq_msg_init(&endpoint);
        while (zmq_msg_more(&event) && zmq_msg_recv(&endpoint, relay->ingress.monitor, 0) >= 0 &&
               zmq_msg_more(&endpoint))
            ;
        zmq_msg_close(&endpoint);
        zmq_msg_close(&event);
        if (relay->ingress.listening) {
            ingress_peer_event(relay, what, value);
        } else if (what == ZMQ_EVENT_CONNECTED) {
            relay->ingress.upstream_connects++;
            log_info("event=upstream_connected count=%llu",
                     (unsigned long long)relay->ingress.upstream_connects);
            /* The first connection needs none: every page resyncs on "connected" anyway. */
            if (relay->ingress.upstream_connects > 1)
                ingress_resync_soon(relay);
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
