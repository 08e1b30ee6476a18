/* store_backend.h: the seam between store.c and the store's backends (store_sqlite.c,
 * store_pg.c): the table of a backend's functions, which store.c calls for every function of
 * store.h, and what store.c offers the backends so that each answers the same JSON for the same
 * task.  Not for the store's callers: they include store.h only.
 */
#ifndef TW_COMMON_STORE_BACKEND_H
#define TW_COMMON_STORE_BACKEND_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "store.h"

/* One backend: a function for each of store.h's, with the same contract (store.c's
 * store_X(store, ...) is store->ops->X(store, ...)).  destroy frees everything of the store. */
struct store_ops {
    void (*destroy)(struct store *store);
    int (*group_commit)(struct store *store);
    uint64_t (*sync_count)(const struct store *store);
    int (*tasks_insert)(struct store *store, struct store_submission *const *subs, size_t count);
    int (*task_get)(struct store *store, const char *id, const char *client_id, json_t **task);
    int (*task_list)(struct store *store, const char *client_id, const char *status,
                     const char *before, int limit, json_t **tasks);
    int (*task_cancel)(struct store *store, const char *id, const char *client_id, int *now_final,
                       json_t **task);
    int (*task_retry)(struct store *store, const char *id, const char *client_id, json_t **task);
    int (*task_delete)(struct store *store, const char *id, const char *client_id);
    int (*task_announce)(struct store *store, const char *id, const char *worker_id, json_t **task);
    /* Optional: task_announce for several (store_tasks_announce); NULL: one call per id. */
    int (*announce_many)(struct store *store, const char *worker_id, const char *const *ids,
                         size_t count, json_t **tasks);
    /* NULL: store.c answers store_task_announce_change with a read (SQLite). */
    int (*task_announce_change)(struct store *store, const char *id, const char *status,
                                const char *worker_id, json_t **task);
    int (*task_claimable)(struct store *store, const char *limits);
    int (*tasks_claim)(struct store *store, const char *worker_id, const char *host,
                       int64_t lease_ms, const char *limits, size_t max, json_t **tasks,
                       int *announce, int64_t *waited_ms);
    int (*leases_renew)(struct store *store, const char *worker_id, int64_t lease_ms,
                        json_t **held);
    int (*leases_expired)(struct store *store, json_t **expired);
    int (*task_requeue)(struct store *store, const char *id, int attempt, const char *message,
                        json_t **task);
    int (*task_progress)(struct store *store, const char *id, int attempt, int progress,
                         const char *message, json_t **task);
    /* The final state of attempt (status final, result_text JSON or NULL, at_ms set), or its
     * end for a retry at run_at_ms, fenced: only while that attempt runs, and with
     * expired_before > 0 only while its lease ran out before then (a take-back).  store.c
     * holds what both mean (store_task_finish, store_task_retry_later, store_task_take_back). */
    int (*finish_attempt)(struct store *store, const char *id, int attempt, const char *status,
                          const char *result_text, const char *error, const char *message,
                          const char *error_entry, int64_t at_ms, int64_t expired_before,
                          json_t **task);
    /* finish_attempt for each item (result_texts[i] its result's text), with no
     * expired_before and no row, in as few statements as it can, setting each item's rc and
     * seq (store_tasks_finish). */
    int (*finish_many)(struct store *store, struct store_finish *items,
                       const char *const *result_texts, size_t count);
    int64_t (*last_seq)(const struct store *store);
    int (*retry_attempt)(struct store *store, const char *id, int attempt, const char *error,
                         const char *error_entry, int64_t run_at_ms, int64_t expired_before,
                         json_t **task);
    int (*task_check)(struct store *store, const char *id, int attempt);
    int (*worker_heartbeat)(struct store *store, const char *worker_id, int concurrency);
    int (*worker_remove)(struct store *store, const char *worker_id);
    int (*workers_alive)(struct store *store, int64_t stale_after_ms);
    int (*queue_depths)(struct store *store, json_t **depths);
    int (*tasks_prune)(struct store *store, int64_t keep_ms);
    int (*transaction_begin)(struct store *store);
    int (*transaction_commit)(struct store *store);
    void (*transaction_rollback)(struct store *store);
    int (*worker_durability)(struct store *store);
    int (*check_writable)(struct store *store);
    int (*problem)(const struct store *store);
    int (*admin_task_get)(struct store *store, const char *id, json_t **task);
    int (*admin_task_list)(struct store *store, const struct store_admin_filter *filter,
                           json_t **tasks, int64_t *next);
    int (*admin_status)(struct store *store, json_t **workers, json_t **queues);
    int (*admin_stats)(struct store *store, int minutes, json_t **rows, json_t **durations);
    /* channel history: items in their locking order (store.c sorts them, store_history_order) */
    int (*history_append)(struct store *store, struct store_history_item *const *items,
                          size_t count);
    int (*history_read)(struct store *store, const char *channel, int64_t since, int limit,
                        struct store_history_page *page);
    int (*history_prune)(struct store *store);

    /* Presence (store.h): the steps store.c's store_presence_apply and _sweep are made of,
     * each one statement, inside the caller's transaction.
     *   presence_lock     wait for the presence changes of every other connection to end (the
     *                     transaction's own: PostgreSQL's advisory lock; SQLite's writer lock
     *                     already is one)
     *   presence_version  raise channel's version to max(version + 1, now_ms): *version
     *   presence_put      the row (channel, client, relay) to conns at seq and expires_at,
     *                     unless it has a seq as high: *before its conns until now (-1: no
     *                     row), *written 1 when it changed
     *   presence_total    the sum of the client's conns in channel over every relay
     *   presence_renew    every row of relay with conns set at seq since or later to expires_at
     *   presence_channels the channels (new array of names, in order, at most limit) of the
     *                     rows of relay, or with relay NULL of those expired before now_ms
     *   presence_drop     delete channel's rows of relay (NULL: those expired before now_ms):
     *                     *dropped a new array of [client id, conns]
     *   presence_list     store_presence_list
     *   presence_count    the rows with conns, into *rows
     *   presence_forget   the versions of channels without rows last raised before before_ms */
    int (*presence_lock)(struct store *store);
    int (*presence_version)(struct store *store, const char *channel, int64_t now_ms,
                            int64_t *version);
    int (*presence_put)(struct store *store, const char *relay_id,
                        const struct presence_entry *entry, int64_t seq, int64_t expires_at,
                        int64_t *before, int *written);
    int (*presence_total)(struct store *store, const char *channel, const char *client_id,
                          int64_t *total);
    int (*presence_renew)(struct store *store, const char *relay_id, int64_t since,
                          int64_t expires_at);
    int (*presence_channels)(struct store *store, const char *relay_id, int64_t now_ms, int limit,
                             json_t **channels);
    int (*presence_drop)(struct store *store, const char *channel, const char *relay_id,
                         int64_t now_ms, json_t **dropped);
    int (*presence_list)(struct store *store, const char *channel, json_t **clients,
                         int64_t *version);
    int (*presence_count)(struct store *store, int64_t *rows);
    int (*presence_forget)(struct store *store, int64_t before_ms);
};

/* The part of every backend's store that store.c sees: a backend's own struct begins with it. */
struct store {
    const struct store_ops *ops;
};

/* Each backend's store_new (store.h); caller owns, free with store_destroy(). */
struct store *store_sqlite_new(const char *path, int busy_timeout_ms, char *err, size_t errlen);
struct store *store_pg_new(const char *url, int busy_timeout_ms, char *err, size_t errlen);

/* A JSON string of text (length bytes), or null for NULL text; bytes that are not valid UTF-8
 * turn the non-ASCII bytes into '?', since exec programs can write anything to stderr.  New
 * reference, or NULL when out of memory. */
json_t *store_json_text(const unsigned char *text, int length);

/* text cut to at most max bytes, keeping the head (keep_tail 0) or the tail; *length is the
 * part's length.  Borrowed from text. */
const char *store_cut(const char *text, size_t max, int keep_tail, int *length);

#define STORE_WORKER_FORGET_MS 3600000 /* a worker silent this long is dropped from workers */
#define STORE_MINUTES_KEEP (2 * STORE_STATS_MINUTES_MAX) /* minutes of task_minutes kept */

/* One row of a result as a backend reads it: the text of each column (NULL for SQL NULL, its
 * length in *length), borrowed until the backend's next step.  Every JSON shape the store
 * answers is built from such a row by one function below, whichever backend read it; integers
 * are decimal text, flags "1"/"0" (SQLite) or "t"/"f" (PostgreSQL). */
struct store_row {
    const char *(*text)(const struct store_row *row, int column, int *length);
    /* Optional: an integer column's value (SQL NULL: 0) without its text, where the backend
     * holds it as a number (SQLite: a task row has nine, and their text costs an allocation
     * and a conversion each). */
    int64_t (*integer)(const struct store_row *row, int column, int *null);
    void *source; /* the backend's statement or result */
    int index;    /* the row's number in source, where the backend needs one */
};

/* The columns every backend's task statements return first, in this order (store_row_task). */
#define STORE_TASK_COLUMNS                                                                         \
    "id, client_id, type, name, params, status, progress, message, result, error, attempts, "      \
    "seq, created_at, started_at, finished_at, max_attempts, priority, errors, run_at, channels"
#define STORE_TASK_SEQ_COLUMN 11   /* seq's place in STORE_TASK_COLUMNS */
#define STORE_TASK_COLUMN_COUNT 20 /* columns of STORE_TASK_COLUMNS; what a row adds follows */
/* Schema 4 (SQLite), 3 (PostgreSQL): the channels a task's events also go to, a JSON array of
 * channel names (common/channel.h), '[]' for none and for every task made before. */
#define STORE_ADD_CHANNELS "ALTER TABLE tasks ADD COLUMN channels TEXT NOT NULL DEFAULT '[]';"
#define STORE_TEXT_(x) #x
#define STORE_TEXT(x) STORE_TEXT_(x)
#define STORE_ANNOUNCE_SETTLE_TEXT STORE_TEXT(STORE_ANNOUNCE_SETTLE_MS)
/* Schema 5 (SQLite), 4 (PostgreSQL): which worker announced a queued task, and when (ms since
 * the epoch); NULL for a task no announcement named (claimed unannounced, or made before). */
#define STORE_ADD_ANNOUNCER(time)                                                                  \
    "ALTER TABLE tasks ADD COLUMN announced_by TEXT;"                                              \
    "ALTER TABLE tasks ADD COLUMN announced_at " time ";"
/* A claim's condition (SQL, with the claiming worker and the claim's time as its parameters):
 * a task another worker announced may be claimed STORE_ANNOUNCE_SETTLE_MS after that
 * announcement, never sooner (store_task_announce says why). */
#define STORE_SETTLED(worker, now)                                                                 \
    " AND (q.announced_by IS NULL OR q.announced_by = " worker " OR q.announced_at <= " now        \
    " - " STORE_ANNOUNCE_SETTLE_TEXT ")"

/* Schema 6 (SQLite), 5 (PostgreSQL): channel history (store.h), with time the backend's type
 * of ms since the epoch.  A stream's expires_at is its last message's: pruning deletes it
 * once that has passed and no message of it is left.  Every statement on channel_history
 * names its channel, or its expiry (the prune), so each has an index. */
#define STORE_HISTORY_TABLES(time)                                                                 \
    "CREATE TABLE IF NOT EXISTS channel_streams ("                                                 \
    " channel TEXT PRIMARY KEY, epoch TEXT NOT NULL, last_offset " time " NOT NULL,"               \
    " updated_at " time " NOT NULL, expires_at " time " NOT NULL);"                                \
    "CREATE INDEX IF NOT EXISTS channel_streams_expiry ON channel_streams (expires_at);"           \
    "CREATE TABLE IF NOT EXISTS channel_history ("                                                 \
    " channel TEXT NOT NULL, message_offset " time " NOT NULL, at " time " NOT NULL,"              \
    " expires_at " time " NOT NULL, payload TEXT NOT NULL,"                                        \
    " PRIMARY KEY (channel, message_offset));"                                                     \
    "CREATE INDEX IF NOT EXISTS channel_history_expiry ON channel_history (expires_at);"

/* A new random epoch (16 hex digits) into out.  0 or TW_E_INTERNAL. */
int store_history_epoch(char out[STORE_EPOCH_SIZE]);

/* Builders of the store's JSON shapes from a row; each a new object, or NULL when out of memory.
 *   task       STORE_TASK_COLUMNS: the task object of store.h
 *   expired    STORE_TASK_COLUMNS, worker_id, worker_host, cancel_requested: the task with
 *              "worker", "host" and "cancel_requested"
 *   admin_task STORE_TASK_COLUMNS, worker_id, seqno: the task with "worker_id" and "seqno"
 *   held       id, attempts
 *   depth      type, status, count
 *   worker     id, host, pid, concurrency, heartbeat_at (ms): with "heartbeat_age_ms" and an
 *              empty "running"
 *   running    worker_id, id, type, client_id, attempts, started_at
 *   queue      type, queued, running
 *   minute     minute, submitted, started, succeeded, failed, queued
 *   duration   type, count, p50_ms, p99_ms
 *   history    message_offset, payload: {"offset", "payload"} (a message of a channel) */
json_t *store_row_task(const struct store_row *row);
json_t *store_row_expired(const struct store_row *row);
json_t *store_row_admin_task(const struct store_row *row);
json_t *store_row_held(const struct store_row *row);
json_t *store_row_depth(const struct store_row *row);
json_t *store_row_worker(const struct store_row *row);
json_t *store_row_running(const struct store_row *row);
json_t *store_row_queue(const struct store_row *row);
json_t *store_row_minute(const struct store_row *row);
json_t *store_row_duration(const struct store_row *row);
json_t *store_row_history(const struct store_row *row);
/* Presence: a row's first column, a channel's name, as a JSON string; and a dropped row, its
 * client id and connections, as [client id, conns]. */
json_t *store_row_presence_channel(const struct store_row *row);
json_t *store_row_presence_dropped(const struct store_row *row);

/* Column column of row as an integer (0 for NULL or not a number), and as a flag. */
int64_t store_row_integer(const struct store_row *row, int column);
int store_row_flag(const struct store_row *row, int column);

/* Each task of running (store_row_running's, borrowed) into the "running" array of its worker
 * in workers (store_row_worker's), without its worker_id; a task whose worker sent no heartbeat
 * is left out (the lease sweep takes it back). */
void store_workers_running(json_t *workers, const json_t *running);

/* The before_seq of the admin page after tasks (a page of limit store_row_admin_task objects),
 * or 0 when tasks was the last page. */
int64_t store_admin_next(const json_t *tasks, int limit);

/* The per-minute counts counts (an array of {"minute","submitted","started","succeeded",
 * "failed","queued"}, newest first, minutes after last included; "queued" the change of the
 * queue in that minute) made into one row per minute of [first, last], oldest first, with the
 * queued depth at each minute's end, walking back from queued_now.  New array (caller owns),
 * or NULL when out of memory; counts is borrowed. */
json_t *store_minutes_fill(json_t *counts, int64_t first, int64_t last, int64_t queued_now);

/* The tasks and workers tables as every backend makes them, so the columns are one list:
 * seqno (the key that orders rows as stored), a time or counter column (ms since the epoch)
 * and a flag column (false by default) in the backend's types. */
#define STORE_TASKS_TABLE(seqno, time, flag)                                                       \
    "CREATE TABLE tasks ("                                                                         \
    " seqno " seqno ","                                                                            \
    " id TEXT NOT NULL UNIQUE,"                                                                    \
    " client_id TEXT NOT NULL,"                                                                    \
    " type TEXT NOT NULL,"                                                                         \
    " name TEXT NOT NULL DEFAULT '',"                                                              \
    " params TEXT NOT NULL DEFAULT '{}',"                                                          \
    " status TEXT NOT NULL,"                                                                       \
    " progress INTEGER NOT NULL DEFAULT 0,"                                                        \
    " message TEXT NOT NULL DEFAULT '',"                                                           \
    " result TEXT,"                                                                                \
    " error TEXT,"                                                                                 \
    " attempts INTEGER NOT NULL DEFAULT 0,"                                                        \
    " seq " time " NOT NULL DEFAULT 1,"                                                            \
    " cancel_requested " flag ","                                                                  \
    " worker_id TEXT,"                                                                             \
    " created_at " time " NOT NULL,"                                                               \
    " started_at " time ","                                                                        \
    " finished_at " time ","                                                                       \
    " max_attempts INTEGER NOT NULL DEFAULT 3,"                                                    \
    " priority INTEGER NOT NULL DEFAULT 0,"                                                        \
    " errors TEXT NOT NULL DEFAULT '[]',"                                                          \
    " run_at " time " NOT NULL DEFAULT 0,"                                                         \
    " lease_expires_at " time ","                                                                  \
    " worker_host TEXT,"                                                                           \
    " announced " flag ");"
/* Schema 5 (SQLite), 4 (PostgreSQL): presence (store.h), in the backend's integer type. */
#define STORE_PRESENCE_TABLES(integer)                                                             \
    "CREATE TABLE IF NOT EXISTS presence ("                                                        \
    " channel TEXT NOT NULL, client_id TEXT NOT NULL, relay_id TEXT NOT NULL,"                     \
    " conns INTEGER NOT NULL, seq " integer " NOT NULL, expires_at " integer " NOT NULL,"          \
    " PRIMARY KEY (channel, client_id, relay_id));"                                                \
    "CREATE INDEX IF NOT EXISTS presence_by_relay ON presence (relay_id);"                         \
    "CREATE INDEX IF NOT EXISTS presence_by_expiry ON presence (expires_at);"                      \
    "CREATE TABLE IF NOT EXISTS presence_channels ("                                               \
    " channel TEXT PRIMARY KEY, version " integer " NOT NULL);"

#define STORE_WORKERS_TABLE(time)                                                                  \
    "CREATE TABLE workers ("                                                                       \
    " id TEXT PRIMARY KEY, pid INTEGER NOT NULL, concurrency INTEGER NOT NULL,"                    \
    " started_at " time " NOT NULL, heartbeat_at " time " NOT NULL,"                               \
    " host TEXT NOT NULL DEFAULT '');"

/* items[i..count) sorted by channel (store.c): how many from i share items[i]'s channel, the
 * run a backend's history append takes at once. */
static inline size_t
store_history_run(struct store_history_item *const *items, size_t count, size_t i)
{
    size_t run = 1;
    while (i + run < count && strcmp(items[i + run]->channel, items[i]->channel) == 0)
        run++;
    return run;
}

#endif
