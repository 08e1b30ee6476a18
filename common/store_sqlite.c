/* store_sqlite.c: the task store on SQLite (WAL; a 202 means the row is on disk:
 * synchronous=FULL, or group commit in the handler, see store_group_commit).
 *
 * Assumes one connection per thread, a database file on a local file system (WAL's shared
 * memory and the "-queue" file's lock do not work across hosts), and that every process of the
 * store shares that file system.  What does not depend on SQLite (status names, the shaping of
 * texts and per-minute rows) is in store.c, for every backend; store.c calls the functions here
 * through store_sqlite_ops (store_backend.h), each named as store.h's but with sqlite_.
 *
 * Statements are prepared once per connection on first use (store_statements[] is the one list
 * of SQL); every change of a task is a single UPDATE ... RETURNING, so it is atomic between
 * processes and hands back the new row, seq included.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "bucket.h"
#include "clock.h"
#include "errors.h"
#include "log.h"
#include "store_backend.h"
#include "token.h"

#define OWNER "(?2 IS NULL OR client_id = ?2)"
#define FINAL_STATUSES "('succeeded', 'failed', 'cancelled')"
/* A queued task q may start now (?2) under the type limits ?4 ({"type": limit} or NULL). */
#define CLAIMABLE                                                                                  \
    "q.status = 'queued' AND q.run_at <= ?2 AND (?4 IS NULL"                                       \
    " OR json_extract(?4, '$.\"' || q.type || '\"') IS NULL"                                       \
    " OR (SELECT count(*) FROM tasks r WHERE r.status = 'running' AND r.type = q.type)"            \
    " < json_extract(?4, '$.\"' || q.type || '\"'))"

/* ST_FINISH_MANY's rows: STORE_FINISH_ROWS of eight parameters each. */
#define STORE_FINISH_ROWS 16
#define FINISH_ROW "(?, ?, ?, ?, ?, ?, ?, ?)"
#define FINISH_ROWS4 FINISH_ROW ", " FINISH_ROW ", " FINISH_ROW ", " FINISH_ROW
#define FINISH_ROWS FINISH_ROWS4 ", " FINISH_ROWS4 ", " FINISH_ROWS4 ", " FINISH_ROWS4
#define FINISH_ROW_PARAMS 8

/* ST_ANNOUNCE_MANY's ids: STORE_ANNOUNCE_IDS parameters. */
#define STORE_ANNOUNCE_IDS 16
/* Numbered, since the statement names its other parameters (?17, ?18) before them. */
#define ANNOUNCE_IDS "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16"

/* Outside any transaction: journal mode and the default sync of every connection, and its
 * temporary files in memory.  A multi-row statement inside a transaction (a batch of claims,
 * of final states, of announcements) keeps a statement journal to undo itself alone, and
 * SQLite's default puts that in a file: one create, write, read and unlink in /var/tmp per
 * worker turn.  In memory it holds at most a batch's pages (STORE_ANNOUNCE_IDS,
 * STORE_FINISH_ROWS rows), and it is never needed after a crash, which ends the transaction anyway.
 */
static const char store_pragmas[] = "PRAGMA journal_mode = WAL;"
                                    "PRAGMA synchronous = FULL;"
                                    "PRAGMA temp_store = MEMORY;";

#define STORE_PROBE_TABLE "CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at INTEGER);"

/* The indexes of schema 2, for a new database and for the upgrade from 1. */
#define STORE_INDEXES                                                                              \
    "CREATE INDEX IF NOT EXISTS tasks_by_client ON tasks (client_id, seqno);"                      \
    "CREATE INDEX IF NOT EXISTS tasks_claimable ON tasks (priority DESC, seqno)"                   \
    " WHERE status = 'queued';"                                                                    \
    "CREATE INDEX IF NOT EXISTS tasks_queued_by_client ON tasks (client_id)"                       \
    " WHERE status = 'queued';"                                                                    \
    "CREATE INDEX IF NOT EXISTS tasks_running ON tasks (type) WHERE status = 'running';"           \
    "CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished_at)"                             \
    " WHERE finished_at IS NOT NULL;"                                                              \
    "CREATE TABLE IF NOT EXISTS idempotency ("                                                     \
    " client_id TEXT NOT NULL, key TEXT NOT NULL, task_id TEXT NOT NULL,"                          \
    " request_hash TEXT NOT NULL, created_at INTEGER NOT NULL,"                                    \
    " PRIMARY KEY (client_id, key));"                                                              \
    "CREATE INDEX IF NOT EXISTS idempotency_by_age ON idempotency (created_at);"

/* Schema 3: the workers' host, and task_minutes, what happened in each minute (ms / 60000 of the
 * wall clock), kept by triggers so that every program's changes count and a deleted task's
 * still do: tasks submitted, attempts started, tasks succeeded and failed, and the change of the
 * queued count (so the depth at a minute's end is today's count less the later changes).  A
 * change's minute is its task's own time (created_at, started_at, finished_at), else now. */
#define STORE_ADDED_3                                                                              \
    "CREATE TABLE IF NOT EXISTS task_minutes ("                                                    \
    " minute INTEGER PRIMARY KEY, submitted INTEGER NOT NULL DEFAULT 0,"                           \
    " started INTEGER NOT NULL DEFAULT 0, succeeded INTEGER NOT NULL DEFAULT 0,"                   \
    " failed INTEGER NOT NULL DEFAULT 0, queued INTEGER NOT NULL DEFAULT 0);"                      \
    "CREATE TRIGGER IF NOT EXISTS task_minutes_insert AFTER INSERT ON tasks BEGIN"                 \
    " INSERT INTO task_minutes (minute, submitted, queued)"                                        \
    " VALUES (new.created_at / 60000, 1, new.status = 'queued') ON CONFLICT (minute) DO UPDATE"    \
    " SET submitted = submitted + 1, queued = queued + excluded.queued; END;"                      \
    "CREATE TRIGGER IF NOT EXISTS task_minutes_status AFTER UPDATE OF status ON tasks"             \
    " WHEN old.status IS NOT new.status BEGIN"                                                     \
    " INSERT INTO task_minutes (minute, started, succeeded, failed, queued) VALUES ("              \
    " COALESCE(CASE new.status WHEN 'running' THEN new.started_at WHEN 'queued' THEN NULL"         \
    " ELSE new.finished_at END / 60000,"                                                           \
    " CAST((julianday('now') - 2440587.5) * 1440 AS INTEGER)),"                                    \
    " new.status = 'running', new.status = 'succeeded', new.status = 'failed',"                    \
    " (new.status = 'queued') - (old.status = 'queued')) ON CONFLICT (minute) DO UPDATE"           \
    " SET started = started + excluded.started, succeeded = succeeded + excluded.succeeded,"       \
    " failed = failed + excluded.failed, queued = queued + excluded.queued; END;"                  \
    "PRAGMA user_version = 3;"

/* Schema 4: a task's channels (store_backend.h). */
#define STORE_ADDED_4 STORE_ADD_CHANNELS "PRAGMA user_version = 4;"
/* Schema 5: who announced a task (store_backend.h). */
#define STORE_ADDED_5 STORE_ADD_ANNOUNCER("INTEGER") "PRAGMA user_version = 5;"

/* Schema 6: presence (store_backend.h). */
#define STORE_ADDED_6 STORE_PRESENCE_TABLES("INTEGER") "PRAGMA user_version = 6;"

/* Schema 7: channel history (store_backend.h). */
#define STORE_ADDED_7 STORE_HISTORY_TABLES("INTEGER") "PRAGMA user_version = 7;"

/* What each schema adds after 3, for a new database and every upgrade. */
#define STORE_ADDED_SINCE_4 STORE_ADDED_4 STORE_ADDED_5 STORE_ADDED_6 STORE_ADDED_7

static const char store_schema[] =
    STORE_TASKS_TABLE("INTEGER PRIMARY KEY", "INTEGER", "INTEGER NOT NULL DEFAULT 0")
        STORE_WORKERS_TABLE("INTEGER")
            STORE_PROBE_TABLE STORE_INDEXES STORE_ADDED_3 STORE_ADDED_SINCE_4;

/* Tables added since schema 2 that older programs do not read: made on every open. */
static const char store_tables_added[] =
    "CREATE TABLE IF NOT EXISTS submit_rate ("
    " client_id TEXT PRIMARY KEY, units INTEGER NOT NULL, at INTEGER NOT NULL);";

/* Schema 1 (no user_version) to 2: the lease, retry and scheduling columns; a task of 1 was
 * announced already and may run from its creation. */
static const char store_upgrade_1[] =
    "ALTER TABLE tasks ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 3;"
    "ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN errors TEXT NOT NULL DEFAULT '[]';"
    "ALTER TABLE tasks ADD COLUMN run_at INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN lease_expires_at INTEGER;"
    "ALTER TABLE tasks ADD COLUMN worker_host TEXT;"
    "ALTER TABLE tasks ADD COLUMN announced INTEGER NOT NULL DEFAULT 0;"
    "UPDATE tasks SET run_at = created_at, announced = 1;"
    "DROP INDEX IF EXISTS tasks_by_status;" STORE_PROBE_TABLE STORE_INDEXES
    "ALTER TABLE workers ADD COLUMN host TEXT NOT NULL DEFAULT '';" STORE_ADDED_3
        STORE_ADDED_SINCE_4;

/* Schema 2 to 3: the workers' host and the per-minute counts (from the upgrade on). */
static const char store_upgrade_2[] =
    "ALTER TABLE workers ADD COLUMN host TEXT NOT NULL DEFAULT '';" STORE_ADDED_3
        STORE_ADDED_SINCE_4;

/* Schema 3 to 4: a task's channels (and what came after). */
static const char store_upgrade_3[] = STORE_ADDED_SINCE_4;

/* Schema 4 to 5: who announced a task (and what came after). */
static const char store_upgrade_4[] = STORE_ADDED_5 STORE_ADDED_6 STORE_ADDED_7;

/* Schema 5 to 6: presence tables (and what came after). */
static const char store_upgrade_5[] = STORE_ADDED_6 STORE_ADDED_7;

/* Schema 6 to 7: channel history. */
static const char store_upgrade_6[] = STORE_ADDED_7;

enum statement {
    ST_INSERT,
    ST_QUEUED_COUNT,
    ST_KEY_GET,
    ST_KEY_PUT,
    ST_GET,
    ST_LIST,
    ST_CANCEL_QUEUED,
    ST_CANCEL_RUNNING,
    ST_RETRY,
    ST_DELETE,
    ST_ANNOUNCE,
    ST_UNANNOUNCED,
    ST_ANNOUNCE_MANY,
    ST_CLAIMABLE,
    ST_CLAIM,
    ST_CLAIM_MANY,
    ST_RENEW,
    ST_EXPIRED,
    ST_PROGRESS,
    ST_FINISH,
    ST_FINISH_MANY,
    ST_END_RETRY,
    ST_CHECK,
    ST_HEARTBEAT,
    ST_WORKER_REMOVE,
    ST_WORKERS_ALIVE,
    ST_WORKERS_FORGET,
    ST_REQUEUE,
    ST_PRUNE,
    ST_PRUNE_KEYS,
    ST_RATE_GET,
    ST_RATE_PUT,
    ST_PRUNE_RATE,
    ST_PRUNE_MINUTES,
    ST_ADMIN_GET,
    ST_ADMIN_LIST,
    ST_ADMIN_WORKERS,
    ST_ADMIN_RUNNING,
    ST_ADMIN_QUEUES,
    ST_ADMIN_MINUTES,
    ST_ADMIN_QUEUED_NOW,
    ST_ADMIN_DURATIONS,
    ST_QUEUE_DEPTHS,
    ST_STREAM_ADVANCE,
    ST_HISTORY_INSERT,
    ST_HISTORY_TRIM,
    ST_HISTORY_READ,
    ST_HISTORY_PRUNE,
    ST_STREAMS_PRUNE,
    /* presence */
    ST_PRESENCE_VERSION,
    ST_PRESENCE_OWN,
    ST_PRESENCE_PUT,
    ST_PRESENCE_TOTAL,
    ST_PRESENCE_RENEW,
    ST_PRESENCE_RELAY_CHANNELS,
    ST_PRESENCE_EXPIRED_CHANNELS,
    ST_PRESENCE_DROP_RELAY,
    ST_PRESENCE_DROP_EXPIRED,
    ST_PRESENCE_LIST,
    ST_PRESENCE_COUNT,
    ST_PRESENCE_FORGET,
    ST_COUNT
};

static const char *const store_statements[ST_COUNT] = {
    [ST_INSERT] = "INSERT INTO tasks (id, client_id, type, name, params, status, message,"
                  " created_at, run_at, priority, max_attempts, channels) VALUES (?1, ?2, ?3, ?4,"
                  " ?5, 'queued', 'queued', ?6, ?7, ?8, ?9, ?10) RETURNING " STORE_TASK_COLUMNS,
    [ST_QUEUED_COUNT] = "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE client_id = ?1"
                        " AND status = 'queued' LIMIT ?2)",
    [ST_KEY_GET] = "SELECT task_id, request_hash FROM idempotency WHERE client_id = ?1"
                   " AND key = ?2 AND created_at > ?3",
    [ST_KEY_PUT] = "INSERT OR REPLACE INTO idempotency (client_id, key, task_id, request_hash,"
                   " created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_GET] = "SELECT " STORE_TASK_COLUMNS " FROM tasks WHERE id = ?1 AND " OWNER,
    [ST_LIST] = "SELECT " STORE_TASK_COLUMNS " FROM tasks WHERE client_id = ?1"
                " AND (?2 IS NULL OR status = ?2)"
                /* The cursor's own place, or, when it was deleted meanwhile, the first task
                 * made after its millisecond (?5, from its id): commits are serialized, so
                 * created_at rises with seqno, and no older task is skipped. */
                " AND (?3 IS NULL OR seqno < COALESCE((SELECT seqno FROM tasks WHERE id = ?3),"
                " (SELECT min(seqno) FROM tasks WHERE client_id = ?1 AND created_at > ?5),"
                " 9223372036854775807))"
                " ORDER BY seqno DESC LIMIT ?4",
    [ST_CANCEL_QUEUED] =
        "UPDATE tasks SET status = 'cancelled', message = 'cancelled',"
        " finished_at = ?3, seq = seq + 1, cancel_requested = 1"
        " WHERE id = ?1 AND " OWNER " AND status = 'queued' RETURNING " STORE_TASK_COLUMNS,
    [ST_CANCEL_RUNNING] =
        "UPDATE tasks SET cancel_requested = 1"
        " WHERE id = ?1 AND " OWNER " AND status = 'running' RETURNING " STORE_TASK_COLUMNS,
    [ST_RETRY] = "UPDATE tasks SET status = 'queued', run_at = ?3,"
                 " max_attempts = max(max_attempts, json_array_length(errors) + 1),"
                 " cancel_requested = 0, error = NULL, result = NULL, finished_at = NULL,"
                 " started_at = NULL, progress = 0, message = 'queued for retry',"
                 " worker_id = NULL, worker_host = NULL, lease_expires_at = NULL, seq = seq + 1"
                 " WHERE id = ?1 AND " OWNER " AND status IN ('failed', 'cancelled')"
                 " RETURNING " STORE_TASK_COLUMNS,
    [ST_DELETE] = "DELETE FROM tasks WHERE id = ?1 AND " OWNER " AND status IN " FINAL_STATUSES
                  " RETURNING id",
    [ST_ANNOUNCE] = "UPDATE tasks SET announced = 1, announced_by = ?2, announced_at = ?3"
                    " WHERE id = ?1 AND announced = 0"
                    " AND status = 'queued' RETURNING " STORE_TASK_COLUMNS,
    [ST_UNANNOUNCED] = "SELECT 1 FROM tasks WHERE id = ?1 AND announced = 0 AND status = 'queued'",
    /* ST_ANNOUNCE for up to STORE_ANNOUNCE_IDS ids (NULLs match nothing). */
    [ST_ANNOUNCE_MANY] = "UPDATE tasks SET announced = 1, announced_by = ?17, announced_at = ?18"
                         " WHERE id IN (" ANNOUNCE_IDS ")"
                         " AND announced = 0 AND status = 'queued' RETURNING " STORE_TASK_COLUMNS,
    [ST_CLAIMABLE] = "SELECT 1 FROM tasks q WHERE " CLAIMABLE " LIMIT 1",
#define CLAIM_SET                                                                                  \
    "UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = ?2,"               \
    " worker_id = ?1, worker_host = ?5, seq = seq + 1, message = 'started',"                       \
    " lease_expires_at = ?3, announced = announced + 1"
#define CLAIM_RETURNING " RETURNING " STORE_TASK_COLUMNS ", announced, started_at - run_at"
    [ST_CLAIM] =
        CLAIM_SET " WHERE seqno = (SELECT q.seqno FROM tasks q WHERE " CLAIMABLE STORE_SETTLED(
            "?1", "?2") " ORDER BY q.priority DESC, q.seqno LIMIT 1)" CLAIM_RETURNING,
    /* Without type limits (?4 NULL) the first ?6 claimable tasks at once. */
    [ST_CLAIM_MANY] =
        CLAIM_SET " WHERE seqno IN (SELECT q.seqno FROM tasks q WHERE " CLAIMABLE STORE_SETTLED(
            "?1", "?2") " ORDER BY q.priority DESC, q.seqno LIMIT ?6)" CLAIM_RETURNING,
    [ST_RENEW] = "UPDATE tasks SET lease_expires_at = ?2 WHERE worker_id = ?1"
                 " AND status = 'running' RETURNING id, attempts",
    [ST_EXPIRED] =
        "SELECT " STORE_TASK_COLUMNS ", worker_id, worker_host, cancel_requested FROM tasks"
        " WHERE status = 'running' AND lease_expires_at < ?1",
    [ST_PROGRESS] =
        "UPDATE tasks SET progress = ?3, message = ?4, seq = seq + 1"
        " WHERE id = ?1 AND attempts = ?2 AND status = 'running' RETURNING " STORE_TASK_COLUMNS,
    [ST_FINISH] = "UPDATE tasks SET status = ?3, result = ?4, error = ?5,"
                  " message = COALESCE(?6, message),"
                  " progress = CASE WHEN ?3 = 'succeeded' THEN 100 ELSE progress END,"
                  " finished_at = ?7, lease_expires_at = NULL, seq = seq + 1,"
                  " errors = CASE WHEN ?8 IS NULL THEN errors"
                  " ELSE json_insert(errors, '$[#]', json(?8)) END"
                  " WHERE id = ?1 AND attempts = ?2 AND status = 'running'"
                  " AND (?9 IS NULL OR lease_expires_at < ?9) RETURNING " STORE_TASK_COLUMNS,
    /* ST_FINISH for up to STORE_FINISH_ROWS attempts (rows of id, attempt, status, result,
     * error, message, error entry, finished_at; a row of NULLs matches nothing). */
    [ST_FINISH_MANY] =
        "WITH v (id, attempt, status, result, error, message, entry, at) AS (VALUES " FINISH_ROWS
        ") UPDATE tasks SET status = v.status, result = v.result, error = v.error,"
        " message = COALESCE(v.message, tasks.message),"
        " progress = CASE WHEN v.status = 'succeeded' THEN 100 ELSE tasks.progress END,"
        " finished_at = v.at, lease_expires_at = NULL, seq = tasks.seq + 1,"
        " errors = CASE WHEN v.entry IS NULL THEN tasks.errors"
        " ELSE json_insert(tasks.errors, '$[#]', json(v.entry)) END"
        " FROM v WHERE tasks.id = v.id AND tasks.attempts = v.attempt AND tasks.status = 'running'"
        " RETURNING tasks.id, tasks.seq",
    [ST_END_RETRY] = "UPDATE tasks SET status = 'queued', run_at = ?3, progress = 0,"
                     " message = ?4, error = ?5, errors = json_insert(errors, '$[#]', json(?6)),"
                     " worker_id = NULL, worker_host = NULL, lease_expires_at = NULL,"
                     " started_at = NULL, seq = seq + 1"
                     " WHERE id = ?1 AND attempts = ?2 AND status = 'running'"
                     " AND (?7 IS NULL OR lease_expires_at < ?7) RETURNING " STORE_TASK_COLUMNS,
    [ST_CHECK] = "SELECT cancel_requested, attempts = ?2 AND status = 'running' FROM tasks"
                 " WHERE id = ?1",
    [ST_HEARTBEAT] = "INSERT INTO workers (id, pid, concurrency, started_at, heartbeat_at, host)"
                     " VALUES (?1, ?2, ?3, ?4, ?4, ?5) ON CONFLICT (id) DO UPDATE"
                     " SET heartbeat_at = excluded.heartbeat_at",
    [ST_WORKER_REMOVE] = "DELETE FROM workers WHERE id = ?1",
    [ST_QUEUE_DEPTHS] = "SELECT type, status, count(*) FROM tasks"
                        " WHERE status IN ('queued', 'running') GROUP BY type, status",
    [ST_WORKERS_ALIVE] = "SELECT count(*) FROM workers WHERE heartbeat_at > ?1",
    [ST_WORKERS_FORGET] = "DELETE FROM workers WHERE heartbeat_at <= ?1",
    [ST_REQUEUE] =
        "UPDATE tasks SET status = 'queued', progress = 0, message = ?3,"
        " started_at = NULL, worker_id = NULL, worker_host = NULL,"
        " lease_expires_at = NULL, seq = seq + 1"
        " WHERE id = ?1 AND attempts = ?2 AND status = 'running' RETURNING " STORE_TASK_COLUMNS,
    [ST_PRUNE] = "DELETE FROM tasks WHERE seqno IN (SELECT seqno FROM tasks"
                 " WHERE finished_at < ?1 LIMIT ?2)",
    [ST_PRUNE_KEYS] = "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency"
                      " WHERE created_at < ?1 LIMIT ?2)",
    [ST_RATE_GET] = "SELECT units, at FROM submit_rate WHERE client_id = ?1",
    [ST_RATE_PUT] = "INSERT OR REPLACE INTO submit_rate (client_id, units, at) VALUES (?1, ?2, ?3)",
    [ST_PRUNE_RATE] = "DELETE FROM submit_rate WHERE rowid IN (SELECT rowid FROM submit_rate"
                      " WHERE at < ?1 LIMIT ?2)",
    [ST_PRUNE_MINUTES] = "DELETE FROM task_minutes WHERE minute < ?1",
    [ST_ADMIN_GET] = "SELECT " STORE_TASK_COLUMNS ", worker_id, seqno FROM tasks WHERE id = ?1",
    /* ?5: a task id or client id, or the start of one (hex: 'g' sorts after every digit). */
    [ST_ADMIN_LIST] = "SELECT " STORE_TASK_COLUMNS ", worker_id, seqno FROM tasks"
                      " WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR type = ?2)"
                      " AND (?3 IS NULL OR client_id = ?3) AND (?4 IS NULL OR seqno < ?4)"
                      " AND (?5 IS NULL OR (id >= ?5 AND id < ?5 || 'g')"
                      " OR (client_id >= ?5 AND client_id < ?5 || 'g'))"
                      " ORDER BY seqno DESC LIMIT ?6",
    [ST_ADMIN_WORKERS] = "SELECT id, host, pid, concurrency, heartbeat_at FROM workers"
                         " ORDER BY started_at, id",
    [ST_ADMIN_RUNNING] = "SELECT worker_id, id, type, client_id, attempts, started_at FROM tasks"
                         " WHERE status = 'running' ORDER BY started_at",
    [ST_ADMIN_QUEUES] = "SELECT type, sum(status = 'queued'), sum(status = 'running') FROM tasks"
                        " WHERE status IN ('queued', 'running') GROUP BY type ORDER BY type",
    [ST_ADMIN_MINUTES] = "SELECT minute, submitted, started, succeeded, failed, queued"
                         " FROM task_minutes WHERE minute >= ?1 ORDER BY minute DESC",
    [ST_ADMIN_QUEUED_NOW] = "SELECT count(*) FROM tasks WHERE status = 'queued'",
    /* Nearest-rank percentiles, per type, of the tasks that ended since ?1 (their last
     * attempt's time from start to end). */
    [ST_ADMIN_DURATIONS] =
        "WITH d AS (SELECT type, finished_at - started_at AS ms FROM tasks"
        " WHERE finished_at >= ?1 AND started_at IS NOT NULL"
        " AND status IN ('succeeded', 'failed')),"
        " r AS (SELECT type, ms, row_number() OVER (PARTITION BY type ORDER BY ms) AS n,"
        " count(*) OVER (PARTITION BY type) AS c FROM d)"
        " SELECT type, c, max(CASE WHEN n = (c * 50 + 99) / 100 THEN ms END),"
        " max(CASE WHEN n = (c * 99 + 99) / 100 THEN ms END) FROM r GROUP BY type ORDER BY type",
    /* Channel history.  A stream takes ?3 more messages: made with epoch ?2 when the channel
     * has none, else its last offset raised (the epoch kept); its expiry ?5 is its newest
     * message's. */
    [ST_STREAM_ADVANCE] =
        "INSERT INTO channel_streams (channel, epoch, last_offset, updated_at, expires_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (channel) DO UPDATE SET"
        " last_offset = last_offset + excluded.last_offset, updated_at = excluded.updated_at,"
        " expires_at = excluded.expires_at RETURNING epoch, last_offset",
    [ST_HISTORY_INSERT] = "INSERT INTO channel_history (channel, message_offset, at, expires_at,"
                          " payload) VALUES (?1, ?2, ?3, ?4, ?5)",
    /* Keep the channel's newest rows (offset above ?2) within their ttl (?3 is now). */
    [ST_HISTORY_TRIM] = "DELETE FROM channel_history WHERE channel = ?1"
                        " AND (message_offset <= ?2 OR expires_at <= ?3)",
    /* The messages above ?2 kept at ?3, at most ?4, until ?5 bytes are in (the first always),
     * each beside the stream's epoch, last offset and oldest kept offset; one row with the
     * message's columns NULL when none is; no row without a stream. */
    [ST_HISTORY_READ] =
        "SELECT h.message_offset, h.payload, s.epoch, s.last_offset,"
        " (SELECT min(message_offset) FROM channel_history WHERE channel = ?1"
        " AND expires_at > ?3) FROM channel_streams s LEFT JOIN (SELECT message_offset, payload,"
        " sum(length(CAST(payload AS BLOB))) OVER (ORDER BY message_offset)"
        " - length(CAST(payload AS BLOB)) AS bytes_before FROM channel_history"
        " WHERE channel = ?1 AND message_offset > ?2 AND expires_at > ?3"
        " ORDER BY message_offset LIMIT ?4) h ON h.bytes_before < ?5"
        " WHERE s.channel = ?1 ORDER BY h.message_offset",
    [ST_HISTORY_PRUNE] = "DELETE FROM channel_history WHERE rowid IN (SELECT rowid FROM"
                         " channel_history WHERE expires_at <= ?1 LIMIT ?2)",
    [ST_STREAMS_PRUNE] = "DELETE FROM channel_streams WHERE channel IN (SELECT s.channel FROM"
                         " channel_streams s WHERE s.expires_at <= ?1 AND NOT EXISTS (SELECT 1"
                         " FROM channel_history h WHERE h.channel = s.channel) LIMIT ?2)",
    /* presence (store.h) */
    [ST_PRESENCE_VERSION] = "INSERT INTO presence_channels (channel, version) VALUES (?1, ?2)"
                            " ON CONFLICT (channel) DO UPDATE SET"
                            " version = max(presence_channels.version + 1, excluded.version)"
                            " RETURNING version",
    [ST_PRESENCE_OWN] = "SELECT conns FROM presence WHERE channel = ?1 AND client_id = ?2"
                        " AND relay_id = ?3",
    [ST_PRESENCE_PUT] = "INSERT INTO presence (channel, client_id, relay_id, conns, seq,"
                        " expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                        " ON CONFLICT (channel, client_id, relay_id) DO UPDATE SET"
                        " conns = excluded.conns, seq = excluded.seq,"
                        " expires_at = excluded.expires_at WHERE presence.seq < excluded.seq"
                        " RETURNING conns",
    [ST_PRESENCE_TOTAL] = "SELECT COALESCE(sum(conns), 0) FROM presence WHERE channel = ?1"
                          " AND client_id = ?2",
    [ST_PRESENCE_RENEW] = "UPDATE presence SET expires_at = ?2 WHERE relay_id = ?1 AND conns > 0"
                          " AND seq >= ?3",
    [ST_PRESENCE_RELAY_CHANNELS] = "SELECT DISTINCT channel FROM presence WHERE relay_id = ?1"
                                   " ORDER BY channel LIMIT ?2",
    [ST_PRESENCE_EXPIRED_CHANNELS] = "SELECT DISTINCT channel FROM presence WHERE expires_at < ?1"
                                     " ORDER BY channel LIMIT ?2",
    [ST_PRESENCE_DROP_RELAY] = "DELETE FROM presence WHERE channel = ?1 AND relay_id = ?2"
                               " RETURNING client_id, conns",
    [ST_PRESENCE_DROP_EXPIRED] = "DELETE FROM presence WHERE channel = ?1 AND expires_at < ?2"
                                 " RETURNING client_id, conns",
    /* One statement: the version and the rows agree.  One row with a NULL client when empty. */
    [ST_PRESENCE_LIST] =
        "SELECT v.version, p.client_id, p.total FROM (SELECT COALESCE((SELECT version FROM"
        " presence_channels WHERE channel = ?1), 0) AS version) AS v LEFT JOIN (SELECT client_id,"
        " sum(conns) AS total FROM presence WHERE channel = ?1 AND conns > 0 GROUP BY client_id"
        " ORDER BY client_id LIMIT ?2) AS p ON 1 = 1 ORDER BY p.client_id",
    [ST_PRESENCE_COUNT] = "SELECT count(*) FROM presence WHERE conns > 0",
    [ST_PRESENCE_FORGET] =
        "DELETE FROM presence_channels WHERE version < ?1 AND NOT EXISTS"
        " (SELECT 1 FROM presence p WHERE p.channel = presence_channels.channel)",
};

#define STORE_BOOT_ID_SIZE 40 /* bytes kept of /proc/sys/kernel/random/boot_id */
#define STORE_REVIVE_MS 1000  /* a read-only connection tries to open for writing this often */
#define STORE_PROBLEM_RECHECK_MS                                                                   \
    2000 /* a health check tries a write when the latest write of                                  \
            every process failed this long ago */

/* What every process of the store shares through a mapping of the "-queue" file: group
 * commit's counters, and the latest write problem any of them met.  They hold since boot_id's
 * boot; a reboot (a power loss included) resets them, so a count from before it never vouches
 * for a commit after it. */
struct store_shared {
    char boot_id[STORE_BOOT_ID_SIZE];
    uint64_t committed;    /* tickets handed out: one per commit, taken after the commit */
    uint64_t synced;       /* every commit with a ticket up to this one is on disk */
    int64_t problem_at_ms; /* wall clock of the latest failed write of any process; 0 once a
                              write landed after it */
    int32_t problem;       /* its TW_E_STORE_FULL, _READONLY or _IO */
    int32_t unused;
};

struct store_sqlite {
    struct store base; /* first: what store.c dispatches on */
    sqlite3 *db;
    sqlite3_stmt *statements[ST_COUNT];
    char *path;   /* the database, to open again (store_revive) */
    int queue_fd; /* the database's "-queue" file: submissions take turns on its flock */
    struct store_shared *shared; /* the "-queue" file's mapping, or NULL without one */
    int group_commit;            /* store_group_commit() is on */
    int synchronous_normal;      /* commits with synchronous=NORMAL (group commit, a worker) */
    sqlite3_int64 changes_seen;  /* sqlite3_total_changes64 when this connection last synced */
    uint64_t syncs;              /* WAL syncs this connection made for group commit */
    int busy_timeout_ms;         /* how long store_busy() waits for a lock */
    int64_t last_seq;            /* seq of the last task row a change returned */
    int failure;                 /* TW_E_* of the first failure since the caller's change began
                                    (store_answer) */
    int problem;                 /* TW_E_STORE_FULL, _READONLY or _IO while this connection's
                                    writes fail so; 0 once one lands */
    unsigned long long problem_failures; /* failures since the problem began (the first logged) */
    int64_t problem_since_ms;            /* when it began (monotonic) */
    int read_only;                       /* SQLite could open the database only read-only */
    int64_t revive_at_ms;                /* when to try opening it for writing again (monotonic) */
    sqlite3_int64 changes_at_begin;      /* sqlite3_total_changes64 when the transaction began */
    int64_t busy_since_ms;               /* when the current wait began (monotonic) */
};

/* Submissions from several handler processes take turns on a kernel lock before they ask
 * SQLite for its writer lock: the kernel wakes the next one the moment the lock is free,
 * where SQLite's busy handler would poll with sleeps of up to 100 ms (second-long waits under
 * load).  Advisory, and only an ordering: without it, the busy handler still decides. */
/* The database file's permission bits (0600 when it cannot be read), for the files beside it:
 * whoever may write the database may take a turn. */
static mode_t
store_file_mode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (st.st_mode & 0666) : 0600;
}

static void
store_queue_enter(struct store_sqlite *store)
{
    while (store->queue_fd >= 0 && flock(store->queue_fd, LOCK_EX) != 0 && errno == EINTR)
        ;
}

static void
store_queue_leave(struct store_sqlite *store)
{
    if (store->queue_fd >= 0)
        flock(store->queue_fd, LOCK_UN);
}

/* The sync turn: an open-file-description lock on the "-queue" file's first byte, apart from
 * the flock that orders submissions (Linux keeps the two kinds of lock apart). */
static int
store_sync_turn(struct store_sqlite *store, short type)
{
    struct flock turn = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    int rc;
    while ((rc = fcntl(store->queue_fd, F_OFD_SETLKW, &turn)) != 0 && errno == EINTR)
        ;
    return rc;
}

/* What a failed SQLite call (its extended result code, and the errno of the system call that
 * failed under it) means: a 503 when the same call can succeed later, with nothing changed on
 * our side (another writer's lock; a full, read-only or failing disk), else TW_E_STORE (a
 * corrupt file, a bug). */
static int
store_fault_of(int code, int sys_errno)
{
    switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return TW_E_STORE_BUSY;
    case SQLITE_FULL:
        return TW_E_STORE_FULL;
    case SQLITE_READONLY:
    case SQLITE_PERM:
        return TW_E_STORE_READONLY;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
        switch (sys_errno) {
        case ENOSPC:
        case EDQUOT:
        case EFBIG:
            return TW_E_STORE_FULL;
        case EROFS:
        case EPERM:
        case EACCES:
            return TW_E_STORE_READONLY;
        default:
            return TW_E_STORE_IO;
        }
    default:
        return TW_E_STORE;
    }
}

/* What an I/O error whose errno SQLite did not keep (it reports the errno of the moment it
 * returns, often 0) was about: a database or log file we may not write (a read-only file
 * system, an immutable file) makes the store read-only, a file system without room left makes
 * it full; anything else is an I/O error. */
static int
store_io_cause(const struct store_sqlite *store)
{
    char wal[4096];
    const char *files[] = {store->path, wal};
    snprintf(wal, sizeof wal, "%s-wal", store->path);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (access(files[i], W_OK) != 0 && (errno == EROFS || errno == EPERM || errno == EACCES))
            return TW_E_STORE_READONLY;
    struct statvfs disk;
    if (statvfs(store->path, &disk) == 0 && (geteuid() == 0 ? disk.f_bfree : disk.f_bavail) == 0)
        return TW_E_STORE_FULL;
    return TW_E_STORE_IO;
}

/* Record problem (a TW_E_STORE_* of a failed write) for every process (store_check_writable). */
static void
store_shared_problem(struct store_sqlite *store, int problem)
{
    if (!store->shared)
        return;
    int64_t now = clock_now_ms();
    __atomic_store_n(&store->shared->problem, problem, __ATOMIC_SEQ_CST);
    __atomic_store_n(&store->shared->problem_at_ms, now > 0 ? now : 1, __ATOMIC_SEQ_CST);
}

/* Log a failure of what and return TW_E_STORE.  A full, read-only or failing disk is logged
 * once per episode: its first failure, then only a count until a write lands (store_landed),
 * so a store that stays full for an hour does not log every write that tried. */
static int
store_fail(struct store_sqlite *store, const char *what)
{
    int code = sqlite3_extended_errcode(store->db);
    int sys_errno = sqlite3_system_errno(store->db);
    int fault = store_fault_of(code, sys_errno);
    if (fault == TW_E_STORE_IO)
        fault = store_io_cause(store);
    if (!store->failure)
        store->failure = fault;
    if (fault == TW_E_STORE || fault == TW_E_STORE_BUSY) {
        log_error("event=store_error op=%s error=\"%s\"", what, sqlite3_errmsg(store->db));
        return TW_E_STORE;
    }
    store_shared_problem(store, fault);
    if (store->problem == fault) {
        store->problem_failures++;
        return TW_E_STORE;
    }
    store->problem = fault;
    store->problem_failures = 1;
    store->problem_since_ms = clock_mono_ms();
    log_error("event=store_failing op=%s problem=\"%s\" error=\"%s\" code=%d errno=%d"
              " next=\"counted, not logged, until a write lands\"",
              what, tw_error_message(fault), sqlite3_errmsg(store->db), code, sys_errno);
    return TW_E_STORE;
}

/* A change made through this connection is now as durable as it promises: a problem it had
 * is over, for it and for every process. */
static void
store_landed(struct store_sqlite *store)
{
    if (store->shared && __atomic_load_n(&store->shared->problem_at_ms, __ATOMIC_SEQ_CST) != 0)
        __atomic_store_n(&store->shared->problem_at_ms, 0, __ATOMIC_SEQ_CST);
    if (!store->problem)
        return;
    log_info("event=store_recovered problem=\"%s\" failures=%llu after_ms=%lld",
             tw_error_message(store->problem), store->problem_failures,
             (long long)(clock_mono_ms() - store->problem_since_ms));
    store->problem = 0;
}

/* After stmt completed: outside a transaction, a statement that changed rows committed them
 * (a group-commit connection has landed only once synced: store_commit_durable). */
static void
store_statement_landed(struct store_sqlite *store, sqlite3_stmt *stmt)
{
    if (!store->group_commit && !sqlite3_stmt_readonly(stmt) && sqlite3_get_autocommit(store->db) &&
        sqlite3_changes(store->db) > 0)
        store_landed(store);
}

/* rc of a handler's change or read, as its client should see it: the 503 of the first failure
 * (TW_E_STORE_BUSY, _FULL, _READONLY, _IO: try again later) rather than TW_E_STORE when the
 * store is only held, full, read-only or failing, not broken.  Clears the failure. */
static int
store_answer(struct store_sqlite *store, int rc)
{
    int failure = store->failure;
    store->failure = 0;
    return rc == TW_E_STORE && failure && tw_error_status(failure) == 503 ? failure : rc;
}

static void store_revive(struct store_sqlite *store);

/* The prepared statement for which, reset and unbound; NULL after logging on failure.  Outside
 * a transaction it may first open a read-only connection again (store_revive), which finalizes
 * every statement: a function takes each statement right before its use, never across another
 * store_statement() or store_begin() made outside a transaction. */
static sqlite3_stmt *
store_statement(struct store_sqlite *store, enum statement which)
{
    store_revive(store);
    sqlite3_stmt *stmt = store->statements[which];
    if (!stmt) {
        if (sqlite3_prepare_v3(store->db, store_statements[which], -1, SQLITE_PREPARE_PERSISTENT,
                               &stmt, NULL) != SQLITE_OK) {
            store_fail(store, "prepare");
            return NULL;
        }
        store->statements[which] = stmt;
    }
    return stmt;
}

static void
store_statement_done(sqlite3_stmt *stmt)
{
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

/* SQLite's own busy handler sleeps 1 ms, then longer, up to 100 ms, between tries: under
 * contention (the slots and the pool of a worker, the handlers' commits) a writer would sleep
 * long after the lock came free.  This one tries again after 20 us, doubling to 1 ms, until
 * busy_timeout_ms have passed. */
static int
store_busy(void *data, int count)
{
    struct store_sqlite *store = data;
    int64_t now = clock_mono_ms();
    if (count == 0)
        store->busy_since_ms = now;
    if (now - store->busy_since_ms >= store->busy_timeout_ms)
        return 0;
    long wait_us = count < 6 ? 20L << count : 1000;
    struct timespec pause = {.tv_sec = 0, .tv_nsec = wait_us * 1000};
    nanosleep(&pause, NULL);
    return 1;
}

static int
store_exec(struct store_sqlite *store, const char *sql)
{
    return sqlite3_exec(store->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : store_fail(store, sql);
}

/* ROLLBACK of the open transaction, unless SQLite ended it already (it does on a full disk and
 * on some I/O errors). */
static void
store_rollback(struct store_sqlite *store)
{
    if (!sqlite3_get_autocommit(store->db))
        store_exec(store, "ROLLBACK");
}

/* BEGIN IMMEDIATE (the writer lock now, not at the first write) on a connection that can write
 * if one can be had (store_revive). */
static int
store_begin(struct store_sqlite *store)
{
    store_revive(store);
    if (store_exec(store, "BEGIN IMMEDIATE") != 0)
        return TW_E_STORE;
    store->changes_at_begin = sqlite3_total_changes64(store->db);
    return 0;
}

/* COMMIT, or roll back what a failed one left.  A commit that changed rows ends a problem (on a
 * group-commit connection, only its sync does: store_commit_durable). */
static int
store_commit(struct store_sqlite *store)
{
    if (store_exec(store, "COMMIT") != 0) {
        store_rollback(store);
        return TW_E_STORE;
    }
    if (!store->group_commit && sqlite3_total_changes64(store->db) != store->changes_at_begin)
        store_landed(store);
    return 0;
}

/* The schema version (PRAGMA user_version), or -1 when it cannot be read. */
static int
store_schema_version(sqlite3 *db)
{
    sqlite3_stmt *stmt = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        version = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return version;
}

/* Create the schema, or upgrade an older one, in one write transaction (several processes may
 * open a new database at once: the first creates it, the others find it done).  A current
 * schema needs no write, so a full or read-only store opens too (its reads work; its writes
 * answer 503). */
static int
store_schema_open(struct store_sqlite *store, char *err, size_t errlen)
{
    char *message = NULL;
    if (sqlite3_exec(store->db, store_pragmas, NULL, NULL, &message) != SQLITE_OK) {
        snprintf(err, errlen, "%s", message ? message : sqlite3_errmsg(store->db));
        sqlite3_free(message);
        return TW_E_STORE;
    }
    if (store_schema_version(store->db) == STORE_SCHEMA_VERSION)
        return 0;
    if (sqlite3_exec(store->db, "BEGIN IMMEDIATE", NULL, NULL, &message) != SQLITE_OK) {
        snprintf(err, errlen, "%s", message ? message : sqlite3_errmsg(store->db));
        sqlite3_free(message);
        return TW_E_STORE;
    }
    sqlite3_stmt *stmt = NULL;
    int version = store_schema_version(store->db), has_tasks = 0;
    if (sqlite3_prepare_v2(store->db,
                           "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tasks'",
                           -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        has_tasks = 1;
    sqlite3_finalize(stmt);
    const char *script = NULL;
    if (version < 0) {
        snprintf(err, errlen, "cannot read the schema version: %s", sqlite3_errmsg(store->db));
    } else if (version > STORE_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "the database has schema version %d, newer than this program knows (%d): "
                 "run the newer taskwire, or restore a backup",
                 version, STORE_SCHEMA_VERSION);
        version = -1;
    } else if (version == 0) {
        script = has_tasks ? store_upgrade_1 : store_schema;
    } else if (version == 2) {
        script = store_upgrade_2;
    } else if (version == 3) {
        script = store_upgrade_3;
    } else if (version == 4) {
        script = store_upgrade_4;
    } else if (version == 5) {
        script = store_upgrade_5;
    } else if (version == 6) {
        script = store_upgrade_6;
    }
    if (version < 0 ||
        (script && sqlite3_exec(store->db, script, NULL, NULL, &message) != SQLITE_OK) ||
        sqlite3_exec(store->db, store_tables_added, NULL, NULL, &message) != SQLITE_OK ||
        sqlite3_exec(store->db, "COMMIT", NULL, NULL, &message) != SQLITE_OK) {
        if (version >= 0)
            snprintf(err, errlen, "cannot create the schema: %s",
                     message ? message : sqlite3_errmsg(store->db));
        sqlite3_free(message);
        sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
        return TW_E_STORE;
    }
    if (script && has_tasks)
        log_info("event=schema_upgraded from=%d to=%d", version ? version : 1,
                 STORE_SCHEMA_VERSION);
    return 0;
}

/* Open the database (creating it when create) into *db, with this connection's busy handler;
 * *db is set even on failure (sqlite3_close it). */
static int
store_open(struct store_sqlite *store, int create, sqlite3 **db)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(store->path, db, flags, NULL) != SQLITE_OK)
        return TW_E_STORE;
    sqlite3_busy_handler(*db, store_busy, store);
    return 0;
}

/* SQLite opens a database it may not write (a read-only file or file system, a file made
 * immutable) read-only, and such a connection stays so after the file is writable again.
 * Between transactions, at most every STORE_REVIVE_MS, try to open one that can write in its
 * place: a long-lived process then recovers without a restart. */
static void
store_revive(struct store_sqlite *store)
{
    if (!store->read_only || !sqlite3_get_autocommit(store->db))
        return;
    int64_t now = clock_mono_ms();
    if (now < store->revive_at_ms)
        return;
    store->revive_at_ms = now + STORE_REVIVE_MS;
    sqlite3 *db = NULL;
    if (store_open(store, 0, &db) != 0 || sqlite3_db_readonly(db, "main") != 0 ||
        sqlite3_exec(db,
                     store->synchronous_normal ? "PRAGMA synchronous = NORMAL"
                                               : "PRAGMA synchronous = FULL",
                     NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(store->statements[i]);
        store->statements[i] = NULL;
    }
    sqlite3_close(store->db);
    store->db = db;
    store->read_only = 0;
    store->changes_seen = sqlite3_total_changes64(db);
    log_info("event=store_reopened database=%s writable=1", store->path);
}

/* Extend fd (size bytes now) to want bytes with written zeros, never with a hole: a store
 * through a mapping into a hole of a full file system would kill the process with SIGBUS. */
static int
store_file_extend(int fd, off_t size, size_t want)
{
    static const char zeros[sizeof(struct store_shared)];
    while (size < (off_t)want) {
        size_t part = want - (size_t)size < sizeof zeros ? want - (size_t)size : sizeof zeros;
        ssize_t wrote = pwrite(fd, zeros, part, size);
        if (wrote < 0 && errno == EINTR)
            continue;
        if (wrote <= 0)
            return -1;
        size += wrote;
    }
    return 0;
}

/* Map the "-queue" file's struct store_shared (reset when it was written before this boot).
 * Without it (no file, no room to extend it) group commit stays off and a write problem is
 * known to this connection only. */
static void
store_shared_map(struct store_sqlite *store)
{
    char boot_id[STORE_BOOT_ID_SIZE] = {0};
    FILE *boot = fopen("/proc/sys/kernel/random/boot_id", "re");
    size_t got = boot ? fread(boot_id, 1, sizeof boot_id - 1, boot) : 0;
    if (boot)
        fclose(boot);
    if (got == 0 || store->queue_fd < 0 || store_sync_turn(store, F_WRLCK) != 0)
        return;
    struct stat st;
    void *map = MAP_FAILED;
    if (fstat(store->queue_fd, &st) == 0 &&
        store_file_extend(store->queue_fd, st.st_size, sizeof(struct store_shared)) == 0)
        map = mmap(NULL, sizeof(struct store_shared), PROT_READ | PROT_WRITE, MAP_SHARED,
                   store->queue_fd, 0);
    if (map != MAP_FAILED) {
        struct store_shared *shared = map;
        if (memcmp(shared->boot_id, boot_id, sizeof boot_id) != 0) {
            __atomic_store_n(&shared->committed, 0, __ATOMIC_SEQ_CST);
            __atomic_store_n(&shared->synced, 0, __ATOMIC_SEQ_CST);
            __atomic_store_n(&shared->problem_at_ms, 0, __ATOMIC_SEQ_CST);
            memcpy(shared->boot_id, boot_id, sizeof boot_id);
        }
        store->shared = shared;
    }
    store_sync_turn(store, F_UNLCK);
}

static void sqlite_free(struct store_sqlite *store);
static const struct store_ops store_sqlite_ops;

struct store *
store_sqlite_new(const char *path, int busy_timeout_ms, char *err, size_t errlen)
{
    struct store_sqlite *store = calloc(1, sizeof *store);
    if (!store || !(store->path = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        free(store);
        return NULL;
    }
    store->base.ops = &store_sqlite_ops;
    store->queue_fd = -1;
    store->busy_timeout_ms = busy_timeout_ms;
    if (store_open(store, 1, &store->db) != 0) {
        snprintf(err, errlen, "%s: %s", path,
                 store->db ? sqlite3_errmsg(store->db) : "cannot open");
        goto fail;
    }
    char queue_path[4096];
    if (snprintf(queue_path, sizeof queue_path, "%s-queue", path) < (int)sizeof queue_path)
        store->queue_fd = open(queue_path, O_RDWR | O_CREAT | O_CLOEXEC, store_file_mode(path));
    store_shared_map(store);
    char why[512];
    if (store_schema_open(store, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        goto fail;
    }
    store->read_only = sqlite3_db_readonly(store->db, "main") == 1;
    if (store->read_only) {
        store->revive_at_ms = clock_mono_ms() + STORE_REVIVE_MS;
        log_warn("event=store_read_only database=%s", path);
    }
    return &store->base;
fail:
    sqlite_free(store);
    return NULL;
}

static int
sqlite_transaction_begin(struct store *base)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    return store_begin(store);
}

static int
sqlite_transaction_commit(struct store *base)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    return store_commit(store);
}

static void
sqlite_transaction_rollback(struct store *base)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    store_rollback(store);
}

static int
sqlite_worker_durability(struct store *base)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    if (store_exec(store, "PRAGMA synchronous = NORMAL") != 0)
        return TW_E_STORE;
    store->synchronous_normal = 1;
    return 0;
}

static int
sqlite_problem(const struct store *base)
{
    const struct store_sqlite *store = (const struct store_sqlite *)base;
    return store->problem;
}

static void
sqlite_free(struct store_sqlite *store)
{
    if (!store)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(store->statements[i]);
    sqlite3_close(store->db);
    if (store->shared)
        munmap(store->shared, sizeof *store->shared);
    if (store->queue_fd >= 0)
        close(store->queue_fd);
    free(store->path);
    free(store);
}

static void
sqlite_destroy(struct store *base)
{
    sqlite_free((struct store_sqlite *)base);
}

/* Group commit.  With synchronous=FULL, SQLite syncs the WAL inside every commit, while it
 * holds the one writer lock: concurrent submissions queue for a disk flush each.  Here the
 * connection commits with synchronous=NORMAL (SQLite still syncs around checkpoints and WAL
 * reuse) and makes the commit durable itself, after the writer lock is released: it takes a
 * ticket, and one process at a time syncs the WAL for every ticket handed out so far.  A
 * commit that a sync already covered returns without one, so the processes' commits share
 * flushes.  A function returns only once its commit is on disk, as with FULL.
 *
 * Why a 202 is then on disk, from SQLite's documented WAL rules and POSIX:
 * 1. In WAL mode a COMMIT appends the transaction's frames, the last one marked as a commit
 *    frame, to the -wal file with write() before the writer lock is released (with NORMAL it
 *    skips only the fsync).  When COMMIT returns, the frames are in the file (the page cache).
 * 2. A process takes its ticket after its COMMIT returned, with a sequentially consistent
 *    atomic add on the shared counter; a syncer reads `committed` after taking the sync turn
 *    (an fcntl lock, a full barrier) and before it calls fsync.  So every ticket <= upto belongs
 *    to a commit whose write() completed before that fsync began.
 * 3. fsync (xSync: fdatasync) flushes every dirty page of the file, whichever descriptor or
 *    process wrote it: POSIX syncs the file, not the descriptor.  After it, every commit with a
 *    ticket <= upto is on disk, and `synced` is raised to upto only then.
 * 4. The -wal file is the same inode for every connection while any is open: SQLite resets it
 *    (writes from its start again) only after a checkpoint has copied its frames into the
 *    database and synced the database (SQLite syncs the WAL before, and the database after, a
 *    checkpoint at NORMAL and FULL alike), so a frame overwritten by a reset was durable in the
 *    database first; the file is deleted only when the last connection closes, after a full
 *    checkpoint.
 * 5. The counters count commits since the boot recorded beside them: a reboot (a power loss
 *    included) resets them, so a count from before it never vouches for a commit after it.
 * A crash of any process at any point leaves either a ticket not yet synced (its caller never
 * answered, so no 202 went out) or a synced one.  When the counters cannot be set up, the
 * connection stays at FULL.  tests/integration/test_durable.py kills every process right after
 * a burst of 202s and finds every task. */
static int
sqlite_group_commit(struct store *base)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    if (!store->shared || store_exec(store, "PRAGMA synchronous = NORMAL") != 0)
        return TW_E_STORE;
    store->group_commit = 1;
    store->synchronous_normal = 1;
    store->changes_seen = sqlite3_total_changes64(store->db);
    return 0;
}

/* Sync the WAL through SQLite's own file object, as its FULL commit would. */
static int
store_sync_wal(struct store_sqlite *store)
{
    sqlite3_file *wal = NULL;
    if (sqlite3_file_control(store->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) != SQLITE_OK ||
        !wal || !wal->pMethods || wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL) != SQLITE_OK)
        return store_fail(store, "sync");
    store->syncs++;
    return 0;
}

/* After a commit (outside SQLite's writer lock): 0 once it is on disk. */
static int
store_commit_durable(struct store_sqlite *store)
{
    sqlite3_int64 changes = sqlite3_total_changes64(store->db);
    if (!store->group_commit || changes == store->changes_seen)
        return 0; /* FULL synced it already, or nothing was written */
    store->changes_seen = changes;
    struct store_shared *shared = store->shared;
    uint64_t ticket = __atomic_add_fetch(&shared->committed, 1, __ATOMIC_SEQ_CST);
    int rc = 0;
    if (__atomic_load_n(&shared->synced, __ATOMIC_SEQ_CST) >= ticket)
        goto out;
    if (store_sync_turn(store, F_WRLCK) != 0) {
        rc = store_sync_wal(store);
        goto out;
    }
    if (__atomic_load_n(&shared->synced, __ATOMIC_SEQ_CST) < ticket) {
        /* Every ticket up to upto was taken after its commit was written: this sync covers
         * them all, whoever made them. */
        uint64_t upto = __atomic_load_n(&shared->committed, __ATOMIC_SEQ_CST);
        rc = store_sync_wal(store);
        if (rc == 0 && upto > __atomic_load_n(&shared->synced, __ATOMIC_SEQ_CST))
            __atomic_store_n(&shared->synced, upto, __ATOMIC_SEQ_CST);
    }
    store_sync_turn(store, F_UNLCK);
out:
    if (rc == 0)
        store_landed(store);
    return rc;
}

static uint64_t
sqlite_sync_count(const struct store *base)
{
    const struct store_sqlite *store = (const struct store_sqlite *)base;
    return store->syncs;
}

/* The current row of stmt as store.c's builders read it. */
static const char *
sqlite_row_text(const struct store_row *row, int column, int *length)
{
    sqlite3_stmt *stmt = row->source;
    const char *text = (const char *)sqlite3_column_text(stmt, column);
    *length = text ? sqlite3_column_bytes(stmt, column) : 0;
    return text;
}

static int64_t
sqlite_row_integer(const struct store_row *row, int column, int *null)
{
    sqlite3_stmt *stmt = row->source;
    *null = sqlite3_column_type(stmt, column) == SQLITE_NULL;
    return sqlite3_column_int64(stmt, column);
}

static json_t *
sqlite_build(sqlite3_stmt *stmt, json_t *(*build)(const struct store_row *))
{
    struct store_row row = {.text = sqlite_row_text, .integer = sqlite_row_integer, .source = stmt};
    /* cppcheck takes the result for a pointer into row: it is a new object owning none of it. */
    /* cppcheck-suppress returnDanglingLifetime */
    return build(&row);
}

/* Step stmt expecting at most one row: 0 with *task set, TW_E_NOT_FOUND without a row. */
static int
store_step_task(struct store_sqlite *store, sqlite3_stmt *stmt, const char *what, json_t **task)
{
    int rc = sqlite3_step(stmt);
    int result;
    if (rc == SQLITE_ROW) {
        store->last_seq = sqlite3_column_int64(stmt, STORE_TASK_SEQ_COLUMN);
        json_t *ignored = NULL;
        if (!task)
            task = &ignored; /* the caller wants the change made, not the row */
        else
            *task = sqlite_build(stmt, store_row_task);
        result = *task || task == &ignored ? 0 : TW_E_NOMEM;
        /* Finish the statement so an UPDATE ... RETURNING commits now. */
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
            ;
        if (rc != SQLITE_DONE && result == 0) {
            json_decref(*task);
            *task = NULL;
            result = store_fail(store, what);
        }
        if (rc == SQLITE_DONE)
            store_statement_landed(store, stmt);
    } else if (rc == SQLITE_DONE) {
        result = TW_E_NOT_FOUND;
    } else {
        result = store_fail(store, what);
    }
    store_statement_done(stmt);
    return result;
}

/* Run a statement that returns no rows (or one count); 0, or the count when counting. */
static int
store_run(struct store_sqlite *store, sqlite3_stmt *stmt, const char *what)
{
    int rc = sqlite3_step(stmt);
    int result = rc == SQLITE_ROW    ? sqlite3_column_int(stmt, 0)
                 : rc == SQLITE_DONE ? 0
                                     : store_fail(store, what);
    if (rc == SQLITE_DONE)
        store_statement_landed(store, stmt);
    store_statement_done(stmt);
    return result;
}

static void
bind_text(sqlite3_stmt *stmt, int index, const char *text)
{
    if (text)
        sqlite3_bind_text(stmt, index, text, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(stmt, index);
}

/* Every submission of a batch fails with rc; the tasks already made are dropped. */
static void
store_submissions_fail(struct store_submission *const *subs, size_t count, int rc)
{
    for (size_t i = 0; i < count; i++) {
        json_decref(subs[i]->task);
        subs[i]->task = NULL;
        subs[i]->rc = rc;
    }
}

static int store_task_read(struct store_sqlite *store, const char *id, const char *client_id,
                           json_t **task);

/* Answer a submission from its Idempotency-Key, if the key was used within its window: 1 when
 * answered (sub->task, sub->replayed set, or sub->rc the mismatch), 0 to go on and insert. */
static int
store_submission_replay(struct store_sqlite *store, struct store_submission *sub, int64_t now)
{
    sqlite3_stmt *stmt = store_statement(store, ST_KEY_GET);
    if (!stmt) {
        sub->rc = TW_E_STORE;
        return 1;
    }
    bind_text(stmt, 1, sub->client_id);
    bind_text(stmt, 2, sub->idempotency_key);
    sqlite3_bind_int64(stmt, 3, now - STORE_IDEMPOTENCY_MS);
    int rc = sqlite3_step(stmt);
    char task_id[TOKEN_ID_SIZE] = "";
    int same = 0;
    if (rc == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(stmt, 0);
        const char *hash = (const char *)sqlite3_column_text(stmt, 1);
        snprintf(task_id, sizeof task_id, "%s", id ? id : "");
        same = hash && sub->request_hash && strcmp(hash, sub->request_hash) == 0;
    } else if (rc != SQLITE_DONE) {
        store_statement_done(stmt);
        sub->rc = store_fail(store, "idempotency");
        return 1;
    }
    store_statement_done(stmt);
    if (rc == SQLITE_DONE)
        return 0;
    if (!same) {
        sub->rc = TW_E_IDEMPOTENCY_MISMATCH;
        return 1;
    }
    rc = store_task_read(store, task_id, sub->client_id, &sub->task);
    if (rc == TW_E_NOT_FOUND)
        return 0; /* its task was deleted since: the key makes a new one */
    sub->rc = rc;
    sub->replayed = rc == 0;
    return 1;
}

/* 0 while client_id has fewer than max queued tasks, TW_E_TOO_MANY_TASKS at max. */
static int
store_submission_admit(struct store_sqlite *store, const struct store_submission *sub)
{
    if (sub->max_queued <= 0)
        return 0;
    sqlite3_stmt *stmt = store_statement(store, ST_QUEUED_COUNT);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, sub->client_id);
    sqlite3_bind_int(stmt, 2, sub->max_queued);
    int queued = store_run(store, stmt, "queued_count");
    return queued < 0 ? queued : queued >= sub->max_queued ? TW_E_TOO_MANY_TASKS : 0;
}

/* Take a token of the client's submission bucket (sub->submit_rate): 0, or
 * TW_E_TOO_MANY_REQUESTS with sub->retry_after_ms when it holds none (nothing is written).
 * Inside the batch's transaction: SQLite's writer lock makes the read and the write one step
 * for every handler process. */
static int
store_submission_rate(struct store_sqlite *store, struct store_submission *sub, int64_t now)
{
    if (sub->submit_rate <= 0)
        return 0;
    sqlite3_stmt *stmt = store_statement(store, ST_RATE_GET);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, sub->client_id);
    struct bucket bucket;
    bucket_fill(&bucket, sub->submit_burst, now);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        bucket.units = sqlite3_column_int64(stmt, 0);
        bucket.at_ms = sqlite3_column_int64(stmt, 1);
    }
    store_statement_done(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_fail(store, "rate_get");
    if (!bucket_take(&bucket, sub->submit_rate, sub->submit_burst, now, &sub->retry_after_ms))
        return TW_E_TOO_MANY_REQUESTS;
    stmt = store_statement(store, ST_RATE_PUT);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, sub->client_id);
    sqlite3_bind_int64(stmt, 2, bucket.units);
    sqlite3_bind_int64(stmt, 3, bucket.at_ms);
    return store_run(store, stmt, "rate_put");
}

/* One submission inside the batch's transaction: its key, its admission, its INSERT. */
static int
store_submission_insert(struct store_sqlite *store, sqlite3_stmt *stmt,
                        struct store_submission *sub)
{
    char id[TOKEN_ID_SIZE];
    int64_t now = clock_now_ms();
    sub->replayed = 0;
    if (sub->idempotency_key && store_submission_replay(store, sub, now))
        return sub->rc;
    int rc = store_submission_admit(store, sub);
    if (rc == 0)
        rc = store_submission_rate(store, sub, now);
    if (rc != 0)
        return rc;
    if (token_ordered_id(now, id) != 0)
        return TW_E_INTERNAL;
    char *params_text = json_dumps(sub->params, JSON_COMPACT | JSON_SORT_KEYS);
    if (!params_text)
        return TW_E_NOMEM;
    bind_text(stmt, 1, id);
    bind_text(stmt, 2, sub->client_id);
    bind_text(stmt, 3, sub->type);
    bind_text(stmt, 4, sub->name ? sub->name : "");
    bind_text(stmt, 5, params_text);
    sqlite3_bind_int64(stmt, 6, now);
    sqlite3_bind_int64(stmt, 7, sub->run_at_ms > 0 ? sub->run_at_ms : now);
    sqlite3_bind_int(stmt, 8, sub->priority);
    sqlite3_bind_int(stmt, 9, sub->max_attempts > 0 ? sub->max_attempts : 1);
    bind_text(stmt, 10, sub->channels ? sub->channels : "[]");
    rc = store_step_task(store, stmt, "insert", &sub->task);
    free(params_text);
    if (rc != 0 || !sub->idempotency_key)
        return rc == TW_E_NOT_FOUND ? TW_E_STORE : rc;
    sqlite3_stmt *key = store_statement(store, ST_KEY_PUT);
    if (!key)
        return TW_E_STORE;
    bind_text(key, 1, sub->client_id);
    bind_text(key, 2, sub->idempotency_key);
    bind_text(key, 3, id);
    bind_text(key, 4, sub->request_hash ? sub->request_hash : "");
    sqlite3_bind_int64(key, 5, now);
    return store_run(store, key, "idempotency_put");
}

static int store_tasks_insert_batch(struct store_sqlite *store,
                                    struct store_submission *const *subs, size_t count);

static int
sqlite_tasks_insert(struct store *base, struct store_submission *const *subs, size_t count)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    store->failure = 0;
    int rc = store_tasks_insert_batch(store, subs, count);
    /* A submission the store failed answers what the store's first failure means (a full or
     * read-only store: 503, try again), whether it failed alone or with its batch. */
    int answer = store_answer(store, TW_E_STORE);
    for (size_t i = 0; i < count; i++)
        if (subs[i]->rc == TW_E_STORE)
            subs[i]->rc = answer;
    return rc == TW_E_STORE ? answer : rc;
}

static int
store_tasks_insert_batch(struct store_sqlite *store, struct store_submission *const *subs,
                         size_t count)
{
    for (size_t i = 0; i < count; i++) {
        subs[i]->task = NULL;
        subs[i]->rc = TW_E_STORE;
        subs[i]->replayed = 0;
    }
    store_queue_enter(store);
    sqlite3_stmt *stmt = NULL;
    if (store_begin(store) != 0 || !(stmt = store_statement(store, ST_INSERT))) {
        store_rollback(store);
        store_queue_leave(store);
        return TW_E_STORE;
    }
    int any = 0;
    for (size_t i = 0; i < count; i++) {
        subs[i]->rc = store_submission_insert(store, stmt, subs[i]);
        if (subs[i]->rc != 0) {
            json_decref(subs[i]->task);
            subs[i]->task = NULL;
        }
        any |= subs[i]->rc == 0 && !subs[i]->replayed;
        /* A failed INSERT undoes itself alone, unless SQLite had to end the transaction (a
         * full disk, an I/O error): then the rows before it are gone too. */
        if (subs[i]->rc != 0 && sqlite3_get_autocommit(store->db)) {
            store_submissions_fail(subs, count, TW_E_STORE);
            store_queue_leave(store);
            return TW_E_STORE;
        }
    }
    int rc = 0;
    if (any)
        rc = store_commit(store);
    else
        store_rollback(store);
    store_queue_leave(store);
    if (rc == 0 && any)
        rc = store_commit_durable(store);
    if (rc != 0)
        store_submissions_fail(subs, count, TW_E_STORE);
    return rc;
}

/* store_task_get inside another function's work (its failure is the caller's to answer). */
static int
store_task_read(struct store_sqlite *store, const char *id, const char *client_id, json_t **task)
{
    sqlite3_stmt *stmt = store_statement(store, ST_GET);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, id);
    bind_text(stmt, 2, client_id);
    return store_step_task(store, stmt, "get", task);
}

static int
sqlite_task_get(struct store *base, const char *id, const char *client_id, json_t **task)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    store->failure = 0;
    return store_answer(store, store_task_read(store, id, client_id, task));
}

/* Step stmt (bound) through every row, each made into an object by row, into a new array
 * *out; 0, TW_E_NOMEM (every row is still stepped: an UPDATE ... RETURNING completes) or the
 * failure of the statement.  The statement is reset either way. */
static int
store_collect(struct store_sqlite *store, sqlite3_stmt *stmt, const char *what,
              json_t *(*build)(const struct store_row *), json_t **out)
{
    json_t *list = json_array();
    int rc, result = list ? 0 : TW_E_NOMEM;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        if (result == 0 && json_array_append_new(list, sqlite_build(stmt, build)) != 0)
            result = TW_E_NOMEM;
    if (rc != SQLITE_DONE)
        result = store_fail(store, what);
    else
        store_statement_landed(store, stmt);
    store_statement_done(stmt);
    if (result == 0)
        *out = list;
    else
        json_decref(list);
    return result;
}

static int
sqlite_task_list(struct store *base, const char *client_id, const char *status, const char *before,
                 int limit, json_t **tasks)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    if (limit < 1 || limit > STORE_LIST_MAX)
        return TW_E_BAD_REQUEST;
    store->failure = 0;
    sqlite3_stmt *stmt = store_statement(store, ST_LIST);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, client_id);
    bind_text(stmt, 2, status);
    bind_text(stmt, 3, before);
    sqlite3_bind_int(stmt, 4, limit);
    if (before) {
        /* An id begins with its creation time: 48 bits of milliseconds in 12 hex digits. */
        char stamp[13];
        snprintf(stamp, sizeof stamp, "%s", before);
        sqlite3_bind_int64(stmt, 5, strtoll(stamp, NULL, 16));
    }
    return store_answer(store, store_collect(store, stmt, "list", store_row_task, tasks));
}

static int
store_task_cancel_change(struct store_sqlite *store, const char *id, const char *client_id,
                         int *now_final, json_t **task)
{
    if (store_begin(store) != 0)
        return TW_E_STORE;
    sqlite3_stmt *stmt = store_statement(store, ST_CANCEL_QUEUED);
    int rc = TW_E_STORE;
    if (!stmt)
        goto out;
    bind_text(stmt, 1, id);
    bind_text(stmt, 2, client_id);
    sqlite3_bind_int64(stmt, 3, clock_now_ms());
    rc = store_step_task(store, stmt, "cancel", task);
    *now_final = rc == 0;
    if (rc != TW_E_NOT_FOUND)
        goto out;
    if (!(stmt = store_statement(store, ST_CANCEL_RUNNING))) {
        rc = TW_E_STORE;
        goto out;
    }
    bind_text(stmt, 1, id);
    bind_text(stmt, 2, client_id);
    rc = store_step_task(store, stmt, "cancel", task);
    if (rc != TW_E_NOT_FOUND)
        goto out;
    json_t *existing = NULL;
    rc = store_task_read(store, id, client_id, &existing);
    if (rc == 0) {
        json_decref(existing);
        rc = TW_E_CONFLICT;
    }
out:
    if (rc == 0 || rc == TW_E_NOT_FOUND || rc == TW_E_CONFLICT) {
        if (store_commit(store) != 0) {
            if (rc == 0) {
                json_decref(*task);
                *task = NULL;
            }
            return TW_E_STORE;
        }
        if (store_commit_durable(store) != 0) {
            if (rc == 0) {
                json_decref(*task);
                *task = NULL;
            }
            return TW_E_STORE;
        }
    } else {
        store_rollback(store);
    }
    return rc;
}

static int
sqlite_task_cancel(struct store *base, const char *id, const char *client_id, int *now_final,
                   json_t **task)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    store->failure = 0;
    return store_answer(store, store_task_cancel_change(store, id, client_id, now_final, task));
}

/* One statement that changes a task in a committed write of its own, with the durability of
 * a submission (group commit or FULL). */
static int
store_step_durable(struct store_sqlite *store, sqlite3_stmt *stmt, const char *what, json_t **task)
{
    int rc = store_step_task(store, stmt, what, task);
    if (rc == 0 && store_commit_durable(store) != 0) {
        json_decref(*task);
        *task = NULL;
        rc = TW_E_STORE;
    }
    return rc;
}

/* After a refused change: TW_E_NOT_FOUND when the task is not the caller's (or gone), else
 * TW_E_CONFLICT (its status does not allow the change). */
static int
store_refusal(struct store_sqlite *store, const char *id, const char *client_id)
{
    json_t *existing = NULL;
    int rc = store_task_read(store, id, client_id, &existing);
    json_decref(existing);
    return rc == 0 ? TW_E_CONFLICT : rc;
}

static int
store_task_retry_change(struct store_sqlite *store, const char *id, const char *client_id,
                        json_t **task)
{
    sqlite3_stmt *stmt = store_statement(store, ST_RETRY);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, id);
    bind_text(stmt, 2, client_id);
    sqlite3_bind_int64(stmt, 3, clock_now_ms());
    int rc = store_step_durable(store, stmt, "retry", task);
    return rc == TW_E_NOT_FOUND ? store_refusal(store, id, client_id) : rc;
}

static int
sqlite_task_retry(struct store *base, const char *id, const char *client_id, json_t **task)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    store->failure = 0;
    return store_answer(store, store_task_retry_change(store, id, client_id, task));
}

static int
store_task_delete_change(struct store_sqlite *store, const char *id, const char *client_id)
{
    sqlite3_stmt *stmt = store_statement(store, ST_DELETE);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, id);
    bind_text(stmt, 2, client_id);
    int rc = sqlite3_step(stmt);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(stmt);
    int deleted = sqlite3_changes(store->db) > 0;
    store_statement_done(stmt);
    if (rc != SQLITE_DONE)
        return store_fail(store, "delete");
    if (!deleted)
        return store_refusal(store, id, client_id);
    return store_commit_durable(store);
}

static int
sqlite_task_delete(struct store *base, const char *id, const char *client_id)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    store->failure = 0;
    return store_answer(store, store_task_delete_change(store, id, client_id));
}

static int
sqlite_task_announce(struct store *base, const char *id, const char *worker_id, json_t **task)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    /* Most nudges find their task claimed (and announced) already: a read spares the write. */
    sqlite3_stmt *stmt = store_statement(store, ST_UNANNOUNCED);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, id);
    int found = sqlite3_step(stmt);
    store_statement_done(stmt);
    if (found != SQLITE_ROW)
        return found == SQLITE_DONE ? TW_E_NOT_FOUND : store_fail(store, "announce");
    stmt = store_statement(store, ST_ANNOUNCE);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, id);
    bind_text(stmt, 2, worker_id);
    sqlite3_bind_int64(stmt, 3, clock_now_ms());
    return store_step_task(store, stmt, "announce", task);
}

static int
sqlite_announce_many(struct store *base, const char *worker_id, const char *const *ids,
                     size_t count, json_t **tasks)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    json_t **built = tasks;
    int rc = 0;
    for (size_t at = 0; rc == 0 && at < count; at += STORE_ANNOUNCE_IDS) {
        size_t chunk = count - at < STORE_ANNOUNCE_IDS ? count - at : STORE_ANNOUNCE_IDS;
        sqlite3_stmt *stmt = store_statement(store, ST_ANNOUNCE_MANY);
        if (!stmt) {
            rc = TW_E_STORE;
            break;
        }
        for (size_t i = 0; i < chunk; i++)
            bind_text(stmt, (int)i + 1, ids[at + i]);
        bind_text(stmt, STORE_ANNOUNCE_IDS + 1, worker_id);
        sqlite3_bind_int64(stmt, STORE_ANNOUNCE_IDS + 2, clock_now_ms());
        /* At most chunk rows: one per id. */
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && built - tasks < (ptrdiff_t)(at + chunk))
            if ((*built = sqlite_build(stmt, store_row_task)))
                built++;
        if (rc == SQLITE_DONE)
            store_statement_landed(store, stmt);
        store_statement_done(stmt);
        rc = rc == SQLITE_DONE ? 0 : store_fail(store, "announce");
    }
    if (rc != 0) {
        while (built > tasks)
            json_decref(*--built);
        return rc;
    }
    return (int)(built - tasks);
}

static int
sqlite_task_claimable(struct store *base, const char *limits)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_CLAIMABLE);
    if (!stmt)
        return TW_E_STORE;
    sqlite3_bind_int64(stmt, 2, clock_now_ms());
    bind_text(stmt, 4, limits);
    int rc = sqlite3_step(stmt);
    store_statement_done(stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : store_fail(store, "claimable");
}

/* One claim statement: up to max rows (ST_CLAIM_MANY) or one (ST_CLAIM) into tasks[n...];
 * the number of rows, or TW_E_STORE (rows of this statement already built are kept in
 * tasks for the caller to release). */
static int
sqlite_claim_step(struct store_sqlite *store, enum statement which, const char *worker_id,
                  const char *host, int64_t now, int64_t lease_ms, const char *limits, size_t max,
                  json_t **tasks, int *announce, int64_t *waited_ms, size_t *n)
{
    sqlite3_stmt *stmt = store_statement(store, which);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, worker_id);
    sqlite3_bind_int64(stmt, 2, now);
    sqlite3_bind_int64(stmt, 3, now + lease_ms);
    bind_text(stmt, 4, limits);
    bind_text(stmt, 5, host);
    if (which == ST_CLAIM_MANY)
        sqlite3_bind_int64(stmt, 6, (sqlite3_int64)max);
    size_t before = *n;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && *n - before < max) {
        tasks[*n] = sqlite_build(stmt, store_row_task); /* then announced and the wait */
        if (!tasks[*n]) {
            rc = SQLITE_NOMEM;
            break;
        }
        announce[*n] = sqlite3_column_int(stmt, STORE_TASK_COLUMN_COUNT) == 1;
        waited_ms[*n] = sqlite3_column_int64(stmt, STORE_TASK_COLUMN_COUNT + 1);
        (*n)++;
    }
    store_statement_done(stmt);
    if (rc != SQLITE_DONE)
        return store_fail(store, "claim");
    return (int)(*n - before);
}

static int
sqlite_tasks_claim(struct store *base, const char *worker_id, const char *host, int64_t lease_ms,
                   const char *limits, size_t max, json_t **tasks, int *announce,
                   int64_t *waited_ms)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    if (max == 0 || max > STORE_CLAIM_MAX)
        return TW_E_INTERNAL;
    int own = sqlite3_get_autocommit(store->db); /* else the caller's transaction holds it */
    if (own && store_begin(store) != 0)
        return TW_E_STORE;
    int64_t now = clock_now_ms();
    size_t n = 0;
    int got = 0;
    if (!limits)
        /* No type limits: one statement for the whole batch. */
        got = sqlite_claim_step(store, ST_CLAIM_MANY, worker_id, host, now, lease_ms, limits, max,
                                tasks, announce, waited_ms, &n);
    else
        /* One row per statement: each claim counts the running tasks the ones before it made,
         * so a type's limit holds within the batch too. */
        do
            got = sqlite_claim_step(store, ST_CLAIM, worker_id, host, now, lease_ms, limits, 1,
                                    tasks, announce, waited_ms, &n);
        while (got == 1 && n < max);
    if (got < 0 || (own && store_commit(store) != 0)) {
        if (own)
            store_rollback(store);
        for (size_t i = 0; i < n; i++) {
            json_decref(tasks[i]);
            tasks[i] = NULL;
        }
        return TW_E_STORE;
    }
    return (int)n;
}

static int
sqlite_leases_renew(struct store *base, const char *worker_id, int64_t lease_ms, json_t **held)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_RENEW);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, worker_id);
    sqlite3_bind_int64(stmt, 2, clock_now_ms() + lease_ms);
    return store_collect(store, stmt, "renew", store_row_held, held);
}

static int
sqlite_leases_expired(struct store *base, json_t **expired)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_EXPIRED);
    if (!stmt)
        return TW_E_STORE;
    sqlite3_bind_int64(stmt, 1, clock_now_ms());
    return store_collect(store, stmt, "expired", store_row_expired, expired);
}

/* A fenced change of a running attempt: no row means the attempt is not current any more. */
static int
store_step_fenced(struct store_sqlite *store, sqlite3_stmt *stmt, const char *what, json_t **task)
{
    int rc = store_step_task(store, stmt, what, task);
    return rc == TW_E_NOT_FOUND ? TW_E_FENCED : rc;
}

/* Bind text cut to max bytes (head or tail kept), or NULL. */
static void
bind_cut(sqlite3_stmt *stmt, int index, const char *text, size_t max, int keep_tail)
{
    if (!text) {
        sqlite3_bind_null(stmt, index);
        return;
    }
    int length;
    const char *part = store_cut(text, max, keep_tail, &length);
    sqlite3_bind_text(stmt, index, part, length, SQLITE_TRANSIENT);
}

static int
sqlite_task_requeue(struct store *base, const char *id, int attempt, const char *message,
                    json_t **task)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_REQUEUE);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, id);
    sqlite3_bind_int(stmt, 2, attempt);
    bind_cut(stmt, 3, message, STORE_MESSAGE_MAX, 0);
    return store_step_fenced(store, stmt, "requeue", task);
}

static int
sqlite_task_progress(struct store *base, const char *id, int attempt, int progress,
                     const char *message, json_t **task)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_PROGRESS);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, id);
    sqlite3_bind_int(stmt, 2, attempt);
    sqlite3_bind_int(stmt, 3, progress < 0 ? 0 : progress > 100 ? 100 : progress);
    bind_cut(stmt, 4, message ? message : "", STORE_MESSAGE_MAX, 0);
    return store_step_fenced(store, stmt, "progress", task);
}

/* ST_FINISH for attempt (the finish_attempt op, store_backend.h). */
static int
sqlite_finish_attempt(struct store *base, const char *id, int attempt, const char *status,
                      const char *result_text, const char *error, const char *message,
                      const char *error_entry, int64_t at_ms, int64_t expired_before, json_t **task)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    int rc = TW_E_STORE;
    sqlite3_stmt *stmt = store_statement(store, ST_FINISH);
    if (stmt) {
        bind_text(stmt, 1, id);
        sqlite3_bind_int(stmt, 2, attempt);
        bind_text(stmt, 3, status);
        bind_text(stmt, 4, result_text);
        bind_cut(stmt, 5, error, STORE_ERROR_MAX, 1);
        bind_cut(stmt, 6, message, STORE_MESSAGE_MAX, 0);
        sqlite3_bind_int64(stmt, 7, at_ms);
        bind_text(stmt, 8, error_entry);
        if (expired_before)
            sqlite3_bind_int64(stmt, 9, expired_before);
        rc = store_step_fenced(store, stmt, "finish", task);
    }
    return rc;
}

/* ST_FINISH_MANY for up to STORE_FINISH_ROWS items; each item's rc and seq. */
static int
sqlite_finish_rows(struct store_sqlite *store, struct store_finish *items,
                   const char *const *result_texts, size_t count)
{
    sqlite3_stmt *stmt = store_statement(store, ST_FINISH_MANY);
    if (!stmt)
        return TW_E_STORE;
    for (size_t i = 0; i < count; i++) {
        int at = (int)i * FINISH_ROW_PARAMS;
        bind_text(stmt, at + 1, items[i].id);
        sqlite3_bind_int(stmt, at + 2, items[i].attempt);
        bind_text(stmt, at + 3, items[i].status);
        bind_text(stmt, at + 4, result_texts[i]);
        bind_cut(stmt, at + 5, items[i].error, STORE_ERROR_MAX, 1);
        bind_cut(stmt, at + 6, items[i].message, STORE_MESSAGE_MAX, 0);
        bind_text(stmt, at + 7, items[i].error_entry);
        sqlite3_bind_int64(stmt, at + 8, items[i].at_ms);
        items[i].rc = TW_E_FENCED; /* until its row comes back */
        items[i].seq = 0;
    }
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(stmt, 0);
        for (size_t i = 0; id && i < count; i++)
            if (strcmp(items[i].id, id) == 0) {
                items[i].rc = 0;
                items[i].seq = sqlite3_column_int64(stmt, 1);
                store->last_seq = items[i].seq;
            }
    }
    if (rc == SQLITE_DONE)
        store_statement_landed(store, stmt);
    store_statement_done(stmt);
    return rc == SQLITE_DONE ? 0 : store_fail(store, "finish");
}

static int
sqlite_finish_many(struct store *base, struct store_finish *items, const char *const *result_texts,
                   size_t count)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    int rc = 0;
    for (size_t at = 0; rc == 0 && at < count; at += STORE_FINISH_ROWS) {
        size_t rows = count - at < STORE_FINISH_ROWS ? count - at : STORE_FINISH_ROWS;
        rc = sqlite_finish_rows(store, items + at, result_texts + at, rows);
    }
    return rc;
}

static int64_t
sqlite_last_seq(const struct store *base)
{
    const struct store_sqlite *store = (const struct store_sqlite *)base;
    return store->last_seq;
}

/* ST_END_RETRY for attempt (the retry_attempt op, store_backend.h). */
static int
sqlite_retry_attempt(struct store *base, const char *id, int attempt, const char *error,
                     const char *error_entry, int64_t run_at_ms, int64_t expired_before,
                     json_t **task)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_END_RETRY);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, id);
    sqlite3_bind_int(stmt, 2, attempt);
    sqlite3_bind_int64(stmt, 3, run_at_ms);
    bind_text(stmt, 4, "retrying");
    bind_cut(stmt, 5, error, STORE_ERROR_MAX, 1);
    bind_text(stmt, 6, error_entry ? error_entry : "{}");
    if (expired_before)
        sqlite3_bind_int64(stmt, 7, expired_before);
    return store_step_fenced(store, stmt, "retry_later", task);
}

static int
sqlite_task_check(struct store *base, const char *id, int attempt)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_CHECK);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, id);
    sqlite3_bind_int(stmt, 2, attempt);
    int rc = sqlite3_step(stmt);
    int result =
        rc == SQLITE_ROW
            ? (sqlite3_column_int(stmt, 1) == 0 ? TW_E_FENCED : sqlite3_column_int(stmt, 0) != 0)
        : rc == SQLITE_DONE ? TW_E_FENCED
                            : store_fail(store, "check");
    store_statement_done(stmt);
    return result;
}

static int
sqlite_worker_heartbeat(struct store *base, const char *worker_id, int concurrency)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_HEARTBEAT);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, worker_id);
    sqlite3_bind_int(stmt, 2, (int)getpid());
    sqlite3_bind_int(stmt, 3, concurrency);
    sqlite3_bind_int64(stmt, 4, clock_now_ms());
    char host[STORE_HOST_MAX + 1] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        host[0] = '\0';
    bind_text(stmt, 5, host);
    return store_run(store, stmt, "heartbeat");
}

static int
sqlite_worker_remove(struct store *base, const char *worker_id)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_WORKER_REMOVE);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, worker_id);
    return store_run(store, stmt, "worker_remove");
}

static int
sqlite_workers_alive(struct store *base, int64_t stale_after_ms)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_WORKERS_ALIVE);
    if (!stmt)
        return TW_E_STORE;
    sqlite3_bind_int64(stmt, 1, clock_now_ms() - stale_after_ms);
    return store_run(store, stmt, "workers_alive");
}

static int
sqlite_queue_depths(struct store *base, json_t **depths)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_QUEUE_DEPTHS);
    if (!stmt)
        return TW_E_STORE;
    return store_collect(store, stmt, "queue_depths", store_row_depth, depths);
}

static int
sqlite_tasks_prune(struct store *base, int64_t keep_ms)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    int64_t now = clock_now_ms();
    if (store_begin(store) != 0)
        return TW_E_STORE;
    int deleted = 0, rc = 0;
    sqlite3_stmt *stmt = store_statement(store, ST_PRUNE);
    if (stmt && keep_ms > 0) {
        sqlite3_bind_int64(stmt, 1, now - keep_ms);
        sqlite3_bind_int(stmt, 2, STORE_PRUNE_BATCH);
        rc = store_run(store, stmt, "prune");
        deleted = sqlite3_changes(store->db);
    } else if (!stmt) {
        rc = TW_E_STORE;
    }
    if (rc == 0 && (stmt = store_statement(store, ST_PRUNE_KEYS)) != NULL) {
        sqlite3_bind_int64(stmt, 1, now - STORE_IDEMPOTENCY_MS);
        sqlite3_bind_int(stmt, 2, STORE_PRUNE_BATCH);
        rc = store_run(store, stmt, "prune_keys");
    }
    if (rc == 0 && (stmt = store_statement(store, ST_PRUNE_RATE)) != NULL) {
        sqlite3_bind_int64(stmt, 1, now - STORE_RATE_IDLE_MS);
        sqlite3_bind_int(stmt, 2, STORE_PRUNE_BATCH);
        rc = store_run(store, stmt, "prune_rate");
    }
    if (rc == 0 && (stmt = store_statement(store, ST_PRUNE_MINUTES)) != NULL) {
        sqlite3_bind_int64(stmt, 1, now / 60000 - STORE_MINUTES_KEEP);
        rc = store_run(store, stmt, "prune_minutes");
    }
    if (rc == 0 && (stmt = store_statement(store, ST_WORKERS_FORGET)) != NULL) {
        sqlite3_bind_int64(stmt, 1, now - STORE_WORKER_FORGET_MS);
        rc = store_run(store, stmt, "workers_forget");
    }
    if (rc != 0) {
        store_rollback(store);
        return TW_E_STORE;
    }
    return store_commit(store) == 0 ? deleted : TW_E_STORE;
}

/* 0 unless the latest write of any process failed for a problem (a full, read-only or failing
 * disk) that no write has ended since: then that problem, while it is younger than
 * STORE_PROBLEM_RECHECK_MS; an older one (no process writes any more) is tried again with a
 * write of the probe row, which ends it if it lands. */
static int
store_check_problem(struct store_sqlite *store)
{
    int problem = store->problem;
    int64_t at = 0, now = clock_now_ms();
    if (store->shared && (at = __atomic_load_n(&store->shared->problem_at_ms, __ATOMIC_SEQ_CST)))
        problem = __atomic_load_n(&store->shared->problem, __ATOMIC_SEQ_CST);
    else if (store->shared)
        problem = 0;
    if (!problem)
        return 0;
    if (at && now - at < STORE_PROBLEM_RECHECK_MS)
        return problem;
    char sql[96];
    snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO probe (id, at) VALUES (1, %lld)",
             (long long)now);
    if (store_begin(store) != 0)
        return TW_E_STORE;
    if (store_exec(store, sql) != 0) {
        store_rollback(store);
        return TW_E_STORE;
    }
    if (store_commit(store) != 0)
        return TW_E_STORE;
    return store_commit_durable(store);
}

static int
sqlite_check_writable(struct store *base)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    store->failure = 0;
    store_revive(store);
    int rc = 0;
    if (sqlite3_exec(store->db,
                     "BEGIN IMMEDIATE; INSERT OR REPLACE INTO probe (id, at) VALUES (1, 0);", NULL,
                     NULL, NULL) != SQLITE_OK)
        rc = store_fail(store, "check_writable");
    store_rollback(store);
    if (rc == 0)
        rc = store_check_problem(store);
    return store_answer(store, rc);
}

/* ---- the operator's view ---- */

static int
sqlite_admin_task_get(struct store *base, const char *id, json_t **task)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    store->failure = 0;
    sqlite3_stmt *stmt = store_statement(store, ST_ADMIN_GET);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, id);
    json_t *list = NULL;
    int rc = store_collect(store, stmt, "admin_get", store_row_admin_task, &list);
    if (rc == 0 && json_array_size(list) == 0)
        rc = TW_E_NOT_FOUND;
    if (rc == 0)
        *task = json_incref(json_array_get(list, 0));
    json_decref(list);
    return store_answer(store, rc);
}

static int
sqlite_admin_task_list(struct store *base, const struct store_admin_filter *filter, json_t **tasks,
                       int64_t *next)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    if (filter->limit < 1 || filter->limit > STORE_ADMIN_LIST_MAX)
        return TW_E_BAD_REQUEST;
    store->failure = 0;
    sqlite3_stmt *stmt = store_statement(store, ST_ADMIN_LIST);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, filter->status);
    bind_text(stmt, 2, filter->type);
    bind_text(stmt, 3, filter->client_id);
    if (filter->before_seq > 0)
        sqlite3_bind_int64(stmt, 4, filter->before_seq);
    bind_text(stmt, 5, filter->q);
    sqlite3_bind_int(stmt, 6, filter->limit);
    int rc = store_collect(store, stmt, "admin_list", store_row_admin_task, tasks);
    *next = rc == 0 ? store_admin_next(*tasks, filter->limit) : 0;
    return store_answer(store, rc);
}

static int
sqlite_admin_status(struct store *base, json_t **workers, json_t **queues)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    store->failure = 0;
    json_t *running = NULL;
    *workers = *queues = NULL;
    sqlite3_stmt *stmt = store_statement(store, ST_ADMIN_WORKERS);
    int rc =
        stmt ? store_collect(store, stmt, "admin_workers", store_row_worker, workers) : TW_E_STORE;
    if (rc == 0)
        rc = (stmt = store_statement(store, ST_ADMIN_RUNNING))
                 ? store_collect(store, stmt, "admin_running", store_row_running, &running)
                 : TW_E_STORE;
    if (rc == 0)
        rc = (stmt = store_statement(store, ST_ADMIN_QUEUES))
                 ? store_collect(store, stmt, "admin_queues", store_row_queue, queues)
                 : TW_E_STORE;
    store_workers_running(*workers, running);
    json_decref(running);
    if (rc != 0) {
        json_decref(*workers);
        json_decref(*queues);
        *workers = *queues = NULL;
    }
    return store_answer(store, rc);
}

static int
sqlite_admin_stats(struct store *base, int minutes, json_t **rows, json_t **durations)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    if (minutes < 1 || minutes > STORE_STATS_MINUTES_MAX)
        return TW_E_BAD_REQUEST;
    store->failure = 0;
    *rows = *durations = NULL;
    int64_t last = clock_now_ms() / 60000, first = last - minutes + 1;
    json_t *counts = NULL;
    /* One read transaction: the counts and the queued count agree. */
    int rc = store_exec(store, "BEGIN") == 0 ? 0 : TW_E_STORE;
    sqlite3_stmt *stmt = rc == 0 ? store_statement(store, ST_ADMIN_MINUTES) : NULL;
    if (rc == 0 && stmt) {
        sqlite3_bind_int64(stmt, 1, first);
        rc = store_collect(store, stmt, "admin_minutes", store_row_minute, &counts);
    } else if (rc == 0) {
        rc = TW_E_STORE;
    }
    int queued = rc;
    if (rc == 0)
        queued = (stmt = store_statement(store, ST_ADMIN_QUEUED_NOW))
                     ? store_run(store, stmt, "admin_queued")
                     : TW_E_STORE;
    if (queued < 0)
        rc = queued;
    if (rc == 0 && (stmt = store_statement(store, ST_ADMIN_DURATIONS)) != NULL) {
        sqlite3_bind_int64(stmt, 1, first * 60000);
        rc = store_collect(store, stmt, "admin_durations", store_row_duration, durations);
    } else if (rc == 0) {
        rc = TW_E_STORE;
    }
    store_exec(store, "COMMIT");
    if (rc == 0 && !(*rows = store_minutes_fill(counts, first, last, queued)))
        rc = TW_E_NOMEM;
    json_decref(counts);
    if (rc != 0) {
        json_decref(*durations);
        *durations = NULL;
    }
    return store_answer(store, rc);
}

/* ---- channel history ---- */

/* The messages items[0..count) of one channel: its stream takes count more (made, with a new
 * epoch, when there is none), each is stored with its offset, and the channel is trimmed. */
static int
sqlite_history_channel(struct store_sqlite *store, struct store_history_item *const *items,
                       size_t count, int64_t now)
{
    const struct store_history_item *first = items[0];
    char epoch[STORE_EPOCH_SIZE];
    if (store_history_epoch(epoch) != 0)
        return TW_E_INTERNAL;
    sqlite3_stmt *stmt = store_statement(store, ST_STREAM_ADVANCE);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, first->channel);
    bind_text(stmt, 2, epoch);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)count);
    sqlite3_bind_int64(stmt, 4, now);
    sqlite3_bind_int64(stmt, 5, now + first->ttl_ms);
    int rc = sqlite3_step(stmt);
    int64_t last = 0;
    if (rc == SQLITE_ROW) {
        const char *kept = (const char *)sqlite3_column_text(stmt, 0);
        snprintf(epoch, sizeof epoch, "%s", kept ? kept : "");
        last = sqlite3_column_int64(stmt, 1);
        rc = sqlite3_step(stmt);
    }
    int failed = rc != SQLITE_DONE ? store_fail(store, "history_stream") : 0;
    store_statement_done(stmt);
    if (failed || last < (int64_t)count)
        return TW_E_STORE;
    for (size_t i = 0; i < count; i++) {
        items[i]->offset = last - (int64_t)count + 1 + (int64_t)i;
        memcpy(items[i]->epoch, epoch, sizeof epoch);
        if (!(stmt = store_statement(store, ST_HISTORY_INSERT)))
            return TW_E_STORE;
        bind_text(stmt, 1, items[i]->channel);
        sqlite3_bind_int64(stmt, 2, items[i]->offset);
        sqlite3_bind_int64(stmt, 3, now);
        sqlite3_bind_int64(stmt, 4, now + items[i]->ttl_ms);
        bind_text(stmt, 5, items[i]->payload);
        if (store_run(store, stmt, "history_insert") != 0)
            return TW_E_STORE;
    }
    if (!(stmt = store_statement(store, ST_HISTORY_TRIM)))
        return TW_E_STORE;
    bind_text(stmt, 1, first->channel);
    sqlite3_bind_int64(stmt, 2, last - first->keep);
    sqlite3_bind_int64(stmt, 3, now);
    return store_run(store, stmt, "history_trim");
}

/* items come sorted by channel (store.c): each run of one channel is taken at once. */
static int
sqlite_history_append(struct store *base, struct store_history_item *const *items, size_t count)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    int own = sqlite3_get_autocommit(store->db); /* else the caller's transaction holds it */
    if (own && store_begin(store) != 0)
        return TW_E_STORE;
    int64_t now = clock_now_ms();
    int rc = 0;
    for (size_t i = 0, run; rc == 0 && i < count; i += run) {
        run = store_history_run(items, count, i);
        rc = sqlite_history_channel(store, items + i, run, now);
    }
    if (own && rc == 0 && store_commit(store) != 0)
        rc = TW_E_STORE;
    else if (own && rc != 0)
        store_rollback(store);
    return rc;
}

static int
sqlite_history_read(struct store *base, const char *channel, int64_t since, int limit,
                    struct store_history_page *page)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    store->failure = 0;
    sqlite3_stmt *stmt = store_statement(store, ST_HISTORY_READ);
    json_t *messages = json_array();
    if (!stmt || !messages) {
        json_decref(messages);
        return stmt ? TW_E_NOMEM : store_answer(store, TW_E_STORE);
    }
    bind_text(stmt, 1, channel);
    sqlite3_bind_int64(stmt, 2, since);
    sqlite3_bind_int64(stmt, 3, clock_now_ms());
    sqlite3_bind_int(stmt, 4, limit);
    sqlite3_bind_int64(stmt, 5, STORE_HISTORY_READ_BYTES);
    int rc, result = 0, rows = 0;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (rows++ == 0) {
            const char *epoch = (const char *)sqlite3_column_text(stmt, 2);
            snprintf(page->epoch, sizeof page->epoch, "%s", epoch ? epoch : "");
            page->last_offset = sqlite3_column_int64(stmt, 3);
            page->oldest_offset = sqlite3_column_type(stmt, 4) == SQLITE_NULL
                                      ? page->last_offset + 1
                                      : sqlite3_column_int64(stmt, 4);
        }
        if (result == 0 && sqlite3_column_type(stmt, 0) != SQLITE_NULL &&
            json_array_append_new(messages, sqlite_build(stmt, store_row_history)) != 0)
            result = TW_E_NOMEM;
    }
    if (rc != SQLITE_DONE)
        result = store_fail(store, "history_read");
    store_statement_done(stmt);
    if (result == 0) {
        page->messages = messages;
        return 0;
    }
    json_decref(messages);
    *page = (struct store_history_page){0};
    return store_answer(store, result);
}

static int
sqlite_history_prune(struct store *base)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    int64_t now = clock_now_ms();
    if (store_begin(store) != 0)
        return TW_E_STORE;
    int deleted = 0, rc = TW_E_STORE;
    sqlite3_stmt *stmt = store_statement(store, ST_HISTORY_PRUNE);
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, now);
        sqlite3_bind_int(stmt, 2, STORE_PRUNE_BATCH);
        rc = store_run(store, stmt, "history_prune");
        deleted = sqlite3_changes(store->db);
    }
    if (rc == 0) {
        rc = TW_E_STORE;
        if ((stmt = store_statement(store, ST_STREAMS_PRUNE)) != NULL) {
            sqlite3_bind_int64(stmt, 1, now);
            sqlite3_bind_int(stmt, 2, STORE_PRUNE_BATCH);
            rc = store_run(store, stmt, "streams_prune");
        }
    }
    if (rc != 0) {
        store_rollback(store);
        return TW_E_STORE;
    }
    return store_commit(store) == 0 ? deleted : TW_E_STORE;
}

/* ---- presence (store_backend.h's steps) ---- */

/* Step stmt, which returns one integer row (or none: *value untouched); 0 or the failure. */
static int
store_step_integer(struct store_sqlite *store, sqlite3_stmt *stmt, const char *what, int64_t *value,
                   int *got)
{
    int rc = sqlite3_step(stmt), result = 0;
    if (got)
        *got = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW) {
        *value = sqlite3_column_int64(stmt, 0);
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
            ;
    }
    if (rc != SQLITE_DONE)
        result = store_fail(store, what);
    store_statement_done(stmt);
    return result;
}

static int
sqlite_presence_lock(struct store *base)
{
    (void)base; /* the transaction's BEGIN IMMEDIATE holds the writer lock already */
    return 0;
}

static int
sqlite_presence_version(struct store *base, const char *channel, int64_t now_ms, int64_t *version)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_PRESENCE_VERSION);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, channel);
    sqlite3_bind_int64(stmt, 2, now_ms);
    return store_step_integer(store, stmt, "presence_version", version, NULL);
}

static int
sqlite_presence_put(struct store *base, const char *relay_id, const struct presence_entry *entry,
                    int64_t seq, int64_t expires_at, int64_t *before, int *written)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_PRESENCE_OWN);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, entry->channel);
    bind_text(stmt, 2, entry->client_id);
    bind_text(stmt, 3, relay_id);
    *before = -1;
    int rc = store_step_integer(store, stmt, "presence_own", before, NULL);
    if (rc != 0 || !(stmt = store_statement(store, ST_PRESENCE_PUT)))
        return rc != 0 ? rc : TW_E_STORE;
    bind_text(stmt, 1, entry->channel);
    bind_text(stmt, 2, entry->client_id);
    bind_text(stmt, 3, relay_id);
    sqlite3_bind_int(stmt, 4, entry->conns);
    sqlite3_bind_int64(stmt, 5, seq);
    sqlite3_bind_int64(stmt, 6, expires_at);
    int64_t conns = 0;
    return store_step_integer(store, stmt, "presence_put", &conns, written);
}

static int
sqlite_presence_total(struct store *base, const char *channel, const char *client_id,
                      int64_t *total)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_PRESENCE_TOTAL);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, channel);
    bind_text(stmt, 2, client_id);
    *total = 0;
    return store_step_integer(store, stmt, "presence_total", total, NULL);
}

static int
sqlite_presence_renew(struct store *base, const char *relay_id, int64_t since, int64_t expires_at)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_PRESENCE_RENEW);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, relay_id);
    sqlite3_bind_int64(stmt, 2, expires_at);
    sqlite3_bind_int64(stmt, 3, since);
    int rc = store_run(store, stmt, "presence_renew");
    return rc < 0 ? rc : 0;
}

static int
sqlite_presence_channels(struct store *base, const char *relay_id, int64_t now_ms, int limit,
                         json_t **channels)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, relay_id ? ST_PRESENCE_RELAY_CHANNELS
                                                         : ST_PRESENCE_EXPIRED_CHANNELS);
    if (!stmt)
        return TW_E_STORE;
    if (relay_id)
        bind_text(stmt, 1, relay_id);
    else
        sqlite3_bind_int64(stmt, 1, now_ms);
    sqlite3_bind_int(stmt, 2, limit);
    return store_collect(store, stmt, "presence_channels", store_row_presence_channel, channels);
}

static int
sqlite_presence_drop(struct store *base, const char *channel, const char *relay_id, int64_t now_ms,
                     json_t **dropped)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt =
        store_statement(store, relay_id ? ST_PRESENCE_DROP_RELAY : ST_PRESENCE_DROP_EXPIRED);
    if (!stmt)
        return TW_E_STORE;
    bind_text(stmt, 1, channel);
    if (relay_id)
        bind_text(stmt, 2, relay_id);
    else
        sqlite3_bind_int64(stmt, 2, now_ms);
    return store_collect(store, stmt, "presence_drop", store_row_presence_dropped, dropped);
}

static int
sqlite_presence_list(struct store *base, const char *channel, json_t **clients, int64_t *version)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    store->failure = 0;
    sqlite3_stmt *stmt = store_statement(store, ST_PRESENCE_LIST);
    if (!stmt)
        return store_answer(store, TW_E_STORE);
    bind_text(stmt, 1, channel);
    sqlite3_bind_int(stmt, 2, STORE_PRESENCE_LIST_MAX);
    json_t *list = json_array();
    int rc, result = list ? 0 : TW_E_NOMEM;
    *version = 0;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        *version = sqlite3_column_int64(stmt, 0);
        const char *client = (const char *)sqlite3_column_text(stmt, 1);
        if (result == 0 && client &&
            json_array_append_new(list, json_pack("{s:s, s:I}", "client_id", client, "connections",
                                                  (json_int_t)sqlite3_column_int64(stmt, 2))) != 0)
            result = TW_E_NOMEM;
    }
    if (rc != SQLITE_DONE)
        result = store_fail(store, "presence_list");
    store_statement_done(stmt);
    if (result == 0)
        *clients = list;
    else
        json_decref(list);
    return store_answer(store, result);
}

static int
sqlite_presence_count(struct store *base, int64_t *rows)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_PRESENCE_COUNT);
    if (!stmt)
        return TW_E_STORE;
    *rows = 0;
    return store_step_integer(store, stmt, "presence_count", rows, NULL);
}

static int
sqlite_presence_forget(struct store *base, int64_t before_ms)
{
    struct store_sqlite *store = (struct store_sqlite *)base;
    sqlite3_stmt *stmt = store_statement(store, ST_PRESENCE_FORGET);
    if (!stmt)
        return TW_E_STORE;
    sqlite3_bind_int64(stmt, 1, before_ms);
    int rc = store_run(store, stmt, "presence_forget");
    return rc < 0 ? rc : 0;
}

static const struct store_ops store_sqlite_ops = {
    .destroy = sqlite_destroy,
    .group_commit = sqlite_group_commit,
    .sync_count = sqlite_sync_count,
    .tasks_insert = sqlite_tasks_insert,
    .task_get = sqlite_task_get,
    .task_list = sqlite_task_list,
    .task_cancel = sqlite_task_cancel,
    .task_retry = sqlite_task_retry,
    .task_delete = sqlite_task_delete,
    .task_announce = sqlite_task_announce,
    .announce_many = sqlite_announce_many,
    .task_claimable = sqlite_task_claimable,
    .tasks_claim = sqlite_tasks_claim,
    .leases_renew = sqlite_leases_renew,
    .leases_expired = sqlite_leases_expired,
    .task_requeue = sqlite_task_requeue,
    .task_progress = sqlite_task_progress,
    .finish_attempt = sqlite_finish_attempt,
    .finish_many = sqlite_finish_many,
    .last_seq = sqlite_last_seq,
    .retry_attempt = sqlite_retry_attempt,
    .task_check = sqlite_task_check,
    .worker_heartbeat = sqlite_worker_heartbeat,
    .worker_remove = sqlite_worker_remove,
    .workers_alive = sqlite_workers_alive,
    .queue_depths = sqlite_queue_depths,
    .tasks_prune = sqlite_tasks_prune,
    .transaction_begin = sqlite_transaction_begin,
    .transaction_commit = sqlite_transaction_commit,
    .transaction_rollback = sqlite_transaction_rollback,
    .worker_durability = sqlite_worker_durability,
    .check_writable = sqlite_check_writable,
    .problem = sqlite_problem,
    .admin_task_get = sqlite_admin_task_get,
    .admin_task_list = sqlite_admin_task_list,
    .admin_status = sqlite_admin_status,
    .admin_stats = sqlite_admin_stats,
    .history_append = sqlite_history_append,
    .history_read = sqlite_history_read,
    .history_prune = sqlite_history_prune,
    .presence_lock = sqlite_presence_lock,
    .presence_version = sqlite_presence_version,
    .presence_put = sqlite_presence_put,
    .presence_total = sqlite_presence_total,
    .presence_renew = sqlite_presence_renew,
    .presence_channels = sqlite_presence_channels,
    .presence_drop = sqlite_presence_drop,
    .presence_list = sqlite_presence_list,
    .presence_count = sqlite_presence_count,
    .presence_forget = sqlite_presence_forget,
};
