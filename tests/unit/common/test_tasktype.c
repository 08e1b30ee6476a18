/* Unit tests for common/tasktype.c: checking a submission's params against its type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "config.h"
#include "errors.h"
#include "tasktype.h"

static json_t *
validate(const struct config_type *type, const char *params_text, int expect, char *err)
{
    json_error_t json_err;
    json_t *params = params_text ? json_loads(params_text, 0, &json_err) : NULL;
    json_t *normalized = NULL;
    assert_int_equal(tasktype_validate(type, params, &normalized, err, 256), expect);
    json_decref(params);
    return normalized;
}

/* A sleep task submitted without params would fail instead of taking the defaults. */
static void
test_defaults_fill_missing_params(void **state)
{
    (void)state;
    static struct config cfg;
    config_defaults(&cfg);
    char err[256];
    json_t *params = validate(&cfg.types[0], NULL, 0, err);
    assert_int_equal(json_integer_value(json_object_get(params, "duration_ms")), 3000);
    assert_int_equal(json_integer_value(json_object_get(params, "steps")), 10);
    json_decref(params);
    params = validate(&cfg.types[0], "{\"steps\":1000}", 0, err);
    assert_int_equal(json_integer_value(json_object_get(params, "steps")), 1000);
    json_decref(params);
}

/* A bad submission would be accepted, or rejected without saying which param is wrong. */
static void
test_bad_params_name_the_param(void **state)
{
    (void)state;
    static struct config cfg;
    config_defaults(&cfg);
    char err[256];
    validate(&cfg.types[0], "{\"steps\":1001}", TW_E_BAD_PARAMS, err);
    assert_string_equal(err, "steps must be an integer 1..1000");
    validate(&cfg.types[0], "{\"steps\":\"3\"}", TW_E_BAD_PARAMS, err);
    validate(&cfg.types[0], "{\"steps\":2.5}", TW_E_BAD_PARAMS, err);
    validate(&cfg.types[0], "{\"duration_ms\":-1}", TW_E_BAD_PARAMS, err);
    validate(&cfg.types[0], "{\"color\":\"red\"}", TW_E_BAD_PARAMS, err);
    assert_non_null(strstr(err, "unknown parameter 'color'"));
    validate(&cfg.types[0], "[1,2]", TW_E_BAD_PARAMS, err);
}

/* The page's form would not know a type's parameters and their ranges. */
static void
test_describe_lists_types_and_specs(void **state)
{
    (void)state;
    static struct config cfg;
    config_defaults(&cfg);
    json_t *types = tasktype_describe(&cfg);
    assert_int_equal(json_array_size(types), 1);
    json_t *steps = json_array_get(json_object_get(json_array_get(types, 0), "params"), 1);
    assert_string_equal(json_string_value(json_object_get(steps, "name")), "steps");
    assert_int_equal(json_integer_value(json_object_get(steps, "max")), 1000);
    json_decref(types);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_fill_missing_params),
        cmocka_unit_test(test_bad_params_name_the_param),
        cmocka_unit_test(test_describe_lists_types_and_specs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
