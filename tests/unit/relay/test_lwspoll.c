/* Unit tests for relay/lwspoll.c: poll() as lws's full turn sees it, eventfd_write() as lws's
 * adoption does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "relay/lwspoll.c"

/* A connected pair of stream sockets. */
static void
pair(int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Outside a turn poll() keeps its meaning: an entry asking for nothing still reports its
 * hang-up, and one asking for input reports it. */
static void
test_outside_a_turn_poll_is_poll(void **state)
{
    (void)state;
    int hung[2], live[2];
    pair(hung);
    pair(live);
    close(hung[1]);
    assert_int_equal(write(live[1], "x", 1), 1);
    struct pollfd fds[] = {{.fd = hung[0], .events = 0}, {.fd = live[0], .events = POLLIN}};
    assert_int_equal(poll(fds, 2, 0), 2);
    assert_true(fds[0].revents & POLLHUP);
    assert_true(fds[1].revents & POLLIN);
    close(hung[0]);
    close(live[0]);
    close(live[1]);
}

/* Inside a turn an entry asking for nothing is not polled (revents 0, even stale ones
 * cleared), and the others are reported where they are in the caller's table. */
static void
test_a_turn_polls_only_what_asks(void **state)
{
    (void)state;
    int hung[2], live[2], quiet[2];
    pair(hung);
    pair(live);
    pair(quiet);
    close(hung[1]);
    assert_int_equal(write(live[1], "x", 1), 1);
    struct pollfd fds[] = {
        {.fd = quiet[0], .events = POLLIN, .revents = POLLOUT},
        {.fd = hung[0], .events = 0, .revents = POLLIN},
        {.fd = live[0], .events = POLLIN},
    };
    lwspoll_turn(1);
    assert_int_equal(poll(fds, 3, 0), 1);
    lwspoll_turn(0);
    assert_int_equal(fds[0].revents, 0);
    assert_int_equal(fds[1].revents, 0);
    assert_int_equal(fds[2].revents, POLLIN);
    assert_int_equal(poll(fds, 3, 0), 2); /* the turn is over: the hang-up is seen again */
    assert_true(fds[1].revents & POLLHUP);
    int all[] = {hung[0], live[0], live[1], quiet[0], quiet[1]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        close(all[i]);
    lwspoll_fini();
}

/* A turn with nothing ready still waits its timeout, and one with nothing asking waits it too
 * (lws sleeps in it until its next timer). */
static void
test_a_turn_waits_its_timeout(void **state)
{
    (void)state;
    int quiet[2], hung[2];
    pair(quiet);
    pair(hung);
    close(hung[1]);
    struct pollfd fds[] = {{.fd = hung[0], .events = 0}, {.fd = quiet[0], .events = POLLIN}};
    lwspoll_turn(1);
    int64_t start = now_ms();
    assert_int_equal(poll(fds, 2, 60), 0);
    assert_true(now_ms() - start >= 50);
    start = now_ms();
    assert_int_equal(poll(fds, 1, 60), 0);
    assert_true(now_ms() - start >= 50);
    lwspoll_turn(0);
    close(quiet[0]);
    close(quiet[1]);
    close(hung[0]);
    lwspoll_fini();
}

/* The trimmed table grows with the caller's: a table of many entries, most asking for
 * nothing, reports the one ready entry at its place. */
static void
test_the_trimmed_table_grows(void **state)
{
    (void)state;
    enum { ENTRIES = 3000 };
    static struct pollfd fds[ENTRIES];
    int hung[2], live[2];
    pair(hung);
    pair(live);
    close(hung[1]);
    assert_int_equal(write(live[1], "x", 1), 1);
    lwspoll_turn(1);
    for (int round = 1; round <= 2; round++) {
        for (int i = 0; i < ENTRIES; i++)
            fds[i] = (struct pollfd){.fd = hung[0], .events = 0};
        fds[ENTRIES - round] = (struct pollfd){.fd = live[0], .events = POLLIN};
        assert_int_equal(poll(fds, (nfds_t)(round == 1 ? 10 : ENTRIES), 0), round == 1 ? 0 : 1);
    }
    lwspoll_turn(0);
    assert_int_equal(fds[ENTRIES - 2].revents, POLLIN);
    assert_int_equal(fds[0].revents, 0);
    close(hung[0]);
    close(live[0]);
    close(live[1]);
    lwspoll_fini();
}

/* Outside an adoption eventfd_write() adds to the counter as glibc's does; inside one it writes
 * nothing and reports success; afterwards it writes again. */
static void
test_an_adoption_writes_no_wake(void **state)
{
    (void)state;
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(fd >= 0);
    eventfd_t value = 0;
    assert_int_equal(eventfd_write(fd, 2), 0);
    lwspoll_adopting(1);
    assert_int_equal(eventfd_write(fd, 5), 0);
    lwspoll_adopting(0);
    assert_int_equal(eventfd_read(fd, &value), 0);
    assert_int_equal(value, 2);
    assert_int_equal(eventfd_write(fd, 3), 0);
    assert_int_equal(eventfd_read(fd, &value), 0);
    assert_int_equal(value, 3);
    assert_int_equal(eventfd_write(-1, 1), -1); /* an error is still an error */
    close(fd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outside_a_turn_poll_is_poll),
        cmocka_unit_test(test_a_turn_polls_only_what_asks),
        cmocka_unit_test(test_a_turn_waits_its_timeout),
        cmocka_unit_test(test_the_trimmed_table_grows),
        cmocka_unit_test(test_an_adoption_writes_no_wake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
