/* Unit tests for worker/retry.c: which ended attempts earn another, and when it starts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "worker/retry.c"

static struct config_type
type_with(unsigned retry_on, int on_lost_fail)
{
    struct config_type type;
    memset(&type, 0, sizeof type);
    type.max_attempts = 3;
    type.retry_on = retry_on;
    type.on_lost_fail = on_lost_fail;
    type.retry_base_ms = 1000;
    type.retry_max_ms = 5000;
    return type;
}

/* A task would retry past its budget, on a reason its type does not retry, or a lost one
 * would not run again. */
static void
test_allowed_follows_the_type_and_the_budget(void **state)
{
    (void)state;
    struct config_type lost_only = type_with(CONFIG_RETRY_LOST, 0);
    json_t *fresh = json_pack("{s:i, s:[]}", "max_attempts", 3, "errors");
    json_t *twice = json_pack("{s:i, s:[{}, {}]}", "max_attempts", 3, "errors");
    assert_true(retry_allowed(&lost_only, CONFIG_RETRY_LOST, fresh));
    assert_false(retry_allowed(&lost_only, CONFIG_RETRY_FAILED, fresh));
    assert_false(retry_allowed(&lost_only, CONFIG_RETRY_TIMEOUT, fresh));
    assert_false(retry_allowed(&lost_only, CONFIG_RETRY_LOST, twice)); /* the third error */
    struct config_type fail_lost = type_with(CONFIG_RETRY_FAILED, 1);
    assert_false(retry_allowed(&fail_lost, CONFIG_RETRY_LOST, fresh));
    assert_true(retry_allowed(&fail_lost, CONFIG_RETRY_FAILED, fresh));
    /* on_lost decides lost attempts, whatever retry_on lists. */
    struct config_type failed_only = type_with(CONFIG_RETRY_FAILED, 0);
    assert_true(retry_allowed(&failed_only, CONFIG_RETRY_LOST, fresh));
    assert_false(retry_allowed(NULL, CONFIG_RETRY_LOST, fresh));
    json_decref(fresh);
    json_decref(twice);
}

/* Retries would hammer a failing service in step, or wait longer than retry_max_ms. */
static void
test_backoff_doubles_with_full_jitter_up_to_the_cap(void **state)
{
    (void)state;
    struct config_type type = type_with(CONFIG_RETRY_FAILED, 0);
    assert_int_equal(retry_backoff_ms(&type, 1, 0), 0);
    assert_int_equal(retry_backoff_ms(&type, 1, 1000), 1000);
    assert_int_equal(retry_backoff_ms(&type, 1, 1001), 0);
    assert_int_equal(retry_backoff_ms(&type, 2, 2000), 2000);
    assert_int_equal(retry_backoff_ms(&type, 3, 4000), 4000);
    assert_int_equal(retry_backoff_ms(&type, 10, 5000), 5000);
    assert_int_equal(retry_backoff_ms(&type, 60, 5000), 5000);
    int64_t most = 0;
    for (int i = 0; i < 200; i++) {
        int64_t wait = retry_backoff_ms(&type, 60, retry_random());
        assert_true(wait >= 0 && wait <= 5000);
        most = wait > most ? wait : most;
    }
    assert_true(most > 2500); /* spread over the whole window */
    type.retry_base_ms = 0;
    assert_int_equal(retry_backoff_ms(&type, 3, 12345), 0);
}

/* A lost attempt would leave no record of the worker and host that died. */
static void
test_error_entry_names_attempt_worker_and_host(void **state)
{
    (void)state;
    char *text = retry_error_entry(2, "worker lost", "w1", "host-1");
    json_t *entry = json_loads(text, 0, NULL);
    assert_non_null(entry);
    assert_int_equal(json_integer_value(json_object_get(entry, "attempt")), 2);
    assert_string_equal(json_string_value(json_object_get(entry, "error")), "worker lost");
    assert_string_equal(json_string_value(json_object_get(entry, "worker")), "w1");
    assert_string_equal(json_string_value(json_object_get(entry, "host")), "host-1");
    assert_non_null(json_string_value(json_object_get(entry, "at")));
    json_decref(entry);
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allowed_follows_the_type_and_the_budget),
        cmocka_unit_test(test_backoff_doubles_with_full_jitter_up_to_the_cap),
        cmocka_unit_test(test_error_entry_names_attempt_worker_and_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
