/* Unit tests for common/store_sqlite.c on a real SQLite file: the store is the queue and the truth.
 * The .c itself is included, to reach its mapping of SQLite's failures and its connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/store_sqlite.c"
#include "errors.h"
#include "tests/unit/tempdb.h"

static char dir[64];
static char path[256];

/* The SQLite store of the file at file. */
static struct store *
open_sqlite(const char *file, int busy_timeout_ms, char *err, size_t errlen)
{
    struct store_options options = {
        .backend = STORE_BACKEND_SQLITE, .path = file, .busy_timeout_ms = busy_timeout_ms};
    return store_new(&options, err, errlen);
}

/* The SQLite connection behind store. */
static struct store_sqlite *
sqlite_of(struct store *store)
{
    return (struct store_sqlite *)store;
}

static int
setup(void **state)
{
    if (tempdb_make(dir, sizeof dir, "store", path, sizeof path) != 0)
        return -1;
    char err[256];
    *state = open_sqlite(path, 1000, err, sizeof err);
    return *state ? 0 : -1;
}

static int
teardown(void **state)
{
    struct store *store = *state;
    store_destroy(&store);
    assert_null(store);
    return tempdb_remove(dir, path);
}

static const char *
text(json_t *task, const char *key)
{
    return json_string_value(json_object_get(task, key));
}

static long long
number(json_t *task, const char *key)
{
    return json_integer_value(json_object_get(task, key));
}

/* Insert one submission as given (client, type and params filled in when missing); its rc. */
static int
submit(struct store *store, struct store_submission *sub)
{
    json_t *params = json_pack("{s:i}", "steps", 3);
    if (!sub->type)
        sub->type = "sleep";
    if (!sub->name)
        sub->name = "demo";
    sub->params = params;
    if (!sub->max_attempts)
        sub->max_attempts = 3;
    struct store_submission *one = sub;
    assert_int_equal(store_tasks_insert(store, &one, 1), 0);
    json_decref(params);
    sub->params = NULL;
    return sub->rc;
}

static json_t *
insert(struct store *store, const char *client)
{
    struct store_submission sub = {.client_id = client};
    assert_int_equal(submit(store, &sub), 0);
    assert_non_null(sub.task);
    return sub.task;
}

/* Claim at most one task for worker with a lease of lease_ms: 0 with *task, or TW_E_NOT_FOUND.
 * *announce (when given) says whether its queued event was still to be published. */
static int
claim_for(struct store *store, const char *worker, int64_t lease_ms, const char *limits,
          json_t **task, int *announce)
{
    int first = 0;
    json_t *claimed = NULL;
    int n = store_tasks_claim(store, worker, "host-a", lease_ms, limits, 1, &claimed, &first);
    if (announce)
        *announce = first;
    if (n != 1)
        return n == 0 ? TW_E_NOT_FOUND : n;
    /* A claim names the task; its runner reads the rest. */
    assert_non_null(text(claimed, "client_id"));
    assert_int_equal(store_task_get(store, text(claimed, "id"), NULL, task), 0);
    assert_int_equal(number(*task, "attempts"), number(claimed, "attempts"));
    json_decref(claimed);
    return 0;
}

static int
claim(struct store *store, const char *worker, json_t **task)
{
    return claim_for(store, worker, 10000, NULL, task, NULL);
}


/* A task could run twice, out of order, or skip a state, and seq would not rise with it. */
static void
test_lifecycle_claims_oldest_once_and_raises_seq(void **state)
{
    struct store *store = *state;
    json_t *first = insert(store, "a"), *second = insert(store, "a"), *claimed = NULL, *task;
    assert_string_equal(text(first, "status"), "queued");
    assert_int_equal(number(first, "seq"), 1);

    int announce = 0;
    assert_int_equal(claim_for(store, "w1", 10000, NULL, &claimed, &announce), 0);
    assert_int_equal(announce, 1);
    assert_string_equal(text(claimed, "id"), text(first, "id"));
    assert_string_equal(text(claimed, "status"), "running");
    assert_int_equal(number(claimed, "seq"), 2);
    assert_int_equal(number(claimed, "attempts"), 1);
    assert_int_equal(number(claimed, "max_attempts"), 3);

    assert_int_equal(store_task_progress(store, text(first, "id"), 1, 150, "half", &task), 0);
    assert_int_equal(number(task, "progress"), 100);
    assert_int_equal(number(task, "seq"), 3);
    json_decref(task);

    json_t *result = json_pack("{s:i}", "ok", 1);
    assert_int_equal(store_task_finish(store, text(first, "id"), 1, STORE_STATUS_SUCCEEDED, result,
                                       NULL, "done", NULL, 0, &task),
                     0);
    json_decref(result);
    assert_string_equal(text(task, "status"), "succeeded");
    assert_int_equal(number(task, "seq"), 4);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(task, "result"), "ok")), 1);
    assert_non_null(text(task, "finished_at"));
    json_decref(task);

    /* Finished is final: no more progress, no second finish. */
    assert_int_equal(store_task_progress(store, text(first, "id"), 1, 5, "late", &task),
                     TW_E_FENCED);
    assert_int_equal(store_task_finish(store, text(first, "id"), 1, STORE_STATUS_FAILED, NULL, "x",
                                       NULL, NULL, 0, &task),
                     TW_E_FENCED);
    json_decref(claimed);

    assert_int_equal(claim(store, "w1", &claimed), 0);
    assert_string_equal(text(claimed, "id"), text(second, "id"));
    json_decref(claimed);
    assert_int_equal(claim(store, "w1", &claimed), TW_E_NOT_FOUND);
    json_decref(first);
    json_decref(second);
}

/* Cancelling would leave a queued task runnable, or lose a finished task's state. */
static void
test_cancel_queued_running_and_finished(void **state)
{
    struct store *store = *state;
    json_t *queued = insert(store, "c"), *task = NULL;
    int final = -1;
    assert_int_equal(store_task_cancel(store, text(queued, "id"), "other", &final, &task),
                     TW_E_NOT_FOUND);
    assert_int_equal(store_task_cancel(store, text(queued, "id"), "c", &final, &task), 0);
    assert_int_equal(final, 1);
    assert_string_equal(text(task, "status"), "cancelled");
    json_decref(task);
    assert_int_equal(store_task_cancel(store, text(queued, "id"), "c", &final, &task),
                     TW_E_CONFLICT);
    assert_int_equal(claim(store, "w", &task), TW_E_NOT_FOUND);

    json_t *running = insert(store, "c");
    assert_int_equal(claim(store, "w", &task), 0);
    json_decref(task);
    assert_int_equal(store_task_check(store, text(running, "id"), 1), 0);
    assert_int_equal(store_task_cancel(store, text(running, "id"), "c", &final, &task), 0);
    assert_int_equal(final, 0);
    assert_string_equal(text(task, "status"), "running");
    json_decref(task);
    assert_int_equal(store_task_check(store, text(running, "id"), 1), 1);
    json_decref(queued);
    json_decref(running);
}

/* A client would see another client's tasks, or page through them wrongly. */
static void
test_list_is_per_client_newest_first_with_cursor(void **state)
{
    struct store *store = *state;
    json_t *ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = insert(store, "lister");
    json_t *other = insert(store, "someone-else"), *page = NULL, *task = NULL;
    assert_int_equal(store_task_list(store, "lister", NULL, NULL, 2, &page), 0);
    assert_int_equal(json_array_size(page), 2);
    assert_string_equal(text(json_array_get(page, 0), "id"), text(ids[4], "id"));
    const char *cursor = text(json_array_get(page, 1), "id");
    json_t *next = NULL;
    assert_int_equal(store_task_list(store, "lister", NULL, cursor, 50, &next), 0);
    assert_int_equal(json_array_size(next), 3);
    assert_string_equal(text(json_array_get(next, 0), "id"), text(ids[2], "id"));
    json_decref(next);
    json_decref(page);
    /* The cursor's task deleted between two pages: the next page still starts below it. */
    int final = 0;
    json_t *cancelled = NULL;
    assert_int_equal(store_task_cancel(store, text(ids[2], "id"), "lister", &final, &cancelled),
                     0);
    json_decref(cancelled);
    assert_int_equal(store_task_delete(store, text(ids[2], "id"), "lister"), 0);
    /* Every older task comes; newer ones made in the cursor's millisecond may come again
     * (a client keeps the copy with the higher seq). */
    assert_int_equal(store_task_list(store, "lister", NULL, text(ids[2], "id"), 50, &page), 0);
    size_t older = 0;
    for (size_t i = 0; i < json_array_size(page); i++) {
        const char *listed = text(json_array_get(page, i), "id");
        assert_string_not_equal(listed, text(ids[2], "id"));
        older += strcmp(listed, text(ids[1], "id")) == 0 || strcmp(listed, text(ids[0], "id")) == 0;
    }
    assert_int_equal(older, 2);
    assert_string_equal(text(json_array_get(page, json_array_size(page) - 1), "id"),
                        text(ids[0], "id"));
    json_decref(page);
    assert_int_equal(store_task_list(store, "lister", "running", NULL, 50, &page), 0);
    assert_int_equal(json_array_size(page), 0);
    json_decref(page);
    assert_int_equal(store_task_list(store, "lister", NULL, NULL, 0, &page), TW_E_BAD_REQUEST);
    assert_int_equal(store_task_get(store, text(other, "id"), "lister", &task), TW_E_NOT_FOUND);
    assert_int_equal(store_task_get(store, text(other, "id"), NULL, &task), 0);
    json_decref(task);
    for (int i = 0; i < 5; i++)
        json_decref(ids[i]);
    json_decref(other);
}

/* A live worker's task would be taken from it, or a dead one's would stay running. */
static void
test_leases_renewed_hold_and_expired_are_taken_back(void **state)
{
    struct store *store = *state;
    json_t *a = insert(store, "l"), *b = insert(store, "l"), *task, *held = NULL, *expired = NULL;
    assert_int_equal(claim_for(store, "live", 10000, NULL, &task, NULL), 0);
    json_decref(task);
    assert_int_equal(claim_for(store, "dead", 1, NULL, &task, NULL), 0);
    json_decref(task);
    usleep(5000);
    assert_int_equal(store_leases_renew(store, "live", 10000, &held), 0);
    assert_int_equal(json_array_size(held), 1);
    assert_string_equal(text(json_array_get(held, 0), "id"), text(a, "id"));
    json_decref(held);
    assert_int_equal(store_leases_expired(store, &expired), 0);
    assert_int_equal(json_array_size(expired), 1);
    json_t *lost = json_array_get(expired, 0);
    assert_string_equal(text(lost, "id"), text(b, "id"));
    assert_string_equal(text(lost, "worker"), "dead");
    assert_string_equal(text(lost, "host"), "host-a");
    json_decref(expired);
    assert_int_equal(store_task_take_back(store, text(b, "id"), 1, STORE_NEXT_RETRY, 0,
                                          "{\"attempt\":1,\"error\":\"worker lost\"}", &task),
                     0);
    assert_string_equal(text(task, "status"), "queued");
    assert_int_equal(json_array_size(json_object_get(task, "errors")), 1);
    json_decref(task);
    /* The same take-back again is refused: the attempt is no longer running. */
    assert_int_equal(store_task_take_back(store, text(b, "id"), 1, STORE_NEXT_RETRY, 0, "{}", &task),
                     TW_E_FENCED);
    /* The dead worker's late writes are fenced; the next attempt's are not. */
    assert_int_equal(store_task_progress(store, text(b, "id"), 1, 50, "stale", &task), TW_E_FENCED);
    assert_int_equal(claim(store, "other", &task), 0);
    assert_string_equal(text(task, "id"), text(b, "id"));
    assert_int_equal(number(task, "attempts"), 2);
    json_decref(task);
    assert_int_equal(store_task_check(store, text(b, "id"), 1), TW_E_FENCED);
    assert_int_equal(store_task_check(store, text(b, "id"), 2), 0);
    assert_int_equal(store_task_finish(store, text(b, "id"), 1, STORE_STATUS_SUCCEEDED, NULL, NULL,
                                       NULL, NULL, 0, &task),
                     TW_E_FENCED);
    assert_int_equal(store_task_progress(store, text(b, "id"), 2, 50, "fresh", &task), 0);
    json_decref(task);
    /* A live lease is never taken back. */
    assert_int_equal(store_task_take_back(store, text(a, "id"), 1, STORE_NEXT_FAIL, 0, "{}", &task),
                     TW_E_FENCED);
    assert_int_equal(store_worker_heartbeat(store, "live", 2), 0);
    assert_int_equal(store_workers_alive(store, 5000), 1);
    assert_int_equal(store_worker_remove(store, "live"), 0);
    assert_int_equal(store_workers_alive(store, 5000), 0);
    assert_int_equal(store_check_writable(store), 0);
    json_decref(a);
    json_decref(b);
}

/* A retry would run early, be lost, or a failed attempt leave no trace. */
static void
test_retry_later_waits_for_run_at_and_records_errors(void **state)
{
    struct store *store = *state;
    json_t *queued = insert(store, "r"), *task;
    const char *id = text(queued, "id");
    assert_int_equal(claim(store, "w", &task), 0);
    json_decref(task);
    assert_int_equal(store_task_retry_later(store, id, 1, "boom", "{\"attempt\":1,\"error\":\"boom\"}",
                                            INT64_C(4102444800000), &task),
                     0);
    assert_string_equal(text(task, "status"), "queued");
    assert_string_equal(text(task, "error"), "boom");
    assert_string_equal(text(task, "run_at"), "2100-01-01T00:00:00.000Z");
    json_decref(task);
    assert_int_equal(store_task_claimable(store, NULL), 0);
    assert_int_equal(claim(store, "w", &task), TW_E_NOT_FOUND);
    /* A cancel reaches a task waiting for its retry at once. */
    int final = 0;
    assert_int_equal(store_task_cancel(store, id, "r", &final, &task), 0);
    assert_int_equal(final, 1);
    assert_string_equal(text(task, "status"), "cancelled");
    json_decref(task);
    /* Retry over REST: a new attempt, runnable now; then the next claim takes it. */
    assert_int_equal(store_task_retry(store, id, "r", &task), 0);
    assert_string_equal(text(task, "status"), "queued");
    assert_true(number(task, "max_attempts") >= 2);
    json_decref(task);
    assert_int_equal(store_task_retry(store, id, "r", &task), TW_E_CONFLICT);
    assert_int_equal(store_task_delete(store, id, "r"), TW_E_CONFLICT);
    assert_int_equal(claim(store, "w", &task), 0);
    assert_int_equal(number(task, "attempts"), 2);
    json_decref(task);
    assert_int_equal(store_task_finish(store, id, 2, STORE_STATUS_FAILED, NULL, "again", "failed",
                                       "{\"attempt\":2,\"error\":\"again\"}", 0, &task),
                     0);
    assert_int_equal(json_array_size(json_object_get(task, "errors")), 2);
    json_decref(task);
    assert_int_equal(store_task_delete(store, id, "someone-else"), TW_E_NOT_FOUND);
    assert_int_equal(store_task_delete(store, id, "r"), 0);
    assert_int_equal(store_task_get(store, id, NULL, &task), TW_E_NOT_FOUND);
    json_decref(queued);
}

/* Urgent tasks would wait behind old ones, a scheduled one start early, or a type run more
 * copies at once than its limit. */
static void
test_claim_order_schedule_and_type_limits(void **state)
{
    struct store *store = *state;
    struct store_submission low = {.client_id = "o"}, high = {.client_id = "o", .priority = 5},
                            later = {.client_id = "o", .priority = 10,
                                     .run_at_ms = INT64_C(4102444800000)},
                            other = {.client_id = "o", .type = "other"};
    assert_int_equal(submit(store, &low), 0);
    assert_int_equal(submit(store, &high), 0);
    assert_int_equal(submit(store, &later), 0);
    assert_int_equal(submit(store, &other), 0);
    const char *limits = "{\"sleep\":1}";
    json_t *task;
    assert_int_equal(claim_for(store, "w", 10000, limits, &task, NULL), 0);
    assert_string_equal(text(task, "id"), text(high.task, "id"));
    json_decref(task);
    /* sleep is at its limit of 1: the next claim skips the low sleep for the other type. */
    assert_int_equal(claim_for(store, "w", 10000, limits, &task, NULL), 0);
    assert_string_equal(text(task, "id"), text(other.task, "id"));
    json_decref(task);
    assert_int_equal(store_task_claimable(store, limits), 0);
    assert_int_equal(claim_for(store, "w", 10000, limits, &task, NULL), TW_E_NOT_FOUND);
    /* Without the limit the low one runs; the scheduled one still waits. */
    assert_int_equal(claim(store, "w", &task), 0);
    assert_string_equal(text(task, "id"), text(low.task, "id"));
    json_decref(task);
    assert_int_equal(claim(store, "w", &task), TW_E_NOT_FOUND);
    json_decref(low.task);
    json_decref(high.task);
    json_decref(later.task);
    json_decref(other.task);
}

/* A retried submission would make a second task, or a reused key run a different job. */
static void
test_idempotency_key_and_queue_bound(void **state)
{
    struct store *store = *state;
    struct store_submission first = {.client_id = "k", .idempotency_key = "key-1",
                                     .request_hash = "aa"},
                            again = first, changed = first, bounded = {.client_id = "k",
                                                                       .max_queued = 2};
    assert_int_equal(submit(store, &first), 0);
    assert_int_equal(first.replayed, 0);
    assert_int_equal(submit(store, &again), 0);
    assert_int_equal(again.replayed, 1);
    assert_string_equal(text(again.task, "id"), text(first.task, "id"));
    changed.request_hash = "bb";
    assert_int_equal(submit(store, &changed), TW_E_IDEMPOTENCY_MISMATCH);
    assert_null(changed.task);
    /* Another client's key is its own. */
    struct store_submission elsewhere = {.client_id = "k2", .idempotency_key = "key-1",
                                         .request_hash = "bb"};
    assert_int_equal(submit(store, &elsewhere), 0);
    assert_int_equal(elsewhere.replayed, 0);
    /* "k" has 1 queued task: a bound of 2 takes one more, then refuses. */
    assert_int_equal(submit(store, &bounded), 0);
    json_decref(bounded.task);
    bounded.task = NULL;
    assert_int_equal(submit(store, &bounded), TW_E_TOO_MANY_TASKS);
    json_decref(first.task);
    json_decref(again.task);
    json_decref(elsewhere.task);
}

/* A client would get its burst once per handler process instead of once, or be refused for
 * what took no token (a replayed key), or stay refused for ever. */
static void
test_submission_rate_is_one_bucket_for_every_connection(void **state)
{
    struct store *store = *state;
    char err[256];
    struct store *other = open_sqlite(path, 1000, err, sizeof err); /* another handler process */
    assert_non_null(other);
    struct store_submission subs[5];
    for (int i = 0; i < 5; i++)
        subs[i] = (struct store_submission){.client_id = "r", .submit_rate = 1, .submit_burst = 3};
    subs[0].idempotency_key = "once";
    subs[0].request_hash = "aa";
    /* Three pass, taking turns on the two connections; the fourth is refused. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(submit(i % 2 ? other : store, &subs[i]), 0);
        json_decref(subs[i].task);
    }
    assert_int_equal(submit(other, &subs[3]), TW_E_TOO_MANY_REQUESTS);
    assert_null(subs[3].task);
    assert_true(subs[3].retry_after_ms > 0 && subs[3].retry_after_ms <= 1000);
    /* A replay makes no task and takes no token; another client has its own bucket. */
    struct store_submission replay = subs[0], stranger = {.client_id = "s", .submit_rate = 1,
                                                          .submit_burst = 3};
    assert_int_equal(submit(store, &replay), 0);
    assert_int_equal(replay.replayed, 1);
    json_decref(replay.task);
    assert_int_equal(submit(store, &stranger), 0);
    json_decref(stranger.task);
    /* In one batch, a client's last token goes to the first of two. */
    subs[4].client_id = "t";
    subs[4].submit_burst = 1;
    struct store_submission a = subs[4], b = subs[4];
    struct store_submission *batch[] = {&a, &b};
    json_t *params = json_pack("{s:i}", "steps", 1);
    a.type = b.type = "sleep";
    a.params = b.params = params;
    assert_int_equal(store_tasks_insert(other, batch, 2), 0);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, TW_E_TOO_MANY_REQUESTS);
    json_decref(a.task);
    json_decref(params);
    /* Idle long enough, the client's row is pruned and it starts with a full burst. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE submit_rate SET at = 0", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_tasks_prune(store, 3600000), 0);
    for (int i = 0; i < 3; i++) {
        struct store_submission again = {.client_id = "r", .submit_rate = 1, .submit_burst = 3};
        assert_int_equal(submit(store, &again), 0);
        json_decref(again.task);
    }
    store_destroy(&other);
}

/* A task's queued event would go out twice (a restarted worker) or never. */
static void
test_announce_once(void **state)
{
    struct store *store = *state;
    json_t *queued = insert(store, "n"), *task = NULL;
    assert_int_equal(store_task_announce(store, text(queued, "id"), &task), 0);
    assert_int_equal(number(task, "seq"), 1);
    json_decref(task);
    assert_int_equal(store_task_announce(store, text(queued, "id"), &task), TW_E_NOT_FOUND);
    int announce = 1;
    assert_int_equal(claim_for(store, "w", 10000, NULL, &task, &announce), 0);
    assert_int_equal(announce, 0);
    json_decref(task);
    json_decref(queued);
}

/* Finished tasks would pile up for ever, or pruning would take unfinished ones. */
static void
test_prune_removes_only_old_finished_tasks(void **state)
{
    struct store *store = *state;
    json_t *done = insert(store, "p"), *waiting = insert(store, "p"), *task;
    assert_int_equal(claim(store, "w", &task), 0);
    json_decref(task);
    assert_int_equal(store_task_finish(store, text(done, "id"), 1, STORE_STATUS_SUCCEEDED, NULL,
                                       NULL, NULL, NULL, 0, &task),
                     0);
    json_decref(task);
    assert_int_equal(store_tasks_prune(store, 3600000), 0);
    usleep(3000);
    assert_int_equal(store_tasks_prune(store, 1), 1);
    assert_int_equal(store_task_get(store, text(done, "id"), NULL, &task), TW_E_NOT_FOUND);
    assert_int_equal(store_task_get(store, text(waiting, "id"), NULL, &task), 0);
    json_decref(task);
    json_decref(done);
    json_decref(waiting);
}

/* An upgrade would lose the tasks of an older database, or a newer one be misread. */
static void
test_schema_upgrade_and_newer_schema_refused(void **state)
{
    (void)state;
    char old_dir[64], old_path[256], err[512];
    assert_int_equal(tempdb_make(old_dir, sizeof old_dir, "schema", old_path, sizeof old_path), 0);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(old_path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE tasks (seqno INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
                     " client_id TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',"
                     " params TEXT NOT NULL DEFAULT '{}', status TEXT NOT NULL,"
                     " progress INTEGER NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '',"
                     " result TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,"
                     " seq INTEGER NOT NULL DEFAULT 1, cancel_requested INTEGER NOT NULL DEFAULT 0,"
                     " worker_id TEXT, created_at INTEGER NOT NULL, started_at INTEGER,"
                     " finished_at INTEGER);"
                     "CREATE INDEX tasks_by_status ON tasks (status, seqno);"
                     "CREATE TABLE workers (id TEXT PRIMARY KEY, pid INTEGER NOT NULL,"
                     " concurrency INTEGER NOT NULL, started_at INTEGER NOT NULL,"
                     " heartbeat_at INTEGER NOT NULL);"
                     "INSERT INTO tasks (id, client_id, type, status, created_at) VALUES"
                     " ('00000000000000000000000000000001', 'old', 'sleep', 'queued', 1000);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    struct store *upgraded = open_sqlite(old_path, 1000, err, sizeof err);
    assert_non_null(upgraded);
    json_t *task = NULL;
    assert_int_equal(claim(upgraded, "w", &task), 0);
    assert_string_equal(text(task, "id"), "00000000000000000000000000000001");
    json_decref(task);
    store_destroy(&upgraded);
    assert_int_equal(sqlite3_open(old_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_null(open_sqlite(old_path, 1000, err, sizeof err));
    assert_non_null(strstr(err, "newer than this program"));
    assert_int_equal(tempdb_remove(old_dir, old_path), 0);
}

/* The sum of key over the rows of a stats window. */
static long long
column_sum(json_t *rows, const char *key)
{
    long long sum = 0;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) sum += number(row, key);
    return sum;
}

/* The operator would see one client's tasks only, a worker without what it runs, or counts
 * that forget a deleted task or disagree with the queue. */
static void
test_admin_views_every_client_workers_and_minutes(void **state)
{
    struct store *store = *state;
    json_t *t1 = insert(store, "aaaa1111"), *t2 = insert(store, "aaaa1111");
    json_t *t3 = insert(store, "aaaa1111"), *t4 = insert(store, "bbbb2222");
    json_t *tasks = NULL, *task = NULL, *workers = NULL, *queues = NULL;
    int64_t next = -1;
    struct store_admin_filter all = {.limit = 10};
    assert_int_equal(store_admin_task_list(store, &all, &tasks, &next), 0);
    assert_int_equal(json_array_size(tasks), 4);
    assert_string_equal(text(json_array_get(tasks, 0), "id"), text(t4, "id"));
    assert_int_equal(next, 0);
    json_decref(tasks);
    /* By the start of a client id, or a task id; a page and its cursor. */
    struct store_admin_filter by_client = {.q = "bbbb", .limit = 10};
    assert_int_equal(store_admin_task_list(store, &by_client, &tasks, &next), 0);
    assert_int_equal(json_array_size(tasks), 1);
    assert_string_equal(text(json_array_get(tasks, 0), "client_id"), "bbbb2222");
    json_decref(tasks);
    struct store_admin_filter by_id = {.q = text(t2, "id"), .limit = 10};
    assert_int_equal(store_admin_task_list(store, &by_id, &tasks, &next), 0);
    assert_int_equal(json_array_size(tasks), 1);
    json_decref(tasks);
    struct store_admin_filter page = {.client_id = "aaaa1111", .limit = 2};
    assert_int_equal(store_admin_task_list(store, &page, &tasks, &next), 0);
    assert_string_equal(text(json_array_get(tasks, 1), "id"), text(t2, "id"));
    json_decref(tasks);
    page.before_seq = next;
    assert_int_equal(store_admin_task_list(store, &page, &tasks, &next), 0);
    assert_int_equal(json_array_size(tasks), 1);
    assert_string_equal(text(json_array_get(tasks, 0), "id"), text(t1, "id"));
    json_decref(tasks);

    /* A worker and what it runs. */
    assert_int_equal(store_worker_heartbeat(store, "w1", 2), 0);
    assert_int_equal(claim(store, "w1", &task), 0);
    json_decref(task);
    assert_int_equal(store_admin_status(store, &workers, &queues), 0);
    json_t *worker = json_array_get(workers, 0);
    assert_string_equal(text(worker, "id"), "w1");
    assert_true(strlen(text(worker, "host")) > 0);
    assert_int_equal(number(worker, "pid"), getpid());
    assert_int_equal(json_array_size(json_object_get(worker, "running")), 1);
    assert_string_equal(text(json_array_get(json_object_get(worker, "running"), 0), "id"),
                        text(t1, "id"));
    assert_int_equal(number(json_array_get(queues, 0), "queued"), 3);
    assert_int_equal(number(json_array_get(queues, 0), "running"), 1);
    json_decref(workers);
    json_decref(queues);
    assert_int_equal(store_admin_task_get(store, text(t1, "id"), &task), 0);
    assert_string_equal(text(task, "worker_id"), "w1");
    json_decref(task);

    /* t1 succeeds, t2 fails and is retried, t1 is deleted: the minutes still count it. */
    assert_int_equal(store_task_finish(store, text(t1, "id"), 1, STORE_STATUS_SUCCEEDED, NULL,
                                       NULL, NULL, NULL, 0, NULL),
                     0);
    assert_int_equal(claim(store, "w1", &task), 0);
    json_decref(task);
    assert_int_equal(store_task_finish(store, text(t2, "id"), 1, STORE_STATUS_FAILED, NULL, "bad",
                                       NULL, NULL, 0, NULL),
                     0);
    assert_int_equal(store_task_retry(store, text(t2, "id"), NULL, &task), 0);
    json_decref(task);
    json_t *rows = NULL, *durations = NULL;
    /* The durations are of the tasks that ended and are still in the store: t1 only. */
    assert_int_equal(store_admin_stats(store, 5, &rows, &durations), 0);
    assert_int_equal(json_array_size(durations), 1);
    assert_int_equal(number(json_array_get(durations, 0), "count"), 1);
    assert_true(number(json_array_get(durations, 0), "p50_ms") >= 0);
    json_decref(rows);
    json_decref(durations);
    assert_int_equal(store_task_delete(store, text(t1, "id"), NULL), 0);
    assert_int_equal(store_admin_stats(store, 5, &rows, &durations), 0);
    assert_int_equal(json_array_size(rows), 5);
    assert_int_equal(column_sum(rows, "submitted"), 4);
    assert_int_equal(column_sum(rows, "started"), 2);
    assert_int_equal(column_sum(rows, "succeeded"), 1);
    assert_int_equal(column_sum(rows, "failed"), 1);
    assert_int_equal(number(json_array_get(rows, 4), "queued"), 3);
    assert_int_equal(number(json_array_get(rows, 0), "queued"), 0);
    assert_int_equal(json_array_size(durations), 0); /* t1 deleted, t2 queued again */
    json_decref(rows);
    json_decref(durations);
    assert_int_equal(store_admin_stats(store, 0, &rows, &durations), TW_E_BAD_REQUEST);
    assert_int_equal(store_admin_task_get(store, text(t1, "id"), &task), TW_E_NOT_FOUND);
    json_decref(t1);
    json_decref(t2);
    json_decref(t3);
    json_decref(t4);
}

/* A database of schema 2 would not open, or lose its workers, when schema 3 came. */
static void
test_schema_2_is_upgraded_to_3(void **state)
{
    (void)state;
    char old_dir[64], old_path[256], err[512];
    assert_int_equal(tempdb_make(old_dir, sizeof old_dir, "schema2", old_path, sizeof old_path), 0);
    struct store *store = open_sqlite(old_path, 1000, err, sizeof err);
    assert_non_null(store);
    store_destroy(&store);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(old_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TRIGGER task_minutes_insert; DROP TRIGGER task_minutes_status;"
                                  "DROP TABLE task_minutes; ALTER TABLE workers DROP COLUMN host;"
                                  "INSERT INTO workers VALUES ('old', 1, 1, 1, 1);"
                                  "PRAGMA user_version = 2;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    store = open_sqlite(old_path, 1000, err, sizeof err);
    assert_non_null(store);
    assert_int_equal(store_schema_version(sqlite_of(store)->db), STORE_SCHEMA_VERSION);
    assert_int_equal(store_worker_heartbeat(store, "new", 1), 0);
    json_t *workers = NULL, *queues = NULL;
    assert_int_equal(store_admin_status(store, &workers, &queues), 0);
    assert_int_equal(json_array_size(workers), 2);
    json_decref(workers);
    json_decref(queues);
    json_t *task = insert(store, "c");
    json_decref(task);
    json_t *rows = NULL, *durations = NULL;
    assert_int_equal(store_admin_stats(store, 1, &rows, &durations), 0);
    assert_int_equal(number(json_array_get(rows, 0), "submitted"), 1);
    json_decref(rows);
    json_decref(durations);
    store_destroy(&store);
    assert_int_equal(tempdb_remove(old_dir, old_path), 0);
}

/* A program writing invalid UTF-8 to stderr would make the task unreadable as JSON. */
static void
test_invalid_utf8_error_is_still_json(void **state)
{
    struct store *store = *state;
    json_t *queued = insert(store, "u"), *task;
    assert_int_equal(claim(store, "w", &task), 0);
    json_decref(task);
    assert_int_equal(store_task_finish(store, text(queued, "id"), 1, STORE_STATUS_FAILED, NULL,
                                       "bad \xff\xfe bytes", NULL, NULL, 0, &task),
                     0);
    assert_string_equal(text(task, "error"), "bad ?? bytes");
    json_decref(task);
    json_decref(queued);
}

#define GROUP_WRITERS 4 /* processes submitting at once */
#define GROUP_TASKS 100 /* submissions each */

/* If group commit lost a submission or stopped sharing flushes, a burst of submissions from
 * several handler processes would lose tasks or queue for a disk flush each. */
static void
test_group_commit_keeps_every_task_and_shares_syncs(void **state)
{
    struct store *store = *state;
    int pipes[GROUP_WRITERS][2];
    pid_t pids[GROUP_WRITERS];
    for (int w = 0; w < GROUP_WRITERS; w++) {
        assert_int_equal(pipe(pipes[w]), 0);
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            char err[256];
            struct store *mine = open_sqlite(path, 5000, err, sizeof err);
            uint64_t syncs = UINT64_MAX;
            if (mine && store_group_commit(mine) == 0) {
                int ok = 1;
                for (int i = 0; i < GROUP_TASKS && ok; i++) {
                    json_t *params = json_object();
                    struct store_submission sub = {.client_id = "g", .type = "sleep",
                                                   .name = "", .params = params,
                                                   .max_attempts = 1};
                    struct store_submission *one = &sub;
                    ok = store_tasks_insert(mine, &one, 1) == 0 && sub.rc == 0;
                    json_decref(sub.task);
                    json_decref(params);
                }
                if (ok)
                    syncs = store_sync_count(mine);
            }
            store_destroy(&mine);
            ssize_t n = write(pipes[w][1], &syncs, sizeof syncs);
            _exit(n == (ssize_t)sizeof syncs ? 0 : 1);
        }
        close(pipes[w][1]);
    }
    uint64_t syncs = 0;
    for (int w = 0; w < GROUP_WRITERS; w++) {
        uint64_t mine = UINT64_MAX;
        assert_int_equal(read(pipes[w][0], &mine, sizeof mine), (ssize_t)sizeof mine);
        close(pipes[w][0]);
        int status = 0;
        assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_true(mine != UINT64_MAX); /* every insert of that process succeeded */
        syncs += mine;
    }
    /* Every task is there, in the file, for a fresh connection. */
    char err[256];
    struct store *fresh = open_sqlite(path, 1000, err, sizeof err);
    assert_non_null(fresh);
    int found = 0;
    const char *before = NULL;
    json_t *page = NULL;
    for (;;) {
        assert_int_equal(store_task_list(fresh, "g", NULL, before, STORE_LIST_MAX, &page), 0);
        size_t n = json_array_size(page);
        found += (int)n;
        static char cursor[64];
        if (n > 0)
            snprintf(cursor, sizeof cursor, "%s", text(json_array_get(page, n - 1), "id"));
        json_decref(page);
        if (n < STORE_LIST_MAX)
            break;
        before = cursor;
    }
    store_destroy(&fresh);
    assert_int_equal(found, GROUP_WRITERS * GROUP_TASKS);
    /* Concurrent commits shared flushes: fewer syncs than commits. */
    assert_true(syncs > 0);
    assert_true(syncs < (uint64_t)(GROUP_WRITERS * GROUP_TASKS));
    (void)store;
}

/* A client told 500 for a store that is only full, read-only or held gives up on a task it
 * could have sent again (and one told 503 for a corrupt store retries forever): each SQLite
 * failure maps to its answer, and every "try again" answer names the task store. */
static void
test_store_failures_map_to_their_answers(void **state)
{
    (void)state;
    static const struct {
        int code, sys_errno, answer;
    } rows[] = {
        {SQLITE_BUSY, 0, TW_E_STORE_BUSY},
        {SQLITE_LOCKED, 0, TW_E_STORE_BUSY},
        {SQLITE_FULL, 0, TW_E_STORE_FULL},
        {SQLITE_IOERR_WRITE, ENOSPC, TW_E_STORE_FULL},
        {SQLITE_IOERR_FSYNC, EDQUOT, TW_E_STORE_FULL},
        {SQLITE_READONLY, 0, TW_E_STORE_READONLY},
        {SQLITE_READONLY_DBMOVED, 0, TW_E_STORE_READONLY},
        {SQLITE_IOERR_WRITE, EROFS, TW_E_STORE_READONLY},
        {SQLITE_IOERR_WRITE, EPERM, TW_E_STORE_READONLY},
        {SQLITE_CANTOPEN, EACCES, TW_E_STORE_READONLY},
        {SQLITE_IOERR_READ, EIO, TW_E_STORE_IO},
        {SQLITE_CANTOPEN, ENOENT, TW_E_STORE_IO},
        {SQLITE_CORRUPT, 0, TW_E_STORE},
        {SQLITE_NOTADB, 0, TW_E_STORE},
        {SQLITE_ERROR, 0, TW_E_STORE},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        assert_int_equal(store_fault_of(rows[i].code, rows[i].sys_errno), rows[i].answer);
    static const int again[] = {TW_E_STORE_BUSY, TW_E_STORE_FULL, TW_E_STORE_READONLY,
                                TW_E_STORE_IO};
    for (size_t i = 0; i < sizeof again / sizeof again[0]; i++) {
        assert_int_equal(tw_error_status(again[i]), 503);
        assert_string_equal(tw_error_name(again[i]), "unavailable");
        assert_non_null(strstr(tw_error_message(again[i]), "the task store"));
    }
    assert_string_equal(tw_error_message(TW_E_STORE_FULL), "the task store is full");
    assert_string_equal(tw_error_message(TW_E_STORE_READONLY), "the task store is read-only");
    assert_int_equal(tw_error_status(TW_E_STORE), 500);
}

/* A sleep task of client with params (borrowed), and an Idempotency-Key if key. */
static struct store_submission
submission(const char *client, json_t *params, const char *key)
{
    return (struct store_submission){.client_id = client, .type = "sleep", .name = "",
                                     .params = params, .max_attempts = 1,
                                     .idempotency_key = key, .request_hash = key ? "h" : NULL};
}

/* How many tasks client has (up to 10). */
static size_t
tasks_of(struct store *store, const char *client)
{
    json_t *list = NULL;
    assert_int_equal(store_task_list(store, client, NULL, NULL, 10, &list), 0);
    size_t count = json_array_size(list);
    json_decref(list);
    return count;
}

/* On a full disk a submission must answer 503 "the task store is full" and leave nothing (no
 * task, no Idempotency-Key that would answer for a task never made), reads must go on, health
 * must say so, and once there is room the same submission must make its task. */
static void
test_a_full_store_keeps_nothing_of_a_batch_and_recovers(void **state)
{
    struct store *store = *state;
    json_t *kept = insert(store, "f");
    char blob[20001];
    memset(blob, 'x', sizeof blob - 1);
    blob[sizeof blob - 1] = '\0';
    json_t *params = json_pack("{s:s}", "blob", blob);
    /* SQLite's own bound on the file's pages: a write that needs one more page fails with
     * SQLITE_FULL, as on a disk without room. */
    assert_int_equal(sqlite3_exec(sqlite_of(store)->db, "PRAGMA max_page_count = 1", NULL, NULL, NULL),
                     SQLITE_OK);
    /* Tasks of about 20 KB each: each needs new pages. */
    struct store_submission a = submission("f", params, NULL), b = submission("f", params, "k"),
                            c = submission("f", params, NULL);
    struct store_submission *batch[] = {&a, &b, &c};
    int rc = store_tasks_insert(store, batch, 3);
    assert_true(rc == 0 || rc == TW_E_STORE_FULL);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(batch[i]->rc, TW_E_STORE_FULL);
        assert_null(batch[i]->task);
    }
    assert_int_equal(store_problem(store), TW_E_STORE_FULL);
    assert_int_equal(store_check_writable(store), TW_E_STORE_FULL);
    json_t *task = NULL;
    assert_int_equal(tasks_of(store, "f"), 1);
    assert_int_equal(store_task_get(store, text(kept, "id"), "f", &task), 0);
    json_decref(task);

    assert_int_equal(
        sqlite3_exec(sqlite_of(store)->db, "PRAGMA max_page_count = 1073741823", NULL, NULL, NULL),
        SQLITE_OK);
    struct store_submission *one = &b;
    assert_int_equal(store_tasks_insert(store, &one, 1), 0);
    assert_int_equal(b.rc, 0);
    assert_int_equal(b.replayed, 0); /* the refused one left no key behind */
    json_decref(b.task);
    assert_int_equal(store_problem(store), 0);
    assert_int_equal(store_check_writable(store), 0);
    assert_int_equal(tasks_of(store, "f"), 2);
    json_decref(params);
    json_decref(kept);
}

/* A read-only database must answer changes 503 "the task store is read-only" while reads go
 * on; another process's health must see it too (the problem is shared), and both must take
 * writes again once the database is writable. */
static void
test_a_read_only_store_answers_503_reads_on_and_recovers(void **state)
{
    struct store *store = *state;
    char err[256];
    struct store *other = open_sqlite(path, 1000, err, sizeof err);
    assert_non_null(other);
    json_t *queued = insert(store, "r"), *task = NULL;
    const char *id = text(queued, "id");
    assert_int_equal(sqlite3_exec(sqlite_of(store)->db, "PRAGMA query_only = 1", NULL, NULL, NULL),
                     SQLITE_OK);
    json_t *params = json_object();
    struct store_submission sub = submission("r", params, NULL), *one = &sub;
    store_tasks_insert(store, &one, 1);
    assert_int_equal(sub.rc, TW_E_STORE_READONLY);
    int final = 0;
    assert_int_equal(store_task_cancel(store, id, "r", &final, &task), TW_E_STORE_READONLY);
    assert_null(task);
    assert_int_equal(store_task_get(store, id, "r", &task), 0);
    assert_string_equal(text(task, "status"), "queued");
    json_decref(task);
    assert_int_equal(store_problem(store), TW_E_STORE_READONLY);
    assert_int_equal(store_check_writable(store), TW_E_STORE_READONLY);
    assert_int_equal(store_check_writable(other), TW_E_STORE_READONLY);

    assert_int_equal(sqlite3_exec(sqlite_of(store)->db, "PRAGMA query_only = 0", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(store_task_cancel(store, id, "r", &final, &task), 0);
    assert_int_equal(final, 1);
    json_decref(task);
    assert_int_equal(store_problem(store), 0);
    assert_int_equal(store_check_writable(other), 0);
    store_destroy(&other);
    json_decref(params);
    json_decref(queued);
}

/* A long-lived process that opened the store while its file was read-only would answer 503
 * until restarted: its connection is opened again, for writing, once the file allows. */
static void
test_a_read_only_connection_is_opened_again_for_writing(void **state)
{
    struct store *store = *state;
    json_t *first = insert(store, "o");
    /* The connection SQLite makes of a file it may only read. */
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(sqlite_of(store)->statements[i]);
        sqlite_of(store)->statements[i] = NULL;
    }
    sqlite3_close(sqlite_of(store)->db);
    assert_int_equal(sqlite3_open_v2(path, &sqlite_of(store)->db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite_of(store)->read_only = 1;
    sqlite_of(store)->revive_at_ms = clock_mono_ms() + STORE_REVIVE_MS;
    json_t *params = json_object();
    struct store_submission sub = submission("o", params, NULL), *one = &sub;
    store_tasks_insert(store, &one, 1);
    assert_int_equal(sub.rc, TW_E_STORE_READONLY);
    sqlite_of(store)->revive_at_ms = 0; /* its next try is due */
    assert_int_equal(store_tasks_insert(store, &one, 1), 0);
    assert_int_equal(sub.rc, 0);
    assert_false(sqlite_of(store)->read_only);
    json_decref(sub.task);
    assert_int_equal(tasks_of(store, "o"), 2);
    json_decref(params);
    json_decref(first);
}

/* A process that opens the store on a full disk would die of SIGBUS storing through a mapping
 * into a hole: the shared part of the -queue file is written, never left sparse. */
static void
test_queue_file_is_written_not_sparse(void **state)
{
    (void)state;
    char queue[300];
    snprintf(queue, sizeof queue, "%s-queue", path);
    struct stat st;
    assert_int_equal(stat(queue, &st), 0);
    assert_true((size_t)st.st_size >= sizeof(struct store_shared));
    assert_true(st.st_blocks > 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lifecycle_claims_oldest_once_and_raises_seq, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued_running_and_finished, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_is_per_client_newest_first_with_cursor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_leases_renewed_hold_and_expired_are_taken_back,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_later_waits_for_run_at_and_records_errors,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_order_schedule_and_type_limits, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_key_and_queue_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_announce_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submission_rate_is_one_bucket_for_every_connection,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_removes_only_old_finished_tasks, setup,
                                        teardown),
        cmocka_unit_test(test_schema_upgrade_and_newer_schema_refused),
        cmocka_unit_test_setup_teardown(test_admin_views_every_client_workers_and_minutes, setup,
                                        teardown),
        cmocka_unit_test(test_schema_2_is_upgraded_to_3),
        cmocka_unit_test_setup_teardown(test_invalid_utf8_error_is_still_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_keeps_every_task_and_shares_syncs,
                                        setup, teardown),
        cmocka_unit_test(test_store_failures_map_to_their_answers),
        cmocka_unit_test_setup_teardown(test_a_full_store_keeps_nothing_of_a_batch_and_recovers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_read_only_store_answers_503_reads_on_and_recovers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_read_only_connection_is_opened_again_for_writing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_file_is_written_not_sparse, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
