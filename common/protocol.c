/* protocol.c: the one builder of task event messages. */
#include "protocol.h"

#include <string.h>

#include "store.h"

char *
protocol_task_event(const char *event, const json_t *task)
{
    json_t *message = json_pack("{s:s, s:s, s:O, s:O}", "type", "task", "event", event, "seq",
                                json_object_get(task, "seq"), "task", task);
    if (!message)
        return NULL;
    char *text = json_dumps(message, JSON_COMPACT);
    json_decref(message);
    return text;
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
