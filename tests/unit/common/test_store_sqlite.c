/* Unit tests of what only the SQLite backend has (common/store_sqlite.c): its schema's
 * upgrades, group commit, the mapping of SQLite's failures and a full or read-only file.  The
 * .c itself is included, to reach its mapping of failures and its connection.  The contract
 * both backends share is tested in test_store.c. */
#include "tests/unit/common/store_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/store_sqlite.c"
#include "tests/unit/tempdb.h"

static char dir[64];
static char path[256];

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
    *state = tempdb_store(path, 1000, err, sizeof err);
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
    struct store *upgraded = tempdb_store(old_path, 1000, err, sizeof err);
    assert_non_null(upgraded);
    json_t *task = NULL;
    assert_int_equal(claim(upgraded, "w", &task), 0);
    assert_string_equal(text(task, "id"), "00000000000000000000000000000001");
    json_decref(task);
    store_destroy(&upgraded);
    assert_int_equal(sqlite3_open(old_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_null(tempdb_store(old_path, 1000, err, sizeof err));
    assert_non_null(strstr(err, "newer than this program"));
    assert_int_equal(tempdb_remove(old_dir, old_path), 0);
}

/* A database of schema 2 would not open, or lose its workers, when schema 3 came (or its tasks
 * when schema 4 gave them channels). */
static void
test_schema_2_is_upgraded_to_3(void **state)
{
    (void)state;
    char old_dir[64], old_path[256], err[512];
    assert_int_equal(tempdb_make(old_dir, sizeof old_dir, "schema2", old_path, sizeof old_path), 0);
    struct store *store = tempdb_store(old_path, 1000, err, sizeof err);
    assert_non_null(store);
    store_destroy(&store);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(old_path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "DROP TRIGGER task_minutes_insert; DROP TRIGGER task_minutes_status;"
                     "DROP TABLE task_minutes; ALTER TABLE workers DROP COLUMN host;"
                     "ALTER TABLE tasks DROP COLUMN channels;"
                     "ALTER TABLE tasks DROP COLUMN announced_by;"
                     "ALTER TABLE tasks DROP COLUMN announced_at;"
                     "DROP TABLE presence; DROP TABLE presence_channels;"
                     "INSERT INTO workers VALUES ('old', 1, 1, 1, 1);"
                     "PRAGMA user_version = 2;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    store = tempdb_store(old_path, 1000, err, sizeof err);
    assert_non_null(store);
    assert_int_equal(store_schema_version(sqlite_of(store)->db), STORE_SCHEMA_VERSION);
    assert_int_equal(store_worker_heartbeat(store, "new", 1), 0);
    json_t *workers = NULL, *queues = NULL;
    assert_int_equal(store_admin_status(store, &workers, &queues), 0);
    assert_int_equal(json_array_size(workers), 2);
    json_decref(workers);
    json_decref(queues);
    json_t *task = insert(store, "c");
    assert_int_equal(json_array_size(json_object_get(task, "channels")), 0); /* schema 4's */
    json_decref(task);
    json_t *clients = NULL; /* schema 5's */
    int64_t version = -1;
    assert_int_equal(store_presence_list(store, "project:1", &clients, &version), 0);
    assert_int_equal(json_array_size(clients), 0);
    assert_int_equal(version, 0);
    json_decref(clients);
    json_t *rows = NULL, *durations = NULL;
    assert_int_equal(store_admin_stats(store, 1, &rows, &durations), 0);
    assert_int_equal(number(json_array_get(rows, 0), "submitted"), 1);
    json_decref(rows);
    json_decref(durations);
    store_destroy(&store);
    assert_int_equal(tempdb_remove(old_dir, old_path), 0);
}

/* A database of schema 4 (before announcers, presence and channel history) would not open, or
 * its channels would have no history, once schema 7 came: it is upgraded on open. */
static void
test_schema_4_is_upgraded_to_7(void **state)
{
    (void)state;
    char old_dir[64], old_path[256], err[512];
    assert_int_equal(tempdb_make(old_dir, sizeof old_dir, "schema4", old_path, sizeof old_path), 0);
    struct store *store = tempdb_store(old_path, 1000, err, sizeof err);
    assert_non_null(store);
    store_destroy(&store);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(old_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TABLE channel_history; DROP TABLE channel_streams;"
                                  "ALTER TABLE tasks DROP COLUMN announced_by;"
                                  "ALTER TABLE tasks DROP COLUMN announced_at;"
                                  "PRAGMA user_version = 4;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    store = tempdb_store(old_path, 1000, err, sizeof err);
    assert_non_null(store);
    assert_int_equal(store_schema_version(sqlite_of(store)->db), STORE_SCHEMA_VERSION);
    struct store_history_item item = {
        .channel = "project:1", .payload = "{}", .keep = 1, .ttl_ms = 60000};
    assert_int_equal(store_history_append(store, &item, 1), 0);
    assert_int_equal(item.offset, 1);
    store_destroy(&store);
    assert_int_equal(tempdb_remove(old_dir, old_path), 0);
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
            struct store *mine = tempdb_store(path, 5000, err, sizeof err);
            uint64_t syncs = UINT64_MAX;
            if (mine && store_group_commit(mine) == 0) {
                int ok = 1;
                for (int i = 0; i < GROUP_TASKS && ok; i++) {
                    json_t *params = json_object();
                    struct store_submission sub = {.client_id = "g",
                                                   .type = "sleep",
                                                   .name = "",
                                                   .params = params,
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
    struct store *fresh = tempdb_store(path, 1000, err, sizeof err);
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
    assert_int_equal(
        sqlite3_exec(sqlite_of(store)->db, "PRAGMA max_page_count = 1", NULL, NULL, NULL),
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
    struct store *other = tempdb_store(path, 1000, err, sizeof err);
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
    assert_int_equal(sqlite3_open_v2(path, &sqlite_of(store)->db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
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
        cmocka_unit_test(test_schema_upgrade_and_newer_schema_refused),
        cmocka_unit_test(test_schema_2_is_upgraded_to_3),
        cmocka_unit_test(test_schema_4_is_upgraded_to_7),
        cmocka_unit_test_setup_teardown(test_group_commit_keeps_every_task_and_shares_syncs, setup,
                                        teardown),
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
