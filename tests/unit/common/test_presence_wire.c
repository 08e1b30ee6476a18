/* Unit tests for common/presence_wire.c: the messages of browser publish and presence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "presence_wire.h"

#define ME "0123456789abcdef0123456789abcdef"

static struct presence_update update, back;

/* A relay's update read by a pool is what the relay meant: every entry, seq, since and ttl. */
static void
test_update_round_trip(void **state)
{
    (void)state;
    memset(&update, 0, sizeof update);
    update.seq = 7;
    update.since = 3;
    update.ttl_ms = 15000;
    update.count = 2;
    snprintf(update.entries[0].channel, sizeof update.entries[0].channel, "project:42");
    snprintf(update.entries[0].client_id, sizeof update.entries[0].client_id, ME);
    update.entries[0].conns = 2;
    snprintf(update.entries[1].channel, sizeof update.entries[1].channel, "task:x");
    snprintf(update.entries[1].client_id, sizeof update.entries[1].client_id, ME);
    update.entries[1].conns = 0;
    char *text = presence_wire_update_build(&update);
    assert_non_null(text);
    char err[160];
    assert_int_equal(presence_wire_update_parse(text, strlen(text), &back, err, sizeof err), 0);
    assert_int_equal(back.seq, 7);
    assert_int_equal(back.since, 3);
    assert_int_equal(back.ttl_ms, 15000);
    assert_int_equal(back.gone, 0);
    assert_int_equal(back.count, 2);
    assert_string_equal(back.entries[0].channel, "project:42");
    assert_string_equal(back.entries[0].client_id, ME);
    assert_int_equal(back.entries[0].conns, 2);
    assert_int_equal(back.entries[1].conns, 0);
    free(text);
    update.gone = 1;
    update.count = 0;
    text = presence_wire_update_build(&update);
    assert_int_equal(presence_wire_update_parse(text, strlen(text), &back, err, sizeof err), 0);
    assert_int_equal(back.gone, 1);
    assert_int_equal(back.count, 0);
    free(text);
}

/* A pool never applies an update that is not one: anyone who reaches [zmq] tasks may send
 * bytes. */
static void
test_bad_updates_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "[]",
        "{\"seq\":1,\"since\":0,\"ttl_ms\":15000}",
        "{\"seq\":0,\"since\":0,\"ttl_ms\":15000,\"set\":[]}",
        "{\"seq\":1,\"since\":2,\"ttl_ms\":15000,\"set\":[]}",
        "{\"seq\":1,\"since\":0,\"ttl_ms\":10,\"set\":[]}",
        "{\"seq\":1,\"since\":0,\"ttl_ms\":15000,\"set\":[[\"project:1\",\"" ME "\"]]}",
        "{\"seq\":1,\"since\":0,\"ttl_ms\":15000,\"set\":[[\"project:1\",\"abc\",1]]}",
        "{\"seq\":1,\"since\":0,\"ttl_ms\":15000,\"set\":[[\"project:1\",\"" ME "\",-1]]}",
        "{\"seq\":1,\"since\":0,\"ttl_ms\":15000,\"set\":[[\"\",\"" ME "\",1]]}",
        "{\"seq\":1,\"since\":0,\"ttl_ms\":15000,\"set\":[],\"gone\":1}",
        "{\"seq\":1,\"seq\":2,\"since\":0,\"ttl_ms\":15000,\"set\":[]}",
    };
    char err[160];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (presence_wire_update_parse(bad[i], strlen(bad[i]), &back, err, sizeof err) !=
            TW_E_BAD_REQUEST)
            fail_msg("'%s' was taken", bad[i]);
    /* More entries than PRESENCE_SET_MAX. */
    size_t size = 64 + (PRESENCE_SET_MAX + 1) * 64;
    char *many = malloc(size);
    assert_non_null(many);
    size_t used = (size_t)snprintf(many, size, "{\"seq\":1,\"since\":0,\"ttl_ms\":15000,\"set\":[");
    for (int i = 0; i <= PRESENCE_SET_MAX; i++)
        used += (size_t)snprintf(many + used, size - used, "%s[\"p:%d\",\"%s\",1]", i ? "," : "",
                                 i, ME);
    snprintf(many + used, size - used, "]}");
    assert_int_equal(presence_wire_update_parse(many, strlen(many), &back, err, sizeof err),
                     TW_E_BAD_REQUEST);
    free(many);
    assert_true(presence_wire_relay_id_valid("host-12-abcd0123", 16));
    assert_false(presence_wire_relay_id_valid("", 0));
    assert_false(presence_wire_relay_id_valid("a b", 3));
    assert_false(presence_wire_relay_id_valid("a\0b", 3));
}

/* Subscribers read a browser's publish and a presence event as the protocol says. */
static void
test_signal_and_event(void **state)
{
    (void)state;
    json_t *data = json_pack("{s:b}", "typing", 1);
    char *signal = presence_wire_signal("project:42", 10, ME, data);
    assert_string_equal(signal, "{\"type\":\"message\",\"channel\":\"project:42\",\"from\":\"" ME
                                "\",\"data\":{\"typing\":true}}");
    free(signal);
    json_decref(data);
    char *event = presence_wire_event("project:42", ME, PRESENCE_ACTION_JOIN, 2, 99);
    assert_string_equal(event, "{\"type\":\"presence\",\"channel\":\"project:42\",\"client_id\":\"" ME
                               "\",\"action\":\"join\",\"connections\":2,\"version\":99}");
    free(event);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_update_round_trip),
        cmocka_unit_test(test_bad_updates_are_refused),
        cmocka_unit_test(test_signal_and_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
