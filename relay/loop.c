/* loop.c: the relay's own epoll set (see loop.h). */
#include "loop.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "listener.h"
#include "relay.h"
#include "session.h"

#define LOOP_KIND_BITS 8 /* an event's data: a session pointer (low bits 0), or fd << 8 | kind */

_Static_assert(_Alignof(struct session) >= 8, "a session pointer's low bits are free");

int
loop_init(struct relay *relay, char *err, size_t errlen)
{
    relay->loop_fd = epoll_create1(EPOLL_CLOEXEC);
    if (relay->loop_fd < 0) {
        snprintf(err, errlen, "cannot create an epoll descriptor: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int
loop_start(struct relay *relay, char *err, size_t errlen)
{
    if (relay_watch(relay, relay->loop_fd, RELAY_PROTOCOL_LOOP, "the relay's own descriptors", err,
                    errlen) != 0)
        return -1;
    relay->loop_adopted = 1; /* lws closes it with the context */
    return 0;
}

void
loop_fini(struct relay *relay)
{
    if (relay->loop_fd >= 0 && !relay->loop_adopted)
        close(relay->loop_fd);
    relay->loop_fd = -1;
}

int
loop_watch(struct relay *relay, int fd, enum loop_kind kind)
{
    uint32_t events = kind == LOOP_HANDSHAKE ? EPOLLIN | EPOLLRDHUP | EPOLLET
                      : kind == LOOP_LWS     ? EPOLLIN | EPOLLET
                                             : EPOLLIN;
    struct epoll_event watch = {.events = events,
                                .data.u64 = (uint64_t)fd << LOOP_KIND_BITS | (uint64_t)kind};
    return epoll_ctl(relay->loop_fd, EPOLL_CTL_ADD, fd, &watch);
}

int
loop_watch_session(struct relay *relay, int fd, struct session *session)
{
    struct epoll_event watch = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = session};
    if (fd == relay->listener.adopting_fd) { /* not in the set yet: listener_accept skips it */
        relay->listener.adopted_taken = 1;
        return epoll_ctl(relay->loop_fd, EPOLL_CTL_ADD, fd, &watch);
    }
    if (epoll_ctl(relay->loop_fd, EPOLL_CTL_MOD, fd, &watch) == 0)
        return 0;
    return errno == ENOENT ? epoll_ctl(relay->loop_fd, EPOLL_CTL_ADD, fd, &watch) : -1;
}

void
loop_unwatch(struct relay *relay, int fd)
{
    (void)epoll_ctl(relay->loop_fd, EPOLL_CTL_DEL, fd, NULL);
}

void
loop_handshake(struct relay *relay, int fd, uint32_t events)
{
    struct lws_pollfd pollfd = {.fd = fd, .events = LWS_POLLIN, .revents = LWS_POLLIN};
    if (events & (EPOLLHUP | EPOLLERR))
        pollfd.revents |= LWS_POLLHUP;
    (void)lws_service_fd(relay->context, &pollfd);
    /* What lws read and kept for later (a first frame behind the request) it serves in a
     * full turn; it says so here, at the cost of a look at its short list of such. */
    if (!lws_service_adjust_timeout(relay->context, 1, 0))
        relay->lws_owed = 1;
}

int
loop_serve(struct relay *relay, int64_t timeout_us)
{
    struct epoll_event ready[LOOP_BATCH];
    struct timespec timeout = {.tv_sec = (time_t)(timeout_us / 1000000),
                               .tv_nsec = (long)(timeout_us % 1000000) * 1000};
    int n = epoll_pwait2(relay->loop_fd, ready, LOOP_BATCH, &timeout, NULL);
    relay->loop_ready = n == LOOP_BATCH;
    for (int i = 0; i < n; i++) {
        uint64_t data = ready[i].data.u64;
        int fd = (int)(data >> LOOP_KIND_BITS);
        switch (data & ((1u << LOOP_KIND_BITS) - 1)) {
        case LOOP_LISTENER:
            listener_accept(relay);
            break;
        case LOOP_INGRESS:
            relay->ingress.ready = 1;
            break;
        case LOOP_HANDSHAKE:
            loop_handshake(relay, fd, ready[i].events);
            break;
        case LOOP_LWS:
            relay->lws_owed = 1;
            break;
        default: /* a session; it leaves the set in session_fini, before lws frees it */
            session_read(relay, ready[i].data.ptr);
            break;
        }
    }
    if (n > 0)
        relay->activity += (unsigned)n;
    return n < 0 ? 0 : n;
}
