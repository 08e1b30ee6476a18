/* protocol.c: the one builder of task event messages, and of a channel message's position. */
#include "protocol.h"

#include <string.h>

#include "jsontext.h"
#include "store.h"

char *
protocol_task_event(const char *event, const json_t *task)
{
    /* {"type":"task","event":...,"seq":...,"task":{...}}: what json_dumps of that object
     * writes (jsontext.h), without building it. */
    static const char head[] = "{\"type\":\"task\",\"event\":";
    const json_t *seq = json_object_get(task, "seq");
    if (!event || !seq || !task)
        return NULL;
    struct jsontext text = {0};
    jsontext_raw(&text, head, sizeof head - 1);
    jsontext_string(&text, event, strlen(event));
    jsontext_raw(&text, ",\"seq\":", 7);
    jsontext_value(&text, seq);
    jsontext_raw(&text, ",\"task\":", 8);
    jsontext_value(&text, task);
    jsontext_raw(&text, "}", 1);
    return jsontext_take(&text);
}

const char *
protocol_event_for_status(const char *status)
{
    if (strcmp(status, STORE_STATUS_RUNNING) == 0)
        return PROTOCOL_EVENT_STARTED;
    if (strcmp(status, STORE_STATUS_SUCCEEDED) == 0)
        return PROTOCOL_EVENT_SUCCEEDED;
    if (strcmp(status, STORE_STATUS_FAILED) == 0)
        return PROTOCOL_EVENT_FAILED;
    if (strcmp(status, STORE_STATUS_CANCELLED) == 0)
        return PROTOCOL_EVENT_CANCELLED;
    return PROTOCOL_EVENT_QUEUED;
}

int
protocol_channel_position(json_t *message, int64_t offset, const char *epoch)
{
    if (!json_is_object(message) || !epoch)
        return -1;
    return json_object_set_new(message, "offset", json_integer((json_int_t)offset)) == 0 &&
                   json_object_set_new(message, "epoch", json_string(epoch)) == 0
               ? 0
               : -1;
}
