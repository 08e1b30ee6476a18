/* store.h: the durable task store (SQLite, WAL), the one source of truth about tasks.
 *
 * The store is also the queue: a task answered 202 is a row with status "queued" before the
 * reply is written; workers claim rows atomically, so a task runs at most once per claim and
 * a nudge lost on the wire delays a task by one scan, never loses it.  Every change of a task
 * raises its "seq" by one, so readers can order what they see.
 *
 * Task objects are JSON: id, client_id, type, name, params, status, progress (0..100),
 * message, result (JSON or null), error (string or null), attempts, seq, created_at,
 * started_at, finished_at (ISO 8601 or null).
 *
 * A struct store is one SQLite connection: use one per thread.  Every function returns 0 or
 * a negative TW_E_* code; a returned task (json_t **) is new and owned by the caller.
 */
#ifndef TW_COMMON_STORE_H
#define TW_COMMON_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_STATUS_QUEUED "queued"
#define STORE_STATUS_RUNNING "running"
#define STORE_STATUS_SUCCEEDED "succeeded"
#define STORE_STATUS_FAILED "failed"
#define STORE_STATUS_CANCELLED "cancelled"

#define STORE_LIST_DEFAULT 50   /* tasks per page when no limit is given */
#define STORE_LIST_MAX 200      /* most tasks per page */
#define STORE_MESSAGE_MAX 1024  /* bytes of a progress message kept; longer is cut */
#define STORE_ERROR_MAX 4096    /* bytes of an error text kept; longer keeps the tail */
#define STORE_NAME_MAX 200      /* bytes of a task name */

struct store;

/* Open (creating if needed) the database at path and its schema.  Caller owns; free with
 * store_destroy().  NULL with the reason in err on failure. */
struct store *store_new(const char *path, int busy_timeout_ms, char *err, size_t errlen);

/* Group commit for this connection (the handler's): its commits (store_tasks_insert,
 * store_task_cancel) return once on disk, as before, but concurrent commits of all processes
 * that turned it on share one sync of the WAL, taken outside SQLite's writer lock.  The shared
 * counters live in the database's "-queue" file.  0, or TW_E_STORE when unavailable (the
 * connection then stays synchronous=FULL, equally durable). */
int store_group_commit(struct store *store);

/* WAL syncs this connection made for group commit (for tests and measurements). */
uint64_t store_sync_count(const struct store *store);

/* Close the connection.  NULL-safe; sets *store to NULL. */
void store_destroy(struct store **store);

/* 1 when the status is final (succeeded, failed, cancelled), else 0. */
int store_status_is_final(const char *status);

/* 1 when text is one of the five statuses, else 0. */
int store_status_is_valid(const char *status);

/* One queued task (seq 1, a new id from token_ordered_id) to insert: the inputs are borrowed;
 * store_tasks_insert() fills task (a new reference the caller owns, or NULL) and rc (0 or a
 * TW_E_* code). */
struct store_submission {
    const char *client_id, *type, *name;
    const json_t *params;
    json_t *task;
    int rc;
};

/* Insert count tasks (one or more) in one transaction with one sync: each submission succeeds
 * or fails on its own (its rc), and those that succeed are on disk when this returns.  Returns 0, or
 * TW_E_STORE when the transaction as a whole failed (every rc says so and no task is kept). */
int store_tasks_insert(struct store *store, struct store_submission *const *subs, size_t count);

/* The task with id, if client_id is NULL or owns it; TW_E_NOT_FOUND otherwise. */
int store_task_get(struct store *store, const char *id, const char *client_id, json_t **task);

/* client_id's tasks, newest first: at most limit (1..STORE_LIST_MAX), only status if given,
 * only those older than the task id before if given.  *tasks is a new array. */
int store_task_list(struct store *store, const char *client_id, const char *status,
                    const char *before, int limit, json_t **tasks);

/* Cancel: a queued task becomes cancelled at once (*task has the final state, *now_final=1);
 * a running one is marked cancel-requested for its worker (*now_final=0); a finished one is
 * TW_E_CONFLICT.  client_id NULL means any owner. */
int store_task_cancel(struct store *store, const char *id, const char *client_id,
                      int *now_final, json_t **task);

/* The oldest queued task: the one store_task_claim() would take now.  TW_E_NOT_FOUND when
 * nothing is queued. */
int store_task_oldest_queued(struct store *store, json_t **task);

/* Claim the oldest queued task for worker_id: status running, attempts+1, started_at now.
 * TW_E_NOT_FOUND when nothing is queued. */
int store_task_claim(struct store *store, const char *worker_id, json_t **task);

/* Put a running task back in the queue (a worker stopping before it could finish): status
 * queued, progress 0, message as given; it keeps its place by age.  TW_E_CONFLICT if the task
 * is not running. */
int store_task_requeue(struct store *store, const char *id, const char *message, json_t **task);

/* Record progress (clamped to 0..100) and message of a running task. TW_E_CONFLICT if the
 * task is no longer running. */
int store_task_progress(struct store *store, const char *id, int progress, const char *message,
                        json_t **task);

/* Finish a running task with a final status; result (borrowed, may be NULL) and error (may be
 * NULL) are stored as given; message replaces the step message when not NULL.  Succeeded sets
 * progress to 100.  TW_E_CONFLICT if the task is not running. */
int store_task_finish(struct store *store, const char *id, const char *status,
                      const json_t *result, const char *error, const char *message,
                      json_t **task);

/* 1 if a cancel was requested for the task, 0 if not, or a negative code. */
int store_task_cancel_requested(struct store *store, const char *id);

/* Record that worker_id (running `concurrency` slots) is alive now. */
int store_worker_heartbeat(struct store *store, const char *worker_id, int concurrency);

/* Forget worker_id (clean shutdown). */
int store_worker_remove(struct store *store, const char *worker_id);

/* Number of workers whose heartbeat is younger than stale_after_ms, or a negative code. */
int store_workers_alive(struct store *store, int64_t stale_after_ms);

/* Fail every running task whose worker is gone (no heartbeat within stale_after_ms, or no
 * row), with error "worker lost".  *reaped is a new array of the failed tasks. */
int store_tasks_reap(struct store *store, int64_t stale_after_ms, json_t **reaped);

/* 0 when the database accepts a write transaction now. */
int store_check_writable(struct store *store);

#endif
