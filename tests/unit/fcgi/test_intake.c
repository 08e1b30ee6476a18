/* Unit tests for fcgi/intake.c: a handler process's threads commit their submissions together,
 * on a real SQLite file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fcgi/intake.c"
#include "tests/unit/tempdb.h"

#define INTAKE_THREADS 8 /* serving threads submitting at once */
#define INTAKE_TASKS 50  /* submissions each */

static char dir[64];
static char path[256];

static int
setup(void **state)
{
    (void)state;
    return tempdb_make(dir, sizeof dir, "intake", path, sizeof path);
}

static int
teardown(void **state)
{
    (void)state;
    return tempdb_remove(dir, path);
}

struct submitter {
    struct intake *intake;
    char client[16];
    int ok; /* submissions answered with a task */
};

/* Submit INTAKE_TASKS in groups of 1, 2, 3, ... (the requests a thread holds at once). */
static void *
submitter_main(void *arg)
{
    struct submitter *self = arg;
    struct store_submission group[INTAKE_TASKS];
    struct store_submission *subs[INTAKE_TASKS];
    for (int i = 0, size = 1; i < INTAKE_TASKS; i += size, size++) {
        if (size > INTAKE_TASKS - i)
            size = INTAKE_TASKS - i;
        for (int k = 0; k < size; k++) {
            json_t *params = json_pack("{s:i}", "n", i + k);
            group[k] = (struct store_submission){
                .client_id = self->client, .type = "sleep", .name = "", .params = params};
            subs[k] = &group[k];
        }
        intake_submit(self->intake, subs, (size_t)size);
        for (int k = 0; k < size; k++) {
            const struct store_submission *sub = &group[k];
            if (sub->rc == 0 && sub->task &&
                strcmp(json_string_value(json_object_get(sub->task, "client_id")),
                       self->client) == 0 &&
                json_integer_value(json_object_get(json_object_get(sub->task, "params"), "n")) ==
                    i + k)
                self->ok++;
            json_decref(sub->task);
            json_decref((json_t *)sub->params);
        }
    }
    return NULL;
}

/* The leader's report of each stored task; only the leader calls it, one at a time. */
static void
intake_count(void *data, const struct store_submission *sub)
{
    int *reported = data;
    if (sub->rc == 0 && sub->task)
        (*reported)++;
}

/* If the intake lost a submission, answered one with another thread's task, or stopped
 * sharing commits, concurrent POST /api/tasks would lose tasks, leak them across clients or
 * queue for a disk flush each. */
static void
test_threads_share_commits_and_each_gets_its_own_task(void **state)
{
    (void)state;
    char err[256];
    int reported = 0;
    struct store *writer = tempdb_store(path, 5000, err, sizeof err);
    assert_non_null(writer);
    assert_int_equal(store_group_commit(writer), 0);
    struct intake intake;
    assert_int_equal(intake_init(&intake, writer, intake_count, &reported), 0);
    struct submitter submitters[INTAKE_THREADS];
    pthread_t threads[INTAKE_THREADS];
    for (int t = 0; t < INTAKE_THREADS; t++) {
        submitters[t] = (struct submitter){&intake, "", 0};
        snprintf(submitters[t].client, sizeof submitters[t].client, "c%d", t);
        assert_int_equal(pthread_create(&threads[t], NULL, submitter_main, &submitters[t]), 0);
    }
    for (int t = 0; t < INTAKE_THREADS; t++) {
        assert_int_equal(pthread_join(threads[t], NULL), 0);
        assert_int_equal(submitters[t].ok, INTAKE_TASKS);
    }
    unsigned long long commits = intake.commits;
    uint64_t syncs = store_sync_count(writer);
    intake_fini(&intake);
    store_destroy(&writer);
    /* Each stored task was reported once, for the worker pool's nudge. */
    assert_int_equal(reported, INTAKE_THREADS * INTAKE_TASKS);

    /* Every task is in the file, for a fresh connection, under its own client. */
    struct store *fresh = tempdb_store(path, 1000, err, sizeof err);
    assert_non_null(fresh);
    for (int t = 0; t < INTAKE_THREADS; t++) {
        json_t *tasks = NULL;
        assert_int_equal(store_task_list(fresh, submitters[t].client, NULL, NULL, STORE_LIST_MAX,
                                         &tasks),
                         0);
        assert_int_equal(json_array_size(tasks), INTAKE_TASKS);
        json_decref(tasks);
    }
    store_destroy(&fresh);
    /* Threads shared transactions and flushes. */
    assert_true(commits < INTAKE_THREADS * INTAKE_TASKS);
    assert_true(syncs <= commits);
}

/* A thread may hold more submissions than one commit takes: they must all be stored, in
 * several commits, or a busy handler would drop requests past the limit. */
static void
test_a_group_over_the_batch_limit_is_committed_in_parts(void **state)
{
    (void)state;
    char err[256];
    int reported = 0;
    struct store *writer = tempdb_store(path, 5000, err, sizeof err);
    assert_non_null(writer);
    struct intake intake;
    assert_int_equal(intake_init(&intake, writer, intake_count, &reported), 0);
    enum { count = INTAKE_BATCH_MAX * 2 + 1 };
    struct store_submission group[count];
    struct store_submission *subs[count];
    json_t *params = json_object();
    for (int i = 0; i < count; i++) {
        group[i] = (struct store_submission){
            .client_id = "big", .type = "sleep", .name = "", .params = params};
        subs[i] = &group[i];
    }
    intake_submit(&intake, subs, count);
    for (int i = 0; i < count; i++) {
        assert_int_equal(group[i].rc, 0);
        assert_non_null(group[i].task);
        json_decref(group[i].task);
    }
    assert_int_equal(reported, count);
    assert_int_equal(intake.commits, 3);
    json_t *tasks = NULL;
    assert_int_equal(store_task_list(writer, "big", NULL, NULL, STORE_LIST_MAX, &tasks), 0);
    assert_int_equal(json_array_size(tasks), count); /* under STORE_LIST_MAX */
    json_decref(tasks);
    json_decref(params);
    intake_fini(&intake);
    store_destroy(&writer);
}

/* If one bad submission failed its whole batch, a client's mistake would fail other clients'
 * requests that happened to commit with it. */
static void
test_a_failed_submission_fails_alone(void **state)
{
    (void)state;
    char err[256];
    struct store *store = tempdb_store(path, 1000, err, sizeof err);
    assert_non_null(store);
    json_t *params = json_object();
    /* No client id breaks the table's NOT NULL rule for that row only. */
    struct store_submission a = {.client_id = "a", .type = "sleep", .name = "", .params = params};
    struct store_submission bad = {.client_id = NULL, .type = "sleep", .name = "",
                                   .params = params};
    struct store_submission b = {.client_id = "b", .type = "sleep", .name = "", .params = params};
    struct store_submission *subs[] = {&a, &bad, &b};
    assert_int_equal(store_tasks_insert(store, subs, 3), 0);
    assert_int_equal(a.rc, 0);
    assert_int_not_equal(bad.rc, 0);
    assert_null(bad.task);
    assert_int_equal(b.rc, 0);
    json_t *found = NULL;
    const char *id = json_string_value(json_object_get(b.task, "id"));
    assert_int_equal(store_task_get(store, id, "b", &found), 0);
    json_decref(found);
    json_decref(a.task);
    json_decref(b.task);
    json_decref(params);
    store_destroy(&store);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_threads_share_commits_and_each_gets_its_own_task,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_group_over_the_batch_limit_is_committed_in_parts,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_failed_submission_fails_alone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
