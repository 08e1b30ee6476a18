/* Unit tests of what only the PostgreSQL backend has (common/store_pg.c): its schema_version,
 * its upgrades, and a connection lost under a running store.  On a real PostgreSQL: the one
 * TASKWIRE_TEST_PG_URL names (tests/pg.py starts it for `make test-unit`; without it these
 * tests fail, never skip).  Each test starts from an empty public schema.  The contract both
 * backends share is tested in test_store.c. */
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

#include "common/store_pg.h"
#include "errors.h"
#include "store.h"

static PGconn *
connect_test(void)
{
    const char *url = getenv("TASKWIRE_TEST_PG_URL");
    if (!url)
        fail_msg("TASKWIRE_TEST_PG_URL is not set: run through tests/pg.py run");
    PGconn *conn = PQconnectdb(url);
    if (PQstatus(conn) != CONNECTION_OK)
        fail_msg("cannot connect: %s", PQerrorMessage(conn));
    return conn;
}

static void
exec_ok(PGconn *conn, const char *sql)
{
    PGresult *result = PQexec(conn, sql);
    ExecStatusType status = PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    PQclear(result);
}

static int
setup(void **state)
{
    PGconn *conn = connect_test();
    exec_ok(conn, "SET client_min_messages = warning;"
                  "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    *state = conn;
    return 0;
}

static int
teardown(void **state)
{
    PQfinish(*state);
    return 0;
}

static int
count_rows(PGconn *conn, const char *sql)
{
    PGresult *result = PQexec(conn, sql);
    assert_int_equal(PQresultStatus(result), PGRES_TUPLES_OK);
    int n = (int)strtol(PQgetvalue(result, 0, 0), NULL, 10);
    PQclear(result);
    return n;
}

/* A program started on an empty database would find no tables, or a second start would fail. */
static void
test_schema_is_created_once_and_found_again(void **state)
{
    PGconn *conn = *state;
    char err[512] = "";
    assert_int_equal(store_pg_schema_open(conn, err, sizeof err), 0);
    assert_int_equal(store_pg_schema_open(conn, err, sizeof err), 0);
    assert_int_equal(count_rows(conn, "SELECT count(*) FROM schema_version"), 1);
    assert_int_equal(count_rows(conn, "SELECT max(version) FROM schema_version"),
                     STORE_PG_SCHEMA_VERSION);
    assert_int_equal(count_rows(conn, "SELECT count(*) FROM information_schema.tables WHERE"
                                      " table_schema = 'public' AND table_name IN ('tasks',"
                                      " 'workers', 'idempotency', 'submit_rate')"),
                     4);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);
}

/* An older program would write into a schema it does not know, and corrupt it. */
static void
test_a_newer_schema_is_refused_and_left_alone(void **state)
{
    PGconn *conn = *state;
    char err[512] = "";
    assert_int_equal(store_pg_schema_open(conn, err, sizeof err), 0);
    exec_ok(conn, "UPDATE schema_version SET version = 99");
    assert_int_equal(store_pg_schema_open(conn, err, sizeof err), TW_E_STORE);
    char expected[128];
    snprintf(expected, sizeof expected, "schema version 99, newer than this program knows (%d)",
             STORE_PG_SCHEMA_VERSION);
    assert_non_null(strstr(err, expected));
    assert_int_equal(count_rows(conn, "SELECT max(version) FROM schema_version"), 99);
    assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);
}

/* Programs started together on a new database would fail on each other's half-made tables. */
static void
test_processes_opening_a_new_database_at_once_take_turns(void **state)
{
    (void)state;
    enum { OPENERS = 4 };
    pid_t pids[OPENERS];
    for (int i = 0; i < OPENERS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            PGconn *mine = PQconnectdb(getenv("TASKWIRE_TEST_PG_URL"));
            char err[512];
            int rc =
                PQstatus(mine) == CONNECTION_OK ? store_pg_schema_open(mine, err, sizeof err) : -1;
            if (rc != 0)
                fprintf(stderr, "opener %d: %s\n", i, err);
            PQfinish(mine);
            _exit(rc == 0 ? 0 : 1);
        }
    }
    for (int i = 0; i < OPENERS; i++) {
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(count_rows(*state, "SELECT count(*) FROM schema_version"), 1);
}

/* A database made by the first PostgreSQL store (schema 1) would not open, or lose its tasks,
 * once schema 2 came: it is upgraded on open, its tasks kept and counted from then on. */
static void
test_schema_1_is_upgraded_to_2(void **state)
{
    PGconn *conn = *state;
    char err[512] = "";
    assert_int_equal(store_pg_schema_open(conn, err, sizeof err), 0);
    /* What schema 1 had, and a task in it. */
    exec_ok(conn, "DROP TRIGGER task_minutes_insert ON tasks; DROP TRIGGER task_minutes_status"
                  " ON tasks; DROP FUNCTION task_minutes_count(); DROP TABLE task_minutes;"
                  " DROP TABLE probe; ALTER TABLE tasks DROP COLUMN channels;"
                  " ALTER TABLE tasks DROP COLUMN announced_by, DROP COLUMN announced_at;"
                  " DROP TABLE presence; DROP TABLE presence_channels;"
                  " UPDATE schema_version SET version = 1;"
                  "INSERT INTO tasks (id, client_id, type, status, created_at, run_at) VALUES"
                  " ('00000000000000000000000000000001', 'old', 'sleep', 'queued', 1000, 1000)");
    struct store_options options = {.backend = STORE_BACKEND_POSTGRESQL,
                                    .url = getenv("TASKWIRE_TEST_PG_URL")};
    struct store *store = store_new(&options, err, sizeof err);
    assert_non_null(store);
    assert_int_equal(count_rows(conn, "SELECT max(version) FROM schema_version"),
                     STORE_PG_SCHEMA_VERSION);
    json_t *claimed = NULL;
    int announce = 0;
    int64_t waited = 0;
    assert_int_equal(
        store_tasks_claim(store, "w", "h", 10000, NULL, 1, &claimed, &announce, &waited), 1);
    assert_string_equal(json_string_value(json_object_get(claimed, "id")),
                        "00000000000000000000000000000001");
    assert_true(json_is_array(json_object_get(claimed, "channels"))); /* schema 3's, [] */
    assert_int_equal(json_array_size(json_object_get(claimed, "channels")), 0);
    json_decref(claimed);
    assert_int_equal(count_rows(conn, "SELECT sum(started) FROM task_minutes"), 1);
    assert_int_equal(store_check_writable(store), 0);
    store_destroy(&store);
}

/* A database of schema 3 (before announcers, presence and channel history) would not open, or
 * its channels would have no history, once schema 6 came: it is upgraded on open. */
static void
test_schema_3_is_upgraded_to_6(void **state)
{
    PGconn *conn = *state;
    char err[512] = "";
    assert_int_equal(store_pg_schema_open(conn, err, sizeof err), 0);
    exec_ok(conn, "DROP TABLE channel_history; DROP TABLE channel_streams;"
                  " ALTER TABLE tasks DROP COLUMN announced_by, DROP COLUMN announced_at;"
                  " UPDATE schema_version SET version = 3");
    struct store_options options = {.backend = STORE_BACKEND_POSTGRESQL,
                                    .url = getenv("TASKWIRE_TEST_PG_URL")};
    struct store *store = store_new(&options, err, sizeof err);
    assert_non_null(store);
    assert_int_equal(count_rows(conn, "SELECT max(version) FROM schema_version"),
                     STORE_PG_SCHEMA_VERSION);
    struct store_history_item item = {
        .channel = "project:1", .payload = "{}", .keep = 1, .ttl_ms = 60000};
    assert_int_equal(store_history_append(store, &item, 1), 0);
    assert_int_equal(item.offset, 1);
    store_destroy(&store);
}

/* A busy day would leave a row per change of every task for the stats to sum: pruning sums each
 * past minute's rows into one, and the counts stay what they were. */
static void
test_prune_sums_each_past_minute_into_one_row(void **state)
{
    PGconn *conn = *state;
    char err[512] = "";
    struct store_options options = {.backend = STORE_BACKEND_POSTGRESQL,
                                    .url = getenv("TASKWIRE_TEST_PG_URL")};
    struct store *store = store_new(&options, err, sizeof err);
    assert_non_null(store);
    exec_ok(conn, "INSERT INTO task_minutes (minute, submitted, started, queued) SELECT"
                  " floor(extract(epoch FROM now()) / 60)::bigint - 3, 1, n % 2, 1 - n % 2"
                  " FROM generate_series(1, 10) AS n");
    assert_int_equal(store_tasks_prune(store, 3600000), 0);
    assert_int_equal(count_rows(conn, "SELECT count(*) FROM task_minutes"), 1);
    assert_int_equal(count_rows(conn, "SELECT sum(submitted) FROM task_minutes"), 10);
    assert_int_equal(count_rows(conn, "SELECT sum(started) FROM task_minutes"), 5);
    assert_int_equal(count_rows(conn, "SELECT sum(queued) FROM task_minutes"), 5);
    store_destroy(&store);
}

/* A handler or worker whose connection broke (the server restarted, a network cut) would
 * answer 500s, or need a restart: the call that finds it broken answers 503 "cannot be
 * reached" and makes it the store's problem; the next call connects again. */
static void
test_a_lost_connection_is_unreachable_then_connected_again(void **state)
{
    PGconn *conn = *state;
    char err[512] = "";
    struct store_options options = {.backend = STORE_BACKEND_POSTGRESQL,
                                    .url = getenv("TASKWIRE_TEST_PG_URL")};
    struct store *store = store_new(&options, err, sizeof err);
    assert_non_null(store);
    json_t *params = json_object(), *task = NULL;
    struct store_submission sub = {
        .client_id = "c", .type = "sleep", .params = params, .max_attempts = 1};
    struct store_submission *one = &sub;
    assert_int_equal(store_tasks_insert(store, &one, 1), 0);
    assert_int_equal(sub.rc, 0);
    const char *id = json_string_value(json_object_get(sub.task, "id"));
    exec_ok(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                  " WHERE datname = current_database() AND pid <> pg_backend_pid()");
    assert_int_equal(store_task_get(store, id, "c", &task), TW_E_STORE_UNREACHABLE);
    assert_int_equal(store_problem(store), TW_E_STORE_UNREACHABLE);
    assert_int_equal(tw_error_status(TW_E_STORE_UNREACHABLE), 503);
    assert_int_equal(store_task_get(store, id, "c", &task), 0);
    assert_int_equal(store_problem(store), 0);
    json_decref(task);
    /* A worker's transaction that lost its connection fails whole, and the next one works. */
    exec_ok(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                  " WHERE datname = current_database() AND pid <> pg_backend_pid()");
    assert_int_equal(store_transaction_begin(store), TW_E_STORE);
    assert_int_equal(store_transaction_begin(store), 0);
    json_t *claimed = NULL;
    int announce = 0;
    int64_t waited = 0;
    assert_int_equal(
        store_tasks_claim(store, "w", "h", 10000, NULL, 1, &claimed, &announce, &waited), 1);
    json_decref(claimed);
    exec_ok(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                  " WHERE datname = current_database() AND pid <> pg_backend_pid()");
    assert_int_equal(store_task_progress(store, id, 1, 50, "half", NULL), TW_E_STORE);
    assert_int_equal(store_transaction_commit(store), TW_E_STORE);
    assert_int_equal(store_check_writable(store), 0);
    assert_int_equal(store_task_get(store, id, NULL, &task), 0);
    assert_string_equal(json_string_value(json_object_get(task, "status")), "queued");
    json_decref(task);
    json_decref(sub.task);
    json_decref(params);
    store_destroy(&store);
}

/* A server that cannot be reached at start would leave a program without a store and no
 * reason: store_new fails and says why. */
static void
test_an_unreachable_server_fails_store_new_with_a_reason(void **state)
{
    (void)state;
    char err[512] = "";
    struct store_options options = {.backend = STORE_BACKEND_POSTGRESQL,
                                    .url = "host=127.0.0.1 port=1 connect_timeout=1"};
    assert_null(store_new(&options, err, sizeof err));
    assert_non_null(strstr(err, "PostgreSQL"));
    assert_null(strchr(err, '\n'));
}

/* A lost connection would leave the caller thinking the schema was there. */
static void
test_a_broken_connection_is_an_error_with_a_reason(void **state)
{
    (void)state;
    PGconn *conn = PQconnectdb("host=127.0.0.1 port=1 connect_timeout=1");
    char err[512] = "";
    assert_int_equal(store_pg_schema_open(conn, err, sizeof err), TW_E_STORE);
    assert_true(err[0] != '\0');
    PQfinish(conn);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_is_created_once_and_found_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_newer_schema_is_refused_and_left_alone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_processes_opening_a_new_database_at_once_take_turns,
                                        setup, teardown),
        cmocka_unit_test(test_a_broken_connection_is_an_error_with_a_reason),
        cmocka_unit_test_setup_teardown(test_schema_1_is_upgraded_to_2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_3_is_upgraded_to_6, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_lost_connection_is_unreachable_then_connected_again,
                                        setup, teardown),
        cmocka_unit_test(test_an_unreachable_server_fails_store_new_with_a_reason),
        cmocka_unit_test_setup_teardown(test_prune_sums_each_past_minute_into_one_row, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
