/* Unit tests for relay/roster.c: the relay's presence counts and what it owes upstream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/roster.c"

#define ME "0123456789abcdef0123456789abcdef"
#define OTHER "fedcba9876543210fedcba9876543210"

static struct presence_update update;

/* Two tabs of one client count 2, and closing both says 0 once, then forgets the pair. */
static void
test_counts_and_changes(void **state)
{
    (void)state;
    struct roster roster;
    roster_init(&roster);
    assert_int_equal(roster_join(&roster, "project:1", 9, ME), 0);
    assert_int_equal(roster_join(&roster, "project:1", 9, ME), 0);
    assert_int_equal(roster_join(&roster, "project:1", 9, OTHER), 0);
    assert_int_equal(roster_count(&roster, "project:1", 9, ME), 2);
    assert_int_equal(roster_count(&roster, "project:10", 10, ME), 0);
    assert_int_equal(roster_take_changes(&roster, &update), 2);
    assert_string_equal(update.entries[0].client_id, ME);
    assert_int_equal(update.entries[0].conns, 2);
    assert_int_equal(update.entries[1].conns, 1);
    /* Not sent: they are owed still. */
    assert_int_equal(roster_take_changes(&roster, &update), 2);
    roster_changes_sent(&roster, 2);
    assert_int_equal(roster_take_changes(&roster, &update), 0);
    assert_int_equal(roster_leave(&roster, "project:1", 9, ME), 0);
    assert_int_equal(roster_leave(&roster, "project:1", 9, ME), 0);
    assert_int_equal(roster_leave(&roster, "project:1", 9, ME), -1); /* no third */
    assert_int_equal(roster_take_changes(&roster, &update), 1);
    assert_int_equal(update.entries[0].conns, 0);
    assert_int_equal(roster.entries, 2);
    roster_changes_sent(&roster, 1);
    assert_int_equal(roster.entries, 1); /* the one at 0 went, once sent */
    assert_int_equal(roster_leave(&roster, "task:1", 6, ME), -1);
    roster_fini(&roster);
    roster_fini(&roster); /* twice is harmless */
}

/* A full resend lists every pair with a connection once, in chunks of at most
 * PRESENCE_SET_MAX, and nothing at 0. */
static void
test_full_resend(void **state)
{
    (void)state;
    struct roster roster;
    roster_init(&roster);
    enum { PAIRS = 600 };
    char name[32];
    for (int i = 0; i < PAIRS; i++) {
        int len = snprintf(name, sizeof name, "project:%d", i);
        assert_int_equal(roster_join(&roster, name, (size_t)len, ME), 0);
    }
    assert_int_equal(roster_leave(&roster, "project:7", 9, ME), 0);
    roster_resend_start(&roster);
    int seen[PAIRS] = {0};
    size_t total = 0, chunks = 0;
    while (roster_take_all(&roster, &update)) {
        assert_true(update.count <= PRESENCE_SET_MAX);
        for (size_t i = 0; i < update.count; i++) {
            int n = atoi(update.entries[i].channel + 8);
            assert_true(n >= 0 && n < PAIRS);
            seen[n]++;
            assert_int_equal(update.entries[i].conns, 1);
        }
        total += update.count;
        chunks++;
        assert_true(chunks < 100);
    }
    assert_int_equal(total, PAIRS - 1);
    for (int i = 0; i < PAIRS; i++)
        assert_int_equal(seen[i], i == 7 ? 0 : 1);
    assert_true(chunks >= 3);
    roster_fini(&roster);
}

/* What a subscriber cannot name is refused, not counted. */
static void
test_bad_input(void **state)
{
    (void)state;
    struct roster roster;
    roster_init(&roster);
    char longest[CONFIG_CHANNEL_NAME_LIMIT + 1];
    memset(longest, 'a', sizeof longest);
    assert_int_equal(roster_join(&roster, longest, sizeof longest, ME), -1);
    assert_int_equal(roster_join(&roster, "", 0, ME), -1);
    assert_int_equal(roster_join(&roster, "project:1", 9, "abc"), -1);
    roster_resend_start(&roster);
    assert_int_equal(roster_take_all(&roster, &update), 0);
    roster_fini(&roster);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_changes),
        cmocka_unit_test(test_full_resend),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
