/* Unit tests for relay/subscription.c: a connection's channels, their bounds and their queue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "relay/roster.c"
#include "relay/route.c"
#include "relay/subscription.c"

#define HEADROOM 16
#define ME "0123456789abcdef0123456789abcdef"
#define OTHER "fedcba9876543210fedcba9876543210"

struct conn {
    struct subscription_set subs;
    int culled;
};

static struct config cfg;

static void
on_wake(void *owner)
{
    (void)owner; /* the tests read what waits themselves */
}

static void
on_cull(void *owner)
{
    struct conn *conn = owner;
    conn->culled++;
}

static struct route *
make_route(uint32_t ring)
{
    struct route_callbacks callbacks = {on_wake, on_cull, NULL, NULL, NULL};
    config_defaults(&cfg);
    struct route *route = route_new(1024, ring, HEADROOM, &callbacks);
    assert_non_null(route);
    return route;
}

/* Topics with a member now: those the relay subscribes to upstream. */
static uint64_t
topics(const struct route *route)
{
    struct route_stats stats;
    route_stats(route, &stats);
    return stats.clients;
}

/* Both connections leave: the table is empty, nothing of them pinned. */
static void
finish(struct route **route, struct conn *a, struct conn *b)
{
    subscription_fini(&a->subs, *route);
    subscription_fini(&b->subs, *route);
    subscription_fini(&a->subs, *route); /* twice is harmless */
    struct route_stats stats;
    route_stats(*route, &stats);
    assert_int_equal(stats.members, 0);
    assert_int_equal(stats.clients, 0);
    route_destroy(route);
}

static void
connect_as(struct route *route, struct conn *conn, const char *client_id)
{
    memset(conn, 0, sizeof *conn);
    subscription_init(&conn->subs, conn);
    assert_int_equal(route_attach(route, &conn->subs.own, client_id, strlen(client_id)), 0);
}

static int
sub(struct route *route, struct conn *conn, const char *client_id,
    const struct token_grants *grants, const char *name)
{
    return subscription_subscribe(&conn->subs, route, &cfg, client_id, grants, name, strlen(name));
}

static int
unsub(struct route *route, struct conn *conn, const char *name)
{
    return subscription_unsubscribe(&conn->subs, route, &cfg, name, strlen(name));
}

static void
publish(struct route *route, const char *topic, const char *text)
{
    route_publish(route, topic, strlen(topic), text, strlen(text), NULL);
}

/* Every waiting message of conn as text, "a,b,c", then sent. */
static void
drain(struct route *route, struct conn *conn, char *out, size_t size)
{
    out[0] = '\0';
    size_t n = 0;
    unsigned char *payload;
    size_t len;
    while (subscription_peek(route, &conn->subs, n, &payload, &len)) {
        size_t used = strlen(out);
        snprintf(out + used, size - used, "%s%.*s", n ? "," : "", (int)len, (char *)payload);
        n++;
    }
    assert_int_equal(n, subscription_pending(&conn->subs));
    subscription_sent(route, &conn->subs, n);
    assert_int_equal(subscription_pending(&conn->subs), 0);
}

static struct token_grants
grants_for(const char *pattern)
{
    struct token_grants grants = {.count = 1};
    grants.grants[0].len = (uint8_t)strlen(pattern);
    grants.grants[0].permissions = TOKEN_GRANT_SUBSCRIBE;
    memcpy(grants.grants[0].name, pattern, grants.grants[0].len);
    return grants;
}

/* Connections a (ME) and b (OTHER), both subscribed to channel by a grant of it. */
static void
both_in(struct route *route, struct conn *a, struct conn *b, const char *channel)
{
    struct token_grants grants = grants_for(channel);
    connect_as(route, a, ME);
    connect_as(route, b, OTHER);
    assert_int_equal(sub(route, a, ME, &grants, channel), 0);
    assert_int_equal(sub(route, b, OTHER, &grants, channel), 0);
}

/* A page that subscribes to more channels than allowed is told so and keeps the ones it has;
 * names too long, forbidden or unknown never reach the route table. */
static void
test_bounds_and_refusals(void **state)
{
    (void)state;
    struct route *route = make_route(8);
    cfg.channels_per_connection = 3;
    struct token_grants grants = grants_for("project:*");
    struct conn conn, none;
    connect_as(route, &conn, ME);
    connect_as(route, &none, OTHER);
    assert_int_equal(sub(route, &conn, ME, &grants, "project:1"), 0);
    assert_int_equal(sub(route, &conn, ME, &grants, "project:2"), 0);
    assert_int_equal(sub(route, &conn, ME, &grants, "project:2"), 0); /* again: no change */
    assert_int_equal(sub(route, &conn, ME, &grants, "user:" ME), 0);  /* its own: no change */
    assert_int_equal(sub(route, &conn, ME, &grants, "project:3"), 0);
    assert_int_equal(conn.subs.count, 3);
    assert_int_equal(sub(route, &conn, ME, &grants, "project:4"), CHANNEL_E_TOO_MANY);
    assert_int_equal(sub(route, &conn, ME, &grants, "task:1"), CHANNEL_E_NOT_ALLOWED);
    assert_int_equal(sub(route, &conn, ME, NULL, "user:" OTHER), CHANNEL_E_NOT_ALLOWED);
    assert_int_equal(sub(route, &conn, ME, &grants, "room:1"), CHANNEL_E_UNKNOWN_NAMESPACE);
    assert_int_equal(sub(route, &conn, ME, &grants, "project 1"), CHANNEL_E_BAD_NAME);
    char longest[80];
    snprintf(longest, sizeof longest, "project:%0*d", cfg.channel_name_max - 7, 1);
    assert_int_equal(sub(route, &conn, ME, &grants, longest), CHANNEL_E_TOO_LONG);
    assert_int_equal(conn.subs.count, 3);
    assert_int_equal(topics(route), 5); /* two client ids and three channels */
    assert_int_equal(unsub(route, &conn, "user:" ME), CHANNEL_E_OWN_CHANNEL);
    assert_int_equal(unsub(route, &conn, "project:9"), CHANNEL_E_NOT_SUBSCRIBED);
    assert_int_equal(unsub(route, &conn, "project:2"), 0);
    assert_int_equal(conn.subs.count, 2);
    assert_int_equal(topics(route), 4);
    assert_int_equal(sub(route, &conn, ME, &grants, "project:4"), 0); /* room again */
    finish(&route, &conn, &none);
}

/* Two users in one project channel both get its messages, each channel in its order, and a
 * user's own messages still reach only that user; leaving a channel stops its messages. */
static void
test_queue_across_channels(void **state)
{
    (void)state;
    struct route *route = make_route(16);
    struct conn a, b;
    both_in(route, &a, &b, "project:42");
    assert_int_equal(topics(route), 3);
    publish(route, ME, "a1");
    publish(route, "project:42", "p1");
    publish(route, OTHER, "b1");
    publish(route, "project:42", "p2");
    publish(route, ME, "a2");
    publish(route, "project:4", "nobody"); /* an exact match only */
    char text[256];
    drain(route, &a, text, sizeof text);
    assert_string_equal(text, "a1,a2,p1,p2");
    drain(route, &b, text, sizeof text);
    assert_string_equal(text, "b1,p1,p2");
    /* Sent in parts: a write that takes some of them leaves the rest in order. */
    publish(route, ME, "a3");
    publish(route, "project:42", "p3");
    publish(route, "project:42", "p4");
    subscription_sent(route, &a.subs, 2);
    drain(route, &a, text, sizeof text);
    assert_string_equal(text, "p4");
    assert_int_equal(unsub(route, &a, "project:42"), 0);
    publish(route, "project:42", "p5");
    drain(route, &a, text, sizeof text);
    assert_string_equal(text, "");
    drain(route, &b, text, sizeof text);
    assert_string_equal(text, "p3,p4,p5");
    /* After warm-up, messages to channels allocate nothing. */
    uint64_t before = route_allocations(route);
    for (int i = 0; i < 100; i++) {
        publish(route, "project:42", "px");
        drain(route, &b, text, sizeof text);
    }
    assert_int_equal(route_allocations(route), before);
    finish(&route, &a, &b);
}

/* A connection that does not read a channel's messages is culled like one that does not read
 * its own; the channel's other member loses nothing. */
static void
test_lagging_channel_member_is_culled(void **state)
{
    (void)state;
    struct route *route = make_route(4);
    struct conn slow, fast;
    both_in(route, &slow, &fast, "task:1");
    char text[256];
    for (int i = 0; i < 6; i++) {
        char m[16];
        snprintf(m, sizeof m, "t%d", i);
        publish(route, "task:1", m);
        drain(route, &fast, text, sizeof text);
        assert_string_equal(text, m);
    }
    assert_int_equal(slow.culled, 1);
    assert_int_equal(fast.culled, 0);
    assert_int_equal(subscription_pending(&slow.subs), 0); /* detached: nothing pinned */
    finish(&route, &slow, &fast);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_and_refusals),
        cmocka_unit_test(test_queue_across_channels),
        cmocka_unit_test(test_lagging_channel_member_is_culled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
