/* Unit tests of the task store's contract (store.h), on each backend: the same test functions,
 * a setup per backend.  SQLite: a fresh file per test.  PostgreSQL: the database
 * TASKWIRE_TEST_PG_URL names (tests/pg.py starts a throwaway cluster for `make test-unit`;
 * without it the PostgreSQL group fails, never skips), its public schema emptied before each
 * test.  What only one backend has (SQLite's files, group commit and faults; PostgreSQL's
 * schema_version and lost connections) is in test_store_sqlite.c and test_store_pg.c. */
#include "tests/unit/common/store_test.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/tempdb.h"
#include "token.h"

static struct store_options backend; /* the current test's store */
static char dir[64];
static char path[256];

/* Another handle on the current test's store (another process, another host); NULL with err. */
static struct store *
store_open_again(char *err, size_t errlen)
{
    return store_new(&backend, err, errlen);
}

/* Run sql on the current test's database, beside the store. */
static void
store_sql(const char *sql)
{
    if (backend.backend == STORE_BACKEND_SQLITE) {
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        return;
    }
    PGconn *conn = PQconnectdb(backend.url);
    if (PQstatus(conn) != CONNECTION_OK)
        fail_msg("cannot connect: %s", PQerrorMessage(conn));
    PGresult *result = PQexec(conn, sql);
    ExecStatusType status = PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    PQclear(result);
    PQfinish(conn);
}

static int
setup_open(void **state)
{
    char err[512];
    *state = store_new(&backend, err, sizeof err);
    if (!*state)
        print_error("store_new: %s\n", err);
    return *state ? 0 : -1;
}

static int
setup_sqlite(void **state)
{
    if (tempdb_make(dir, sizeof dir, "store", path, sizeof path) != 0)
        return -1;
    backend = (struct store_options){
        .backend = STORE_BACKEND_SQLITE, .path = path, .busy_timeout_ms = 5000};
    return setup_open(state);
}

static int
setup_pg(void **state)
{
    const char *url = getenv("TASKWIRE_TEST_PG_URL");
    if (!url) {
        print_error("TASKWIRE_TEST_PG_URL is not set: run through tests/pg.py run\n");
        return -1;
    }
    backend = (struct store_options){
        .backend = STORE_BACKEND_POSTGRESQL, .url = url, .busy_timeout_ms = 5000};
    store_sql(
        "SET client_min_messages = warning; DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    return setup_open(state);
}

static int
teardown(void **state)
{
    struct store *store = *state;
    store_destroy(&store);
    assert_null(store);
    return backend.backend == STORE_BACKEND_SQLITE ? tempdb_remove(dir, path) : 0;
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
    assert_int_equal(store_task_cancel(store, text(ids[2], "id"), "lister", &final, &cancelled), 0);
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
    assert_int_equal(
        store_task_take_back(store, text(b, "id"), 1, STORE_NEXT_RETRY, 0, "{}", &task),
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
    assert_int_equal(store_task_retry_later(store, id, 1, "boom",
                                            "{\"attempt\":1,\"error\":\"boom\"}",
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
                            later = {.client_id = "o",
                                     .priority = 10,
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
    struct store_submission first = {.client_id = "k",
                                     .idempotency_key = "key-1",
                                     .request_hash = "aa"},
                            again = first, changed = first,
                            bounded = {.client_id = "k", .max_queued = 2};
    assert_int_equal(submit(store, &first), 0);
    assert_int_equal(first.replayed, 0);
    assert_int_equal(submit(store, &again), 0);
    assert_int_equal(again.replayed, 1);
    assert_string_equal(text(again.task, "id"), text(first.task, "id"));
    changed.request_hash = "bb";
    assert_int_equal(submit(store, &changed), TW_E_IDEMPOTENCY_MISMATCH);
    assert_null(changed.task);
    /* Another client's key is its own. */
    struct store_submission elsewhere = {
        .client_id = "k2", .idempotency_key = "key-1", .request_hash = "bb"};
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
    struct store *other = store_open_again(err, sizeof err); /* another handler process */
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
    struct store_submission replay = subs[0],
                            stranger = {.client_id = "s", .submit_rate = 1, .submit_burst = 3};
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
    store_sql("UPDATE submit_rate SET at = 0");
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
    assert_int_equal(store_task_announce(store, text(queued, "id"), "w", &task), 0);
    assert_int_equal(number(task, "seq"), 1);
    json_decref(task);
    assert_int_equal(store_task_announce(store, text(queued, "id"), "w", &task), TW_E_NOT_FOUND);
    int announce = 1;
    assert_int_equal(claim_for(store, "w", 10000, NULL, &task, &announce), 0);
    assert_int_equal(announce, 0);
    json_decref(task);
    json_decref(queued);
}

/* Another worker's started event could reach a page before the announcing worker's queued
 * event: for STORE_ANNOUNCE_SETTLE_MS only the announcer may claim what it announced. */
static void
test_announced_task_waits_for_others(void **state)
{
    struct store *store = *state;
    json_t *first = insert(store, "s"), *second = insert(store, "s"), *task = NULL;
    assert_int_equal(store_task_announce(store, text(first, "id"), "a", &task), 0);
    json_decref(task);
    assert_int_equal(store_task_announce(store, text(second, "id"), "a", &task), 0);
    json_decref(task);
    assert_int_equal(claim(store, "b", &task), TW_E_NOT_FOUND);
    assert_int_equal(claim(store, "a", &task), 0);
    assert_string_equal(text(task, "id"), text(first, "id"));
    json_decref(task);
    /* Once the announcement is older than the settle time, any worker takes it. */
    char sql[128];
    snprintf(sql, sizeof sql,
             "UPDATE tasks SET announced_at = announced_at - %d WHERE announced_by = 'a'",
             STORE_ANNOUNCE_SETTLE_MS + 1);
    store_sql(sql);
    assert_int_equal(claim(store, "b", &task), 0);
    assert_string_equal(text(task, "id"), text(second, "id"));
    json_decref(task);
    json_decref(first);
    json_decref(second);
}

/* A worker's batches (a turn's claims, announcements and final states in one statement each
 * where the backend can) would claim out of order, announce twice, let a stale attempt write,
 * or store a final state other than one at a time does. */
#define BATCH_TASKS 21 /* more than one statement's rows */
static void
test_batches_claim_announce_and_finish_as_one_at_a_time(void **state)
{
    struct store *store = *state;
    json_t *queued[BATCH_TASKS + 2];
    const char *ids[BATCH_TASKS + 2];
    for (int i = 0; i < BATCH_TASKS + 2; i++) {
        queued[i] = insert(store, "batch");
        ids[i] = text(queued[i], "id");
    }
    json_t *announced[BATCH_TASKS];
    assert_int_equal(store_tasks_announce(store, "w", ids, BATCH_TASKS, announced), BATCH_TASKS);
    for (int i = 0; i < BATCH_TASKS; i++) {
        assert_string_equal(text(announced[i], "status"), "queued");
        json_decref(announced[i]);
    }
    assert_int_equal(store_tasks_announce(store, "w", ids, BATCH_TASKS, announced), 0);

    /* The oldest first, each once, the unannounced two saying so. */
    json_t *tasks[STORE_CLAIM_MAX];
    int announce[STORE_CLAIM_MAX];
    int64_t waited[STORE_CLAIM_MAX];
    assert_int_equal(store_tasks_claim(store, "w", "host-a", 10000, NULL, BATCH_TASKS - 2, tasks,
                                       announce, waited),
                     BATCH_TASKS - 2);
    assert_int_equal(store_tasks_claim(store, "w", "host-a", 10000, NULL, STORE_CLAIM_MAX,
                                       tasks + BATCH_TASKS - 2, announce + BATCH_TASKS - 2,
                                       waited + BATCH_TASKS - 2),
                     4);
    int seen[BATCH_TASKS + 2] = {0};
    for (int k = 0; k < BATCH_TASKS + 2; k++) {
        int i = 0;
        while (i < BATCH_TASKS + 2 && strcmp(ids[i], text(tasks[k], "id")) != 0)
            i++;
        assert_true(i < BATCH_TASKS + 2);
        assert_true(k < BATCH_TASKS - 2 ? i < BATCH_TASKS - 2 : i >= BATCH_TASKS - 2);
        seen[i]++;
        assert_int_equal(announce[k], i >= BATCH_TASKS);
        assert_string_equal(text(tasks[k], "status"), "running");
        assert_int_equal(number(tasks[k], "attempts"), 1);
    }
    for (int i = 0; i < BATCH_TASKS + 2; i++)
        assert_int_equal(seen[i], 1);

    /* Every kind of final state at once; the third names an attempt that does not run. */
    json_t *result = json_pack("{s:i}", "ok", 7);
    struct store_finish items[BATCH_TASKS];
    for (int k = 0; k < BATCH_TASKS; k++)
        items[k] = (struct store_finish){
            .id = text(tasks[k], "id"),
            .attempt = k == 2 ? 2 : 1,
            .status = k % 3 ? STORE_STATUS_SUCCEEDED : STORE_STATUS_FAILED,
            .result = k % 3 ? result : NULL,
            .error = k % 3 ? NULL : "it broke",
            .message = k % 2 ? "done" : NULL,
            .error_entry = k % 3 ? NULL : "{\"attempt\":1,\"error\":\"it broke\"}",
        };
    assert_int_equal(store_tasks_finish(store, items, BATCH_TASKS), 0);
    json_decref(result);
    for (int k = 0; k < BATCH_TASKS; k++) {
        json_t *task = NULL;
        assert_int_equal(store_task_get(store, items[k].id, NULL, &task), 0);
        if (k == 2) {
            assert_int_equal(items[k].rc, TW_E_FENCED);
            assert_string_equal(text(task, "status"), "running");
            assert_int_equal(number(task, "seq"), number(tasks[k], "seq"));
        } else {
            assert_int_equal(items[k].rc, 0);
            assert_int_equal(items[k].seq, number(tasks[k], "seq") + 1);
            assert_int_equal(number(task, "seq"), items[k].seq);
            assert_string_equal(text(task, "status"), items[k].status);
            assert_string_equal(text(task, "message"), k % 2 ? "done" : "started");
            assert_non_null(text(task, "finished_at"));
            json_t *errors = json_object_get(task, "errors");
            if (k % 3) {
                assert_int_equal(number(task, "progress"), 100);
                assert_int_equal(number(json_object_get(task, "result"), "ok"), 7);
                assert_true(json_is_null(json_object_get(task, "error")));
                assert_int_equal(json_array_size(errors), 0);
            } else {
                assert_string_equal(text(task, "error"), "it broke");
                assert_true(json_is_null(json_object_get(task, "result")));
                assert_int_equal(json_array_size(errors), 1);
                assert_string_equal(text(json_array_get(errors, 0), "error"), "it broke");
            }
        }
        json_decref(task);
    }
    for (int k = 0; k < BATCH_TASKS + 2; k++)
        json_decref(tasks[k]);
    for (int i = 0; i < BATCH_TASKS + 2; i++)
        json_decref(queued[i]);
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
    assert_int_equal(store_task_finish(store, text(t1, "id"), 1, STORE_STATUS_SUCCEEDED, NULL, NULL,
                                       NULL, NULL, 0, NULL),
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

/* A worker that lost its lease (another now runs the task) would overwrite the live attempt's
 * state with its own: every write of the stale attempt is refused and changes nothing. */
static void
test_a_stale_attempt_changes_nothing(void **state)
{
    struct store *store = *state;
    json_t *queued = insert(store, "s"), *task = NULL, *expired = NULL;
    const char *id = text(queued, "id");
    assert_int_equal(claim_for(store, "lost", 1, NULL, &task, NULL), 0);
    json_decref(task);
    usleep(5000);
    assert_int_equal(store_leases_expired(store, &expired), 0);
    assert_int_equal(json_array_size(expired), 1);
    json_decref(expired);
    assert_int_equal(
        store_task_take_back(store, id, 1, STORE_NEXT_RETRY, 0, "{\"attempt\":1}", &task), 0);
    json_decref(task);
    assert_int_equal(claim(store, "live", &task), 0);
    assert_int_equal(number(task, "attempts"), 2);
    long long seq = number(task, "seq");
    json_decref(task);
    json_t *result = json_pack("{s:b}", "stale", 1);
    assert_int_equal(store_task_progress(store, id, 1, 90, "stale", &task), TW_E_FENCED);
    assert_int_equal(store_task_finish(store, id, 1, STORE_STATUS_SUCCEEDED, result, NULL, "stale",
                                       NULL, 0, &task),
                     TW_E_FENCED);
    assert_int_equal(store_task_retry_later(store, id, 1, "stale", "{}", 0, &task), TW_E_FENCED);
    assert_int_equal(store_task_requeue(store, id, 1, "stale", &task), TW_E_FENCED);
    assert_int_equal(store_task_take_back(store, id, 1, STORE_NEXT_FAIL, 0, "{}", &task),
                     TW_E_FENCED);
    assert_int_equal(store_task_check(store, id, 1), TW_E_FENCED);
    json_decref(result);
    assert_int_equal(store_task_get(store, id, NULL, &task), 0);
    assert_int_equal(number(task, "seq"), seq);
    assert_string_equal(text(task, "status"), "running");
    assert_string_equal(text(task, "message"), "started");
    assert_int_equal(number(task, "progress"), 0);
    assert_int_equal(json_array_size(json_object_get(task, "errors")), 1);
    json_decref(task);
    assert_int_equal(store_task_progress(store, id, 2, 10, "live", NULL), 0);
    json_decref(queued);
}

#define HOSTS 4       /* processes claiming at once, each with its own store handle */
#define HOST_LIMIT 3  /* the limited type's concurrency */
#define HOST_TASKS 40 /* tasks of each type */

/* What a host reports of each claim. */
struct host_claim {
    char id[TOKEN_ID_SIZE];
    char limited; /* a task of the limited type (held, never finished) */
};

/* Claim until nothing is claimable, finishing the unlimited tasks at once and holding the
 * limited ones: the exit status says what failed. */
static int
host_run(int host, int go, int out)
{
    char err[512], worker[32], ready;
    struct store *mine = store_open_again(err, sizeof err);
    if (!mine || read(go, &ready, 1) != 0) /* every host starts when the parent closes go */
        return 2;
    snprintf(worker, sizeof worker, "host-%d", host);
    char limits[64];
    snprintf(limits, sizeof limits, "{\"limited\":%d}", HOST_LIMIT);
    int idle = 0, rc = 0;
    while (rc == 0 && idle < 3) {
        json_t *claimed[4];
        int announce[4];
        int64_t waited[4];
        int n =
            store_tasks_claim(mine, worker, worker, 60000, limits, 4, claimed, announce, waited);
        if (n < 0)
            rc = 3;
        idle = n == 0 ? idle + 1 : 0;
        for (int i = 0; i < n; i++) {
            struct host_claim record = {.limited =
                                            strcmp(text(claimed[i], "type"), "limited") == 0};
            snprintf(record.id, sizeof record.id, "%s", text(claimed[i], "id"));
            if (write(out, &record, sizeof record) != (ssize_t)sizeof record)
                rc = 4;
            if (!record.limited &&
                store_task_finish(mine, record.id, (int)number(claimed[i], "attempts"),
                                  STORE_STATUS_SUCCEEDED, NULL, NULL, NULL, NULL, 0, NULL) != 0)
                rc = 5;
            json_decref(claimed[i]);
        }
    }
    store_destroy(&mine);
    return rc;
}

/* Hosts claiming at once would run a limited type more often than its limit allows, or two of
 * them the same task: each host claims with its own handle, and the claims add up to the limit
 * and to every other task, each once. */
static void
test_hosts_claiming_at_once_hold_the_limit_and_never_share_a_task(void **state)
{
    struct store *store = *state;
    json_t *params = json_object();
    for (int i = 0; i < HOST_TASKS; i++) {
        struct store_submission limited = submission("h", params, NULL),
                                other = submission("h", params, NULL);
        limited.type = "limited";
        other.type = "other";
        struct store_submission *batch[] = {&limited, &other};
        assert_int_equal(store_tasks_insert(store, batch, 2), 0);
        assert_int_equal(limited.rc, 0);
        assert_int_equal(other.rc, 0);
        json_decref(limited.task);
        json_decref(other.task);
    }
    json_decref(params);
    int go[2], out[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(out), 0);
    pid_t pids[HOSTS];
    for (int h = 0; h < HOSTS; h++) {
        pids[h] = fork();
        assert_true(pids[h] >= 0);
        if (pids[h] == 0) {
            close(go[1]);
            close(out[0]);
            _exit(host_run(h, go[0], out[1]));
        }
    }
    close(go[0]);
    close(out[1]);
    close(go[1]); /* go */
    static struct host_claim claims[2 * HOST_TASKS + HOSTS * 4];
    size_t count = 0;
    while (count < sizeof claims / sizeof claims[0] &&
           read(out[0], &claims[count], sizeof claims[0]) == (ssize_t)sizeof claims[0])
        count++;
    close(out[0]);
    for (int h = 0; h < HOSTS; h++) {
        int status = 0;
        assert_int_equal(waitpid(pids[h], &status, 0), pids[h]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("host %d ended with status %d", h, status);
    }
    size_t limited = 0;
    for (size_t i = 0; i < count; i++) {
        limited += claims[i].limited;
        for (size_t j = 0; j < i; j++)
            if (strcmp(claims[i].id, claims[j].id) == 0)
                fail_msg("task %s claimed twice", claims[i].id);
    }
    assert_int_equal(limited, HOST_LIMIT);
    assert_int_equal(count - limited, HOST_TASKS);
    json_t *depths = NULL;
    assert_int_equal(store_queue_depths(store, &depths), 0);
    size_t i;
    json_t *depth;
    int running = 0;
    json_array_foreach(depths, i, depth) if (strcmp(text(depth, "status"), "running") == 0)
        running += (int)number(depth, "count");
    assert_int_equal(running, HOST_LIMIT);
    json_decref(depths);
}

/* A task's channels would be lost between its submission and its worker: its events would
 * then reach only its submitter. */
static void
test_channels_are_kept_with_the_task(void **state)
{
    struct store *store = *state;
    struct store_submission sub = {.client_id = "ch",
                                   .channels = "[\"project:42\",\"task:room-1\"]"};
    assert_int_equal(submit(store, &sub), 0);
    json_t *expected = json_pack("[s,s]", "project:42", "task:room-1");
    assert_true(json_equal(json_object_get(sub.task, "channels"), expected));
    json_t *claimed = NULL;
    assert_int_equal(claim_for(store, "w", 10000, NULL, &claimed, NULL), 0);
    assert_true(json_equal(json_object_get(claimed, "channels"), expected));
    json_t *read = NULL;
    assert_int_equal(store_task_get(store, text(sub.task, "id"), "ch", &read), 0);
    assert_true(json_equal(json_object_get(read, "channels"), expected));
    json_t *plain = insert(store, "ch");
    assert_int_equal(json_array_size(json_object_get(plain, "channels")), 0);
    json_decref(plain);
    json_decref(read);
    json_decref(claimed);
    json_decref(expected);
    json_decref(sub.task);
}

/* ---- channel history ---- */

/* A history item of channel with payload (borrowed), keeping keep rows for ttl_ms. */
static struct store_history_item
history_item(const char *channel, const char *payload, int keep, int64_t ttl_ms)
{
    return (struct store_history_item){
        .channel = channel, .payload = payload, .keep = keep, .ttl_ms = ttl_ms};
}

/* The offsets of a page's messages, in its order, into offsets (at most max); their count. */
static size_t
page_offsets(const struct store_history_page *page, int64_t *offsets, size_t max)
{
    size_t count = json_array_size(page->messages);
    for (size_t i = 0; i < count && i < max; i++)
        offsets[i] = number(json_array_get(page->messages, i), "offset");
    return count;
}

/* A page that recovers would return other messages than the missed ones, out of order, or
 * with an offset a live subscriber did not get; messages of another channel would share a
 * stream. */
static void
test_history_gives_offsets_in_order_and_reads_since(void **state)
{
    struct store *store = *state;
    char payloads[6][48];
    for (int i = 0; i < 6; i++)
        snprintf(payloads[i], sizeof payloads[i], "{\"type\":\"message\",\"n\":%d}", i + 1);
    /* project:1's five interleaved with project:0's two (which sorts first). */
    struct store_history_item items[7] = {
        history_item("project:1", payloads[0], 100, 60000),
        history_item("project:0", payloads[0], 100, 60000),
        history_item("project:1", payloads[1], 100, 60000),
        history_item("project:1", payloads[2], 100, 60000),
        history_item("project:0", payloads[1], 100, 60000),
        history_item("project:1", payloads[3], 100, 60000),
        history_item("project:1", payloads[4], 100, 60000)};
    assert_int_equal(store_history_append(store, items, 7), 0);
    int64_t expected[7] = {1, 1, 2, 3, 2, 4, 5};
    for (int i = 0; i < 7; i++) {
        assert_int_equal(items[i].offset, expected[i]);
        assert_int_equal(strlen(items[i].epoch), STORE_EPOCH_SIZE - 1);
        assert_int_equal(strspn(items[i].epoch, "0123456789abcdef"), STORE_EPOCH_SIZE - 1);
        assert_string_equal(items[i].epoch, items[i == 1 || i == 4 ? 1 : 0].epoch);
    }
    assert_string_not_equal(items[0].epoch, items[1].epoch);

    struct store_history_page page;
    assert_int_equal(store_history_read(store, "project:1", 2, 100, &page), 0);
    assert_string_equal(page.epoch, items[0].epoch);
    assert_int_equal(page.last_offset, 5);
    assert_int_equal(page.oldest_offset, 1);
    int64_t offsets[8];
    assert_int_equal(page_offsets(&page, offsets, 8), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(offsets[i], 3 + i);
        assert_string_equal(text(json_array_get(page.messages, (size_t)i), "payload"),
                            payloads[2 + i]);
    }
    json_decref(page.messages);

    /* The stream goes on in a later batch, with the same epoch; a limit cuts the page. */
    struct store_history_item more = history_item("project:1", payloads[5], 100, 60000);
    assert_int_equal(store_history_append(store, &more, 1), 0);
    assert_int_equal(more.offset, 6);
    assert_string_equal(more.epoch, items[0].epoch);
    assert_int_equal(store_history_read(store, "project:1", 0, 2, &page), 0);
    assert_int_equal(page_offsets(&page, offsets, 8), 2);
    assert_int_equal(offsets[0], 1);
    assert_int_equal(offsets[1], 2);
    assert_int_equal(page.last_offset, 6);
    json_decref(page.messages);

    /* A channel never published to has no stream. */
    assert_int_equal(store_history_read(store, "project:9", 0, 100, &page), 0);
    assert_string_equal(page.epoch, "");
    assert_int_equal(page.last_offset, 0);
    assert_int_equal(page.oldest_offset, 1);
    assert_int_equal(json_array_size(page.messages), 0);
    json_decref(page.messages);
}

/* A channel would keep more than history_size messages, or messages past their ttl; a quiet
 * channel's rows would stay for ever; a stream whose history is gone would go on with its
 * old epoch, so a client could not tell that it missed messages. */
static void
test_history_trims_by_size_and_age_and_starts_a_new_epoch(void **state)
{
    struct store *store = *state;
    struct store_history_item items[5];
    for (int i = 0; i < 5; i++)
        items[i] = history_item("task:t", "{}", 3, 60000);
    assert_int_equal(store_history_append(store, items, 5), 0);
    struct store_history_page page;
    int64_t offsets[8];
    assert_int_equal(store_history_read(store, "task:t", 0, 100, &page), 0);
    assert_int_equal(page_offsets(&page, offsets, 8), 3);
    assert_int_equal(offsets[0], 3);
    assert_int_equal(page.oldest_offset, 3);
    assert_int_equal(page.last_offset, 5);
    json_decref(page.messages);
    char epoch[STORE_EPOCH_SIZE];
    memcpy(epoch, items[0].epoch, sizeof epoch);

    /* Past their ttl (made so by moving their expiry back): no longer kept, pruned or not. */
    store_sql("UPDATE channel_history SET expires_at = 1; UPDATE channel_streams SET"
              " expires_at = 1");
    assert_int_equal(store_history_read(store, "task:t", 0, 100, &page), 0);
    assert_int_equal(json_array_size(page.messages), 0);
    assert_int_equal(page.last_offset, 5);
    assert_int_equal(page.oldest_offset, 6);
    assert_string_equal(page.epoch, epoch);
    json_decref(page.messages);
    assert_int_equal(store_history_prune(store), 3);
    assert_int_equal(store_history_prune(store), 0);

    /* The stream went with its last message: the next one starts a new epoch at 1. */
    struct store_history_item next = history_item("task:t", "{}", 3, 60000);
    assert_int_equal(store_history_append(store, &next, 1), 0);
    assert_int_equal(next.offset, 1);
    assert_string_not_equal(next.epoch, epoch);

    /* A stream that still keeps a message is not pruned, whatever its own expiry says. */
    store_sql("UPDATE channel_streams SET expires_at = 1");
    assert_int_equal(store_history_prune(store), 0);
    struct store_history_item after = history_item("task:t", "{}", 3, 60000);
    assert_int_equal(store_history_append(store, &after, 1), 0);
    assert_int_equal(after.offset, 2);
    assert_string_equal(after.epoch, next.epoch);
}

/* One read could hold the whole history of a channel of large messages in memory: past
 * STORE_HISTORY_READ_BYTES it stops, and never before its first message. */
static void
test_history_read_is_bounded_in_bytes(void **state)
{
    struct store *store = *state;
    size_t size = STORE_HISTORY_READ_BYTES * 3 / 5;
    char *big = malloc(size + 1);
    assert_non_null(big);
    memset(big, 'x', size);
    big[size] = '\0';
    struct store_history_item items[3] = {history_item("project:big", big, 10, 60000),
                                          history_item("project:big", big, 10, 60000),
                                          history_item("project:big", big, 10, 60000)};
    assert_int_equal(store_history_append(store, items, 3), 0);
    struct store_history_page page;
    int64_t offsets[4];
    assert_int_equal(store_history_read(store, "project:big", 0, 10, &page), 0);
    assert_int_equal(page_offsets(&page, offsets, 4), 2);
    assert_int_equal(offsets[1], 2);
    json_decref(page.messages);
    assert_int_equal(store_history_read(store, "project:big", 2, 10, &page), 0);
    assert_int_equal(page_offsets(&page, offsets, 4), 1);
    assert_int_equal(offsets[0], 3);
    assert_int_equal(strlen(text(json_array_get(page.messages, 0), "payload")), size);
    json_decref(page.messages);
    free(big);
}

#define WRITERS 4         /* processes appending to one channel at once */
#define WRITER_BATCHES 25 /* batches of each */
#define WRITER_BATCH 3    /* messages of each batch */

/* Append WRITER_BATCHES batches to project:shared and write each batch's first offset to
 * out: the exit status says what failed. */
static int
writer_run(int writer, int go, int out)
{
    char err[512], ready, payload[32];
    struct store *mine = store_open_again(err, sizeof err);
    if (!mine || read(go, &ready, 1) != 0) /* every writer starts when the parent closes go */
        return 2;
    snprintf(payload, sizeof payload, "{\"writer\":%d}", writer);
    int rc = 0;
    for (int b = 0; rc == 0 && b < WRITER_BATCHES; b++) {
        struct store_history_item items[WRITER_BATCH];
        for (int i = 0; i < WRITER_BATCH; i++)
            items[i] = history_item("project:shared", payload, 10000, 60000);
        if (store_history_append(mine, items, WRITER_BATCH) != 0)
            rc = 3;
        for (int i = 1; rc == 0 && i < WRITER_BATCH; i++)
            if (items[i].offset != items[0].offset + i ||
                strcmp(items[i].epoch, items[0].epoch) != 0)
                rc = 4;
        if (rc == 0 && write(out, &items[0].offset, sizeof items[0].offset) !=
                           (ssize_t)sizeof items[0].offset)
            rc = 5;
    }
    store_destroy(&mine);
    return rc;
}

/* Hosts publishing to one channel at once would give two messages one offset, or leave a gap
 * a client would wait on for ever: each writer's batches get consecutive offsets, and all of
 * them together every offset from 1 once. */
static void
test_writers_at_once_share_one_stream_without_gaps(void **state)
{
    struct store *store = *state;
    int go[2], out[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(out), 0);
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            close(go[1]);
            close(out[0]);
            _exit(writer_run(w, go[0], out[1]));
        }
    }
    close(go[0]);
    close(out[1]);
    close(go[1]); /* go */
    enum { TOTAL = WRITERS * WRITER_BATCHES * WRITER_BATCH };
    static unsigned char seen[TOTAL + 1];
    memset(seen, 0, sizeof seen);
    int64_t first;
    size_t batches = 0;
    while (read(out[0], &first, sizeof first) == (ssize_t)sizeof first) {
        assert_true(first >= 1 && first + WRITER_BATCH - 1 <= TOTAL);
        for (int i = 0; i < WRITER_BATCH; i++) {
            assert_int_equal(seen[first + i], 0);
            seen[first + i] = 1;
        }
        batches++;
    }
    close(out[0]);
    for (int w = 0; w < WRITERS; w++) {
        int status = 0;
        assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("writer %d ended with status %d", w, status);
    }
    assert_int_equal(batches, WRITERS * WRITER_BATCHES);
    struct store_history_page page;
    assert_int_equal(store_history_read(store, "project:shared", 0, TOTAL, &page), 0);
    assert_int_equal(page.last_offset, TOTAL);
    assert_int_equal(json_array_size(page.messages), TOTAL);
    for (size_t i = 0; i < TOTAL; i++)
        assert_int_equal(number(json_array_get(page.messages, i), "offset"), (long long)i + 1);
    json_decref(page.messages);
}


/* One presence update of relay: seq, since, ttl and one entry (channel, client, conns), or
 * none (channel NULL), applied at now; the changes it made. */
static json_t *
presence_put(struct store *store, const char *relay, int64_t seq, int64_t since, int ttl,
             const char *channel, const char *client, int conns, int64_t now)
{
    static struct presence_update update;
    memset(&update, 0, sizeof update);
    update.seq = seq;
    update.since = since;
    update.ttl_ms = ttl;
    if (channel) {
        update.count = 1;
        snprintf(update.entries[0].channel, sizeof update.entries[0].channel, "%s", channel);
        snprintf(update.entries[0].client_id, sizeof update.entries[0].client_id, "%s", client);
        update.entries[0].conns = conns;
    }
    json_t *changes = NULL;
    assert_int_equal(store_presence_apply(store, relay, &update, now, &changes), 0);
    return changes;
}

/* The one change of changes, checked: client goes from before to after. */
static int64_t
presence_change(json_t *changes, const char *client, int64_t before, int64_t after)
{
    assert_int_equal(json_array_size(changes), 1);
    json_t *change = json_array_get(changes, 0);
    assert_string_equal(text(change, "client_id"), client);
    assert_int_equal(number(change, "before"), before);
    assert_int_equal(number(change, "after"), after);
    int64_t version = number(change, "version");
    json_decref(changes);
    return version;
}

#define PRESENCE_A "0123456789abcdef0123456789abcdef"
#define PRESENCE_B "fedcba9876543210fedcba9876543210"

/* Pages would show people who left, miss people who came, or count a tab twice. */
static void
test_presence_sums_relays_orders_by_seq_and_expires(void **state)
{
    struct store *store = *state;
    int64_t v1 = presence_change(
        presence_put(store, "r1", 1, 0, 1000, "project:1", PRESENCE_A, 2, 1000), PRESENCE_A, 0, 2);
    int64_t v2 = presence_change(
        presence_put(store, "r2", 1, 0, 1000, "project:1", PRESENCE_A, 1, 1500), PRESENCE_A, 2, 3);
    assert_true(v2 > v1);
    json_t *clients = NULL;
    int64_t version = 0;
    assert_int_equal(store_presence_list(store, "project:1", &clients, &version), 0);
    assert_int_equal(version, v2);
    assert_int_equal(json_array_size(clients), 1);
    assert_int_equal(number(json_array_get(clients, 0), "connections"), 3);
    json_decref(clients);
    /* r1's later message first, its earlier one after: the later stands. */
    int64_t v3 = presence_change(
        presence_put(store, "r1", 3, 0, 1000, "project:1", PRESENCE_A, 0, 1600), PRESENCE_A, 3, 1);
    assert_true(v3 > v2);
    json_t *none = presence_put(store, "r1", 2, 0, 1000, "project:1", PRESENCE_A, 5, 1700);
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
    /* A row a full resend left out (seq below since) is not renewed by the beat. */
    json_decref(presence_put(store, "r3", 1, 0, 1000, "project:1", PRESENCE_B, 1, 1000));
    json_decref(presence_put(store, "r3", 5, 5, 1000, NULL, NULL, 0, 1900));
    json_decref(presence_put(store, "r2", 2, 0, 1000, NULL, NULL, 0, 1900)); /* r2 renewed */
    json_t *changes = NULL;
    int64_t rows = -1;
    assert_int_equal(store_presence_sweep(store, 2100, 0, &changes, &rows), 0);
    presence_change(changes, PRESENCE_B, 1, 0); /* r1's 0 went too, changing nothing */
    assert_int_equal(rows, 1);
    assert_int_equal(store_presence_sweep(store, 3000, 0, &changes, &rows), 0);
    int64_t v4 = presence_change(changes, PRESENCE_A, 1, 0);
    assert_true(v4 > v3);
    assert_int_equal(rows, 0);
    assert_int_equal(store_presence_list(store, "project:1", &clients, &version), 0);
    assert_int_equal(json_array_size(clients), 0);
    assert_true(version >= v4);
    json_decref(clients);
    /* A relay that says it is gone takes its rows with it at once. */
    json_decref(presence_put(store, "r4", 1, 0, 60000, "task:9", PRESENCE_B, 1, 4000));
    static struct presence_update gone = {.seq = 2, .ttl_ms = 60000, .gone = 1};
    assert_int_equal(store_presence_apply(store, "r4", &gone, 4100, &changes), 0);
    presence_change(changes, PRESENCE_B, 1, 0);
    /* An empty channel's version is forgotten only long after, and never goes back. */
    assert_int_equal(store_presence_sweep(store, 5000, 4200, &changes, &rows), 0);
    json_decref(changes);
    assert_int_equal(store_presence_list(store, "task:9", &clients, &version), 0);
    assert_int_equal(version, 0);
    json_decref(clients);
    int64_t again = presence_change(
        presence_put(store, "r4", 3, 0, 60000, "task:9", PRESENCE_B, 1, 6000), PRESENCE_B, 0, 1);
    assert_true(again >= 6000);
}

/* Every test of the contract, run on each backend. */
#define STORE_TESTS(XX)                                                                            \
    XX(test_lifecycle_claims_oldest_once_and_raises_seq)                                           \
    XX(test_cancel_queued_running_and_finished)                                                    \
    XX(test_list_is_per_client_newest_first_with_cursor)                                           \
    XX(test_leases_renewed_hold_and_expired_are_taken_back)                                        \
    XX(test_retry_later_waits_for_run_at_and_records_errors)                                       \
    XX(test_claim_order_schedule_and_type_limits)                                                  \
    XX(test_idempotency_key_and_queue_bound)                                                       \
    XX(test_submission_rate_is_one_bucket_for_every_connection)                                    \
    XX(test_announce_once)                                                                         \
    XX(test_announced_task_waits_for_others)                                                       \
    XX(test_batches_claim_announce_and_finish_as_one_at_a_time)                                   \
    XX(test_prune_removes_only_old_finished_tasks)                                                 \
    XX(test_admin_views_every_client_workers_and_minutes)                                          \
    XX(test_invalid_utf8_error_is_still_json)                                                      \
    XX(test_a_stale_attempt_changes_nothing)                                                       \
    XX(test_hosts_claiming_at_once_hold_the_limit_and_never_share_a_task)                         \
    XX(test_channels_are_kept_with_the_task)                                                       \
    XX(test_history_gives_offsets_in_order_and_reads_since)                                        \
    XX(test_history_trims_by_size_and_age_and_starts_a_new_epoch)                                  \
    XX(test_history_read_is_bounded_in_bytes)                                                      \
    XX(test_writers_at_once_share_one_stream_without_gaps) \
    XX(test_presence_sums_relays_orders_by_seq_and_expires)

#define ON_SQLITE(test) cmocka_unit_test_setup_teardown(test, setup_sqlite, teardown),
#define ON_POSTGRESQL(test) cmocka_unit_test_setup_teardown(test, setup_pg, teardown),

int
main(void)
{
    const struct CMUnitTest sqlite[] = {STORE_TESTS(ON_SQLITE)};
    const struct CMUnitTest postgresql[] = {STORE_TESTS(ON_POSTGRESQL)};
    int failed = cmocka_run_group_tests_name("store on SQLite", sqlite, NULL, NULL);
    failed += cmocka_run_group_tests_name("store on PostgreSQL", postgresql, NULL, NULL);
    return failed;
}
