/* Unit tests for relay/send.c: the relay's write path, on real sockets and real io_uring. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "relay/send.c"

#define HEADROOM 16
#define QUEUED 48

/* A connection as the tests keep it: messages waiting in order, what went to "lws" as rest. */
struct conn {
    int fd, peer;
    unsigned char *messages[QUEUED];
    size_t lens[QUEUED];
    size_t head, count;
    unsigned char rest[1 << 20];
    size_t rest_len;
    size_t sent;
    int done, failed;
};

static int
peek(void *c, size_t n, unsigned char **payload, size_t *len)
{
    struct conn *conn = c;
    if (n >= conn->count)
        return 0;
    *payload = conn->messages[conn->head + n] + HEADROOM;
    *len = conn->lens[conn->head + n];
    return 1;
}

static int
rest(void *c, const unsigned char *bytes, size_t len)
{
    struct conn *conn = c;
    assert_true(conn->rest_len + len <= sizeof conn->rest);
    memcpy(conn->rest + conn->rest_len, bytes, len);
    conn->rest_len += len;
    return 0;
}

static void
sent(void *c, size_t n)
{
    struct conn *conn = c;
    assert_true(n <= conn->count);
    for (size_t i = 0; i < n; i++) {
        free(conn->messages[conn->head]);
        conn->messages[conn->head++] = NULL;
    }
    conn->count -= n;
    conn->sent += n;
}

static void
done(void *c, int failed)
{
    struct conn *conn = c;
    conn->done++;
    conn->failed += failed;
}

static const struct send_ops ops = {peek, rest, sent, done};

static void
conn_open(struct conn *conn)
{
    memset(conn, 0, sizeof *conn);
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    conn->fd = fds[0];
    conn->peer = fds[1];
    fcntl(conn->peer, F_SETFL, O_NONBLOCK);
}

static void
conn_close(struct conn *conn)
{
    while (conn->count)
        sent(conn, 1);
    close(conn->fd);
    if (conn->peer >= 0)
        close(conn->peer);
}

/* Queue a message of len bytes, each byte fill. */
static void
conn_add(struct conn *conn, size_t len, unsigned char fill)
{
    assert_true(conn->head + conn->count < QUEUED);
    unsigned char *buf = malloc(HEADROOM + len + 1);
    assert_non_null(buf);
    memset(buf + HEADROOM, fill, len);
    conn->messages[conn->head + conn->count] = buf;
    conn->lens[conn->head + conn->count] = len;
    conn->count++;
}

/* The bytes the frames of these messages make, in order. */
static size_t
expected(unsigned char *out, const size_t *lens, const unsigned char *fills, size_t n)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        at += send_frame_header(out + at, SEND_OPCODE_TEXT, lens[i]);
        memset(out + at, fills[i], lens[i]);
        at += lens[i];
    }
    return at;
}

/* What the peer can read now, appended to out. */
static size_t
peer_reads(struct conn *conn, unsigned char *out, size_t room)
{
    size_t at = 0;
    ssize_t n;
    while (at < room && (n = read(conn->peer, out + at, room - at)) > 0)
        at += (size_t)n;
    return at;
}

/* A browser can parse every frame: the header is RFC 6455's for each length class. */
static void
test_frame_headers(void **state)
{
    (void)state;
    unsigned char h[SEND_HEADER_MAX];
    assert_int_equal(send_frame_header(h, SEND_OPCODE_TEXT, 0), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 0);
    assert_int_equal(send_frame_header(h, SEND_OPCODE_TEXT, 125), 2);
    assert_int_equal(h[1], 125);
    assert_int_equal(send_frame_header(h, SEND_OPCODE_CLOSE, 126), 4);
    assert_int_equal(h[0], 0x88);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[2] << 8 | h[3], 126);
    assert_int_equal(send_frame_header(h, SEND_OPCODE_TEXT, 65535), 4);
    assert_int_equal(send_frame_header(h, SEND_OPCODE_TEXT, 65536), 10);
    assert_int_equal(h[1], 127);
    assert_int_equal(h[7], 1); /* 0x10000, network order */
    assert_int_equal(h[9], 0);
}

/* Several waiting messages leave in one write, byte for byte as frames. */
static void
test_one_write_carries_the_waiting_messages(void **state)
{
    (void)state;
    struct send_batch batch;
    send_init(&batch, &ops, 0);
    static struct conn conn;
    conn_open(&conn);
    size_t lens[] = {5, 200, 70000};
    unsigned char fills[] = {'a', 'b', 'c'};
    for (int i = 0; i < 3; i++)
        conn_add(&conn, lens[i], fills[i]);
    int buf = 1 << 20;
    setsockopt(conn.fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    assert_int_equal(send_now(&batch, &conn, conn.fd), 0);
    /* The third would take the write past SEND_BYTES: it waits for the next. */
    assert_int_equal(conn.sent, 2);
    assert_int_equal(send_now(&batch, &conn, conn.fd), 0);
    assert_int_equal(conn.sent, 3);
    static unsigned char want[80000], got[80000];
    size_t n = expected(want, lens, fills, 3);
    assert_int_equal(peer_reads(&conn, got, sizeof got), n);
    assert_memory_equal(got, want, n);
    assert_int_equal(conn.rest_len, 0);
    conn_close(&conn);
    send_fini(&batch);
}

/* At most SEND_FRAMES messages per write; the rest stay waiting, in order. */
static void
test_a_write_carries_at_most_send_frames(void **state)
{
    (void)state;
    struct send_batch batch;
    send_init(&batch, &ops, 0);
    static struct conn conn;
    conn_open(&conn);
    for (int i = 0; i < SEND_FRAMES + 8; i++)
        conn_add(&conn, 10, (unsigned char)i);
    assert_int_equal(send_now(&batch, &conn, conn.fd), 0);
    assert_int_equal(conn.sent, SEND_FRAMES);
    assert_int_equal(conn.count, 8);
    conn_close(&conn);
    send_fini(&batch);
}

/* What a full socket does not take goes to the caller's buffer, exactly the missing bytes:
 * the peer's bytes and the rest make the whole stream. */
static void
test_a_partial_write_hands_back_exactly_the_rest(void **state)
{
    (void)state;
    struct send_batch batch;
    send_init(&batch, &ops, 0);
    static struct conn conn;
    conn_open(&conn);
    int small = 4096;
    setsockopt(conn.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    size_t lens[] = {3000, 3000, 3000, 3000};
    unsigned char fills[] = {'w', 'x', 'y', 'z'};
    for (int i = 0; i < 4; i++)
        conn_add(&conn, lens[i], fills[i]);
    assert_int_equal(send_now(&batch, &conn, conn.fd), 0);
    assert_int_equal(conn.sent, 4);
    static unsigned char want[20000], got[20000];
    size_t n = expected(want, lens, fills, 4);
    size_t read_now = peer_reads(&conn, got, sizeof got);
    assert_true(read_now > 0 && read_now < n);
    assert_int_equal(read_now + conn.rest_len, n);
    memcpy(got + read_now, conn.rest, conn.rest_len);
    assert_memory_equal(got, want, n);
    conn_close(&conn);
    send_fini(&batch);
}

/* A socket with no room (EAGAIN) is not a failure: everything goes to the caller's buffer. */
static void
test_eagain_hands_back_everything(void **state)
{
    (void)state;
    struct send_batch batch;
    send_init(&batch, &ops, 0);
    static struct conn conn;
    conn_open(&conn);
    fcntl(conn.fd, F_SETFL, O_NONBLOCK);
    static unsigned char filler[4096];
    while (write(conn.fd, filler, sizeof filler) > 0)
        ;
    assert_int_equal(errno, EAGAIN);
    conn_add(&conn, 100, 'q');
    conn_add(&conn, 300, 'r');
    assert_int_equal(send_now(&batch, &conn, conn.fd), 0);
    assert_int_equal(conn.rest_len, 2 + 100 + 4 + 300);
    assert_int_equal(conn.sent, 2);
    conn_close(&conn);
    send_fini(&batch);
}

/* More woken connections than the ring holds: the batch goes to the kernel as it fills, and
 * every connection gets its frames and one settlement. */
static void
test_a_batch_over_the_ring_depth(void **state)
{
    (void)state;
    static struct send_batch batch;
    send_init(&batch, &ops, 1);
    assert_true(batch.uring_ready); /* the relay's default; the kernel here allows it */
    enum { CONNS = SEND_DEPTH + 20 };
    static struct conn conns[CONNS];
    for (int i = 0; i < CONNS; i++) {
        conn_open(&conns[i]);
        conn_add(&conns[i], 20, (unsigned char)i);
        conn_add(&conns[i], 30, (unsigned char)(i + 1));
    }
    for (int i = 0; i < CONNS; i++)
        send_queue(&batch, &conns[i], conns[i].fd);
    assert_int_equal(batch.n, CONNS - SEND_DEPTH); /* the first SEND_DEPTH went already */
    send_submit(&batch);
    assert_int_equal(batch.n, 0);
    for (int i = 0; i < CONNS; i++) {
        unsigned char want[64], got[64];
        size_t lens[] = {20, 30};
        unsigned char fills[] = {(unsigned char)i, (unsigned char)(i + 1)};
        size_t n = expected(want, lens, fills, 2);
        assert_int_equal(conns[i].done, 1);
        assert_int_equal(conns[i].failed, 0);
        assert_int_equal(peer_reads(&conns[i], got, sizeof got), n);
        assert_memory_equal(got, want, n);
        conn_close(&conns[i]);
    }
    send_fini(&batch);
}

/* A connection whose peer is gone fails in its batch; the others are written in full. */
static void
test_a_connection_closed_mid_batch_fails_alone(void **state)
{
    (void)state;
    static struct send_batch batch;
    send_init(&batch, &ops, 1);
    assert_true(batch.uring_ready);
    static struct conn conns[3];
    for (int i = 0; i < 3; i++) {
        conn_open(&conns[i]);
        conn_add(&conns[i], 40, 'm');
    }
    close(conns[1].peer);
    conns[1].peer = -1;
    for (int i = 0; i < 3; i++)
        send_queue(&batch, &conns[i], conns[i].fd);
    send_submit(&batch);
    assert_int_equal(conns[1].failed, 1);
    assert_int_equal(conns[1].sent, 1); /* released all the same */
    for (int i = 0; i < 3; i += 2) {
        unsigned char got[64];
        assert_int_equal(conns[i].failed, 0);
        assert_int_equal(peer_reads(&conns[i], got, sizeof got), 42);
    }
    for (int i = 0; i < 3; i++)
        conn_close(&conns[i]);
    send_fini(&batch);
}

/* Nothing waiting: nothing written, nothing queued. */
static void
test_nothing_waiting_writes_nothing(void **state)
{
    (void)state;
    static struct send_batch batch;
    send_init(&batch, &ops, 1);
    static struct conn conn;
    conn_open(&conn);
    assert_int_equal(send_now(&batch, &conn, conn.fd), 0);
    if (batch.uring_ready)
        send_queue(&batch, &conn, conn.fd);
    assert_int_equal(batch.n, 0);
    unsigned char got[8];
    assert_int_equal(peer_reads(&conn, got, sizeof got), 0);
    conn_close(&conn);
    send_fini(&batch);
}

int
main(void)
{
    log_setup("test_send", LOG_LEVEL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_headers),
        cmocka_unit_test(test_one_write_carries_the_waiting_messages),
        cmocka_unit_test(test_a_write_carries_at_most_send_frames),
        cmocka_unit_test(test_a_partial_write_hands_back_exactly_the_rest),
        cmocka_unit_test(test_eagain_hands_back_everything),
        cmocka_unit_test(test_a_batch_over_the_ring_depth),
        cmocka_unit_test(test_a_connection_closed_mid_batch_fails_alone),
        cmocka_unit_test(test_nothing_waiting_writes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
