/* fuzz_jsontext: common/jsontext.c, which writes every task event a browser gets, on any JSON
 * value a client or a program could make the store hold (params, results, names, errors).
 *
 * The input is parsed by jansson (what it refuses is not a value anyone can store); the text
 * jsontext writes of the value must be exactly json_dumps(JSON_COMPACT | JSON_ENCODE_ANY)'s,
 * and protocol_task_event of it (as a task's params) must equal jansson's text of the message
 * object it stands for. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "common/jsontext.h"
#include "common/protocol.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *value = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!value)
        return 0;
    char *ours = jsontext_dumps(value);
    char *theirs = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    FUZZ_CHECK((ours == NULL) == (theirs == NULL));
    FUZZ_CHECK(!ours || strcmp(ours, theirs) == 0);
    free(ours);
    free(theirs);

    json_t *task = json_pack("{s:s, s:I, s:O}", "id", "0123456789abcdef0123456789abcdef", "seq",
                             (json_int_t)size, "params", value);
    json_t *message =
        task ? json_pack("{s:s, s:s, s:O, s:O}", "type", "task", "event", PROTOCOL_EVENT_PROGRESS,
                         "seq", json_object_get(task, "seq"), "task", task)
             : NULL;
    if (message) {
        char *event = protocol_task_event(PROTOCOL_EVENT_PROGRESS, task);
        char *expected = json_dumps(message, JSON_COMPACT);
        FUZZ_CHECK(event && expected && strcmp(event, expected) == 0);
        free(event);
        free(expected);
    }
    json_decref(message);
    json_decref(task);
    json_decref(value);
    return 0;
}
