/* listener.c: the SO_REUSEPORT listening socket in the lws loop. */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "loop.h"
#include "lwspoll.h"
#include "relay.h"
#include "session.h"
#include "throttle.h"

#define LISTENER_THROTTLE_LOG_MS 1000 /* at most one connect_throttled line this often */

int
listener_corks(const struct relay *relay)
{
    return relay->cfg->token_in_query || relay->cfg->cookie;
}

int
listener_init(struct relay *relay, char *err, size_t errlen)
{
    struct sockaddr_in address = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)relay->cfg->relay_port)};
    relay->listener.fd = -1;
    relay->listener.adopting_fd = -1;
    relay->listener.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    relay->listener.throttle = throttle_new(relay->cfg);
    if (!relay->listener.throttle) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (inet_pton(AF_INET, relay->cfg->relay_listen, &address.sin_addr) != 1) {
        snprintf(err, errlen, "[relay] listen = %s is not an IPv4 address",
                 relay->cfg->relay_listen);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1, defer_s = LISTENER_DEFER_ACCEPT_S;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0 ||
        bind(fd, (struct sockaddr *)&address, sizeof address) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_s, sizeof defer_s) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0 ||
        (listener_corks(relay) && setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on) != 0) ||
        listen(fd, LISTENER_BACKLOG) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", relay->cfg->relay_listen,
                 relay->cfg->relay_port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    relay->listener.fd = fd;
    return 0;
}

int
listener_start(struct relay *relay, char *err, size_t errlen)
{
    if (loop_watch(relay, relay->listener.fd, LOOP_LISTENER) != 0) {
        snprintf(err, errlen, "cannot watch the listening socket: %s", strerror(errno));
        return -1;
    }
    return 0;
}

void
listener_fini(struct relay *relay)
{
    if (relay->listener.fd >= 0)
        close(relay->listener.fd);
    if (relay->listener.reserve_fd >= 0)
        close(relay->listener.reserve_fd);
    relay->listener.fd = relay->listener.reserve_fd = -1;
    throttle_destroy(&relay->listener.throttle);
}

/* Out of descriptors: take the newcomer with the reserve and close it at once. */
static void
listener_shed(struct relay *relay, int listen_fd)
{
    if (relay->listener.reserve_fd < 0)
        return;
    close(relay->listener.reserve_fd);
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        close(fd);
    relay->listener.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    relay->listener.refused++;
}

/* A connection over [relay] connect_rate: closed before anything is read from it.  One log
 * line per LISTENER_THROTTLE_LOG_MS at most, with the count, however hard a source floods. */
static void
listener_throttled(struct relay *relay, int fd, const struct sockaddr_in *peer, int64_t now_ms)
{
    close(fd);
    relay->listener.throttled++;
    relay->listener.throttled_unlogged++;
    if (relay->listener.throttle_logged_ms &&
        now_ms - relay->listener.throttle_logged_ms < LISTENER_THROTTLE_LOG_MS)
        return;
    char source[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &peer->sin_addr, source, sizeof source);
    log_warn("event=connect_throttled source=%s refused=%llu", source,
             (unsigned long long)relay->listener.throttled_unlogged);
    relay->listener.throttle_logged_ms = now_ms;
    relay->listener.throttled_unlogged = 0;
}

void
listener_accept(struct relay *relay)
{
    int listen_fd = relay->listener.fd;
    for (int n = 0; n < LISTENER_ACCEPT_BATCH; n++) {
        struct sockaddr_in peer = {.sin_family = AF_INET};
        socklen_t peer_len = sizeof peer;
        int fd =
            accept4(listen_fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                log_warn("event=accept_shed error=\"%s\"", strerror(errno));
                listener_shed(relay, listen_fd);
                continue;
            }
            return; /* EAGAIN, or a connection that died before we took it */
        }
        int64_t now_ms = clock_mono_ms();
        if (!throttle_admit(relay->listener.throttle, peer.sin_addr.s_addr, now_ms)) {
            listener_throttled(relay, fd, &peer, now_ms);
            continue;
        }
        lwspoll_adopting(1); /* this thread is lws's service: no wake-up to write (lwspoll.h) */
        struct lws *wsi = lws_adopt_socket_vhost(relay->vhost, fd);
        lwspoll_adopting(0);
        if (!wsi) {
            relay->listener.refused++; /* lws closed it */
            continue;
        }
        /* The request is here already (TCP_DEFER_ACCEPT): lws reads it now, so the timeouts
         * lws keeps for handshakes in progress stay a list of one (listener.h).  What is
         * left lws reads when it is ready (loop.h); its own poll would find it too, at its
         * next full turn.  A connection the session took over while lws read it is in the
         * set already (loop_watch_session adds it, knowing it is not there: adopting_fd); one
         * lws closed fails the watch. */
        relay->listener.adopting_fd = fd;
        relay->listener.adopted_taken = 0;
        loop_handshake(relay, fd, EPOLLIN);
        relay->listener.adopting_fd = -1;
        if (!relay->listener.adopted_taken)
            (void)loop_watch(relay, fd, LOOP_HANDSHAKE);
        /* Its greeting now, not after the batch: the 101 waits corked for it, so a batch of
         * LISTENER_ACCEPT_BATCH handshakes held every 101 of the batch until the last was
         * done (a connect storm's clients then waited a batch each, the relay's core half
         * idle). */
        session_serve_woken(relay);
    }
}

void
listener_uncork(int fd)
{
    int off = 0;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off);
}
