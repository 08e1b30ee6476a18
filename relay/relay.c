/* relay.c: the relay's context: secret, route table, lws context and vhost, subscriber. */
#include "relay.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "clock.h"
#include "ingress.h"
#include "listener.h"
#include "log.h"
#include "loop.h"
#include "lwspoll.h"
#include "scrape.h"
#include "session.h"

#define RELAY_FRAME_HEADER 14 /* most bytes a WebSocket frame header takes */

/* lws logs only what an operator must see, in our format; it never sees tokens above info. */
static void
relay_lws_log(int level, const char *line)
{
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    if (level & LLL_ERR)
        log_error("event=lws message=\"%.*s\"", (int)len, line);
    else
        log_warn("event=lws message=\"%.*s\"", (int)len, line);
}

/* The share of this second's heartbeat checks that is due by now; again a slice later while
 * some are left (session_heartbeat). */
static void
relay_heartbeat_slice(lws_sorted_usec_list_t *sul)
{
    struct relay *relay = lws_container_of(sul, struct relay, heartbeat_slice);
    if (session_heartbeat(relay, clock_mono_ms())) {
        lws_sul_schedule(relay->context, 0, &relay->heartbeat_slice, relay_heartbeat_slice,
                         RELAY_HEARTBEAT_US / RELAY_HEARTBEAT_SLICES);
        relay_lws_near(relay, clock_mono_us()); /* a busy relay gives lws its timer turns */
    }
}

/* Once a second: the connections' ping and hang-up timing ([relay] ping_interval and
 * ping_timeout) for those whose check is due, spread over the second by relay_heartbeat_slice
 * (session_heartbeat); the service manager's watchdog
 * (notify.h), from this timer of the loop's so a hung loop stops pinging; and a look at
 * upstream's connection events. */
static void
relay_heartbeat(lws_sorted_usec_list_t *sul)
{
    struct relay *relay = lws_container_of(sul, struct relay, heartbeat);
    relay->pid = (int)getpid();
    lws_sul_cancel(&relay->heartbeat_slice);
    relay_heartbeat_slice(&relay->heartbeat_slice);
    notify_watchdog(&relay->notify, clock_mono_us()); /* the loop turns: tell the watchdog */
    ingress_watch(relay); /* besides its descriptor: a lost edge costs at most a second */
    upstream_turn(relay); /* presence's beats, on an idle relay too */
    /* Each process ticks at its own offset in the second (heartbeat_phase_us), so relays on
     * one host do not all serve their slices at the same instants. */
    int64_t now_us = clock_mono_us();
    int64_t next_us = now_us - now_us % RELAY_HEARTBEAT_US + relay->heartbeat_phase_us;
    while (next_us <= now_us + RELAY_HEARTBEAT_US / 2)
        next_us += RELAY_HEARTBEAT_US;
    lws_sul_schedule(relay->context, 0, &relay->heartbeat, relay_heartbeat,
                     (lws_usec_t)(next_us - now_us));
}

int
relay_watch(struct relay *relay, int fd, enum relay_protocol row, const char *what, char *err,
            size_t errlen)
{
    lws_sock_file_fd_type file = {.filefd = fd};
    if (!lws_adopt_descriptor_vhost(relay->vhost, LWS_ADOPT_RAW_FILE_DESC, file,
                                    relay_protocols[row].name, NULL)) {
        snprintf(err, errlen, "cannot watch %s", what);
        return -1;
    }
    return 0;
}

/* The open-files limit lws sizes its descriptor table by: what max_connections needs, within
 * the hard limit.  lws 4.1 scans that whole table at every close (a check that no connection
 * still claims the closed descriptor), so a table far larger than the connections costs every
 * close of a mass disconnect (measured: 37 us a close with a table of 20,000); one far smaller
 * (a shell's 1024) would refuse connections long before max_connections. */
static void
relay_fit_descriptors(const struct config *cfg)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return;
    rlim_t want = (rlim_t)cfg->max_connections + RELAY_FD_RESERVE;
    if (limit.rlim_max != RLIM_INFINITY && want > limit.rlim_max) {
        log_warn("event=descriptors_short max_connections=%d open_files_hard_limit=%llu "
                 "connections_at_most=%llu",
                 cfg->max_connections, (unsigned long long)limit.rlim_max,
                 (unsigned long long)(limit.rlim_max > RELAY_FD_RESERVE
                                          ? limit.rlim_max - RELAY_FD_RESERVE
                                          : 0));
        want = limit.rlim_max;
    }
    if (want == limit.rlim_cur)
        return;
    rlim_t was = limit.rlim_cur;
    limit.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &limit) == 0)
        log_info("event=descriptors open_files_limit=%llu was=%llu", (unsigned long long)want,
                 (unsigned long long)was);
}

struct relay *
relay_new(const struct config *cfg, char *err, size_t errlen)
{
    struct relay *relay = calloc(1, sizeof *relay);
    if (!relay) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    relay->cfg = cfg;
    notify_init(&relay->notify);
    relay->listener.fd = relay->listener.reserve_fd = -1;
    if (loop_init(relay, err, errlen) != 0)
        goto fail;
    if (token_secret_load(cfg->secret_file, 0, relay->secret, &relay->secret_len, err, errlen) != 0)
        goto fail;
    struct route_callbacks callbacks = {session_wake, session_cull, ingress_subscribe,
                                        ingress_unsubscribe, relay};
    relay->route = route_new((size_t)cfg->max_message, (uint32_t)cfg->ring, LWS_PRE, &callbacks);
    if (!relay->route) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (ingress_init(relay, err, errlen) != 0 || upstream_init(relay, err, errlen) != 0 ||
        listener_init(relay, err, errlen) != 0)
        goto fail;
    /* A publish's data may be publish_max bytes as the relay writes it; as the client sent it
     * (spaces, escapes) up to twice that, in a message of a few hundred bytes more.  More than
     * that closes with 1009, as any over-long message. */
    relay->client_message_max = (size_t)cfg->publish_max * 2 + RELAY_CLIENT_MESSAGE_MAX;
    /* The per-message path hands the kernel the writes of every connection a batch of
     * messages woke in one system call when [relay] io_uring is on and the kernel allows it. */
    send_init(&relay->send, &session_send_ops, relay->cfg->relay_io_uring);

    memcpy(relay->protocols, relay_protocols, sizeof relay->protocols);
    relay->protocols[RELAY_PROTOCOL_WS].tx_packet_size =
        (size_t)cfg->max_message + RELAY_FRAME_HEADER;
    /* No lws validity timers: lws keeps every timer in one sorted list, so one per connection
     * makes each re-arm walk the list (quadratic in connections).  The heartbeat below does
     * the same job with one timer. */
    relay->retry.secs_since_valid_ping = 0;
    relay->retry.secs_since_valid_hangup = 0;

    lws_set_log_level(LLL_ERR | LLL_WARN, relay_lws_log);
    relay_fit_descriptors(cfg);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.user = relay;
    info.port = CONTEXT_PORT_NO_LISTEN;
    relay->context = lws_create_context(&info);
    if (!relay->context) {
        snprintf(err, errlen, "cannot create the libwebsockets context");
        goto fail;
    }
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* listener.c accepts, with SO_REUSEPORT */
    info.vhost_name = "taskwire";
    info.protocols = relay->protocols;
    info.retry_and_idle_policy = &relay->retry;
    relay->vhost = lws_create_vhost(relay->context, &info);
    if (!relay->vhost) {
        snprintf(err, errlen, "cannot listen on %s:%d", cfg->relay_listen, cfg->relay_port);
        goto fail;
    }
    if (scrape_start(relay, err, errlen) != 0 || ingress_start(relay, err, errlen) != 0 ||
        listener_start(relay, err, errlen) != 0 || loop_start(relay, err, errlen) != 0)
        goto fail;
    uint32_t phase = 0;
    if (getrandom(&phase, sizeof phase, GRND_NONBLOCK) != (ssize_t)sizeof phase)
        phase = (uint32_t)getpid() * 2654435761u;
    relay->heartbeat_phase_us = (int64_t)(phase % RELAY_HEARTBEAT_US);
    relay->wheel_at_s = (uint32_t)(clock_mono_ms() / 1000);
    relay_heartbeat(&relay->heartbeat);
    return relay;
fail:
    relay_destroy(&relay);
    return NULL;
}

void
relay_lws_near(struct relay *relay, int64_t now_us)
{
    relay->lws_near_until_us = now_us + RELAY_QUIET_TURN_US;
}

/* Keeps the loop turning while connections close. */
static void
relay_closing_tick(lws_sorted_usec_list_t *sul)
{
    struct relay *relay = lws_container_of(sul, struct relay, closing_tick);
    lws_sul_schedule(relay->context, 0, &relay->closing_tick, relay_closing_tick,
                     50 * LWS_US_PER_MS);
}

/* lws's full turn (timeout_ms as lws_service's), polling only what lws waits on (lwspoll.h). */
static int
relay_lws_turn(struct relay *relay, int timeout_ms)
{
    lwspoll_turn(1);
    int n = lws_service(relay->context, timeout_ms);
    lwspoll_turn(0);
    return n;
}

void
relay_run(struct relay *relay, volatile sig_atomic_t *quit)
{
    /* Per-message path.  A full turn is lws_service: one poll() over every descriptor lws holds
     * (not waiting while work is known to be there), lws serving what is ready and running
     * its timers.  While events flow (messages, connections, client input) the loop waits on
     * its own epoll set (loop.h) and serves what is ready there, at a cost per ready
     * descriptor, not per connection; a full turn comes RELAY_FULL_TURN_US after the last when
     * lws has work (relay->lws_owed: output it buffered, a writeable callback asked for,
     * input it read ahead during a handshake: loop.c), else RELAY_TIMER_TURN_US after it
     * while a sub-second timer of lws's may be near (a resync: relay_lws_near), else
     * RELAY_QUIET_TURN_US after it, for the timers that count in seconds (the heartbeat, close
     * and handshake timeouts; the backstop for handshake bytes lws left unread, which only a
     * request larger than lws's read buffer leaves).  A full turn's poll() covers only what lws
     * waits on, not the established connections (lwspoll.h), but lws still walks its whole
     * table after it, so a full turn comes no more often than that: 60 relays of 16,000
     * connections each, kept busy by their pings and a trickle of connects, spent most of a
     * core in poll() at ten turns a second each when it covered them all.  Once a whole period
     * passes without an event the relay is idle: it sleeps in lws_service until something happens
     * (the epoll set is one of lws's descriptors), so a quiet relay answers at once and runs its
     * timers on time, and costs nothing. */
    int64_t full_at_us = 0;
    int busy = 0; /* events in the last turn's period: wait in the epoll set */
    while (!*quit) {
        int64_t now_us = clock_mono_us();
        int64_t full_due_us =
            full_at_us + (relay->lws_owed                     ? RELAY_FULL_TURN_US
                          : now_us < relay->lws_near_until_us ? RELAY_TIMER_TURN_US
                                                              : RELAY_QUIET_TURN_US);
        if (!busy || now_us >= full_due_us) {
            int ready = relay->ingress.ready || relay->loop_ready;
            if (relay_lws_turn(relay, busy || ready ? -1 : 0) < 0)
                return;
            relay->lws_owed = 0;
            full_at_us = clock_mono_us();
            busy = relay->activity > 0;
            relay->activity = 0;
            if (relay->loop_ready)
                loop_serve(relay, 0);
        } else {
            loop_serve(relay, relay->ingress.ready || relay->loop_ready ? 0 : full_due_us - now_us);
        }
        if (relay->ingress.ready) {
            ingress_drain(relay);
            relay->activity++;
        }
        session_serve_woken(relay);
        session_end_due(relay);
        upstream_turn(relay);
    }
    relay->closing = 1;
    lws_callback_on_writable_all_protocol(relay->context, &relay->protocols[RELAY_PROTOCOL_WS]);
    relay_closing_tick(&relay->closing_tick);
    int64_t deadline = clock_mono_ms() + RELAY_CLOSE_GRACE_MS;
    while (relay->connections > 0 && clock_mono_ms() < deadline) {
        if (relay_lws_turn(relay, 0) < 0)
            break;
        if (relay->loop_ready)
            loop_serve(relay, 0); /* the clients' closes in reply */
        session_serve_woken(relay);
        session_end_due(relay);
    }
    lws_sul_cancel(&relay->closing_tick);
}

void
relay_destroy(struct relay **relay)
{
    if (!relay || !*relay)
        return;
    struct relay *r = *relay;
    if (r->context)
        lws_context_destroy(r->context); /* closes every connection: sessions detach */
    loop_fini(r);
    upstream_fini(r); /* on the ingress's context */
    ingress_fini(r);
    listener_fini(r);
    route_destroy(&r->route);
    lwspoll_fini();
    send_fini(&r->send);
    OPENSSL_cleanse(r->secret, sizeof r->secret);
    free(r);
    *relay = NULL;
}
