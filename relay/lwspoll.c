/* lwspoll.c: lws's full turn polls only what it waits on; its adoption wakes nothing (see
 * lwspoll.h). */
#include "lwspoll.h"

#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static _Thread_local struct {
    int on;               /* inside lws's full turn */
    int adopting;         /* inside lws_adopt_socket_vhost, on the service thread */
    struct pollfd *asked; /* the entries that ask for something, copied */
    nfds_t *index;        /* ...and where each is in the caller's table */
    nfds_t size;          /* entries both arrays hold */
} lwspoll;

void
lwspoll_turn(int on)
{
    lwspoll.on = on;
}

void
lwspoll_adopting(int on)
{
    lwspoll.adopting = on;
}

int
eventfd_write(int fd, eventfd_t value)
{
    if (lwspoll.adopting)
        return 0;
    return write(fd, &value, sizeof value) == (ssize_t)sizeof value ? 0 : -1;
}

void
lwspoll_fini(void)
{
    free(lwspoll.asked);
    free(lwspoll.index);
    lwspoll.asked = NULL;
    lwspoll.index = NULL;
    lwspoll.size = 0;
}

static int
lwspoll_whole(struct pollfd *fds, nfds_t nfds, int timeout_ms)
{
    struct timespec timeout = {.tv_sec = timeout_ms / 1000,
                               .tv_nsec = (long)(timeout_ms % 1000) * 1000000};
    return ppoll(fds, nfds, timeout_ms < 0 ? NULL : &timeout, NULL);
}

static int
lwspoll_room(nfds_t nfds)
{
    if (nfds <= lwspoll.size)
        return 0;
    struct pollfd *asked = realloc(lwspoll.asked, nfds * sizeof *asked);
    if (!asked)
        return -1;
    lwspoll.asked = asked;
    nfds_t *index = realloc(lwspoll.index, nfds * sizeof *index);
    if (!index)
        return -1;
    lwspoll.index = index;
    lwspoll.size = nfds;
    return 0;
}

int
poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    if (!lwspoll.on || lwspoll_room(nfds) != 0)
        return lwspoll_whole(fds, nfds, timeout);
    nfds_t n = 0;
    for (nfds_t i = 0; i < nfds; i++) {
        fds[i].revents = 0;
        if (fds[i].events) {
            lwspoll.asked[n] = fds[i];
            lwspoll.index[n++] = i;
        }
    }
    int ready = lwspoll_whole(lwspoll.asked, n, timeout);
    for (nfds_t i = 0; ready > 0 && i < n; i++)
        fds[lwspoll.index[i]].revents = lwspoll.asked[i].revents;
    return ready;
}
