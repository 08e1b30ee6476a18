/* Unit tests for relay/throttle.c: new connections per source address. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <string.h>

#include "relay/throttle.c"

static struct config cfg;

static struct throttle *
make_throttle(int rate, int burst)
{
    config_defaults(&cfg);
    cfg.connect_rate = rate;
    cfg.connect_burst = burst;
    struct throttle *throttle = throttle_new(&cfg);
    assert_non_null(throttle);
    return throttle;
}

static uint32_t
ip(const char *text)
{
    struct in_addr address;
    assert_int_equal(inet_pton(AF_INET, text, &address), 1);
    return address.s_addr;
}

/* Addresses other than home's whose slots start at the same place, so they compete. */
static void
colliding(uint32_t home, uint32_t *out, size_t count)
{
    uint32_t want = (home * 2654435761u) >> (32 - THROTTLE_BITS);
    size_t found = 0;
    for (uint32_t a = 1; found < count; a++)
        if (a != home && ((a * 2654435761u) >> (32 - THROTTLE_BITS)) == want)
            out[found++] = a;
}

/* A flood from one address would get through, or its neighbours would pay for it. */
static void
test_a_source_gets_its_burst_then_its_rate(void **state)
{
    (void)state;
    struct throttle *t = make_throttle(10, 5);
    uint32_t flood = ip("192.0.2.7"), other = ip("198.51.100.1");
    for (int i = 0; i < 5; i++)
        assert_int_equal(throttle_admit(t, flood, 1000), 1);
    assert_int_equal(throttle_admit(t, flood, 1000), 0);
    assert_int_equal(throttle_admit(t, flood, 1050), 0);
    assert_int_equal(throttle_admit(t, other, 1050), 1);
    assert_int_equal(throttle_admit(t, flood, 1100), 1); /* 10 a second: one per 100 ms */
    assert_int_equal(throttle_admit(t, flood, 1100), 0);
    throttle_destroy(&t);
    assert_null(t);
    throttle_destroy(&t);
}

/* The local web server (every browser behind it) would be throttled, or rate 0 would refuse. */
static void
test_exempt_sources_and_no_limit(void **state)
{
    (void)state;
    struct throttle *t = make_throttle(1, 1);
    uint32_t proxy = ip("127.0.0.1"), direct = ip("127.0.0.2");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(throttle_admit(t, proxy, 0), 1);
    assert_int_equal(throttle_admit(t, direct, 0), 1);
    assert_int_equal(throttle_admit(t, direct, 0), 0);
    throttle_destroy(&t);
    t = make_throttle(0, 1);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(throttle_admit(t, direct, 0), 1);
    throttle_destroy(&t);
}

/* A spread of many addresses would grow the table or refuse newcomers for want of room; or a
 * source that is still flooding would be forgotten before quiet ones. */
static void
test_a_full_table_evicts_refilled_then_oldest(void **state)
{
    (void)state;
    struct throttle *t = make_throttle(1, 2);
    /* Many more addresses than slots: every newcomer is admitted, the memory stays put. */
    for (uint32_t a = 1; a <= 4 * THROTTLE_SOURCES; a++)
        assert_int_equal(throttle_admit(t, htonl(0x0a000000u + a), 5000), 1);
    throttle_destroy(&t);

    t = make_throttle(1, 2);
    uint32_t old = ip("203.0.113.9"), rivals[THROTTLE_PROBE];
    colliding(old, rivals, THROTTLE_PROBE);
    assert_int_equal(throttle_admit(t, old, 0), 1);
    assert_int_equal(throttle_admit(t, old, 0), 1);
    assert_int_equal(throttle_admit(t, old, 0), 0); /* spent, seen at 0 */
    /* Its neighbours fill the other slots, each seen later and spent too. */
    for (int i = 0; i < THROTTLE_PROBE - 1; i++) {
        assert_int_equal(throttle_admit(t, rivals[i], 100 + i), 1);
        assert_int_equal(throttle_admit(t, rivals[i], 100 + i), 1);
    }
    /* Still flooding at 150 (refused, but seen): it is not the oldest any more. */
    assert_int_equal(throttle_admit(t, old, 150), 0);
    /* One more rival: the oldest, rivals[0] (seen at 100), gives up its slot. */
    assert_int_equal(throttle_admit(t, rivals[THROTTLE_PROBE - 1], 200), 1);
    assert_int_equal(throttle_admit(t, old, 200), 0);
    assert_int_equal(throttle_admit(t, rivals[0], 200), 1); /* back with a full burst */
    throttle_destroy(&t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_source_gets_its_burst_then_its_rate),
        cmocka_unit_test(test_exempt_sources_and_no_limit),
        cmocka_unit_test(test_a_full_table_evicts_refilled_then_oldest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
