/* Unit tests for common/clock.c: the ISO 8601 text of every timestamp in rows, events and logs,
 * and its parse for run_at. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "clock.h"

/* A timestamp written with a wrong field, padding or millisecond would reach every client. */
static void
test_iso8601_writes_every_field_padded(void **state)
{
    (void)state;
    char buf[CLOCK_ISO8601_SIZE];
    assert_string_equal(clock_iso8601(0, buf, sizeof buf), "1970-01-01T00:00:00.000Z");
    assert_string_equal(clock_iso8601(7, buf, sizeof buf), "1970-01-01T00:00:00.007Z");
    assert_string_equal(clock_iso8601(1764680000123, buf, sizeof buf), "2025-12-02T12:53:20.123Z");
    assert_string_equal(clock_iso8601(253402300799999, buf, sizeof buf),
                        "9999-12-31T23:59:59.999Z");
    /* Before the epoch the milliseconds count forward from the whole second before. */
    assert_string_equal(clock_iso8601(-1, buf, sizeof buf), "1969-12-31T23:59:59.999Z");
}

/* A year past 9999 or a buffer too small would be written out of bounds or cut silently. */
static void
test_iso8601_out_of_range_is_empty(void **state)
{
    (void)state;
    char buf[CLOCK_ISO8601_SIZE] = "x";
    assert_string_equal(clock_iso8601(253402300800000, buf, sizeof buf), "");
    char small[8] = "x";
    assert_string_equal(clock_iso8601(0, small, sizeof small), "");
}

/* What is written parses back to the same millisecond. */
static void
test_iso8601_round_trips(void **state)
{
    (void)state;
    char buf[CLOCK_ISO8601_SIZE];
    const int64_t samples[] = {0, 1, 999, 1000, 86399999, 951782400000, 1764680000123};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        int64_t back = -1;
        assert_int_equal(clock_parse_iso8601(clock_iso8601(samples[i], buf, sizeof buf), &back), 0);
        assert_int_equal(back, samples[i]);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso8601_writes_every_field_padded),
        cmocka_unit_test(test_iso8601_out_of_range_is_empty),
        cmocka_unit_test(test_iso8601_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
