/* Unit tests for worker/wake.c: the pool's LISTEN connection, on the throwaway PostgreSQL cluster
 * of `make test-unit` (TASKWIRE_TEST_PG_URL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "worker/wake.c"

#define TEST_WAIT_MS 10000 /* longest wait for the connection or a notification */

static const char *
test_url(void)
{
    const char *url = getenv("TASKWIRE_TEST_PG_URL");
    if (!url || !*url)
        fail_msg("TASKWIRE_TEST_PG_URL is not set (run through make test-unit)");
    return url;
}

/* Drive wake as the pool's loop does (poll its socket, or wait for its deadline) until it has
 * heard at least want notes or resynced (want 0); the notes heard, in notes. */
static size_t
drive(struct wake *wake, struct wake_note *notes, size_t max, size_t want, int *resynced)
{
    size_t count = 0;
    int64_t give_up = clock_mono_ms() + TEST_WAIT_MS;
    *resynced = 0;
    while (clock_mono_ms() < give_up) {
        int fd = wake_fd(wake);
        short events = wake_events(wake);
        struct pollfd item = {.fd = fd,
                              .events = (short)((events & ZMQ_POLLIN ? POLLIN : 0) |
                                                (events & ZMQ_POLLOUT ? POLLOUT : 0))};
        int64_t deadline = wake_deadline_ms(wake);
        int64_t wait = deadline == INT64_MAX ? 50 : deadline - clock_mono_ms();
        poll(&item, fd >= 0 ? 1 : 0, wait < 0 ? 0 : wait > 50 ? 50 : (int)wait);
        int resync = 0;
        count += wake_read(wake, notes + count, max - count, &resync);
        *resynced |= resync;
        if ((want == 0 && *resynced) || (want > 0 && count >= want))
            break;
    }
    return count;
}

static void
notify(const char *payload)
{
    PGconn *conn = PQconnectdb(test_url());
    assert_int_equal(PQstatus(conn), CONNECTION_OK);
    const char *values[] = {payload};
    PGresult *result = PQexecParams(conn, "SELECT pg_notify('" STORE_NOTIFY_CHANNEL "', $1)", 1,
                                    NULL, values, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(result), PGRES_TUPLES_OK);
    PQclear(result);
    PQfinish(conn);
}

/* Without it, a worker of another host would not hear a submission or a cancel until its
 * next scan, and a notification not from a handler could make it act on nonsense. */
static void
test_hears_nudges_and_drops_what_is_no_nudge(void **state)
{
    (void)state;
    struct wake *wake = wake_new(test_url());
    assert_non_null(wake);
    struct wake_note notes[4];
    int resynced = 0;
    drive(wake, notes, 4, 0, &resynced);
    assert_true(resynced);
    char good[64];
    snprintf(good, sizeof good, "cancel %0*d", TOKEN_ID_SIZE - 1, 7);
    notify("submit short");
    notify("launch 00000000000000000000000000000000");
    notify("");
    notify(good);
    size_t count = drive(wake, notes, 4, 1, &resynced);
    assert_int_equal(count, 1);
    assert_string_equal(notes[0].verb, PROTOCOL_VERB_CANCEL);
    assert_int_equal(strlen(notes[0].id), TOKEN_ID_SIZE - 1);
    assert_int_equal(wake->malformed, 3);
    wake_destroy(&wake);
    assert_null(wake);
}

/* Without it, a worker whose server went away would stall its loop in a connect, or retry in
 * a tight loop. */
static void
test_an_unreachable_server_backs_off_without_blocking(void **state)
{
    (void)state;
    struct wake *wake = wake_new("host=127.0.0.1 port=1 connect_timeout=1");
    assert_non_null(wake);
    int64_t started = clock_mono_ms();
    struct wake_note notes[1];
    int resync = 0;
    for (int i = 0; i < 20 && wake->state != WAKE_WAITING; i++) {
        poll(NULL, 0, 10);
        wake_read(wake, notes, 1, &resync);
    }
    assert_int_equal(wake->state, WAKE_WAITING);
    assert_false(resync);
    assert_true(clock_mono_ms() - started < 1000);
    assert_int_equal(wake_fd(wake), -1);
    assert_int_equal(wake->backoff_ms, 2 * WAKE_RETRY_MIN_MS);
    assert_true(wake_deadline_ms(wake) > clock_mono_ms());
    /* Due again: a new attempt, which fails the same way and waits twice as long. */
    wake->retry_at_ms = clock_mono_ms();
    for (int i = 0; i < 20 && (i == 0 || wake->state != WAKE_WAITING); i++) {
        wake_read(wake, notes, 1, &resync);
        poll(NULL, 0, 10);
    }
    assert_int_equal(wake->backoff_ms, 4 * WAKE_RETRY_MIN_MS);
    wake_destroy(&wake);
    wake_destroy(&wake); /* NULL-safe */
}

int
main(void)
{
    log_setup("test_wake", LOG_LEVEL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hears_nudges_and_drops_what_is_no_nudge),
        cmocka_unit_test(test_an_unreachable_server_backs_off_without_blocking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
