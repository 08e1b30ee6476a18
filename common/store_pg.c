/* store_pg.c: the task store on PostgreSQL (libpq), with store_sqlite.c's semantics: the same
 * rows, the same fencing by attempt, leases, retries, limits and counts, the same JSON (built by
 * store.c from the rows).  Every host of a deployment may run handlers and workers against one
 * database; the claims of all of them hold each type's limit together.
 *
 * Assumes PostgreSQL 12 or later and a role that may create tables, functions and triggers in
 * the database's default schema (the schema is made or upgraded on open, see
 * store_pg_schema_open).  Every statement goes through PQexecParams with its values bound as
 * parameters ($1, ...), or PQexec of constant text: no value is ever spliced into SQL.  Times
 * are ms since the epoch from the caller's clock, as on SQLite, so the hosts' clocks should
 * agree (NTP) for run_at and leases to mean the same everywhere.
 *
 * A 202 is on disk when COMMIT returns: synchronous_commit stays on (the server's default) for
 * every connection, the workers' too (pg_worker_durability says why); the server itself shares
 * flushes between concurrent commits, so store_group_commit has nothing to do.  A connection
 * found broken is dropped and made again at the next call (never inside a transaction: that
 * call fails, and the caller's commit after it); until one succeeds, calls answer
 * TW_E_STORE_UNREACHABLE (503).  Transactions are READ COMMITTED, each statement seeing what
 * was committed before it began, which the claim and the submission locks below rely on.
 */
#include "store_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bucket.h"
#include "clock.h"
#include "errors.h"
#include "log.h"
#include "protocol.h"
#include "store_backend.h"
#include "token.h"

/* Keys of the advisory locks (the first of pg_advisory_xact_lock's two integers). */
#define STORE_PG_SCHEMA_LOCK "736275001"   /* schema changes */
#define STORE_PG_TYPE_LOCK "736275002"     /* a type's claims, the second integer hashtext(type) */
#define STORE_PG_CLIENT_LOCK "736275003"   /* a client's admission, the second its hash */
#define STORE_PG_PRESENCE_LOCK "736275004" /* presence changes, one transaction at a time */
#define STORE_PG_PARAMS_MAX 10             /* parameters of one statement at most */
#define STORE_PG_CONNECT_TIMEOUT "5"       /* seconds a connection attempt may take, by default */
#define STORE_PG_REASON_MAX 256            /* bytes of a server's message kept for the log */

/* ---- the schema ---- */

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

static const char store_pg_schema_1[] =
    STORE_TASKS_TABLE(STORE_PG_SEQNO, STORE_PG_TIME, STORE_PG_FLAG)
        STORE_WORKERS_TABLE(STORE_PG_TIME) STORE_PG_INDEXES_AND_TABLES
    "INSERT INTO schema_version (version) VALUES (1);";

/* Schema 2: what happened in each minute (ms / 60000), as SQLite's task_minutes, kept by a
 * trigger so that every program's changes count and a deleted task's still do; and the probe
 * row store_check_writable writes.  Unlike SQLite's, a change adds a row of its own, summed
 * when read: one counter row per minute would be a lock every claim and every finish of every
 * host waits for (and, held by a worker's transaction that then waits for a type's claim lock,
 * a deadlock).  Pruning sums each past minute's rows into one and drops the old minutes. */
static const char store_pg_upgrade_2[] =
    "CREATE TABLE task_minutes ("
    " minute BIGINT NOT NULL, submitted INTEGER NOT NULL DEFAULT 0,"
    " started INTEGER NOT NULL DEFAULT 0, succeeded INTEGER NOT NULL DEFAULT 0,"
    " failed INTEGER NOT NULL DEFAULT 0, queued INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX task_minutes_by_minute ON task_minutes (minute);"
    "CREATE FUNCTION task_minutes_count() RETURNS trigger LANGUAGE plpgsql AS $count$ BEGIN"
    " IF TG_OP = 'INSERT' THEN"
    " INSERT INTO task_minutes (minute, submitted, queued)"
    " VALUES (NEW.created_at / 60000, 1, (NEW.status = 'queued')::int);"
    " ELSIF NEW.status IS DISTINCT FROM OLD.status THEN"
    " INSERT INTO task_minutes (minute, started, succeeded, failed, queued) VALUES ("
    " COALESCE(CASE NEW.status WHEN 'running' THEN NEW.started_at WHEN 'queued' THEN NULL"
    " ELSE NEW.finished_at END / 60000,"
    " floor(extract(epoch FROM clock_timestamp()) / 60)::bigint),"
    " (NEW.status = 'running')::int, (NEW.status = 'succeeded')::int,"
    " (NEW.status = 'failed')::int, (NEW.status = 'queued')::int - (OLD.status = 'queued')::int);"
    " END IF; RETURN NULL; END $count$;"
    "CREATE TRIGGER task_minutes_insert AFTER INSERT ON tasks"
    " FOR EACH ROW EXECUTE FUNCTION task_minutes_count();"
    "CREATE TRIGGER task_minutes_status AFTER UPDATE OF status ON tasks"
    " FOR EACH ROW EXECUTE FUNCTION task_minutes_count();"
    "CREATE TABLE probe (id INTEGER PRIMARY KEY, at BIGINT);"
    "UPDATE schema_version SET version = 2;";

/* The script that makes schema v out of v - 1 (v 1: out of an empty database). */
static const char *const store_pg_upgrades[STORE_PG_SCHEMA_VERSION + 1] = {
    [1] = store_pg_schema_1,
    [2] = store_pg_upgrade_2,
    [3] = STORE_ADD_CHANNELS "UPDATE schema_version SET version = 3;",
    [4] = STORE_ADD_ANNOUNCER("BIGINT") "UPDATE schema_version SET version = 4;",
    [5] = STORE_PRESENCE_TABLES("BIGINT") "UPDATE schema_version SET version = 5;",
    [6] = STORE_HISTORY_TABLES("BIGINT") "UPDATE schema_version SET version = 6;",
};

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
    for (int next = version + 1; next <= STORE_PG_SCHEMA_VERSION; next++)
        if (store_pg_exec(conn, store_pg_upgrades[next], err, errlen) != 0)
            goto fail;
    if (store_pg_exec(conn, "COMMIT", err, errlen) != 0)
        goto fail;
    if (version > 0 && version < STORE_PG_SCHEMA_VERSION)
        log_info("event=schema_upgraded from=%d to=%d", version, STORE_PG_SCHEMA_VERSION);
    return 0;
fail:
    /* A ROLLBACK outside a transaction only warns; its own failure adds nothing to err. */
    PQclear(PQexec(conn, "ROLLBACK"));
    return TW_E_STORE;
}

/* ---- the statements ---- */

#define OWNER "($2::text IS NULL OR client_id = $2)"
#define FINAL_STATUSES "('succeeded', 'failed', 'cancelled')"
/* A queued task q may start at now under the type limits ({"type": limit} or NULL). */
#define CLAIMABLE(now, limits)                                                                     \
    "q.status = 'queued' AND q.run_at <= " now "::bigint AND (" limits "::jsonb IS NULL"           \
    " OR NOT (" limits "::jsonb ? q.type)"                                                         \
    " OR (SELECT count(*) FROM tasks r WHERE r.status = 'running' AND r.type = q.type)"            \
    " < (" limits "::jsonb ->> q.type)::bigint)"
/* errors with the JSON object text entry appended (entry NULL: unchanged).  Text, not jsonb,
 * so the stored entries keep their keys' order, as on SQLite. */
#define ERRORS_APPEND(entry)                                                                       \
    "CASE WHEN " entry "::json IS NULL THEN errors WHEN errors = '[]' THEN '[' || " entry          \
    " || ']' ELSE left(errors, -1) || ',' || " entry " || ']' END"

static const char sql_insert[] =
    "INSERT INTO tasks (id, client_id, type, name, params, status, message, created_at, run_at,"
    " priority, max_attempts, channels) VALUES ($1, $2, $3, $4, $5, 'queued', 'queued', $6, $7,"
    " $8, $9, $10) RETURNING " STORE_TASK_COLUMNS;
static const char sql_queued_count[] = "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE"
                                       " client_id = $1 AND status = 'queued' LIMIT $2) AS q";
static const char sql_key_get[] = "SELECT task_id, request_hash FROM idempotency"
                                  " WHERE client_id = $1 AND key = $2 AND created_at > $3";
static const char sql_key_put[] =
    "INSERT INTO idempotency (client_id, key, task_id, request_hash, created_at)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id, key) DO UPDATE SET"
    " task_id = excluded.task_id, request_hash = excluded.request_hash,"
    " created_at = excluded.created_at";
static const char sql_client_lock[] =
    "SELECT pg_advisory_xact_lock(" STORE_PG_CLIENT_LOCK ", $1::integer)";
static const char sql_rate_get[] = "SELECT units, at FROM submit_rate WHERE client_id = $1";
static const char sql_rate_put[] =
    "INSERT INTO submit_rate (client_id, units, at) VALUES ($1, $2, $3)"
    " ON CONFLICT (client_id) DO UPDATE SET units = excluded.units, at = excluded.at";
static const char sql_get[] = "SELECT " STORE_TASK_COLUMNS " FROM tasks WHERE id = $1 AND " OWNER;
/* The cursor's own place, or, when it was deleted meanwhile, the first task made after its
 * millisecond ($5, from its id). */
static const char sql_list[] =
    "SELECT " STORE_TASK_COLUMNS " FROM tasks WHERE client_id = $1"
    " AND ($2::text IS NULL OR status = $2)"
    " AND ($3::text IS NULL OR seqno < COALESCE((SELECT seqno FROM tasks WHERE id = $3),"
    " (SELECT min(seqno) FROM tasks WHERE client_id = $1 AND created_at > $5::bigint),"
    " 9223372036854775807))"
    " ORDER BY seqno DESC LIMIT $4";
/* A cancel of a queued task and a retry clear announced: the first worker that hears the nudge
 * sets it again and publishes the change (sql_announce_change). */
static const char sql_cancel_queued[] =
    "UPDATE tasks SET status = 'cancelled', message = 'cancelled', finished_at = $3,"
    " seq = seq + 1, cancel_requested = true, announced = false"
    " WHERE id = $1 AND " OWNER " AND status = 'queued' RETURNING " STORE_TASK_COLUMNS;
static const char sql_cancel_running[] =
    "UPDATE tasks SET cancel_requested = true"
    " WHERE id = $1 AND " OWNER " AND status = 'running' RETURNING " STORE_TASK_COLUMNS;
static const char sql_retry[] =
    "UPDATE tasks SET status = 'queued', run_at = $3,"
    " max_attempts = GREATEST(max_attempts, json_array_length(errors::json) + 1),"
    " cancel_requested = false, error = NULL, result = NULL, finished_at = NULL,"
    " started_at = NULL, progress = 0, message = 'queued for retry', worker_id = NULL,"
    " worker_host = NULL, lease_expires_at = NULL, seq = seq + 1, announced = false"
    " WHERE id = $1 AND " OWNER " AND status IN ('failed', 'cancelled')"
    " RETURNING " STORE_TASK_COLUMNS;
static const char sql_delete[] =
    "DELETE FROM tasks WHERE id = $1 AND " OWNER " AND status IN " FINAL_STATUSES " RETURNING id";
static const char sql_announce_change[] =
    "UPDATE tasks SET announced = true, announced_by = $3, announced_at = $4"
    " WHERE id = $1 AND status = $2 AND NOT announced RETURNING " STORE_TASK_COLUMNS;
/* The nudges of a change, delivered to the listening workers when its transaction commits:
 * $1 the verb, $2 an array of task ids. */
static const char sql_notify[] = "SELECT pg_notify('" STORE_NOTIFY_CHANNEL "', $1 || ' ' || id)"
                                 " FROM unnest($2::text[]) AS id";
static const char sql_unannounced[] =
    "SELECT 1 FROM tasks WHERE id = $1 AND NOT announced AND status = 'queued'";
static const char sql_announce[] = "UPDATE tasks SET announced = true, announced_by = $2,"
                                   " announced_at = $3 WHERE id = $1"
                                   " AND NOT announced AND status = 'queued'"
                                   " RETURNING " STORE_TASK_COLUMNS;
static const char sql_claimable[] = "SELECT 1 FROM tasks q WHERE " CLAIMABLE("$1", "$2") " LIMIT 1";
/* Per-type concurrency across hosts: before its claims, a transaction takes a transaction-scoped
 * advisory lock for every type the limits name, in one order (by hash, so two claimers never
 * wait for each other crosswise), and holds them until it commits.  Counting the running tasks
 * of a type and claiming one is then one step for every claimer of every host: the next one's
 * count (a statement that begins after its lock was granted, so after the holder's commit)
 * sees the holder's claims.  A counter row per type locked FOR UPDATE would do the same, but
 * needs a row made for every type and a write to it at every finish too; the advisory lock
 * needs neither, and claims of types without a limit never wait for it. */
static const char sql_type_locks[] =
    "SELECT pg_advisory_xact_lock(" STORE_PG_TYPE_LOCK ", h) FROM (SELECT DISTINCT"
    " hashtext(k) AS h FROM jsonb_object_keys($1::jsonb) AS k ORDER BY h) AS types";
/* One task per statement, the best by priority, then age, skipping rows another claimer holds
 * (FOR UPDATE SKIP LOCKED: two claimers never wait for each other, nor take the same task);
 * each statement counts the running tasks the ones before it made. */
/* clang-format off */
static const char sql_claim[] =
    "WITH next AS (SELECT q.seqno, q.announced FROM tasks q WHERE " CLAIMABLE("$2", "$4")
    STORE_SETTLED("$1", "$2::bigint")
    " ORDER BY q.priority DESC, q.seqno LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " UPDATE tasks t SET status = 'running', attempts = t.attempts + 1, started_at = $2,"
    " worker_id = $1, worker_host = $5, seq = t.seq + 1, message = 'started',"
    " lease_expires_at = $3, announced = true FROM next WHERE t.seqno = next.seqno"
    " RETURNING " STORE_TASK_COLUMNS ", NOT next.announced, t.started_at - t.run_at";
/* Without type limits ($4 NULL) the first $6 claimable tasks at once. */
static const char sql_claim_many[] =
    "WITH next AS (SELECT q.seqno, q.announced FROM tasks q WHERE " CLAIMABLE("$2", "$4")
    STORE_SETTLED("$1", "$2::bigint")
    " ORDER BY q.priority DESC, q.seqno LIMIT $6 FOR UPDATE SKIP LOCKED)"
    " UPDATE tasks t SET status = 'running', attempts = t.attempts + 1, started_at = $2,"
    " worker_id = $1, worker_host = $5, seq = t.seq + 1, message = 'started',"
    " lease_expires_at = $3, announced = true FROM next WHERE t.seqno = next.seqno"
    " RETURNING " STORE_TASK_COLUMNS ", NOT next.announced, t.started_at - t.run_at";
/* clang-format on */
/* sql_announce for the ids of the JSON array $1, by worker $2 at $3. */
static const char sql_announce_many[] =
    "UPDATE tasks SET announced = true, announced_by = $2, announced_at = $3"
    " WHERE id IN (SELECT json_array_elements_text($1::json))"
    " AND NOT announced AND status = 'queued' RETURNING " STORE_TASK_COLUMNS;
static const char sql_renew[] = "UPDATE tasks SET lease_expires_at = $2 WHERE worker_id = $1"
                                " AND status = 'running' RETURNING id, attempts";
static const char sql_expired[] =
    "SELECT " STORE_TASK_COLUMNS ", worker_id, worker_host, cancel_requested FROM tasks"
    " WHERE status = 'running' AND lease_expires_at < $1";
static const char sql_progress[] =
    "UPDATE tasks SET progress = $3, message = $4, seq = seq + 1"
    " WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING " STORE_TASK_COLUMNS;
static const char sql_finish[] =
    "UPDATE tasks SET status = $3, result = $4, error = $5, message = COALESCE($6, message),"
    " progress = CASE WHEN $3 = 'succeeded' THEN 100 ELSE progress END,"
    " finished_at = $7, lease_expires_at = NULL, seq = seq + 1,"
    " errors = " ERRORS_APPEND(
        "$8") " WHERE id = $1 AND attempts = $2 AND status = 'running'"
              " AND ($9::bigint IS NULL OR lease_expires_at < $9) RETURNING " STORE_TASK_COLUMNS;
/* sql_finish for each object of the JSON array $1 (no lease condition), returning id and seq
 * of those stored. */
static const char sql_finish_many[] =
    "UPDATE tasks t SET status = v.status, result = v.result, error = v.error,"
    " message = COALESCE(v.message, t.message),"
    " progress = CASE WHEN v.status = 'succeeded' THEN 100 ELSE t.progress END,"
    " finished_at = v.at, lease_expires_at = NULL, seq = t.seq + 1,"
    " errors = " ERRORS_APPEND("v.entry") " FROM json_to_recordset($1::json) AS v (id text,"
                                          " attempt int, status text, result text, error text, "
                                          "message text, entry text, at bigint)"
                                          " WHERE t.id = v.id AND t.attempts = v.attempt AND "
                                          "t.status = 'running' RETURNING t.id, t.seq";
static const char sql_end_retry[] =
    "UPDATE tasks SET status = 'queued', run_at = $3, progress = 0, message = $4, error = $5,"
    " errors = " ERRORS_APPEND(
        "$6") ", worker_id = NULL, worker_host = NULL,"
              " lease_expires_at = NULL, started_at = NULL, seq = seq + 1"
              " WHERE id = $1 AND attempts = $2 AND status = 'running'"
              " AND ($7::bigint IS NULL OR lease_expires_at < $7) RETURNING " STORE_TASK_COLUMNS;
static const char sql_check[] = "SELECT cancel_requested, attempts = $2 AND status = 'running'"
                                " FROM tasks WHERE id = $1";
static const char sql_requeue[] =
    "UPDATE tasks SET status = 'queued', progress = 0, message = $3, started_at = NULL,"
    " worker_id = NULL, worker_host = NULL, lease_expires_at = NULL, seq = seq + 1"
    " WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING " STORE_TASK_COLUMNS;
static const char sql_heartbeat[] =
    "INSERT INTO workers (id, pid, concurrency, started_at, heartbeat_at, host)"
    " VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT (id) DO UPDATE"
    " SET heartbeat_at = excluded.heartbeat_at";
static const char sql_worker_remove[] = "DELETE FROM workers WHERE id = $1";
static const char sql_workers_alive[] = "SELECT count(*) FROM workers WHERE heartbeat_at > $1";
static const char sql_workers_forget[] = "DELETE FROM workers WHERE heartbeat_at <= $1";
static const char sql_queue_depths[] =
    "SELECT type, status, count(*) FROM tasks"
    " WHERE status IN ('queued', 'running') GROUP BY type, status";
static const char sql_prune[] = "DELETE FROM tasks WHERE seqno IN (SELECT seqno FROM tasks"
                                " WHERE finished_at < $1 LIMIT $2)";
static const char sql_prune_keys[] =
    "DELETE FROM idempotency WHERE (client_id, key) IN (SELECT client_id, key FROM idempotency"
    " WHERE created_at < $1 LIMIT $2)";
static const char sql_prune_rate[] = "DELETE FROM submit_rate WHERE client_id IN (SELECT client_id"
                                     " FROM submit_rate WHERE at < $1 LIMIT $2)";
static const char sql_prune_minutes[] = "DELETE FROM task_minutes WHERE minute < $1";
/* The rows of each past minute (before $1) summed into one, so a day's counts stay a row a
 * minute however many changes it saw.  Two pruners at once cannot count a row twice: the second
 * one's DELETE finds the rows the first deleted gone, and so sums none of them. */
static const char sql_compact_minutes[] =
    "WITH gone AS (DELETE FROM task_minutes WHERE minute < $1 AND minute IN (SELECT minute"
    " FROM task_minutes WHERE minute < $1 GROUP BY minute HAVING count(*) > 1) RETURNING *)"
    " INSERT INTO task_minutes (minute, submitted, started, succeeded, failed, queued)"
    " SELECT minute, sum(submitted), sum(started), sum(succeeded), sum(failed), sum(queued)"
    " FROM gone GROUP BY minute";
static const char sql_admin_get[] =
    "SELECT " STORE_TASK_COLUMNS ", worker_id, seqno FROM tasks WHERE id = $1";
/* $5: a task id or client id, or the start of one. */
static const char sql_admin_list[] =
    "SELECT " STORE_TASK_COLUMNS ", worker_id, seqno FROM tasks"
    " WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR type = $2)"
    " AND ($3::text IS NULL OR client_id = $3) AND ($4::bigint IS NULL OR seqno < $4)"
    " AND ($5::text IS NULL OR starts_with(id, $5) OR starts_with(client_id, $5))"
    " ORDER BY seqno DESC LIMIT $6";
static const char sql_admin_workers[] = "SELECT id, host, pid, concurrency, heartbeat_at FROM"
                                        " workers ORDER BY started_at, id COLLATE \"C\"";
static const char sql_admin_running[] =
    "SELECT worker_id, id, type, client_id, attempts, started_at FROM tasks"
    " WHERE status = 'running' ORDER BY started_at";
static const char sql_admin_queues[] =
    "SELECT type, count(*) FILTER (WHERE status = 'queued'),"
    " count(*) FILTER (WHERE status = 'running') FROM tasks"
    " WHERE status IN ('queued', 'running') GROUP BY type ORDER BY type COLLATE \"C\"";
static const char sql_admin_minutes[] =
    "SELECT minute, sum(submitted), sum(started), sum(succeeded), sum(failed), sum(queued)"
    " FROM task_minutes WHERE minute >= $1 GROUP BY minute ORDER BY minute DESC";
static const char sql_admin_queued_now[] = "SELECT count(*) FROM tasks WHERE status = 'queued'";
/* Nearest-rank percentiles, per type, of the tasks that ended since $1 (their last attempt's
 * time from start to end). */
static const char sql_admin_durations[] =
    "WITH d AS (SELECT type, finished_at - started_at AS ms FROM tasks"
    " WHERE finished_at >= $1 AND started_at IS NOT NULL"
    " AND status IN ('succeeded', 'failed')),"
    " r AS (SELECT type, ms, row_number() OVER (PARTITION BY type ORDER BY ms) AS n,"
    " count(*) OVER (PARTITION BY type) AS c FROM d)"
    " SELECT type, c, max(CASE WHEN n = (c * 50 + 99) / 100 THEN ms END),"
    " max(CASE WHEN n = (c * 99 + 99) / 100 THEN ms END) FROM r GROUP BY type, c"
    " ORDER BY type COLLATE \"C\"";
/* Channel history (store_sqlite.c's statements of the same names).  A stream takes $3 more
 * messages: made with epoch $2 when the channel has none, else its last offset raised under
 * its row's lock, held until the commit. */
static const char sql_stream_advance[] =
    "INSERT INTO channel_streams (channel, epoch, last_offset, updated_at, expires_at)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel) DO UPDATE SET"
    " last_offset = channel_streams.last_offset + excluded.last_offset,"
    " updated_at = excluded.updated_at, expires_at = excluded.expires_at"
    " RETURNING epoch, last_offset";
/* The payloads of $5 (a JSON array of strings) at offsets $2, $2 + 1, ... */
static const char sql_history_insert[] =
    "INSERT INTO channel_history (channel, message_offset, at, expires_at, payload)"
    " SELECT $1::text, $2::bigint + m.n - 1, $3::bigint, $4::bigint, m.payload"
    " FROM json_array_elements_text($5::json) WITH ORDINALITY AS m (payload, n)";
static const char sql_history_trim[] =
    "DELETE FROM channel_history WHERE channel = $1"
    " AND (message_offset <= $2::bigint OR expires_at <= $3::bigint)";
static const char sql_history_read[] =
    "SELECT h.message_offset, h.payload, s.epoch, s.last_offset,"
    " (SELECT min(message_offset) FROM channel_history WHERE channel = $1"
    " AND expires_at > $3::bigint) FROM channel_streams s LEFT JOIN (SELECT message_offset,"
    " payload, sum(octet_length(payload)) OVER (ORDER BY message_offset)"
    " - octet_length(payload) AS bytes_before FROM channel_history"
    " WHERE channel = $1 AND message_offset > $2::bigint AND expires_at > $3::bigint"
    " ORDER BY message_offset LIMIT $4::bigint) h ON h.bytes_before < $5::bigint"
    " WHERE s.channel = $1 ORDER BY h.message_offset";
/* Pruning skips the rows a batch holds (SKIP LOCKED) and so never waits for one: a batch's trim
 * may wait for a prune's rows, never the other way round, and no two wait crosswise. */
static const char sql_history_prune[] =
    "DELETE FROM channel_history WHERE (channel, message_offset) IN (SELECT channel,"
    " message_offset FROM channel_history WHERE expires_at <= $1::bigint LIMIT $2::bigint"
    " FOR UPDATE SKIP LOCKED)";
static const char sql_streams_prune[] =
    "DELETE FROM channel_streams WHERE channel IN (SELECT s.channel FROM channel_streams s"
    " WHERE s.expires_at <= $1::bigint AND NOT EXISTS (SELECT 1 FROM channel_history h"
    " WHERE h.channel = s.channel) LIMIT $2::bigint FOR UPDATE SKIP LOCKED)";
static const char sql_session[] = "SELECT set_config('lock_timeout', $1, false)";
static const char sql_probe[] =
    "INSERT INTO probe (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at";

/* ---- the connection ---- */

struct store_pg {
    struct store base; /* first: what store.c dispatches on */
    PGconn *conn;      /* NULL or broken: made again at the next call */
    char *url;
    int in_transaction;  /* a BEGIN (ours or the caller's) is open on conn */
    int busy_timeout_ms; /* the connection's lock_timeout */
    int64_t last_seq;    /* seq of the last task row a change returned */
    int failure;         /* TW_E_* of the first failure since the caller's change began */
    int problem;         /* TW_E_STORE_UNREACHABLE, _FULL, _READONLY or _IO while this
                            connection's calls fail so; 0 once one lands */
    unsigned long long problem_failures; /* failures since the problem began (the first logged) */
    int64_t problem_since_ms;            /* when it began (monotonic) */
};

/* The parameters of one statement: text, NULL for SQL NULL; numbers are written into
 * numbers[].  Indexes are the statements' $1, $2, ... */
struct pg_params {
    const char *values[STORE_PG_PARAMS_MAX];
    char numbers[STORE_PG_PARAMS_MAX][24];
    int count;
};

static void
param_text(struct pg_params *params, int index, const char *text)
{
    params->values[index - 1] = text;
    if (index > params->count)
        params->count = index;
}

static void
param_int(struct pg_params *params, int index, int64_t value)
{
    snprintf(params->numbers[index - 1], sizeof params->numbers[0], "%lld", (long long)value);
    param_text(params, index, params->numbers[index - 1]);
}

/* What a failed statement means (its SQLSTATE, or none when no answer came): a 503 when the same
 * call can succeed later, with nothing changed on our side, else TW_E_STORE. */
static int
pg_fault_of(const char *sqlstate, int connection_lost)
{
    static const struct {
        const char *state; /* a SQLSTATE, or a class of them (two characters) */
        int fault;
    } faults[] = {
        {"08", TW_E_STORE_UNREACHABLE},    /* connection exception */
        {"57P01", TW_E_STORE_UNREACHABLE}, /* admin_shutdown */
        {"57P02", TW_E_STORE_UNREACHABLE}, /* crash_shutdown */
        {"57P03", TW_E_STORE_UNREACHABLE}, /* cannot_connect_now (starting, recovering) */
        {"53300", TW_E_STORE_BUSY},        /* too_many_connections */
        {"40001", TW_E_STORE_BUSY},        /* serialization_failure */
        {"40P01", TW_E_STORE_BUSY},        /* deadlock_detected */
        {"55P03", TW_E_STORE_BUSY},        /* lock_not_available */
        {"57014", TW_E_STORE_BUSY},        /* query_canceled (statement_timeout) */
        {"53100", TW_E_STORE_FULL},        /* disk_full */
        {"25006", TW_E_STORE_READONLY},    /* read_only_sql_transaction (a standby) */
        {"58030", TW_E_STORE_IO},          /* io_error */
    };
    if (connection_lost)
        return TW_E_STORE_UNREACHABLE;
    if (!sqlstate)
        return TW_E_STORE;
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
        if (strncmp(sqlstate, faults[i].state, strlen(faults[i].state)) == 0)
            return faults[i].fault;
    return TW_E_STORE;
}

/* The server's or libpq's message on one line, for the log. */
static void
pg_reason(const struct store_pg *store, const PGresult *result, char *reason, size_t size)
{
    const char *text = result ? PQresultErrorMessage(result) : NULL;
    if (!text || !*text)
        text = store->conn ? PQerrorMessage(store->conn) : "out of memory";
    snprintf(reason, size, "%s", text);
    /* One line, single spaces, no double quote (the log's field is quoted). */
    size_t length = 0;
    for (const char *c = reason; *c; c++) {
        char next = *c == '"' ? '\'' : (*c == '\n' || *c == '\t') ? ' ' : *c;
        if (next != ' ' || (length > 0 && reason[length - 1] != ' '))
            reason[length++] = next;
    }
    while (length > 0 && reason[length - 1] == ' ')
        length--;
    reason[length] = '\0';
}

/* Log a failure of what with fault (a TW_E_*) and return TW_E_STORE.  A problem that can pass
 * (the server unreachable, its disk full or read-only) is logged once per episode, its first
 * failure, then only counted until a call lands (pg_landed). */
static int
pg_failed(struct store_pg *store, const char *what, int fault, const char *reason)
{
    if (!store->failure)
        store->failure = fault;
    if (fault == TW_E_STORE || fault == TW_E_STORE_BUSY) {
        log_error("event=store_error op=%s error=\"%s\"", what, reason);
        return TW_E_STORE;
    }
    if (store->problem == fault) {
        store->problem_failures++;
        return TW_E_STORE;
    }
    store->problem = fault;
    store->problem_failures = 1;
    store->problem_since_ms = clock_mono_ms();
    log_error("event=store_failing op=%s problem=\"%s\" error=\"%s\""
              " next=\"counted, not logged, until a call lands\"",
              what, tw_error_message(fault), reason);
    return TW_E_STORE;
}

static int
pg_fail(struct store_pg *store, const char *what, const PGresult *result)
{
    char reason[STORE_PG_REASON_MAX];
    pg_reason(store, result, reason, sizeof reason);
    int lost = !store->conn || PQstatus(store->conn) != CONNECTION_OK;
    const char *sqlstate = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : NULL;
    return pg_failed(store, what, pg_fault_of(sqlstate, lost), reason);
}

/* A call got through, or a write was committed: a problem it had is over. */
static void
pg_landed(struct store_pg *store)
{
    if (!store->problem)
        return;
    log_info("event=store_recovered problem=\"%s\" failures=%llu after_ms=%lld",
             tw_error_message(store->problem), store->problem_failures,
             (long long)(clock_mono_ms() - store->problem_since_ms));
    store->problem = 0;
}

/* A connection to the store's server, with this store's session settings: 0, or TW_E_STORE
 * (the server unreachable).  A broken one is dropped and made anew, but never while a
 * transaction was open on it: what that transaction did is gone, and its caller must learn so
 * from its commit. */
static int
pg_connect(struct store_pg *store)
{
    if (store->conn && PQstatus(store->conn) == CONNECTION_OK)
        return 0;
    if (store->in_transaction)
        return pg_failed(store, "connect", TW_E_STORE_UNREACHABLE,
                         "the connection was lost inside a transaction");
    int again = store->conn != NULL;
    PQfinish(store->conn);
    /* The url's own settings override these defaults (expand_dbname). */
    static const char *const keys[] = {
        "connect_timeout",           "keepalives_idle", "keepalives_interval",
        "fallback_application_name", "dbname",          NULL};
    const char *values[] = {STORE_PG_CONNECT_TIMEOUT, "10", "5", "taskwire", store->url, NULL};
    store->conn = PQconnectdbParams(keys, values, 1);
    if (!store->conn || PQstatus(store->conn) != CONNECTION_OK)
        return pg_fail(store, "connect", NULL);
    /* The session: how long a statement waits for a lock ([store] busy_timeout_ms, then 503
     * busy; 0 waits 1 ms, as SQLite's 0 does not wait). */
    struct pg_params params = {0};
    param_int(&params, 1, store->busy_timeout_ms > 0 ? store->busy_timeout_ms : 1);
    PGresult *result =
        PQexecParams(store->conn, sql_session, params.count, NULL, params.values, NULL, NULL, 0);
    int rc = PQresultStatus(result) == PGRES_TUPLES_OK ? 0 : pg_fail(store, "connect", result);
    PQclear(result);
    if (rc != 0)
        return rc;
    if (again)
        log_info("event=store_reconnected");
    return 0;
}

/* Run sql with params (may be NULL): 0 with *out set (PQclear it) when out is not NULL, or
 * TW_E_STORE after pg_fail. */
static int
pg_run(struct store_pg *store, const char *what, const char *sql, const struct pg_params *params,
       PGresult **out)
{
    if (out)
        *out = NULL;
    if (pg_connect(store) != 0)
        return TW_E_STORE;
    PGresult *result = PQexecParams(store->conn, sql, params ? params->count : 0, NULL,
                                    params ? params->values : NULL, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        int rc = pg_fail(store, what, result);
        PQclear(result);
        return rc;
    }
    /* The server answered: it is reachable; a write outside a transaction is committed. */
    const char *command = PQcmdStatus(result);
    int wrote = strncmp(command, "INSERT", 6) == 0 || strncmp(command, "UPDATE", 6) == 0 ||
                strncmp(command, "DELETE", 6) == 0;
    if (store->problem == TW_E_STORE_UNREACHABLE || (!store->in_transaction && wrote))
        pg_landed(store);
    if (out)
        *out = result;
    else
        PQclear(result);
    return 0;
}

/* BEGIN, unless a transaction is open (the caller's): *own says whether this one is ours. */
static int
pg_begin(struct store_pg *store, int *own)
{
    *own = !store->in_transaction;
    if (!*own)
        return 0;
    if (pg_run(store, "begin", "BEGIN ISOLATION LEVEL READ COMMITTED", NULL, NULL) != 0)
        return TW_E_STORE;
    store->in_transaction = 1;
    return 0;
}

/* ROLLBACK of the open transaction (nothing when the connection is gone: so is it). */
static void
pg_rollback(struct store_pg *store)
{
    if (!store->in_transaction)
        return;
    store->in_transaction = 0;
    if (store->conn && PQstatus(store->conn) == CONNECTION_OK)
        PQclear(PQexec(store->conn, "ROLLBACK"));
}

/* COMMIT: 0 once the server has it (on disk, unless synchronous_commit is off), or TW_E_STORE
 * (a transaction that failed earlier answers ROLLBACK to COMMIT: that is a failure too). */
static int
pg_commit(struct store_pg *store)
{
    if (!store->in_transaction)
        return 0;
    PGresult *result = NULL;
    int rc = pg_run(store, "commit", "COMMIT", NULL, &result);
    store->in_transaction = 0;
    if (rc == 0 && strcmp(PQcmdStatus(result), "COMMIT") != 0)
        rc = pg_failed(store, "commit", TW_E_STORE, "the transaction had failed: rolled back");
    if (rc == 0)
        pg_landed(store);
    PQclear(result);
    return rc;
}

/* End an own transaction: commit when rc is 0 (its failure is the result), else roll back. */
static int
pg_end(struct store_pg *store, int own, int rc)
{
    if (!own)
        return rc;
    if (rc != 0) {
        pg_rollback(store);
        return rc;
    }
    return pg_commit(store);
}

/* rc of a handler's change or read, as its client should see it (store_sqlite.c's
 * store_answer): the 503 of the first failure rather than TW_E_STORE. */
static int
pg_answer(struct store_pg *store, int rc)
{
    int failure = store->failure;
    store->failure = 0;
    return rc == TW_E_STORE && failure && tw_error_status(failure) == 503 ? failure : rc;
}

/* NOTIFY the workers of verb for each task of ids[0..count) (TOKEN_ID_SIZE-bound ids of
 * token's alphabet, so the array literal needs no quoting), in the open transaction. */
static int
pg_notify(struct store_pg *store, const char *verb, const char *const *ids, size_t count)
{
    if (count == 0)
        return 0;
    size_t size = count * TOKEN_ID_SIZE + 3;
    char *array = malloc(size);
    if (!array)
        return TW_E_NOMEM;
    size_t length = 0;
    array[length++] = '{';
    for (size_t i = 0; i < count; i++)
        length += (size_t)snprintf(array + length, size - length, "%s%.*s", i ? "," : "",
                                   TOKEN_ID_SIZE - 1, ids[i]);
    snprintf(array + length, size - length, "}");
    struct pg_params params = {0};
    param_text(&params, 1, verb);
    param_text(&params, 2, array);
    int rc = pg_run(store, "notify", sql_notify, &params, NULL);
    free(array);
    return rc;
}

/* The id of task (a store task object), or "" when it has none. */
static const char *
pg_task_id(const json_t *task)
{
    const char *id = json_string_value(json_object_get(task, "id"));
    return id ? id : "";
}

/* ---- rows ---- */

static const char *
pg_row_text(const struct store_row *row, int column, int *length)
{
    const PGresult *result = row->source;
    if (PQgetisnull(result, row->index, column)) {
        *length = 0;
        return NULL;
    }
    *length = PQgetlength(result, row->index, column);
    return PQgetvalue(result, row->index, column);
}

static json_t *
pg_build(PGresult *result, int index, json_t *(*build)(const struct store_row *))
{
    struct store_row row = {.text = pg_row_text, .source = result, .index = index};
    /* cppcheck takes the result for a pointer into row: it is a new object owning none of it. */
    /* cppcheck-suppress returnDanglingLifetime */
    return build(&row);
}

static int64_t
pg_integer(const PGresult *result, int index, int column)
{
    return PQgetisnull(result, index, column)
               ? 0
               : strtoll(PQgetvalue(result, index, column), NULL, 10);
}

/* Run a statement that returns at most one task row: 0 with *task (NULL: only last_seq kept),
 * TW_E_NOT_FOUND without a row. */
static int
pg_task(struct store_pg *store, const char *what, const char *sql, const struct pg_params *params,
        json_t **task)
{
    PGresult *result = NULL;
    int rc = pg_run(store, what, sql, params, &result);
    if (rc != 0)
        return rc;
    if (PQntuples(result) == 0) {
        rc = TW_E_NOT_FOUND;
    } else {
        store->last_seq = pg_integer(result, 0, STORE_TASK_SEQ_COLUMN);
        if (task && !(*task = pg_build(result, 0, store_row_task)))
            rc = TW_E_NOMEM;
    }
    PQclear(result);
    return rc;
}

/* Every row of a statement, each made into an object by build, into a new array *out. */
static int
pg_collect(struct store_pg *store, const char *what, const char *sql,
           const struct pg_params *params, json_t *(*build)(const struct store_row *), json_t **out)
{
    PGresult *result = NULL;
    int rc = pg_run(store, what, sql, params, &result);
    if (rc != 0)
        return rc;
    json_t *list = json_array();
    rc = list ? 0 : TW_E_NOMEM;
    for (int i = 0; rc == 0 && i < PQntuples(result); i++)
        if (json_array_append_new(list, pg_build(result, i, build)) != 0)
            rc = TW_E_NOMEM;
    PQclear(result);
    if (rc == 0)
        *out = list;
    else
        json_decref(list);
    return rc;
}

/* A statement's one integer (a count): it, or a negative code. */
static int
pg_count(struct store_pg *store, const char *what, const char *sql, const struct pg_params *params)
{
    PGresult *result = NULL;
    int rc = pg_run(store, what, sql, params, &result);
    if (rc != 0)
        return rc;
    int count = PQntuples(result) > 0 ? (int)pg_integer(result, 0, 0) : 0;
    PQclear(result);
    return count;
}

/* A statement's rows changed (DELETE, UPDATE), or a negative code. */
static int
pg_changes(struct store_pg *store, const char *what, const char *sql,
           const struct pg_params *params)
{
    PGresult *result = NULL;
    int rc = pg_run(store, what, sql, params, &result);
    if (rc != 0)
        return rc;
    int changed = (int)strtol(PQcmdTuples(result), NULL, 10);
    PQclear(result);
    return changed;
}

/* ---- the functions of store.h ---- */

static void
pg_destroy(struct store *base)
{
    struct store_pg *store = (struct store_pg *)base;
    PQfinish(store->conn);
    free(store->url);
    free(store);
}

static const struct store_ops store_pg_ops;

struct store *
store_pg_new(const char *url, int busy_timeout_ms, char *err, size_t errlen)
{
    struct store_pg *store = calloc(1, sizeof *store);
    if (!store || !(store->url = strdup(url ? url : ""))) {
        snprintf(err, errlen, "out of memory");
        free(store);
        return NULL;
    }
    store->base.ops = &store_pg_ops;
    store->busy_timeout_ms = busy_timeout_ms;
    char why[512];
    if (pg_connect(store) != 0) {
        snprintf(err, errlen, "the PostgreSQL store: %s",
                 store->conn ? PQerrorMessage(store->conn) : "out of memory");
        goto fail;
    }
    if (store_pg_schema_open(store->conn, why, sizeof why) != 0) {
        snprintf(err, errlen, "the PostgreSQL store: %s", why);
        goto fail;
    }
    store->problem = 0;
    return &store->base;
fail:
    for (char *c = err; *c; c++)
        if (*c == '\n')
            *c = ' ';
    pg_destroy(&store->base);
    return NULL;
}

/* COMMIT returned means on disk (synchronous_commit on), and the server shares the flushes of
 * concurrent commits itself (commit_delay, commit_siblings): nothing to turn on. */
static int
pg_group_commit(struct store *base)
{
    (void)base;
    return 0;
}

static uint64_t
pg_sync_count(const struct store *base)
{
    (void)base;
    return 0;
}

/* A token of the client's submission bucket, under the client's lock (pg_clients_lock). */
static int
pg_submission_rate(struct store_pg *store, struct store_submission *sub, int64_t now)
{
    if (sub->submit_rate <= 0)
        return 0;
    struct pg_params params = {0};
    param_text(&params, 1, sub->client_id);
    PGresult *result = NULL;
    if (pg_run(store, "rate_get", sql_rate_get, &params, &result) != 0)
        return TW_E_STORE;
    struct bucket bucket;
    bucket_fill(&bucket, sub->submit_burst, now);
    if (PQntuples(result) > 0) {
        bucket.units = pg_integer(result, 0, 0);
        bucket.at_ms = pg_integer(result, 0, 1);
    }
    PQclear(result);
    if (!bucket_take(&bucket, sub->submit_rate, sub->submit_burst, now, &sub->retry_after_ms))
        return TW_E_TOO_MANY_REQUESTS;
    param_int(&params, 2, bucket.units);
    param_int(&params, 3, bucket.at_ms);
    return pg_run(store, "rate_put", sql_rate_put, &params, NULL);
}

/* Answer a submission from its Idempotency-Key (store_sqlite.c's store_submission_replay): 1
 * when answered, 0 to go on and insert. */
static int
pg_submission_replay(struct store_pg *store, struct store_submission *sub, int64_t now)
{
    struct pg_params params = {0};
    param_text(&params, 1, sub->client_id);
    param_text(&params, 2, sub->idempotency_key);
    param_int(&params, 3, now - STORE_IDEMPOTENCY_MS);
    PGresult *result = NULL;
    if (pg_run(store, "idempotency", sql_key_get, &params, &result) != 0) {
        sub->rc = TW_E_STORE;
        return 1;
    }
    if (PQntuples(result) == 0) {
        PQclear(result);
        return 0;
    }
    char task_id[TOKEN_ID_SIZE];
    snprintf(task_id, sizeof task_id, "%s", PQgetvalue(result, 0, 0));
    int same = sub->request_hash && strcmp(PQgetvalue(result, 0, 1), sub->request_hash) == 0;
    PQclear(result);
    if (!same) {
        sub->rc = TW_E_IDEMPOTENCY_MISMATCH;
        return 1;
    }
    struct pg_params get = {0};
    param_text(&get, 1, task_id);
    param_text(&get, 2, sub->client_id);
    int rc = pg_task(store, "get", sql_get, &get, &sub->task);
    if (rc == TW_E_NOT_FOUND)
        return 0; /* its task was deleted since: the key makes a new one */
    sub->rc = rc;
    sub->replayed = rc == 0;
    return 1;
}

/* One submission inside the batch's transaction: its key, its admission, its INSERT. */
static int
pg_submission_insert(struct store_pg *store, struct store_submission *sub)
{
    int64_t now = clock_now_ms();
    sub->replayed = 0;
    if (sub->idempotency_key && pg_submission_replay(store, sub, now))
        return sub->rc;
    if (sub->max_queued > 0) {
        struct pg_params params = {0};
        param_text(&params, 1, sub->client_id);
        param_int(&params, 2, sub->max_queued);
        int queued = pg_count(store, "queued_count", sql_queued_count, &params);
        if (queued < 0)
            return queued;
        if (queued >= sub->max_queued)
            return TW_E_TOO_MANY_TASKS;
    }
    int rc = pg_submission_rate(store, sub, now);
    if (rc != 0)
        return rc;
    char id[TOKEN_ID_SIZE];
    if (token_ordered_id(now, id) != 0)
        return TW_E_INTERNAL;
    char *params_text = json_dumps(sub->params, JSON_COMPACT | JSON_SORT_KEYS);
    if (!params_text)
        return TW_E_NOMEM;
    struct pg_params params = {0};
    param_text(&params, 1, id);
    param_text(&params, 2, sub->client_id);
    param_text(&params, 3, sub->type);
    param_text(&params, 4, sub->name ? sub->name : "");
    param_text(&params, 5, params_text);
    param_int(&params, 6, now);
    param_int(&params, 7, sub->run_at_ms > 0 ? sub->run_at_ms : now);
    param_int(&params, 8, sub->priority);
    param_int(&params, 9, sub->max_attempts > 0 ? sub->max_attempts : 1);
    param_text(&params, 10, sub->channels ? sub->channels : "[]");
    rc = pg_task(store, "insert", sql_insert, &params, &sub->task);
    free(params_text);
    if (rc != 0 || !sub->idempotency_key)
        return rc == TW_E_NOT_FOUND ? TW_E_STORE : rc;
    struct pg_params key = {0};
    param_text(&key, 1, sub->client_id);
    param_text(&key, 2, sub->idempotency_key);
    param_text(&key, 3, id);
    param_text(&key, 4, sub->request_hash ? sub->request_hash : "");
    param_int(&key, 5, now);
    return pg_run(store, "idempotency_put", sql_key_put, &key, NULL);
}

/* 32 bits of FNV-1a of text: the second key of a client's advisory lock (a collision only
 * makes two clients take turns). */
static int32_t
pg_client_hash(const char *text)
{
    uint32_t hash = 2166136261u;
    for (const unsigned char *c = (const unsigned char *)text; *c; c++)
        hash = (hash ^ *c) * 16777619u;
    return (int32_t)hash;
}

static int
pg_hash_order(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* The admission of a submission (its key, its client's queued count, its bucket) is a read and
 * then a write: SQLite's one writer makes them one step, here each client of the batch has a
 * transaction-scoped advisory lock, taken in one order (by hash) so two batches never wait for
 * each other crosswise. */
static int
pg_clients_lock(struct store_pg *store, struct store_submission *const *subs, size_t count)
{
    int32_t *hashes = calloc(count ? count : 1, sizeof *hashes);
    if (!hashes)
        return TW_E_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (subs[i]->idempotency_key || subs[i]->max_queued > 0 || subs[i]->submit_rate > 0)
            hashes[n++] = pg_client_hash(subs[i]->client_id);
    qsort(hashes, n, sizeof *hashes, pg_hash_order);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i > 0 && hashes[i] == hashes[i - 1])
            continue;
        struct pg_params params = {0};
        param_int(&params, 1, hashes[i]);
        rc = pg_run(store, "client_lock", sql_client_lock, &params, NULL);
    }
    free(hashes);
    return rc;
}

static int
pg_tasks_insert(struct store *base, struct store_submission *const *subs, size_t count)
{
    struct store_pg *store = (struct store_pg *)base;
    store->failure = 0;
    for (size_t i = 0; i < count; i++) {
        subs[i]->task = NULL;
        subs[i]->rc = TW_E_STORE;
        subs[i]->replayed = 0;
    }
    int own = 0, any = 0;
    int rc = pg_begin(store, &own);
    if (rc == 0)
        rc = pg_clients_lock(store, subs, count);
    for (size_t i = 0; i < count && rc == 0; i++) {
        subs[i]->rc = pg_submission_insert(store, subs[i]);
        if (subs[i]->rc != 0) {
            json_decref(subs[i]->task);
            subs[i]->task = NULL;
        }
        any |= subs[i]->rc == 0 && !subs[i]->replayed;
        /* A statement that failed ended the transaction for every row before it. */
        if (subs[i]->rc == TW_E_STORE || subs[i]->rc == TW_E_NOMEM)
            rc = subs[i]->rc;
    }
    if (rc == 0 && any) {
        const char **made = calloc(count, sizeof *made);
        size_t n = 0;
        for (size_t i = 0; made && i < count; i++)
            if (subs[i]->rc == 0 && !subs[i]->replayed)
                made[n++] = pg_task_id(subs[i]->task);
        rc = made ? pg_notify(store, PROTOCOL_VERB_SUBMIT, made, n) : TW_E_NOMEM;
        free(made);
        rc = pg_end(store, own, rc);
    } else {
        pg_end(store, own, TW_E_STORE);
    }
    if (rc != 0)
        for (size_t i = 0; i < count; i++) {
            json_decref(subs[i]->task);
            subs[i]->task = NULL;
            subs[i]->rc = TW_E_STORE;
        }
    int answer = pg_answer(store, TW_E_STORE);
    for (size_t i = 0; i < count; i++)
        if (subs[i]->rc == TW_E_STORE)
            subs[i]->rc = answer;
    return rc == TW_E_STORE ? answer : rc;
}

/* The task with id, if client_id is NULL or owns it. */
static int
pg_task_read(struct store_pg *store, const char *id, const char *client_id, json_t **task)
{
    struct pg_params params = {0};
    param_text(&params, 1, id);
    param_text(&params, 2, client_id);
    return pg_task(store, "get", sql_get, &params, task);
}

static int
pg_task_get(struct store *base, const char *id, const char *client_id, json_t **task)
{
    struct store_pg *store = (struct store_pg *)base;
    store->failure = 0;
    return pg_answer(store, pg_task_read(store, id, client_id, task));
}

static int
pg_task_list(struct store *base, const char *client_id, const char *status, const char *before,
             int limit, json_t **tasks)
{
    struct store_pg *store = (struct store_pg *)base;
    if (limit < 1 || limit > STORE_LIST_MAX)
        return TW_E_BAD_REQUEST;
    store->failure = 0;
    struct pg_params params = {0};
    param_text(&params, 1, client_id);
    param_text(&params, 2, status);
    param_text(&params, 3, before);
    param_int(&params, 4, limit);
    param_text(&params, 5, NULL);
    if (before) {
        /* An id begins with its creation time: 48 bits of milliseconds in 12 hex digits. */
        char stamp[13];
        snprintf(stamp, sizeof stamp, "%s", before);
        param_int(&params, 5, strtoll(stamp, NULL, 16));
    }
    return pg_answer(store, pg_collect(store, "list", sql_list, &params, store_row_task, tasks));
}

/* After a refused change: TW_E_NOT_FOUND when the task is not the caller's (or gone), else
 * TW_E_CONFLICT. */
static int
pg_refusal(struct store_pg *store, const char *id, const char *client_id)
{
    json_t *existing = NULL;
    int rc = pg_task_read(store, id, client_id, &existing);
    json_decref(existing);
    return rc == 0 ? TW_E_CONFLICT : rc;
}

/* End a handler's change of the task id in its own transaction (rc: the change's result, *task
 * the state it made): NOTIFY the workers of verb when it was made, commit (or roll back), and
 * answer as its client should see it.  *task is kept only when the change was committed. */
static int
pg_change_end(struct store_pg *store, int own, int rc, const char *verb, const char *id,
              json_t **task)
{
    const char *ids[] = {id};
    if (rc == 0)
        rc = pg_notify(store, verb, ids, 1);
    int done = rc == TW_E_NOT_FOUND || rc == TW_E_CONFLICT ? 0 : rc;
    int end = pg_end(store, own, done);
    int answer = end != 0 ? end : rc;
    if (answer != 0) {
        json_decref(*task);
        *task = NULL;
    }
    return pg_answer(store, answer);
}

static int
pg_task_cancel(struct store *base, const char *id, const char *client_id, int *now_final,
               json_t **task)
{
    struct store_pg *store = (struct store_pg *)base;
    store->failure = 0;
    *now_final = 0;
    *task = NULL;
    int own = 0;
    if (pg_begin(store, &own) != 0)
        return pg_answer(store, TW_E_STORE);
    struct pg_params params = {0};
    param_text(&params, 1, id);
    param_text(&params, 2, client_id);
    param_int(&params, 3, clock_now_ms());
    int rc = pg_task(store, "cancel", sql_cancel_queued, &params, task);
    *now_final = rc == 0;
    if (rc == TW_E_NOT_FOUND) {
        params.count = 2;
        rc = pg_task(store, "cancel", sql_cancel_running, &params, task);
    }
    if (rc == TW_E_NOT_FOUND)
        rc = pg_refusal(store, id, client_id);
    return pg_change_end(store, own, rc, PROTOCOL_VERB_CANCEL, id, task);
}

static int
pg_task_retry(struct store *base, const char *id, const char *client_id, json_t **task)
{
    struct store_pg *store = (struct store_pg *)base;
    store->failure = 0;
    *task = NULL;
    int own = 0;
    if (pg_begin(store, &own) != 0)
        return pg_answer(store, TW_E_STORE);
    struct pg_params params = {0};
    param_text(&params, 1, id);
    param_text(&params, 2, client_id);
    param_int(&params, 3, clock_now_ms());
    int rc = pg_task(store, "retry", sql_retry, &params, task);
    if (rc == TW_E_NOT_FOUND)
        rc = pg_refusal(store, id, client_id);
    return pg_change_end(store, own, rc, PROTOCOL_VERB_RETRY, id, task);
}

static int
pg_task_delete(struct store *base, const char *id, const char *client_id)
{
    struct store_pg *store = (struct store_pg *)base;
    store->failure = 0;
    struct pg_params params = {0};
    param_text(&params, 1, id);
    param_text(&params, 2, client_id);
    int deleted = pg_changes(store, "delete", sql_delete, &params);
    int rc = deleted < 0 ? deleted : deleted == 0 ? pg_refusal(store, id, client_id) : 0;
    return pg_answer(store, rc);
}

static int
pg_task_announce(struct store *base, const char *id, const char *worker_id, json_t **task)
{
    struct store_pg *store = (struct store_pg *)base;
    /* Most nudges find their task claimed (and announced) already: a read spares the write. */
    struct pg_params params = {0};
    param_text(&params, 1, id);
    int found = pg_count(store, "announce", sql_unannounced, &params);
    if (found <= 0)
        return found == 0 ? TW_E_NOT_FOUND : found;
    param_text(&params, 2, worker_id);
    param_int(&params, 3, clock_now_ms());
    return pg_task(store, "announce", sql_announce, &params, task);
}

static int
pg_task_announce_change(struct store *base, const char *id, const char *status,
                        const char *worker_id, json_t **task)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    param_text(&params, 1, id);
    param_text(&params, 2, status);
    param_text(&params, 3, worker_id);
    param_int(&params, 4, clock_now_ms());
    return pg_task(store, "announce_change", sql_announce_change, &params, task);
}

static int
pg_task_claimable(struct store *base, const char *limits)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    param_int(&params, 1, clock_now_ms());
    param_text(&params, 2, limits);
    int found = pg_count(store, "claimable", sql_claimable, &params);
    return found < 0 ? found : found > 0;
}

static int
pg_tasks_claim(struct store *base, const char *worker_id, const char *host, int64_t lease_ms,
               const char *limits, size_t max, json_t **tasks, int *announce, int64_t *waited_ms)
{
    struct store_pg *store = (struct store_pg *)base;
    if (max == 0 || max > STORE_CLAIM_MAX)
        return TW_E_INTERNAL;
    store->failure = 0;
    int own = 0;
    if (pg_begin(store, &own) != 0)
        return TW_E_STORE;
    int rc = 0;
    if (limits) {
        struct pg_params locks = {0};
        param_text(&locks, 1, limits);
        rc = pg_run(store, "claim_locks", sql_type_locks, &locks, NULL);
    }
    int64_t now = clock_now_ms();
    struct pg_params params = {0};
    param_text(&params, 1, worker_id);
    param_int(&params, 2, now);
    param_int(&params, 3, now + lease_ms);
    param_text(&params, 4, limits);
    param_text(&params, 5, host);
    /* Without type limits one statement claims the batch; with them one row per statement,
     * each counting the running tasks the ones before it made. */
    if (!limits)
        param_int(&params, 6, (int64_t)max);
    size_t n = 0;
    while (rc == 0 && n < max) {
        PGresult *result = NULL;
        rc = pg_run(store, "claim", limits ? sql_claim : sql_claim_many, &params, &result);
        if (rc != 0)
            break;
        int rows = PQntuples(result);
        for (int row = 0; row < rows && n < max && rc == 0; row++) {
            tasks[n] = pg_build(result, row, store_row_task); /* then announced and the wait */
            announce[n] = PQgetvalue(result, row, STORE_TASK_COLUMN_COUNT)[0] == 't';
            waited_ms[n] = strtoll(PQgetvalue(result, row, STORE_TASK_COLUMN_COUNT + 1), NULL, 10);
            if (!tasks[n])
                rc = TW_E_NOMEM;
            else
                n++;
        }
        PQclear(result);
        if (rows == 0 || !limits)
            break;
    }
    /* In the caller's transaction a failed statement has failed it: its commit says so. */
    rc = pg_end(store, own, rc);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++) {
            json_decref(tasks[i]);
            tasks[i] = NULL;
        }
        return TW_E_STORE;
    }
    return (int)n;
}

static int
pg_leases_renew(struct store *base, const char *worker_id, int64_t lease_ms, json_t **held)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    param_text(&params, 1, worker_id);
    param_int(&params, 2, clock_now_ms() + lease_ms);
    return pg_collect(store, "renew", sql_renew, &params, store_row_held, held);
}

static int
pg_leases_expired(struct store *base, json_t **expired)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    param_int(&params, 1, clock_now_ms());
    return pg_collect(store, "expired", sql_expired, &params, store_row_expired, expired);
}

/* A fenced change of a running attempt: no row means the attempt is not current any more. */
static int
pg_fenced(struct store_pg *store, const char *what, const char *sql, const struct pg_params *params,
          json_t **task)
{
    int rc = pg_task(store, what, sql, params, task);
    return rc == TW_E_NOT_FOUND ? TW_E_FENCED : rc;
}

/* text cut to max bytes (head or tail kept), or NULL.  PostgreSQL refuses text that is not
 * UTF-8 (exec programs can write anything to stderr), so then its non-ASCII bytes become '?',
 * which is what SQLite's rows read back as (store_json_text).  The result is text itself or a
 * new string in *copy (free it). */
static const char *
pg_cut(const char *text, size_t max, int keep_tail, char **copy)
{
    *copy = NULL;
    if (!text)
        return NULL;
    int length;
    const char *part = store_cut(text, max, keep_tail, &length);
    json_t *valid = json_stringn(part, (size_t)length);
    json_decref(valid);
    if (valid && (size_t)length == strlen(text))
        return text;
    if (!(*copy = strndup(part, (size_t)length)))
        return "";
    for (char *c = *copy; !valid && *c; c++)
        if ((unsigned char)*c >= 0x80)
            *c = '?';
    return *copy;
}

static int
pg_task_requeue(struct store *base, const char *id, int attempt, const char *message, json_t **task)
{
    struct store_pg *store = (struct store_pg *)base;
    char *cut = NULL;
    struct pg_params params = {0};
    param_text(&params, 1, id);
    param_int(&params, 2, attempt);
    param_text(&params, 3, pg_cut(message, STORE_MESSAGE_MAX, 0, &cut));
    int rc = pg_fenced(store, "requeue", sql_requeue, &params, task);
    free(cut);
    return rc;
}

static int
pg_task_progress(struct store *base, const char *id, int attempt, int progress, const char *message,
                 json_t **task)
{
    struct store_pg *store = (struct store_pg *)base;
    char *cut = NULL;
    struct pg_params params = {0};
    param_text(&params, 1, id);
    param_int(&params, 2, attempt);
    param_int(&params, 3, progress < 0 ? 0 : progress > 100 ? 100 : progress);
    param_text(&params, 4, pg_cut(message ? message : "", STORE_MESSAGE_MAX, 0, &cut));
    int rc = pg_fenced(store, "progress", sql_progress, &params, task);
    free(cut);
    return rc;
}

/* sql_finish for attempt (the finish_attempt op, store_backend.h). */
static int
pg_finish_attempt(struct store *base, const char *id, int attempt, const char *status,
                  const char *result_text, const char *error, const char *message,
                  const char *error_entry, int64_t at_ms, int64_t expired_before, json_t **task)
{
    struct store_pg *store = (struct store_pg *)base;
    char *error_cut = NULL, *message_cut = NULL;
    struct pg_params params = {0};
    param_text(&params, 1, id);
    param_int(&params, 2, attempt);
    param_text(&params, 3, status);
    param_text(&params, 4, result_text);
    param_text(&params, 5, pg_cut(error, STORE_ERROR_MAX, 1, &error_cut));
    param_text(&params, 6, pg_cut(message, STORE_MESSAGE_MAX, 0, &message_cut));
    param_int(&params, 7, at_ms);
    param_text(&params, 8, error_entry);
    param_text(&params, 9, NULL);
    if (expired_before)
        param_int(&params, 9, expired_before);
    int rc = pg_fenced(store, "finish", sql_finish, &params, task);
    free(error_cut);
    free(message_cut);
    return rc;
}

/* The JSON array sql_finish_many reads: one object per item, texts cut as pg_finish_attempt
 * cuts them.  NULL when memory runs out. */
static char *
pg_finish_rows(struct store_finish *items, const char *const *result_texts, size_t count)
{
    json_t *rows = json_array();
    for (size_t i = 0; rows && i < count; i++) {
        char *error_cut = NULL, *message_cut = NULL;
        const char *error = pg_cut(items[i].error, STORE_ERROR_MAX, 1, &error_cut);
        const char *message = pg_cut(items[i].message, STORE_MESSAGE_MAX, 0, &message_cut);
        json_t *row = json_pack("{s:s, s:i, s:s, s:s?, s:s?, s:s?, s:s?, s:I}", "id", items[i].id,
                                "attempt", items[i].attempt, "status", items[i].status, "result",
                                result_texts[i], "error", error, "message", message, "entry",
                                items[i].error_entry, "at", (json_int_t)items[i].at_ms);
        free(error_cut);
        free(message_cut);
        if (json_array_append_new(rows, row) != 0) {
            json_decref(rows);
            rows = NULL;
        }
    }
    char *text = rows ? json_dumps(rows, JSON_COMPACT) : NULL;
    json_decref(rows);
    return text;
}

static int
pg_finish_many(struct store *base, struct store_finish *items, const char *const *result_texts,
               size_t count)
{
    struct store_pg *store = (struct store_pg *)base;
    char *rows = pg_finish_rows(items, result_texts, count);
    if (!rows)
        return TW_E_NOMEM;
    struct pg_params params = {0};
    param_text(&params, 1, rows);
    PGresult *result = NULL;
    int rc = pg_run(store, "finish", sql_finish_many, &params, &result);
    free(rows);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < count; i++) {
        items[i].rc = TW_E_FENCED; /* until its row comes back */
        items[i].seq = 0;
    }
    for (int row = 0; row < PQntuples(result); row++)
        for (size_t i = 0; i < count; i++)
            if (strcmp(items[i].id, PQgetvalue(result, row, 0)) == 0) {
                items[i].rc = 0;
                items[i].seq = pg_integer(result, row, 1);
                store->last_seq = items[i].seq;
            }
    PQclear(result);
    return 0;
}

static int
pg_announce_many(struct store *base, const char *worker_id, const char *const *ids, size_t count,
                 json_t **tasks)
{
    struct store_pg *store = (struct store_pg *)base;
    json_t *list = json_array();
    for (size_t i = 0; list && i < count; i++)
        if (json_array_append_new(list, json_string(ids[i])) != 0) {
            json_decref(list);
            list = NULL;
        }
    char *text = list ? json_dumps(list, JSON_COMPACT) : NULL;
    json_decref(list);
    if (!text)
        return TW_E_NOMEM;
    struct pg_params params = {0};
    param_text(&params, 1, text);
    param_text(&params, 2, worker_id);
    param_int(&params, 3, clock_now_ms());
    PGresult *result = NULL;
    int rc = pg_run(store, "announce", sql_announce_many, &params, &result);
    free(text);
    if (rc != 0)
        return rc;
    int n = 0;
    for (int row = 0; row < PQntuples(result) && (size_t)n < count; row++)
        if ((tasks[n] = pg_build(result, row, store_row_task)))
            n++;
    PQclear(result);
    return n;
}

static int64_t
pg_last_seq(const struct store *base)
{
    return ((const struct store_pg *)base)->last_seq;
}

/* sql_end_retry for attempt (the retry_attempt op, store_backend.h). */
static int
pg_retry_attempt(struct store *base, const char *id, int attempt, const char *error,
                 const char *error_entry, int64_t run_at_ms, int64_t expired_before, json_t **task)
{
    struct store_pg *store = (struct store_pg *)base;
    char *error_cut = NULL;
    struct pg_params params = {0};
    param_text(&params, 1, id);
    param_int(&params, 2, attempt);
    param_int(&params, 3, run_at_ms);
    param_text(&params, 4, "retrying");
    param_text(&params, 5, pg_cut(error, STORE_ERROR_MAX, 1, &error_cut));
    param_text(&params, 6, error_entry ? error_entry : "{}");
    param_text(&params, 7, NULL);
    if (expired_before)
        param_int(&params, 7, expired_before);
    int rc = pg_fenced(store, "retry_later", sql_end_retry, &params, task);
    free(error_cut);
    return rc;
}

static int
pg_task_check(struct store *base, const char *id, int attempt)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    param_text(&params, 1, id);
    param_int(&params, 2, attempt);
    PGresult *result = NULL;
    if (pg_run(store, "check", sql_check, &params, &result) != 0)
        return TW_E_STORE;
    int rc = PQntuples(result) == 0 || PQgetvalue(result, 0, 1)[0] != 't'
                 ? TW_E_FENCED
                 : PQgetvalue(result, 0, 0)[0] == 't';
    PQclear(result);
    return rc;
}

static int
pg_worker_heartbeat(struct store *base, const char *worker_id, int concurrency)
{
    struct store_pg *store = (struct store_pg *)base;
    char host[STORE_HOST_MAX + 1] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        host[0] = '\0';
    struct pg_params params = {0};
    param_text(&params, 1, worker_id);
    param_int(&params, 2, getpid());
    param_int(&params, 3, concurrency);
    param_int(&params, 4, clock_now_ms());
    param_text(&params, 5, host);
    return pg_run(store, "heartbeat", sql_heartbeat, &params, NULL);
}

static int
pg_worker_remove(struct store *base, const char *worker_id)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    param_text(&params, 1, worker_id);
    return pg_run(store, "worker_remove", sql_worker_remove, &params, NULL);
}

static int
pg_workers_alive(struct store *base, int64_t stale_after_ms)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    param_int(&params, 1, clock_now_ms() - stale_after_ms);
    return pg_count(store, "workers_alive", sql_workers_alive, &params);
}

static int
pg_queue_depths(struct store *base, json_t **depths)
{
    struct store_pg *store = (struct store_pg *)base;
    return pg_collect(store, "queue_depths", sql_queue_depths, NULL, store_row_depth, depths);
}

static int
pg_tasks_prune(struct store *base, int64_t keep_ms)
{
    struct store_pg *store = (struct store_pg *)base;
    int64_t now = clock_now_ms();
    int own = 0;
    if (pg_begin(store, &own) != 0)
        return TW_E_STORE;
    struct pg_params params = {0};
    int deleted = 0;
    if (keep_ms > 0) {
        param_int(&params, 1, now - keep_ms);
        param_int(&params, 2, STORE_PRUNE_BATCH);
        deleted = pg_changes(store, "prune", sql_prune, &params);
    }
    int rc = deleted < 0 ? deleted : 0;
    param_int(&params, 1, now - STORE_IDEMPOTENCY_MS);
    param_int(&params, 2, STORE_PRUNE_BATCH);
    if (rc == 0)
        rc = pg_run(store, "prune_keys", sql_prune_keys, &params, NULL);
    param_int(&params, 1, now - STORE_RATE_IDLE_MS);
    if (rc == 0)
        rc = pg_run(store, "prune_rate", sql_prune_rate, &params, NULL);
    params.count = 1;
    param_int(&params, 1, now / 60000 - STORE_MINUTES_KEEP);
    if (rc == 0)
        rc = pg_run(store, "prune_minutes", sql_prune_minutes, &params, NULL);
    param_int(&params, 1, now / 60000);
    if (rc == 0)
        rc = pg_run(store, "compact_minutes", sql_compact_minutes, &params, NULL);
    param_int(&params, 1, now - STORE_WORKER_FORGET_MS);
    if (rc == 0)
        rc = pg_run(store, "workers_forget", sql_workers_forget, &params, NULL);
    rc = pg_end(store, own, rc);
    return rc == 0 ? deleted : TW_E_STORE;
}

static int
pg_transaction_begin(struct store *base)
{
    struct store_pg *store = (struct store_pg *)base;
    int own = 0;
    if (pg_begin(store, &own) != 0)
        return TW_E_STORE;
    return own ? 0 : TW_E_INTERNAL; /* no nesting, as on SQLite */
}

static int
pg_transaction_commit(struct store *base)
{
    struct store_pg *store = (struct store_pg *)base;
    if (pg_commit(store) != 0) {
        pg_rollback(store);
        return TW_E_STORE;
    }
    return 0;
}

static void
pg_transaction_rollback(struct store *base)
{
    pg_rollback((struct store_pg *)base);
}

/* The worker's commits keep synchronous_commit on.  Off, a crash of the server (which the
 * workers do not share, unlike SQLite's file) undid final states clients had already been told
 * of: a succeeded task read as running again after the server restarted. */
static int
pg_worker_durability(struct store *base)
{
    (void)base;
    return 0;
}

/* The server is the one truth of every process: a write of the probe row (rolled back) says
 * whether it takes writes now, whoever asks. */
static int
pg_check_writable(struct store *base)
{
    struct store_pg *store = (struct store_pg *)base;
    store->failure = 0;
    if (store->in_transaction)
        return TW_E_INTERNAL;
    int own = 0;
    int rc = pg_begin(store, &own);
    struct pg_params params = {0};
    param_int(&params, 1, clock_now_ms());
    if (rc == 0)
        rc = pg_run(store, "check_writable", sql_probe, &params, NULL);
    pg_rollback(store);
    if (rc == 0)
        pg_landed(store);
    return pg_answer(store, rc);
}

static int
pg_problem(const struct store *base)
{
    return ((const struct store_pg *)base)->problem;
}

static int
pg_admin_task_get(struct store *base, const char *id, json_t **task)
{
    struct store_pg *store = (struct store_pg *)base;
    store->failure = 0;
    struct pg_params params = {0};
    param_text(&params, 1, id);
    json_t *list = NULL;
    int rc = pg_collect(store, "admin_get", sql_admin_get, &params, store_row_admin_task, &list);
    if (rc == 0 && json_array_size(list) == 0)
        rc = TW_E_NOT_FOUND;
    if (rc == 0)
        *task = json_incref(json_array_get(list, 0));
    json_decref(list);
    return pg_answer(store, rc);
}

static int
pg_admin_task_list(struct store *base, const struct store_admin_filter *filter, json_t **tasks,
                   int64_t *next)
{
    struct store_pg *store = (struct store_pg *)base;
    if (filter->limit < 1 || filter->limit > STORE_ADMIN_LIST_MAX)
        return TW_E_BAD_REQUEST;
    store->failure = 0;
    struct pg_params params = {0};
    param_text(&params, 1, filter->status);
    param_text(&params, 2, filter->type);
    param_text(&params, 3, filter->client_id);
    param_text(&params, 4, NULL);
    if (filter->before_seq > 0)
        param_int(&params, 4, filter->before_seq);
    param_text(&params, 5, filter->q);
    param_int(&params, 6, filter->limit);
    int rc = pg_collect(store, "admin_list", sql_admin_list, &params, store_row_admin_task, tasks);
    *next = rc == 0 ? store_admin_next(*tasks, filter->limit) : 0;
    return pg_answer(store, rc);
}

static int
pg_admin_status(struct store *base, json_t **workers, json_t **queues)
{
    struct store_pg *store = (struct store_pg *)base;
    store->failure = 0;
    json_t *running = NULL;
    *workers = *queues = NULL;
    int rc = pg_collect(store, "admin_workers", sql_admin_workers, NULL, store_row_worker, workers);
    if (rc == 0)
        rc = pg_collect(store, "admin_running", sql_admin_running, NULL, store_row_running,
                        &running);
    if (rc == 0)
        rc = pg_collect(store, "admin_queues", sql_admin_queues, NULL, store_row_queue, queues);
    store_workers_running(*workers, running);
    json_decref(running);
    if (rc != 0) {
        json_decref(*workers);
        json_decref(*queues);
        *workers = *queues = NULL;
    }
    return pg_answer(store, rc);
}

static int
pg_admin_stats(struct store *base, int minutes, json_t **rows, json_t **durations)
{
    struct store_pg *store = (struct store_pg *)base;
    if (minutes < 1 || minutes > STORE_STATS_MINUTES_MAX)
        return TW_E_BAD_REQUEST;
    store->failure = 0;
    *rows = *durations = NULL;
    int64_t last = clock_now_ms() / 60000, first = last - minutes + 1;
    json_t *counts = NULL;
    /* One snapshot: the counts and the queued count agree. */
    int rc = store->in_transaction
                 ? TW_E_INTERNAL
                 : pg_run(store, "admin_stats", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                          NULL, NULL);
    if (rc == 0)
        store->in_transaction = 1;
    struct pg_params params = {0};
    param_int(&params, 1, first);
    if (rc == 0)
        rc = pg_collect(store, "admin_minutes", sql_admin_minutes, &params, store_row_minute,
                        &counts);
    int queued = rc == 0 ? pg_count(store, "admin_queued", sql_admin_queued_now, NULL) : rc;
    if (queued < 0)
        rc = queued;
    param_int(&params, 1, first * 60000);
    if (rc == 0)
        rc = pg_collect(store, "admin_durations", sql_admin_durations, &params, store_row_duration,
                        durations);
    pg_rollback(store);
    if (rc == 0 && !(*rows = store_minutes_fill(counts, first, last, queued)))
        rc = TW_E_NOMEM;
    json_decref(counts);
    if (rc != 0) {
        json_decref(*durations);
        *durations = NULL;
    }
    return pg_answer(store, rc);
}

/* ---- channel history ---- */

/* The messages items[0..count) of one channel (store_sqlite.c's sqlite_history_channel): the
 * stream's row updated (and so locked) first, the rows in one statement, then the trim. */
static int
pg_history_channel(struct store_pg *store, struct store_history_item *const *items, size_t count,
                   int64_t now)
{
    const struct store_history_item *first = items[0];
    char epoch[STORE_EPOCH_SIZE];
    if (store_history_epoch(epoch) != 0)
        return TW_E_INTERNAL;
    struct pg_params params = {0};
    param_text(&params, 1, first->channel);
    param_text(&params, 2, epoch);
    param_int(&params, 3, (int64_t)count);
    param_int(&params, 4, now);
    param_int(&params, 5, now + first->ttl_ms);
    PGresult *result = NULL;
    int rc = pg_run(store, "history_stream", sql_stream_advance, &params, &result);
    if (rc != 0)
        return rc;
    int64_t last = PQntuples(result) == 1 ? pg_integer(result, 0, 1) : 0;
    if (last >= (int64_t)count)
        snprintf(epoch, sizeof epoch, "%s", PQgetvalue(result, 0, 0));
    PQclear(result);
    if (last < (int64_t)count)
        return pg_failed(store, "history_stream", TW_E_STORE, "the stream's row was not returned");
    json_t *payloads = json_array();
    for (size_t i = 0; payloads && i < count; i++) {
        items[i]->offset = last - (int64_t)count + 1 + (int64_t)i;
        memcpy(items[i]->epoch, epoch, sizeof epoch);
        if (json_array_append_new(payloads, json_string(items[i]->payload)) != 0) {
            json_decref(payloads);
            payloads = NULL;
        }
    }
    char *text = payloads ? json_dumps(payloads, JSON_COMPACT) : NULL;
    json_decref(payloads);
    if (!text)
        return TW_E_NOMEM;
    param_int(&params, 2, items[0]->offset);
    param_int(&params, 3, now);
    param_int(&params, 4, now + first->ttl_ms);
    param_text(&params, 5, text);
    rc = pg_run(store, "history_insert", sql_history_insert, &params, NULL);
    free(text);
    if (rc != 0)
        return rc;
    struct pg_params trim = {0};
    param_text(&trim, 1, first->channel);
    param_int(&trim, 2, last - first->keep);
    param_int(&trim, 3, now);
    return pg_run(store, "history_trim", sql_history_trim, &trim, NULL);
}

/* items come sorted by channel (store.c): each run of one channel is taken at once. */
static int
pg_history_append(struct store *base, struct store_history_item *const *items, size_t count)
{
    struct store_pg *store = (struct store_pg *)base;
    int own = 0;
    if (pg_begin(store, &own) != 0)
        return TW_E_STORE;
    int64_t now = clock_now_ms();
    int rc = 0;
    for (size_t i = 0, run; rc == 0 && i < count; i += run) {
        run = store_history_run(items, count, i);
        rc = pg_history_channel(store, items + i, run, now);
    }
    return pg_end(store, own, rc);
}

static int
pg_history_read(struct store *base, const char *channel, int64_t since, int limit,
                struct store_history_page *page)
{
    struct store_pg *store = (struct store_pg *)base;
    store->failure = 0;
    struct pg_params params = {0};
    param_text(&params, 1, channel);
    param_int(&params, 2, since);
    param_int(&params, 3, clock_now_ms());
    param_int(&params, 4, limit);
    param_int(&params, 5, STORE_HISTORY_READ_BYTES);
    PGresult *result = NULL;
    int rc = pg_run(store, "history_read", sql_history_read, &params, &result);
    if (rc != 0)
        return pg_answer(store, rc);
    json_t *messages = json_array();
    rc = messages ? 0 : TW_E_NOMEM;
    int rows = PQntuples(result);
    if (rows > 0) {
        snprintf(page->epoch, sizeof page->epoch, "%s", PQgetvalue(result, 0, 2));
        page->last_offset = pg_integer(result, 0, 3);
        page->oldest_offset =
            PQgetisnull(result, 0, 4) ? page->last_offset + 1 : pg_integer(result, 0, 4);
    }
    for (int i = 0; rc == 0 && i < rows; i++)
        if (!PQgetisnull(result, i, 0) &&
            json_array_append_new(messages, pg_build(result, i, store_row_history)) != 0)
            rc = TW_E_NOMEM;
    PQclear(result);
    if (rc == 0) {
        page->messages = messages;
        return 0;
    }
    json_decref(messages);
    *page = (struct store_history_page){0};
    return rc;
}

static int
pg_history_prune(struct store *base)
{
    struct store_pg *store = (struct store_pg *)base;
    int own = 0;
    if (pg_begin(store, &own) != 0)
        return TW_E_STORE;
    struct pg_params params = {0};
    param_int(&params, 1, clock_now_ms());
    param_int(&params, 2, STORE_PRUNE_BATCH);
    int deleted = pg_changes(store, "history_prune", sql_history_prune, &params);
    int rc = deleted < 0 ? deleted : 0;
    if (rc == 0)
        rc = pg_run(store, "streams_prune", sql_streams_prune, &params, NULL);
    rc = pg_end(store, own, rc);
    return rc == 0 ? deleted : TW_E_STORE;
}

/* ---- presence (store_backend.h's steps) ---- */

static const char sql_presence_lock[] = "SELECT pg_advisory_xact_lock(" STORE_PG_PRESENCE_LOCK ")";
static const char sql_presence_version[] =
    "INSERT INTO presence_channels (channel, version) VALUES ($1, $2::bigint)"
    " ON CONFLICT (channel) DO UPDATE SET"
    " version = GREATEST(presence_channels.version + 1, excluded.version) RETURNING version";
static const char sql_presence_own[] =
    "SELECT conns FROM presence WHERE channel = $1 AND client_id = $2 AND relay_id = $3";
static const char sql_presence_put[] =
    "INSERT INTO presence (channel, client_id, relay_id, conns, seq, expires_at)"
    " VALUES ($1, $2, $3, $4::integer, $5::bigint, $6::bigint)"
    " ON CONFLICT (channel, client_id, relay_id) DO UPDATE SET conns = excluded.conns,"
    " seq = excluded.seq, expires_at = excluded.expires_at WHERE presence.seq < excluded.seq"
    " RETURNING conns";
static const char sql_presence_total[] =
    "SELECT COALESCE(sum(conns), 0) FROM presence WHERE channel = $1 AND client_id = $2";
static const char sql_presence_renew[] =
    "UPDATE presence SET expires_at = $2::bigint WHERE relay_id = $1 AND conns > 0"
    " AND seq >= $3::bigint";
static const char sql_presence_relay_channels[] =
    "SELECT DISTINCT channel FROM presence WHERE relay_id = $1 ORDER BY channel LIMIT $2::integer";
static const char sql_presence_expired_channels[] =
    "SELECT DISTINCT channel FROM presence WHERE expires_at < $1::bigint ORDER BY channel"
    " LIMIT $2::integer";
static const char sql_presence_drop_relay[] =
    "DELETE FROM presence WHERE channel = $1 AND relay_id = $2 RETURNING client_id, conns";
static const char sql_presence_drop_expired[] =
    "DELETE FROM presence WHERE channel = $1 AND expires_at < $2::bigint"
    " RETURNING client_id, conns";
/* One statement: the version and the rows agree.  One row with a NULL client when empty. */
static const char sql_presence_list[] =
    "SELECT v.version, p.client_id, p.total FROM (SELECT COALESCE((SELECT version FROM"
    " presence_channels WHERE channel = $1), 0) AS version) AS v LEFT JOIN (SELECT client_id,"
    " sum(conns) AS total FROM presence WHERE channel = $1 AND conns > 0 GROUP BY client_id"
    " ORDER BY client_id LIMIT $2::integer) AS p ON true ORDER BY p.client_id";
static const char sql_presence_count[] = "SELECT count(*) FROM presence WHERE conns > 0";
static const char sql_presence_forget[] =
    "DELETE FROM presence_channels WHERE version < $1::bigint AND NOT EXISTS"
    " (SELECT 1 FROM presence p WHERE p.channel = presence_channels.channel)";

/* Run sql, which returns at most one integer row: *value (untouched without a row), *got
 * whether there was one (may be NULL).  0 or the failure. */
static int
pg_integer_row(struct store_pg *store, const char *what, const char *sql,
               const struct pg_params *params, int64_t *value, int *got)
{
    PGresult *result = NULL;
    int rc = pg_run(store, what, sql, params, &result);
    if (rc != 0)
        return rc;
    if (got)
        *got = PQntuples(result) > 0;
    if (PQntuples(result) > 0)
        *value = pg_integer(result, 0, 0);
    PQclear(result);
    return 0;
}

static int
pg_presence_lock(struct store *base)
{
    struct store_pg *store = (struct store_pg *)base;
    return pg_run(store, "presence_lock", sql_presence_lock, NULL, NULL);
}

static int
pg_presence_version(struct store *base, const char *channel, int64_t now_ms, int64_t *version)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    param_text(&params, 1, channel);
    param_int(&params, 2, now_ms);
    return pg_integer_row(store, "presence_version", sql_presence_version, &params, version, NULL);
}

static int
pg_presence_put(struct store *base, const char *relay_id, const struct presence_entry *entry,
                int64_t seq, int64_t expires_at, int64_t *before, int *written)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    param_text(&params, 1, entry->channel);
    param_text(&params, 2, entry->client_id);
    param_text(&params, 3, relay_id);
    *before = -1;
    int rc = pg_integer_row(store, "presence_own", sql_presence_own, &params, before, NULL);
    if (rc != 0)
        return rc;
    param_int(&params, 4, entry->conns);
    param_int(&params, 5, seq);
    param_int(&params, 6, expires_at);
    int64_t conns = 0;
    return pg_integer_row(store, "presence_put", sql_presence_put, &params, &conns, written);
}

static int
pg_presence_total(struct store *base, const char *channel, const char *client_id, int64_t *total)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    param_text(&params, 1, channel);
    param_text(&params, 2, client_id);
    *total = 0;
    return pg_integer_row(store, "presence_total", sql_presence_total, &params, total, NULL);
}

static int
pg_presence_renew(struct store *base, const char *relay_id, int64_t since, int64_t expires_at)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    param_text(&params, 1, relay_id);
    param_int(&params, 2, expires_at);
    param_int(&params, 3, since);
    return pg_run(store, "presence_renew", sql_presence_renew, &params, NULL);
}

static int
pg_presence_channels(struct store *base, const char *relay_id, int64_t now_ms, int limit,
                     json_t **channels)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    if (relay_id)
        param_text(&params, 1, relay_id);
    else
        param_int(&params, 1, now_ms);
    param_int(&params, 2, limit);
    return pg_collect(store, "presence_channels",
                      relay_id ? sql_presence_relay_channels : sql_presence_expired_channels,
                      &params, store_row_presence_channel, channels);
}

static int
pg_presence_drop(struct store *base, const char *channel, const char *relay_id, int64_t now_ms,
                 json_t **dropped)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    param_text(&params, 1, channel);
    if (relay_id)
        param_text(&params, 2, relay_id);
    else
        param_int(&params, 2, now_ms);
    return pg_collect(store, "presence_drop",
                      relay_id ? sql_presence_drop_relay : sql_presence_drop_expired, &params,
                      store_row_presence_dropped, dropped);
}

static int
pg_presence_list(struct store *base, const char *channel, json_t **clients, int64_t *version)
{
    struct store_pg *store = (struct store_pg *)base;
    store->failure = 0;
    struct pg_params params = {0};
    param_text(&params, 1, channel);
    param_int(&params, 2, STORE_PRESENCE_LIST_MAX);
    PGresult *result = NULL;
    int rc = pg_run(store, "presence_list", sql_presence_list, &params, &result);
    if (rc != 0)
        return pg_answer(store, rc);
    json_t *list = json_array();
    rc = list ? 0 : TW_E_NOMEM;
    *version = PQntuples(result) > 0 ? pg_integer(result, 0, 0) : 0;
    for (int i = 0; rc == 0 && i < PQntuples(result); i++)
        if (!PQgetisnull(result, i, 1) &&
            json_array_append_new(list, json_pack("{s:s, s:I}", "client_id",
                                                  PQgetvalue(result, i, 1), "connections",
                                                  (json_int_t)pg_integer(result, i, 2))) != 0)
            rc = TW_E_NOMEM;
    PQclear(result);
    if (rc == 0)
        *clients = list;
    else
        json_decref(list);
    return rc;
}

static int
pg_presence_count(struct store *base, int64_t *rows)
{
    struct store_pg *store = (struct store_pg *)base;
    *rows = 0;
    return pg_integer_row(store, "presence_count", sql_presence_count, NULL, rows, NULL);
}

static int
pg_presence_forget(struct store *base, int64_t before_ms)
{
    struct store_pg *store = (struct store_pg *)base;
    struct pg_params params = {0};
    param_int(&params, 1, before_ms);
    return pg_run(store, "presence_forget", sql_presence_forget, &params, NULL);
}

static const struct store_ops store_pg_ops = {
    .destroy = pg_destroy,
    .group_commit = pg_group_commit,
    .sync_count = pg_sync_count,
    .tasks_insert = pg_tasks_insert,
    .task_get = pg_task_get,
    .task_list = pg_task_list,
    .task_cancel = pg_task_cancel,
    .task_retry = pg_task_retry,
    .task_delete = pg_task_delete,
    .task_announce = pg_task_announce,
    .announce_many = pg_announce_many,
    .task_announce_change = pg_task_announce_change,
    .task_claimable = pg_task_claimable,
    .tasks_claim = pg_tasks_claim,
    .leases_renew = pg_leases_renew,
    .leases_expired = pg_leases_expired,
    .task_requeue = pg_task_requeue,
    .task_progress = pg_task_progress,
    .finish_attempt = pg_finish_attempt,
    .finish_many = pg_finish_many,
    .last_seq = pg_last_seq,
    .retry_attempt = pg_retry_attempt,
    .task_check = pg_task_check,
    .worker_heartbeat = pg_worker_heartbeat,
    .worker_remove = pg_worker_remove,
    .workers_alive = pg_workers_alive,
    .queue_depths = pg_queue_depths,
    .tasks_prune = pg_tasks_prune,
    .transaction_begin = pg_transaction_begin,
    .transaction_commit = pg_transaction_commit,
    .transaction_rollback = pg_transaction_rollback,
    .worker_durability = pg_worker_durability,
    .check_writable = pg_check_writable,
    .problem = pg_problem,
    .admin_task_get = pg_admin_task_get,
    .admin_task_list = pg_admin_task_list,
    .admin_status = pg_admin_status,
    .admin_stats = pg_admin_stats,
    .history_append = pg_history_append,
    .history_read = pg_history_read,
    .history_prune = pg_history_prune,
    .presence_lock = pg_presence_lock,
    .presence_version = pg_presence_version,
    .presence_put = pg_presence_put,
    .presence_total = pg_presence_total,
    .presence_renew = pg_presence_renew,
    .presence_channels = pg_presence_channels,
    .presence_drop = pg_presence_drop,
    .presence_list = pg_presence_list,
    .presence_count = pg_presence_count,
    .presence_forget = pg_presence_forget,
};
