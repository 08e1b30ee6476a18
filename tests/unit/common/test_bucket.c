/* Unit tests for common/bucket.c: the token bucket behind the relay's connect rate and the
 * handler's submission rate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "bucket.h"

/* A source would be refused before its burst was spent, or let through past it. */
static void
test_burst_then_refused_with_the_wait(void **state)
{
    (void)state;
    struct bucket b;
    bucket_fill(&b, 3, 1000);
    int64_t wait = -1;
    for (int i = 0; i < 3; i++)
        assert_int_equal(bucket_take(&b, 10, 3, 1000, &wait), 1);
    assert_int_equal(bucket_take(&b, 10, 3, 1000, &wait), 0);
    assert_int_equal(wait, 100); /* 10 a second: one every 100 ms */
    assert_int_equal(bucket_take(&b, 10, 3, 1099, &wait), 0);
    assert_int_equal(wait, 1);
    assert_int_equal(bucket_take(&b, 10, 3, 1100, &wait), 1);
    assert_int_equal(bucket_take(&b, 10, 3, 1100, &wait), 0);
}

/* A client that paused would gain more than its burst, or a slow rate would never refill. */
static void
test_refill_is_capped_at_the_burst(void **state)
{
    (void)state;
    struct bucket b;
    bucket_fill(&b, 2, 0);
    assert_int_equal(bucket_take(&b, 1, 2, 0, NULL), 1);
    assert_int_equal(bucket_take(&b, 1, 2, 0, NULL), 1);
    assert_int_equal(bucket_is_full(&b, 1, 2, 0), 0);
    /* An hour later: full, two tokens, not 3600. */
    assert_int_equal(bucket_is_full(&b, 1, 2, 3600000), 1);
    assert_int_equal(bucket_take(&b, 1, 2, 3600000, NULL), 1);
    assert_int_equal(bucket_take(&b, 1, 2, 3600000, NULL), 1);
    int64_t wait = 0;
    assert_int_equal(bucket_take(&b, 1, 2, 3600000, &wait), 0);
    assert_int_equal(wait, 1000);
    /* Half a token's worth, twice, makes one. */
    assert_int_equal(bucket_take(&b, 1, 2, 3600500, NULL), 0);
    assert_int_equal(bucket_take(&b, 1, 2, 3601000, NULL), 1);
    /* A bucket from a zero stamp (a row never written) and a huge rate do not overflow. */
    struct bucket old = {0, 0};
    assert_int_equal(bucket_take(&old, 1000000, 1000000, INT64_MAX / 2, NULL), 1);
    assert_int_equal(old.units, (int64_t)1000000 * BUCKET_UNIT - BUCKET_UNIT);
}

/* A clock that stepped back would hand out tokens, or rate 0 would refuse everything. */
static void
test_clock_going_back_and_no_limit(void **state)
{
    (void)state;
    struct bucket b;
    bucket_fill(&b, 1, 5000);
    assert_int_equal(bucket_take(&b, 1, 1, 5000, NULL), 1);
    assert_int_equal(bucket_take(&b, 1, 1, 1000, NULL), 0);
    assert_int_equal(b.at_ms, 5000);
    assert_int_equal(bucket_take(&b, 1, 1, 5999, NULL), 0);
    assert_int_equal(bucket_take(&b, 1, 1, 6000, NULL), 1);
    for (int i = 0; i < 100; i++)
        assert_int_equal(bucket_take(&b, 0, 1, 6000, NULL), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refused_with_the_wait),
        cmocka_unit_test(test_refill_is_capped_at_the_burst),
        cmocka_unit_test(test_clock_going_back_and_no_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
