/* store.c: what every backend of the task store shares, whatever holds the rows: the status
 * names and the shaping of texts and per-minute rows into the JSON the API answers with.
 *
 * The backend itself is store_sqlite.c (the only one so far); store_backend.h declares what
 * is here for it.  Assumes nothing about the database: no SQL and no connection here.
 */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "store_backend.h"

int
store_status_is_final(const char *status)
{
    return strcmp(status, STORE_STATUS_SUCCEEDED) == 0 ||
           strcmp(status, STORE_STATUS_FAILED) == 0 || strcmp(status, STORE_STATUS_CANCELLED) == 0;
}

int
store_status_is_valid(const char *status)
{
    return strcmp(status, STORE_STATUS_QUEUED) == 0 || strcmp(status, STORE_STATUS_RUNNING) == 0 ||
           store_status_is_final(status);
}

json_t *
store_json_text(const unsigned char *text, int length)
{
    if (!text)
        return json_null();
    json_t *value = json_stringn((const char *)text, (size_t)length);
    if (value)
        return value;
    char *copy = malloc((size_t)length + 1);
    if (!copy)
        return NULL;
    for (int i = 0; i < length; i++)
        copy[i] = text[i] < 0x80 && text[i] ? (char)text[i] : '?';
    value = json_stringn(copy, (size_t)length);
    free(copy);
    return value;
}

const char *
store_cut(const char *text, size_t max, int keep_tail, int *length)
{
    size_t full = strlen(text);
    *length = (int)(full > max ? max : full);
    return keep_tail && full > max ? text + (full - max) : text;
}

json_t *
store_minutes_fill(json_t *counts, int64_t first, int64_t last, int64_t queued_now)
{
    json_t *rows = json_array();
    size_t count = json_array_size(counts), next = 0;
    /* Walk back from now: the depth at the end of minute m is today's count less the changes
     * of every minute after m. */
    int64_t depth = queued_now;
    while (next < count &&
           json_integer_value(json_object_get(json_array_get(counts, next), "minute")) > last)
        depth -= json_integer_value(json_object_get(json_array_get(counts, next++), "queued"));
    for (int64_t minute = last; rows && minute >= first; minute--) {
        json_t *row = NULL;
        if (next < count &&
            json_integer_value(json_object_get(json_array_get(counts, next), "minute")) == minute)
            row = json_array_get(counts, next++);
        char at[CLOCK_ISO8601_SIZE];
        json_t *out = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "t",
                                clock_iso8601(minute * 60000, at, sizeof at), "submitted",
                                json_integer_value(json_object_get(row, "submitted")), "started",
                                json_integer_value(json_object_get(row, "started")), "succeeded",
                                json_integer_value(json_object_get(row, "succeeded")), "failed",
                                json_integer_value(json_object_get(row, "failed")), "queued",
                                (json_int_t)(depth > 0 ? depth : 0));
        if (!out || json_array_insert_new(rows, 0, out) != 0) {
            json_decref(rows);
            return NULL;
        }
        depth -= json_integer_value(json_object_get(row, "queued"));
    }
    return rows;
}
