/* Unit tests for common/store.c on a real SQLite file: the store is the queue and the truth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errors.h"
#include "store.h"
#include "tests/unit/tempdb.h"

static char dir[64];
static char path[256];

static int
setup(void **state)
{
    if (tempdb_make(dir, sizeof dir, "store", path, sizeof path) != 0)
        return -1;
    char err[256];
    *state = store_new(path, 1000, err, sizeof err);
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

static json_t *
insert(struct store *store, const char *client)
{
    json_t *params = json_pack("{s:i}", "steps", 3);
    struct store_submission sub = {client, "sleep", "demo", params, NULL, -1}, *one = &sub;
    assert_int_equal(store_tasks_insert(store, &one, 1), 0);
    assert_int_equal(sub.rc, 0);
    assert_non_null(sub.task);
    json_decref(params);
    return sub.task;
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

/* A task could run twice, out of order, or skip a state, and seq would not rise with it. */
static void
test_lifecycle_claims_oldest_once_and_raises_seq(void **state)
{
    struct store *store = *state;
    json_t *first = insert(store, "a"), *second = insert(store, "a"), *claimed = NULL, *task;
    assert_string_equal(text(first, "status"), "queued");
    assert_int_equal(number(first, "seq"), 1);

    assert_int_equal(store_task_claim(store, "w1", &claimed), 0);
    assert_string_equal(text(claimed, "id"), text(first, "id"));
    assert_string_equal(text(claimed, "status"), "running");
    assert_int_equal(number(claimed, "seq"), 2);
    assert_int_equal(number(claimed, "attempts"), 1);

    assert_int_equal(store_task_progress(store, text(first, "id"), 150, "half", &task), 0);
    assert_int_equal(number(task, "progress"), 100);
    assert_int_equal(number(task, "seq"), 3);
    json_decref(task);

    json_t *result = json_pack("{s:i}", "ok", 1);
    assert_int_equal(store_task_finish(store, text(first, "id"), STORE_STATUS_SUCCEEDED, result,
                                       NULL, "done", &task),
                     0);
    json_decref(result);
    assert_string_equal(text(task, "status"), "succeeded");
    assert_int_equal(number(task, "seq"), 4);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(task, "result"), "ok")), 1);
    assert_non_null(text(task, "finished_at"));
    json_decref(task);

    /* Finished is final: no more progress, no second finish. */
    assert_int_equal(store_task_progress(store, text(first, "id"), 5, "late", &task),
                     TW_E_CONFLICT);
    assert_int_equal(store_task_finish(store, text(first, "id"), STORE_STATUS_FAILED, NULL, "x",
                                       NULL, &task),
                     TW_E_CONFLICT);
    json_decref(claimed);

    assert_int_equal(store_task_claim(store, "w1", &claimed), 0);
    assert_string_equal(text(claimed, "id"), text(second, "id"));
    json_decref(claimed);
    assert_int_equal(store_task_claim(store, "w1", &claimed), TW_E_NOT_FOUND);
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
    assert_int_equal(store_task_claim(store, "w", &task), TW_E_NOT_FOUND);

    json_t *running = insert(store, "c");
    assert_int_equal(store_task_claim(store, "w", &task), 0);
    json_decref(task);
    assert_int_equal(store_task_cancel_requested(store, text(running, "id")), 0);
    assert_int_equal(store_task_cancel(store, text(running, "id"), "c", &final, &task), 0);
    assert_int_equal(final, 0);
    assert_string_equal(text(task, "status"), "running");
    json_decref(task);
    assert_int_equal(store_task_cancel_requested(store, text(running, "id")), 1);
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

/* A dead worker's task would stay "running" forever; a live one's would be taken from it. */
static void
test_reap_fails_only_tasks_of_dead_workers(void **state)
{
    struct store *store = *state;
    json_t *a = insert(store, "r"), *b = insert(store, "r"), *task, *reaped = NULL;
    assert_int_equal(store_worker_heartbeat(store, "live", 2), 0);
    assert_int_equal(store_task_claim(store, "live", &task), 0);
    json_decref(task);
    assert_int_equal(store_task_claim(store, "dead", &task), 0);
    json_decref(task);
    assert_int_equal(store_workers_alive(store, 5000), 1);
    assert_int_equal(store_tasks_reap(store, 5000, &reaped), 0);
    assert_int_equal(json_array_size(reaped), 1);
    json_t *failed = json_array_get(reaped, 0);
    assert_string_equal(text(failed, "id"), text(b, "id"));
    assert_string_equal(text(failed, "status"), "failed");
    assert_string_equal(text(failed, "error"), "worker lost");
    json_decref(reaped);
    assert_int_equal(store_worker_remove(store, "live"), 0);
    assert_int_equal(store_workers_alive(store, 5000), 0);
    assert_int_equal(store_check_writable(store), 0);
    json_decref(a);
    json_decref(b);
}

/* A program writing invalid UTF-8 to stderr would make the task unreadable as JSON. */
static void
test_invalid_utf8_error_is_still_json(void **state)
{
    struct store *store = *state;
    json_t *queued = insert(store, "u"), *task;
    assert_int_equal(store_task_claim(store, "w", &task), 0);
    json_decref(task);
    assert_int_equal(store_task_finish(store, text(queued, "id"), STORE_STATUS_FAILED, NULL,
                                       "bad \xff\xfe bytes", NULL, &task),
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
            struct store *mine = store_new(path, 5000, err, sizeof err);
            uint64_t syncs = UINT64_MAX;
            if (mine && store_group_commit(mine) == 0) {
                int ok = 1;
                for (int i = 0; i < GROUP_TASKS && ok; i++) {
                    json_t *params = json_object();
                    struct store_submission sub = {"g", "sleep", "", params, NULL, -1};
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
    struct store *fresh = store_new(path, 1000, err, sizeof err);
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lifecycle_claims_oldest_once_and_raises_seq, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued_running_and_finished, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_is_per_client_newest_first_with_cursor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reap_fails_only_tasks_of_dead_workers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_invalid_utf8_error_is_still_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_keeps_every_task_and_shares_syncs,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
