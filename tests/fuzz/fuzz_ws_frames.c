/* fuzz_ws_frames: receive_read (relay/receive.c) on what a WebSocket client sends after its
 * handshake, cut into reads the way TCP may cut it.
 *
 * The first byte sets the size of each read (1 to 256 bytes); the rest is the stream.  Between
 * reads an owed pong is taken now and then, as the relay's writes do.  At the end the client's
 * side is shut, as a vanished peer's would be.
 * As in the relay's sessions, the first text message (the auth message) may have up to
 * AUTH_MESSAGE_MAX bytes and every later one MAX_MESSAGE: the limit passed to each call is the
 * one of the next message due at its start.
 * Promises checked: once a call says reading is over, nothing more is reported; a text message
 * is at most the limit its call was given; a pong's payload at most RECEIVE_PONG_MAX; a failure
 * carries one of the codes receive.h names; a close or failure ends reading in the same call. */
#include "fuzz.h"

#include <sys/socket.h>

#include "relay/receive.c"

#define MAX_MESSAGE 512       /* the relay's RELAY_CLIENT_MESSAGE_MAX */
#define AUTH_MESSAGE_MAX 1536 /* its RELAY_AUTH_MESSAGE_MAX: the first message's limit */

struct seen {
    int over;     /* a call returned 1 */
    int ending;   /* close, fail or end reported in this call */
    size_t texts; /* text messages so far */
    size_t max;   /* the limit this call was given */
};

static void
on_text(void *owner, const unsigned char *text, size_t len)
{
    struct seen *seen = owner;
    (void)text;
    FUZZ_CHECK(!seen->over && !seen->ending);
    FUZZ_CHECK(len <= seen->max);
    seen->texts++;
}

static void
on_control(void *owner)
{
    struct seen *seen = owner;
    FUZZ_CHECK(!seen->over && !seen->ending);
}

static void
on_close(void *owner, uint16_t code)
{
    struct seen *seen = owner;
    (void)code;
    FUZZ_CHECK(!seen->over && !seen->ending);
    seen->ending = 1;
}

static void
on_fail(void *owner, uint16_t code)
{
    struct seen *seen = owner;
    FUZZ_CHECK(!seen->over && !seen->ending);
    FUZZ_CHECK(code == RECEIVE_CLOSE_PROTOCOL || code == RECEIVE_CLOSE_UNSUPPORTED ||
               code == RECEIVE_CLOSE_BAD_DATA || code == RECEIVE_CLOSE_TOO_BIG ||
               code == RECEIVE_CLOSE_INTERNAL);
    seen->ending = 1;
}

static void
on_end(void *owner)
{
    struct seen *seen = owner;
    FUZZ_CHECK(!seen->over && !seen->ending);
    seen->ending = 1;
}

static const struct receive_handler handler = {on_text, on_control, on_control, on_close, on_fail,
                                               on_end};

/* One read: 0 while the connection may send more, 1 once over. */
static int
read_once(struct receive **rx, int fd, struct seen *seen, int take_pong)
{
    seen->ending = 0;
    seen->max = seen->texts ? MAX_MESSAGE : AUTH_MESSAGE_MAX;
    int rc = receive_read(rx, fd, seen->max, &handler, seen);
    FUZZ_CHECK(rc == 0 || rc == 1);
    FUZZ_CHECK(rc == 1 || !seen->ending);
    if (rc == 1) {
        seen->over = 1;
        return 1;
    }
    unsigned char pong[RECEIVE_PONG_MAX];
    if (take_pong) {
        int len = receive_take_pong(rx, pong);
        FUZZ_CHECK(len >= -1 && len <= RECEIVE_PONG_MAX);
    }
    return 0;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_setup(NULL);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    size_t chunk = (size_t)data[0] + 1;
    data++, size--;
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        return 0;
    int buf = 4 * 65536;
    (void)setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct receive *rx = NULL;
    struct seen seen = {0, 0, 0, 0};
    size_t sent = 0;
    int over = 0;
    for (int turn = 0; sent < size && !over; turn++) {
        size_t n = size - sent < chunk ? size - sent : chunk;
        ssize_t w = send(fds[0], data + sent, n, MSG_DONTWAIT);
        if (w > 0)
            sent += (size_t)w;
        over = read_once(&rx, fds[1], &seen, turn % 3 == 0);
    }
    shutdown(fds[0], SHUT_WR);
    for (int turn = 0; !over && turn < 64; turn++)
        over = read_once(&rx, fds[1], &seen, 1);
    FUZZ_CHECK(over); /* a shut stream ends reading within a few turns */
    receive_destroy(&rx);
    close(fds[0]);
    close(fds[1]);
    return 0;
}
