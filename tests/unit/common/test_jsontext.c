/* Unit tests for common/jsontext.c: its text must be json_dumps(JSON_COMPACT)'s, byte for byte,
 * since every task event a browser gets is written by it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "jsontext.h"
#include "protocol.h"

/* value's text here and jansson's must be the same bytes. */
static void
assert_same_as_jansson(const json_t *value)
{
    char *ours = jsontext_dumps(value);
    char *theirs = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(ours);
    assert_non_null(theirs);
    assert_string_equal(ours, theirs);
    free(ours);
    free(theirs);
}

/* A task as the store gives it, with every kind of value an event carries. */
static void
test_a_task_is_written_as_jansson_writes_it(void **state)
{
    (void)state;
    json_t *task = json_loads(
        "{\"id\":\"0123456789abcdef0123456789abcdef\",\"client_id\":\"fedcba9876543210fedcba98765"
        "43210\",\"type\":\"sleep\",\"name\":\"r\\u00e9sum\\u00e9 \\\"quoted\\\" \\\\ / tab\\t"
        "\",\"params\":{\"duration_ms\":0,\"steps\":1,\"ratio\":0.5,\"big\":1e300,\"neg\":-"
        "9223372036854775808,\"max\":9223372036854775807,\"list\":[1,[],{},\"\\u0001\",true,false,"
        "null]},\"status\":\"running\",\"progress\":0,\"message\":\"\\u2603 snow\",\"result\":null,"
        "\"error\":null,\"attempts\":1,\"seq\":3,\"created_at\":\"2026-12-02T18:00:00.000Z\","
        "\"errors\":[],\"emoji\":\"\\ud83d\\ude00\",\"ctl\":\"\\u001f\\u007f\"}",
        0, NULL);
    assert_non_null(task);
    assert_same_as_jansson(task);
    json_decref(task);
}

/* Every scalar alone, and the keys that need escapes. */
static void
test_scalars_and_keys(void **state)
{
    (void)state;
    json_t *values[] = {json_integer(0),   json_integer(-1),
                        json_integer(42),  json_real(3.0),
                        json_real(-0.125), json_true(),
                        json_false(),      json_null(),
                        json_string(""),   json_string("a\"b\\c/d"),
                        json_object(),     json_array()};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        assert_same_as_jansson(values[i]);
        json_decref(values[i]);
    }
    json_t *keys = json_object();
    json_object_setn_new(keys, "nul\0in", 6, json_integer(1));
    json_object_set_new(keys, "quote\"key", json_integer(2));
    json_object_set_new(keys, "\xc3\xa9t\xc3\xa9", json_integer(3));
    assert_same_as_jansson(keys);
    json_decref(keys);
}

/* The event message is the object json_pack would have built, written by jansson. */
static void
test_the_event_message_is_jansson_s(void **state)
{
    (void)state;
    json_t *task = json_pack("{s:s, s:I, s:s, s:o}", "id", "0123", "seq", (json_int_t)7, "name",
                             "caf\xc3\xa9", "params", json_pack("{s:i}", "n", 1));
    char *ours = protocol_task_event(PROTOCOL_EVENT_PROGRESS, task);
    json_t *message =
        json_pack("{s:s, s:s, s:O, s:O}", "type", "task", "event", PROTOCOL_EVENT_PROGRESS, "seq",
                  json_object_get(task, "seq"), "task", task);
    char *theirs = json_dumps(message, JSON_COMPACT);
    assert_string_equal(ours, theirs);
    free(ours);
    free(theirs);
    json_decref(message);
    /* A task without seq has no event. */
    json_object_del(task, "seq");
    assert_null(protocol_task_event(PROTOCOL_EVENT_PROGRESS, task));
    json_decref(task);
}

/* A string that is not UTF-8 is refused, not written. */
static void
test_a_string_not_utf8_fails(void **state)
{
    (void)state;
    struct jsontext text = {0};
    assert_int_equal(jsontext_string(&text, "\xff", 1), -1);
    assert_null(jsontext_take(&text));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_task_is_written_as_jansson_writes_it),
        cmocka_unit_test(test_scalars_and_keys),
        cmocka_unit_test(test_the_event_message_is_jansson_s),
        cmocka_unit_test(test_a_string_not_utf8_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
