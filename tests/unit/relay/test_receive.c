/* Unit tests for relay/receive.c: a client's frames read from a socket and checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "relay/receive.c"

#define MAX_MESSAGE 512

struct seen {
    int texts, pings, pongs, closes, fails, ends;
    uint16_t close_code, fail_code;
    char text[1024];
    size_t text_len;
};

static void
on_text(void *owner, const unsigned char *text, size_t len)
{
    struct seen *seen = owner;
    seen->texts++;
    memcpy(seen->text, text, len < sizeof seen->text ? len : sizeof seen->text);
    seen->text_len = len;
}

static void
on_ping(void *owner)
{
    ((struct seen *)owner)->pings++;
}

static void
on_pong(void *owner)
{
    ((struct seen *)owner)->pongs++;
}

static void
on_close(void *owner, uint16_t code)
{
    struct seen *seen = owner;
    seen->closes++;
    seen->close_code = code;
}

static void
on_fail(void *owner, uint16_t code)
{
    struct seen *seen = owner;
    seen->fails++;
    seen->fail_code = code;
}

static void
on_end(void *owner)
{
    ((struct seen *)owner)->ends++;
}

static const struct receive_handler handler = {on_text,  on_ping, on_pong,
                                               on_close, on_fail, on_end};

struct pair {
    int client, relay;
    struct receive *rx;
    struct seen seen;
};

static int
setup(void **state)
{
    static struct pair pair;
    memset(&pair, 0, sizeof pair);
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    pair.client = fds[0];
    pair.relay = fds[1];
    *state = &pair;
    return 0;
}

static int
teardown(void **state)
{
    struct pair *pair = *state;
    receive_destroy(&pair->rx);
    assert_null(pair->rx);
    close(pair->client);
    close(pair->relay);
    return 0;
}

/* A client frame: masked unless mask is 0. */
static size_t
make_frame(unsigned char *out, int fin, int opcode, const void *payload, size_t len, int mask)
{
    static const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    size_t n = 0;
    out[n++] = (unsigned char)((fin ? 0x80 : 0) | opcode);
    unsigned char bit = mask ? 0x80 : 0;
    if (len < 126) {
        out[n++] = (unsigned char)(bit | len);
    } else {
        out[n++] = (unsigned char)(bit | 126);
        out[n++] = (unsigned char)(len >> 8);
        out[n++] = (unsigned char)len;
    }
    if (mask) {
        memcpy(out + n, key, 4);
        n += 4;
    }
    for (size_t i = 0; i < len; i++)
        out[n + i] = (unsigned char)(((const unsigned char *)payload)[i] ^ (mask ? key[i % 4] : 0));
    return n + len;
}

static void
client_sends(struct pair *pair, const void *bytes, size_t len)
{
    assert_int_equal(write(pair->client, bytes, len), (ssize_t)len);
}

static int
relay_reads(struct pair *pair)
{
    return receive_read(&pair->rx, pair->relay, MAX_MESSAGE, &handler, &pair->seen);
}

/* A page's ping message is one text event, and nothing stays allocated after it. */
static void
test_a_whole_message_is_one_event_and_leaves_no_state(void **state)
{
    struct pair *pair = *state;
    unsigned char buf[64];
    size_t n = make_frame(buf, 1, 0x1, "{\"type\":\"ping\"}", 15, 1);
    client_sends(pair, buf, n);
    assert_int_equal(relay_reads(pair), 0);
    assert_int_equal(pair->seen.texts, 1);
    assert_memory_equal(pair->seen.text, "{\"type\":\"ping\"}", 15);
    assert_null(pair->rx);
}

/* A frame cut by TCP anywhere (in its header too) is held until its rest comes. */
static void
test_a_frame_split_across_reads_is_held_until_whole(void **state)
{
    struct pair *pair = *state;
    unsigned char buf[64];
    size_t n = make_frame(buf, 1, 0x1, "{\"type\":\"ping\"}", 15, 1);
    for (size_t cut = 1; cut < n; cut++) {
        client_sends(pair, buf, cut);
        assert_int_equal(relay_reads(pair), 0);
        assert_non_null(pair->rx);
        client_sends(pair, buf + cut, n - cut);
        assert_int_equal(relay_reads(pair), 0);
        assert_null(pair->rx);
    }
    assert_int_equal(pair->seen.texts, (int)(n - 1));
}

/* Fragments in separate reads, a ping between them: one message, one pong owed, then idle. */
static void
test_fragments_and_a_ping_between_make_one_message(void **state)
{
    struct pair *pair = *state;
    unsigned char buf[64], pong[RECEIVE_PONG_MAX];
    size_t n = make_frame(buf, 0, 0x1, "{\"type\":", 8, 1);
    client_sends(pair, buf, n);
    assert_int_equal(relay_reads(pair), 0);
    assert_non_null(pair->rx);
    n = make_frame(buf, 1, 0x9, "abc", 3, 1);
    client_sends(pair, buf, n);
    assert_int_equal(relay_reads(pair), 0);
    assert_int_equal(pair->seen.pings, 1);
    n = make_frame(buf, 1, 0x0, "\"ping\"}", 7, 1);
    client_sends(pair, buf, n);
    assert_int_equal(relay_reads(pair), 0);
    assert_int_equal(pair->seen.texts, 1);
    assert_int_equal(pair->seen.text_len, 15);
    assert_non_null(pair->rx); /* the pong is still owed */
    assert_int_equal(receive_take_pong(&pair->rx, pong), 3);
    assert_memory_equal(pong, "abc", 3);
    assert_null(pair->rx);
    assert_int_equal(receive_take_pong(&pair->rx, pong), -1);
}

/* Only the latest ping's payload is owed, however many came. */
static void
test_many_pings_owe_one_pong(void **state)
{
    struct pair *pair = *state;
    unsigned char buf[64], pong[RECEIVE_PONG_MAX];
    for (int i = 0; i < 50; i++) {
        char payload[8];
        int len = snprintf(payload, sizeof payload, "p%d", i);
        client_sends(pair, buf, make_frame(buf, 1, 0x9, payload, (size_t)len, 1));
    }
    assert_int_equal(relay_reads(pair), 0);
    assert_int_equal(pair->seen.pings, 50);
    assert_int_equal(receive_take_pong(&pair->rx, pong), 3);
    assert_memory_equal(pong, "p49", 3);
    assert_null(pair->rx);
}

/* Each violation is reported once, with its RFC 6455 code, and reading stops. */
static void
test_violations_fail_with_their_code(void **state)
{
    static const struct {
        const char *name;
        int first_byte; /* FIN, reserved bits, opcode */
        const char *payload;
        size_t len;
        int mask;
        uint16_t code;
    } cases[] = {
        {"unmasked", 0x81, "{}", 2, 0, 1002},
        {"invalid UTF-8", 0x81, "\xff", 1, 1, 1007},
        {"binary", 0x82, "{}", 2, 1, 1003},
        {"orphan continuation", 0x80, "{}", 2, 1, 1002},
        {"opcode 3", 0x83, "{}", 2, 1, 1002},
        {"reserved bit", 0xc1, "{}", 2, 1, 1002},
        {"close of one byte", 0x88, "\x03", 1, 1, 1002},
        {"close code 1005", 0x88, "\x03\xed", 2, 1, 1002},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pair fresh;
        int fds[2];
        unsigned char buf[64];
        memset(&fresh, 0, sizeof fresh);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
        fresh.client = fds[0], fresh.relay = fds[1];
        size_t n = make_frame(buf, 1, 0, cases[i].payload, cases[i].len, cases[i].mask);
        buf[0] = (unsigned char)cases[i].first_byte;
        client_sends(&fresh, buf, n);
        if (relay_reads(&fresh) != 1 || fresh.seen.fails != 1 ||
            fresh.seen.fail_code != cases[i].code)
            fail_msg("%s: fails %d code %u", cases[i].name, fresh.seen.fails,
                     (unsigned)fresh.seen.fail_code);
        assert_int_equal(fresh.seen.texts, 0);
        receive_destroy(&fresh.rx);
        close(fds[0]);
        close(fds[1]);
    }
}

/* A message over the bound fails with 1009 at its first frame, before its payload is read. */
static void
test_a_message_over_the_bound_fails_with_1009(void **state)
{
    struct pair *pair = *state;
    static unsigned char big[MAX_MESSAGE + 16], buf[sizeof big + 16];
    memset(big, 'x', sizeof big);
    size_t n = make_frame(buf, 0, 0x1, big, 300, 1);
    n += make_frame(buf + n, 1, 0x0, big, MAX_MESSAGE - 300 + 1, 1);
    client_sends(pair, buf, n);
    assert_int_equal(relay_reads(pair), 1);
    assert_int_equal(pair->seen.fail_code, 1009);
}

/* The relay allows its first message (the auth message) more than the others: the limit of the
 * call that completes a message holds, even for one begun under a larger limit, and a larger
 * limit lets through what the smaller refuses. */
static void
test_the_limit_may_change_between_calls(void **state)
{
    struct pair *pair = *state;
    static unsigned char big[3 * MAX_MESSAGE], buf[sizeof big + 16];
    memset(big, 'x', sizeof big);
    size_t n = make_frame(buf, 1, 0x1, big, 2 * MAX_MESSAGE, 1);
    client_sends(pair, buf, n);
    assert_int_equal(receive_read(&pair->rx, pair->relay, 3 * MAX_MESSAGE, &handler, &pair->seen),
                     0);
    assert_int_equal(pair->seen.texts, 1);
    assert_int_equal(pair->seen.text_len, 2 * MAX_MESSAGE);
    /* Begun while the larger limit held, finished under the smaller: refused. */
    n = make_frame(buf, 1, 0x1, big, MAX_MESSAGE + 1, 1);
    client_sends(pair, buf, n / 2);
    assert_int_equal(receive_read(&pair->rx, pair->relay, 3 * MAX_MESSAGE, &handler, &pair->seen),
                     0);
    client_sends(pair, buf + n / 2, n - n / 2);
    assert_int_equal(relay_reads(pair), 1);
    assert_int_equal(pair->seen.texts, 1);
    assert_int_equal(pair->seen.fail_code, 1009);
}

/* The page's close and the end of its stream are told apart. */
static void
test_close_and_end_of_stream(void **state)
{
    struct pair *pair = *state;
    unsigned char buf[64];
    client_sends(pair, buf,
                 make_frame(buf, 1, 0x8,
                            "\x03\xe8"
                            "bye",
                            5, 1));
    assert_int_equal(relay_reads(pair), 1);
    assert_int_equal(pair->seen.closes, 1);
    assert_int_equal(pair->seen.close_code, 1000);
    receive_destroy(&pair->rx);
    shutdown(pair->client, SHUT_WR);
    assert_int_equal(relay_reads(pair), 1);
    assert_int_equal(pair->seen.ends, 1);
}

/* A flooding client is read RECEIVE_TURN_BYTES at a time; the rest waits in the socket. */
static void
test_one_call_reads_at_most_a_turn(void **state)
{
    struct pair *pair = *state;
    static unsigned char flood[3 * RECEIVE_TURN_BYTES];
    size_t one = make_frame(flood, 1, 0x1, "{\"type\":\"ping\"}", 15, 1);
    int frames = (int)(sizeof flood / one);
    for (int i = 1; i < frames; i++)
        memcpy(flood + (size_t)i * one, flood, one);
    int sndbuf = (int)sizeof flood * 2;
    assert_int_equal(setsockopt(pair->client, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
    client_sends(pair, flood, (size_t)frames * one); /* one write: it fits the buffer */
    assert_int_equal(relay_reads(pair), 0);
    int left = 0;
    assert_int_equal(ioctl(pair->relay, FIONREAD, &left), 0);
    assert_true(left > 0);
    assert_true(pair->seen.texts <= (int)(RECEIVE_TURN_BYTES / one));
    for (int turns = 0; pair->seen.texts < frames && turns < 8; turns++)
        assert_int_equal(relay_reads(pair), 0);
    assert_int_equal(pair->seen.texts, frames);
    assert_null(pair->rx);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_whole_message_is_one_event_and_leaves_no_state,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_frame_split_across_reads_is_held_until_whole, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fragments_and_a_ping_between_make_one_message, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_many_pings_owe_one_pong, setup, teardown),
        cmocka_unit_test_setup_teardown(test_violations_fail_with_their_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_message_over_the_bound_fails_with_1009, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_the_limit_may_change_between_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_and_end_of_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_call_reads_at_most_a_turn, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
