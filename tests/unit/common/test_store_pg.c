/* Unit tests for common/store_pg.c on a real PostgreSQL: the one TASKWIRE_TEST_PG_URL names
 * (tests/pg.py starts it for `make test-unit`; without it these tests fail, never skip).  Each
 * test starts from an empty public schema. */
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
    assert_non_null(strstr(err, "schema version 99, newer than this program knows (1)"));
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
            int rc = PQstatus(mine) == CONNECTION_OK ? store_pg_schema_open(mine, err, sizeof err)
                                                     : -1;
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
