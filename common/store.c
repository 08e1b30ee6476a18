/* store.c: the task store's one interface over its backends (store_sqlite.c, store_pg.c):
 * store_new picks the backend, every other function of store.h calls the store's own
 * (store_backend.h's table); and what every backend shares, whatever holds the rows: the
 * status names and the shaping of texts and per-minute rows into the JSON the API answers with.
 * Assumes nothing about the database: no SQL and no connection here.
 */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "errors.h"
#include "store_backend.h"
#include "token.h"

struct store_options
store_options_of(const struct config *cfg)
{
    return (struct store_options){.backend = cfg->store_backend == CONFIG_STORE_POSTGRESQL
                                                 ? STORE_BACKEND_POSTGRESQL
                                                 : STORE_BACKEND_SQLITE,
                                  .path = cfg->database,
                                  .url = cfg->store_url,
                                  .busy_timeout_ms = cfg->busy_timeout_ms};
}

struct store *
store_new(const struct store_options *options, char *err, size_t errlen)
{
    switch (options->backend) {
    case STORE_BACKEND_SQLITE:
        return store_sqlite_new(options->path, options->busy_timeout_ms, err, errlen);
    case STORE_BACKEND_POSTGRESQL:
        return store_pg_new(options->url, options->busy_timeout_ms, err, errlen);
    }
    snprintf(err, errlen, "unknown store backend %d", (int)options->backend);
    return NULL;
}

void
store_destroy(struct store **store)
{
    if (!store || !*store)
        return;
    (*store)->ops->destroy(*store);
    *store = NULL;
}

int
store_group_commit(struct store *store)
{
    return store->ops->group_commit(store);
}

uint64_t
store_sync_count(const struct store *store)
{
    return store->ops->sync_count(store);
}

int
store_tasks_insert(struct store *store, struct store_submission *const *subs, size_t count)
{
    return store->ops->tasks_insert(store, subs, count);
}

int
store_task_get(struct store *store, const char *id, const char *client_id, json_t **task)
{
    return store->ops->task_get(store, id, client_id, task);
}

int
store_task_list(struct store *store, const char *client_id, const char *status, const char *before,
                int limit, json_t **tasks)
{
    return store->ops->task_list(store, client_id, status, before, limit, tasks);
}

int
store_task_cancel(struct store *store, const char *id, const char *client_id, int *now_final,
                  json_t **task)
{
    return store->ops->task_cancel(store, id, client_id, now_final, task);
}

int
store_task_retry(struct store *store, const char *id, const char *client_id, json_t **task)
{
    return store->ops->task_retry(store, id, client_id, task);
}

int
store_task_delete(struct store *store, const char *id, const char *client_id)
{
    return store->ops->task_delete(store, id, client_id);
}

int
store_task_announce(struct store *store, const char *id, const char *worker_id, json_t **task)
{
    return store->ops->task_announce(store, id, worker_id, task);
}

int
store_tasks_announce(struct store *store, const char *worker_id, const char *const *ids,
                     size_t count, json_t **tasks)
{
    if (store->ops->announce_many && count > 1)
        return store->ops->announce_many(store, worker_id, ids, count, tasks);
    int n = 0;
    for (size_t i = 0; i < count; i++) {
        int rc = store->ops->task_announce(store, ids[i], worker_id, &tasks[n]);
        if (rc == 0)
            n++;
        else if (rc != TW_E_NOT_FOUND) {
            while (n > 0)
                json_decref(tasks[--n]);
            return rc;
        }
    }
    return n;
}

int
store_task_announce_change(struct store *store, const char *id, const char *status,
                           const char *worker_id, json_t **task)
{
    if (store->ops->task_announce_change)
        return store->ops->task_announce_change(store, id, status, worker_id, task);
    int rc = store->ops->task_get(store, id, NULL, task);
    if (rc != 0)
        return rc;
    const char *now = json_string_value(json_object_get(*task, "status"));
    if (now && strcmp(now, status) == 0)
        return 0;
    json_decref(*task);
    *task = NULL;
    return TW_E_NOT_FOUND;
}

int
store_task_claimable(struct store *store, const char *limits)
{
    return store->ops->task_claimable(store, limits);
}

int
store_tasks_claim(struct store *store, const char *worker_id, const char *host, int64_t lease_ms,
                  const char *limits, size_t max, json_t **tasks, int *announce, int64_t *waited_ms)
{
    return store->ops->tasks_claim(store, worker_id, host, lease_ms, limits, max, tasks, announce,
                                   waited_ms);
}

int
store_leases_renew(struct store *store, const char *worker_id, int64_t lease_ms, json_t **held)
{
    return store->ops->leases_renew(store, worker_id, lease_ms, held);
}

int
store_leases_expired(struct store *store, json_t **expired)
{
    return store->ops->leases_expired(store, expired);
}

/* The final state of attempt, fenced by expired_before as the ops say. */
static int
store_finish_attempt(struct store *store, const char *id, int attempt, const char *status,
                     const json_t *result, const char *error, const char *message,
                     const char *error_entry, int64_t at_ms, int64_t expired_before, json_t **task)
{
    if (!store_status_is_final(status))
        return TW_E_INTERNAL;
    char *result_text = NULL;
    if (result && !json_is_null(result)) {
        result_text = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!result_text)
            return TW_E_NOMEM;
    }
    int rc = store->ops->finish_attempt(store, id, attempt, status, result_text, error, message,
                                        error_entry, at_ms > 0 ? at_ms : clock_now_ms(),
                                        expired_before, task);
    free(result_text);
    return rc;
}

int
store_task_take_back(struct store *store, const char *id, int attempt, enum store_next next,
                     int64_t run_at_ms, const char *error_entry, json_t **task)
{
    /* Only while the lease is still out: a renewal that came meanwhile keeps the task. */
    int64_t now = clock_now_ms();
    switch (next) {
    case STORE_NEXT_RETRY:
        return store->ops->retry_attempt(store, id, attempt, "worker lost", error_entry, run_at_ms,
                                         now, task);
    case STORE_NEXT_FAIL:
        return store_finish_attempt(store, id, attempt, STORE_STATUS_FAILED, NULL, "worker lost",
                                    "failed", error_entry, now, now, task);
    case STORE_NEXT_CANCEL:
        return store_finish_attempt(store, id, attempt, STORE_STATUS_CANCELLED, NULL, NULL,
                                    "cancelled", NULL, now, now, task);
    }
    return TW_E_INTERNAL;
}

int
store_task_requeue(struct store *store, const char *id, int attempt, const char *message,
                   json_t **task)
{
    return store->ops->task_requeue(store, id, attempt, message, task);
}

int
store_task_progress(struct store *store, const char *id, int attempt, int progress,
                    const char *message, json_t **task)
{
    return store->ops->task_progress(store, id, attempt, progress, message, task);
}

int
store_task_finish(struct store *store, const char *id, int attempt, const char *status,
                  const json_t *result, const char *error, const char *message,
                  const char *error_entry, int64_t at_ms, json_t **task)
{
    return store_finish_attempt(store, id, attempt, status, result, error, message, error_entry,
                                at_ms, 0, task);
}

int
store_tasks_finish(struct store *store, struct store_finish *items, size_t count)
{
    char *texts[count > 0 ? count : 1];
    int rc = 0;
    for (size_t i = 0; i < count; i++) {
        texts[i] = NULL;
        if (!store_status_is_final(items[i].status))
            rc = TW_E_INTERNAL;
        else if (items[i].result && !json_is_null(items[i].result) &&
                 !(texts[i] = json_dumps(items[i].result, JSON_COMPACT | JSON_ENCODE_ANY)))
            rc = TW_E_NOMEM;
        if (items[i].at_ms <= 0)
            items[i].at_ms = clock_now_ms();
    }
    if (rc == 0 && count > 0)
        rc = store->ops->finish_many(store, items, (const char *const *)texts, count);
    for (size_t i = 0; i < count; i++)
        free(texts[i]);
    return rc;
}

int64_t
store_last_seq(const struct store *store)
{
    return store->ops->last_seq(store);
}

int
store_task_retry_later(struct store *store, const char *id, int attempt, const char *error,
                       const char *error_entry, int64_t run_at_ms, json_t **task)
{
    return store->ops->retry_attempt(store, id, attempt, error, error_entry, run_at_ms, 0, task);
}

int
store_task_check(struct store *store, const char *id, int attempt)
{
    return store->ops->task_check(store, id, attempt);
}

int
store_worker_heartbeat(struct store *store, const char *worker_id, int concurrency)
{
    return store->ops->worker_heartbeat(store, worker_id, concurrency);
}

int
store_worker_remove(struct store *store, const char *worker_id)
{
    return store->ops->worker_remove(store, worker_id);
}

int
store_workers_alive(struct store *store, int64_t stale_after_ms)
{
    return store->ops->workers_alive(store, stale_after_ms);
}

int
store_queue_depths(struct store *store, json_t **depths)
{
    return store->ops->queue_depths(store, depths);
}

int
store_tasks_prune(struct store *store, int64_t keep_ms)
{
    return store->ops->tasks_prune(store, keep_ms);
}

int
store_transaction_begin(struct store *store)
{
    return store->ops->transaction_begin(store);
}

int
store_transaction_commit(struct store *store)
{
    return store->ops->transaction_commit(store);
}

void
store_transaction_rollback(struct store *store)
{
    store->ops->transaction_rollback(store);
}

int
store_worker_durability(struct store *store)
{
    return store->ops->worker_durability(store);
}

int
store_check_writable(struct store *store)
{
    return store->ops->check_writable(store);
}

int
store_problem(const struct store *store)
{
    return store->ops->problem(store);
}

int
store_admin_task_get(struct store *store, const char *id, json_t **task)
{
    return store->ops->admin_task_get(store, id, task);
}

int
store_admin_task_list(struct store *store, const struct store_admin_filter *filter, json_t **tasks,
                      int64_t *next)
{
    return store->ops->admin_task_list(store, filter, tasks, next);
}

int
store_admin_status(struct store *store, json_t **workers, json_t **queues)
{
    return store->ops->admin_status(store, workers, queues);
}

int
store_admin_stats(struct store *store, int minutes, json_t **rows, json_t **durations)
{
    return store->ops->admin_stats(store, minutes, rows, durations);
}

/* ---- channel history ---- */

/* Items by channel name (byte order), then by their place in the batch. */
static int
store_history_compare(const void *a, const void *b)
{
    const struct store_history_item *x = *(struct store_history_item *const *)a;
    const struct store_history_item *y = *(struct store_history_item *const *)b;
    int by_name = strcmp(x->channel, y->channel);
    return by_name ? by_name : (x < y ? -1 : x > y);
}

int
store_history_append(struct store *store, struct store_history_item *items, size_t count)
{
    if (count == 0 || count > STORE_HISTORY_BATCH_MAX)
        return TW_E_INTERNAL;
    /* The locking order of store.h: one stream row after another by name, so the backends
     * take a channel's messages together and two batches never wait crosswise. */
    struct store_history_item *order[STORE_HISTORY_BATCH_MAX];
    for (size_t i = 0; i < count; i++) {
        if (!items[i].channel || !items[i].payload || items[i].keep < 1 || items[i].ttl_ms < 1)
            return TW_E_INTERNAL;
        order[i] = &items[i];
    }
    qsort(order, count, sizeof order[0], store_history_compare);
    return store->ops->history_append(store, order, count);
}

int
store_history_read(struct store *store, const char *channel, int64_t since, int limit,
                   struct store_history_page *page)
{
    *page = (struct store_history_page){.oldest_offset = 1}; /* no stream: none kept yet */
    if (since < 0 || limit < 1)
        return TW_E_BAD_REQUEST;
    return store->ops->history_read(store, channel, since, limit, page);
}

int
store_history_prune(struct store *store)
{
    return store->ops->history_prune(store);
}

int
store_history_epoch(char out[STORE_EPOCH_SIZE])
{
    char id[TOKEN_ID_SIZE];
    if (token_random_id(id) != 0)
        return TW_E_INTERNAL;
    memcpy(out, id, STORE_EPOCH_SIZE - 1);
    out[STORE_EPOCH_SIZE - 1] = '\0';
    return 0;
}

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

/* An integer column's value (SQL NULL: 0, *null set), from the backend's number where it has
 * one, else from its text. */
static int64_t
row_integer_or_null(const struct store_row *row, int column, int *null)
{
    if (row->integer)
        return row->integer(row, column, null);
    int length;
    const char *text = row->text(row, column, &length);
    *null = !text;
    return text ? strtoll(text, NULL, 10) : 0;
}

int64_t
store_row_integer(const struct store_row *row, int column)
{
    int null;
    return row_integer_or_null(row, column, &null);
}

int
store_row_flag(const struct store_row *row, int column)
{
    int length;
    const char *text = row->text(row, column, &length);
    return text && (text[0] == 't' || (text[0] >= '1' && text[0] <= '9'));
}

static json_t *
row_text(const struct store_row *row, int column)
{
    int length = 0;
    const char *text = row->text(row, column, &length);
    return store_json_text((const unsigned char *)text, length);
}

/* A time column (ms since the epoch) as ISO 8601, or null. */
static json_t *
row_time(const struct store_row *row, int column)
{
    int null;
    int64_t ms = row_integer_or_null(row, column, &null);
    if (null)
        return json_null();
    char stamp[CLOCK_ISO8601_SIZE];
    return json_string_nocheck(clock_iso8601(ms, stamp, sizeof stamp)); /* ASCII */
}

/* A JSON text column parsed, or null (also for text that is not JSON). */
static json_t *
row_document(const struct store_row *row, int column)
{
    int length = 0;
    const char *text = row->text(row, column, &length);
    if (!text)
        return json_null();
    /* The empty list and object (a task's errors and channels, mostly) without the parser's
     * set-up, a tenth of a claim's row. */
    if (length == 2 && text[0] == '[' && text[1] == ']')
        return json_array();
    if (length == 2 && text[0] == '{' && text[1] == '}')
        return json_object();
    json_error_t error;
    json_t *value = json_loadb(text, (size_t)length, JSON_DECODE_ANY, &error);
    return value ? value : json_null();
}

static json_int_t
row_integer(const struct store_row *row, int column)
{
    return (json_int_t)store_row_integer(row, column);
}

json_t *
store_row_task(const struct store_row *row)
{
    json_t *errors = row_document(row, 17);
    if (!json_is_array(errors)) {
        json_decref(errors);
        errors = json_array();
    }
    json_t *channels = row_document(row, 19);
    if (!json_is_array(channels)) {
        json_decref(channels);
        channels = json_array();
    }
    /* Built member by member (each task of a claim or an event passes here): json_pack would
     * parse its format and check every key's UTF-8 each time.  After a failure the values
     * still to come are released. */
    const struct {
        const char *key;
        json_t *value;
    } members[] = {
        {"id", row_text(row, 0)},
        {"client_id", row_text(row, 1)},
        {"type", row_text(row, 2)},
        {"name", row_text(row, 3)},
        {"params", row_document(row, 4)},
        {"status", row_text(row, 5)},
        {"progress", json_integer(row_integer(row, 6))},
        {"message", row_text(row, 7)},
        {"result", row_document(row, 8)},
        {"error", row_text(row, 9)},
        {"attempts", json_integer(row_integer(row, 10))},
        {"max_attempts", json_integer(row_integer(row, 15))},
        {"priority", json_integer(row_integer(row, 16))},
        {"seq", json_integer(row_integer(row, 11))},
        {"errors", errors},
        {"created_at", row_time(row, 12)},
        {"run_at", row_time(row, 18)},
        {"started_at", row_time(row, 13)},
        {"finished_at", row_time(row, 14)},
        {"channels", channels},
    };
    json_t *task = json_object();
    int ok = task != NULL;
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
        if (!ok)
            json_decref(members[i].value); /* NULL-safe */
        else if (json_object_set_new_nocheck(task, members[i].key, members[i].value) != 0)
            ok = 0; /* set_new released the value */
    if (!ok) {
        json_decref(task);
        return NULL;
    }
    return task;
}

json_t *
store_row_expired(const struct store_row *row)
{
    json_t *task = store_row_task(row);
    const int extra = STORE_TASK_COLUMN_COUNT;
    if (task && (json_object_set_new(task, "worker", row_text(row, extra)) != 0 ||
                 json_object_set_new(task, "host", row_text(row, extra + 1)) != 0 ||
                 json_object_set_new(task, "cancel_requested",
                                     json_boolean(store_row_flag(row, extra + 2))) != 0)) {
        json_decref(task);
        task = NULL;
    }
    return task;
}

json_t *
store_row_admin_task(const struct store_row *row)
{
    json_t *task = store_row_task(row);
    const int extra = STORE_TASK_COLUMN_COUNT;
    if (task &&
        (json_object_set_new(task, "worker_id", row_text(row, extra)) != 0 ||
         json_object_set_new(task, "seqno", json_integer(row_integer(row, extra + 1))) != 0)) {
        json_decref(task);
        task = NULL;
    }
    return task;
}

json_t *
store_row_held(const struct store_row *row)
{
    return json_pack("{s:o, s:I}", "id", row_text(row, 0), "attempts", row_integer(row, 1));
}

json_t *
store_row_depth(const struct store_row *row)
{
    return json_pack("{s:o, s:o, s:I}", "type", row_text(row, 0), "status", row_text(row, 1),
                     "count", row_integer(row, 2));
}

json_t *
store_row_worker(const struct store_row *row)
{
    return json_pack("{s:o, s:o, s:I, s:I, s:I, s:[]}", "id", row_text(row, 0), "host",
                     row_text(row, 1), "pid", row_integer(row, 2), "concurrency",
                     row_integer(row, 3), "heartbeat_age_ms",
                     (json_int_t)(clock_now_ms() - store_row_integer(row, 4)), "running");
}

json_t *
store_row_running(const struct store_row *row)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:I, s:o}", "worker_id", row_text(row, 0), "id",
                     row_text(row, 1), "type", row_text(row, 2), "client_id", row_text(row, 3),
                     "attempts", row_integer(row, 4), "started_at", row_time(row, 5));
}

json_t *
store_row_queue(const struct store_row *row)
{
    return json_pack("{s:o, s:I, s:I}", "type", row_text(row, 0), "queued", row_integer(row, 1),
                     "running", row_integer(row, 2));
}

json_t *
store_row_minute(const struct store_row *row)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "minute", row_integer(row, 0), "submitted",
                     row_integer(row, 1), "started", row_integer(row, 2), "succeeded",
                     row_integer(row, 3), "failed", row_integer(row, 4), "queued",
                     row_integer(row, 5));
}

json_t *
store_row_duration(const struct store_row *row)
{
    return json_pack("{s:o, s:I, s:I, s:I}", "type", row_text(row, 0), "count", row_integer(row, 1),
                     "p50_ms", row_integer(row, 2), "p99_ms", row_integer(row, 3));
}

json_t *
store_row_history(const struct store_row *row)
{
    return json_pack("{s:I, s:o}", "offset", row_integer(row, 0), "payload", row_text(row, 1));
}

json_t *
store_row_presence_channel(const struct store_row *row)
{
    return row_text(row, 0);
}

json_t *
store_row_presence_dropped(const struct store_row *row)
{
    return json_pack("[o, I]", row_text(row, 0), row_integer(row, 1));
}

void
store_workers_running(json_t *workers, const json_t *running)
{
    size_t i, j;
    json_t *task, *worker;
    json_array_foreach(running, i, task)
    {
        const char *owner = json_string_value(json_object_get(task, "worker_id"));
        json_array_foreach(workers, j, worker)
        {
            const char *id = json_string_value(json_object_get(worker, "id"));
            if (owner && id && strcmp(owner, id) == 0) {
                json_t *copy = json_copy(task);
                json_object_del(copy, "worker_id");
                json_array_append_new(json_object_get(worker, "running"), copy);
                break;
            }
        }
    }
}

int64_t
store_admin_next(const json_t *tasks, int limit)
{
    if (limit < 1 || json_array_size(tasks) != (size_t)limit)
        return 0;
    return json_integer_value(json_object_get(json_array_get(tasks, (size_t)limit - 1), "seqno"));
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

/* ---- presence (store.h) ---- */

/* The channel version of name in versions (an object of name -> version), taking it (raising
 * it, and with it the channel's lock) the first time.  0 or a negative code. */
static int
store_presence_take(struct store *store, json_t *versions, const char *channel, int64_t now_ms,
                    int64_t *version)
{
    json_t *known = json_object_get(versions, channel);
    if (known) {
        *version = json_integer_value(known);
        return 0;
    }
    int rc = store->ops->presence_version(store, channel, now_ms, version);
    if (rc == 0 && json_object_set_new(versions, channel, json_integer(*version)) != 0)
        rc = TW_E_NOMEM;
    return rc;
}

/* Append {"channel","client_id","before","after","version"} to changes when before != after. */
static int
store_presence_change(json_t *changes, const char *channel, const char *client_id, int64_t before,
                      int64_t after, int64_t version)
{
    if (before == after)
        return 0;
    return json_array_append_new(changes, json_pack("{s:s, s:s, s:I, s:I, s:I}", "channel", channel,
                                                    "client_id", client_id, "before",
                                                    (json_int_t)before, "after", (json_int_t)after,
                                                    "version", (json_int_t)version)) == 0
               ? 0
               : TW_E_NOMEM;
}

/* Remove the rows of each channel of channels (names in order) that belong to relay_id (NULL:
 * that expired before now_ms), the channels taken first in that order; their changes into
 * changes. */
static int
store_presence_drop_all(struct store *store, const json_t *channels, const char *relay_id,
                        int64_t now_ms, json_t *versions, json_t *changes)
{
    int rc = 0;
    size_t i;
    json_t *name;
    int64_t version;
    json_array_foreach(channels, i, name)
    {
        rc = store_presence_take(store, versions, json_string_value(name), now_ms, &version);
        if (rc != 0)
            return rc;
    }
    json_array_foreach(channels, i, name)
    {
        const char *channel = json_string_value(name);
        json_t *dropped = NULL;
        rc = store->ops->presence_drop(store, channel, relay_id, now_ms, &dropped);
        if (rc != 0)
            return rc;
        /* A client may lose rows of several relays at once: sum them per client. */
        json_t *lost = json_object();
        size_t j;
        json_t *row;
        json_array_foreach(dropped, j, row)
        {
            const char *client = json_string_value(json_array_get(row, 0));
            json_int_t conns = json_integer_value(json_array_get(row, 1));
            if (lost && client && conns > 0)
                json_object_set_new(
                    lost, client,
                    json_integer(json_integer_value(json_object_get(lost, client)) + conns));
        }
        json_decref(dropped);
        if (!lost)
            return TW_E_NOMEM;
        const char *client;
        json_t *gone;
        version = json_integer_value(json_object_get(versions, channel));
        json_object_foreach(lost, client, gone)
        {
            int64_t after = 0;
            rc = store->ops->presence_total(store, channel, client, &after);
            if (rc == 0)
                rc = store_presence_change(changes, channel, client,
                                           after + json_integer_value(gone), after, version);
            if (rc != 0)
                break;
        }
        json_decref(lost);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int
store_presence_entry_order(const void *a, const void *b)
{
    const struct presence_entry *x = *(const struct presence_entry *const *)a;
    const struct presence_entry *y = *(const struct presence_entry *const *)b;
    int by_channel = strcmp(x->channel, y->channel);
    return by_channel ? by_channel : strcmp(x->client_id, y->client_id);
}

/* The steps of store_presence_apply, inside its transaction. */
static int
store_presence_apply_steps(struct store *store, const char *relay_id,
                           const struct presence_update *update, int64_t now_ms, json_t *versions,
                           json_t *changes)
{
    if (update->gone) {
        json_t *channels = NULL;
        int rc = store->ops->presence_channels(store, relay_id, now_ms, STORE_PRESENCE_LIST_MAX,
                                               &channels);
        if (rc == 0)
            rc = store_presence_drop_all(store, channels, relay_id, now_ms, versions, changes);
        json_decref(channels);
        return rc;
    }
    const struct presence_entry *sorted[PRESENCE_SET_MAX] = {0};
    size_t count = update->count < PRESENCE_SET_MAX ? update->count : PRESENCE_SET_MAX;
    for (size_t i = 0; i < count; i++)
        sorted[i] = &update->entries[i];
    qsort(sorted, count, sizeof sorted[0], store_presence_entry_order);
    int64_t expires_at = now_ms + update->ttl_ms, version;
    int rc = 0;
    /* The channels' locks first, in name order (sorted is). */
    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = store_presence_take(store, versions, sorted[i]->channel, now_ms, &version);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        const struct presence_entry *e = sorted[i];
        int64_t before = -1, after = 0;
        int written = 0;
        rc = store->ops->presence_put(store, relay_id, e, update->seq, expires_at, &before,
                                      &written);
        if (rc != 0 || !written || (before < 0 ? 0 : before) == e->conns)
            continue;
        rc = store->ops->presence_total(store, e->channel, e->client_id, &after);
        if (rc == 0)
            rc = store_presence_change(changes, e->channel, e->client_id,
                                       after - e->conns + (before < 0 ? 0 : before), after,
                                       json_integer_value(json_object_get(versions, e->channel)));
    }
    if (rc == 0)
        rc = store->ops->presence_renew(store, relay_id, update->since, expires_at);
    return rc;
}

int
store_presence_apply(struct store *store, const char *relay_id,
                     const struct presence_update *update, int64_t now_ms, json_t **changes)
{
    json_t *versions = json_object(), *list = json_array();
    int rc = versions && list ? store_transaction_begin(store) : TW_E_NOMEM;
    if (rc == 0) {
        rc = store->ops->presence_lock(store);
        if (rc == 0)
            rc = store_presence_apply_steps(store, relay_id, update, now_ms, versions, list);
        if (rc == 0)
            rc = store_transaction_commit(store);
        else
            store_transaction_rollback(store);
    }
    json_decref(versions);
    if (rc == 0)
        *changes = list;
    else
        json_decref(list);
    return rc;
}

int
store_presence_sweep(struct store *store, int64_t now_ms, int64_t forget_before_ms,
                     json_t **changes, int64_t *rows)
{
    json_t *versions = json_object(), *list = json_array(), *channels = NULL;
    int rc = versions && list ? 0 : TW_E_NOMEM;
    /* Nothing expired and nothing to forget (most heartbeats): a read, no write transaction. */
    if (rc == 0 && forget_before_ms <= 0) {
        rc = store->ops->presence_channels(store, NULL, now_ms, 1, &channels);
        if (rc == 0 && json_array_size(channels) == 0) {
            rc = store->ops->presence_count(store, rows);
            json_decref(channels);
            json_decref(versions);
            if (rc == 0)
                *changes = list;
            else
                json_decref(list);
            return rc;
        }
        json_decref(channels);
        channels = NULL;
    }
    if (rc == 0)
        rc = store_transaction_begin(store);
    if (rc == 0) {
        rc = store->ops->presence_lock(store);
        if (rc == 0)
            rc = store->ops->presence_channels(store, NULL, now_ms, STORE_PRESENCE_SWEEP_CHANNELS,
                                               &channels);
        if (rc == 0)
            rc = store_presence_drop_all(store, channels, NULL, now_ms, versions, list);
        if (rc == 0 && forget_before_ms > 0)
            rc = store->ops->presence_forget(store, forget_before_ms);
        if (rc == 0)
            rc = store->ops->presence_count(store, rows);
        if (rc == 0)
            rc = store_transaction_commit(store);
        else
            store_transaction_rollback(store);
    }
    json_decref(channels);
    json_decref(versions);
    if (rc == 0)
        *changes = list;
    else
        json_decref(list);
    return rc;
}

int
store_presence_list(struct store *store, const char *channel, json_t **clients, int64_t *version)
{
    return store->ops->presence_list(store, channel, clients, version);
}
