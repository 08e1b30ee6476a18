/* Unit tests for relay/route.c: the relay's per-message path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "relay/route.c"

#define HEADROOM 16
#define MEMBERS 8

struct conn {
    struct route_member member;
    int woken, culled;
};

static int subscribed, unsubscribed;

static void
wake(void *owner)
{
    ((struct conn *)owner)->woken++;
}

static void
cull(void *owner)
{
    ((struct conn *)owner)->culled++;
}

static void
subscribe(void *data, const char *id, size_t len)
{
    (void)data, (void)id, (void)len;
    subscribed++;
}

static void
unsubscribe(void *data, const char *id, size_t len)
{
    (void)data, (void)id, (void)len;
    unsubscribed++;
}

static struct route *
make_route(uint32_t ring)
{
    struct route_callbacks callbacks = {wake, cull, subscribe, unsubscribe, NULL};
    subscribed = unsubscribed = 0;
    struct route *route = route_new(1024, ring, HEADROOM, &callbacks);
    assert_non_null(route);
    return route;
}

/* Send everything member has, checking each payload is "m<n>" in order from *expect. */
static void
drain(struct route *route, struct conn *conn, int *expect)
{
    unsigned char *payload;
    size_t len;
    while (route_peek(route, &conn->member, 0, &payload, &len)) {
        char want[32];
        int n = snprintf(want, sizeof want, "m%d", (*expect)++);
        assert_int_equal(len, (size_t)n);
        assert_memory_equal(payload, want, len);
        memset(payload - HEADROOM, 0xAB, HEADROOM); /* the headroom is writable */
        route_sent(route, &conn->member);
    }
}

static void
publish(struct route *route, const char *id, int n)
{
    char text[32];
    int len = snprintf(text, sizeof text, "m%d", n);
    route_publish(route, id, strlen(id), text, (size_t)len, NULL);
}

/* Two tabs of client id "c", neither culled yet. */
static void
attach_pair(struct route *route, struct conn *fast, struct conn *slow)
{
    route_member_init(&fast->member, fast);
    route_member_init(&slow->member, slow);
    fast->culled = slow->culled = 0;
    assert_int_equal(route_attach(route, &fast->member, "c", 1), 0);
    assert_int_equal(route_attach(route, &slow->member, "c", 1), 0);
}

/* Assert that member's k-th waiting message is "m<n>". */
static void
assert_peek(struct route *route, struct conn *conn, size_t k, int n)
{
    unsigned char *payload;
    size_t len;
    char want[32];
    int wlen = snprintf(want, sizeof want, "m%d", n);
    assert_int_equal(route_peek(route, &conn->member, k, &payload, &len), 1);
    assert_int_equal(len, (size_t)wlen);
    assert_memory_equal(payload, want, len);
}

/* A write of several waiting messages looks ahead without sending them: each stays the
 * member's until route_sent, in order, also where the ring wraps. */
static void
test_peek_looks_ahead_without_sending(void **state)
{
    (void)state;
    struct route *route = make_route(4);
    struct conn fast, slow;
    unsigned char *payload;
    size_t len;
    attach_pair(route, &fast, &slow);
    int expect_fast = 0, expect_slow = 0;
    for (int round = 0; round < 3; round++) { /* the ring (4 slots) wraps */
        for (int k = 0; k < 3; k++)
            publish(route, "c", round * 3 + k);
        for (size_t k = 0; k < 3; k++)
            assert_peek(route, &fast, k, round * 3 + (int)k);
        assert_int_equal(route_peek(route, &fast.member, 3, &payload, &len), 0);
        assert_int_equal(route_pending(&fast.member), 3);
        route_sent(route, &fast.member);
        assert_peek(route, &fast, 0, round * 3 + 1);
        assert_peek(route, &slow, 0, round * 3); /* the other tab's place did not move */
        expect_fast++;
        drain(route, &fast, &expect_fast);
        drain(route, &slow, &expect_slow);
    }
    assert_int_equal(fast.culled + slow.culled, 0);
    route_detach(route, &fast.member);
    assert_int_equal(route_peek(route, &fast.member, 0, &payload, &len), 0);
    route_detach(route, &slow.member);
    route_destroy(&route);
}

/* Every tab of a client sees every message in order, and after warm-up the path allocates
 * nothing (the relay's memory stays flat under load). */
static void
test_fanout_in_order_without_allocation(void **state)
{
    (void)state;
    struct route *route = make_route(64);
    struct conn conns[MEMBERS];
    int expect[MEMBERS] = {0};
    for (int i = 0; i < MEMBERS; i++) {
        route_member_init(&conns[i].member, &conns[i]);
        assert_int_equal(route_attach(route, &conns[i].member, "client-a", 8), 0);
        conns[i].woken = conns[i].culled = 0;
    }
    assert_int_equal(subscribed, 1);
    int sent = 0;
    for (int round = 0; round < 4; round++) { /* warm-up: ring and pool grow */
        for (int k = 0; k < 32; k++)
            publish(route, "client-a", sent++);
        for (int i = 0; i < MEMBERS; i++)
            drain(route, &conns[i], &expect[i]);
    }
    uint64_t before = route_allocations(route);
    for (int round = 0; round < 100; round++) {
        for (int k = 0; k < 32; k++)
            publish(route, "client-a", sent++);
        for (int i = 0; i < MEMBERS; i++)
            drain(route, &conns[i], &expect[i]);
    }
    assert_int_equal(route_allocations(route), before);
    for (int i = 0; i < MEMBERS; i++) {
        assert_int_equal(expect[i], sent);
        assert_int_equal(conns[i].culled, 0);
        assert_int_equal(conns[i].woken, sent);
    }
    struct route_stats stats;
    route_stats(route, &stats);
    assert_int_equal(stats.messages_in, (uint64_t)sent);
    assert_int_equal(stats.messages_out, (uint64_t)sent * MEMBERS);
    for (int i = 0; i < MEMBERS; i++)
        route_detach(route, &conns[i].member);
    assert_int_equal(unsubscribed, 1);
    route_stats(route, &stats);
    assert_int_equal(stats.members, 0);
    assert_int_equal(stats.clients, 0);
    route_destroy(&route);
    assert_null(route);
}

/* A client never receives another client's messages, even when one id is a prefix of the
 * other (ZeroMQ's own filter is a prefix match). */
static void
test_exact_match(void **state)
{
    (void)state;
    struct route *route = make_route(16);
    struct conn a, ab;
    route_member_init(&a.member, &a);
    route_member_init(&ab.member, &ab);
    a.woken = ab.woken = 0;
    route_attach(route, &a.member, "abc", 3);
    route_attach(route, &ab.member, "abcd", 4);
    assert_int_equal(route_publish(route, "abcd", 4, "x", 1, NULL), 1);
    assert_int_equal(route_publish(route, "ab", 2, "y", 1, NULL), 0);
    assert_int_equal(a.woken, 0);
    assert_int_equal(ab.woken, 1);
    assert_int_equal(route_pending(&a.member), 0);
    struct route_stats stats;
    route_stats(route, &stats);
    assert_int_equal(stats.dropped, 1);
    route_detach(route, &a.member);
    route_detach(route, &ab.member);
    route_destroy(&route);
}

/* The relay's per-client connection limit would count another client's tabs (a prefix of
 * the id), or keep counting a tab that left. */
static void
test_members_are_counted_per_client_id(void **state)
{
    (void)state;
    struct route *route = make_route(16);
    struct conn tabs[3], other;
    for (int i = 0; i < 3; i++) {
        route_member_init(&tabs[i].member, &tabs[i]);
        assert_int_equal(route_attach(route, &tabs[i].member, "abc", 3), 0);
        assert_int_equal(route_client_members(route, "abc", 3), (size_t)i + 1);
    }
    route_member_init(&other.member, &other);
    assert_int_equal(route_attach(route, &other.member, "abcd", 4), 0);
    assert_int_equal(route_client_members(route, "abc", 3), 3);
    assert_int_equal(route_client_members(route, "abcd", 4), 1);
    assert_int_equal(route_client_members(route, "ab", 2), 0);
    assert_int_equal(route_client_members(route, "", 0), 0);
    route_detach(route, &tabs[1].member);
    route_detach(route, &tabs[1].member);
    assert_int_equal(route_client_members(route, "abc", 3), 2);
    route_detach(route, &tabs[0].member);
    route_detach(route, &tabs[2].member);
    route_detach(route, &other.member);
    assert_int_equal(route_client_members(route, "abc", 3), 0);
    route_destroy(&route);
}

/* A connection that stops reading is closed once it is `ring` messages behind, and the
 * other tabs of the same client lose nothing. */
static void
test_lagging_member_is_culled(void **state)
{
    (void)state;
    const uint32_t ring = 8;
    struct route *route = make_route(ring);
    struct conn fast, slow;
    attach_pair(route, &fast, &slow);
    int expect_fast = 0;
    for (int n = 0; n < 40; n++) {
        publish(route, "c", n);
        drain(route, &fast, &expect_fast);
    }
    assert_int_equal(expect_fast, 40);
    assert_int_equal(fast.culled, 0);
    assert_int_equal(slow.culled, 1);
    assert_null(slow.member.client);
    struct route_stats stats;
    route_stats(route, &stats);
    assert_int_equal(stats.culled, 1);
    assert_int_equal(stats.members, 1);
    route_detach(route, &fast.member);
    route_destroy(&route);
}

/* The publisher learns how far behind the client id's slowest tab is, so a relay reading in
 * batches can write before that tab would be culled. */
static void
test_backlog_counts_the_furthest_behind(void **state)
{
    (void)state;
    struct route *route = make_route(16);
    struct conn fast, slow;
    attach_pair(route, &fast, &slow);
    int expect_fast = 0, expect_slow = 0;
    size_t backlog = 0;
    for (int n = 0; n < 5; n++) {
        char text[8];
        int len = snprintf(text, sizeof text, "m%d", n);
        assert_int_equal(route_publish(route, "c", 1, text, (size_t)len, &backlog), 2);
        assert_int_equal(backlog, (size_t)n + 1);
        drain(route, &fast, &expect_fast);
    }
    drain(route, &slow, &expect_slow);
    assert_int_equal(route_publish(route, "c", 1, "m5", 2, &backlog), 2);
    assert_int_equal(backlog, 1);
    route_detach(route, &fast.member);
    route_detach(route, &slow.member);
    route_destroy(&route);
}

/* A reader that leaves with messages unsent gives their buffers back (no leak per
 * disconnect), and a too-large message is refused rather than truncated. */
static void
test_detach_releases_and_oversize_is_dropped(void **state)
{
    (void)state;
    struct route *route = make_route(32);
    struct conn c;
    route_member_init(&c.member, &c);
    route_attach(route, &c.member, "c", 1);
    for (int n = 0; n < 10; n++)
        publish(route, "c", n);
    route_detach(route, &c.member);
    assert_int_equal(route->pooled_bytes, 10 * ROUTE_CLASS_MIN);
    route_attach(route, &c.member, "c", 1);
    char big[2048];
    memset(big, 'x', sizeof big);
    assert_int_equal(route_publish(route, "c", 1, big, sizeof big, NULL), -1);
    assert_int_equal(route_pending(&c.member), 0);
    route_detach(route, &c.member);
    route_destroy(&route);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fanout_in_order_without_allocation),
        cmocka_unit_test(test_exact_match),
        cmocka_unit_test(test_members_are_counted_per_client_id),
        cmocka_unit_test(test_peek_looks_ahead_without_sending),
        cmocka_unit_test(test_lagging_member_is_culled),
        cmocka_unit_test(test_backlog_counts_the_furthest_behind),
        cmocka_unit_test(test_detach_releases_and_oversize_is_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
