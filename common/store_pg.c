/* store_pg.c: the task store's schema on PostgreSQL (see store_pg.h: not yet a backend).
 *
 * Assumes a PostgreSQL 12 or later (GENERATED ... AS IDENTITY, CREATE INDEX IF NOT EXISTS) and
 * a role that may create tables in the database's default schema.  Every statement goes
 * through PQexecParams or PQexec of constant text: no value is ever spliced into SQL.
 */
#include "store_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "store_backend.h"

#define STORE_PG_SCHEMA_LOCK "736275001" /* the advisory lock key schema changes take */

/* Schema 1: the tables of store_sqlite.c's schema 3 but for its per-minute counts, with the
 * same columns and meanings. */
#define STORE_PG_TIME "BIGINT"
#define STORE_PG_SEQNO "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
#define STORE_PG_FLAG "BOOLEAN NOT NULL DEFAULT false"
#define STORE_PG_INDEXES_AND_TABLES                                                                \
    "CREATE INDEX tasks_by_client ON tasks (client_id, seqno);"                                    \
    "CREATE INDEX tasks_claimable ON tasks (priority DESC, seqno) WHERE status = 'queued';"        \
    "CREATE INDEX tasks_queued_by_client ON tasks (client_id) WHERE status = 'queued';"            \
    "CREATE INDEX tasks_running ON tasks (type) WHERE status = 'running';"                         \
    "CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;"            \
    "CREATE TABLE idempotency ("                                                                   \
    " client_id TEXT NOT NULL, key TEXT NOT NULL, task_id TEXT NOT NULL,"                          \
    " request_hash TEXT NOT NULL, created_at BIGINT NOT NULL,"                                     \
    " PRIMARY KEY (client_id, key));"                                                              \
    "CREATE INDEX idempotency_by_age ON idempotency (created_at);"                                 \
    "CREATE TABLE submit_rate ("                                                                   \
    " client_id TEXT PRIMARY KEY, units BIGINT NOT NULL, at BIGINT NOT NULL);"

static const char store_pg_schema[] =
    STORE_TASKS_TABLE(STORE_PG_SEQNO, STORE_PG_TIME, STORE_PG_FLAG)
        STORE_WORKERS_TABLE(STORE_PG_TIME) STORE_PG_INDEXES_AND_TABLES
    "INSERT INTO schema_version (version) VALUES (1);";

/* Run sql (constant text, no parameters); 0, or TW_E_STORE with the server's reason in err. */
static int
store_pg_exec(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    PGresult *result = PQexec(conn, sql);
    ExecStatusType status = PQresultStatus(result);
    int rc = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK ? 0 : TW_E_STORE;
    if (rc != 0)
        snprintf(err, errlen, "%s", PQerrorMessage(conn));
    PQclear(result);
    return rc;
}

/* The version in schema_version, 0 when the table has no row, or -1 on error (err says). */
static int
store_pg_version(PGconn *conn, char *err, size_t errlen)
{
    PGresult *result = PQexec(conn, "SELECT max(version) FROM schema_version");
    int version = -1;
    if (PQresultStatus(result) != PGRES_TUPLES_OK || PQntuples(result) != 1)
        snprintf(err, errlen, "cannot read the schema version: %s", PQerrorMessage(conn));
    else if (PQgetisnull(result, 0, 0))
        version = 0;
    else
        version = (int)strtol(PQgetvalue(result, 0, 0), NULL, 10);
    PQclear(result);
    return version;
}

int
store_pg_schema_open(PGconn *conn, char *err, size_t errlen)
{
    /* The lock first, the table after: the second of two processes waits for the first's
     * commit and then finds the schema made. */
    if (store_pg_exec(conn,
                      "BEGIN; SET LOCAL client_min_messages = warning;"
                      " SELECT pg_advisory_xact_lock(" STORE_PG_SCHEMA_LOCK ");"
                      " CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
                      err, errlen) != 0)
        goto fail;
    int version = store_pg_version(conn, err, errlen);
    if (version < 0)
        goto fail;
    if (version > STORE_PG_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "the database has schema version %d, newer than this program knows (%d): "
                 "run the newer taskwire, or restore a backup",
                 version, STORE_PG_SCHEMA_VERSION);
        goto fail;
    }
    if (version == 0 && store_pg_exec(conn, store_pg_schema, err, errlen) != 0)
        goto fail;
    if (store_pg_exec(conn, "COMMIT", err, errlen) != 0)
        goto fail;
    return 0;
fail:
    /* A ROLLBACK outside a transaction only warns; its own failure adds nothing to err. */
    PQclear(PQexec(conn, "ROLLBACK"));
    return TW_E_STORE;
}

struct store *
store_pg_new(const char *url, char *err, size_t errlen)
{
    (void)url;
    snprintf(err, errlen, "the PostgreSQL store is not yet available in this build");
    return NULL;
}
