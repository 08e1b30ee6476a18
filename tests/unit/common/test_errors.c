/* Unit tests for common/errors.c: the error table behind every REST error reply. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "errors.h"

/* A client would get the wrong HTTP status or error code for a bad request. */
static void
test_error_rows_map_status_and_name(void **state)
{
    (void)state;
    assert_int_equal(tw_error_status(TW_E_BAD_JSON), 400);
    assert_string_equal(tw_error_name(TW_E_BAD_JSON), "bad_json");
    assert_int_equal(tw_error_status(TW_E_TOO_LARGE), 413);
    assert_int_equal(tw_error_status(TW_E_MEDIA_TYPE), 415);
    assert_int_equal(tw_error_status(TW_E_BAD_PARAMS), 422);
    assert_string_equal(tw_error_name(TW_E_UNKNOWN_TYPE), "unknown_type");
    assert_int_equal(tw_error_status(TW_E_UNAUTHORIZED), 401);
    assert_int_equal(tw_error_status(TW_E_METHOD), 405);
    assert_int_equal(tw_error_status(TW_E_IO), 500);
}

/* An unexpected code must still produce a well-formed 500, never a crash. */
static void
test_unknown_codes_are_internal(void **state)
{
    (void)state;
    assert_int_equal(tw_error_status(0), 200);
    assert_int_equal(tw_error_status(-1), 500);
    assert_int_equal(tw_error_status(12345), 500);
    assert_string_equal(tw_error_name(-99999), "internal");
    assert_true(strlen(tw_error_message(TW_E_LAST_)) > 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_rows_map_status_and_name),
        cmocka_unit_test(test_unknown_codes_are_internal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
